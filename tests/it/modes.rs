//! Both upstream modes behind one door (issues #11, #12): the same pre-flight policy and the
//! same refusal texts in `winrm` and `rest` mode, tokens only to Exchange's hosts, forced
//! refreshes bounded per tenant, rest-mode faults marked and counted, and `check` asking
//! Exchange in the configured mode. Real `serve(...)` over TLS, simulators on 127.0.0.1:0.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use exo_authproxy::config::{Mode, TenantName};
use exo_authproxy::errors::PROXY_ERROR;
use exo_authproxy::sandbox::AppIdentity;
use exo_authproxy::sandbox::exchange::RpsService;
use exo_authproxy::token::claims::RoleRefusal;
use exo_authproxy::token::{
    AccessToken, CacheKey, Diagnosis, Fetched, Settings, TokenCache, TokenError, TokenSource,
};
use futures_util::future::BoxFuture;
use http::StatusCode;
use tokio::net::TcpListener;

use crate::support::harness::{
    self, Harness, Options, PASSWORD, Recorder, Sandboxed, SandboxedOptions, USER,
};

const FABRIKAM_ID: &str = "7d2e4f60-aaaa-bbbb-cccc-ddddeeeeffff";

const CREATE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action><a:MessageID>uuid:11111111-2222-3333-4444-555555555555</a:MessageID><w:OperationTimeout>PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"#;

/// A Receive for a shell that does not exist (the endpoint's `unknown-shell` fault).
const RECEIVE_UNKNOWN_SHELL: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header><a:To>https://proxy.example.com/powershell-liveid/</a:To><w:ResourceURI s:mustUnderstand="true">http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI><a:ReplyTo><a:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><a:Action s:mustUnderstand="true">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive</a:Action><w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize><a:MessageID>uuid:22222222-2222-3333-4444-555555555555</a:MessageID><w:OperationTimeout>PT20S</w:OperationTimeout><w:SelectorSet><w:Selector Name="ShellId">9D1E0F2A-0000-4000-8000-00000000DEAD</w:Selector></w:SelectorSet></s:Header><s:Body><rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive></s:Body></s:Envelope>"#;

fn fault_text(body: &str) -> String {
    let start = body
        .find("<f:Message>")
        .map_or(0, |i| i + "<f:Message>".len());
    let end = body[start..]
        .find("</f:Message>")
        .map_or(body.len(), |i| start + i);
    // The fault text is XML-escaped.
    body[start..end]
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// DESIGN.md §4's text for fabrikam, written out (not computed by the code under test).
fn design_role_text(app_id: &str) -> String {
    format!(
        "tenant fabrikam: Exchange refused app {app_id}, whose token carries no supported directory role: \
         assign Exchange Administrator to the app's service principal in fabrikam (fabrikam.onmicrosoft.com) \
         (Entra admin center → Roles and administrators → Exchange Administrator → Add assignment), or give it \
         an Exchange role group; then retry (tokens keep their roles until refreshed)"
    )
}

fn sample(metrics: &str, line_start: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn pypsrp(h: &Sandboxed, query: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut env = h.pypsrp_env(query);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let out = crate::support::python::run_script("proxy_session.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pypsrp failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

// ------------------------------------------------------------------------------------------
// One pre-flight policy, one refusal text
// ------------------------------------------------------------------------------------------

/// Issue #11: rest mode ignored `require_directory_role`; now the door refuses before the
/// endpoint (and Exchange) sees anything, with DESIGN.md §4's pre-flight text.
#[tokio::test]
async fn rest_mode_honours_require_directory_role_issue_11() {
    let mut options = SandboxedOptions::simulated(Mode::Rest, 3);
    for t in &mut options.tenants {
        t.require_directory_role = true;
    }
    let h = Sandboxed::start(options).await;
    let client = h.client();
    let rsp = h
        .post(&client, "DelegatedOrg=northwind.onmicrosoft.com", CREATE)
        .await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(rsp.headers()[PROXY_ERROR], "directory-role-required");
    let text = fault_text(&rsp.text().await.unwrap());
    assert!(
        text.starts_with(
            "tenant northwind: refused before contacting Exchange (require_directory_role = true): \
             the token of app "
        ),
        "{text}"
    );
    assert!(text.contains("Add assignment"), "{text}");
    assert_eq!(
        h.world.exchange.counters.requests.load(Ordering::SeqCst),
        0,
        "refused before Exchange"
    );
    // contoso has the role: the endpoint answers (its own fault for this bare envelope,
    // never the policy's).
    let rsp = h.post(&client, "", CREATE).await;
    assert_ne!(
        rsp.headers()
            .get(PROXY_ERROR)
            .map(|v| v.to_str().unwrap().to_owned())
            .as_deref(),
        Some("directory-role-required")
    );
    let (_, metrics) = h.admin_get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "exo_authproxy_requests_total{mode=\"rest\",endpoint=\"exchange\",outcome=\"directory-role-required\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Issue #11: the same §4 text for an app Exchange refuses, whichever mode the proxy runs
/// in, as the real client (pypsrp) shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_app_gets_the_same_design_text_in_both_modes_issue_11() {
    let mut seen = Vec::new();
    for mode in [Mode::Winrm, Mode::Rest] {
        let h = Sandboxed::start(SandboxedOptions::simulated(mode, 3)).await;
        let app_id = h.world.config.entra.client_id.clone();
        let out = pypsrp(
            &h,
            "DelegatedOrg=fabrikam.onmicrosoft.com",
            &[("COMMANDS", "org")],
        )
        .await;
        let shown = match mode {
            // winrm: the shell cannot open; the fault is the text.
            Mode::Winrm => out["fault"].as_str().unwrap_or_default().to_owned(),
            // rest: the session opens (the proxy is the endpoint); the cmdlet fails with it.
            Mode::Rest => out["org_errors"][0].as_str().unwrap_or_default().to_owned(),
        };
        assert!(
            shown.contains(&design_role_text(&app_id)),
            "{mode:?}: {out}\nexpected: {}",
            design_role_text(&app_id)
        );
        seen.push(shown);
    }
    let winrm = &seen[0];
    let rest = &seen[1];
    let common = |s: &str| {
        s[s.find("tenant fabrikam: Exchange refused app").unwrap()..]
            .trim()
            .to_owned()
    };
    assert_eq!(common(winrm), common(rest));
}

// ------------------------------------------------------------------------------------------
// Tokens go only to Exchange
// ------------------------------------------------------------------------------------------

/// Answers every RPS request with a redirect to `location`.
struct RedirectTo(String);

impl RpsService for RedirectTo {
    fn handle<'a>(
        &'a self,
        _owner: &'a str,
        _app: AppIdentity,
        _request: http::Request<Bytes>,
    ) -> BoxFuture<'a, http::Response<Bytes>> {
        Box::pin(async move {
            http::Response::builder()
                .status(StatusCode::FOUND)
                .header(http::header::LOCATION, &self.0)
                .body(Bytes::new())
                .unwrap()
        })
    }
}

/// A loopback server that counts the connections it receives and never answers.
async fn foreign_server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (addr, accepted)
}

/// Issue #12: a redirect to a host outside Exchange's family is refused with a fault that
/// says where it pointed, and the foreign host never even sees a connection (so never the
/// `Authorization: Basic OAuthUser@…:Bearer <token>` header).
#[tokio::test]
async fn a_redirect_to_a_foreign_host_is_refused_and_gets_no_token_issue_12() {
    let (foreign, accepted) = foreign_server().await;
    let location = format!(
        "https://127.0.0.1:{}/PowerShell-LiveID?steal=1",
        foreign.port()
    );
    let h = Harness::start(Options {
        rps: Arc::new(RedirectTo(location)),
        ..Options::default()
    })
    .await;
    let client = h.client();
    for _ in 0..2 {
        let rsp = h.post(&client, Some((USER, PASSWORD)), "", CREATE).await;
        assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rsp.headers()[PROXY_ERROR], "redirect-refused");
        let text = fault_text(&rsp.text().await.unwrap());
        assert!(
            text.contains(&format!(
                "Exchange redirected to \"https://127.0.0.1:{}/PowerShell-LiveID\", which is not the configured endpoint's host and port",
                foreign.port()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("https://127.0.0.1:{}", h.exchange_addr.port())),
            "names the allowed endpoint: {text}"
        );
        assert!(!text.contains("steal=1"), "no query in the text: {text}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection to the foreign host"
    );
}

/// Exchange's own pod redirect (same server under another loopback name, as Exchange sends
/// clients to `<pod>.outlook.office365.com`) is still followed and pinned.
#[tokio::test]
async fn a_redirect_within_the_family_is_followed_issue_12() {
    let rps = Arc::new(Recorder::default());
    let h = Harness::start(Options {
        rps: rps.clone(),
        ..Options::default()
    })
    .await;
    h.exchange
        .knobs
        .redirect_to_pod
        .store(true, Ordering::SeqCst);
    let client = h.client();
    for _ in 0..2 {
        let rsp = h.post(&client, Some((USER, PASSWORD)), "", CREATE).await;
        assert_eq!(rsp.status(), StatusCode::OK);
    }
    assert_eq!(h.exchange.counters.redirects.load(Ordering::SeqCst), 1);
    assert_eq!(h.exchange.counters.pod_requests.load(Ordering::SeqCst), 2);
}

/// Serves like [`Recorder`], but answers 503 while `fail` is above zero.
#[derive(Default)]
struct Flaky {
    inner: Recorder,
    fail: AtomicU32,
}

impl RpsService for Flaky {
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        app: AppIdentity,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'a, http::Response<Bytes>> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async {
                http::Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body(Bytes::from_static(b"pod draining"))
                    .unwrap()
            });
        }
        self.inner.handle(owner, app, request)
    }
}

/// Issue #12: the pin used to last for the life of the process; a 5xx from the pinned pod
/// now drops it, and the next request goes back to the endpoint (which redirects afresh).
#[tokio::test]
async fn a_pin_is_dropped_after_its_pod_fails_issue_12() {
    let rps = Arc::new(Flaky::default());
    let h = Harness::start(Options {
        rps: rps.clone(),
        ..Options::default()
    })
    .await;
    h.exchange
        .knobs
        .redirect_to_pod
        .store(true, Ordering::SeqCst);
    let client = h.client();
    let post = || h.post(&client, Some((USER, PASSWORD)), "", CREATE);
    assert_eq!(post().await.status(), StatusCode::OK);
    assert_eq!(post().await.status(), StatusCode::OK);
    let redirects = || h.exchange.counters.redirects.load(Ordering::SeqCst);
    assert_eq!(redirects(), 1, "pinned");
    rps.fail.store(1, Ordering::SeqCst);
    assert_eq!(
        post().await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "Exchange's 503 is relayed"
    );
    assert_eq!(post().await.status(), StatusCode::OK);
    assert_eq!(
        redirects(),
        2,
        "the failed pod was forgotten: redirected again"
    );
    assert_eq!(post().await.status(), StatusCode::OK);
    assert_eq!(redirects(), 2, "and the new pod is pinned");
}

// ------------------------------------------------------------------------------------------
// Forced refreshes are bounded
// ------------------------------------------------------------------------------------------

/// Counts fetches; every token lives an hour and carries no directory role.
#[derive(Default)]
struct Counting {
    fetches: AtomicU64,
}

impl TokenSource for Counting {
    fn fetch<'a>(&'a self, _key: &'a CacheKey) -> BoxFuture<'a, Result<Fetched, TokenError>> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Fetched {
                token: AccessToken {
                    token: exo_authproxy::secret::Secret::new(format!("tok-{n}")),
                    expires_at: std::time::SystemTime::now() + Duration::from_secs(3600),
                    uti: None,
                    diagnosis: Diagnosis::Warning("no role".into()),
                },
                lifetime: Duration::from_secs(3600),
                refresh_in: None,
            })
        })
    }
}

/// Issue #12: every 401/403 forced an Entra request. A storm of forced refreshes for one
/// tenant now costs one Entra request per 30 s, and the latest token is reused between.
#[tokio::test(start_paused = true)]
async fn a_refresh_storm_costs_entra_one_request_per_interval_issue_12() {
    let cache = TokenCache::new(Counting::default(), Settings::default());
    let key = CacheKey {
        audience: exo_authproxy::token::Audience::Exchange,
        authority: "https://login.microsoftonline.com".into(),
        tenant: TenantName("fabrikam".into()),
        client_id: "app".into(),
    };
    let other = CacheKey {
        tenant: TenantName("contoso".into()),
        ..key.clone()
    };
    let first = cache.acquire(&key).await.unwrap();
    assert_eq!(first.token.expose(), "tok-0");
    let refreshed = cache.refresh(&key).await.unwrap();
    assert_eq!(
        refreshed.token.expose(),
        "tok-1",
        "the first forced refresh fetches"
    );
    for _ in 0..100 {
        tokio::time::advance(Duration::from_millis(250)).await; // 25 s of 401s
        let again = cache.refresh(&key).await.unwrap();
        assert_eq!(again.token.expose(), "tok-1", "the latest token is reused");
    }
    assert_eq!(cache.source().fetches.load(Ordering::SeqCst), 2);
    // Another tenant is not held back by fabrikam's storm.
    cache.acquire(&other).await.unwrap();
    assert_eq!(cache.refresh(&other).await.unwrap().token.expose(), "tok-3");
    // After the interval, the next forced refresh asks Entra again.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(cache.refresh(&key).await.unwrap().token.expose(), "tok-4");
    assert_eq!(cache.source().fetches.load(Ordering::SeqCst), 5);
}

/// A source whose every token claims to live for ever.
struct Forever;

impl TokenSource for Forever {
    fn fetch<'a>(&'a self, _key: &'a CacheKey) -> BoxFuture<'a, Result<Fetched, TokenError>> {
        Box::pin(async {
            Ok(Fetched {
                token: AccessToken {
                    token: exo_authproxy::secret::Secret::new("tok".into()),
                    expires_at: std::time::SystemTime::now(),
                    uti: None,
                    diagnosis: Diagnosis::Ready,
                },
                lifetime: Duration::MAX,
                refresh_in: Some(Duration::MAX),
            })
        })
    }
}

/// Issue #12: an absurd lifetime overflowed `Instant + Duration` (a panic in the request
/// path); it is believed for a day at most.
#[tokio::test(start_paused = true)]
async fn an_absurd_token_lifetime_is_clamped_not_a_panic_issue_12() {
    let cache = TokenCache::new(Forever, Settings::default());
    let key = CacheKey {
        audience: exo_authproxy::token::Audience::Exchange,
        authority: "https://login.microsoftonline.com".into(),
        tenant: TenantName("contoso".into()),
        client_id: "app".into(),
    };
    assert_eq!(cache.acquire(&key).await.unwrap().token.expose(), "tok");
    match cache.health(&key).await {
        exo_authproxy::token::Health::Usable { usable_for, .. } => {
            assert!(
                usable_for <= exo_authproxy::token::MAX_TOKEN_LIFETIME,
                "{usable_for:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.refresh(&key).await.unwrap().token.expose(), "tok");
}

/// The same through the listener with the real token engine and simulated Entra: a script
/// hammering a tenant Exchange refuses costs Entra the first token and one forced refresh.
#[tokio::test]
async fn a_refused_tenant_hammered_through_the_proxy_costs_entra_two_requests_issue_12() {
    let h = Sandboxed::start(SandboxedOptions::simulated(Mode::Winrm, 1)).await;
    let client = h.client();
    for _ in 0..6 {
        let rsp = h
            .post(&client, "DelegatedOrg=fabrikam.onmicrosoft.com", CREATE)
            .await;
        assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rsp.headers()[PROXY_ERROR], "directory-role-missing");
    }
    assert_eq!(h.world.entra.token_requests(FABRIKAM_ID), 2);
    assert_eq!(
        h.world
            .exchange
            .counters
            .role_refusals
            .load(Ordering::SeqCst),
        2 + 5,
        "the first request retried with a newer token; the others did not resend the refused one"
    );
}

// ------------------------------------------------------------------------------------------
// rest-mode faults are the proxy's
// ------------------------------------------------------------------------------------------

/// Issue #12: the remoting endpoint's faults (here: an unknown shell) carried no
/// `X-Exo-Authproxy-Error` and were counted as `ok`.
#[tokio::test]
async fn a_rest_mode_fault_carries_the_header_and_is_counted_issue_12() {
    let h = Sandboxed::start(SandboxedOptions::simulated(Mode::Rest, 1)).await;
    let client = h.client();
    let rsp = h.post(&client, "", RECEIVE_UNKNOWN_SHELL).await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(rsp.headers()[PROXY_ERROR], "unknown-shell");
    let body = rsp.text().await.unwrap();
    assert!(body.contains("w:InvalidSelectors"), "{body}");
    let (_, metrics) = h.admin_get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "exo_authproxy_requests_total{mode=\"rest\",endpoint=\"exchange\",outcome=\"unknown-shell\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "exo_authproxy_requests_total{mode=\"rest\",endpoint=\"exchange\",outcome=\"ok\"}"
        ),
        None,
        "{metrics}"
    );
}

// ------------------------------------------------------------------------------------------
// `check` asks Exchange in the configured mode
// ------------------------------------------------------------------------------------------

async fn check(h: &Sandboxed) -> (bool, String) {
    let mut out = Vec::new();
    let ready = exo_authproxy::onboarding::check(
        &h.world.config,
        &exo_authproxy::config::ProcessEnvironment,
        None,
        &mut out,
    )
    .await
    .expect("check runs");
    (ready, String::from_utf8(out).unwrap())
}

fn row<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
}

/// Issue #12: in winrm mode `check` only probed the REST API. Now it opens (and deletes) a
/// shell on `/PowerShell-LiveID` through the forwarding code: fabrikam, which Exchange
/// refuses, fails `check` with the §4 text; northwind (Exchange RBAC only) and contoso pass.
#[tokio::test]
async fn check_in_winrm_mode_opens_and_deletes_a_shell_issue_12() {
    let h = Sandboxed::start(SandboxedOptions::simulated(Mode::Winrm, 1)).await;
    let (ready, text) = check(&h).await;
    assert!(!ready, "{text}");
    assert!(row(&text, "contoso").contains(" ok "), "{text}");
    assert!(row(&text, "northwind").contains(" ok "), "{text}");
    assert!(row(&text, "fabrikam").contains(" error "), "{text}");
    let app_id = h.world.config.entra.client_id.clone();
    assert!(
        text.contains(&format!("fabrikam (error): {}", design_role_text(&app_id))),
        "{text}"
    );
    let c = &h.world.exchange.counters;
    assert!(
        c.authorized.load(Ordering::SeqCst) >= 4,
        "contoso and northwind: a Create and a Delete each reached the RPS endpoint"
    );
    assert!(c.role_refusals.load(Ordering::SeqCst) >= 1);
}

/// And in rest mode through the bridge, with the same text for fabrikam.
#[tokio::test]
async fn check_in_rest_mode_runs_a_read_only_cmdlet_through_the_bridge_issue_12() {
    let h = Sandboxed::start(SandboxedOptions::simulated(Mode::Rest, 1)).await;
    let (ready, text) = check(&h).await;
    assert!(!ready, "{text}");
    assert!(row(&text, "contoso").contains(" ok "), "{text}");
    assert!(row(&text, "northwind").contains(" ok "), "{text}");
    let app_id = h.world.config.entra.client_id.clone();
    assert!(
        text.contains(&format!("fabrikam (error): {}", design_role_text(&app_id))),
        "{text}"
    );
}

/// The one place the role text is built says exactly what DESIGN.md §4 says.
#[test]
fn the_role_refusal_text_is_designs() {
    let text = RoleRefusal {
        tenant: TenantName("fabrikam".into()),
        organization: "fabrikam.onmicrosoft.com".into(),
        app_id: harness::APP_ID.into(),
    }
    .to_string();
    assert_eq!(text, design_role_text(harness::APP_ID));
}
