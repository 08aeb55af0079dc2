//! Reading and parsing the file, and the errors that say `file:line:col`.
//!
//! Positions come from a second, span-preserving parse of the same text ([`DeTable`]), kept
//! in a [`Checker`] that validation asks for the span of any key path.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Config;

/// Why the configuration cannot be used. Each says where and what a valid value looks like.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but a value is not acceptable.
    #[error("{}:{line}:{column}: {key}: {problem}; for example: {example}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key, e.g. `tenant[1].tenant_id`.
        key: String,
        /// What is wrong.
        problem: String,
        /// A valid value or snippet.
        example: String,
    },
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read, otherwise as for [`Config::parse`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`, which was read from `path` (used in messages and to resolve
    /// relative paths).
    ///
    /// # Errors
    /// [`Error::Parse`] for TOML and schema errors, [`Error::Invalid`] for values that fail
    /// validation.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let source = Source { text, path };
        let mut config: Config = toml::from_str(text).map_err(|err| {
            let (line, column) = source.line_col(err.span().map_or(0, |s| s.start));
            Error::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let spans = DeTable::parse(text).map_err(|err| {
            let (line, column) = source.line_col(err.span().map_or(0, |s| s.start));
            Error::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let check = Checker {
            source,
            root: &spans,
        };
        config.validate(&check)?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                fix(p);
            }
        };
        fix(&mut self.state_dir);
        fix_opt(&mut self.listen.certificate);
        fix_opt(&mut self.listen.private_key);
        let e = &mut self.entra;
        for p in [
            &mut e.certificate,
            &mut e.private_key,
            &mut e.pfx,
            &mut e.federated_token_file,
            &mut e.ca_file,
        ] {
            fix_opt(p);
        }
        fix_opt(&mut self.exchange.ca_file);
        fix_opt(&mut self.compliance.ca_file);
        if let Some(audit) = &mut self.audit {
            fix(&mut audit.file);
        }
        for t in &mut self.tenants {
            for p in [
                &mut t.certificate,
                &mut t.private_key,
                &mut t.pfx,
                &mut t.federated_token_file,
            ] {
                fix_opt(p);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}

pub(super) struct Checker<'a> {
    source: Source<'a>,
    root: &'a Spanned<DeTable<'a>>,
}

impl Checker<'_> {
    /// The span of the value at `path`, or of the deepest existing ancestor.
    pub(super) fn span(&self, path: &[Seg<'_>]) -> Range<usize> {
        let mut best = 0..0;
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == *k)
                    .map(|(_, v)| v),
                (Seg::Idx(i), _, Some(v)) => match v.get_ref() {
                    DeValue::Array(a) => a.get(*i),
                    _ => None,
                },
                _ => None,
            };
            let Some(v) = next else { break };
            best = v.span();
            value = Some(v);
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    pub(super) fn invalid(
        &self,
        at: &[Seg<'_>],
        key: &str,
        problem: String,
        example: &str,
    ) -> Error {
        let (line, column) = self.source.line_col(self.span(at).start);
        Error::Invalid {
            path: self.source.path.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem,
            example: example.to_owned(),
        }
    }
}
