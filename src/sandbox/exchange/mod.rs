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

mod backend;
mod request;
mod response;
mod server;
mod signing_keys;
#[cfg(test)]
pub(crate) mod tests;

pub use backend::{AdminApi, RpsService};
pub use server::serve;
pub use signing_keys::SigningKeys;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::sandbox::AppIdentity;
use request::{anchor_mismatch, rps_token, tenant_segment};
use response::{json, role_refusal, text};

pub use crate::sandbox::claims::{
    APP_ONLY_MARKER as NOT_A_ROLE, EXCHANGE_RESOURCE, MANAGE_AS_APP, SUPPORTED_ROLES,
};

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
    /// TCP connections accepted (a proxy's upstream pool is judged by it).
    pub connections: AtomicU64,
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
        if !claims.roles.iter().any(|r| r == MANAGE_AS_APP) {
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
