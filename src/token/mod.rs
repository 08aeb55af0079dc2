//! The token engine: the only door to Entra ID.
//!
//! [`TokenEngine::new`] resolves every tenant's credential once (files, PFX, environment) and
//! keeps a failure per tenant instead of failing the whole engine: one tenant with a missing
//! certificate must not take the others down, and [`TokenEngine::token`] reports it for that
//! tenant only. Tokens come from [`cache::TokenCache`] over [`client::EntraSource`].
//!
//! - `credential`: certificate (PEM, PFX), client secret, federated token file.
//! - `assertion`: the RS256 client assertion.
//! - `client`: the token endpoint and its errors.
//! - `cache`: single flight, refresh ahead, retries.
//! - `claims`: decoding and the readiness diagnosis.
//! - `x509`: the few DER fields we read (key/certificate match).
//!
//! [`TokenProvider`] is the seam the rest of the proxy takes tokens through (`forward` and
//! `bridge` both depend on it, and on nothing of each other's): the engine in production, a
//! scripted provider in tests. It lives here, with the engine, so the module graph stays
//! one-way: listener → forward → {winrm, rest → bridge} → token.

pub mod assertion;
pub mod cache;
pub mod claims;
pub mod client;
pub mod credential;
pub mod x509;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use crate::config::{Config, Environment, TenantName};
use crate::secret::Secret;

pub use cache::{CacheKey, Fetched, Health, Settings, TokenCache, TokenSource};
pub use client::{CaFileError, EntraSource, Target};
pub use credential::{Credential, CredentialError};

/// Which Microsoft service a token (and a remoting endpoint) is for.
///
/// The two admin endpoints take tokens for different resources (scc-rest-adminapi.md §1), so
/// each tenant has one cache slot per audience, with the same refresh rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Audience {
    /// Exchange Online (`/powershell-liveid/`).
    #[default]
    Exchange,
    /// Security & Compliance (`/compliance/powershell-liveid/`).
    Compliance,
}

impl Audience {
    /// Both, in display order.
    pub const ALL: [Audience; 2] = [Audience::Exchange, Audience::Compliance];

    /// `exchange` or `compliance` (CLI, metrics labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exchange => "exchange",
            Self::Compliance => "compliance",
        }
    }

    /// The service's name in messages.
    pub fn service(self) -> &'static str {
        match self {
            Self::Exchange => "Exchange Online",
            Self::Compliance => "Security & Compliance",
        }
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Audience {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "exchange" => Ok(Self::Exchange),
            "compliance" => Ok(Self::Compliance),
            other => Err(format!(
                "unknown audience {other:?}: exchange or compliance"
            )),
        }
    }
}

/// An Exchange Online access token for one tenant, with what we decoded from it.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The bearer token itself.
    pub token: Secret<String>,
    /// When it expires.
    pub expires_at: SystemTime,
    /// The token's `uti` (safe to log).
    pub uti: Option<String>,
    /// Whether the claims show a usable token (roles, directory role, audience, tid).
    pub diagnosis: Diagnosis,
}

impl AccessToken {
    /// Whether the claims show no supported directory role (the diagnosis's warning):
    /// Exchange may still accept the app through an Exchange-side role assignment.
    pub fn lacks_directory_role(&self) -> bool {
        matches!(self.diagnosis, Diagnosis::Warning(_))
    }
}

/// Where the proxy takes tokens from: the [`TokenEngine`] (the only door to Entra ID), or a
/// scripted provider in tests of the listener alone.
pub trait TokenProvider: Send + Sync + 'static {
    /// A valid token for `tenant` (cached).
    fn token<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    /// A token issued after the caller's last one (claims are snapshotted at issuance): used
    /// when Exchange refuses a token. At most one Entra request per tenant per
    /// [`Settings::forced_refresh_interval`]; within it, the latest token is returned.
    fn refresh<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    /// Every tenant's token state without fetching (readiness); a provider that keeps no
    /// state reports none.
    fn health(&self) -> BoxFuture<'_, Vec<(TenantName, Health)>> {
        Box::pin(std::future::ready(Vec::new()))
    }
    /// A valid token for `tenant` and `audience`. A provider with one token per tenant (a
    /// test's scripted one) serves it for both audiences.
    fn token_for<'a>(
        &'a self,
        tenant: &'a TenantName,
        audience: Audience,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        let _ = audience;
        self.token(tenant)
    }
    /// As [`TokenProvider::refresh`], for `audience`.
    fn refresh_for<'a>(
        &'a self,
        tenant: &'a TenantName,
        audience: Audience,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        let _ = audience;
        self.refresh(tenant)
    }
    /// Token state per tenant and audience (readiness, metrics); by default every tenant's
    /// [`TokenProvider::health`] as Exchange's.
    fn health_by_audience(&self) -> BoxFuture<'_, Vec<(TenantName, Audience, Health)>> {
        Box::pin(async move {
            self.health()
                .await
                .into_iter()
                .map(|(t, h)| (t, Audience::Exchange, h))
                .collect()
        })
    }
}

impl TokenProvider for TokenEngine {
    fn token<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(TokenEngine::token(self, tenant))
    }
    fn refresh<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(TokenEngine::refresh(self, tenant))
    }
    fn health(&self) -> BoxFuture<'_, Vec<(TenantName, Health)>> {
        Box::pin(TokenEngine::health(self))
    }
    fn token_for<'a>(
        &'a self,
        tenant: &'a TenantName,
        audience: Audience,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(TokenEngine::token_for(self, tenant, audience))
    }
    fn refresh_for<'a>(
        &'a self,
        tenant: &'a TenantName,
        audience: Audience,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(TokenEngine::refresh_for(self, tenant, audience))
    }
    fn health_by_audience(&self) -> BoxFuture<'_, Vec<(TenantName, Audience, Health)>> {
        Box::pin(TokenEngine::health_by_audience(self))
    }
}

/// The verdict on a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// Exchange.ManageAsApp and a supported directory role are present.
    Ready,
    /// Usable, with a warning (e.g. no supported directory role in `wids`: Exchange RBAC for
    /// applications may still authorize the app). The text says what to do.
    Warning(String),
    /// Exchange will refuse this token; the text says what to do.
    Unusable(String),
}

/// Why no token could be had for a tenant. Carries the facts needed to fix it.
///
/// `Clone` because one failed fetch is the answer for every caller that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The tenant name is not configured.
    #[error("tenant {0} is not configured")]
    UnknownTenant(TenantName),
    /// The tenant's credential could not be loaded at startup (or its federated token file
    /// now).
    #[error("tenant {tenant}: credential: {error}")]
    Credential {
        /// The tenant.
        tenant: TenantName,
        /// What is wrong with it.
        error: CredentialError,
    },
    /// Entra refused the request (4xx with an AADSTS body).
    #[error(transparent)]
    Rejected(Box<Rejection>),
    /// Entra could not be reached, timed out, answered 5xx or throttled us.
    #[error(
        "tenant {tenant}: token endpoint {url} unavailable after {attempts} attempt(s): {reason}{}",
        retry_after.map(|d| format!(" (Entra asked to retry after {} s)", d.as_secs())).unwrap_or_default()
    )]
    Unavailable {
        /// The tenant.
        tenant: TenantName,
        /// The token URL.
        url: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// What happened.
        reason: String,
        /// `Retry-After`.
        retry_after: Option<Duration>,
        /// How many requests were made.
        attempts: u32,
    },
    /// The answer made no sense (not JSON, no token, a token too short-lived).
    #[error("tenant {tenant}: {detail}")]
    Malformed {
        /// The tenant.
        tenant: TenantName,
        /// What was wrong.
        detail: String,
    },
}

impl TokenError {
    /// Whether retrying may help (5xx, 429, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The `Retry-After` Entra sent, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The tenant the error is about.
    pub fn tenant(&self) -> &TenantName {
        match self {
            Self::Rejected(r) => &r.tenant,
            Self::UnknownTenant(t)
            | Self::Credential { tenant: t, .. }
            | Self::Unavailable { tenant: t, .. }
            | Self::Malformed { tenant: t, .. } => t,
        }
    }

    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        if let Self::Unavailable { attempts, .. } = &mut self {
            *attempts = n;
        }
        self
    }
}

/// Entra's refusal of a token request, with the fix (boxed in [`TokenError::Rejected`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "tenant {tenant}: Entra ID rejected app {client_id} ({}{description}): {fix} \
     [HTTP {status}, trace id {trace_id}, correlation id {correlation_id}]",
    code.map(|c| format!("AADSTS{c}: ")).unwrap_or_else(|| format!("{error}: "))
)]
pub struct Rejection {
    /// The tenant.
    pub tenant: TenantName,
    /// The app.
    pub client_id: String,
    /// HTTP status.
    pub status: u16,
    /// `error_codes[0]`.
    pub code: Option<u32>,
    /// `error`.
    pub error: String,
    /// First line of `error_description`, without the `AADSTSnnn: ` prefix.
    pub description: String,
    /// What the user must do.
    pub fix: String,
    /// For Microsoft support.
    pub trace_id: String,
    /// For Microsoft support.
    pub correlation_id: String,
}

/// Why the engine cannot start at all (per-tenant problems do not stop it).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `[entra] ca_file` is unusable.
    #[error("[entra] ca_file: {0}")]
    CaFile(#[from] CaFileError),
}

/// The longest token lifetime believed (24 h; Entra issues 60–90 minutes). A larger
/// `expires_in` is clamped: the token is refreshed as if it lived this long, and a token Exchange
/// refuses as expired is refreshed on the spot anyway.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// How long before a certificate's expiry startup and `check` start warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// Logs an expired certificate, or one expiring within [`EXPIRY_WARNING`], at startup.
fn warn_on_expiry(tenant: &TenantName, cert: &credential::CertificateKey) {
    let now = SystemTime::now();
    if let Err(e) = cert.check_validity(now) {
        tracing::error!(%tenant, error = %e, "tenant certificate expired; other tenants are unaffected");
    } else if let Some(notice) = cert.expiry_notice(now, EXPIRY_WARNING) {
        tracing::warn!(%tenant, "{notice}");
    }
}

/// Certificate-based app-only tokens, cached per tenant, refreshed ahead of expiry.
pub struct TokenEngine {
    cache: TokenCache<EntraSource>,
    /// Swapped whole by [`TokenEngine::reload`].
    keys: arc_swap::ArcSwap<std::collections::HashMap<TenantName, CacheKey>>,
}

/// Every tenant's target and cache key for `config`. A tenant's own credential problem is
/// logged and kept in its target (other tenants are unaffected).
fn tenants_of(
    config: &Config,
    env: &dyn Environment,
) -> (Vec<Target>, std::collections::HashMap<TenantName, CacheKey>) {
    let authority = config.entra.authority.trim_end_matches('/').to_owned();
    let resource = config.exchange.resource();
    let compliance_resource = config.compliance_resource();
    let mut targets = Vec::new();
    let mut keys = std::collections::HashMap::new();
    for t in &config.tenants {
        let client_id = config.client_id_for(t).to_owned();
        let settings = config.credentials_for(t);
        let credential = credential::resolve(&settings, env);
        match &credential {
            Err(e) => {
                tracing::error!(tenant = %t.name, error = %e, "tenant credential unusable; other tenants are unaffected");
            }
            Ok(Credential::Certificate(cert)) => warn_on_expiry(&t.name, cert),
            Ok(_) => {}
        }
        keys.insert(
            t.name.clone(),
            CacheKey {
                audience: Audience::Exchange,
                authority: authority.as_str().into(),
                tenant: t.name.clone(),
                client_id: client_id.as_str().into(),
            },
        );
        targets.push(Target {
            tenant: t.name.clone(),
            tenant_id: t.tenant_id.clone(),
            token_url: format!("{authority}/{}/oauth2/v2.0/token", t.tenant_id),
            authority: authority.clone(),
            resource: resource.clone(),
            compliance_resource: compliance_resource.clone(),
            client_id,
            credential,
            settings,
        });
    }
    (targets, keys)
}

impl TokenEngine {
    /// Resolves every tenant's credential and builds the HTTPS client (`[entra] authority` and
    /// `ca_file` decide where it goes and whom it trusts: the sandbox sets both).
    ///
    /// Reads the credential files synchronously: call it at startup, before serving (or in
    /// `spawn_blocking`), not on a request path.
    ///
    /// # Errors
    /// [`EngineError`] only for what affects every tenant; a tenant's own credential problem
    /// is kept and returned by [`TokenEngine::token`] for that tenant.
    pub fn new(config: &Config, env: &dyn Environment) -> Result<Self, EngineError> {
        Self::with_settings(config, env, Settings::default())
    }

    /// As [`TokenEngine::new`], with explicit cache timing.
    ///
    /// # Errors
    /// As for [`TokenEngine::new`].
    pub fn with_settings(
        config: &Config,
        env: &dyn Environment,
        settings: Settings,
    ) -> Result<Self, EngineError> {
        let (targets, keys) = tenants_of(config, env);
        let source = EntraSource::new(targets, config.entra.ca_file.as_deref())?;
        Ok(Self {
            cache: TokenCache::new(source, settings),
            keys: arc_swap::ArcSwap::from_pointee(keys),
        })
    }

    /// Takes the tenants and credentials of a reloaded `config` (the authority and its trust
    /// roots need a restart: the reload refuses a change to them before calling this).
    ///
    /// Tokens already cached stay in use until they are refreshed as usual (a token does not
    /// stop being valid because the certificate that obtained it was replaced), except for a
    /// tenant whose identity (directory, app, credential settings) changed or whose last
    /// fetch failed: its cached state is forgotten, so the next request asks Entra at once
    /// with the new settings instead of waiting out a back-off or using the old tenant's token.
    /// Reads the credential files synchronously, like [`TokenEngine::new`].
    ///
    /// A tenant whose credential files changed but do not load (yet: the key written after the
    /// certificate, a half-copied PFX) keeps the credential it had, with a warning; the next
    /// change of the files is tried again.
    pub async fn reload(&self, config: &Config, env: &dyn Environment) {
        let (targets, keys) = tenants_of(config, env);
        let targets: client::Targets = targets
            .into_iter()
            .map(|target| {
                let kept = match (&target.credential, self.target(&target.tenant)) {
                    (Err(problem), Some(old))
                        if old.credential.is_ok()
                            && old.settings == target.settings
                            && old.tenant_id == target.tenant_id
                            && old.client_id == target.client_id =>
                    {
                        tracing::warn!(tenant = %target.tenant, error = %problem,
                            "app credential changed on disk but does not load (yet): keeping the previous one");
                        Some(old)
                    }
                    _ => None,
                };
                let target = kept.unwrap_or_else(|| Arc::new(target));
                (target.tenant.clone(), target)
            })
            .collect();
        let old_targets = self.cache.source().replace_targets(targets);
        let old_keys = self.keys.swap(Arc::new(keys));
        for (tenant, key) in old_keys.iter() {
            let new_target = self.target(tenant);
            let changed = match (old_targets.get(tenant), &new_target) {
                (Some(old), Some(new)) => {
                    old.tenant_id != new.tenant_id
                        || old.client_id != new.client_id
                        || old.settings != new.settings
                }
                _ => true,
            };
            for audience in [Audience::Exchange, Audience::Compliance] {
                let key = CacheKey {
                    audience,
                    ..key.clone()
                };
                if changed || matches!(self.cache.health(&key).await, Health::Failing(_)) {
                    self.cache.forget(&key).await;
                }
            }
        }
    }

    fn key(&self, tenant: &TenantName) -> Result<CacheKey, TokenError> {
        self.keys
            .load()
            .get(tenant)
            .cloned()
            .ok_or_else(|| TokenError::UnknownTenant(tenant.clone()))
    }

    fn key_for(&self, tenant: &TenantName, audience: Audience) -> Result<CacheKey, TokenError> {
        Ok(CacheKey {
            audience,
            ..self.key(tenant)?
        })
    }

    /// A valid token for `tenant` and `audience` (the same cache, one slot per audience).
    ///
    /// # Errors
    /// As for [`TokenEngine::token`].
    pub async fn token_for(
        &self,
        tenant: &TenantName,
        audience: Audience,
    ) -> Result<AccessToken, TokenError> {
        self.cache.acquire(&self.key_for(tenant, audience)?).await
    }

    /// As [`TokenEngine::refresh`], for `audience`.
    ///
    /// # Errors
    /// As for [`TokenEngine::token`].
    pub async fn refresh_for(
        &self,
        tenant: &TenantName,
        audience: Audience,
    ) -> Result<AccessToken, TokenError> {
        self.cache.refresh(&self.key_for(tenant, audience)?).await
    }

    /// Every tenant's token state for both audiences, without fetching.
    pub async fn health_by_audience(&self) -> Vec<(TenantName, Audience, Health)> {
        let mut out = Vec::new();
        for (tenant, exchange) in self.health().await {
            out.push((tenant.clone(), Audience::Exchange, exchange));
            if let Ok(key) = self.key_for(&tenant, Audience::Compliance) {
                let target = self.target(&tenant);
                let health = match target.as_ref().map(|t| t.credential.as_ref()) {
                    Some(Err(error)) => Health::Failing(TokenError::Credential {
                        tenant: tenant.clone(),
                        error: error.clone(),
                    }),
                    _ => self.cache.health(&key).await,
                };
                out.push((tenant, Audience::Compliance, health));
            }
        }
        out
    }

    /// A valid token for `tenant` (cached; one request per tenant however many callers).
    ///
    /// # Errors
    /// [`TokenError`] when Entra refuses or cannot be reached and no valid token is cached.
    pub async fn token(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        self.cache.acquire(&self.key(tenant)?).await
    }

    /// Drops the cached token for `tenant` and fetches a new one (claims are snapshotted at
    /// issuance: used after Exchange refuses a token, and by `check`).
    ///
    /// # Errors
    /// As for [`TokenEngine::token`].
    pub async fn refresh(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        self.cache.refresh(&self.key(tenant)?).await
    }

    /// Counts token requests into `metrics` from now on.
    pub fn observe(&self, metrics: crate::metrics::TokenMetrics) {
        self.cache.observe(metrics);
    }

    /// Every configured tenant's token state, by tenant name, without fetching.
    pub async fn health(&self) -> Vec<(TenantName, Health)> {
        let keys = self.keys.load_full();
        let mut out = Vec::with_capacity(keys.len());
        for (tenant, key) in keys.iter() {
            let target = self.target(tenant);
            let health = match target.as_ref().map(|t| t.credential.as_ref()) {
                // Known at startup: no fetch will ever succeed until the config is fixed.
                Some(Err(error)) => Health::Failing(TokenError::Credential {
                    tenant: tenant.clone(),
                    error: error.clone(),
                }),
                _ => self.cache.health(key).await,
            };
            out.push((tenant.clone(), health));
        }
        out.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        out
    }

    /// What the engine knows about `tenant`'s app and credential (for `check` and messages).
    pub fn target(&self, tenant: &TenantName) -> Option<Arc<Target>> {
        self.cache.source().target(tenant)
    }
}
