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

use std::sync::Arc;

use tokio::sync::mpsc;

use super::clixml::{Object, Value};
use super::executor::{
    Argument, Command, ErrorRecord, Executor, InputStream, Output, OutputSink, Pipeline,
    PipelineEnd, Statement,
};
use super::psrp;
use super::records;

/// Commands the endpoint runs itself.
const LOCAL_SOURCES: &[&str] = &["Get-FormatData", "Exit-PSSession"];
/// Commands applied locally to the output of what precedes them.
const LOCAL_FILTERS: &[&str] = &["Measure-Object", "Select-Object", "Out-Default", "Out-Null"];

fn is_one_of(name: &str, list: &[&str]) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// A parameter name as sent (`-Identity:`, `Identity`, `-Identity: `) → `Identity`.
pub fn normalize_parameter_name(raw: &str) -> &str {
    let t = raw.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    let t = t.trim_end();
    t.strip_suffix(':').unwrap_or(t).trim()
}

/// Arguments bound as PowerShell's binder would pair them: named (name, value) in order, and
/// the positional values left over. A bare `-Name` token whose name is not in `switches`
/// takes the next positional value (`-First 5` arrives as `[-First, Nil]`, `[Nil, 5]`).
pub fn bind_arguments(args: &[Argument], switches: &[&str]) -> (Vec<(String, Value)>, Vec<Value>) {
    let mut named = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match &a.name {
            None => positional.push(a.value.clone()),
            Some(raw) => {
                let name = normalize_parameter_name(raw).to_owned();
                let bare_token = raw.trim().starts_with('-') && !raw.trim_end().ends_with(':');
                let is_switch = switches.iter().any(|s| s.eq_ignore_ascii_case(&name));
                if bare_token && matches!(a.value, Value::Nil) && !is_switch {
                    if let Some(next) = args.get(i + 1).filter(|n| n.name.is_none()) {
                        named.push((name, next.value.clone()));
                        i += 2;
                        continue;
                    }
                }
                let value = if matches!(a.value, Value::Nil) && (is_switch || bare_token) {
                    Value::Bool(true)
                } else {
                    a.value.clone()
                };
                named.push((name, value));
            }
        }
        i += 1;
    }
    (named, positional)
}

fn get<'a>(named: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    named
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
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
    fn new(cmd: &Command) -> Self {
        let (named, positional) = bind_arguments(&cmd.args, &[]);
        if cmd.name.eq_ignore_ascii_case("Measure-Object") {
            Self::Measure { count: 0 }
        } else if cmd.name.eq_ignore_ascii_case("Select-Object") {
            let int = |n: &str| get(&named, n).and_then(psrp::as_i64);
            let props_value = get(&named, "Property").or_else(|| positional.first());
            let properties = props_value
                .map(|v| {
                    psrp::as_list(v)
                        .into_iter()
                        .filter_map(psrp::as_str)
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
        }
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
        .rposition(|c| !is_one_of(&c.name, LOCAL_FILTERS))
        .map_or(0, |i| i + 1);
    let mut commands = statement.commands;
    let filter_cmds = commands.split_off(split);
    let merge_errors = commands.iter().any(|c| c.merge_errors_into_output);
    let mut filters: Vec<Filter> = filter_cmds.iter().map(Filter::new).collect();

    let local_source = commands.len() == 1 && is_one_of(&commands[0].name, LOCAL_SOURCES);
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

    fn arg(n: Option<&str>, v: Value) -> Argument {
        Argument {
            name: n.map(str::to_owned),
            value: v,
        }
    }

    #[test]
    fn binds_like_powershell() {
        let args = vec![
            arg(Some("-ResultSize"), Value::Nil),
            arg(None, Value::I32(10)),
            arg(Some("-Identity:"), Value::String("AdeleV".into())),
            arg(Some("-Force"), Value::Nil),
            arg(Some("Confirm"), Value::Bool(false)),
            arg(None, Value::String("pos".into())),
        ];
        let (named, positional) = bind_arguments(&args, &["Force"]);
        assert_eq!(
            named,
            vec![
                ("ResultSize".into(), Value::I32(10)),
                ("Identity".into(), Value::String("AdeleV".into())),
                ("Force".into(), Value::Bool(true)),
                ("Confirm".into(), Value::Bool(false)),
            ]
        );
        assert_eq!(positional, vec![Value::String("pos".into())]);
        assert_eq!(normalize_parameter_name("-Name: "), "Name");
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
            )),
            Filter::new(&cmd("Measure-Object", vec![])),
        ];
        let mut out = Vec::new();
        for i in 0..5 {
            out.extend(through(&mut filters, vec![obj(i)]));
        }
        assert!(out.is_empty());
        let fin = finish(&mut filters);
        assert_eq!(fin.len(), 1);
        assert_eq!(
            psrp::member(&fin[0], "Count").and_then(psrp::as_i64),
            Some(2)
        );

        let mut sel = vec![Filter::new(&cmd(
            "Select-Object",
            vec![
                arg(Some("Last"), Value::I32(1)),
                arg(Some("Property"), Value::String("Name".into())),
            ],
        ))];
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
