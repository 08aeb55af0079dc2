//! The restricted runspace's own commands, and the NoLanguage rule.
//!
//! Exchange's `Microsoft.Exchange` endpoint was a NoLanguage runspace: script text was refused
//! with `ScriptsNotAllowed`, and besides the Exchange cmdlets it had the few commands a
//! restricted remote server always has. `Import-PSSession` depends on two of them: it runs
//! `Get-FormatData -TypeName *` (alone and piped to `Measure-Object`) and aborts if that pipeline
//! fails. So the endpoint answers these itself instead of passing them to the executor (which
//! knows only Exchange cmdlets): `Get-FormatData` completes with no objects (clients then use
//! default formatting), `Measure-Object` counts, `Select-Object` picks properties/first/last,
//! `Out-Default`/`Out-Null` and `Exit-PSSession` are accepted. Everything else goes to the
//! executor; a trailing run of local filters is applied to the executor's output.
//!
//! The built-ins' arguments go through the same binder as every other command's
//! ([`binding`]), with metadata written from Windows PowerShell 5.1's parameter sets: a
//! second, metadata-free pairing of names and values would disagree with it on exactly the
//! ambiguous cases (`-First 5` against `-Unique`) the binder exists to settle.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::binding::{self, BindingError, BoundCommand, BoundValue};
use super::clixml::{Object, Value};
use super::executor::{
    Command, CommandMetadata, ErrorRecord, Executor, InputStream, Output, OutputSink,
    ParameterMetadata, Pipeline, PipelineEnd, Statement,
};
use super::records;

/// What a built-in does in a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Runs instead of the executor, alone in its statement (`Get-FormatData`).
    Source,
    /// Applied locally to the output of what precedes it (`Select-Object`).
    Filter,
}

/// A switch parameter's type.
const SWITCH: &str = "System.Management.Automation.SwitchParameter";

/// A built-in's parameter: name, .NET type, position.
type Parameter = (&'static str, &'static str, Option<u32>);

/// The built-ins with their parameters as Windows PowerShell 5.1 declares them (name, .NET
/// type, position), so the shared binder treats their arguments as PowerShell's would:
/// `-First 5` takes the next value, `-Unique` does not, `Select-Object Name` binds `Property`
/// by position, and a parameter the command does not have is PowerShell's binding error.
/// Every parameter is accepted even where the endpoint ignores it (`-Sum`, `-Unique`, `-Wait`):
/// refusing what PowerShell accepts would break scripts that ran against RPS.
const BUILTINS: &[(&str, &str, Role, &[Parameter])] = &[
    (
        "Get-FormatData",
        "Microsoft.PowerShell.Utility",
        Role::Source,
        &[
            ("TypeName", "System.String[]", Some(0)),
            ("PowerShellVersion", "System.Version", None),
        ],
    ),
    (
        "Exit-PSSession",
        "Microsoft.PowerShell.Core",
        Role::Source,
        &[],
    ),
    (
        "Measure-Object",
        "Microsoft.PowerShell.Utility",
        Role::Filter,
        &[
            ("InputObject", "System.Management.Automation.PSObject", None),
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
        Role::Filter,
        &[
            ("InputObject", "System.Management.Automation.PSObject", None),
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
        Role::Filter,
        &[
            ("Transcript", SWITCH, None),
            ("InputObject", "System.Management.Automation.PSObject", None),
        ],
    ),
    (
        "Out-Null",
        "Microsoft.PowerShell.Core",
        Role::Filter,
        &[("InputObject", "System.Management.Automation.PSObject", None)],
    ),
];

/// One built-in: what it does and the metadata the binder binds its arguments with.
struct Builtin {
    role: Role,
    metadata: CommandMetadata,
}

/// The built-in called `name` (case-insensitive), if it is one.
fn builtin(name: &str) -> Option<&'static Builtin> {
    static ALL: OnceLock<Vec<Builtin>> = OnceLock::new();
    ALL.get_or_init(|| {
        BUILTINS
            .iter()
            .map(|(name, namespace, role, parameters)| Builtin {
                role: *role,
                metadata: CommandMetadata {
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
                },
            })
            .collect()
    })
    .iter()
    .find(|b| b.metadata.name.eq_ignore_ascii_case(name))
}

/// The parameters a built-in declares (Windows PowerShell 5.1's), for executors that run
/// the built-ins themselves (the REST bridge) and must bind them the same way.
pub fn metadata(name: &str) -> Option<CommandMetadata> {
    builtin(name).map(|b| b.metadata.clone())
}

fn has_role(name: &str, role: Role) -> bool {
    builtin(name).is_some_and(|b| b.role == role)
}

/// Binds a built-in's arguments through the shared binder.
///
/// # Errors
/// [`BindingError`] with PowerShell's text, as for any other command.
fn bind(cmd: &Command) -> Result<Option<BoundCommand>, BindingError> {
    builtin(&cmd.name)
        .map(|b| binding::bind(&b.metadata, &cmd.args))
        .transpose()
}

/// A local filter over output objects.
enum Filter {
    Measure {
        count: i64,
    },
    Select {
        first: Option<i64>,
        last: Option<i64>,
        skip: i64,
        properties: Vec<String>,
        seen: i64,
        tail: Vec<Value>,
    },
    PassThrough,
    Discard,
}

impl Filter {
    fn new(cmd: &Command) -> Result<Self, BindingError> {
        let bound = bind(cmd)?.unwrap_or_default();
        let value = |n: &str| match bound.get(n) {
            Some(BoundValue::Value(v)) => Some(v),
            _ => None,
        };
        Ok(if cmd.name.eq_ignore_ascii_case("Measure-Object") {
            Self::Measure { count: 0 }
        } else if cmd.name.eq_ignore_ascii_case("Select-Object") {
            let int = |n: &str| value(n).and_then(Value::as_i64);
            let properties = value("Property")
                .map(|v| {
                    v.elements()
                        .into_iter()
                        .filter_map(Value::as_text)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Self::Select {
                first: int("First"),
                last: int("Last"),
                skip: int("Skip").unwrap_or(0),
                properties,
                seen: 0,
                tail: Vec::new(),
            }
        } else if cmd.name.eq_ignore_ascii_case("Out-Null") {
            Self::Discard
        } else {
            Self::PassThrough
        })
    }

    fn select(properties: &[String], v: Value) -> Value {
        if properties.is_empty() || properties.iter().any(|p| p == "*") {
            return v;
        }
        let mut type_names = vec![];
        if let Value::Object(o) = &v {
            if let Some(first) = o.type_names.first() {
                type_names.push(format!(
                    "Selected.{}",
                    first.trim_start_matches("Deserialized.")
                ));
            }
        }
        type_names.push("System.Management.Automation.PSCustomObject".into());
        type_names.push("System.Object".into());
        let extended = properties
            .iter()
            .map(|p| {
                let found = match &v {
                    Value::Object(o) => o
                        .extended
                        .iter()
                        .chain(o.adapted.iter())
                        .find(|(k, _)| k.eq_ignore_ascii_case(p))
                        .map(|(k, v)| (k.clone(), v.clone())),
                    _ => None,
                };
                found.unwrap_or_else(|| (p.clone(), Value::Nil))
            })
            .collect();
        Value::Object(Box::new(Object {
            type_names,
            extended,
            ..Object::default()
        }))
    }

    fn push(&mut self, v: Value) -> Vec<Value> {
        match self {
            Self::Measure { count } => {
                *count += 1;
                vec![]
            }
            Self::Select {
                first,
                last,
                skip,
                properties,
                seen,
                tail,
            } => {
                *seen += 1;
                if *seen <= *skip {
                    return vec![];
                }
                if let Some(l) = last {
                    tail.push(Self::select(properties, v));
                    let l = usize::try_from(*l).unwrap_or(0);
                    if tail.len() > l {
                        tail.remove(0);
                    }
                    return vec![];
                }
                if first.is_some_and(|f| *seen - *skip > f) {
                    return vec![];
                }
                vec![Self::select(properties, v)]
            }
            Self::PassThrough => vec![v],
            Self::Discard => vec![],
        }
    }

    fn finish(&mut self) -> Vec<Value> {
        match self {
            Self::Measure { count } => vec![measure_info(*count)],
            Self::Select { tail, .. } => std::mem::take(tail),
            Self::PassThrough | Self::Discard => vec![],
        }
    }
}

/// `Microsoft.PowerShell.Commands.GenericMeasureInfo` with `Count`.
pub fn measure_info(count: i64) -> Value {
    let o = Object {
        type_names: vec![
            "Microsoft.PowerShell.Commands.GenericMeasureInfo".into(),
            "Microsoft.PowerShell.Commands.MeasureInfo".into(),
            "System.Object".into(),
        ],
        to_string: Some("Microsoft.PowerShell.Commands.GenericMeasureInfo".into()),
        adapted: vec![
            (
                "Count".into(),
                Value::I32(i32::try_from(count).unwrap_or(i32::MAX)),
            ),
            ("Average".into(), Value::Nil),
            ("Sum".into(), Value::Nil),
            ("Maximum".into(), Value::Nil),
            ("Minimum".into(), Value::Nil),
            ("Property".into(), Value::Nil),
        ],
        ..Object::default()
    };
    Value::Object(Box::new(o))
}

/// Passes `outputs` through `filters` into `sink`; false when the sink is closed.
async fn pump(
    mut rx: mpsc::Receiver<Output>,
    filters: &mut [Filter],
    merge_errors: bool,
    sink: &OutputSink,
) -> bool {
    while let Some(o) = rx.recv().await {
        let o = match o {
            Output::Error(e) if merge_errors => {
                Output::Object(records::error_record_object(&e).into_value())
            }
            o => o,
        };
        match o {
            Output::Object(v) => {
                for v in through(filters, vec![v]) {
                    if sink.send(Output::Object(v)).await.is_err() {
                        return false;
                    }
                }
            }
            other => {
                if sink.send(other).await.is_err() {
                    return false;
                }
            }
        }
    }
    true
}

fn through(filters: &mut [Filter], mut values: Vec<Value>) -> Vec<Value> {
    for f in filters.iter_mut() {
        values = values.into_iter().flat_map(|v| f.push(v)).collect();
    }
    values
}

fn finish(filters: &mut [Filter]) -> Vec<Value> {
    let mut values = Vec::new();
    for i in 0..filters.len() {
        let produced = filters[i].finish();
        let mut carried: Vec<Value> = std::mem::take(&mut values);
        carried.extend(produced);
        values = through(&mut filters[i + 1..], carried);
    }
    values
}

/// Binds a statement's built-ins (its local source, if any, then its filters) before anything
/// runs, as PowerShell binds a pipeline's arguments before running it.
fn bind_builtins(
    source: Option<&Command>,
    filters: &[Command],
) -> Result<Vec<Filter>, BindingError> {
    if let Some(cmd) = source {
        bind(cmd)?;
    }
    filters.iter().map(Filter::new).collect()
}

async fn run_statement<E: Executor>(
    executor: &E,
    caller: &E::Caller,
    statement: Statement,
    no_input: bool,
    input: InputStream,
    sink: &OutputSink,
) -> PipelineEnd {
    let split = statement
        .commands
        .iter()
        .rposition(|c| !has_role(&c.name, Role::Filter))
        .map_or(0, |i| i + 1);
    let mut commands = statement.commands;
    let filter_cmds = commands.split_off(split);
    let merge_errors = commands.iter().any(|c| c.merge_errors_into_output);

    let local_source = commands.len() == 1 && has_role(&commands[0].name, Role::Source);
    let source = if local_source { commands.first() } else { None };
    let mut filters = match bind_builtins(source, &filter_cmds) {
        Ok(filters) => filters,
        Err(e) => return PipelineEnd::Failed(e.to_error_record()),
    };
    if commands.is_empty() || local_source {
        // Input objects (if any) are the source of a filters-only statement; Get-FormatData
        // and Exit-PSSession produce nothing.
        let mut input = input;
        let mut values = Vec::new();
        if commands.is_empty() {
            while let Some(v) = input.recv().await {
                values.extend(through(&mut filters, vec![v]));
            }
        }
        values.extend(finish(&mut filters));
        for v in values {
            if sink.send(Output::Object(v)).await.is_err() {
                break;
            }
        }
        return PipelineEnd::Completed;
    }

    let pipeline = Pipeline {
        statements: vec![Statement { commands }],
        no_input,
    };
    if filters.is_empty() && !merge_errors {
        return executor.run(caller, pipeline, input, sink.clone()).await;
    }
    let (inner, rx) = OutputSink::channel(16);
    let (end, open) = tokio::join!(
        executor.run(caller, pipeline, input, inner),
        pump(rx, &mut filters, merge_errors, sink)
    );
    if open {
        for v in finish(&mut filters) {
            if sink.send(Output::Object(v)).await.is_err() {
                break;
            }
        }
    }
    end
}

/// Runs a whole pipeline: refuses script text, runs each statement in turn (local commands
/// here, the rest on the executor) and stops at the first failed one.
pub async fn run<E: Executor>(
    executor: Arc<E>,
    caller: E::Caller,
    pipeline: Pipeline,
    input: InputStream,
    sink: OutputSink,
) -> PipelineEnd {
    if let Some(script) = pipeline
        .statements
        .iter()
        .flat_map(|s| &s.commands)
        .find(|c| c.is_script)
    {
        return PipelineEnd::Failed(ErrorRecord::scripts_not_allowed(&script.name));
    }
    let mut input = Some(input);
    for statement in pipeline.statements {
        let (no_input, this_input) = match input.take() {
            Some(i) => (pipeline.no_input, i),
            None => (true, mpsc::channel(1).1),
        };
        match run_statement(&*executor, &caller, statement, no_input, this_input, &sink).await {
            PipelineEnd::Completed => {}
            failed @ PipelineEnd::Failed(_) => return failed,
        }
    }
    PipelineEnd::Completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::executor::Argument;

    fn arg(n: Option<&str>, v: Value) -> Argument {
        Argument {
            name: n.map(str::to_owned),
            value: v,
        }
    }

    #[test]
    fn binds_like_powershell() {
        // The token forms Invoke-Command and Import-PSSession proxies send, bound with the
        // built-in's metadata by the shared binder.
        let cmd = Command {
            name: "select-object".into(),
            is_script: false,
            args: vec![
                arg(Some("-First"), Value::Nil),
                arg(None, Value::I32(10)),
                arg(Some("-ExpandProperty:"), Value::String("AdeleV".into())),
                arg(Some("-Unique"), Value::Nil),
                arg(Some("Wait"), Value::Bool(false)),
                arg(Some("-Skip: "), Value::I32(1)),
                arg(None, Value::String("pos".into())),
            ],
            merge_errors_into_output: false,
        };
        let bound = bind(&cmd).unwrap().unwrap();
        assert_eq!(
            bound.parameters,
            vec![
                ("First".into(), BoundValue::Value(Value::I32(10))),
                (
                    "ExpandProperty".into(),
                    BoundValue::Value(Value::String("AdeleV".into()))
                ),
                ("Unique".into(), BoundValue::Switch(true)),
                ("Wait".into(), BoundValue::Switch(false)),
                ("Skip".into(), BoundValue::Value(Value::I32(1))),
                (
                    "Property".into(),
                    BoundValue::Value(Value::String("pos".into()))
                ),
            ]
        );
        let unknown = Command {
            args: vec![arg(Some("-Bogus:"), Value::I32(1))],
            ..cmd
        };
        let Err(err) = Filter::new(&unknown) else {
            panic!("-Bogus bound")
        };
        assert_eq!(
            err.to_error_record().fully_qualified_error_id,
            "NamedParameterNotFound,Select-Object"
        );
    }

    #[test]
    fn select_and_measure() {
        let obj = |n: i32| {
            Value::Object(Box::new(Object {
                type_names: vec!["Deserialized.X".into()],
                extended: vec![("Name".into(), Value::I32(n)), ("Other".into(), Value::Nil)],
                ..Object::default()
            }))
        };
        let cmd = |name: &str, args| Command {
            name: name.into(),
            is_script: false,
            args,
            merge_errors_into_output: false,
        };
        let mut filters = vec![
            Filter::new(&cmd(
                "Select-Object",
                vec![
                    arg(Some("-First"), Value::Nil),
                    arg(None, Value::I32(2)),
                    arg(None, Value::String("Name".into())),
                ],
            ))
            .unwrap(),
            Filter::new(&cmd("Measure-Object", vec![])).unwrap(),
        ];
        let mut out = Vec::new();
        for i in 0..5 {
            out.extend(through(&mut filters, vec![obj(i)]));
        }
        assert!(out.is_empty());
        let fin = finish(&mut filters);
        assert_eq!(fin.len(), 1);
        assert_eq!(fin[0].property("Count").and_then(Value::as_i64), Some(2));

        let mut sel = vec![
            Filter::new(&cmd(
                "Select-Object",
                vec![
                    arg(Some("Last"), Value::I32(1)),
                    arg(Some("Property"), Value::String("Name".into())),
                ],
            ))
            .unwrap(),
        ];
        for i in 0..3 {
            assert!(through(&mut sel, vec![obj(i)]).is_empty());
        }
        let fin = finish(&mut sel);
        assert_eq!(fin.len(), 1);
        let Value::Object(o) = &fin[0] else { panic!() };
        assert_eq!(o.type_names[0], "Selected.X");
        assert_eq!(o.extended, vec![("Name".into(), Value::I32(2))]);
    }
}
