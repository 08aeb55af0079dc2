//! How an argument value reads: its display text (error messages) and its meaning as a switch.
//!
//! Separate because both are conversions of a CLIXML value, not binding rules, and the display
//! text is used outside the binder too.

use crate::remoting::clixml::Value;

/// A short display text for a value (error messages).
pub fn display_value(value: &Value) -> String {
    match value {
        Value::Nil => String::new(),
        Value::String(s)
        | Value::Uri(s)
        | Value::Version(s)
        | Value::Decimal(s)
        | Value::ScriptBlock(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "True".into()
            } else {
                "False".into()
            }
        }
        Value::Char(c) => char::from_u32(u32::from(*c))
            .map(String::from)
            .unwrap_or_default(),
        Value::I8(n) => n.to_string(),
        Value::U8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::U16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        Value::Double(n) => n.to_string(),
        Value::DateTime(d) => d.to_rfc3339(),
        Value::UtcDateTime(d) => d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Value::Duration(t) => format!("{t} ticks"),
        Value::Guid(g) => g.to_string(),
        Value::Bytes(b) => format!("System.Byte[{}]", b.len()),
        Value::XmlDocument(x) => x.clone(),
        Value::Object(o) => o
            .to_string
            .clone()
            .or_else(|| o.primitive.as_ref().map(display_value))
            .or_else(|| o.type_names.first().cloned())
            .unwrap_or_default(),
    }
}

/// A switch's value: Nil and `true` are on, `false` off, a SwitchParameter Obj by IsPresent.
pub(super) fn switch_value(value: &Value) -> Option<bool> {
    match value {
        Value::Nil => Some(true),
        Value::Bool(b) => Some(*b),
        Value::I32(n) => Some(*n != 0),
        Value::I64(n) => Some(*n != 0),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Some(false),
        Value::Object(obj) => {
            let present = obj
                .adapted
                .iter()
                .chain(obj.extended.iter())
                .find(|(n, _)| n.eq_ignore_ascii_case("IsPresent"))
                .map(|(_, v)| v);
            match present {
                Some(v) => switch_value(v),
                None => obj.primitive.as_ref().and_then(switch_value).or_else(|| {
                    obj.to_string
                        .as_deref()
                        .and_then(|s| switch_value(&Value::String(s.into())))
                }),
            }
        }
        _ => None,
    }
}
