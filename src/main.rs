//! The binary: parse the command line, set up logging, run the command, map errors to exit codes.
//!
//! Thin on purpose (STYLE §2.1): everything testable lives in the library. `serve` loads and
//! checks the whole configuration and every credential before it binds a socket. Exit codes
//! (README "Exit codes"): 0 ok, 1 runtime failure, 2 usage (clap), 64 configuration,
//! 65 credential, 66 listener certificate, 67 cannot bind, 69 `check` found a tenant not ready.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Arc;

#[cfg(windows)]
mod service;

use clap::Parser;
use exo_authproxy::cli::{Cli, Command, LogFormat};
use exo_authproxy::config::{Config, ProcessEnvironment, TenantName};
use exo_authproxy::onboarding;
use exo_authproxy::{Listeners, Prepared, ServeError, Services};

/// A failure of a command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Credential(String),
    #[error("{0}")]
    Certificate(String),
    #[error("cannot listen on {address}: {source}; is another process using the port?")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Usage(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Runtime(_) => 1,
            Self::Usage(_) => 2,
            Self::Config(_) => 64,
            Self::Credential(_) => 65,
            Self::Certificate(_) => 66,
            Self::Bind { .. } => 67,
            Self::NotReady(_) => 69,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: clap prints and exits 2
    #[cfg(windows)]
    if let Command::Serve { config } = &cli.command
        && let Some(code) = service::run_if_started_by_scm(config, cli.log_format)
    {
        return ExitCode::from(code);
    }
    let logs = init_tracing(
        cli.log_format,
        std::io::stderr(),
        std::io::stderr().is_terminal(),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("exo-authproxy: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    drop(runtime);
    drop(logs); // every log line is written before the final word
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    eprintln!("exo-authproxy: {err}");
    ExitCode::from(err.exit_code())
}

/// Installs the log subscriber writing to `out` through `log_writer`'s batching thread;
/// logging stops, with every line written, when the returned guard drops.
fn init_tracing(
    format: LogFormat,
    out: impl std::io::Write + Send + 'static,
    ansi: bool,
) -> exo_authproxy::log_writer::Guard {
    let (writer, guard) = exo_authproxy::log_writer::start(out);
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXO_AUTHPROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: logs written to a file, a pipe or journald stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config } => serve(&config, exo_authproxy::shutdown::os_signal()).await,
        Command::Sandbox {
            listen,
            mode,
            password,
        } => {
            let mode = match mode {
                exo_authproxy::cli::SandboxMode::Winrm => exo_authproxy::config::Mode::Winrm,
                exo_authproxy::cli::SandboxMode::Rest => exo_authproxy::config::Mode::Rest,
            };
            let options = exo_authproxy::sandbox::Options {
                listen,
                mode,
                password,
            };
            exo_authproxy::sandbox::run(
                options,
                &mut std::io::stdout(),
                exo_authproxy::shutdown::os_signal(),
            )
            .await
            .map_err(|e| Failure::Runtime(e.to_string()))
        }
        Command::Check {
            config: path,
            tenant,
            config_only,
        } => {
            let config = load_config(&path)?;
            exo_authproxy::config::permissions::warn_exposed(&config, &path);
            if config_only {
                // 0 or 64 only: what stops `serve` is a configuration problem to fix.
                return onboarding::check_config(
                    &config,
                    &ProcessEnvironment,
                    &mut std::io::stdout(),
                )
                .map(drop)
                .map_err(|e| match e {
                    onboarding::Error::Io(_) => Failure::Runtime(e.to_string()),
                    _ => Failure::Config(e.to_string()),
                });
            }
            let tenant = tenant.map(TenantName);
            let ready = onboarding::check(
                &config,
                &ProcessEnvironment,
                tenant.as_ref(),
                &mut std::io::stdout(),
            )
            .await
            .map_err(onboarding_failure)?;
            if ready {
                Ok(())
            } else {
                Err(Failure::NotReady(
                    "not every tenant is ready: see the fixes above".into(),
                ))
            }
        }
        Command::ConsentUrl { config, tenant } => {
            let config = load_config(&config)?;
            let text = onboarding::consent_url(&config, &TenantName(tenant))
                .map_err(onboarding_failure)?;
            print!("{text}");
            Ok(())
        }
        Command::Token {
            config,
            tenant,
            raw,
            audience,
        } => {
            let config = load_config(&config)?;
            onboarding::token_for(
                &config,
                &ProcessEnvironment,
                &TenantName(tenant),
                audience,
                raw,
                &mut std::io::stdout(),
            )
            .await
            .map_err(onboarding_failure)
        }
        Command::HashPassword => hash_password(),
        Command::Wait { admin, timeout } => exo_authproxy::admin::wait_started(admin, timeout)
            .await
            .map_err(|e| Failure::Runtime(e.to_string())),
        Command::Shutdown { admin } => {
            exo_authproxy::admin::request_shutdown(admin)
                .await
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            eprintln!("exo-authproxy: the proxy at {admin} is draining and will exit");
            Ok(())
        }
        Command::Report {
            audit,
            since,
            until,
            format,
            output,
        } => report(audit, since, until, format, output),
    }
}

fn report(
    files: Vec<std::path::PathBuf>,
    since: Option<String>,
    until: Option<String>,
    format: exo_authproxy::report::Format,
    output: Option<std::path::PathBuf>,
) -> Result<(), Failure> {
    use exo_authproxy::report;
    let usage = |e: report::ReportError| Failure::Usage(e.to_string());
    let options = report::Options {
        files,
        since: since
            .map(|v| report::parse_date("--since", &v))
            .transpose()
            .map_err(usage)?,
        until: until
            .map(|v| report::parse_date("--until", &v))
            .transpose()
            .map_err(usage)?,
        format,
    };
    let result = match output {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", path.display())))?;
            report::run(&options, &mut std::io::BufWriter::new(file))
        }
        None => report::run(&options, &mut std::io::stdout().lock()),
    };
    result.map_err(|e| Failure::Runtime(e.to_string()))
}

fn load_config(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load_with_env(path, &ProcessEnvironment).map_err(|e| Failure::Config(e.to_string()))
}

fn onboarding_failure(err: onboarding::Error) -> Failure {
    match err {
        onboarding::Error::Engine(_) | onboarding::Error::Token(_) => {
            Failure::Credential(err.to_string())
        }
        onboarding::Error::UnknownTenant { .. }
        | onboarding::Error::Upstream(_)
        | onboarding::Error::Serve(_) => Failure::Config(err.to_string()),
        onboarding::Error::Io(_) => Failure::Runtime(err.to_string()),
    }
}

async fn serve(
    path: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Failure> {
    let config = load_config(path)?;
    exo_authproxy::config::permissions::warn_exposed(&config, path);
    let tokens = Arc::new(
        exo_authproxy::token::TokenEngine::new(&config, &ProcessEnvironment)
            .map_err(|e| Failure::Credential(e.to_string()))?,
    );
    let services = Services::for_config(&config, tokens.clone())
        .map_err(|e| Failure::Config(e.to_string()))?;
    let prepared = Prepared::new(&config, services)
        .map_err(|e| match e {
            ServeError::Tls(_) => Failure::Certificate(e.to_string()),
            _ => Failure::Config(e.to_string()),
        })?
        .with_reload(exo_authproxy::reload::Source::new(
            path.to_owned(),
            config,
            Arc::new(ProcessEnvironment),
            tokens,
            exo_authproxy::reload::WATCH_INTERVAL,
        ));
    let address = prepared.listen_address();
    let proxy = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Failure::Bind { address, source })?;
    let admin = match prepared.admin_address() {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| Failure::Bind { address, source })?,
        ),
        None => None,
    };
    if let Some(tls) = prepared.tls() {
        if matches!(
            tls.source(),
            exo_authproxy::listener::tls::CertSource::SelfSigned { created: true, .. }
        ) {
            eprintln!(
                "exo-authproxy: generated a self-signed listener certificate. {}",
                tls.trust_hint()
            );
        }
    }
    exo_authproxy::serve(prepared, Listeners { proxy, admin }, shutdown)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))
}

/// Reads the password without echo when a person types it (rpassword: termios on Unix, the
/// console API on Windows; no `stty` needed), or all of stdin when it is piped.
fn hash_password() -> Result<(), Failure> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        rpassword::prompt_password("Password: ")
            .map_err(|e| Failure::Runtime(format!("reading the password from the terminal: {e}")))?
    } else {
        let mut all = String::new();
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut all)
            .map_err(|e| Failure::Runtime(format!("reading stdin: {e}")))?;
        all
    };
    let password = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password);
    if password.is_empty() {
        return Err(Failure::Runtime(
            "empty password: type one (or pipe it on stdin)".into(),
        ));
    }
    let phc = exo_authproxy::listener::basic_auth::hash_password(password)
        .map_err(|e| Failure::Runtime(format!("argon2: {e}")))?;
    println!("{phc}");
    Ok(())
}
