//! The PowerShell remoting endpoint: WS-Man + PSRP + CLIXML, server side.
//!
//! SKELETON (issue #4 owns this directory). The public surface below is what the proxy
//! (`rest` mode), the sandbox's simulated Exchange and the tests code against; keep it, extend it.
//!
//! Layout: `wsman` (SOAP envelopes, actions, faults), `fragment` (PSRP fragments),
//! `message` (PSRP messages), `clixml` (objects), `executor` (the seam to whatever runs the
//! commands), and the shell/runspace/pipeline state machine.

pub mod binding;
pub mod clixml;
pub mod fragment;
pub mod message;
pub mod xpress;
pub mod executor;
pub mod wsman;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use executor::Executor;

/// Limits and timeouts of the endpoint. Defaults are what a real client needs plus a margin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request envelope accepted, in bytes (clients raise MaxEnvelopeSize to 512000).
    pub max_envelope_size: usize,
    /// A shell with no request for this long is deleted.
    pub idle_timeout: Duration,
    /// Shells one owner may have open at once.
    pub max_shells_per_owner: usize,
    /// Outputs buffered per pipeline before the executor is made to wait.
    pub output_buffer: usize,
    /// Longest a Receive is held open when the client asks for more (OperationTimeout cap).
    pub max_operation_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_envelope_size: 512_000 * 2,
            idle_timeout: Duration::from_secs(15 * 60),
            max_shells_per_owner: 16,
            output_buffer: 256,
            max_operation_timeout: Duration::from_secs(60),
        }
    }
}

/// The endpoint: all shells, their runspace pools and pipelines.
pub struct Endpoint<E: Executor> {
    executor: Arc<E>,
    settings: Settings,
}

impl<E: Executor> Endpoint<E> {
    /// An endpoint running commands on `executor`.
    pub fn new(executor: Arc<E>, settings: Settings) -> Self {
        Self { executor, settings }
    }

    /// Handles one WS-Man request (the whole body, already size-limited by the caller to
    /// `settings.max_envelope_size`). `owner` keys the shells: a shell is only visible to the
    /// owner that created it. Never panics on client input: protocol errors become WS-Man
    /// faults, PowerShell-level errors PSRP messages.
    pub async fn handle(
        &self,
        owner: &str,
        caller: E::Caller,
        request: http::Request<Bytes>,
    ) -> http::Response<Bytes> {
        let _ = (owner, caller, request, &self.executor, &self.settings);
        todo!("issue #4")
    }

    /// Stops every pipeline and forgets every shell (used at shutdown).
    pub fn close_all(&self) {
        todo!("issue #4")
    }
}
