//! The command line (DESIGN.md §2), clap derive: one variant per subcommand.
//!
//! Parsing only: `main.rs` decides what each command does. Usage errors exit with 2 (clap's
//! own code), so scripts can tell "wrong invocation" from the 64+ configuration codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// `0.1.0 (abc1234)`: the crate version and the git commit it was built from (`build.rs`;
/// "unknown" when built outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("EXO_AUTHPROXY_GIT_COMMIT"),
    ")"
);

/// Modern authentication for unchanged Exchange Online Remote PowerShell scripts.
#[derive(Debug, Parser)]
#[command(name = "exo-authproxy", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Upstream mode for the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxMode {
    /// WS-Man passthrough to the simulated /PowerShell-LiveID.
    Winrm,
    /// The proxy is the remoting endpoint and calls the simulated REST admin API.
    Rest,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy; validates the whole config before binding; exit 0 on SIGTERM/SIGINT after draining.
    Serve {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Proxy + simulated Entra ID + simulated Exchange Online on loopback, with demo tenants and user.
    Sandbox {
        /// Where the proxy listens.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Upstream mode.
        #[arg(long, value_enum, default_value_t = SandboxMode::Winrm)]
        mode: SandboxMode,
        /// The demo user's password.
        #[arg(
            long,
            value_name = "PW",
            default_value = "sandbox",
            env = "EXO_AUTHPROXY_SANDBOX_PASSWORD",
            hide_env_values = true
        )]
        password: String,
    },
    /// Per tenant: get a token, inspect its claims, probe Exchange; exit 0 only when every tenant is ready.
    Check {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this tenant.
        #[arg(long, value_name = "NAME", conflicts_with = "config_only")]
        tenant: Option<String>,
        /// No network: load everything `serve` loads (config, users, listener certificate,
        /// every tenant's credential); exit 64 only when `serve` would refuse to start. A
        /// tenant with an unusable credential is listed but does not fail it (`ExecStartPre=`).
        #[arg(long)]
        config_only: bool,
    },
    /// Print the admin-consent URL for a tenant and the role-assignment step that must follow.
    ConsentUrl {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The tenant.
        #[arg(long, value_name = "NAME")]
        tenant: String,
    },
    /// Print the decoded claims of a tenant's token (the token itself only with --raw).
    Token {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The tenant.
        #[arg(long, value_name = "NAME")]
        tenant: String,
        /// Also print the token itself.
        #[arg(long)]
        raw: bool,
        /// Which service's token: `exchange` (/powershell-liveid/) or `compliance`
        /// (/compliance/powershell-liveid/, Security & Compliance).
        #[arg(long, value_name = "AUDIENCE", default_value = "exchange")]
        audience: crate::token::Audience,
    },
    /// Read a password (typed without echo on a terminal, or piped on stdin) and print its argon2id PHC string.
    HashPassword,
    /// Wait until the proxy at the admin address has started (`/healthz/startup` answers 200); exit 0 then, 1 at the timeout.
    Wait {
        /// The proxy's `[admin] address`.
        #[arg(long, value_name = "ADDR")]
        admin: SocketAddr,
        /// Give up after this long: `90s`, `2m`, `500ms` (a bare number is seconds).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Ask the proxy at the admin address to drain and exit 0, as SIGTERM does (POST /quitquitquit; loopback only).
    Shutdown {
        /// The proxy's `[admin] address`.
        #[arg(long, value_name = "ADDR")]
        admin: SocketAddr,
    },
    /// The migration report from audit files: per local user/script what ran, how often, and how it moves to ExchangeOnlineManagement v3.
    Report {
        /// Audit files (`[audit] file`; rotated and .gz files too).
        #[arg(long = "audit", value_name = "FILE", required = true, num_args = 1..)]
        audit: Vec<PathBuf>,
        /// Only events at or after this date (2026-12-01 or an RFC 3339 instant).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only events before this date.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::report::Format::Html)]
        format: crate::report::Format,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `90s`, `2m`, `1h`, `500ms`, or a bare number of seconds.
///
/// # Errors
/// A text with a valid example, for clap to print.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration; for example: 60s, 2m, 500ms");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(bad)
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_design_command_parses() {
        for args in [
            &["x", "serve", "--config", "f.toml"][..],
            &["x", "sandbox"],
            &[
                "x",
                "sandbox",
                "--listen",
                "127.0.0.1:9443",
                "--mode",
                "rest",
                "--password",
                "pw",
            ],
            &["x", "check", "--config", "f", "--tenant", "contoso"],
            &["x", "check", "--config", "f", "--config-only"],
            &["x", "consent-url", "--config", "f", "--tenant", "contoso"],
            &[
                "x", "token", "--config", "f", "--tenant", "contoso", "--raw",
            ],
            &["x", "hash-password", "--log-format", "json"],
            &["x", "wait", "--admin", "127.0.0.1:9090"],
            &["x", "wait", "--admin", "127.0.0.1:9090", "--timeout", "2m"],
            &["x", "shutdown", "--admin", "[::1]:9090"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let err = Cli::try_parse_from(["x", "serve"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from([
            "x",
            "check",
            "--config",
            "f",
            "--config-only",
            "--tenant",
            "contoso",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2, "--config-only checks every tenant");
    }

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 parsecs",
            "99999999999999999999h",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("for example"), "{bad}: {err}");
        }
        let err = Cli::try_parse_from(["x", "wait", "--admin", "127.0.0.1:1", "--timeout", "soon"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
