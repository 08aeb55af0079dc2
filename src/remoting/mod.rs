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
//! patterns), `executor` (the seam).
//!
//! Concurrency: a Windows client keeps a shell-level Receive open for the whole session while
//! it runs commands on other connections, so requests for one shell run concurrently; shell
//! and pipeline state sit behind short, synchronous locks that are never held across an await,
//! and long polls wait on `Notify`s.

pub mod binding;
pub mod clixml;
pub mod executor;
pub mod fragment;
pub mod local;
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
use message::{Destination, Message, MessageType};
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

/// The endpoint: all shells, their runspace pools and pipelines.
pub struct Endpoint<E: Executor> {
    executor: Arc<E>,
    settings: Settings,
    shells: Mutex<Shells<E::Caller>>,
}

fn b64(data: &str, what: &str) -> Result<Vec<u8>, Fault> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad_data(&format!("{what} is not base64: {e}")))
}

fn b64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl<E: Executor> Endpoint<E> {
    /// An endpoint running commands on `executor`.
    pub fn new(executor: Arc<E>, settings: Settings) -> Self {
        Self {
            executor,
            settings,
            shells: Mutex::new(HashMap::new()),
        }
    }

    fn shells(&self) -> MutexGuard<'_, Shells<E::Caller>> {
        self.shells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of open shells (for metrics and tests).
    pub fn shell_count(&self) -> usize {
        self.shells().len()
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
        if request.method() != http::Method::POST {
            let fault = Fault::sender(
                "a:ActionNotSupported",
                codes::ACTION_NOT_SUPPORTED,
                format!(
                    "HTTP {} is not WS-Management; send the SOAP envelope with POST.",
                    request.method()
                ),
            );
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
        }
    }

    fn find_shell(&self, owner: &str, req: &Request) -> Result<Arc<Shell<E::Caller>>, Fault> {
        let id = req.shell_id.as_deref().ok_or_else(|| {
            Fault::sender(
                "w:InvalidSelectors",
                codes::INVALID_SELECTORS,
                "The request has no ShellId selector; it must name the shell it is for.",
            )
        })?;
        let key = id.trim().to_ascii_uppercase();
        self.shells()
            .get(&key)
            .filter(|s| s.owner == owner)
            .cloned()
            .ok_or_else(|| Fault::unknown_shell(id))
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
            wsman::ACTION_CREATE => self.create(owner, caller, req),
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
                let shell = self.find_shell(owner, req)?;
                let _in_flight = shell.enter();
                match action {
                    wsman::ACTION_DELETE => self.delete(&shell),
                    wsman::ACTION_COMMAND => self.command(&shell, caller, req).await,
                    wsman::ACTION_SEND => self.send(&shell, req).await,
                    wsman::ACTION_RECEIVE => self.receive(&shell, req).await,
                    _ => self.signal(&shell, req),
                }
            }
        }
    }

    fn create(&self, owner: &str, caller: E::Caller, req: &Request) -> Result<String, Fault> {
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
        let creation = b64(creation, "creationXml")?;
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
        let max_env = req.max_envelope_size.unwrap_or(DEFAULT_MAX_ENVELOPE);
        let shell = Arc::new(Shell::new(
            id.clone(),
            owner.to_owned(),
            caller,
            compression,
            max_env,
        ));
        shell.pool_data(&creation)?;
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
                return Err(Fault::sender(
                    "w:QuotaLimit",
                    codes::QUOTA_MAX_SHELLS,
                    format!(
                        "The WS-Management service cannot process the request: user {owner} already \
                         has {mine} open sessions, the most allowed. Close sessions you no longer \
                         use with Remove-PSSession (or wait for idle ones to time out)."
                    ),
                ));
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

    fn delete(&self, shell: &Arc<Shell<E::Caller>>) -> Result<String, Fault> {
        self.shells().remove(&shell.id);
        shell.close();
        tracing::info!(shell = %shell.id, "shell deleted");
        Ok(String::new())
    }

    async fn command(
        &self,
        shell: &Arc<Shell<E::Caller>>,
        caller: E::Caller,
        req: &Request,
    ) -> Result<String, Fault> {
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
        let ctl = Arc::new(PipelineCtl::new(
            command_id.clone(),
            MAX_CLIENT_MESSAGE,
            shell.object_ids.clone(),
            shell.information_records(),
        ));
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
        for arg in &body.arguments {
            let blob = b64(arg, "rsp:Arguments")?;
            self.pipeline_data(shell, &ctl, caller.clone(), &blob, self.deadline(req))
                .await?;
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
        caller: E::Caller,
        blob: &[u8],
        deadline: Instant,
    ) -> Result<(), Fault> {
        let messages = ctl
            .push_fragments(blob)
            .map_err(|e| bad_data(&format!("pipeline fragments: {e}")))?;
        for raw in messages {
            let msg =
                Message::decode(&raw).map_err(|e| bad_data(&format!("pipeline message: {e}")))?;
            if msg.destination != Destination::Server {
                return Err(bad_data(
                    "a message addressed to the client was sent to the server",
                ));
            }
            match msg.message_type {
                MessageType::CreatePipeline | MessageType::GetCommandMetadata
                    if ctl.is_started() =>
                {
                    return Err(bad_data(
                        "a second CREATE_PIPELINE for a command that already runs",
                    ));
                }
                MessageType::CreatePipeline => self.start_pipeline(ctl, caller.clone(), &msg),
                MessageType::GetCommandMetadata => self.start_metadata(ctl, caller.clone(), &msg),
                MessageType::PipelineInput => {
                    let v = psrp::decode_value("PIPELINE_INPUT", &msg.data)
                        .map_err(|e| bad_data(&e.to_string()))?;
                    if let Some(tx) = ctl.input() {
                        // Waits while the executor's input queue is full (back-pressure),
                        // but not forever: a command that does not read its input would
                        // otherwise hang the client's Send.
                        let sent = tokio::time::timeout_at(deadline, tx.send(v)).await;
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
                MessageType::EndOfPipelineInput => ctl.end_input(),
                other => {
                    tracing::debug!(shell = %shell.id, command = %ctl.command_id, message_type = ?other,
                        "ignored pipeline-level PSRP message");
                }
            }
        }
        Ok(())
    }

    fn start_pipeline(&self, ctl: &Arc<PipelineCtl>, caller: E::Caller, msg: &Message) {
        let (sink, rx) = OutputSink::channel(self.settings.output_buffer.max(1));
        match psrp::parse_create_pipeline(&msg.data) {
            Ok(pipeline) => {
                let (input_tx, input_rx) = tokio::sync::mpsc::channel(INPUT_BUFFER);
                let input_tx = (!pipeline.no_input).then_some(input_tx);
                let executor = self.executor.clone();
                ctl.start(
                    msg.rpid,
                    msg.pid,
                    input_tx,
                    rx,
                    local::run(executor, caller, pipeline, input_rx, sink),
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

    fn start_metadata(&self, ctl: &Arc<PipelineCtl>, caller: E::Caller, msg: &Message) {
        let (sink, rx) = OutputSink::channel(self.settings.output_buffer.max(1));
        let executor = self.executor.clone();
        let query = psrp::parse_metadata_query(&msg.data);
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
            let mut blob = b64(&st.data, "rsp:Stream")?;
            if shell.compression && !blob.is_empty() {
                blob = xpress::decompress_stream(&blob, MAX_CLIENT_MESSAGE)
                    .map_err(|e| bad_data(&format!("compressed Send data: {e}")))?;
            }
            match &st.command_id {
                None => shell.pool_data(&blob)?,
                Some(cid) => {
                    let ctl = shell.pipeline(cid).ok_or_else(|| unknown_command(cid))?;
                    self.pipeline_data(
                        shell,
                        &ctl,
                        shell.caller.clone(),
                        &blob,
                        self.deadline(req),
                    )
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
        let data = if compression {
            b64_encode(&xpress::store_stream(f))
        } else {
            b64_encode(f)
        };
        let _ = write!(
            s,
            "<rsp:Stream Name=\"{stream}\"{cid_attr}>{data}</rsp:Stream>"
        );
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
