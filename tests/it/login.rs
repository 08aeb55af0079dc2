//! The login throttle through the real listener over TLS (issue 12): what a script sees when
//! one address guesses, and that nobody else does.
//!
//! The proxy here is the real `serve(...)` with two local users in front of the harness's
//! simulated Exchange. Guessing comes from 127.0.0.1; "another address" is 127.0.0.2 (the
//! whole 127/8 is loopback), bound as the client's source address. The window's end is not
//! waited for here (real sockets, real time); the unit tests in `listener::basic_auth` run it
//! on a paused clock. The last test is what a script sees, with the real pypsrp client over
//! the sandbox world.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use exo_authproxy::config::{TenantName, User};
use exo_authproxy::errors::PROXY_ERROR;
use exo_authproxy::listener::basic_auth::{Credentials, FAILURE_LIMIT, hash_password};
use exo_authproxy::{Listeners, Prepared, Services};
use http::StatusCode;
use tokio::net::TcpListener;

use crate::support::harness::{Harness, Options, PASSWORD, Sandboxed, SandboxedOptions, USER};

const OTHER_USER: &str = "helpdesk";
const OTHER_PASSWORD: &str = "helpdesk-pw";
const IDENTIFY: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><a:Action xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action></s:Header><s:Body/></s:Envelope>"#;

/// The real proxy with `reporting` and `helpdesk`, in front of the harness's Exchange.
struct TwoUsers {
    _harness: Harness,
    /// The audit trail, in a file: read after a flush, whatever thread wrote each event
    /// (a thread-local log capture misses events when tracing's interest cache races).
    audit: exo_authproxy::audit::Audit,
    audit_file: PathBuf,
    _dir: tempfile::TempDir,
    url: String,
    cert: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TwoUsers {
    async fn start() -> Self {
        let harness = Harness::start(Options::default()).await;
        let mut config = harness.config.clone();
        config.users.push(User {
            name: OTHER_USER.into(),
            password_hash: hash_password(OTHER_PASSWORD).unwrap(),
            tenants: vec![TenantName("contoso".into())],
        });
        let dir = tempfile::tempdir().unwrap();
        let audit_file = dir.path().join("audit.jsonl");
        let audit =
            exo_authproxy::audit::Audit::file(&audit_file, Default::default()).expect("audit file");
        let prepared = Prepared::new(
            &config,
            Services {
                tokens: harness.tokens.clone(),
                rest: None,
                metrics: Arc::new(exo_authproxy::metrics::Metrics::new()),
                audit: audit.clone(),
                sessions: Default::default(),
            },
        )
        .expect("prepare");
        let cert = prepared.tls().expect("tls").cert_path().to_path_buf();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(exo_authproxy::serve(
            prepared,
            Listeners {
                proxy: listener,
                admin: None,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            _harness: harness,
            audit,
            audit_file,
            _dir: dir,
            url: format!("https://127.0.0.1:{}/powershell-liveid", addr.port()),
            cert,
            _stop: stop,
        }
    }

    /// A client whose connections come from `source`.
    fn client_from(&self, source: [u8; 4]) -> reqwest::Client {
        let tls = exo_authproxy::forward::client::client_tls(Some(&self.cert)).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .local_address(IpAddr::from(source))
            .no_proxy()
            .build()
            .unwrap()
    }

    async fn post(&self, client: &reqwest::Client, user: &str, password: &str) -> Answer {
        let rsp = client
            .post(&self.url)
            .header("content-type", "application/soap+xml;charset=UTF-8")
            .header("authorization", Credentials::encode(user, password))
            .body(IDENTIFY)
            .send()
            .await
            .expect("request to the proxy");
        let header = |name: &str| {
            rsp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        Answer {
            status: rsp.status(),
            code: header(PROXY_ERROR.as_str()),
            retry_after: header("retry-after"),
            challenge: header("www-authenticate"),
            text: rsp.text().await.unwrap(),
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    code: Option<String>,
    retry_after: Option<String>,
    challenge: Option<String>,
    text: String,
}

/// Issue 12: concurrent wrong passwords from one address cost exactly the limit; the guesser
/// gets `auth-throttled` (a 401 challenge that says how long to wait), even with the right
/// password, while the same user from another host and another user from the same host log
/// in at once.
#[tokio::test]
async fn r12_concurrent_guesses_are_throttled_and_nobody_else_is() {
    let proxy = Arc::new(TwoUsers::start().await);
    let guesser = proxy.client_from([127, 0, 0, 1]);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..60 {
        let (proxy, guesser) = (proxy.clone(), guesser.clone());
        tasks.spawn(async move { proxy.post(&guesser, USER, &format!("guess-{n}")).await });
    }
    let mut bad = 0;
    let mut throttled = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(r#"Basic realm="exo-authproxy""#)
        );
        match answer.code.as_deref() {
            Some("bad-credentials") => bad += 1,
            Some("auth-throttled") => throttled.push(answer),
            other => panic!("unexpected code {other:?}: {answer:?}"),
        }
    }
    assert_eq!(
        (bad, throttled.len()),
        (FAILURE_LIMIT, 60 - FAILURE_LIMIT as usize)
    );
    for answer in &throttled {
        let wait: u64 = answer.retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{answer:?}");
        assert!(
            answer
                .text
                .contains("too many failed logins from 127.0.0.1")
                && answer.text.contains("wait"),
            "{}",
            answer.text
        );
    }

    // The right password from the guessing address is refused while the window lasts.
    let answer = proxy.post(&guesser, USER, PASSWORD).await;
    assert_eq!(
        (answer.status, answer.code.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("auth-throttled")),
        "{answer:?}"
    );
    // Another user from the same address, and the same user from another address: at once.
    let answer = proxy.post(&guesser, OTHER_USER, OTHER_PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let elsewhere = proxy.client_from([127, 0, 0, 2]);
    let answer = proxy.post(&elsewhere, USER, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    proxy.audit.flush();
    let text = std::fs::read_to_string(&proxy.audit_file).unwrap();
    let audited = |event: &str| text.matches(&format!("\"event\":\"{event}\"")).count();
    assert_eq!(audited("login-failed"), FAILURE_LIMIT as usize, "{text}");
    // 51 refusals in one streak: logged at the 1st, 2nd, 4th, 8th, 16th and 32nd.
    assert_eq!(audited("login-throttled"), 6, "{text}");
}

/// Runs the real pypsrp client (`tests/interop/proxy_session.py`) against `h` as the demo user.
async fn pypsrp(h: &Sandboxed) -> serde_json::Value {
    let mut env = h.pypsrp_env("");
    env.push(("COMMANDS".into(), "org".into()));
    let out = crate::support::python::run_script("proxy_session.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pypsrp script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Ten wrong passwords for `USER` from `source`, each answered `bad-credentials`.
async fn guess_from(h: &Sandboxed, source: [u8; 4]) {
    let tls = exo_authproxy::forward::client::client_tls(Some(&h.listener_cert)).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(IpAddr::from(source))
        .no_proxy()
        .build()
        .unwrap();
    for n in 0..FAILURE_LIMIT {
        let rsp = client
            .post(&h.url)
            .header(
                "authorization",
                Credentials::encode(USER, &format!("guess-{n}")),
            )
            .body(IDENTIFY)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.headers()[PROXY_ERROR.as_str()], "bad-credentials");
    }
}

/// What a script sees (the real pypsrp client): while another host guesses the user's
/// password the script logs in and runs a cmdlet as usual; once its own host has guessed,
/// the right password gets a plain authentication error (a 401, as for a wrong password)
/// until the window passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_pypsrp_logs_in_while_another_host_guesses_and_not_from_the_guessing_host() {
    let h = Sandboxed::start(SandboxedOptions::simulated(
        exo_authproxy::config::Mode::Winrm,
        5,
    ))
    .await;
    guess_from(&h, [127, 0, 0, 2]).await;
    let out = pypsrp(&h).await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["org"].as_array().map(Vec::len), Some(1), "{out}");

    guess_from(&h, [127, 0, 0, 1]).await;
    let out = pypsrp(&h).await;
    assert_eq!(out["ok"], false, "{out}");
    assert!(
        out.get("auth_error").is_some() || out["status"] == 401,
        "{out}"
    );
}
