//! The simulated Exchange RPS endpoint's executor (winrm mode's far end).
//!
//! Exchange's `Microsoft.Exchange` endpoint was a NoLanguage runspace running Exchange
//! cmdlets in-process. [`RpsExecutor`] is that runspace over the sandbox's tenant data: the
//! shared binder binds each command's `Args`, the shared pipeline runner gives PowerShell's
//! pipeline semantics, and cmdlet results are serialized straight from Exchange's object
//! model ([`ExObject`]) to CLIXML the way RPS did — *not* through the REST JSON — so the
//! compatibility test (same script through winrm mode and rest mode, equal objects) checks
//! the bridge's JSON round trip against an independent serialization.
//!
//! Errors carry RPS's FullyQualifiedErrorId form
//! (`[Server=…,RequestId=…,TimeStamp=…] [FailureCategory=Cmdlet-<Exception>] <id>,<class>`).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value as Json};

use super::AppIdentity;
use super::data::{ExObject, ExchangeData, Outcome, Prop, Tenant};
use crate::bridge::catalog::{Catalog, Entry};
use crate::bridge::convert::list_type;
use crate::bridge::errors::{ErrorOrigin, ExchangeError};
use crate::bridge::pipeline::{self, Backend, Batch, Call, Failure};
use crate::remoting::binding::CommonParameters;
use crate::remoting::clixml::{Container, Object, Value};
use crate::remoting::executor::{
    CommandMetadata, ErrorRecord, Executor, InputStream, MetadataQuery, OutputSink, Pipeline,
    PipelineEnd,
};

/// Objects per batch handed to the pipeline (RPS streamed objects as the cmdlet wrote them).
const BATCH: usize = 100;

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
            type_names: list_type(),
            container: Some(Container::List(
                v.iter().cloned().map(Value::String).collect(),
            )),
            ..Object::default()
        })),
    };
    let to_string = ["Identity", "Name"].iter().find_map(|n| match obj.get(n) {
        Some(Prop::Null) | None => None,
        Some(Prop::Str(s)) => Some(s.clone()),
        Some(Prop::Guid(g)) => Some(g.to_string()),
        Some(_) => None,
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
    catalog: Catalog,
}

impl RpsExecutor {
    /// An executor over `data`, offering the built-in cmdlet table.
    pub fn new(data: Arc<ExchangeData>) -> Self {
        Self {
            data,
            catalog: Catalog::builtin(),
        }
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

struct Memory<'a>(&'a ExchangeData);

struct MemCall {
    tenant: Arc<Tenant>,
    cmdlet: String,
    parameters: Option<Map<String, Json>>,
    outcome: Option<Outcome>,
    sent: usize,
    done: bool,
}

fn rps_record(e: &ExchangeError, cmdlet: &str, server: &str) -> Failure {
    let origin = ErrorOrigin {
        server: server.split('.').next().unwrap_or_default().to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        timestamp: chrono::Utc::now()
            .format("%-m/%-d/%Y %-I:%M:%S %p")
            .to_string(),
    };
    let mut f = Failure::from_exchange(e, cmdlet, &origin);
    let rec = match &mut f {
        Failure::NonTerminating(r) | Failure::Terminating(r) => r,
    };
    if let Some(i) = rec.fully_qualified_error_id.find("] ") {
        rec.fully_qualified_error_id.insert_str(
            i + 2,
            &format!("[FailureCategory=Cmdlet-{}] ", e.short_name()),
        );
    }
    f
}

impl MemCall {
    fn step(&mut self) -> Option<Result<Batch, Failure>> {
        if self.done {
            return None;
        }
        if let Some(params) = self.parameters.take() {
            match self.tenant.invoke(&self.cmdlet, &params) {
                Ok(o) => self.outcome = Some(o),
                Err(e) => {
                    self.done = true;
                    return Some(Err(rps_record(&e, &self.cmdlet, &self.tenant.server)));
                }
            }
        }
        let outcome = self.outcome.as_ref()?;
        let end = (self.sent + BATCH).min(outcome.items.len());
        let objects = outcome.items[self.sent..end]
            .iter()
            .map(|i| to_clixml(&self.tenant.object(i)))
            .collect();
        self.sent = end;
        let last = end >= outcome.items.len();
        self.done = last;
        Some(Ok(Batch {
            objects,
            warnings: if last {
                outcome.warnings.clone()
            } else {
                vec![]
            },
            errors: vec![],
        }))
    }
}

impl Call for MemCall {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Batch, Failure>>> {
        let step = self.step();
        Box::pin(async move {
            // Let other tasks run between batches, as a real endpoint's I/O would.
            tokio::task::yield_now().await;
            step
        })
    }
}

impl Backend for Memory<'_> {
    type Caller = AppIdentity;

    fn call<'a>(
        &'a self,
        caller: &'a AppIdentity,
        entry: &'a Entry,
        parameters: Map<String, Json>,
        _common: &'a CommonParameters,
    ) -> Box<dyn Call + 'a> {
        Box::new(MemCall {
            tenant: self.0.tenant(&caller.tenant_id, &caller.organization),
            cmdlet: entry.metadata.name.clone(),
            parameters: Some(parameters),
            outcome: None,
            sent: 0,
            done: false,
        })
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
        pipeline::run(
            &Memory(&self.data),
            caller,
            &self.catalog,
            pipeline,
            input,
            output,
        )
        .await
    }

    async fn command_metadata(
        &self,
        _caller: &AppIdentity,
        query: MetadataQuery,
    ) -> Result<Vec<CommandMetadata>, ErrorRecord> {
        Ok(self.catalog.query(&query))
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
}
