//! Remote PowerShell sessions as the audit trail sees them: opened, used, ended.
//!
//! One registry for both modes, fed by the listener (it sees every Create, Command and
//! Delete, in `winrm` mode as in `rest` mode) and by the remoting endpoint in `rest` mode
//! (it ends sessions itself: reclaimed at the quota, idle). Every end is recorded once —
//! [`SessionLog::closed`] removes the entry, so a second report of the same end is a no-op —
//! with its reason, the session's length and the number of commands it ran.
//!
//! Sessions are keyed by endpoint and shell id: the client names its shell (Windows
//! PowerShell proposes the runspace pool id), so the same ShellId can be open on
//! `/powershell-liveid/` and on `/compliance/powershell-liveid/` at once, and each must end
//! with its own `session-closed`.
//!
//! Bounded: at most [`MAX_TRACKED`] sessions are tracked; beyond that a session's opening is
//! still recorded but its end is not (counted in the log).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Audit, Record};

/// Sessions tracked at most (the per-user shell quota keeps real use far below).
pub const MAX_TRACKED: usize = 65_536;

/// What the listener knows when a session opens.
#[derive(Debug, Clone)]
pub struct Opened<'a> {
    /// The shell id.
    pub session: &'a str,
    /// Local user.
    pub user: &'a str,
    /// Tenant (local name).
    pub tenant: &'a str,
    /// Client address.
    pub client: IpAddr,
    /// `winrm` or `rest`.
    pub mode: &'static str,
    /// `exchange` or `compliance`.
    pub endpoint: &'static str,
    /// What the client is ([`client_kind`]).
    pub client_kind: &'static str,
    /// Its PowerShell version, when it says.
    pub client_version: Option<String>,
}

struct Open {
    user: String,
    tenant: String,
    client: String,
    mode: &'static str,
    endpoint: &'static str,
    opened: Instant,
    last: Instant,
    commands: u64,
}

/// The sessions open now.
pub struct SessionLog {
    audit: Audit,
    idle: Duration,
    open: Mutex<HashMap<Key, Open>>,
    last_sweep: Mutex<Instant>,
}

impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLog")
            .field("open", &self.len())
            .finish()
    }
}

/// A tracked session: (endpoint, normalized shell id).
type Key = (&'static str, String);

fn key(session: &str) -> String {
    session
        .trim()
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The client's kind and PowerShell version, from what it sends with every request: the
/// `PSVersion` query parameter (Windows PowerShell and pwsh add it to the connection URI)
/// and the `User-Agent`.
pub fn client_kind(
    ps_version: Option<&str>,
    user_agent: Option<&str>,
) -> (&'static str, Option<String>) {
    let version = ps_version
        .map(str::trim)
        .filter(|v| {
            !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        })
        .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."));
    let major: Option<u32> = version
        .as_deref()
        .and_then(|v| v.split('.').next()?.parse().ok());
    let kind = match major {
        Some(m) if m <= 5 => "Windows PowerShell",
        Some(_) => "PowerShell",
        None if user_agent.is_some_and(|ua| ua.to_ascii_lowercase().contains("python")) => "pypsrp",
        None => "other",
    };
    (kind, version)
}

/// The idle timeout of sessions (the remoting endpoint's, and Exchange's RPS default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl Default for SessionLog {
    /// Records to the log target; sessions end as idle after [`IDLE_TIMEOUT`].
    fn default() -> Self {
        Self::new(Audit::log(), IDLE_TIMEOUT)
    }
}

impl SessionLog {
    /// A registry recording into `audit`; sessions with no request for `idle` end as idle.
    pub fn new(audit: Audit, idle: Duration) -> Self {
        Self {
            audit,
            idle,
            open: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Open>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A session was created.
    pub fn opened(&self, o: &Opened<'_>) {
        self.audit.emit(Record {
            event: "session-opened".into(),
            user: Some(o.user.to_owned()),
            tenant: Some(o.tenant.to_owned()),
            client: Some(o.client.to_string()),
            mode: Some(o.mode.into()),
            endpoint: Some(o.endpoint.into()),
            session: Some(key(o.session)),
            client_kind: Some(o.client_kind.into()),
            client_version: o.client_version.clone(),
            ..Record::default()
        });
        let now = Instant::now();
        let mut open = self.lock();
        if open.len() >= MAX_TRACKED {
            tracing::warn!(
                "audit: {MAX_TRACKED} sessions tracked; this one's end will not be recorded"
            );
            return;
        }
        open.insert(
            (o.endpoint, key(o.session)),
            Open {
                user: o.user.to_owned(),
                tenant: o.tenant.to_owned(),
                client: o.client.to_string(),
                mode: o.mode,
                endpoint: o.endpoint,
                opened: now,
                last: now,
                commands: 0,
            },
        );
    }

    /// A request for `session` on `endpoint` arrived (`command`: it started a pipeline).
    pub fn touched(&self, endpoint: &'static str, session: &str, command: bool) {
        if let Some(s) = self.lock().get_mut(&(endpoint, key(session))) {
            s.last = Instant::now();
            s.commands += u64::from(command);
        }
    }

    /// `session` on `endpoint` ended (`deleted`, `idle`, `reclaimed`, `shutdown`); recorded
    /// once.
    pub fn closed(&self, endpoint: &'static str, session: &str, reason: &'static str) {
        let Some(s) = self.lock().remove(&(endpoint, key(session))) else {
            return;
        };
        self.record_close(&key(session), &s, reason);
    }

    fn record_close(&self, session: &str, s: &Open, reason: &'static str) {
        self.audit.emit(Record {
            event: "session-closed".into(),
            user: Some(s.user.clone()),
            tenant: Some(s.tenant.clone()),
            client: Some(s.client.clone()),
            mode: Some(s.mode.into()),
            endpoint: Some(s.endpoint.into()),
            session: Some(session.to_owned()),
            reason: Some(reason.into()),
            commands: Some(s.commands),
            duration_ms: Some(s.opened.elapsed().as_millis() as u64),
            ..Record::default()
        });
    }

    /// Ends the sessions idle for longer than the idle timeout (at most every 10 s; the
    /// server calls it on a timer, off the request path).
    pub fn sweep(&self) {
        let now = Instant::now();
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now.duration_since(*last) < Duration::from_secs(10) {
                return;
            }
            *last = now;
        }
        let idle: Vec<(Key, Open)> = {
            let mut open = self.lock();
            let ids: Vec<Key> = open
                .iter()
                .filter(|(_, s)| now.duration_since(s.last) >= self.idle)
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter()
                .filter_map(|k| open.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for ((_, id), s) in idle {
            self.record_close(&id, &s, "idle");
        }
    }

    /// Ends every session (shutdown).
    pub fn close_all(&self, reason: &'static str) {
        let all: Vec<(Key, Open)> = self.lock().drain().collect();
        for ((_, id), s) in all {
            self.record_close(&id, &s, reason);
        }
        self.audit.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_the_query_and_the_user_agent() {
        assert_eq!(
            client_kind(Some("5.1.19041.1"), Some("Microsoft WinRM Client")),
            ("Windows PowerShell", Some("5.1".into()))
        );
        assert_eq!(
            client_kind(Some("7.4.6"), None),
            ("PowerShell", Some("7.4".into()))
        );
        assert_eq!(
            client_kind(None, Some("Python WinRM client")),
            ("pypsrp", None)
        );
        assert_eq!(client_kind(Some("<script>"), None), ("other", None));
    }

    #[tokio::test(start_paused = true)]
    async fn one_shell_id_on_both_endpoints_is_two_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let log = SessionLog::new(
            Audit::file(&path, super::super::file::Counters::default()).unwrap(),
            Duration::from_secs(900),
        );
        for endpoint in ["exchange", "compliance"] {
            log.opened(&Opened {
                session: "S1",
                user: "reporting",
                tenant: "contoso",
                client: IpAddr::from([127, 0, 0, 1]),
                mode: "rest",
                endpoint,
                client_kind: "Windows PowerShell",
                client_version: Some("5.1".into()),
            });
        }
        assert_eq!(log.len(), 2);
        log.touched("compliance", "s1", true);
        log.closed("compliance", "S1", "deleted");
        log.closed("exchange", "S1", "deleted");
        log.close_all("shutdown");
        let closed: Vec<(String, u64)> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["event"] == "session-closed")
            .map(|l| {
                (
                    l["endpoint"].as_str().unwrap().to_owned(),
                    l["commands"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            closed,
            [("compliance".to_owned(), 1), ("exchange".to_owned(), 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_end_is_recorded_once_with_length_and_commands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let log = SessionLog::new(
            Audit::file(&path, super::super::file::Counters::default()).unwrap(),
            Duration::from_secs(900),
        );
        let open = |id: &'static str| Opened {
            session: id,
            user: "reporting",
            tenant: "contoso",
            client: IpAddr::from([127, 0, 0, 1]),
            mode: "rest",
            endpoint: "exchange",
            client_kind: "pypsrp",
            client_version: None,
        };
        log.opened(&open("a"));
        log.opened(&open("{b}"));
        tokio::time::advance(Duration::from_secs(5)).await;
        log.touched("exchange", "A", true);
        log.touched("exchange", "A", true);
        log.closed("exchange", "a", "deleted");
        log.closed("exchange", "a", "deleted");
        tokio::time::advance(Duration::from_secs(900)).await;
        log.sweep();
        assert!(log.is_empty());
        log.close_all("shutdown");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let events: Vec<(&str, &str, Option<&str>)> = lines
            .iter()
            .map(|l| {
                (
                    l["event"].as_str().unwrap(),
                    l["session"].as_str().unwrap(),
                    l["reason"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            events,
            vec![
                ("session-opened", "A", None),
                ("session-opened", "B", None),
                ("session-closed", "A", Some("deleted")),
                ("session-closed", "B", Some("idle")),
            ]
        );
        assert_eq!(lines[2]["commands"], 2);
        assert_eq!(lines[2]["duration_ms"], 5000);
        assert_eq!(lines[3]["duration_ms"], 905_000);
    }
}
