//! The engine's stages on their own; the end-to-end tests (pypsrp through the listener) are
//! in tests/it/local_cmdlets.rs.

use super::*;
use crate::remoting::clixml::Object;
use crate::remoting::executor::Argument;

fn arg(n: Option<&str>, v: impl Into<Value>) -> Argument {
    Argument {
        name: n.map(str::to_owned),
        value: v.into(),
    }
}

fn cmd(name: &str, args: Vec<Argument>) -> Command {
    Command {
        name: name.into(),
        is_script: false,
        args,
        merge_errors_into_output: false,
    }
}

fn stage(name: &str, args: Vec<Argument>) -> Stage {
    Stage::bind(&cmd(name, args))
        .expect("binds")
        .expect("a local command")
}

fn strings(items: &[&str]) -> Value {
    Value::list(
        ["System.String[]", "System.Array", "System.Object"],
        items.iter().map(|s| Value::from(*s)).collect::<Vec<_>>(),
    )
}

fn mailbox(i: i32) -> Value {
    Object::new([
        "Microsoft.Exchange.Data.Directory.Management.Mailbox",
        "System.Object",
    ])
    .with_to_string(format!("user{i}"))
    .with_adapted("Name", format!("user{i}"))
    .with_adapted("PrimarySmtpAddress", format!("user{i}@contoso.com"))
    .with_adapted("ProhibitSendQuota", "Unlimited")
    .with_adapted("EmailAddresses", strings(&["SMTP:a@x", "smtp:b@y"]))
    .with_adapted("ItemCount", Value::I32(i * 10))
    .into_value()
}

fn objects(outputs: Vec<Output>) -> Vec<Value> {
    outputs
        .into_iter()
        .map(|o| match o {
            Output::Object(v) => v,
            other => panic!("not an object: {other:?}"),
        })
        .collect()
}

/// Pushes `inputs` into `stage` until it has enough, then finishes it: (outputs, inputs taken).
fn drive(stage: &mut Stage, inputs: impl IntoIterator<Item = Value>) -> (Vec<Output>, usize) {
    let mut out = Vec::new();
    let mut taken = 0;
    for v in inputs {
        taken += 1;
        let step = stage.push(v).expect("push");
        out.extend(step.outputs);
        if step.flow == Flow::Enough {
            break;
        }
    }
    out.extend(stage.finish().expect("finish"));
    (out, taken)
}

fn names(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            v.property("Name")
                .and_then(Value::as_text)
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

fn member_names(v: &Value) -> Vec<&str> {
    let o = v.as_object().expect("object");
    o.adapted
        .iter()
        .chain(&o.extended)
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn binds_like_powershell() {
    // The token forms Invoke-Command and Import-PSSession proxies send.
    let s = stage(
        "select-object",
        vec![
            arg(Some("-First"), Value::Nil),
            arg(None, Value::I32(2)),
            arg(Some("-ExpandProperty:"), "Name"),
            arg(Some("-Unique"), Value::Nil),
            arg(Some("Wait"), false),
        ],
    );
    assert_eq!(s.name(), "Select-Object");
    let err = Stage::bind(&cmd("Select-Object", vec![arg(Some("-Bogus:"), 1)])).unwrap_err();
    assert_eq!(
        err.fully_qualified_error_id,
        "NamedParameterNotFound,Select-Object"
    );
    let err = Stage::bind(&cmd("Select-Object", vec![arg(Some("First"), -1)])).unwrap_err();
    assert_eq!(
        err.fully_qualified_error_id,
        "ParameterArgumentValidationError,Microsoft.PowerShell.Commands.SelectObjectCommand"
    );
    assert!(Stage::bind(&cmd("Get-Mailbox", vec![])).unwrap().is_none());
}

#[test]
fn calculated_properties_with_script_blocks_are_scripts_not_allowed() {
    let calculated = Object {
        type_names: vec![
            "System.Collections.Hashtable".into(),
            "System.Object".into(),
        ],
        container: Some(Container::Dictionary(vec![
            (Value::from("Name"), Value::from("Mail")),
            (
                Value::from("Expression"),
                Value::ScriptBlock("$_.PrimarySmtpAddress".into()),
            ),
        ])),
        ..Object::default()
    }
    .into_value();
    let err = Stage::bind(&cmd(
        "Select-Object",
        vec![arg(Some("Property"), calculated)],
    ))
    .unwrap_err();
    assert_eq!(err.fully_qualified_error_id, "ScriptsNotAllowed");
    assert_eq!(err.target_name, "$_.PrimarySmtpAddress");
}

#[test]
fn property_wildcards_literals_and_type_name() {
    let mut s = stage(
        "Select-Object",
        vec![arg(
            Some("Property"),
            strings(&["Name", "Primary*", "Missing", "Nope*"]),
        )],
    );
    let (out, _) = drive(&mut s, [mailbox(1)]);
    let out = objects(out);
    assert_eq!(out.len(), 1);
    let o = out[0].as_object().unwrap();
    assert_eq!(
        o.type_names,
        vec![
            "Selected.Microsoft.Exchange.Data.Directory.Management.Mailbox",
            "System.Management.Automation.PSCustomObject",
            "System.Object"
        ]
    );
    assert_eq!(
        o.extended,
        vec![
            ("Name".into(), Value::from("user1")),
            (
                "PrimarySmtpAddress".into(),
                Value::from("user1@contoso.com")
            ),
            ("Missing".into(), Value::Nil),
        ]
    );
}

#[test]
fn exclude_property_alone_means_every_other_property() {
    let mut s = stage(
        "Select-Object",
        vec![arg(Some("ExcludeProperty"), strings(&["Name", "*Quota"]))],
    );
    let (out, _) = drive(&mut s, [mailbox(1)]);
    let out = objects(out);
    assert_eq!(
        member_names(&out[0]),
        vec!["PrimarySmtpAddress", "EmailAddresses", "ItemCount"]
    );
}

#[test]
fn expand_property_scalars_lists_and_missing() {
    let mut s = stage(
        "Select-Object",
        vec![arg(Some("ExpandProperty"), "PrimarySmtpAddress")],
    );
    let (out, _) = drive(&mut s, [mailbox(1), mailbox(2)]);
    assert_eq!(
        objects(out),
        vec![
            Value::from("user1@contoso.com"),
            Value::from("user2@contoso.com")
        ]
    );
    let mut s = stage(
        "Select-Object",
        vec![arg(Some("ExpandProperty"), "EmailAddresses")],
    );
    let (out, _) = drive(&mut s, [mailbox(1)]);
    assert_eq!(
        objects(out),
        vec![Value::from("SMTP:a@x"), Value::from("smtp:b@y")]
    );
    let mut s = stage("Select-Object", vec![arg(Some("ExpandProperty"), "Nope")]);
    let (out, _) = drive(&mut s, [mailbox(1)]);
    let [Output::Error(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(
        e.fully_qualified_error_id,
        "ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand"
    );
    assert_eq!(e.message, "Property \"Nope\" cannot be found.");
    // -ErrorAction Stop makes it terminating, SilentlyContinue drops it.
    let mut s = stage(
        "Select-Object",
        vec![
            arg(Some("ExpandProperty"), "Nope"),
            arg(Some("ErrorAction"), "Stop"),
        ],
    );
    assert!(s.push(mailbox(1)).is_err());
    let mut s = stage(
        "Select-Object",
        vec![
            arg(Some("ExpandProperty"), "Nope"),
            arg(Some("ErrorAction"), "SilentlyContinue"),
        ],
    );
    assert!(drive(&mut s, [mailbox(1)]).0.is_empty());
}

#[test]
fn first_says_enough_with_the_nth_object() {
    let mut s = stage("Select-Object", vec![arg(Some("First"), 2)]);
    let (out, taken) = drive(&mut s, (0..100).map(mailbox));
    assert_eq!(names(&objects(out)), vec!["user0", "user1"]);
    assert_eq!(taken, 2, "the second object was the last one asked for");
    let mut s = stage("Select-Object", vec![arg(Some("First"), 0)]);
    let (out, taken) = drive(&mut s, (0..100).map(mailbox));
    assert!(out.is_empty());
    assert_eq!(taken, 1);
    let mut s = stage(
        "Select-Object",
        vec![arg(Some("First"), 2), arg(Some("Skip"), 3)],
    );
    let (out, taken) = drive(&mut s, (0..100).map(mailbox));
    assert_eq!(names(&objects(out)), vec!["user3", "user4"]);
    assert_eq!(taken, 5);
}

#[test]
fn last_skip_skiplast_index_unique() {
    let run = |args: Vec<Argument>| {
        let mut s = stage("Select-Object", args);
        names(&objects(drive(&mut s, (0..10).map(mailbox)).0))
    };
    assert_eq!(run(vec![arg(Some("Last"), 2)]), vec!["user8", "user9"]);
    assert_eq!(
        run(vec![arg(Some("Last"), 2), arg(Some("Skip"), 1)]),
        vec!["user7", "user8"],
        "with -Last, -Skip counts from the end"
    );
    assert_eq!(
        run(vec![arg(Some("First"), 1), arg(Some("Last"), 1)]),
        vec!["user0", "user9"]
    );
    assert_eq!(run(vec![arg(Some("Skip"), 8)]), vec!["user8", "user9"]);
    assert_eq!(run(vec![arg(Some("SkipLast"), 8)]), vec!["user0", "user1"]);
    let index = Value::list(
        ["System.Int32[]", "System.Array", "System.Object"],
        vec![Value::I32(7), Value::I32(2), Value::I32(7)],
    );
    assert_eq!(run(vec![arg(Some("Index"), index)]), vec!["user2", "user7"]);
    // -Unique over what -Property produced.
    let mut s = stage(
        "Select-Object",
        vec![
            arg(Some("Property"), "ProhibitSendQuota"),
            arg(Some("Unique"), Value::Nil),
        ],
    );
    let out = objects(drive(&mut s, (0..10).map(mailbox)).0);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].property("ProhibitSendQuota"),
        Some(&Value::from("Unlimited"))
    );
}

#[test]
fn buffers_are_bounded_by_count_and_bytes() {
    let mut b = buffer::Buffer::with_limits("Select-Object", "-Last", 3, usize::MAX);
    for i in 0..3 {
        b.push(mailbox(i)).unwrap();
    }
    let err = b.push(mailbox(3)).unwrap_err();
    assert_eq!(err.category, ErrorCategory::LimitsExceeded);
    assert!(
        err.message.contains("more than 3 objects"),
        "{}",
        err.message
    );
    let one = buffer::estimated_size(&mailbox(0));
    assert!(one > 200, "a mailbox is not free: {one}");
    let mut b = buffer::Buffer::with_limits("Select-Object", "-Unique", usize::MAX, one * 2);
    b.push(mailbox(0)).unwrap();
    b.push(mailbox(1)).unwrap();
    assert!(b.push(mailbox(2)).is_err());
    b.pop_front();
    assert!(b.push(mailbox(2)).is_ok(), "popping gives the bytes back");
    let huge = Value::from("x".repeat(MAX_BUFFERED_BYTES));
    let mut s = stage("Select-Object", vec![arg(Some("Last"), 5)]);
    let err = s.push(huge).unwrap_err();
    assert_eq!(
        err.fully_qualified_error_id,
        "LocalBufferLimitExceeded,Microsoft.PowerShell.Commands.SelectObjectCommand"
    );
}

#[test]
fn measure_counts_sums_and_reports_missing_properties() {
    let mut s = stage("Measure-Object", vec![]);
    let out = objects(drive(&mut s, (0..5).map(mailbox)).0);
    assert_eq!(out.len(), 1);
    let o = out[0].as_object().unwrap();
    assert_eq!(
        o.type_names[0],
        "Microsoft.PowerShell.Commands.GenericMeasureInfo"
    );
    assert_eq!(
        o.adapted,
        vec![
            ("Count".into(), Value::I32(5)),
            ("Average".into(), Value::Nil),
            ("Sum".into(), Value::Nil),
            ("Maximum".into(), Value::Nil),
            ("Minimum".into(), Value::Nil),
            ("Property".into(), Value::Nil),
        ]
    );
    let mut s = stage(
        "Measure-Object",
        vec![
            arg(None, "ItemCount"),
            arg(Some("-Sum"), Value::Nil),
            arg(Some("-Average"), Value::Nil),
            arg(Some("-Maximum"), Value::Nil),
            arg(Some("-Minimum"), Value::Nil),
        ],
    );
    let out = objects(drive(&mut s, (1..=4).map(mailbox)).0);
    let o = out[0].as_object().unwrap();
    assert_eq!(
        o.adapted,
        vec![
            ("Count".into(), Value::I32(4)),
            ("Average".into(), Value::Double(25.0)),
            ("Sum".into(), Value::Double(100.0)),
            ("Maximum".into(), Value::Double(40.0)),
            ("Minimum".into(), Value::Double(10.0)),
            ("Property".into(), Value::from("ItemCount")),
        ]
    );
    let mut s = stage(
        "Measure-Object",
        vec![arg(Some("Property"), "Name"), arg(Some("Sum"), true)],
    );
    let (out, _) = drive(&mut s, [mailbox(1)]);
    assert!(
        matches!(&out[0], Output::Error(e) if e.fully_qualified_error_id.starts_with("NonNumericInputObject,")),
        "{out:?}"
    );
    let mut s = stage("Measure-Object", vec![arg(Some("Property"), "Nope")]);
    let (out, _) = drive(&mut s, [mailbox(1)]);
    assert!(
        matches!(&out[0], Output::Error(e) if e.fully_qualified_error_id == "GenericMeasurePropertyNotFound,Microsoft.PowerShell.Commands.MeasureObjectCommand"),
        "{out:?}"
    );
}

#[test]
fn sources_and_out_commands() {
    let mut s = stage(
        "Get-FormatData",
        vec![
            arg(Some("TypeName"), "*"),
            arg(Some("PowerShellVersion"), "5.1"),
        ],
    );
    assert!(drive(&mut s, []).0.is_empty());
    let mut s = stage("Out-Null", vec![]);
    assert!(drive(&mut s, [mailbox(1)]).0.is_empty());
    let mut s = stage("Out-Default", vec![]);
    assert_eq!(objects(drive(&mut s, [mailbox(1)]).0), vec![mailbox(1)]);
    assert!(is_local("exit-pssession"));
    assert!(is_local("Out-Null"), "run when sent…");
    assert!(
        !super::names().any(|n| n == "Out-Null"),
        "…but not listed: Import-PSSession -AllowClobber would proxy it"
    );
    assert!(!is_local("Get-Mailbox"));
}

#[test]
fn unique_whole_objects_and_wide_objects() {
    let mut s = stage("Select-Object", vec![arg(Some("Unique"), true)]);
    let out = objects(drive(&mut s, [mailbox(1), mailbox(2), mailbox(1), mailbox(2)]).0);
    assert_eq!(names(&out), vec!["user1", "user2"]);
    // A client-sent object with many members: every one selected once, in order.
    let mut wide = Object::new(["Wide"]);
    for i in 0..20_000 {
        wide.push_property(format!("P{i}"), Value::I32(i));
    }
    wide.push_property("p0", Value::I32(-1));
    let mut s = stage("Select-Object", vec![arg(Some("Property"), "*")]);
    let out = objects(drive(&mut s, [wide.into_value()]).0);
    let o = out[0].as_object().unwrap();
    assert_eq!(o.extended.len(), 20_000, "P0 and p0 are one name");
    assert_eq!(o.extended[19_999], ("P19999".into(), Value::I32(19_999)));
}

/// The endpoint's driver for executors that run only their own commands: trailing local
/// commands apply to the executor's output, and `-First` drops the executor's future.
mod driver {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::remoting::executor::{
        Executor, InputStream, MetadataQuery, OutputSink, Pipeline, PipelineEnd, Statement,
    };

    /// `Get-Endless` writes numbered objects until it is dropped.
    #[derive(Default)]
    struct Endless {
        produced: AtomicUsize,
        dropped: AtomicUsize,
    }

    struct OnDrop<'a>(&'a AtomicUsize);
    impl Drop for OnDrop<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Executor for Endless {
        type Caller = ();

        async fn run(
            &self,
            _caller: &(),
            pipeline: Pipeline,
            _input: InputStream,
            output: OutputSink,
        ) -> PipelineEnd {
            assert_eq!(pipeline.statements[0].commands.len(), 1, "{pipeline:?}");
            let _guard = OnDrop(&self.dropped);
            for i in 0.. {
                let o = Object::new(["Exo.Test.Thing"])
                    .with_adapted("Name", format!("thing-{i}"))
                    .into_value();
                if output.send(Output::Object(o)).await.is_err() {
                    break;
                }
                self.produced.fetch_add(1, Ordering::SeqCst);
            }
            PipelineEnd::Completed
        }

        async fn command_metadata(
            &self,
            _caller: &(),
            _query: MetadataQuery,
        ) -> Result<Vec<CommandMetadata>, ErrorRecord> {
            Ok(Vec::new())
        }
    }

    async fn run_statement(commands: Vec<Command>) -> (PipelineEnd, Vec<Output>, Arc<Endless>) {
        let exec = Arc::new(Endless::default());
        let (sink, mut rx) = OutputSink::channel(1000);
        let end = run(
            exec.clone(),
            (),
            Pipeline {
                statements: vec![Statement { commands }],
                no_input: true,
                origin: Default::default(),
            },
            tokio::sync::mpsc::channel(1).1,
            sink,
        )
        .await;
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            out.push(o);
        }
        (end, out, exec)
    }

    #[tokio::test]
    async fn trailing_first_drops_the_executor() {
        let (end, out, exec) = run_statement(vec![
            cmd("Get-Endless", vec![]),
            cmd("Select-Object", vec![arg(Some("First"), 3)]),
            cmd("Select-Object", vec![arg(Some("ExpandProperty"), "Name")]),
        ])
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        assert_eq!(
            objects(out),
            vec![
                Value::from("thing-0"),
                Value::from("thing-1"),
                Value::from("thing-2")
            ]
        );
        assert_eq!(
            exec.dropped.load(Ordering::SeqCst),
            1,
            "the executor was stopped"
        );
        assert!(exec.produced.load(Ordering::SeqCst) < 100);
    }

    #[tokio::test]
    async fn local_only_statements_and_binding_before_running() {
        let (end, out, exec) = run_statement(vec![
            cmd("Get-FormatData", vec![arg(Some("TypeName"), "*")]),
            cmd("Measure-Object", vec![]),
        ])
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        assert_eq!(objects(out)[0].property("Count"), Some(&Value::I32(0)));
        assert_eq!(exec.produced.load(Ordering::SeqCst), 0);
        // A binding error in a trailing local command fails before the executor runs.
        let (end, out, exec) = run_statement(vec![
            cmd("Get-Endless", vec![]),
            cmd("Select-Object", vec![arg(Some("Frist"), 3)]),
        ])
        .await;
        let PipelineEnd::Failed(rec) = end else {
            panic!("{end:?}")
        };
        assert_eq!(
            rec.fully_qualified_error_id,
            "NamedParameterNotFound,Select-Object"
        );
        assert!(out.is_empty());
        assert_eq!(exec.dropped.load(Ordering::SeqCst), 0, "never started");
    }
}

#[test]
fn get_command_filters_the_supplied_list() {
    let meta = |name: &str| CommandMetadata {
        name: name.into(),
        namespace: "tmp_exo".into(),
        command_type: 8,
        resolved_command_name: None,
        parameters: vec![ParameterMetadata {
            name: "Identity".into(),
            parameter_type: "System.String".into(),
            aliases: vec![],
            is_switch: false,
            position: Some(0),
        }],
        supports_should_process: false,
    };
    let supplied = vec![
        meta("Set-Mailbox"),
        meta("Get-Mailbox"),
        meta("Get-MailboxStatistics"),
        meta("Get-User"),
    ];
    let run = |args: Vec<Argument>| {
        let mut s = stage("Get-Command", args);
        let q = s.commands_query().expect("Get-Command asks for the list");
        assert_eq!(q.command_types, 511);
        s.supply_commands(supplied.clone());
        drive(&mut s, []).0
    };
    let names = |out: Vec<Output>| -> Vec<String> {
        objects(out)
            .iter()
            .map(|o| {
                o.property("Name")
                    .and_then(Value::as_text)
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        names(run(vec![arg(None, "*mailbox*")])),
        vec!["Get-Mailbox", "Get-MailboxStatistics", "Set-Mailbox"]
    );
    assert_eq!(
        names(run(vec![
            arg(Some("Verb"), "Get"),
            arg(Some("Noun"), "Mailbox")
        ])),
        vec!["Get-Mailbox"]
    );
    // The local commands are listed too, as in a restricted runspace.
    assert_eq!(
        names(run(vec![arg(None, "Select-*")])),
        vec!["Select-Object"]
    );
    let out = run(vec![arg(None, strings(&["Get-User", "Get-Nothing"]))]);
    let Output::Error(e) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        e.fully_qualified_error_id,
        "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand"
    );
    let info = objects(out[1..].to_vec());
    let o = info[0].as_object().unwrap();
    assert_eq!(o.type_names[0], "System.Management.Automation.CmdletInfo");
    assert_eq!(o.to_string.as_deref(), Some("Get-User"));
    assert_eq!(
        info[0].property("CommandType").and_then(Value::as_i64),
        Some(8)
    );
    assert_eq!(
        info[0]
            .property("Parameters")
            .and_then(Value::as_dictionary)
            .map(|d| d[0].0.clone()),
        Some(Value::from("Identity"))
    );
}

#[test]
fn measure_keeps_statistics_for_a_bounded_number_of_properties() {
    let mut s = stage("Measure-Object", vec![arg(Some("Property"), "*")]);
    let mut failed = None;
    for batch in 0..20 {
        let mut o = Object::new(["Wide"]);
        for i in 0..1000 {
            o.push_property(format!("P{batch}_{i}"), Value::I32(i));
        }
        if let Err(e) = s.push(o.into_value()) {
            failed = Some((batch, e));
            break;
        }
    }
    let (batch, e) = failed.expect("the limit holds");
    assert_eq!(batch, measure::MAX_MEASURED_PROPERTIES / 1000);
    assert_eq!(e.category, ErrorCategory::LimitsExceeded);
}
