//! `winrm` passthrough: rewrite the URL and `Authorization`, relay WS-Man to `/PowerShell-LiveID`.
//!
//! The envelope bytes pass unchanged (Exchange checks `RelatesTo`/`MessageID`, and a proxy
//! must not re-chunk what `MaxEnvelopeSize` bounded); only the HTTP layer is rewritten:
//!
//! * URL: `{endpoint}/PowerShell-LiveID?BasicAuthToOAuthConversion=true&email=SystemMailbox%7B…%7D%40<organization>`
//!   plus the client's other query parameters (split on `&` *and* `;`, because PowerShell
//!   appends `;PSVersion=`), minus `DelegatedOrg` (the proxy resolved it to a tenant).
//! * `Authorization: Basic base64("OAuthUser@<tenant_id>:Bearer <token>")`.
//! * Hop-by-hop headers are stripped both ways; `Content-Type` is kept byte for byte.
//!
//! Request bodies are read whole (bounded by the listener's cap, ~1 MiB, which
//! `MaxEnvelopeSize` keeps every WS-Man request under) because the proxy must be able to send
//! them again: Exchange answers the first `Create` with a redirect to a pod, which the proxy
//! follows itself (clients like pypsrp cannot, and a 302 passed back would send the script's
//! *local* credentials to Microsoft), and a token Exchange rejects is refreshed and the request
//! retried once. Response bodies are streamed to the client as they arrive.
//!
//! Redirects carry the tenant's token, so they are followed only to Exchange's own hosts
//! (`redirect::RedirectPolicy`); anything else is a `redirect-refused` fault naming where it
//! pointed. Before a request gets here the door has run the pre-flight policy (`policy`).
//!
//! Session affinity: upstream cookies are kept per client connection and tenant (never
//! shown to the client), and a redirect target is remembered per tenant (`redirect::Pins`:
//! for an hour at most, and dropped when the pod fails), so the following requests of that
//! shell go straight to the pod.
//!
//! Resends follow the bridge's one rule (`bridge::rest::may_resend`, docs/design.md
//! "Retries"). The proxy cannot tell a read from a write inside a WS-Man envelope, so every
//! request counts as one that changes something: it is sent again only when it never left
//! (a failed connect, once, to the endpoint if a pinned pod failed) or when Exchange answered
//! that it did not act on it (a refusal, a redirect) — never after the connection broke or
//! the deadline passed once it was sent.
//!
//! A 401 (or a role refusal) gets one retry with a newer token; the engine bounds these
//! forced refreshes per tenant, and while it has no newer token the diagnosis is given at
//! once, so a script hammering a refused tenant costs Entra one request per interval and
//! Exchange one per client request, and gets the same diagnosis each time.
//!
//! Long polls: a Receive waits up to the client's `OperationTimeout` (PowerShell 180 s,
//! pypsrp 20 s); the upstream deadline is that value from the envelope plus a margin, never
//! less.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;
use url::Url;

use super::client::{self, Passthrough, PooledBody, SendError, Target, UpstreamError};
use super::query::query_pairs;
use super::redirect::{Pins, RedirectPolicy};
use super::{Inbound, Route, policy};
use crate::bridge::rest::{Delivery, may_resend};
use crate::config::TenantName;
use crate::errors::{Body, ProxyError};
use crate::secret::Secret;
use crate::token::{AccessToken, Diagnosis, TokenProvider};

/// Redirects followed per request at most (PowerShell's MaximumRedirection default).
pub const MAX_REDIRECTS: usize = 5;
/// Added to the client's OperationTimeout for the upstream deadline.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(30);
/// Deadline when the envelope names no OperationTimeout (≥ PowerShell's 180 s + margin).
const DEFAULT_DEADLINE: Duration = Duration::from_secs(210);
/// The longest deadline a client can ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Refusal bodies inspected at most (Exchange faults are a few KiB).
const REFUSAL_INSPECT_LIMIT: usize = 256 * 1024;
/// The routing anchor for app-only sessions (reference A.4).
const SYSTEM_MAILBOX: &str = "SystemMailbox%7Bbb558c35-97f1-4cb9-8ff7-d53741dc928c%7D%40";

/// Exchange's texts for "the app has no management role" (reference exo-access-token.md §3).
const ROLE_REFUSALS: [&str; 2] = [
    "isn't assigned to any management roles",
    "isn't supported in this scenario",
];

/// Per client connection: upstream cookies per tenant.
#[derive(Debug, Default)]
pub struct ConnectionState {
    cookies: Mutex<HashMap<TenantName, Vec<(String, String)>>>,
}

/// Counters the tests and the benchmarks read.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests sent upstream (retries and redirect hops included).
    pub upstream_requests: std::sync::atomic::AtomicU64,
    /// Redirects followed.
    pub redirects: std::sync::atomic::AtomicU64,
    /// Token refreshes forced by an Exchange refusal.
    pub forced_refreshes: std::sync::atomic::AtomicU64,
}

/// The passthrough forwarder (one per proxy; cheap to share).
pub struct Winrm {
    client: Passthrough,
    endpoint: Url,
    /// `{endpoint}/PowerShell-LiveID`, prepared.
    target: Target,
    /// The upstream `Authorization` per tenant id, for the token it was made from (one
    /// base64 of a ~2 KiB token per token, not per request).
    authorizations: Mutex<HashMap<String, (Secret<String>, HeaderValue)>>,
    tokens: Arc<dyn TokenProvider>,
    redirects: RedirectPolicy,
    pins: Pins,
    warned: Mutex<HashSet<TenantName>>,
    counters: Counters,
}

impl std::fmt::Debug for Winrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Winrm")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl Winrm {
    /// A forwarder to `endpoint` (e.g. `https://outlook.office365.com`).
    ///
    /// # Errors
    /// [`UpstreamError`] for a bad endpoint or CA file.
    pub fn new(
        endpoint: &str,
        ca_file: Option<&std::path::Path>,
        tokens: Arc<dyn TokenProvider>,
    ) -> Result<Self, UpstreamError> {
        let endpoint = client::endpoint(endpoint)?;
        let mut base = endpoint.clone();
        base.set_path("/PowerShell-LiveID");
        let target = Target::new(&base).map_err(|_| UpstreamError::Endpoint {
            value: endpoint.to_string(),
        })?;
        Ok(Self {
            client: Passthrough::new(ca_file)?,
            redirects: RedirectPolicy::new(&endpoint),
            endpoint,
            target,
            authorizations: Mutex::new(HashMap::new()),
            tokens,
            pins: Pins::default(),
            warned: Mutex::new(HashSet::new()),
            counters: Counters::default(),
        })
    }

    /// Counters for tests and benchmarks.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Forwards one WS-Man request with `token` (pre-flighted by the door).
    ///
    /// # Errors
    /// A [`ProxyError`] for everything the proxy answers itself (refusal diagnosis,
    /// unreachable upstream, refused redirects, redirect loops).
    pub async fn forward(
        &self,
        conn: &ConnectionState,
        route: &Route,
        mut token: AccessToken,
        request: Inbound,
    ) -> Result<Response<Body>, ProxyError> {
        let started = Instant::now();
        let tenant = &route.tenant;
        let Inbound {
            parts,
            body,
            action,
            ..
        } = request;
        let query = parts.uri.query();
        let headers = &parts.headers;
        let deadline = deadline_for(&body);
        let mut refreshed = false;
        loop {
            let upstream = self
                .send(conn, route, query, headers, &body, &token, deadline)
                .await?;
            let status = upstream.status();
            let no_role = token.lacks_directory_role();
            // Exchange rejected the token itself: a new token, once.
            if status == StatusCode::UNAUTHORIZED {
                if !refreshed && may_resend(Delivery::Refused, false) {
                    refreshed = true;
                    if let Some(newer) = self.newer_token(route, &token).await? {
                        token = newer;
                        continue;
                    }
                }
                return Err(if no_role {
                    policy::role_refusal(route).into()
                } else {
                    ProxyError::ExchangeRejectedToken {
                        tenant: tenant.name.clone(),
                        url: self.base(&tenant.name).to_string(),
                        app_id: tenant.app_id.clone(),
                    }
                });
            }
            // Exchange refused the session for lack of a management role.
            let inspect = no_role
                && matches!(
                    status,
                    StatusCode::FORBIDDEN | StatusCode::INTERNAL_SERVER_ERROR
                );
            if inspect {
                let (parts, body) = upstream.into_parts();
                let bytes = http_body_util::Limited::new(body, REFUSAL_INSPECT_LIMIT)
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .map_err(|e| ProxyError::UpstreamUnreachable {
                        tenant: tenant.name.clone(),
                        url: self.base(&tenant.name).to_string(),
                        reason: format!("reading Exchange's answer: {e}"),
                    })?;
                let text = String::from_utf8_lossy(&bytes);
                if status == StatusCode::FORBIDDEN || ROLE_REFUSALS.iter().any(|r| text.contains(r))
                {
                    if !refreshed && may_resend(Delivery::Refused, false) {
                        refreshed = true;
                        if let Some(newer) = self.newer_token(route, &token).await? {
                            token = newer;
                            continue;
                        }
                    }
                    return Err(policy::role_refusal(route).into());
                }
                let rsp = Response::from_parts(parts, crate::errors::full(bytes));
                return Ok(self.finish(conn, route, rsp, (started, action), &token));
            }
            let rsp = upstream.map(BodyExt::boxed_unsync);
            return Ok(self.finish(conn, route, rsp, (started, action), &token));
        }
    }

    /// A token newer than `refused` to retry with, or None when the engine has none yet (its
    /// forced refreshes are bounded per tenant): then the diagnosis is given at once instead
    /// of sending Exchange the token it just refused.
    async fn newer_token(
        &self,
        route: &Route,
        refused: &AccessToken,
    ) -> Result<Option<AccessToken>, ProxyError> {
        self.counters
            .forced_refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let newer = policy::refreshed(self.tokens.as_ref(), route).await?;
        Ok((newer.token.expose() != refused.token.expose()).then_some(newer))
    }

    fn finish(
        &self,
        conn: &ConnectionState,
        route: &Route,
        rsp: Response<Body>,
        (started, action): (Instant, &'static str),
        token: &AccessToken,
    ) -> Response<Body> {
        let (mut parts, body) = rsp.into_parts();
        let cookies: Vec<_> = parts
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(parse_set_cookie)
            .collect();
        if !cookies.is_empty() {
            let mut jar = conn.cookies.lock().expect("cookie lock is never poisoned");
            let jar = jar.entry(route.tenant.name.clone()).or_default();
            for (name, value) in cookies {
                jar.retain(|(n, _)| *n != name);
                jar.push((name, value));
            }
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::SET_COOKIE);
        parts.headers.remove(header::CONTENT_LENGTH);
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .or_else(|| parts.headers.get(X_REQUEST_ID))
            .cloned();
        let request_id = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        if parts.status.is_success() && token.lacks_directory_role() {
            let first = self
                .warned
                .lock()
                .expect("warned lock is never poisoned")
                .insert(route.tenant.name.clone());
            if first {
                if let Diagnosis::Warning(text) = &token.diagnosis {
                    tracing::warn!(tenant = %route.tenant.name, "Exchange accepts the app without a directory role (Exchange RBAC for applications): {text}");
                }
            }
        }
        tracing::info!(
            user = %route.user,
            tenant = %route.tenant.name,
            mode = "winrm",
            status = parts.status.as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            upstream_request_id = %request_id,
            token_uti = token.uti.as_deref().unwrap_or("-"),
            action,
            "forwarded"
        );
        Response::from_parts(parts, body)
    }

    /// Where `tenant`'s requests go: its pinned pod, else the endpoint.
    fn target(&self, tenant: &TenantName) -> Target {
        self.pins.get(tenant).unwrap_or_else(|| self.target.clone())
    }

    fn base(&self, tenant: &TenantName) -> Url {
        self.target(tenant).url().clone()
    }

    /// [`upstream_authorization`], made once per tenant and token.
    fn authorization(&self, tenant_id: &str, token: &AccessToken) -> HeaderValue {
        let mut made = self
            .authorizations
            .lock()
            .expect("authorization lock is never poisoned");
        if let Some((from, value)) = made.get(tenant_id) {
            if from.expose() == token.token.expose() {
                return value.clone();
            }
        }
        let value = upstream_authorization(tenant_id, token);
        made.insert(tenant_id.to_owned(), (token.token.clone(), value.clone()));
        value
    }

    /// The upstream URL for a client query.
    pub fn upstream_url(&self, route: &Route, query: Option<&str>) -> Url {
        let mut url = self.base(&route.tenant.name);
        url.set_query(Some(&upstream_query(route, query)));
        url
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        conn: &ConnectionState,
        route: &Route,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        token: &AccessToken,
        deadline: Duration,
    ) -> Result<Response<PooledBody>, ProxyError> {
        let tenant = &route.tenant;
        let first = |this: &Self| {
            let target = this.target(&tenant.name);
            let path_and_query =
                format!("{}?{}", target.url().path(), upstream_query(route, query));
            (target, path_and_query)
        };
        let (mut target, mut path_and_query) = first(self);
        let authorization = self.authorization(&tenant.tenant_id.0, token);
        let mut hop = 0;
        let mut resent = false;
        loop {
            let mut out = HeaderMap::with_capacity(headers.len() + 2);
            for (name, value) in headers {
                if !is_hop_by_hop(name, headers) && !DROPPED_REQUEST_HEADERS.contains(name) {
                    out.append(name.clone(), value.clone());
                }
            }
            out.insert(header::AUTHORIZATION, authorization.clone());
            if let Some(cookie) = cookie_header(conn, &tenant.name) {
                out.insert(header::COOKIE, cookie);
            }
            self.counters
                .upstream_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = self
                .client
                .post(&target, path_and_query, out, body.clone(), deadline)
                .await;
            let rsp = match sent {
                Ok(rsp) => rsp,
                Err(e) => {
                    self.pins.drop_failed(&tenant.name, target.url());
                    // A WS-Man request may change something: sent again only if it never
                    // left, once, to the endpoint when the pinned pod was what failed.
                    if !resent && may_resend(e.delivery(), false) {
                        resent = true;
                        tracing::info!(tenant = %tenant.name, to = %strip_query(target.url()), error = %e,
                            "Exchange could not be reached; trying once more");
                        (target, path_and_query) = first(self);
                        continue;
                    }
                    return Err(transport_error(&tenant.name, target.url(), e));
                }
            };
            if rsp.status().is_server_error() {
                self.pins.drop_failed(&tenant.name, target.url());
            }
            let redirected =
                rsp.status().is_redirection() && rsp.status() != StatusCode::NOT_MODIFIED;
            // A redirect is Exchange saying it did not act on the request here.
            if !redirected || !may_resend(Delivery::Refused, false) {
                return Ok(rsp);
            }
            let location = rsp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let refused = |reason, allowed| ProxyError::RedirectRefused {
                tenant: tenant.name.clone(),
                location: location
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect(),
                reason,
                allowed,
            };
            // Relative to where the request went (a query-only `Location` replaces its query).
            let next = match target.url().join(&location) {
                Ok(next) if !location.is_empty() => next,
                _ => return Err(refused("which is not a URL", self.redirects.allowed())),
            };
            if let Err(why) = self.redirects.check(&next) {
                tracing::warn!(tenant = %tenant.name, to = %strip_query(&next), reason = why.reason,
                    "Exchange's redirect refused: the token goes only to Exchange");
                return Err(refused(why.reason, why.allowed));
            }
            if hop == MAX_REDIRECTS {
                return Err(ProxyError::TooManyRedirects {
                    tenant: tenant.name.clone(),
                    limit: MAX_REDIRECTS,
                    last: strip_query(&next),
                });
            }
            self.counters
                .redirects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(tenant = %tenant.name, to = %strip_query(&next), "Exchange redirected: following and pinning");
            self.pins.pin(&tenant.name, &next);
            target = match Target::new(&next) {
                Ok(target) => target,
                Err(_) => return Err(refused("which is not a URL", self.redirects.allowed())),
            };
            path_and_query = next[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
            hop += 1;
        }
    }
}

fn transport_error(tenant: &TenantName, url: &Url, e: SendError) -> ProxyError {
    let url = strip_query(url);
    match e {
        SendError::Timeout(after) => ProxyError::UpstreamTimeout {
            tenant: tenant.clone(),
            url,
            after,
        },
        SendError::Connect(_) | SendError::Http(_) => ProxyError::UpstreamUnreachable {
            tenant: tenant.clone(),
            url,
            reason: e.to_string(),
        },
    }
}

fn strip_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// `Basic base64("OAuthUser@<tenant_id>:Bearer <token>")`, marked sensitive.
pub fn upstream_authorization(tenant_id: &str, token: &AccessToken) -> HeaderValue {
    let raw = format!("OAuthUser@{tenant_id}:Bearer {}", token.token.expose());
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// The upstream query: ours first, then the client's others (raw, in order), without the
/// keys the proxy owns.
pub fn upstream_query(route: &Route, query: Option<&str>) -> String {
    let organization = route.tenant.organization.as_str();
    // Sized once for the worst case (every organization byte percent-encoded), so building
    // it costs one allocation per request, not one per growth.
    const OURS: &str = "BasicAuthToOAuthConversion=true&email=";
    let mut out = String::with_capacity(
        OURS.len()
            + SYSTEM_MAILBOX.len()
            + 3 * organization.len()
            + query.map_or(0, |q| q.len() + 1),
    );
    out.push_str(OURS);
    out.push_str(SYSTEM_MAILBOX);
    out.extend(percent_encoding::utf8_percent_encode(
        organization,
        percent_encoding::NON_ALPHANUMERIC,
    ));
    for pair in query_pairs(query) {
        let key = pair.split('=').next().unwrap_or("");
        let owned = ["delegatedorg", "basicauthtooauthconversion", "email"];
        if pair.is_empty() || owned.iter().any(|k| key.eq_ignore_ascii_case(k)) {
            continue;
        }
        out.push('&');
        out.push_str(pair);
    }
    out
}

/// Request headers never copied upstream: the proxy sets them itself.
const DROPPED_REQUEST_HEADERS: [HeaderName; 4] = [
    header::HOST,
    header::AUTHORIZATION,
    header::COOKIE,
    header::CONTENT_LENGTH,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), as header names: matched and removed without
/// parsing or allocating per request.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Exchange's request id headers (logged).
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The header names `Connection` lists (lower case, as header names are).
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    HOP_BY_HOP.contains(name)
        || connection_named(headers).any(|token| token.eq_ignore_ascii_case(name.as_str()))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_named(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn parse_set_cookie(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let pair = text.split(';').next()?;
    let (name, value) = pair.split_once('=')?;
    let name = name.trim();
    (!name.is_empty()).then(|| (name.to_owned(), value.trim().to_owned()))
}

fn cookie_header(conn: &ConnectionState, tenant: &TenantName) -> Option<HeaderValue> {
    let jar = conn.cookies.lock().expect("cookie lock is never poisoned");
    let cookies = jar.get(tenant).filter(|c| !c.is_empty())?;
    let text = cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The upstream deadline for this envelope: its OperationTimeout plus a margin.
pub fn deadline_for(envelope: &[u8]) -> Duration {
    operation_timeout(envelope).map_or(DEFAULT_DEADLINE, |t| {
        (t + LONG_POLL_MARGIN).min(MAX_DEADLINE)
    })
}

/// `wsman:OperationTimeout` (`PT20S`, `PT180.000S`) from an envelope, if present.
pub fn operation_timeout(envelope: &[u8]) -> Option<Duration> {
    // Bytes, not text: validating a whole envelope as UTF-8 per request costs more than the
    // search (only the value itself must be text).
    let head = &envelope[..envelope.len().min(16 * 1024)];
    let at = memchr::memmem::find(head, b"OperationTimeout")?;
    let open = at + memchr::memchr(b'>', &head[at..])? + 1;
    let close = open + memchr::memchr(b'<', &head[open..])?;
    let value = std::str::from_utf8(&head[open..close]).ok()?;
    crate::remoting::wsman::parse_duration(value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Organization, TenantId};
    use crate::forward::TenantRoute;
    use crate::secret::Secret;

    fn route() -> Route {
        Route {
            user: "reporting".into(),
            tenant: Arc::new(TenantRoute {
                name: TenantName("contoso".into()),
                tenant_id: TenantId("0f9c3b1e-1111-2222-3333-444455556666".into()),
                organization: Organization("contoso.onmicrosoft.com".into()),
                app_id: "app".into(),
                require_directory_role: false,
            }),
            audience: crate::token::Audience::Exchange,
        }
    }

    #[test]
    fn query_keeps_client_params_but_not_delegated_org() {
        let q = upstream_query(
            &route(),
            Some(
                "DelegatedOrg=fabrikam.onmicrosoft.com&BasicAuthToOAuthConversion=true;PSVersion=5.1.19041.1&HideBannerMessage=true",
            ),
        );
        assert_eq!(
            q,
            "BasicAuthToOAuthConversion=true&email=SystemMailbox%7Bbb558c35-97f1-4cb9-8ff7-d53741dc928c%7D%40contoso%2Eonmicrosoft%2Ecom&PSVersion=5.1.19041.1&HideBannerMessage=true"
        );
    }

    #[test]
    fn authorization_is_oauthuser_at_tenant_with_bearer() {
        let token = AccessToken {
            token: Secret::new("eyJ.abc".into()),
            expires_at: std::time::SystemTime::now(),
            uti: None,
            diagnosis: Diagnosis::Ready,
        };
        let value = upstream_authorization("tid", &token);
        assert!(value.is_sensitive());
        let b64 = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, b"OAuthUser@tid:Bearer eyJ.abc");
    }

    #[test]
    fn operation_timeout_sets_the_deadline() {
        let env = b"<w:OperationTimeout>PT180.000S</w:OperationTimeout>";
        assert_eq!(operation_timeout(env), Some(Duration::from_secs(180)));
        assert_eq!(deadline_for(env), Duration::from_secs(210));
        assert_eq!(
            deadline_for(b"<w:OperationTimeout>PT20S</w:OperationTimeout>"),
            Duration::from_secs(50)
        );
        assert_eq!(deadline_for(b"<x/>"), DEFAULT_DEADLINE);
        assert_eq!(
            deadline_for(b"<w:OperationTimeout>PT1M30S</w:OperationTimeout>"),
            Duration::from_secs(120)
        );
        assert_eq!(
            deadline_for(b"<w:OperationTimeout>P1D</w:OperationTimeout>"),
            MAX_DEADLINE
        );
        assert_eq!(
            deadline_for(b"<w:OperationTimeout>PT5</w:OperationTimeout>"),
            DEFAULT_DEADLINE
        );
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h[header::CONTENT_TYPE],
            "application/soap+xml;charset=UTF-8"
        );
    }
}
