//! Simulated Entra ID and Exchange Online (DESIGN.md §5), for `exo-authproxy sandbox` and tests.
//!
//! SKELETON. Ownership: `entra.rs` and `pki.rs` (#3), `exchange.rs` (HTTP, token checks,
//! routing; #5), `data.rs`, `rps.rs`, `adminapi.rs` (tenant data and cmdlets; #6).

/// The app as simulated Exchange established it from a verified Bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIdentity {
    /// `tid`
    pub tenant_id: String,
    /// `appid`
    pub app_id: String,
    /// The tenant's organization domain.
    pub organization: String,
}

pub mod adminapi;
pub mod data;
pub mod entra;
pub mod pki;
pub mod rps;
