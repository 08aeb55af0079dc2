//! Where the binary's log lines go: a shared buffer that a writer thread drains in batches.
//!
//! Why not a `write(2)` per line on the request's task: a slow terminal, a full pipe or a
//! stalled journald would then stall the runtime's workers, and every request would pay a
//! system call. Why not `tracing-appender`'s non-blocking writer: it hands every line through
//! a channel and wakes its thread for each one. Measured on the pinned harness the three are
//! within its run-to-run noise (BENCHMARKS.md "where the CPU goes": formatting the line is the
//! cost, not writing it); this one keeps both the system call and the per-line wake-up off
//! the request's path.
//!
//! Here a line is appended to a buffer under a mutex; only the first line into an empty
//! buffer wakes the thread, which then lets lines gather for up to [`GATHER`] (or until
//! [`BATCH`] bytes have queued) and writes them in one call. A line is therefore on its way
//! to stderr, the file or journald within [`GATHER`]. Nothing is dropped: a buffer that
//! reaches [`LIMIT`] (the output cannot keep up) is written by the logging thread itself,
//! which is the backpressure, because with no `[audit] file` the audit trail is in these
//! lines. Dropping the [`Guard`] writes everything queued before it returns.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather after the first one wakes it.
pub const GATHER: Duration = Duration::from_millis(20);
/// Queued bytes at which the writer thread stops gathering and writes at once.
pub const BATCH: usize = 64 * 1024;
/// Queued bytes at which a logging thread writes the queue itself instead of adding to it.
pub const LIMIT: usize = 1024 * 1024;

/// The `MakeWriter` given to the log subscriber; cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after writing every queued line.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when the first line lands in an empty queue, at [`BATCH`] and at close.
    wake: Condvar,
    /// Held while writing, taken before `queue` (the one lock order), so batches leave in
    /// the order their lines arrived whichever thread writes them.
    out: Mutex<Box<dyn Write + Send>>,
}

struct Queue {
    lines: Vec<u8>,
    closed: bool,
}

/// Starts the writer thread for `out`. Should the operating system refuse a thread, every
/// line is written as it is logged instead (the queue starts closed): slower, never silent.
pub fn start(out: impl Write + Send + 'static) -> (BatchWriter, Guard) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            lines: Vec::new(),
            closed: false,
        }),
        wake: Condvar::new(),
        out: Mutex::new(Box::new(out)),
    });
    let thread = std::thread::Builder::new()
        .name("exo-authproxy-log".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || shared.run()
        });
    let thread = match thread {
        Ok(thread) => Some(thread),
        Err(_) => {
            lock(&shared.queue).closed = true;
            None
        }
    };
    (
        BatchWriter {
            shared: Arc::clone(&shared),
        },
        Guard { shared, thread },
    )
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a log lock leaves bytes, not broken invariants: keep logging.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn run(&self) {
        loop {
            let mut queue = lock(&self.queue);
            while queue.lines.is_empty() && !queue.closed {
                queue = self
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !queue.closed {
                queue = self
                    .wake
                    .wait_timeout_while(queue, GATHER, |q| q.lines.len() < BATCH && !q.closed)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let closed = queue.closed;
            drop(queue);
            self.write_queued();
            if closed {
                return;
            }
        }
    }

    /// Writes what is queued, in order with any other writer.
    fn write_queued(&self) {
        let mut out = lock(&self.out);
        let lines = std::mem::take(&mut lock(&self.queue).lines);
        if lines.is_empty() {
            return;
        }
        // Nowhere to report a failing log output; the lines are lost, the proxy goes on.
        let _ = out.write_all(&lines).and_then(|()| out.flush());
        // Keep the buffer for the next batch, unless a burst grew it well past one: then it
        // is freed here.
        let mut queue = lock(&self.queue);
        if queue.lines.is_empty() && lines.capacity() <= 2 * BATCH {
            let mut lines = lines;
            lines.clear();
            queue.lines = lines;
        }
    }

    fn append(&self, line: &[u8]) {
        let mut queue = lock(&self.queue);
        let was_empty = queue.lines.is_empty();
        queue.lines.extend_from_slice(line);
        let len = queue.lines.len();
        let closed = queue.closed;
        drop(queue);
        // Closed (the guard dropped, or no writer thread): written at once, after any line
        // still queued, so the order holds.
        if closed || len >= LIMIT {
            self.write_queued();
        } else if was_empty || len >= BATCH {
            self.wake.notify_one();
        }
    }
}

/// One event's writer: the formatter writes the whole line at once.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines appended between the thread's last batch and `closed`.
        self.shared.write_queued();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records what was written and in how many calls.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut r = lock(&self.0);
            r.0.extend_from_slice(buf);
            r.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(i: usize) -> String {
        format!("line {i} {}\n", "x".repeat(i % 97))
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let out = Recorder::default();
        let (writer, guard) = start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        writer
                            .make_writer()
                            .write_all(format!("{t} {}", line(i)).as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, calls) = lock(&out.0).clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .collect();
            assert_eq!(mine.len(), 5_000, "thread {t}'s lines, complete");
            for (i, got) in mine.iter().enumerate() {
                let want = format!("{t} {}", line(i));
                assert_eq!(
                    *got,
                    want.trim_end_matches('\n'),
                    "thread {t}'s line {i}, in order"
                );
            }
        }
        assert_eq!(text.lines().count(), 20_000);
        assert!(calls < 20_000 / 4, "lines leave in batches: {calls} writes");
    }

    #[test]
    fn lines_logged_after_the_guard_drops_are_written_at_once_and_in_order() {
        let out = Recorder::default();
        let (writer, guard) = start(out.clone());
        writer.make_writer().write_all(b"before\n").unwrap();
        drop(guard);
        writer.make_writer().write_all(b"after 1\n").unwrap();
        writer.make_writer().write_all(b"after 2\n").unwrap();
        assert_eq!(lock(&out.0).0, b"before\nafter 1\nafter 2\n");
    }

    #[test]
    fn a_single_line_is_written_without_more_logging() {
        let out = Recorder::default();
        let (writer, _guard) = start(out.clone());
        writer.make_writer().write_all(b"alone\n").unwrap();
        // Wait (bounded) for the writer thread to write the line on its own.
        for _ in 0..500 {
            if lock(&out.0).0 == b"alone\n" {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the line was not written within 5 s");
    }

    #[test]
    fn a_queue_at_the_limit_is_written_by_the_logging_thread() {
        /// An output that blocks until released (so nothing drains), recording whether a
        /// write has started and the largest batch it was handed.
        struct Stalled {
            gate: Arc<(Mutex<bool>, Condvar)>,
            entered: Arc<std::sync::atomic::AtomicBool>,
            largest: Arc<std::sync::atomic::AtomicUsize>,
            out: Recorder,
        }
        impl Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                use std::sync::atomic::Ordering::SeqCst;
                self.entered.store(true, SeqCst);
                self.largest.fetch_max(buf.len(), SeqCst);
                let (open, cv) = &*self.gate;
                let mut g = lock(open);
                while !*g {
                    g = cv.wait(g).unwrap();
                }
                self.out.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        use std::sync::atomic::Ordering::SeqCst;
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = Recorder::default();
        let (writer, guard) = start(Stalled {
            gate: Arc::clone(&gate),
            entered: Arc::clone(&entered),
            largest: Arc::clone(&largest),
            out: out.clone(),
        });
        const LINE: usize = 4096;
        let big = vec![b'y'; LINE];
        // Far more than LIMIT: without the backpressure the queue would hold it all.
        let logger = std::thread::spawn(move || {
            for _ in 0..(4 * LIMIT / big.len()) {
                writer.make_writer().write_all(&big).unwrap();
            }
        });
        // Wait (bounded) until a write, by either thread, is stuck in the stalled output.
        for _ in 0..5_000 {
            if entered.load(SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Observe first, then open the gate, then assert: a failing assertion with the gate
        // closed would hang the test in the guard's drop instead of failing it.
        let was_entered = entered.load(SeqCst);
        let logger_done = logger.is_finished();
        let queued = lock(&guard.shared.queue).lines.len();
        *lock(&gate.0) = true;
        gate.1.notify_all();
        logger.join().unwrap();
        drop(guard);
        assert!(was_entered, "nothing was written within 5 s");
        // With the output stalled the logger cannot get 4 MiB out, and it may not queue it.
        assert!(
            !logger_done,
            "the logger waits for the stalled output instead of queueing 4 MiB"
        );
        assert!(queued < LIMIT + LINE, "queue bounded: {queued} bytes");
        assert_eq!(lock(&out.0).0.len(), 4 * LIMIT);
        let largest = largest.load(SeqCst);
        assert!(
            largest < LIMIT + LINE,
            "no batch larger than the limit and one line: {largest} bytes"
        );
    }
}
