//! Where an authenticated request goes: the door to both upstream modes.
//!
//! The listener has decided who the client is (a `[[user]]`) and which tenant the request is
//! for ([`Route`]); it hands the request to the [`Forwarder`] and nothing else. The forwarder
//! runs the one pre-flight policy ([`policy`]: token, unusable-token check,
//! `require_directory_role`) and then the configured mode:
//!
//! - `winrm` ([`winrm`]): passthrough to Exchange's `/PowerShell-LiveID`;
//! - `rest` ([`rest`]): the proxy's own remoting endpoint over the REST bridge.
//!
//! So both modes refuse a tenant with the same texts, and the listener knows neither mode's
//! internals. Shared upstream pieces live beside them: [`client`] (TLS roots, the HTTPS
//! client, `UpstreamError`), [`redirect`] (where `winrm` lets the token follow a redirect),
//! [`query`] (the client's query string), and [`probe`], `check`'s live question to Exchange
//! through the same door. Data flows one way: listener → forward →
//! {winrm, rest → bridge} → token.

pub mod client;
pub mod policy;
pub mod probe;
pub mod query;
pub mod redirect;
pub mod rest;
pub mod winrm;

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;

use crate::config::{Organization, TenantId, TenantName};
use crate::errors::{Body, ProxyError};
use crate::token::{Audience, TokenProvider};

pub use client::UpstreamError;
pub use rest::{RemotingService, Rest};
pub use winrm::{ConnectionState, Winrm};

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
    /// Which endpoint the client opened: `/powershell-liveid/` (Exchange) or
    /// `/compliance/powershell-liveid/` (Security & Compliance).
    pub audience: Audience,
}

/// One authenticated WS-Man request, as the listener read it.
#[derive(Debug)]
pub struct Inbound {
    /// Method, URI (with the client's query), headers.
    pub parts: Parts,
    /// The envelope (bounded by the listener).
    pub body: Bytes,
    /// The WS-Man operation (`Create`, `Receive`, … or `-`), for logs.
    pub action: &'static str,
}

/// The configured upstream mode.
pub enum Upstream {
    /// Passthrough to `/PowerShell-LiveID`.
    Winrm(Box<Winrm>),
    /// The proxy is the remoting endpoint (REST bridge).
    Rest(Rest),
}

/// The door: pre-flight policy, then the configured mode.
pub struct Forwarder {
    tokens: Arc<dyn TokenProvider>,
    upstream: Upstream,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// The door to `upstream`, pre-flighting with tokens from `tokens`.
    pub fn new(tokens: Arc<dyn TokenProvider>, upstream: Upstream) -> Self {
        Self { tokens, upstream }
    }

    /// `winrm` or `rest` (logs, metrics labels).
    pub fn mode(&self) -> &'static str {
        match self.upstream {
            Upstream::Winrm(_) => "winrm",
            Upstream::Rest(_) => "rest",
        }
    }

    /// The mode itself (tests read `winrm`'s counters).
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// `rest` mode's endpoint (open sessions for `/metrics`), None in `winrm` mode.
    pub fn remoting(&self) -> Option<Arc<dyn RemotingService>> {
        match &self.upstream {
            Upstream::Rest(rest) => Some(rest.endpoint().clone()),
            Upstream::Winrm(_) => None,
        }
    }

    /// Stops what the mode keeps running (rest: every pipeline). Called after the drain.
    pub fn close_all(&self) {
        if let Upstream::Rest(rest) = &self.upstream {
            rest.endpoint().close_all();
            if let Some(compliance) = rest.compliance() {
                compliance.close_all();
            }
        }
    }

    /// Forwards one request for `route`: the pre-flight policy, then the mode.
    ///
    /// # Errors
    /// A [`ProxyError`] for everything the proxy answers itself: the policy's refusals, and
    /// in `winrm` mode Exchange's refusals diagnosed, unreachable upstream, refused redirects.
    pub async fn forward(
        &self,
        conn: &ConnectionState,
        route: &Route,
        request: Inbound,
    ) -> Result<http::Response<Body>, ProxyError> {
        if route.audience == Audience::Compliance && matches!(self.upstream, Upstream::Winrm(_)) {
            // S&C retired RPS: nothing to pass through, so say what to set.
            return Err(ProxyError::ComplianceNeedsRest);
        }
        let token = policy::preflight(self.tokens.as_ref(), route).await?;
        match &self.upstream {
            Upstream::Winrm(winrm) => winrm.forward(conn, route, token, request).await,
            Upstream::Rest(rest) => {
                let Inbound { parts, body, .. } = request;
                rest.forward(route, http::Request::from_parts(parts, body))
                    .await
            }
        }
    }
}
