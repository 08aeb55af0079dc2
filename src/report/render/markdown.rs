//! Markdown: for tickets and wikis.

use std::fmt::Write as _;

use super::{Report, View, view};

/// Escapes table-breaking characters.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One line of text outside a table.
fn line(s: &str) -> String {
    s.replace('\n', " ")
}

pub(in crate::report) fn markdown(r: &Report) -> String {
    let v: View = view(r);
    let mut out = String::new();
    let _ = writeln!(out, "# exo-authproxy migration report\n");
    let _ = writeln!(
        out,
        "Period: {} to {} (UTC). {} audit lines read, {} skipped, {} outside the period.\n",
        v.from.as_deref().unwrap_or("-"),
        v.to.as_deref().unwrap_or("-"),
        v.input.lines,
        v.input.skipped,
        v.input.filtered
    );
    let s = &v.summary;
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "| scripts | sessions | commands | ready to move | move with these changes | keep on the proxy for now | refused logins |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        s.scripts,
        s.sessions,
        s.commands,
        s.ready,
        s.move_with_changes,
        s.keep,
        s.login_failures + s.login_throttled
    );
    for sc in &v.scripts {
        let _ = writeln!(out, "## {} — {}\n", cell(&sc.user), sc.verdict_label);
        let _ = writeln!(
            out,
            "{} sessions, {} commands, first seen {}, last seen {}; tenants: {}; endpoints: {}; clients: {}; PowerShell: {}.\n",
            sc.sessions,
            sc.commands,
            sc.first_seen.as_deref().unwrap_or("-"),
            sc.last_seen.as_deref().unwrap_or("-"),
            cell(&sc.tenants.join(", ")),
            cell(&sc.endpoints.join(", ")),
            cell(
                &sc.clients
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            cell(
                &sc.powershell
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        for b in &sc.blockers {
            let _ = writeln!(out, "- **Blocker:** {}", line(b));
        }
        for c in &sc.changes {
            let _ = writeln!(out, "- **Change:** {}", line(c));
        }
        for a in &sc.advice {
            let _ = writeln!(out, "- **Faster:** {}", line(a));
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| cmdlet | calls | ok | errors | failed | stopped | objects | error rate | avg ms | max ms | parameters |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for c in &sc.cmdlets {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&c.name),
                c.figures().join(" | "),
                cell(
                    &c.parameters
                        .iter()
                        .map(|p| format!("{} ({})", p.name, p.count))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if !sc.pipelines.is_empty() {
            let _ = writeln!(
                out,
                "\nPipelines: {}",
                sc.pipelines
                    .iter()
                    .map(|p| format!("`{}` ×{}", p.name.replace(['`', '\n'], " "), p.count))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !sc.busiest_hours.is_empty() {
            let _ = writeln!(
                out,
                "\nBusiest hours (UTC): {}",
                sc.busiest_hours
                    .iter()
                    .map(|h| format!("{:02}:00 ({})", h.hour, h.commands))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if sc.truncated {
            let _ = writeln!(
                out,
                "\n(Some figures are capped: the audit held more distinct names than the report keeps.)"
            );
        }
        let _ = writeln!(out);
    }
    out
}
