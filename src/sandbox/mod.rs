//! Simulated Entra ID and Exchange Online (DESIGN.md §5), for `exo-authproxy sandbox` and tests.
//!
//! Layout: `world` assembles the simulators and the config ([`World`]) and `running` runs the
//! real proxy over them in the background ([`RunningProxy`]); both the `sandbox` command
//! (this file: banner, foreground serve until Ctrl-C) and the integration tests' harnesses
//! use them, so the wiring exists once. `entra/` and `pki.rs` simulate Entra ID, `exchange/`
//! Exchange's front end (token checks, routing), `rps/` and `adminapi.rs` its two APIs over
//! the tenant data in `data/`, and `claims.rs` holds the token claims both check.
//!
//! The simulators are test oracles: they are written from the references in
//! `shared/reference/` and import nothing from `bridge` and no logic from `token` (only the
//! remoting endpoint, which DESIGN.md §5 puts in front of simulated RPS, and the config types
//! the generated config is loaded into). Where the proxy misreads a reference, the
//! simulator disagrees and a test fails.

pub mod adminapi;
pub mod claims;
pub mod compliance;
pub mod data;
pub mod entra;
pub mod exchange;
pub mod pki;
pub mod rps;
mod running;
mod world;

pub use running::RunningProxy;
pub use world::{World, WorldOptions, WorldTenant, demo_tenants};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Mode;
use exchange::{AdminApi, RpsService};

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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
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
    let compliance = match mode {
        Mode::Rest => format!(
            "\n  compliance    https://{url_host}:{port}/compliance/powershell-liveid/  (simulated Security & Compliance: contoso in region nam02b, fabrikam in eur02b)\n"
        ),
        Mode::Winrm => String::new(),
    };
    let compliance_connect = match mode {
        Mode::Rest => format!(
            "$c = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri https://{url_host}:{port}/compliance/powershell-liveid/ -Authentication Basic -Credential $cred -AllowRedirection -SessionOption (New-PSSessionOption -SkipCACheck -SkipCNCheck)\n\
             Invoke-Command -Session $c {{ Get-RetentionCompliancePolicy }}\n"
        ),
        Mode::Winrm => String::new(),
    };
    let mode = match mode {
        Mode::Winrm => "winrm (WS-Man passthrough to simulated /PowerShell-LiveID)",
        Mode::Rest => "rest (the proxy is the endpoint; simulated REST admin API)",
    };
    format!(
        "exo-authproxy sandbox is running: simulated Entra ID + simulated Exchange Online, mode {mode}\n\
         \n  listener      https://{url_host}:{port}/powershell-liveid/\n{compliance}\
         \x20 certificate   {cert}\n\
         \x20 SHA-256       {fingerprint}\n\
         \x20 user          {DEMO_USER} / {password}\n\
         \x20 tenants       contoso (ready, default), fabrikam (no directory role: add ?DelegatedOrg=fabrikam.onmicrosoft.com to see the proxy's diagnosis)\n\
         \x20 health        http://{admin}/healthz/readiness   metrics http://{admin}/metrics\n\
         \npwsh / Windows PowerShell:\n\n\
         $cred = New-Object System.Management.Automation.PSCredential('{DEMO_USER}', (ConvertTo-SecureString '{password}' -AsPlainText -Force))\n\
         $s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri https://{url_host}:{port}/powershell-liveid/ -Authentication Basic -Credential $cred -AllowRedirection -SessionOption (New-PSSessionOption -SkipCACheck -SkipCNCheck)\n\
         Invoke-Command -Session $s {{ Get-OrganizationConfig }}\n{compliance_connect}\
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
    (
        data.clone(),
        rps::service(data.clone()),
        adminapi::service(data),
    )
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
            audit_file: true,
            extra_users: Vec::new(),
            compliance_admins: vec!["contoso".into()],
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
    if let Some(audit) = &world.config.audit {
        let _ = write!(
            out,
            "\nmigration report of what you run here (run it before Ctrl-C: the sandbox removes its directory when it stops):\n\n  exo-authproxy report --audit {file} --format html --output report.html\n",
            file = audit.file.display()
        );
    }
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
