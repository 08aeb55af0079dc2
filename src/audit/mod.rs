//! The audit trail: who did what through the proxy, one [`Record`] per event, written to the
//! `[audit] file` ([`file`]) or, without one, to the log on the tracing target [`TARGET`].
//!
//! Why a handle ([`Audit`]) rather than a global: tests run several proxies in one process,
//! each with its own file; the handle is built once (`Services`) and given to the components
//! that see events (the listener's login check and session log, the bridge's cmdlet calls,
//! the remoting endpoint's shell lifecycle). The events and their fields are defined only
//! here and in [`record`], so the schema (docs/report.md) stays one, and the same [`Record`]
//! type is what `exo-authproxy report` reads.
//!
//! What is recorded, and what never is:
//! - `login-failed`: the user name as sent (escaped, at most 64 characters) and the client
//!   address. Never the password.
//! - `login-throttled`: an attempt refused by the login throttle without checking the
//!   password (logged at the 1st, 2nd, 4th, 8th … refusal of a streak).
//! - `session-opened` / `session-closed`: a remote PowerShell session created or ended
//!   (Delete, idle expiry, reclaimed at the quota, shutdown) through the proxy, both modes:
//!   local user, tenant, client, mode, endpoint, client kind and version, and at the end the
//!   duration and the number of commands ([`sessions`]).
//! - `command` (rest mode, where the proxy runs the cmdlets): local user, tenant, session,
//!   pipeline and position in it, cmdlet, the *names* of its parameters, result (`ok`,
//!   `error`, `failed`, `stopped`), objects, errors and duration. Parameter values are not
//!   recorded: they hold passwords (`New-Mailbox -Password`) and personal data.

pub mod file;
pub mod record;
pub mod sessions;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use record::{Record, SCHEMA};

/// The tracing target of every audit event (without `[audit] file`).
pub const TARGET: &str = "exo_authproxy::audit";

/// A client-supplied name, bounded: it goes into logs.
fn bounded(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Where the events go.
#[derive(Clone, Default)]
pub struct Audit {
    file: Option<Arc<file::AuditFile>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "Audit(file {})", file.path().display()),
            None => f.write_str("Audit(log)"),
        }
    }
}

/// What a cmdlet call leaves in the trail.
#[derive(Debug, Clone, Default)]
pub struct CommandEvent<'a> {
    /// Local user.
    pub user: &'a str,
    /// Tenant (local name).
    pub tenant: &'a str,
    /// `exchange` or `compliance`.
    pub endpoint: &'a str,
    /// The session (shell id), when known.
    pub session: Option<&'a str>,
    /// The pipeline (command id), when known.
    pub pipeline: Option<&'a str>,
    /// Position in the pipeline's statement.
    pub position: u32,
    /// The cmdlet.
    pub cmdlet: &'a str,
    /// Parameter names.
    pub parameters: &'a [String],
    /// `ok`, `error`, `failed`, `stopped`.
    pub result: &'static str,
    /// Objects returned.
    pub objects: u64,
    /// Error records written.
    pub errors: u64,
    /// How long it ran.
    pub duration: Duration,
}

impl Audit {
    /// Events to the log target [`TARGET`] (no `[audit] file`).
    pub fn log() -> Self {
        Self { file: None }
    }

    /// Events to `path` (JSON lines, 0600), counted into `counters` (`/metrics`).
    ///
    /// # Errors
    /// [`file::OpenError`] when the file cannot be opened for appending.
    pub fn file(path: &Path, counters: file::Counters) -> Result<Self, file::OpenError> {
        Ok(Self {
            file: Some(Arc::new(file::AuditFile::open(path, counters)?)),
        })
    }

    /// The file writer's counters, if writing to a file.
    pub fn counters(&self) -> Option<&file::Counters> {
        self.file.as_ref().map(|f| f.counters())
    }

    /// Reopens the file (SIGHUP, for logrotate's `create`).
    pub fn reopen(&self) {
        if let Some(f) = &self.file {
            f.reopen();
        }
    }

    /// Waits until every event so far is written (shutdown, tests).
    pub fn flush(&self) {
        if let Some(f) = &self.file {
            f.flush();
        }
    }

    /// Writes one event, stamped with the schema version and the time.
    pub fn emit(&self, mut record: Record) {
        record.schema = SCHEMA;
        record.time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match &self.file {
            Some(file) => match serde_json::to_string(&record) {
                Ok(line) => file.write_line(line),
                Err(err) => tracing::error!(error = %err, "audit: cannot serialize an event"),
            },
            None => log(&record),
        }
    }

    /// Local credentials were refused.
    pub fn login_failed(&self, user: &str, client: IpAddr) {
        self.emit(Record {
            event: "login-failed".into(),
            user: Some(bounded(user).to_owned()),
            client: Some(client.to_string()),
            ..Record::default()
        });
    }

    /// A login was refused by the throttle without checking the password.
    pub fn login_throttled(&self, user: &str, client: IpAddr, refused: u64, retry_after: Duration) {
        self.emit(Record {
            event: "login-throttled".into(),
            user: Some(bounded(user).to_owned()),
            client: Some(client.to_string()),
            refused: Some(refused),
            retry_after_s: Some(retry_after.as_secs()),
            ..Record::default()
        });
    }

    /// A cmdlet ran through the REST admin API.
    pub fn command(&self, c: &CommandEvent<'_>) {
        self.emit(Record {
            event: "command".into(),
            user: Some(c.user.to_owned()),
            tenant: Some(c.tenant.to_owned()),
            endpoint: Some(c.endpoint.to_owned()),
            session: c.session.map(str::to_owned),
            pipeline: c.pipeline.map(str::to_owned),
            position: Some(c.position),
            cmdlet: Some(c.cmdlet.to_owned()),
            parameters: Some(c.parameters.to_vec()),
            result: Some(c.result.to_owned()),
            objects: Some(c.objects),
            errors: Some(c.errors),
            duration_ms: Some(c.duration.as_millis() as u64),
            ..Record::default()
        });
    }
}

/// The log-target form of a record: the same fields, scalars as scalars (text logs quote and
/// escape strings; JSON logs carry them as JSON strings), parameter names comma-joined.
fn log(r: &Record) {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let parameters = r.parameters.as_ref().map(|p| p.join(","));
    tracing::info!(
        target: TARGET,
        event = r.event.as_str(),
        user = s(&r.user).as_str(),
        tenant = r.tenant.as_deref().map(tracing::field::display),
        client = r.client.as_deref().map(tracing::field::display),
        mode = r.mode.as_deref(),
        endpoint = r.endpoint.as_deref(),
        session = r.session.as_deref(),
        client_kind = r.client_kind.as_deref(),
        client_version = r.client_version.as_deref(),
        reason = r.reason.as_deref(),
        commands = r.commands,
        refused = r.refused,
        retry_after_s = r.retry_after_s,
        pipeline = r.pipeline.as_deref(),
        position = r.position,
        cmdlet = r.cmdlet.as_deref(),
        parameters = parameters.as_deref().map(tracing::field::display),
        result = r.result.as_deref(),
        objects = r.objects,
        errors = r.errors,
        duration_ms = r.duration_ms,
        "{}",
        r.event
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_bounded() {
        assert_eq!(bounded("reporting"), "reporting");
        let long = "é".repeat(100);
        assert_eq!(bounded(&long).chars().count(), 64);
    }

    #[test]
    fn the_file_gets_schema_time_and_data_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::file(&path, file::Counters::default()).unwrap();
        audit.command(&CommandEvent {
            user: "reporting",
            tenant: "contoso",
            endpoint: "exchange",
            session: Some("S1"),
            pipeline: Some("P1"),
            position: 1,
            cmdlet: "Set-Mailbox",
            parameters: &["Identity".into(), "CustomAttribute1".into()],
            result: "ok",
            objects: 0,
            errors: 0,
            duration: Duration::from_millis(42),
        });
        audit.login_failed("reporting\nforged", IpAddr::from([127, 0, 0, 1]));
        audit.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["schema"], 1);
        assert!(chrono::DateTime::parse_from_rfc3339(lines[0]["time"].as_str().unwrap()).is_ok());
        assert_eq!(lines[0]["user"], "reporting", "no added quotes");
        assert_eq!(
            lines[0]["parameters"],
            serde_json::json!(["Identity", "CustomAttribute1"])
        );
        assert_eq!(lines[0]["position"], 1);
        assert_eq!(lines[0]["duration_ms"], 42);
        assert_eq!(lines[1]["user"], "reporting\nforged");
        assert!(
            lines[1].get("cmdlet").is_none(),
            "absent fields are left out"
        );
    }
}
