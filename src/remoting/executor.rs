//! The seam between the remoting endpoint and whatever runs the commands.
//!
//! The endpoint (WS-Man + PSRP) decodes what the client sends into a [`Pipeline`] and hands it
//! to an [`Executor`]: the REST bridge in the proxy (`rest` mode), the sandbox's simulated
//! Exchange, or a test executor. The executor streams [`Output`]s into a bounded
//! [`OutputSink`] (a slow Receive slows the producer: memory stays bounded) and returns how the
//! pipeline ended. Ctrl-C is cancellation: the endpoint drops the executor's future, which
//! cancels any in-flight request, and reports the pipeline Stopped itself.
//!
//! The executor is generic over `Caller`: whatever the HTTP layer learned about who opened the
//! shell (local user + tenant in the proxy; app + tenant from the token in the sandbox). The
//! endpoint compares callers (`PartialEq`) so that a shell serves only the caller that opened
//! it: one session never mixes tenants.

use std::future::Future;

use tokio::sync::mpsc;

use super::clixml::Value;

/// The commands of one CREATE_PIPELINE: `Cmds` plus any `ExtraCmds` statements, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Statements (`a | b; c` is two statements), run one after the other.
    pub statements: Vec<Statement>,
    /// False when the client will send PIPELINE_INPUT objects (then END_OF_PIPELINE_INPUT).
    pub no_input: bool,
    /// Where it runs (the audit trail names the session and the pipeline of each cmdlet).
    pub origin: Origin,
}

/// The session and command a pipeline runs in (empty when not run by the endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The shell id.
    pub shell_id: String,
    /// The command id.
    pub command_id: String,
}

/// One statement: commands piped into each other, first to last.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The commands of the pipeline.
    pub commands: Vec<Command>,
}

/// One command as the client sent it: name, and the raw `Args` (N/V pairs) still unbound.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// `Get-Mailbox`, or the script text when `is_script`.
    pub name: String,
    /// True for script text: a NoLanguage endpoint refuses it (ScriptsNotAllowed).
    pub is_script: bool,
    /// `Args` in order, exactly as sent (see reference psrp-protocol.md §6.2).
    pub args: Vec<Argument>,
    /// `MergeMyResult`=Error & `MergeToResult`=Output (`2>&1`): errors become output objects.
    pub merge_errors_into_output: bool,
}

/// One `Args` element: `N` (None when Nil, i.e. positional) and `V`.
#[derive(Debug, Clone, PartialEq)]
pub struct Argument {
    /// The raw name: `Identity`, `-Identity:`, `-ResultSize`, or None for a positional value.
    pub name: Option<String>,
    /// The value (`Value::Nil` for a bare token).
    pub value: Value,
}

/// What a pipeline produces, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An output object (PIPELINE_OUTPUT).
    Object(Value),
    /// A non-terminating error (ERROR_RECORD).
    Error(ErrorRecord),
    /// WARNING_RECORD
    Warning(String),
    /// VERBOSE_RECORD
    Verbose(String),
    /// INFORMATION_RECORD (protocol ≥ 2.3; sent as a verbose record to older clients).
    Information(String),
}

/// How a pipeline ended (the final PIPELINE_STATE). Stopped is not here: the endpoint decides
/// that when it cancels the executor.
// One value per pipeline, moved once: the size of the Failed record does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineEnd {
    /// PIPELINE_STATE Completed (4).
    Completed,
    /// PIPELINE_STATE Failed (5) with this record as ExceptionAsErrorRecord.
    Failed(ErrorRecord),
}

/// An ErrorRecord with every property Windows PowerShell requires (reference §9.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRecord {
    /// The text the user sees (Exception.Message).
    pub message: String,
    /// .NET exception type, e.g. `System.Management.Automation.RemoteException`.
    pub exception_type: String,
    /// FullyQualifiedErrorId, e.g. `ScriptsNotAllowed` or `…,Microsoft.Exchange…GetMailbox`.
    pub fully_qualified_error_id: String,
    /// ErrorCategory.
    pub category: ErrorCategory,
    /// ErrorCategory_Activity: usually the cmdlet name.
    pub activity: String,
    /// ErrorCategory_Reason: usually the exception's short name.
    pub reason: String,
    /// ErrorCategory_TargetName.
    pub target_name: String,
    /// ErrorCategory_TargetType.
    pub target_type: String,
    /// TargetObject.
    pub target_object: Value,
}

/// `System.Management.Automation.ErrorCategory` (values on the wire as I32).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCategory {
    NotSpecified = 0,
    OpenError = 1,
    CloseError = 2,
    DeviceError = 3,
    DeadlockDetected = 4,
    InvalidArgument = 5,
    InvalidData = 6,
    InvalidOperation = 7,
    InvalidResult = 8,
    InvalidType = 9,
    MetadataError = 10,
    NotImplemented = 11,
    NotInstalled = 12,
    ObjectNotFound = 13,
    OperationStopped = 14,
    OperationTimeout = 15,
    SyntaxError = 16,
    ParserError = 17,
    PermissionDenied = 18,
    ResourceBusy = 19,
    ResourceExists = 20,
    ResourceUnavailable = 21,
    ReadError = 22,
    WriteError = 23,
    FromStdErr = 24,
    SecurityError = 25,
    ProtocolError = 26,
    ConnectionError = 27,
    AuthenticationError = 28,
    LimitsExceeded = 29,
    QuotaExceeded = 30,
    NotEnabled = 31,
}

/// The sending half of a pipeline's output queue (bounded).
#[derive(Debug, Clone)]
pub struct OutputSink(pub(crate) mpsc::Sender<Output>);

/// The client is gone or the pipeline was stopped: stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline's reader is gone")]
pub struct Closed;

impl OutputSink {
    /// A sink and its receiving end, holding at most `capacity` outputs.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Output>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self(tx), rx)
    }

    /// Queues one output; waits while the queue is full (back-pressure).
    ///
    /// # Errors
    /// [`Closed`] when the pipeline's reader is gone; the executor should stop.
    pub async fn send(&self, output: Output) -> Result<(), Closed> {
        self.0.send(output).await.map_err(|_| Closed)
    }
}

/// Pipeline input objects sent by the client (PIPELINE_INPUT), ending when the client sends
/// END_OF_PIPELINE_INPUT (the channel closes). Empty and closed when `no_input`.
pub type InputStream = mpsc::Receiver<Value>;

/// GET_COMMAND_METADATA's question.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataQuery {
    /// Wildcard patterns (case-insensitive), e.g. `*` or `Get-*`.
    pub names: Vec<String>,
    /// CommandTypes flags (Alias 1, Function 2, Filter 4, Cmdlet 8, …).
    pub command_types: u32,
    /// Module name filter, if any.
    pub namespace: Option<Vec<String>>,
}

/// One command in the GET_COMMAND_METADATA reply.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandMetadata {
    /// `Get-Mailbox`
    pub name: String,
    /// Module name (`tmp_exo`-like).
    pub namespace: String,
    /// Cmdlet (8), Alias (1) or Function (2).
    pub command_type: u32,
    /// For aliases: the command they resolve to.
    pub resolved_command_name: Option<String>,
    /// The command's own parameters. The endpoint adds the common parameters (Verbose,
    /// ErrorAction, …) itself, so clients infer `[CmdletBinding()]` proxies.
    pub parameters: Vec<ParameterMetadata>,
    /// Whether WhatIf/Confirm should be listed (SupportsShouldProcess).
    pub supports_should_process: bool,
}

/// One parameter of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterMetadata {
    /// `Identity`
    pub name: String,
    /// .NET type name, display only (`System.String`, `System.Management.Automation.SwitchParameter`).
    pub parameter_type: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// A switch takes no value: `-Force` alone.
    pub is_switch: bool,
    /// Position for positional binding (`Identity` is usually 0), if any.
    pub position: Option<u32>,
}

/// What runs the commands behind the remoting endpoint.
pub trait Executor: Send + Sync + 'static {
    /// Who opened the shell, as the HTTP layer established it. Compared on every request for
    /// an existing shell: a shell only serves the caller (user and tenant) that opened it.
    type Caller: Clone + PartialEq + Send + Sync + 'static;

    /// The tenant `caller` acts for, as the user names it (`DelegatedOrg`), for the fault that
    /// refuses a request naming another tenant than its shell's and for the audit trail.
    /// `None` when the caller has no tenant to name.
    fn tenant(caller: &Self::Caller) -> Option<String> {
        let _ = caller;
        None
    }

    /// Whether [`Executor::run`] gets the endpoint's local commands (`Select-Object`,
    /// `Measure-Object`, …: `remoting::local`) in place and runs them as stages between its
    /// own commands. An executor that pulls from its commands (the REST bridge) should: then
    /// `Select-Object -First n` stops its paging wherever it stands. Otherwise (the default)
    /// the endpoint runs statements made only of local commands itself and applies a
    /// trailing run of them to the executor's output, dropping the executor's future once
    /// they have had enough.
    const RUNS_LOCAL_COMMANDS: bool = false;

    /// Runs one pipeline to its end, streaming outputs into `output`.
    ///
    /// # Cancel safety
    /// The endpoint drops this future on Ctrl-C (Signal) or when the shell is deleted; the
    /// executor must not rely on running to completion.
    fn run(
        &self,
        caller: &Self::Caller,
        pipeline: Pipeline,
        input: InputStream,
        output: OutputSink,
    ) -> impl Future<Output = PipelineEnd> + Send;

    /// Answers GET_COMMAND_METADATA (Import-PSSession, pypsrp `get_command_metadata`).
    fn command_metadata(
        &self,
        caller: &Self::Caller,
        query: MetadataQuery,
    ) -> impl Future<Output = Result<Vec<CommandMetadata>, ErrorRecord>> + Send;
}
