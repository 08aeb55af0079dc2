//! The restricted runspace's own commands — the one engine for what the endpoint runs itself.
//!
//! Exchange's `Microsoft.Exchange` endpoint was a NoLanguage runspace: besides the Exchange
//! cmdlets it had the few commands a restricted remote server always has (reference
//! psrp-protocol.md §10.1). `Import-PSSession` depends on two of them (`Get-FormatData
//! -TypeName *`, alone and piped to `Measure-Object`), and scripts pipe remote output into
//! `Select-Object` and `Measure-Object` inside one `Invoke-Command`. Those commands are
//! implemented here, once, as [`Stage`]s: a stage takes input objects one at a time
//! ([`Stage::push`]) and says with each answer whether it wants more ([`Flow`]), then flushes
//! at the end ([`Stage::finish`]). Whoever drives a pipeline drives the stages the same way in
//! every position: the REST bridge's pull-based runner (`bridge::pipeline`) puts them between
//! Exchange cmdlets, and [`run`] drives them around executors that only run their own
//! commands. [`Flow::Enough`] is how `Select-Object -First n` stops upstream paging: the driver
//! stops pulling and drops the upstream call, wherever the stage stands.
//!
//! Commands: `Select-Object` ([`select`]), `Measure-Object` ([`measure`]), `Get-Command`
//! ([`get_command`]: the runspace's command list, which the driver supplies), `Get-FormatData`
//! (no objects: clients fall back to default formatting), `Exit-PSSession` (nothing to do on
//! the server), `Out-Default` (passes objects on: the client formats them) and `Out-Null`
//! (drops them; run when sent but not listed, see [`UNLISTED`]). Their arguments go through the same binder as every other command's, with
//! metadata written from Windows PowerShell 5.1's parameter declarations, so `-First 5`
//! against `-Unique` binds as PowerShell binds it. Script blocks in their arguments
//! (calculated properties) are refused with `ScriptsNotAllowed`, as RPS's NoLanguage runspace
//! refused them.
//!
//! Stages that must keep objects (`-Last`, `-SkipLast`, `-Unique`) keep them in a
//! [`buffer::Buffer`] bounded by count and by estimated bytes; past either limit the pipeline
//! fails with an error that says which limit and what to do instead.

// The engine's errors are the ErrorRecords PowerShell would write (the client sees them as
// they are); they are made only when a pipeline fails, so their size costs nothing per object.
#![allow(clippy::result_large_err)]

mod buffer;
mod get_command;
mod measure;
mod run;
mod select;

use std::sync::OnceLock;

pub use buffer::{MAX_BUFFERED_BYTES, MAX_BUFFERED_OBJECTS};
pub use run::run;

use super::binding::{self, ActionPreference, BoundCommand, BoundValue, CommonParameters};
use super::clixml::{Container, Object, Value};
use super::executor::{
    Command, CommandMetadata, ErrorCategory, ErrorRecord, MetadataQuery, Output, ParameterMetadata,
};

/// A switch parameter's type.
const SWITCH: &str = "System.Management.Automation.SwitchParameter";
const PSOBJECT: &str = "System.Management.Automation.PSObject";

/// A local command's parameter: name, .NET type, position.
type Parameter = (&'static str, &'static str, Option<u32>);

/// The local commands with their parameters as Windows PowerShell 5.1 declares them (name,
/// .NET type, position), so the shared binder treats their arguments as PowerShell's would:
/// `-First 5` takes the next value, `-Unique` does not, `Select-Object Name` binds `Property`
/// by position, and a parameter the command does not have is PowerShell's binding error.
/// `-Wait` is accepted and has nothing to do: there is no console to wait for.
const COMMANDS: &[(&str, &str, &[Parameter])] = &[
    (
        "Get-FormatData",
        "Microsoft.PowerShell.Utility",
        &[
            ("TypeName", "System.String[]", Some(0)),
            ("PowerShellVersion", "System.Version", None),
        ],
    ),
    ("Exit-PSSession", "Microsoft.PowerShell.Core", &[]),
    (
        "Get-Command",
        "Microsoft.PowerShell.Core",
        &[
            ("Name", "System.String[]", Some(0)),
            ("ArgumentList", "System.Object[]", Some(1)),
            ("Verb", "System.String[]", None),
            ("Noun", "System.String[]", None),
            ("Module", "System.String[]", None),
            (
                "FullyQualifiedModule",
                "Microsoft.PowerShell.Commands.ModuleSpecification[]",
                None,
            ),
            (
                "CommandType",
                "System.Management.Automation.CommandTypes",
                None,
            ),
            ("TotalCount", "System.Int32", None),
            ("Syntax", SWITCH, None),
            ("ShowCommandInfo", SWITCH, None),
            ("All", SWITCH, None),
            ("ListImported", SWITCH, None),
            ("ParameterName", "System.String[]", None),
            (
                "ParameterType",
                "System.Management.Automation.PSTypeName[]",
                None,
            ),
        ],
    ),
    (
        "Measure-Object",
        "Microsoft.PowerShell.Utility",
        &[
            ("InputObject", PSOBJECT, None),
            ("Property", "System.String[]", Some(0)),
            ("Sum", SWITCH, None),
            ("Average", SWITCH, None),
            ("Maximum", SWITCH, None),
            ("Minimum", SWITCH, None),
            ("Line", SWITCH, None),
            ("Word", SWITCH, None),
            ("Character", SWITCH, None),
            ("IgnoreWhiteSpace", SWITCH, None),
        ],
    ),
    (
        "Select-Object",
        "Microsoft.PowerShell.Utility",
        &[
            ("InputObject", PSOBJECT, None),
            ("Property", "System.Object[]", Some(0)),
            ("ExcludeProperty", "System.String[]", None),
            ("ExpandProperty", "System.String", None),
            ("Unique", SWITCH, None),
            ("Last", "System.Int32", None),
            ("First", "System.Int32", None),
            ("Skip", "System.Int32", None),
            ("SkipLast", "System.Int32", None),
            ("Wait", SWITCH, None),
            ("Index", "System.Int32[]", None),
        ],
    ),
    (
        "Out-Default",
        "Microsoft.PowerShell.Core",
        &[
            ("Transcript", SWITCH, None),
            ("InputObject", PSOBJECT, None),
        ],
    ),
    (
        "Out-Null",
        "Microsoft.PowerShell.Core",
        &[("InputObject", PSOBJECT, None)],
    ),
];

/// The metadata of every local command, built once.
fn all() -> &'static [CommandMetadata] {
    static ALL: OnceLock<Vec<CommandMetadata>> = OnceLock::new();
    ALL.get_or_init(|| {
        COMMANDS
            .iter()
            .map(|(name, namespace, parameters)| CommandMetadata {
                name: (*name).into(),
                namespace: (*namespace).into(),
                command_type: 8,
                resolved_command_name: None,
                parameters: parameters
                    .iter()
                    .map(|(name, ty, position)| ParameterMetadata {
                        name: (*name).into(),
                        parameter_type: (*ty).into(),
                        aliases: Vec::new(),
                        is_switch: *ty == SWITCH,
                        position: *position,
                    })
                    .collect(),
                supports_should_process: false,
            })
            .collect()
    })
}

/// Local commands that are run when sent but not listed (GET_COMMAND_METADATA, `Get-Command`):
/// `Out-Null` is not in a restricted runspace's list (psrp-protocol.md §10.1) and not in
/// Import-PSSession's skip list, so listing it would make `Import-PSSession -AllowClobber`
/// — common in Exchange scripts — shadow the client's own `Out-Null` with a remote proxy.
const UNLISTED: &[&str] = &["Out-Null"];

/// The local commands a restricted runspace lists.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|n| !UNLISTED.contains(n))
}

/// The metadata of the listed local commands.
fn listed() -> impl Iterator<Item = &'static CommandMetadata> {
    all()
        .iter()
        .filter(|m| !UNLISTED.contains(&m.name.as_str()))
}

/// The parameters a local command declares (Windows PowerShell 5.1's), for catalogs that list
/// the local commands beside their own (GET_COMMAND_METADATA) and bind them the same way.
pub fn metadata(name: &str) -> Option<CommandMetadata> {
    find(name).cloned()
}

/// Whether `name` (case-insensitive) is a local command.
pub fn is_local(name: &str) -> bool {
    find(name).is_some()
}

fn find(name: &str) -> Option<&'static CommandMetadata> {
    all()
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name.trim()))
}

/// Whether a stage wants more input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep sending.
    More,
    /// Nothing more will come out of this stage whatever it is sent (`-First n` reached):
    /// stop the commands upstream (drop their calls), then [`Stage::finish`] the rest.
    Enough,
}

/// What one input produced: outputs (objects, non-terminating errors) and the flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// In order.
    pub outputs: Vec<Output>,
    /// Whether to keep sending input.
    pub flow: Flow,
}

impl Step {
    fn more(outputs: Vec<Output>) -> Self {
        Self {
            outputs,
            flow: Flow::More,
        }
    }
}

/// What a local command does with its input.
#[derive(Debug)]
enum Behaviour {
    Select(Box<select::Select>),
    Measure(measure::Measure),
    GetCommand(get_command::GetCommand),
    /// `Out-Default`: the client formats.
    PassThrough,
    /// `Out-Null`, and the commands that produce nothing and ignore input (`Get-FormatData`,
    /// `Exit-PSSession`).
    Discard,
}

/// One local command of a pipeline, bound and ready for input.
#[derive(Debug)]
pub struct Stage {
    name: &'static str,
    common: CommonParameters,
    behaviour: Behaviour,
}

/// A bound command's arguments, read the way the local commands need them.
struct Arguments<'a> {
    command: &'static str,
    bound: &'a BoundCommand,
}

impl<'a> Arguments<'a> {
    fn value(&self, name: &str) -> Option<&'a Value> {
        match self.bound.get(name) {
            Some(BoundValue::Value(v)) => Some(v),
            _ => None,
        }
    }

    fn switch(&self, name: &str) -> bool {
        match self.bound.get(name) {
            Some(BoundValue::Switch(on)) => *on,
            Some(BoundValue::Value(v)) => v.as_bool().unwrap_or(true),
            None => false,
        }
    }

    /// The texts of a `String[]` parameter (a single value is a list of one).
    fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.value(name).map(|v| {
            v.elements()
                .into_iter()
                .map(binding::display_value)
                .collect()
        })
    }

    /// A non-negative `Int32` parameter, validated as PowerShell's `ValidateRange(0, max)`.
    fn count(&self, name: &str) -> Result<Option<usize>, ErrorRecord> {
        let Some(v) = self.value(name) else {
            return Ok(None);
        };
        let n = v
            .as_i64()
            .or_else(|| binding::display_value(v).trim().parse().ok());
        match n.and_then(|n| i32::try_from(n).ok()) {
            Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            Some(n) => Err(self.invalid(
                name,
                format!(
                    "The {n} argument is less than the minimum allowed range of 0. Supply an \
                     argument that is greater than or equal to 0 and then try the command again."
                ),
            )),
            None => Err(self.invalid(
                name,
                format!(
                    "Cannot convert value \"{}\" to type \"System.Int32\".",
                    binding::display_value(v)
                ),
            )),
        }
    }

    /// PowerShell's `ParameterArgumentValidationError` for `parameter`.
    fn invalid(&self, parameter: &str, why: String) -> ErrorRecord {
        ErrorRecord {
            activity: self.command.into(),
            ..ErrorRecord::new(
                format!("Cannot validate argument on parameter '{parameter}'. {why}"),
                "System.Management.Automation.ParameterBindingValidationException",
                format!(
                    "ParameterArgumentValidationError,{}",
                    class_name(self.command)
                ),
                ErrorCategory::InvalidData,
            )
        }
    }
}

/// The .NET class of a local command (FullyQualifiedErrorIds end with it).
fn class_name(command: &str) -> String {
    format!(
        "Microsoft.PowerShell.Commands.{}Command",
        command.replace('-', "")
    )
}

/// The values directly inside an object: its primitive, its members' values, its container's
/// items (a dictionary's keys and values). The engine's walks over values (size, `-Unique`'s
/// hash, the script-block check) go through this, each with its own stack.
fn children(o: &Object) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match &o.container {
        Some(
            Container::List(l)
            | Container::Enumerable(l)
            | Container::Stack(l)
            | Container::Queue(l),
        ) => l,
        _ => &[],
    };
    let entries: &[(Value, Value)] = match &o.container {
        Some(Container::Dictionary(d)) => d,
        _ => &[],
    };
    o.primitive
        .iter()
        .chain(o.adapted.iter().chain(&o.extended).map(|(_, v)| v))
        .chain(items)
        .chain(entries.iter().flat_map(|(k, v)| [k, v]))
}

/// The first script block a value holds anywhere (a calculated property's expression).
fn script_block(value: &Value) -> Option<&str> {
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::ScriptBlock(s) => return Some(s),
            Value::Object(o) => pending.extend(children(o)),
            _ => {}
        }
    }
    None
}

impl Stage {
    /// Binds `cmd` if it is a local command (None when it is not one).
    ///
    /// # Errors
    /// The record the pipeline fails with: PowerShell's binding or validation error, or
    /// `ScriptsNotAllowed` for a script block in the arguments (a calculated property).
    pub fn bind(cmd: &Command) -> Result<Option<Self>, ErrorRecord> {
        let Some(metadata) = find(&cmd.name) else {
            return Ok(None);
        };
        if let Some(script) = cmd.args.iter().find_map(|a| script_block(&a.value)) {
            return Err(ErrorRecord::scripts_not_allowed(script));
        }
        let name = COMMANDS
            .iter()
            .map(|(n, _, _)| *n)
            .find(|n| n.eq_ignore_ascii_case(&metadata.name))
            .expect("metadata comes from COMMANDS");
        let bound = binding::bind(metadata, &cmd.args).map_err(|e| e.to_error_record())?;
        let args = Arguments {
            command: name,
            bound: &bound,
        };
        let behaviour = match name {
            "Select-Object" => Behaviour::Select(Box::new(select::Select::new(&args)?)),
            "Measure-Object" => Behaviour::Measure(measure::Measure::new(&args)?),
            "Get-Command" => Behaviour::GetCommand(get_command::GetCommand::new(&args)?),
            "Out-Default" => Behaviour::PassThrough,
            _ => Behaviour::Discard,
        };
        Ok(Some(Self {
            name,
            common: bound.common,
            behaviour,
        }))
    }

    /// The command's name as PowerShell spells it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The runspace's commands this stage needs (`Get-Command`), if any: the driver answers
    /// with [`Stage::supply_commands`] before input starts.
    pub fn commands_query(&self) -> Option<MetadataQuery> {
        match &self.behaviour {
            Behaviour::GetCommand(g) => Some(g.query()),
            _ => None,
        }
    }

    /// The answer to [`Stage::commands_query`]: the commands the runspace has.
    pub fn supply_commands(&mut self, commands: Vec<CommandMetadata>) {
        if let Behaviour::GetCommand(g) = &mut self.behaviour {
            g.supply(commands);
        }
    }

    /// Takes one input object.
    ///
    /// # Errors
    /// The record the pipeline fails with: a buffer limit, or a non-terminating error under
    /// `-ErrorAction Stop`.
    pub fn push(&mut self, input: Value) -> Result<Step, ErrorRecord> {
        let step = match &mut self.behaviour {
            Behaviour::Select(s) => s.push(input)?,
            Behaviour::Measure(m) => {
                m.push(&input)?;
                Step::more(m.take_errors())
            }
            Behaviour::PassThrough => Step::more(vec![Output::Object(input)]),
            Behaviour::GetCommand(_) | Behaviour::Discard => Step::more(Vec::new()),
        };
        Ok(Step {
            outputs: self.apply_error_action(step.outputs)?,
            flow: step.flow,
        })
    }

    /// End of input: what the command writes last (`Measure-Object`'s result, the objects
    /// `-Last`/`-Unique` kept).
    ///
    /// # Errors
    /// A non-terminating error under `-ErrorAction Stop`.
    pub fn finish(&mut self) -> Result<Vec<Output>, ErrorRecord> {
        let outputs = match &mut self.behaviour {
            Behaviour::Select(s) => s.finish(),
            Behaviour::Measure(m) => m.finish(),
            Behaviour::GetCommand(g) => g.finish(),
            Behaviour::PassThrough | Behaviour::Discard => Vec::new(),
        };
        self.apply_error_action(outputs)
    }

    /// `-ErrorAction` on the command's own non-terminating errors, as PowerShell applies it.
    fn apply_error_action(&self, outputs: Vec<Output>) -> Result<Vec<Output>, ErrorRecord> {
        let action = self.common.error_action;
        if !outputs.iter().any(|o| matches!(o, Output::Error(_))) || action.is_none() {
            return Ok(outputs);
        }
        let mut kept = Vec::with_capacity(outputs.len());
        for o in outputs {
            match o {
                Output::Error(rec) if action == Some(ActionPreference::Stop) => return Err(rec),
                Output::Error(_) if action.is_some_and(ActionPreference::is_silent) => {}
                o => kept.push(o),
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests;
