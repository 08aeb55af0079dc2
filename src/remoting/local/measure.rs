//! `Measure-Object`, as Windows PowerShell 5.1 writes it: one
//! `Microsoft.PowerShell.Commands.GenericMeasureInfo` (`Count`, `Average`, `Sum`, `Maximum`,
//! `Minimum`, `Property`) for the input objects, or one per measured property.
//!
//! Only what the switches ask for is computed (the others stay `$null`, as in PowerShell).
//! A value that is not a number under `-Sum`/`-Average`/`-Maximum`/`-Minimum` is PowerShell's
//! non-terminating `NonNumericInputObject` error and is left out; a property no input object
//! had is `GenericMeasurePropertyNotFound` at the end. Wildcard property names measure every
//! matching property. Nothing is kept per object: the statistics are running totals.
//!
//! `-Line`, `-Word` and `-Character` (text measurement, `TextMeasureInfo`) are refused with
//! a clear error: Exchange's objects are not text, and the client can measure text itself.

use std::collections::{HashMap, HashSet};

use super::{Arguments, class_name};
use crate::remoting::binding::display_value;
use crate::remoting::clixml::{Object, Value};
use crate::remoting::executor::{ErrorCategory, ErrorRecord, Output};
use crate::remoting::wildcard::{WildcardPattern, is_wildcard};

const COMMAND: &str = "Measure-Object";

/// Most distinct properties one `Measure-Object` keeps statistics for: a wildcard over
/// client-sent objects with ever new property names must not grow memory without bound.
pub(super) const MAX_MEASURED_PROPERTIES: usize = 10_000;

/// Running statistics of one measured property (or of the objects themselves).
#[derive(Debug, Default)]
struct Statistics {
    count: u64,
    /// Values that were numbers (the others were errors).
    numbers: u64,
    sum: f64,
    minimum: Option<f64>,
    maximum: Option<f64>,
}

/// A bound `Measure-Object`.
#[derive(Debug)]
pub(super) struct Measure {
    /// `-Property` entries as given, compiled; None: measure the objects themselves.
    properties: Option<Vec<WildcardPattern>>,
    numeric: bool,
    sum: bool,
    average: bool,
    maximum: bool,
    minimum: bool,
    /// Per resolved property name, in first-seen order (one unnamed entry without -Property).
    statistics: Vec<(Option<String>, Statistics)>,
    /// Lower-cased property name → its place in `statistics`.
    index: HashMap<String, usize>,
    /// Non-terminating errors written since the last push/finish.
    errors: Vec<ErrorRecord>,
}

impl Measure {
    pub(super) fn new(args: &Arguments<'_>) -> Result<Self, ErrorRecord> {
        if let Some(text) = ["Line", "Word", "Character"]
            .into_iter()
            .find(|s| args.switch(s))
        {
            return Err(ErrorRecord {
                activity: COMMAND.into(),
                ..ErrorRecord::new(
                    format!(
                        "Measure-Object -{text} measures text, and this endpoint returns \
                         Exchange objects, not text; measure on the client instead (pipe the \
                         command's output into Measure-Object -{text} outside Invoke-Command)."
                    ),
                    "System.NotSupportedException",
                    format!("TextMeasureNotSupported,{}", class_name(COMMAND)),
                    ErrorCategory::NotImplemented,
                )
            });
        }
        let properties = match args.strings("Property") {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| WildcardPattern::new(n).map_err(|e| e.to_error_record()))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let (sum, average, maximum, minimum) = (
            args.switch("Sum"),
            args.switch("Average"),
            args.switch("Maximum"),
            args.switch("Minimum"),
        );
        Ok(Self {
            statistics: if properties.is_none() {
                vec![(None, Statistics::default())]
            } else {
                Vec::new()
            },
            index: HashMap::new(),
            properties,
            numeric: sum || average || maximum || minimum,
            sum,
            average,
            maximum,
            minimum,
            errors: Vec::new(),
        })
    }

    /// Measures one input object; errors are returned by the next [`Measure::take_errors`].
    ///
    /// # Errors
    /// The record the pipeline fails with when the inputs name more than
    /// [`MAX_MEASURED_PROPERTIES`] distinct properties.
    pub(super) fn push(&mut self, input: &Value) -> Result<(), ErrorRecord> {
        if matches!(input, Value::Nil) {
            return Ok(());
        }
        let Some(properties) = &self.properties else {
            self.analyze(0, input);
            return Ok(());
        };
        // Sets and maps keyed by lower-cased name: an object with many members, or many
        // measured properties, costs linear time.
        let mut seen: HashSet<String> = HashSet::new();
        let mut found: Vec<(String, Value)> = Vec::new();
        if let Some(o) = input.as_object() {
            for p in properties {
                for (n, v) in o.adapted.iter().chain(&o.extended) {
                    if p.is_match(n) && seen.insert(n.to_lowercase()) {
                        found.push((n.clone(), v.clone()));
                    }
                }
            }
        }
        for (name, value) in found {
            if matches!(value, Value::Nil) {
                continue;
            }
            let key = name.to_lowercase();
            let i = match self.index.get(&key) {
                Some(i) => *i,
                None if self.statistics.len() >= MAX_MEASURED_PROPERTIES => {
                    return Err(ErrorRecord {
                        activity: COMMAND.into(),
                        ..ErrorRecord::new(
                            format!(
                                "Measure-Object would measure more than \
                                 {MAX_MEASURED_PROPERTIES} different properties; name the \
                                 properties to measure instead of a wildcard."
                            ),
                            "System.InvalidOperationException",
                            format!("LocalBufferLimitExceeded,{}", class_name(COMMAND)),
                            ErrorCategory::LimitsExceeded,
                        )
                    });
                }
                None => {
                    self.statistics.push((Some(name), Statistics::default()));
                    self.index.insert(key, self.statistics.len() - 1);
                    self.statistics.len() - 1
                }
            };
            self.analyze(i, &value);
        }
        Ok(())
    }

    fn analyze(&mut self, i: usize, value: &Value) {
        let stat = &mut self.statistics[i].1;
        stat.count += 1;
        if !self.numeric {
            return;
        }
        let Some(n) = number(value) else {
            self.errors.push(ErrorRecord {
                activity: COMMAND.into(),
                target_object: value.clone(),
                ..ErrorRecord::new(
                    format!("Input object \"{}\" is not numeric.", display_value(value)),
                    "System.InvalidOperationException",
                    format!("NonNumericInputObject,{}", class_name(COMMAND)),
                    ErrorCategory::InvalidType,
                )
            });
            return;
        };
        stat.numbers += 1;
        stat.sum += n;
        stat.minimum = Some(stat.minimum.map_or(n, |m| m.min(n)));
        stat.maximum = Some(stat.maximum.map_or(n, |m| m.max(n)));
    }

    /// The errors written since the last call.
    pub(super) fn take_errors(&mut self) -> Vec<Output> {
        self.errors.drain(..).map(Output::Error).collect()
    }

    /// The measure infos, after any errors.
    pub(super) fn finish(&mut self) -> Vec<Output> {
        let mut out = self.take_errors();
        for p in self.properties.iter().flatten() {
            let seen = self
                .statistics
                .iter()
                .any(|(n, _)| n.as_deref().is_some_and(|n| p.is_match(n)));
            if !seen && !is_wildcard(p.as_str()) {
                out.push(Output::Error(ErrorRecord {
                    activity: COMMAND.into(),
                    target_name: p.as_str().to_owned(),
                    target_object: Value::from(p.as_str()),
                    ..ErrorRecord::new(
                        format!(
                            "The property \"{p}\" cannot be found in the input for any objects."
                        ),
                        "System.Management.Automation.PSArgumentException",
                        format!("GenericMeasurePropertyNotFound,{}", class_name(COMMAND)),
                        ErrorCategory::InvalidArgument,
                    )
                }));
            }
        }
        for (name, stat) in &self.statistics {
            out.push(Output::Object(self.info(name.as_deref(), stat)));
        }
        out
    }

    fn info(&self, property: Option<&str>, stat: &Statistics) -> Value {
        let double = |on: bool, v: Option<f64>| match v {
            Some(v) if on => Value::Double(v),
            _ => Value::Nil,
        };
        let average = (stat.numbers > 0).then(|| stat.sum / stat.numbers as f64);
        measure_info(
            i64::try_from(stat.count).unwrap_or(i64::MAX),
            [
                ("Average", double(self.average, average)),
                ("Sum", double(self.sum, Some(stat.sum))),
                ("Maximum", double(self.maximum, stat.maximum)),
                ("Minimum", double(self.minimum, stat.minimum)),
            ],
            property,
        )
    }
}

/// A value as PowerShell's `LanguagePrimitives` would convert it to a number.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Decimal(s) | Value::String(s) => s.trim().parse().ok(),
        other => other.as_f64(),
    }
}

/// A `Microsoft.PowerShell.Commands.GenericMeasureInfo` as Windows PowerShell 5.1 serializes
/// it: `Count` (Int32), then `Average`, `Sum`, `Maximum`, `Minimum` (Nullable Double) and
/// `Property`.
fn measure_info(count: i64, numbers: [(&str, Value); 4], property: Option<&str>) -> Value {
    let mut o = Object {
        type_names: vec![
            "Microsoft.PowerShell.Commands.GenericMeasureInfo".into(),
            "Microsoft.PowerShell.Commands.MeasureInfo".into(),
            "System.Object".into(),
        ],
        to_string: Some("Microsoft.PowerShell.Commands.GenericMeasureInfo".into()),
        ..Object::default()
    };
    o.push_adapted(
        "Count",
        Value::I32(i32::try_from(count).unwrap_or(i32::MAX)),
    );
    for (name, value) in numbers {
        o.push_adapted(name, value);
    }
    o.push_adapted("Property", property.map_or(Value::Nil, Value::from));
    o.into_value()
}
