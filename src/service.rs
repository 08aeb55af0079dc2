//! `exo-authproxy serve` under the Windows service control manager (SCM).
//!
//! The same command line, so scripts, docs and the config stay one: install with
//!
//! ```text
//! sc.exe create exo-authproxy start= delayed-auto binPath= "\"C:\Program Files\exo-authproxy\exo-authproxy.exe\" serve --config \"C:\ProgramData\exo-authproxy\exo-authproxy.toml\""
//! ```
//!
//! (`deploy/windows-service.ps1` does this). When the SCM started the process, `serve`
//! connects to it, reports Running, and turns Stop / Shutdown / Preshutdown into the same
//! drain SIGTERM starts on Linux, reporting StopPending with the grace period as its wait
//! hint. A failed start is reported as a service-specific exit code equal to the console exit
//! code (README "Exit codes"), so `sc.exe query` shows e.g. 64 for a configuration error.
//! Started from a console instead, the dispatcher refuses at once
//! (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) and `serve` runs as usual.
//!
//! A service has no console: logs go to `%ProgramData%\exo-authproxy\exo-authproxy.log`
//! (appended; JSON with `--log-format json`).
//!
//! Windows-only and type-checked on Linux with `cargo check --target x86_64-pc-windows-gnu`;
//! there is no Windows machine in CI, so the SCM round trip itself is not exercised by tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use exo_authproxy::cli::LogFormat;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::{define_windows_service, service_dispatcher};

/// The service name `sc.exe create` registers.
pub const NAME: &str = "exo-authproxy";

/// `StartServiceCtrlDispatcher` from a console process.
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

/// What the service runs: set before the dispatcher starts, read by `service_main` (the SCM
/// calls it on its own thread with no way to pass Rust values).
struct Job {
    config: PathBuf,
    log_format: LogFormat,
}

static JOB: OnceLock<Job> = OnceLock::new();
static EXIT: AtomicU8 = AtomicU8::new(0);

define_windows_service!(ffi_service_main, service_main);

/// Runs `serve --config <config>` as the service when the SCM started this process and
/// returns its exit code; `None` when the process runs in a console (the caller serves).
pub fn run_if_started_by_scm(config: &Path, log_format: LogFormat) -> Option<u8> {
    let _ = JOB.set(Job {
        config: config.to_path_buf(),
        log_format,
    });
    match service_dispatcher::start(NAME, ffi_service_main) {
        Ok(()) => Some(EXIT.load(Ordering::SeqCst)),
        Err(windows_service::Error::Winapi(e))
            if e.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            None
        }
        Err(e) => {
            eprintln!("exo-authproxy: cannot talk to the Windows service control manager: {e}");
            Some(1)
        }
    }
}

fn log_writer() -> Box<dyn std::io::Write + Send> {
    let dir = std::env::var_os("ProgramData")
        .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from)
        .join("exo-authproxy");
    let file = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("exo-authproxy.log"))
    });
    match file {
        Ok(f) => Box::new(f),
        // Nowhere to write: the SCM's exit code is then the only report.
        Err(_) => Box::new(std::io::sink()),
    }
}

fn report(status: ServiceStatusHandle, state: ServiceState, exit: u8, wait_hint: Duration) {
    let controls_accepted = if state == ServiceState::Running {
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
    } else {
        ServiceControlAccept::empty()
    };
    let exit_code = match exit {
        0 => ServiceExitCode::Win32(0),
        n => ServiceExitCode::ServiceSpecific(u32::from(n)),
    };
    if let Err(e) = status.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }) {
        tracing::warn!(error = %e, ?state, "cannot report the service state to the SCM");
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some(job) = JOB.get() else {
        EXIT.store(1, Ordering::SeqCst);
        return;
    };
    let _logs = super::init_tracing(job.log_format, log_writer(), false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            if let Some(tx) = stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(NAME, handler) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot register with the service control manager");
            EXIT.store(1, Ordering::SeqCst);
            return;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            report(status, ServiceState::Stopped, 1, Duration::ZERO);
            EXIT.store(1, Ordering::SeqCst);
            return;
        }
    };
    report(status, ServiceState::Running, 0, Duration::ZERO);
    let shutdown = async move {
        let _ = stopped.await;
        tracing::info!("service stop requested: draining");
        // The drain's grace period, plus a margin for closing.
        report(
            status,
            ServiceState::StopPending,
            0,
            exo_authproxy::shutdown::DEFAULT_GRACE + Duration::from_secs(5),
        );
    };
    let code = match runtime.block_on(super::serve(&job.config, shutdown)) {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!(error = %err, "exo-authproxy service stopped");
            err.exit_code()
        }
    };
    EXIT.store(code, Ordering::SeqCst);
    report(status, ServiceState::Stopped, code, Duration::ZERO);
}
