use std::io::Write as _;

use super::*;
use crate::report::migration::Verdict;

fn line(event: &str, user: &str, time: &str, extra: serde_json::Value) -> String {
    let mut v = serde_json::json!({"schema": 1, "time": time, "event": event, "user": user});
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in more {
            obj.insert(k.clone(), x.clone());
        }
    }
    v.to_string()
}

fn sample() -> String {
    [
        line("session-opened", "reporting", "2026-12-01T08:00:00Z", serde_json::json!({"tenant": "contoso", "client": "10.0.0.5", "mode": "rest", "endpoint": "exchange", "client_kind": "Windows PowerShell", "client_version": "5.1", "session": "S1"})),
        line("command", "reporting", "2026-12-01T08:00:01Z", serde_json::json!({"tenant": "contoso", "session": "S1", "pipeline": "P1", "position": 0, "cmdlet": "Get-Mailbox", "parameters": ["ResultSize"], "result": "ok", "objects": 10, "errors": 0, "duration_ms": 120})),
        line("command", "reporting", "2026-12-01T08:00:02Z", serde_json::json!({"tenant": "contoso", "session": "S1", "pipeline": "P2", "position": 0, "cmdlet": "Get-Mailbox", "parameters": ["Identity"], "result": "error", "objects": 0, "errors": 1, "duration_ms": 80})),
        line("session-closed", "reporting", "2026-12-01T08:01:00Z", serde_json::json!({"tenant": "contoso", "session": "S1", "reason": "deleted", "commands": 2})),
        line("session-opened", "provisioning", "2026-12-02T09:00:00Z", serde_json::json!({"tenant": "contoso", "client": "10.0.0.6", "mode": "rest", "client_kind": "PowerShell", "client_version": "7.4", "session": "S2"})),
        line("command", "provisioning", "2026-12-02T09:00:01Z", serde_json::json!({"session": "S2", "pipeline": "P3", "position": 1, "cmdlet": "Set-Mailbox", "parameters": ["CustomAttribute1"], "result": "ok", "objects": 0, "duration_ms": 300})),
        line("command", "provisioning", "2026-12-02T09:00:01Z", serde_json::json!({"session": "S2", "pipeline": "P3", "position": 0, "cmdlet": "Get-Mailbox", "parameters": ["ResultSize"], "result": "ok", "objects": 2, "duration_ms": 90})),
        line("login-failed", "intruder", "2026-12-02T10:00:00Z", serde_json::json!({"client": "10.0.0.9"})),
        "not json at all".to_owned(),
    ]
    .join("\n")
}

fn write_temp(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn options(files: Vec<PathBuf>) -> Options {
    Options {
        files,
        since: None,
        until: None,
        format: Format::Json,
    }
}

#[test]
fn counts_sessions_commands_pipelines_and_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_temp(&dir, "audit.jsonl", sample().as_bytes());
    let r = aggregate(&options(vec![f])).unwrap();
    assert_eq!(r.lines, 9);
    assert_eq!(r.skipped, 1);
    assert_eq!(r.login_failures, 1);
    let rep = &r.scripts["reporting"];
    assert_eq!((rep.sessions, rep.commands), (1, 2));
    let gm = &rep.cmdlets["Get-Mailbox"];
    assert_eq!(
        (gm.calls, gm.ok, gm.errors, gm.objects, gm.max_ms),
        (2, 1, 1, 10, 120)
    );
    assert_eq!(gm.parameters["ResultSize"], 1);
    assert_eq!(rep.pipelines["Get-Mailbox"], 2);
    assert_eq!(rep.powershell["Windows PowerShell 5.1"], 1);
    assert_eq!(rep.assess().verdict, Verdict::Ready);
    let prov = &r.scripts["provisioning"];
    assert_eq!(prov.pipelines["Get-Mailbox | Set-Mailbox"], 1);
    let a = prov.assess();
    assert_eq!(a.verdict, Verdict::MoveWithChanges);
    assert!(
        a.changes
            .iter()
            .any(|c| c.contains("Invoke-Command does not work"))
    );
    assert!(
        a.advice
            .iter()
            .any(|c| c.starts_with("Get-Mailbox → Get-EXOMailbox"))
    );
}

#[test]
fn failing_scripts_and_app_only_gaps_stay_on_the_proxy() {
    let mut lines = Vec::new();
    for i in 0..5 {
        let result = if i < 2 { "failed" } else { "ok" };
        lines.push(line(
            "command",
            "flaky",
            "2026-12-01T08:00:00Z",
            serde_json::json!({"cmdlet": "Get-Mailbox", "result": result}),
        ));
    }
    lines.push(line(
        "command",
        "ediscovery",
        "2026-12-01T08:00:00Z",
        serde_json::json!({"cmdlet": "New-ComplianceSearch", "result": "ok"}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let f = write_temp(&dir, "a.jsonl", lines.join("\n").as_bytes());
    let r = aggregate(&options(vec![f])).unwrap();
    let flaky = r.scripts["flaky"].assess();
    assert_eq!(flaky.verdict, Verdict::Keep);
    assert!(
        flaky.blockers[0].starts_with("40 % of its commands fail"),
        "{:?}",
        flaky.blockers
    );
    let ed = r.scripts["ediscovery"].assess();
    assert_eq!(ed.verdict, Verdict::Keep);
    assert!(ed.blockers[0].contains("New-ComplianceSearch is not supported with app-only"));
}

#[test]
fn reads_gzip_and_rotated_files_and_filters_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(sample().as_bytes()).unwrap();
    let old = write_temp(&dir, "audit.jsonl.1.gz", &gz.finish().unwrap());
    let new = write_temp(
        &dir,
        "audit.jsonl",
        line(
            "command",
            "reporting",
            "2026-12-03T08:00:00Z",
            serde_json::json!({"cmdlet": "Get-Recipient", "result": "ok"}),
        )
        .as_bytes(),
    );
    let mut o = options(vec![new, old]);
    o.since = Some(parse_date("--since", "2026-12-02").unwrap());
    o.until = Some(parse_date("--until", "2026-12-03T08:00:00Z").unwrap());
    let r = aggregate(&o).unwrap();
    assert_eq!(r.scripts.keys().collect::<Vec<_>>(), vec!["provisioning"]);
    assert_eq!(r.filtered, 5);
    assert!(parse_date("--since", "yesterday").is_err());
}

#[test]
fn long_lines_are_skipped_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = "x".repeat(MAX_LINE * 3).into_bytes();
    body.push(b'\n');
    body.extend_from_slice(sample().as_bytes());
    let f = write_temp(&dir, "a.jsonl", &body);
    let r = aggregate(&options(vec![f])).unwrap();
    assert_eq!(r.skipped, 2);
    assert_eq!(r.scripts.len(), 2);
}

#[test]
fn the_three_formats_carry_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_temp(&dir, "a.jsonl", sample().as_bytes());
    let mut o = options(vec![f]);
    let mut out = Vec::new();
    run(&o, &mut out).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["summary"]["scripts"], 2);
    assert_eq!(json["summary"]["commands"], 4);
    assert_eq!(json["summary"]["ready"], 1);
    assert_eq!(json["summary"]["move_with_changes"], 1);
    assert_eq!(json["scripts"][0]["user"], "provisioning");
    assert_eq!(json["scripts"][0]["verdict"], "move-with-changes");
    assert_eq!(
        json["scripts"][1]["cmdlets"][0]["exo_alternative"],
        "Get-EXOMailbox"
    );
    o.format = Format::Markdown;
    let mut md = Vec::new();
    run(&o, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("| 2 | 2 | 4 | 1 | 1 | 0 | 1 |"), "{md}");
    assert!(md.contains("## reporting — ready to move"));
    assert!(md.contains("`Get-Mailbox | Set-Mailbox` ×1"));
    o.format = Format::Html;
    let mut html = Vec::new();
    run(&o, &mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && !html.contains("<script"));
    assert!(!html.contains("src=\"http"));
    assert!(html.contains("<b>2</b>scripts"));
}

#[test]
fn names_from_the_file_are_escaped_in_html() {
    let dir = tempfile::tempdir().unwrap();
    let body = line(
        "command",
        "<img src=x onerror=alert(1)>",
        "2026-12-01T08:00:00Z",
        serde_json::json!({"cmdlet": "Get-Mailbox", "result": "ok"}),
    );
    let f = write_temp(&dir, "a.jsonl", body.as_bytes());
    let mut o = options(vec![f]);
    o.format = Format::Html;
    let mut html = Vec::new();
    run(&o, &mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
}
