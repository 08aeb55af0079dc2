//! The commands the proxy runs itself and pipelines, as a user meets them: the real pypsrp
//! client → the proxy's listener (TLS, Basic) in rest mode → the REST bridge → simulated
//! Exchange's admin API. One test per README rest-mode row about local commands and
//! pipelines (issue 11), plus the pathological wildcard through GET_COMMAND_METADATA
//! (issue 12).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use exo_authproxy::sandbox::data::ExchangeData;
use serde_json::{Value as Json, json};

use crate::support::harness::{Sandboxed, SandboxedOptions};
use crate::support::python;

/// Mailboxes per tenant: three REST pages of 1,000.
const MAILBOXES: usize = 2500;

async fn start() -> (Sandboxed, Arc<ExchangeData>) {
    let (data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(MAILBOXES);
    let h = Sandboxed::start(SandboxedOptions {
        mode: exo_authproxy::config::Mode::Rest,
        rps,
        adminapi: Some(adminapi),
        ..SandboxedOptions::default()
    })
    .await;
    (h, data)
}

async fn pypsrp(h: &Sandboxed, scenario: &str) -> Json {
    let mut env = h.pypsrp_env("");
    env.push(("SCENARIO".into(), scenario.into()));
    let out = python::run_script("local_cmdlets.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypsrp {scenario} failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// Completed (4) without errors.
fn completed(r: &Json, key: &str) -> Vec<Json> {
    let v = &r[key];
    assert_eq!(v["state"], 4, "{key}: {v}");
    assert_eq!(v["errors"], json!([]), "{key}: {v}");
    v["output"].as_array().cloned().unwrap_or_default()
}

/// Property names of a pypsrp object (adapted, then extended).
fn property_names(o: &Json) -> Vec<String> {
    ["adapted", "extended"]
        .iter()
        .flat_map(|k| o[k].as_object().into_iter().flatten())
        .map(|(k, _)| k.clone())
        .collect()
}

/// Every README rest-mode row about `Select-Object`, `Measure-Object`, `Get-FormatData`,
/// pipelines and script blocks, in one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_rest_mode_rows_for_local_commands_and_pipelines_issue_11() {
    let (h, _data) = start().await;
    let r = pypsrp(&h, "table").await;

    // `… | Select-Object -ExpandProperty` — a scalar emits the value…
    let out = completed(&r, "expand_scalar");
    assert_eq!(
        out,
        vec![json!("AdeleV@contoso.com"), json!("AlexW@contoso.com")],
        "issue 11: whole mailboxes came back"
    );
    // …a list property each element…
    assert_eq!(
        completed(&r, "expand_list"),
        vec![
            json!("SMTP:AdeleV@contoso.com"),
            json!("smtp:AdeleV@contoso.onmicrosoft.com")
        ]
    );
    // …and a missing one PowerShell's non-terminating error per object.
    let missing = &r["expand_missing"];
    assert_eq!(missing["state"], 4, "{missing}");
    assert_eq!(missing["output"], json!([]), "{missing}");
    let errors = missing["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{missing}");
    assert_eq!(
        errors[0]["fq_error"],
        "ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand"
    );
    assert_eq!(
        errors[0]["message"],
        "Property \"NoSuchProperty\" cannot be found."
    );

    // `Select-Object Name,Primary*`: the wildcard expands, in the object's order; the result
    // is a Selected.<type> PSCustomObject with exactly those note properties.
    for key in ["property_wildcard", "property_windows"] {
        let out = completed(&r, key);
        assert_eq!(out.len(), 2, "{key}");
        assert_eq!(
            out[0]["types"],
            json!([
                "Selected.Microsoft.Exchange.Data.Directory.Management.Mailbox",
                "System.Management.Automation.PSCustomObject",
                "System.Object"
            ]),
            "{key}"
        );
        assert_eq!(
            out[0]["extended"],
            json!({"Name": "AdeleV", "PrimarySmtpAddress": "AdeleV@contoso.com"}),
            "{key}: issue 11 gave a property literally named Primary*"
        );
        assert_eq!(out[0]["adapted"], json!({}), "{key}");
        assert_eq!(out[1]["extended"]["Name"], "AlexW", "{key}");
    }
    assert_eq!(
        completed(&r, "property_positional")[0]["extended"],
        json!({"DisplayName": "Adele Vance"})
    );
    // A literal name the object lacks is a $null property; a wildcard matching nothing adds
    // nothing.
    assert_eq!(
        completed(&r, "property_missing_literal")[0]["extended"],
        json!({"Name": "AdeleV", "NoSuchProperty": null})
    );

    // -ExcludeProperty alone (PowerShell 7) and with -Property *.
    let plain = completed(&r, "plain");
    let all_names = property_names(&plain[0]);
    assert!(all_names.len() > 10, "{all_names:?}");
    let excluded = completed(&r, "exclude");
    let expected: Vec<String> = all_names.iter().filter(|n| *n != "Name").cloned().collect();
    assert_eq!(
        property_names(&excluded[0]),
        expected,
        "issue 11: every property came back"
    );
    let expected: Vec<String> = all_names
        .iter()
        .filter(|n| *n != "Name" && !n.contains("Address"))
        .cloned()
        .collect();
    assert_eq!(
        property_names(&completed(&r, "exclude_with_star")[0]),
        expected
    );

    // -First, -Skip, -Last, -SkipLast, -Index, -Unique.
    let names = |key: &str| -> Vec<String> {
        completed(&r, key)
            .iter()
            .map(|o| o["adapted"]["Name"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let ten = [
        "AdeleV",
        "AlexW",
        "DiegoS",
        "GradyA",
        "IsaiahL",
        "JohannaL",
        "LeeG",
        "MeganB",
        "info",
        "user00009",
    ];
    assert_eq!(names("first"), ten[..3]);
    assert_eq!(names("first_windows"), ten[..2]);
    assert_eq!(names("skip_first"), ten[2..4]);
    assert_eq!(names("last"), ten[8..]);
    assert_eq!(names("skip_last"), ten[..1]);
    assert_eq!(names("index"), [ten[1], ten[4]]);
    let unique = completed(&r, "unique");
    let values: Vec<&Json> = unique
        .iter()
        .map(|o| &o["extended"]["RecipientTypeDetails"])
        .collect();
    let distinct: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), values.len(), "{values:?}");
    assert!(!values.is_empty());
    // Mid-pipeline and trailing Select-Object in one statement.
    assert_eq!(
        completed(&r, "mid_and_trailing"),
        vec![json!("AlexW"), json!("DiegoS"), json!("GradyA")]
    );

    // `| Measure-Object`: a GenericMeasureInfo with Count; with -Property -Sum, the sum.
    let measure = completed(&r, "measure");
    assert_eq!(
        measure[0]["types"][0],
        "Microsoft.PowerShell.Commands.GenericMeasureInfo"
    );
    assert_eq!(measure[0]["adapted"]["Count"], 10);
    assert_eq!(measure[0]["adapted"]["Sum"], Json::Null);
    let stats = completed(&r, "stats");
    let counts: Vec<i64> = stats
        .iter()
        .map(|s| s["adapted"]["ItemCount"].as_i64().expect("ItemCount"))
        .collect();
    assert_eq!(counts.len(), 3);
    let sum = completed(&r, "measure_sum");
    assert_eq!(sum.len(), 1);
    let info = &sum[0]["adapted"];
    assert_eq!(info["Count"], 3, "{info}");
    assert_eq!(info["Property"], "ItemCount");
    assert_eq!(
        info["Sum"].as_f64(),
        Some(counts.iter().sum::<i64>() as f64)
    );
    assert_eq!(
        info["Maximum"].as_f64(),
        counts.iter().max().map(|m| *m as f64)
    );
    assert_eq!(info["Average"], Json::Null, "not asked for");

    // Calculated properties: a property name as Expression renames; a script block is
    // refused as RPS's NoLanguage runspace refused it.
    assert_eq!(
        completed(&r, "calculated_renamed")[0]["extended"],
        json!({"Name": "AdeleV", "Mail": "AdeleV@contoso.com"})
    );
    let script = &r["calculated_script"];
    assert_eq!(script["state"], 5, "Failed: {script}");
    assert_eq!(
        script["errors"][0]["fq_error"], "ScriptsNotAllowed",
        "{script}"
    );
    assert_eq!(script["output"], json!([]));
    let script = &r["where_script"];
    assert_eq!(script["state"], 5, "{script}");
    assert_eq!(script["errors"][0]["fq_error"], "ScriptsNotAllowed");

    assert_eq!(completed(&r, "out_null"), Vec::<Json>::new());

    // `Get-FormatData` (Import-PSSession): no format data, and its count through
    // Measure-Object is 0.
    assert_eq!(completed(&r, "format_data"), Vec::<Json>::new());
    assert_eq!(completed(&r, "format_data_count")[0]["adapted"]["Count"], 0);

    // `Get-Mailbox -ResultSize 3 | Set-Mailbox -X y` and `$list | Set-Mailbox -X y`.
    assert_eq!(completed(&r, "pipeline"), Vec::<Json>::new());
    assert_eq!(
        completed(&r, "pipeline_check"),
        vec![json!("AdeleV"), json!("AlexW"), json!("DiegoS")]
    );
    completed(&r, "input");
    assert_eq!(completed(&r, "input_check")[0]["adapted"]["Count"], 2);
    // `Get-Command` (the restricted runspace's own): the tenant's commands, as CmdletInfo.
    let listed: Vec<String> = completed(&r, "get_command")
        .iter()
        .map(|n| n.as_str().expect("a name").to_owned())
        .collect();
    assert!(
        listed.contains(&"Get-Mailbox".to_owned())
            && listed.contains(&"Get-MailboxStatistics".to_owned()),
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|n| n.starts_with("Get-Mailbox")),
        "{listed:?}"
    );
    let mut sorted = listed.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(listed, sorted, "sorted by name, as PowerShell lists them");
    let info = completed(&r, "get_command_info");
    assert_eq!(info.len(), 1);
    assert_eq!(
        info[0]["types"][0],
        "System.Management.Automation.CmdletInfo"
    );
    assert_eq!(info[0]["adapted"]["Name"], "Get-Mailbox");
    assert_eq!(info[0]["adapted"]["Noun"], "Mailbox");
    let parameters = info[0]["adapted"]["Parameters"]
        .as_object()
        .expect("Parameters dictionary");
    assert!(parameters.contains_key("ResultSize"), "{parameters:?}");
    let missing = &r["get_command_missing"];
    assert_eq!(missing["state"], 4, "{missing}");
    assert_eq!(
        missing["errors"][0]["fq_error"],
        "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand"
    );
    // Client input straight into a local command.
    assert_eq!(completed(&r, "input_select"), vec![json!("a"), json!("b")]);
}

/// Issue 11: a trailing `Select-Object -First 1` kept fetching every page. Now the first
/// object ends the statement: the bridge stops before asking for page two (its look-ahead
/// request is started only while a page is still being handed downstream, and the first
/// object needs no wait), so Exchange serves exactly one page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_select_first_stops_paging_issue_11() {
    let (h, data) = start().await;
    let r = pypsrp(&h, "first").await;
    assert_eq!(r["state"], 4, "{r}");
    let out = r["output"].as_array().expect("output");
    assert_eq!(out.len(), 1, "{r}");
    assert_eq!(out[0]["adapted"]["Name"], "AdeleV");
    assert_eq!(data.stats.invoke_requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        data.stats.page_requests.load(Ordering::SeqCst),
        0,
        "no follow-up page requested"
    );

    // The control: without -First the same command reads all three pages.
    let r = pypsrp(&h, "all").await;
    assert_eq!(r["output"][0]["adapted"]["Count"], MAILBOXES, "{r}");
    assert_eq!(data.stats.page_requests.load(Ordering::SeqCst), 2);
}

/// Issue 12: `**********Q` took 58 s of CPU in GET_COMMAND_METADATA and two such requests
/// froze the proxy. Through the listener they now answer (nothing matches), and the same
/// matcher still finds what does match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_metadata_patterns_answer_issue_12() {
    let (h, _data) = start().await;
    // Two hostile sessions at once (the case that froze the proxy), while the admin probe
    // and an ordinary session keep being answered.
    let probing = async {
        let mut answered = 0;
        for _ in 0..20 {
            let (status, _) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                h.admin_get("/healthz/liveness"),
            )
            .await
            .expect("/healthz/liveness answers while the patterns run");
            assert_eq!(status, 200);
            answered += 1;
            tokio::task::yield_now().await;
        }
        answered
    };
    let (r, r2, other, answered) = tokio::join!(
        pypsrp(&h, "metadata"),
        pypsrp(&h, "metadata"),
        pypsrp(&h, "first"),
        probing
    );
    assert_eq!(answered, 20);
    assert_eq!(r, r2, "both hostile sessions got the same answers");
    assert_eq!(
        other["output"].as_array().map(Vec::len),
        Some(1),
        "the ordinary session ran meanwhile: {other}"
    );
    assert_eq!(r["stars_q"], json!([]), "{r}");
    assert_eq!(r["stars_questions_q"], json!([]), "{r}");
    assert_eq!(r["long_stars_q"], json!([]), "{r}");
    let x: Vec<&str> = r["stars_x"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert!(x.contains(&"Get-Mailbox"), "{x:?}");
    assert!(
        x.iter().all(|n| n.to_ascii_lowercase().ends_with('x')),
        "{x:?}"
    );
    assert_eq!(r["set"], json!(["Get-Mailbox"]));
    // Out-Null runs when sent but is not offered: Import-PSSession -AllowClobber would
    // otherwise replace the client's own Out-Null with a remote proxy.
    assert_eq!(r["out"], json!(["Out-Default"]));
}
