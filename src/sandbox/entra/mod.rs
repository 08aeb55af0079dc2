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

mod app;
mod assertion;
mod federated_issuer;
mod response;
mod token;

pub use app::{App, FederatedCredential, RegisteredCertificate};
pub use federated_issuer::FederatedIssuer;

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
use tokio::net::TcpListener;

use super::pki::{AppCertificate, PkiError, rsa_components};
use crate::secret::Secret;
use response::{aadsts, json_response};

/// The resource simulated Exchange is.
pub use crate::sandbox::claims::EXCHANGE_RESOURCE;
/// The audience a federated assertion must carry (the FIC default).
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
