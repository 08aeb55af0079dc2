//! Running a remoting pipeline one cmdlet invocation at a time, as a PowerShell runspace
//! would, over a [`Backend`] that runs single Exchange cmdlets.
//!
//! The REST API runs exactly one cmdlet per call (reference exo-rest-adminapi.md §13), so
//! `Get-Mailbox -ResultSize 10 | Set-Mailbox -CustomAttribute1 x` has to be executed here:
//! the first cmdlet's objects are streamed, and each is handed to the next cmdlet, bound to
//! its `Identity` as Exchange's pipeline binding did. Client pipeline input (PIPELINE_INPUT
//! from an Import-PSSession proxy) enters the first command the same way. The simulated
//! RPS endpoint uses this runner too (with an in-memory backend), so both modes share one
//! definition of pipeline semantics.
//!
//! Streaming is pull-based with one step of look-ahead: a backend call yields [`Batch`]es
//! (one per REST page); while a page's objects are pushed down the rest of the pipeline, the
//! next page is already being requested, and no further one. So the first object reaches
//! the client before the last page is fetched, conversion overlaps Exchange's time for the
//! next page (BENCHMARKS.md, bridge), and a slow client still slows the paging, at most one
//! page ahead (the output sink is bounded). Dropping the future (Ctrl-C) drops the in-flight
//! request; `Select-Object -First n` stops upstream paging the same way.
//!
//! The restricted runspace's own commands (`Select-Object`, `Measure-Object`, `Get-Command`,
//! `Get-FormatData`, …) are the stages of the one engine in `remoting::local`, put in place in
//! any position: objects are pushed into them like into any other stage, and when one has had
//! enough (`-First n`) the runner stops pulling from everything upstream and drops the calls.
//!
//! Common parameters act as in PowerShell: `-ErrorAction Stop` turns a cmdlet's error into
//! a Failed pipeline, `SilentlyContinue`/`Ignore` drop it; `-WarningAction` likewise for
//! warnings. Script text, unknown commands and binding failures fail the pipeline before
//! anything runs, as Exchange's NoLanguage runspace did.

use std::pin::Pin;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value as Json};

use super::catalog::{Catalog, Entry, local_entry};
use super::convert;
use super::errors::{ErrorOrigin, ExchangeError, scripts_not_allowed};
use crate::remoting::binding::{
    self, ActionPreference, BoundCommand, CommonParameters, display_value,
};
use crate::remoting::clixml::Value;
use crate::remoting::executor::{
    Argument, ErrorCategory, ErrorRecord, InputStream, Origin, Output, OutputSink,
    ParameterMetadata, Pipeline, PipelineEnd,
};
use crate::remoting::local;

/// What one backend call yields per step (one REST page).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Output objects, ready for the client.
    pub objects: Vec<Value>,
    /// Warnings (written after this batch's objects).
    pub warnings: Vec<String>,
    /// Non-terminating errors reported alongside (REST `@adminapi.errors`).
    pub errors: Vec<ErrorRecord>,
}

/// How a backend call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The cmdlet wrote an error (unknown identity…): the pipeline goes on unless
    /// `-ErrorAction Stop`.
    NonTerminating(ErrorRecord),
    /// The cmdlet could not run (binding, throttled after retries, token refused…): the
    /// pipeline fails.
    Terminating(ErrorRecord),
}

impl Failure {
    /// From an Exchange error raised by `cmdlet`.
    pub fn from_exchange(e: &ExchangeError, cmdlet: &str, origin: &ErrorOrigin) -> Self {
        let rec = e.to_error_record(cmdlet, origin);
        if e.is_terminating() {
            Self::Terminating(rec)
        } else {
            Self::NonTerminating(rec)
        }
    }
}

/// One in-flight cmdlet invocation.
pub trait Call: Send {
    /// The next batch; None when the cmdlet is done.
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Batch, Failure>>>;
}

/// Where a cmdlet call stands: its session, pipeline and position (for the audit trail).
#[derive(Debug, Clone, Copy)]
pub struct CallSite<'a> {
    /// The session and pipeline it runs in.
    pub origin: &'a Origin,
    /// Its position in the statement (0 = first).
    pub position: u32,
}

/// Runs single Exchange cmdlets.
pub trait Backend: Send + Sync {
    /// Who runs them.
    type Caller: Send + Sync;

    /// Starts `entry` with REST-style `parameters`.
    fn call<'a>(
        &'a self,
        caller: &'a Self::Caller,
        site: CallSite<'a>,
        entry: &'a Entry,
        parameters: Map<String, Json>,
        common: &'a CommonParameters,
    ) -> Box<dyn Call + 'a>;
}

enum Stop {
    Failed(Box<ErrorRecord>),
    Closed,
}

#[derive(PartialEq)]
enum Flow {
    More,
    Enough,
}

struct Stage<'c> {
    entry: &'c Entry,
    /// Position in the statement.
    position: u32,
    bound: BoundCommand,
    /// The engine's stage for a local command (`Select-Object`, `Measure-Object`, …).
    local: Option<local::Stage>,
}

struct Ctx<'a, B: Backend> {
    backend: &'a B,
    caller: &'a B::Caller,
    origin: &'a Origin,
    output: &'a OutputSink,
}

fn input_not_bound(cmdlet: &str, input: &Value) -> ErrorRecord {
    ErrorRecord {
        message: "The input object cannot be bound to any parameters for the command either because the command \
                  does not take pipeline input or the input and its properties do not match any of the parameters \
                  that take pipeline input."
            .into(),
        exception_type: "System.Management.Automation.ParameterBindingException".into(),
        fully_qualified_error_id: format!("InputObjectNotBound,{cmdlet}"),
        category: ErrorCategory::InvalidArgument,
        activity: cmdlet.into(),
        reason: "ParameterBindingException".into(),
        target_name: display_value(input),
        target_type: String::new(),
        target_object: input.clone(),
    }
}

fn convert_failure(cmdlet: &str, e: &convert::ConvertError) -> ErrorRecord {
    ErrorRecord {
        message: e.to_string(),
        exception_type: "System.Management.Automation.ParameterBindingException".into(),
        fully_qualified_error_id: format!("ParameterArgumentTransformationError,{cmdlet}"),
        category: ErrorCategory::InvalidData,
        activity: cmdlet.into(),
        reason: "ParameterBindingArgumentTransformationException".into(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}

fn warning_stop(cmdlet: &str, text: &str) -> ErrorRecord {
    ErrorRecord {
        message: format!(
            "The running command stopped because the preference variable \"WarningPreference\" or common \
             parameter is set to Stop: {text}"
        ),
        exception_type: "System.Management.Automation.ActionPreferenceStopException".into(),
        fully_qualified_error_id: format!("ActionPreferenceStop,{cmdlet}"),
        category: ErrorCategory::OperationStopped,
        activity: cmdlet.into(),
        reason: "ActionPreferenceStopException".into(),
        target_name: String::new(),
        target_type: String::new(),
        target_object: Value::Nil,
    }
}

/// Metadata for a cmdlet Exchange exports but our table does not know: every named
/// argument becomes a parameter (a bare token followed by another name, or last, a switch).
fn permissive(entry: &Entry, args: &[Argument]) -> Entry {
    let mut e = entry.clone();
    for (i, a) in args.iter().enumerate() {
        let Some(raw) = a.name.as_deref() else {
            continue;
        };
        let name = raw
            .trim()
            .trim_start_matches('-')
            .trim_end_matches(':')
            .trim();
        if name.is_empty()
            || e.metadata
                .parameters
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(name))
            || binding::common_parameters(true).iter().any(|p| {
                p.name.eq_ignore_ascii_case(name)
                    || p.aliases.iter().any(|x| x.eq_ignore_ascii_case(name))
            })
        {
            continue;
        }
        let bare = raw.trim().starts_with('-') && !raw.trim().ends_with(':');
        let next_named = args.get(i + 1).is_none_or(|n| n.name.is_some());
        e.metadata.parameters.push(ParameterMetadata {
            name: name.into(),
            parameter_type: "System.Object".into(),
            aliases: vec![],
            is_switch: bare && matches!(a.value, Value::Nil) && next_named,
            position: None,
        });
    }
    e
}

impl<B: Backend> Ctx<'_, B> {
    async fn send(&self, out: Output) -> Result<(), Stop> {
        self.output.send(out).await.map_err(|_| Stop::Closed)
    }

    async fn error(&self, common: &CommonParameters, rec: ErrorRecord) -> Result<(), Stop> {
        match common.error_action {
            Some(ActionPreference::Stop) => Err(Stop::Failed(Box::new(rec))),
            Some(p) if p.is_silent() => Ok(()),
            _ => self.send(Output::Error(rec)).await,
        }
    }

    async fn warning(
        &self,
        cmdlet: &str,
        common: &CommonParameters,
        text: String,
    ) -> Result<(), Stop> {
        match common.warning_action {
            Some(ActionPreference::Stop) => {
                Err(Stop::Failed(Box::new(warning_stop(cmdlet, &text))))
            }
            Some(p) if p.is_silent() => Ok(()),
            _ => self.send(Output::Warning(text)).await,
        }
    }

    /// Pushes one input (None: the first command of a pipeline without input) into
    /// `stages[0]`, and what it produces down the rest.
    fn feed<'s>(
        &'s self,
        stages: &'s mut [Stage<'_>],
        input: Option<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Flow, Stop>> + Send + 's>>
    where
        B::Caller: Sync,
    {
        Box::pin(async move {
            let Some((stage, rest)) = stages.split_first_mut() else {
                if let Some(v) = input {
                    self.send(Output::Object(v)).await?;
                }
                return Ok(Flow::More);
            };
            if let Some(local) = &mut stage.local {
                return self.feed_local(local, rest, input).await;
            }
            let cmdlet = stage.entry.metadata.name.as_str();
            let mut parameters = match convert::parameters(&stage.bound) {
                Ok(p) => p,
                Err(e) => return Err(Stop::Failed(Box::new(convert_failure(cmdlet, &e)))),
            };
            if let Some(v) = &input {
                match convert::identity_of(v) {
                    Some(id)
                        if stage.entry.takes_identity() && !stage.bound.contains("Identity") =>
                    {
                        parameters.insert("Identity".into(), id);
                    }
                    _ => {
                        self.error(&stage.bound.common, input_not_bound(cmdlet, v))
                            .await?;
                        return Ok(Flow::More);
                    }
                }
            }
            let common = &stage.bound.common;
            let mut call = self.backend.call(
                self.caller,
                CallSite {
                    origin: self.origin,
                    position: stage.position,
                },
                stage.entry,
                parameters,
                common,
            );
            let mut step = call.next().await;
            while let Some(current) = step {
                let batch = match current {
                    Ok(batch) => batch,
                    Err(Failure::NonTerminating(rec)) => {
                        self.error(common, rec).await?;
                        break;
                    }
                    Err(Failure::Terminating(rec)) => return Err(Stop::Failed(Box::new(rec))),
                };
                // One step ahead: the next page is requested while this one goes downstream,
                // so conversion and a slow client overlap Exchange's time for the next page.
                // Only one is ever in flight, and returning early drops (cancels) it.
                let mut ahead = call.next();
                let mut arrived = None;
                let mut feeding = std::pin::pin!(self.feed_batch(rest, cmdlet, common, batch));
                let flow = loop {
                    tokio::select! {
                        biased;
                        flow = &mut feeding => break flow?,
                        s = &mut ahead, if arrived.is_none() => arrived = Some(s),
                    }
                };
                if flow == Flow::Enough {
                    return Ok(Flow::Enough);
                }
                step = match arrived {
                    Some(s) => s,
                    None => ahead.await,
                };
            }
            Ok(Flow::More)
        })
    }

    /// One backend step's objects down the rest of the pipeline, then its errors and
    /// warnings (in the order Exchange wrote them).
    async fn feed_batch(
        &self,
        rest: &mut [Stage<'_>],
        cmdlet: &str,
        common: &CommonParameters,
        batch: Batch,
    ) -> Result<Flow, Stop>
    where
        B::Caller: Sync,
    {
        for obj in batch.objects {
            if self.feed(rest, Some(obj)).await? == Flow::Enough {
                return Ok(Flow::Enough);
            }
        }
        for e in batch.errors {
            self.error(common, e).await?;
        }
        for w in batch.warnings {
            self.warning(cmdlet, common, w).await?;
        }
        Ok(Flow::More)
    }

    /// One input through a local command's stage, and what it produces down the rest.
    async fn feed_local(
        &self,
        local: &mut local::Stage,
        rest: &mut [Stage<'_>],
        input: Option<Value>,
    ) -> Result<Flow, Stop>
    where
        B::Caller: Sync,
    {
        // First in a statement without input: local commands produce only when they end.
        let Some(input) = input else {
            return Ok(Flow::More);
        };
        let step = local
            .push(input)
            .map_err(|rec| Stop::Failed(Box::new(rec)))?;
        if self.feed_outputs(rest, step.outputs).await? == Flow::Enough {
            return Ok(Flow::Enough);
        }
        Ok(match step.flow {
            local::Flow::More => Flow::More,
            local::Flow::Enough => Flow::Enough,
        })
    }

    /// A local command's outputs: objects down the rest of the pipeline, errors to the client.
    async fn feed_outputs(&self, rest: &mut [Stage<'_>], outputs: Vec<Output>) -> Result<Flow, Stop>
    where
        B::Caller: Sync,
    {
        for o in outputs {
            match o {
                Output::Object(v) => {
                    if self.feed(rest, Some(v)).await? == Flow::Enough {
                        return Ok(Flow::Enough);
                    }
                }
                other => self.send(other).await?,
            }
        }
        Ok(Flow::More)
    }

    /// End of input: local commands finish (Measure-Object's result, Select-Object -Last),
    /// stage by stage, each one's output going down the rest.
    async fn end(&self, stages: &mut [Stage<'_>]) -> Result<(), Stop>
    where
        B::Caller: Sync,
    {
        for i in 0..stages.len() {
            let (head, rest) = stages.split_at_mut(i + 1);
            let Some(local) = &mut head[i].local else {
                continue;
            };
            let outputs = local.finish().map_err(|rec| Stop::Failed(Box::new(rec)))?;
            self.feed_outputs(rest, outputs).await?;
        }
        Ok(())
    }
}

/// A command looked up and bound: its catalog entry, its arguments, and for a local command
/// the engine's stage.
type Prepared = (Entry, BoundCommand, Option<local::Stage>);

#[allow(clippy::result_large_err)] // built once per pipeline; the record goes straight to PipelineEnd
fn prepare(
    catalog: &Catalog,
    commands: &[crate::remoting::executor::Command],
) -> Result<Vec<Prepared>, ErrorRecord> {
    let mut out = Vec::with_capacity(commands.len());
    for c in commands {
        if c.is_script {
            return Err(scripts_not_allowed(&c.name));
        }
        if let Some(stage) = local::Stage::bind(c)? {
            out.push((
                local_entry(stage.name()),
                BoundCommand::default(),
                Some(stage),
            ));
            continue;
        }
        let Some(found) = catalog.lookup(c.name.trim()) else {
            let mut r = ExchangeError::command_not_found(c.name.trim())
                .to_error_record("", &ErrorOrigin::default());
            r.fully_qualified_error_id = "CommandNotFoundException".into();
            return Err(r);
        };
        let entry = if found.known {
            found.clone()
        } else {
            permissive(found, &c.args)
        };
        let bound = binding::bind(&entry.metadata, &c.args).map_err(|e| e.to_error_record())?;
        out.push((entry, bound, None));
    }
    Ok(out)
}

/// Runs `pipeline` to its end over `backend`.
pub async fn run<B: Backend>(
    backend: &B,
    caller: &B::Caller,
    catalog: &Catalog,
    pipeline: Pipeline,
    mut input: InputStream,
    output: OutputSink,
) -> PipelineEnd
where
    B::Caller: Sync,
{
    let ctx = Ctx {
        backend,
        caller,
        origin: &pipeline.origin,
        output: &output,
    };
    for (si, statement) in pipeline.statements.iter().enumerate() {
        let mut prepared = match prepare(catalog, &statement.commands) {
            Ok(p) => p,
            Err(rec) => return PipelineEnd::Failed(rec),
        };
        let mut stages: Vec<Stage<'_>> = prepared
            .iter_mut()
            .enumerate()
            .map(|(position, (entry, bound, local))| Stage {
                entry: &*entry,
                position: u32::try_from(position).unwrap_or(u32::MAX),
                bound: std::mem::take(bound),
                local: local.take(),
            })
            .collect();
        for local in stages.iter_mut().filter_map(|s| s.local.as_mut()) {
            if let Some(query) = local.commands_query() {
                local.supply_commands(catalog.query(&query));
            }
        }
        if stages.is_empty() {
            continue;
        }
        let result = async {
            if si == 0 && !pipeline.no_input {
                while let Some(v) = input.recv().await {
                    if ctx.feed(&mut stages, Some(v)).await? == Flow::Enough {
                        break;
                    }
                }
            } else {
                ctx.feed(&mut stages, None).await?;
            }
            ctx.end(&mut stages).await
        }
        .await;
        match result {
            Ok(()) => {}
            Err(Stop::Failed(rec)) => return PipelineEnd::Failed(*rec),
            Err(Stop::Closed) => return PipelineEnd::Completed,
        }
    }
    PipelineEnd::Completed
}
