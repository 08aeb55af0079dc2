//! CREATE_PIPELINE in, PIPELINE_STATE out (§6).

use super::error_record::error_record_object;
use super::{RecordError, body, required, wrong};
use crate::remoting::clixml::{Object, Value};
use crate::remoting::executor::{Argument, Command, ErrorRecord, Pipeline, PipelineEnd, Statement};

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
        origin: Default::default(),
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
