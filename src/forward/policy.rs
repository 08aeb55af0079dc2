//! The pre-flight policy: what is checked before a request reaches either upstream mode.
//!
//! One policy for both modes, run by the door ([`super::Forwarder`]) before `winrm` or `rest`
//! sees the request, so a tenant is refused the same way whichever mode is configured:
//!
//! 1. the tenant's token from the token engine (a failure carries Entra's diagnosis and fix);
//! 2. a token whose claims show Exchange will refuse it (wrong audience, tenant, no
//!    `Exchange.ManageAsApp`) is refused with the claims diagnosis, without contacting Exchange;
//! 3. with `[[tenant]] require_directory_role = true`, a token without a directory role the
//!    route's endpoint accepts is refused up front (DESIGN.md §4; the token engine judges each
//!    audience's token by its endpoint's roles, so an Exchange Administrator is ready for
//!    `/powershell-liveid/` and refused here for `/compliance/powershell-liveid/`). Without it the missing role is only a warning:
//!    an Exchange-side role assignment (RBAC for applications) authorizes the app without
//!    showing in the token, so only Exchange's refusal is a verdict, and its text is
//!    [`RoleRefusal`]'s in both modes.

use super::Route;
use crate::errors::ProxyError;
use crate::token::claims::RoleRefusal;
use crate::token::{AccessToken, Diagnosis, TokenProvider};

/// Steps 1–3: the token to use for `route`, or the refusal.
///
/// # Errors
/// [`ProxyError::Token`], [`ProxyError::TokenUnusable`], [`ProxyError::DirectoryRoleRequired`].
pub async fn preflight(
    tokens: &dyn TokenProvider,
    route: &Route,
) -> Result<AccessToken, ProxyError> {
    usable(
        route,
        tokens.token_for(&route.tenant.name, route.audience).await,
    )
}

/// A newer token after Exchange refused `route`'s (claims are snapshotted at issuance: a role
/// assigned since shows only in a new token). The engine rate-limits these per tenant, so
/// within its interval this is the latest token and the caller repeats its diagnosis.
///
/// # Errors
/// As for [`preflight`].
pub async fn refreshed(
    tokens: &dyn TokenProvider,
    route: &Route,
) -> Result<AccessToken, ProxyError> {
    tracing::info!(tenant = %route.tenant.name, "Exchange refused the token: asking for a newer one");
    usable(
        route,
        tokens.refresh_for(&route.tenant.name, route.audience).await,
    )
}

/// A fetched token, or why `route` cannot be served with it.
fn usable(
    route: &Route,
    fetched: Result<AccessToken, crate::token::TokenError>,
) -> Result<AccessToken, ProxyError> {
    let token = fetched.map_err(|source| ProxyError::Token {
        tenant: route.tenant.name.clone(),
        source: Box::new(source),
    })?;
    check(route, &token)?;
    Ok(token)
}

/// Steps 2–3 on a token already in hand.
///
/// # Errors
/// [`ProxyError::TokenUnusable`], [`ProxyError::DirectoryRoleRequired`].
pub fn check(route: &Route, token: &AccessToken) -> Result<(), ProxyError> {
    if let Diagnosis::Unusable(reason) = &token.diagnosis {
        return Err(ProxyError::TokenUnusable {
            tenant: route.tenant.name.clone(),
            reason: reason.clone(),
            endpoint: route.audience,
        });
    }
    if route.tenant.require_directory_role && token.lacks_directory_role() {
        return Err(ProxyError::DirectoryRoleRequired {
            tenant: route.tenant.name.clone(),
            organization: route.tenant.organization.0.clone(),
            app_id: route.tenant.app_id.clone(),
            endpoint: route.audience,
        });
    }
    Ok(())
}

/// Exchange refused `route`'s app, whose token has no supported directory role.
pub fn role_refusal(route: &Route) -> RoleRefusal {
    RoleRefusal {
        tenant: route.tenant.name.clone(),
        organization: route.tenant.organization.0.clone(),
        app_id: route.tenant.app_id.clone(),
    }
}
