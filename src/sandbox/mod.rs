//! Simulated Entra ID and Exchange Online (DESIGN.md §5), for `exo-authproxy sandbox` and tests.
//!
//! Ownership: `entra.rs` and `pki.rs` (#3), `exchange.rs` (HTTP, token checks, routing; #5),
//! `data/`, `rps.rs`, `adminapi.rs` (tenant data and cmdlets; #6). This file holds the
//! `sandbox` command: the real proxy between the two simulators, all on loopback.
//!
//! [`World`] assembles everything but the proxy's own socket: a test CA, the simulated Entra ID
//! (an app with a registered certificate, consent and roles per tenant), simulated Exchange
//! (token checks, RPS service, REST admin API), the app certificate files and a real TOML
//! config that `Config::load` parses, so the sandbox exercises the same path as production.
//! The `sandbox` command and the integration tests both use it; the command then binds the
//! listener, prints the banner and serves until Ctrl-C.

pub mod adminapi;
pub mod claims;
pub mod data;
pub mod entra;
pub mod exchange;
pub mod pki;
pub mod rps;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::forward::RemotingService;
use exchange::{AdminApi, ExchangeSim, RpsService, SigningKeys, SimTenant};

/// The app as simulated Exchange established it from a verified Bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIdentity {
    /// `tid`
    pub tenant_id: String,
    /// `appid`
    pub app_id: String,
    /// The tenant's organization domain.
    pub organization: String,
}

/// The demo app's client id.
pub const DEMO_APP_ID: &str = "5f0e7e5b-6d1c-4a8e-9a57-0c0ffee0a11c";
/// The demo user.
pub const DEMO_USER: &str = "reporting";
/// The demo password unless `--password`.
pub const DEMO_PASSWORD: &str = "sandbox";

/// A simulated tenant and its onboarding state.
#[derive(Debug, Clone)]
pub struct WorldTenant {
    /// Local name; the organization is `<name>.onmicrosoft.com`.
    pub name: String,
    /// Directory id.
    pub tenant_id: String,
    /// Whether the app holds Exchange Administrator in the tenant (token `wids`).
    pub directory_role: bool,
    /// Whether Exchange has a role assignment for the app (RBAC for applications).
    pub exchange_role: bool,
    /// `require_directory_role = true` in the config.
    pub require_directory_role: bool,
}

impl WorldTenant {
    /// `<name>.onmicrosoft.com`
    pub fn organization(&self) -> String {
        format!("{}.onmicrosoft.com", self.name)
    }
}

/// contoso (ready) and fabrikam (consented, no directory role, no Exchange assignment).
pub fn demo_tenants() -> Vec<WorldTenant> {
    vec![
        WorldTenant {
            name: "contoso".into(),
            tenant_id: "0f9c3b1e-1111-2222-3333-444455556666".into(),
            directory_role: true,
            exchange_role: false,
            require_directory_role: false,
        },
        WorldTenant {
            name: "fabrikam".into(),
            tenant_id: "7d2e4f60-aaaa-bbbb-cccc-ddddeeeeffff".into(),
            directory_role: false,
            exchange_role: false,
            require_directory_role: false,
        },
    ]
}

/// What the world is made of.
pub struct WorldOptions {
    /// Upstream mode written into the config.
    pub mode: Mode,
    /// The demo user's password.
    pub password: String,
    /// The address written into `[listen]` (the caller binds it).
    pub listen: SocketAddr,
    /// Tenants; the demo user may use all of them, the first is the default.
    pub tenants: Vec<WorldTenant>,
    /// The RPS service behind simulated Exchange's `/PowerShell-LiveID`.
    pub rps: Arc<dyn RpsService>,
    /// The REST admin API handler, if simulated.
    pub adminapi: Option<AdminApi>,
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Certificates or keys.
    #[error("sandbox PKI: {0}")]
    Pki(#[from] pki::PkiError),
    /// Files in the sandbox directory.
    #[error("sandbox directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The generated config did not load (a bug: the message says where).
    #[error("sandbox config: {0}")]
    Config(#[from] crate::config::Error),
    /// The token engine.
    #[error("sandbox token engine: {0}")]
    Engine(#[from] crate::token::EngineError),
    /// The proxy could not be prepared.
    #[error(transparent)]
    Serve(#[from] crate::ServeError),
    /// The listen address is taken.
    #[error("cannot listen on {address}: {source}; pass --listen 127.0.0.1:<free port>")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The simulated Entra's signing key.
    #[error("sandbox signing key: {0}")]
    SigningKey(String),
}

/// The simulators, files and config of one sandbox.
pub struct World {
    /// The directory holding the CA, app certificate, config and state.
    pub dir: PathBuf,
    /// The test CA's certificate (trusted by the proxy for both simulators).
    pub ca_file: PathBuf,
    /// The generated config file.
    pub config_path: PathBuf,
    /// The loaded config.
    pub config: Config,
    /// Simulated Entra ID (knobs, counters).
    pub entra: entra::EntraSim,
    /// Simulated Exchange (knobs, counters).
    pub exchange: Arc<ExchangeSim>,
    /// Simulated Exchange's address.
    pub exchange_addr: SocketAddr,
    _entra: entra::SimHandle,
    exchange_stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.exchange_stop.cancel();
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl World {
    /// Starts both simulators on `127.0.0.1:0` and writes the config into `dir`.
    ///
    /// # Errors
    /// [`SandboxError`].
    pub async fn start(dir: &Path, options: WorldOptions) -> Result<Self, SandboxError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ca = pki::TestCa::new("exo-authproxy sandbox CA")?;
        let ca_file = dir.join("sandbox-ca.pem");
        std::fs::write(&ca_file, ca.pem()).map_err(io(&ca_file))?;
        let server_tls = ca.loopback_server_config()?;

        // Entra: the app, its certificate, consent and roles per tenant.
        let app = pki::AppCertificate::generate("exo-authproxy sandbox app")?;
        let files = app.write_to(dir, "app", "sandbox")?;
        let entra = entra::EntraSim::new()?;
        entra.register_app(entra::App {
            client_id: DEMO_APP_ID.into(),
            display_name: "exo-authproxy sandbox".into(),
            certificates: vec![entra::RegisteredCertificate::from(&app)],
            ..entra::App::default()
        });
        for t in &options.tenants {
            entra.add_tenant(&t.tenant_id);
            entra.consent(&t.tenant_id, DEMO_APP_ID, true);
            if t.directory_role {
                entra.assign_role(&t.tenant_id, DEMO_APP_ID, claims::EXCHANGE_ADMINISTRATOR);
            }
        }
        let entra_listener = TcpListener::bind("127.0.0.1:0").await.map_err(io(dir))?;
        let entra_handle = entra
            .spawn(entra_listener, server_tls.clone())
            .map_err(io(dir))?;

        // Exchange: trusts Entra's signing key.
        let mut keys = SigningKeys::default();
        keys.push(Some(entra.kid().to_owned()), entra.decoding_key());
        let sim_tenants = options
            .tenants
            .iter()
            .map(|t| SimTenant {
                tenant_id: t.tenant_id.clone(),
                organization: t.organization(),
                exchange_role_apps: if t.exchange_role {
                    HashSet::from([DEMO_APP_ID.to_owned()])
                } else {
                    HashSet::new()
                },
            })
            .collect();
        let exchange = Arc::new(ExchangeSim::new(
            keys,
            sim_tenants,
            options.rps,
            options.adminapi,
        ));
        let exchange_listener = TcpListener::bind("127.0.0.1:0").await.map_err(io(dir))?;
        let exchange_addr = exchange_listener.local_addr().map_err(io(dir))?;
        let exchange_stop = CancellationToken::new();
        tokio::spawn(exchange::serve(
            exchange_listener,
            server_tls,
            exchange.clone(),
            exchange_stop.clone(),
        ));

        let hash = crate::listener::basic_auth::hash_password(&options.password)
            .map_err(|e| SandboxError::SigningKey(e.to_string()))?;
        let config_path = dir.join("exo-authproxy.toml");
        let text = config_text(&ConfigInputs {
            state_dir: &dir.join("state"),
            listen: options.listen,
            authority: &entra_handle.authority,
            certificate: &files.certificate,
            private_key: &files.private_key,
            ca_file: &ca_file,
            mode: options.mode,
            exchange: exchange_addr,
            tenants: &options.tenants,
            password_hash: &hash,
        });
        std::fs::write(&config_path, text).map_err(io(&config_path))?;
        let config = Config::load(&config_path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca_file,
            config_path,
            config,
            entra,
            exchange,
            exchange_addr,
            _entra: entra_handle,
            exchange_stop,
        })
    }

    /// The proxy over this world, prepared (nothing bound): the real token engine against the
    /// simulated Entra, and `rest` for rest mode.
    ///
    /// # Errors
    /// [`SandboxError`].
    pub fn prepare(
        &self,
        rest: Option<Arc<dyn RemotingService>>,
    ) -> Result<(crate::Prepared, Arc<crate::token::TokenEngine>), SandboxError> {
        let env = std::collections::HashMap::<String, String>::new();
        let tokens = Arc::new(crate::token::TokenEngine::new(&self.config, &env)?);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        tokens.observe(metrics.tokens.clone());
        let prepared = crate::Prepared::new(
            &self.config,
            crate::Services {
                tokens: tokens.clone(),
                rest,
                metrics,
            },
        )?;
        Ok((prepared, tokens))
    }

    /// [`World::prepare`] with what the configured mode needs (the REST bridge in rest mode).
    ///
    /// # Errors
    /// [`SandboxError`].
    pub fn prepare_for_mode(
        &self,
    ) -> Result<(crate::Prepared, Arc<crate::token::TokenEngine>), SandboxError> {
        let env = std::collections::HashMap::<String, String>::new();
        let tokens = Arc::new(crate::token::TokenEngine::new(&self.config, &env)?);
        let services = crate::Services::for_config(&self.config, tokens.clone())?;
        let prepared = crate::Prepared::new(&self.config, services)?;
        Ok((prepared, tokens))
    }

    /// Stops simulated Exchange (its port closes once open connections finish).
    pub fn stop_exchange(&self) {
        self.exchange_stop.cancel();
    }
}

struct ConfigInputs<'a> {
    state_dir: &'a Path,
    listen: SocketAddr,
    authority: &'a str,
    certificate: &'a Path,
    private_key: &'a Path,
    ca_file: &'a Path,
    mode: Mode,
    exchange: SocketAddr,
    tenants: &'a [WorldTenant],
    password_hash: &'a str,
}

fn toml_str(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

fn config_text(c: &ConfigInputs<'_>) -> String {
    let mode = match c.mode {
        Mode::Winrm => "winrm",
        Mode::Rest => "rest",
    };
    let mut text = format!(
        "# Generated by `exo-authproxy sandbox`: the real proxy config, pointing at the simulators.\n\
         state_dir = {state}\n\n[listen]\naddress = \"{listen}\"\n\n[entra]\nauthority = \"{authority}\"\n\
         client_id = \"{DEMO_APP_ID}\"\ncertificate = {cert}\nprivate_key = {key}\nca_file = {ca}\n\n\
         [exchange]\nmode = \"{mode}\"\nendpoint = \"https://127.0.0.1:{port}\"\nca_file = {ca}\n",
        state = toml_str(c.state_dir),
        listen = c.listen,
        authority = c.authority,
        cert = toml_str(c.certificate),
        key = toml_str(c.private_key),
        ca = toml_str(c.ca_file),
        port = c.exchange.port(),
    );
    for t in c.tenants {
        text.push_str(&format!(
            "\n[[tenant]]\nname = \"{}\"\ntenant_id = \"{}\"\norganization = \"{}\"\n",
            t.name,
            t.tenant_id,
            t.organization()
        ));
        if t.require_directory_role {
            text.push_str("require_directory_role = true\n");
        }
    }
    let names: Vec<String> = c
        .tenants
        .iter()
        .map(|t| format!("\"{}\"", t.name))
        .collect();
    text.push_str(&format!(
        "\n[[user]]\nname = \"{DEMO_USER}\"\npassword_hash = \"{}\"\ntenants = [{}]\n",
        c.password_hash,
        names.join(", ")
    ));
    text
}

/// `exo-authproxy sandbox` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Upstream mode.
    pub mode: Mode,
    /// The demo user's password.
    pub password: String,
}

/// The connect snippets for a running sandbox.
pub fn banner(
    url_host: &str,
    port: u16,
    cert: &Path,
    fingerprint: &str,
    password: &str,
    mode: Mode,
    admin: SocketAddr,
) -> String {
    let cert = cert.display();
    let mode = match mode {
        Mode::Winrm => "winrm (WS-Man passthrough to simulated /PowerShell-LiveID)",
        Mode::Rest => "rest (the proxy is the endpoint; simulated REST admin API)",
    };
    format!(
        "exo-authproxy sandbox is running: simulated Entra ID + simulated Exchange Online, mode {mode}\n\
         \n  listener      https://{url_host}:{port}/powershell-liveid/\n\
         \x20 certificate   {cert}\n\
         \x20 SHA-256       {fingerprint}\n\
         \x20 user          {DEMO_USER} / {password}\n\
         \x20 tenants       contoso (ready, default), fabrikam (no directory role: add ?DelegatedOrg=fabrikam.onmicrosoft.com to see the proxy's diagnosis)\n\
         \x20 health        http://{admin}/healthz/readiness   metrics http://{admin}/metrics\n\
         \npwsh / Windows PowerShell:\n\n\
         $cred = New-Object System.Management.Automation.PSCredential('{DEMO_USER}', (ConvertTo-SecureString '{password}' -AsPlainText -Force))\n\
         $s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri https://{url_host}:{port}/powershell-liveid/ -Authentication Basic -Credential $cred -AllowRedirection -SessionOption (New-PSSessionOption -SkipCACheck -SkipCNCheck)\n\
         Invoke-Command -Session $s {{ Get-OrganizationConfig }}\n\
         \npypsrp (pip install pypsrp):\n\n\
         python3 - <<'PY'\n\
         from pypsrp.powershell import PowerShell, RunspacePool\n\
         from pypsrp.wsman import WSMan\n\
         wsman = WSMan(\"{url_host}\", port={port}, path=\"powershell-liveid\", username=\"{DEMO_USER}\", password=\"{password}\", auth=\"basic\", ssl=True, cert_validation=\"{cert}\")\n\
         with RunspacePool(wsman, configuration_name=\"Microsoft.Exchange\") as pool:\n\
         \x20   ps = PowerShell(pool)\n\
         \x20   ps.add_cmdlet(\"Get-Mailbox\").add_parameter(\"ResultSize\", 5)\n\
         \x20   for mailbox in ps.invoke():\n\
         \x20       print(mailbox)\n\
         \x20   print(\"errors:\", [str(e) for e in ps.streams.error])\n\
         PY\n\
         \nCtrl-C stops the sandbox.\n"
    )
}

/// Mailboxes per simulated tenant in the `sandbox` command.
pub const SANDBOX_MAILBOXES: usize = 250;

/// Simulated Exchange's services over one deterministic data set: the RPS endpoint (the
/// project's remoting endpoint over `RpsExecutor`) and the REST admin API handler.
pub fn simulated_exchange(
    mailboxes_per_tenant: usize,
) -> (Arc<data::ExchangeData>, Arc<dyn RpsService>, AdminApi) {
    let data = Arc::new(data::ExchangeData::new(mailboxes_per_tenant));
    let rps: Arc<dyn RpsService> = Arc::new(crate::remoting::Endpoint::new(
        Arc::new(rps::RpsExecutor::new(data.clone())),
        crate::remoting::Settings::default(),
    ));
    let for_rest = data.clone();
    let adminapi: AdminApi = Arc::new(move |app, tenant, request| {
        let data = for_rest.clone();
        Box::pin(async move { adminapi::handle(&data, &app, &tenant, request).await })
    });
    (data, rps, adminapi)
}

/// Runs the sandbox on `options.listen` until `shutdown` completes, printing the banner to `out`.
///
/// # Errors
/// [`SandboxError`].
pub async fn run(
    options: Options,
    out: &mut (dyn std::io::Write + Send),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    let listener =
        TcpListener::bind(options.listen)
            .await
            .map_err(|source| SandboxError::Bind {
                address: options.listen,
                source,
            })?;
    let dir = std::env::temp_dir().join(format!("exo-authproxy-sandbox-{}", std::process::id()));
    let result = run_on(listener, &dir, options, out, shutdown).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// [`run`] on a listener the caller bound, with files in `dir` (tests use port 0 and a temp dir).
///
/// # Errors
/// [`SandboxError`].
pub async fn run_on(
    listener: TcpListener,
    dir: &Path,
    options: Options,
    out: &mut (dyn std::io::Write + Send),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    let address = listener.local_addr().map_err(io(dir))?;
    let (_data, rps, adminapi) = simulated_exchange(SANDBOX_MAILBOXES);
    let world = World::start(
        dir,
        WorldOptions {
            mode: options.mode,
            password: options.password.clone(),
            listen: address,
            tenants: demo_tenants(),
            rps,
            adminapi: Some(adminapi),
        },
    )
    .await?;
    let (prepared, _tokens) = world.prepare_for_mode()?;
    let admin = TcpListener::bind(("127.0.0.1", 0)).await.map_err(io(dir))?;
    let admin_address = admin.local_addr().map_err(io(dir))?;
    let tls = prepared
        .tls()
        .cloned()
        .expect("the sandbox always uses TLS");
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        address.ip().to_string()
    };
    let _ = write!(
        out,
        "{}",
        banner(
            &host,
            address.port(),
            tls.cert_path(),
            &tls.fingerprint(),
            &options.password,
            options.mode,
            admin_address,
        )
    );
    let _ = out.flush();
    crate::serve(
        prepared,
        crate::Listeners {
            proxy: listener,
            admin: Some(admin),
        },
        shutdown,
    )
    .await?;
    drop(world);
    Ok(())
}
