//! The shutdown signal and the drain.
//!
//! One mechanism for the whole process: a [`CancellationToken`] that every connection task
//! watches and a [`TaskTracker`] that counts them. When the `shutdown` future given to
//! [`serve`](crate::serve) completes, the accept loops stop, every connection is told to finish
//! the request in hand and close (hyper's `graceful_shutdown`), and `serve` waits for all of
//! them within [`Drain::grace`]. A long-poll Receive in flight therefore completes (or times
//! out at the client's OperationTimeout) instead of being cut, which is what lets a script's
//! last command finish when the proxy is redeployed.
//!
//! [`os_signal`] is the production `shutdown` future: SIGTERM or SIGINT (Ctrl-C). SIGHUP is
//! not a shutdown: [`reload_signal`] reloads the configuration (`crate::reload`).
//!
//! [`Trigger`] is the programmatic way in: `POST /quitquitquit` on the admin listener (for a
//! Job's main container, which cannot signal its sidecar, and for `exo-authproxy shutdown`).
//! `serve` stops on whichever comes first, the caller's `shutdown` future or the trigger, and
//! then runs the very same drain, so the two ways to stop cannot behave differently.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The drain state shared by the accept loops and the connections.
#[derive(Debug, Clone)]
pub struct Drain {
    stop: CancellationToken,
    tasks: TaskTracker,
    grace: Duration,
}

/// How long in-flight requests get after the signal. Longer than pypsrp's default
/// OperationTimeout (20 s) plus a margin, so an idle long-poll ends on its own.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

impl Drain {
    /// A drain with the given grace period.
    pub fn new(grace: Duration) -> Self {
        Self {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            grace,
        }
    }

    /// Completes once shutdown has begun.
    pub fn stopping(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// A token that is cancelled when shutdown begins (for tasks that outlive a borrow).
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Spawns a tracked task: the drain waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Begins shutdown and waits for every tracked task, at most the grace period. Returns how
    /// many tasks were still running when the grace period ran out (0 on a clean drain).
    pub async fn drain(&self) -> usize {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_err()
        {
            let open = self.tasks.len();
            tracing::warn!(open, grace = ?self.grace, "grace period over, closing the remaining connections");
            return open;
        }
        0
    }
}

/// A request to shut down that does not come from a signal (`POST /quitquitquit`).
///
/// Cloning shares the trigger; [`Trigger::pull`] is idempotent.
#[derive(Debug, Clone, Default)]
pub struct Trigger(CancellationToken);

impl Trigger {
    /// A trigger nobody has pulled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the server to shut down (drain, then return from `serve`).
    pub fn pull(&self) {
        self.0.cancel();
    }

    /// Whether [`Trigger::pull`] was called.
    pub fn is_pulled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once the trigger is pulled.
    pub async fn pulled(&self) {
        self.0.cancelled().await;
    }
}

/// Completes on SIGTERM or SIGINT (Windows: Ctrl-C, Ctrl-Break, console close, system
/// shutdown): the production shutdown signal (exit code 0 follows).
///
/// # Panics
/// When the signal handlers cannot be installed (no signal support at all).
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_close, ctrl_shutdown};
        // Console close and system shutdown give the process a few seconds: drain then.
        let mut close = ctrl_close().expect("install the console-close handler");
        let mut shutdown = ctrl_shutdown().expect("install the shutdown handler");
        let mut brk = ctrl_break().expect("install the Ctrl-Break handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: draining"),
            _ = brk.recv() => tracing::info!("Ctrl-Break: draining"),
            _ = close.recv() => tracing::info!("console closed: draining"),
            _ = shutdown.recv() => tracing::info!("system shutdown: draining"),
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: draining");
    }
}

/// A stream of SIGHUPs (configuration reload, `crate::reload`); `None` if the handler cannot be
/// installed. Unix only: Windows has no SIGHUP (there the file watch reloads).
#[cfg(unix)]
pub fn reload_signal() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_then_gives_up_after_grace() {
        let drain = Drain::new(Duration::from_secs(5));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = drain.clone();
        drain.spawn(async move {
            d.stopping().await;
            let _ = rx.await; // finishes when the test says so
        });
        let stuck = drain.clone();
        drain.spawn(async move {
            stuck.stopping().await;
            std::future::pending::<()>().await;
        });
        tx.send(()).unwrap();
        assert_eq!(drain.drain().await, 1, "the stuck task is reported");
        assert!(drain.is_stopping());
    }

    #[tokio::test]
    async fn a_pulled_trigger_completes_every_clone() {
        let trigger = Trigger::new();
        let waiting = trigger.clone();
        assert!(!waiting.is_pulled());
        let wait = tokio::spawn(async move { waiting.pulled().await });
        trigger.pull();
        trigger.pull(); // idempotent
        wait.await.unwrap();
        assert!(trigger.is_pulled());
    }

    #[tokio::test]
    async fn clean_drain_reports_zero() {
        let drain = Drain::new(Duration::from_secs(5));
        let d = drain.clone();
        drain.spawn(async move { d.stopping().await });
        assert_eq!(drain.drain().await, 0);
    }
}
