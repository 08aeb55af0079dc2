//! README's "Today's Exchange Online: rest mode" table, row by row, the way users drive it:
//! the real proxy in rest mode between the simulators ([`Sandboxed`]), through its listener
//! over TLS with Basic auth — with the real pypsrp client (`tests/interop/rest_table.py`) and
//! with the Windows PowerShell 5.1 wire forms pypsrp never sends ([`crate::support::wire`]:
//! Xpress-compressed Sends, `-Name:` and bare `-Name` tokens, Import-PSSession's metadata and
//! Get-FormatData, splatted SwitchParameters, piped deserialized objects).
//!
//! Each test is named after its row (`row_<what>_<client>`) and asserts objects, property
//! sets and what the simulated REST admin API received — not just "no error". The local
//! cmdlet rows (`Select-Object`, `Measure-Object`) live in `tests/it/local_cmdlets.rs`.
//! A row the product gets wrong keeps its correct assertion and is `#[ignore]`d with what
//! happens instead (issue 11).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use exo_authproxy::remoting::clixml::Value;
use exo_authproxy::remoting::message::MessageType;
use exo_authproxy::sandbox::data::ExchangeData;
use serde_json::Value as Json;

use crate::support::harness::{Sandboxed, SandboxedOptions};
use crate::support::python;
use crate::support::wire::{
    self, Cmd, Compressor, V, Wire, colon, positional, prop, s, spaced, state, token,
};

/// The type names Exchange serializes for a mailbox, most derived first (without the
/// `Deserialized.` prefix the client adds when it deserializes).
const MAILBOX: &str = "Microsoft.Exchange.Data.Directory.Management.Mailbox";

/// Properties every RPS `Get-Mailbox` object had (a subset; REST may add more).
const MAILBOX_PROPERTIES: &[&str] = &[
    "Name",
    "Alias",
    "DisplayName",
    "PrimarySmtpAddress",
    "UserPrincipalName",
    "EmailAddresses",
    "RecipientTypeDetails",
    "Guid",
    "ExchangeGuid",
    "ExternalDirectoryObjectId",
    "HiddenFromAddressListsEnabled",
    "CustomAttribute1",
    "WhenCreated",
    "WhenChangedUTC",
];

/// The proxy in rest mode over simulated Exchange with `mailboxes` per tenant, and the
/// simulator's data (knobs, statistics).
async fn start(mailboxes: usize) -> (Sandboxed, Arc<ExchangeData>) {
    let (data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(mailboxes);
    let h = Sandboxed::start(SandboxedOptions {
        mode: exo_authproxy::config::Mode::Rest,
        rps,
        adminapi: Some(adminapi),
        ..SandboxedOptions::default()
    })
    .await;
    (h, data)
}

/// Runs `tests/interop/rest_table.py` scenario `scenario` against `h`.
async fn pypsrp(h: &Sandboxed, scenario: &str) -> Json {
    let mut env = h.pypsrp_env("");
    env.push(("SCENARIO".into(), scenario.into()));
    let out = python::run_script("rest_table.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pypsrp scenario {scenario} failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// The `Parameters` of every InvokeCommand body the simulator received for `cmdlet`.
fn bodies(data: &ExchangeData, cmdlet: &str) -> Vec<Json> {
    data.stats
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["CmdletInput"]["CmdletName"] == cmdlet)
        .map(|b| b["CmdletInput"]["Parameters"].clone())
        .collect()
}

fn names(v: &Json) -> Vec<String> {
    v["names"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_text().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_list()
        .or_else(|| v.as_object().and_then(|o| o.items()))
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| text(x).to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Row: `Import-PSSession $s` then `Get-Mailbox -ResultSize Unlimited` — streamed; pages of 1,000.
// ---------------------------------------------------------------------------------------

/// The sequence Windows PowerShell's Import-PSSession runs, then the proxy function's call
/// with `-ResultSize:` `Unlimited` as the splat sends it, over an Xpress session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_import_pssession_then_get_mailbox_unlimited_windows() {
    let (h, data) = start(2_500).await;
    let (mut w, opened) = Wire::open(&h, true).await;
    let state_msg = opened
        .iter()
        .find(|m| m.message_type == MessageType::RunspacePoolState)
        .expect("pool state");
    assert_eq!(
        prop(&wire::body_of(state_msg), "RunspaceState").as_i64(),
        Some(2),
        "Opened"
    );

    // 1. GET_COMMAND_METADATA: the count first, then one object per command.
    let meta = w.command_metadata("*").await;
    assert_eq!(meta.state, state::COMPLETED, "{:?}", meta.state_error);
    let count = prop(&meta.outputs[0], "Count").as_i64().expect("Count");
    assert_eq!(
        usize::try_from(count).unwrap(),
        meta.outputs.len() - 1,
        "Count equals the command objects that follow"
    );
    let command = |name: &str| {
        meta.outputs[1..]
            .iter()
            .find(|o| text(prop(o, "Name")) == name)
            .unwrap_or_else(|| panic!("{name} not in the metadata"))
    };
    let params = |name: &str| -> Vec<String> {
        prop(command(name), "Parameters")
            .as_dictionary()
            .expect("Parameters dictionary")
            .iter()
            .map(|(k, _)| text(k).to_owned())
            .collect()
    };
    let gm = params("Get-Mailbox");
    for p in [
        "Identity",
        "ResultSize",
        "Filter",
        "ErrorAction",
        "WarningAction",
        "OutVariable",
    ] {
        assert!(gm.iter().any(|x| x == p), "Get-Mailbox lacks {p}: {gm:?}");
    }
    let sm = params("Set-Mailbox");
    for p in ["Identity", "CustomAttribute1", "WhatIf", "Confirm"] {
        assert!(sm.iter().any(|x| x == p), "Set-Mailbox lacks {p}: {sm:?}");
    }
    command("Get-MailboxStatistics");
    command("Get-OrganizationConfig");

    // 2. Get-FormatData -TypeName * -PowerShellVersion 5.1 | Measure-Object, then alone.
    let fmt = || {
        Cmd::new(
            "Get-FormatData",
            [
                colon("TypeName", s("*")),
                colon(
                    "PowerShellVersion",
                    V::Raw("<Version{N}>5.1.19041.5007</Version>".into()),
                ),
            ],
        )
    };
    let measured = w.run(&[fmt(), Cmd::new("Measure-Object", [])], None).await;
    assert_eq!(measured.state, state::COMPLETED, "{:?}", measured.state_error);
    assert_eq!(measured.outputs.len(), 1, "one GenericMeasureInfo");
    assert_eq!(prop(&measured.outputs[0], "Count").as_i64(), Some(0));
    let alone = w.run(&[fmt()], None).await;
    assert_eq!(alone.state, state::COMPLETED, "{:?}", alone.state_error);
    assert!(alone.outputs.is_empty(), "no format data: default formatting");
    assert!(alone.errors.is_empty(), "{:?}", alone.errors);
    assert!(
        bodies(&data, "Get-FormatData").is_empty(),
        "Get-FormatData is answered by the proxy, not sent to Exchange"
    );

    // 3. The proxy function: `Get-Mailbox -ResultSize Unlimited` splatted as -ResultSize:.
    let before = data.stats.page_requests.load(Ordering::SeqCst);
    let all = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("ResultSize", s("Unlimited"))])],
            None,
        )
        .await;
    assert_eq!(all.state, state::COMPLETED, "{:?}", all.state_error);
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    assert_eq!(all.outputs.len(), 2_500, "every mailbox");
    let names = all.names();
    assert_eq!(names[0], "AdeleV");
    assert_eq!(names[2_499], "user02499");
    let first = all.outputs[0].as_object().expect("object");
    assert_eq!(first.type_names[0], MAILBOX, "{:?}", first.type_names);
    assert!(all.warnings.is_empty(), "Unlimited: no 'more results' warning");
    assert_eq!(
        data.stats.page_requests.load(Ordering::SeqCst) - before,
        2,
        "pages of 1,000: the first page and two @odata.nextLink follow-ups"
    );
    let sent = bodies(&data, "Get-Mailbox");
    assert_eq!(sent.last().unwrap()["ResultSize"], "Unlimited", "{sent:?}");
}

// ---------------------------------------------------------------------------------------
// Row: Get-Mailbox -Identity x, Get-Recipient, Get-OrganizationConfig, Get-AcceptedDomain,
// Get-MailboxStatistics, … — any cmdlet Exchange exports; typed objects.
// ---------------------------------------------------------------------------------------

fn assert_types(obj: &Json, first: &str) {
    let types = obj["types"].as_array().expect("types");
    assert_eq!(types[0], first, "{obj}");
    assert!(
        types.iter().all(|t| !t.as_str().unwrap_or_default().starts_with("Deserialized.")),
        "the wire carries the real type names; the client adds Deserialized.: {obj}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_cmdlets_pypsrp_objects_and_types() {
    let (h, _data) = start(20).await;
    let r = pypsrp(&h, "reads").await;

    let m = &r["mailbox"];
    assert_eq!((m["count"].as_u64(), m["state"].as_u64()), (Some(1), Some(4)), "{m}");
    let mbx = &m["output"][0];
    assert_types(mbx, MAILBOX);
    assert_eq!(mbx["to_string"], "AdeleV");
    let a = &mbx["adapted"];
    for p in MAILBOX_PROPERTIES {
        assert!(a.get(p).is_some(), "Get-Mailbox lacks {p}: {a}");
    }
    assert_eq!(a["DisplayName"], "Adele Vance");
    assert_eq!(a["PrimarySmtpAddress"], "AdeleV@contoso.com");
    assert_eq!(
        a["EmailAddresses"],
        serde_json::json!(["SMTP:AdeleV@contoso.com", "smtp:AdeleV@contoso.onmicrosoft.com"]),
        "multi-valued properties are lists"
    );
    assert_eq!(a["HiddenFromAddressListsEnabled"], false);
    // GUIDs arrive as <G> (pypsrp makes them uuid.UUID); DateTimes as <DT> (pypsrp keeps their
    // text: the tag itself is asserted by the Windows-form test).
    assert_eq!(mbx["py_types"]["Guid"], "UUID", "{mbx}");
    assert_eq!(mbx["py_types"]["ExchangeGuid"], "UUID", "{mbx}");
    assert_eq!(mbx["py_types"]["HiddenFromAddressListsEnabled"], "bool");
    let created = chrono::DateTime::parse_from_rfc3339(a["WhenCreated"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("WhenCreated {}: {e}", a["WhenCreated"]));
    assert_eq!(
        created.with_timezone(&chrono::Utc).to_rfc3339(),
        "2024-01-01T00:00:00+00:00"
    );

    let rec = &r["recipients"];
    assert_eq!(rec["count"], 5, "{rec}");
    assert_types(
        &rec["output"][0],
        "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient",
    );
    assert_eq!(
        names(rec),
        ["AdeleV", "AlexW", "DiegoS", "GradyA", "IsaiahL"]
    );
    assert_eq!(rec["warnings"].as_array().map(Vec::len), Some(1), "more results: {rec}");

    let org = &r["org"];
    assert_eq!(org["count"], 1, "{org}");
    assert_types(
        &org["output"][0],
        "Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
    );
    assert_eq!(org["output"][0]["adapted"]["Name"], "contoso.onmicrosoft.com");
    assert_eq!(org["output"][0]["py_types"]["OAuth2ClientProfileEnabled"], "bool");

    let dom = &r["domains"];
    assert_eq!(dom["count"], 2, "{dom}");
    assert_types(
        &dom["output"][0],
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain",
    );
    assert_eq!(names(dom), ["contoso.com", "contoso.onmicrosoft.com"]);
    assert_eq!(dom["output"][0]["adapted"]["Default"], true);

    let st = &r["stats"];
    assert_eq!(st["count"], 1, "{st}");
    assert_types(
        &st["output"][0],
        "Microsoft.Exchange.Management.MapiTasks.Presentation.MailboxStatistics",
    );
    assert_eq!(st["output"][0]["adapted"]["DisplayName"], "Lee Gu");
    assert_eq!(st["output"][0]["py_types"]["ItemCount"], "int");
    assert_eq!(st["output"][0]["py_types"]["MailboxGuid"], "UUID");

    assert_eq!(names(&r["positional"]), ["DiegoS"], "positional Identity");
}

/// The same reads as Windows sends them (`-Identity:` splats), checking the CLIXML tags the
/// client deserializes: `<DT>` DateTimes, `<G>` GUIDs, lists, booleans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_cmdlets_windows_typed_values() {
    let (h, _data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let one = w
        .run(&[Cmd::new("Get-Mailbox", [colon("Identity", s("AdeleV"))])], None)
        .await;
    assert_eq!(one.state, state::COMPLETED, "{:?}", one.state_error);
    assert_eq!(one.outputs.len(), 1);
    let o = &one.outputs[0];
    let obj = o.as_object().unwrap();
    assert_eq!(obj.type_names[0], MAILBOX);
    assert_eq!(obj.to_string.as_deref(), Some("AdeleV"));
    for p in MAILBOX_PROPERTIES {
        assert!(obj.property(p).is_some(), "Get-Mailbox lacks {p}");
    }
    assert!(
        matches!(prop(o, "Guid"), Value::Guid(_)),
        "{:?}",
        prop(o, "Guid")
    );
    assert!(matches!(prop(o, "ExchangeGuid"), Value::Guid(_)));
    let created = prop(o, "WhenCreated")
        .as_datetime()
        .unwrap_or_else(|| panic!("WhenCreated is a DateTime: {:?}", prop(o, "WhenCreated")));
    assert_eq!(
        created.with_timezone(&chrono::Utc).to_rfc3339(),
        "2024-01-01T00:00:00+00:00"
    );
    assert!(
        prop(o, "WhenChangedUTC").as_datetime().is_some(),
        "{:?}",
        prop(o, "WhenChangedUTC")
    );
    assert_eq!(prop(o, "HiddenFromAddressListsEnabled").as_bool(), Some(false));
    assert_eq!(
        strings(prop(o, "EmailAddresses")),
        ["SMTP:AdeleV@contoso.com", "smtp:AdeleV@contoso.onmicrosoft.com"]
    );

    for (cmd, args, ty) in [
        (
            "Get-MailboxStatistics",
            vec![colon("Identity", s("LeeG"))],
            "Microsoft.Exchange.Management.MapiTasks.Presentation.MailboxStatistics",
        ),
        (
            "Get-OrganizationConfig",
            vec![],
            "Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
        ),
        (
            "Get-AcceptedDomain",
            vec![],
            "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain",
        ),
        (
            "Get-Recipient",
            vec![colon("ResultSize", V::I32(3))],
            "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient",
        ),
    ] {
        let r = w.run(&[Cmd::new(cmd, args)], None).await;
        assert_eq!(r.state, state::COMPLETED, "{cmd}: {:?}", r.state_error);
        assert!(!r.outputs.is_empty(), "{cmd} returned nothing");
        let t = &r.outputs[0].as_object().unwrap().type_names;
        assert_eq!(t[0], ty, "{cmd}: {t:?}");
    }
    let stats = w
        .run(&[Cmd::new("Get-MailboxStatistics", [colon("Identity", s("LeeG"))])], None)
        .await;
    assert!(matches!(prop(&stats.outputs[0], "MailboxGuid"), Value::Guid(_)));
    assert!(matches!(prop(&stats.outputs[0], "ItemCount"), Value::I32(_) | Value::I64(_)));
}
