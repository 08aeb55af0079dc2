//! `report` over a large audit file (issue #14): a synthetic 1 GiB JSON-lines file (50
//! scripts, realistic command mix, a month of events), read by `report::aggregate` and
//! rendered as HTML. Prints the wall time, the lines per second and the peak RSS before and
//! after, which must stay flat (the aggregation keeps capped maps, never the events).
//!
//! Run: `cargo bench --bench report [-- SIZE_MIB]` (default 1024). The file is written once
//! under `target/bench-report/` and reused.
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use exo_authproxy::report::{self, Format, Options};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn synthesize(path: &PathBuf, bytes: u64) {
    let cmdlets = [
        ("Get-Mailbox", "[\"ResultSize\",\"Filter\"]"),
        ("Get-MailboxStatistics", "[\"Identity\"]"),
        ("Set-Mailbox", "[\"Identity\",\"CustomAttribute1\"]"),
        ("Get-Recipient", "[\"RecipientTypeDetails\",\"ResultSize\"]"),
        ("Get-OrganizationConfig", "[]"),
        ("Select-Object", "[\"Property\"]"),
    ];
    let results = [
        "ok", "ok", "ok", "ok", "ok", "ok", "ok", "error", "ok", "failed",
    ];
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut i = 0u64;
    while written < bytes {
        let user = i % 50;
        let day = 1 + (i / 100_000) % 28;
        let (h, m, s) = ((i / 3600) % 24, (i / 60) % 60, i % 60);
        let session = i / 20;
        let line = if i % 20 == 0 {
            format!(
                r#"{{"schema":1,"time":"2026-11-{day:02}T{h:02}:{m:02}:{s:02}Z","event":"session-opened","user":"script{user:02}","tenant":"contoso","client":"10.1.{}.{}","mode":"rest","endpoint":"exchange","session":"S{session}","client_kind":"Windows PowerShell","client_version":"5.1"}}"#,
                user % 7,
                user
            )
        } else {
            let (cmdlet, params) = cmdlets[(i % 6) as usize];
            format!(
                r#"{{"schema":1,"time":"2026-11-{day:02}T{h:02}:{m:02}:{s:02}Z","event":"command","user":"script{user:02}","tenant":"contoso","session":"S{session}","pipeline":"P{}","position":{},"cmdlet":"{cmdlet}","parameters":{params},"result":"{}","objects":{},"errors":0,"duration_ms":{}}}"#,
                i / 2,
                i % 2,
                results[(i % 10) as usize],
                i % 1000,
                40 + i % 900
            )
        };
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        written += line.len() as u64 + 1;
        i += 1;
    }
    out.flush().unwrap();
}

fn main() {
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("audit-{mib}MiB.jsonl"));
    if !path.exists() {
        eprintln!("writing {} ...", path.display());
        synthesize(&path, mib << 20);
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let before = peak_rss_kib();
    let started = std::time::Instant::now();
    let options = Options {
        files: vec![path.clone()],
        since: None,
        until: None,
        format: Format::Html,
    };
    let mut html = Vec::new();
    report::run(&options, &mut html).unwrap();
    let took = started.elapsed();
    let after = peak_rss_kib();
    let agg = report::aggregate(&Options {
        format: Format::Json,
        ..options
    })
    .unwrap();
    println!(
        "report over {:.0} MiB ({} lines): {:.1} s, {:.0} MiB/s, {:.2} M lines/s; peak RSS {} MiB before, {} MiB after (+{} MiB); HTML {} KiB",
        size as f64 / 1048576.0,
        agg.lines,
        took.as_secs_f64(),
        size as f64 / 1048576.0 / took.as_secs_f64(),
        agg.lines as f64 / 1e6 / took.as_secs_f64(),
        before / 1024,
        after / 1024,
        (after - before) / 1024,
        html.len() / 1024
    );
}
