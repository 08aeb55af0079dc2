//! The real client: pypsrp → the project's remoting endpoint → the REST bridge → the
//! simulated admin API over HTTPS (rest mode), and the same script against the endpoint over
//! the simulated RPS runspace (what winrm mode reaches), compared object for object.
//! (Once the proxy harness is merged these run through the proxy's listener as well.)

use std::sync::Arc;
use std::sync::atomic::Ordering;

use exo_authproxy::bridge::{RestExecutor, RestSettings};
use exo_authproxy::remoting::{Executor, Settings};
use exo_authproxy::sandbox::data::ExchangeData;
use exo_authproxy::sandbox::rps::RpsExecutor;
use serde_json::Value as Json;

use super::server::{AdminApi, TestTokens, app, caller};
use crate::support::{endpoint, python};

async fn pypsrp<E: Executor>(exec: Arc<E>, caller: E::Caller, scenario: &str) -> Json {
    let server = endpoint::serve(exec, Settings::default(), caller).await;
    let out = python::run_script(
        "bridge.py",
        vec![
            ("EXO_HOST".into(), "127.0.0.1".into()),
            ("EXO_PORT".into(), server.addr.port().to_string()),
            ("EXO_CA".into(), server.ca_path.display().to_string()),
            ("SCENARIO".into(), scenario.into()),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypsrp {scenario} failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

async fn rest(mailboxes: usize) -> (AdminApi, Arc<RestExecutor<TestTokens>>) {
    let api = AdminApi::start(Arc::new(ExchangeData::new(mailboxes))).await;
    let exec = Arc::new(RestExecutor::new(
        api.http_client(),
        Arc::new(TestTokens::default()),
        RestSettings::new(api.url.clone()),
    ));
    (api, exec)
}

fn bodies(api: &AdminApi, cmdlet: &str) -> Vec<Json> {
    api.data
        .stats
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["CmdletInput"]["CmdletName"] == cmdlet)
        .map(|b| b["CmdletInput"]["Parameters"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_through_the_bridge_issue_6_list() {
    let (api, exec) = rest(10_000).await;
    api.data.knobs.throttle_next.store(1, Ordering::SeqCst);
    api.data.knobs.retry_after_secs.store(1, Ordering::SeqCst);
    let r = pypsrp(exec, caller(), "issue6").await;

    // 1 object, after a 429 answered with Retry-After.
    let one = &r["one"];
    assert_eq!(
        (one["count"].as_u64(), one["state"].as_u64()),
        (Some(1), Some(4)),
        "{one}"
    );
    assert_eq!(
        api.data.knobs.throttle_next.load(Ordering::SeqCst),
        0,
        "the 429 was served and retried"
    );
    let m = &one["output"][0];
    // pypsrp keeps the type names as sent (Windows PowerShell adds `Deserialized.` itself).
    assert_eq!(
        m["types"][0], "Microsoft.Exchange.Data.Directory.Management.Mailbox",
        "{m}"
    );
    assert_eq!(m["to_string"], "AdeleV");
    assert_eq!(m["adapted"]["DisplayName"], "Adele Vance");
    assert_eq!(
        m["adapted"]["EmailAddresses"],
        serde_json::json!([
            "SMTP:AdeleV@contoso.com",
            "smtp:AdeleV@contoso.onmicrosoft.com"
        ])
    );
    assert_eq!(
        m["adapted"]["WhenCreated"], "2024-01-01T00:00:00.0000000+00:00",
        "{m}"
    );
    assert_eq!(m["adapted"]["HiddenFromAddressListsEnabled"], false);
    // 0 and 10,000.
    assert_eq!(
        (r["zero"]["count"].as_u64(), r["zero"]["state"].as_u64()),
        (Some(0), Some(4))
    );
    assert_eq!(r["all"]["count"], 10_000);
    assert_eq!(r["all"]["last"]["adapted"]["Name"], "user09999");
    assert!(api.data.stats.page_requests.load(Ordering::SeqCst) >= 9);
    // Unknown identity: an error record with Exchange's text; -ErrorAction Stop fails.
    let unknown = &r["unknown"];
    assert_eq!(unknown["state"], 4, "{unknown}");
    let msg = unknown["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "The operation couldn't be performed because object 'nosuchuser' couldn't be found on"
        ),
        "{unknown}"
    );
    assert!(
        unknown["errors"][0]["fq_error"]
            .as_str()
            .unwrap_or_default()
            .ends_with(",Microsoft.Exchange.Management.RecipientTasks.GetMailbox")
    );
    assert_eq!(r["stop"]["state"], 5, "{}", r["stop"]);
    // Set then Get; repeating warns.
    assert_eq!(r["set"]["state"], 4, "{}", r["set"]);
    assert_eq!(
        r["after_set"]["output"][0]["adapted"]["CustomAttribute1"],
        "via-pypsrp"
    );
    assert_eq!(
        r["no_change"]["warnings"],
        serde_json::json!([
            "The command completed successfully but no settings of 'AlexW' have been modified."
        ])
    );
    // Switch / array / hashtable arrive typed.
    assert_eq!(r["types"]["state"], 4, "{}", r["types"]);
    let p = bodies(&api, "Set-Mailbox")
        .into_iter()
        .find(|p| p["Identity"] == "DiegoS")
        .expect("DiegoS set");
    assert_eq!(p["Force"], true, "{p}");
    assert_eq!(p["Languages"], serde_json::json!(["en-US", "fr-FR"]));
    assert_eq!(
        p["EmailAddresses"]["@odata.type"],
        "#Exchange.GenericHashTable"
    );
    assert_eq!(p["EmailAddresses"]["Add"], "smtp:diego2@contoso.com");
    assert_eq!(p["HiddenFromAddressListsEnabled"], true);
    // Two-cmdlet pipeline and client pipeline input.
    assert_eq!(r["pipeline"]["state"], 4, "{}", r["pipeline"]);
    assert_eq!(r["piped_check"]["count"], 10);
    assert_eq!(r["input"]["state"], 4, "{}", r["input"]);
    assert_eq!(
        r["input"]["errors"].as_array().map(Vec::len),
        Some(1),
        "one bad identity among three: {}",
        r["input"]
    );
    assert_eq!(r["input_check"]["count"], 2);
    // Command metadata.
    let meta = r["metadata"].as_array().expect("metadata");
    let gm = meta
        .iter()
        .find(|m| m["name"] == "Get-Mailbox")
        .expect("Get-Mailbox");
    let params: Vec<&str> = gm["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Json::as_str)
        .collect();
    for p in ["Identity", "ResultSize", "Filter", "Archive", "ErrorAction"] {
        assert!(params.contains(&p), "{p} missing: {params:?}");
    }
    assert!(meta.iter().any(|m| m["name"] == "Get-MailboxStatistics"));
    // Script text refused, as Exchange's NoLanguage runspace did.
    assert_eq!(r["script"]["state"], 5);
    assert_eq!(r["script"]["errors"][0]["fq_error"], "ScriptsNotAllowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_ctrl_c_during_paging_stops_further_page_requests() {
    let (api, exec) = rest(10_000).await;
    api.data.knobs.page_latency_ms.store(300, Ordering::SeqCst);
    let r = pypsrp(exec, caller(), "ctrlc").await;
    assert!(r["before_stop"].as_u64().unwrap_or_default() >= 1, "{r}");
    assert_eq!(r["state_after_stop"], 3, "Stopped: {r}");
    assert_eq!(r["after"]["count"], 1, "the pool keeps working: {r}");
    let pages = api.data.stats.page_requests.load(Ordering::SeqCst);
    assert!(
        pages < 9,
        "paging stopped early ({pages} follow-up pages of 9)"
    );
    // Anything still in flight would have landed by now: the 'after' call came later.
    let again = api.data.stats.page_requests.load(Ordering::SeqCst);
    assert_eq!(again, pages);
}

/// The compatibility test: the same pypsrp script against sandbox RPS (winrm mode's far end)
/// and through the bridge (rest mode) sees equal objects — names, types, values — and equal
/// warnings and error texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_same_objects_from_rps_and_from_the_bridge() {
    let (api, exec) = rest(200).await;
    let via_rest = pypsrp(exec, caller(), "compat").await;
    let rps = Arc::new(RpsExecutor::new(Arc::new(ExchangeData::new(200))));
    let via_rps = pypsrp(rps, app(), "compat").await;
    let obj = via_rest.as_object().expect("object");
    for (key, rest_side) in obj {
        let rps_side = &via_rps[key];
        for field in ["count", "output", "state", "warnings"] {
            assert_eq!(
                rest_side[field], rps_side[field],
                "{key}.{field}:\nrest: {}\nrps:  {}",
                rest_side[field], rps_side[field]
            );
        }
        let msgs = |v: &Json| {
            v["errors"]
                .as_array()
                .map(|a| a.iter().map(|e| e["message"].clone()).collect::<Vec<_>>())
        };
        assert_eq!(msgs(rest_side), msgs(rps_side), "{key}.errors");
    }
    assert_eq!(via_rest["mailboxes"]["count"], 20);
    assert!(api.data.stats.invoke_requests.load(Ordering::SeqCst) >= 8);
}
