//! The endpoint's pipeline driver: the NoLanguage rule, then each statement's commands on
//! the executor and the local commands ([`Stage`]s) around them.
//!
//! An executor that runs pipelines itself, pulling from each command as PowerShell does
//! ([`Executor::RUNS_LOCAL_COMMANDS`]: the REST bridge), gets the whole pipeline and puts the
//! same stages in place between its own commands, so `-First n` stops its paging wherever it
//! stands. For the others (test executors, anything that only runs its own commands) the
//! driver runs here: a statement made only of local commands runs here entirely (its input
//! objects, if any, are its source), and a trailing run of local commands is applied to the
//! executor's output — when a stage has had [`Flow::Enough`], the executor's future is
//! dropped, which cancels whatever it was doing, exactly as Ctrl-C does.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Flow, Stage, is_local};
use crate::remoting::clixml::Value;
use crate::remoting::executor::{
    Command, ErrorRecord, Executor, InputStream, Origin, Output, OutputSink, Pipeline, PipelineEnd,
    Statement,
};
use crate::remoting::records;

/// Local commands piped into each other, driven as one.
struct Chain {
    stages: Vec<Stage>,
    /// The first stage still running: an [`Flow::Enough`] at stage i stops the stages before
    /// it (they are not finished, as PowerShell stops upstream commands).
    running: usize,
}

/// Why pushing into a chain stopped early.
enum Halt {
    /// The pipeline fails with this record.
    Failed(Box<ErrorRecord>),
    /// The client is gone.
    Closed,
}

impl Chain {
    fn new(stages: Vec<Stage>) -> Self {
        Self { stages, running: 0 }
    }

    /// Pushes `values` into stage `from` and what comes out down the rest; returns what the
    /// last stage produced (and every stage's errors) and whether the chain wants more.
    fn push_from(
        &mut self,
        from: usize,
        values: Vec<Value>,
    ) -> Result<(Vec<Output>, Flow), ErrorRecord> {
        let mut out = Vec::new();
        let mut values = values;
        let mut flow = Flow::More;
        for i in from..self.stages.len() {
            let mut next = Vec::new();
            for v in values {
                let step = self.stages[i].push(v)?;
                for o in step.outputs {
                    match o {
                        Output::Object(v) => next.push(v),
                        other => out.push(other),
                    }
                }
                if step.flow == Flow::Enough {
                    self.running = self.running.max(i);
                    flow = Flow::Enough;
                    break;
                }
            }
            values = next;
        }
        out.extend(values.into_iter().map(Output::Object));
        Ok((out, flow))
    }

    /// End of input: finishes each running stage in turn, its output going down the rest.
    fn finish(&mut self) -> Result<Vec<Output>, ErrorRecord> {
        let mut out = Vec::new();
        let mut i = self.running;
        while i < self.stages.len() {
            let mut objects = Vec::new();
            for o in self.stages[i].finish()? {
                match o {
                    Output::Object(v) => objects.push(v),
                    other => out.push(other),
                }
            }
            let (produced, _) = self.push_from(i + 1, objects)?;
            out.extend(produced);
            i = (i + 1).max(self.running);
        }
        Ok(out)
    }
}

async fn send_all(sink: &OutputSink, outputs: Vec<Output>) -> Result<(), Halt> {
    for o in outputs {
        sink.send(o).await.map_err(|_| Halt::Closed)?;
    }
    Ok(())
}

/// How the executor's output stream ended for the chain.
enum Pumped {
    /// The executor closed its sink.
    Drained,
    /// A stage had enough: stop the executor.
    Enough,
    Halted(Halt),
}

/// The executor's outputs through `chain` into `sink`.
async fn pump(
    mut rx: mpsc::Receiver<Output>,
    chain: &mut Chain,
    merge_errors: bool,
    sink: &OutputSink,
) -> Pumped {
    while let Some(o) = rx.recv().await {
        let o = match o {
            Output::Error(e) if merge_errors => {
                Output::Object(records::error_record_object(&e).into_value())
            }
            o => o,
        };
        let Output::Object(v) = o else {
            if sink.send(o).await.is_err() {
                return Pumped::Halted(Halt::Closed);
            }
            continue;
        };
        let (outputs, flow) = match chain.push_from(0, vec![v]) {
            Ok(r) => r,
            Err(rec) => return Pumped::Halted(Halt::Failed(Box::new(rec))),
        };
        if let Err(halt) = send_all(sink, outputs).await {
            return Pumped::Halted(halt);
        }
        if flow == Flow::Enough {
            return Pumped::Enough;
        }
    }
    Pumped::Drained
}

/// Binds every local command of a statement before anything runs, as PowerShell binds a
/// pipeline's arguments before running it; returns the trailing run's stages.
fn bind_statement(commands: &[Command], split: usize) -> Result<Vec<Stage>, ErrorRecord> {
    let mut trailing = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        if let Some(stage) = Stage::bind(c)?
            && i >= split
        {
            trailing.push(stage);
        }
    }
    Ok(trailing)
}

async fn run_statement<E: Executor>(
    executor: &E,
    caller: &E::Caller,
    statement: Statement,
    origin: &Origin,
    no_input: bool,
    mut input: InputStream,
    sink: &OutputSink,
) -> PipelineEnd {
    let split = statement
        .commands
        .iter()
        .rposition(|c| !is_local(&c.name))
        .map_or(0, |i| i + 1);
    let mut chain = match bind_statement(&statement.commands, split) {
        Ok(stages) => Chain::new(stages),
        Err(rec) => return PipelineEnd::Failed(rec),
    };
    for stage in &mut chain.stages {
        if let Some(query) = stage.commands_query() {
            match executor.command_metadata(caller, query).await {
                Ok(commands) => stage.supply_commands(commands),
                Err(rec) => return PipelineEnd::Failed(rec),
            }
        }
    }
    let mut commands = statement.commands;
    commands.truncate(split);

    let ended = if commands.is_empty() {
        // Only local commands: the input objects (if any) are the source.
        if !no_input {
            while let Some(v) = input.recv().await {
                let (outputs, flow) = match chain.push_from(0, vec![v]) {
                    Ok(r) => r,
                    Err(rec) => return PipelineEnd::Failed(rec),
                };
                if send_all(sink, outputs).await.is_err() {
                    return PipelineEnd::Completed;
                }
                if flow == Flow::Enough {
                    break;
                }
            }
        }
        PipelineEnd::Completed
    } else {
        let merge_errors = commands.iter().any(|c| c.merge_errors_into_output);
        let pipeline = Pipeline {
            statements: vec![Statement { commands }],
            no_input,
            origin: origin.clone(),
        };
        if chain.stages.is_empty() && !merge_errors {
            return executor.run(caller, pipeline, input, sink.clone()).await;
        }
        let (inner, rx) = OutputSink::channel(16);
        let running = executor.run(caller, pipeline, input, inner);
        let pumping = pump(rx, &mut chain, merge_errors, sink);
        tokio::pin!(running, pumping);
        let (end, pumped) = tokio::select! {
            pumped = &mut pumping => (None, pumped),
            end = &mut running => (Some(end), pumping.await),
        };
        let end = match (end, &pumped) {
            (Some(end), _) => end,
            // The executor closed its sink early; let it finish.
            (None, Pumped::Drained) => running.await,
            // Enough, failed or closed: dropping `running` cancels the executor's work.
            (None, _) => PipelineEnd::Completed,
        };
        match pumped {
            Pumped::Halted(Halt::Failed(rec)) => return PipelineEnd::Failed(*rec),
            Pumped::Halted(Halt::Closed) => return end,
            Pumped::Drained | Pumped::Enough => {}
        }
        if matches!(end, PipelineEnd::Failed(_)) {
            // An upstream command failed: the commands after it do not end normally.
            return end;
        }
        end
    };
    match chain.finish() {
        Ok(outputs) => {
            let _ = send_all(sink, outputs).await;
            ended
        }
        Err(rec) => PipelineEnd::Failed(rec),
    }
}

/// Runs a whole pipeline: refuses script text (the NoLanguage rule), then runs each statement
/// in turn — on the executor, with local commands as described in the module docs — and stops
/// at the first failed one.
pub async fn run<E: Executor>(
    executor: Arc<E>,
    caller: E::Caller,
    pipeline: Pipeline,
    input: InputStream,
    sink: OutputSink,
) -> PipelineEnd {
    if let Some(script) = pipeline
        .statements
        .iter()
        .flat_map(|s| &s.commands)
        .find(|c| c.is_script)
    {
        return PipelineEnd::Failed(ErrorRecord::scripts_not_allowed(&script.name));
    }
    if E::RUNS_LOCAL_COMMANDS {
        return executor.run(&caller, pipeline, input, sink).await;
    }
    let mut input = Some(input);
    let origin = pipeline.origin;
    for statement in pipeline.statements {
        let (no_input, this_input) = match input.take() {
            Some(i) => (pipeline.no_input, i),
            None => (true, mpsc::channel(1).1),
        };
        match run_statement(
            &*executor, &caller, statement, &origin, no_input, this_input, &sink,
        )
        .await
        {
            PipelineEnd::Completed => {}
            failed @ PipelineEnd::Failed(_) => return failed,
        }
    }
    PipelineEnd::Completed
}
