//! The simulated world a sandbox runs in: a test CA, simulated Entra ID with the demo app
//! (certificate, consent and roles per tenant), simulated Exchange (token checks, RPS
//! service, REST admin API), the app certificate files and a real TOML config that
//! `Config::load` parses, so the sandbox exercises the same path as production.
//!
//! The one place that assembles the simulators: the `sandbox` command and the integration
//! tests' harnesses (`tests/it/support/harness.rs`) both start a [`World`] and then the real
//! proxy over it ([`super::RunningProxy`]); tests that mint their own tokens add their signing
//! key with [`WorldOptions::trusted_keys`] instead of wiring a second simulated Exchange.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::compliance::{self, ComplianceSim, ComplianceTenant};
use super::exchange::{self, AdminApi, ExchangeSim, RpsService, SigningKeys, SimTenant};
use super::{DEMO_APP_ID, DEMO_USER, SandboxError, claims, entra, io, pki};
use crate::config::{Config, Mode};
use crate::forward::RemotingService;

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
    /// Write `[audit] file = <state_dir>/audit.jsonl` (the `sandbox` command does; tests that
    /// read the audit log target do not).
    pub audit_file: bool,
    /// More local users besides the demo user, with the same password and tenants (one user
    /// per script, as the audit report recommends).
    pub extra_users: Vec<String>,
    /// Tenants (by name) whose app holds Compliance Administrator, the role Security &
    /// Compliance accepts (Exchange Administrator is not one).
    pub compliance_admins: Vec<String>,
}

/// The S&C region of the `i`th tenant: two regions, alternating.
pub fn compliance_region(i: usize) -> &'static str {
    ["nam02b", "eur02b"][i % 2]
}

/// Compliance Administrator's role template id (scc-rest-adminapi.md §1).
const COMPLIANCE_ADMINISTRATOR: &str = "17315797-102d-40b4-93e0-432062caca18";

impl WorldOptions {
    /// The demo user with `password`, the demo tenants, listening on `listen` in `mode`, with
    /// simulated Exchange's RPS side on `rps` and no REST admin API.
    pub fn new(mode: Mode, listen: SocketAddr, rps: Arc<dyn RpsService>) -> Self {
        Self {
            mode,
            password: super::DEMO_PASSWORD.to_owned(),
            listen,
            tenants: demo_tenants(),
            rps,
            adminapi: None,
            audit_file: false,
            extra_users: Vec::new(),
            compliance_admins: vec!["contoso".into()],
        }
    }
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
    /// Simulated Security & Compliance (counters, knobs).
    pub compliance: Arc<ComplianceSim>,
    /// Its global host's address (`[compliance] endpoint`).
    pub compliance_addr: SocketAddr,
    compliance_stop: CancellationToken,
    _entra: entra::SimHandle,
    exchange_stop: CancellationToken,
    exchange_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.exchange_stop.cancel();
        self.compliance_stop.cancel();
    }
}

impl World {
    /// Starts both simulators on `127.0.0.1:0` and writes the config into `dir`.
    ///
    /// # Errors
    /// [`SandboxError`].
    pub async fn start(dir: &Path, options: WorldOptions) -> Result<Self, SandboxError> {
        Self::start_trusting(dir, options, Vec::new()).await
    }

    /// [`World::start`], with simulated Exchange also trusting token signing keys other than
    /// simulated Entra's (`kid`, key): for tests that mint their own tokens.
    ///
    /// # Errors
    /// [`SandboxError`].
    pub async fn start_trusting(
        dir: &Path,
        options: WorldOptions,
        trusted_keys: Vec<(String, jsonwebtoken::DecodingKey)>,
    ) -> Result<Self, SandboxError> {
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
            if options.compliance_admins.contains(&t.name) {
                entra.assign_role(&t.tenant_id, DEMO_APP_ID, COMPLIANCE_ADMINISTRATOR);
            }
        }
        let entra_listener = TcpListener::bind("127.0.0.1:0").await.map_err(io(dir))?;
        let entra_handle = entra
            .spawn(entra_listener, server_tls.clone())
            .map_err(io(dir))?;

        // Exchange: trusts Entra's signing key.
        let mut keys = SigningKeys::default();
        keys.push(Some(entra.kid().to_owned()), entra.decoding_key());
        for (kid, key) in trusted_keys {
            keys.push(Some(kid), key);
        }
        // Security & Compliance: a global host and one host per region, same trust.
        let compliance = Arc::new(ComplianceSim::new(
            keys.clone(),
            options
                .tenants
                .iter()
                .enumerate()
                .map(|(i, t)| ComplianceTenant {
                    tenant_id: t.tenant_id.clone(),
                    organization: t.organization(),
                    region: compliance_region(i).to_owned(),
                })
                .collect(),
        ));
        let compliance_stop = CancellationToken::new();
        let global = TcpListener::bind("127.0.0.1:0").await.map_err(io(dir))?;
        let compliance_addr = global.local_addr().map_err(io(dir))?;
        tokio::spawn(compliance::serve(
            global,
            server_tls.clone(),
            compliance.clone(),
            compliance::Host::Global,
            compliance_stop.clone(),
        ));
        for region in compliance.region_names() {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io(dir))?;
            compliance.set_region_addr(&region, listener.local_addr().map_err(io(dir))?);
            tokio::spawn(compliance::serve(
                listener,
                server_tls.clone(),
                compliance.clone(),
                compliance::Host::Region(region),
                compliance_stop.clone(),
            ));
        }
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
        let exchange_task = tokio::spawn(exchange::serve(
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
            compliance: compliance_addr,
            tenants: &options.tenants,
            password_hash: &hash,
            audit_file: options.audit_file,
            extra_users: &options.extra_users,
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
            compliance,
            compliance_addr,
            compliance_stop,
            _entra: entra_handle,
            exchange_stop,
            exchange_task: Some(exchange_task),
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
                audit: crate::audit::Audit::log(),
                sessions: Arc::default(),
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

    /// Stops simulated Exchange and waits until its port is closed.
    pub async fn stop_exchange_and_wait(&mut self) {
        self.exchange_stop.cancel();
        if let Some(task) = self.exchange_task.take() {
            let _ = task.await;
        }
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
    compliance: SocketAddr,
    tenants: &'a [WorldTenant],
    password_hash: &'a str,
    audit_file: bool,
    extra_users: &'a [String],
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
         [exchange]\nmode = \"{mode}\"\nendpoint = \"https://127.0.0.1:{port}\"\nca_file = {ca}\n\n\
         [compliance]\nendpoint = \"https://127.0.0.1:{scc_port}\"\nca_file = {ca}\n",
        state = toml_str(c.state_dir),
        listen = c.listen,
        authority = c.authority,
        cert = toml_str(c.certificate),
        key = toml_str(c.private_key),
        ca = toml_str(c.ca_file),
        port = c.exchange.port(),
        scc_port = c.compliance.port(),
    );
    if c.audit_file {
        text.push_str(&format!(
            "\n[audit]\nfile = {}\n",
            toml_str(&c.state_dir.join("audit.jsonl"))
        ));
    }
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
    for user in std::iter::once(DEMO_USER).chain(c.extra_users.iter().map(String::as_str)) {
        text.push_str(&format!(
            "\n[[user]]\nname = {}\npassword_hash = \"{}\"\ntenants = [{}]\n",
            toml::Value::String(user.to_owned()),
            c.password_hash,
            names.join(", ")
        ));
    }
    text
}
