//! The PowerShell remoting endpoint: WS-Man + PSRP + CLIXML, server side.
//!
//! The proxy (`rest` mode), the sandbox's simulated Exchange and the tests all serve this one
//! endpoint; what runs the commands is behind the [`Executor`] seam. The HTTP layer
//! authenticates, limits the body size and hands each POST to [`Endpoint::handle`] with the
//! owner it established; everything from there on is here.
//!
//! Layout: `wsman` (SOAP envelopes, actions, faults), `fragment` (PSRP fragments), `message`
//! (PSRP messages), `clixml` (objects), `xpress` (WinRM stream compression), `psrp` (the
//! message bodies this endpoint sends and reads), `shell` (a shell = a runspace pool),
//! `pipeline` (one command, its executor task and output queue), `local` (the restricted
//! runspace's own commands and the NoLanguage rule), `wildcard` (PowerShell's wildcard
//! patterns), `executor` (the seam), `inbound` (client data decoded off the async workers),
//! `memory` (the per-user memory budget).
//!
//! Concurrency: a Windows client keeps a shell-level Receive open for the whole session while
//! it runs commands on other connections, so requests for one shell run concurrently; shell
//! and pipeline state sit behind short, synchronous locks that are never held across an await,
//! and long polls wait on `Notify`s. Client data is decoded by `inbound` before any of those
//! locks is taken, on the blocking pool when it is large.
//!
//! Ownership: a shell belongs to the owner (local user) and the caller (user + tenant) that
//! created it. Another owner's request does not see it (unknown shell); the same user naming
//! another tenant (`?DelegatedOrg=`) is refused (`shell-wrong-tenant`), so one session never
//! mixes tenants.
//!
//! # Limits
//!
//! What one user can make the endpoint hold, and what happens at the limit. Every refusal is
//! a WS-Man fault whose text says which limit and what to do, and whose [`wsman::FaultCode`]
//! (the `X-Exo-Authproxy-Error` code) is given here.
//!
//! | limit | value | at the limit |
//! |---|---|---|
//! | memory per user: shells, commands, half-received messages, queued input and replies | [`memory::USER_MEMORY_BUDGET`] (64 MiB), [`Settings::memory_per_user`] | `memory-budget` fault; deleting or expiring a shell releases everything it held |
//! | shells per user | 16, [`Settings::max_shells_per_owner`] | the user's shell idle longest, if idle for [`Settings::reclaim_idle_after`] (2 min), is closed (audited as closed); otherwise `shell-quota` fault saying how many are open and `Get-PSSession \| Remove-PSSession` |
//! | idle shell | 15 min, [`Settings::idle_timeout`] | deleted |
//! | commands per shell | 128 | `command-quota` fault |
//! | request envelope | 1 MB, [`Settings::max_envelope_size`] | `envelope-too-large` fault |
//! | one client PSRP message | 4 MiB | `bad-request-data` fault |
//! | one message's CLIXML decoded, `<Ref>` copies counted in full | 16 MiB ([`psrp::CLIENT_DECODED_LIMIT`]) | `bad-request-data` fault naming the limit |
//! | half-received messages per shell or command | 64 | `bad-request-data` fault |
//! | replies queued for the shell-level Receive | 1 MiB | `reply-queue-full` fault |
//! | pipeline input objects queued | 64 (and the memory budget) | the Send waits, then `operation-timeout` |
//! | client data decoded on the async workers | up to 64 KiB ([`inbound::OFFLOAD_THRESHOLD`]) | larger data is decoded on the blocking pool |

pub mod binding;
pub mod clixml;
pub mod executor;
pub mod fragment;
pub mod inbound;
pub mod local;
pub mod memory;
pub mod message;
mod pipeline;
pub mod psrp;
pub mod records;
mod shell;
pub mod wildcard;
pub mod wsman;
pub mod xpress;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::time::Instant;

pub use executor::Executor;

use executor::{OutputSink, PipelineEnd};
use inbound::{Decoded, Inbound, Level, Source};
use memory::{MemoryBudget, OverBudget};
use message::MessageType;
use pipeline::{Budget, PipelineCtl};
use shell::{MAX_CLIENT_MESSAGE, Shell, bad_data};
use wsman::{Body, Fault, Request, codes};

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
    /// Bytes one owner's shells may hold together (see the module's limits table).
    pub memory_per_user: usize,
    /// At the shell quota, the owner's shell idle longest is closed to make room if it has
    /// been idle this long: a script that crashed without Remove-PSSession does not lock its
    /// user out until the idle timeout, while a session in use is never taken away.
    pub reclaim_idle_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_envelope_size: 512_000 * 2,
            idle_timeout: Duration::from_secs(15 * 60),
            max_shells_per_owner: 16,
            output_buffer: 256,
            max_operation_timeout: Duration::from_secs(60),
            memory_per_user: memory::USER_MEMORY_BUDGET,
            reclaim_idle_after: Duration::from_secs(2 * 60),
        }
    }
}

/// Resource URIs of the configurations this endpoint serves (`-ConfigurationName`).
const RESOURCE_URIS: &[&str] = &[
    "http://schemas.microsoft.com/powershell/Microsoft.Exchange",
    "http://schemas.microsoft.com/powershell/Microsoft.PowerShell",
];
const SIGNAL_CTRL_C: &[&str] = &["powershell/signal/crtl_c", "powershell/signal/ctrl_c"];
/// Response size when the client names none (WinRM 2.0's default).
const DEFAULT_MAX_ENVELOPE: usize = 153_600;
/// OperationTimeout when the client names none.
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Pipeline input objects queued before a Send waits for the executor.
const INPUT_BUFFER: usize = 64;
/// Commands one shell may hold at once (running, or finished but not yet received/closed).
const MAX_PIPELINES_PER_SHELL: usize = 128;

type Shells<C> = HashMap<String, Arc<Shell<C>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The endpoint: all shells, their runspace pools and pipelines.
pub struct Endpoint<E: Executor> {
    executor: Arc<E>,
    settings: Settings,
    shells: Mutex<Shells<E::Caller>>,
    /// One memory budget per owner, shared by the owner's shells.
    budgets: Mutex<HashMap<String, Arc<MemoryBudget>>>,
    /// The audit trail's sessions and the endpoint label they are tracked under (`exchange`,
    /// `compliance`): told when the endpoint itself ends one (idle, reclaimed, shutdown).
    /// None for endpoints that are not the proxy's (the simulated Exchange).
    sessions: Option<(Arc<crate::audit::sessions::SessionLog>, &'static str)>,
}

/// The fault for a request that would take its user over the memory budget.
pub(crate) fn memory_fault(over: &OverBudget) -> Fault {
    Fault::sender(
        "w:QuotaLimit",
        codes::QUOTA_MAX_OPERATIONS,
        format!("The WS-Management service cannot process the request: {over}."),
    )
    .with_code("memory-budget")
}

impl<E: Executor> Endpoint<E> {
    /// An endpoint running commands on `executor`.
    pub fn new(executor: Arc<E>, settings: Settings) -> Self {
        Self {
            executor,
            settings,
            shells: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            sessions: None,
        }
    }

    /// Tells `sessions` when the endpoint ends a session itself (idle, reclaimed, shutdown);
    /// the listener records the openings and the Deletes. `endpoint` (`exchange`,
    /// `compliance`) is the label the listener tracks this endpoint's sessions under: one
    /// ShellId may be open on both endpoints.
    #[must_use]
    pub fn with_sessions(
        mut self,
        sessions: Arc<crate::audit::sessions::SessionLog>,
        endpoint: &'static str,
    ) -> Self {
        self.sessions = Some((sessions, endpoint));
        self
    }

    fn session_ended(&self, shell_id: &str, reason: &'static str) {
        if let Some((log, endpoint)) = &self.sessions {
            log.closed(endpoint, shell_id, reason);
        }
    }

    /// The memory budget of `owner` (created on first use; forgotten when it is unused and
    /// the owner has no shell).
    fn budget(&self, owner: &str) -> Arc<MemoryBudget> {
        let mut budgets = lock(&self.budgets);
        if budgets.len() > 64 {
            budgets.retain(|_, b| Arc::strong_count(b) > 1 || b.used() > 0);
        }
        budgets
            .entry(owner.to_owned())
            .or_insert_with(|| MemoryBudget::new(owner, self.settings.memory_per_user))
            .clone()
    }

    /// Bytes `owner`'s shells hold now, as the memory budget counts them (metrics, tests).
    pub fn memory_in_use(&self, owner: &str) -> usize {
        lock(&self.budgets).get(owner).map_or(0, |b| b.used())
    }

    /// Bytes all owners' shells hold now (metrics).
    pub fn memory_in_use_total(&self) -> usize {
        lock(&self.budgets).values().map(|b| b.used()).sum()
    }

    fn shells(&self) -> MutexGuard<'_, Shells<E::Caller>> {
        lock(&self.shells)
    }

    /// Number of open shells (for metrics and tests).
    pub fn shell_count(&self) -> usize {
        self.shells().len()
    }

    /// Handles one WS-Man request (the whole body, already size-limited by the caller to
    /// `settings.max_envelope_size`). `owner` keys the shells: a shell is only visible to the
    /// owner that created it, and only serves requests from the `caller` (user and tenant)
    /// that created it. Never panics on client input: protocol errors become WS-Man faults
    /// (each response carrying its [`wsman::FaultCode`] as an extension), PowerShell-level
    /// errors PSRP messages.
    pub async fn handle(
        &self,
        owner: &str,
        caller: E::Caller,
        request: http::Request<Bytes>,
    ) -> http::Response<Bytes> {
        if request.method() != http::Method::POST {
            let fault = Fault::sender(
                "a:ActionNotSupported",
                codes::ACTION_NOT_SUPPORTED,
                format!(
                    "HTTP {} is not WS-Management; send the SOAP envelope with POST.",
                    request.method()
                ),
            )
            .with_code("method-not-allowed");
            let mut rsp = wsman::fault_response(&fault, None);
            *rsp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
            rsp.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return rsp;
        }
        self.sweep_idle();
        let req = match wsman::parse_request(request.body(), self.settings.max_envelope_size) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "refused a WS-Man request");
                return wsman::fault_response(&e.to_fault(), None);
            }
        };
        let relates_to = req.message_id.clone();
        match self.dispatch(owner, caller, &req).await {
            Ok(inner) => wsman::ok_response(&req.action, relates_to.as_deref(), &inner),
            Err(fault) => {
                if fault.wsman_code != codes::OPERATION_TIMEDOUT {
                    tracing::info!(action = %req.action, code = fault.wsman_code, message = %fault.message, "WS-Man fault");
                }
                wsman::fault_response(&fault, relates_to.as_deref())
            }
        }
    }

    /// Stops every pipeline and forgets every shell (used at shutdown).
    pub fn close_all(&self) {
        let all: Vec<_> = self.shells().drain().map(|(_, s)| s).collect();
        for s in all {
            s.close();
            self.session_ended(&s.id, "shutdown");
        }
    }

    /// Deletes shells that saw no request for `idle_timeout` (and have none in progress).
    /// Runs at the start of every request; a server that wants idle shells gone even without
    /// traffic can also call it from a timer.
    pub fn sweep_idle(&self) {
        let now = Instant::now();
        let limit = self.settings.idle_timeout;
        let idle: Vec<_> = {
            let mut shells = self.shells();
            let ids: Vec<String> = shells
                .iter()
                .filter(|(_, s)| s.is_idle(now, limit))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| shells.remove(k)).collect()
        };
        for s in idle {
            tracing::info!(shell = %s.id, owner = %s.owner, "deleted idle shell");
            s.close();
            self.session_ended(&s.id, "idle");
        }
    }

    fn find_shell(
        &self,
        owner: &str,
        caller: &E::Caller,
        req: &Request,
    ) -> Result<Arc<Shell<E::Caller>>, Fault> {
        let id = req.shell_id.as_deref().ok_or_else(|| {
            Fault::sender(
                "w:InvalidSelectors",
                codes::INVALID_SELECTORS,
                "The request has no ShellId selector; it must name the shell it is for.",
            )
        })?;
        let key = id.trim().to_ascii_uppercase();
        let shell = self
            .shells()
            .get(&key)
            .filter(|s| s.owner == owner)
            .cloned()
            .ok_or_else(|| Fault::unknown_shell(id))?;
        if shell.caller != *caller {
            let opened = E::tenant(&shell.caller);
            let asked = E::tenant(caller);
            tracing::warn!(shell = %shell.id, owner, opened = ?opened, asked = ?asked,
                "refused a request for a shell opened for another tenant");
            return Err(wrong_tenant(&shell.id, opened.as_deref(), asked.as_deref()));
        }
        Ok(shell)
    }

    fn deadline(&self, req: &Request) -> Instant {
        let asked = req.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT);
        let t = asked.min(self.settings.max_operation_timeout);
        // Answer a little before the client gives up on its own OperationTimeout.
        let margin = (t / 10).min(Duration::from_secs(2));
        Instant::now() + t.saturating_sub(margin)
    }

    async fn dispatch(
        &self,
        owner: &str,
        caller: E::Caller,
        req: &Request,
    ) -> Result<String, Fault> {
        match req.action.as_str() {
            wsman::ACTION_CREATE => self.create(owner, caller, req).await,
            action => {
                let known = [
                    wsman::ACTION_DELETE,
                    wsman::ACTION_COMMAND,
                    wsman::ACTION_SEND,
                    wsman::ACTION_RECEIVE,
                    wsman::ACTION_SIGNAL,
                ];
                if !known.contains(&action) {
                    return Err(Fault::sender(
                        "a:ActionNotSupported",
                        codes::ACTION_NOT_SUPPORTED,
                        format!(
                            "The WS-Management action {action} is not supported by this endpoint \
                             (exo-authproxy serves New-PSSession, Invoke-Command and \
                             Import-PSSession; disconnected sessions, Get-PSSession -ComputerName \
                             and WS-Enumeration are not available, as with Exchange Online)."
                        ),
                    ));
                }
                let shell = self.find_shell(owner, &caller, req)?;
                let _in_flight = shell.enter();
                match action {
                    wsman::ACTION_DELETE => self.delete(&shell),
                    wsman::ACTION_COMMAND => self.command(&shell, req).await,
                    wsman::ACTION_SEND => self.send(&shell, req).await,
                    wsman::ACTION_RECEIVE => self.receive(&shell, req).await,
                    _ => self.signal(&shell, req),
                }
            }
        }
    }

    async fn create(&self, owner: &str, caller: E::Caller, req: &Request) -> Result<String, Fault> {
        let uri = req.resource_uri.as_deref().unwrap_or_default();
        let Some(uri) = RESOURCE_URIS
            .iter()
            .find(|u| u.eq_ignore_ascii_case(uri.trim()))
        else {
            return Err(Fault::sender(
                "a:DestinationUnreachable",
                codes::DESTINATION_UNREACHABLE,
                format!(
                    "The WS-Management service cannot process the request because the resource URI \
                     {uri:?} is not served here; use -ConfigurationName Microsoft.Exchange."
                ),
            ));
        };
        let compression = match req.compression_type.as_deref().map(str::trim) {
            None => false,
            Some(c) if c.eq_ignore_ascii_case("xpress") => true,
            Some(other) => {
                return Err(Fault::sender(
                    "w:UnsupportedFeature",
                    codes::UNSUPPORTED_FEATURE,
                    format!(
                        "Compression type {other:?} is not supported (only xpress); connect with \
                         -SessionOption (New-PSSessionOption -NoCompression)."
                    ),
                ));
            }
        };
        let Body::Shell(body) = &req.body else {
            return Err(Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "A Create request must carry an rsp:Shell body with creationXml.",
            ));
        };
        let creation = body.creation_xml.as_deref().ok_or_else(|| {
            Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "The rsp:Shell has no creationXml: this endpoint only serves PowerShell remoting shells.",
            )
        })?;
        let id = body
            .shell_id
            .as_deref()
            .map(|s| {
                s.trim()
                    .trim_matches(|c| c == '{' || c == '}')
                    .to_ascii_uppercase()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().to_ascii_uppercase());
        // The quota first: a user at the limit costs nothing more than this check.
        self.make_room(owner)?;
        let max_env = req.max_envelope_size.unwrap_or(DEFAULT_MAX_ENVELOPE);
        let shell = Shell::new(
            id.clone(),
            owner.to_owned(),
            caller,
            self.budget(owner),
            compression,
            max_env,
        )
        .map_err(|e| memory_fault(&e))?;
        let shell = Arc::new(shell);
        shell.pool_data(creation, "creationXml").await?;
        {
            let mut shells = self.shells();
            if shells.contains_key(&id) {
                return Err(Fault::sender(
                    "w:AlreadyExists",
                    codes::ALREADY_EXISTS,
                    format!("A shell with ShellId {id} already exists; use a new ShellId."),
                ));
            }
            let mine = shells.values().filter(|s| s.owner == owner).count();
            if mine >= self.settings.max_shells_per_owner {
                return Err(self.quota_fault(owner, mine));
            }
            shells.insert(id.clone(), shell);
        }
        tracing::info!(shell = %id, owner, compression, "shell created");
        let addr = req.to.as_deref().unwrap_or(wsman::ANONYMOUS);
        let e = |s: &str| wsman::xml_escape(s).into_owned();
        let mut s = String::with_capacity(1500);
        let _ = write!(
            s,
            "<x:ResourceCreated><a:Address>{addr}</a:Address><a:ReferenceParameters>\
             <w:ResourceURI>{uri}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector>\
             </w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>\
             <rsp:Shell><rsp:ShellId>{id}</rsp:ShellId><rsp:ResourceUri>{uri}</rsp:ResourceUri>\
             <rsp:Owner>{owner}</rsp:Owner>\
             <rsp:IdleTimeOut>{idle}</rsp:IdleTimeOut><rsp:InputStreams>stdin pr</rsp:InputStreams>\
             <rsp:OutputStreams>stdout</rsp:OutputStreams><rsp:CompressionMode>{mode}</rsp:CompressionMode>\
             <rsp:Encoding>UTF8</rsp:Encoding><rsp:BufferMode>Block</rsp:BufferMode>\
             <rsp:State>Connected</rsp:State><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>\
             <rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>",
            addr = e(addr),
            uri = e(uri),
            id = e(&id),
            owner = e(owner),
            idle = wsman::format_duration(self.settings.idle_timeout),
            mode = if compression {
                "XpressCompression"
            } else {
                "NoCompression"
            },
        );
        Ok(s)
    }

    /// Makes room for one more shell of `owner`: at the quota, closes the owner's shell that
    /// has been idle longest if it has been idle for `reclaim_idle_after`.
    ///
    /// # Errors
    /// The `shell-quota` fault when the owner is at the quota and no shell is idle enough.
    fn make_room(&self, owner: &str) -> Result<(), Fault> {
        let now = Instant::now();
        let reclaimed = {
            let mut shells = self.shells();
            let mine: Vec<_> = shells.values().filter(|s| s.owner == owner).collect();
            let open = mine.len();
            if open < self.settings.max_shells_per_owner {
                return Ok(());
            }
            let oldest = mine
                .iter()
                .filter_map(|s| Some((s.idle_for(now)?, s.id.clone())))
                .filter(|(idle, _)| *idle >= self.settings.reclaim_idle_after)
                .max_by_key(|(idle, _)| *idle);
            let Some((idle, id)) = oldest else {
                return Err(self.quota_fault(owner, open));
            };
            shells.remove(&id).map(|s| (s, idle))
        };
        if let Some((shell, idle)) = reclaimed {
            shell.close();
            tracing::info!(shell = %shell.id, owner, idle_secs = idle.as_secs(),
                "closed the user's longest-idle shell to make room for a new one (shell quota)");
            self.session_ended(&shell.id, "reclaimed");
        }
        Ok(())
    }

    fn quota_fault(&self, owner: &str, open: usize) -> Fault {
        Fault::sender(
            "w:QuotaLimit",
            codes::QUOTA_MAX_SHELLS,
            format!(
                "The WS-Management service cannot process the request: user {owner} already has \
                 {open} open sessions, the most allowed ({max}), and none has been idle for {idle} \
                 seconds (idle sessions are closed to make room). Close the sessions you no longer \
                 use: Get-PSSession | Remove-PSSession (a script should end with Remove-PSSession).",
                max = self.settings.max_shells_per_owner,
                idle = self.settings.reclaim_idle_after.as_secs(),
            ),
        )
        .with_code("shell-quota")
    }

    fn delete(&self, shell: &Arc<Shell<E::Caller>>) -> Result<String, Fault> {
        self.shells().remove(&shell.id);
        shell.close();
        tracing::info!(shell = %shell.id, "shell deleted");
        Ok(String::new())
    }

    async fn command(&self, shell: &Arc<Shell<E::Caller>>, req: &Request) -> Result<String, Fault> {
        let Body::CommandLine(body) = &req.body else {
            return Err(Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "A Command request must carry an rsp:CommandLine body.",
            ));
        };
        let command_id = body
            .command_id
            .as_deref()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().to_ascii_uppercase());
        let ctl = Arc::new(
            PipelineCtl::new(
                command_id.clone(),
                MAX_CLIENT_MESSAGE,
                &shell.memory,
                shell.object_ids.clone(),
                shell.information_records(),
            )
            .map_err(|e| memory_fault(&e))?,
        );
        {
            let mut s = shell.state();
            if s.closed {
                return Err(Fault::unknown_shell(&shell.id));
            }
            if s.pipelines.len() >= MAX_PIPELINES_PER_SHELL {
                return Err(Fault::sender(
                    "w:QuotaLimit",
                    codes::QUOTA_MAX_OPERATIONS,
                    format!(
                        "This session already has {MAX_PIPELINES_PER_SHELL} commands open; close \
                         finished commands (or open a new session) before starting more."
                    ),
                ));
            }
            if s.pipelines.contains_key(&command_id) {
                return Err(Fault::sender(
                    "w:AlreadyExists",
                    codes::ALREADY_EXISTS,
                    format!(
                        "Command {command_id} already exists in this shell; use a new CommandId."
                    ),
                ));
            }
            s.pipelines.insert(command_id.clone(), ctl.clone());
        }
        let source = Source {
            element: "rsp:Arguments",
            compressed: false,
        };
        for arg in &body.arguments {
            let done = self
                .pipeline_data(shell, &ctl, arg, source, self.deadline(req))
                .await;
            if let Err(fault) = done {
                // A command whose arguments were refused holds nothing.
                shell.remove_pipeline(&command_id);
                ctl.terminate();
                return Err(fault);
            }
        }
        Ok(format!(
            "<rsp:CommandResponse><rsp:CommandId>{}</rsp:CommandId></rsp:CommandResponse>",
            wsman::xml_escape(&command_id)
        ))
    }

    async fn pipeline_data(
        &self,
        shell: &Arc<Shell<E::Caller>>,
        ctl: &Arc<PipelineCtl>,
        data: &str,
        source: Source,
        deadline: Instant,
    ) -> Result<(), Fault> {
        let messages = inbound::decode(&ctl.reassembler, data, source, Level::Pipeline).await?;
        for Inbound { msg, body } in messages {
            match (msg.message_type, body) {
                (MessageType::CreatePipeline | MessageType::GetCommandMetadata, _)
                    if ctl.is_started() =>
                {
                    return Err(bad_data(
                        "a second CREATE_PIPELINE for a command that already runs",
                    ));
                }
                (MessageType::CreatePipeline, Decoded::CreatePipeline(pipeline)) => {
                    self.start_pipeline(&shell.id, ctl, shell.caller.clone(), &msg, pipeline);
                }
                (MessageType::GetCommandMetadata, Decoded::Metadata(query)) => {
                    self.start_metadata(ctl, shell.caller.clone(), &msg, query);
                }
                (MessageType::PipelineInput, Decoded::Value(value)) => {
                    let (v, size) = value.map_err(|e| bad_data(&e.to_string()))?;
                    if let Some(tx) = ctl.input() {
                        let charge = shell
                            .memory
                            .charge(size, "pipeline input")
                            .map_err(|e| memory_fault(&e))?;
                        // Waits while the executor's input queue is full (back-pressure),
                        // but not forever: a command that does not read its input would
                        // otherwise hang the client's Send.
                        let sent = tokio::time::timeout_at(deadline, tx.send((v, charge))).await;
                        if sent.is_err() {
                            return Err(Fault::receiver(
                                "w:TimedOut",
                                codes::OPERATION_TIMEDOUT,
                                format!(
                                    "Command {} is not reading its pipeline input; the input \
                                     object was not delivered. Pipe input only into commands \
                                     that accept it.",
                                    ctl.command_id
                                ),
                            ));
                        }
                    }
                }
                (MessageType::EndOfPipelineInput, _) => ctl.end_input(),
                (other, _) => {
                    tracing::debug!(shell = %shell.id, command = %ctl.command_id, message_type = ?other,
                        "ignored pipeline-level PSRP message");
                }
            }
        }
        Ok(())
    }

    fn start_pipeline(
        &self,
        shell_id: &str,
        ctl: &Arc<PipelineCtl>,
        caller: E::Caller,
        msg: &message::Message,
        pipeline: Result<executor::Pipeline, psrp::BodyError>,
    ) {
        let (sink, rx) = OutputSink::channel(self.settings.output_buffer.max(1));
        match pipeline {
            Ok(pipeline) => {
                let (input_tx, input_rx) = pipeline::input_queue(INPUT_BUFFER);
                let input_tx = (!pipeline.no_input).then_some(input_tx);
                let executor = self.executor.clone();
                ctl.start(
                    msg.rpid,
                    msg.pid,
                    input_tx,
                    rx,
                    local::run(
                        executor,
                        caller,
                        executor::Pipeline {
                            origin: executor::Origin {
                                shell_id: shell_id.to_owned(),
                                command_id: ctl.command_id.clone(),
                            },
                            ..pipeline
                        },
                        input_rx,
                        sink,
                    ),
                );
            }
            Err(e) => {
                let record = psrp::endpoint_error(
                    format!(
                        "exo-authproxy could not read this command ({e}); the client sent a pipeline it cannot run."
                    ),
                    "InvalidCreatePipeline",
                    executor::ErrorCategory::InvalidData,
                );
                ctl.start(msg.rpid, msg.pid, None, rx, async move {
                    drop(sink);
                    PipelineEnd::Failed(record)
                });
            }
        }
    }

    fn start_metadata(
        &self,
        ctl: &Arc<PipelineCtl>,
        caller: E::Caller,
        msg: &message::Message,
        query: Result<executor::MetadataQuery, psrp::BodyError>,
    ) {
        let (sink, rx) = OutputSink::channel(self.settings.output_buffer.max(1));
        let executor = self.executor.clone();
        ctl.start(msg.rpid, msg.pid, None, rx, async move {
            let query = match query {
                Ok(q) => q,
                Err(e) => {
                    return PipelineEnd::Failed(psrp::endpoint_error(
                        format!(
                            "exo-authproxy could not read this command-metadata request ({e})."
                        ),
                        "InvalidGetCommandMetadata",
                        executor::ErrorCategory::InvalidData,
                    ));
                }
            };
            let patterns = wildcard::compile_all(&query.names).and_then(|names| {
                let modules = query.namespace.as_deref().unwrap_or_default();
                Ok((names, wildcard::compile_all(modules)?))
            });
            let (names, modules) = match patterns {
                Ok(p) => p,
                Err(e) => return PipelineEnd::Failed(e.to_error_record()),
            };
            let commands = match executor.command_metadata(&caller, query.clone()).await {
                Ok(c) => c,
                Err(e) => return PipelineEnd::Failed(e),
            };
            let commands: Vec<_> = commands
                .into_iter()
                .filter(|c| names.iter().any(|p| p.is_match(&c.name)))
                .filter(|c| query.command_types & c.command_type != 0)
                .filter(|c| modules.is_empty() || modules.iter().any(|p| p.is_match(&c.namespace)))
                .collect();
            if sink
                .send(executor::Output::Object(records::command_metadata_count(
                    commands.len(),
                )))
                .await
                .is_err()
            {
                return PipelineEnd::Completed;
            }
            for c in &commands {
                if sink
                    .send(executor::Output::Object(records::command_metadata(c)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            PipelineEnd::Completed
        });
    }

    async fn send(&self, shell: &Arc<Shell<E::Caller>>, req: &Request) -> Result<String, Fault> {
        let Body::Send(streams) = &req.body else {
            return Err(Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "A Send request must carry an rsp:Send body.",
            ));
        };
        for st in streams {
            match &st.command_id {
                None => shell.pool_data(&st.data, "rsp:Stream").await?,
                Some(cid) => {
                    let ctl = shell.pipeline(cid).ok_or_else(|| unknown_command(cid))?;
                    let source = Source {
                        element: "rsp:Stream",
                        compressed: shell.compression,
                    };
                    self.pipeline_data(shell, &ctl, &st.data, source, self.deadline(req))
                        .await?;
                }
            }
        }
        Ok("<rsp:SendResponse/>".into())
    }

    async fn receive(&self, shell: &Arc<Shell<E::Caller>>, req: &Request) -> Result<String, Fault> {
        let Body::Receive(body) = &req.body else {
            return Err(Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "A Receive request must carry an rsp:Receive body.",
            ));
        };
        let deadline = self.deadline(req);
        let max_env = req.max_envelope_size.unwrap_or(DEFAULT_MAX_ENVELOPE);
        let stream =
            wsman::xml_escape(body.desired_stream.as_deref().unwrap_or("stdout")).into_owned();
        let stream = stream
            .split_whitespace()
            .next()
            .unwrap_or("stdout")
            .to_owned();
        match &body.command_id {
            None => {
                let budget = Budget::new(max_env, None, shell.compression);
                loop {
                    let notified = shell.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let fragments = shell.take_pool(&budget)?;
                    if !fragments.is_empty() {
                        return Ok(receive_body(
                            &stream,
                            None,
                            &fragments,
                            shell.compression,
                            None,
                        ));
                    }
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(deadline) => return Err(Fault::timed_out()),
                    }
                }
            }
            Some(cid) => {
                let cid = cid.trim().to_ascii_uppercase();
                let ctl = shell.pipeline(&cid).ok_or_else(|| unknown_command(&cid))?;
                let budget = Budget::new(max_env, Some(&cid), shell.compression);
                let got = ctl.receive(budget, deadline).await?;
                if got.done {
                    shell.remove_pipeline(&cid);
                }
                let state = if got.done {
                    wsman::COMMAND_STATE_DONE
                } else {
                    wsman::COMMAND_STATE_RUNNING
                };
                Ok(receive_body(
                    &stream,
                    Some(&cid),
                    &got.fragments,
                    shell.compression,
                    Some(state),
                ))
            }
        }
    }

    fn signal(&self, shell: &Arc<Shell<E::Caller>>, req: &Request) -> Result<String, Fault> {
        let Body::Signal(body) = &req.body else {
            return Err(Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "A Signal request must carry an rsp:Signal body.",
            ));
        };
        let Some(cid) = body
            .command_id
            .as_deref()
            .map(|c| c.trim().to_ascii_uppercase())
        else {
            return Err(Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                "A Signal must name the command (CommandId) it is for.",
            ));
        };
        let code = body.code.trim();
        if SIGNAL_CTRL_C.iter().any(|c| c.eq_ignore_ascii_case(code)) {
            if let Some(ctl) = shell.pipeline(&cid) {
                tracing::info!(shell = %shell.id, command = %cid, "pipeline stopped by the client");
                ctl.stop();
            }
        } else if let Some(ctl) = shell.remove_pipeline(&cid) {
            // Terminate (and anything else, as the Windows plugin does): drop the command.
            ctl.terminate();
        }
        Ok("<rsp:SignalResponse/>".into())
    }
}

fn unknown_command(cid: &str) -> Fault {
    Fault::sender(
        "w:InvalidSelectors",
        codes::INVALID_SELECTORS,
        format!(
            "Command {cid} does not exist in this shell (it finished, was terminated, or was never created)."
        ),
    )
    .with_code("unknown-command")
}

/// A request for a shell that was opened for another tenant.
fn wrong_tenant(shell_id: &str, opened: Option<&str>, asked: Option<&str>) -> Fault {
    let text = match (opened, asked) {
        (Some(opened), Some(asked)) => format!(
            "Access is denied: shell {shell_id} was opened for tenant {opened}; this request is \
             for tenant {asked}. A session serves one tenant: open a new session with \
             -ConnectionUri …/powershell-liveid?DelegatedOrg={asked}."
        ),
        _ => format!(
            "Access is denied: shell {shell_id} was opened for another tenant than this request \
             names. A session serves one tenant: open a new session with -ConnectionUri \
             …/powershell-liveid?DelegatedOrg=<the tenant> for it."
        ),
    };
    Fault::sender("w:AccessDenied", codes::ACCESS_DENIED, text).with_code("shell-wrong-tenant")
}

fn receive_body(
    stream: &str,
    command_id: Option<&str>,
    fragments: &[Vec<u8>],
    compression: bool,
    state: Option<&str>,
) -> String {
    let cid_attr = command_id
        .map(|c| format!(" CommandId=\"{}\"", wsman::xml_escape(c)))
        .unwrap_or_default();
    let mut s = String::with_capacity(
        64 + fragments
            .iter()
            .map(|f| f.len() * 4 / 3 + 80)
            .sum::<usize>(),
    );
    s.push_str("<rsp:ReceiveResponse>");
    for f in fragments {
        let _ = write!(s, "<rsp:Stream Name=\"{stream}\"{cid_attr}>");
        // Encoded straight into the body: one output object is one fragment, so a per-fragment
        // string would be an allocation and a copy per object.
        let b64 = base64::engine::general_purpose::STANDARD;
        if compression {
            b64.encode_string(xpress::store_stream(f), &mut s);
        } else {
            b64.encode_string(f, &mut s);
        }
        s.push_str("</rsp:Stream>");
    }
    if let Some(state) = state {
        let _ = write!(s, "<rsp:CommandState{cid_attr} State=\"{state}\">");
        if state == wsman::COMMAND_STATE_DONE {
            s.push_str("<rsp:ExitCode>0</rsp:ExitCode>");
        }
        s.push_str("</rsp:CommandState>");
    }
    s.push_str("</rsp:ReceiveResponse>");
    s
}
