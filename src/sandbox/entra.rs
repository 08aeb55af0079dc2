//! Simulated Entra ID: the token endpoint, JWKS and OpenID configuration, over real HTTPS.
//!
//! It checks what Entra checks, exactly, so the proxy's client is tested against something
//! that says no for the same reasons: the client assertion's signature against the registered
//! certificate found by `x5t` / `x5t#S256`, `aud` = the token URL it was posted to, `iss` =
//! `sub` = client id, `exp` / `nbf`, `jti` not replayed; client secrets; federated assertions
//! (issuer, subject, audience, signature, expiry). Refusals are AADSTS-shaped bodies with the
//! real codes (entra-client-credentials.md §6), so the proxy's error mapping is exercised.
//!
//! Tokens are RS256 JWTs signed with a key generated per run ([`EntraSim::decoding_key`],
//! [`EntraSim::jwks`]) that simulated Exchange uses to verify them: `aud`
//! `https://outlook.office365.com`, `tid`, `appid`, `roles: ["Exchange.ManageAsApp"]` when the
//! tenant consented to the permission, `wids` with the app-only marker `0997a1d0-…` plus the
//! template ids of the directory roles assigned to the app in that tenant.
//!
//! Knobs for tests: latency, "fail the next N requests with status S", "throttle the next N
//! with Retry-After", token lifetime and `refresh_in`; counters of token requests per tenant.
//!
//! The caller binds the listener (`127.0.0.1:0` in tests) and supplies the TLS config
//! (from [`super::pki::TestCa`]), as everything else in the crate does.

// Refusals are built as the HTTP response they become; boxing them would buy nothing in a
// simulator that answers a handful of requests per test.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::pki::{AppCertificate, PkiError, certificate_public_key, rsa_components};
use crate::secret::Secret;
use crate::token::claims::{APP_ONLY_MARKER, MANAGE_AS_APP};

/// The resource simulated Exchange is.
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";
/// The audience a federated assertion must carry (the FIC default).
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A certificate registered on an app.
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    /// base64url SHA-1 of the DER.
    pub x5t: String,
    /// base64url SHA-256 of the DER.
    pub x5t_s256: String,
    /// PKCS#1 RSA public key.
    pub public_key: Vec<u8>,
    /// The certificate's `notAfter`: Entra refuses assertions from an expired certificate.
    pub not_after: Option<std::time::SystemTime>,
}

impl RegisteredCertificate {
    /// From a certificate's DER (what a user uploads as `.cer`).
    ///
    /// # Errors
    /// A message when the DER is not an X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        use sha1::Digest as _;
        let public_key =
            certificate_public_key(der).ok_or("not an X.509 certificate with a public key")?;
        Ok(Self {
            x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)),
            public_key,
            not_after: crate::token::x509::certificate_validity(der).map(|(_, until)| until),
        })
    }
}

impl From<&AppCertificate> for RegisteredCertificate {
    fn from(c: &AppCertificate) -> Self {
        Self {
            x5t: c.x5t(),
            x5t_s256: c.x5t_s256(),
            public_key: c.public_key.clone(),
            not_after: crate::token::x509::certificate_validity(&c.der).map(|(_, until)| until),
        }
    }
}

/// A federated identity credential on an app: trust tokens from `issuer` about `subject`.
#[derive(Debug, Clone)]
pub struct FederatedCredential {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `sub`.
    pub subject: String,
    /// Expected `aud` (usually [`FEDERATED_AUDIENCE`]).
    pub audience: String,
    /// The issuer's PKCS#1 RSA public key (real Entra fetches the issuer's JWKS).
    pub public_key: Vec<u8>,
}

/// An app registration (in its home tenant; multi-tenant).
#[derive(Debug, Clone, Default)]
pub struct App {
    /// Application (client) id.
    pub client_id: String,
    /// Display name.
    pub display_name: String,
    /// Uploaded certificates.
    pub certificates: Vec<RegisteredCertificate>,
    /// Client secret values.
    pub secrets: Vec<Secret<String>>,
    /// Federated identity credentials.
    pub federated: Vec<FederatedCredential>,
}

/// An app's standing in one tenant.
#[derive(Debug, Clone)]
struct Consent {
    /// Whether `Exchange.ManageAsApp` was consented (else tokens carry no roles).
    permission: bool,
    /// Directory role template ids assigned to the service principal.
    directory_roles: Vec<String>,
    /// The service principal's object id in this tenant.
    object_id: String,
}

#[derive(Debug, Default)]
struct Registry {
    apps: HashMap<String, App>,
    /// tenant id → client id → consent.
    tenants: HashMap<String, HashMap<String, Consent>>,
}

#[derive(Debug)]
struct Knobs {
    latency: Duration,
    fail_next: u32,
    fail_status: StatusCode,
    throttle_next: u32,
    retry_after: u64,
    lifetime: u64,
    refresh_in: Option<u64>,
}

struct State {
    kid: String,
    signing: Secret<jsonwebtoken::EncodingKey>,
    public_key: Vec<u8>,
    registry: Mutex<Registry>,
    knobs: Mutex<Knobs>,
    requests: Mutex<HashMap<String, u64>>,
    seen_jti: Mutex<HashSet<String>>,
}

/// The simulated Entra ID. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct EntraSim {
    state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EntraSim {
    /// A simulator with a fresh token-signing key and no apps or tenants.
    ///
    /// # Errors
    /// [`PkiError`] when the signing key cannot be generated.
    pub fn new() -> Result<Self, PkiError> {
        let key = AppCertificate::generate("exo-authproxy sandbox token signing")?;
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(key.key_pem.expose().as_bytes())
            .map_err(|e| PkiError::Pfx(format!("signing key: {e}")))?;
        Ok(Self {
            state: Arc::new(State {
                kid: key.x5t(),
                signing: Secret::new(signing),
                public_key: key.public_key.clone(),
                registry: Mutex::default(),
                knobs: Mutex::new(Knobs {
                    latency: Duration::ZERO,
                    fail_next: 0,
                    fail_status: StatusCode::SERVICE_UNAVAILABLE,
                    throttle_next: 0,
                    retry_after: 1,
                    lifetime: 3599,
                    refresh_in: None,
                }),
                requests: Mutex::default(),
                seen_jti: Mutex::default(),
            }),
        })
    }

    /// Registers (or replaces) an app.
    pub fn register_app(&self, app: App) {
        lock(&self.state.registry)
            .apps
            .insert(app.client_id.clone(), app);
    }

    /// Creates a tenant (no apps consented).
    pub fn add_tenant(&self, tenant_id: &str) {
        lock(&self.state.registry)
            .tenants
            .entry(tenant_id.to_owned())
            .or_default();
    }

    /// Admin consent for `client_id` in `tenant_id`; `permission` says whether
    /// `Exchange.ManageAsApp` was among the consented permissions.
    pub fn consent(&self, tenant_id: &str, client_id: &str, permission: bool) {
        lock(&self.state.registry)
            .tenants
            .entry(tenant_id.to_owned())
            .or_default()
            .entry(client_id.to_owned())
            .and_modify(|c| c.permission = permission)
            .or_insert_with(|| Consent {
                permission,
                directory_roles: Vec::new(),
                object_id: uuid::Uuid::new_v4().to_string(),
            });
    }

    /// Assigns the directory role `template_id` to the app's service principal in `tenant_id`
    /// (consenting first if needed). Tokens issued afterwards carry it in `wids`.
    pub fn assign_role(&self, tenant_id: &str, client_id: &str, template_id: &str) {
        self.consent_if_missing(tenant_id, client_id);
        let mut reg = lock(&self.state.registry);
        if let Some(c) = reg
            .tenants
            .get_mut(tenant_id)
            .and_then(|t| t.get_mut(client_id))
            && !c.directory_roles.iter().any(|r| r == template_id)
        {
            c.directory_roles.push(template_id.to_owned());
        }
    }

    fn consent_if_missing(&self, tenant_id: &str, client_id: &str) {
        let present = lock(&self.state.registry)
            .tenants
            .get(tenant_id)
            .is_some_and(|t| t.contains_key(client_id));
        if !present {
            self.consent(tenant_id, client_id, true);
        }
    }

    /// The service principal object id of `client_id` in `tenant_id`, once consented.
    pub fn service_principal(&self, tenant_id: &str, client_id: &str) -> Option<String> {
        lock(&self.state.registry)
            .tenants
            .get(tenant_id)
            .and_then(|t| t.get(client_id))
            .map(|c| c.object_id.clone())
    }

    /// Delays every response by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state.knobs).latency = latency;
    }

    /// The next `n` token requests fail with `status` (5xx: an AADSTS "temporarily
    /// unavailable" body).
    pub fn fail_next(&self, n: u32, status: StatusCode) {
        let mut k = lock(&self.state.knobs);
        k.fail_next = n;
        k.fail_status = status;
    }

    /// The next `n` token requests get 429 with `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64) {
        let mut k = lock(&self.state.knobs);
        k.throttle_next = n;
        k.retry_after = retry_after_secs;
    }

    /// `expires_in` of issued tokens (default 3599) and optional `refresh_in`.
    pub fn set_token_lifetime(&self, expires_in: u64, refresh_in: Option<u64>) {
        let mut k = lock(&self.state.knobs);
        k.lifetime = expires_in;
        k.refresh_in = refresh_in;
    }

    /// Token requests received for `tenant_id` (every POST, including refused ones).
    pub fn token_requests(&self, tenant_id: &str) -> u64 {
        lock(&self.state.requests)
            .get(tenant_id)
            .copied()
            .unwrap_or(0)
    }

    /// Token requests received in total.
    pub fn total_token_requests(&self) -> u64 {
        lock(&self.state.requests).values().sum()
    }

    /// The key id in issued tokens' headers.
    pub fn kid(&self) -> &str {
        &self.state.kid
    }

    /// The key that verifies issued tokens (for simulated Exchange).
    pub fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        jsonwebtoken::DecodingKey::from_rsa_der(&self.state.public_key)
    }

    /// The JWKS document served at `/{tenant}/discovery/v2.0/keys`.
    pub fn jwks(&self) -> Value {
        let (n, e) = rsa_components(&self.state.public_key).unwrap_or_default();
        json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.state.kid,
            "x5t": self.state.kid,
            "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
        }]})
    }

    /// The `iss` of tokens for `tenant_id` (v1 tokens, as Exchange's are).
    pub fn issuer(tenant_id: &str) -> String {
        format!("https://sts.windows.net/{tenant_id}/")
    }

    /// Serves HTTPS on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let tasks = tokio_util::task::TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulated Entra: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = acceptor.clone();
            let sim = self.clone();
            tasks.spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let sim = sim.clone();
                    async move { Ok::<_, Infallible>(sim.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
        tasks.close();
    }

    /// Spawns [`EntraSim::serve`] on `listener`; the server stops when the handle drops.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn spawn(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<SimHandle> {
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.clone().serve(listener, tls, async {
            let _ = rx.await;
        }));
        Ok(SimHandle {
            authority: format!("https://{addr}"),
            _stop: tx,
            task,
        })
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let latency = lock(&self.state.knobs).latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let path = req.uri().path().to_owned();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
            .to_owned();
        let base = format!("https://{host}");
        match (req.method(), segs.as_slice()) {
            (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
                let tenant = (*tenant).to_owned();
                *lock(&self.state.requests)
                    .entry(tenant.clone())
                    .or_default() += 1;
                let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return aadsts(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            900144,
                            "The request body must be at most 64 KiB.",
                        );
                    }
                };
                let url = format!("{base}/{tenant}/oauth2/v2.0/token");
                self.token(&tenant, &url, &body)
            }
            (&Method::GET, [tenant, "discovery", "v2.0", "keys"])
            | (&Method::GET, [tenant, "discovery", "keys"]) => {
                let _ = tenant;
                json_response(StatusCode::OK, &self.jwks())
            }
            (&Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
                json_response(
                    StatusCode::OK,
                    &json!({
                        "issuer": format!("{base}/{tenant}/v2.0"),
                        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
                        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
                        "token_endpoint_auth_methods_supported":
                            ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "tenant_region_scope": "WW",
                    }),
                )
            }
            _ => aadsts(
                StatusCode::NOT_FOUND,
                "invalid_request",
                900561,
                &format!("The endpoint {path} does not exist on the simulated Entra ID."),
            ),
        }
    }

    fn token(&self, tenant: &str, url: &str, body: &[u8]) -> Response<Full<Bytes>> {
        {
            let mut k = lock(&self.state.knobs);
            if k.throttle_next > 0 {
                k.throttle_next -= 1;
                let mut rsp = aadsts(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    90055,
                    "The tenant is being throttled: too many requests. Retry after the time in \
                     the Retry-After header.",
                );
                rsp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(k.retry_after),
                );
                return rsp;
            }
            if k.fail_next > 0 {
                k.fail_next -= 1;
                return aadsts(
                    k.fail_status,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                );
            }
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        match self.issue(tenant, url, &form) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(rsp) => rsp,
        }
    }

    fn issue(
        &self,
        tenant: &str,
        url: &str,
        form: &HashMap<String, String>,
    ) -> Result<Value, Response<Full<Bytes>>> {
        let bad = StatusCode::BAD_REQUEST;
        let unauthorized = StatusCode::UNAUTHORIZED;
        let field = |k: &str| form.get(k).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return Err(aadsts(
                bad,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type; this endpoint supports client_credentials.",
            ));
        }
        let Some(client_id) = field("client_id") else {
            return Err(aadsts(
                bad,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            ));
        };
        let reg = lock(&self.state.registry);
        let Some(consents) = reg.tenants.get(tenant) else {
            return Err(aadsts(
                bad,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant \
                     ID and are signing into the correct cloud. Check with your subscription \
                     administrator, this may happen if there are no active subscriptions for the \
                     tenant."
                ),
            ));
        };
        let scope = field("scope").unwrap_or_default();
        if scope != format!("{EXCHANGE_RESOURCE}/.default") {
            return Err(aadsts(
                bad,
                "invalid_scope",
                70011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided \
                     value for the input parameter 'scope' is not valid: {scope:?}. The scope \
                     {EXCHANGE_RESOURCE}/.default is valid."
                ),
            ));
        }
        let (Some(app), Some(consent)) = (reg.apps.get(client_id), consents.get(client_id)) else {
            return Err(aadsts(
                bad,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant}'. This can happen if the application has not been installed by \
                     the administrator of the tenant or consented to by any user in the tenant. \
                     You may have sent your authentication request to the wrong tenant."
                ),
            ));
        };
        let acr = if let Some(secret) = field("client_secret") {
            let ok = app
                .secrets
                .iter()
                .any(|s| bool::from(s.expose().as_bytes().ct_eq(secret.as_bytes())));
            if !ok {
                return Err(aadsts(
                    unauthorized,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the \
                         request is the client secret value, not the client secret ID, for a \
                         secret added to app '{client_id}'."
                    ),
                ));
            }
            "1"
        } else if let Some(assertion) = field("client_assertion") {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                return Err(aadsts(
                    bad,
                    "invalid_request",
                    50027,
                    &format!("client_assertion_type must be {JWT_BEARER}."),
                ));
            }
            self.check_assertion(app, url, assertion)?;
            "2"
        } else {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or \
                 'client_secret'.",
            ));
        };
        let k = lock(&self.state.knobs);
        let now = now_secs();
        let mut wids = consent.directory_roles.clone();
        wids.push(APP_ONLY_MARKER.to_owned());
        let mut claims = json!({
            "aud": EXCHANGE_RESOURCE,
            "iss": Self::issuer(tenant),
            "iat": now, "nbf": now, "exp": now + k.lifetime,
            "app_displayname": app.display_name,
            "appid": client_id,
            "appidacr": acr,
            "idp": Self::issuer(tenant),
            "idtyp": "app",
            "oid": consent.object_id,
            "sub": consent.object_id,
            "tid": tenant,
            "uti": URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
            "ver": "1.0",
            "wids": wids,
        });
        if consent.permission {
            claims["roles"] = json!([MANAGE_AS_APP]);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.state.kid.clone());
        header.x5t = Some(self.state.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, self.state.signing.expose()).map_err(|e| {
                aadsts(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    50000,
                    &format!("signing failed: {e}"),
                )
            })?;
        let mut out = json!({
            "token_type": "Bearer",
            "expires_in": k.lifetime,
            "ext_expires_in": k.lifetime,
            "access_token": token,
        });
        if let Some(r) = k.refresh_in {
            out["refresh_in"] = json!(r);
        }
        Ok(out)
    }

    fn check_assertion(
        &self,
        app: &App,
        url: &str,
        assertion: &str,
    ) -> Result<(), Response<Full<Bytes>>> {
        let unauthorized = StatusCode::UNAUTHORIZED;
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| {
            aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!("The client assertion is not a valid JWT ({e})."),
            )
        })?;
        let client_id = &app.client_id;
        let now = now_secs();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.algorithms = vec![
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::PS256,
        ];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        if header.x5t.is_none() && header.x5t_s256.is_none() {
            return self.check_federated(app, assertion, &validation, now);
        }
        let key = app.certificates.iter().find(|c| {
            header.x5t.as_ref().is_none_or(|t| *t == c.x5t)
                && header.x5t_s256.as_ref().is_none_or(|t| *t == c.x5t_s256)
        });
        let Some(key) = key else {
            let thumb = header
                .x5t
                .as_deref()
                .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
                .map(hex::encode_upper)
                .unwrap_or_else(|| header.x5t_s256.clone().unwrap_or_default());
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                700027,
                &format!(
                    "The certificate with identifier used to sign the client assertion is not \
                     registered on application. [Reason - The key was not found., Thumbprint of \
                     key used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer \
                     or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
                ),
            ));
        };
        if key
            .not_after
            .is_some_and(|until| until < std::time::SystemTime::now())
        {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is expired on \
                 application. [Reason - The key used is expired.]",
            ));
        }
        let data = jsonwebtoken::decode::<Value>(
            assertion,
            &jsonwebtoken::DecodingKey::from_rsa_der(&key.public_key),
            &validation,
        )
        .map_err(|e| {
            aadsts(
                unauthorized,
                "invalid_client",
                700027,
                &format!(
                    "Client assertion failed signature validation. [Reason - The key used to \
                     sign does not match the registered certificate ({e}).]"
                ),
            )
        })?;
        let c = &data.claims;
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        if s("aud") != Some(url) {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!(
                    "Client assertion audience claim does not match Realm issuer. Review the \
                     documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials. \
                     [aud {:?}, expected {url:?}]",
                    s("aud").unwrap_or_default()
                ),
            ));
        }
        if s("iss") != Some(client_id) || s("sub") != Some(client_id) {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!(
                    "Client assertion iss and sub must both be the client id '{client_id}' \
                     (iss {:?}, sub {:?}).",
                    s("iss").unwrap_or_default(),
                    s("sub").unwrap_or_default()
                ),
            ));
        }
        check_window(c, now)?;
        let Some(jti) = s("jti") else {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                "Client assertion must contain a 'jti' claim.",
            ));
        };
        let mut seen = lock(&self.state.seen_jti);
        if seen.len() >= 100_000 {
            // Bounded memory; assertions live five minutes, so old ids are long expired.
            seen.clear();
        }
        if !seen.insert(format!("{client_id}/{jti}")) {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!("The client assertion with jti '{jti}' has already been used (replay)."),
            ));
        }
        Ok(())
    }

    fn check_federated(
        &self,
        app: &App,
        assertion: &str,
        validation: &jsonwebtoken::Validation,
        now: u64,
    ) -> Result<(), Response<Full<Bytes>>> {
        let bad = StatusCode::BAD_REQUEST;
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
            .map_err(|e| {
                aadsts(
                    bad,
                    "invalid_request",
                    50027,
                    &format!("The federated assertion is not a valid JWT ({e})."),
                )
            })?
            .claims;
        let s = |k: &str| {
            unverified
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let (iss, sub) = (s("iss"), s("sub"));
        let by_issuer: Vec<_> = app.federated.iter().filter(|f| f.issuer == iss).collect();
        if by_issuer.is_empty() {
            return Err(aadsts(
                bad,
                "invalid_request",
                700211,
                &format!(
                    "No matching federated identity record found for presented assertion issuer '{iss}'."
                ),
            ));
        }
        let Some(fic) = by_issuer.into_iter().find(|f| f.subject == sub) else {
            return Err(aadsts(
                bad,
                "invalid_request",
                700213,
                &format!(
                    "No matching federated identity record found for presented assertion subject '{sub}'."
                ),
            ));
        };
        let aud_ok = match unverified.get("aud") {
            Some(Value::String(a)) => *a == fic.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&fic.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(aadsts(
                bad,
                "invalid_request",
                700212,
                &format!(
                    "No matching federated identity record found for presented assertion \
                     audience; expected '{}'.",
                    fic.audience
                ),
            ));
        }
        let data = jsonwebtoken::decode::<Value>(
            assertion,
            &jsonwebtoken::DecodingKey::from_rsa_der(&fic.public_key),
            validation,
        )
        .map_err(|e| {
            aadsts(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                50012,
                &format!("The federated assertion failed signature validation ({e})."),
            )
        })?;
        check_window(&data.claims, now)
    }
}

fn check_window(c: &Value, now: u64) -> Result<(), Response<Full<Bytes>>> {
    let n = |k: &str| c.get(k).and_then(Value::as_u64);
    let exp = n("exp").unwrap_or(0);
    let nbf = n("nbf").or(n("iat")).unwrap_or(0);
    // Entra tolerates a few minutes of clock skew on nbf, none on exp.
    if now >= exp || nbf > now + 300 {
        return Err(aadsts(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {now}, \
                 assertion valid from {nbf}, expiry time of assertion {exp}."
            ),
        ));
    }
    Ok(())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(v.to_string())));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    rsp
}

/// An AADSTS-shaped error body, as Entra sends them.
fn aadsts(status: StatusCode, error: &str, code: u32, message: &str) -> Response<Full<Bytes>> {
    let trace = uuid::Uuid::new_v4().to_string();
    let correlation = uuid::Uuid::new_v4().to_string();
    let ts = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// A running simulator; dropping it stops the server.
pub struct SimHandle {
    /// `https://127.0.0.1:<port>`: what `[entra] authority` is set to.
    pub authority: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An external token issuer for federated credentials (Kubernetes, GitHub OIDC, …).
pub struct FederatedIssuer {
    /// `iss` of its tokens.
    pub issuer: String,
    key: Secret<jsonwebtoken::EncodingKey>,
    public_key: Vec<u8>,
}

impl FederatedIssuer {
    /// A new issuer with a fresh RSA key.
    ///
    /// # Errors
    /// [`PkiError`] when key generation fails.
    pub fn new(issuer: &str) -> Result<Self, PkiError> {
        let c = AppCertificate::generate("federated issuer")?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(c.key_pem.expose().as_bytes())
            .map_err(|e| PkiError::Pfx(format!("issuer key: {e}")))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            key: Secret::new(key),
            public_key: c.public_key,
        })
    }

    /// The credential to put on an app so it trusts this issuer's tokens about `subject`.
    pub fn credential(&self, subject: &str) -> FederatedCredential {
        FederatedCredential {
            issuer: self.issuer.clone(),
            subject: subject.to_owned(),
            audience: FEDERATED_AUDIENCE.to_owned(),
            public_key: self.public_key.clone(),
        }
    }

    /// A token about `subject` for [`FEDERATED_AUDIENCE`], valid from `now - age` for
    /// `lifetime` seconds (an `age` past `lifetime` makes an expired token).
    pub fn mint(&self, subject: &str, age: u64, lifetime: u64) -> String {
        let start = now_secs().saturating_sub(age);
        let claims = json!({
            "iss": self.issuer, "sub": subject, "aud": [FEDERATED_AUDIENCE],
            "iat": start, "nbf": start, "exp": start + lifetime,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            self.key.expose(),
        )
        .expect("signing with a freshly generated RSA key does not fail")
    }
}
