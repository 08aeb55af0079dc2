//! The proxy's Prometheus metrics: one [`Metrics`] per server, incremented where each event
//! happens and exposed by `admin` at `/metrics` (text exposition format).
//!
//! Why a value passed around instead of process globals: tests run many proxies in one
//! process and assert exact counts, and a library should not own global state. Every
//! component takes the handles it needs (`prometheus-client` families are cheap clones of
//! shared state); a component built without a `Metrics` counts into an unregistered one.
//!
//! Label sets are bounded: `mode` (2), `endpoint` (`exchange`, `compliance`; `none` for a
//! request whose path names neither), `outcome` (the proxy's error codes, `ok`), `tenant`
//! (configured names only), `cmdlet` (catalog names only: unknown commands are refused
//! before they reach Exchange). Nothing from a request's content becomes a label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `mode`, `endpoint` and `outcome` of one client request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// `winrm` or `rest`.
    pub mode: &'static str,
    /// The endpoint the path names: `exchange` (`/powershell-liveid/`), `compliance`
    /// (`/compliance/powershell-liveid/`), or `none` (any other path, refused).
    pub endpoint: &'static str,
    /// `ok` (forwarded or answered by the remoting endpoint) or the proxy's error code
    /// (`X-Exo-Authproxy-Error`, e.g. `bad-credentials`).
    pub outcome: &'static str,
}

/// The proxy's mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModeLabels {
    /// `winrm` or `rest`.
    pub mode: &'static str,
}

/// One tenant (a configured `[[tenant]] name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant's local name.
    pub tenant: String,
    /// `exchange` or `compliance` (the token's service).
    pub audience: &'static str,
}

/// A token request's tenant and result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TokenLabels {
    /// The tenant's local name.
    pub tenant: String,
    /// `exchange` or `compliance` (the token's service).
    pub audience: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// One cmdlet call through the REST bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CmdletLabels {
    /// `exchange` or `compliance`: the service the call went to.
    pub endpoint: &'static str,
    /// The cmdlet (a catalog name).
    pub cmdlet: String,
    /// `ok`, `error` (non-terminating: the pipeline went on) or `failed`.
    pub result: &'static str,
}

/// An InvokeCommand response that made the bridge wait and retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RetryLabels {
    /// HTTP status (429, 503, 504), `connect`, `lost` (a Get- whose answer broke off) or
    /// `transient`.
    pub reason: &'static str,
}

/// A configuration reload's result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `refused` (the previous configuration stays).
    pub result: &'static str,
}

/// The token engine's handles.
#[derive(Debug, Clone, Default)]
pub struct TokenMetrics {
    /// Token requests to Entra (retries counted once per fetch).
    pub requests: Family<TokenLabels, Counter>,
    /// Seconds the current token is still handed out (0: none), sampled at scrape.
    pub usable_seconds: Family<TenantLabels, Gauge>,
    /// 1 when the last fetch or refresh failed, sampled at scrape.
    pub failing: Family<TenantLabels, Gauge>,
}

/// The REST bridge's handles.
#[derive(Debug, Clone, Default)]
pub struct BridgeMetrics {
    /// Cmdlet calls by result.
    pub calls: Family<CmdletLabels, Counter>,
    /// InvokeCommand pages received.
    pub pages: Counter,
    /// Waits before a retry, by reason.
    pub retries: Family<RetryLabels, Counter>,
    /// Security & Compliance region discoveries (one per tenant, again after a failure).
    pub discoveries: Counter,
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Client requests by mode, endpoint and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Client request latency (from headers to response headers), by mode.
    pub request_seconds: Family<ModeLabels, Histogram>,
    /// Client connections accepted.
    pub connections: Counter,
    /// Client connections open now.
    pub connections_open: Gauge,
    /// rest mode: remote PowerShell sessions the proxy hosts now (sampled at scrape).
    pub sessions_open: Gauge,
    /// Token engine.
    pub tokens: TokenMetrics,
    /// REST bridge.
    pub bridge: BridgeMetrics,
    /// `[audit] file`: lines written, dropped (queue full), lost (failed writes).
    pub audit: crate::audit::file::Counters,
    /// Configuration reloads (SIGHUP, a watched file changed), by result.
    pub config_reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All families, registered under the `exo_authproxy` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("exo_authproxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests, by mode, endpoint and outcome (ok, or the proxy's error code)",
            requests.clone(),
        );
        // 1 ms … ~65 s: a Receive long-poll is answered within the client's OperationTimeout.
        let request_seconds = Family::<ModeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
        registry.register(
            "request_duration_seconds",
            "Client request latency until the response headers, by mode",
            request_seconds.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "connections",
            "Client connections accepted",
            connections.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let sessions_open = Gauge::default();
        registry.register(
            "sessions_open",
            "rest mode: remote PowerShell sessions the proxy hosts now",
            sessions_open.clone(),
        );
        let tokens = TokenMetrics::default();
        registry.register(
            "token_requests",
            "Token requests to Entra ID, by tenant and result",
            tokens.requests.clone(),
        );
        registry.register(
            "token_usable_seconds",
            "Seconds the tenant's current token is still handed out (0: none yet)",
            tokens.usable_seconds.clone(),
        );
        registry.register(
            "token_failing",
            "1 when the tenant's last token fetch or refresh failed",
            tokens.failing.clone(),
        );
        let bridge = BridgeMetrics::default();
        registry.register(
            "rest_cmdlet_calls",
            "Cmdlet calls through the REST admin API, by endpoint, cmdlet and result",
            bridge.calls.clone(),
        );
        registry.register(
            "rest_pages",
            "InvokeCommand result pages received",
            bridge.pages.clone(),
        );
        registry.register(
            "rest_retries",
            "Waits before retrying an InvokeCommand request, by reason",
            bridge.retries.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP or a watched file changed), by result (ok, refused)",
            config_reloads.clone(),
        );
        let audit = crate::audit::file::Counters::default();
        registry.register(
            "audit_lines",
            "[audit] file: lines written, dropped (queue full), lost (failed write); reopens",
            audit.family().clone(),
        );
        registry.register(
            "compliance_region_discoveries",
            "Security & Compliance region discoveries (once per tenant; again after a failure there)",
            bridge.discoveries.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            connections,
            connections_open,
            sessions_open,
            tokens,
            bridge,
            audit,
            config_reloads,
        }
    }

    /// The text exposition (`text/plain; version=0.0.4` compatible OpenMetrics text).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition_with_their_labels() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                mode: "winrm",
                endpoint: "exchange",
                outcome: "bad-credentials",
            })
            .inc();
        m.tokens
            .requests
            .get_or_create(&TokenLabels {
                tenant: "contoso".into(),
                audience: "exchange",
                result: "ok",
            })
            .inc_by(2);
        let text = m.encode();
        assert!(
            text.contains(
                "exo_authproxy_requests_total{mode=\"winrm\",endpoint=\"exchange\",outcome=\"bad-credentials\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("exo_authproxy_token_requests_total{tenant=\"contoso\",audience=\"exchange\",result=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# HELP exo_authproxy_connections_open"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
