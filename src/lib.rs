//! exo-authproxy: modern authentication for unchanged Exchange Online Remote PowerShell scripts.
//!
//! # Layout
//! - `config`: the TOML configuration, typed and validated (DESIGN.md §3).
//! - `cli`: the command line (clap).
//! - `onboarding`: the `check`, `token` and `consent-url` commands as library functions.
//! - `secret`: `Secret<T>`, the one type secrets live in.
//! - `listener`: accept loop, limits (the request head's: `head_guard`), TLS (`tls`), local Basic
//!   authentication (`basic_auth`).
//! - `forward`: the door to the upstream modes: the pre-flight policy (`policy`), then `winrm`
//!   passthrough or `rest` (the remoting endpoint over the bridge); the shared HTTPS client
//!   (`client`), the redirect policy and pod pins (`redirect`), the client query (`query`),
//!   and `check`'s live question to Exchange through the same door (`probe`).
//! - `errors`: every response the proxy makes up itself (WS-Man faults, 401).
//! - `shutdown`: the one shutdown signal and the drain.
//! - `reload`: configuration reload on SIGHUP or a changed file, all or nothing.
//! - `systemd`: `Type=notify` readiness, stopping and watchdog messages on `$NOTIFY_SOCKET`.
//! - `log_writer`: the binary's log output, written in batches by a writer thread.
//! - `metrics`: Prometheus counters, incremented where events happen.
//! - `admin`: the `[admin]` listener: health probes and `/metrics`.
//! - `audit`: the audit trail: one `Record` schema, the `[audit] file` writer (`file`), the
//!   session registry both modes feed (`sessions`); without a file, the log target.
//! - `token`: Entra ID app-only tokens: credentials, client assertion, cache, claims diagnosis;
//!   `TokenProvider`, the seam `forward` and `bridge` take tokens through.
//! - `remoting`: the PowerShell remoting endpoint (WS-Man + PSRP + CLIXML), used by the REST
//!   bridge and the sandbox; `local` is the one engine for the commands the proxy runs itself
//!   (`Select-Object`, `Measure-Object`, `Get-Command`, …), `wildcard` the one matcher,
//!   `memory` the per-user budget, `inbound` client data decoded off the async workers.
//! - `bridge`: `rest` mode: runs remoting pipelines through the REST admin API.
//! - `report`: `exo-authproxy report`: the migration report read from audit files.
//! - `sandbox`: simulated Entra ID and Exchange Online for `exo-authproxy sandbox` and tests.
//!
//! Dependencies point one way: listener → forward → {winrm, rest → bridge → remoting} →
//! token → config, with `errors` and `metrics` used throughout and depending on none of those
//! above them (`tests/it/architecture.rs` checks the graph is a DAG).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod errors;
pub mod forward;
pub mod listener;
pub mod log_writer;
pub mod metrics;
pub mod onboarding;
pub mod reload;
pub mod remoting;
pub mod report;
pub mod sandbox;
pub mod secret;
pub mod shutdown;
pub mod systemd;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use config::{Config, Mode};
use forward::{Forwarder, RemotingService, TenantRoute, Upstream};
use listener::tls::ListenerTls;
use listener::{Identity, LocalUser, Proxy};
use token::TokenProvider;

/// The sockets `serve` runs on, bound by the caller (tests bind `127.0.0.1:0` and read the
/// address back first, so nothing waits for "the server to come up").
#[derive(Debug)]
pub struct Listeners {
    /// The client-facing listener.
    pub proxy: TcpListener,
    /// `[admin]`: health probes and metrics (None: not configured).
    pub admin: Option<TcpListener>,
}

/// What the proxy talks to, built before binding so a bad credential fails startup.
pub struct Services {
    /// The token engine (or, in tests of the listener alone, a scripted provider).
    pub tokens: Arc<dyn TokenProvider>,
    /// `rest` mode: the remoting endpoint over the REST bridge.
    pub rest: Option<Arc<dyn RemotingService>>,
    /// The metrics every component counts into (the token engine and the bridge got their
    /// handles when they were built: [`TokenEngine::observe`](token::TokenEngine::observe),
    /// [`forward::rest::endpoint`]).
    pub metrics: Arc<metrics::Metrics>,
    /// Where audit events go (`[audit] file`, else the log target).
    pub audit: audit::Audit,
    /// The sessions open now, as the audit trail records them.
    pub sessions: Arc<audit::sessions::SessionLog>,
}

impl Services {
    /// The services `serve` runs with for `config`: `tokens` counting into a fresh
    /// [`metrics::Metrics`], and in `rest` mode the REST bridge over the same engine.
    ///
    /// # Errors
    /// As for [`forward::rest::endpoint`].
    pub fn for_config(
        config: &Config,
        tokens: Arc<token::TokenEngine>,
    ) -> Result<Self, ServeError> {
        let metrics = Arc::new(metrics::Metrics::new());
        tokens.observe(metrics.tokens.clone());
        let audit = match &config.audit {
            Some(a) => audit::Audit::file(&a.file, metrics.audit.clone())?,
            None => audit::Audit::log(),
        };
        let sessions = Arc::new(audit::sessions::SessionLog::new(
            audit.clone(),
            audit::sessions::IDLE_TIMEOUT,
        ));
        let rest = match config.exchange.mode {
            Mode::Rest => Some(forward::rest::endpoint(
                config,
                token::Audience::Exchange,
                tokens.clone(),
                forward::rest::Observers {
                    metrics: &metrics,
                    audit: &audit,
                    sessions: &sessions,
                },
            )?),
            Mode::Winrm => None,
        };
        Ok(Self {
            tokens,
            rest,
            metrics,
            audit,
            sessions,
        })
    }
}

/// Why the proxy cannot start. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A `[[user]]` is unusable.
    #[error(transparent)]
    Users(#[from] listener::basic_auth::UsersError),
    /// The listener certificate.
    #[error(transparent)]
    Tls(#[from] listener::tls::TlsError),
    /// The upstream client.
    #[error(transparent)]
    Upstream(#[from] forward::UpstreamError),
    /// `plaintext = true` on a non-loopback address.
    #[error(
        "[listen] plaintext = true is allowed on loopback only, not {address}: remove it or bind 127.0.0.1"
    )]
    PlaintextNotLoopback {
        /// The configured address.
        address: SocketAddr,
    },
    /// `[audit] file` cannot be opened.
    #[error(transparent)]
    Audit(#[from] audit::file::OpenError),
    /// `rest` mode without the bridge.
    #[error(
        "[exchange] mode = \"rest\" needs the REST bridge endpoint, which this build did not provide"
    )]
    RestBridgeMissing,
    /// A user names a tenant that is not configured.
    #[error("[[user]] {user}: unknown tenant {tenant:?}; [[tenant]] names are {known}")]
    UnknownTenant {
        /// User.
        user: String,
        /// Tenant name.
        tenant: String,
        /// Configured names.
        known: String,
    },
}

/// The proxy, fully prepared: every file read and every hash checked, nothing bound.
pub struct Prepared {
    proxy: Arc<Proxy>,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    tokens: Arc<dyn TokenProvider>,
    reload: Option<reload::Source>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Validates and loads everything `serve` needs (STYLE §2.1: before binding).
    ///
    /// # Errors
    /// [`ServeError`] naming the config key or file to fix.
    pub fn new(config: &Config, services: Services) -> Result<Self, ServeError> {
        let listen = config.listen.address;
        if config.listen.plaintext && !listen.ip().is_loopback() {
            return Err(ServeError::PlaintextNotLoopback { address: listen });
        }
        let tls = if config.listen.plaintext {
            None
        } else {
            let configured = config
                .listen
                .certificate
                .as_deref()
                .zip(config.listen.private_key.as_deref());
            Some(Arc::new(ListenerTls::load(
                configured,
                &config.state_dir,
                listen,
            )?))
        };
        let identity = identity(config, &services.audit)?;
        let upstream = match config.exchange.mode {
            Mode::Winrm => Upstream::Winrm(Box::new(forward::Winrm::new(
                &config.exchange.endpoint,
                config.exchange.ca_file.as_deref(),
                services.tokens.clone(),
            )?)),
            Mode::Rest => Upstream::Rest(
                forward::Rest::new(services.rest.ok_or(ServeError::RestBridgeMissing)?)
                    .with_compliance(forward::rest::endpoint(
                        config,
                        token::Audience::Compliance,
                        services.tokens.clone(),
                        forward::rest::Observers {
                            metrics: &services.metrics,
                            audit: &services.audit,
                            sessions: &services.sessions,
                        },
                    )?),
            ),
        };
        Ok(Self {
            proxy: Arc::new(Proxy {
                identity: arc_swap::ArcSwap::from_pointee(identity),
                forward: Forwarder::new(services.tokens.clone(), upstream),
                tls,
                metrics: services.metrics,
                audit: services.audit,
                sessions: services.sessions,
            }),
            listen,
            admin: config.admin.as_ref().map(|a| a.address),
            tokens: services.tokens,
            reload: None,
        })
    }

    /// Reloads the configuration from `source` on SIGHUP and when a watched file changes
    /// ([`reload`]); without it only the listener certificate and the audit file are.
    #[must_use]
    pub fn with_reload(mut self, source: reload::Source) -> Self {
        self.reload = Some(source);
        self
    }

    /// The listener certificate (path, fingerprint, trust hint), if TLS is on.
    pub fn tls(&self) -> Option<&Arc<ListenerTls>> {
        self.proxy.tls.as_ref()
    }

    /// The configured listen address (the caller binds it).
    pub fn listen_address(&self) -> SocketAddr {
        self.listen
    }

    /// `[admin] address`, if configured (the caller binds it).
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The proxy's shared state (tests read counters through it).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }
}

/// The users of `config` and the tenant routes each may use: built at startup and again by a
/// reload, one function for both.
///
/// # Errors
/// [`ServeError::Users`] for an unusable `[[user]]`, [`ServeError::UnknownTenant`].
pub(crate) fn identity(config: &Config, audit: &audit::Audit) -> Result<Identity, ServeError> {
    let routes: Vec<Arc<TenantRoute>> = config
        .tenants
        .iter()
        .map(|t| {
            Arc::new(TenantRoute {
                name: t.name.clone(),
                tenant_id: t.tenant_id.clone(),
                organization: t.organization.clone(),
                app_id: t
                    .client_id
                    .clone()
                    .unwrap_or_else(|| config.entra.client_id.clone()),
                require_directory_role: t.require_directory_role,
            })
        })
        .collect();
    let mut users = Vec::with_capacity(config.users.len());
    for user in &config.users {
        let mut tenants = Vec::with_capacity(user.tenants.len());
        for name in &user.tenants {
            let route = routes.iter().find(|r| &r.name == name).ok_or_else(|| {
                ServeError::UnknownTenant {
                    user: user.name.clone(),
                    tenant: name.0.clone(),
                    known: routes
                        .iter()
                        .map(|r| r.name.0.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            tenants.push(route.clone());
        }
        users.push(LocalUser {
            name: user.name.clone(),
            tenants,
        });
    }
    let auth = listener::basic_auth::Authenticator::new(&config.users)?.with_audit(audit.clone());
    Ok(Identity { auth, users })
}

/// Serves until `shutdown` completes, then drains within the grace period: each connection
/// finishes the request in hand and closes. SIGHUP reloads the listener certificate and the
/// audit file, and with [`Prepared::with_reload`] the configuration ([`reload`]).
///
/// # Errors
/// None today; the `Result` is for what would stop the whole proxy.
pub async fn serve(
    prepared: Prepared,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with_grace(prepared, listeners, shutdown, shutdown::DEFAULT_GRACE).await
}

/// [`serve`] with an explicit grace period (tests use a short one).
///
/// # Errors
/// As for [`serve`].
pub async fn serve_with_grace(
    prepared: Prepared,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    grace: std::time::Duration,
) -> Result<(), ServeError> {
    let drain = shutdown::Drain::new(grace);
    let quit = shutdown::Trigger::new();
    let proxy = prepared.proxy;
    let tokens = prepared.tokens;
    let status = serving_status(
        listeners.proxy.local_addr().ok(),
        listeners.admin.as_ref().and_then(|a| a.local_addr().ok()),
        proxy.tls.is_some(),
    );
    // SIGHUP and changed files: the configuration, the listener certificate, the audit file
    // (logrotate `create`), all through `reload::reload`.
    let source = prepared.reload.map(Arc::new);
    #[cfg(unix)]
    if let Some(mut hup) = shutdown::reload_signal() {
        let stop = drain.token();
        let proxy = proxy.clone();
        let source = source.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = hup.recv() => if got.is_none() { break },
                    () = stop.cancelled() => break,
                }
                reload::reload(&proxy, source.as_deref(), "SIGHUP").await;
            }
        });
    }
    if let Some(source) = source {
        let stop = drain.token();
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(source.watch_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                if reload::changed(&source).await {
                    reload::reload(&proxy, Some(&source), "a watched file changed").await;
                }
            }
        });
    }
    // Logged once SIGHUP is handled: whoever waits for this line may signal at once.
    if let Ok(addr) = listeners.proxy.local_addr() {
        let scheme = if proxy.tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %addr, "listening on {scheme}://{addr}/powershell-liveid");
    }
    if let Some(tls) = &proxy.tls {
        tracing::info!("{}", tls.trust_hint());
    }
    // Sessions nobody uses end as idle in the audit trail even when no request comes.
    {
        let stop = drain.token();
        let sessions = proxy.sessions.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => sessions.sweep(),
                    () = stop.cancelled() => break,
                }
            }
        });
    }
    let accept = tokio::spawn(listener::accept_loop(
        listeners.proxy,
        proxy.clone(),
        drain.clone(),
    ));
    // After the proxy listener: startup succeeds once the proxy accepts. Not drained: it
    // answers (readiness 503) until the proxy's drain is over, then it is aborted.
    let admin = listeners.admin.map(|listener| {
        tokio::spawn(admin::serve(
            listener,
            Arc::new(admin::Admin {
                metrics: proxy.metrics.clone(),
                tokens,
                drain: drain.clone(),
                sessions: proxy.forward.remoting(),
                quit: quit.clone(),
            }),
        ))
    });
    // Both listeners accept now (bound by the caller, served by the tasks above): systemd
    // may start the units ordered after this one.
    let notify = Arc::new(systemd::Notifier::from_env(&config::ProcessEnvironment));
    notify.ready(&status);
    // Pings continue through the drain (it may take the whole grace period): they stop only
    // when `serve` returns.
    let alive = tokio_util::sync::CancellationToken::new();
    let _stop_pinging = alive.clone().drop_guard();
    if let Some(every) = notify.watchdog() {
        let stop = alive.clone();
        let notify = notify.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => notify.watchdog_ping(),
                    () = stop.cancelled() => break,
                }
            }
        });
    }
    tokio::select! {
        () = shutdown => {}
        () = quit.pulled() => tracing::info!("POST /quitquitquit: draining"),
    }
    tracing::info!("shutting down: finishing in-flight requests");
    notify.stopping("draining: finishing in-flight requests");
    let open = drain.drain().await;
    let _ = accept.await;
    proxy.forward.close_all();
    proxy.sessions.close_all("shutdown");
    proxy.audit.flush();
    if let Some(admin) = admin {
        admin.abort();
    }
    tracing::info!(still_open = open, "stopped");
    Ok(())
}

/// The `STATUS=` systemd shows once serving: where the proxy and the admin listener are (the
/// addresses actually bound, so port 0 in a test or a sandbox reads back as the real one).
fn serving_status(proxy: Option<SocketAddr>, admin: Option<SocketAddr>, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let mut status = match proxy {
        Some(a) => format!("serving {scheme}://{a}/powershell-liveid"),
        None => "serving".to_owned(),
    };
    if let Some(a) = admin {
        status.push_str(&format!("; admin http://{a}"));
    }
    status
}
