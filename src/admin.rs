//! The `[admin]` listener: health probes and Prometheus metrics, on their own socket.
//!
//! Separate from the proxy listener because they answer different clients: the proxy port
//! speaks WS-Man over TLS to scripts and wants Basic credentials; probes (kubelet, systemd
//! watchdogs, a Job's wait loop) and Prometheus speak plain HTTP GET without credentials.
//! Nothing here carries a secret (tenant names, counts, error texts that name what to fix),
//! so the address may be a pod IP for Kubernetes probes; the default is loopback.
//!
//! - `/healthz/liveness`: 200 while the process serves HTTP at all (also while draining: a
//!   restart would cut the requests the drain is finishing).
//! - `/healthz/startup`: 200 once the proxy listener accepts (this listener starts after it).
//! - `/healthz/readiness`: 200 while requests can succeed for some tenant: not shutting down,
//!   and at least one tenant is not failing. One tenant without a token (its last fetch failed,
//!   or its credential never loaded) must not take a Service down for every other tenant, so
//!   it is named in the body (`NOT READY` with Entra's reason) under a 200; 503 only when
//!   every tenant fails. Tokens are fetched on first use, so "not fetched yet" counts as ready.
//! - `/metrics`: [`Metrics`] in the text exposition format, with per-tenant token gauges
//!   sampled at scrape time.
//! - `POST /quitquitquit`: drain and exit 0, exactly as SIGTERM does ([`Trigger`]). For the
//!   main container of a Job, which cannot signal its sidecar, and `exo-authproxy shutdown`.
//!   Accepted from loopback peers only (in a pod, containers share the loopback interface;
//!   on a host, only local users): anyone who can reach a pod-IP admin address could
//!   otherwise stop the proxy. Others get 403 with the alternatives.
//!
//! The client side lives here too, so the protocol has one home: [`wait_started`] (the
//! `wait` command: poll `/healthz/startup` until 200 or a timeout) and [`request_shutdown`]
//! (the `shutdown` command).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::errors::{self, Body, TEXT_PLAIN};
use crate::forward::RemotingService;
use crate::metrics::{Metrics, TenantLabels};
use crate::shutdown::{Drain, Trigger};
use crate::token::Health;
use crate::token::TokenProvider;

/// Open admin connections at most (probes and scrapers are few).
const MAX_CONNECTIONS: usize = 64;
/// Probes send a short GET: they have this long to send it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The OpenMetrics text content type `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin endpoints read.
pub struct Admin {
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// Token states, for readiness and the token gauges.
    pub tokens: Arc<dyn TokenProvider>,
    /// Shutdown state (readiness turns 503 as soon as the drain begins).
    pub drain: Drain,
    /// rest mode: the remoting endpoint, whose open sessions `/metrics` reports.
    pub sessions: Option<Arc<dyn RemotingService>>,
    /// Pulled by `POST /quitquitquit`; `serve` then drains as on SIGTERM.
    pub quit: Trigger,
}

/// Serves `listener` until the task is dropped (serve aborts it after the drain).
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "admin: http://{addr}/healthz/readiness and /metrics");
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(err) => {
                tracing::debug!(error = %err, "admin: accept failed");
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&admin, peer, req).await) }
            });
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(16 * 1024);
            if let Err(err) = http.serve_connection(TokioIo::new(tcp), service).await {
                tracing::debug!(client = %peer, error = %err, "admin connection ended with an error");
            }
        });
    }
}

async fn answer(admin: &Admin, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/');
    if path == "/quitquitquit" {
        return quit(admin, peer.ip(), req.method());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return errors::text(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT_PLAIN,
            format!("{path}: use GET\n"),
        );
    }
    match path {
        "/healthz/liveness" => errors::text(StatusCode::OK, TEXT_PLAIN, "ok\n".into()),
        "/healthz/startup" => errors::text(StatusCode::OK, TEXT_PLAIN, "started\n".into()),
        "/healthz/readiness" => readiness(admin).await,
        "/metrics" => {
            sample_tokens(admin).await;
            if let Some(s) = &admin.sessions {
                let open = i64::try_from(s.open_sessions()).unwrap_or(i64::MAX);
                admin.metrics.sessions_open.set(open);
            }
            errors::text(StatusCode::OK, OPENMETRICS, admin.metrics.encode())
        }
        _ => errors::text(
            StatusCode::NOT_FOUND,
            TEXT_PLAIN,
            format!(
                "{}: not an admin endpoint; try /healthz/liveness, /healthz/startup, /healthz/readiness, /metrics or POST /quitquitquit\n",
                path.chars().take(200).collect::<String>()
            ),
        ),
    }
}

/// `POST /quitquitquit`: pull the shutdown trigger, from loopback peers only.
fn quit(admin: &Admin, peer: IpAddr, method: &Method) -> Response<Body> {
    if method != Method::POST {
        return errors::text(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT_PLAIN,
            "/quitquitquit: use POST (or run `exo-authproxy shutdown --admin ADDR`)\n".into(),
        );
    }
    if !may_shut_down(peer) {
        tracing::warn!(client = %peer, "refused POST /quitquitquit from a non-loopback peer");
        return errors::text(
            StatusCode::FORBIDDEN,
            TEXT_PLAIN,
            format!(
                "/quitquitquit is accepted from loopback only, and {peer} is not: run \
                 `exo-authproxy shutdown` on the same host or in the same pod, or send SIGTERM\n"
            ),
        );
    }
    if admin.quit.is_pulled() || admin.drain.is_stopping() {
        return errors::text(StatusCode::OK, TEXT_PLAIN, "already draining\n".into());
    }
    tracing::info!(client = %peer, "shutdown requested over the admin listener");
    admin.quit.pull();
    errors::text(
        StatusCode::OK,
        TEXT_PLAIN,
        "draining: finishing in-flight requests, then exiting\n".into(),
    )
}

/// Whether `peer` may ask for a shutdown: loopback, also as an IPv4-mapped IPv6 address.
pub fn may_shut_down(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

async fn readiness(admin: &Admin) -> Response<Body> {
    if admin.drain.is_stopping() {
        return errors::text(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT_PLAIN,
            "not ready: shutting down (finishing in-flight requests)\n".into(),
        );
    }
    let mut failing = Vec::new();
    let mut tenants = std::collections::BTreeSet::new();
    let mut body = String::new();
    for (tenant, audience, health) in admin.tokens.health_by_audience().await {
        if audience == crate::token::Audience::Exchange {
            tenants.insert(tenant.to_string());
            if matches!(health, Health::Failing(_)) {
                failing.push(tenant.to_string());
            }
        }
        // Exchange's lines as before; S&C's say so.
        let tenant = match audience {
            crate::token::Audience::Exchange => tenant.to_string(),
            other => format!("{tenant} ({other})"),
        };
        let _ = match &health {
            Health::NotFetched => {
                writeln!(body, "tenant {tenant}: ready (token fetched on first use)")
            }
            Health::Usable {
                usable_for,
                refresh_failing: false,
            } => writeln!(
                body,
                "tenant {tenant}: ready (token usable for {} s)",
                usable_for.as_secs()
            ),
            Health::Usable {
                usable_for,
                refresh_failing: true,
            } => writeln!(
                body,
                "tenant {tenant}: ready, but refreshing its token fails; the current one is usable for {} s more",
                usable_for.as_secs()
            ),
            Health::Failing(err) => writeln!(body, "tenant {tenant}: NOT READY: {err}"),
        };
    }
    let (status, head) = if failing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else if failing.len() < tenants.len() {
        (
            StatusCode::OK,
            format!(
                "ready for {} of {} tenants; without a token: {} (their requests get the fault below)\n",
                tenants.len() - failing.len(),
                tenants.len(),
                failing.join(", ")
            ),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no tenant has a token\n".to_owned(),
        )
    };
    errors::text(status, TEXT_PLAIN, format!("{head}{body}"))
}

/// Sets the per-tenant token gauges from the engine's current state.
async fn sample_tokens(admin: &Admin) {
    for (tenant, audience, health) in admin.tokens.health_by_audience().await {
        let labels = TenantLabels {
            tenant: tenant.0.clone(),
            audience: audience.as_str(),
        };
        let (usable, failing) = match health {
            Health::NotFetched => (0, 0),
            Health::Usable {
                usable_for,
                refresh_failing,
            } => (
                i64::try_from(usable_for.as_secs()).unwrap_or(i64::MAX),
                i64::from(refresh_failing),
            ),
            Health::Failing(_) => (0, 1),
        };
        admin
            .metrics
            .tokens
            .usable_seconds
            .get_or_create(&labels)
            .set(usable);
        admin
            .metrics
            .tokens
            .failing
            .get_or_create(&labels)
            .set(failing);
    }
}

/// Why `wait` or `shutdown` did not succeed. Each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `/healthz/startup` did not answer 200 in time.
    #[error(
        "the proxy at admin address {address} did not report started within {} s (last attempt: {last}); \
         is it running with `[admin] address = \"{address}\"`, and does its log say why it stopped?",
        waited.as_secs_f64()
    )]
    NotStarted {
        /// The admin address asked.
        address: SocketAddr,
        /// How long `wait` tried.
        waited: Duration,
        /// What the last attempt got.
        last: String,
    },
    /// Nothing answered at the admin address.
    #[error(
        "cannot reach the admin listener at {address}: {reason}; is the proxy running with `[admin] address = \"{address}\"`?"
    )]
    Unreachable {
        /// The admin address asked.
        address: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The proxy answered but did not accept the shutdown.
    #[error("the proxy at {address} refused the shutdown ({status}): {body}")]
    Refused {
        /// The admin address asked.
        address: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// Its explanation.
        body: String,
    },
}

/// How often `wait` asks.
const WAIT_INTERVAL: Duration = Duration::from_millis(250);
/// One attempt of `wait` or `shutdown` gets this long (a listener that accepts but never
/// answers must not hang the command past its timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy() // an HTTP_PROXY in a Job's environment must not capture a loopback call
        .build()
        .unwrap_or_default()
}

/// Polls `http://{address}/healthz/startup` until it answers 200 (Ok) or `timeout` has
/// passed (`ClientError::NotStarted`, naming the last thing an attempt got).
///
/// # Errors
/// [`ClientError::NotStarted`].
pub async fn wait_started(address: SocketAddr, timeout: Duration) -> Result<(), ClientError> {
    let client = admin_client();
    let url = format!("http://{address}/healthz/startup");
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), client.get(&url).send());
        let last = match attempt.await {
            Ok(Ok(rsp)) if rsp.status() == StatusCode::OK => return Ok(()),
            Ok(Ok(rsp)) => format!("HTTP {}", rsp.status()),
            Ok(Err(err)) => describe(&err),
            Err(_) => "no answer within the attempt's time".into(),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ClientError::NotStarted {
                address,
                waited: now - start,
                last,
            });
        }
        tokio::time::sleep(WAIT_INTERVAL.min(deadline - now)).await;
    }
}

/// `POST http://{address}/quitquitquit`: Ok once the proxy has begun to drain.
///
/// # Errors
/// [`ClientError::Unreachable`] when nothing answers, [`ClientError::Refused`] otherwise.
pub async fn request_shutdown(address: SocketAddr) -> Result<(), ClientError> {
    let request = admin_client()
        .post(format!("http://{address}/quitquitquit"))
        .timeout(Duration::from_secs(10))
        .send();
    let rsp = request.await.map_err(|err| ClientError::Unreachable {
        address,
        reason: describe(&err),
    })?;
    let status = rsp.status();
    if status == StatusCode::OK {
        return Ok(());
    }
    let body = rsp.text().await.unwrap_or_default();
    Err(ClientError::Refused {
        address,
        status: status.as_u16(),
        body: body.trim().chars().take(500).collect(),
    })
}

/// The innermost cause (reqwest's own text is "error sending request").
fn describe(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_may_shut_down() {
        for ok in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(may_shut_down(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "10.0.0.7",
            "0.0.0.0",
            "::ffff:10.0.0.7",
            "fe80::1",
            "192.168.1.2",
        ] {
            assert!(!may_shut_down(no.parse().unwrap()), "{no}");
        }
    }
}
