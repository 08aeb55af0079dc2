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
use crate::support::wire::{self, Cmd, V, Wire, colon, positional, prop, s, spaced, state, token};

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
    assert_eq!(
        measured.state,
        state::COMPLETED,
        "{:?}",
        measured.state_error
    );
    assert_eq!(measured.outputs.len(), 1, "one GenericMeasureInfo");
    assert_eq!(prop(&measured.outputs[0], "Count").as_i64(), Some(0));
    let alone = w.run(&[fmt()], None).await;
    assert_eq!(alone.state, state::COMPLETED, "{:?}", alone.state_error);
    assert!(
        alone.outputs.is_empty(),
        "no format data: default formatting"
    );
    assert!(alone.errors.is_empty(), "{:?}", alone.errors);
    assert!(
        bodies(&data, "Get-FormatData").is_empty(),
        "Get-FormatData is answered by the proxy, not sent to Exchange"
    );

    // 3. The proxy function: `Get-Mailbox -ResultSize Unlimited` splatted as -ResultSize:.
    let before = data.stats.page_requests.load(Ordering::SeqCst);
    let all = w
        .run(
            &[Cmd::new(
                "Get-Mailbox",
                [colon("ResultSize", s("Unlimited"))],
            )],
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
    assert!(
        all.warnings.is_empty(),
        "Unlimited: no 'more results' warning"
    );
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
        types
            .iter()
            .all(|t| !t.as_str().unwrap_or_default().starts_with("Deserialized.")),
        "the wire carries the real type names; the client adds Deserialized.: {obj}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_cmdlets_pypsrp_objects_and_types() {
    let (h, _data) = start(20).await;
    let r = pypsrp(&h, "reads").await;

    let m = &r["mailbox"];
    assert_eq!(
        (m["count"].as_u64(), m["state"].as_u64()),
        (Some(1), Some(4)),
        "{m}"
    );
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
        serde_json::json!([
            "SMTP:AdeleV@contoso.com",
            "smtp:AdeleV@contoso.onmicrosoft.com"
        ]),
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
    assert_eq!(
        rec["warnings"].as_array().map(Vec::len),
        Some(1),
        "more results: {rec}"
    );

    let org = &r["org"];
    assert_eq!(org["count"], 1, "{org}");
    assert_types(
        &org["output"][0],
        "Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
    );
    assert_eq!(
        org["output"][0]["adapted"]["Name"],
        "contoso.onmicrosoft.com"
    );
    assert_eq!(
        org["output"][0]["py_types"]["OAuth2ClientProfileEnabled"],
        "bool"
    );

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

    // pypsrp's GET_COMMAND_METADATA (what Import-PSSession builds its proxies from).
    let meta = r["metadata"].as_array().expect("metadata");
    let gm = meta
        .iter()
        .find(|m| m["name"] == "Get-Mailbox")
        .unwrap_or_else(|| panic!("Get-Mailbox in {meta:?}"));
    for p in ["Identity", "ResultSize", "Filter", "ErrorAction"] {
        assert!(
            gm["parameters"].as_array().unwrap().iter().any(|x| x == p),
            "{p}: {gm}"
        );
    }
    assert!(meta.iter().any(|m| m["name"] == "Get-MailboxStatistics"));
    assert!(meta.iter().all(|m| {
        m["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Get-Mailbox")
    }));
}

/// The same reads as Windows sends them (`-Identity:` splats), checking the CLIXML tags the
/// client deserializes: `<DT>` DateTimes, `<G>` GUIDs, lists, booleans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_cmdlets_windows_typed_values() {
    let (h, _data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let one = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("AdeleV"))])],
            None,
        )
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
    // `…UTC` properties stay UTC (`Z`: DateTimeKind.Utc); the others carry an offset
    // (DateTimeKind.Local: the client shows them in its own time zone), as RPS sent them.
    assert!(
        matches!(prop(o, "WhenChangedUTC"), Value::UtcDateTime(_)),
        "{:?}",
        prop(o, "WhenChangedUTC")
    );
    assert!(
        matches!(prop(o, "WhenCreated"), Value::DateTime(_)),
        "{:?}",
        prop(o, "WhenCreated")
    );
    // Sizes, quotas and TimeSpans as the strings Exchange writes.
    assert_eq!(
        prop(o, "ProhibitSendQuota").as_str(),
        Some("99 GB (106,300,440,576 bytes)")
    );
    assert_eq!(
        prop(o, "RetainDeletedItemsFor").as_str(),
        Some("14.00:00:00")
    );
    assert_eq!(
        prop(o, "HiddenFromAddressListsEnabled").as_bool(),
        Some(false)
    );
    assert_eq!(
        strings(prop(o, "EmailAddresses")),
        [
            "SMTP:AdeleV@contoso.com",
            "smtp:AdeleV@contoso.onmicrosoft.com"
        ]
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
        .run(
            &[Cmd::new(
                "Get-MailboxStatistics",
                [colon("Identity", s("LeeG"))],
            )],
            None,
        )
        .await;
    assert!(matches!(
        prop(&stats.outputs[0], "MailboxGuid"),
        Value::Guid(_)
    ));
    assert!(matches!(
        prop(&stats.outputs[0], "ItemCount"),
        Value::I32(_) | Value::I64(_)
    ));
}

// ---------------------------------------------------------------------------------------
// Row: `Set-Mailbox x -CustomAttribute1 y`, `-Force`, `-Confirm:$false`, `-WhatIf` —
// `-WhatIf`/`-Confirm` forwarded to Exchange.
// ---------------------------------------------------------------------------------------

/// The Set-Mailbox body whose `key` is `value`.
fn set_body(data: &ExchangeData, key: &str, value: &str) -> Json {
    bodies(data, "Set-Mailbox")
        .into_iter()
        .find(|p| p[key] == value)
        .unwrap_or_else(|| {
            panic!(
                "no Set-Mailbox with {key}={value}: {:?}",
                bodies(data, "Set-Mailbox")
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_set_mailbox_then_get_whatif_confirm_force_pypsrp() {
    let (h, data) = start(20).await;
    let r = pypsrp(&h, "set").await;
    for key in ["set", "whatif", "confirm_false", "force"] {
        assert_eq!(r[key]["state"], 4, "{key}: {}", r[key]);
        assert_eq!(r[key]["errors"], serde_json::json!([]), "{key}: {}", r[key]);
    }
    assert_eq!(
        r["after_set"]["CustomAttribute1"], "via-table",
        "{}",
        r["after_set"]
    );
    assert_eq!(
        r["after_whatif"]["CustomAttribute1"], "via-table",
        "-WhatIf changes nothing"
    );
    assert_eq!(
        set_body(&data, "CustomAttribute1", "what-if")["WhatIf"],
        true
    );
    assert_eq!(r["after_confirm"]["CustomAttribute4"], "confirmed");
    assert_eq!(
        set_body(&data, "CustomAttribute4", "confirmed")["Confirm"],
        false
    );
    assert_eq!(r["after_force"]["CustomAttribute5"], "forced");
    assert_eq!(set_body(&data, "CustomAttribute5", "forced")["Force"], true);
    assert_eq!(
        r["no_change"]["warnings"],
        serde_json::json!([
            "The command completed successfully but no settings of 'AlexW' have been modified."
        ]),
        "Exchange's warning becomes a warning"
    );
}

/// What Import-PSSession proxies send: `-Confirm:` / `-WhatIf:` as splatted SwitchParameter
/// objects, `-Force` as a bare token, a positional Identity with `-Name value` pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_set_mailbox_switches_as_windows_splats_them() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let get = |name: &str| Cmd::new("Get-Mailbox", [colon("Identity", s(name))]);

    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    colon("Identity", s("AlexW")),
                    colon("CustomAttribute1", s("win-confirm")),
                    colon("Confirm", V::Switch(false)),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        set_body(&data, "CustomAttribute1", "win-confirm")["Confirm"],
        false
    );
    let after = w.run(&[get("AlexW")], None).await;
    assert_eq!(
        text(prop(&after.outputs[0], "CustomAttribute1")),
        "win-confirm"
    );

    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    colon("Identity", s("AlexW")),
                    colon("CustomAttribute1", s("win-whatif")),
                    colon("WhatIf", V::Switch(true)),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(
        set_body(&data, "CustomAttribute1", "win-whatif")["WhatIf"],
        true
    );
    let after = w.run(&[get("AlexW")], None).await;
    assert_eq!(
        text(prop(&after.outputs[0], "CustomAttribute1")),
        "win-confirm",
        "-WhatIf: changes nothing"
    );

    // `-Name: value` from the parser (colon, then a space) and an exact name that is also a
    // prefix of others (`-CustomAttribute1` vs `-CustomAttribute10`…`15`).
    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    wire::Arg {
                        n: Some("-Identity: ".into()),
                        v: s("IsaiahL"),
                    },
                    colon("CustomAttribute1", s("exact-1")),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(
        set_body(&data, "CustomAttribute1", "exact-1")["Identity"],
        "IsaiahL"
    );

    // `Invoke-Command { Set-Mailbox GradyA -CustomAttribute9 pos -Force }`.
    let mut args = vec![positional(s("GradyA"))];
    args.extend(spaced("CustomAttribute9", s("pos")));
    args.push(token("Force"));
    let r = w.run(&[Cmd::new("Set-Mailbox", args)], None).await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    let body = set_body(&data, "CustomAttribute9", "pos");
    assert_eq!(
        (&body["Identity"], &body["Force"]),
        (&Json::from("GradyA"), &Json::from(true))
    );
    let after = w.run(&[get("GradyA")], None).await;
    assert_eq!(text(prop(&after.outputs[0], "CustomAttribute9")), "pos");
}

// ---------------------------------------------------------------------------------------
// Row: `-EmailAddresses @{Add='a';Remove='b'}`, arrays, `$true`/`$false`, DateTimes, `$null`
// — typed JSON.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_typed_values_hashtable_array_bool_null_pypsrp() {
    let (h, data) = start(20).await;
    let r = pypsrp(&h, "values").await;
    for key in ["hashtable", "false", "null"] {
        assert_eq!(r[key]["state"], 4, "{key}: {}", r[key]);
        assert_eq!(r[key]["errors"], serde_json::json!([]), "{key}: {}", r[key]);
    }
    let after = &r["after_hashtable"];
    let addrs: Vec<&str> = after["EmailAddresses"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert!(addrs.contains(&"smtp:diego2@contoso.com"), "{addrs:?}");
    assert!(
        !addrs.contains(&"smtp:DiegoS@contoso.onmicrosoft.com"),
        "{addrs:?}"
    );
    assert_eq!(after["Languages"], serde_json::json!(["en-US", "fr-FR"]));
    assert_eq!(after["HiddenFromAddressListsEnabled"], true);
    assert_eq!(r["after_false"]["HiddenFromAddressListsEnabled"], false);

    let sent = bodies(&data, "Set-Mailbox");
    let ht = sent
        .iter()
        .find(|p| p.get("EmailAddresses").is_some())
        .expect("hashtable call");
    assert_eq!(
        ht["EmailAddresses"]["@odata.type"], "#Exchange.GenericHashTable",
        "{ht}"
    );
    assert_eq!(
        ht["EmailAddresses"]["Add"], "smtp:diego2@contoso.com",
        "{ht}"
    );
    assert_eq!(
        ht["EmailAddresses"]["Remove"],
        "smtp:DiegoS@contoso.onmicrosoft.com"
    );
    assert_eq!(ht["Languages"], serde_json::json!(["en-US", "fr-FR"]));
    assert_eq!(ht["HiddenFromAddressListsEnabled"], true, "a JSON boolean");
    assert!(
        sent.iter()
            .any(|p| p["HiddenFromAddressListsEnabled"] == false),
        "$false as a JSON boolean: {sent:?}"
    );

    assert_eq!(
        r["before_null"]["ForwardingSmtpAddress"], "smtp:archive@contoso.com",
        "{}",
        r["before_null"]
    );
    assert_eq!(
        r["after_null"]["ForwardingSmtpAddress"],
        Json::Null,
        "{}",
        r["after_null"]
    );
    let null = sent
        .iter()
        .find(|p| p.get("ForwardingSmtpAddress").is_some())
        .expect("$null call");
    assert_eq!(null["ForwardingSmtpAddress"], Json::Null, "{null}");
}

/// Windows' serialized forms: a Hashtable Obj whose Add is an Object[], `<DT>` with a local
/// offset (sent in UTC), `<Nil/>` after `-Name:`, `<B>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_typed_values_windows_forms() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    colon("Identity", s("DiegoS")),
                    colon(
                        "EmailAddresses",
                        V::Hash(vec![
                            (
                                "Add".into(),
                                V::Array(vec![
                                    s("smtp:d.one@contoso.com"),
                                    s("smtp:d.two@contoso.com"),
                                ]),
                            ),
                            ("Remove".into(), s("smtp:DiegoS@contoso.onmicrosoft.com")),
                        ]),
                    ),
                    colon("Languages", V::Array(vec![s("de-DE"), s("en-GB")])),
                    colon("HiddenFromAddressListsEnabled", V::B(true)),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let body = set_body(&data, "Identity", "DiegoS");
    assert_eq!(
        body["EmailAddresses"]["Add"],
        serde_json::json!(["smtp:d.one@contoso.com", "smtp:d.two@contoso.com"]),
        "{body}"
    );
    assert_eq!(body["Languages"], serde_json::json!(["de-DE", "en-GB"]));
    assert_eq!(body["HiddenFromAddressListsEnabled"], true);
    let after = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("DiegoS"))])],
            None,
        )
        .await;
    let addrs = strings(prop(&after.outputs[0], "EmailAddresses"));
    assert!(
        addrs.contains(&"smtp:d.two@contoso.com".to_owned()),
        "{addrs:?}"
    );
    assert!(!addrs.contains(&"smtp:DiegoS@contoso.onmicrosoft.com".to_owned()));
    assert_eq!(
        strings(prop(&after.outputs[0], "Languages")),
        ["de-DE", "en-GB"]
    );

    // $null after a -Name: token.
    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    colon("Identity", s("JohannaL")),
                    colon("ForwardingSmtpAddress", V::Nil),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(
        set_body(&data, "Identity", "JohannaL")["ForwardingSmtpAddress"],
        Json::Null
    );
    let after = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("JohannaL"))])],
            None,
        )
        .await;
    assert!(prop(&after.outputs[0], "ForwardingSmtpAddress").is_nil());

    // A DateTime with a local offset arrives at Exchange in UTC.
    let r = w
        .run(
            &[Cmd::new(
                "Set-MailboxAutoReplyConfiguration",
                [
                    colon("Identity", s("AdeleV")),
                    colon("AutoReplyState", s("Scheduled")),
                    colon(
                        "StartTime",
                        V::Dt("2026-07-01T08:30:00.5000000+02:00".into()),
                    ),
                    colon("EndTime", V::Dt("2026-07-15T18:00:00-05:00".into())),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    let sent = bodies(&data, "Set-MailboxAutoReplyConfiguration");
    let body = sent.last().expect("sent");
    let utc = |k: &str| {
        let t = body[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} not a string: {body}"));
        assert!(t.ends_with('Z') || t.ends_with("+00:00"), "{k} in UTC: {t}");
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|e| panic!("{k} {t}: {e}"))
            .with_timezone(&chrono::Utc)
            .to_rfc3339()
    };
    assert_eq!(utc("StartTime"), "2026-07-01T06:30:00.500+00:00");
    assert_eq!(utc("EndTime"), "2026-07-15T23:00:00+00:00");
}

// ---------------------------------------------------------------------------------------
// Row: `Get-Mailbox -ResultSize 10 | Set-Mailbox -X y` inside one `Invoke-Command` — the
// second cmdlet runs once per object, bound to its Identity.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_two_cmdlet_pipeline_pypsrp() {
    let (h, data) = start(20).await;
    let r = pypsrp(&h, "pipeline").await;
    assert_eq!(r["pipeline"]["state"], 4, "{}", r["pipeline"]);
    assert_eq!(r["pipeline"]["errors"], serde_json::json!([]));
    assert_eq!(r["check"]["count"], 10, "{}", r["check"]);
    let sets = bodies(&data, "Set-Mailbox");
    assert_eq!(sets.len(), 10, "one Set-Mailbox per object: {sets:?}");
    let mut ids: Vec<String> = sets
        .iter()
        .map(|p| p["Identity"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        10,
        "each run bound to its own object's Identity: {ids:?}"
    );
    assert!(
        sets.iter()
            .all(|p| p["CustomAttribute2"] == "piped" && p["Identity"].is_string())
    );
}

/// `Invoke-Command $s { Get-Mailbox -ResultSize 10 | Set-Mailbox -CustomAttribute2 y }` as
/// the converter sends it: two Cmds, each parameter a bare token followed by its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_two_cmdlet_pipeline_windows() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let r = w
        .run(
            &[
                Cmd::new("Get-Mailbox", spaced("ResultSize", V::I32(10))),
                Cmd::new("Set-Mailbox", spaced("CustomAttribute2", s("win-piped"))),
            ],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.outputs.is_empty(), "Set-Mailbox returns nothing");
    assert_eq!(bodies(&data, "Set-Mailbox").len(), 10);
    let check = w
        .run(
            &[Cmd::new(
                "Get-Mailbox",
                [
                    colon("Filter", s("CustomAttribute2 -eq 'win-piped'")),
                    colon("ResultSize", s("Unlimited")),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(check.outputs.len(), 10);
}

// ---------------------------------------------------------------------------------------
// Row: `$list | Set-Mailbox -X y` through an Import-PSSession proxy (pipeline input) — one
// REST call per input object; strings and deserialized objects.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_pipeline_input_strings_and_objects_pypsrp() {
    let (h, data) = start(20).await;
    let r = pypsrp(&h, "input").await;
    assert_eq!(r["strings"]["state"], 4, "{}", r["strings"]);
    assert_eq!(r["strings"]["errors"], serde_json::json!([]));
    assert_eq!(r["strings_check"]["count"], 2);
    let sent = r["objects_sent"].as_array().expect("objects").len();
    assert!(sent >= 3, "{}", r["objects_sent"]);
    assert_eq!(r["objects"]["state"], 4, "{}", r["objects"]);
    assert_eq!(
        r["objects"]["errors"],
        serde_json::json!([]),
        "{}",
        r["objects"]
    );
    assert_eq!(
        r["objects_check"]["count"].as_u64(),
        Some(sent as u64),
        "every piped mailbox object was set: {}",
        r["objects_check"]
    );
    let per_object = bodies(&data, "Set-Mailbox")
        .into_iter()
        .filter(|p| p["CustomAttribute5"] == "from-objects")
        .count();
    assert_eq!(per_object, sent, "one REST call per input object");
}

/// A Windows-serialized deserialized mailbox (what `Get-Mailbox … | Set-Mailbox …` through
/// Import-PSSession proxies sends back): `Deserialized.` type names, adapted properties and
/// the note properties Invoke-Command added.
fn windows_mailbox(name: &str, guid: &str) -> String {
    format!(
        "<Obj RefId=\"0\"><TN RefId=\"0\"><T>Deserialized.{MAILBOX}</T>\
         <T>Deserialized.Microsoft.Exchange.Data.Directory.Management.MailEnabledOrgPerson</T>\
         <T>Deserialized.Microsoft.Exchange.Data.Directory.ADPresentationObject</T>\
         <T>Deserialized.System.Object</T></TN><ToString>{name}</ToString><Props>\
         <S N=\"Name\">{name}</S><S N=\"Alias\">{name}</S><S N=\"Identity\">{name}</S>\
         <G N=\"Guid\">{guid}</G><S N=\"PrimarySmtpAddress\">{name}@contoso.com</S>\
         <Obj N=\"EmailAddresses\" RefId=\"1\"><TN RefId=\"1\"><T>Deserialized.Microsoft.Exchange.Data.ProxyAddressCollection</T>\
         <T>Deserialized.System.Object</T></TN><LST><S>SMTP:{name}@contoso.com</S></LST></Obj>\
         <DT N=\"WhenCreated\">2024-01-01T01:00:00+01:00</DT></Props>\
         <MS><S N=\"PSComputerName\">outlook.office365.com</S><G N=\"RunspaceId\">5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9</G>\
         <B N=\"PSShowComputerName\">false</B></MS></Obj>"
    )
}

/// `$mailboxes | Set-Mailbox -CustomAttribute10 x`: PIPELINE_INPUT of deserialized objects in
/// a compressed Send — one of them exactly the Windows-made Xpress chunk of
/// xpress-vectors.md §3 (a mailbox `user00000` this tenant does not have: Exchange's
/// not-found error, non-terminating), the others compressed by the test's encoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_pipeline_input_deserialized_objects_windows() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let pid = w
        .start(
            &[Cmd::new(
                "Set-Mailbox",
                [colon("CustomAttribute10", s("win-input"))],
            )],
            false,
        )
        .await;
    let get = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("MeganB"))])],
            None,
        )
        .await;
    let megan_guid = prop(&get.outputs[0], "Guid")
        .as_guid()
        .expect("guid")
        .to_string();
    // Two objects compressed by the test's encoder, then the Windows-made chunk.
    w.input_objects(
        &pid,
        &[
            windows_mailbox("MeganB", &megan_guid),
            windows_mailbox("LeeG", "00000000-0000-4000-8000-000000000001"),
        ],
        true,
    )
    .await;
    let r = wire::Run::collect(w.drain(Some(&pid), 0).await);
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(r.errors.len(), 1, "user00000 is not found: {:?}", r.errors);
    assert!(
        r.errors[0].message.contains("user00000"),
        "{}",
        r.errors[0].message
    );
    let sets: Vec<Json> = bodies(&data, "Set-Mailbox")
        .into_iter()
        .filter(|p| p["CustomAttribute10"] == "win-input")
        .collect();
    let ids: Vec<String> = sets
        .iter()
        .map(|p| p["Identity"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sets.len(), 3, "one REST call per input object: {sets:?}");
    assert!(ids.iter().any(|i| i == "user00000"), "{ids:?}");
    let check = w
        .run(
            &[Cmd::new(
                "Get-Mailbox",
                [colon("Filter", s("CustomAttribute10 -eq 'win-input'"))],
            )],
            None,
        )
        .await;
    let mut got = check.names();
    got.sort();
    assert_eq!(got, ["LeeG", "MeganB"]);
}

// ---------------------------------------------------------------------------------------
// Row: `Invoke-Command $s { Get-Mailbox -ResultSize 10 }` (plain commands) — converted to
// commands by PowerShell, then bound as above.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_invoke_command_plain_commands_windows() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let r = w
        .run(
            &[Cmd::new("Get-Mailbox", spaced("ResultSize", V::I32(10)))],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(r.outputs.len(), 10);
    assert_eq!(r.names()[..3], ["AdeleV", "AlexW", "DiegoS"]);
    assert_eq!(
        r.warnings,
        [exo_authproxy::sandbox::data::MORE_RESULTS],
        "Exchange's 'more results' warning"
    );
    assert_eq!(
        bodies(&data, "Get-Mailbox").last().unwrap()["ResultSize"],
        10
    );
    // A unique prefix binds (`-ResultS 3`), as PowerShell's binder does.
    let r = w
        .run(
            &[Cmd::new("Get-Mailbox", spaced("ResultS", V::I32(3)))],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert_eq!(r.outputs.len(), 3);
    // `{ Get-Mailbox DiegoS }` and `{ Get-Recipient -ResultSize 3 }`.
    let r = w
        .run(&[Cmd::new("Get-Mailbox", [positional(s("DiegoS"))])], None)
        .await;
    assert_eq!(r.names(), ["DiegoS"]);
    let r = w
        .run(
            &[Cmd::new("Get-Recipient", spaced("ResultSize", V::I32(3)))],
            None,
        )
        .await;
    assert_eq!(r.names(), ["AdeleV", "AlexW", "DiegoS"]);
}

// ---------------------------------------------------------------------------------------
// Row: `-ErrorAction Stop/SilentlyContinue`, `-WarningAction SilentlyContinue` — as
// PowerShell applies them.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_error_and_warning_actions_pypsrp() {
    let (h, _data) = start(20).await;
    let r = pypsrp(&h, "errors").await;

    // One unknown identity in a list does not stop the rest.
    let c = &r["continue"];
    assert_eq!(c["state"], 4, "Completed: {c}");
    assert_eq!(c["errors"].as_array().map(Vec::len), Some(1), "{c}");
    let msg = c["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "The operation couldn't be performed because object 'nosuchuser' couldn't be found on"
        ),
        "Exchange's message: {c}"
    );
    assert!(
        c["errors"][0]["fq_error"]
            .as_str()
            .unwrap_or_default()
            .ends_with(",Microsoft.Exchange.Management.RecipientTasks.SetMailbox"),
        "{c}"
    );
    assert_eq!(r["continue_check"]["count"], 2, "{}", r["continue_check"]);

    // -ErrorAction Stop: the pipeline terminates at the unknown identity.
    let st = &r["stop"];
    assert_eq!(st["state"], 5, "Failed: {st}");
    assert_eq!(
        r["stop_check"]["count"], 1,
        "GradyA before the error was set, IsaiahL after it was not: {}",
        r["stop_check"]
    );
    assert_eq!(r["get_stop"]["state"], 5, "{}", r["get_stop"]);

    // SilentlyContinue: no error record, Completed.
    let si = &r["silently"];
    assert_eq!(
        (si["state"].as_u64(), si["count"].as_u64()),
        (Some(4), Some(0)),
        "{si}"
    );
    assert_eq!(si["errors"], serde_json::json!([]), "{si}");

    // -WarningAction SilentlyContinue drops Exchange's warning.
    assert_eq!(
        r["warning"]["warnings"],
        serde_json::json!([exo_authproxy::sandbox::data::MORE_RESULTS]),
        "{}",
        r["warning"]
    );
    let ws = &r["warning_silent"];
    assert_eq!(ws["count"], 2, "{ws}");
    assert_eq!(ws["warnings"], serde_json::json!([]), "{ws}");
}

/// `System.Management.Automation.ActionPreference` as Import-PSSession proxies splat it from
/// `$PSBoundParameters` (an enum Obj, not a string).
fn action(name: &str, value: i32) -> V {
    V::Raw(format!(
        "<Obj{{N}} RefId=\"{{R}}\"><TN RefId=\"90\"><T>System.Management.Automation.ActionPreference</T>\
         <T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN><ToString>{name}</ToString>\
         <I32>{value}</I32></Obj>"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_error_and_warning_actions_windows_enums() {
    let (h, _data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let get = |extra: Vec<wire::Arg>| {
        let mut args = vec![colon("Identity", s("nosuchuser"))];
        args.extend(extra);
        vec![Cmd::new("Get-Mailbox", args)]
    };
    let plain = w.run(&get(vec![]), None).await;
    assert_eq!(plain.state, state::COMPLETED, "non-terminating by default");
    assert_eq!(plain.errors.len(), 1);
    assert!(
        plain.errors[0]
            .fq_error
            .ends_with(",Microsoft.Exchange.Management.RecipientTasks.GetMailbox")
    );

    let stop = w
        .run(&get(vec![colon("ErrorAction", action("Stop", 1))]), None)
        .await;
    assert_eq!(stop.state, state::FAILED, "terminating under Stop");
    let e = stop
        .state_error
        .as_ref()
        .expect("the error in the Failed state");
    assert!(e.message.contains("nosuchuser"), "{e:?}");

    let silent = w
        .run(
            &get(vec![colon("ErrorAction", action("SilentlyContinue", 0))]),
            None,
        )
        .await;
    assert_eq!(silent.state, state::COMPLETED);
    assert!(silent.errors.is_empty(), "{:?}", silent.errors);

    let warn = w
        .run(
            &[Cmd::new(
                "Get-Mailbox",
                [
                    colon("ResultSize", V::I32(2)),
                    colon("WarningAction", action("SilentlyContinue", 0)),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(warn.outputs.len(), 2);
    assert!(warn.warnings.is_empty(), "{:?}", warn.warnings);
}

// ---------------------------------------------------------------------------------------
// Row: Ctrl-C during a long `Get-*` — no further pages are requested.
// ---------------------------------------------------------------------------------------

/// Windows' `crtl_c` (sic) while the proxy waits for a follow-up page: the pipeline ends
/// Stopped, the request in flight is abandoned, and no later page is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_ctrl_c_stops_paging_windows() {
    let (h, data) = start(10_000).await;
    // Follow-up pages hang until the client goes away (far longer than this test runs).
    data.knobs.page_latency_ms.store(600_000, Ordering::SeqCst);
    let (mut w, _) = Wire::open(&h, true).await;
    let pid = w
        .start(
            &[Cmd::new(
                "Get-Mailbox",
                [colon("ResultSize", s("Unlimited"))],
            )],
            true,
        )
        .await;
    // The first page streams to the client while the second is being fetched.
    let mut defrag = exo_authproxy::remoting::fragment::Defragmenter::new(64 << 20);
    let mut outputs = 0;
    while outputs == 0 {
        let r = w.receive(Some(&pid), "PT5S").await;
        if r.timed_out() {
            continue;
        }
        assert_eq!(r.status, 200, "{r:?}");
        outputs += w
            .messages(&r, &mut defrag)
            .iter()
            .filter(|m| m.message_type == MessageType::PipelineOutput)
            .count();
    }
    tokio::time::timeout(
        Duration::from_secs(60),
        data.stats
            .until(|s| s.page_requests.load(Ordering::SeqCst) >= 1),
    )
    .await
    .expect("the proxy asks for the second page");
    let r = w.signal(&pid, "powershell/signal/crtl_c").await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut end = Vec::new();
    for _ in 0..1_000 {
        let r = w.receive(Some(&pid), "PT5S").await;
        if r.timed_out() {
            continue;
        }
        assert_eq!(r.status, 200, "{r:?}");
        end.extend(w.messages(&r, &mut defrag));
        if r.command_state().as_deref() == Some(exo_authproxy::remoting::wsman::COMMAND_STATE_DONE)
        {
            break;
        }
    }
    let stopped = wire::Run::collect(end);
    assert_eq!(stopped.state, state::STOPPED, "{:?}", stopped.state_error);
    tokio::time::timeout(
        Duration::from_secs(60),
        data.stats
            .until(|s| s.abandoned_requests.load(Ordering::SeqCst) >= 1),
    )
    .await
    .expect("the page request in flight is cancelled");
    let pages = data.stats.page_requests.load(Ordering::SeqCst);
    // The session goes on, and paging of the stopped command does not.
    let after = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("AdeleV"))])],
            None,
        )
        .await;
    assert_eq!(after.names(), ["AdeleV"]);
    assert_eq!(
        data.stats.page_requests.load(Ordering::SeqCst),
        pages,
        "no further pages"
    );
    assert_eq!(data.stats.pages_answered.load(Ordering::SeqCst), 0);
}

/// pypsrp's stop while the proxy waits for the second page (held until the client goes
/// away): Stopped, the request in flight cancelled, no further page, the pool usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_ctrl_c_stops_paging_pypsrp() {
    let (h, data) = start(10_000).await;
    data.knobs.page_latency_ms.store(600_000, Ordering::SeqCst);
    let r = pypsrp(&h, "ctrlc").await;
    assert!(r["before_stop"].as_u64().unwrap_or_default() >= 1, "{r}");
    assert_eq!(r["state_after_stop"], 3, "Stopped: {r}");
    assert_eq!(r["after"]["count"], 1, "the pool keeps working: {r}");
    tokio::time::timeout(
        Duration::from_secs(60),
        data.stats
            .until(|s| s.abandoned_requests.load(Ordering::SeqCst) >= 1),
    )
    .await
    .expect("the page request in flight is cancelled");
    assert_eq!(
        data.stats.page_requests.load(Ordering::SeqCst),
        1,
        "no page after the one in flight"
    );
    assert_eq!(data.stats.pages_answered.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------
// Row: `Get-FormatData` (Import-PSSession) — no format data: default formatting. (The
// Windows sequence is in `row_import_pssession_…`; this is pypsrp's plain call.)
// Rows: script blocks, SecureString parameters, `Enter-PSSession`, `Get-EXO*` — refused.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_refusals_and_get_formatdata_pypsrp() {
    let (h, data) = start(20).await;
    let r = pypsrp(&h, "refusals").await;
    for key in ["where", "assign", "foreach"] {
        let v = &r[key];
        assert_eq!(v["state"], 5, "{key} fails: {v}");
        assert_eq!(
            v["errors"][0]["fq_error"], "ScriptsNotAllowed",
            "{key}: {v}"
        );
        let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("no-language mode"), "{key}: {msg}");
    }
    let exo = &r["exo"];
    assert_eq!(exo["state"], 5, "{exo}");
    assert_eq!(
        exo["errors"][0]["fq_error"], "CommandNotFoundException",
        "{exo}"
    );
    assert!(
        exo["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("'Get-EXOMailbox' is not recognized"),
        "{exo}"
    );
    let fmt = &r["format"];
    assert_eq!(
        (fmt["state"].as_u64(), fmt["count"].as_u64()),
        (Some(4), Some(0)),
        "{fmt}"
    );
    assert_eq!(fmt["errors"], serde_json::json!([]));
    assert_eq!(
        r["after"]["count"], 1,
        "the session goes on: {}",
        r["after"]
    );
    assert!(
        bodies(&data, "Get-EXOMailbox").is_empty(),
        "never sent to Exchange"
    );
}

/// What Windows sends for the refused rows: script text from `Invoke-Command { $m = … }`,
/// an interactive `Enter-PSSession` line (nested, script) and its `prompt` call, a
/// `<SS>` SecureString argument, the SecureString key exchange, and `Get-EXOMailbox`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_refusals_windows_forms() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;

    let r = w
        .run(
            &[Cmd::script(
                "$m = Get-Mailbox; $m | Where-Object { $_.Name -like 'a*' }",
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::FAILED);
    assert_eq!(
        r.state_error.as_ref().map(|e| e.fq_error.as_str()),
        Some("ScriptsNotAllowed")
    );

    // Enter-PSSession: each typed line is a nested script pipeline, and the prompt function.
    let pid = uuid::Uuid::new_v4().to_string().to_uppercase();
    let xml = wire::create_pipeline(&[Cmd::script("Get-Mailbox -Identity AdeleV")], true, true);
    let r = w.run_xml(&pid, &xml).await;
    assert_eq!(r.state, state::FAILED, "an interactive line is refused");
    assert_eq!(
        r.state_error.as_ref().map(|e| e.fq_error.as_str()),
        Some("ScriptsNotAllowed")
    );
    let r = w.run(&[Cmd::new("prompt", [])], None).await;
    assert_eq!(r.state, state::FAILED);
    assert_eq!(
        r.state_error.as_ref().map(|e| e.fq_error.as_str()),
        Some("CommandNotFoundException")
    );

    // Get-EXOMailbox: not an RPS cmdlet.
    let r = w
        .run(
            &[Cmd::new("Get-EXOMailbox", spaced("ResultSize", V::I32(10)))],
            None,
        )
        .await;
    assert_eq!(r.state, state::FAILED);
    let e = r.state_error.as_ref().expect("error");
    assert_eq!(e.fq_error, "CommandNotFoundException");
    assert!(
        e.message.contains("'Get-EXOMailbox' is not recognized"),
        "{e:?}"
    );

    // `-Password (ConvertTo-SecureString …)` serialized as <SS>: a clear error, nothing sent.
    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    colon("Identity", s("AdeleV")),
                    colon(
                        "Password",
                        V::Raw("<SS{N}>AQAAANCMnd8BFdERjHoAwE/Cl+sBAAAA</SS>".into()),
                    ),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::FAILED, "{:?}", r.messages);
    let e = r.state_error.as_ref().expect("error");
    assert!(e.message.contains("SecureString"), "{e:?}");
    assert!(
        bodies(&data, "Set-Mailbox").is_empty(),
        "nothing reached Exchange"
    );

    // The session still works.
    let r = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("AdeleV"))])],
            None,
        )
        .await;
    assert_eq!(r.names(), ["AdeleV"]);

    // Windows starts the key exchange (PUBLIC_KEY) before it serializes a SecureString: the
    // pool breaks at once with the reason, instead of the client waiting for a key.
    let r = w
        .send_pool(
            MessageType::PublicKey,
            "<Obj RefId=\"0\"><MS><S N=\"PublicKey\">BgIAAACkAABSU0ExAAgAAAEAAQ==</S></MS></Obj>",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let msgs = w.drain(None, 1).await;
    let broken = msgs
        .iter()
        .find(|m| m.message_type == MessageType::RunspacePoolState)
        .unwrap_or_else(|| panic!("a pool state: {msgs:?}"));
    let b = wire::body_of(broken);
    assert_eq!(prop(&b, "RunspaceState").as_i64(), Some(5), "Broken");
    let why = format!("{b:?}");
    assert!(why.contains("SecureString"), "{why}");
}

// ---------------------------------------------------------------------------------------
// Windows wire form: an Xpress-compressed Send carrying a command's arguments with `-Name:`
// tokens (the CREATE_PIPELINE's later fragments travel in Send, compressed).
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_xpress_send_carries_colon_arguments_windows() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let display = "Megan Bowen (Marketing & Sales <EMEA>)";
    let r = w
        .run_split(
            &[Cmd::new(
                "Set-Mailbox",
                [
                    colon("Identity", s("MeganB")),
                    colon("CustomAttribute8", s("xpress-colon")),
                    colon("DisplayName", s(display)),
                    colon("Confirm", V::Switch(false)),
                ],
            )],
            600,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let body = set_body(&data, "CustomAttribute8", "xpress-colon");
    assert_eq!(body["Identity"], "MeganB", "{body}");
    assert_eq!(body["DisplayName"], display);
    assert_eq!(body["Confirm"], false);
    let after = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("MeganB"))])],
            None,
        )
        .await;
    assert_eq!(
        text(prop(&after.outputs[0], "CustomAttribute8")),
        "xpress-colon"
    );
    assert_eq!(text(prop(&after.outputs[0], "DisplayName")), display);
}

// ---------------------------------------------------------------------------------------
// Row: `Set-Mailbox -Instance $mbx` / modifying returned objects and sending them back — not
// supported (REST results are not live objects): an error, and nothing changes.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_set_mailbox_instance_not_supported_windows() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let modified = windows_mailbox("AdeleV", "00000000-0000-4000-8000-000000000002")
        .replace("<Obj RefId=\"0\">", "<Obj{N} RefId=\"{R}\">")
        .replace(
            "</Props>",
            "<S N=\"CustomAttribute1\">edited-locally</S></Props>",
        );
    let r = w
        .run(
            &[Cmd::new(
                "Set-Mailbox",
                [colon("Instance", V::Raw(modified))],
            )],
            None,
        )
        .await;
    let refused = r.state == state::FAILED || !r.errors.is_empty();
    assert!(refused, "-Instance is refused: {:?}", r.messages);
    let after = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("AdeleV"))])],
            None,
        )
        .await;
    assert_eq!(text(prop(&after.outputs[0], "CustomAttribute1")), "Sales");
    assert!(
        bodies(&data, "Set-Mailbox")
            .iter()
            .all(|p| p.get("Instance").is_none()),
        "no live object is sent to Exchange"
    );
}

// ---------------------------------------------------------------------------------------
// The same rows at script scale: a pipeline over several pages, many piped objects across
// several Sends, `Get-* | Get-*`, and an object as `-Identity:` (`-Identity $mbx`).
// ---------------------------------------------------------------------------------------

/// `Invoke-Command { Get-Mailbox -ResultSize Unlimited | Set-Mailbox -CustomAttribute12 y }`
/// over 1,500 mailboxes: the second cmdlet runs for objects of every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_two_cmdlet_pipeline_across_pages_windows() {
    let (h, data) = start(1_500).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let before = data.stats.invoke_requests.load(Ordering::SeqCst);
    let r = w
        .run(
            &[
                Cmd::new("Get-Mailbox", spaced("ResultSize", s("Unlimited"))),
                Cmd::new("Set-Mailbox", spaced("CustomAttribute12", s("all-pages"))),
            ],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(
        r.errors.is_empty(),
        "{:?}",
        &r.errors[..r.errors.len().min(3)]
    );
    assert_eq!(
        data.stats.invoke_requests.load(Ordering::SeqCst) - before,
        2 + 1_500,
        "two Get-Mailbox pages, then one Set-Mailbox per object"
    );
    let check = w
        .run(
            &[Cmd::new(
                "Get-Mailbox",
                [
                    colon("Filter", s("CustomAttribute12 -eq 'all-pages'")),
                    colon("ResultSize", s("Unlimited")),
                ],
            )],
            None,
        )
        .await;
    assert_eq!(check.outputs.len(), 1_500, "every mailbox of both pages");
}

/// `$mailboxes | Set-Mailbox …` with 300 deserialized objects, sent the way Windows streams
/// input: several Sends (here 30 objects each), then END_OF_PIPELINE_INPUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_pipeline_input_many_objects_in_several_sends_windows() {
    let (h, data) = start(400).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let all = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("ResultSize", V::I32(300))])],
            None,
        )
        .await;
    assert_eq!(all.outputs.len(), 300);
    let objects: Vec<String> = all
        .outputs
        .iter()
        .map(|o| {
            let name = text(prop(o, "Name"));
            let guid = prop(o, "Guid").as_guid().expect("guid").to_string();
            windows_mailbox(name, &guid)
        })
        .collect();
    let pid = w
        .start(
            &[Cmd::new(
                "Set-Mailbox",
                [colon("CustomAttribute13", s("many"))],
            )],
            false,
        )
        .await;
    for batch in objects.chunks(30) {
        w.input_some(&pid, batch).await;
    }
    w.input_objects(&pid, &[], false).await;
    let r = wire::Run::collect(w.drain(Some(&pid), 0).await);
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(
        r.errors.is_empty(),
        "{:?}",
        &r.errors[..r.errors.len().min(3)]
    );
    let sets = bodies(&data, "Set-Mailbox")
        .into_iter()
        .filter(|p| p["CustomAttribute13"] == "many")
        .count();
    assert_eq!(sets, 300, "one call per object");
}

/// `Invoke-Command { Get-Mailbox -ResultSize 3 | Get-MailboxStatistics }`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_piped_into_get_windows() {
    let (h, _data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let r = w
        .run(
            &[
                Cmd::new("Get-Mailbox", spaced("ResultSize", V::I32(3))),
                Cmd::new("Get-MailboxStatistics", []),
            ],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let shown: Vec<String> = r
        .outputs
        .iter()
        .map(|o| text(prop(o, "DisplayName")).to_owned())
        .collect();
    assert_eq!(shown, ["Adele Vance", "Alex Wilber", "Diego Siciliani"]);
}

/// `Get-MailboxStatistics -Identity $mbx` where `$mbx` came from `Get-Mailbox`: the
/// parameter value is the deserialized object itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_with_an_object_as_identity_windows() {
    let (h, data) = start(20).await;
    let (mut w, _) = Wire::open(&h, true).await;
    let one = w
        .run(
            &[Cmd::new("Get-Mailbox", [colon("Identity", s("LeeG"))])],
            None,
        )
        .await;
    let guid = prop(&one.outputs[0], "Guid").as_guid().unwrap().to_string();
    let obj = windows_mailbox("LeeG", &guid).replace("<Obj RefId=\"0\">", "<Obj{N} RefId=\"{R}\">");
    let r = w
        .run(
            &[Cmd::new(
                "Get-MailboxStatistics",
                [colon("Identity", V::Raw(obj))],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::COMPLETED, "{:?}", r.state_error);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(text(prop(&r.outputs[0], "DisplayName")), "Lee Gu");
    let sent = bodies(&data, "Get-MailboxStatistics");
    assert!(sent.last().unwrap()["Identity"].is_string(), "{sent:?}");
}

/// Row 2's note, "any cmdlet Exchange exports to the app": the cmdlet list comes from what
/// Exchange publishes for the app (RBAC-trimmed); a cmdlet it does not export is not found,
/// and Import-PSSession's metadata does not offer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_get_cmdlets_are_those_exchange_exports_windows() {
    let (h, data) = start(20).await;
    *data.knobs.exported_cmdlets.lock().unwrap() =
        Some(vec!["Get-Mailbox".into(), "Get-Recipient".into()]);
    let (mut w, _) = Wire::open(&h, true).await;
    let meta = w.command_metadata("Get-*").await;
    assert_eq!(meta.state, state::COMPLETED, "{:?}", meta.state_error);
    let offered: Vec<String> = meta.outputs[1..]
        .iter()
        .map(|o| text(prop(o, "Name")).to_owned())
        .collect();
    assert!(offered.contains(&"Get-Mailbox".to_owned()), "{offered:?}");
    assert!(offered.contains(&"Get-Recipient".to_owned()), "{offered:?}");
    assert!(
        !offered.contains(&"Get-MailboxStatistics".to_owned()),
        "not exported: {offered:?}"
    );
    let r = w
        .run(
            &[Cmd::new(
                "Get-MailboxStatistics",
                [colon("Identity", s("LeeG"))],
            )],
            None,
        )
        .await;
    assert_eq!(r.state, state::FAILED);
    assert_eq!(
        r.state_error.as_ref().map(|e| e.fq_error.as_str()),
        Some("CommandNotFoundException")
    );
    assert!(bodies(&data, "Get-MailboxStatistics").is_empty());
    let r = w
        .run(
            &[Cmd::new("Get-Recipient", [colon("ResultSize", V::I32(2))])],
            None,
        )
        .await;
    assert_eq!(r.names(), ["AdeleV", "AlexW"]);
}
