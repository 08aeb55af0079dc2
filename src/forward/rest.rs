//! `rest` mode at the forwarding level: the proxy is the script's remoting endpoint, and each
//! pipeline runs through the REST bridge.
//!
//! Built here from the configuration ([`endpoint`]): the HTTPS client (`client`, the same
//! trust as `winrm`), the bridge's executor over the token provider, and the remoting
//! endpoint over it. [`Rest::forward`] hands an authenticated, pre-flighted request to the
//! endpoint as the [`RestCaller`] the route names.
//!
//! Every response in this mode is made by the proxy, so a fault the endpoint builds (shell
//! quota, unknown shell, undecodable data, a Receive that timed out …) is marked like the
//! proxy's other faults: `X-Exo-Authproxy-Error` and the `requests_total` outcome. The code is
//! the endpoint's own ([`FaultCode`] in the response's extensions: every fault the endpoint
//! builds carries one), so none goes unmarked and nothing parses the body.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::Route;
use super::client::{self, UpstreamError};
use crate::bridge::{RestCaller, RestExecutor, RestSettings};
use crate::config::Config;
use crate::errors::{self, Body, ProxyError};
use crate::remoting::wsman::FaultCode;
use crate::remoting::{Endpoint, Executor};
use crate::token::{Audience, TokenProvider};

/// The remoting endpoint behind `rest` mode, without its executor type (so the listener and
/// the admin listener are not generic over it).
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

/// What every rest-mode endpoint counts and records into.
#[derive(Clone, Copy)]
pub struct Observers<'a> {
    /// Counters.
    pub metrics: &'a crate::metrics::Metrics,
    /// The audit trail (cmdlet calls).
    pub audit: &'a crate::audit::Audit,
    /// Sessions the endpoint ends itself (idle, reclaimed, shutdown).
    pub sessions: &'a Arc<crate::audit::sessions::SessionLog>,
}

/// `rest` mode's endpoint for `config` and `audience`: the remoting endpoint over the REST
/// bridge, with tokens from `tokens`. Exchange: `[exchange] endpoint`. Security & Compliance
/// (`/compliance/powershell-liveid/`): `[compliance] endpoint` (default from the cloud), whose
/// executor discovers each tenant's region and uses S&C tokens.
///
/// # Errors
/// [`UpstreamError`] for a bad endpoint or CA file.
pub fn endpoint(
    config: &Config,
    audience: crate::token::Audience,
    tokens: Arc<dyn TokenProvider>,
    observers: Observers<'_>,
) -> Result<Arc<dyn RemotingService>, UpstreamError> {
    let (settings, ca_file) = match audience {
        crate::token::Audience::Exchange => (
            RestSettings::new(client::endpoint(&config.exchange.endpoint)?),
            config.exchange.ca_file.as_deref(),
        ),
        crate::token::Audience::Compliance => (
            RestSettings::compliance(client::endpoint(&config.compliance_endpoint())?),
            config.compliance.ca_file.as_deref(),
        ),
    };
    let http = client::http_client(ca_file)?;
    let executor = RestExecutor::new(http, tokens, settings)
        .with_metrics(observers.metrics.bridge.clone())
        .with_audit(observers.audit.clone());
    Ok(Arc::new(
        Endpoint::new(Arc::new(executor), crate::remoting::Settings::default())
            .with_sessions(observers.sessions.clone(), audience.as_str()),
    ))
}

/// The caller a `rest` shell is opened with.
pub fn rest_caller(route: &Route) -> RestCaller {
    RestCaller {
        user: route.user.clone(),
        tenant: route.tenant.name.clone(),
        tenant_id: route.tenant.tenant_id.clone(),
        organization: route.tenant.organization.clone(),
        app_id: route.tenant.app_id.clone(),
    }
}

/// `rest` mode: requests go to the remoting endpoint.
#[derive(Clone)]
pub struct Rest {
    endpoint: Arc<dyn RemotingService>,
    compliance: Option<Arc<dyn RemotingService>>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").finish_non_exhaustive()
    }
}

impl Rest {
    /// Over `endpoint` (built by [`endpoint`], or a test's).
    pub fn new(endpoint: Arc<dyn RemotingService>) -> Self {
        Self {
            endpoint,
            compliance: None,
        }
    }

    /// Serves `/compliance/powershell-liveid/` with `compliance` ([`compliance_endpoint`]).
    #[must_use]
    pub fn with_compliance(mut self, compliance: Arc<dyn RemotingService>) -> Self {
        self.compliance = Some(compliance);
        self
    }

    /// The endpoint (open sessions, shutdown).
    pub fn endpoint(&self) -> &Arc<dyn RemotingService> {
        &self.endpoint
    }

    /// The S&C endpoint, when served.
    pub fn compliance(&self) -> Option<&Arc<dyn RemotingService>> {
        self.compliance.as_ref()
    }

    /// The endpoint serving `audience`.
    fn endpoint_for(&self, audience: Audience) -> Option<&Arc<dyn RemotingService>> {
        match audience {
            Audience::Exchange => Some(&self.endpoint),
            Audience::Compliance => self.compliance.as_ref(),
        }
    }

    /// Runs one WS-Man request through the endpoint as `route`'s caller; a fault the endpoint
    /// made is marked as the proxy's.
    pub async fn forward(
        &self,
        route: &Route,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Body>, ProxyError> {
        let endpoint = self
            .endpoint_for(route.audience)
            .ok_or(ProxyError::ComplianceNeedsRest)?;
        let rsp = endpoint
            .handle(&route.user, rest_caller(route), request)
            .await;
        let code = proxy_code(&rsp);
        tracing::info!(user = %route.user, tenant = %route.tenant.name, mode = "rest", endpoint = route.audience.as_str(),
            status = rsp.status().as_u16(), code = code.unwrap_or("-"), "handled");
        let mut rsp = rsp.map(errors::full);
        if let Some(code) = code {
            errors::mark_invented(&mut rsp, code);
        }
        Ok(rsp)
    }
}

/// The `X-Exo-Authproxy-Error` code of an endpoint response; None for a success.
fn proxy_code(rsp: &http::Response<Bytes>) -> Option<&'static str> {
    if rsp.status().is_success() {
        return None;
    }
    let Some(FaultCode(code)) = rsp.extensions().get::<FaultCode>() else {
        // Every fault the endpoint builds is tagged; an untagged failure is still the proxy's.
        return Some("remoting-fault");
    };
    // A header value and a metrics label: only the endpoint's own kebab-case constants.
    let valid = !code.is_empty()
        && code.len() <= 48
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    Some(if valid { code } else { "remoting-fault" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::wsman::{Fault, fault_response};

    #[test]
    fn endpoint_faults_get_a_stable_code() {
        let unknown = fault_response(&Fault::unknown_shell("S1"), None);
        assert_eq!(proxy_code(&unknown), Some("unknown-shell"));
        let mut tagged = fault_response(&Fault::unknown_shell("S1"), None);
        tagged.extensions_mut().insert(FaultCode("shell-quota"));
        assert_eq!(proxy_code(&tagged), Some("shell-quota"), "the tag wins");
        tagged.extensions_mut().insert(FaultCode("Not A Code\n"));
        assert_eq!(proxy_code(&tagged), Some("remoting-fault"));
        let ok = http::Response::new(Bytes::from_static(b"<s:Envelope/>"));
        assert_eq!(proxy_code(&ok), None);
        let mut untagged = http::Response::new(Bytes::from_static(b"WSManFault Code=\"x"));
        *untagged.status_mut() = http::StatusCode::BAD_REQUEST;
        assert_eq!(proxy_code(&untagged), Some("remoting-fault"));
    }
}
