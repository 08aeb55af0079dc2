//! `Select-Object`, as PowerShell runs it on the deserialized-shaped objects the endpoint
//! handles.
//!
//! Two independent steps, in PowerShell's order. First *which* input objects: `-Skip`,
//! `-First`, `-Last` (with `-Skip` counted from the end), `-SkipLast`, `-Index`. Then *what*
//! each becomes: `-Property` builds a `Selected.<type>` PSCustomObject (wildcards expand to
//! the matching properties in the object's order and match nothing silently; a literal name
//! the object lacks becomes a `$null` property), `-ExcludeProperty` removes names from that
//! (alone it means `-Property *`, as in PowerShell 7), `-ExpandProperty` emits the property's
//! value, each element of a list, or a non-terminating `ExpandPropertyNotFound` error; and
//! `-Unique` drops repeats of what was produced. A calculated property whose expression is a
//! property name (`@{Name='Mail'; Expression='PrimarySmtpAddress'}`) is a renamed copy; script
//! blocks never get here (refused as `ScriptsNotAllowed` when the command is bound).
//!
//! `-First n` answers [`Flow::Enough`] with the n-th object: the driver stops everything
//! upstream there, so a trailing `Select-Object -First 1` costs one page of Exchange results.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use super::buffer::Buffer;
use super::{Arguments, Flow, Step, class_name};
use crate::remoting::binding::display_value;
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{ErrorCategory, ErrorRecord, Output};
use crate::remoting::wildcard::{WildcardPattern, is_wildcard};

const COMMAND: &str = "Select-Object";

/// One `-Property` entry.
#[derive(Debug)]
enum Property {
    /// `Primary*`: every matching property, in the object's order.
    Pattern(WildcardPattern),
    /// `Name`: that property, `$null` when the object lacks it.
    Literal(String),
    /// `@{Name='Mail'; Expression='PrimarySmtpAddress'}`.
    Renamed { name: String, source: String },
}

/// Which input objects pass.
#[derive(Debug)]
enum Window {
    /// All after `skip`.
    All { skip: usize },
    /// `first` after `skip`.
    First {
        skip: usize,
        first: usize,
        taken: usize,
    },
    /// `-Last`: the last `last` before the last `skip`; with `-First`, the first `first`
    /// stream out before that.
    Last {
        first: Option<usize>,
        taken: usize,
        last: usize,
        skip: usize,
        kept: Buffer,
    },
    /// All but the last `n`, after `skip`.
    SkipLast { skip: usize, n: usize, kept: Buffer },
    /// The objects at these positions (sorted, distinct).
    Index { indices: Vec<usize>, next: usize },
}

/// A bound `Select-Object`.
#[derive(Debug)]
pub(super) struct Select {
    window: Window,
    properties: Option<Vec<Property>>,
    exclude: Vec<WildcardPattern>,
    expand: Option<WildcardPattern>,
    unique: Option<Unique>,
    /// Input objects seen.
    seen: usize,
}

fn pattern(text: &str) -> Result<WildcardPattern, ErrorRecord> {
    WildcardPattern::new(text).map_err(|e| e.to_error_record())
}

fn invalid_property(why: String) -> ErrorRecord {
    ErrorRecord {
        activity: COMMAND.into(),
        ..ErrorRecord::new(
            why,
            "System.NotSupportedException",
            format!("DictionaryKeyIllegalValue,{}", class_name(COMMAND)),
            ErrorCategory::InvalidArgument,
        )
    }
}

/// One `-Property` element: a name, a wildcard, or a hashtable naming a property.
fn property(value: &Value) -> Result<Property, ErrorRecord> {
    let Some(entries) = value.as_dictionary() else {
        let text = display_value(value);
        return Ok(if is_wildcard(&text) {
            Property::Pattern(pattern(&text)?)
        } else {
            Property::Literal(text)
        });
    };
    let key = |names: &[&str]| {
        entries
            .iter()
            .find(|(k, _)| {
                k.as_text()
                    .is_some_and(|k| names.iter().any(|n| n.eq_ignore_ascii_case(k.trim())))
            })
            .map(|(_, v)| display_value(v))
    };
    let source = key(&["Expression", "E"]).ok_or_else(|| {
        invalid_property(
            "The \"Expression\" key is missing from a calculated property. Give \
             @{Name='NewName'; Expression='PropertyName'}; script blocks are not allowed on \
             this endpoint."
                .into(),
        )
    })?;
    let name = key(&["Name", "N", "Label", "L"]).unwrap_or_else(|| source.clone());
    Ok(Property::Renamed { name, source })
}

impl Select {
    pub(super) fn new(args: &Arguments<'_>) -> Result<Self, ErrorRecord> {
        let first = args.count("First")?;
        let last = args.count("Last")?;
        let skip = args.count("Skip")?.unwrap_or(0);
        let skip_last = args.count("SkipLast")?;
        let window = if let Some(index) = args.value("Index") {
            let mut indices = Vec::new();
            for v in index.elements() {
                match v.as_i64().and_then(|n| usize::try_from(n).ok()) {
                    Some(n) => indices.push(n),
                    None => {
                        return Err(args.invalid(
                            "Index",
                            format!("\"{}\" is not a position (0 or more).", display_value(v)),
                        ));
                    }
                }
            }
            indices.sort_unstable();
            indices.dedup();
            Window::Index { indices, next: 0 }
        } else if let Some(last) = last {
            Window::Last {
                first,
                taken: 0,
                last,
                skip,
                kept: Buffer::new(COMMAND, "-Last"),
            }
        } else if let Some(n) = skip_last {
            Window::SkipLast {
                skip,
                n,
                kept: Buffer::new(COMMAND, "-SkipLast"),
            }
        } else if let Some(first) = first {
            Window::First {
                skip,
                first,
                taken: 0,
            }
        } else {
            Window::All { skip }
        };
        let exclude = args
            .strings("ExcludeProperty")
            .unwrap_or_default()
            .iter()
            .map(|p| pattern(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut properties = match args.value("Property") {
            Some(v) => Some(
                v.elements()
                    .into_iter()
                    .map(property)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        if properties.is_none() && !exclude.is_empty() {
            properties = Some(vec![Property::Pattern(pattern("*")?)]);
        }
        let expand = match args.value("ExpandProperty") {
            Some(v) => Some(pattern(&display_value(v))?),
            None => None,
        };
        Ok(Self {
            window,
            properties,
            exclude,
            expand,
            unique: args.switch("Unique").then(Unique::new),
            seen: 0,
        })
    }

    pub(super) fn push(&mut self, input: Value) -> Result<Step, ErrorRecord> {
        let position = self.seen;
        self.seen += 1;
        let (passed, flow) = match &mut self.window {
            Window::All { skip } if *skip > 0 => {
                *skip -= 1;
                (None, Flow::More)
            }
            Window::All { .. } => (Some(input), Flow::More),
            Window::First { skip, .. } if *skip > 0 => {
                *skip -= 1;
                (None, Flow::More)
            }
            Window::First { first, taken, .. } => {
                if *taken >= *first {
                    return Ok(Step {
                        outputs: Vec::new(),
                        flow: Flow::Enough,
                    });
                }
                *taken += 1;
                let flow = if *taken >= *first {
                    Flow::Enough
                } else {
                    Flow::More
                };
                (Some(input), flow)
            }
            Window::Last {
                first: Some(first),
                taken,
                ..
            } if *taken < *first => {
                *taken += 1;
                (Some(input), Flow::More)
            }
            Window::Last {
                last, skip, kept, ..
            } => {
                kept.push(input)?;
                if kept.len() > last.saturating_add(*skip) {
                    kept.pop_front();
                }
                (None, Flow::More)
            }
            Window::SkipLast { skip, .. } if *skip > 0 => {
                *skip -= 1;
                (None, Flow::More)
            }
            Window::SkipLast { n, kept, .. } => {
                kept.push(input)?;
                let out = if kept.len() > *n {
                    kept.pop_front()
                } else {
                    None
                };
                (out, Flow::More)
            }
            Window::Index { indices, next } => {
                let hit = indices.get(*next) == Some(&position);
                if hit {
                    *next += 1;
                }
                let flow = if *next >= indices.len() {
                    Flow::Enough
                } else {
                    Flow::More
                };
                (hit.then_some(input), flow)
            }
        };
        let outputs = match passed {
            Some(v) => self.produce(v)?,
            None => Vec::new(),
        };
        Ok(Step { outputs, flow })
    }

    pub(super) fn finish(&mut self) -> Vec<Output> {
        let held: Vec<Value> = match &mut self.window {
            Window::Last { skip, kept, .. } => {
                let keep = kept.len().saturating_sub(*skip);
                kept.drain().take(keep).collect()
            }
            _ => Vec::new(),
        };
        let mut outputs = Vec::new();
        for v in held {
            // The objects were counted into -Last's buffer already; -Unique's cannot be over
            // its limit by more than -Last's.
            match self.produce(v) {
                Ok(mut o) => outputs.append(&mut o),
                Err(rec) => {
                    outputs.push(Output::Error(rec));
                    break;
                }
            }
        }
        if let Some(unique) = &mut self.unique {
            outputs.extend(unique.kept.drain().map(Output::Object));
        }
        outputs
    }

    /// What one passed input object becomes, through `-Unique`.
    fn produce(&mut self, input: Value) -> Result<Vec<Output>, ErrorRecord> {
        let produced = self.project(input);
        let Some(unique) = &mut self.unique else {
            return Ok(produced);
        };
        let mut outputs = Vec::new();
        for o in produced {
            match o {
                Output::Object(v) => unique.insert(v)?,
                other => outputs.push(other),
            }
        }
        Ok(outputs)
    }

    /// `-Property`, `-ExcludeProperty` and `-ExpandProperty` on one object.
    fn project(&self, input: Value) -> Vec<Output> {
        if let Some(expand) = &self.expand {
            return self.expand(expand, &input);
        }
        match &self.properties {
            Some(_) => vec![Output::Object(self.selected(&input))],
            None => vec![Output::Object(input)],
        }
    }

    fn excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|p| p.is_match(name))
    }

    /// The `-Property` members of `input`, in `-Property` order, without repeats.
    fn selected_members(&self, input: &Value) -> Vec<(String, Value)> {
        let Some(properties) = &self.properties else {
            return Vec::new();
        };
        let object = input.as_object();
        let mut out: Vec<(String, Value)> = Vec::new();
        // Lower-cased names already selected: a set, so an object with many members costs
        // linear time, not quadratic.
        let mut taken: HashSet<String> = HashSet::new();
        let mut has = |n: &str| !taken.insert(n.to_lowercase());
        for p in properties {
            match p {
                Property::Pattern(pattern) => {
                    for (n, v) in object.into_iter().flat_map(members) {
                        if pattern.is_match(n) && !self.excluded(n) && !has(n) {
                            out.push((n.clone(), v.clone()));
                        }
                    }
                }
                Property::Literal(name) => {
                    if self.excluded(name) || has(name) {
                        continue;
                    }
                    out.push(match object.and_then(|o| member(o, name)) {
                        Some((n, v)) => (n.clone(), v.clone()),
                        None => (name.clone(), Value::Nil),
                    });
                }
                Property::Renamed { name, source } => {
                    if has(name) {
                        continue;
                    }
                    let value = object
                        .and_then(|o| member(o, source))
                        .map_or(Value::Nil, |(_, v)| v.clone());
                    out.push((name.clone(), value));
                }
            }
        }
        out
    }

    /// The `Selected.<type>` PSCustomObject `-Property` makes of `input`.
    fn selected(&self, input: &Value) -> Value {
        let base = match input {
            Value::Object(o) => o
                .type_names
                .first()
                .map_or("System.Management.Automation.PSCustomObject", |t| {
                    t.strip_prefix("Deserialized.").unwrap_or(t)
                }),
            other => dotnet_type(other),
        };
        Object {
            type_names: vec![
                format!("Selected.{base}"),
                "System.Management.Automation.PSCustomObject".into(),
                "System.Object".into(),
            ],
            extended: self.selected_members(input),
            ..Object::default()
        }
        .into_value()
    }

    /// `-ExpandProperty`: the property's value (each element of a list), with the
    /// `-Property` members added to each expanded object, as PowerShell does.
    fn expand(&self, expand: &WildcardPattern, input: &Value) -> Vec<Output> {
        let found: Vec<&(String, Value)> = input
            .as_object()
            .into_iter()
            .flat_map(members)
            .filter(|(n, _)| expand.is_match(n))
            .collect();
        let value = match found.as_slice() {
            [(_, v)] => v,
            [] => {
                return vec![Output::Error(expand_error(
                    expand,
                    input,
                    "ExpandPropertyNotFound",
                    format!("Property \"{expand}\" cannot be found."),
                ))];
            }
            _ => {
                return vec![Output::Error(expand_error(
                    expand,
                    input,
                    "MutlipleExpandProperties",
                    format!(
                        "Cannot expand property \"{expand}\" because it matches more than one property: {}.",
                        found
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))];
            }
        };
        let extra = self.selected_members(input);
        value
            .elements()
            .into_iter()
            .map(|element| {
                let mut element = element.clone();
                if let Some(o) = element.as_object_mut().filter(|o| o.container.is_none()) {
                    for (n, v) in &extra {
                        if member(o, n).is_none() {
                            o.extended.push((n.clone(), v.clone()));
                        }
                    }
                }
                Output::Object(element)
            })
            .collect()
    }
}

/// `-Unique`'s distinct objects, in order, found again by hash (PowerShell compares each new
/// object with every kept one; with 100,000 kept that is quadratic).
#[derive(Debug)]
struct Unique {
    kept: Buffer,
    by_hash: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
}

impl Unique {
    fn new() -> Self {
        Self {
            kept: Buffer::new(COMMAND, "-Unique"),
            by_hash: HashMap::new(),
            hasher: RandomState::new(),
        }
    }

    /// Keeps `v` unless an equal object is kept already.
    fn insert(&mut self, v: Value) -> Result<(), ErrorRecord> {
        let hash = self.hasher.hash_one(Fingerprint(&v));
        let kept = &self.kept;
        if self
            .by_hash
            .get(&hash)
            .is_some_and(|b| b.iter().any(|i| kept.get(*i) == Some(&v)))
        {
            return Ok(());
        }
        let index = self.kept.len();
        self.kept.push(v)?;
        self.by_hash.entry(hash).or_default().push(index);
        Ok(())
    }
}

/// Hashes a value consistently with its `==` (floats by bits, which only makes equal NaNs
/// compare unequal twice: harmless here). Walks without recursion.
struct Fingerprint<'v>(&'v Value);

impl Hash for Fingerprint<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let mut pending = vec![self.0];
        while let Some(v) = pending.pop() {
            std::mem::discriminant(v).hash(h);
            match v {
                Value::Object(o) => {
                    o.type_names.hash(h);
                    o.to_string.hash(h);
                    for (n, _) in o.adapted.iter().chain(&o.extended) {
                        n.hash(h);
                    }
                    pending.extend(super::children(o));
                }
                Value::Float(f) => f.to_bits().hash(h),
                Value::Double(f) => f.to_bits().hash(h),
                // Equal instants are equal whatever their offsets.
                Value::DateTime(d) => (d.timestamp(), d.timestamp_subsec_nanos()).hash(h),
                Value::UtcDateTime(d) => (d.timestamp(), d.timestamp_subsec_nanos()).hash(h),
                // Everything else: its text form is exact and cheap.
                Value::Nil => {}
                other => format!("{other:?}").hash(h),
            }
        }
    }
}

fn expand_error(expand: &WildcardPattern, input: &Value, id: &str, message: String) -> ErrorRecord {
    ErrorRecord {
        activity: COMMAND.into(),
        target_name: expand.as_str().to_owned(),
        target_type: "PSObject".into(),
        target_object: input.clone(),
        ..ErrorRecord::new(
            message,
            "System.Management.Automation.PSArgumentException",
            format!("{id},{}", class_name(COMMAND)),
            ErrorCategory::InvalidArgument,
        )
    }
}

/// An object's properties in PowerShell's order: adapted (`<Props>`), then extended (`<MS>`).
fn members(o: &Object) -> impl Iterator<Item = &(String, Value)> {
    o.adapted.iter().chain(&o.extended)
}

fn member<'o>(o: &'o Object, name: &str) -> Option<&'o (String, Value)> {
    members(o).find(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// The .NET type a primitive deserializes to (for `Selected.<type>`).
fn dotnet_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "System.String",
        Value::Bool(_) => "System.Boolean",
        Value::I32(_) => "System.Int32",
        Value::I64(_) => "System.Int64",
        Value::Double(_) => "System.Double",
        Value::DateTime(_) | Value::UtcDateTime(_) => "System.DateTime",
        Value::Guid(_) => "System.Guid",
        Value::Object(o) if matches!(o.container, Some(Container::Dictionary(_))) => {
            "System.Collections.Hashtable"
        }
        _ => "System.Object",
    }
}
