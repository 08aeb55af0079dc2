//! REST bridge (`rest` mode): runs remoting pipelines through Exchange Online's REST admin API.
//!
//! SKELETON (issue #6 owns this directory). `RestExecutor` implements
//! `remoting::Executor` with `Caller = RestCaller`; the proxy builds a `RestCaller` per
//! authenticated shell.

use crate::config::{Organization, TenantId, TenantName};

/// Who opened a shell in `rest` mode, as the proxy's listener established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestCaller {
    /// The local user (logs).
    pub user: String,
    /// Local tenant name (token engine key).
    pub tenant: TenantName,
    /// Directory id (REST URL path).
    pub tenant_id: TenantId,
    /// Organization domain.
    pub organization: Organization,
}

pub mod catalog;
pub mod convert;
pub mod errors;
