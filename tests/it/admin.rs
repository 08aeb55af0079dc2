//! The `[admin]` listener: health probes and `/metrics`, against the real proxy over the
//! sandbox world (real token engine, simulated Entra), and on its own for the drain.

use std::sync::Arc;
use std::time::Duration;

use exo_authproxy::admin::{self, Admin};
use exo_authproxy::metrics::Metrics;
use exo_authproxy::shutdown::Drain;
use http::StatusCode;
use tokio::net::TcpListener;

use crate::support::harness::{Sandboxed, SandboxedOptions, admin_get};

const ENVELOPE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header><a:MessageID>uuid:0</a:MessageID></s:Header><s:Body/></s:Envelope>"#;

/// The value of `series` (a full series name with its labels) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn readiness_names_the_tenant_without_a_token_and_metrics_count_what_happened() {
    let h = Sandboxed::start(SandboxedOptions::default()).await;
    assert_eq!(h.admin_get("/healthz/startup").await.0, 200);
    assert_eq!(h.admin_get("/healthz/liveness").await.0, 200);
    let (status, body) = h.admin_get("/healthz/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tenant contoso: ready (token fetched on first use)"),
        "{body}"
    );

    let client = h.client();
    let wrong = client
        .post(&h.url)
        .basic_auth("reporting", Some("not-the-password"))
        .body(ENVELOPE)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.post(&client, "", ENVELOPE).await.status(), StatusCode::OK);
    let (status, body) = h.admin_get("/healthz/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tenant contoso: ready (token usable for"),
        "{body}"
    );

    // Entra goes down: northwind has no token yet, so it cannot be served; contoso still is,
    // so the proxy stays ready (one tenant never takes the Service down for the others) and
    // names northwind.
    h.world
        .entra
        .fail_next(1000, StatusCode::SERVICE_UNAVAILABLE);
    let rsp = h.post(&client, "DelegatedOrg=northwind", ENVELOPE).await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let (status, body) = h.admin_get("/healthz/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("ready for 2 of 3 tenants; without a token: northwind "),
        "{body}"
    );
    assert!(body.contains("tenant northwind: NOT READY: "), "{body}");
    assert!(body.contains("503"), "Entra's answer is named: {body}");
    assert!(
        body.contains("tenant contoso: ready (token usable for"),
        "{body}"
    );

    let (status, text) = h.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let get = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
    assert_eq!(
        get("exo_authproxy_requests_total{mode=\"winrm\",endpoint=\"exchange\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        get(
            "exo_authproxy_requests_total{mode=\"winrm\",endpoint=\"exchange\",outcome=\"bad-credentials\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            "exo_authproxy_requests_total{mode=\"winrm\",endpoint=\"exchange\",outcome=\"token-unavailable\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            "exo_authproxy_token_requests_total{tenant=\"contoso\",audience=\"exchange\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            "exo_authproxy_token_requests_total{tenant=\"northwind\",audience=\"exchange\",result=\"error\"}"
        ),
        1.0
    );
    assert_eq!(
        get("exo_authproxy_token_failing{tenant=\"northwind\",audience=\"exchange\"}"),
        1.0
    );
    assert_eq!(
        get("exo_authproxy_token_failing{tenant=\"contoso\",audience=\"exchange\"}"),
        0.0
    );
    assert!(
        get("exo_authproxy_token_usable_seconds{tenant=\"contoso\",audience=\"exchange\"}") > 60.0
    );
    // One client, keep-alive: the three requests shared one connection, still open.
    assert_eq!(get("exo_authproxy_connections_total"), 1.0);
    assert_eq!(get("exo_authproxy_connections_open"), 1.0);
    assert_eq!(
        get("exo_authproxy_request_duration_seconds_count{mode=\"winrm\"}"),
        3.0
    );
    assert!(
        !text.contains("Bearer") && !text.contains("eyJ"),
        "no token in {text}"
    );
}

#[tokio::test]
async fn unknown_paths_get_the_list_of_endpoints_and_writes_are_refused() {
    let h = Sandboxed::start(SandboxedOptions::default()).await;
    let (status, body) = h.admin_get("/health").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("/healthz/readiness") && body.contains("/metrics"),
        "{body}"
    );
    let rsp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}/metrics", h.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn readiness_turns_503_when_the_drain_begins_and_liveness_stays_200() {
    let h = Sandboxed::start(SandboxedOptions::default()).await;
    let drain = Drain::new(Duration::from_secs(1));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(admin::serve(
        listener,
        Arc::new(Admin {
            metrics: Arc::new(Metrics::new()),
            tokens: h.tokens.clone(),
            drain: drain.clone(),
            sessions: None,
            quit: Default::default(),
        }),
    ));
    assert_eq!(admin_get(addr, "/healthz/readiness").await.0, 200);
    drain.token().cancel();
    let (status, body) = admin_get(addr, "/healthz/readiness").await;
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(admin_get(addr, "/healthz/liveness").await.0, 200);
    served.abort();
}

/// rest mode: `/metrics` reports the remote PowerShell sessions the proxy hosts, from a real
/// WS-Man Create (as Windows PowerShell sends it) through the proxy to its Delete.
#[tokio::test]
async fn sessions_open_follows_create_and_delete_in_rest_mode() {
    use crate::remoting::{CREATION_XML, SHELL_ID, envelope};
    use exo_authproxy::remoting::wsman;
    let h = Sandboxed::start(SandboxedOptions::simulated(
        exo_authproxy::config::Mode::Rest,
        5,
    ))
    .await;
    let open = async || {
        let (_, text) = h.admin_get("/metrics").await;
        sample(&text, "exo_authproxy_sessions_open").unwrap_or_else(|| panic!("{text}"))
    };
    assert_eq!(open().await, 0.0);
    let client = h.client();
    let create = envelope(
        wsman::ACTION_CREATE,
        None,
        "<w:OptionSet s:mustUnderstand=\"true\"><w:Option Name=\"protocolversion\" MustComply=\"true\">2.3</w:Option></w:OptionSet>\
         <w:OperationTimeout>PT180.000S</w:OperationTimeout>",
        &format!(
            "<rsp:Shell ShellId=\"{SHELL_ID}\"><rsp:InputStreams>stdin pr</rsp:InputStreams>\
             <rsp:OutputStreams>stdout</rsp:OutputStreams>\
             <creationXml xmlns=\"http://schemas.microsoft.com/powershell\">{}</creationXml></rsp:Shell>",
            CREATION_XML.trim()
        ),
        "uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B",
    );
    let rsp = h.post(&client, "", &create).await;
    assert_eq!(
        rsp.status(),
        StatusCode::OK,
        "{}",
        rsp.text().await.unwrap()
    );
    assert_eq!(open().await, 1.0);
    let delete = envelope(wsman::ACTION_DELETE, Some(SHELL_ID), "", "", "uuid:DDDD");
    assert_eq!(h.post(&client, "", &delete).await.status(), StatusCode::OK);
    assert_eq!(open().await, 0.0);
}

/// Readiness turns 503 only when no tenant can be served: here the only tenant's token
/// fetch fails.
#[tokio::test]
async fn readiness_is_503_only_when_every_tenant_is_without_a_token() {
    let mut options = SandboxedOptions::default();
    options.tenants.truncate(1);
    let h = Sandboxed::start(options).await;
    h.world
        .entra
        .fail_next(1000, StatusCode::SERVICE_UNAVAILABLE);
    let client = h.client();
    let rsp = h.post(&client, "", ENVELOPE).await;
    assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let (status, body) = h.admin_get("/healthz/readiness").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: no tenant has a token\n"),
        "{body}"
    );
    assert!(body.contains("tenant contoso: NOT READY: "), "{body}");
}
