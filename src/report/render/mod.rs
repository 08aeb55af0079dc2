//! The three renderings of one [`View`]: JSON (the documented schema), Markdown and HTML.
//! The view is computed once, so the formats cannot disagree on a figure.

mod html;
mod markdown;

use std::collections::BTreeMap;

use serde::Serialize;

use super::migration::Verdict;
use super::model::{Report, Script};

pub(super) use html::html;
pub(super) use markdown::markdown;

/// Version of the JSON output's schema (docs/report.md).
pub const JSON_SCHEMA: u32 = 1;

#[derive(Serialize)]
struct Count {
    name: String,
    count: u64,
}

fn counts(map: &BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = map
        .iter()
        .map(|(k, n)| Count {
            name: k.clone(),
            count: *n,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

#[derive(Serialize)]
struct CmdletView {
    name: String,
    calls: u64,
    ok: u64,
    errors: u64,
    failed: u64,
    stopped: u64,
    objects: u64,
    error_rate: f64,
    avg_ms: Option<u64>,
    max_ms: Option<u64>,
    parameters: Vec<Count>,
    exo_alternative: Option<&'static str>,
}

impl CmdletView {
    /// The figures of a table row, formatted once for every rendering: calls, ok, errors,
    /// failed, stopped, objects, error rate, average and longest duration.
    fn figures(&self) -> [String; 9] {
        let ms = |m: Option<u64>| m.map_or("-".into(), |m| m.to_string());
        [
            self.calls.to_string(),
            self.ok.to_string(),
            self.errors.to_string(),
            self.failed.to_string(),
            self.stopped.to_string(),
            self.objects.to_string(),
            format!("{:.1} %", self.error_rate * 100.0),
            ms(self.avg_ms),
            ms(self.max_ms),
        ]
    }
}

#[derive(Serialize)]
struct HourCount {
    hour: u32,
    commands: u64,
}

#[derive(Serialize)]
struct ScriptView {
    user: String,
    verdict: Verdict,
    verdict_label: &'static str,
    blockers: Vec<String>,
    changes: Vec<String>,
    advice: Vec<String>,
    sessions: u64,
    commands: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    tenants: Vec<String>,
    endpoints: Vec<String>,
    modes: Vec<String>,
    clients: Vec<Count>,
    powershell: Vec<Count>,
    cmdlets: Vec<CmdletView>,
    pipelines: Vec<Count>,
    busiest_hours: Vec<HourCount>,
    slowest: Vec<Count>,
    days: Vec<Count>,
    truncated: bool,
}

#[derive(Serialize)]
struct Summary {
    scripts: usize,
    sessions: u64,
    commands: u64,
    login_failures: u64,
    login_throttled: u64,
    ready: usize,
    move_with_changes: usize,
    keep: usize,
}

#[derive(Serialize)]
struct Input {
    lines: u64,
    skipped: u64,
    filtered: u64,
    other_users_records: u64,
}

#[derive(Serialize)]
struct View {
    schema: u32,
    from: Option<String>,
    to: Option<String>,
    input: Input,
    summary: Summary,
    scripts: Vec<ScriptView>,
}

fn rfc3339(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn script_view(user: &str, s: &Script) -> ScriptView {
    let a = s.assess();
    let mut cmdlets: Vec<CmdletView> = s
        .cmdlets
        .iter()
        .map(|(name, c)| CmdletView {
            name: name.clone(),
            calls: c.calls,
            ok: c.ok,
            errors: c.errors,
            failed: c.failed,
            stopped: c.stopped,
            objects: c.objects,
            error_rate: if c.calls == 0 {
                0.0
            } else {
                ((c.errors + c.failed) as f64 / c.calls as f64 * 1000.0).round() / 1000.0
            },
            avg_ms: (c.timed > 0).then(|| c.total_ms / c.timed),
            max_ms: (c.timed > 0).then_some(c.max_ms),
            parameters: counts(&c.parameters),
            exo_alternative: super::migration::exo_alternative(name).map(|a| a.exo),
        })
        .collect();
    cmdlets.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
    let mut hours: Vec<HourCount> = (0u32..24)
        .map(|h| HourCount {
            hour: h,
            commands: s.hours[h as usize],
        })
        .filter(|h| h.commands > 0)
        .collect();
    hours.sort_by(|a, b| b.commands.cmp(&a.commands).then(a.hour.cmp(&b.hour)));
    hours.truncate(3);
    let mut slowest: Vec<Count> = s
        .cmdlets
        .iter()
        .filter(|(_, c)| c.timed > 0)
        .map(|(n, c)| Count {
            name: n.clone(),
            count: c.max_ms,
        })
        .collect();
    slowest.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    slowest.truncate(5);
    ScriptView {
        user: user.to_owned(),
        verdict: a.verdict,
        verdict_label: a.verdict.label(),
        blockers: a.blockers,
        changes: a.changes,
        advice: a.advice,
        sessions: s.sessions,
        commands: s.commands,
        first_seen: rfc3339(s.first_seen),
        last_seen: rfc3339(s.last_seen),
        tenants: s.tenants.iter().cloned().collect(),
        endpoints: s.endpoints.iter().cloned().collect(),
        modes: s.modes.iter().cloned().collect(),
        clients: counts(&s.clients),
        powershell: counts(&s.powershell),
        cmdlets,
        pipelines: counts(&s.pipelines),
        busiest_hours: hours,
        slowest,
        days: s
            .days
            .iter()
            .map(|(d, n)| Count {
                name: d.clone(),
                count: *n,
            })
            .collect(),
        truncated: s.truncated,
    }
}

fn view(r: &Report) -> View {
    let scripts: Vec<ScriptView> = r.scripts.iter().map(|(u, s)| script_view(u, s)).collect();
    let n = |v: Verdict| scripts.iter().filter(|s| s.verdict == v).count();
    View {
        schema: JSON_SCHEMA,
        from: rfc3339(r.first_seen),
        to: rfc3339(r.last_seen),
        input: Input {
            lines: r.lines,
            skipped: r.skipped,
            filtered: r.filtered,
            other_users_records: r.other_records,
        },
        summary: Summary {
            scripts: scripts.len(),
            sessions: scripts.iter().map(|s| s.sessions).sum(),
            commands: scripts.iter().map(|s| s.commands).sum(),
            login_failures: r.login_failures,
            login_throttled: r.login_throttled,
            ready: n(Verdict::Ready),
            move_with_changes: n(Verdict::MoveWithChanges),
            keep: n(Verdict::Keep),
        },
        scripts,
    }
}

/// The JSON rendering.
pub(super) fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(&view(r)).expect("the view serializes");
    s.push('\n');
    s
}
