//! The report's figures, aggregated from audit records in one pass with bounded memory.
//!
//! Every map has a cap (documented constants); what does not fit is counted in an
//! "others" total and the report says so, so a hostile or enormous audit file costs time,
//! never unbounded memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;

use super::migration::{self, Verdict};
use crate::audit::Record;

/// Distinct local users (scripts) reported on; the rest are counted as others.
pub const MAX_SCRIPTS: usize = 10_000;
/// Distinct cmdlets per script.
pub const MAX_CMDLETS: usize = 1_000;
/// Distinct parameter names per cmdlet.
pub const MAX_PARAMETERS: usize = 200;
/// Distinct pipelines (cmdlet sequences) per script.
pub const MAX_PIPELINES: usize = 500;
/// Distinct client addresses or client versions per script.
pub const MAX_CLIENTS: usize = 200;
/// Days per script in the commands-over-time chart.
pub const MAX_DAYS: usize = 3_660;
/// Pipelines whose commands are still being collected.
pub const MAX_OPEN_PIPELINES: usize = 10_000;
/// Longest name kept from a record (user, cmdlet, parameter), in characters.
const MAX_NAME: usize = 128;

/// One cmdlet's figures in one script.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CmdletStats {
    /// Calls.
    pub calls: u64,
    /// Results: `ok`.
    pub ok: u64,
    /// Results: `error` (ran, wrote errors).
    pub errors: u64,
    /// Results: `failed`.
    pub failed: u64,
    /// Results: `stopped`.
    pub stopped: u64,
    /// Objects returned.
    pub objects: u64,
    /// Parameter name → times used.
    pub parameters: BTreeMap<String, u64>,
    /// Sum of durations, ms (for the average).
    pub total_ms: u64,
    /// Calls that carried a duration.
    pub timed: u64,
    /// Longest call, ms.
    pub max_ms: u64,
}

/// One script (local user).
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Sessions opened.
    pub sessions: u64,
    /// Commands run.
    pub commands: u64,
    /// First and last event.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last event.
    pub last_seen: Option<DateTime<Utc>>,
    /// Tenants used.
    pub tenants: BTreeSet<String>,
    /// `exchange`, `compliance`.
    pub endpoints: BTreeSet<String>,
    /// `winrm`, `rest`.
    pub modes: BTreeSet<String>,
    /// Client address → sessions.
    pub clients: BTreeMap<String, u64>,
    /// "Windows PowerShell 5.1" → sessions.
    pub powershell: BTreeMap<String, u64>,
    /// Cmdlet → figures.
    pub cmdlets: BTreeMap<String, CmdletStats>,
    /// "Get-Mailbox | Set-Mailbox" → times.
    pub pipelines: BTreeMap<String, u64>,
    /// Commands per hour of day (UTC).
    pub hours: [u64; 24],
    /// Commands per day (YYYY-MM-DD, UTC).
    pub days: BTreeMap<String, u64>,
    /// Something did not fit a cap.
    pub truncated: bool,
}

struct OpenPipeline {
    user: String,
    cmdlets: Vec<(u32, String)>,
}

/// Everything the renderers need.
#[derive(Default)]
pub struct Report {
    /// Lines read.
    pub lines: u64,
    /// Lines that were not audit records (or too long).
    pub skipped: u64,
    /// Records outside `--since`/`--until`.
    pub filtered: u64,
    /// Refused local logins.
    pub login_failures: u64,
    /// Throttled local logins.
    pub login_throttled: u64,
    /// Earliest record reported on.
    pub first_seen: Option<DateTime<Utc>>,
    /// Latest record reported on.
    pub last_seen: Option<DateTime<Utc>>,
    /// Local user → figures.
    pub scripts: BTreeMap<String, Script>,
    /// Records of users beyond [`MAX_SCRIPTS`].
    pub other_records: u64,
    open: HashMap<String, OpenPipeline>,
    open_order: VecDeque<String>,
}

fn name(s: &str) -> String {
    s.chars().take(MAX_NAME).collect()
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, cap: usize, truncated: &mut bool) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < cap {
        map.insert(name(key), 1);
    } else {
        *truncated = true;
    }
}

impl Report {
    /// Adds one record (already parsed and inside the period).
    pub fn add(&mut self, record: &Record, time: DateTime<Utc>) {
        self.first_seen = Some(self.first_seen.map_or(time, |t| t.min(time)));
        self.last_seen = Some(self.last_seen.map_or(time, |t| t.max(time)));
        match record.event.as_str() {
            "login-failed" => {
                self.login_failures += 1;
                return;
            }
            "login-throttled" => {
                self.login_throttled += 1;
                return;
            }
            _ => {}
        }
        let Some(user) = record.user.as_deref() else {
            self.skipped += 1;
            return;
        };
        let user = name(user);
        if !self.scripts.contains_key(&user) && self.scripts.len() >= MAX_SCRIPTS {
            self.other_records += 1;
            return;
        }
        let script = self.scripts.entry(user.clone()).or_default();
        script.first_seen = Some(script.first_seen.map_or(time, |t| t.min(time)));
        script.last_seen = Some(script.last_seen.map_or(time, |t| t.max(time)));
        let mut truncated = script.truncated;
        if let Some(t) = &record.tenant {
            if script.tenants.len() < MAX_CLIENTS || script.tenants.contains(t) {
                script.tenants.insert(name(t));
            }
        }
        if let Some(e) = &record.endpoint {
            if script.endpoints.len() < 8 {
                script.endpoints.insert(name(e));
            }
        }
        if let Some(m) = &record.mode {
            if script.modes.len() < 8 {
                script.modes.insert(name(m));
            }
        }
        match record.event.as_str() {
            "session-opened" => {
                script.sessions += 1;
                if let Some(c) = &record.client {
                    bump(&mut script.clients, c, MAX_CLIENTS, &mut truncated);
                }
                let kind = record.client_kind.as_deref().unwrap_or("unknown client");
                let label = match &record.client_version {
                    Some(v) => format!("{kind} {v}"),
                    None => kind.to_owned(),
                };
                bump(&mut script.powershell, &label, MAX_CLIENTS, &mut truncated);
            }
            "command" => {
                script.commands += 1;
                script.hours[time.hour() as usize] += 1;
                bump(
                    &mut script.days,
                    &time.format("%Y-%m-%d").to_string(),
                    MAX_DAYS,
                    &mut truncated,
                );
                let cmdlet = name(record.cmdlet.as_deref().unwrap_or("(unknown)"));
                if !script.cmdlets.contains_key(&cmdlet) && script.cmdlets.len() >= MAX_CMDLETS {
                    truncated = true;
                } else {
                    let stats = script.cmdlets.entry(cmdlet.clone()).or_default();
                    stats.calls += 1;
                    match record.result.as_deref() {
                        Some("ok") => stats.ok += 1,
                        Some("error") => stats.errors += 1,
                        Some("failed") => stats.failed += 1,
                        Some("stopped") => stats.stopped += 1,
                        _ => {}
                    }
                    stats.objects += record.objects.unwrap_or(0);
                    if let Some(ms) = record.duration_ms {
                        stats.total_ms = stats.total_ms.saturating_add(ms);
                        stats.timed += 1;
                        stats.max_ms = stats.max_ms.max(ms);
                    }
                    for p in record.parameters.iter().flatten() {
                        bump(&mut stats.parameters, p, MAX_PARAMETERS, &mut truncated);
                    }
                }
                script.truncated = truncated;
                if let Some(id) = &record.pipeline {
                    self.pipeline_step(&user, id, record.position.unwrap_or(0), cmdlet);
                } else {
                    self.finish_pipeline(&user, vec![(0, cmdlet)]);
                }
                return;
            }
            _ => {}
        }
        script.truncated = truncated;
    }

    fn pipeline_step(&mut self, user: &str, id: &str, position: u32, cmdlet: String) {
        let key = format!("{user}\u{0}{}", name(id));
        if let Some(open) = self.open.get_mut(&key) {
            // A later stage runs once per input object: one stage per position.
            if open.cmdlets.len() < 64 && !open.cmdlets.iter().any(|(p, _)| *p == position) {
                open.cmdlets.push((position, cmdlet));
            }
            return;
        }
        if self.open.len() >= MAX_OPEN_PIPELINES {
            if let Some(oldest) = self.open_order.pop_front() {
                if let Some(done) = self.open.remove(&oldest) {
                    self.finish_pipeline(&done.user, done.cmdlets);
                }
            }
        }
        self.open.insert(
            key.clone(),
            OpenPipeline {
                user: user.to_owned(),
                cmdlets: vec![(position, cmdlet)],
            },
        );
        self.open_order.push_back(key);
    }

    fn finish_pipeline(&mut self, user: &str, mut cmdlets: Vec<(u32, String)>) {
        cmdlets.sort();
        let text = cmdlets
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
            .join(" | ");
        if let Some(script) = self.scripts.get_mut(user) {
            let mut truncated = script.truncated;
            bump(&mut script.pipelines, &text, MAX_PIPELINES, &mut truncated);
            script.truncated = truncated;
        }
    }

    /// Closes the pipelines still being collected (end of input).
    pub fn finish(&mut self) {
        let order = std::mem::take(&mut self.open_order);
        for key in order {
            if let Some(done) = self.open.remove(&key) {
                self.finish_pipeline(&done.user, done.cmdlets);
            }
        }
    }
}

/// The migration assessment of one script.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// The verdict.
    pub verdict: Verdict,
    /// Why it must stay on the proxy for now (verdict `keep`).
    pub blockers: Vec<String>,
    /// What to change in the script.
    pub changes: Vec<String>,
    /// Optional: faster `Get-EXO*` cmdlets, with what bites.
    pub advice: Vec<String>,
}

impl Script {
    /// Share of commands that failed.
    pub fn failed_share(&self) -> f64 {
        let failed: u64 = self.cmdlets.values().map(|c| c.failed).sum();
        if self.commands == 0 {
            0.0
        } else {
            failed as f64 / self.commands as f64
        }
    }

    /// The verdict and the changes, by the rules of [`migration`].
    pub fn assess(&self) -> Assessment {
        let mut blockers = Vec::new();
        let share = self.failed_share();
        if share > migration::FAILING_SHARE {
            blockers.push(format!(
                "{:.0} % of its commands fail through the proxy too: fix those first (the cmdlets \
                 below show which)",
                share * 100.0
            ));
        }
        for cmdlet in self.cmdlets.keys() {
            if !migration::supported_app_only(cmdlet) {
                blockers.push(format!(
                    "{cmdlet} is not supported with app-only authentication: it needs a \
                     delegated (user) sign-in after the move"
                ));
            }
        }
        let mut changes = vec![migration::CONNECT_CHANGE.to_owned()];
        let server_pipelines = self.pipelines.keys().any(|p| {
            p.split(" | ")
                .filter(|c| !migration::run_by_the_proxy(c))
                .count()
                > 1
        });
        if server_pipelines {
            changes.push(migration::INVOKE_COMMAND_CHANGE.to_owned());
        }
        let helpers_inside = self.pipelines.keys().any(|p| {
            p.contains(" | ")
                && p.split(" | ").any(migration::run_by_the_proxy)
                && !p.starts_with("Get-FormatData")
        });
        if helpers_inside {
            changes.push(migration::LOCAL_HELPER_CHANGE.to_owned());
        }
        let advice = self
            .cmdlets
            .keys()
            .filter_map(|c| migration::exo_alternative(c))
            .map(|a| format!("{} → {}: {}", a.cmdlet, a.exo, a.differences))
            .collect();
        let verdict = if !blockers.is_empty() {
            Verdict::Keep
        } else if changes.len() > 1 {
            Verdict::MoveWithChanges
        } else {
            Verdict::Ready
        };
        Assessment {
            verdict,
            blockers,
            changes,
            advice,
        }
    }
}
