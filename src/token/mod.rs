//! The token engine: the only door to Entra ID.
//!
//! SKELETON (issue #3 owns this directory). The public surface below is what the proxy and
//! the REST bridge code against; keep it, extend it.

use std::time::SystemTime;

use crate::config::TenantName;
use crate::secret::Secret;

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
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The tenant name is not configured.
    #[error("tenant {0} is not configured")]
    UnknownTenant(TenantName),
}

/// Certificate-based app-only tokens, cached per tenant, refreshed ahead of expiry.
pub struct TokenEngine {}

impl TokenEngine {
    /// A valid token for `tenant` (cached; one request per tenant however many callers).
    ///
    /// # Errors
    /// [`TokenError`] when Entra refuses or cannot be reached and no valid token is cached.
    pub async fn token(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        let _ = tenant;
        todo!("issue #3")
    }

    /// Drops the cached token for `tenant` and fetches a new one (claims are snapshotted at
    /// issuance: used after Exchange refuses a token, and by `check`).
    ///
    /// # Errors
    /// As for [`TokenEngine::token`].
    pub async fn refresh(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        let _ = tenant;
        todo!("issue #3")
    }
}
