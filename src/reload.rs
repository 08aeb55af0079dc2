//! Configuration reload without a restart: on SIGHUP, and when the config file or any file it
//! names changes (a renewed certificate, a Kubernetes Secret or ConfigMap that the kubelet
//! swaps through its `..data` symlink, a package manager replacing the file).
//!
//! Why all or nothing: a reload that applied half a file would leave the proxy running a
//! configuration nobody wrote. So the new file is loaded and validated exactly as `serve`
//! validates at startup, and the users it defines are built, before anything is swapped; any
//! error refuses the whole reload with the reason (logged, counted in
//! `exo_authproxy_config_reloads_total{result="refused"}`), and the running configuration
//! stays. Settings that live in bound sockets or built clients (listen and admin addresses,
//! the listener certificate's *paths*, mode and endpoints, the authority and trust roots, the
//! audit file, `state_dir`) need a restart: a change to one of them refuses the reload and
//! names the key, rather than being silently ignored.
//!
//! What a reload replaces: the users and their tenants (one swap, so a request sees the old
//! set or the new one), every tenant's app credential (the token engine keeps valid tokens;
//! see [`TokenEngine::reload`]), the listener certificate's contents, and the audit file
//! handle (logrotate's `create`). Sessions in flight keep their shells, pools and tenant
//! routes: nothing they hold is rebuilt.
//!
//! Why polling and not inotify: the kubelet replaces a Secret by renaming a symlink two
//! levels above the file, editors write a new file and rename it, and Windows has neither;
//! hashing a few small files every few seconds sees all of these the same way, on every
//! platform, for a negligible cost.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Environment};
use crate::listener::Proxy;
use crate::token::TokenEngine;

/// How often the watched files are hashed in production.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// What a reload reads from: the config file, the process environment (for
/// `EXO_AUTHPROXY_*` overrides and secret variables), and the token engine to hand the new
/// credentials to.
pub struct Source {
    path: PathBuf,
    env: Arc<dyn Environment>,
    engine: Arc<TokenEngine>,
    watch_every: Duration,
    state: tokio::sync::Mutex<State>,
}

struct State {
    running: Config,
    seen: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("watch_every", &self.watch_every)
            .finish_non_exhaustive()
    }
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not load or validate.
    #[error("{0}")]
    Config(#[from] crate::config::Error),
    /// Its users or tenants do not fit together.
    #[error("{0}")]
    Users(#[from] crate::ServeError),
    /// A setting that needs a restart changed.
    #[error(
        "{key} changed; that takes a restart (systemctl restart exo-authproxy, or restart the \
         container), so nothing was reloaded: put the old value back to reload the rest, or restart"
    )]
    RestartNeeded {
        /// The config key, e.g. `[listen] address`.
        key: &'static str,
    },
    /// Reading the file failed in a way the loader did not report.
    #[error("reading {path}: {problem}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
}

impl Source {
    /// Reloads from `path` (the file `running` was loaded from) with `env`, handing new
    /// credentials to `engine`; watches the files every `watch_every`.
    pub fn new(
        path: PathBuf,
        running: Config,
        env: Arc<dyn Environment>,
        engine: Arc<TokenEngine>,
        watch_every: Duration,
    ) -> Self {
        let seen = fingerprint(&path, &running);
        Self {
            path,
            env,
            engine,
            watch_every,
            state: tokio::sync::Mutex::new(State { running, seen }),
        }
    }

    /// How often the files are checked.
    pub fn watch_every(&self) -> Duration {
        self.watch_every
    }
}

/// Reloads `proxy` now (`why`: "SIGHUP", "a watched file changed"). The listener certificate
/// and the audit file are reloaded even without a config `source` (the sandbox and tests that
/// build a proxy without a file).
pub(crate) async fn reload(proxy: &Proxy, source: Option<&Source>, why: &str) {
    proxy.audit.reopen();
    if let Some(source) = source {
        match reload_config(proxy, source).await {
            Ok(summary) => {
                proxy
                    .metrics
                    .config_reloads
                    .get_or_create(&crate::metrics::ReloadLabels { result: "ok" })
                    .inc();
                tracing::info!(
                    "{why}: configuration reloaded from {} ({summary})",
                    source.path.display()
                );
            }
            Err(err) => {
                proxy
                    .metrics
                    .config_reloads
                    .get_or_create(&crate::metrics::ReloadLabels { result: "refused" })
                    .inc();
                tracing::error!(
                    "{why}: reload of {} refused, still serving the previous configuration: {err}",
                    source.path.display()
                );
                return;
            }
        }
    }
    if let Some(tls) = &proxy.tls {
        match tls.reload() {
            Ok(()) => {
                tracing::info!(fingerprint = %tls.fingerprint(), "{why}: listener certificate reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "{why}: listener certificate reload failed; keeping the current certificate");
            }
        }
    }
}

/// Whether any watched file changed since the last reload (or attempt).
pub(crate) async fn changed(source: &Source) -> bool {
    let state = source.state.lock().await;
    let path = source.path.clone();
    let running = state.running.clone();
    drop(state);
    let now = tokio::task::spawn_blocking(move || fingerprint(&path, &running))
        .await
        .unwrap_or_default();
    source.state.lock().await.seen != now
}

async fn reload_config(proxy: &Proxy, source: &Source) -> Result<String, ReloadError> {
    let mut state = source.state.lock().await;
    let path = source.path.clone();
    let env = source.env.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let config = Config::load_with_env(&path, env.as_ref());
        let seen = match &config {
            Ok(c) => fingerprint(&path, c),
            Err(_) => fingerprint_files(std::slice::from_ref(&path)),
        };
        (config, seen)
    })
    .await
    .map_err(|e| ReloadError::Read {
        path: source.path.clone(),
        problem: e.to_string(),
    })?;
    // A refused file is not retried until it changes again (no error every few seconds).
    state.seen = loaded.1;
    let config = loaded.0?;
    restart_needed(&state.running, &config)?;
    let identity = crate::identity(&config, &proxy.audit)?;
    let summary = format!(
        "{} users, {} tenants",
        config.users.len(),
        config.tenants.len()
    );
    source.engine.reload(&config, source.env.as_ref()).await;
    proxy.identity.store(Arc::new(identity));
    state.running = config;
    Ok(summary)
}

/// The first setting that differs between `old` and `new` and needs a restart.
fn restart_needed(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let checks: [(&'static str, bool); 8] = [
        ("state_dir", old.state_dir == new.state_dir),
        ("[listen]", old.listen == new.listen),
        (
            "[entra] authority",
            old.entra.authority == new.entra.authority,
        ),
        ("[entra] ca_file", old.entra.ca_file == new.entra.ca_file),
        ("[exchange]", old.exchange == new.exchange),
        ("[compliance]", old.compliance == new.compliance),
        ("[admin]", old.admin == new.admin),
        ("[audit]", old.audit == new.audit),
    ];
    match checks.iter().find(|(_, same)| !same) {
        Some((key, _)) => Err(ReloadError::RestartNeeded { key }),
        None => Ok(()),
    }
}

/// The files a reload depends on: the config file and every file it names whose contents
/// are read once (credentials, listener certificate, trust roots). A federated token file is
/// read on every use anyway, and rotates hourly: not watched.
fn watched(path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    let mut add = |p: &Option<PathBuf>| files.extend(p.iter().cloned());
    add(&config.listen.certificate);
    add(&config.listen.private_key);
    add(&config.entra.ca_file);
    add(&config.exchange.ca_file);
    add(&config.compliance.ca_file);
    for credentials in std::iter::once(config.entra.credentials())
        .chain(config.tenants.iter().map(|t| t.credentials()))
    {
        add(&credentials.certificate);
        add(&credentials.private_key);
        add(&credentials.pfx);
    }
    files
}

fn fingerprint(path: &Path, config: &Config) -> u64 {
    fingerprint_files(&watched(path, config))
}

/// A hash of the files' contents, read through symlinks (so a swapped `..data` link counts);
/// a missing file hashes as missing. Not security-relevant: only "did anything change".
fn fingerprint_files(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}
