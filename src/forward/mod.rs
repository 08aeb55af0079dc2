//! Where an authenticated request goes: `winrm` passthrough or the `rest` bridge's endpoint.
//!
//! The listener has decided who the client is (a `[[user]]`) and which tenant the request is
//! for; this module holds what both upstream modes need: the [`Route`] (user + tenant facts),
//! the [`TokenSource`] seam over the token engine (the only door to Entra ID), and the
//! [`RemotingService`] seam over `remoting::Endpoint<bridge::RestExecutor>`, so the listener
//! is not generic over the executor type.

pub mod winrm;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::bridge::RestCaller;
use crate::config::{Organization, TenantId, TenantName};
use crate::remoting::{Endpoint, Executor};
use crate::token::{AccessToken, Diagnosis, TokenEngine, TokenError};

/// A configured tenant, as the forwarders need it.
#[derive(Debug, Clone)]
pub struct TenantRoute {
    /// Local name.
    pub name: TenantName,
    /// Directory id.
    pub tenant_id: TenantId,
    /// Organization domain.
    pub organization: Organization,
    /// The app's client id (for messages).
    pub app_id: String,
    /// Refuse up front when the token has no supported directory role.
    pub require_directory_role: bool,
}

/// Who is asking, and for which tenant.
#[derive(Debug, Clone)]
pub struct Route {
    /// The local user name.
    pub user: String,
    /// The tenant.
    pub tenant: Arc<TenantRoute>,
}

/// The token engine as the forwarders use it (a seam so the listener can be tested before
/// and without Entra).
pub trait TokenSource: Send + Sync + 'static {
    /// A valid token for `tenant` (cached).
    fn token<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    /// Drops the cached token and fetches a new one.
    fn refresh<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    /// Every tenant's token state without fetching (readiness); a source that keeps no
    /// state reports none.
    fn health(&self) -> BoxFuture<'_, Vec<(TenantName, crate::token::Health)>> {
        Box::pin(std::future::ready(Vec::new()))
    }
}

impl TokenSource for TokenEngine {
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
    fn health(&self) -> BoxFuture<'_, Vec<(TenantName, crate::token::Health)>> {
        Box::pin(TokenEngine::health(self))
    }
}

/// Whether the token shows no supported directory role (the claims diagnosis's warning).
pub fn lacks_directory_role(token: &AccessToken) -> bool {
    matches!(token.diagnosis, Diagnosis::Warning(_))
}

/// The remoting endpoint behind `rest` mode, without its executor type.
pub trait RemotingService: Send + Sync + 'static {
    /// Handles one WS-Man request for `owner` (the local user).
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        caller: RestCaller,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'a, http::Response<Bytes>>;

    /// Stops every pipeline (shutdown).
    fn close_all(&self);

    /// Remote PowerShell sessions open now (`/metrics`).
    fn open_sessions(&self) -> usize;
}

impl<E: Executor<Caller = RestCaller>> RemotingService for Endpoint<E> {
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        caller: RestCaller,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'a, http::Response<Bytes>> {
        Box::pin(Endpoint::handle(self, owner, caller, request))
    }

    fn close_all(&self) {
        Endpoint::close_all(self);
    }

    fn open_sessions(&self) -> usize {
        self.shell_count()
    }
}

/// The caller a `rest` shell is opened with.
pub fn rest_caller(route: &Route) -> RestCaller {
    RestCaller {
        user: route.user.clone(),
        tenant: route.tenant.name.clone(),
        tenant_id: route.tenant.tenant_id.clone(),
        organization: route.tenant.organization.clone(),
    }
}
