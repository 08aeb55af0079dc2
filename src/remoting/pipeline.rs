//! One pipeline (a WS-Man command): its incoming fragments, the running executor task, and
//! the queue of outgoing fragments that Receives drain.
//!
//! Output is pulled, not pushed: the executor writes into a bounded [`OutputSink`]; a Receive
//! takes outputs off that queue only as far as its envelope has room, encodes and fragments
//! them then. So a client that polls slowly slows the executor down (the sink's `send` waits)
//! and at most `Settings::output_buffer` outputs plus one envelope's worth of fragments are held
//! per pipeline, whatever the command returns. The final PIPELINE_STATE is queued only after
//! every output is, and `CommandState Done` goes out in the same response as its last fragment.
//!
//! Memory: the pipeline, its half-received input messages, its queued input objects and its
//! queued output fragments are charged to the owner's [`MemoryBudget`] and released when
//! they leave (or the pipeline is dropped). Input is queued for the executor through a small
//! pump ([`input_queue`]) so that each queued object carries its own [`Charge`] while the
//! executor keeps the plain [`InputStream`](super::executor::InputStream) it always had.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::clixml::Value;
use super::executor::{ErrorCategory, Output, PipelineEnd};
use super::fragment::{Defragmenter, fragment};
use super::inbound::Reassembler;
use super::memory::{Charge, MemoryBudget, OverBudget, PIPELINE_COST};
use super::message::{Message, MessageType};
use super::psrp;
use super::records;
use super::wsman::Fault;

/// How much of a ReceiveResponse envelope the streams may use, and what one stream costs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Bytes available for `rsp:Stream` elements.
    pub total: usize,
    /// Bytes of one `<rsp:Stream …></rsp:Stream>` wrapper.
    pub per_stream: usize,
    /// Stream data is wrapped in stored Xpress chunks (4 more bytes per fragment).
    pub compression: bool,
}

impl Budget {
    /// The budget for a response bounded by `max_envelope_size`.
    pub fn new(max_envelope_size: usize, command_id: Option<&str>, compression: bool) -> Self {
        let reserved = super::wsman::RESPONSE_OVERHEAD + 400; // head, CommandState, margin
        Self {
            total: max_envelope_size.saturating_sub(reserved).max(256),
            per_stream: 48 + command_id.map_or(0, |c| c.len() + 14),
            compression,
        }
    }

    /// Envelope bytes one fragment of `len` bytes costs.
    pub fn cost(&self, len: usize) -> usize {
        let raw = len + if self.compression { 4 } else { 0 };
        self.per_stream + raw.div_ceil(3) * 4
    }

    /// Largest fragment (header included) that fits one stream element: at most 32 KiB, like
    /// the Windows server.
    pub fn fragment_size(&self) -> usize {
        let room = self.total.saturating_sub(self.per_stream) / 4 * 3;
        room.saturating_sub(if self.compression { 4 } else { 0 })
            .clamp(64, 32 * 1024)
    }
}

/// What the executor task hands the Receive side when it starts.
struct Started {
    rx: mpsc::Receiver<Output>,
    end: oneshot::Receiver<PipelineEnd>,
}

/// Queued pipeline input: each object with the charge for its bytes.
pub(crate) type InputSender = mpsc::Sender<(Value, Charge)>;

/// A queue of `capacity` charged input objects in front of the executor's input stream. A pump
/// task moves them on one at a time (releasing each charge once delivered) and ends when the
/// sender is dropped or the executor drops its stream (then the queued objects are dropped
/// and their charges released).
pub(crate) fn input_queue(capacity: usize) -> (InputSender, mpsc::Receiver<Value>) {
    let (tx, mut rx) = mpsc::channel::<(Value, Charge)>(capacity.max(1));
    let (to_executor, stream) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some((value, charge)) = rx.recv().await {
            if to_executor.send(value).await.is_err() {
                break;
            }
            drop(charge);
        }
    });
    (tx, stream)
}

/// State touched by Command/Send/Signal (short critical sections, never across an await).
struct Control {
    rpid: Uuid,
    pid: Uuid,
    started: bool,
    handoff: Option<Started>,
    input: Option<InputSender>,
    task: Option<JoinHandle<()>>,
    stop_requested: bool,
    terminated: bool,
}

/// State owned by the Receive in progress (one at a time per pipeline).
struct Outbox {
    rx: Option<mpsc::Receiver<Output>>,
    end: Option<oneshot::Receiver<PipelineEnd>>,
    pending: VecDeque<Vec<u8>>,
    /// What `pending` holds, charged (forced: the output is ours, already produced).
    charge: Charge,
    final_queued: bool,
    done: bool,
}

impl Outbox {
    fn push(&mut self, fragments: Vec<Vec<u8>>) {
        self.charge.force(fragments.iter().map(Vec::len).sum());
        self.pending.extend(fragments);
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let f = self.pending.pop_front()?;
        self.charge.shrink(f.len());
        Some(f)
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.charge.clear();
    }
}

/// One pipeline of a shell.
pub(crate) struct PipelineCtl {
    /// WS-Man CommandId (upper case).
    pub command_id: String,
    /// Reassembles the client's fragments (Command arguments, Sends).
    pub reassembler: Reassembler,
    /// What the pipeline itself costs; released when it is dropped.
    _cost: Charge,
    control: Mutex<Control>,
    outbox: tokio::sync::Mutex<Outbox>,
    notify: Notify,
    object_ids: Arc<AtomicU64>,
    information_records: bool,
}

/// What one Receive got.
pub(crate) struct Received {
    /// Fragments, in order; each goes in its own `rsp:Stream`.
    pub fragments: Vec<Vec<u8>>,
    /// The final PIPELINE_STATE is among them: send CommandState Done.
    pub done: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Item {
    Output(Output),
    End(PipelineEnd),
}

fn lost_end() -> PipelineEnd {
    PipelineEnd::Failed(psrp::endpoint_error(
        "The command ended unexpectedly inside exo-authproxy (its runner failed); see the proxy log."
            .into(),
        "ExecutorFailed",
        ErrorCategory::NotSpecified,
    ))
}

impl PipelineCtl {
    /// A pipeline of the shell whose owner's budget is `memory`.
    ///
    /// # Errors
    /// [`OverBudget`] when the owner cannot afford one more pipeline.
    pub fn new(
        command_id: String,
        max_message_size: usize,
        memory: &Arc<MemoryBudget>,
        object_ids: Arc<AtomicU64>,
        information_records: bool,
    ) -> Result<Self, OverBudget> {
        let cost = memory.charge(PIPELINE_COST, "a command")?;
        Ok(Self {
            command_id,
            reassembler: Arc::new(tokio::sync::Mutex::new(Defragmenter::with_charge(
                max_message_size,
                memory.empty(),
            ))),
            _cost: cost,
            control: Mutex::new(Control {
                rpid: Uuid::nil(),
                pid: Uuid::nil(),
                started: false,
                handoff: None,
                input: None,
                task: None,
                stop_requested: false,
                terminated: false,
            }),
            outbox: tokio::sync::Mutex::new(Outbox {
                rx: None,
                end: None,
                pending: VecDeque::new(),
                charge: memory.empty(),
                final_queued: false,
                done: false,
            }),
            notify: Notify::new(),
            object_ids,
            information_records,
        })
    }

    /// Whether the pipeline's task was started.
    pub fn is_started(&self) -> bool {
        lock(&self.control).started
    }

    /// Starts the task that runs `fut` with `sink`; `rpid`/`pid` come from the client message.
    pub fn start<F>(
        &self,
        rpid: Uuid,
        pid: Uuid,
        input: Option<InputSender>,
        rx: mpsc::Receiver<Output>,
        fut: F,
    ) where
        F: std::future::Future<Output = PipelineEnd> + Send + 'static,
    {
        let (end_tx, end_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let end = fut.await;
            let _ = end_tx.send(end);
        });
        let mut c = lock(&self.control);
        c.rpid = rpid;
        c.pid = pid;
        c.started = true;
        c.input = input;
        c.handoff = Some(Started { rx, end: end_rx });
        if c.stop_requested {
            task.abort();
        }
        c.task = Some(task);
        drop(c);
        self.notify.notify_waiters();
    }

    /// The sender for PIPELINE_INPUT objects, while input is open.
    pub fn input(&self) -> Option<InputSender> {
        lock(&self.control).input.clone()
    }

    /// END_OF_PIPELINE_INPUT: the executor's input stream ends.
    pub fn end_input(&self) {
        lock(&self.control).input = None;
    }

    /// Ctrl-C: drop the executor's future; the next Receive reports Stopped.
    pub fn stop(&self) {
        let mut c = lock(&self.control);
        c.stop_requested = true;
        c.input = None;
        if let Some(t) = &c.task {
            t.abort();
        }
        drop(c);
        self.notify.notify_waiters();
    }

    /// Terminate / shell deletion: drop everything.
    pub fn terminate(&self) {
        let mut c = lock(&self.control);
        c.terminated = true;
        c.input = None;
        c.handoff = None;
        if let Some(t) = c.task.take() {
            t.abort();
        }
        drop(c);
        self.notify.notify_waiters();
    }

    fn queue(
        &self,
        out: &mut Outbox,
        message_type: MessageType,
        value: &Value,
        fragment_size: usize,
    ) {
        let (rpid, pid) = {
            let c = lock(&self.control);
            (c.rpid, c.pid)
        };
        let id = self.object_ids.fetch_add(1, Ordering::Relaxed);
        out.push(Message::client_fragments(
            message_type,
            rpid,
            pid,
            value,
            id,
            fragment_size,
        ));
    }

    fn queue_output(&self, out: &mut Outbox, o: Output, fragment_size: usize) {
        match o {
            Output::Object(v) => self.queue(out, MessageType::PipelineOutput, &v, fragment_size),
            Output::Error(e) => {
                self.queue(
                    out,
                    MessageType::ErrorRecord,
                    &records::error_record(&e),
                    fragment_size,
                );
            }
            Output::Warning(t) => self.queue(
                out,
                MessageType::WarningRecord,
                &records::informational_record(records::InformationalKind::Warning, &t),
                fragment_size,
            ),
            Output::Verbose(t) => self.queue(
                out,
                MessageType::VerboseRecord,
                &records::informational_record(records::InformationalKind::Verbose, &t),
                fragment_size,
            ),
            Output::Information(t) if self.information_records => {
                self.queue(
                    out,
                    MessageType::InformationRecord,
                    &records::information_record(&t, chrono::Utc::now().fixed_offset()),
                    fragment_size,
                );
            }
            Output::Information(t) => self.queue(
                out,
                MessageType::VerboseRecord,
                &records::informational_record(records::InformationalKind::Verbose, &t),
                fragment_size,
            ),
        }
    }

    fn queue_end(&self, out: &mut Outbox, end: PipelineEnd, fragment_size: usize) {
        let v = records::pipeline_end(&end);
        self.queue(out, MessageType::PipelineState, &v, fragment_size);
        out.final_queued = true;
        out.rx = None;
        out.end = None;
    }

    fn try_next(out: &mut Outbox) -> Option<Item> {
        if let Some(rx) = &mut out.rx {
            match rx.try_recv() {
                Ok(o) => return Some(Item::Output(o)),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => out.rx = None,
            }
        }
        let end = out.end.as_mut()?;
        match end.try_recv() {
            Ok(e) => Some(Item::End(e)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Item::End(lost_end())),
        }
    }

    async fn next(
        rx: &mut Option<mpsc::Receiver<Output>>,
        end: &mut Option<oneshot::Receiver<PipelineEnd>>,
    ) -> Item {
        if let Some(r) = rx {
            if let Some(o) = r.recv().await {
                return Item::Output(o);
            }
            *rx = None;
        }
        match end {
            Some(e) => Item::End(e.await.unwrap_or_else(|_| lost_end())),
            None => std::future::pending().await,
        }
    }

    /// One Receive: returns as soon as there is something to send (as much as fits), or the
    /// w:TimedOut fault at `deadline`.
    pub async fn receive(&self, budget: Budget, deadline: Instant) -> Result<Received, Fault> {
        let Ok(mut out) = tokio::time::timeout_at(deadline, self.outbox.lock()).await else {
            return Err(Fault::timed_out());
        };
        let out = &mut *out;
        let fragment_size = budget.fragment_size();
        let mut got = Vec::new();
        let mut used = 0usize;
        loop {
            if out.done {
                return Ok(Received {
                    fragments: got,
                    done: true,
                });
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let stop = {
                let mut c = lock(&self.control);
                if let Some(s) = c.handoff.take() {
                    out.rx = Some(s.rx);
                    out.end = Some(s.end);
                }
                if c.terminated {
                    return Err(Fault::sender(
                        "w:InvalidSelectors",
                        super::wsman::codes::INVALID_SELECTORS,
                        format!(
                            "Command {} was terminated (the client closed it or its shell was deleted).",
                            self.command_id
                        ),
                    ));
                }
                (c.stop_requested && !out.final_queued).then(|| c.task.take())
            };
            if let Some(task) = stop {
                if let Some(task) = task {
                    // Aborted in stop(); wait until the executor's future is really dropped
                    // (its in-flight requests cancelled) before reporting Stopped.
                    let _ = task.await;
                }
                out.clear();
                self.queue(
                    out,
                    MessageType::PipelineState,
                    &records::pipeline_stopped(),
                    fragment_size,
                );
                out.final_queued = true;
                out.rx = None;
                out.end = None;
            }
            while let Some(f) = out.pending.front() {
                let cost = budget.cost(f.len());
                if used + cost > budget.total && !got.is_empty() {
                    return Ok(Received {
                        fragments: got,
                        done: false,
                    });
                }
                used += cost;
                got.extend(out.pop());
            }
            if out.final_queued {
                out.done = true;
                return Ok(Received {
                    fragments: got,
                    done: true,
                });
            }
            match Self::try_next(out) {
                Some(Item::Output(o)) => {
                    self.queue_output(out, o, fragment_size);
                    continue;
                }
                Some(Item::End(e)) => {
                    self.queue_end(out, e, fragment_size);
                    continue;
                }
                None => {}
            }
            if !got.is_empty() {
                return Ok(Received {
                    fragments: got,
                    done: false,
                });
            }
            let item = tokio::select! {
                () = &mut notified => continue,
                item = Self::next(&mut out.rx, &mut out.end) => item,
                () = tokio::time::sleep_until(deadline) => return Err(Fault::timed_out()),
            };
            match item {
                Item::Output(o) => self.queue_output(out, o, fragment_size),
                Item::End(e) => self.queue_end(out, e, fragment_size),
            }
        }
    }
}

/// Most bytes of replies a shell queues for its shell-level Receive. Pool replies are a few
/// hundred bytes each and a client reads them at once; only a client that keeps asking
/// without reading reaches this.
pub(crate) const POOL_OUTBOX_LIMIT: usize = 1024 * 1024;

/// Pool-level messages of a shell, waiting for the shell-level Receive; bounded by
/// [`POOL_OUTBOX_LIMIT`] and charged to the owner's budget.
pub(crate) struct PoolOutbox {
    pending: VecDeque<Vec<u8>>,
    charge: Charge,
}

impl PoolOutbox {
    /// An empty outbox charging `charge`'s budget.
    pub fn new(charge: Charge) -> Self {
        Self {
            pending: VecDeque::new(),
            charge,
        }
    }

    /// Queues one message, fragmented to `fragment_size`.
    ///
    /// # Errors
    /// A fault when the outbox is full (the client does not read its replies) or the owner
    /// is over budget.
    pub fn queue(
        &mut self,
        object_id: u64,
        msg: &Message,
        fragment_size: usize,
    ) -> Result<(), Fault> {
        let fragments = fragment(object_id, &msg.encode(), fragment_size);
        let bytes: usize = fragments.iter().map(Vec::len).sum();
        if self.charge.bytes() + bytes > POOL_OUTBOX_LIMIT {
            return Err(Fault::sender(
                "w:QuotaLimit",
                super::wsman::codes::QUOTA_MAX_OPERATIONS,
                format!(
                    "This session holds {} bytes of replies the client has not received (the \
                     most is {POOL_OUTBOX_LIMIT}); the client sends session requests without \
                     reading the answers. Open a new session with New-PSSession.",
                    self.charge.bytes()
                ),
            )
            .with_code("reply-queue-full"));
        }
        self.charge
            .grow(bytes, "replies waiting for a Receive")
            .map_err(|e| super::memory_fault(&e))?;
        self.pending.extend(fragments);
        Ok(())
    }

    /// Takes as many whole fragments as fit `budget` (at least one when any is queued).
    pub fn drain(&mut self, budget: &Budget) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut used = 0;
        while let Some(f) = self.pending.front() {
            let cost = budget.cost(f.len());
            if used + cost > budget.total && !got.is_empty() {
                break;
            }
            used += cost;
            if let Some(f) = self.pending.pop_front() {
                self.charge.shrink(f.len());
                got.push(f);
            }
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queued pipeline input holds its charge until the executor takes it, and a pipeline
    /// whose executor is gone releases everything still queued.
    #[tokio::test]
    async fn queued_input_is_charged_until_delivered() {
        let budget = MemoryBudget::new("ops", 1 << 20);
        let (tx, mut stream) = input_queue(4);
        for i in 0..3 {
            let charge = budget.charge(1000, "pipeline input").unwrap();
            tx.send((Value::I32(i), charge)).await.unwrap();
        }
        assert_eq!(stream.recv().await, Some(Value::I32(0)));
        // One object is in the executor's channel (delivered), one held by the pump.
        tokio::task::yield_now().await;
        assert!(budget.used() <= 2000, "{}", budget.used());
        drop(stream);
        drop(tx);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn budget_fits_envelope() {
        for env in [8_192usize, 32_768, 153_600, 512_000] {
            let b = Budget::new(env, Some("6A1C9E3B-2F47-4D85-9B0E-7C4D2A1F8E63"), true);
            let f = b.fragment_size();
            assert!(f <= 32 * 1024);
            assert!(b.cost(f) <= b.total, "{env}: one fragment must fit");
            assert!(b.total + super::super::wsman::RESPONSE_OVERHEAD < env);
        }
    }
}
