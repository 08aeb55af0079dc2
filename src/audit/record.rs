//! One line of the audit file: the schema the proxy writes and `report` reads.
//!
//! One definition for both ends, so the writer cannot drift from the reader. Version 1;
//! every field but `schema`, `time` and `event` is optional, so a reader of a newer file
//! skips what it does not know and an older file (before a field existed) still reports.

use serde::{Deserialize, Serialize};

/// The schema version this build writes.
pub const SCHEMA: u32 = 1;

/// One audit event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: u32,
    /// RFC 3339, UTC.
    pub time: String,
    /// `login-failed`, `login-throttled`, `session-opened`, `session-closed`, `command`.
    pub event: String,
    /// The local user (one per script is the recommended practice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The tenant's local name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `winrm` or `rest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `exchange` or `compliance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The remote PowerShell session (shell id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// session-opened: `Windows PowerShell`, `PowerShell`, `pypsrp`, `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_kind: Option<String>,
    /// session-opened: the client's PowerShell version (`5.1`, `7.4`), when it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// session-closed: `deleted`, `idle`, `reclaimed`, `shutdown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// session-closed: commands run in the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<u64>,
    /// command: the pipeline (command id) it ran in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// command: its position in the pipeline (0 = first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// command: the cmdlet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdlet: Option<String>,
    /// command: the parameter names (never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<String>>,
    /// command: `ok`, `error` (non-terminating errors), `failed`, `stopped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// command: objects returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// command: error records written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// login-throttled: refusals in this streak so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
    /// login-throttled: seconds until the address and user may try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// command: milliseconds; session-closed: the session's length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}
