//! Running a pipeline as Exchange's NoLanguage runspace did: the simulator's cmdlets, the
//! restricted runspace's `Select-Object` / `Measure-Object` / `Get-FormatData` / `Out-*`,
//! PowerShell's pipeline binding (a piped object binds to `-Identity`), `-ErrorAction` and
//! `-WarningAction`.
//!
//! The simulator's own runner, not the bridge's: the compatibility test runs the same
//! pipelines through both and compares what comes out, so sharing the runner would compare
//! it with itself. Everything runs over in-memory tenant data, so the runner is a plain push
//! chain: each stage turns one input object into events (objects for the next stage,
//! records for the client), a source cmdlet's objects go down in batches of [`BATCH`] so the
//! first objects reach the client before the last are serialized, and `Select-Object -First`
//! stops everything upstream of it (later objects and the upstream's final warnings are
//! never written), as PowerShell's StopUpstreamCommandsException does.

use std::sync::Arc;

use super::super::data::catalog::{self, Cmdlet};
use super::super::data::{CmdletError, Outcome, Tenant};
use super::binding::{self, Bound, Signature, identity_of};
use super::event::{Event, error_event, warning_event};
use super::local::{Measure, Select, local};
use super::{record, to_clixml};
use crate::remoting::clixml::Value;
use crate::remoting::executor::{
    Command, ErrorRecord, InputStream, Output, OutputSink, Pipeline, PipelineEnd,
};

/// Objects serialized per step of a source cmdlet.
pub const BATCH: usize = 100;

struct ExchangeStage {
    cmdlet: &'static Cmdlet,
    bound: Bound,
}

impl ExchangeStage {
    /// Runs the cmdlet, with `input` bound to `-Identity`.
    fn call(&self, tenant: &Tenant, input: Option<&Value>) -> Result<Outcome, Vec<Event>> {
        let mut params = self.bound.parameters.clone();
        if let Some(v) = input {
            match identity_of(v) {
                Some(id)
                    if self.cmdlet.param("Identity").is_some()
                        && !params.contains_key("Identity") =>
                {
                    params.insert("Identity".into(), id.into());
                }
                _ => {
                    let rec = record::input_not_bound(self.cmdlet.name, v);
                    return Err(error_event(self.bound.error_action, rec)
                        .into_iter()
                        .collect());
                }
            }
        }
        tenant
            .invoke(self.cmdlet.name, &params)
            .map_err(|e| self.failure(&e, tenant))
    }

    fn failure(&self, e: &CmdletError, tenant: &Tenant) -> Vec<Event> {
        let rec = record::exchange(e, self.cmdlet.name, &tenant.server);
        if e.is_terminating() {
            vec![Event::Fail(Box::new(rec))]
        } else {
            error_event(self.bound.error_action, rec)
                .into_iter()
                .collect()
        }
    }

    fn trailer(&self, outcome: &Outcome) -> Vec<Event> {
        outcome
            .warnings
            .iter()
            .filter_map(|w| warning_event(self.bound.warning_action, self.cmdlet.name, w.clone()))
            .collect()
    }
}

enum Stage {
    Exchange(ExchangeStage),
    Select(Box<Select>),
    Measure(Measure),
    /// Takes input and writes nothing (`Get-FormatData`, `Out-Null`, `Exit-PSSession`).
    Sink,
    /// Writes its input (`Out-Default`: the client formats).
    Pass,
}

impl Stage {
    fn done(&self) -> bool {
        matches!(self, Stage::Select(s) if s.done())
    }
}

fn prepare(commands: &[Command]) -> Result<Vec<Stage>, Box<ErrorRecord>> {
    let mut stages = Vec::with_capacity(commands.len());
    for c in commands {
        if c.is_script {
            return Err(Box::new(record::scripts_not_allowed(&c.name)));
        }
        let name = c.name.trim();
        if let Some((canonical, params)) = local(name) {
            let bound = binding::bind(
                &Signature {
                    params,
                    permissive: false,
                },
                &c.args,
            )
            .map_err(|e| Box::new(record::powershell(&e, canonical)))?;
            stages.push(match canonical {
                "Select-Object" => Stage::Select(Box::new(Select::new(&bound)?)),
                "Measure-Object" => Stage::Measure(Measure::new(&bound)),
                "Out-Default" => Stage::Pass,
                _ => Stage::Sink,
            });
            continue;
        }
        let Some(cmdlet) = catalog::lookup(name) else {
            return Err(Box::new(record::powershell(
                &CmdletError::command_not_found(name),
                name,
            )));
        };
        let sig = Signature {
            params: &cmdlet.params,
            permissive: !cmdlet.simulated,
        };
        let bound = binding::bind(&sig, &c.args)
            .map_err(|e| Box::new(record::powershell(&e, cmdlet.name)))?;
        stages.push(Stage::Exchange(ExchangeStage { cmdlet, bound }));
    }
    Ok(stages)
}

/// Pushes `event` into `stages[from]` and what comes out down the rest, collecting what
/// reaches the client in `out`.
fn flow(stages: &mut [Stage], tenant: &Tenant, from: usize, event: Event, out: &mut Vec<Event>) {
    let value = match event {
        Event::Object(v) => v,
        Event::Record(r) => {
            // A command downstream stopped its upstream: what upstream writes later is lost.
            if !stages[from.min(stages.len())..].iter().any(Stage::done) {
                out.push(Event::Record(r));
            }
            return;
        }
        fail @ Event::Fail(_) => {
            out.push(fail);
            return;
        }
    };
    let Some(stage) = stages.get_mut(from) else {
        out.push(Event::Object(value));
        return;
    };
    let mut produced = Vec::new();
    match stage {
        Stage::Exchange(x) => match x.call(tenant, Some(&value)) {
            Ok(outcome) => {
                produced.extend(
                    outcome
                        .items
                        .iter()
                        .map(|i| Event::Object(to_clixml(&tenant.object(i)))),
                );
                produced.extend(x.trailer(&outcome));
            }
            Err(e) => produced.extend(e),
        },
        Stage::Select(s) => s.push(value, &mut produced),
        Stage::Measure(m) => m.push(value),
        Stage::Sink => {}
        Stage::Pass => produced.push(Event::Object(value)),
    }
    for e in produced {
        flow(stages, tenant, from + 1, e, out);
    }
}

/// Sends `events` to the client; Err(end) when the pipeline is over.
async fn send(output: &OutputSink, events: Vec<Event>) -> Result<(), PipelineEnd> {
    for e in events {
        let out = match e {
            Event::Object(v) => Output::Object(v),
            Event::Record(r) => r,
            Event::Fail(rec) => return Err(PipelineEnd::Failed(*rec)),
        };
        if output.send(out).await.is_err() {
            return Err(PipelineEnd::Completed);
        }
    }
    Ok(())
}

async fn statement(
    tenant: &Arc<Tenant>,
    commands: &[Command],
    input: Option<&mut InputStream>,
    output: &OutputSink,
) -> Result<(), PipelineEnd> {
    let mut stages = prepare(commands).map_err(|rec| PipelineEnd::Failed(*rec))?;
    if stages.is_empty() {
        return Ok(());
    }
    if let Some(input) = input {
        while let Some(v) = input.recv().await {
            let mut out = Vec::new();
            flow(&mut stages, tenant, 0, Event::Object(v), &mut out);
            send(output, out).await?;
            if stages.iter().any(Stage::done) {
                break;
            }
        }
    } else if let Some(called) = match &stages[0] {
        Stage::Exchange(source) => Some(source.call(tenant, None).map(|o| {
            let trailer = source.trailer(&o);
            (o, trailer)
        })),
        _ => None,
    } {
        let (outcome, trailer) = match called {
            Ok(done) => done,
            Err(e) => {
                let mut out = Vec::new();
                for e in e {
                    flow(&mut stages, tenant, 1, e, &mut out);
                }
                send(output, out).await?;
                (Outcome::default(), Vec::new())
            }
        };
        for chunk in outcome.items.chunks(BATCH) {
            let mut out = Vec::new();
            for item in chunk {
                let obj = to_clixml(&tenant.object(item));
                flow(&mut stages, tenant, 1, Event::Object(obj), &mut out);
            }
            send(output, out).await?;
            if stages.iter().any(Stage::done) {
                break;
            }
            // Let other tasks run between batches, as a real endpoint's I/O would.
            tokio::task::yield_now().await;
        }
        let mut out = Vec::new();
        for e in trailer {
            flow(&mut stages, tenant, 1, e, &mut out);
        }
        send(output, out).await?;
    }
    for i in 0..stages.len() {
        let mut produced = Vec::new();
        match &mut stages[i] {
            Stage::Select(s) => s.finish(&mut produced),
            Stage::Measure(m) => m.finish(&mut produced),
            _ => {}
        }
        let mut out = Vec::new();
        for e in produced {
            flow(&mut stages, tenant, i + 1, e, &mut out);
        }
        send(output, out).await?;
    }
    Ok(())
}

/// Runs `pipeline` for `tenant` to its end.
pub async fn run(
    tenant: Arc<Tenant>,
    pipeline: Pipeline,
    mut input: InputStream,
    output: OutputSink,
) -> PipelineEnd {
    for (i, s) in pipeline.statements.iter().enumerate() {
        let piped = (i == 0 && !pipeline.no_input).then_some(&mut input);
        if let Err(end) = statement(&tenant, &s.commands, piped, &output).await {
            return end;
        }
    }
    PipelineEnd::Completed
}
