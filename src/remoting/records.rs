//! The CLIXML shapes of PSRP message bodies: builders for what the server sends, parsers
//! for what clients send (reference psrp-protocol.md §4–§7, §9).
//!
//! They live beside the codec so that every PSRP object shape is in one place and the state
//! machine deals in typed values ([`Pipeline`], [`MetadataQuery`], [`ErrorRecord`]) only.
//! Builders follow what Windows servers emit (member order, type names, mandatory members:
//! Windows PowerShell's decoder throws when an ErrorRecord member is missing, §9.1). Parsers
//! are lenient where clients differ (enum Obj or bare I32, `ExtraCmds` conventions, missing
//! optional members) and strict only where guessing would run the wrong command.

use chrono::{DateTime, FixedOffset};

use super::clixml::{Container, Object, Value};
use super::executor::{
    Argument, Command, CommandMetadata, ErrorCategory, ErrorRecord, MetadataQuery,
    ParameterMetadata, Pipeline, PipelineEnd, Statement,
};

/// The PSRP protocol version this server speaks (2.3: Windows clients ≥ 2.2 then enable
/// large envelopes; INFORMATION_RECORD exists from 2.3).
pub const PROTOCOL_VERSION: &str = "2.3";
/// `PSVersion` in SESSION_CAPABILITY (the remoting layer's, not the engine's: always 2.0).
pub const PS_VERSION: &str = "2.0";
/// `SerializationVersion`.
pub const SERIALIZATION_VERSION: &str = "1.1.0.1";
/// The Windows PowerShell version claimed in APPLICATION_PRIVATE_DATA (§4.3: claim 5.1).
pub const POWERSHELL_VERSION: &str = "5.1.17763.6414";

/// `System.Management.Automation.PSPrimitiveDictionary`.
const PRIMITIVE_DICTIONARY: [&str; 3] = [
    "System.Management.Automation.PSPrimitiveDictionary",
    "System.Collections.Hashtable",
    "System.Object",
];

/// A client message body that does not have the shape its type requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The body is not an `<Obj>`.
    #[error("PSRP {message} body is not an <Obj> but <{got}>")]
    NotAnObject {
        /// The message type.
        message: &'static str,
        /// The tag found instead.
        got: &'static str,
    },
    /// A mandatory member is absent.
    #[error("PSRP {message} lacks the mandatory member {member:?}")]
    Missing {
        /// The message type.
        message: &'static str,
        /// The member name.
        member: &'static str,
    },
    /// A member has the wrong type.
    #[error("PSRP {message} member {member:?} should be {expected} but is <{got}>")]
    WrongType {
        /// The message type.
        message: &'static str,
        /// The member name.
        member: &'static str,
        /// What it should be.
        expected: &'static str,
        /// The tag found instead.
        got: &'static str,
    },
    /// A pipeline with no command.
    #[error("PSRP CREATE_PIPELINE holds no command: Cmds is empty")]
    NoCommands,
}

fn body<'a>(message: &'static str, value: &'a Value) -> Result<&'a Object, RecordError> {
    value.as_object().ok_or(RecordError::NotAnObject {
        message,
        got: value.tag(),
    })
}

fn required<'a>(
    message: &'static str,
    obj: &'a Object,
    member: &'static str,
) -> Result<&'a Value, RecordError> {
    obj.property(member)
        .ok_or(RecordError::Missing { message, member })
}

fn wrong(
    message: &'static str,
    member: &'static str,
    expected: &'static str,
    v: &Value,
) -> RecordError {
    RecordError::WrongType {
        message,
        member,
        expected,
        got: v.tag(),
    }
}

/// Compares dotted versions numerically (`2.10` > `2.3`); missing parts count as 0.
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.trim()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parts(version), parts(minimum));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------
// Runspace pool opening (§4)
// ---------------------------------------------------------------------------------------

/// SESSION_CAPABILITY, either side's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCapability {
    /// `protocolversion`, e.g. `2.3`.
    pub protocol_version: String,
    /// `PSVersion`, e.g. `2.0`.
    pub ps_version: String,
    /// `SerializationVersion`, e.g. `1.1.0.1`.
    pub serialization_version: String,
}

impl SessionCapability {
    /// This server's capability (2.3 / 2.0 / 1.1.0.1, like Windows).
    pub fn server() -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION.to_owned(),
            ps_version: PS_VERSION.to_owned(),
            serialization_version: SERIALIZATION_VERSION.to_owned(),
        }
    }

    /// Reads a client's SESSION_CAPABILITY (the `TimeZone` blob Windows adds is ignored).
    ///
    /// # Errors
    /// [`RecordError`] when `protocolversion` is missing or not a version.
    pub fn parse(value: &Value) -> Result<Self, RecordError> {
        const M: &str = "SESSION_CAPABILITY";
        let obj = body(M, value)?;
        let text = |member: &'static str, required_member: bool| -> Result<String, RecordError> {
            match obj.property(member) {
                Some(v) => v
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong(M, member, "a Version", v)),
                None if required_member => Err(RecordError::Missing { message: M, member }),
                None => Ok(String::new()),
            }
        };
        Ok(Self {
            protocol_version: text("protocolversion", true)?,
            ps_version: text("PSVersion", false)?,
            serialization_version: text("SerializationVersion", false)?,
        })
    }

    /// Whether the peer speaks at least protocol `minimum` (e.g. `2.3` for INFORMATION_RECORD).
    pub fn protocol_at_least(&self, minimum: &str) -> bool {
        version_at_least(&self.protocol_version, minimum)
    }

    /// The message body.
    pub fn to_value(&self) -> Value {
        Object::default()
            .with_property(
                "protocolversion",
                Value::Version(self.protocol_version.clone()),
            )
            .with_property("PSVersion", Value::Version(self.ps_version.clone()))
            .with_property(
                "SerializationVersion",
                Value::Version(self.serialization_version.clone()),
            )
            .into_value()
    }
}

/// What the server needs from INIT_RUNSPACEPOOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRunspacePool {
    /// `MinRunspaces`.
    pub min_runspaces: i32,
    /// `MaxRunspaces`.
    pub max_runspaces: i32,
}

impl InitRunspacePool {
    /// Reads INIT_RUNSPACEPOOL (HostInfo, ApartmentState, ApplicationArguments are ignored).
    /// Missing counts default to 1 (what every client sends).
    ///
    /// # Errors
    /// [`RecordError`] when the body is not an object or a count is not an integer.
    pub fn parse(value: &Value) -> Result<Self, RecordError> {
        const M: &str = "INIT_RUNSPACEPOOL";
        let obj = body(M, value)?;
        let count = |member: &'static str| match obj.property(member) {
            None => Ok(1),
            Some(v) => v.as_i32().ok_or_else(|| wrong(M, member, "an I32", v)),
        };
        Ok(Self {
            min_runspaces: count("MinRunspaces")?,
            max_runspaces: count("MaxRunspaces")?,
        })
    }
}

/// APPLICATION_PRIVATE_DATA: a `PSPrimitiveDictionary` with `PSVersionTable` (Windows
/// PowerShell 5.1, §4.3) and `ImplicitRemoting = @{ Hash = hash }` (Import-PSSession copies
/// it into generated modules; keep it stable).
pub fn application_private_data(implicit_remoting_hash: &str) -> Value {
    let version = |v: &str| Value::Version(v.to_owned());
    let compatible = Value::list(
        ["System.Version[]", "System.Array", "System.Object"],
        ["1.0", "2.0", "3.0", "4.0", "5.0", POWERSHELL_VERSION].map(version),
    );
    let version_table = Value::dictionary(
        PRIMITIVE_DICTIONARY,
        [
            ("PSVersion", version(POWERSHELL_VERSION)),
            ("PSEdition", Value::from("Desktop")),
            ("PSCompatibleVersions", compatible),
            ("CLRVersion", version("4.0.30319.42000")),
            ("BuildVersion", version("10.0.17763.6414")),
            ("WSManStackVersion", version("3.0")),
            ("PSRemotingProtocolVersion", version(PROTOCOL_VERSION)),
            ("SerializationVersion", version(SERIALIZATION_VERSION)),
        ],
    );
    let implicit = Value::dictionary(
        PRIMITIVE_DICTIONARY,
        [("Hash", Value::from(implicit_remoting_hash))],
    );
    let data = Value::dictionary(
        PRIMITIVE_DICTIONARY,
        [
            ("PSVersionTable", version_table),
            ("ImplicitRemoting", implicit),
        ],
    );
    Object::default()
        .with_property("ApplicationPrivateData", data)
        .into_value()
}

/// `RunspacePoolState` values (§5.1).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RunspacePoolState {
    BeforeOpen = 0,
    Opening = 1,
    Opened = 2,
    Closed = 3,
    Closing = 4,
    Broken = 5,
    NegotiationSent = 6,
    NegotiationSucceeded = 7,
    Connecting = 8,
    Disconnected = 9,
}

/// RUNSPACEPOOL_STATE; `error` (for Broken) becomes `ExceptionAsErrorRecord`.
pub fn runspace_pool_state(state: RunspacePoolState, error: Option<&ErrorRecord>) -> Value {
    let mut obj = Object::default().with_property("RunspaceState", Value::I32(state as i32));
    if let Some(e) = error {
        obj.push_property(
            "ExceptionAsErrorRecord",
            error_record_object(e).into_value(),
        );
    }
    obj.into_value()
}

// ---------------------------------------------------------------------------------------
// Runspace counts (§5.3)
// ---------------------------------------------------------------------------------------

/// SET_MAX_RUNSPACES / SET_MIN_RUNSPACES / GET_AVAILABLE_RUNSPACES / RESET_RUNSPACE_STATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunspaceRequest {
    /// `ci`: the call id to echo.
    pub call_id: i64,
    /// `MaxRunspaces` or `MinRunspaces`, when present.
    pub count: Option<i32>,
}

impl RunspaceRequest {
    /// Reads any of the four runspace-count requests.
    ///
    /// # Errors
    /// [`RecordError`] when `ci` is missing or not an integer.
    pub fn parse(value: &Value) -> Result<Self, RecordError> {
        const M: &str = "runspace request";
        let obj = body(M, value)?;
        let ci = required(M, obj, "ci")?;
        let call_id = ci.as_i64().ok_or_else(|| wrong(M, "ci", "an I64", ci))?;
        let count = obj
            .property("MaxRunspaces")
            .or_else(|| obj.property("MinRunspaces"))
            .and_then(Value::as_i32);
        Ok(Self { call_id, count })
    }
}

/// RUNSPACE_AVAILABILITY answering SET_MAX/SET_MIN/RESET: `SetMinMaxRunspacesResponse` = `ok`.
pub fn runspace_availability(call_id: i64, ok: bool) -> Value {
    Object::default()
        .with_property("SetMinMaxRunspacesResponse", ok)
        .with_property("ci", Value::I64(call_id))
        .into_value()
}

/// RUNSPACE_AVAILABILITY answering GET_AVAILABLE_RUNSPACES: the count as I64.
pub fn runspace_availability_count(call_id: i64, available: i64) -> Value {
    Object::default()
        .with_property("SetMinMaxRunspacesResponse", Value::I64(available))
        .with_property("ci", Value::I64(call_id))
        .into_value()
}

// ---------------------------------------------------------------------------------------
// Pipelines (§6)
// ---------------------------------------------------------------------------------------

/// `PSInvocationState` values (§5.2).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum PipelineState {
    NotStarted = 0,
    Running = 1,
    Stopping = 2,
    Stopped = 3,
    Completed = 4,
    Failed = 5,
    Disconnected = 6,
}

/// PIPELINE_STATE; `error` becomes `ExceptionAsErrorRecord` (Failed, Stopped).
pub fn pipeline_state(state: PipelineState, error: Option<&ErrorRecord>) -> Value {
    let mut obj = Object::default().with_property("PipelineState", Value::I32(state as i32));
    if let Some(e) = error {
        obj.push_property(
            "ExceptionAsErrorRecord",
            error_record_object(e).into_value(),
        );
    }
    obj.into_value()
}

/// The final PIPELINE_STATE for how the executor ended.
pub fn pipeline_end(end: &PipelineEnd) -> Value {
    match end {
        PipelineEnd::Completed => pipeline_state(PipelineState::Completed, None),
        PipelineEnd::Failed(e) => pipeline_state(PipelineState::Failed, Some(e)),
    }
}

/// PIPELINE_STATE Stopped with the PipelineStoppedException record (§9.2).
pub fn pipeline_stopped() -> Value {
    pipeline_state(
        PipelineState::Stopped,
        Some(&ErrorRecord::pipeline_stopped()),
    )
}

/// `PipelineResultTypes` values used by the merge members.
const RESULT_OUTPUT: i64 = 1;
const RESULT_ERROR: i64 = 2;

/// Reads CREATE_PIPELINE into the commands to run (§6.1).
///
/// Statements: `Cmds` is the first statement. pypsrp (and, as far as its author's reading of
/// PowerShell goes, Windows) repeats *every* statement, the first included, in `ExtraCmds`,
/// while psrpcore lists only the following ones; so when the first `ExtraCmds` statement
/// equals `Cmds` the statements are `ExtraCmds`, otherwise `Cmds` followed by `ExtraCmds`.
///
/// # Errors
/// [`RecordError`] when the shape is wrong (no `PowerShell`, no `Cmds`, a command without
/// `Cmd`), never for unknown extra members.
pub fn parse_create_pipeline(value: &Value) -> Result<Pipeline, RecordError> {
    const M: &str = "CREATE_PIPELINE";
    let obj = body(M, value)?;
    let no_input = obj
        .property("NoInput")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let ps = required(M, obj, "PowerShell")?;
    let ps = ps
        .as_object()
        .ok_or_else(|| wrong(M, "PowerShell", "an Obj", ps))?;
    let first = parse_statement(required(M, ps, "Cmds")?, "Cmds")?;
    let mut statements = Vec::new();
    if let Some(extra) = ps.property("ExtraCmds").filter(|v| !v.is_nil()) {
        let items = extra
            .as_list()
            .ok_or_else(|| wrong(M, "ExtraCmds", "a list", extra))?;
        for item in items {
            let st = item
                .as_object()
                .ok_or_else(|| wrong(M, "ExtraCmds", "a list of Obj", item))?;
            statements.push(parse_statement(required(M, st, "Cmds")?, "ExtraCmds.Cmds")?);
        }
    }
    if statements.first() != Some(&first) {
        statements.insert(0, first);
    }
    statements.retain(|s| !s.commands.is_empty());
    if statements.is_empty() {
        return Err(RecordError::NoCommands);
    }
    Ok(Pipeline {
        statements,
        no_input,
    })
}

fn parse_statement(cmds: &Value, member: &'static str) -> Result<Statement, RecordError> {
    const M: &str = "CREATE_PIPELINE";
    let items = cmds
        .as_list()
        .ok_or_else(|| wrong(M, member, "a list of commands", cmds))?;
    let commands = items
        .iter()
        .map(parse_command)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Statement { commands })
}

fn parse_command(value: &Value) -> Result<Command, RecordError> {
    const M: &str = "CREATE_PIPELINE";
    let obj = value
        .as_object()
        .ok_or_else(|| wrong(M, "Cmds", "a list of Obj", value))?;
    let cmd = required(M, obj, "Cmd")?;
    let name = cmd
        .as_str()
        .ok_or_else(|| wrong(M, "Cmd", "an S", cmd))?
        .to_owned();
    let is_script = obj
        .property("IsScript")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let merge = |member: &str| obj.property(member).and_then(Value::as_i64).unwrap_or(0);
    let merge_errors_into_output = (merge("MergeMyResult") == RESULT_ERROR
        && merge("MergeToResult") == RESULT_OUTPUT)
        || merge("MergeError") == RESULT_OUTPUT;
    let mut args = Vec::new();
    if let Some(list) = obj.property("Args").filter(|v| !v.is_nil()) {
        let items = list
            .as_list()
            .ok_or_else(|| wrong(M, "Args", "a list", list))?;
        for item in items {
            let arg = item
                .as_object()
                .ok_or_else(|| wrong(M, "Args", "a list of Obj", item))?;
            let name = match arg.property("N") {
                None | Some(Value::Nil) => None,
                Some(n) => Some(
                    n.as_str()
                        .ok_or_else(|| wrong(M, "N", "an S or Nil", n))?
                        .to_owned(),
                ),
            };
            let value = arg.property("V").cloned().unwrap_or(Value::Nil);
            args.push(Argument { name, value });
        }
    }
    Ok(Command {
        name,
        is_script,
        args,
        merge_errors_into_output,
    })
}

// ---------------------------------------------------------------------------------------
// GET_COMMAND_METADATA (§7.4)
// ---------------------------------------------------------------------------------------

/// `CommandTypes` flag names, for flags sent as an enum's ToString only.
const COMMAND_TYPES: [(&str, u32); 10] = [
    ("Alias", 1),
    ("Function", 2),
    ("Filter", 4),
    ("Cmdlet", 8),
    ("ExternalScript", 16),
    ("Application", 32),
    ("Script", 64),
    ("Workflow", 128),
    ("Configuration", 256),
    ("All", 511),
];

/// Reads GET_COMMAND_METADATA: `Name` (string or string list; default `*`), `CommandType`
/// (I32 or enum Obj; flags kept as sent, Workflow included; default All), `Namespace`.
///
/// # Errors
/// [`RecordError`] when the body is not an object.
pub fn parse_metadata_query(value: &Value) -> Result<MetadataQuery, RecordError> {
    const M: &str = "GET_COMMAND_METADATA";
    let obj = body(M, value)?;
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::Nil => None,
            other => match other.as_list() {
                Some(items) => Some(
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect(),
                ),
                None => other.as_str().map(|s| vec![s.to_owned()]),
            },
        }
    };
    let names = obj
        .property("Name")
        .and_then(strings)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| vec!["*".to_owned()]);
    let command_types = match obj.property("CommandType") {
        None | Some(Value::Nil) => 511,
        Some(v) => match v.as_i64() {
            Some(n) => u32::try_from(n).unwrap_or(511),
            None => {
                let text = v
                    .as_object()
                    .and_then(|o| o.to_string.as_deref())
                    .or_else(|| v.as_str())
                    .ok_or_else(|| wrong(M, "CommandType", "an I32 or CommandTypes enum", v))?;
                text.split(',')
                    .filter_map(|n| {
                        COMMAND_TYPES
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(n.trim()))
                    })
                    .fold(0, |acc, (_, bit)| acc | bit)
            }
        },
    };
    let namespace = obj
        .property("Namespace")
        .and_then(strings)
        .filter(|n| !n.is_empty());
    Ok(MetadataQuery {
        names,
        command_types,
        namespace,
    })
}

/// The first GET_COMMAND_METADATA output: how many command objects follow.
pub fn command_metadata_count(count: usize) -> Value {
    Object::new([
        "Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo",
        "System.Management.Automation.PSCustomObject",
        "System.Object",
    ])
    .with_property(
        "Count",
        Value::I32(i32::try_from(count).unwrap_or(i32::MAX)),
    )
    .into_value()
}

/// The common parameters every cmdlet has, with their type and alias; Import-PSSession only
/// writes `[CmdletBinding()]` proxies when all of them are listed (§7.4).
const COMMON_PARAMETERS: [(&str, &str, &str); 11] = [
    (
        "Verbose",
        "System.Management.Automation.SwitchParameter",
        "vb",
    ),
    (
        "Debug",
        "System.Management.Automation.SwitchParameter",
        "db",
    ),
    (
        "ErrorAction",
        "System.Management.Automation.ActionPreference",
        "ea",
    ),
    (
        "WarningAction",
        "System.Management.Automation.ActionPreference",
        "wa",
    ),
    (
        "InformationAction",
        "System.Management.Automation.ActionPreference",
        "infa",
    ),
    ("ErrorVariable", "System.String", "ev"),
    ("WarningVariable", "System.String", "wv"),
    ("InformationVariable", "System.String", "iv"),
    ("OutVariable", "System.String", "ov"),
    ("OutBuffer", "System.Int32", "ob"),
    ("PipelineVariable", "System.String", "pv"),
];

/// WhatIf/Confirm, for SupportsShouldProcess cmdlets.
const SHOULD_PROCESS_PARAMETERS: [(&str, &str, &str); 2] = [
    (
        "WhatIf",
        "System.Management.Automation.SwitchParameter",
        "wi",
    ),
    (
        "Confirm",
        "System.Management.Automation.SwitchParameter",
        "cf",
    ),
];

const SWITCH_TYPE: &str = "System.Management.Automation.SwitchParameter";

fn command_type_name(command_type: u32) -> &'static str {
    COMMAND_TYPES
        .iter()
        .find(|(_, bit)| *bit == command_type)
        .map_or("Cmdlet", |(name, _)| name)
}

fn parameter_value(name: &str, parameter_type: &str, aliases: &[String], is_switch: bool) -> Value {
    let aliases = Value::list(
        [
            "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]",
            "System.Object",
        ],
        aliases.iter().map(Value::from),
    );
    Object::new([
        "System.Management.Automation.ParameterMetadata",
        "System.Object",
    ])
    .with_to_string("System.Management.Automation.ParameterMetadata")
    .with_adapted("Name", name)
    .with_adapted("ParameterType", parameter_type)
    .with_adapted("Aliases", aliases)
    .with_adapted("IsDynamic", false)
    .with_adapted("SwitchParameter", is_switch)
    .into_value()
}

/// One GET_COMMAND_METADATA command object (`Selected.…CmdletInfo`/`AliasInfo`/
/// `FunctionInfo`), with the common parameters added after the command's own (and WhatIf/
/// Confirm when it supports ShouldProcess), skipping any the command already declares.
pub fn command_metadata(command: &CommandMetadata) -> Value {
    let info = match command.command_type {
        1 => "Selected.System.Management.Automation.AliasInfo",
        2 | 4 => "Selected.System.Management.Automation.FunctionInfo",
        _ => "Selected.System.Management.Automation.CmdletInfo",
    };
    let mut entries: Vec<(Value, Value)> = command
        .parameters
        .iter()
        .map(|p: &ParameterMetadata| {
            let ty = if p.is_switch && p.parameter_type.is_empty() {
                SWITCH_TYPE
            } else if p.parameter_type.is_empty() {
                "System.Object"
            } else {
                &p.parameter_type
            };
            (
                Value::from(p.name.as_str()),
                parameter_value(&p.name, ty, &p.aliases, p.is_switch),
            )
        })
        .collect();
    let extra = COMMON_PARAMETERS.iter().chain(
        command
            .supports_should_process
            .then_some(SHOULD_PROCESS_PARAMETERS.iter())
            .into_iter()
            .flatten(),
    );
    for (name, ty, alias) in extra {
        let declared = command
            .parameters
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(name));
        if !declared {
            entries.push((
                Value::from(*name),
                parameter_value(name, ty, &[(*alias).to_owned()], *ty == SWITCH_TYPE),
            ));
        }
    }
    let parameters = Object::new([
        "System.Collections.Generic.Dictionary`2[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089],[System.Management.Automation.ParameterMetadata, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
        "System.Object",
    ])
    .with_container(Container::Dictionary(entries));
    let output_type = Value::list(
        [
            "System.Collections.ObjectModel.ReadOnlyCollection`1[[System.Management.Automation.PSTypeName, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]",
            "System.Object",
        ],
        Vec::<Value>::new(),
    );
    Object::new([
        info,
        "System.Management.Automation.PSCustomObject",
        "System.Object",
    ])
    .with_property("Name", command.name.as_str())
    .with_property("Namespace", command.namespace.as_str())
    .with_property("HelpUri", Value::Nil)
    .with_property(
        "CommandType",
        Value::enum_of(
            "System.Management.Automation.CommandTypes",
            command_type_name(command.command_type),
            i32::try_from(command.command_type).unwrap_or(8),
        ),
    )
    .with_property(
        "ResolvedCommandName",
        command.resolved_command_name.as_deref().map(Value::from),
    )
    .with_property("OutputType", output_type)
    .with_property("Parameters", parameters)
    .into_value()
}

// ---------------------------------------------------------------------------------------
// Records (§9)
// ---------------------------------------------------------------------------------------

impl ErrorCategory {
    /// The enum member name (`ObjectNotFound`), as in `ErrorCategory_Message`.
    pub fn name(self) -> &'static str {
        use ErrorCategory::*;
        match self {
            NotSpecified => "NotSpecified",
            OpenError => "OpenError",
            CloseError => "CloseError",
            DeviceError => "DeviceError",
            DeadlockDetected => "DeadlockDetected",
            InvalidArgument => "InvalidArgument",
            InvalidData => "InvalidData",
            InvalidOperation => "InvalidOperation",
            InvalidResult => "InvalidResult",
            InvalidType => "InvalidType",
            MetadataError => "MetadataError",
            NotImplemented => "NotImplemented",
            NotInstalled => "NotInstalled",
            ObjectNotFound => "ObjectNotFound",
            OperationStopped => "OperationStopped",
            OperationTimeout => "OperationTimeout",
            SyntaxError => "SyntaxError",
            ParserError => "ParserError",
            PermissionDenied => "PermissionDenied",
            ResourceBusy => "ResourceBusy",
            ResourceExists => "ResourceExists",
            ResourceUnavailable => "ResourceUnavailable",
            ReadError => "ReadError",
            WriteError => "WriteError",
            FromStdErr => "FromStdErr",
            SecurityError => "SecurityError",
            ProtocolError => "ProtocolError",
            ConnectionError => "ConnectionError",
            AuthenticationError => "AuthenticationError",
            LimitsExceeded => "LimitsExceeded",
            QuotaExceeded => "QuotaExceeded",
            NotEnabled => "NotEnabled",
        }
    }
}

/// The short name of a .NET type (`…Tasks.ManagementObjectNotFoundException` →
/// `ManagementObjectNotFoundException`).
fn short_type_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// The exception's type hierarchy as PowerShell would serialize it.
fn exception_type_names(exception_type: &str) -> Vec<String> {
    const RUNTIME: [&str; 4] = [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
        "System.Exception",
        "System.Object",
    ];
    let runtime_derived = matches!(
        short_type_name(exception_type),
        "ParseException"
            | "PipelineStoppedException"
            | "RemoteException"
            | "CommandNotFoundException"
            | "ParameterBindingException"
            | "ActionPreferenceStopException"
    ) && exception_type.starts_with("System.Management.Automation.");
    let mut names = vec![exception_type.to_owned()];
    if runtime_derived {
        names.extend(RUNTIME.iter().map(|s| (*s).to_owned()));
    } else if exception_type == "System.Management.Automation.RuntimeException" {
        names.extend(RUNTIME[1..].iter().map(|s| (*s).to_owned()));
    } else if exception_type != "System.Exception" {
        names.push("System.Exception".to_owned());
        names.push("System.Object".to_owned());
    } else {
        names.push("System.Object".to_owned());
    }
    names
}

impl ErrorRecord {
    /// A record with the usual derived fields: activity empty, reason = the exception's short
    /// type name, no target.
    pub fn new(
        message: impl Into<String>,
        exception_type: impl Into<String>,
        fully_qualified_error_id: impl Into<String>,
        category: ErrorCategory,
    ) -> Self {
        let exception_type = exception_type.into();
        Self {
            message: message.into(),
            reason: short_type_name(&exception_type).to_owned(),
            exception_type,
            fully_qualified_error_id: fully_qualified_error_id.into(),
            category,
            activity: String::new(),
            target_name: String::new(),
            target_type: String::new(),
            target_object: Value::Nil,
        }
    }

    /// The record of a stopped pipeline (§9.2).
    pub fn pipeline_stopped() -> Self {
        Self::new(
            "The pipeline has been stopped.",
            "System.Management.Automation.PipelineStoppedException",
            "PipelineStopped",
            ErrorCategory::OperationStopped,
        )
    }

    /// What Exchange's NoLanguage endpoint answered to script text (§10.1).
    pub fn scripts_not_allowed(script: &str) -> Self {
        Self {
            target_name: script.to_owned(),
            target_type: "String".to_owned(),
            target_object: Value::from(script),
            ..Self::new(
                "The syntax is not supported by this runspace. This can occur if the runspace \
                 is in no-language mode.",
                "System.Management.Automation.ParseException",
                "ScriptsNotAllowed",
                ErrorCategory::ParserError,
            )
        }
    }

    /// PowerShell's error for a command the runspace does not have.
    pub fn command_not_found(name: &str) -> Self {
        Self {
            target_name: name.to_owned(),
            target_type: "String".to_owned(),
            target_object: Value::from(name),
            ..Self::new(
                format!(
                    "The term '{name}' is not recognized as the name of a cmdlet, function, \
                     script file, or operable program. Check the spelling of the name, or if a \
                     path was included, verify that the path is correct and try again."
                ),
                "System.Management.Automation.CommandNotFoundException",
                "CommandNotFoundException",
                ErrorCategory::ObjectNotFound,
            )
        }
    }

    /// Why a pool is Broken when a client starts the SecureString key exchange (PUBLIC_KEY):
    /// this endpoint runs over TLS and does no session-key exchange (reference §5.4), so the
    /// client learns at once instead of waiting three minutes for ENCRYPTED_SESSION_KEY.
    pub fn secure_strings_unsupported() -> Self {
        Self::new(
            "This endpoint does not support SecureString values (the connection is already \
             protected by TLS, and no session key is exchanged). Pass the value as a plain \
             string instead of ConvertTo-SecureString or a PSCredential.",
            "System.Management.Automation.PSNotSupportedException",
            "SecureStringNotSupported",
            ErrorCategory::NotImplemented,
        )
    }

    /// `ErrorCategory_Message`: `{Category}: ({TargetName}:{TargetType}) [{Activity}], {Reason}`.
    pub fn category_message(&self) -> String {
        format!(
            "{}: ({}:{}) [{}], {}",
            self.category.name(),
            self.target_name,
            self.target_type,
            self.activity,
            self.reason
        )
    }
}

/// The ErrorRecord object with every member Windows PowerShell requires (§9.1), for use
/// inside PIPELINE_STATE / RUNSPACEPOOL_STATE (`ExceptionAsErrorRecord`).
pub fn error_record_object(e: &ErrorRecord) -> Object {
    let hresult = if short_type_name(&e.exception_type) == "PipelineStoppedException" {
        -2_146_233_087
    } else {
        -2_146_233_088
    };
    let exception = Object::new(exception_type_names(&e.exception_type))
        .with_to_string(format!("{}: {}", e.exception_type, e.message))
        .with_adapted("Message", e.message.as_str())
        .with_adapted("Data", Value::Nil)
        .with_adapted("InnerException", Value::Nil)
        .with_adapted("TargetSite", Value::Nil)
        .with_adapted("StackTrace", Value::Nil)
        .with_adapted("HelpLink", Value::Nil)
        .with_adapted("Source", Value::Nil)
        .with_adapted("HResult", Value::I32(hresult));
    Object::new(["System.Management.Automation.ErrorRecord", "System.Object"])
        .with_to_string(e.message.as_str())
        .with_property("Exception", exception)
        .with_property("TargetObject", e.target_object.clone())
        .with_property("FullyQualifiedErrorId", e.fully_qualified_error_id.as_str())
        .with_property("InvocationInfo", Value::Nil)
        .with_property("ErrorCategory_Category", Value::I32(e.category as i32))
        .with_property("ErrorCategory_Activity", e.activity.as_str())
        .with_property("ErrorCategory_Reason", e.reason.as_str())
        .with_property("ErrorCategory_TargetName", e.target_name.as_str())
        .with_property("ErrorCategory_TargetType", e.target_type.as_str())
        .with_property("ErrorCategory_Message", e.category_message())
        .with_property("SerializeExtendedInfo", false)
}

/// An ERROR_RECORD message body (non-terminating error): the record plus
/// `writeErrorStream = true` (§11.7).
pub fn error_record(e: &ErrorRecord) -> Value {
    error_record_object(e)
        .with_property("writeErrorStream", true)
        .into_value()
}

/// Which informational record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InformationalKind {
    /// WARNING_RECORD (0x00041009).
    Warning,
    /// VERBOSE_RECORD (0x00041008).
    Verbose,
    /// DEBUG_RECORD (0x00041007).
    Debug,
}

/// A WARNING/VERBOSE/DEBUG_RECORD body (§9.3).
pub fn informational_record(kind: InformationalKind, message: &str) -> Value {
    let first = match kind {
        InformationalKind::Warning => "System.Management.Automation.WarningRecord",
        InformationalKind::Verbose => "System.Management.Automation.VerboseRecord",
        InformationalKind::Debug => "System.Management.Automation.DebugRecord",
    };
    Object::new([
        first,
        "System.Management.Automation.InformationalRecord",
        "System.Object",
    ])
    .with_to_string(message)
    .with_property("InformationalRecord_Message", message)
    .with_property("InformationalRecord_SerializeInvocationInfo", false)
    .into_value()
}

/// An INFORMATION_RECORD body (§9.4, protocol ≥ 2.3): `MessageData` is the text.
pub fn information_record(message: &str, time_generated: DateTime<FixedOffset>) -> Value {
    let tags = Value::list(
        [
            "System.Collections.Generic.List`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]",
            "System.Object",
        ],
        Vec::<Value>::new(),
    );
    Object::default()
        .with_property("MessageData", message)
        .with_property("Source", "exo-authproxy")
        .with_property("TimeGenerated", time_generated)
        .with_property("Tags", tags)
        .with_property("User", "")
        .with_property("Computer", "")
        .with_property("ProcessId", Value::U32(std::process::id()))
        .with_property("NativeThreadId", Value::U32(0))
        .with_property("ManagedThreadId", Value::U32(0))
        .into_value()
}

#[cfg(test)]
mod tests;
