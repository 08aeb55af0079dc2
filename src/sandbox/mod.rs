//! Simulated Entra ID and Exchange Online (DESIGN.md §5), for `exo-authproxy sandbox` and tests.
//!
//! Ownership: `entra.rs` and `pki.rs` (#3), `exchange.rs` (HTTP, token checks, routing; #5),
//! `data.rs`, `rps.rs`, `adminapi.rs` (tenant data and cmdlets; #6). This file holds the
//! `sandbox` command: the real proxy between the two simulators, all on loopback.

pub mod entra;
pub mod exchange;
pub mod pki;

use std::net::SocketAddr;

use crate::config::Mode;

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

/// `exo-authproxy sandbox` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Upstream mode.
    pub mode: Mode,
    /// The demo user's password.
    pub password: String,
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Not yet assembled in this build.
    #[error(
        "the sandbox needs the simulated Entra ID (sandbox::entra) and PKI (sandbox::pki), not in this build yet"
    )]
    NotAssembled,
}

/// Runs the sandbox until `shutdown` completes, printing the banner to `out`.
///
/// # Errors
/// [`SandboxError`].
pub async fn run(
    options: Options,
    out: &mut (dyn std::io::Write + Send),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    let _ = (options, out, shutdown);
    Err(SandboxError::NotAssembled)
}
