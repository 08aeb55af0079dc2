//! WARNING/VERBOSE/DEBUG_RECORD and INFORMATION_RECORD bodies (§9.3, §9.4).

use chrono::{DateTime, FixedOffset};

use crate::remoting::clixml::{Object, Value};

/// Which informational record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InformationalKind {
    /// WARNING_RECORD (0x00041009).
    Warning,
    /// VERBOSE_RECORD (0x00041008).
    Verbose,
    /// DEBUG_RECORD (0x00041007).
    Debug,
}

/// A WARNING/VERBOSE/DEBUG_RECORD body (§9.3).
pub fn informational_record(kind: InformationalKind, message: &str) -> Value {
    let first = match kind {
        InformationalKind::Warning => "System.Management.Automation.WarningRecord",
        InformationalKind::Verbose => "System.Management.Automation.VerboseRecord",
        InformationalKind::Debug => "System.Management.Automation.DebugRecord",
    };
    Object::new([
        first,
        "System.Management.Automation.InformationalRecord",
        "System.Object",
    ])
    .with_to_string(message)
    .with_property("InformationalRecord_Message", message)
    .with_property("InformationalRecord_SerializeInvocationInfo", false)
    .into_value()
}

/// An INFORMATION_RECORD body (§9.4, protocol ≥ 2.3): `MessageData` is the text.
pub fn information_record(message: &str, time_generated: DateTime<FixedOffset>) -> Value {
    let tags = Value::list(
        [
            "System.Collections.Generic.List`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]",
            "System.Object",
        ],
        Vec::<Value>::new(),
    );
    Object::default()
        .with_property("MessageData", message)
        .with_property("Source", "exo-authproxy")
        .with_property("TimeGenerated", time_generated)
        .with_property("Tags", tags)
        .with_property("User", "")
        .with_property("Computer", "")
        .with_property("ProcessId", Value::U32(std::process::id()))
        .with_property("NativeThreadId", Value::U32(0))
        .with_property("ManagedThreadId", Value::U32(0))
        .into_value()
}
