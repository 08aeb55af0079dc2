//! The simulated Exchange RPS endpoint's executor (winrm mode's far end).
//!
//! Exchange's `Microsoft.Exchange` endpoint was a NoLanguage runspace running Exchange
//! cmdlets in-process. [`RpsExecutor`] is that runspace over the sandbox's tenant data, the
//! project's remoting endpoint (WS-Man + PSRP, DESIGN.md §5) in front of it. Everything
//! behind that endpoint is the simulator's own, written from the references: the binder
//! (`binding`, psrp-protocol.md §6.2), the pipeline runner (`pipeline`, with `event`), the
//! restricted runspace's own commands (`local`, §10), the error records (`record`, §9.1) and
//! the serialization of Exchange's objects straight to CLIXML as RPS did (§11.5) — *not*
//! through the REST JSON.
//! So the compatibility test (same script through winrm mode and rest mode, equal objects)
//! compares the bridge with an independent implementation, not with itself.
//!
//! Errors carry RPS's FullyQualifiedErrorId form
//! (`[Server=…,RequestId=…,TimeStamp=…] [FailureCategory=Cmdlet-<Exception>] <id>,<class>`).

mod binding;
mod event;
mod local;
mod pipeline;
mod record;

use std::sync::Arc;

use super::AppIdentity;
use super::data::wildcard::matches as wildcard_match;
use super::data::{ExObject, ExchangeData, Prop, catalog};
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{
    CommandMetadata, ErrorRecord, Executor, InputStream, MetadataQuery, OutputSink,
    ParameterMetadata, Pipeline, PipelineEnd,
};

/// How RPS serialized a multi-valued property (psrp-protocol.md §11.5).
const ARRAY_LIST: [&str; 2] = ["System.Collections.ArrayList", "System.Object"];

/// The module name GET_COMMAND_METADATA reports (psrp-protocol.md §7.4's example).
const MODULE: &str = "tmp_exo";

/// An Exchange object as RPS serialized it: Exchange's type names, ToString = Identity, the
/// data properties under `Props`, multi-valued properties as ArrayLists.
pub fn to_clixml(obj: &ExObject) -> Value {
    let prop = |p: &Prop| match p {
        Prop::Null => Value::Nil,
        Prop::Str(s) => Value::String(s.clone()),
        Prop::Bool(b) => Value::Bool(*b),
        Prop::I16(n) => Value::I16(*n),
        Prop::I32(n) => Value::I32(*n),
        Prop::I64(n) => Value::I64(*n),
        Prop::Guid(g) => Value::Guid(*g),
        Prop::Date(d, false) => Value::DateTime(*d),
        Prop::Date(d, true) => Value::UtcDateTime(d.to_utc()),
        Prop::Multi(v) => Value::Object(Box::new(Object {
            type_names: ARRAY_LIST.iter().map(|t| (*t).to_owned()).collect(),
            container: Some(Container::List(
                v.iter().cloned().map(Value::String).collect(),
            )),
            ..Object::default()
        })),
    };
    let to_string = ["Identity", "Name"].iter().find_map(|n| match obj.get(n) {
        Some(Prop::Str(s)) => Some(s.clone()),
        Some(Prop::Guid(g)) => Some(g.to_string()),
        _ => None,
    });
    Value::Object(Box::new(Object {
        type_names: obj.type_names.clone(),
        to_string,
        adapted: obj
            .props
            .iter()
            .map(|(k, v)| (k.clone(), prop(v)))
            .collect(),
        ..Object::default()
    }))
}

/// The winrm-mode sandbox's executor.
pub struct RpsExecutor {
    data: Arc<ExchangeData>,
}

impl RpsExecutor {
    /// An executor over `data`.
    pub fn new(data: Arc<ExchangeData>) -> Self {
        Self { data }
    }
}

/// Simulated Exchange's `/PowerShell-LiveID` service: the remoting endpoint over an
/// [`RpsExecutor`] on `data` (`sandbox::exchange::RpsService`).
pub fn service(data: Arc<ExchangeData>) -> Arc<dyn super::exchange::RpsService> {
    Arc::new(crate::remoting::Endpoint::new(
        Arc::new(RpsExecutor::new(data)),
        crate::remoting::Settings::default(),
    ))
}

fn metadata(c: &catalog::Cmdlet) -> CommandMetadata {
    CommandMetadata {
        name: c.name.to_owned(),
        namespace: MODULE.to_owned(),
        command_type: 8,
        resolved_command_name: None,
        parameters: c
            .params
            .iter()
            .map(|p| ParameterMetadata {
                name: p.name.to_owned(),
                parameter_type: p.type_name.to_owned(),
                aliases: Vec::new(),
                is_switch: p.switch,
                position: p.position,
            })
            .collect(),
        supports_should_process: c.changes_state(),
    }
}

impl Executor for RpsExecutor {
    type Caller = AppIdentity;

    async fn run(
        &self,
        caller: &AppIdentity,
        pipeline: Pipeline,
        input: InputStream,
        output: OutputSink,
    ) -> PipelineEnd {
        let tenant = self.data.tenant(&caller.tenant_id, &caller.organization);
        pipeline::run(tenant, pipeline, input, output).await
    }

    async fn command_metadata(
        &self,
        _caller: &AppIdentity,
        query: MetadataQuery,
    ) -> Result<Vec<CommandMetadata>, ErrorRecord> {
        const CMDLET: u32 = 8;
        if query.command_types & CMDLET == 0 {
            return Ok(Vec::new());
        }
        Ok(catalog::cmdlets()
            .iter()
            .filter(|c| {
                query.names.is_empty() || query.names.iter().any(|n| wildcard_match(n, c.name))
            })
            .map(metadata)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::executor::{Argument, Command, Output, Statement};

    fn app() -> AppIdentity {
        AppIdentity {
            tenant_id: "t1".into(),
            app_id: "a1".into(),
            organization: "contoso.onmicrosoft.com".into(),
        }
    }

    fn cmd(name: &str, args: Vec<(Option<&str>, Value)>) -> Command {
        Command {
            name: name.into(),
            is_script: false,
            args: args
                .into_iter()
                .map(|(n, v)| Argument {
                    name: n.map(Into::into),
                    value: v,
                })
                .collect(),
            merge_errors_into_output: false,
        }
    }

    async fn run(exec: &RpsExecutor, commands: Vec<Command>) -> (Vec<Output>, PipelineEnd) {
        let (sink, mut rx) = OutputSink::channel(16);
        let (_tx, input) = tokio::sync::mpsc::channel(1);
        let pipeline = Pipeline {
            statements: vec![Statement { commands }],
            no_input: true,
            origin: Default::default(),
        };
        let collect = async move {
            let mut v = Vec::new();
            while let Some(o) = rx.recv().await {
                v.push(o);
            }
            v
        };
        let (end, outs) = tokio::join!(
            async { exec.run(&app(), pipeline, input, sink).await },
            collect
        );
        (outs, end)
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[tokio::test]
    async fn get_set_pipeline_and_errors() {
        let exec = RpsExecutor::new(Arc::new(ExchangeData::new(50)));
        let (outs, end) = run(
            &exec,
            vec![cmd(
                "Get-Mailbox",
                vec![(Some("-ResultSize"), Value::Nil), (None, Value::I32(3))],
            )],
        )
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        assert_eq!(outs.len(), 4, "3 mailboxes and the more-results warning");
        assert!(matches!(&outs[3], Output::Warning(w) if w.starts_with("There are more results")));
        let Output::Object(Value::Object(o)) = &outs[0] else {
            panic!("{outs:?}")
        };
        assert_eq!(
            o.type_names[0],
            "Microsoft.Exchange.Data.Directory.Management.Mailbox"
        );
        assert_eq!(o.to_string.as_deref(), Some("AdeleV"));

        let (outs, end) = run(
            &exec,
            vec![
                cmd("Get-Mailbox", vec![(Some("ResultSize"), Value::I32(2))]),
                cmd(
                    "Set-Mailbox",
                    vec![(Some("-CustomAttribute2:"), s("piped"))],
                ),
            ],
        )
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        assert!(
            outs.iter().all(|o| matches!(o, Output::Warning(_))),
            "{outs:?}"
        );
        let (outs, _) = run(&exec, vec![cmd("Get-Mailbox", vec![(None, s("AlexW"))])]).await;
        let Output::Object(Value::Object(o)) = &outs[0] else {
            panic!()
        };
        assert!(o.adapted.contains(&("CustomAttribute2".into(), s("piped"))));

        let (outs, end) = run(
            &exec,
            vec![cmd(
                "Get-Mailbox",
                vec![(Some("Identity"), s("nosuchuser"))],
            )],
        )
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        let Output::Error(e) = &outs[0] else {
            panic!("{outs:?}")
        };
        assert!(e.message.contains("'nosuchuser' couldn't be found"));
        assert!(
            e.fully_qualified_error_id
                .contains("[FailureCategory=Cmdlet-ManagementObjectNotFoundException]"),
            "{}",
            e.fully_qualified_error_id
        );

        let (_, end) = run(
            &exec,
            vec![cmd(
                "Get-Mailbox",
                vec![
                    (Some("Identity"), s("nosuchuser")),
                    (Some("ErrorAction"), s("Stop")),
                ],
            )],
        )
        .await;
        assert!(matches!(end, PipelineEnd::Failed(_)));

        let mut script = cmd("Get-Mailbox | Select Name", vec![]);
        script.is_script = true;
        let (_, end) = run(&exec, vec![script]).await;
        let PipelineEnd::Failed(rec) = end else {
            panic!()
        };
        assert_eq!(rec.fully_qualified_error_id, "ScriptsNotAllowed");

        let (_, end) = run(&exec, vec![cmd("Get-Nothing", vec![])]).await;
        let PipelineEnd::Failed(rec) = end else {
            panic!()
        };
        assert_eq!(rec.fully_qualified_error_id, "CommandNotFoundException");
        assert!(
            rec.message
                .starts_with("The term 'Get-Nothing' is not recognized")
        );
    }

    #[tokio::test]
    async fn local_select_and_measure() {
        let exec = RpsExecutor::new(Arc::new(ExchangeData::new(50)));
        let (outs, _) = run(
            &exec,
            vec![
                cmd("Get-Mailbox", vec![(Some("ResultSize"), s("Unlimited"))]),
                cmd(
                    "Select-Object",
                    vec![
                        (Some("First"), Value::I32(2)),
                        (Some("Property"), s("Name")),
                    ],
                ),
            ],
        )
        .await;
        assert_eq!(outs.len(), 2, "{outs:?}");
        let Output::Object(Value::Object(o)) = &outs[1] else {
            panic!()
        };
        assert_eq!(o.extended, vec![("Name".to_string(), s("AlexW"))]);
        assert!(o.type_names[0].starts_with("Selected.Microsoft.Exchange"));
        let (outs, _) = run(
            &exec,
            vec![
                cmd("Get-Mailbox", vec![(Some("ResultSize"), s("Unlimited"))]),
                cmd("Measure-Object", vec![]),
            ],
        )
        .await;
        let Output::Object(Value::Object(o)) = &outs[0] else {
            panic!()
        };
        assert_eq!(o.adapted[0], ("Count".to_string(), Value::I32(50)));
    }

    /// The objects of `outs` (Get-Mailbox -ResultSize n also warns: more results exist).
    fn objects(outs: Vec<Output>) -> Vec<Output> {
        outs.into_iter()
            .filter(|o| matches!(o, Output::Object(_)))
            .collect()
    }

    fn names(o: &Output) -> Vec<String> {
        match o {
            Output::Object(Value::Object(o)) => o.extended.iter().map(|(n, _)| n.clone()).collect(),
            other => panic!("not an object: {other:?}"),
        }
    }

    #[tokio::test]
    async fn select_object_as_powershell_has_it() {
        let exec = RpsExecutor::new(Arc::new(ExchangeData::new(1_500)));
        let get = |n: i32| cmd("Get-Mailbox", vec![(Some("ResultSize"), Value::I32(n))]);
        let select = |args| cmd("Select-Object", args);
        let list = |items: &[&str]| {
            Value::Object(Box::new(Object {
                type_names: vec!["System.Object[]".into()],
                container: Some(Container::List(items.iter().map(|i| s(i)).collect())),
                ..Object::default()
            }))
        };

        let (outs, _) = run(
            &exec,
            vec![
                get(1),
                select(vec![(None, list(&["Name", "Primary*", "Nothing"]))]),
            ],
        )
        .await;
        assert_eq!(names(&outs[0]), ["Name", "PrimarySmtpAddress", "Nothing"]);

        let (outs, _) = run(
            &exec,
            vec![
                get(1),
                select(vec![(Some("ExcludeProperty"), s("*Address*"))]),
            ],
        )
        .await;
        let props = names(&outs[0]);
        assert!(props.contains(&"Name".to_owned()));
        assert!(!props.iter().any(|p| p.contains("Address")), "{props:?}");

        let (outs, _) = run(
            &exec,
            vec![
                get(2),
                select(vec![(Some("ExpandProperty"), s("EmailAddresses"))]),
            ],
        )
        .await;
        assert_eq!(
            objects(outs),
            [
                Output::Object(s("SMTP:AdeleV@contoso.com")),
                Output::Object(s("smtp:AdeleV@contoso.onmicrosoft.com")),
                Output::Object(s("SMTP:AlexW@contoso.com")),
                Output::Object(s("smtp:AlexW@contoso.onmicrosoft.com")),
            ]
        );

        let (outs, end) = run(
            &exec,
            vec![get(1), select(vec![(Some("ExpandProperty"), s("Nope"))])],
        )
        .await;
        assert_eq!(end, PipelineEnd::Completed);
        assert!(
            matches!(&outs[0], Output::Error(e) if e.message == "Property \"Nope\" cannot be found.")
        );

        // -Skip, -Last, -Index pick by position.
        let expand = || (Some("ExpandProperty"), s("Name"));
        let (outs, _) = run(
            &exec,
            vec![
                get(5),
                select(vec![(Some("Skip"), Value::I32(3)), expand()]),
            ],
        )
        .await;
        assert_eq!(
            objects(outs),
            [Output::Object(s("GradyA")), Output::Object(s("IsaiahL"))]
        );
        let (outs, _) = run(
            &exec,
            vec![
                get(5),
                select(vec![(Some("Last"), Value::I32(1)), expand()]),
            ],
        )
        .await;
        assert_eq!(objects(outs), [Output::Object(s("IsaiahL"))]);

        // -First stops Get-Mailbox: its "more results" warning is never written.
        let (outs, _) = run(
            &exec,
            vec![
                cmd("Get-Mailbox", vec![]),
                select(vec![(Some("First"), Value::I32(2)), expand()]),
            ],
        )
        .await;
        assert_eq!(
            outs,
            [Output::Object(s("AdeleV")), Output::Object(s("AlexW"))]
        );

        // A calculated property is script: refused as the NoLanguage runspace did.
        let calculated = Value::Object(Box::new(Object {
            type_names: vec!["System.Collections.Hashtable".into()],
            container: Some(Container::Dictionary(vec![(
                s("Expression"),
                Value::ScriptBlock("$_.Name".into()),
            )])),
            ..Object::default()
        }));
        let (_, end) = run(&exec, vec![get(1), select(vec![(None, calculated)])]).await;
        let PipelineEnd::Failed(rec) = end else {
            panic!("{end:?}")
        };
        assert_eq!(rec.fully_qualified_error_id, "ScriptsNotAllowed");
    }

    #[tokio::test]
    async fn measure_preferences_and_client_input() {
        let exec = RpsExecutor::new(Arc::new(ExchangeData::new(10)));
        let (outs, _) = run(
            &exec,
            vec![
                cmd("Get-Mailbox", vec![(Some("ResultSize"), Value::I32(3))]),
                cmd("Get-MailboxStatistics", vec![]),
                cmd(
                    "Measure-Object",
                    vec![
                        (Some("Property"), s("ItemCount")),
                        (Some("-Sum"), Value::Nil),
                        (Some("-Maximum"), Value::Nil),
                    ],
                ),
            ],
        )
        .await;
        assert!(matches!(&outs[0], Output::Warning(_)), "{outs:?}");
        let Output::Object(Value::Object(o)) = &outs[1] else {
            panic!("{outs:?}")
        };
        assert_eq!(o.adapted[0], ("Count".into(), Value::I32(3)));
        assert_eq!(o.adapted[2], ("Sum".into(), Value::Double(23_757.0)));
        assert_eq!(o.adapted[3], ("Maximum".into(), Value::Double(15_838.0)));
        assert_eq!(o.adapted[5], ("Property".into(), s("ItemCount")));

        // -ErrorAction SilentlyContinue drops the error; -WarningAction Stop fails.
        let (outs, end) = run(
            &exec,
            vec![cmd(
                "Get-Mailbox",
                vec![
                    (Some("Identity"), s("nobody")),
                    (Some("ErrorAction"), s("SilentlyContinue")),
                ],
            )],
        )
        .await;
        assert_eq!((outs.len(), end), (0, PipelineEnd::Completed));
        let (_, end) = run(
            &exec,
            vec![cmd(
                "Set-Mailbox",
                vec![
                    (None, s("AdeleV")),
                    (Some("CustomAttribute1"), s("Sales")),
                    (Some("WarningAction"), s("Stop")),
                ],
            )],
        )
        .await;
        let PipelineEnd::Failed(rec) = end else {
            panic!("{end:?}")
        };
        assert!(
            rec.fully_qualified_error_id
                .starts_with("ActionPreferenceStop,")
        );

        // Client input binds to -Identity, one call per object; a bad one is an error.
        let (sink, mut rx) = OutputSink::channel(16);
        let (tx, input) = tokio::sync::mpsc::channel(4);
        let pipeline = Pipeline {
            statements: vec![Statement {
                commands: vec![cmd("Get-Mailbox", vec![])],
            }],
            no_input: false,
            origin: Default::default(),
        };
        for v in [s("LeeG"), s("nobody"), s("MeganB")] {
            tx.send(v).await.unwrap();
        }
        drop(tx);
        let end = exec.run(&app(), pipeline, input, sink).await;
        assert_eq!(end, PipelineEnd::Completed);
        let mut outs = Vec::new();
        while let Ok(o) = rx.try_recv() {
            outs.push(o);
        }
        assert_eq!(outs.len(), 3, "{outs:?}");
        assert!(matches!(&outs[1], Output::Error(_)));
    }
}
