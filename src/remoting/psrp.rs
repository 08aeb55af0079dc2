//! PSRP message bodies the shell/pipeline state machine sends and reads, as CLIXML values.
//!
//! The state machine speaks in terms of "the pool-open reply", "a pipeline ended Failed with
//! this record", "the client sent CREATE_PIPELINE"; this module turns those into
//! [`Value`]s / [`Message`]s and back, so the state machine never handles XML. Shapes follow
//! reference psrp-protocol.md §4.2 (pool open), §5.3 (runspace counts), §6.1 (CREATE_PIPELINE),
//! §7.4 (GET_COMMAND_METADATA), §9 (records). The encoder and parser themselves live in
//! `clixml`.

use uuid::Uuid;

use super::clixml::{Container, Object, Value};
use super::executor::{
    Argument, Command, CommandMetadata, ErrorCategory, ErrorRecord, MetadataQuery, Pipeline,
    Statement,
};
use super::message::{Destination, Message, MessageType};

/// UTF-8 byte-order mark the Windows server puts before every message's data.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A client message body that does not have the shape the protocol prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct BodyError {
    /// Which message.
    pub what: &'static str,
    /// What is wrong.
    pub why: String,
}

fn body_err(what: &'static str, why: impl Into<String>) -> BodyError {
    BodyError { what, why: why.into() }
}

/// Encodes one CLIXML value (a whole message body).
pub fn encode_value(v: &Value) -> String {
    let _ = v; todo!("CODEC-STUB to_xml")
}

/// Decodes a message body (BOM and surrounding whitespace tolerated; empty is `$null`).
///
/// # Errors
/// [`BodyError`] when the CLIXML does not parse.
pub fn decode_value(what: &'static str, data: &[u8]) -> Result<Value, BodyError> {
    let data = data.strip_prefix(BOM).unwrap_or(data);
    let text = std::str::from_utf8(data).map_err(|e| body_err(what, format!("not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Value::Nil);
    }
    let _ = text; Err(body_err(what, "CODEC-STUB from_xml"))
}

/// A server→client message with `value` as data.
pub fn message(message_type: MessageType, rpid: Uuid, pid: Uuid, value: &Value) -> Message {
    let xml = encode_value(value);
    let mut data = Vec::with_capacity(BOM.len() + xml.len());
    data.extend_from_slice(BOM);
    data.extend_from_slice(xml.as_bytes());
    Message { destination: Destination::Client, message_type, rpid, pid, data }
}

// ---- small value helpers -------------------------------------------------------------------

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn obj_ms(props: Vec<(&str, Value)>) -> Value {
    Value::Object(Box::new(Object {
        extended: props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ..Object::default()
    }))
}

fn typed(type_names: &[&str], to_string: Option<String>) -> Object {
    Object {
        type_names: type_names.iter().map(|t| (*t).to_owned()).collect(),
        to_string,
        ..Object::default()
    }
}

fn dictionary(type_names: &[&str], entries: Vec<(&str, Value)>) -> Value {
    let mut o = typed(type_names, None);
    o.container = Some(Container::Dictionary(entries.into_iter().map(|(k, v)| (s(k), v)).collect()));
    Value::Object(Box::new(o))
}

/// Looks a member up in an object (MS first, then Props), case-insensitively.
pub fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Object(o) = v else { return None };
    o.extended
        .iter()
        .chain(o.adapted.iter())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The string of a `<S>` (or an object's ToString), if any.
pub fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => match &o.primitive {
            Some(Value::String(s)) => Some(s),
            _ => o.to_string.as_deref(),
        },
        _ => None,
    }
}

/// An integer (any width, or an enum object's I32).
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::I8(n) => Some(i64::from(*n)),
        Value::U8(n) => Some(i64::from(*n)),
        Value::I16(n) => Some(i64::from(*n)),
        Value::U16(n) => Some(i64::from(*n)),
        Value::I32(n) => Some(i64::from(*n)),
        Value::U32(n) => Some(i64::from(*n)),
        Value::I64(n) => Some(*n),
        Value::U64(n) => i64::try_from(*n).ok(),
        Value::Object(o) => o.primitive.as_ref().and_then(as_i64),
        _ => None,
    }
}

/// A boolean (`<B>`).
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Object(o) => o.primitive.as_ref().and_then(as_bool),
        _ => None,
    }
}

/// The elements of a list-like value (an Obj with LST/IE/…; a bare scalar is one element).
pub fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Nil => Vec::new(),
        Value::Object(o) => match &o.container {
            Some(Container::List(l) | Container::Enumerable(l) | Container::Stack(l) | Container::Queue(l)) => {
                l.iter().collect()
            }
            Some(Container::Dictionary(_)) => vec![v],
            None => match &o.primitive {
                Some(p) => vec![p],
                None => vec![v],
            },
        },
        other => vec![other],
    }
}

// ---- pool messages -------------------------------------------------------------------------

/// The server's SESSION_CAPABILITY (protocol 2.3, PSVersion 2.0, serialization 1.1.0.1).
pub fn session_capability() -> Value {
    obj_ms(vec![
        ("protocolversion", Value::Version("2.3".into())),
        ("PSVersion", Value::Version("2.0".into())),
        ("SerializationVersion", Value::Version("1.1.0.1".into())),
    ])
}

/// The `Hash` the endpoint reports in `ImplicitRemoting` (stable: modules exported from a
/// session compare it on re-import).
pub const IMPLICIT_REMOTING_HASH: &str = "exo-authproxy-1";

/// APPLICATION_PRIVATE_DATA: PSVersionTable of Windows PowerShell 5.1 plus ImplicitRemoting.
pub fn application_private_data() -> Value {
    const PSPD: [&str; 3] = [
        "System.Management.Automation.PSPrimitiveDictionary",
        "System.Collections.Hashtable",
        "System.Object",
    ];
    let mut compat = typed(&["System.Version[]", "System.Array", "System.Object"], None);
    compat.container = Some(Container::List(
        ["1.0", "2.0", "3.0", "4.0", "5.0", "5.1.17763.6414"].iter().map(|v| Value::Version((*v).into())).collect(),
    ));
    let version_table = dictionary(
        &PSPD,
        vec![
            ("PSVersion", Value::Version("5.1.17763.6414".into())),
            ("PSEdition", s("Desktop")),
            ("PSCompatibleVersions", Value::Object(Box::new(compat))),
            ("CLRVersion", Value::Version("4.0.30319.42000".into())),
            ("BuildVersion", Value::Version("10.0.17763.6414".into())),
            ("WSManStackVersion", Value::Version("3.0".into())),
            ("PSRemotingProtocolVersion", Value::Version("2.3".into())),
            ("SerializationVersion", Value::Version("1.1.0.1".into())),
        ],
    );
    let implicit = dictionary(&PSPD, vec![("Hash", s(IMPLICIT_REMOTING_HASH))]);
    let apd = dictionary(&PSPD, vec![("PSVersionTable", version_table), ("ImplicitRemoting", implicit)]);
    obj_ms(vec![("ApplicationPrivateData", apd)])
}

/// RUNSPACEPOOL_STATE (2 Opened, 3 Closed, 5 Broken) with an optional error.
pub fn runspace_pool_state(state: i32, error: Option<&ErrorRecord>) -> Value {
    let mut props = vec![("RunspaceState", Value::I32(state))];
    if let Some(e) = error {
        props.push(("ExceptionAsErrorRecord", error_record(e, false)));
    }
    obj_ms(props)
}

/// RUNSPACE_AVAILABILITY answering SET_MAX/SET_MIN/RESET (`true`) or GET_AVAILABLE (a count).
pub fn runspace_availability(response: Value, call_id: i64) -> Value {
    obj_ms(vec![("SetMinMaxRunspacesResponse", response), ("ci", Value::I64(call_id))])
}

/// The call id (`ci`) of a runspace-count request.
pub fn call_id(body: &Value) -> i64 {
    member(body, "ci").and_then(as_i64).unwrap_or(0)
}

// ---- pipeline messages ---------------------------------------------------------------------

/// PSInvocationState values on the wire.
pub mod state {
    /// Stopped.
    pub const STOPPED: i32 = 3;
    /// Completed.
    pub const COMPLETED: i32 = 4;
    /// Failed.
    pub const FAILED: i32 = 5;
}

/// PIPELINE_STATE with an optional ExceptionAsErrorRecord.
pub fn pipeline_state(state: i32, error: Option<&ErrorRecord>) -> Value {
    let mut props = vec![("PipelineState", Value::I32(state))];
    if let Some(e) = error {
        props.push(("ExceptionAsErrorRecord", error_record(e, false)));
    }
    obj_ms(props)
}

fn short_type_name(t: &str) -> &str {
    t.rsplit('.').next().unwrap_or(t)
}

/// Exception type chain for the ErrorRecord's `Exception` (most derived first).
fn exception_type_names(t: &str) -> Vec<String> {
    let chain: &[&str] = match t {
        "System.Management.Automation.PipelineStoppedException" => &[
            "System.Management.Automation.PipelineStoppedException",
            "System.Management.Automation.RuntimeException",
            "System.SystemException",
        ],
        "System.Management.Automation.ParseException" => &[
            "System.Management.Automation.ParseException",
            "System.Management.Automation.RuntimeException",
            "System.SystemException",
        ],
        "System.Management.Automation.CommandNotFoundException" => &[
            "System.Management.Automation.CommandNotFoundException",
            "System.Management.Automation.RuntimeException",
            "System.SystemException",
        ],
        "System.Management.Automation.RuntimeException" | "System.Management.Automation.RemoteException" => {
            &[t, "System.SystemException"]
        }
        "System.Exception" => &[],
        _ => &[t],
    };
    let mut v: Vec<String> = chain.iter().map(|s| (*s).to_owned()).collect();
    v.push("System.Exception".into());
    v.push("System.Object".into());
    v
}

/// The ErrorRecord with every property Windows PowerShell requires (reference §9.1).
/// `write_error_stream` adds `writeErrorStream` (ERROR_RECORD messages only).
pub fn error_record(e: &ErrorRecord, write_error_stream: bool) -> Value {
    let hresult = match e.exception_type.as_str() {
        "System.Management.Automation.PipelineStoppedException" => -2_146_233_087,
        _ => -2_146_233_088,
    };
    let mut exception = Object {
        type_names: exception_type_names(&e.exception_type),
        to_string: Some(format!("{}: {}", e.exception_type, e.message)),
        ..Object::default()
    };
    exception.adapted = vec![
        ("Message".into(), s(&e.message)),
        ("Data".into(), Value::Nil),
        ("InnerException".into(), Value::Nil),
        ("TargetSite".into(), Value::Nil),
        ("StackTrace".into(), Value::Nil),
        ("HelpLink".into(), Value::Nil),
        ("Source".into(), Value::Nil),
        ("HResult".into(), Value::I32(hresult)),
    ];
    let reason = if e.reason.is_empty() { short_type_name(&e.exception_type).to_owned() } else { e.reason.clone() };
    let category = e.category as i32;
    let category_message = format!(
        "{:?}: ({}:{}) [{}], {}",
        e.category, e.target_name, e.target_type, e.activity, reason
    );
    let mut record = typed(
        &["System.Management.Automation.ErrorRecord", "System.Object"],
        Some(e.message.clone()),
    );
    record.extended = vec![
        ("Exception".into(), Value::Object(Box::new(exception))),
        ("TargetObject".into(), e.target_object.clone()),
        ("FullyQualifiedErrorId".into(), s(&e.fully_qualified_error_id)),
        ("InvocationInfo".into(), Value::Nil),
        ("ErrorCategory_Category".into(), Value::I32(category)),
        ("ErrorCategory_Activity".into(), s(&e.activity)),
        ("ErrorCategory_Reason".into(), s(&reason)),
        ("ErrorCategory_TargetName".into(), s(&e.target_name)),
        ("ErrorCategory_TargetType".into(), s(&e.target_type)),
        ("ErrorCategory_Message".into(), s(&category_message)),
        ("SerializeExtendedInfo".into(), Value::Bool(false)),
    ];
    if write_error_stream {
        record.extended.push(("writeErrorStream".into(), Value::Bool(true)));
    }
    Value::Object(Box::new(record))
}

/// WARNING/VERBOSE/DEBUG record (`kind` = `Warning`, `Verbose`, `Debug`).
pub fn informational_record(kind: &str, text: &str) -> Value {
    let first = format!("System.Management.Automation.{kind}Record");
    let mut o = typed(
        &[&first, "System.Management.Automation.InformationalRecord", "System.Object"],
        Some(text.to_owned()),
    );
    o.extended = vec![
        ("InformationalRecord_Message".into(), s(text)),
        ("InformationalRecord_SerializeInvocationInfo".into(), Value::Bool(false)),
    ];
    Value::Object(Box::new(o))
}

/// INFORMATION_RECORD (protocol ≥ 2.3).
pub fn information_record(text: &str) -> Value {
    let mut tags = typed(
        &["System.Collections.Generic.List`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]", "System.Object"],
        None,
    );
    tags.container = Some(Container::List(Vec::new()));
    let now = chrono::Utc::now().fixed_offset();
    obj_ms(vec![
        ("MessageData", s(text)),
        ("Source", s("exo-authproxy")),
        ("TimeGenerated", Value::DateTime(now)),
        ("Tags", Value::Object(Box::new(tags))),
        ("User", s("")),
        ("Computer", s("exo-authproxy")),
        ("ProcessId", Value::U32(std::process::id())),
        ("NativeThreadId", Value::U32(0)),
        ("ManagedThreadId", Value::U32(0)),
    ])
}

/// The record a stop produces (PIPELINE_STATE Stopped, reference §9.2).
pub fn pipeline_stopped_record() -> ErrorRecord {
    ErrorRecord {
        message: "The pipeline has been stopped.".into(),
        exception_type: "System.Management.Automation.PipelineStoppedException".into(),
        fully_qualified_error_id: "PipelineStopped".into(),
        category: ErrorCategory::OperationStopped,
        activity: String::new(),
        reason: "PipelineStoppedException".into(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}

/// Exchange's NoLanguage refusal of script text (reference §10.1).
pub fn scripts_not_allowed(script: &str) -> ErrorRecord {
    ErrorRecord {
        message: "The syntax is not supported by this runspace. This can occur if the runspace is in \
                  no-language mode."
            .into(),
        exception_type: "System.Management.Automation.ParseException".into(),
        fully_qualified_error_id: "ScriptsNotAllowed".into(),
        category: ErrorCategory::ParserError,
        activity: String::new(),
        reason: "ParseException".into(),
        target_name: script.to_owned(),
        target_type: "String".into(),
        target_object: s(script),
    }
}

/// An error the endpoint itself reports (bad message from the client, executor gone…).
pub fn endpoint_error(message: String, fqid: &str, category: ErrorCategory) -> ErrorRecord {
    ErrorRecord {
        message,
        exception_type: "System.Management.Automation.RuntimeException".into(),
        fully_qualified_error_id: fqid.to_owned(),
        category,
        activity: String::new(),
        reason: "RuntimeException".into(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}

// ---- CREATE_PIPELINE / GET_COMMAND_METADATA ------------------------------------------------

const MERGE_OUTPUT: i64 = 1;
const MERGE_ERROR: i64 = 2;

fn parse_command(v: &Value) -> Result<Command, BodyError> {
    const W: &str = "CREATE_PIPELINE command";
    let name = member(v, "Cmd").and_then(as_str).ok_or_else(|| body_err(W, "no Cmd"))?.to_owned();
    let is_script = member(v, "IsScript").and_then(as_bool).unwrap_or(false);
    let my = member(v, "MergeMyResult").and_then(as_i64).unwrap_or(0);
    let to = member(v, "MergeToResult").and_then(as_i64).unwrap_or(0);
    let merge_error = member(v, "MergeError").and_then(as_i64).unwrap_or(0);
    let merge_errors_into_output = (my == MERGE_ERROR && to == MERGE_OUTPUT) || merge_error == MERGE_OUTPUT;
    let mut args = Vec::new();
    if let Some(a) = member(v, "Args") {
        for arg in as_list(a) {
            let name = match member(arg, "N") {
                None | Some(Value::Nil) => None,
                Some(n) => Some(as_str(n).ok_or_else(|| body_err(W, "an Args N that is not a string"))?.to_owned()),
            };
            let value = member(arg, "V").cloned().unwrap_or(Value::Nil);
            args.push(Argument { name, value });
        }
    }
    Ok(Command { name, is_script, args, merge_errors_into_output })
}

fn parse_statement(powershell: &Value) -> Result<Statement, BodyError> {
    let cmds = member(powershell, "Cmds").ok_or_else(|| body_err("CREATE_PIPELINE", "PowerShell has no Cmds"))?;
    let commands = as_list(cmds).into_iter().map(parse_command).collect::<Result<Vec<_>, _>>()?;
    Ok(Statement { commands })
}

/// CREATE_PIPELINE data → the pipeline (Cmds, then ExtraCmds statements).
///
/// # Errors
/// [`BodyError`] for a body without `PowerShell`/`Cmds`/`Cmd`.
pub fn parse_create_pipeline(data: &[u8]) -> Result<Pipeline, BodyError> {
    let v = decode_value("CREATE_PIPELINE", data)?;
    let ps = member(&v, "PowerShell").ok_or_else(|| body_err("CREATE_PIPELINE", "no PowerShell member"))?;
    let mut statements = vec![parse_statement(ps)?];
    if let Some(extra) = member(ps, "ExtraCmds") {
        for st in as_list(extra) {
            statements.push(parse_statement(st)?);
        }
    }
    statements.retain(|s| !s.commands.is_empty());
    let no_input = member(&v, "NoInput").and_then(as_bool).unwrap_or(true);
    Ok(Pipeline { statements, no_input })
}

/// GET_COMMAND_METADATA data → the query (CommandType as I32 or enum Obj).
///
/// # Errors
/// [`BodyError`] when the body does not parse.
pub fn parse_metadata_query(data: &[u8]) -> Result<MetadataQuery, BodyError> {
    let v = decode_value("GET_COMMAND_METADATA", data)?;
    let names: Vec<String> = member(&v, "Name")
        .map(|n| as_list(n).into_iter().filter_map(as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let names = if names.is_empty() { vec!["*".to_owned()] } else { names };
    let command_types = member(&v, "CommandType")
        .and_then(as_i64)
        .map_or(511, |n| u32::try_from(n & 0x7fff_ffff).unwrap_or(511));
    let namespace = match member(&v, "Namespace") {
        None | Some(Value::Nil) => None,
        Some(ns) => Some(as_list(ns).into_iter().filter_map(as_str).map(str::to_owned).collect()),
    };
    Ok(MetadataQuery { names, command_types, namespace })
}

/// The first GET_COMMAND_METADATA reply object: how many commands follow.
pub fn metadata_count(n: usize) -> Value {
    let mut o = typed(
        &[
            "Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo",
            "System.Management.Automation.PSCustomObject",
            "System.Object",
        ],
        None,
    );
    o.extended = vec![("Count".into(), Value::I32(i32::try_from(n).unwrap_or(i32::MAX)))];
    Value::Object(Box::new(o))
}

const COMMON_PARAMETERS: &[(&str, &str, bool, &[&str])] = &[
    ("Verbose", "System.Management.Automation.SwitchParameter", true, &["vb"]),
    ("Debug", "System.Management.Automation.SwitchParameter", true, &["db"]),
    ("ErrorAction", "System.Management.Automation.ActionPreference", false, &["ea"]),
    ("WarningAction", "System.Management.Automation.ActionPreference", false, &["wa"]),
    ("InformationAction", "System.Management.Automation.ActionPreference", false, &["infa"]),
    ("ErrorVariable", "System.String", false, &["ev"]),
    ("WarningVariable", "System.String", false, &["wv"]),
    ("InformationVariable", "System.String", false, &["iv"]),
    ("OutVariable", "System.String", false, &["ov"]),
    ("OutBuffer", "System.Int32", false, &["ob"]),
    ("PipelineVariable", "System.String", false, &["pv"]),
];

const SHOULD_PROCESS_PARAMETERS: &[(&str, &str, bool, &[&str])] = &[
    ("WhatIf", "System.Management.Automation.SwitchParameter", true, &["wi"]),
    ("Confirm", "System.Management.Automation.SwitchParameter", true, &["cf"]),
];

fn parameter_metadata(name: &str, ty: &str, switch: bool, aliases: &[String]) -> Value {
    let mut al = typed(
        &["System.Collections.ObjectModel.Collection`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]", "System.Object"],
        None,
    );
    al.container = Some(Container::List(aliases.iter().map(|a| s(a)).collect()));
    let mut o = typed(
        &["System.Management.Automation.ParameterMetadata", "System.Object"],
        Some("System.Management.Automation.ParameterMetadata".into()),
    );
    o.adapted = vec![
        ("Name".into(), s(name)),
        ("ParameterType".into(), s(ty)),
        ("Aliases".into(), Value::Object(Box::new(al))),
        ("IsDynamic".into(), Value::Bool(false)),
        ("SwitchParameter".into(), Value::Bool(switch)),
    ];
    Value::Object(Box::new(o))
}

fn command_type_enum(t: u32) -> Value {
    let name = match t {
        1 => "Alias",
        2 => "Function",
        4 => "Filter",
        8 => "Cmdlet",
        _ => "Cmdlet",
    };
    let mut o = typed(
        &["System.Management.Automation.CommandTypes", "System.Enum", "System.ValueType", "System.Object"],
        Some(name.into()),
    );
    o.primitive = Some(Value::I32(i32::try_from(t).unwrap_or(8)));
    Value::Object(Box::new(o))
}

/// One `Selected.System.Management.Automation.CmdletInfo` reply object (common parameters added).
pub fn command_info(c: &CommandMetadata) -> Value {
    let mut params: Vec<(Value, Value)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &c.parameters {
        if seen.insert(p.name.to_ascii_lowercase()) {
            params.push((s(&p.name), parameter_metadata(&p.name, &p.parameter_type, p.is_switch, &p.aliases)));
        }
    }
    let extra = COMMON_PARAMETERS
        .iter()
        .chain(if c.supports_should_process { SHOULD_PROCESS_PARAMETERS } else { &[] });
    for (name, ty, switch, aliases) in extra {
        if seen.insert(name.to_ascii_lowercase()) {
            let aliases: Vec<String> = aliases.iter().map(|a| (*a).to_owned()).collect();
            params.push((s(name), parameter_metadata(name, ty, *switch, &aliases)));
        }
    }
    let mut dict = typed(
        &["System.Collections.Generic.Dictionary`2[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089],[System.Management.Automation.ParameterMetadata, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]", "System.Object"],
        None,
    );
    dict.container = Some(Container::Dictionary(params));
    let mut output_type = typed(
        &["System.Collections.ObjectModel.ReadOnlyCollection`1[[System.Management.Automation.PSTypeName, System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]", "System.Object"],
        None,
    );
    output_type.container = Some(Container::List(Vec::new()));
    let mut o = typed(
        &[
            "Selected.System.Management.Automation.CmdletInfo",
            "System.Management.Automation.PSCustomObject",
            "System.Object",
        ],
        None,
    );
    o.extended = vec![
        ("Name".into(), s(&c.name)),
        ("Namespace".into(), s(&c.namespace)),
        ("HelpUri".into(), Value::Nil),
        ("CommandType".into(), command_type_enum(c.command_type)),
        ("ResolvedCommandName".into(), c.resolved_command_name.as_deref().map_or(Value::Nil, s)),
        ("OutputType".into(), Value::Object(Box::new(output_type))),
        ("Parameters".into(), Value::Object(Box::new(dict))),
    ];
    Value::Object(Box::new(o))
}

/// Case-insensitive wildcard match (`*`, `?`), as PowerShell's `-like`.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "Get-Mailbox"));
        assert!(wildcard_match("get-*", "Get-Mailbox"));
        assert!(wildcard_match("G?t-Mail*x", "Get-Mailbox"));
        assert!(!wildcard_match("Set-*", "Get-Mailbox"));
        assert!(wildcard_match("*box", "Get-Mailbox"));
        assert!(!wildcard_match("", "x"));
    }

    #[test]
    fn error_record_has_every_mandatory_member() {
        let v = error_record(&scripts_not_allowed("Get-Mailbox | ? {$_}"), true);
        for m in [
            "Exception",
            "TargetObject",
            "FullyQualifiedErrorId",
            "InvocationInfo",
            "ErrorCategory_Category",
            "ErrorCategory_Activity",
            "ErrorCategory_Reason",
            "ErrorCategory_TargetName",
            "ErrorCategory_TargetType",
            "ErrorCategory_Message",
            "SerializeExtendedInfo",
            "writeErrorStream",
        ] {
            assert!(member(&v, m).is_some(), "{m} missing");
        }
        assert_eq!(
            member(&v, "ErrorCategory_Message").and_then(as_str),
            Some("ParserError: (Get-Mailbox | ? {$_}:String) [], ParseException")
        );
        assert_eq!(member(&v, "ErrorCategory_Category").and_then(as_i64), Some(17));
        let exc = member(&v, "Exception").unwrap();
        assert_eq!(member(exc, "Message").and_then(as_str).map(|m| m.starts_with("The syntax")), Some(true));
        let Value::Object(o) = exc else { panic!() };
        assert_eq!(o.type_names[0], "System.Management.Automation.ParseException");
        assert_eq!(o.type_names.last().map(String::as_str), Some("System.Object"));
    }

    #[test]
    fn command_info_adds_common_parameters_once() {
        let c = CommandMetadata {
            name: "Set-Mailbox".into(),
            namespace: "tmp_exo".into(),
            command_type: 8,
            resolved_command_name: None,
            parameters: vec![super::super::executor::ParameterMetadata {
                name: "Verbose".into(),
                parameter_type: "System.Management.Automation.SwitchParameter".into(),
                aliases: vec![],
                is_switch: true,
                position: None,
            }],
            supports_should_process: true,
        };
        let v = command_info(&c);
        let params = member(&v, "Parameters").unwrap();
        let Value::Object(o) = params else { panic!() };
        let Some(Container::Dictionary(d)) = &o.container else { panic!() };
        let names: Vec<&str> = d.iter().filter_map(|(k, _)| as_str(k)).collect();
        assert_eq!(names.iter().filter(|n| **n == "Verbose").count(), 1);
        assert!(names.contains(&"WhatIf") && names.contains(&"Confirm") && names.contains(&"PipelineVariable"));
    }
}
