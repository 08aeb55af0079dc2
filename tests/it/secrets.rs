//! No secret in the logs (issue 13): a full pypsrp session in each mode plus the failing
//! cases (wrong password, a refused tenant, Entra failing), with every log line captured in
//! both the text and the JSON format at the most verbose level, then grepped for each secret
//! the run used: the password, the Basic blob, the access tokens, the client assertion (any
//! JWT at all) and the private key's PEM body. Each run also writes an audit file
//! (`[audit] file`), grepped for the same secrets: the audit log is read by more people than
//! the operator, so it must hold even less.

use base64::Engine as _;
use exo_authproxy::config::{Mode, TenantName};
use http::StatusCode;
use tracing_subscriber::layer::SubscriberExt as _;

use std::time::Duration;

use exo_authproxy::sandbox::{RunningProxy, World, WorldOptions};
use tokio::net::TcpListener;

use crate::support::harness::{Logs, USER, client_trusting, post_soap, world_tenants};
use crate::support::python;

/// Everything secret this run handed the proxy or the proxy obtained.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: impl Into<String>) {
        let value = value.into();
        assert!(
            value.len() >= 8,
            "{what} too short to grep for meaningfully"
        );
        self.0.push((what.to_owned(), value));
    }
}

/// The base64 lines of every PEM private key under `dir`.
fn private_key_lines(dir: &std::path::Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            private_key_lines(&path, found);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            if text.contains("PRIVATE KEY-----") {
                found.extend(
                    text.lines()
                        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                        .map(str::to_owned),
                );
            }
        }
    }
}

/// A password distinctive enough to grep for (the harness's is a common word).
const PASSWORD: &str = "Pw-7f3c9e1b-secret-Kq";
const WRONG_PASSWORD: &str = "not-the-password-Zq81";

/// Runs the session and the failing cases in `mode`; returns the audit file's text.
async fn run_mode(mode: Mode, secrets: &mut Secrets) -> String {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(3);
    let mut options = WorldOptions::new(mode, listener.local_addr().unwrap(), rps);
    options.password = PASSWORD.into();
    options.tenants = world_tenants();
    options.adminapi = Some(adminapi);
    options.audit_file = true;
    let world = World::start(dir.path(), options).await.expect("world");
    let audit_file = world
        .config
        .audit
        .as_ref()
        .expect("[audit] file is configured")
        .file
        .clone();
    let (prepared, tokens) = world.prepare_for_mode().expect("prepare");
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut running =
        RunningProxy::spawn(prepared, listener, admin, Duration::from_secs(5)).unwrap();
    let cert = running.listener_cert.clone().expect("tls");
    let url = running.url();
    let client = client_trusting(&cert);
    // A wrong password.
    let rsp = post_soap(&client, &url, Some((USER, WRONG_PASSWORD)), "", "<x/>").await;
    assert_eq!(rsp.status(), StatusCode::UNAUTHORIZED);
    // A tenant the user may not use.
    let rsp = post_soap(
        &client,
        &url,
        Some((USER, PASSWORD)),
        "DelegatedOrg=not-mine.onmicrosoft.com",
        "<x/>",
    )
    .await;
    assert_eq!(rsp.headers()["x-exo-authproxy-error"], "tenant-not-allowed");
    // Entra failing for a tenant whose token is not cached yet.
    world.entra.fail_next(50, StatusCode::INTERNAL_SERVER_ERROR);
    let rsp = post_soap(
        &client,
        &url,
        Some((USER, PASSWORD)),
        "DelegatedOrg=northwind.onmicrosoft.com",
        "<x/>",
    )
    .await;
    assert_eq!(rsp.headers()["x-exo-authproxy-error"], "token-unavailable");
    world.entra.fail_next(0, StatusCode::INTERNAL_SERVER_ERROR);
    // A whole session with the real client.
    let env = vec![
        ("PROXY_HOST".into(), "127.0.0.1".into()),
        ("PROXY_PORT".into(), port.to_string()),
        ("PROXY_USER".into(), USER.into()),
        ("PROXY_PASSWORD".into(), PASSWORD.into()),
        ("PROXY_CA".into(), cert.display().to_string()),
        ("PROXY_QUERY".into(), String::new()),
        ("MAILBOXES".into(), "3".into()),
    ];
    let out = python::run_script("proxy_session.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"ok\": true"),
        "pypsrp ({mode:?}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The token that session used.
    let token = tokens
        .token(&TenantName("contoso".into()))
        .await
        .expect("contoso's token is cached");
    secrets.add("access token", token.token.expose().clone());
    let mut lines = Vec::new();
    private_key_lines(&world.dir, &mut lines);
    assert!(
        !lines.is_empty(),
        "the app's private key is under the world dir"
    );
    for line in lines {
        secrets.add("private key PEM line", line);
    }
    running.shutdown().await.expect("clean shutdown");
    std::fs::read_to_string(&audit_file).expect("the audit file was written")
}

#[tokio::test]
async fn no_secret_reaches_the_logs_in_either_format_issue_13() {
    let text = Logs::default();
    let json = Logs::default();
    let (t, j) = (text.clone(), json.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || t.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || j.clone()),
        );
    let guard = tracing::subscriber::set_default(subscriber);
    // The harness's global subscriber (`Logs`) keeps every callsite's interest "sometimes",
    // so callsites first hit on other threads are never cached as uninteresting for this
    // thread's subscriber.
    crate::support::harness::Logs::install();
    tracing::callsite::rebuild_interest_cache();

    let mut secrets = Secrets::default();
    secrets.add("password", PASSWORD);
    secrets.add(
        "Basic blob",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
    );
    secrets.add("wrong password", WRONG_PASSWORD);
    let mut audits = Vec::new();
    for mode in [Mode::Rest, Mode::Winrm] {
        audits.push((mode, run_mode(mode, &mut secrets).await));
    }
    drop(guard);

    for (mode, audit) in &audits {
        // The run is in it: the refused login and the session.
        for wanted in ["\"login-failed\"", "\"session-opened\""] {
            assert!(
                audit.contains(wanted),
                "the {mode:?} audit file records {wanted}:\n{audit}"
            );
        }
        for (what, value) in &secrets.0 {
            assert!(
                !audit.contains(value.as_str()),
                "the {what} appears in the {mode:?} audit file"
            );
        }
        let jwt = audit
            .find("eyJ")
            .map(|i| &audit[i.saturating_sub(80)..(i + 80).min(audit.len())]);
        assert!(jwt.is_none(), "a JWT in the {mode:?} audit file: {jwt:?}");
    }

    for (format, logs) in [("text", text.text()), ("json", json.text())] {
        assert!(
            logs.contains("answered by the proxy") && logs.len() > 10_000,
            "the {format} capture saw the run ({} bytes)",
            logs.len()
        );
        for (what, value) in &secrets.0 {
            assert!(
                !logs.contains(value.as_str()),
                "the {what} appears in the {format} logs"
            );
        }
        // Any JWT (access token or client assertion) starts with base64url of `{"`.
        let jwt = logs
            .find("eyJ")
            .map(|i| &logs[i.saturating_sub(80)..(i + 80).min(logs.len())]);
        assert!(jwt.is_none(), "a JWT in the {format} logs: {jwt:?}");
    }
}
