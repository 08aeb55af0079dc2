//! REST bridge (issue #6): the `rest`-mode executor against the simulated Exchange Online
//! admin API over real HTTPS on 127.0.0.1:0 — paging, errors, warnings, state changes,
//! parameter types, pipelines and pipeline input, command metadata, throttling, token
//! refresh, cancellation, timeouts — plus the compatibility check against the simulated RPS
//! executor. Pipelines are built here the way each client sends them (pypsrp's plain names,
//! Windows' `-Name:` tokens, bare `-ResultSize` + positional value, enum and SwitchParameter
//! objects, deserialized objects as pipeline input).

mod interop;
mod server;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use exo_authproxy::bridge::{RestExecutor, RestSettings};
use exo_authproxy::remoting::clixml::{Container, Object, Value};
use exo_authproxy::remoting::executor::{
    Argument, Command, ErrorCategory, Executor, MetadataQuery, Output, OutputSink, Pipeline,
    PipelineEnd, Statement,
};
use exo_authproxy::sandbox::data::ExchangeData;
use exo_authproxy::sandbox::rps::RpsExecutor;
use server::{AdminApi, TestTokens, app, caller};

struct Bridge {
    api: AdminApi,
    tokens: Arc<TestTokens>,
    exec: RestExecutor<TestTokens>,
}

async fn bridge_with(mailboxes: usize, tune: impl FnOnce(&mut RestSettings)) -> Bridge {
    let api = AdminApi::start(Arc::new(ExchangeData::new(mailboxes))).await;
    let tokens = Arc::new(TestTokens::default());
    let mut settings = RestSettings::new(api.url.clone());
    settings.retry_base = Duration::from_millis(10);
    tune(&mut settings);
    let exec = RestExecutor::new(api.http_client(), tokens.clone(), settings);
    Bridge { api, tokens, exec }
}

async fn bridge(mailboxes: usize) -> Bridge {
    bridge_with(mailboxes, |_| {}).await
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

fn cmd(name: &str, args: &[(Option<&str>, Value)]) -> Command {
    Command {
        name: name.into(),
        is_script: false,
        args: args
            .iter()
            .map(|(n, v)| Argument {
                name: n.map(Into::into),
                value: v.clone(),
            })
            .collect(),
        merge_errors_into_output: false,
    }
}

fn pipeline(commands: Vec<Command>) -> Pipeline {
    Pipeline {
        statements: vec![Statement { commands }],
        no_input: true,
        origin: Default::default(),
    }
}

async fn run_on<E: Executor>(
    exec: &E,
    caller: &E::Caller,
    p: Pipeline,
    input: Vec<Value>,
) -> (Vec<Output>, PipelineEnd) {
    let (sink, mut rx) = OutputSink::channel(64);
    let (tx, input_rx) = tokio::sync::mpsc::channel(4);
    let feed = async move {
        for v in input {
            tx.send(v).await.expect("input");
        }
    };
    let collect = async move {
        let mut v = Vec::new();
        while let Some(o) = rx.recv().await {
            v.push(o);
        }
        v
    };
    let (end, outs, ()) = tokio::join!(exec.run(caller, p, input_rx, sink), collect, feed);
    (outs, end)
}

async fn run(b: &Bridge, p: Pipeline) -> (Vec<Output>, PipelineEnd) {
    run_on(&b.exec, &caller(), p, vec![]).await
}

fn objects(outs: &[Output]) -> Vec<&Object> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Object(Value::Object(obj)) => Some(&**obj),
            _ => None,
        })
        .collect()
}

fn prop<'a>(o: &'a Object, name: &str) -> &'a Value {
    o.adapted
        .iter()
        .chain(o.extended.iter())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {o:?}"))
}

fn last_body(b: &Bridge) -> serde_json::Value {
    b.api
        .data
        .stats
        .last_request
        .lock()
        .unwrap()
        .clone()
        .expect("a request")
        .1
}

fn last_headers(b: &Bridge) -> Vec<(String, String)> {
    b.api
        .data
        .stats
        .last_request
        .lock()
        .unwrap()
        .clone()
        .expect("a request")
        .0
}

fn enum_obj(type_name: &str, name: &str, n: i32) -> Value {
    Value::Object(Box::new(Object {
        type_names: vec![
            type_name.into(),
            "System.Enum".into(),
            "System.ValueType".into(),
            "System.Object".into(),
        ],
        to_string: Some(name.into()),
        primitive: Some(Value::I32(n)),
        ..Object::default()
    }))
}

fn switch_obj(present: bool) -> Value {
    Value::Object(Box::new(Object {
        type_names: vec![
            "System.Management.Automation.SwitchParameter".into(),
            "System.ValueType".into(),
            "System.Object".into(),
        ],
        to_string: Some(if present { "True" } else { "False" }.into()),
        adapted: vec![("IsPresent".into(), Value::Bool(present))],
        ..Object::default()
    }))
}

#[tokio::test]
async fn get_mailbox_one_object_looks_as_rps_did() {
    let b = bridge(20).await;
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(Some("Identity"), s("AdeleV"))])]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    let objs = objects(&outs);
    assert_eq!(objs.len(), 1, "{outs:?}");
    let m = objs[0];
    assert_eq!(
        m.type_names[0],
        "Microsoft.Exchange.Data.Directory.Management.Mailbox"
    );
    assert_eq!(m.to_string.as_deref(), Some("AdeleV"));
    assert_eq!(prop(m, "DisplayName"), &s("Adele Vance"));
    assert!(matches!(prop(m, "Guid"), Value::Guid(_)));
    assert!(matches!(prop(m, "WhenCreated"), Value::DateTime(_)));
    // `…UTC` properties keep their UTC kind (`Z` on the wire), as RPS sent them.
    assert!(matches!(prop(m, "WhenChangedUTC"), Value::UtcDateTime(_)));
    assert_eq!(prop(m, "PitrCopyIntervalInSeconds"), &Value::I16(0));
    assert_eq!(
        prop(m, "ProhibitSendQuota"),
        &s("99 GB (106,300,440,576 bytes)")
    );
    let Value::Object(list) = prop(m, "EmailAddresses") else {
        panic!()
    };
    assert_eq!(list.type_names[0], "System.Collections.ArrayList");
    assert!(matches!(&list.container, Some(Container::List(v)) if v.len() == 2));
    assert!(
        m.adapted.iter().all(|(k, _)| !k.contains('@')),
        "annotations are not properties"
    );
    // The request as the module sends it.
    let h = last_headers(&b);
    let get = |n: &str| {
        h.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        get("x-anchormailbox"),
        format!(
            "APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{}",
            server::TENANT_ID
        )
    );
    assert_eq!(get("authorization"), "Bearer tok-0");
    assert_eq!(get("prefer"), "odata.maxpagesize=1000");
    assert_eq!(get("x-cmdletname"), "Get-Mailbox");
    assert!(get("client-request-id").parse::<uuid::Uuid>().is_ok());
    assert_eq!(
        last_body(&b),
        serde_json::json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {"Identity": "AdeleV"}}})
    );
}

#[tokio::test]
async fn get_mailbox_zero_objects_completes() {
    let b = bridge(20).await;
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("Filter"), s("CustomAttribute1 -eq 'nobody'"))],
        )]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    assert!(outs.is_empty(), "{outs:?}");
}

#[tokio::test]
async fn get_mailbox_ten_thousand_objects_follows_every_page() {
    let b = bridge(10_000).await;
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("ResultSize"), s("Unlimited"))],
        )]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    let objs = objects(&outs);
    assert_eq!(objs.len(), 10_000);
    assert_eq!(
        outs.len(),
        10_000,
        "no warning when everything was asked for"
    );
    assert_eq!(prop(objs[9_999], "Name"), &s("user09999"));
    assert_eq!(
        b.api.data.stats.page_requests.load(Ordering::SeqCst),
        9,
        "1 first page + 9 next links"
    );
    // Without -ResultSize Exchange stops at 1000 and warns once, after the objects.
    let (outs, _) = run(&b, pipeline(vec![cmd("Get-Mailbox", &[])])).await;
    assert_eq!(objects(&outs).len(), 1000);
    assert!(
        matches!(outs.last(), Some(Output::Warning(w)) if w.starts_with("There are more results available"))
    );
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Output::Warning(_)))
            .count(),
        1
    );
}

#[tokio::test]
async fn unknown_identity_is_an_error_record_with_exchange_text() {
    let b = bridge(5).await;
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("Identity"), s("nosuchuser"))],
        )]),
    )
    .await;
    assert_eq!(
        end,
        PipelineEnd::Completed,
        "non-terminating, as Exchange's were"
    );
    let [Output::Error(e)] = outs.as_slice() else {
        panic!("{outs:?}")
    };
    assert!(e.message.starts_with("The operation couldn't be performed because object 'nosuchuser' couldn't be found on 'AM0PR01MB"), "{}", e.message);
    assert_eq!(
        e.exception_type,
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
    );
    assert_eq!(e.reason, "ManagementObjectNotFoundException");
    assert_eq!(e.activity, "Get-Mailbox");
    assert!(
        e.fully_qualified_error_id.starts_with("[Server=AM0PR01MB"),
        "{}",
        e.fully_qualified_error_id
    );
    assert!(
        e.fully_qualified_error_id
            .ends_with(",Microsoft.Exchange.Management.RecipientTasks.GetMailbox")
    );
    // -ErrorAction Stop (as Windows sends it: an enum object) makes it terminating.
    let stop = enum_obj("System.Management.Automation.ActionPreference", "Stop", 1);
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[
                (Some("-Identity:"), s("nosuchuser")),
                (Some("-ErrorAction:"), stop),
            ],
        )]),
    )
    .await;
    let PipelineEnd::Failed(rec) = end else {
        panic!("{end:?}")
    };
    assert!(rec.message.contains("'nosuchuser' couldn't be found"));
    assert!(outs.is_empty());
    assert_eq!(
        last_body(&b)["CmdletInput"]["Parameters"]["ErrorAction"],
        "Stop"
    );
    // SilentlyContinue drops it.
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[
                (Some("Identity"), s("nosuchuser")),
                (Some("ErrorAction"), s("SilentlyContinue")),
            ],
        )]),
    )
    .await;
    assert_eq!((outs.len(), end), (0, PipelineEnd::Completed));
}

#[tokio::test]
async fn set_then_get_shows_the_change_and_repeat_warns() {
    let b = bridge(5).await;
    let set = pipeline(vec![cmd(
        "Set-Mailbox",
        &[
            (Some("Identity"), s("AlexW")),
            (Some("CustomAttribute1"), s("changed")),
        ],
    )]);
    let (outs, end) = run(&b, set.clone()).await;
    assert_eq!((outs.len(), end), (0, PipelineEnd::Completed), "{outs:?}");
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AlexW"))])]),
    )
    .await;
    assert_eq!(prop(objects(&outs)[0], "CustomAttribute1"), &s("changed"));
    let (outs, end) = run(&b, set).await;
    assert_eq!(end, PipelineEnd::Completed);
    let [Output::Warning(w)] = outs.as_slice() else {
        panic!("{outs:?}")
    };
    assert_eq!(
        w,
        "The command completed successfully but no settings of 'AlexW' have been modified."
    );
    // -WarningAction SilentlyContinue hides it and travels as a header too.
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd(
            "Set-Mailbox",
            &[
                (Some("Identity"), s("AlexW")),
                (Some("CustomAttribute1"), s("changed")),
                (Some("WarningAction"), s("SilentlyContinue")),
            ],
        )]),
    )
    .await;
    assert!(outs.is_empty());
    assert!(last_headers(&b).contains(&("warningaction".into(), "SilentlyContinue".into())));
}

#[tokio::test]
async fn switch_array_and_hashtable_parameters_arrive_with_json_types() {
    let b = bridge(5).await;
    let langs = Value::Object(Box::new(Object {
        type_names: vec![
            "System.Object[]".into(),
            "System.Array".into(),
            "System.Object".into(),
        ],
        container: Some(Container::List(vec![s("en-US"), s("de-DE")])),
        ..Object::default()
    }));
    let addrs = Value::Object(Box::new(Object {
        type_names: vec![
            "System.Collections.Hashtable".into(),
            "System.Object".into(),
        ],
        container: Some(Container::Dictionary(vec![(
            s("Add"),
            s("smtp:alias2@contoso.com"),
        )])),
        ..Object::default()
    }));
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Set-Mailbox",
            &[
                (Some("Identity"), s("DiegoS")),
                (Some("Force"), Value::Bool(true)),
                (Some("Languages"), langs),
                (Some("EmailAddresses"), addrs),
                (Some("-HiddenFromAddressListsEnabled"), Value::Nil),
                (None, Value::Bool(true)),
                (Some("-Confirm:"), switch_obj(false)),
            ],
        )]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed, "{outs:?}");
    assert_eq!(
        last_body(&b)["CmdletInput"]["Parameters"],
        serde_json::json!({
            "Identity": "DiegoS", "Force": true, "Languages": ["en-US", "de-DE"],
            "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": "smtp:alias2@contoso.com"},
            "HiddenFromAddressListsEnabled": true, "Confirm": false,
        })
    );
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("DiegoS"))])]),
    )
    .await;
    let m = objects(&outs)[0];
    assert_eq!(prop(m, "HiddenFromAddressListsEnabled"), &Value::Bool(true));
    let Value::Object(list) = prop(m, "EmailAddresses") else {
        panic!()
    };
    assert!(
        matches!(&list.container, Some(Container::List(v)) if v.contains(&s("smtp:alias2@contoso.com")))
    );
}

#[tokio::test]
async fn windows_converter_forms_bind_like_powershell() {
    let b = bridge(50).await;
    // Invoke-Command { Get-Mailbox -ResultSize 10 }: bare token, then the value positionally.
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("-ResultSize"), Value::Nil), (None, Value::I32(10))],
        )]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    assert_eq!(objects(&outs).len(), 10);
    assert_eq!(
        last_body(&b)["CmdletInput"]["Parameters"],
        serde_json::json!({"ResultSize": 10})
    );
    assert!(last_headers(&b).contains(&("prefer".into(), "odata.maxpagesize=10".into())));
    // Import-PSSession proxy: -Identity: + value, "-Name: " with a space, prefix and case.
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd(
            "get-mailbox",
            &[
                (Some("-identity:"), s("MeganB")),
                (Some("-ResultS: "), s("Unlimited")),
            ],
        )]),
    )
    .await;
    assert_eq!(objects(&outs).len(), 1);
    assert_eq!(
        last_body(&b)["CmdletInput"]["Parameters"],
        serde_json::json!({"Identity": "MeganB", "ResultSize": "Unlimited"})
    );
    // A binding error fails the pipeline with PowerShell's text and sends nothing.
    let before = b.api.data.stats.invoke_requests.load(Ordering::SeqCst);
    let (_, end) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(Some("-Idnetity:"), s("x"))])]),
    )
    .await;
    let PipelineEnd::Failed(rec) = end else {
        panic!()
    };
    assert_eq!(
        rec.message,
        "A parameter cannot be found that matches parameter name 'Idnetity'."
    );
    assert_eq!(
        rec.fully_qualified_error_id,
        "NamedParameterNotFound,Get-Mailbox"
    );
    assert_eq!(rec.category, ErrorCategory::InvalidArgument);
    assert_eq!(
        b.api.data.stats.invoke_requests.load(Ordering::SeqCst),
        before
    );
}

#[tokio::test]
async fn two_cmdlet_pipeline_runs_the_second_per_object() {
    let b = bridge(30).await;
    let (outs, end) = run(
        &b,
        pipeline(vec![
            cmd("Get-Mailbox", &[(Some("ResultSize"), Value::I32(10))]),
            cmd("Set-Mailbox", &[(Some("CustomAttribute1"), s("x"))]),
        ]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    // Objects of the first go to the second; its output (none) and warnings come back.
    assert!(objects(&outs).is_empty(), "{outs:?}");
    let bodies = b.api.data.stats.bodies.lock().unwrap().clone();
    let sets: Vec<_> = bodies
        .iter()
        .filter(|b| b["CmdletInput"]["CmdletName"] == "Set-Mailbox")
        .collect();
    assert_eq!(sets.len(), 10);
    assert_eq!(
        sets[0]["CmdletInput"]["Parameters"],
        serde_json::json!({"CustomAttribute1": "x", "Identity": "AdeleV"})
    );
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[
                (Some("Filter"), s("CustomAttribute1 -eq 'x'")),
                (Some("ResultSize"), s("Unlimited")),
            ],
        )]),
    )
    .await;
    assert_eq!(objects(&outs).len(), 10);
    // Get-Mailbox | Select-Object -First 2 stops after the first page.
    let pages = b.api.data.stats.page_requests.load(Ordering::SeqCst);
    let (outs, _) = run(
        &b,
        pipeline(vec![
            cmd("Get-Mailbox", &[(Some("ResultSize"), s("Unlimited"))]),
            cmd("Select-Object", &[(Some("First"), Value::I32(2))]),
        ]),
    )
    .await;
    assert_eq!(objects(&outs).len(), 2);
    assert_eq!(b.api.data.stats.page_requests.load(Ordering::SeqCst), pages);
}

#[tokio::test]
async fn pipeline_input_from_the_client_binds_identity_per_object() {
    let b = bridge(10).await;
    // What an Import-PSSession proxy streams back: the deserialized mailboxes it got earlier.
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("ResultSize"), Value::I32(3))],
        )]),
    )
    .await;
    let mut input: Vec<Value> = objects(&outs)
        .into_iter()
        .map(|o| {
            let mut o = o.clone();
            o.type_names = o
                .type_names
                .iter()
                .map(|t| format!("Deserialized.{t}"))
                .collect();
            Value::Object(Box::new(o))
        })
        .collect();
    input.push(s("nosuchuser"));
    let p = Pipeline {
        statements: vec![Statement {
            commands: vec![cmd(
                "Set-Mailbox",
                &[(Some("-CustomAttribute3:"), s("from-input"))],
            )],
        }],
        no_input: false,
        origin: Default::default(),
    };
    let (outs, end) = run_on(&b.exec, &caller(), p, input).await;
    assert_eq!(end, PipelineEnd::Completed);
    let errors: Vec<_> = outs
        .iter()
        .filter_map(|o| {
            if let Output::Error(e) = o {
                Some(e)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one unknown identity among several is non-terminating: {outs:?}"
    );
    assert!(errors[0].message.contains("'nosuchuser'"));
    let (outs, _) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("Filter"), s("CustomAttribute3 -eq 'from-input'"))],
        )]),
    )
    .await;
    assert_eq!(objects(&outs).len(), 3);
}

#[tokio::test]
async fn command_metadata_from_the_catalog_trimmed_to_exported_cmdlets() {
    let b = bridge(1).await;
    *b.api.data.knobs.exported_cmdlets.lock().unwrap() = Some(vec![
        "Get-Mailbox".into(),
        "Set-Mailbox".into(),
        "Get-Frobnicator".into(),
    ]);
    let q = |names: &[&str]| MetadataQuery {
        names: names.iter().map(|s| (*s).into()).collect(),
        command_types: 399,
        namespace: None,
    };
    let all = b.exec.command_metadata(&caller(), q(&["*"])).await.unwrap();
    let names: Vec<_> = all.iter().map(|m| m.name.as_str()).collect();
    assert!(
        names.contains(&"Get-Mailbox")
            && names.contains(&"Get-Frobnicator")
            && names.contains(&"Get-FormatData"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"Get-Recipient"),
        "not exported to this app"
    );
    let gm = all.iter().find(|m| m.name == "Get-Mailbox").unwrap();
    assert!(
        gm.parameters
            .iter()
            .any(|p| p.name == "Identity" && p.position == Some(0))
    );
    assert!(
        all.iter()
            .find(|m| m.name == "Set-Mailbox")
            .unwrap()
            .supports_should_process
    );
    // Cached per tenant: one EXOModuleFile request however many queries.
    let _ = b
        .exec
        .command_metadata(&caller(), q(&["Get-*"]))
        .await
        .unwrap();
    assert_eq!(
        b.api.data.stats.module_file_requests.load(Ordering::SeqCst),
        1
    );
    // A cmdlet outside the table still runs, its named parameters passed through.
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd(
            "Get-Frobnicator",
            &[(Some("-Level:"), Value::I32(3))],
        )]),
    )
    .await;
    assert!(
        matches!(end, PipelineEnd::Failed(_)),
        "the simulator itself does not know it: {outs:?} {end:?}"
    );
    assert_eq!(
        last_body(&b)["CmdletInput"],
        serde_json::json!({"CmdletName": "Get-Frobnicator", "Parameters": {"Level": 3}})
    );
}

#[tokio::test]
async fn throttled_then_success_honours_retry_after() {
    let b = bridge(5).await;
    b.api.data.knobs.throttle_next.store(1, Ordering::SeqCst);
    b.api.data.knobs.retry_after_secs.store(1, Ordering::SeqCst);
    let t = Instant::now();
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AdeleV"))])]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    assert_eq!(objects(&outs).len(), 1);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited Retry-After: {:?}",
        t.elapsed()
    );
    assert_eq!(b.api.data.stats.invoke_requests.load(Ordering::SeqCst), 2);
    // 503 twice, then fine (back-off without Retry-After).
    b.api.data.knobs.unavailable_next.store(2, Ordering::SeqCst);
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AdeleV"))])]),
    )
    .await;
    assert_eq!((objects(&outs).len(), end), (1, PipelineEnd::Completed));
}

#[tokio::test]
async fn throttled_beyond_the_retries_fails_with_a_clear_error() {
    let b = bridge_with(5, |s| s.max_retries = 2).await;
    b.api.data.knobs.throttle_next.store(10, Ordering::SeqCst);
    let (_, end) = run(&b, pipeline(vec![cmd("Get-Mailbox", &[])])).await;
    let PipelineEnd::Failed(rec) = end else {
        panic!("{end:?}")
    };
    assert_eq!(rec.category, ErrorCategory::LimitsExceeded);
    assert!(rec.fully_qualified_error_id.starts_with("ThrottlingError,"));
    assert!(
        rec.message.contains("throttling this tenant (contoso)")
            && rec.message.contains("after 2 retries"),
        "{}",
        rec.message
    );
    assert_eq!(b.api.data.stats.invoke_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn unauthorized_refreshes_the_token_once() {
    let b = bridge(5).await;
    b.api
        .data
        .knobs
        .unauthorized_next
        .store(1, Ordering::SeqCst);
    let (outs, end) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AdeleV"))])]),
    )
    .await;
    assert_eq!((objects(&outs).len(), end), (1, PipelineEnd::Completed));
    assert_eq!(b.tokens.refreshes.load(Ordering::SeqCst), 1);
    assert!(last_headers(&b).contains(&("authorization".into(), "Bearer tok-1".into())));
    b.api
        .data
        .knobs
        .unauthorized_next
        .store(2, Ordering::SeqCst);
    let (_, end) = run(
        &b,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AdeleV"))])]),
    )
    .await;
    let PipelineEnd::Failed(rec) = end else {
        panic!()
    };
    assert_eq!(rec.category, ErrorCategory::AuthenticationError);
    assert!(
        rec.message.contains("Exchange.ManageAsApp"),
        "{}",
        rec.message
    );
    // No token at all: the token engine's text reaches the script.
    b.tokens.fail.store(true, Ordering::SeqCst);
    let (_, end) = run(&b, pipeline(vec![cmd("Get-Mailbox", &[])])).await;
    let PipelineEnd::Failed(rec) = end else {
        panic!()
    };
    assert!(rec.message.contains("AADSTS700027"), "{}", rec.message);
}

/// Waits until the simulator's counters satisfy `done`; a bound (not a measurement) keeps a
/// regression from hanging the run.
async fn seen(
    stats: &exo_authproxy::sandbox::data::Stats,
    what: &str,
    done: impl Fn(&exo_authproxy::sandbox::data::Stats) -> bool,
) {
    if tokio::time::timeout(Duration::from_secs(60), stats.until(done))
        .await
        .is_err()
    {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::SeqCst);
        panic!(
            "the simulator never saw {what}: {} requests, {} follow-up pages, {} answered, {} abandoned",
            n(&stats.invoke_requests),
            n(&stats.page_requests),
            n(&stats.pages_answered),
            n(&stats.abandoned_requests)
        );
    }
}

/// `Get-Mailbox -ResultSize Unlimited` started into a one-slot output sink (a client that
/// takes one object at a time): the running pipeline and what it writes.
fn unlimited_into_one_slot<'a>(
    exec: &'a RestExecutor<TestTokens>,
    caller: &'a exo_authproxy::bridge::RestCaller,
) -> (
    std::pin::Pin<Box<impl Future<Output = PipelineEnd> + 'a>>,
    tokio::sync::mpsc::Receiver<Output>,
) {
    let (sink, rx) = OutputSink::channel(1);
    let (_tx, input) = tokio::sync::mpsc::channel(1);
    let p = pipeline(vec![cmd(
        "Get-Mailbox",
        &[(Some("ResultSize"), s("Unlimited"))],
    )]);
    (Box::pin(exec.run(caller, p, input, sink)), rx)
}

/// Drives `until` while the pipeline keeps running; the pipeline ending first is a failure.
async fn while_running(
    run: &mut std::pin::Pin<Box<impl Future<Output = PipelineEnd>>>,
    until: impl Future<Output = ()>,
) {
    tokio::select! {
        end = run => panic!("the pipeline ended early: {end:?}"),
        () = until => {}
    }
}

async fn take(rx: &mut tokio::sync::mpsc::Receiver<Output>, n: usize) {
    for _ in 0..n {
        rx.recv().await.expect("an object");
    }
}

/// Ctrl-C while the client sits on the first page: the one page requested ahead is
/// cancelled in flight (Exchange never answers it) and nothing is requested after the stop.
#[tokio::test]
async fn stopping_during_paging_cancels_the_page_ahead_and_requests_no_more() {
    let b = bridge(10_000).await;
    let stats = &b.api.data.stats;
    // Follow-up pages are held far longer than the test runs: the page ahead is in flight
    // when the stop comes.
    b.api
        .data
        .knobs
        .page_latency_ms
        .store(3_600_000, Ordering::SeqCst);
    let caller = caller();
    let (mut run, mut rx) = unlimited_into_one_slot(&b.exec, &caller);
    while_running(&mut run, take(&mut rx, 5)).await;
    // The client holds the first page; the page ahead is requested.
    while_running(
        &mut run,
        seen(stats, "the page ahead requested", |s| {
            s.page_requests.load(Ordering::SeqCst) == 1
        }),
    )
    .await;
    drop(run); // what the endpoint does on Signal ctrl_c
    seen(stats, "the page ahead abandoned", |s| {
        s.abandoned_requests.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(stats.pages_answered.load(Ordering::SeqCst), 0);
    // One more full round trip on the same server: no page request arrived in between.
    let (outs, _) = run_on(
        &b.exec,
        &caller,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AdeleV"))])]),
        vec![],
    )
    .await;
    assert_eq!(objects(&outs).len(), 1);
    assert_eq!(stats.invoke_requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        stats.page_requests.load(Ordering::SeqCst),
        1,
        "only the one page ahead"
    );
}

/// A slow client slows the paging: the bridge runs at most one page ahead of what the
/// client has taken.
#[tokio::test]
async fn paging_runs_at_most_one_page_ahead_of_a_slow_client() {
    let b = bridge(5_000).await;
    let stats = &b.api.data.stats;
    let caller = caller();
    let (mut run, mut rx) = unlimited_into_one_slot(&b.exec, &caller);
    // Take the first page and one object of the second.
    while_running(&mut run, take(&mut rx, 1_001)).await;
    // Page 3 is the one ahead; let the bridge run as far as it will without the client.
    while_running(
        &mut run,
        seen(stats, "page 3 answered", |s| {
            s.pages_answered.load(Ordering::SeqCst) == 2
        }),
    )
    .await;
    while_running(&mut run, async {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        stats.page_requests.load(Ordering::SeqCst),
        2,
        "pages 2 and 3 only"
    );
    drop(run);
}

#[tokio::test]
async fn first_object_arrives_before_the_last_page_is_fetched() {
    let b = bridge(3_000).await;
    b.api
        .data
        .knobs
        .page_latency_ms
        .store(300, Ordering::SeqCst);
    let (sink, mut rx) = OutputSink::channel(2000);
    let (_tx, input) = tokio::sync::mpsc::channel(1);
    let p = pipeline(vec![cmd(
        "Get-Mailbox",
        &[(Some("ResultSize"), s("Unlimited"))],
    )]);
    let caller = caller();
    let run = b.exec.run(&caller, p, input, sink);
    let watch = async {
        let first = rx.recv().await;
        assert!(first.is_some());
        assert_eq!(
            b.api.data.stats.pages_answered.load(Ordering::SeqCst),
            0,
            "first object before any next page was answered"
        );
        let mut n = 1;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    };
    let (end, n) = tokio::join!(run, watch);
    assert_eq!((end, n), (PipelineEnd::Completed, 3_000));
}

#[tokio::test]
async fn cmdlet_timeout_is_a_clear_error() {
    let b = bridge_with(5, |s| s.timeout = Duration::from_millis(200)).await;
    b.api.data.knobs.latency_ms.store(2_000, Ordering::SeqCst);
    let (_, end) = run(&b, pipeline(vec![cmd("Get-Mailbox", &[])])).await;
    let PipelineEnd::Failed(rec) = end else {
        panic!("{end:?}")
    };
    assert_eq!(rec.category, ErrorCategory::OperationTimeout);
    assert!(
        rec.message
            .starts_with("Exchange Online did not finish Get-Mailbox within 200 ms."),
        "{}",
        rec.message
    );
    assert!(rec.message.contains("15 minutes"));
}

#[tokio::test]
async fn scripts_and_unknown_commands_are_refused_with_powershell_text() {
    let b = bridge(1).await;
    let mut script = cmd("Get-Mailbox | ? { $_.Name -like 'a*' }", &[]);
    script.is_script = true;
    let (_, end) = run(&b, pipeline(vec![script])).await;
    let PipelineEnd::Failed(rec) = end else {
        panic!()
    };
    assert_eq!(rec.fully_qualified_error_id, "ScriptsNotAllowed");
    assert_eq!(
        rec.message,
        "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."
    );
    assert_eq!(rec.category, ErrorCategory::ParserError);
    let (_, end) = run(&b, pipeline(vec![cmd("Remove-EverythingEverywhere", &[])])).await;
    let PipelineEnd::Failed(rec) = end else {
        panic!()
    };
    assert_eq!(rec.fully_qualified_error_id, "CommandNotFoundException");
    assert_eq!(b.api.data.stats.invoke_requests.load(Ordering::SeqCst), 0);
}

/// The compatibility check at executor level: the same pipelines through the simulated RPS
/// runspace (what winrm mode reaches) and through the bridge over REST give equal objects —
/// property names, types and values — and equal warnings and error texts.
#[tokio::test]
async fn rps_and_bridge_produce_equal_objects() {
    let b = bridge(1_200).await;
    let rps = RpsExecutor::new(b.api.data.clone());
    let scripts = vec![
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("ResultSize"), Value::I32(25))],
        )]),
        pipeline(vec![cmd("Get-Mailbox", &[(Some("Identity"), s("DiegoS"))])]),
        pipeline(vec![cmd("Get-Mailbox", &[])]),
        pipeline(vec![cmd(
            "Get-Recipient",
            &[(Some("ResultSize"), Value::I32(5))],
        )]),
        pipeline(vec![cmd("Get-OrganizationConfig", &[])]),
        pipeline(vec![cmd("Get-AcceptedDomain", &[])]),
        pipeline(vec![cmd("Get-MailboxStatistics", &[(None, s("LeeG"))])]),
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("Identity"), s("nosuchuser"))],
        )]),
        pipeline(vec![
            cmd("Get-Mailbox", &[(Some("ResultSize"), Value::I32(3))]),
            cmd("Select-Object", &[(Some("Property"), s("Name"))]),
        ]),
    ];
    for p in scripts {
        let (via_rest, end_rest) = run(&b, p.clone()).await;
        let (via_rps, end_rps) = run_on(&rps, &app(), p.clone(), vec![]).await;
        assert_eq!(end_rest, end_rps, "{p:?}");
        assert_eq!(via_rest.len(), via_rps.len(), "{p:?}");
        for (r, w) in via_rest.iter().zip(&via_rps) {
            match (r, w) {
                (Output::Error(a), Output::Error(b)) => {
                    assert_eq!(
                        (&a.message, &a.exception_type, a.category),
                        (&b.message, &b.exception_type, b.category)
                    );
                }
                (a, b) => assert_eq!(a, b, "{p:?}"),
            }
        }
    }
}

/// `/metrics` for rest mode: each cmdlet call counted once with its result, every page, and
/// every wait before a retry.
#[tokio::test]
async fn bridge_counts_cmdlet_calls_pages_and_retries() {
    let metrics = exo_authproxy::metrics::Metrics::new();
    let Bridge { api, exec, .. } = bridge(2_500).await;
    let exec = exec.with_metrics(metrics.bridge.clone());
    let caller = caller();
    let (outs, end) = run_on(
        &exec,
        &caller,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("ResultSize"), s("Unlimited"))],
        )]),
        vec![],
    )
    .await;
    assert_eq!((end, objects(&outs).len()), (PipelineEnd::Completed, 2_500));
    let (_, end) = run_on(
        &exec,
        &caller,
        pipeline(vec![cmd(
            "Get-Mailbox",
            &[(Some("Identity"), s("nosuchuser"))],
        )]),
        vec![],
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    api.data.knobs.unavailable_next.store(2, Ordering::SeqCst);
    let (_, end) = run_on(
        &exec,
        &caller,
        pipeline(vec![cmd("Get-Mailbox", &[(None, s("AdeleV"))])]),
        vec![],
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed);
    let text = metrics.encode();
    for line in [
        "exo_authproxy_rest_cmdlet_calls_total{endpoint=\"exchange\",cmdlet=\"Get-Mailbox\",result=\"ok\"} 2",
        "exo_authproxy_rest_cmdlet_calls_total{endpoint=\"exchange\",cmdlet=\"Get-Mailbox\",result=\"error\"} 1",
        // 3 pages of the 2,500, then one for AdeleV.
        "exo_authproxy_rest_pages_total 4",
        "exo_authproxy_rest_retries_total{reason=\"503\"} 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// The audit trail in rest mode: each cmdlet with the local user, tenant, parameter names
/// (never values), result and object count; a call stopped mid-way says so.
#[test]
fn audit_records_each_cmdlet_with_parameter_names_only() {
    let (logs, _guard) = crate::support::harness::Logs::capture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = bridge(2_500).await;
        let caller = caller();
        let (_, end) = run_on(
            &b.exec,
            &caller,
            pipeline(vec![cmd(
                "Set-Mailbox",
                &[
                    (Some("Identity"), s("AdeleV")),
                    (Some("CustomAttribute1"), s("secret-value-42")),
                ],
            )]),
            vec![],
        )
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        let (outs, end) = run_on(
            &b.exec,
            &caller,
            pipeline(vec![
                cmd("Get-Mailbox", &[(Some("ResultSize"), s("Unlimited"))]),
                cmd("Select-Object", &[(Some("First"), Value::I32(3))]),
            ]),
            vec![],
        )
        .await;
        assert_eq!((end, objects(&outs).len()), (PipelineEnd::Completed, 3));
    });
    let text = logs.text();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(exo_authproxy::audit::TARGET))
        .collect();
    assert_eq!(audit.len(), 2, "{}", audit.join("\n"));
    for (line, fields) in [
        (
            audit[0],
            &[
                "event=\"command\"",
                "cmdlet=\"Set-Mailbox\"",
                "parameters=Identity,CustomAttribute1",
                "result=\"ok\"",
                "objects=0",
            ][..],
        ),
        (
            audit[1],
            &[
                "cmdlet=\"Get-Mailbox\"",
                "parameters=ResultSize",
                "result=\"stopped\"",
            ][..],
        ),
    ] {
        for field in fields
            .iter()
            .chain(&["user=\"reporting\"", "tenant=contoso"])
        {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    assert!(
        !text.contains("secret-value-42"),
        "a parameter value was logged"
    );
}

/// The bridge binds the built-ins with the same parameters as the remoting endpoint
/// (Windows PowerShell 5.1's): what PowerShell accepts is not a binding error in rest mode.
#[tokio::test]
async fn built_ins_take_every_parameter_powershell_declares() {
    let b = bridge(5).await;
    let (outs, end) = run(
        &b,
        pipeline(vec![
            cmd("Get-Mailbox", &[]),
            cmd(
                "Measure-Object",
                &[(Some("Sum"), Value::Nil), (Some("Property"), s("Name"))],
            ),
        ]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed, "{outs:?}");
    assert_eq!(objects(&outs).len(), 1, "one GenericMeasureInfo: {outs:?}");
    let (outs, end) = run(
        &b,
        pipeline(vec![
            cmd("Get-Mailbox", &[]),
            cmd(
                "Select-Object",
                &[
                    (Some("First"), Value::I32(2)),
                    (Some("ExcludeProperty"), s("Guid")),
                ],
            ),
        ]),
    )
    .await;
    assert_eq!(end, PipelineEnd::Completed, "{outs:?}");
    assert_eq!(objects(&outs).len(), 2);
}

/// Through the listener: a client that reads one Receive's worth of a 5,000-mailbox
/// `Get-Mailbox -ResultSize Unlimited` and then stops reading holds the proxy at one page
/// ahead — the simulator answers the first page and the one page requested ahead, and no
/// third — however long the client waits; reading on then delivers every object. Counted
/// by the simulator (pages requested), never timed.
#[tokio::test]
async fn a_slow_client_holds_the_proxy_to_one_page_ahead() {
    use crate::support::harness::{Sandboxed, SandboxedOptions};
    use crate::support::wire::{self, Cmd, Wire};
    use exo_authproxy::remoting::fragment::Defragmenter;
    use exo_authproxy::remoting::message::MessageType;

    let (data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(5_000);
    let h = Sandboxed::start(SandboxedOptions {
        mode: exo_authproxy::config::Mode::Rest,
        rps,
        adminapi: Some(adminapi),
        ..SandboxedOptions::default()
    })
    .await;
    let stats = &data.stats;
    let (mut w, _) = Wire::open(&h, false).await;
    let pid = w
        .start(
            &[Cmd::new(
                "Get-Mailbox",
                [wire::colon("ResultSize", wire::s("Unlimited"))],
            )],
            true,
        )
        .await;
    let mut defrag = Defragmenter::new(64 << 20);
    let mut objects = 0;
    let mut done = false;
    let mut receive = async |objects: &mut usize, done: &mut bool| {
        let r = w.receive(Some(&pid), "PT5S").await;
        if r.timed_out() {
            return;
        }
        assert_eq!(r.status, 200, "Receive: {r:?}");
        *objects += w
            .messages(&r, &mut defrag)
            .iter()
            .filter(|m| m.message_type == MessageType::PipelineOutput)
            .count();
        *done = r.command_state().as_deref()
            == Some(exo_authproxy::remoting::wsman::COMMAND_STATE_DONE);
    };
    while objects == 0 {
        receive(&mut objects, &mut done).await;
    }
    assert!(
        objects < 1_000,
        "one Receive holds part of the first page: {objects}"
    );
    // The page ahead is requested and answered while the client reads nothing more …
    seen(stats, "the page ahead answered", |s| {
        s.pages_answered.load(Ordering::SeqCst) == 1
    })
    .await;
    // … and nothing after it, however often the proxy's tasks get to run.
    for _ in 0..2_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        stats.invoke_requests.load(Ordering::SeqCst),
        2,
        "page 1 and the one ahead"
    );
    assert_eq!(
        stats.page_requests.load(Ordering::SeqCst),
        1,
        "no page beyond the one ahead"
    );
    // Reading on delivers everything.
    while !done {
        receive(&mut objects, &mut done).await;
    }
    assert_eq!(objects, 5_000);
    assert_eq!(stats.page_requests.load(Ordering::SeqCst), 4);
}
