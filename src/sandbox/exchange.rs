//! Simulated Exchange Online's HTTPS front end: token checks as Exchange makes them, then routing.
//!
//! The point of the simulator is to fail the way Exchange fails, so the proxy's diagnosis is
//! tested against the real symptoms. Layered like Exchange (reference exo-access-token.md §3):
//!
//! 1. `/PowerShell-LiveID` needs `BasicAuthToOAuthConversion=true` and
//!    `Basic base64(<user>:Bearer <jwt>)`; `/adminapi/beta/{tenant}/InvokeCommand` needs
//!    `Authorization: Bearer <jwt>`. Otherwise HTTP 401 with an empty body, as Exchange did.
//! 2. The JWT's RS256 signature against the simulated Entra's published keys (`kid`), `exp`,
//!    `aud` = the Exchange resource: 401 (REST: `InvalidAudienceForResource` text for `aud`).
//! 3. `roles` contains `Exchange.ManageAsApp`: else 401.
//! 4. A supported directory role template id in `wids` (0997a1d0-… is not one), or an
//!    Exchange-side role assignment for the app (RBAC for applications): else RPS answers
//!    Exchange's own fault "[FailureCategory=AuthZ-CmdletAccessDeniedException] The application
//!    … isn't assigned to any management roles" and REST its "The role assigned to application
//!    … isn't supported in this scenario" — neither names the tenant or the fix, which is the
//!    proxy's job.
//!
//! Then RPS requests go to a [`RpsService`] (the project's remoting endpoint over the sandbox
//! tenant data, or a test's recorder) and REST requests to an [`AdminApi`] handler.
//!
//! Knobs for tests: redirect the first request of each client to a "pod" (the same server
//! under the name `localhost`, as Exchange sent clients to `<pod>psh.outlook.com`), and
//! reject the next N tokens with 401 (a revoked token). Counters: requests, redirects,
//! refusals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AppIdentity;
use crate::remoting::{Endpoint, Executor};

/// Exchange Online's resource (token `aud`).
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

/// Not a role: present in every app-only token (reference exo-access-token.md §4).
pub const NOT_A_ROLE: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";

/// Directory role template ids Exchange accepts for app-only access (reference §4.1).
pub const SUPPORTED_ROLES: [&str; 8] = [
    "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "62e90394-69f5-4237-9190-012177145e10",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "17315797-102d-40b4-93e0-432062caca18",
    "31392ffb-586c-42d1-9346-e59415a2cc4e",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "5d6b6bb7-de71-4623-b4af-96380a352509",
];

const MAX_BODY: usize = 2 * 1024 * 1024;

/// The RPS endpoint behind `/PowerShell-LiveID`, without its executor type.
pub trait RpsService: Send + Sync + 'static {
    /// Handles one WS-Man request for an authorized app.
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        app: AppIdentity,
        request: Request<Bytes>,
    ) -> BoxFuture<'a, Response<Bytes>>;
}

impl<E: Executor<Caller = AppIdentity>> RpsService for Endpoint<E> {
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        app: AppIdentity,
        request: Request<Bytes>,
    ) -> BoxFuture<'a, Response<Bytes>> {
        Box::pin(Endpoint::handle(self, owner, app, request))
    }
}

/// The REST InvokeCommand handler: `(app, tenant in the path, request) -> response`.
pub type AdminApi = Arc<
    dyn Fn(AppIdentity, String, Request<Bytes>) -> BoxFuture<'static, Response<Bytes>>
        + Send
        + Sync,
>;

/// The keys tokens are verified with (the simulated Entra's signing keys).
#[derive(Clone, Default)]
pub struct SigningKeys(Vec<(Option<String>, Arc<DecodingKey>)>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(kid, _)| kid))
            .finish()
    }
}

impl SigningKeys {
    /// Adds one key (`kid` None matches any token without a known kid).
    pub fn push(&mut self, kid: Option<String>, key: DecodingKey) {
        self.0.push((kid, Arc::new(key)));
    }

    /// Every key of a JWKS document.
    ///
    /// # Errors
    /// A key jsonwebtoken cannot use.
    pub fn from_jwks(
        jwks: &jsonwebtoken::jwk::JwkSet,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut keys = Self::default();
        for jwk in &jwks.keys {
            keys.push(jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)?);
        }
        Ok(keys)
    }

    fn find(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        self.0
            .iter()
            .find(|(k, _)| k.as_deref() == kid)
            .or_else(|| self.0.iter().find(|(k, _)| k.is_none()))
            .map(|(_, key)| key.as_ref())
    }
}

/// A tenant simulated Exchange hosts.
#[derive(Debug, Clone)]
pub struct SimTenant {
    /// Directory id (`tid`).
    pub tenant_id: String,
    /// Organization domain.
    pub organization: String,
    /// Apps with an Exchange-side role assignment (RBAC for applications).
    pub exchange_role_apps: HashSet<String>,
}

/// Counters tests assert on.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every request received.
    pub requests: AtomicU64,
    /// Requests that passed the token checks.
    pub authorized: AtomicU64,
    /// Redirects sent.
    pub redirects: AtomicU64,
    /// Requests that arrived under the pod name (after a redirect).
    pub pod_requests: AtomicU64,
    /// Layer-4 refusals (no management role).
    pub role_refusals: AtomicU64,
    /// 401s sent.
    pub unauthorized: AtomicU64,
}

/// Test knobs.
#[derive(Debug, Default)]
pub struct Knobs {
    /// Redirect requests not addressed to `localhost` there (Exchange's pod redirect).
    pub redirect_to_pod: AtomicBool,
    /// Answer the next N otherwise valid tokens with 401 (a revoked token).
    pub reject_next_tokens: AtomicU32,
}

/// Simulated Exchange Online.
pub struct ExchangeSim {
    keys: SigningKeys,
    tenants: HashMap<String, SimTenant>,
    rps: Arc<dyn RpsService>,
    adminapi: Option<AdminApi>,
    /// Counters.
    pub counters: Counters,
    /// Knobs.
    pub knobs: Knobs,
}

impl std::fmt::Debug for ExchangeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeSim")
            .field("tenants", &self.tenants.len())
            .finish_non_exhaustive()
    }
}

/// Why a request was refused, and how Exchange says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Layers 1–3: HTTP 401 (RPS: empty body).
    Unauthorized(String),
    /// Layer 4: no management role.
    NoManagementRole {
        /// The app id.
        app_id: String,
    },
}

#[derive(Debug, Deserialize)]
struct Claims {
    tid: String,
    appid: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    wids: Vec<String>,
}

enum Api {
    Rps,
    Rest(String),
}

impl ExchangeSim {
    /// A simulator trusting `keys` for `tenants`, with RPS on `rps` and REST on `adminapi`.
    pub fn new(
        keys: SigningKeys,
        tenants: Vec<SimTenant>,
        rps: Arc<dyn RpsService>,
        adminapi: Option<AdminApi>,
    ) -> Self {
        Self {
            keys,
            tenants: tenants
                .into_iter()
                .map(|t| (t.tenant_id.clone(), t))
                .collect(),
            rps,
            adminapi,
            counters: Counters::default(),
            knobs: Knobs::default(),
        }
    }

    /// Exchange's checks, layers 2–4, on a bearer token.
    ///
    /// # Errors
    /// The [`Refusal`] Exchange would answer.
    pub fn authorize(&self, token: &str) -> Result<AppIdentity, Refusal> {
        let bad = |why: &str| Refusal::Unauthorized(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(bad("unsupported signing algorithm"));
        }
        let key = self
            .keys
            .find(header.kid.as_deref())
            .ok_or_else(|| bad("unknown signing key"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[EXCHANGE_RESOURCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidAudience => bad("The audience claim value is invalid for current resource. resource type is 'Exchange'."),
                ErrorKind::ExpiredSignature => bad("the token has expired"),
                _ => bad("the token signature or claims are invalid"),
            }
        })?;
        let claims = data.claims;
        let Some(tenant) = self.tenants.get(&claims.tid) else {
            return Err(bad("the tenant is not hosted here"));
        };
        let app_id = claims.appid.or(claims.azp).ok_or_else(|| bad("no appid"))?;
        if !claims.roles.iter().any(|r| r == "Exchange.ManageAsApp") {
            return Err(bad("UnAuthorized"));
        }
        let has_role = claims
            .wids
            .iter()
            .any(|w| SUPPORTED_ROLES.contains(&w.as_str()));
        if !has_role && !tenant.exchange_role_apps.contains(&app_id) {
            return Err(Refusal::NoManagementRole { app_id });
        }
        Ok(AppIdentity {
            tenant_id: claims.tid,
            app_id,
            organization: tenant.organization.clone(),
        })
    }

    /// Handles one request (the HTTP server calls this; tests may too).
    pub async fn handle(&self, request: Request<Bytes>, pod_authority: &str) -> Response<Bytes> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let at_pod = host.eq_ignore_ascii_case(pod_authority);
        if at_pod {
            self.counters.pod_requests.fetch_add(1, Ordering::Relaxed);
        }
        let path = request.uri().path().to_ascii_lowercase();
        // EXOModuleFile is the one GET: the cmdlet list the bridge trims its catalog to (§10).
        let expected_method = if path.ends_with("/exomodulefile") {
            Method::GET
        } else {
            Method::POST
        };
        let api = if path.trim_end_matches('/') == "/powershell-liveid" {
            Api::Rps
        } else if let Some(tenant) =
            tenant_segment(request.uri().path(), "/adminapi/beta/", "/invokecommand").or_else(
                || tenant_segment(request.uri().path(), "/adminapi/v1.0/", "/exomodulefile"),
            )
        {
            Api::Rest(tenant)
        } else {
            return text(StatusCode::NOT_FOUND, "404 - File or directory not found.");
        };
        if request.method() != expected_method {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 - method not allowed");
        }
        if matches!(api, Api::Rps) && self.knobs.redirect_to_pod.load(Ordering::Relaxed) && !at_pod
        {
            self.counters.redirects.fetch_add(1, Ordering::Relaxed);
            let query = request
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let location = format!("https://{pod_authority}{}{query}", request.uri().path());
            let mut rsp = text(StatusCode::FOUND, "");
            if let Ok(value) = HeaderValue::from_str(&location) {
                rsp.headers_mut().insert(header::LOCATION, value);
            }
            return rsp;
        }
        let token = match &api {
            Api::Rps => rps_token(&request),
            Api::Rest(_) => request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned),
        };
        let Some(token) = token else {
            return self.unauthorized(&api, "no usable credential");
        };
        let app = match self.authorize(&token) {
            Ok(app) => app,
            Err(Refusal::Unauthorized(why)) => return self.unauthorized(&api, &why),
            Err(Refusal::NoManagementRole { app_id }) => {
                self.counters.role_refusals.fetch_add(1, Ordering::Relaxed);
                return role_refusal(&api, &app_id);
            }
        };
        if self
            .knobs
            .reject_next_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return self.unauthorized(&api, "token revoked (knob)");
        }
        self.counters.authorized.fetch_add(1, Ordering::Relaxed);
        match api {
            Api::Rps => {
                if let Some(wrong) = anchor_mismatch(&request, &app) {
                    return text(StatusCode::BAD_REQUEST, &wrong);
                }
                let owner = format!("{}/{}", app.tenant_id, app.app_id);
                self.rps.handle(&owner, app, request).await
            }
            Api::Rest(tenant) => match &self.adminapi {
                Some(adminapi) => adminapi(app, tenant, request).await,
                None => text(
                    StatusCode::NOT_FOUND,
                    "REST admin API not simulated in this sandbox",
                ),
            },
        }
    }

    fn unauthorized(&self, api: &Api, why: &str) -> Response<Bytes> {
        self.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why, "simulated Exchange: 401");
        match api {
            // RPS: an empty 401, which Windows shows as "Access is denied".
            Api::Rps => text(StatusCode::UNAUTHORIZED, ""),
            Api::Rest(_) => json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": {"code": "UnAuthorized", "message": why}}),
            ),
        }
    }
}

/// The `{tenant}` of `<prefix>{tenant}<suffix>` (prefix and suffix matched case-insensitively),
/// in its original case.
fn tenant_segment(path: &str, prefix: &str, suffix: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let tenant = lower.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!tenant.is_empty() && !tenant.contains('/'))
        .then(|| path[prefix.len()..prefix.len() + tenant.len()].to_owned())
}

/// `Basic base64(user:Bearer <jwt>)` with `BasicAuthToOAuthConversion=true`, else None.
fn rps_token(request: &Request<Bytes>) -> Option<String> {
    let query = request.uri().query().unwrap_or("");
    let conversion = query.split(['&', ';']).any(|pair| {
        pair.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("BasicAuthToOAuthConversion") && v.eq_ignore_ascii_case("true")
        })
    });
    if !conversion {
        return None;
    }
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let b64 = value.strip_prefix("Basic ")?;
    let decoded =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?;
    let (_user, password) = decoded.split_once(':')?;
    password.strip_prefix("Bearer ").map(str::to_owned)
}

/// The `email=SystemMailbox{…}@<organization>` anchor must name the token's tenant.
fn anchor_mismatch(request: &Request<Bytes>, app: &AppIdentity) -> Option<String> {
    let query = request.uri().query().unwrap_or("");
    let email = query.split(['&', ';']).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case("email").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })?;
    let domain = email.rsplit_once('@').map(|(_, d)| d)?;
    (!domain.eq_ignore_ascii_case(&app.organization)).then(|| {
        format!(
            "The anchor mailbox {email} is not in organization {}",
            app.organization
        )
    })
}

fn role_refusal(api: &Api, app_id: &str) -> Response<Bytes> {
    match api {
        Api::Rps => {
            let message = format!(
                "[AuthZRequestId={}][FailureCategory=AuthZ-CmdletAccessDeniedException] The application {app_id} isn't assigned to any management roles. Please check online documentation for assigning correct Directory Roles to Azure AD Application for EXO App-Only Authentication.",
                uuid::Uuid::new_v4()
            );
            exchange_fault(&message)
        }
        Api::Rest(_) => json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": "UnAuthorized", "message": format!(
                "The role assigned to application {app_id} isn't supported in this scenario. Please check online documentation for assigning correct Directory Roles to Azure AD Application for EXO App-Only Authentication."
            )}}),
        ),
    }
}

/// A WS-Man fault shaped as Exchange's front end sent it (HTTP 500).
fn exchange_fault(message: &str) -> Response<Bytes> {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action><a:MessageID>uuid:{}</a:MessageID></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:AccessDenied</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escaped}</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="5" Machine="exchange.sandbox"><f:Message>{escaped}</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4()
    );
    let mut rsp = Response::new(Bytes::from(body));
    *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
    );
    rsp
}

fn text(status: StatusCode, body: &str) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(body.to_owned()));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    rsp
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(value.to_string()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    rsp
}

/// Serves the simulator over TLS on `listener` until `stop` is cancelled. The "pod" a
/// redirect points to is `localhost:<port>` (the server certificate must name `localhost`).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    sim: Arc<ExchangeSim>,
    stop: CancellationToken,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
    let pod: Arc<str> = Arc::from(format!("localhost:{port}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tasks = TaskTracker::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            () = stop.cancelled() => break,
        };
        let (acceptor, sim, pod, stop) = (acceptor.clone(), sim.clone(), pod.clone(), stop.clone());
        tasks.spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (sim, pod) = (sim.clone(), pod.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let rsp = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                        Ok(body) => {
                            sim.handle(Request::from_parts(parts, body.to_bytes()), &pod)
                                .await
                        }
                        Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "request too large"),
                    };
                    Ok::<_, std::convert::Infallible>(rsp.map(Full::new))
                }
            });
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new()).keep_alive(true);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    /// An RSA signing key for tests (the real one comes from the simulated Entra).
    pub(crate) fn test_key() -> (EncodingKey, DecodingKey) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA keygen");
        let enc = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("encoding key");
        let dec =
            DecodingKey::from_rsa_pem(pair.public_key_pem().as_bytes()).expect("decoding key");
        (enc, dec)
    }

    struct NoRps;
    impl RpsService for NoRps {
        fn handle<'a>(
            &'a self,
            _: &'a str,
            _: AppIdentity,
            _: Request<Bytes>,
        ) -> BoxFuture<'a, Response<Bytes>> {
            Box::pin(async { text(StatusCode::OK, "rps") })
        }
    }

    fn sim(dec: DecodingKey) -> ExchangeSim {
        let mut keys = SigningKeys::default();
        keys.push(Some("k1".into()), dec);
        ExchangeSim::new(
            keys,
            vec![
                SimTenant {
                    tenant_id: "t-contoso".into(),
                    organization: "contoso.onmicrosoft.com".into(),
                    exchange_role_apps: HashSet::new(),
                },
                SimTenant {
                    tenant_id: "t-rbac".into(),
                    organization: "rbac.onmicrosoft.com".into(),
                    exchange_role_apps: HashSet::from(["app".to_owned()]),
                },
            ],
            Arc::new(NoRps),
            None,
        )
    }

    fn token(enc: &EncodingKey, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, enc).unwrap()
    }

    fn claims(
        tid: &str,
        aud: &str,
        exp_in: i64,
        roles: &[&str],
        wids: &[&str],
    ) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({"aud": aud, "tid": tid, "appid": "app", "exp": now + exp_in, "roles": roles, "wids": wids})
    }

    #[test]
    fn exchange_checks_are_layered_like_exchange() {
        let (enc, dec) = test_key();
        let sim = sim(dec);
        let admin = "29232cdf-9323-42fd-ade2-1d097af3e4de";
        let ok = token(
            &enc,
            claims(
                "t-contoso",
                EXCHANGE_RESOURCE,
                3600,
                &["Exchange.ManageAsApp"],
                &[NOT_A_ROLE, admin],
            ),
        );
        assert_eq!(
            sim.authorize(&ok).unwrap().organization,
            "contoso.onmicrosoft.com"
        );

        let aud = token(
            &enc,
            claims(
                "t-contoso",
                "https://graph.microsoft.com",
                3600,
                &["Exchange.ManageAsApp"],
                &[admin],
            ),
        );
        assert!(
            matches!(sim.authorize(&aud), Err(Refusal::Unauthorized(m)) if m.contains("audience"))
        );
        let expired = token(
            &enc,
            claims(
                "t-contoso",
                EXCHANGE_RESOURCE,
                -3600,
                &["Exchange.ManageAsApp"],
                &[admin],
            ),
        );
        assert!(matches!(
            sim.authorize(&expired),
            Err(Refusal::Unauthorized(_))
        ));
        let no_perm = token(
            &enc,
            claims("t-contoso", EXCHANGE_RESOURCE, 3600, &[], &[admin]),
        );
        assert!(matches!(
            sim.authorize(&no_perm),
            Err(Refusal::Unauthorized(_))
        ));
        let no_role = token(
            &enc,
            claims(
                "t-contoso",
                EXCHANGE_RESOURCE,
                3600,
                &["Exchange.ManageAsApp"],
                &[NOT_A_ROLE],
            ),
        );
        assert_eq!(
            sim.authorize(&no_role),
            Err(Refusal::NoManagementRole {
                app_id: "app".into()
            })
        );
        let rbac = token(
            &enc,
            claims(
                "t-rbac",
                EXCHANGE_RESOURCE,
                3600,
                &["Exchange.ManageAsApp"],
                &[NOT_A_ROLE],
            ),
        );
        assert!(
            sim.authorize(&rbac).is_ok(),
            "an Exchange-side assignment authorizes without a directory role"
        );

        let (other, _) = test_key();
        let forged = token(
            &other,
            claims(
                "t-contoso",
                EXCHANGE_RESOURCE,
                3600,
                &["Exchange.ManageAsApp"],
                &[admin],
            ),
        );
        assert!(matches!(
            sim.authorize(&forged),
            Err(Refusal::Unauthorized(_))
        ));
    }

    #[tokio::test]
    async fn rps_needs_the_conversion_flag_and_the_right_anchor_and_refuses_cryptically() {
        let (enc, dec) = test_key();
        let sim = sim(dec);
        let basic = |tok: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("OAuthUser@t:Bearer {tok}"))
            )
        };
        let request = |query: &str, auth: &str| {
            Request::post(format!("/PowerShell-LiveID?{query}"))
                .header(header::AUTHORIZATION, auth)
                .body(Bytes::new())
                .unwrap()
        };
        let admin = "29232cdf-9323-42fd-ade2-1d097af3e4de";
        let ok = token(
            &enc,
            claims(
                "t-contoso",
                EXCHANGE_RESOURCE,
                3600,
                &["Exchange.ManageAsApp"],
                &[admin],
            ),
        );
        let anchor = "email=SystemMailbox%7Bx%7D%40contoso.onmicrosoft.com";
        let good = sim
            .handle(
                request(
                    &format!("BasicAuthToOAuthConversion=true&{anchor}"),
                    &basic(&ok),
                ),
                "pod",
            )
            .await;
        assert_eq!(good.status(), StatusCode::OK);
        let no_flag = sim.handle(request(anchor, &basic(&ok)), "pod").await;
        assert_eq!(no_flag.status(), StatusCode::UNAUTHORIZED);
        let wrong_anchor = sim
            .handle(
                request(
                    "BasicAuthToOAuthConversion=true&email=x%40fabrikam.onmicrosoft.com",
                    &basic(&ok),
                ),
                "pod",
            )
            .await;
        assert_eq!(wrong_anchor.status(), StatusCode::BAD_REQUEST);

        let no_role = token(
            &enc,
            claims(
                "t-contoso",
                EXCHANGE_RESOURCE,
                3600,
                &["Exchange.ManageAsApp"],
                &[NOT_A_ROLE],
            ),
        );
        let refused = sim
            .handle(
                request(
                    &format!("BasicAuthToOAuthConversion=true&{anchor}"),
                    &basic(&no_role),
                ),
                "pod",
            )
            .await;
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8_lossy(refused.body());
        assert!(
            body.contains("isn't assigned to any management roles"),
            "{body}"
        );
        assert!(
            !body.contains("contoso"),
            "Exchange's text does not name the tenant"
        );
        assert_eq!(sim.counters.role_refusals.load(Ordering::Relaxed), 1);
    }
}
