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
//! - `/healthz/readiness`: 200 when requests can succeed: not shutting down, and no tenant is
//!   without a token because its last fetch failed (or its credential never loaded). The body
//!   lists every tenant's state; a 503 says which tenant fails and Entra's reason. Tokens are
//!   fetched on first use, so "not fetched yet" counts as ready.
//! - `/metrics`: [`Metrics`] in the text exposition format, with per-tenant token gauges
//!   sampled at scrape time.

use std::fmt::Write as _;
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
use crate::shutdown::Drain;
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
                async move { Ok::<_, std::convert::Infallible>(answer(&admin, req).await) }
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

async fn answer(admin: &Admin, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/');
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
                "{}: not an admin endpoint; try /healthz/liveness, /healthz/startup, /healthz/readiness or /metrics\n",
                path.chars().take(200).collect::<String>()
            ),
        ),
    }
}

async fn readiness(admin: &Admin) -> Response<Body> {
    if admin.drain.is_stopping() {
        return errors::text(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT_PLAIN,
            "not ready: shutting down (finishing in-flight requests)\n".into(),
        );
    }
    let mut ready = true;
    let mut body = String::new();
    for (tenant, audience, health) in admin.tokens.health_by_audience().await {
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
            Health::Failing(err) => {
                ready = false;
                writeln!(body, "tenant {tenant}: NOT READY: {err}")
            }
        };
    }
    let (status, head) = if ready {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: a tenant has no token\n",
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
