//! PSRP message bodies the shell/pipeline state machine sends and reads, as CLIXML values.
//!
//! The state machine speaks in terms of "the pool-open reply", "a pipeline ended Failed with
//! this record", "the client sent CREATE_PIPELINE"; this module turns those into
//! [`Value`]s / [`Message`]s and back, so the state machine never handles XML. Shapes follow
//! reference psrp-protocol.md §4.2 (pool open), §5.3 (runspace counts), §6.1 (CREATE_PIPELINE),
//! §7.4 (GET_COMMAND_METADATA), §9 (records). The encoder and parser themselves live in
//! `clixml`.

use uuid::Uuid;

use super::clixml::{Limits, VALUE_COST, Value};
use super::executor::{ErrorCategory, ErrorRecord, MetadataQuery, Pipeline};
use super::message::{BOM, Message, MessageType};
use super::records;

/// A client message body that does not have the shape the protocol prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct BodyError {
    /// Which message.
    pub what: &'static str,
    /// What is wrong.
    pub why: String,
}

fn body_err(what: &'static str, why: impl Into<String>) -> BodyError {
    BodyError {
        what,
        why: why.into(),
    }
}

/// Bounds on the CLIXML of one client message. A message is at most
/// `MAX_CLIENT_MESSAGE` (4 MiB) bytes; decoded it may take at most
/// [`CLIENT_DECODED_LIMIT`], `<Ref>` copies counted in full (the copy limit a document of
/// refs to one large string runs into).
pub const CLIENT_CLIXML: Limits = Limits {
    max_len: super::shell::MAX_CLIENT_MESSAGE,
    max_depth: 64,
    max_values: 500_000,
    max_bytes: CLIENT_DECODED_LIMIT,
};

/// Most bytes one client message may decode to (16 MiB: four times the largest message).
pub const CLIENT_DECODED_LIMIT: usize = 16 * 1024 * 1024;

/// Decodes a message body (BOM and surrounding whitespace tolerated; empty is `$null`).
///
/// # Errors
/// [`BodyError`] when the CLIXML does not parse or is over [`CLIENT_CLIXML`].
pub fn decode_value(what: &'static str, data: &[u8]) -> Result<Value, BodyError> {
    decode_value_sized(what, data).map(|(v, _)| v)
}

/// [`decode_value`], also returning the decoded size (for memory accounting).
///
/// # Errors
/// [`BodyError`] when the CLIXML does not parse or is over [`CLIENT_CLIXML`].
pub fn decode_value_sized(what: &'static str, data: &[u8]) -> Result<(Value, usize), BodyError> {
    let data = data.strip_prefix(BOM).unwrap_or(data);
    let text = std::str::from_utf8(data).map_err(|e| body_err(what, format!("not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok((Value::Nil, VALUE_COST));
    }
    super::clixml::from_xml_sized(text, &CLIENT_CLIXML).map_err(|e| body_err(what, e.to_string()))
}

/// A server→client message with `value` as data (BOM-prefixed like Windows).
pub fn message(message_type: MessageType, rpid: Uuid, pid: Uuid, value: &Value) -> Message {
    Message::to_client(message_type, rpid, pid, value)
}

/// The `Hash` the endpoint reports in `ImplicitRemoting` (stable: modules exported from a
/// session compare it on re-import).
pub const IMPLICIT_REMOTING_HASH: &str = "exo-authproxy-1";

/// The call id (`ci`) of a runspace-count request (0 when absent).
pub fn call_id(body: &Value) -> i64 {
    records::RunspaceRequest::parse(body).map_or(0, |r| r.call_id)
}

/// An error the endpoint itself reports (bad message from the client, executor gone…).
pub fn endpoint_error(message: String, fqid: &str, category: ErrorCategory) -> ErrorRecord {
    ErrorRecord {
        message,
        exception_type: "System.Management.Automation.RuntimeException".into(),
        fully_qualified_error_id: fqid.to_owned(),
        category,
        activity: String::new(),
        reason: "RuntimeException".into(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}

// ---- CREATE_PIPELINE / GET_COMMAND_METADATA ------------------------------------------------

/// CREATE_PIPELINE data → the pipeline (Cmds, then ExtraCmds statements).
///
/// # Errors
/// [`BodyError`] for a body that is not a pipeline.
pub fn parse_create_pipeline(data: &[u8]) -> Result<Pipeline, BodyError> {
    let v = decode_value("CREATE_PIPELINE", data)?;
    records::parse_create_pipeline(&v).map_err(|e| body_err("CREATE_PIPELINE", e.to_string()))
}

/// GET_COMMAND_METADATA data → the query (CommandType as I32 or enum Obj).
///
/// # Errors
/// [`BodyError`] when the body does not parse.
pub fn parse_metadata_query(data: &[u8]) -> Result<MetadataQuery, BodyError> {
    let v = decode_value("GET_COMMAND_METADATA", data)?;
    records::parse_metadata_query(&v).map_err(|e| body_err("GET_COMMAND_METADATA", e.to_string()))
}
