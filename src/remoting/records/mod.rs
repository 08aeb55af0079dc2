//! The CLIXML shapes of PSRP message bodies: builders for what the server sends, parsers
//! for what clients send (reference psrp-protocol.md §4–§7, §9).
//!
//! They live beside the codec so that every PSRP object shape is in one place and the state
//! machine deals in typed values ([`Pipeline`], [`MetadataQuery`], [`ErrorRecord`]) only.
//! Builders follow what Windows servers emit (member order, type names, mandatory members:
//! Windows PowerShell's decoder throws when an ErrorRecord member is missing, §9.1). Parsers
//! are lenient where clients differ (enum Obj or bare I32, `ExtraCmds` conventions, missing
//! optional members) and strict only where guessing would run the wrong command.
//!
//! One file per protocol area: `runspace` (pool opening and runspace counts, §4–§5.3),
//! `pipeline` (CREATE_PIPELINE and PIPELINE_STATE, §6), `metadata` (GET_COMMAND_METADATA,
//! §7.4), `error_record` and `informational` (the records of §9). This file holds what they
//! share: the protocol versions and the [`RecordError`] every parser returns.

use super::clixml::{Object, Value};
#[cfg(doc)]
use super::executor::{ErrorRecord, MetadataQuery, Pipeline};

mod error_record;
mod informational;
mod metadata;
mod pipeline;
mod runspace;

pub use error_record::{error_record, error_record_object};
pub use informational::{InformationalKind, information_record, informational_record};
pub(crate) use metadata::{COMMAND_TYPES, command_type_name};
pub use metadata::{command_metadata, command_metadata_count, parse_metadata_query};
pub use pipeline::{
    PipelineState, parse_create_pipeline, pipeline_end, pipeline_state, pipeline_stopped,
};
pub use runspace::{
    InitRunspacePool, RunspacePoolState, RunspaceRequest, SessionCapability,
    application_private_data, runspace_availability, runspace_availability_count,
    runspace_pool_state,
};

/// The PSRP protocol version this server speaks (2.3: Windows clients ≥ 2.2 then enable
/// large envelopes; INFORMATION_RECORD exists from 2.3).
pub const PROTOCOL_VERSION: &str = "2.3";
/// `PSVersion` in SESSION_CAPABILITY (the remoting layer's, not the engine's: always 2.0).
pub const PS_VERSION: &str = "2.0";
/// `SerializationVersion`.
pub const SERIALIZATION_VERSION: &str = "1.1.0.1";
/// The Windows PowerShell version claimed in APPLICATION_PRIVATE_DATA (§4.3: claim 5.1).
pub const POWERSHELL_VERSION: &str = "5.1.17763.6414";
/// A client message body that does not have the shape its type requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The body is not an `<Obj>`.
    #[error("PSRP {message} body is not an <Obj> but <{got}>")]
    NotAnObject {
        /// The message type.
        message: &'static str,
        /// The tag found instead.
        got: &'static str,
    },
    /// A mandatory member is absent.
    #[error("PSRP {message} lacks the mandatory member {member:?}")]
    Missing {
        /// The message type.
        message: &'static str,
        /// The member name.
        member: &'static str,
    },
    /// A member has the wrong type.
    #[error("PSRP {message} member {member:?} should be {expected} but is <{got}>")]
    WrongType {
        /// The message type.
        message: &'static str,
        /// The member name.
        member: &'static str,
        /// What it should be.
        expected: &'static str,
        /// The tag found instead.
        got: &'static str,
    },
    /// A pipeline with no command.
    #[error("PSRP CREATE_PIPELINE holds no command: Cmds is empty")]
    NoCommands,
}

fn body<'a>(message: &'static str, value: &'a Value) -> Result<&'a Object, RecordError> {
    value.as_object().ok_or(RecordError::NotAnObject {
        message,
        got: value.tag(),
    })
}

fn required<'a>(
    message: &'static str,
    obj: &'a Object,
    member: &'static str,
) -> Result<&'a Value, RecordError> {
    obj.property(member)
        .ok_or(RecordError::Missing { message, member })
}

fn wrong(
    message: &'static str,
    member: &'static str,
    expected: &'static str,
    v: &Value,
) -> RecordError {
    RecordError::WrongType {
        message,
        member,
        expected,
        got: v.tag(),
    }
}

/// Compares dotted versions numerically (`2.10` > `2.3`); missing parts count as 0.
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.trim()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parts(version), parts(minimum));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

#[cfg(test)]
mod tests;
