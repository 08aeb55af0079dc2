//! `ActionPreference`, the value of `-ErrorAction` and its siblings.
//!
//! Separate because it is a type of its own with its own parsing (name, number or the enum
//! object Windows sends), used by the executors as well as by the binder.

use crate::remoting::clixml::Value;

/// `System.Management.Automation.ActionPreference`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionPreference {
    SilentlyContinue = 0,
    Stop = 1,
    Continue = 2,
    Inquire = 3,
    Ignore = 4,
    Suspend = 5,
    Break = 6,
}

impl ActionPreference {
    const ALL: [ActionPreference; 7] = [
        Self::SilentlyContinue,
        Self::Stop,
        Self::Continue,
        Self::Inquire,
        Self::Ignore,
        Self::Suspend,
        Self::Break,
    ];

    /// The enum name (`Stop`), as the REST API expects it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SilentlyContinue => "SilentlyContinue",
            Self::Stop => "Stop",
            Self::Continue => "Continue",
            Self::Inquire => "Inquire",
            Self::Ignore => "Ignore",
            Self::Suspend => "Suspend",
            Self::Break => "Break",
        }
    }

    /// True when records of this stream are not shown (SilentlyContinue, Ignore).
    pub fn is_silent(self) -> bool {
        matches!(self, Self::SilentlyContinue | Self::Ignore)
    }

    fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        if let Ok(n) = name.parse::<i64>() {
            return Self::from_number(n);
        }
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    fn from_number(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| *p as i64 == n)
    }

    /// Reads a CLIXML value: the name as a string, a number, or the enum Obj Windows sends
    /// (`<ToString>Stop</ToString><I32>1</I32>`).
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Self::from_name(s),
            Value::I32(n) => Self::from_number(i64::from(*n)),
            Value::I64(n) => Self::from_number(*n),
            Value::U32(n) => Self::from_number(i64::from(*n)),
            Value::I16(n) => Self::from_number(i64::from(*n)),
            Value::U8(n) => Self::from_number(i64::from(*n)),
            Value::Object(obj) => obj
                .primitive
                .as_ref()
                .and_then(Self::from_value)
                .or_else(|| obj.to_string.as_deref().and_then(Self::from_name)),
            _ => None,
        }
    }
}
