//! Security & Compliance scripts through the proxy, as a user meets them (issue 17): the real
//! pypsrp client opens `/compliance/powershell-liveid/` on the proxy's listener (TLS, Basic)
//! in rest mode → the S&C executor → simulated S&C (a global host that redirects each tenant
//! to its regional host, a second loopback origin per region).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use exo_authproxy::config::Mode;
use exo_authproxy::sandbox::{RunningProxy, World, WorldOptions, WorldTenant};
use serde_json::Value as Json;
use tokio::net::TcpListener;

use crate::support::harness::{PASSWORD, USER, admin_get, client_trusting, post_soap};
use crate::support::python;

const CONTOSO: &str = "0f9c3b1e-1111-2222-3333-444455556666";

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

struct Scc {
    world: World,
    proxy: SocketAddr,
    admin: SocketAddr,
    cert: PathBuf,
    _running: RunningProxy,
    _dir: tempfile::TempDir,
}

async fn start(mode: Mode) -> Scc {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(5);
    let mut options = WorldOptions::new(mode, listener.local_addr().unwrap(), rps);
    options.password = PASSWORD.into();
    options.adminapi = Some(adminapi);
    options.tenants = tenants();
    options.compliance_admins = vec!["contoso".into(), "fabrikam".into()];
    let world = World::start(dir.path(), options).await.expect("world");
    let (prepared, _tokens) = world.prepare_for_mode().expect("prepare");
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = RunningProxy::spawn(prepared, listener, admin, Duration::from_secs(10)).unwrap();
    Scc {
        proxy: running.proxy,
        admin: running.admin,
        cert: running.listener_cert.clone().expect("tls"),
        world,
        _running: running,
        _dir: dir,
    }
}

impl Scc {
    async fn pypsrp(&self, org: &str, extra: &[(&str, &str)]) -> Json {
        let mut env: Vec<(String, String)> = vec![
            ("PROXY_HOST".into(), "127.0.0.1".into()),
            ("PROXY_PORT".into(), self.proxy.port().to_string()),
            ("PROXY_USER".into(), USER.into()),
            ("PROXY_PASSWORD".into(), PASSWORD.into()),
            ("PROXY_CA".into(), self.cert.display().to_string()),
            ("PROXY_QUERY".into(), format!("DelegatedOrg={org}")),
        ];
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

/// The legacy script's commands for one tenant: a listing, labels, a New- then Get- round
/// trip, an unknown identity (a normal error, not a re-discovery) and a refused eDiscovery
/// cmdlet, then 45 more commands: 51 in all, and its region is looked up once.
async fn script_runs(scc: &Scc, org: &str, region: &str, exchange_too: bool) {
    let r = scc
        .pypsrp(
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
        scc.world.compliance.lookups(region),
        1,
        "{org}'s region {region} is discovered once across 51 commands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_scripts_run_for_two_tenants_in_two_regions_issue_17() {
    let scc = start(Mode::Rest).await;
    script_runs(&scc, "contoso.onmicrosoft.com", "nam02b", true).await;
    script_runs(&scc, "fabrikam.onmicrosoft.com", "eur02b", false).await;
    // The New- of the first session is still there in the next one (state kept).
    let again = scc
        .pypsrp(
            "contoso.onmicrosoft.com",
            &[("NEW_POLICY", "Second policy")],
        )
        .await;
    assert!(
        names(&again, "policies").contains(&"Legal hold 2026".to_owned()),
        "{again}"
    );
    assert_eq!(scc.world.compliance.lookups("nam02b"), 1);
    // Readiness and metrics show both tokens of a tenant.
    let (status, body) = admin_get(scc.admin, "/healthz/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tenant contoso: ready (token usable for"),
        "{body}"
    );
    assert!(
        body.contains("tenant contoso (compliance): ready (token usable for"),
        "{body}"
    );
    let (_, metrics) = admin_get(scc.admin, "/metrics").await;
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
    let scc = start(Mode::Rest).await;
    let sim = &scc.world.compliance;
    let org = "contoso.onmicrosoft.com";
    let first = scc.pypsrp(org, &[]).await;
    names(&first, "policies");
    assert_eq!(sim.lookups("nam02b"), 1);
    // The tenant moves: its old region answers a bare 404.
    sim.move_tenant(CONTOSO, "eur02b");
    let moved = scc.pypsrp(org, &[("NEW_POLICY", "p2")]).await;
    assert!(
        names(&moved, "policies").contains(&"Retain mail 7 years".to_owned()),
        "{moved}"
    );
    assert_eq!(sim.lookups("eur02b"), 1, "re-discovered once after the 404");
    // Its new region starts failing (421) while the tenant is back home.
    sim.move_tenant(CONTOSO, "nam02b");
    sim.fail_region("eur02b", true);
    let failed_over = scc.pypsrp(org, &[("NEW_POLICY", "p3")]).await;
    names(&failed_over, "policies");
    assert_eq!(sim.lookups("nam02b"), 2, "re-discovered after the 421");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_administrator_alone_gets_the_compliance_role_fix_issue_17() {
    let scc = start(Mode::Rest).await;
    let r = scc.pypsrp("northwind.onmicrosoft.com", &[]).await;
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
    let scc = start(Mode::Winrm).await;
    let client = client_trusting(&scc.cert);
    for path in [
        "/compliance/powershell-liveid/",
        "/Compliance/PowerShell-LiveID",
    ] {
        let url = format!("https://127.0.0.1:{}{path}", scc.proxy.port());
        let rsp = post_soap(&client, &url, Some((USER, PASSWORD)), "", "<s:Envelope/>").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_compliance_roles_for_a_tenant_without_them_issue_17() {
    let scc = start(Mode::Rest).await;
    let mut out = Vec::new();
    let env = std::collections::HashMap::<String, String>::new();
    exo_authproxy::onboarding::check(&scc.world.config, &env, None, &mut out)
        .await
        .expect("check runs");
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(
            "northwind (compliance): tenant northwind: Security & Compliance will refuse"
        ),
        "{text}"
    );
    assert!(text.contains("Compliance Administrator"), "{text}");
    assert!(!text.contains("contoso (compliance)"), "{text}");
    assert!(!text.contains("fabrikam (compliance)"), "{text}");
}
