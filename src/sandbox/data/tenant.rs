//! The tenant store: one [`Tenant`] per directory id, made on first use.
//!
//! Thread-safe: a tenant's state is behind an `RwLock`; `Get-*` share it, `Set-*` take it
//! briefly and replace the changed mailbox's `Arc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::{Knobs, Mailbox, OrgConfig, Stats};

/// All tenants' data, knobs and counters.
#[derive(Debug)]
pub struct ExchangeData {
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    mailboxes_per_tenant: usize,
    /// Fault knobs.
    pub knobs: Knobs,
    /// Counters.
    pub stats: Stats,
}

impl ExchangeData {
    /// Data where each tenant has `mailboxes_per_tenant` mailboxes.
    pub fn new(mailboxes_per_tenant: usize) -> Self {
        Self {
            tenants: Mutex::new(HashMap::new()),
            mailboxes_per_tenant,
            knobs: Knobs::default(),
            stats: Stats::default(),
        }
    }

    /// The tenant (made on first use, deterministically).
    pub fn tenant(&self, tenant_id: &str, organization: &str) -> Arc<Tenant> {
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(tenant_id.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(Tenant::generate(
                    tenant_id,
                    organization,
                    self.mailboxes_per_tenant,
                ))
            })
            .clone()
    }
}

/// One tenant.
#[derive(Debug)]
pub struct Tenant {
    /// Directory id.
    pub tenant_id: String,
    /// `contoso.onmicrosoft.com`
    pub organization: String,
    /// The back-end server name Exchange's texts mention.
    pub server: String,
    pub(super) state: RwLock<State>,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) mailboxes: Vec<Arc<Mailbox>>,
    pub(super) org: OrgConfig,
}

impl Tenant {
    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}
