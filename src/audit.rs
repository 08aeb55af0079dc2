//! The audit trail: who did what through the proxy, as structured events on one tracing
//! target, [`TARGET`].
//!
//! Why a tracing target rather than a file of its own: one pipeline for everything the
//! process writes (`--log-format json` makes each event a JSON object with these fields; a
//! collector or `EXO_AUTHPROXY_LOG=exo_authproxy::audit=info` keeps the audit lines apart),
//! and no second set of rotation, permissions and shutdown rules to get wrong. The events
//! and their fields are defined only here, so the schema (README "Audit log") stays one.
//!
//! What is recorded, and what never is:
//! - `login-failed`: the user name as sent (escaped, at most 64 characters) and the client
//!   address. Never the password.
//! - `login-throttled`: an attempt refused by the login throttle without checking the
//!   password: user name as sent (bounded like above), client address, `refused` (how many
//!   attempts of that address and user were refused so far in this streak) and
//!   `retry_after_s`. Logged at the 1st, 2nd, 4th, 8th … refusal of a streak, so a flood of
//!   refused requests adds a few lines, not one per request.
//! - `session-opened` / `session-closed`: a remote PowerShell session created or removed
//!   through the proxy (both modes): local user, tenant, client, mode.
//! - `command` (rest mode, where the proxy runs the cmdlets): local user, tenant, cmdlet,
//!   the *names* of its parameters, result (`ok`, `error`, `failed`, `stopped`) and the
//!   number of objects returned. Parameter values are not recorded: they hold passwords
//!   (`New-Mailbox -Password`) and personal data.

pub mod file;

use std::net::IpAddr;
use std::time::Duration;

use crate::config::TenantName;

/// The tracing target of every audit event.
pub const TARGET: &str = "exo_authproxy::audit";

/// A client-supplied name, bounded: it goes into logs.
fn bounded(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Local credentials were refused.
pub fn login_failed(user: &str, client: IpAddr) {
    tracing::info!(target: TARGET, event = "login-failed", user = ?bounded(user), %client, "local authentication failed");
}

/// A login was refused by the throttle without checking the password; `refused` counts the
/// refusals of this streak (the caller logs only some of them).
pub fn login_throttled(user: &str, client: IpAddr, refused: u64, retry_after: Duration) {
    tracing::info!(
        target: TARGET,
        event = "login-throttled",
        user = ?bounded(user),
        %client,
        refused,
        retry_after_s = retry_after.as_secs(),
        "too many failed logins: refused without checking the password"
    );
}

/// A remote PowerShell session was created (`opened = true`) or removed through the proxy.
pub fn session(opened: bool, user: &str, tenant: &TenantName, client: IpAddr, mode: &'static str) {
    let event = if opened {
        "session-opened"
    } else {
        "session-closed"
    };
    tracing::info!(target: TARGET, event, user, tenant = %tenant, %client, mode, "{event}");
}

/// A cmdlet ran through the REST admin API.
pub fn command(
    user: &str,
    tenant: &TenantName,
    cmdlet: &str,
    parameters: &[String],
    result: &'static str,
    objects: u64,
) {
    tracing::info!(
        target: TARGET,
        event = "command",
        user,
        tenant = %tenant,
        cmdlet,
        parameters = %parameters.join(","),
        result,
        objects,
        "{cmdlet}"
    );
}

/// The remoting endpoint closed a user's idle session to make room for a new one (the shell
/// quota was reached): a `session-closed` event with `reason = "reclaimed"`. There is no
/// client address: no request of that session caused it.
pub fn session_reclaimed(user: &str, tenant: &str, shell: &str, idle: std::time::Duration) {
    tracing::info!(target: TARGET, event = "session-closed", user, tenant, shell, reason = "reclaimed", idle_secs = idle.as_secs(), "session-closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_bounded() {
        assert_eq!(bounded("reporting"), "reporting");
        let long = "é".repeat(100);
        assert_eq!(bounded(&long).chars().count(), 64);
    }
}
