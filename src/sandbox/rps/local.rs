//! The restricted runspace's own commands (psrp-protocol.md §10.1): `Select-Object` and
//! `Measure-Object` as Windows PowerShell 5.1 has them for the objects of a pipeline,
//! `Get-FormatData` / `Out-Null` / `Exit-PSSession` that write nothing, `Out-Default` that
//! passes objects on (the client formats). Their parameters are 5.1's; a calculated property
//! is script, which the NoLanguage runspace refuses.

use std::collections::VecDeque;

use super::super::data::CmdletError;
use super::super::data::catalog::Param;
use super::super::data::wildcard::{has_wildcards, matches as wildcard_match};
use super::binding::{Bound, Preference, member, text_of};
use super::event::{Event, error_event};
use super::record;
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{ErrorCategory, ErrorRecord};

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
pub(super) fn local(name: &str) -> Option<(&'static str, &'static [Param])> {
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

pub(super) struct Select {
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
    pub(super) fn new(bound: &Bound) -> Result<Self, Box<ErrorRecord>> {
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

    pub(super) fn done(&self) -> bool {
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

    pub(super) fn push(&mut self, input: Value, out: &mut Vec<Event>) {
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

    pub(super) fn finish(&mut self, out: &mut Vec<Event>) {
        let buffered: Vec<Value> = self.buffer.drain(..).collect();
        for v in buffered {
            self.project(v, out);
        }
    }
}

pub(super) struct Measure {
    properties: Vec<String>,
    sum: bool,
    average: bool,
    maximum: bool,
    minimum: bool,
    inputs: Vec<Value>,
}

impl Measure {
    pub(super) fn new(bound: &Bound) -> Self {
        let on = |name: &str| matches!(bound.get(name), Some(Value::Bool(true)));
        Self {
            properties: bound.get("Property").map(strings).unwrap_or_default(),
            sum: on("Sum"),
            average: on("Average"),
            maximum: on("Maximum"),
            minimum: on("Minimum"),
            inputs: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, input: Value) {
        self.inputs.push(input);
    }

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

    pub(super) fn finish(&mut self, out: &mut Vec<Event>) {
        if self.properties.is_empty() {
            out.push(Event::Object(self.info(None)));
        } else {
            for p in self.properties.clone() {
                out.push(Event::Object(self.info(Some(&p))));
            }
        }
    }
}
