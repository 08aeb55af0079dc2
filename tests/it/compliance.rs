//! Security & Compliance scripts through the proxy, as a user meets them (issue 17): pypsrp
//! and a Windows-PowerShell-shaped client (`support::wire`) open
//! `/compliance/powershell-liveid/` on the proxy's listener (TLS, Basic) in rest mode → the
//! S&C executor → simulated S&C (a global host that redirects each tenant to its regional
//! host, a second loopback origin per region).

use std::sync::atomic::Ordering;

use exo_authproxy::config::Mode;
use exo_authproxy::remoting::clixml::Value;
use exo_authproxy::sandbox::WorldTenant;
use serde_json::Value as Json;

use crate::support::harness::{
    APP_ID, PASSWORD, Sandboxed, SandboxedOptions, USER, client_trusting, post_soap,
};
use crate::support::python;
use crate::support::wire::{self, Cmd, Run, V, Wire, colon, prop, s, spaced, state, token};

const CONTOSO: &str = "0f9c3b1e-1111-2222-3333-444455556666";
const COMPLIANCE_PATH: &str = "/compliance/powershell-liveid/";
const POLICY_TYPE: &str = "Microsoft.Office.CompliancePolicy.Tasks.PsRetentionCompliancePolicy";

/// contoso (nam02b) and fabrikam (eur02b) hold Compliance Administrator; northwind (nam02b)
/// holds only Exchange Administrator.
fn tenants() -> Vec<WorldTenant> {
    let t = |name: &str, id: &str, directory_role| WorldTenant {
        name: name.into(),
        tenant_id: id.into(),
        directory_role,
        exchange_role: false,
        require_directory_role: false,
    };
    vec![
        t("contoso", CONTOSO, true),
        t("fabrikam", "7d2e4f60-aaaa-bbbb-cccc-ddddeeeeffff", false),
        t("northwind", "3b8a1c2d-9999-8888-7777-666655554444", true),
    ]
}

fn options(mode: Mode) -> SandboxedOptions {
    let mut options = SandboxedOptions::simulated(mode, 5);
    options.tenants = tenants();
    options.compliance_admins = vec!["contoso".into(), "fabrikam".into()];
    options
}

async fn start(mode: Mode) -> Sandboxed {
    Sandboxed::start(options(mode)).await
}

async fn pypsrp(h: &Sandboxed, org: &str, extra: &[(&str, &str)]) -> Json {
    let mut env = h.pypsrp_env(&format!("DelegatedOrg={org}"));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let out = python::run_script("compliance.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pypsrp failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn names(r: &Json, key: &str) -> Vec<String> {
    assert_eq!(r[key]["errors"], serde_json::json!([]), "{key}: {r}");
    r[key]["names"]
        .as_array()
        .unwrap_or_else(|| panic!("{key}: {r}"))
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn errors(r: &Json, key: &str) -> String {
    r[key]["errors"].to_string()
}

/// The text of a WS-Man fault the proxy made (XML-unescaped).
fn fault_text(body: &str) -> String {
    let start = body
        .find("<f:Message>")
        .map_or(0, |i| i + "<f:Message>".len());
    let end = body[start..]
        .find("</f:Message>")
        .map_or(body.len(), |i| start + i);
    body[start..end]
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
}

/// One sample of the exposition, by its exact name and labels.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn check_text(h: &Sandboxed) -> String {
    let mut out = Vec::new();
    let env = std::collections::HashMap::<String, String>::new();
    exo_authproxy::onboarding::check(&h.world.config, &env, None, &mut out)
        .await
        .expect("check runs");
    String::from_utf8(out).unwrap()
}

/// The legacy script's commands for one tenant: a listing, labels, a New- then Get- round
/// trip, an unknown identity (a normal error, not a re-discovery) and a refused eDiscovery
/// cmdlet, then 45 more commands: 51 in all, and its region is looked up once.
async fn script_runs(h: &Sandboxed, org: &str, region: &str, exchange_too: bool) {
    let r = pypsrp(
        h,
        org,
        &[
            ("REPEAT", "45"),
            ("NEW_POLICY", "Legal hold 2026"),
            ("EXCHANGE", if exchange_too { "1" } else { "0" }),
        ],
    )
    .await;
    assert_eq!(r["ok"], true, "{org}: {r}");
    assert!(
        names(&r, "policies").contains(&"Retain mail 7 years".to_owned()),
        "{r}"
    );
    assert!(
        names(&r, "labels").contains(&"Confidential".to_owned()),
        "{r}"
    );
    assert_eq!(names(&r, "get_new"), ["Legal hold 2026"], "{r}");
    assert!(errors(&r, "unknown").contains("couldn't be found"), "{r}");
    let search = errors(&r, "search");
    assert!(
        search.contains("New-ComplianceSearch")
            && search.contains("app-only")
            && search.contains("-EnableSearchOnlySession")
            && search.contains("Graph"),
        "the refusal names the reason and the alternatives: {search}"
    );
    assert_eq!(r["repeat_errors"], serde_json::json!([]), "{r}");
    if exchange_too {
        assert_eq!(names(&r, "exchange_org").len(), 1, "{r}");
        assert!(
            names(&r, "after_exchange").contains(&"Public".to_owned()),
            "{r}"
        );
    }
    assert_eq!(
        h.world.compliance.lookups(region),
        1,
        "{org}'s region {region} is discovered once across 51 commands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_scripts_run_for_two_tenants_in_two_regions_issue_17() {
    let h = start(Mode::Rest).await;
    script_runs(&h, "contoso.onmicrosoft.com", "nam02b", true).await;
    script_runs(&h, "fabrikam.onmicrosoft.com", "eur02b", false).await;
    // The New- of the first session is still there in the next one (state kept).
    let again = pypsrp(
        &h,
        "contoso.onmicrosoft.com",
        &[("NEW_POLICY", "Second policy")],
    )
    .await;
    assert!(
        names(&again, "policies").contains(&"Legal hold 2026".to_owned()),
        "{again}"
    );
    assert_eq!(h.world.compliance.lookups("nam02b"), 1);
    // Readiness and metrics show both tokens of a tenant.
    let (status, body) = h.admin_get("/healthz/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tenant contoso: ready (token usable for"),
        "{body}"
    );
    assert!(
        body.contains("tenant contoso (compliance): ready (token usable for"),
        "{body}"
    );
    let (_, metrics) = h.admin_get("/metrics").await;
    assert!(
        metrics.contains("token_usable_seconds{tenant=\"fabrikam\",audience=\"compliance\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("exo_authproxy_compliance_region_discoveries_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_region_that_fails_is_rediscovered_without_a_restart_issue_17() {
    let h = start(Mode::Rest).await;
    let sim = &h.world.compliance;
    let org = "contoso.onmicrosoft.com";
    let first = pypsrp(&h, org, &[]).await;
    names(&first, "policies");
    assert_eq!(sim.lookups("nam02b"), 1);
    // The tenant moves: its old region answers a bare 404.
    sim.move_tenant(CONTOSO, "eur02b");
    let moved = pypsrp(&h, org, &[("NEW_POLICY", "p2")]).await;
    assert!(
        names(&moved, "policies").contains(&"Retain mail 7 years".to_owned()),
        "{moved}"
    );
    assert_eq!(sim.lookups("eur02b"), 1, "re-discovered once after the 404");
    // Its new region starts failing (421) while the tenant is back home.
    sim.move_tenant(CONTOSO, "nam02b");
    sim.fail_region("eur02b", true);
    let failed_over = pypsrp(&h, org, &[("NEW_POLICY", "p3")]).await;
    names(&failed_over, "policies");
    assert_eq!(sim.lookups("nam02b"), 2, "re-discovered after the 421");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_administrator_alone_gets_the_compliance_role_fix_issue_17() {
    let h = start(Mode::Rest).await;
    let r = pypsrp(&h, "northwind.onmicrosoft.com", &[]).await;
    assert_eq!(r["opened"], true, "{r}");
    let text = errors(&r, "policies");
    assert!(
        text.contains("Compliance Administrator")
            && text.contains("not Exchange Administrator")
            && text.contains("Add-RoleGroupMember"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winrm_mode_answers_the_compliance_path_with_the_fix_issue_17() {
    let h = start(Mode::Winrm).await;
    let client = client_trusting(&h.listener_cert);
    for path in [
        "/compliance/powershell-liveid/",
        "/Compliance/PowerShell-LiveID",
    ] {
        let rsp = post_soap(
            &client,
            &h.url_for(path),
            Some((USER, PASSWORD)),
            "",
            "<s:Envelope/>",
        )
        .await;
        let code = rsp
            .headers()
            .get("X-Exo-Authproxy-Error")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = rsp.text().await.unwrap();
        assert_eq!(code.as_deref(), Some("compliance-needs-rest"), "{body}");
        assert!(
            body.contains("retired")
                && (body.contains("mode = &quot;rest&quot;") || body.contains("mode = \"rest\"")),
            "{body}"
        );
    }
}

/// `check` asks S&C itself: northwind (Exchange Administrator only) is refused by S&C with
/// the S&C role fix; contoso and fabrikam are accepted and get no note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_compliance_roles_for_a_tenant_without_them_issue_17() {
    let h = start(Mode::Rest).await;
    let before = h.world.compliance.invocations.load(Ordering::SeqCst);
    let text = check_text(&h).await;
    assert!(
        text.contains(
            "northwind (compliance): tenant northwind: Security & Compliance refused app"
        ),
        "{text}"
    );
    assert!(
        text.contains("Compliance Administrator") && text.contains("not Exchange Administrator"),
        "{text}"
    );
    assert!(!text.contains("contoso (compliance)"), "{text}");
    assert!(!text.contains("fabrikam (compliance)"), "{text}");
    assert!(
        h.world.compliance.invocations.load(Ordering::SeqCst) > before,
        "check asked S&C, not only the claims"
    );
}

/// Which permission S&C checks app-only is open (scc-rest-adminapi.md §8, question 1). When
/// S&C refuses the app's token (here: it checks Microsoft Exchange Online Protection's
/// permission), `check` asks the question with both possible fixes; the Exchange row and the
/// claims are unchanged, so only asking S&C can show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_asks_the_permission_question_when_compliance_refuses_the_app_issue_17() {
    let h = start(Mode::Rest).await;
    h.world.compliance.check_protection_permission(true);
    let text = check_text(&h).await;
    let note = text
        .split("\n\n")
        .find(|p| p.starts_with("contoso (compliance): "))
        .unwrap_or_else(|| panic!("no compliance note for contoso:\n{text}"));
    assert!(
        note.starts_with(&format!(
            "contoso (compliance): tenant contoso: Security & Compliance refused app {APP_ID} \
             app-only (HTTP 401 even with a freshly fetched token"
        )),
        "{note}"
    );
    for needle in [
        "not settled",
        "Office 365 Exchange Online (00000002-0000-0ff1-ce00-000000000000) → Exchange.ManageAsApp",
        "Microsoft Exchange Online Protection (00000007-0000-0ff1-ce00-000000000000) → Exchange.ManageAsApp",
        "grant admin consent",
    ] {
        assert!(note.contains(needle), "{needle}: {note}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("contoso ") && l.contains(" ok ")),
        "Exchange still accepts contoso:\n{text}"
    );
    // The same question reaches a script as the cmdlet's error record.
    let r = pypsrp(&h, "contoso.onmicrosoft.com", &[]).await;
    assert!(
        errors(&r, "policies").contains("00000007-0000-0ff1-ce00-000000000000"),
        "{r}"
    );
    // S&C accepts again: the note is gone.
    h.world.compliance.check_protection_permission(false);
    let text = check_text(&h).await;
    assert!(!text.contains("contoso (compliance)"), "{text}");
}

/// `require_directory_role = true` is judged per endpoint: northwind's app holds Exchange
/// Administrator, so `/powershell-liveid/` serves it, while `/compliance/powershell-liveid/`
/// refuses it up front with the S&C role fix — the same wording `check` prints — and S&C
/// never hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_directory_role_is_judged_per_endpoint_issue_17() {
    let mut options = options(Mode::Rest);
    for t in &mut options.tenants {
        t.require_directory_role = true;
    }
    let h = Sandboxed::start(options).await;
    let client = h.client();
    let org = "DelegatedOrg=northwind.onmicrosoft.com";
    let post = |path: &str| {
        let url = h.url_for(path);
        let client = client.clone();
        async move {
            let rsp = post_soap(&client, &url, Some((USER, PASSWORD)), org, "<s:Envelope/>").await;
            let code = rsp
                .headers()
                .get("X-Exo-Authproxy-Error")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (code, fault_text(&rsp.text().await.unwrap()))
        }
    };
    // Exchange: ready — a Windows session opens and runs a cmdlet.
    let (mut exo, _) = Wire::open_with_query(&h, true, org).await;
    let r = exo
        .run(&[Cmd::new("Get-OrganizationConfig", [])], None)
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(exo.close().await.status, 200);
    // S&C: refused before contacting it, with S&C's roles.
    let (code, text) = post(COMPLIANCE_PATH).await;
    assert_eq!(code.as_deref(), Some("directory-role-required"), "{text}");
    let expected_start = format!(
        "tenant northwind: refused before contacting Security & Compliance \
         (require_directory_role = true): the token of app {APP_ID} carries no directory role \
         Security & Compliance accepts; Security & Compliance accepts the directory roles \
         Compliance Administrator, Global Administrator, Global Reader, Security Administrator \
         or Security Reader — not Exchange Administrator, Exchange Recipient Administrator or \
         Helpdesk Administrator. Assign Compliance Administrator to the app's service principal \
         in northwind (northwind.onmicrosoft.com)"
    );
    assert!(text.starts_with(&expected_start), "{text}");
    assert!(
        text.contains("New-ServicePrincipal and Add-RoleGroupMember"),
        "{text}"
    );
    let sim = &h.world.compliance;
    assert_eq!(sim.invocations.load(Ordering::SeqCst), 0, "S&C never asked");
    assert_eq!(sim.lookups("nam02b"), 0, "nor its region looked up");
    // contoso holds Compliance Administrator: the same policy lets it through.
    let rsp = post_soap(
        &client,
        &h.url_for(COMPLIANCE_PATH),
        Some((USER, PASSWORD)),
        "DelegatedOrg=contoso.onmicrosoft.com",
        "<s:Envelope/>",
    )
    .await;
    assert_ne!(
        rsp.headers()
            .get("X-Exo-Authproxy-Error")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .as_deref(),
        Some("directory-role-required")
    );
    let (_, metrics) = h.admin_get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "exo_authproxy_requests_total{mode=\"rest\",endpoint=\"compliance\",outcome=\"directory-role-required\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    // `check` prints the same pre-flight text for northwind's S&C note.
    let text = check_text(&h).await;
    assert!(
        text.contains(&format!("northwind (compliance): {expected_start}")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Windows PowerShell: New-PSSession -ConnectionUri https://<proxy>/compliance/powershell-liveid/
// then Import-PSSession, as the wire shows it.
// ---------------------------------------------------------------------------------------

/// A GUID or string property's text.
fn text_of(v: &Value) -> String {
    v.as_guid()
        .map(|g| g.to_string())
        .or_else(|| v.as_text().map(str::to_owned))
        .unwrap_or_default()
}

/// A retention policy as Windows serializes a deserialized one when a script pipes
/// `Get-RetentionCompliancePolicy` output back into a proxy function.
fn windows_policy(name: &str, guid: &str) -> String {
    let name = wire::esc(name);
    format!(
        "<Obj RefId=\"0\"><TN RefId=\"0\"><T>Deserialized.{POLICY_TYPE}</T>\
         <T>Deserialized.System.Object</T></TN><ToString>{name}</ToString><Props>\
         <S N=\"Name\">{name}</S><S N=\"Identity\">{name}</S><G N=\"Guid\">{guid}</G>\
         <B N=\"Enabled\">true</B><S N=\"Mode\">Enforce</S></Props>\
         <MS><S N=\"PSComputerName\">ps.compliance.protection.outlook.com</S>\
         <G N=\"RunspaceId\">5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9</G>\
         <B N=\"PSShowComputerName\">false</B></MS></Obj>"
    )
}

/// What a pipeline's refusal said (an error record, or the state's error).
fn refusal(run: &Run) -> String {
    run.errors
        .iter()
        .chain(run.state_error.iter())
        .map(|e| e.message.clone())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// One tenant's Windows session on the compliance path. Returns the pipelines it ran and the
/// cmdlet calls it sent to S&C (the piped Set- is one call per object).
async fn windows_session(h: &Sandboxed, org: &str, exchange_side_by_side: bool) -> (u64, u64) {
    let sim = &h.world.compliance;
    let (mut w, opened) = Wire::open_at(
        h,
        &h.url_for(COMPLIANCE_PATH),
        true,
        &format!("DelegatedOrg={org}"),
    )
    .await;
    assert_eq!(opened.len(), 3, "the pool opened");
    let (mut pipelines, mut sent) = (0_u64, 0_u64);

    // Import-PSSession: GET_COMMAND_METADATA (S&C's own list), then Get-FormatData.
    let meta = w.command_metadata("*").await;
    pipelines += 1;
    assert_eq!(meta.state, state::COMPLETED, "{:?}", meta.state_error);
    let count = prop(&meta.outputs[0], "Count").as_i64().expect("Count");
    assert_eq!(usize::try_from(count).unwrap(), meta.outputs.len() - 1);
    let params = |name: &str| -> Vec<String> {
        let command = meta.outputs[1..]
            .iter()
            .find(|o| text_of(prop(o, "Name")) == name)
            .unwrap_or_else(|| panic!("{name} not in the metadata"));
        prop(command, "Parameters")
            .as_dictionary()
            .expect("Parameters")
            .iter()
            .map(|(k, _)| text_of(k))
            .collect()
    };
    for (cmdlet, wanted) in [
        (
            "Get-RetentionCompliancePolicy",
            &["Identity", "DistributionDetail", "ErrorAction"][..],
        ),
        (
            "New-RetentionCompliancePolicy",
            &["Name", "ExchangeLocation", "Comment"][..],
        ),
        (
            "Set-RetentionCompliancePolicy",
            &["Identity", "Comment"][..],
        ),
        ("Get-Label", &["Identity"][..]),
    ] {
        let got = params(cmdlet);
        for p in wanted {
            assert!(got.iter().any(|g| g == p), "{cmdlet} lacks {p}: {got:?}");
        }
    }
    assert!(
        meta.outputs[1..]
            .iter()
            .all(|o| text_of(prop(o, "Name")) != "Get-Mailbox"),
        "the S&C session exports S&C's cmdlets, not Exchange's"
    );
    let fmt = w
        .run(
            &[Cmd::new(
                "Get-FormatData",
                [
                    colon("TypeName", s("*")),
                    colon(
                        "PowerShellVersion",
                        V::Raw("<Version{N}>5.1.19041.5007</Version>".into()),
                    ),
                ],
            )],
            None,
        )
        .await;
    pipelines += 1;
    assert_eq!(fmt.state, state::COMPLETED, "{:?}", fmt.state_error);
    assert!(fmt.errors.is_empty(), "{:?}", fmt.errors);

    // The proxy functions' calls: no parameters, `-Name:` splats, bare `-Name` tokens.
    let all = w
        .run(&[Cmd::new("Get-RetentionCompliancePolicy", [])], None)
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    assert_eq!(all.state, state::COMPLETED, "{:?}", all.state_error);
    assert!(
        all.names().contains(&"Retain mail 7 years".to_owned()),
        "{:?}",
        all.names()
    );
    let first = all.outputs[0].as_object().expect("an object");
    assert_eq!(first.type_names[0], POLICY_TYPE, "{:?}", first.type_names);
    let label = w
        .run(
            &[Cmd::new(
                "Get-Label",
                [colon("Identity", s("Confidential"))],
            )],
            None,
        )
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    assert_eq!(label.names(), ["Confidential"], "{:?}", label.errors);
    let spaced_and_switch = w
        .run(
            &[Cmd::new(
                "Get-RetentionCompliancePolicy",
                spaced("Identity", s("Teams chats 1 year"))
                    .into_iter()
                    .chain([token("DistributionDetail")]),
            )],
            None,
        )
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    assert_eq!(
        spaced_and_switch.names(),
        ["Teams chats 1 year"],
        "{:?}",
        spaced_and_switch.errors
    );

    // A New- then Get- round trip.
    let new = w
        .run(
            &[Cmd::new(
                "New-RetentionCompliancePolicy",
                [
                    colon("Name", s("Legal hold 2026")),
                    colon("ExchangeLocation", V::Array(vec![s("All")])),
                    colon("Comment", s("created from Windows")),
                ],
            )],
            None,
        )
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    assert_eq!(new.state, state::COMPLETED, "{:?}", new.state_error);
    assert_eq!(new.names(), ["Legal hold 2026"], "{:?}", new.errors);
    let got = w
        .run(
            &[Cmd::new(
                "Get-RetentionCompliancePolicy",
                [colon("Identity", s("Legal hold 2026"))],
            )],
            None,
        )
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    assert_eq!(got.names(), ["Legal hold 2026"], "{:?}", got.errors);
    assert_eq!(
        prop(&got.outputs[0], "Comment").as_text(),
        Some("created from Windows")
    );

    // Get-RetentionCompliancePolicy | Set-RetentionCompliancePolicy -Comment:…: the listed
    // policies come back as deserialized objects in a compressed Send.
    let listed = w
        .run(&[Cmd::new("Get-RetentionCompliancePolicy", [])], None)
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    let objects: Vec<String> = listed
        .outputs
        .iter()
        .map(|o| windows_policy(&text_of(prop(o, "Name")), &text_of(prop(o, "Guid"))))
        .collect();
    assert_eq!(objects.len(), 3, "two seeded and the new one");
    let pid = w
        .start(
            &[Cmd::new(
                "Set-RetentionCompliancePolicy",
                [colon("Comment", s("reviewed 2026"))],
            )],
            false,
        )
        .await;
    w.input_objects(&pid, &objects, false).await;
    let set = Run::collect(w.drain(Some(&pid), 0).await);
    (pipelines, sent) = (pipelines + 1, sent + 3);
    assert_eq!(set.state, state::COMPLETED, "{:?}", set.state_error);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    let after = w
        .run(&[Cmd::new("Get-RetentionCompliancePolicy", [])], None)
        .await;
    (pipelines, sent) = (pipelines + 1, sent + 1);
    assert_eq!(after.outputs.len(), 3);
    for o in &after.outputs {
        assert_eq!(
            prop(o, "Comment").as_text(),
            Some("reviewed 2026"),
            "{}",
            text_of(prop(o, "Name"))
        );
    }

    // An eDiscovery cmdlet: refused with the reason and the alternatives, never sent.
    let invoked = sim.invocations.load(Ordering::SeqCst);
    let search = w
        .run(
            &[Cmd::new(
                "New-ComplianceSearch",
                [
                    colon("Name", s("s1")),
                    colon("ExchangeLocation", V::Array(vec![s("All")])),
                ],
            )],
            None,
        )
        .await;
    pipelines += 1;
    let text = refusal(&search);
    assert!(
        text.contains("New-ComplianceSearch")
            && text.contains("app-only")
            && text.contains("-EnableSearchOnlySession")
            && text.contains("Graph"),
        "{text}"
    );
    assert_eq!(sim.invocations.load(Ordering::SeqCst), invoked, "not sent");

    // An Exchange session of the same user, side by side (the same ShellId, as Windows
    // proposes its pool id), while the S&C session stays open.
    if exchange_side_by_side {
        let (mut exo, _) = Wire::open_with_query(h, true, &format!("DelegatedOrg={org}")).await;
        let org_config = exo
            .run(&[Cmd::new("Get-OrganizationConfig", [])], None)
            .await;
        assert_eq!(
            org_config.state,
            state::COMPLETED,
            "{:?}",
            org_config.state_error
        );
        assert_eq!(org_config.outputs.len(), 1);
        let labels = w.run(&[Cmd::new("Get-Label", [])], None).await;
        (pipelines, sent) = (pipelines + 1, sent + 1);
        assert!(labels.names().contains(&"Public".to_owned()));
        assert_eq!(exo.close().await.status, 200);
    }

    // The rest of the script: reads across the S&C nouns.
    for i in 0..16 {
        let cmdlet = [
            "Get-Label",
            "Get-ComplianceTag",
            "Get-RoleGroup",
            "Get-DlpCompliancePolicy",
        ][i % 4];
        let r = w.run(&[Cmd::new(cmdlet, [])], None).await;
        (pipelines, sent) = (pipelines + 1, sent + 1);
        assert_eq!(r.state, state::COMPLETED, "{cmdlet}: {:?}", r.state_error);
        assert!(r.errors.is_empty(), "{cmdlet}: {:?}", r.errors);
        assert!(!r.outputs.is_empty(), "{cmdlet} returned nothing");
    }
    assert_eq!(w.close().await.status, 200, "Remove-PSSession");
    (pipelines, sent)
}

/// The issue's Windows row: Xpress-compressed Sends, Import-PSSession's metadata query and
/// Get-FormatData, `-Name:` and bare-token parameters, piped deserialized objects, a New-
/// then Get- round trip and a refused eDiscovery cmdlet, for contoso (nam02b) and fabrikam
/// (eur02b): over 50 commands, each region discovered exactly once at the global host, and
/// an Exchange session of the same user side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_powershell_compliance_sessions_for_two_tenants_in_two_regions_issue_17() {
    let h = start(Mode::Rest).await;
    let sim = &h.world.compliance;
    let (p1, s1) = windows_session(&h, "contoso.onmicrosoft.com", true).await;
    let (p2, s2) = windows_session(&h, "fabrikam.onmicrosoft.com", false).await;
    assert!(p1 + p2 >= 50, "{} pipelines", p1 + p2);
    assert_eq!(
        (sim.lookups("nam02b"), sim.lookups("eur02b")),
        (1, 1),
        "each region discovered exactly once across {} commands",
        p1 + p2
    );
    assert_eq!(
        sim.invocations.load(Ordering::SeqCst),
        s1 + s2,
        "one InvokeCommand per cmdlet call, none for the refused or local commands"
    );
    let (_, metrics) = h.admin_get("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "exo_authproxy_rest_cmdlet_calls_total{endpoint=\"compliance\",cmdlet=\"Set-RetentionCompliancePolicy\",result=\"ok\"}"
        ),
        Some(6.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "exo_authproxy_rest_cmdlet_calls_total{endpoint=\"exchange\",cmdlet=\"Get-OrganizationConfig\",result=\"ok\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "exo_authproxy_requests_total{mode=\"rest\",endpoint=\"compliance\",outcome=\"ok\"}"
        )
        .is_some_and(|n| n > 100.0),
        "{metrics}"
    );
}

/// Windows names its shell after its pool, so one user's Exchange and S&C sessions carry the
/// same ShellId. The audit trail tracks sessions per endpoint: both ends are recorded, each
/// with its endpoint and its own command count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_shell_id_on_both_endpoints_keeps_both_session_ends_issue_17() {
    let mut options = options(Mode::Rest);
    options.audit_file = true;
    let mut h = Sandboxed::start(options).await;
    let query = "DelegatedOrg=contoso.onmicrosoft.com";
    let (mut scc, _) = Wire::open_at(&h, &h.url_for(COMPLIANCE_PATH), true, query).await;
    let (mut exo, _) = Wire::open_with_query(&h, true, query).await;
    for _ in 0..2 {
        let r = scc.run(&[Cmd::new("Get-Label", [])], None).await;
        assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    }
    let r = exo
        .run(&[Cmd::new("Get-OrganizationConfig", [])], None)
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(exo.close().await.status, 200);
    assert_eq!(scc.close().await.status, 200);
    drop((scc, exo));
    // Stopping the proxy flushes the audit file (both sessions are already closed).
    h.shutdown().await.expect("shutdown");
    let lines = h.audit_lines();
    let events = |event: &str| -> Vec<(String, String, u64)> {
        lines
            .iter()
            .filter(|l| l["event"] == event)
            .map(|l| {
                (
                    l["endpoint"].as_str().unwrap_or_default().to_owned(),
                    l["session"].as_str().unwrap_or_default().to_owned(),
                    l["commands"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let opened = events("session-opened");
    assert_eq!(opened.len(), 2, "{lines:?}");
    assert_eq!(opened[0].1, opened[1].1, "the same ShellId: {opened:?}");
    let mut closed = events("session-closed");
    closed.sort();
    assert_eq!(
        closed,
        [
            ("compliance".to_owned(), wire::SHELL_ID.to_owned(), 2),
            ("exchange".to_owned(), wire::SHELL_ID.to_owned(), 1),
        ],
        "{lines:?}"
    );
    let commands: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "command")
        .map(|l| l["endpoint"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        commands,
        ["compliance", "compliance", "exchange"],
        "{lines:?}"
    );
}

/// The README's list of refused S&C cmdlets is the catalog's, exactly, and each README entry
/// gets the refusal the README describes (the reason and both alternatives).
#[test]
fn readme_lists_exactly_the_refused_compliance_cmdlets_issue_17() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Security & Compliance scripts"))
        .expect("the README's compliance section");
    let list = section
        .split_once("Refused up front, never sent:")
        .expect("the refused-cmdlets paragraph")
        .1;
    let listed: Vec<&str> = list
        .lines()
        .skip_while(|l| !l.starts_with("- `"))
        .take_while(|l| l.starts_with("- `"))
        .map(|l| l.trim_start_matches("- `").trim_end_matches('`'))
        .collect();
    let mut from_readme = listed.clone();
    from_readme.sort_unstable();
    let mut from_catalog = exo_authproxy::bridge::catalog::compliance_refused_cmdlets().to_vec();
    from_catalog.sort_unstable();
    assert_eq!(from_readme, from_catalog, "README vs catalog");
    for cmdlet in listed {
        let why = exo_authproxy::bridge::catalog::compliance_refusal(cmdlet)
            .unwrap_or_else(|| panic!("{cmdlet} is not refused"));
        for needle in [
            "app-only",
            "search-only",
            "Connect-IPPSSession -EnableSearchOnlySession",
            "Microsoft Graph eDiscovery API",
        ] {
            assert!(why.contains(needle), "{cmdlet}: {needle}: {why}");
            assert!(section.contains(needle), "the README says {needle}");
        }
    }
}
