//! The client-facing listener: accept loop, limits, TLS, one hyper HTTP/1.1 connection each.
//!
//! Per request: the path must be `/powershell-liveid` (any case, trailing slash optional), the
//! method POST, the Basic credential a local `[[user]]`; `DelegatedOrg=` in the query picks one
//! of the user's tenants (by organization domain or local name), else the first. Then the
//! body is read (bounded) and handed to the door of the upstream modes
//! ([`Forwarder`]); the listener knows neither mode's internals.
//! Every request is counted once in `requests_total` by its endpoint (`exchange`,
//! `compliance`, `none` for another path) and outcome: `ok`, or the
//! `X-Exo-Authproxy-Error` code of the response the proxy made up (in `rest` mode that
//! includes the remoting endpoint's faults).
//!
//! Limits, each with its reason: at most [`MAX_CONNECTIONS`] connections (a permit is taken
//! before `accept`, so excess clients wait in the kernel backlog rather than costing memory);
//! a [`HEADER_READ_TIMEOUT`] so a silent client cannot hold a connection; request bodies
//! capped at [`MAX_BODY`] (WS-Man envelopes are bounded by MaxEnvelopeSize, 500 KiB at most).
//! No idle timeout shorter than a long-poll Receive: the request in flight decides. A body
//! that stops arriving is answered `408` after [`BODY_READ_TIMEOUT`]; an oversized body `413`.
//! The head (request line, header count and size) is bounded by [`head_guard`], which answers
//! before hyper does so the reply is the proxy's (`414`/`431` with a code) in both modes.
//! A POST must carry `Content-Type: application/soap+xml` (any case, any parameters), as WS-Man
//! requires and Windows and pypsrp send; anything else is `415`. Every refusal of a client's
//! mistake is a 4xx with `X-Exo-Authproxy-Error`.
//!
//! A client that speaks plain HTTP to the TLS port gets a plain-HTTP 400 that says to use
//! https, instead of a TLS alert it cannot show.

pub mod basic_auth;
pub mod head_guard;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::errors::{self, Body, ProxyError};
use crate::forward::query::query_value;
use crate::forward::{ConnectionState, Forwarder, Inbound, Route, TenantRoute};
use crate::shutdown::Drain;
use crate::token::Audience;
use basic_auth::Authenticator;
use tls::ListenerTls;

/// Open client connections at most.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client has this long to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Request bodies larger than this are refused (MaxEnvelopeSize is at most 512 000 bytes).
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// A client has this long to send its body once the headers arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A local user and the tenants it may use (first = default).
#[derive(Debug)]
pub struct LocalUser {
    /// Name.
    pub name: String,
    /// Allowed tenants, in config order.
    pub tenants: Vec<Arc<TenantRoute>>,
}

/// Who may log in and where each user goes: replaced whole by a config reload, so a request
/// sees either the old users or the new ones, never a mix (one that authenticated against the
/// old set finishes with the old set's tenant routes).
pub struct Identity {
    /// Local users.
    pub auth: Authenticator,
    /// Users' tenants, by `UserIndex`.
    pub users: Vec<LocalUser>,
}

/// Everything a connection needs, shared.
pub struct Proxy {
    /// Users and their tenants (swapped by a reload).
    pub identity: arc_swap::ArcSwap<Identity>,
    /// Where authenticated requests go (pre-flight policy, then the mode).
    pub forward: Forwarder,
    /// TLS, or None for `plaintext = true` (loopback only).
    pub tls: Option<Arc<ListenerTls>>,
    /// Counters (requests, latency, connections).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where audit events go.
    pub audit: crate::audit::Audit,
    /// Sessions opened through the proxy (the audit trail's view, both modes).
    pub sessions: Arc<crate::audit::sessions::SessionLog>,
}

impl Proxy {
    fn mode(&self) -> &'static str {
        self.forward.mode()
    }
}

/// Accepts connections until the drain begins; each connection is a tracked task.
pub async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, drain: Drain) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the connection semaphore is never closed"),
            () = drain.stopping() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.stopping() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let proxy = proxy.clone();
                let conn_drain = drain.clone();
                proxy.metrics.connections.inc();
                proxy.metrics.connections_open.inc();
                drain.spawn(async move {
                    let open = proxy.metrics.connections_open.clone();
                    connection(tcp, peer, proxy, conn_drain).await;
                    open.dec();
                    drop(permit);
                });
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(tcp: TcpStream, peer: SocketAddr, proxy: Arc<Proxy>, drain: Drain) {
    let Some(tls) = proxy.tls.clone() else {
        serve_http(tcp, peer, proxy, drain).await;
        return;
    };
    // Plain HTTP on the TLS port: say so in HTTP.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != 0x16 => {
            plaintext_refusal(tcp, peer).await;
            return;
        }
        Ok(Ok(1)) => {}
        _ => return,
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http(stream, peer, proxy, drain).await,
        Ok(Err(err)) => {
            tracing::info!(client = %peer, error = %err, "TLS handshake failed (does the client trust the listener certificate?)")
        }
        Err(_) => tracing::info!(client = %peer, "TLS handshake timed out"),
    }
}

async fn plaintext_refusal(mut tcp: TcpStream, peer: SocketAddr) {
    tracing::info!(client = %peer, "plain HTTP on the TLS port: answered 400");
    let rsp = errors::raw_response(&ProxyError::PlaintextOnTlsPort);
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&rsp)).await;
    let _ = tcp.shutdown().await;
}

async fn serve_http<S>(stream: S, peer: SocketAddr, proxy: Arc<Proxy>, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnectionState::default());
    let rearm = head_guard::Rearm::default();
    let stream = head_guard::HeadGuard::new(stream, rearm.clone());
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let state = state.clone();
        let rearm = rearm.clone();
        // Boxed per request: hyper keeps a slot the size of the service's future for the whole
        // life of a connection, and a request's future (listener → forward → upstream) is
        // ~7.5 KiB; boxed, an idle keep-alive connection holds a pointer instead (issue 16).
        async move {
            let handled = Box::pin(async move { handle(&proxy, &state, peer, req, &rearm).await });
            Ok::<_, std::convert::Infallible>(handled.await)
        }
    });
    let mut http = http1::Builder::new();
    // hyper's own head limits sit well above the guard's, so the guard answers (with a code)
    // and hyper's bare 431 is only the backstop for heads read ahead while pipelining.
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(4 * head_guard::MAX_HEADERS)
        .max_buf_size(4 * head_guard::MAX_HEAD_BYTES);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_connection_end(peer, result),
        () = drain.stopping() => {
            conn.as_mut().graceful_shutdown();
            log_connection_end(peer, conn.await);
        }
    }
}

fn log_connection_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(client = %peer, error = %err, "client connection ended with an error");
    }
}

/// One request: route, authenticate, pick the tenant, read the body, forward.
async fn handle(
    proxy: &Proxy,
    state: &ConnectionState,
    peer: SocketAddr,
    req: Request<Incoming>,
    rearm: &head_guard::Rearm,
) -> Response<Body> {
    let started = Instant::now();
    let mut relates_to = None;
    let (parts, body) = req.into_parts();
    let endpoint = endpoint_of(parts.uri.path()).map_or("none", Audience::as_str);
    let mut body_read = hyper::body::Body::is_end_stream(&body);
    let mut body = Some(body);
    let result = route_and_forward(
        proxy,
        state,
        peer.ip(),
        Request::from_parts(parts, ()),
        &mut body,
        &mut relates_to,
        &mut body_read,
    )
    .await;
    if let Some(unread) = body.take() {
        // Refused before the body was read: read and drop it (bounded like any body), so the
        // connection carries the client's next request (a 401 challenge is retried on it).
        body_read = body_read || read_body(unread).await.is_ok();
    }
    let outcome = match &result {
        Ok(rsp) => errors::invented_code(rsp).unwrap_or("ok"),
        Err(err) => {
            tracing::info!(client = %peer, mode = proxy.mode(), code = err.code(), latency_ms = started.elapsed().as_millis() as u64, "refused");
            err.code()
        }
    };
    let mode = proxy.mode();
    let m = &proxy.metrics;
    m.requests
        .get_or_create(&crate::metrics::RequestLabels {
            mode,
            endpoint,
            outcome,
        })
        .inc();
    m.request_seconds
        .get_or_create(&crate::metrics::ModeLabels { mode })
        .observe(started.elapsed().as_secs_f64());
    let mut rsp = errors::respond(result, relates_to.as_deref());
    if body_read {
        rearm.rearm();
    } else {
        // The body was cut short (too large, too slow, broken): no further request on this
        // connection (the head guard could not tell where the next head starts).
        rsp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    rsp
}

async fn route_and_forward(
    proxy: &Proxy,
    state: &ConnectionState,
    client: IpAddr,
    req: Request<()>,
    body: &mut Option<Incoming>,
    relates_to: &mut Option<String>,
    body_read: &mut bool,
) -> Result<Response<Body>, ProxyError> {
    let Some(audience) = endpoint_of(req.uri().path()) else {
        return Err(ProxyError::UnknownPath {
            path: req.uri().path().chars().take(200).collect(),
        });
    };
    if req.method() != Method::POST {
        return Err(ProxyError::MethodNotAllowed {
            method: req.method().to_string(),
        });
    }
    if req
        .headers()
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(ProxyError::MalformedCredentials {
            reason: "more than one Authorization header",
        });
    }
    let identity = proxy.identity.load_full();
    let user = identity
        .auth
        .authenticate(req.headers().get(http::header::AUTHORIZATION), client)
        .await?;
    let user = &identity.users[user.0];
    check_content_type(req.headers().get(http::header::CONTENT_TYPE))?;
    let query = req.uri().query().map(str::to_owned);
    let tenant = pick_tenant(user, query.as_deref())?;
    let route = Route {
        user: user.name.clone(),
        tenant,
        audience,
    };
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, ()) = req.into_parts();
    let body = read_body(body.take().expect("the body is read once")).await?;
    *body_read = true;
    let head = crate::remoting::wsman::peek(&body);
    relates_to.clone_from(&head.message_id);
    let action = head.operation();
    let created_shell = (action == "Create")
        .then(|| created_shell_id(&body))
        .flatten();
    let inbound = Inbound {
        parts,
        body,
        action,
    };
    let rsp = proxy.forward.forward(state, &route, inbound).await?;
    if rsp.status().is_success() {
        match (action, created_shell, head.shell_id.as_deref()) {
            ("Create", Some(shell), _) => {
                let (client_kind, client_version) = crate::audit::sessions::client_kind(
                    query_value(query.as_deref(), "PSVersion").as_deref(),
                    user_agent.as_deref(),
                );
                proxy.sessions.opened(&crate::audit::sessions::Opened {
                    session: &shell,
                    user: &route.user,
                    tenant: route.tenant.name.as_str(),
                    client,
                    mode: proxy.mode(),
                    endpoint: route.audience.as_str(),
                    client_kind,
                    client_version,
                });
            }
            ("Delete", _, Some(shell)) => {
                proxy
                    .sessions
                    .closed(route.audience.as_str(), shell, "deleted");
            }
            (_, _, Some(shell)) => {
                proxy
                    .sessions
                    .touched(route.audience.as_str(), shell, action == "Command");
            }
            _ => {}
        }
    }
    Ok(rsp)
}

/// The `ShellId` a Create asks for (`<rsp:Shell ShellId=…>`: Windows PowerShell and pypsrp
/// name their shell, which is also the runspace pool id), for the audit trail.
fn created_shell_id(envelope: &[u8]) -> Option<String> {
    let req = crate::remoting::wsman::parse_request(envelope, MAX_BODY).ok()?;
    match req.body {
        crate::remoting::wsman::Body::Shell(shell) => shell.shell_id,
        _ => None,
    }
}

/// Which endpoint a path names: `/powershell-liveid` (Exchange) or
/// `/compliance/powershell-liveid` (Security & Compliance), any case, trailing slash optional.
pub fn endpoint_of(path: &str) -> Option<Audience> {
    let path = path.trim_end_matches('/');
    if path.eq_ignore_ascii_case("/powershell-liveid") {
        Some(Audience::Exchange)
    } else if path.eq_ignore_ascii_case("/compliance/powershell-liveid") {
        Some(Audience::Compliance)
    } else {
        None
    }
}

/// `DelegatedOrg` (organization domain or local tenant name, case-insensitive) or the first.
///
/// # Errors
/// [`ProxyError::TenantNotAllowed`].
pub fn pick_tenant(user: &LocalUser, query: Option<&str>) -> Result<Arc<TenantRoute>, ProxyError> {
    let requested = query_value(query, "DelegatedOrg").filter(|v| !v.trim().is_empty());
    let Some(requested) = requested else {
        return user
            .tenants
            .first()
            .cloned()
            .ok_or_else(|| ProxyError::TenantNotAllowed {
                user: user.name.clone(),
                requested: String::new(),
                allowed: "none".into(),
            });
    };
    let wanted = requested.trim();
    user.tenants
        .iter()
        .find(|t| {
            t.organization.as_str().eq_ignore_ascii_case(wanted)
                || t.name.as_str().eq_ignore_ascii_case(wanted)
        })
        .cloned()
        .ok_or_else(|| ProxyError::TenantNotAllowed {
            user: user.name.clone(),
            requested: requested.chars().take(200).collect(),
            allowed: user
                .tenants
                .iter()
                .map(|t| t.organization.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// WS-Man's media type: `application/soap+xml`, any case, any parameters (Windows and pypsrp
/// send `;charset=UTF-8`).
///
/// # Errors
/// [`ProxyError::UnsupportedContentType`], missing included.
pub fn check_content_type(value: Option<&http::HeaderValue>) -> Result<(), ProxyError> {
    let sent = value.map(|v| String::from_utf8_lossy(v.as_bytes()));
    let media = sent
        .as_deref()
        .and_then(|s| s.split(';').next())
        .map(str::trim);
    if media.is_some_and(|m| m.eq_ignore_ascii_case("application/soap+xml")) {
        return Ok(());
    }
    Err(ProxyError::UnsupportedContentType {
        content_type: sent.map_or_else(|| "none".into(), |s| s.chars().take(100).collect()),
    })
}

async fn read_body(body: Incoming) -> Result<Bytes, ProxyError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::RequestTooLarge { limit: MAX_BODY })
        }
        Ok(Err(err)) => Err(ProxyError::ClientBody {
            reason: err.to_string(),
        }),
        Err(_) => Err(ProxyError::ClientBodyTimeout {
            after: BODY_READ_TIMEOUT,
        }),
    }
}
