//! The real proxy serving in the background over a sandbox [`World`](super::World), on
//! listeners the caller bound (port 0 in tests), until told to stop.
//!
//! The one implementation of "start the proxy, remember how to stop it" that the
//! integration tests' harnesses share (`tests/it/support/harness.rs`: `Harness` with a
//! scripted token source, `Sandboxed` with the real token engine); the `sandbox` command
//! serves in the foreground instead (`super::run_on`). Stopping is `serve`'s own shutdown
//! signal, as SIGTERM would give it, followed by its drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Listeners, Prepared, ServeError};

/// A proxy serving in a background task.
#[derive(Debug)]
pub struct RunningProxy {
    /// The proxy's address.
    pub proxy: SocketAddr,
    /// The admin listener's address (health, metrics).
    pub admin: SocketAddr,
    /// The listener's certificate (None with `plaintext = true`).
    pub listener_cert: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), ServeError>>>,
}

impl RunningProxy {
    /// Starts `serve` with `prepared` on `proxy` and `admin`, draining for up to `grace`
    /// once stopped.
    ///
    /// # Errors
    /// The listeners' addresses cannot be read.
    pub fn spawn(
        prepared: Prepared,
        proxy: TcpListener,
        admin: TcpListener,
        grace: Duration,
    ) -> std::io::Result<Self> {
        let proxy_addr = proxy.local_addr()?;
        let admin_addr = admin.local_addr()?;
        let listener_cert = prepared.tls().map(|t| t.cert_path().to_path_buf());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(crate::serve_with_grace(
            prepared,
            Listeners {
                proxy,
                admin: Some(admin),
            },
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        Ok(Self {
            proxy: proxy_addr,
            admin: admin_addr,
            listener_cert,
            stop: Some(stop),
            served: Some(served),
        })
    }

    /// `https://127.0.0.1:<port>/powershell-liveid`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/powershell-liveid", self.proxy.port())
    }

    /// Tells the proxy to stop (as SIGTERM does) without waiting; the task ends when the
    /// drain is over. None when already stopped.
    pub fn begin_shutdown(&mut self) -> Option<JoinHandle<Result<(), ServeError>>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.take()
    }

    /// Stops the proxy and waits for `serve` to return.
    ///
    /// # Errors
    /// What `serve` returned.
    ///
    /// # Panics
    /// When the serve task panicked.
    pub async fn shutdown(&mut self) -> Result<(), ServeError> {
        match self.begin_shutdown() {
            Some(task) => task.await.expect("the serve task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
