//! Issue 14 end to end: known sessions through the real proxy (two users, both modes, an
//! error, a warning, a two-cmdlet pipeline, an idle expiry, a rotation in the middle) produce
//! an audit file whose events, and a report whose counts, verdicts and mappings, are asserted
//! exactly, in all three formats. And an audit disk that fails does not fail the command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use exo_authproxy::audit::Audit;
use exo_authproxy::config::Mode;
use exo_authproxy::report::{self, Format, Options as ReportOptions};
use exo_authproxy::sandbox::{RunningProxy, World, WorldOptions, simulated_exchange};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use crate::support::python::run_script;

const PASSWORD: &str = "audit-test-password";

struct Proxy {
    world: World,
    running: RunningProxy,
    audit: Audit,
    file: PathBuf,
}

async fn start(dir: &Path, mode: Mode, extra_users: &[&str]) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_data, rps, adminapi) = simulated_exchange(20);
    let mut options = WorldOptions::new(mode, listener.local_addr().unwrap(), rps);
    options.password = PASSWORD.into();
    options.adminapi = Some(adminapi);
    options.audit_file = true;
    options.extra_users = extra_users.iter().map(|u| (*u).to_owned()).collect();
    let world = World::start(dir, options).await.expect("sandbox world");
    let file = world.config.audit.as_ref().expect("[audit]").file.clone();
    let (prepared, _tokens) = world.prepare_for_mode().expect("prepare");
    let audit = prepared.proxy().audit.clone();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = RunningProxy::spawn(prepared, listener, admin, Duration::from_secs(5)).unwrap();
    Proxy {
        world,
        running,
        audit,
        file,
    }
}

impl Proxy {
    /// Runs `pipelines` as `user` with pypsrp; the per-pipeline objects/errors/warnings.
    async fn run(&self, user: &str, pipelines: Json, leave_open: bool) -> Vec<(u64, u64, u64)> {
        let env = vec![
            ("PROXY_HOST".into(), "127.0.0.1".into()),
            ("PROXY_PORT".into(), self.running.proxy.port().to_string()),
            ("PROXY_USER".into(), user.into()),
            ("PROXY_PASSWORD".into(), PASSWORD.into()),
            (
                "PROXY_CA".into(),
                self.running
                    .listener_cert
                    .as_ref()
                    .unwrap()
                    .display()
                    .to_string(),
            ),
            ("PROXY_QUERY".into(), String::new()),
            ("PIPELINES".into(), pipelines.to_string()),
            (
                "LEAVE_OPEN".into(),
                if leave_open { "1" } else { "0" }.into(),
            ),
        ];
        let out = run_script("audit_report.py", env).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pypsrp failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Json = serde_json::from_str(stdout.trim()).expect("one JSON line");
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["objects"].as_u64().unwrap(),
                    r["errors"].as_u64().unwrap(),
                    r["warnings"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

fn events(files: &[&Path]) -> Vec<Json> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str::<Json>(l).expect("a JSON line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (event, user, cmdlet or reason, position, result, objects, errors) of each event.
fn summary(events: &[Json]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
            match e["event"].as_str().unwrap() {
                "command" => format!(
                    "command {} {}#{} {} objects={} errors={}",
                    s("user"),
                    s("cmdlet"),
                    e["position"],
                    s("result"),
                    e["objects"],
                    e["errors"]
                ),
                "session-opened" => format!(
                    "session-opened {} {} {} {} {}",
                    s("user"),
                    s("tenant"),
                    s("mode"),
                    s("endpoint"),
                    s("client_kind")
                ),
                "session-closed" => format!(
                    "session-closed {} {} {} commands={}",
                    s("user"),
                    s("mode"),
                    s("reason"),
                    e["commands"]
                ),
                other => format!("{other} {}", s("user")),
            }
        })
        .collect()
}

fn report_of(files: &[PathBuf], format: Format) -> String {
    let mut out = Vec::new();
    report::run(
        &ReportOptions {
            files: files.to_vec(),
            since: None,
            until: None,
            format,
        },
        &mut out,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn known_sessions_make_an_exact_audit_file_and_report_issue_14() {
    let rest_dir = tempfile::tempdir().unwrap();
    let winrm_dir = tempfile::tempdir().unwrap();
    let mut rest = start(rest_dir.path(), Mode::Rest, &["provisioning"]).await;
    let mut winrm = start(winrm_dir.path(), Mode::Winrm, &[]).await;

    // reporting, rest mode: a read, an unknown identity (a non-terminating error) and a
    // Set-Mailbox that changes nothing (Exchange's warning).
    let got = rest
        .run(
            "reporting",
            json!([
                [["Get-Mailbox", {"ResultSize": 2}]],
                [["Get-Mailbox", {"Identity": "nosuchuser"}]],
                [["Set-Mailbox", {"Identity": "AdeleV", "CustomAttribute1": "Sales"}]],
            ]),
            false,
        )
        .await;
    assert_eq!(
        got,
        vec![(2, 0, 1), (0, 1, 0), (0, 0, 1)],
        "two mailboxes and 'there are more results', an unknown identity, 'nothing modified'"
    );

    // logrotate `create` in the middle: rename, then the SIGHUP's reopen.
    rest.audit.flush();
    let rotated = rest.file.with_extension("jsonl.1");
    std::fs::rename(&rest.file, &rotated).unwrap();
    rest.audit.reopen();

    // provisioning, rest mode: a two-cmdlet pipeline sent in one go (Invoke-Command style).
    let got = rest
        .run(
            "provisioning",
            json!([[["Get-Mailbox", {"ResultSize": 2}], ["Set-Mailbox", {"CustomAttribute5": "audit"}]]]),
            false,
        )
        .await;
    assert_eq!(got, vec![(0, 0, 1)]);
    // provisioning again: a script that dies with its session open.
    let got = rest
        .run(
            "provisioning",
            json!([[["Get-OrganizationConfig", {}]]]),
            true,
        )
        .await;
    assert_eq!(got, vec![(1, 0, 0)]);

    // reporting, winrm mode: the session is recorded (commands travel inside the relay).
    let got = winrm
        .run(
            "reporting",
            json!([[["Get-Mailbox", {"ResultSize": 1}]]]),
            false,
        )
        .await;
    assert_eq!(got, vec![(1, 0, 1)]);

    // The abandoned session expires: 15 minutes without a request.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(16 * 60)).await;
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
    rest.running.shutdown().await.unwrap();
    winrm.running.shutdown().await.unwrap();
    rest.audit.flush();
    winrm.audit.flush();

    let before = events(&[&rotated]);
    let after = events(&[&rest.file]);
    let winrm_events = events(&[&winrm.file]);
    assert_eq!(
        summary(&before),
        vec![
            "session-opened reporting contoso rest exchange pypsrp",
            "command reporting Get-Mailbox#0 ok objects=2 errors=0",
            "command reporting Get-Mailbox#0 error objects=0 errors=1",
            "command reporting Set-Mailbox#0 ok objects=0 errors=0",
            "session-closed reporting rest deleted commands=3",
        ]
    );
    assert_eq!(
        summary(&after),
        vec![
            "session-opened provisioning contoso rest exchange pypsrp",
            "command provisioning Get-Mailbox#0 ok objects=2 errors=0",
            "command provisioning Set-Mailbox#1 ok objects=0 errors=0",
            "command provisioning Set-Mailbox#1 ok objects=0 errors=0",
            "session-closed provisioning rest deleted commands=1",
            "session-opened provisioning contoso rest exchange pypsrp",
            "command provisioning Get-OrganizationConfig#0 ok objects=1 errors=0",
            "session-closed provisioning rest idle commands=1",
        ]
    );
    assert_eq!(
        summary(&winrm_events),
        vec![
            "session-opened reporting contoso winrm exchange pypsrp",
            "session-closed reporting winrm deleted commands=1",
        ]
    );
    // Every line: schema 1, an RFC 3339 time, and never a password.
    for e in before.iter().chain(&after).chain(&winrm_events) {
        assert_eq!(e["schema"], 1);
        assert!(chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).is_ok());
        assert!(!e.to_string().contains(PASSWORD));
    }
    let pipeline_of = |cmdlet: &str| {
        after
            .iter()
            .filter(|e| e["cmdlet"] == cmdlet)
            .map(|e| e["pipeline"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(pipeline_of("Get-Mailbox")[0], pipeline_of("Set-Mailbox")[0]);
    assert_eq!(
        before[3]["parameters"],
        json!(["Identity", "CustomAttribute1"]),
        "parameter names as a list, values never"
    );
    assert!(!before[3].to_string().contains("Sales"));

    // The report over the rotated, the current and the winrm file.
    let files = vec![rotated.clone(), rest.file.clone(), winrm.file.clone()];
    let j: Json = serde_json::from_str(&report_of(&files, Format::Json)).unwrap();
    assert_eq!(
        j["summary"],
        json!({"scripts": 2, "sessions": 4, "commands": 7, "login_failures": 0,
               "login_throttled": 0, "ready": 1, "move_with_changes": 1, "keep": 0})
    );
    let prov = &j["scripts"][0];
    assert_eq!(prov["user"], "provisioning");
    assert_eq!(prov["verdict"], "move-with-changes");
    assert_eq!(
        prov["pipelines"],
        json!([{"name": "Get-Mailbox | Set-Mailbox", "count": 1},
               {"name": "Get-OrganizationConfig", "count": 1}])
    );
    assert!(
        prov["changes"][1]
            .as_str()
            .unwrap()
            .starts_with("Invoke-Command does not work in REST connections")
    );
    let rep = &j["scripts"][1];
    assert_eq!(rep["user"], "reporting");
    assert_eq!(rep["verdict"], "ready");
    assert_eq!(rep["sessions"], 2);
    assert_eq!(rep["modes"], json!(["rest", "winrm"]));
    assert_eq!(rep["cmdlets"][0]["name"], "Get-Mailbox");
    assert_eq!(rep["cmdlets"][0]["calls"], 2);
    assert_eq!(rep["cmdlets"][0]["errors"], 1);
    assert_eq!(rep["cmdlets"][0]["error_rate"], 0.5);
    assert_eq!(rep["cmdlets"][0]["exo_alternative"], "Get-EXOMailbox");
    assert_eq!(
        rep["cmdlets"][0]["parameters"],
        json!([{"name": "Identity", "count": 1}, {"name": "ResultSize", "count": 1}])
    );
    assert_eq!(rep["powershell"], json!([{"name": "pypsrp", "count": 2}]));

    let md = report_of(&files, Format::Markdown);
    assert!(md.contains("| 2 | 4 | 7 | 1 | 1 | 0 | 0 |"), "{md}");
    assert!(
        md.contains("## provisioning — move with these changes"),
        "{md}"
    );
    assert!(md.contains("## reporting — ready to move"), "{md}");
    assert!(
        md.contains("| Get-Mailbox | 2 | 1 | 1 | 0 | 0 | 2 | 50.0 % |"),
        "{md}"
    );
    assert!(md.contains("`Get-Mailbox | Set-Mailbox` ×1"), "{md}");
    assert!(
        md.contains("**Faster:** Get-Mailbox → Get-EXOMailbox"),
        "{md}"
    );

    let html = report_of(&files, Format::Html);
    assert!(html.contains("<b>2</b>scripts"));
    assert!(html.contains("<b>4</b>sessions"));
    assert!(html.contains("<b>7</b>commands"));
    assert!(html.contains("<b>1</b>ready to move"));
    assert!(html.contains("<b>1</b>move with these changes"));
    assert!(html.contains("<svg") && !html.contains("<script"));
    assert!(html.contains("Get-Mailbox → Get-EXOMailbox"));
    drop((rest.world, winrm.world));
}

/// A full (or failing) audit disk: the command still succeeds; the loss is counted.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_failing_audit_disk_does_not_fail_the_command_issue_14() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::symlink("/dev/full", state.join("audit.jsonl")).unwrap();
    let mut p = start(dir.path(), Mode::Rest, &[]).await;
    let got = p
        .run(
            "reporting",
            json!([[["Get-Mailbox", {"ResultSize": 3}]]]),
            false,
        )
        .await;
    assert_eq!(
        got,
        vec![(3, 0, 1)],
        "three mailboxes and 'there are more results'"
    );
    p.audit.flush();
    let counters = p.audit.counters().expect("a file").clone();
    assert!(
        counters.failed().get() >= 3,
        "opened, command, closed: each lost and counted"
    );
    p.running.shutdown().await.unwrap();
}
