//! `exo-authproxy report`: the migration report, read from audit files.
//!
//! Why a report at all: the proxy exists for a *gradual* migration off Basic auth and Remote
//! PowerShell. Exchange's own audit sees only the app id; the proxy sees which local user
//! (one per script is the recommended practice) ran what, from where, with which client.
//! This turns the audit trail ([`Record`] lines) into, per script: what it ran, how
//! often, how it failed, and what it must change to run on ExchangeOnlineManagement v3
//! ([`migration`]).
//!
//! Input is streamed line by line (plain or gzip-compressed files, rotated files in any
//! order), each line bounded ([`MAX_LINE`]), and aggregated into capped maps
//! ([`model`]), so any input size runs in bounded memory.

pub mod migration;
pub mod model;

mod render;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

pub use crate::audit::Record;
pub use model::Report;

/// Longest audit line read, in bytes; longer lines are skipped and counted.
pub const MAX_LINE: usize = 64 * 1024;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One self-contained HTML file.
    Html,
    /// Markdown, for tickets.
    Markdown,
    /// JSON (schema in docs/report.md).
    Json,
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct Options {
    /// Audit files (plain or `.gz`).
    pub files: Vec<PathBuf>,
    /// Only records at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only records before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Output format.
    pub format: Format,
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An input file.
    #[error("cannot read audit file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output.
    #[error("cannot write the report: {0}")]
    Write(#[source] std::io::Error),
    /// A `--since`/`--until` value.
    #[error("{flag} {value:?} is not a date: use 2026-12-01 or 2026-12-01T08:00:00Z")]
    Date {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
    },
}

/// Parses `--since`/`--until`: a date (midnight UTC) or an RFC 3339 instant.
///
/// # Errors
/// [`ReportError::Date`].
pub fn parse_date(flag: &'static str, value: &str) -> Result<DateTime<Utc>, ReportError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| ReportError::Date {
            flag,
            value: value.chars().take(100).collect(),
        })
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, ReportError> {
    let err = |source| ReportError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(err)?);
    let gzip = file.fill_buf().map_err(err)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

/// Reads one line of at most [`MAX_LINE`] bytes into `buf`; a longer line is consumed and
/// reported as `Some(false)`. `None` at the end.
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut fits = true;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if fits && buf.len() + take <= MAX_LINE + 1 {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            fits = false;
            buf.clear();
        }
        reader.consume(take);
        if done {
            return Ok(Some(fits));
        }
    }
}

/// Reads every file into a [`Report`].
///
/// # Errors
/// [`ReportError::Read`] for a file that cannot be read.
pub fn aggregate(options: &Options) -> Result<Report, ReportError> {
    let mut report = Report::default();
    let mut buf = Vec::with_capacity(4096);
    for path in &options.files {
        let mut reader = open(path)?;
        loop {
            let line = read_line(&mut *reader, &mut buf).map_err(|source| ReportError::Read {
                path: path.clone(),
                source,
            })?;
            let Some(fits) = line else { break };
            report.lines += 1;
            if !fits {
                report.skipped += 1;
                continue;
            }
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim();
            if text.is_empty() {
                report.lines -= 1;
                continue;
            }
            let Ok(record) = serde_json::from_str::<Record>(text) else {
                report.skipped += 1;
                continue;
            };
            let Ok(time) = DateTime::parse_from_rfc3339(&record.time) else {
                report.skipped += 1;
                continue;
            };
            let time = time.with_timezone(&Utc);
            if options.since.is_some_and(|s| time < s) || options.until.is_some_and(|u| time >= u) {
                report.filtered += 1;
                continue;
            }
            report.add(&record, time);
        }
    }
    report.finish();
    Ok(report)
}

/// Reads the files and writes the report to `out`.
///
/// # Errors
/// [`ReportError`].
pub fn run(options: &Options, out: &mut dyn Write) -> Result<(), ReportError> {
    let report = aggregate(options)?;
    let text = match options.format {
        Format::Json => render::json(&report),
        Format::Markdown => render::markdown(&report),
        Format::Html => render::html(&report),
    };
    out.write_all(text.as_bytes()).map_err(ReportError::Write)?;
    out.flush().map_err(ReportError::Write)
}

#[cfg(test)]
mod tests;
