//! Faults upstream (issue 13): Entra and Exchange slow, failing, throttling, cutting the
//! connection, presenting the wrong certificate, redirecting in a loop, sending a page that
//! never ends; one tenant failing while others serve. Each is driven through the proxy's TLS
//! listener by a Windows-PowerShell-shaped WS-Man client (`support::wire`), in `rest` mode and
//! in `winrm` mode where the fault applies, and each asserts what the user sees (a fault or
//! error record naming the service and the fix) and what the upstream saw: requests are
//! counted at the fake upstream, so a command lost or sent twice fails the test. The rule
//! under test is `bridge::rest::may_resend` (docs/design.md, "Retries"): a request that may
//! have reached Exchange is sent again only for a `Get-`.
//!
//! Exchange is a scripted HTTPS server in this file (raw HTTP/1.1 over TLS, one request per
//! connection, so it can drop a connection before or in the middle of an answer); what the
//! script does not cover is answered by the simulated admin API (`sandbox::adminapi::handle`)
//! over one shared [`ExchangeData`], so a command that ran shows in the data. Entra is the
//! simulator with its knobs, or a scripted man in the middle in front of it for what the
//! simulator cannot do (garbage JSON, an `exp` earlier than `expires_in` says). Time is paused
//! where the fault is about time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use exo_authproxy::config::Mode;
use exo_authproxy::sandbox::AppIdentity;
use exo_authproxy::sandbox::data::ExchangeData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::harness::{Sandboxed, SandboxedOptions, world_tenants};
use crate::support::python;
use crate::support::wire::{Cmd, Run, Wire, colon, s, state};

const CONTOSO_ID: &str = "0f9c3b1e-1111-2222-3333-444455556666";
const NORTHWIND_ID: &str = "3b8a1c2d-9999-8888-7777-666655554444";
const NORTHWIND: &str = "DelegatedOrg=northwind.onmicrosoft.com";

// ---------------------------------------------------------------------------------------
// The scripted Exchange.
// ---------------------------------------------------------------------------------------

/// What the scripted Exchange does with one request.
#[derive(Debug, Clone)]
enum Act {
    /// This status, empty JSON body, with `Retry-After` when given.
    Status(u16, Option<&'static str>),
    /// Run the request (the data changes), then close the connection without answering.
    RunThenDrop,
    /// Run the request, send the answer's head and half its body, then close.
    Cut,
    /// Wait, then answer as Exchange.
    Delay(Duration),
    /// 200, chunked, 64 KiB chunks for ever.
    Flood,
    /// 200, chunked, one byte every 10 s for ever.
    Trickle,
    /// 302 back to the same URL.
    Redirect,
}

struct Script {
    /// (cmdlet or `*`, act), first match used once.
    acts: Mutex<Vec<(String, Act)>>,
    /// Requests by cmdlet (`X-CmdletName`; `PowerShell-LiveID` for winrm).
    seen: Mutex<HashMap<String, u32>>,
    /// TLS handshakes attempted (accepted TCP connections).
    connections: AtomicU32,
    /// Requests for this tenant id are held until [`Script::gate`] opens, then get 503 with
    /// `Retry-After: 0`.
    failing_tenant: Mutex<Option<String>>,
    /// Closed (no permits) until the test opens it.
    gate: tokio::sync::Semaphore,
    /// Told when a request of the failing tenant is held.
    held: tokio::sync::Notify,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            acts: Mutex::default(),
            seen: Mutex::default(),
            connections: AtomicU32::new(0),
            failing_tenant: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
            held: tokio::sync::Notify::new(),
        }
    }
}

struct FakeExchange {
    url: String,
    /// A file holding the certificate this server presents (what `[exchange] ca_file` trusts).
    ca_file: std::path::PathBuf,
    script: Arc<Script>,
    data: Arc<ExchangeData>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeExchange {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn self_signed() -> (rustls::ServerConfig, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    (tls, ck.cert.pem())
}

impl FakeExchange {
    async fn start(mailboxes: usize) -> Self {
        let (tls, pem) = self_signed();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("fake-exchange.pem");
        std::fs::write(&ca_file, pem).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let script = Arc::new(Script::default());
        let data = Arc::new(ExchangeData::new(mailboxes));
        let (served, shared) = (script.clone(), data.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                served.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, script, data) = (acceptor.clone(), served.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_one(tls, &script, &data).await;
                    }
                });
            }
        });
        Self {
            url,
            ca_file,
            script,
            data,
            _dir: dir,
            task,
        }
    }

    fn script(&self, acts: impl IntoIterator<Item = (&'static str, Act)>) {
        self.script
            .acts
            .lock()
            .unwrap()
            .extend(acts.into_iter().map(|(c, a)| (c.to_owned(), a)));
    }

    fn seen(&self, cmdlet: &str) -> u32 {
        self.script
            .seen
            .lock()
            .unwrap()
            .get(cmdlet)
            .copied()
            .unwrap_or(0)
    }

    /// The proxy in `mode`, its `[exchange]` pointing here.
    async fn proxy(&self, mode: Mode) -> Sandboxed {
        let (url, ca) = (self.url.clone(), self.ca_file.clone());
        Sandboxed::start_tweaked(SandboxedOptions::simulated(mode, 1), move |c| {
            c.exchange.endpoint = url;
            c.exchange.ca_file = Some(ca);
        })
        .await
    }
}

/// Reads one HTTP/1.1 request (head and Content-Length body); None when the client left.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(io: &mut S) -> Option<http::Request<Bytes>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let mut builder = http::Request::builder().method(method.as_str()).uri(target);
    let mut length = 0usize;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
        builder = builder.header(name.trim(), value.trim());
    }
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    builder.body(Bytes::from(body)).ok()
}

fn response_head(status: u16, headers: &[(String, String)], extra: &str) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(extra);
    head.push_str("\r\n");
    head.into_bytes()
}

/// What simulated Exchange answers: the admin API for REST, a fixed envelope for RPS.
async fn exchange_answer(
    data: &ExchangeData,
    request: http::Request<Bytes>,
) -> http::Response<Bytes> {
    let path = request.uri().path().to_owned();
    if path.to_ascii_lowercase().starts_with("/powershell-liveid") {
        let mut rsp = http::Response::new(Bytes::from_static(
            b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body/></s:Envelope>",
        ));
        rsp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
        );
        return rsp;
    }
    let tenant_id = path.split('/').nth(3).unwrap_or_default().to_owned();
    let organization = world_tenants()
        .into_iter()
        .find(|t| t.tenant_id == tenant_id)
        .map(|t| t.organization())
        .unwrap_or_default();
    let app = AppIdentity {
        tenant_id: tenant_id.clone(),
        app_id: exo_authproxy::sandbox::DEMO_APP_ID.into(),
        organization,
    };
    exo_authproxy::sandbox::adminapi::handle(data, &app, &tenant_id, request).await
}

fn serialize(rsp: &http::Response<Bytes>) -> (Vec<u8>, Vec<u8>) {
    let headers: Vec<(String, String)> = rsp
        .headers()
        .iter()
        .filter(|(n, _)| *n != http::header::CONTENT_LENGTH)
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let head = response_head(
        rsp.status().as_u16(),
        &headers,
        &format!("Content-Length: {}\r\n", rsp.body().len()),
    );
    (head, rsp.body().to_vec())
}

async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    script: &Script,
    data: &ExchangeData,
) {
    let Some(request) = read_request(&mut io).await else {
        return;
    };
    let cmdlet = request
        .headers()
        .get("x-cmdletname")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let path = request.uri().path();
            if path.contains("EXOModuleFile") {
                "EXOModuleFile".into()
            } else {
                "PowerShell-LiveID".into()
            }
        });
    *script
        .seen
        .lock()
        .unwrap()
        .entry(cmdlet.clone())
        .or_default() += 1;
    let failing = script.failing_tenant.lock().unwrap().clone();
    let act = if failing.is_some_and(|t| request.uri().path().contains(&t)) {
        script.held.notify_one();
        let _open = script.gate.acquire().await;
        Some(Act::Status(503, Some("0")))
    } else {
        let mut acts = script.acts.lock().unwrap();
        acts.iter()
            .position(|(c, _)| *c == cmdlet || c == "*")
            .map(|i| acts.remove(i).1)
    };
    let json = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    match act {
        None => {
            let (head, body) = serialize(&exchange_answer(data, request).await);
            let _ = io.write_all(&[head, body].concat()).await;
        }
        Some(Act::Status(status, retry_after)) => {
            let mut headers = json;
            if let Some(r) = retry_after {
                headers.push(("Retry-After".into(), r.into()));
            }
            let head = response_head(status, &headers, "Content-Length: 2\r\n");
            let _ = io.write_all(&[head, b"{}".to_vec()].concat()).await;
        }
        Some(Act::RunThenDrop) => {
            let _ = exchange_answer(data, request).await;
            return; // dropped unanswered
        }
        Some(Act::Cut) => {
            let (head, body) = serialize(&exchange_answer(data, request).await);
            let _ = io.write_all(&head).await;
            let _ = io.write_all(&body[..body.len() / 2]).await;
            let _ = io.flush().await;
            return;
        }
        Some(Act::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            let (head, body) = serialize(&exchange_answer(data, request).await);
            let _ = io.write_all(&[head, body].concat()).await;
        }
        Some(Act::Flood) | Some(Act::Trickle) => {
            let flood = matches!(act, Some(Act::Flood));
            let head = response_head(200, &json, "Transfer-Encoding: chunked\r\n");
            if io.write_all(&head).await.is_err() {
                return;
            }
            let chunk = if flood {
                let mut c = format!("{:x}\r\n", 64 * 1024).into_bytes();
                c.extend(std::iter::repeat_n(b' ', 64 * 1024));
                c.extend_from_slice(b"\r\n");
                c
            } else {
                b"1\r\n \r\n".to_vec()
            };
            loop {
                if !flood {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                if io.write_all(&chunk).await.is_err() || io.flush().await.is_err() {
                    return;
                }
            }
        }
        Some(Act::Redirect) => {
            let location = format!("{}", request.uri());
            let head = response_head(
                302,
                &[("Location".into(), location)],
                "Content-Length: 0\r\n",
            );
            let _ = io.write_all(&head).await;
        }
    }
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

fn get_mailbox() -> Cmd {
    Cmd::new("Get-Mailbox", [])
}

fn set_mailbox(value: &str) -> Cmd {
    Cmd::new(
        "Set-Mailbox",
        [
            colon("Identity", s("AlexW")),
            colon("CustomAttribute1", s(value)),
        ],
    )
}

/// The terminating error's message of a failed pipeline.
fn failed(run: &Run) -> String {
    assert_eq!(run.state, state::FAILED, "expected a failure: {run:?}");
    run.state_error
        .as_ref()
        .map(|e| e.message.clone())
        .or_else(|| run.errors.first().map(|e| e.message.clone()))
        .expect("an error record")
}

/// `CustomAttribute1` of `AlexW` in `tenant_id`, as Exchange holds it.
async fn custom_attribute(fake: &FakeExchange, tenant_id: &str, organization: &str) -> String {
    let body = serde_json::json!({"CmdletInput": {"CmdletName": "Get-Mailbox",
        "Parameters": {"Identity": "AlexW"}}});
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("/adminapi/beta/{tenant_id}/InvokeCommand"))
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let app = AppIdentity {
        tenant_id: tenant_id.into(),
        app_id: exo_authproxy::sandbox::DEMO_APP_ID.into(),
        organization: organization.into(),
    };
    let rsp = exo_authproxy::sandbox::adminapi::handle(&fake.data, &app, tenant_id, request).await;
    let json: serde_json::Value = serde_json::from_slice(rsp.body()).unwrap();
    json["value"][0]["CustomAttribute1"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Exchange faults.
// ---------------------------------------------------------------------------------------

/// 503 and 429 are Exchange saying it did not run the command: retried (any verb), then the
/// real answer. A 429 storm longer than the retries is a ThrottlingError with the way out.
#[tokio::test]
async fn exchange_5xx_and_a_429_storm_are_retried_then_a_clear_throttling_error_issue_13() {
    let fake = FakeExchange::start(5).await;
    let h = fake.proxy(Mode::Rest).await;
    let (mut w, _) = Wire::open(&h, false).await;

    fake.script([
        ("Get-Mailbox", Act::Status(503, Some("0"))),
        ("Get-Mailbox", Act::Status(429, Some("0"))),
    ]);
    let run = w.run(&[get_mailbox()], None).await;
    assert_eq!(run.state, state::COMPLETED, "{run:?}");
    assert_eq!(run.outputs.len(), 5);
    assert_eq!(fake.seen("Get-Mailbox"), 3);

    // A Set- refused with 503 did not run: sent again, and it ran once.
    fake.script([("Set-Mailbox", Act::Status(503, Some("0")))]);
    let run = w.run(&[set_mailbox("after-503")], None).await;
    assert_eq!(run.state, state::COMPLETED, "{run:?}");
    assert_eq!(fake.seen("Set-Mailbox"), 2);
    assert_eq!(
        custom_attribute(&fake, CONTOSO_ID, "contoso.onmicrosoft.com").await,
        "after-503"
    );

    // The storm: six 429s, five retries.
    fake.script((0..6).map(|_| ("Get-Mailbox", Act::Status(429, Some("0")))));
    let message = failed(&w.run(&[get_mailbox()], None).await);
    assert!(
        message.contains("throttling this tenant (contoso)")
            && message.contains("after 5 retries")
            && message.contains("run fewer commands in parallel"),
        "{message}"
    );
    assert_eq!(fake.seen("Get-Mailbox"), 3 + 6);
    // And the next command is served.
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
}

/// The connection breaks after Exchange ran the command: a Get- is asked again (complete, no
/// object twice), a Set- is not sent again and the error says it may have run. Likewise a
/// 504. In winrm mode no WS-Man request is sent twice.
#[tokio::test]
async fn a_connection_cut_resends_a_get_but_never_a_set_issue_13() {
    let fake = FakeExchange::start(5).await;
    let h = fake.proxy(Mode::Rest).await;
    let (mut w, _) = Wire::open(&h, false).await;
    let mut expected = w.run(&[get_mailbox()], None).await.names();
    expected.sort();
    assert_eq!(expected.len(), 5);
    assert_eq!(fake.seen("Get-Mailbox"), 1);

    // Cut mid-page, and dropped before an answer: asked again each time.
    fake.script([("Get-Mailbox", Act::Cut), ("Get-Mailbox", Act::RunThenDrop)]);
    let run = w.run(&[get_mailbox()], None).await;
    assert_eq!(run.state, state::COMPLETED, "{run:?}");
    let mut names = run.names();
    names.sort();
    assert_eq!(names, expected, "every mailbox once");
    assert_eq!(fake.seen("Get-Mailbox"), 1 + 3);

    // The Set- ran, its answer was lost: not sent again.
    fake.script([("Set-Mailbox", Act::RunThenDrop)]);
    let message = failed(&w.run(&[set_mailbox("ran-once")], None).await);
    assert!(
        message.contains("Set-Mailbox")
            && message.contains("may or may not have run")
            && message.contains("before running it again"),
        "{message}"
    );
    assert_eq!(fake.seen("Set-Mailbox"), 1, "never resent");
    assert_eq!(
        custom_attribute(&fake, CONTOSO_ID, "contoso.onmicrosoft.com").await,
        "ran-once"
    );

    // Its answer cut in the middle: the same.
    fake.script([("Set-Mailbox", Act::Cut)]);
    let message = failed(&w.run(&[set_mailbox("cut")], None).await);
    assert!(message.contains("may or may not have run"), "{message}");
    assert_eq!(fake.seen("Set-Mailbox"), 2);

    // A gateway timeout: a Get- asked again, a Set- not.
    fake.script([("Get-Mailbox", Act::Status(504, None))]);
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    assert_eq!(fake.seen("Get-Mailbox"), 1 + 5);
    fake.script([("Set-Mailbox", Act::Status(504, None))]);
    let message = failed(&w.run(&[set_mailbox("gateway")], None).await);
    assert!(
        message.contains("HTTP 504") && message.contains("may or may not have run"),
        "{message}"
    );
    assert_eq!(fake.seen("Set-Mailbox"), 3);

    // winrm: the envelope is opaque, so nothing that was sent is sent again.
    let h = fake.proxy(Mode::Winrm).await;
    let client = h.client();
    fake.script([("PowerShell-LiveID", Act::RunThenDrop)]);
    let rsp = h.post(&client, "", "<s:Envelope/>").await;
    assert_eq!(rsp.status(), 500);
    assert_eq!(
        rsp.headers()["x-exo-authproxy-error"],
        "upstream-unreachable"
    );
    assert_eq!(fake.seen("PowerShell-LiveID"), 1, "never resent");
    let rsp = h.post(&client, "", "<s:Envelope/>").await;
    assert_eq!(rsp.status(), 200, "the next request is served");
    assert_eq!(fake.seen("PowerShell-LiveID"), 2);
}

/// A slow Exchange is waited for; one slower than the cmdlet's timeout is an error saying so,
/// and a Set- that timed out is not sent again. A page that never ends is cut off by bytes
/// (32 MiB) or by time, naming the cmdlet.
#[tokio::test]
async fn slow_exchange_and_a_page_that_never_ends_are_bounded_issue_13() {
    let fake = FakeExchange::start(5).await;
    let h = fake.proxy(Mode::Rest).await;
    let (mut w, _) = Wire::open(&h, false).await;

    // By bytes (real time: the flood is fast).
    fake.script([("Get-Mailbox", Act::Flood)]);
    let message = failed(&w.run(&[get_mailbox()], None).await);
    assert!(
        message.contains("answer to Get-Mailbox is larger than")
            && message.contains(&format!("{} bytes", 32 * 1024 * 1024)),
        "{message}"
    );
    assert_eq!(fake.seen("Get-Mailbox"), 1);

    // By time: the clock jumps to the server's and the bridge's timers.
    tokio::time::pause();
    fake.script([("Get-Mailbox", Act::Delay(Duration::from_secs(300)))]);
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    fake.script([("Get-Mailbox", Act::Trickle)]);
    let message = failed(&w.run(&[get_mailbox()], None).await);
    assert!(
        message.contains("did not finish Get-Mailbox within 960 seconds"),
        "{message}"
    );
    fake.script([("Set-Mailbox", Act::Delay(Duration::from_secs(2000)))]);
    let message = failed(&w.run(&[set_mailbox("slow")], None).await);
    assert!(
        message.contains("did not finish Set-Mailbox within 960 seconds")
            && message.contains("may or may not have run"),
        "{message}"
    );
    assert_eq!(
        fake.seen("Get-Mailbox"),
        3,
        "a timed-out request is not resent"
    );
    assert_eq!(fake.seen("Set-Mailbox"), 1);
    tokio::time::resume();
}

/// winrm mode: Exchange's 5xx and 429 reach the client as Exchange sent them (the client's
/// WinRM stack decides), and an Exchange slower than the request's deadline (its
/// OperationTimeout plus a margin) is an `upstream-timeout` fault; neither is sent twice.
#[tokio::test]
async fn winrm_mode_passes_5xx_through_and_bounds_a_slow_exchange_without_resending_issue_13() {
    let fake = FakeExchange::start(5).await;
    let h = fake.proxy(Mode::Winrm).await;
    let client = h.client();
    fake.script([
        ("PowerShell-LiveID", Act::Status(503, Some("0"))),
        ("PowerShell-LiveID", Act::Status(429, Some("7"))),
    ]);
    let rsp = h.post(&client, "", "<s:Envelope/>").await;
    assert_eq!(rsp.status(), 503);
    assert!(rsp.headers().get("x-exo-authproxy-error").is_none());
    let rsp = h.post(&client, "", "<s:Envelope/>").await;
    assert_eq!(rsp.status(), 429);
    assert_eq!(rsp.headers()["retry-after"], "7");
    assert_eq!(fake.seen("PowerShell-LiveID"), 2);

    tokio::time::pause();
    fake.script([("PowerShell-LiveID", Act::Delay(Duration::from_secs(300)))]);
    let envelope = "<s:Envelope><w:OperationTimeout>PT20S</w:OperationTimeout></s:Envelope>";
    let (code, text) = fault(h.post(&client, "", envelope).await).await;
    assert_eq!(code, "upstream-timeout");
    assert!(text.contains("did not answer within 50s"), "{text}");
    assert_eq!(fake.seen("PowerShell-LiveID"), 3, "not resent");
    tokio::time::resume();
}

/// Exchange presenting a certificate the proxy does not trust: a clear error naming the
/// certificate and `[exchange] ca_file`, in both modes, and not retried (it cannot heal).
#[tokio::test]
async fn an_untrusted_exchange_certificate_is_a_clear_error_not_a_retry_issue_13() {
    let fake = FakeExchange::start(5).await;
    let (_, other_pem) = self_signed();
    std::fs::write(&fake.ca_file, other_pem).unwrap();

    let h = fake.proxy(Mode::Rest).await;
    let (mut w, _) = Wire::open(&h, false).await;
    let before = fake.script.connections.load(Ordering::SeqCst);
    let message = failed(&w.run(&[get_mailbox()], None).await);
    assert!(
        message.contains("certificate") && message.contains("[exchange] ca_file"),
        "{message}"
    );
    assert_eq!(
        fake.script.connections.load(Ordering::SeqCst) - before,
        2,
        "one handshake for the cmdlet list (EXOModuleFile), one for the command: no retries"
    );

    let h = fake.proxy(Mode::Winrm).await;
    let rsp = h.post(&h.client(), "", "<s:Envelope/>").await;
    assert_eq!(
        rsp.headers()["x-exo-authproxy-error"],
        "upstream-unreachable"
    );
    let text = rsp.text().await.unwrap();
    assert!(
        text.contains("certificate") && text.contains("[exchange] ca_file"),
        "{text}"
    );
    assert_eq!(fake.seen("PowerShell-LiveID"), 0, "no request went out");
}

/// Exchange redirecting to itself for ever: winrm follows five hops and stops with a fault;
/// rest mode (the REST API never redirects) stops at the first.
#[tokio::test]
async fn a_redirect_loop_is_cut_off_issue_13() {
    let fake = FakeExchange::start(5).await;
    fake.script((0..20).map(|_| ("PowerShell-LiveID", Act::Redirect)));
    let h = fake.proxy(Mode::Winrm).await;
    let rsp = h.post(&h.client(), "", "<s:Envelope/>").await;
    assert_eq!(rsp.headers()["x-exo-authproxy-error"], "too-many-redirects");
    let text = rsp.text().await.unwrap();
    assert!(text.contains("redirected more than 5 times"), "{text}");
    assert_eq!(fake.seen("PowerShell-LiveID"), 6);

    let h = fake.proxy(Mode::Rest).await;
    let (mut w, _) = Wire::open(&h, false).await;
    fake.script([("Get-Mailbox", Act::Redirect)]);
    let message = failed(&w.run(&[get_mailbox()], None).await);
    assert!(message.contains("HTTP 302"), "{message}");
    assert_eq!(fake.seen("Get-Mailbox"), 1);
}

/// One tenant's Exchange failing does not hold up another's: while contoso's command is held
/// at Exchange (and then refused with 503s until its retries run out), a whole northwind
/// session with the real pypsrp client is served by the same proxy.
#[tokio::test]
async fn one_tenant_failing_while_others_serve_issue_13() {
    let fake = FakeExchange::start(5).await;
    *fake.script.failing_tenant.lock().unwrap() = Some(CONTOSO_ID.into());
    let h = fake.proxy(Mode::Rest).await;
    let (mut contoso, _) = Wire::open(&h, false).await;
    let failing_cmd = [get_mailbox()];
    let (failing, served) = tokio::join!(contoso.run(&failing_cmd, None), async {
        fake.script.held.notified().await;
        let out = python::run_script("proxy_session.py", h.pypsrp_env(NORTHWIND)).await;
        fake.script.gate.add_permits(100);
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let served: serde_json::Value = serde_json::from_str(served.trim()).expect("pypsrp's JSON");
    assert_eq!(served["ok"], true, "{served}");
    assert_eq!(served["mailboxes"], 5, "{served}");
    let message = failed(&failing);
    assert!(message.contains("HTTP 503"), "{message}");
    assert_eq!(
        fake.seen("Get-Mailbox"),
        1 + 6,
        "northwind's one, contoso's first and five retries"
    );
}

// ---------------------------------------------------------------------------------------
// Entra faults.
// ---------------------------------------------------------------------------------------

/// The text of a proxy-made WS-Man fault.
async fn fault(rsp: reqwest::Response) -> (String, String) {
    let code = rsp.headers()["x-exo-authproxy-error"]
        .to_str()
        .unwrap()
        .to_owned();
    (code, rsp.text().await.unwrap())
}

/// Entra answering 503, 429 with Retry-After: retried, the session works, and the token is
/// cached (one Entra request for the next commands). Entra down for a tenant whose token is
/// not cached: a fault naming Entra and what to do; the failure is not cached, so the next
/// request after Entra recovers is served.
#[tokio::test]
async fn entra_failing_is_retried_and_a_cold_tenant_gets_a_clear_fault_issue_13() {
    let h = Sandboxed::start(SandboxedOptions::simulated(Mode::Rest, 5)).await;
    h.world
        .entra
        .fail_next(2, http::StatusCode::SERVICE_UNAVAILABLE);
    let (mut w, _) = Wire::open(&h, false).await;
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    assert_eq!(
        h.world.entra.token_requests(CONTOSO_ID),
        3,
        "two 503s, then the token"
    );

    h.world.entra.throttle_next(1, 1);
    let rsp = h.post(&h.client(), NORTHWIND, "<s:Envelope/>").await;
    assert_ne!(
        rsp.headers()
            .get("x-exo-authproxy-error")
            .map(|v| v.to_str().unwrap()),
        Some("token-unavailable"),
        "a 429 with Retry-After: 1 is waited out"
    );
    assert_eq!(h.world.entra.token_requests(NORTHWIND_ID), 2);

    // Down, with fabrikam cold; contoso keeps working on its cached token.
    h.world
        .entra
        .fail_next(100, http::StatusCode::INTERNAL_SERVER_ERROR);
    let client = h.client();
    let rsp = h
        .post(
            &client,
            "DelegatedOrg=fabrikam.onmicrosoft.com",
            "<s:Envelope/>",
        )
        .await;
    assert_eq!(rsp.status(), 500);
    let (code, text) = fault(rsp).await;
    assert_eq!(code, "token-unavailable");
    assert!(
        text.contains("fabrikam")
            && text.contains("HTTP 500 Internal Server Error: AADSTS")
            && text.contains("an outage or throttling at Entra ID")
            && text.contains("after 4 attempt(s)")
            && text.contains("already cached keep working"),
        "{text}"
    );
    assert_eq!(
        h.world
            .entra
            .token_requests("7d2e4f60-aaaa-bbbb-cccc-ddddeeeeffff"),
        4
    );
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);

    h.world
        .entra
        .fail_next(0, http::StatusCode::INTERNAL_SERVER_ERROR);
    let rsp = h
        .post(
            &client,
            "DelegatedOrg=fabrikam.onmicrosoft.com",
            "<s:Envelope/>",
        )
        .await;
    assert_ne!(
        rsp.headers()
            .get("x-exo-authproxy-error")
            .map(|v| v.to_str().unwrap()),
        Some("token-unavailable"),
        "the failure was not cached"
    );
}

/// Entra slower than the per-attempt timeout (15 s): four attempts, then a fault; when it is
/// merely slow, the token arrives. Time is paused once the session is up.
#[tokio::test]
async fn a_slow_entra_is_bounded_per_attempt_issue_13() {
    let h = Sandboxed::start(SandboxedOptions::simulated(Mode::Rest, 5)).await;
    let (mut w, _) = Wire::open(&h, false).await;
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);

    tokio::time::pause();
    h.world.entra.set_latency(Duration::from_secs(20));
    let client = h.client();
    let rsp = h.post(&client, NORTHWIND, "<s:Envelope/>").await;
    let (code, text) = fault(rsp).await;
    assert_eq!(code, "token-unavailable");
    assert!(
        text.contains("northwind")
            && text.contains("timed out")
            && text.contains("[entra] authority"),
        "{text}"
    );
    assert!(text.contains("after 4 attempt(s)"), "{text}");

    // Merely slow: waited for (in real time: the clock is not paused across the handshake).
    tokio::time::resume();
    h.world.entra.set_latency(Duration::from_secs(1));
    let rsp = h.post(&client, NORTHWIND, "<s:Envelope/>").await;
    let code = rsp
        .headers()
        .get("x-exo-authproxy-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = rsp.text().await.unwrap();
    assert_ne!(code.as_deref(), Some("token-unavailable"), "{body}");
    assert_eq!(
        h.world.entra.token_requests(NORTHWIND_ID),
        1,
        "only the answered one counts"
    );
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
}

/// What the man in the middle does to simulated Entra's token answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntraMitm {
    /// Pass them on.
    Pass,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Say `expires_in: 3600` whatever the token's `exp`.
    LongerExpiresIn,
}

struct FakeEntra {
    mode: Arc<Mutex<EntraMitm>>,
    requests: Arc<AtomicU32>,
    authority: Arc<Mutex<Option<(String, std::path::PathBuf)>>>,
    url: String,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEntra {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEntra {
    async fn start() -> Self {
        let (tls, pem) = self_signed();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("fake-entra.pem");
        std::fs::write(&ca_file, pem).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(EntraMitm::Pass));
        let requests = Arc::new(AtomicU32::new(0));
        let authority: Arc<Mutex<Option<(String, std::path::PathBuf)>>> = Arc::default();
        let (m, r, a) = (mode.clone(), requests.clone(), authority.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, m, r, a) = (acceptor.clone(), m.clone(), r.clone(), a.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(request) = read_request(&mut tls).await else {
                        return;
                    };
                    r.fetch_add(1, Ordering::SeqCst);
                    let mode = *m.lock().unwrap();
                    let (status, body) = if mode == EntraMitm::Garbage {
                        (200, b"<html>captive portal</html>".to_vec())
                    } else {
                        let (base, ca) = a.lock().unwrap().clone().expect("authority set");
                        let pem = std::fs::read(ca).unwrap();
                        let http = reqwest::Client::builder()
                            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
                            .build()
                            .unwrap();
                        // Simulated Entra checks the assertion's aud against the URL it
                        // was posted to, which is this server's.
                        let host = request.headers()[http::header::HOST].clone();
                        let rsp = http
                            .post(format!("{base}{}", request.uri()))
                            .header(http::header::HOST, host)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(request.into_body())
                            .send()
                            .await;
                        let rsp = rsp.expect("simulated Entra answers");
                        let status = rsp.status().as_u16();
                        let mut json: serde_json::Value = rsp.json().await.unwrap();
                        if mode == EntraMitm::LongerExpiresIn && status == 200 {
                            json["expires_in"] = 3600.into();
                        }
                        (status, json.to_string().into_bytes())
                    };
                    let head = response_head(
                        status,
                        &[("Content-Type".into(), "application/json".into())],
                        &format!("Content-Length: {}\r\n", body.len()),
                    );
                    let _ = tls.write_all(&[head, body].concat()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            mode,
            requests,
            authority,
            url,
            ca_file,
            _dir: dir,
            task,
        }
    }

    /// The proxy (rest mode) with `[entra]` pointing here; this forwards to simulated Entra.
    async fn proxy(&self) -> Sandboxed {
        let (url, ca, authority) = (
            self.url.clone(),
            self.ca_file.clone(),
            self.authority.clone(),
        );
        Sandboxed::start_tweaked(SandboxedOptions::simulated(Mode::Rest, 5), move |c| {
            let original = (
                c.entra.authority.clone(),
                c.entra
                    .ca_file
                    .clone()
                    .expect("the sandbox sets [entra] ca_file"),
            );
            *authority.lock().unwrap() = Some(original);
            c.entra.authority = url;
            c.entra.ca_file = Some(ca);
        })
        .await
    }
}

/// Entra unreachable, or something answering 200 with garbage where Entra should be (a
/// captive portal): a fault naming the token endpoint and what to check; garbage is not
/// retried (it will not improve) and not cached (the next request asks again).
#[tokio::test]
async fn entra_unreachable_or_answering_garbage_is_a_clear_fault_issue_13() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let h = Sandboxed::start_tweaked(SandboxedOptions::simulated(Mode::Rest, 5), move |c| {
        c.entra.authority = dead;
    })
    .await;
    let (code, text) = fault(h.post(&h.client(), "", "<s:Envelope/>").await).await;
    assert_eq!(code, "token-unavailable");
    assert!(
        text.contains("Entra ID could not be reached")
            && text.contains("[entra] authority")
            && text.contains("after 4 attempt(s)"),
        "{text}"
    );

    let entra = FakeEntra::start().await;
    *entra.mode.lock().unwrap() = EntraMitm::Garbage;
    let h = entra.proxy().await;
    let client = h.client();
    let (code, text) = fault(h.post(&client, "", "<s:Envelope/>").await).await;
    assert_eq!(code, "token-unavailable");
    assert!(
        text.contains("not the expected JSON") && text.contains("[entra] authority"),
        "{text}"
    );
    assert_eq!(
        entra.requests.load(Ordering::SeqCst),
        1,
        "garbage is not retried"
    );
    *entra.mode.lock().unwrap() = EntraMitm::Pass;
    let (mut w, _) = Wire::open(&h, false).await;
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    assert_eq!(
        entra.requests.load(Ordering::SeqCst),
        2,
        "the failure was not cached"
    );
}

/// A token that expires early: `expires_in` says an hour but the token's `exp` is 15 minutes
/// away. The cache believes the earlier of the two, so the token is handed out until 5
/// minutes before its real expiry (and refreshed at half of 15 minutes), not until Exchange
/// starts refusing it. And an
/// `expires_in` shorter than the safety margin is a clear fault, not a token that dies
/// mid-command.
#[tokio::test]
async fn a_token_that_expires_early_is_refreshed_by_its_exp_issue_13() {
    let entra = FakeEntra::start().await;
    *entra.mode.lock().unwrap() = EntraMitm::LongerExpiresIn;
    let h = entra.proxy().await;
    h.world.entra.set_token_lifetime(900, None);
    let (mut w, _) = Wire::open(&h, false).await;
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    assert_eq!(h.world.entra.token_requests(CONTOSO_ID), 1);

    // Believed for 15 minutes less the 5-minute margin, not for an hour.
    let health = h.tokens.health().await;
    let contoso = health
        .iter()
        .find(|(t, _)| t.0 == "contoso")
        .map(|(_, health)| health);
    match contoso {
        Some(exo_authproxy::token::Health::Usable { usable_for, .. }) => assert!(
            *usable_for <= Duration::from_secs(600) && *usable_for > Duration::from_secs(500),
            "usable for {usable_for:?}"
        ),
        other => panic!("{other:?}"),
    }

    // A lifetime below the safety margin.
    h.world.entra.set_token_lifetime(120, None);
    *entra.mode.lock().unwrap() = EntraMitm::Pass;
    let (code, text) = fault(h.post(&h.client(), NORTHWIND, "<s:Envelope/>").await).await;
    assert_eq!(code, "token-unavailable");
    assert!(
        text.contains("valid for only 120 s") && text.contains("[entra] authority"),
        "{text}"
    );
}

/// The app certificate replaced on disk while the proxy serves (a rotation in place, with
/// Entra knowing only the new certificate from then on): tokens already cached keep working,
/// and the next token request signs with the new certificate, first time, no restart.
#[cfg(unix)] // the harness mounts the config the kubelet's way (symlinks)
#[tokio::test]
async fn a_replaced_app_certificate_is_used_for_the_next_token_without_an_outage_issue_13() {
    use exo_authproxy::sandbox::{DEMO_APP_ID, entra, pki};
    let mut options = SandboxedOptions::simulated(Mode::Rest, 5);
    options.reload_from_mount = true; // the production file watch, polling every 50 ms
    let h = Sandboxed::start(options).await;
    let (mut w, _) = Wire::open(&h, false).await;
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    let contoso = exo_authproxy::config::TenantName("contoso".into());
    let loaded = |h: &Sandboxed| {
        h.tokens
            .target(&contoso)
            .and_then(|t| t.credential.as_ref().ok().map(|c| c.describe()))
            .expect("contoso's credential loads")
    };
    let before = loaded(&h);

    let rotated = pki::AppCertificate::generate("exo-authproxy sandbox app, rotated").unwrap();
    h.world.entra.register_app(entra::App {
        client_id: DEMO_APP_ID.into(),
        display_name: "exo-authproxy sandbox".into(),
        certificates: vec![entra::RegisteredCertificate::from(&rotated)],
        ..entra::App::default()
    });
    rotated.write_to(&h.world.dir, "app", "sandbox").unwrap();
    // The watch sees the new files and loads the new pair (a half-written pair would keep the
    // old one, never leave the tenant without a credential).
    tokio::time::timeout(Duration::from_secs(120), async {
        while loaded(&h) == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the rotated certificate is loaded");

    // No outage: contoso's cached token still serves.
    assert_eq!(w.run(&[get_mailbox()], None).await.outputs.len(), 5);
    // The next token (northwind's first, and a forced one for contoso) uses the new pair.
    let rsp = h.post(&h.client(), NORTHWIND, "<s:Envelope/>").await;
    let code = rsp
        .headers()
        .get("x-exo-authproxy-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = rsp.text().await.unwrap();
    assert_ne!(code.as_deref(), Some("token-unavailable"), "{body}");
    assert_eq!(
        h.world.entra.token_requests(NORTHWIND_ID),
        1,
        "accepted at once"
    );
    h.tokens
        .refresh(&contoso)
        .await
        .expect("a token signed with the rotated certificate");
}
