//! CLIXML ⇄ JSON: bound PowerShell arguments → REST `Parameters`, REST result objects →
//! PowerShell objects that look as RPS's did.
//!
//! **Arguments** keep their types (reference exo-rest-adminapi.md §5.2): switches become
//! `true`/`false`, numbers stay numbers, arrays stay arrays, hashtables
//! (`-EmailAddresses @{Add=…}`) become objects tagged `"@odata.type":
//! "#Exchange.GenericHashTable"` (arrays of them get the `<Param>@odata.type` sibling),
//! DateTimes go as UTC `yyyy-MM-ddTHH:mm:ss.fffffffZ`, enums as their names, byte arrays as
//! `Exchange.ByteArrayType`, and a deserialized Exchange object passed as a value (a mailbox
//! piped or given as `-Identity $mbx`) as its `Identity`.
//!
//! **Results**: the JSON objects carry no type names, only per-property annotations
//! (`X@data.type`, `X@odata.type`, §7.2). We map them to CLIXML ourselves (§7.4): GUIDs as
//! `G`, DateTimes as `DT`, Int16/Int32/Int64 as such, multi-valued properties as
//! `System.Collections.ArrayList` lists, enums/sizes/TimeSpans as the strings Exchange sent,
//! properties under `Props`, `ToString` = Identity, and the type hierarchy from the command
//! catalog (`Microsoft.Exchange.Data.Directory.Management.Mailbox`, …; the client adds
//! `Deserialized.` itself).
//!
//! **Why not `X-ResponseFormat: clixml`** (§7.5, each item carrying its own `_clixml`
//! document): its exact payload is unverified (whether type names already carry
//! `Deserialized.`, whether other keys accompany it, what `X-SerializationLevel` changes), it
//! would make the bridge re-parse and re-number a second XML document per object, and the JSON
//! form is the one captured from the live service. The JSON mapping is deterministic, cheap
//! and testable against the simulator; the price is that type names come from our table, so
//! cmdlets outside the table get `PSCustomObject`-style objects. Revisit with a live capture.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

use crate::remoting::binding::{BoundCommand, BoundValue, display_value};
use crate::remoting::clixml::{Container, Object, Value};

/// A value the REST API cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Cannot process argument transformation on parameter '{parameter}'. The REST bridge cannot send a \
     value of type {kind} to Exchange Online: {why}"
)]
pub struct ConvertError {
    /// The parameter.
    pub parameter: String,
    /// What the value was.
    pub kind: String,
    /// What to do instead.
    pub why: String,
}

/// The `@odata.type` of a hashtable value.
pub const HASHTABLE: &str = "#Exchange.GenericHashTable";

/// REST `Parameters` for a bound command: its own parameters, then the common parameters
/// Exchange understands (`ErrorAction`, `WarningAction` as strings; `WhatIf`, `Confirm` as
/// booleans). Client-side common parameters (`-OutVariable`, …) are not sent.
///
/// # Errors
/// [`ConvertError`] for a value with no JSON form (NaN, a script block inside a hashtable…).
pub fn parameters(bound: &BoundCommand) -> Result<Map<String, Json>, ConvertError> {
    let mut out = Map::new();
    for (name, value) in &bound.parameters {
        match value {
            BoundValue::Switch(b) => {
                out.insert(name.clone(), Json::Bool(*b));
            }
            BoundValue::Value(v) => {
                let json = value_to_json(name, v)?;
                if let Json::Array(items) = &json
                    && !items.is_empty()
                    && items.iter().all(is_hashtable)
                {
                    out.insert(
                        format!("{name}@odata.type"),
                        Json::from(format!("#Collection({})", &HASHTABLE[1..])),
                    );
                }
                out.insert(name.clone(), json);
            }
        }
    }
    let c = &bound.common;
    if let Some(p) = c.error_action {
        out.insert("ErrorAction".into(), Json::from(p.as_str()));
    }
    if let Some(p) = c.warning_action {
        out.insert("WarningAction".into(), Json::from(p.as_str()));
    }
    if let Some(b) = c.what_if {
        out.insert("WhatIf".into(), Json::Bool(b));
    }
    if let Some(b) = c.confirm {
        out.insert("Confirm".into(), Json::Bool(b));
    }
    Ok(out)
}

fn is_hashtable(v: &Json) -> bool {
    v.get("@odata.type").and_then(Json::as_str) == Some(HASHTABLE)
}

fn number(parameter: &str, n: f64) -> Result<Json, ConvertError> {
    serde_json::Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| ConvertError {
            parameter: parameter.into(),
            kind: "Double".into(),
            why: format!("{n} has no JSON form; pass a finite number"),
        })
}

/// UTC `yyyy-MM-ddTHH:mm:ss.fffffffZ`, as the module sends DateTimes.
pub fn datetime_to_rest(d: &DateTime<FixedOffset>) -> String {
    let utc = d.with_timezone(&Utc);
    format!(
        "{}.{:07}Z",
        utc.format("%Y-%m-%dT%H:%M:%S"),
        utc.timestamp_subsec_nanos() / 100
    )
}

/// A TimeSpan's text (`d.hh:mm:ss.fffffff`) from ticks.
pub fn ticks_to_timespan(ticks: i64) -> String {
    let sign = if ticks < 0 { "-" } else { "" };
    let t = ticks.unsigned_abs();
    let (frac, secs) = (t % 10_000_000, t / 10_000_000);
    let (days, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::from(sign);
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if frac > 0 {
        out.push_str(&format!(".{frac:07}"));
    }
    out
}

fn member<'a>(obj: &'a Object, name: &str) -> Option<&'a Value> {
    obj.adapted
        .iter()
        .chain(obj.extended.iter())
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn is_type(obj: &Object, name: &str) -> bool {
    obj.type_names
        .iter()
        .any(|t| t.strip_prefix("Deserialized.").unwrap_or(t) == name)
}

/// One CLIXML value as a REST parameter value.
///
/// # Errors
/// [`ConvertError`] for values with no JSON form.
pub fn value_to_json(parameter: &str, value: &Value) -> Result<Json, ConvertError> {
    Ok(match value {
        Value::Nil => Json::Null,
        Value::String(s)
        | Value::Uri(s)
        | Value::Version(s)
        | Value::XmlDocument(s)
        | Value::ScriptBlock(s) => Json::from(s.as_str()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Char(c) => Json::from(
            char::from_u32(u32::from(*c))
                .map(String::from)
                .unwrap_or_default(),
        ),
        Value::I8(n) => Json::from(*n),
        Value::U8(n) => Json::from(*n),
        Value::I16(n) => Json::from(*n),
        Value::U16(n) => Json::from(*n),
        Value::I32(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::Float(n) => number(parameter, f64::from(*n))?,
        Value::Double(n) => number(parameter, *n)?,
        Value::Decimal(s) => match s.parse::<f64>() {
            Ok(f) if s.contains('.') => number(parameter, f)?,
            _ => s
                .parse::<i64>()
                .map(Json::from)
                .unwrap_or_else(|_| Json::from(s.as_str())),
        },
        Value::DateTime(d) => Json::from(datetime_to_rest(d)),
        Value::UtcDateTime(d) => Json::from(datetime_to_rest(&d.fixed_offset())),
        Value::Duration(t) => Json::from(ticks_to_timespan(*t)),
        Value::Guid(g) => Json::from(g.to_string()),
        Value::Bytes(b) => serde_json::json!({
            "@odata.type": "#Exchange.ByteArrayType",
            "Data": base64::engine::general_purpose::STANDARD.encode(b),
        }),
        Value::Object(obj) => object_to_json(parameter, obj)?,
    })
}

fn list_to_json(parameter: &str, items: &[Value]) -> Result<Json, ConvertError> {
    items
        .iter()
        .map(|v| value_to_json(parameter, v))
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

fn object_to_json(parameter: &str, obj: &Object) -> Result<Json, ConvertError> {
    if is_type(obj, "System.Management.Automation.SwitchParameter") {
        let present = member(obj, "IsPresent").map(|v| matches!(v, Value::Bool(true)));
        return Ok(Json::Bool(
            present.unwrap_or_else(|| obj.to_string.as_deref() == Some("True")),
        ));
    }
    if is_type(obj, "System.Security.SecureString") {
        return Err(ConvertError {
            parameter: parameter.into(),
            kind: "SecureString".into(),
            why: "encrypted parameters are not supported in rest mode; set this value in the Exchange admin \
                  center or with the ExchangeOnlineManagement module"
                .into(),
        });
    }
    if let Some(container) = &obj.container {
        return match container {
            Container::List(v)
            | Container::Enumerable(v)
            | Container::Stack(v)
            | Container::Queue(v) => list_to_json(parameter, v),
            Container::Dictionary(entries) => {
                let mut map = Map::new();
                map.insert("@odata.type".into(), Json::from(HASHTABLE));
                for (k, v) in entries {
                    map.insert(display_value(k), value_to_json(parameter, v)?);
                }
                Ok(Json::Object(map))
            }
        };
    }
    if is_type(obj, "System.Enum") {
        if let Some(s) = &obj.to_string {
            return Ok(Json::from(s.as_str()));
        }
    }
    if obj.adapted.is_empty() && obj.extended.is_empty() {
        if let Some(p) = &obj.primitive {
            return value_to_json(parameter, p);
        }
        if let Some(s) = &obj.to_string {
            return Ok(Json::from(s.as_str()));
        }
    }
    // A (deserialized) Exchange object as a value: Exchange's IdParameters take its identity.
    Ok(identity_of(&Value::Object(Box::new(obj.clone()))).unwrap_or(Json::Null))
}

/// The identity a pipeline input object binds to `-Identity` (as Exchange's IdParameter
/// types took it): a primitive as itself, an object's `Identity`, else `Guid`,
/// `DistinguishedName`, `Name`, else its ToString.
pub fn identity_of(value: &Value) -> Option<Json> {
    match value {
        Value::Nil => None,
        Value::Object(obj)
            if obj.container.is_none() && !(obj.adapted.is_empty() && obj.extended.is_empty()) =>
        {
            for name in [
                "Identity",
                "Guid",
                "ExchangeObjectId",
                "DistinguishedName",
                "Name",
            ] {
                match member(obj, name) {
                    Some(Value::Nil) | None => {}
                    Some(v) => return Some(Json::from(display_value(v))),
                }
            }
            obj.to_string.as_deref().map(Json::from)
        }
        other => value_to_json("InputObject", other).ok(),
    }
}

/// The CLIXML list type Exchange's multi-valued properties are sent as.
pub fn list_type() -> Vec<String> {
    vec![
        "System.Collections.ArrayList".into(),
        "System.Object".into(),
    ]
}

/// Parses a REST DateTime (`2024-04-10T08:56:22.0000000+00:00`, `…Z`, or without offset =
/// UTC). Only .NET's DateTime range (years 1 to 9999): anything else is not a DateTime a
/// client can read back (fuzz finding `rest_page`: a year of `-024` made CLIXML that did not
/// parse), so the caller keeps it as the string it was.
pub fn parse_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    use chrono::Datelike as _;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc().fixed_offset())
        })
        .filter(|d| (1..=9999).contains(&d.year()) && (1..=9999).contains(&d.to_utc().year()))
}

/// One JSON property value as CLIXML, using its `@data.type` / `@odata.type` annotations.
pub fn json_to_value(json: Json, data_type: Option<&str>, odata_type: Option<&str>) -> Value {
    let dt = data_type.map(|t| t.trim_start_matches('#'));
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::String(s) => match dt.or(odata_type.map(|t| t.trim_start_matches('#'))) {
            Some("System.Guid" | "Guid") => s.parse().map_or(Value::String(s), Value::Guid),
            Some("System.DateTime" | "DateTimeOffset" | "System.DateTimeOffset") => {
                // `Z` marks Exchange's UTC-kind values (`WhenChangedUTC`); keep the kind.
                match parse_datetime(&s) {
                    Some(d) if s.ends_with(['Z', 'z']) => Value::UtcDateTime(d.to_utc()),
                    Some(d) => Value::DateTime(d),
                    None => Value::String(s),
                }
            }
            _ => Value::String(s),
        },
        Json::Number(n) => {
            let int = n.as_i64();
            match (dt, int) {
                (Some("System.Int16" | "Int16"), Some(i)) => {
                    i16::try_from(i).map(Value::I16).unwrap_or(Value::I64(i))
                }
                (Some("System.Int32" | "Int32"), Some(i)) => {
                    i32::try_from(i).map(Value::I32).unwrap_or(Value::I64(i))
                }
                (Some("System.Int64" | "Int64"), Some(i)) => Value::I64(i),
                (Some("System.Byte" | "Byte"), Some(i)) => {
                    u8::try_from(i).map(Value::U8).unwrap_or(Value::I64(i))
                }
                (Some("System.UInt32"), Some(i)) => {
                    u32::try_from(i).map(Value::U32).unwrap_or(Value::I64(i))
                }
                (Some("System.UInt64"), _) if n.as_u64().is_some() => {
                    Value::U64(n.as_u64().unwrap_or_default())
                }
                (Some("System.Double" | "Double"), _) => {
                    Value::Double(n.as_f64().unwrap_or_default())
                }
                (Some("System.Decimal"), _) => Value::Decimal(n.to_string()),
                (_, Some(i)) => i32::try_from(i).map(Value::I32).unwrap_or(Value::I64(i)),
                (_, None) => match n.as_u64() {
                    Some(u) => Value::U64(u),
                    None => Value::Double(n.as_f64().unwrap_or_default()),
                },
            }
        }
        Json::Array(items) => {
            // `#Collection(Guid)` etc. name the element type.
            let elem = odata_type
                .and_then(|t| t.trim_start_matches('#').strip_prefix("Collection("))
                .and_then(|t| t.strip_suffix(')'));
            let elem_dt = elem.map(|e| match e {
                "Guid" => "System.Guid",
                "DateTimeOffset" => "System.DateTime",
                "Int32" => "System.Int32",
                "Int64" => "System.Int64",
                other => other,
            });
            Value::Object(Box::new(Object {
                type_names: list_type(),
                container: Some(Container::List(
                    items
                        .into_iter()
                        .map(|v| json_to_value(v, elem_dt, None))
                        .collect(),
                )),
                ..Object::default()
            }))
        }
        Json::Object(map) => {
            let props = properties(map);
            Value::Object(Box::new(Object {
                type_names: vec![
                    "System.Management.Automation.PSCustomObject".into(),
                    "System.Object".into(),
                ],
                extended: props,
                ..Object::default()
            }))
        }
    }
}

/// The data properties of one REST object, annotations applied and dropped, in order.
///
/// One pass moves the values out (no copies); annotations (`Name@data.type`,
/// `Name@odata.type`) are looked up by property name afterwards, as OData allows them
/// before or after their property.
pub fn properties(map: Map<String, Json>) -> Vec<(String, Value)> {
    let mut acc = Properties::with_capacity(map.len());
    for (k, v) in map {
        acc.push(Cow::Owned(k), v);
    }
    acc.finish()
}

/// One REST object's members as they are read, in order, and what they become
/// ([`properties`]): data properties keep their first position and their last value (as a
/// JSON object's member does), annotations are attached to their property by name, whichever
/// side of it they stand, and `_clixml`, `@…` members and unknown annotations are dropped.
///
/// Page parsing feeds it straight from the JSON reader ([`RestObject`]) with keys borrowed
/// from the page, so no `serde_json::Map` (an ordered hash map with owned keys) is built per
/// object: that tree and the per-object annotation table were most of the bridge's CPU
/// (BENCHMARKS.md, bridge).
struct Properties<'a> {
    data: Vec<(Cow<'a, str>, Json)>,
    /// Data property name → its index in `data`, for repeats and annotations.
    index: HashMap<Cow<'a, str>, usize, foldhash::fast::RandomState>,
    /// (property, `@data.type`?, type) in the order read; a non-string value clears.
    annotations: Vec<(Cow<'a, str>, bool, Option<String>)>,
}

impl<'a> Properties<'a> {
    fn with_capacity(members: usize) -> Self {
        Self {
            data: Vec::with_capacity(members),
            index: HashMap::with_capacity_and_hasher(members, Default::default()),
            annotations: Vec::with_capacity(members),
        }
    }

    fn push(&mut self, key: Cow<'a, str>, value: Json) {
        match key.find('@') {
            None if key != "_clixml" => match self.index.get(&key) {
                Some(&i) => self.data[i].1 = value,
                None => {
                    self.index.insert(key.clone(), self.data.len());
                    self.data.push((key, value));
                }
            },
            Some(at) if at > 0 => {
                let is_data = match &key[at..] {
                    "@data.type" => true,
                    "@odata.type" => false,
                    _ => return,
                };
                let name = match key {
                    Cow::Borrowed(k) => Cow::Borrowed(&k[..at]),
                    Cow::Owned(mut k) => {
                        k.truncate(at);
                        Cow::Owned(k)
                    }
                };
                let t = match value {
                    Json::String(t) => Some(t),
                    _ => None,
                };
                self.annotations.push((name, is_data, t));
            }
            _ => {}
        }
    }

    fn finish(self) -> Vec<(String, Value)> {
        let Self {
            data,
            index,
            annotations,
        } = self;
        let mut types: Vec<(Option<String>, Option<String>)> = vec![(None, None); data.len()];
        for (name, is_data, t) in annotations {
            if let Some(&i) = index.get(&name) {
                let slot = &mut types[i];
                *if is_data { &mut slot.0 } else { &mut slot.1 } = t;
            }
        }
        data.into_iter()
            .zip(types)
            .map(|((k, v), (d, o))| {
                let value = json_to_value(v, d.as_deref(), o.as_deref());
                (k.into_owned(), value)
            })
            .collect()
    }
}

/// One REST result object read from a page: its data properties, as [`properties`] makes
/// them from a parsed object, without building the object first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RestObject(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for RestObject {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RestObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RestObject, A::Error> {
                let mut acc = Properties::with_capacity(map.size_hint().unwrap_or(64).min(256));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    acc.push(key.0, map.next_value()?);
                }
                Ok(RestObject(acc.finish()))
            }
        }
        de.deserialize_map(Members)
    }
}

/// A member name, borrowed from the page unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> serde::de::Visitor<'de> for K {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        de.deserialize_str(K)
    }
}

/// A REST result object as the CLIXML object RPS would have sent: `type_names` (from the
/// catalog; empty → a PSCustomObject with the properties as note properties), ToString =
/// Identity (else Name), data properties under `Props`.
pub fn object_from_json(map: Map<String, Json>, type_names: &[String]) -> Value {
    object_from_properties(properties(map), type_names)
}

/// [`object_from_json`] for properties already read ([`RestObject`]).
pub fn object_from_properties(props: Vec<(String, Value)>, type_names: &[String]) -> Value {
    let to_string = ["Identity", "Name"].iter().find_map(|n| {
        props
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| match v {
                Value::Nil => None,
                v => Some(display_value(v)),
            })
    });
    let obj = if type_names.is_empty() {
        Object {
            type_names: vec![
                "System.Management.Automation.PSCustomObject".into(),
                "System.Object".into(),
            ],
            to_string,
            extended: props,
            ..Object::default()
        }
    } else {
        Object {
            type_names: type_names.to_vec(),
            to_string,
            adapted: props,
            ..Object::default()
        }
    };
    Value::Object(Box::new(obj))
}

/// A REST DateTime string in Exchange's format (7 fractional digits; `Z` when `utc`, else
/// the offset as `+00:00`).
pub fn datetime_to_exchange(d: &DateTime<FixedOffset>, utc: bool) -> String {
    if utc {
        d.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Nanos, true)
            .replacen(
                &format!(".{:09}", d.timestamp_subsec_nanos()),
                &format!(".{:07}", d.timestamp_subsec_nanos() / 100),
                1,
            )
    } else {
        format!(
            "{}.{:07}{}",
            d.format("%Y-%m-%dT%H:%M:%S"),
            d.timestamp_subsec_nanos() / 100,
            d.format("%:z")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::binding::CommonParameters;

    fn dict(entries: Vec<(&str, Value)>) -> Value {
        Value::Object(Box::new(Object {
            type_names: vec![
                "System.Collections.Hashtable".into(),
                "System.Object".into(),
            ],
            container: Some(Container::Dictionary(
                entries
                    .into_iter()
                    .map(|(k, v)| (Value::String(k.into()), v))
                    .collect(),
            )),
            ..Object::default()
        }))
    }

    fn list(items: Vec<Value>) -> Value {
        Value::Object(Box::new(Object {
            type_names: vec![
                "System.Object[]".into(),
                "System.Array".into(),
                "System.Object".into(),
            ],
            container: Some(Container::List(items)),
            ..Object::default()
        }))
    }

    #[test]
    fn parameters_keep_their_types() {
        let when = DateTime::parse_from_rfc3339("2024-05-21T16:03:11.1234567+02:00").unwrap();
        let bound = BoundCommand {
            parameters: vec![
                (
                    "Identity".into(),
                    BoundValue::Value(Value::String("AdeleV".into())),
                ),
                ("Force".into(), BoundValue::Switch(true)),
                ("Archive".into(), BoundValue::Switch(false)),
                (
                    "ResultSize".into(),
                    BoundValue::Value(Value::String("Unlimited".into())),
                ),
                ("Count".into(), BoundValue::Value(Value::I32(10))),
                (
                    "Languages".into(),
                    BoundValue::Value(list(vec![
                        Value::String("en-US".into()),
                        Value::String("de-DE".into()),
                    ])),
                ),
                (
                    "EmailAddresses".into(),
                    BoundValue::Value(dict(vec![
                        ("Add", Value::String("smtp:a@x".into())),
                        ("Remove", Value::Nil),
                    ])),
                ),
                ("StartTime".into(), BoundValue::Value(Value::DateTime(when))),
                (
                    "Retain".into(),
                    BoundValue::Value(Value::Duration(14 * 864_000_000_000)),
                ),
                (
                    "ForwardingSmtpAddress".into(),
                    BoundValue::Value(Value::Nil),
                ),
                (
                    "Picture".into(),
                    BoundValue::Value(Value::Bytes(vec![1, 2, 3])),
                ),
            ],
            common: CommonParameters {
                error_action: Some(crate::remoting::binding::ActionPreference::Stop),
                confirm: Some(false),
                ..CommonParameters::default()
            },
        };
        let p = parameters(&bound).unwrap();
        assert_eq!(
            Json::Object(p),
            serde_json::json!({
                "Identity": "AdeleV", "Force": true, "Archive": false, "ResultSize": "Unlimited", "Count": 10,
                "Languages": ["en-US", "de-DE"],
                "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": "smtp:a@x", "Remove": null},
                "StartTime": "2024-05-21T14:03:11.1234567Z",
                "Retain": "14.00:00:00",
                "ForwardingSmtpAddress": null,
                "Picture": {"@odata.type": "#Exchange.ByteArrayType", "Data": "AQID"},
                "ErrorAction": "Stop", "Confirm": false,
            })
        );
    }

    #[test]
    fn hashtable_arrays_get_the_collection_annotation() {
        let bound = BoundCommand {
            parameters: vec![(
                "Rules".into(),
                BoundValue::Value(list(vec![
                    dict(vec![("A", Value::I32(1))]),
                    dict(vec![("B", Value::I32(2))]),
                ])),
            )],
            ..BoundCommand::default()
        };
        let p = parameters(&bound).unwrap();
        assert_eq!(
            p["Rules@odata.type"],
            "#Collection(Exchange.GenericHashTable)"
        );
        assert_eq!(p["Rules"][1]["B"], 2);
    }

    #[test]
    fn enums_switch_objects_and_deserialized_objects() {
        let en = Value::Object(Box::new(Object {
            type_names: vec![
                "Microsoft.Exchange.Data.Directory.Recipient.RecipientTypeDetails".into(),
                "System.Enum".into(),
            ],
            to_string: Some("UserMailbox".into()),
            primitive: Some(Value::I64(1)),
            ..Object::default()
        }));
        assert_eq!(value_to_json("X", &en).unwrap(), "UserMailbox");
        let mbx = Value::Object(Box::new(Object {
            type_names: vec![
                "Deserialized.Microsoft.Exchange.Data.Directory.Management.Mailbox".into(),
            ],
            to_string: Some("AdeleV".into()),
            adapted: vec![
                ("Name".into(), Value::String("AdeleV".into())),
                ("Identity".into(), Value::String("AdeleV-id".into())),
            ],
            ..Object::default()
        }));
        assert_eq!(value_to_json("Identity", &mbx).unwrap(), "AdeleV-id");
        assert_eq!(identity_of(&Value::String("x".into())).unwrap(), "x");
        assert!(value_to_json("X", &Value::Double(f64::NAN)).is_err());
    }

    #[test]
    fn rest_object_maps_to_rps_shape() {
        let json = serde_json::json!({
            "Identity": "AdeleV", "Name": "AdeleV",
            "EmailAddresses@odata.type": "#Collection(String)", "EmailAddresses": ["SMTP:a@x", "smtp:b@y"],
            "Guid@data.type": "System.Guid", "Guid@odata.type": "#Guid", "Guid": "8c2f1a5e-6b1d-4f0e-9a77-2d3c4b5a6f70",
            "WhenCreated@data.type": "System.DateTime", "WhenCreated": "2024-04-10T08:56:22.0000000+00:00",
            "WhenCreatedUTC@data.type": "System.DateTime", "WhenCreatedUTC": "2024-04-10T08:56:22.1234567Z",
            "PitrCopyIntervalInSeconds@data.type": "System.Int16", "PitrCopyIntervalInSeconds@odata.type": "#Int16",
            "PitrCopyIntervalInSeconds": 0,
            "RecipientSoftDeletedStatus@data.type": "System.Int32", "RecipientSoftDeletedStatus": 0,
            "Big": 5_000_000_000i64, "Ratio": 0.5,
            "IsValid": true, "LitigationHoldDate": null, "ProhibitSendQuota": "99 GB (106,300,440,576 bytes)",
        });
        let types = vec![
            "Microsoft.Exchange.Data.Directory.Management.Mailbox".to_string(),
            "System.Object".into(),
        ];
        let Value::Object(obj) = object_from_json(json.as_object().unwrap().clone(), &types) else {
            panic!()
        };
        assert_eq!(obj.type_names, types);
        assert_eq!(obj.to_string.as_deref(), Some("AdeleV"));
        let get = |n: &str| {
            obj.adapted
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(obj.adapted.iter().all(|(k, _)| !k.contains('@')));
        let Value::Object(list) = get("EmailAddresses") else {
            panic!()
        };
        assert_eq!(list.type_names, list_type());
        assert_eq!(
            list.container,
            Some(Container::List(vec![
                Value::String("SMTP:a@x".into()),
                Value::String("smtp:b@y".into())
            ]))
        );
        assert_eq!(
            get("Guid"),
            Value::Guid("8c2f1a5e-6b1d-4f0e-9a77-2d3c4b5a6f70".parse().unwrap())
        );
        // `Z` stays UTC-kind (PowerShell shows it as UTC); the offset form stays local-kind.
        let Value::UtcDateTime(d) = get("WhenCreatedUTC") else {
            panic!()
        };
        assert_eq!(d.timestamp_subsec_nanos(), 123_456_700);
        assert!(matches!(get("WhenCreated"), Value::DateTime(_)));
        assert_eq!(get("PitrCopyIntervalInSeconds"), Value::I16(0));
        assert_eq!(get("RecipientSoftDeletedStatus"), Value::I32(0));
        assert_eq!(get("Big"), Value::I64(5_000_000_000));
        assert_eq!(get("Ratio"), Value::Double(0.5));
        assert_eq!(get("IsValid"), Value::Bool(true));
        assert_eq!(get("LitigationHoldDate"), Value::Nil);
        assert_eq!(
            get("ProhibitSendQuota"),
            Value::String("99 GB (106,300,440,576 bytes)".into())
        );
    }

    #[test]
    fn page_objects_read_as_parsed_objects_convert() {
        // Annotations before and after their property, a repeated property (first position,
        // last value), a repeated annotation, a non-string annotation, an escaped name, a
        // nested object, `_clixml` and `@…` members.
        let text = r##"{"Guid@data.type":"System.Guid","Guid":"8c2f1a5e-6b1d-4f0e-9a77-2d3c4b5a6f70",
            "WhenCreated":"2024-04-10T08:56:22.0000000+00:00","WhenCreated@data.type":"System.DateTime",
            "N":1,"Name":"a","N":"two","N@data.type":"System.Int16","N@data.type":5,
            "Size@data.type":"System.Int32","Size@data.type":"System.Int64","Size":7,
            "Tab\u0041":"x","Nested":{"A@data.type":"System.Int16","A":1,"B":[1,2]},
            "_clixml":"<Obj/>","@odata.context":"c","Odd@other.type":"y",
            "Ids@odata.type":"#Collection(Guid)","Ids":["8c2f1a5e-6b1d-4f0e-9a77-2d3c4b5a6f70"]}"##;
        let map: Map<String, Json> = serde_json::from_str(text).unwrap();
        let read: RestObject = serde_json::from_str(text).unwrap();
        assert_eq!(read.0, properties(map));
        let names: Vec<&str> = read.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Guid",
                "WhenCreated",
                "N",
                "Name",
                "Size",
                "TabA",
                "Nested",
                "Ids"
            ]
        );
        assert!(matches!(read.0[1].1, Value::DateTime(_)));
        assert_eq!(read.0[2].1, Value::String("two".into()));
        assert_eq!(read.0[4].1, Value::I64(7));
        assert!(serde_json::from_str::<RestObject>("[1]").is_err());
    }

    #[test]
    fn datetime_formats() {
        let d = DateTime::parse_from_rfc3339("2024-04-10T08:56:22.5+00:00").unwrap();
        assert_eq!(
            datetime_to_exchange(&d, false),
            "2024-04-10T08:56:22.5000000+00:00"
        );
        assert_eq!(
            datetime_to_exchange(&d, true),
            "2024-04-10T08:56:22.5000000Z"
        );
        assert_eq!(
            parse_datetime("2024-04-10T08:56:22"),
            Some(DateTime::parse_from_rfc3339("2024-04-10T08:56:22Z").unwrap())
        );
        assert_eq!(ticks_to_timespan(0), "00:00:00");
        assert_eq!(
            ticks_to_timespan(90 * 864_000_000_000 + 1),
            "90.00:00:00.0000001"
        );
    }
}

#[cfg(test)]
mod datetime_range_tests {
    use super::*;

    /// Fuzz finding (`rest_page`, 2026-12-05): a DateTime outside .NET's years 1–9999 stays a
    /// string, so the CLIXML sent is one the client (and our own parser) reads back.
    #[test]
    fn a_datetime_outside_dotnets_range_stays_a_string() {
        assert!(parse_datetime("-024-04-10T08:56:22.00000000").is_none());
        assert!(parse_datetime("10000-01-01T00:00:00Z").is_none());
        assert!(parse_datetime("0001-01-01T00:00:00+01:00").is_none());
        assert!(parse_datetime("2024-04-10T08:56:22.0000000+00:00").is_some());
        let v = json_to_value(
            Json::from("-024-04-10T08:56:22.00000000"),
            Some("System.DateTime"),
            None,
        );
        assert!(matches!(v, Value::String(_)), "{v:?}");
    }
}
