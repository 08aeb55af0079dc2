//! What flows through the simulated runspace's pipeline, and how `-ErrorAction` /
//! `-WarningAction` turn a record into one: written, dropped, or the pipeline's failure.

use super::binding::Preference;
use super::record;
use crate::remoting::clixml::Value;
use crate::remoting::executor::{ErrorRecord, Output};

/// What flows between stages.
pub(super) enum Event {
    /// An object for the next stage (or the client).
    Object(Value),
    /// A record for the client's streams.
    Record(Output),
    /// The pipeline fails with this record.
    Fail(Box<ErrorRecord>),
}

pub(super) fn error_event(pref: Preference, rec: ErrorRecord) -> Option<Event> {
    match pref {
        Preference::Stop => Some(Event::Fail(Box::new(rec))),
        Preference::Silent => None,
        Preference::Continue => Some(Event::Record(Output::Error(rec))),
    }
}

pub(super) fn warning_event(pref: Preference, cmdlet: &str, text: String) -> Option<Event> {
    match pref {
        Preference::Stop => Some(Event::Fail(Box::new(record::warning_stop(cmdlet, &text)))),
        Preference::Silent => None,
        Preference::Continue => Some(Event::Record(Output::Warning(text))),
    }
}
