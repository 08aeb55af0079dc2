//! HTML: one self-contained file (inline CSS, inline SVG, no script), summary first, then a
//! chart of commands per script over time, then a section per script.

use std::fmt::Write as _;

use super::{Report, View, view};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:72em;color:#1b1b1b;padding:0 1em}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.num{text-align:right}.tiles{display:flex;gap:1em;flex-wrap:wrap}\
.tile{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}.tile b{display:block;font-size:1.6em}\
.ready{color:#176f2c}.move-with-changes{color:#8a5a00}.keep{color:#a4262c}.badge{font-weight:600}\
ul{margin:.3em 0}.muted{color:#666}";

const PALETTE: &[&str] = &[
    "#0063b1", "#e3008c", "#107c10", "#ff8c00", "#5c2d91", "#008575", "#a4262c", "#4a5459",
];

fn chart(v: &View) -> String {
    let mut days: Vec<&str> = v
        .scripts
        .iter()
        .flat_map(|s| s.days.iter().map(|d| d.name.as_str()))
        .collect();
    days.sort_unstable();
    days.dedup();
    if days.is_empty() {
        return "<p class=\"muted\">No commands in this period.</p>".into();
    }
    let max = v
        .scripts
        .iter()
        .flat_map(|s| s.days.iter().map(|d| d.count))
        .max()
        .unwrap_or(1)
        .max(1);
    let (w, h, left, bottom) = (720.0_f64, 240.0_f64, 48.0_f64, 40.0_f64);
    let group = (w - left) / days.len() as f64;
    let bars = v.scripts.len().max(1) as f64;
    let bar = (group * 0.8 / bars).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"commands per script per day\">",
        h + 20.0
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{w}\" y2=\"{y}\" stroke=\"#999\"/><text x=\"4\" y=\"14\" font-size=\"11\">{max}</text><text x=\"4\" y=\"{y}\" font-size=\"11\">0</text>",
        y = h - bottom
    );
    for (di, day) in days.iter().enumerate() {
        let x0 = left + di as f64 * group + group * 0.1;
        for (si, s) in v.scripts.iter().enumerate() {
            let n = s
                .days
                .iter()
                .find(|d| d.name == *day)
                .map_or(0, |d| d.count);
            if n == 0 {
                continue;
            }
            let bh = (h - bottom - 20.0) * n as f64 / max as f64;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {} commands</title></rect>",
                x0 + si as f64 * bar,
                h - bottom - bh,
                bar,
                bh,
                PALETTE[si % PALETTE.len()],
                esc(&s.user),
                day,
                n
            );
        }
        if days.len() <= 31 || di % (days.len() / 15 + 1) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>",
                x0,
                h - bottom + 14.0,
                &day[5..]
            );
        }
    }
    let mut lx = left;
    for (si, s) in v.scripts.iter().enumerate().take(PALETTE.len() * 2) {
        let _ = write!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{}</text>",
            h,
            PALETTE[si % PALETTE.len()],
            lx + 14.0,
            h + 9.0,
            esc(&s.user)
        );
        lx += 24.0 + 7.0 * s.user.chars().count().min(24) as f64;
    }
    svg.push_str("</svg>");
    svg
}

pub(in crate::report) fn html(r: &Report) -> String {
    let v = view(r);
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>exo-authproxy migration report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        o,
        "<h1>exo-authproxy migration report</h1><p class=\"muted\">{} to {} (UTC) · {} audit lines, {} skipped, {} outside the period</p>",
        esc(v.from.as_deref().unwrap_or("-")),
        esc(v.to.as_deref().unwrap_or("-")),
        v.input.lines,
        v.input.skipped,
        v.input.filtered
    );
    let s = &v.summary;
    let _ = write!(
        o,
        "<div class=\"tiles\"><div class=\"tile\"><b>{}</b>scripts</div><div class=\"tile\"><b>{}</b>sessions</div><div class=\"tile\"><b>{}</b>commands</div>\
         <div class=\"tile ready\"><b>{}</b>ready to move</div><div class=\"tile move-with-changes\"><b>{}</b>move with these changes</div>\
         <div class=\"tile keep\"><b>{}</b>keep on the proxy for now</div><div class=\"tile\"><b>{}</b>refused logins</div></div>",
        s.scripts,
        s.sessions,
        s.commands,
        s.ready,
        s.move_with_changes,
        s.keep,
        s.login_failures + s.login_throttled
    );
    let _ = write!(o, "<h2>Commands per script per day</h2>{}", chart(&v));
    let _ = write!(
        o,
        "<h2>Scripts</h2><table><tr><th>script (local user)</th><th>verdict</th><th class=\"num\">sessions</th><th class=\"num\">commands</th><th>last seen</th></tr>"
    );
    for sc in &v.scripts {
        let class = serde_json::to_value(sc.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td><a href=\"#u-{id}\">{u}</a></td><td class=\"badge {class}\">{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            sc.sessions,
            sc.commands,
            esc(sc.last_seen.as_deref().unwrap_or("-")),
            id = esc(&sc.user),
            u = esc(&sc.user),
            label = sc.verdict_label
        );
    }
    o.push_str("</table>");
    for sc in &v.scripts {
        let class = serde_json::to_value(sc.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<h2 id=\"u-{}\">{} — <span class=\"{class}\">{}</span></h2>",
            esc(&sc.user),
            esc(&sc.user),
            sc.verdict_label
        );
        let list = |items: &[super::Count]| {
            items
                .iter()
                .map(|c| format!("{} ({})", esc(&c.name), c.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            o,
            "<p>{} sessions, {} commands · first seen {} · last seen {} · tenants: {} · endpoints: {} · clients: {} · PowerShell: {}</p>",
            sc.sessions,
            sc.commands,
            esc(sc.first_seen.as_deref().unwrap_or("-")),
            esc(sc.last_seen.as_deref().unwrap_or("-")),
            esc(&sc.tenants.join(", ")),
            esc(&sc.endpoints.join(", ")),
            list(&sc.clients),
            list(&sc.powershell)
        );
        o.push_str("<ul>");
        for b in &sc.blockers {
            let _ = write!(o, "<li><b class=\"keep\">Blocker:</b> {}</li>", esc(b));
        }
        for c in &sc.changes {
            let _ = write!(o, "<li><b>Change:</b> {}</li>", esc(c));
        }
        for a in &sc.advice {
            let _ = write!(o, "<li><b>Faster:</b> {}</li>", esc(a));
        }
        o.push_str("</ul><table><tr><th>cmdlet</th><th class=\"num\">calls</th><th class=\"num\">ok</th><th class=\"num\">errors</th><th class=\"num\">failed</th><th class=\"num\">stopped</th><th class=\"num\">objects</th><th class=\"num\">error rate</th><th class=\"num\">avg ms</th><th class=\"num\">max ms</th><th>parameters</th></tr>");
        for c in &sc.cmdlets {
            let figures: String = c
                .figures()
                .iter()
                .map(|f| format!("<td class=\"num\">{}</td>", esc(f)))
                .collect();
            let _ = write!(
                o,
                "<tr><td>{}</td>{figures}<td>{}</td></tr>",
                esc(&c.name),
                list(&c.parameters)
            );
        }
        o.push_str("</table>");
        if !sc.pipelines.is_empty() {
            let _ = write!(o, "<p>Pipelines: {}</p>", list(&sc.pipelines));
        }
        if !sc.busiest_hours.is_empty() {
            let _ = write!(
                o,
                "<p>Busiest hours (UTC): {}</p>",
                sc.busiest_hours
                    .iter()
                    .map(|h| format!("{:02}:00 ({})", h.hour, h.commands))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if sc.truncated {
            o.push_str("<p class=\"muted\">Some figures are capped: the audit held more distinct names than the report keeps.</p>");
        }
    }
    o.push_str("</body></html>\n");
    o
}
