//! `[audit] file`: the audit trail as JSON lines in a file of its own.
//!
//! Why a writer thread and a bounded queue: an audit write must never block or fail a
//! client's request. Callers hand a finished line to a queue of [`QUEUE`] lines and go on;
//! one thread appends them. A full queue (a stalled disk) drops the line and counts it; a
//! failed write (a full disk) is logged, counted and retried with the next line. Both
//! counts are in `/metrics`.
//!
//! Rotation: the file is opened `O_APPEND` (mode 0600 when created), so logrotate's
//! `copytruncate` needs nothing from us (the next write lands at the new end), and
//! [`AuditFile::reopen`] (SIGHUP) makes the thread reopen the path, for logrotate's
//! `create` (rename, then signal). Lines queued before the reopen go to the old file, none
//! is lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Lines queued for the writer at most.
pub const QUEUE: usize = 8192;

/// The `result` label of `exo_authproxy_audit_lines_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LineResult {
    /// `written`, `dropped` (queue full), `failed` (write failed), `reopened` (SIGHUP).
    pub result: &'static str,
}

/// What the writer did: `exo_authproxy_audit_lines_total{result}` in `/metrics` (clones
/// share one family).
#[derive(Debug, Clone, Default)]
pub struct Counters(Family<LineResult, Counter>);

impl Counters {
    fn get(&self, result: &'static str) -> Counter {
        self.0.get_or_create(&LineResult { result }).clone()
    }
    /// Lines written.
    pub fn written(&self) -> Counter {
        self.get("written")
    }
    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> Counter {
        self.get("dropped")
    }
    /// Lines lost to a failed write.
    pub fn failed(&self) -> Counter {
        self.get("failed")
    }
    /// Reopens (SIGHUP).
    pub fn reopened(&self) -> Counter {
        self.get("reopened")
    }
    /// The family, for the registry.
    pub fn family(&self) -> &Family<LineResult, Counter> {
        &self.0
    }
}

enum Job {
    Line(String),
    Reopen,
    Flush(SyncSender<()>),
}

/// The audit file's writer.
pub struct AuditFile {
    tx: SyncSender<Job>,
    path: PathBuf,
    counters: Counters,
}

impl std::fmt::Debug for AuditFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFile")
            .field("path", &self.path)
            .finish()
    }
}

/// The audit file cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "[audit] file {path}: cannot open it for appending ({source}): check the directory exists and is writable by the proxy's user"
)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)?;
    }
    let mut o = OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

impl AuditFile {
    /// Opens (creates, 0600) `path` for appending and starts the writer thread, counting
    /// into `counters`.
    ///
    /// # Errors
    /// [`OpenError`] when the file cannot be opened now (checked before serving).
    pub fn open(path: &Path, counters: Counters) -> Result<Self, OpenError> {
        let file = open(path).map_err(|source| OpenError {
            path: path.to_owned(),
            source,
        })?;
        let (tx, rx) = sync_channel(QUEUE);
        let c = counters.clone();
        let p = path.to_owned();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(file, &p, &rx, &c))
            .map_err(|source| OpenError {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            tx,
            path: path.to_owned(),
            counters,
        })
    }

    /// Queues one line (without its newline); never blocks.
    pub fn write_line(&self, line: String) {
        match self.tx.try_send(Job::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let n = self.counters.dropped().inc();
                if n.is_power_of_two() {
                    tracing::warn!(path = %self.path.display(), dropped = n + 1, "audit file: queue full, audit lines dropped (is the disk stalled?)");
                }
            }
        }
    }

    /// Reopens the path before the next line (SIGHUP: logrotate's `create`).
    pub fn reopen(&self) {
        // Blocking send: a reopen must not be lost, and it is rare.
        let _ = self.tx.send(Job::Reopen);
    }

    /// Waits until every line queued so far is written (shutdown, tests).
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn writer(mut file: File, path: &Path, rx: &Receiver<Job>, counters: &Counters) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut job = Some(first);
        // Batch what is queued into one write.
        while let Some(j) = job.take() {
            match j {
                Job::Line(line) => {
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                }
                Job::Reopen => {
                    write_out(&mut file, &mut buf, path, counters, &mut failing);
                    match open(path) {
                        Ok(f) => {
                            file = f;
                            counters.reopened().inc();
                        }
                        Err(err) => {
                            tracing::error!(path = %path.display(), error = %err, "audit file: reopen failed; still writing to the previous file")
                        }
                    }
                }
                Job::Flush(done) => {
                    write_out(&mut file, &mut buf, path, counters, &mut failing);
                    let _ = done.send(());
                }
            }
            if buf.len() < 256 * 1024 {
                job = rx.try_recv().ok();
            }
        }
        write_out(&mut file, &mut buf, path, counters, &mut failing);
    }
    write_out(&mut file, &mut buf, path, counters, &mut failing);
}

fn write_out(
    file: &mut File,
    buf: &mut Vec<u8>,
    path: &Path,
    counters: &Counters,
    failing: &mut bool,
) {
    if buf.is_empty() {
        return;
    }
    let lines = buf.iter().filter(|b| **b == b'\n').count() as u64;
    match file.write_all(buf).and_then(|()| file.flush()) {
        Ok(()) => {
            counters.written().inc_by(lines);
            if *failing {
                tracing::info!(path = %path.display(), "audit file: writing again");
                *failing = false;
            }
        }
        Err(err) => {
            counters.failed().inc_by(lines);
            if !*failing {
                tracing::error!(path = %path.display(), error = %err, "audit file: write failed; audit lines are being lost (disk full?)");
                *failing = true;
            }
        }
    }
    buf.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn appends_lines_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let f = AuditFile::open(&p, Counters::default()).unwrap();
        f.write_line("{\"a\":1}".into());
        f.write_line("{\"a\":2}".into());
        f.flush();
        assert_eq!(lines(&p), vec!["{\"a\":1}", "{\"a\":2}"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(f.counters().written().get(), 2);
    }

    #[test]
    fn create_rotation_with_reopen_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let f = AuditFile::open(&p, Counters::default()).unwrap();
        for i in 0..100 {
            f.write_line(format!("{i}"));
        }
        std::fs::rename(&p, &rotated).unwrap();
        f.reopen();
        for i in 100..200 {
            f.write_line(format!("{i}"));
        }
        f.flush();
        let mut all = lines(&rotated);
        all.extend(lines(&p));
        assert_eq!(all, (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn copytruncate_keeps_writing_at_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let f = AuditFile::open(&p, Counters::default()).unwrap();
        f.write_line("before".into());
        f.flush();
        std::fs::copy(&p, dir.path().join("audit.jsonl.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        f.write_line("after".into());
        f.flush();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "after\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_counted_and_never_blocks() {
        let f = AuditFile::open(Path::new("/dev/full"), Counters::default()).unwrap();
        for i in 0..10 {
            f.write_line(format!("{i}"));
        }
        f.flush();
        assert_eq!(f.counters().failed().get(), 10);
        assert_eq!(f.counters().written().get(), 0);
    }

    #[test]
    fn an_unopenable_path_says_what_to_fix() {
        let err =
            AuditFile::open(Path::new("/dev/null/audit.jsonl"), Counters::default()).unwrap_err();
        assert!(
            err.to_string().contains("check the directory exists"),
            "{err}"
        );
    }
}
