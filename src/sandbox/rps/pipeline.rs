//! Running a pipeline as Exchange's NoLanguage runspace did: the simulator's cmdlets, the
//! restricted runspace's `Select-Object` / `Measure-Object` / `Get-FormatData` / `Out-*`,
//! PowerShell's pipeline binding (a piped object binds to `-Identity`), `-ErrorAction` and
//! `-WarningAction`.
//!
//! The simulator's own runner, not the bridge's: the compatibility test runs the same
//! pipelines through both and compares what comes out, so sharing the runner would compare
//! it with itself. Everything runs over in-memory tenant data, so the runner is a plain push
//! chain: each stage turns one input object into events (objects for the next stage,
//! records for the client), a source cmdlet's objects go down in batches of [`BATCH`] so the
//! first objects reach the client before the last are serialized, and `Select-Object -First`
//! stops everything upstream of it (later objects and the upstream's final warnings are
//! never written), as PowerShell's StopUpstreamCommandsException does.

use std::collections::VecDeque;
use std::sync::Arc;

use super::super::data::catalog::{self, Cmdlet, Param};
use super::super::data::wildcard::{has_wildcards, matches as wildcard_match};
use super::super::data::{CmdletError, Outcome, Tenant};
use super::binding::{self, Bound, Preference, Signature, identity_of, member, text_of};
use super::{record, to_clixml};
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{
    Command, ErrorCategory, ErrorRecord, InputStream, Output, OutputSink, Pipeline, PipelineEnd,
};

/// Objects serialized per step of a source cmdlet.
pub const BATCH: usize = 100;

const fn named(name: &'static str) -> Param {
    Param {
        name,
        switch: false,
        position: None,
        type_name: "System.Object",
    }
}

const fn flag(name: &'static str) -> Param {
    Param {
        name,
        switch: true,
        position: None,
        type_name: "System.Management.Automation.SwitchParameter",
    }
}

const fn first_positional(name: &'static str) -> Param {
    Param {
        name,
        switch: false,
        position: Some(0),
        type_name: "System.Object[]",
    }
}

/// Windows PowerShell 5.1's parameters of the restricted runspace's commands.
const SELECT_OBJECT: &[Param] = &[
    first_positional("Property"),
    named("ExcludeProperty"),
    named("ExpandProperty"),
    flag("Unique"),
    named("Last"),
    named("First"),
    named("Skip"),
    named("SkipLast"),
    flag("Wait"),
    named("Index"),
    named("InputObject"),
];
const MEASURE_OBJECT: &[Param] = &[
    first_positional("Property"),
    flag("Sum"),
    flag("Average"),
    flag("Maximum"),
    flag("Minimum"),
    flag("Line"),
    flag("Word"),
    flag("Character"),
    flag("IgnoreWhiteSpace"),
    named("InputObject"),
];
const GET_FORMAT_DATA: &[Param] = &[first_positional("TypeName"), named("PowerShellVersion")];
const OUT: &[Param] = &[named("InputObject"), flag("Transcript")];
const NOTHING: &[Param] = &[];

/// The restricted runspace's own commands (psrp-protocol.md §10.1) and their parameters.
fn local(name: &str) -> Option<(&'static str, &'static [Param])> {
    [
        ("Select-Object", SELECT_OBJECT),
        ("Measure-Object", MEASURE_OBJECT),
        ("Get-FormatData", GET_FORMAT_DATA),
        ("Out-Default", OUT),
        ("Out-Null", OUT),
        ("Exit-PSSession", NOTHING),
    ]
    .into_iter()
    .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
}

/// What flows between stages.
enum Event {
    /// An object for the next stage (or the client).
    Object(Value),
    /// A record for the client's streams.
    Record(Output),
    /// The pipeline fails with this record.
    Fail(Box<ErrorRecord>),
}

fn error_event(pref: Preference, rec: ErrorRecord) -> Option<Event> {
    match pref {
        Preference::Stop => Some(Event::Fail(Box::new(rec))),
        Preference::Silent => None,
        Preference::Continue => Some(Event::Record(Output::Error(rec))),
    }
}

fn warning_event(pref: Preference, cmdlet: &str, text: String) -> Option<Event> {
    match pref {
        Preference::Stop => Some(Event::Fail(Box::new(record::warning_stop(cmdlet, &text)))),
        Preference::Silent => None,
        Preference::Continue => Some(Event::Record(Output::Warning(text))),
    }
}

struct ExchangeStage {
    cmdlet: &'static Cmdlet,
    bound: Bound,
}

impl ExchangeStage {
    /// Runs the cmdlet, with `input` bound to `-Identity`.
    fn call(&self, tenant: &Tenant, input: Option<&Value>) -> Result<Outcome, Vec<Event>> {
        let mut params = self.bound.parameters.clone();
        if let Some(v) = input {
            match identity_of(v) {
                Some(id)
                    if self.cmdlet.param("Identity").is_some()
                        && !params.contains_key("Identity") =>
                {
                    params.insert("Identity".into(), id.into());
                }
                _ => {
                    let rec = record::input_not_bound(self.cmdlet.name, v);
                    return Err(error_event(self.bound.error_action, rec)
                        .into_iter()
                        .collect());
                }
            }
        }
        tenant
            .invoke(self.cmdlet.name, &params)
            .map_err(|e| self.failure(&e, tenant))
    }

    fn failure(&self, e: &CmdletError, tenant: &Tenant) -> Vec<Event> {
        let rec = record::exchange(e, self.cmdlet.name, &tenant.server);
        if e.is_terminating() {
            vec![Event::Fail(Box::new(rec))]
        } else {
            error_event(self.bound.error_action, rec)
                .into_iter()
                .collect()
        }
    }

    fn trailer(&self, outcome: &Outcome) -> Vec<Event> {
        outcome
            .warnings
            .iter()
            .filter_map(|w| warning_event(self.bound.warning_action, self.cmdlet.name, w.clone()))
            .collect()
    }
}

struct Select {
    properties: Option<Vec<String>>,
    exclude: Vec<String>,
    expand: Option<String>,
    first: Option<usize>,
    last: Option<usize>,
    skip: usize,
    index: Option<Vec<usize>>,
    unique: bool,
    seen: usize,
    emitted: usize,
    buffer: VecDeque<Value>,
    unique_seen: Vec<Value>,
    error_action: Preference,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Object(o) => match &o.container {
            Some(Container::List(items) | Container::Enumerable(items)) => {
                items.iter().filter_map(text_of).collect()
            }
            _ => text_of(v).into_iter().collect(),
        },
        other => text_of(other).into_iter().collect(),
    }
}

fn count(bound: &Bound, name: &str) -> Result<Option<usize>, Box<ErrorRecord>> {
    let Some(v) = bound.get(name) else {
        return Ok(None);
    };
    text_of(v)
        .and_then(|t| t.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            record::powershell(
                &CmdletError::binding(format!(
                    "Cannot validate argument on parameter '{name}'. The argument is not a non-negative number."
                )),
                "Select-Object",
            )
            .into()
        })
}

/// A calculated property (`@{n=…;e={…}}`) or a script block: not data, so the NoLanguage
/// runspace refuses it.
fn is_script(v: &Value) -> bool {
    match v {
        Value::ScriptBlock(_) => true,
        Value::Object(o) => match &o.container {
            Some(Container::Dictionary(_)) => true,
            Some(Container::List(items) | Container::Enumerable(items)) => {
                items.iter().any(is_script)
            }
            _ => false,
        },
        _ => false,
    }
}

impl Select {
    fn new(bound: &Bound) -> Result<Self, Box<ErrorRecord>> {
        if let Some(v) = bound.get("Property").filter(|v| is_script(v)) {
            return Err(Box::new(record::scripts_not_allowed(
                &text_of(v).unwrap_or_default(),
            )));
        }
        let exclude = bound
            .get("ExcludeProperty")
            .map(strings)
            .unwrap_or_default();
        let mut properties = bound.get("Property").map(strings);
        if properties.is_none() && !exclude.is_empty() {
            properties = Some(vec!["*".into()]);
        }
        Ok(Self {
            properties,
            exclude,
            expand: bound.get("ExpandProperty").and_then(text_of),
            first: count(bound, "First")?,
            last: count(bound, "Last")?,
            skip: count(bound, "Skip")?.unwrap_or(0),
            index: bound.get("Index").map(|v| {
                strings(v)
                    .iter()
                    .filter_map(|s| s.trim().parse().ok())
                    .collect()
            }),
            unique: matches!(bound.get("Unique"), Some(Value::Bool(true))),
            seen: 0,
            emitted: 0,
            buffer: VecDeque::new(),
            unique_seen: Vec::new(),
            error_action: bound.error_action,
        })
    }

    fn done(&self) -> bool {
        self.first.is_some_and(|f| self.emitted >= f)
            || self
                .index
                .as_ref()
                .is_some_and(|ix| ix.iter().all(|&i| i < self.seen))
    }

    fn project(&mut self, input: Value, out: &mut Vec<Event>) {
        let projected = if let Some(name) = &self.expand {
            let found = match &input {
                Value::Object(o) => member(o, name).cloned(),
                _ => None,
            };
            match found {
                Some(Value::Object(o)) if o.container.is_some() => match o.container {
                    Some(
                        Container::List(items)
                        | Container::Enumerable(items)
                        | Container::Stack(items)
                        | Container::Queue(items),
                    ) => items,
                    _ => vec![],
                },
                Some(v) => vec![v],
                None => {
                    let rec = ErrorRecord {
                        message: format!("Property \"{name}\" cannot be found."),
                        exception_type: "System.Management.Automation.PSArgumentException".into(),
                        fully_qualified_error_id:
                            "ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand"
                                .into(),
                        category: ErrorCategory::InvalidArgument,
                        activity: "Select-Object".into(),
                        reason: "PSArgumentException".into(),
                        target_name: text_of(&input).unwrap_or_default(),
                        target_type: String::new(),
                        target_object: input.clone(),
                    };
                    out.extend(error_event(self.error_action, rec));
                    vec![]
                }
            }
        } else if let (Some(patterns), Value::Object(o)) = (&self.properties, &input) {
            let excluded = |n: &str| self.exclude.iter().any(|x| wildcard_match(x, n));
            let mut picked: Vec<(String, Value)> = Vec::new();
            for pattern in patterns {
                if has_wildcards(pattern) {
                    for (n, v) in o.adapted.iter().chain(&o.extended) {
                        if wildcard_match(pattern, n)
                            && !excluded(n)
                            && !picked.iter().any(|(p, _)| p == n)
                        {
                            picked.push((n.clone(), v.clone()));
                        }
                    }
                } else if !excluded(pattern)
                    && !picked.iter().any(|(p, _)| p.eq_ignore_ascii_case(pattern))
                {
                    let found = o
                        .adapted
                        .iter()
                        .chain(&o.extended)
                        .find(|(n, _)| n.eq_ignore_ascii_case(pattern));
                    picked.push(found.cloned().unwrap_or((pattern.clone(), Value::Nil)));
                }
            }
            let first = o.type_names.first().map_or("System.Object", String::as_str);
            vec![Value::Object(Box::new(Object {
                type_names: vec![
                    format!("Selected.{first}"),
                    "System.Management.Automation.PSCustomObject".into(),
                    "System.Object".into(),
                ],
                extended: picked,
                ..Object::default()
            }))]
        } else {
            vec![input]
        };
        for v in projected {
            if self.unique {
                if self.unique_seen.contains(&v) {
                    continue;
                }
                self.unique_seen.push(v.clone());
            }
            out.push(Event::Object(v));
        }
    }

    fn push(&mut self, input: Value, out: &mut Vec<Event>) {
        let position = self.seen;
        self.seen += 1;
        if let Some(ix) = &self.index {
            if ix.contains(&position) {
                self.project(input, out);
            }
            return;
        }
        if position < self.skip || self.done() {
            return;
        }
        if let Some(last) = self.last {
            self.buffer.push_back(input);
            if self.buffer.len() > last {
                self.buffer.pop_front();
            }
            return;
        }
        self.emitted += 1;
        self.project(input, out);
    }

    fn finish(&mut self, out: &mut Vec<Event>) {
        let buffered: Vec<Value> = self.buffer.drain(..).collect();
        for v in buffered {
            self.project(v, out);
        }
    }
}

struct Measure {
    properties: Vec<String>,
    sum: bool,
    average: bool,
    maximum: bool,
    minimum: bool,
    inputs: Vec<Value>,
}

impl Measure {
    fn info(&self, property: Option<&str>) -> Value {
        let values: Vec<&Value> = match property {
            None => self.inputs.iter().collect(),
            Some(p) => self
                .inputs
                .iter()
                .filter_map(|v| match v {
                    Value::Object(o) => member(o, p).filter(|v| !v.is_nil()),
                    _ => None,
                })
                .collect(),
        };
        let numbers: Vec<f64> = values
            .iter()
            .filter_map(|v| text_of(v).and_then(|t| t.trim().parse::<f64>().ok()))
            .collect();
        let stat = |on: bool, f: &dyn Fn(&[f64]) -> f64| {
            if on && !numbers.is_empty() {
                Value::Double(f(&numbers))
            } else {
                Value::Nil
            }
        };
        let sum = |n: &[f64]| n.iter().sum::<f64>();
        let mut o = Object {
            type_names: vec![
                "Microsoft.PowerShell.Commands.GenericMeasureInfo".into(),
                "Microsoft.PowerShell.Commands.MeasureInfo".into(),
                "System.Object".into(),
            ],
            to_string: Some("Microsoft.PowerShell.Commands.GenericMeasureInfo".into()),
            ..Object::default()
        };
        o.adapted = vec![
            (
                "Count".into(),
                Value::I32(i32::try_from(values.len()).unwrap_or(i32::MAX)),
            ),
            (
                "Average".into(),
                stat(self.average, &|n| sum(n) / n.len() as f64),
            ),
            ("Sum".into(), stat(self.sum, &sum)),
            (
                "Maximum".into(),
                stat(self.maximum, &|n| {
                    n.iter().copied().fold(f64::MIN, f64::max)
                }),
            ),
            (
                "Minimum".into(),
                stat(self.minimum, &|n| {
                    n.iter().copied().fold(f64::MAX, f64::min)
                }),
            ),
            (
                "Property".into(),
                property.map_or(Value::Nil, |p| Value::String(p.to_owned())),
            ),
        ];
        Value::Object(Box::new(o))
    }

    fn finish(&mut self, out: &mut Vec<Event>) {
        if self.properties.is_empty() {
            out.push(Event::Object(self.info(None)));
        } else {
            for p in self.properties.clone() {
                out.push(Event::Object(self.info(Some(&p))));
            }
        }
    }
}

enum Stage {
    Exchange(ExchangeStage),
    Select(Box<Select>),
    Measure(Measure),
    /// Takes input and writes nothing (`Get-FormatData`, `Out-Null`, `Exit-PSSession`).
    Sink,
    /// Writes its input (`Out-Default`: the client formats).
    Pass,
}

impl Stage {
    fn done(&self) -> bool {
        matches!(self, Stage::Select(s) if s.done())
    }
}

fn prepare(commands: &[Command]) -> Result<Vec<Stage>, Box<ErrorRecord>> {
    let mut stages = Vec::with_capacity(commands.len());
    for c in commands {
        if c.is_script {
            return Err(Box::new(record::scripts_not_allowed(&c.name)));
        }
        let name = c.name.trim();
        if let Some((canonical, params)) = local(name) {
            let bound = binding::bind(
                &Signature {
                    params,
                    permissive: false,
                },
                &c.args,
            )
            .map_err(|e| Box::new(record::powershell(&e, canonical)))?;
            stages.push(match canonical {
                "Select-Object" => Stage::Select(Box::new(Select::new(&bound)?)),
                "Measure-Object" => Stage::Measure(Measure {
                    properties: bound.get("Property").map(strings).unwrap_or_default(),
                    sum: matches!(bound.get("Sum"), Some(Value::Bool(true))),
                    average: matches!(bound.get("Average"), Some(Value::Bool(true))),
                    maximum: matches!(bound.get("Maximum"), Some(Value::Bool(true))),
                    minimum: matches!(bound.get("Minimum"), Some(Value::Bool(true))),
                    inputs: Vec::new(),
                }),
                "Out-Default" => Stage::Pass,
                _ => Stage::Sink,
            });
            continue;
        }
        let Some(cmdlet) = catalog::lookup(name) else {
            return Err(Box::new(record::powershell(
                &CmdletError::command_not_found(name),
                name,
            )));
        };
        let sig = Signature {
            params: &cmdlet.params,
            permissive: !cmdlet.simulated,
        };
        let bound = binding::bind(&sig, &c.args)
            .map_err(|e| Box::new(record::powershell(&e, cmdlet.name)))?;
        stages.push(Stage::Exchange(ExchangeStage { cmdlet, bound }));
    }
    Ok(stages)
}

/// Pushes `event` into `stages[from]` and what comes out down the rest, collecting what
/// reaches the client in `out`.
fn flow(stages: &mut [Stage], tenant: &Tenant, from: usize, event: Event, out: &mut Vec<Event>) {
    let value = match event {
        Event::Object(v) => v,
        Event::Record(r) => {
            // A command downstream stopped its upstream: what upstream writes later is lost.
            if !stages[from.min(stages.len())..].iter().any(Stage::done) {
                out.push(Event::Record(r));
            }
            return;
        }
        fail @ Event::Fail(_) => {
            out.push(fail);
            return;
        }
    };
    let Some(stage) = stages.get_mut(from) else {
        out.push(Event::Object(value));
        return;
    };
    let mut produced = Vec::new();
    match stage {
        Stage::Exchange(x) => match x.call(tenant, Some(&value)) {
            Ok(outcome) => {
                produced.extend(
                    outcome
                        .items
                        .iter()
                        .map(|i| Event::Object(to_clixml(&tenant.object(i)))),
                );
                produced.extend(x.trailer(&outcome));
            }
            Err(e) => produced.extend(e),
        },
        Stage::Select(s) => s.push(value, &mut produced),
        Stage::Measure(m) => m.inputs.push(value),
        Stage::Sink => {}
        Stage::Pass => produced.push(Event::Object(value)),
    }
    for e in produced {
        flow(stages, tenant, from + 1, e, out);
    }
}

/// Sends `events` to the client; Err(end) when the pipeline is over.
async fn send(output: &OutputSink, events: Vec<Event>) -> Result<(), PipelineEnd> {
    for e in events {
        let out = match e {
            Event::Object(v) => Output::Object(v),
            Event::Record(r) => r,
            Event::Fail(rec) => return Err(PipelineEnd::Failed(*rec)),
        };
        if output.send(out).await.is_err() {
            return Err(PipelineEnd::Completed);
        }
    }
    Ok(())
}

async fn statement(
    tenant: &Arc<Tenant>,
    commands: &[Command],
    input: Option<&mut InputStream>,
    output: &OutputSink,
) -> Result<(), PipelineEnd> {
    let mut stages = prepare(commands).map_err(|rec| PipelineEnd::Failed(*rec))?;
    if stages.is_empty() {
        return Ok(());
    }
    if let Some(input) = input {
        while let Some(v) = input.recv().await {
            let mut out = Vec::new();
            flow(&mut stages, tenant, 0, Event::Object(v), &mut out);
            send(output, out).await?;
            if stages.iter().any(Stage::done) {
                break;
            }
        }
    } else if let Some(called) = match &stages[0] {
        Stage::Exchange(source) => Some(source.call(tenant, None).map(|o| {
            let trailer = source.trailer(&o);
            (o, trailer)
        })),
        _ => None,
    } {
        let (outcome, trailer) = match called {
            Ok(done) => done,
            Err(e) => {
                let mut out = Vec::new();
                for e in e {
                    flow(&mut stages, tenant, 1, e, &mut out);
                }
                send(output, out).await?;
                (Outcome::default(), Vec::new())
            }
        };
        for chunk in outcome.items.chunks(BATCH) {
            let mut out = Vec::new();
            for item in chunk {
                let obj = to_clixml(&tenant.object(item));
                flow(&mut stages, tenant, 1, Event::Object(obj), &mut out);
            }
            send(output, out).await?;
            if stages.iter().any(Stage::done) {
                break;
            }
            // Let other tasks run between batches, as a real endpoint's I/O would.
            tokio::task::yield_now().await;
        }
        let mut out = Vec::new();
        for e in trailer {
            flow(&mut stages, tenant, 1, e, &mut out);
        }
        send(output, out).await?;
    }
    for i in 0..stages.len() {
        let mut produced = Vec::new();
        match &mut stages[i] {
            Stage::Select(s) => s.finish(&mut produced),
            Stage::Measure(m) => m.finish(&mut produced),
            _ => {}
        }
        let mut out = Vec::new();
        for e in produced {
            flow(&mut stages, tenant, i + 1, e, &mut out);
        }
        send(output, out).await?;
    }
    Ok(())
}

/// Runs `pipeline` for `tenant` to its end.
pub async fn run(
    tenant: Arc<Tenant>,
    pipeline: Pipeline,
    mut input: InputStream,
    output: OutputSink,
) -> PipelineEnd {
    for (i, s) in pipeline.statements.iter().enumerate() {
        let piped = (i == 0 && !pipeline.no_input).then_some(&mut input);
        if let Err(end) = statement(&tenant, &s.commands, piped, &output).await {
            return end;
        }
    }
    PipelineEnd::Completed
}
