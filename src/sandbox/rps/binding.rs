//! PowerShell's parameter binding, as the RPS runspace did it, for the simulator's cmdlets.
//!
//! The client sends a command's `Args` token by token (psrp-protocol.md §6.2): `Identity` +
//! value (pypsrp), `-Identity:` + value (splatting), a bare `-ResultSize` followed by its
//! value as a positional argument, `-Force` alone, `-Confirm:` with a SwitchParameter object,
//! Nil-named positional values. This module pairs them with the simulator's own parameter
//! list (`data::catalog`) and turns values into the JSON the simulated cmdlets take —
//! independently of the proxy's binder (`remoting::binding`) and converter
//! (`bridge::convert`), which the compatibility test checks against it.
//!
//! Names match as PowerShell matches them: case-insensitively, whole or by an unambiguous
//! prefix. Failures carry PowerShell's texts.

use serde_json::{Map, Value as Json};

use super::super::data::catalog::{self, Param};
use super::super::data::{CmdletError, exchange_datetime};
use crate::remoting::clixml::{Container, Value};
use crate::remoting::executor::Argument;

/// `$ErrorActionPreference` / `$WarningPreference` values that change what the runner does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Preference {
    /// Continue (the default): write the record.
    #[default]
    Continue,
    /// Stop: fail the pipeline.
    Stop,
    /// SilentlyContinue or Ignore: drop the record.
    Silent,
}

impl Preference {
    /// From an `-ErrorAction` value: a name, or the enum's number
    /// (SilentlyContinue 0, Stop 1, Continue 2, Inquire 3, Ignore 4).
    fn parse(v: &Value) -> Self {
        let text = text_of(v).unwrap_or_default();
        match text.trim().to_ascii_lowercase().as_str() {
            "stop" | "1" => Self::Stop,
            "silentlycontinue" | "ignore" | "0" | "4" => Self::Silent,
            _ => Self::Continue,
        }
    }
}

/// A command after binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bound {
    /// Parameters by canonical name, JSON values (what the simulated cmdlets take).
    pub parameters: Map<String, Json>,
    /// The raw values, by canonical name (for the local commands).
    pub raw: Vec<(String, Value)>,
    /// `-ErrorAction`
    pub error_action: Preference,
    /// `-WarningAction`
    pub warning_action: Preference,
}

impl Bound {
    /// A raw value by canonical name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Parameters of a command as the binder sees them.
pub struct Signature<'a> {
    /// Its own parameters.
    pub params: &'a [Param],
    /// Unknown names become parameters (exported cmdlets the simulator does not run).
    pub permissive: bool,
}

/// The text of a scalar value (`ToString` for objects), None for Nil.
pub fn text_of(v: &Value) -> Option<String> {
    Some(match v {
        Value::Nil => return None,
        Value::String(s) | Value::Uri(s) | Value::Version(s) | Value::Decimal(s) => s.clone(),
        Value::ScriptBlock(s) | Value::XmlDocument(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Char(c) => char::from_u32(u32::from(*c))
            .map(String::from)
            .unwrap_or_default(),
        Value::I8(n) => format!("{n}"),
        Value::U8(n) => format!("{n}"),
        Value::I16(n) => format!("{n}"),
        Value::U16(n) => format!("{n}"),
        Value::I32(n) => format!("{n}"),
        Value::U32(n) => format!("{n}"),
        Value::I64(n) => format!("{n}"),
        Value::U64(n) => format!("{n}"),
        Value::Float(n) => format!("{n}"),
        Value::Double(n) => format!("{n}"),
        Value::Duration(ticks) => format!("{ticks}"),
        Value::Guid(g) => g.to_string(),
        Value::DateTime(d) => exchange_datetime(d, false),
        Value::UtcDateTime(d) => exchange_datetime(&d.fixed_offset(), true),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::Object(o) => match (&o.to_string, &o.primitive) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => return text_of(p),
            (None, None) => return None,
        },
    })
}

/// A property of a deserialized object (adapted or extended), case-insensitive.
pub fn member<'v>(o: &'v crate::remoting::clixml::Object, name: &str) -> Option<&'v Value> {
    o.adapted
        .iter()
        .chain(&o.extended)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The identity a piped object binds to `-Identity`: a string or number as is, an Exchange
/// object's `Identity` property (psrp-protocol.md §6.3). None: it cannot be bound.
pub fn identity_of(v: &Value) -> Option<String> {
    match v {
        Value::Object(o) => {
            if let Some(id) = member(o, "Identity").and_then(text_of) {
                return Some(id);
            }
            o.primitive.as_ref().and_then(text_of)
        }
        Value::Nil | Value::Bytes(_) | Value::ScriptBlock(_) => None,
        other => text_of(other),
    }
}

/// A value as the JSON a simulated cmdlet takes (exo-rest-adminapi.md §5.2, the encoding
/// the REST API receives, so both simulated wires run the same cmdlet code).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        // Numbers as JSON numbers: their decimal text is a JSON number already.
        Value::I8(_)
        | Value::U8(_)
        | Value::I16(_)
        | Value::U16(_)
        | Value::I32(_)
        | Value::U32(_)
        | Value::I64(_)
        | Value::U64(_)
        | Value::Float(_)
        | Value::Double(_) => text_of(v)
            .and_then(|t| serde_json::from_str::<serde_json::Number>(&t).ok())
            .map_or(Json::Null, Json::Number),
        Value::DateTime(d) => Json::from(exchange_datetime(d, true)),
        Value::UtcDateTime(d) => Json::from(exchange_datetime(&d.fixed_offset(), true)),
        Value::Object(o) => {
            if o.type_names
                .first()
                .is_some_and(|t| t.ends_with("SwitchParameter"))
            {
                return Json::Bool(
                    member(o, "IsPresent").is_none_or(|p| matches!(p, Value::Bool(true))),
                );
            }
            match &o.container {
                Some(
                    Container::List(items)
                    | Container::Enumerable(items)
                    | Container::Stack(items)
                    | Container::Queue(items),
                ) => Json::Array(items.iter().map(to_json).collect()),
                Some(Container::Dictionary(entries)) => {
                    let mut m = Map::new();
                    m.insert("@odata.type".into(), "#Exchange.GenericHashTable".into());
                    for (k, v) in entries {
                        m.insert(text_of(k).unwrap_or_default(), to_json(v));
                    }
                    Json::Object(m)
                }
                None => identity_of(v).map_or(Json::Null, Json::from),
            }
        }
        other => text_of(other).map_or(Json::Null, Json::from),
    }
}

enum Resolved<'a> {
    Own(&'a Param),
    Common(&'static str),
    Unknown(String),
}

fn resolve<'a>(sig: &Signature<'a>, name: &str) -> Result<Resolved<'a>, CmdletError> {
    if let Some(p) = sig
        .params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
    {
        return Ok(Resolved::Own(p));
    }
    if let Some(c) = catalog::COMMON
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
    {
        return Ok(Resolved::Common(c));
    }
    let lower = name.to_ascii_lowercase();
    let own: Vec<&Param> = sig
        .params
        .iter()
        .filter(|p| p.name.to_ascii_lowercase().starts_with(&lower))
        .collect();
    let common: Vec<&'static str> = catalog::COMMON
        .iter()
        .copied()
        .filter(|c| c.to_ascii_lowercase().starts_with(&lower))
        .collect();
    match (own.as_slice(), common.as_slice()) {
        ([p], []) if !name.is_empty() => Ok(Resolved::Own(p)),
        ([], [c]) if !name.is_empty() => Ok(Resolved::Common(c)),
        ([], []) | ([..], []) if sig.permissive => Ok(Resolved::Unknown(name.to_owned())),
        ([], []) => Err(CmdletError::binding(format!(
            "A parameter cannot be found that matches parameter name '{name}'."
        ))),
        _ => {
            let all: Vec<String> = own
                .iter()
                .map(|p| format!("-{}", p.name))
                .chain(common.iter().map(|c| format!("-{c}")))
                .collect();
            Err(CmdletError::binding(format!(
                "Parameter cannot be processed because the parameter name '{name}' is ambiguous. Possible matches include: {}.",
                all.join(" ")
            )))
        }
    }
}

fn is_on(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => *b,
        Value::Object(o) => member(o, "IsPresent").is_none_or(|p| matches!(p, Value::Bool(true))),
        other => text_of(other).is_some_and(|t| !t.eq_ignore_ascii_case("false") && t != "0"),
    }
}

/// Binds `args` to `sig`.
///
/// # Errors
/// PowerShell's ParameterBindingException texts: unknown or ambiguous name, a value given
/// twice, a missing value, a positional value nothing takes.
pub fn bind(sig: &Signature<'_>, args: &[Argument]) -> Result<Bound, CmdletError> {
    let mut bound = Bound::default();
    let set = |bound: &mut Bound, name: &str, value: Value| -> Result<(), CmdletError> {
        if bound.raw.iter().any(|(n, _)| n == name) {
            return Err(CmdletError::binding(format!(
                "Cannot bind parameter because parameter '{name}' is specified more than once. To provide multiple \
                 values to parameters that can accept multiple values, use the array syntax. For example, \
                 \"-parameter value1,value2,value3\"."
            )));
        }
        match name {
            "ErrorAction" => bound.error_action = Preference::parse(&value),
            "WarningAction" => bound.warning_action = Preference::parse(&value),
            _ => {}
        }
        bound.raw.push((name.to_owned(), value));
        Ok(())
    };
    let mut pending: Option<(String, &str)> = None;
    let mut positional = sig
        .params
        .iter()
        .filter(|p| p.position.is_some())
        .collect::<Vec<_>>();
    positional.sort_by_key(|p| p.position);
    let mut positional = positional.into_iter();
    for arg in args {
        let Some(raw) = arg.name.as_deref() else {
            if let Some((name, _)) = pending.take() {
                set(&mut bound, &name, arg.value.clone())?;
                continue;
            }
            let next = positional.find(|p| !bound.raw.iter().any(|(n, _)| n == p.name));
            match next {
                Some(p) => set(&mut bound, p.name, arg.value.clone())?,
                None => {
                    return Err(CmdletError::binding(format!(
                        "A positional parameter cannot be found that accepts argument '{}'.",
                        text_of(&arg.value).unwrap_or_default()
                    )));
                }
            }
            continue;
        };
        if let Some((name, type_name)) = pending.take() {
            return Err(CmdletError::binding(format!(
                "Missing an argument for parameter '{name}'. Specify a parameter of type '{type_name}' and try again."
            )));
        }
        let trimmed = raw.trim();
        let bare = trimmed.starts_with('-') && !trimmed.ends_with(':');
        let name = trimmed
            .strip_prefix('-')
            .unwrap_or(trimmed)
            .trim_end_matches(':')
            .trim();
        let (canonical, switch, type_name) = match resolve(sig, name)? {
            Resolved::Own(p) => (p.name.to_owned(), p.switch, p.type_name),
            Resolved::Common(c) => (
                c.to_owned(),
                !matches!(
                    c,
                    "ErrorAction" | "WarningAction" | "InformationAction" | "ProgressAction"
                ) && !c.ends_with("Variable")
                    && c != "OutBuffer",
                "System.String",
            ),
            Resolved::Unknown(n) => (n, false, "System.Object"),
        };
        if switch {
            set(&mut bound, &canonical, Value::Bool(is_on(&arg.value)))?;
        } else if bare && arg.value.is_nil() {
            pending = Some((canonical, type_name));
        } else {
            set(&mut bound, &canonical, arg.value.clone())?;
        }
    }
    if let Some((name, type_name)) = pending {
        return Err(CmdletError::binding(format!(
            "Missing an argument for parameter '{name}'. Specify a parameter of type '{type_name}' and try again."
        )));
    }
    for (name, value) in &bound.raw {
        let keep = !catalog::is_common(name) || matches!(name.as_str(), "WhatIf" | "Confirm");
        if keep {
            bound.parameters.insert(name.clone(), to_json(value));
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(name: Option<&str>, value: Value) -> Argument {
        Argument {
            name: name.map(Into::into),
            value,
        }
    }

    #[test]
    fn binds_every_client_form() {
        let sig = Signature {
            params: &catalog::lookup("Get-Mailbox").unwrap().params,
            permissive: false,
        };
        let b = bind(
            &sig,
            &[
                arg(Some("-ResultSize"), Value::Nil),
                arg(None, Value::I32(10)),
                arg(Some("-Identity:"), Value::String("a*".into())),
                arg(Some("-Arch"), Value::Nil),
                arg(Some("ErrorAction"), Value::String("Stop".into())),
            ],
        )
        .unwrap();
        assert_eq!(b.parameters["ResultSize"], Json::from(10));
        assert_eq!(b.parameters["Identity"], Json::from("a*"));
        assert_eq!(b.parameters["Archive"], Json::Bool(true));
        assert!(!b.parameters.contains_key("ErrorAction"));
        assert_eq!(b.error_action, Preference::Stop);
        let positional = bind(&sig, &[arg(None, Value::String("AdeleV".into()))]).unwrap();
        assert_eq!(positional.parameters["Identity"], Json::from("AdeleV"));
        let e = bind(&sig, &[arg(Some("Bogus"), Value::I32(1))]).unwrap_err();
        assert_eq!(
            e.message,
            "A parameter cannot be found that matches parameter name 'Bogus'."
        );
        assert!(bind(&sig, &[arg(Some("-ResultSize"), Value::Nil)]).is_err());
        assert!(bind(&sig, &[arg(None, Value::I32(1)), arg(None, Value::I32(2))]).is_err());
    }
}
