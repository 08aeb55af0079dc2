//! One WS-Man shell = one PSRP runspace pool: the pool-level message exchange and the map of
//! its pipelines.
//!
//! Shells are keyed by the WS-Man ShellId and owned by the HTTP-level owner that created them;
//! the runspace-pool id (RPID) is whatever the client put in its messages and is echoed as
//! bytes, never derived from the ShellId (reference psrp-protocol.md §3.3). All pool and
//! pipeline messages of a shell share one ObjectId counter, starting at 1.
//!
//! A shell charges its owner's [`MemoryBudget`] for itself, its half-received pool messages
//! and its queued replies; dropping it (delete, idle expiry, quota reclaim) releases all of
//! it. Client data is decoded by [`inbound`](super::inbound) before the state lock is taken:
//! the lock only guards applying the decoded messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::executor::ErrorCategory;
use super::fragment::Defragmenter;
use super::inbound::{self, Decoded, Inbound, Level, Reassembler, Source};
use super::memory::{Charge, MemoryBudget, OverBudget, SHELL_COST};
use super::message::MessageType;
use super::pipeline::{Budget, PipelineCtl, PoolOutbox};
use super::psrp;
use super::records;
use super::wsman::Fault;

/// Largest PSRP message accepted from a client. Client messages are commands with their
/// arguments and single pipeline-input objects (a piped-back mailbox is ~20 KiB), so 4 MiB is
/// far above need while bounding what half-sent messages can pin per pipeline.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 4 * 1024 * 1024;

pub(crate) struct PoolState {
    pub outbox: PoolOutbox,
    pub rpid: Uuid,
    pub protocol_version: String,
    pub max_runspaces: i64,
    pub opened: bool,
    pub closed: bool,
    pub pipelines: HashMap<String, Arc<PipelineCtl>>,
    pub last_activity: Instant,
    pub in_flight: usize,
}

/// A shell and its runspace pool.
pub(crate) struct Shell<C> {
    /// ShellId (upper case, as adopted from the client).
    pub id: String,
    /// Who created it; only they see it.
    pub owner: String,
    /// The caller of the Create; every later request must come from the same caller (user
    /// and tenant).
    pub caller: C,
    /// The owner's memory budget, shared by all their shells.
    pub memory: Arc<MemoryBudget>,
    /// Reassembles pool-level fragments (creationXml, shell-level Sends).
    reassembler: Reassembler,
    /// What the shell itself costs; released when it is dropped.
    _cost: Charge,
    /// Xpress compression was negotiated on Create.
    pub compression: bool,
    /// Fragment size for pool messages (from the Create's MaxEnvelopeSize).
    pub pool_budget: Budget,
    pub object_ids: Arc<AtomicU64>,
    state: Mutex<PoolState>,
    pub notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<C> Shell<C> {
    /// A shell charged to `memory`.
    ///
    /// # Errors
    /// [`OverBudget`] when the owner cannot afford one more shell.
    pub fn new(
        id: String,
        owner: String,
        caller: C,
        memory: Arc<MemoryBudget>,
        compression: bool,
        max_envelope_size: usize,
    ) -> Result<Self, OverBudget> {
        let cost = memory.charge(SHELL_COST, "a session")?;
        Ok(Self {
            id,
            owner,
            caller,
            reassembler: Arc::new(tokio::sync::Mutex::new(Defragmenter::with_charge(
                MAX_CLIENT_MESSAGE,
                memory.empty(),
            ))),
            _cost: cost,
            compression,
            pool_budget: Budget::new(max_envelope_size, None, compression),
            object_ids: Arc::new(AtomicU64::new(1)),
            state: Mutex::new(PoolState {
                outbox: PoolOutbox::new(memory.empty()),
                rpid: Uuid::nil(),
                protocol_version: "2.0".into(),
                max_runspaces: 1,
                opened: false,
                closed: false,
                pipelines: HashMap::new(),
                last_activity: Instant::now(),
                in_flight: 0,
            }),
            notify: Notify::new(),
            memory,
        })
    }

    pub fn state(&self) -> MutexGuard<'_, PoolState> {
        lock(&self.state)
    }

    /// Marks a request in progress (the shell is not idle while one is) until the guard is
    /// dropped, which also happens when the client disconnects and the request is cancelled.
    pub fn enter(&self) -> InFlight<'_, C> {
        let mut s = self.state();
        s.in_flight += 1;
        s.last_activity = Instant::now();
        InFlight(self)
    }

    /// Marks a request done.
    fn leave(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last_activity = Instant::now();
    }

    /// Idle for longer than `limit` with no request in progress.
    pub fn is_idle(&self, now: Instant, limit: Duration) -> bool {
        self.idle_for(now).is_some_and(|idle| idle >= limit)
    }

    /// How long the shell has seen no request, or `None` while one is in progress.
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        let s = self.state();
        (s.in_flight == 0).then(|| now.duration_since(s.last_activity))
    }

    /// Whether the client's protocol is ≥ 2.3 (INFORMATION_RECORD is understood).
    pub fn information_records(&self) -> bool {
        let v = self.state().protocol_version.clone();
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (2, 3)
    }

    fn queue_pool(
        &self,
        s: &mut PoolState,
        message_type: MessageType,
        rpid: Uuid,
        value: &clixml_value::Value,
    ) -> Result<(), Fault> {
        let msg = psrp::message(message_type, rpid, Uuid::nil(), value);
        let id = self.object_ids.fetch_add(1, Ordering::Relaxed);
        s.outbox.queue(id, &msg, self.pool_budget.fragment_size())
    }

    /// Feeds one base64 blob of pool-level fragments (`element` names where it came from) and
    /// acts on the messages it completes. Decoding happens before the state lock is taken.
    ///
    /// # Errors
    /// A fault when the fragments or messages are malformed (a client bug: say what), or the
    /// owner is over their memory budget.
    pub async fn pool_data(&self, data: &str, element: &'static str) -> Result<(), Fault> {
        let source = Source {
            element,
            compressed: self.compression && element == "rsp:Stream",
        };
        let messages = inbound::decode(&self.reassembler, data, source, Level::Pool).await?;
        let mut s = self.state();
        let mut result = Ok(());
        for m in messages {
            result = self.pool_message(&mut s, m);
            if result.is_err() {
                break;
            }
        }
        drop(s);
        self.notify.notify_waiters();
        result
    }

    fn pool_message(&self, s: &mut PoolState, inbound: Inbound) -> Result<(), Fault> {
        let Inbound { msg, body } = inbound;
        let value = || match body {
            Decoded::Value(Ok((v, _))) => Ok(v),
            Decoded::Value(Err(e)) => Err(bad_data(&e.to_string())),
            _ => Err(bad_data("a pool message body was not decoded")),
        };
        match msg.message_type {
            MessageType::SessionCapability => {
                let v = value()?;
                if let Some(p) = v.property("protocolversion").and_then(version_text) {
                    s.protocol_version = p;
                }
                if msg.rpid != Uuid::nil() {
                    s.rpid = msg.rpid;
                }
                self.queue_pool(
                    s,
                    MessageType::SessionCapability,
                    Uuid::nil(),
                    &records::SessionCapability::server().to_value(),
                )?;
            }
            MessageType::InitRunspacePool => {
                let v = value()?;
                s.max_runspaces = v
                    .property("MaxRunspaces")
                    .and_then(clixml_value::Value::as_i64)
                    .unwrap_or(1)
                    .max(1);
                s.rpid = msg.rpid;
                let rpid = s.rpid;
                self.queue_pool(
                    s,
                    MessageType::ApplicationPrivateData,
                    rpid,
                    &records::application_private_data(psrp::IMPLICIT_REMOTING_HASH),
                )?;
                self.queue_pool(
                    s,
                    MessageType::RunspacePoolState,
                    rpid,
                    &records::runspace_pool_state(records::RunspacePoolState::Opened, None),
                )?;
                s.opened = true;
            }
            MessageType::SetMaxRunspaces
            | MessageType::SetMinRunspaces
            | MessageType::ResetRunspaceState
            | MessageType::GetAvailableRunspaces => {
                let v = value()?;
                let ci = psrp::call_id(&v);
                let reply = match msg.message_type {
                    MessageType::GetAvailableRunspaces => {
                        records::runspace_availability_count(ci, s.max_runspaces)
                    }
                    MessageType::SetMaxRunspaces => {
                        if let Some(n) = v
                            .property("MaxRunspaces")
                            .and_then(clixml_value::Value::as_i64)
                        {
                            s.max_runspaces = n.max(1);
                        }
                        records::runspace_availability(ci, true)
                    }
                    _ => records::runspace_availability(ci, true),
                };
                let rpid = msg.rpid;
                self.queue_pool(s, MessageType::RunspaceAvailability, rpid, &reply)?;
            }
            MessageType::PublicKey => {
                // Declined: a clean, explained Broken state instead of leaving the client
                // waiting three minutes for a key (reference §5.4).
                let e = psrp::endpoint_error(
                    "exo-authproxy does not exchange session keys, so SecureString values cannot be \
                     sent through it. Pass such values as plain strings (the connection is \
                     already TLS-encrypted) and open a new session."
                        .into(),
                    "SessionKeyExchangeNotSupported",
                    ErrorCategory::NotImplemented,
                );
                let rpid = msg.rpid;
                self.queue_pool(
                    s,
                    MessageType::RunspacePoolState,
                    rpid,
                    &records::runspace_pool_state(records::RunspacePoolState::Broken, Some(&e)),
                )?;
            }
            other => {
                tracing::debug!(shell = %self.id, message_type = ?other, "ignored pool-level PSRP message");
            }
        }
        Ok(())
    }

    /// Takes pool-level fragments for a Receive, if any are queued; `Err` when the shell is gone.
    pub fn take_pool(&self, budget: &Budget) -> Result<Vec<Vec<u8>>, Fault> {
        let mut s = self.state();
        if s.closed {
            return Err(Fault::unknown_shell(&self.id));
        }
        Ok(s.outbox.drain(budget))
    }

    /// Closes the shell: every pipeline is dropped and waiting Receives are woken.
    pub fn close(&self) {
        let pipelines: Vec<_> = {
            let mut s = self.state();
            s.closed = true;
            s.pipelines.drain().map(|(_, p)| p).collect()
        };
        for p in pipelines {
            p.terminate();
        }
        self.notify.notify_waiters();
    }

    pub fn pipeline(&self, command_id: &str) -> Option<Arc<PipelineCtl>> {
        self.state()
            .pipelines
            .get(&command_id.to_ascii_uppercase())
            .cloned()
    }

    pub fn remove_pipeline(&self, command_id: &str) -> Option<Arc<PipelineCtl>> {
        self.state()
            .pipelines
            .remove(&command_id.to_ascii_uppercase())
    }
}

/// A request in progress on a shell; see [`Shell::enter`].
pub(crate) struct InFlight<'a, C>(&'a Shell<C>);

impl<C> Drop for InFlight<'_, C> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The CLIXML value type (aliased to keep the names above short).
mod clixml_value {
    pub use crate::remoting::clixml::Value;
}

fn version_text(v: &clixml_value::Value) -> Option<String> {
    match v {
        clixml_value::Value::Version(s) | clixml_value::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A fault for PSRP data the client got wrong.
pub(crate) fn bad_data(what: &str) -> Fault {
    Fault::sender(
        "w:SchemaValidationError",
        super::wsman::codes::INVALID_XML,
        format!(
            "The PowerShell remoting data in this request could not be read ({what}). This is a client bug; reconnect with New-PSSession."
        ),
    )
}
