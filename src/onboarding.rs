//! The onboarding commands behind `check`, `token` and `consent-url` (DESIGN.md §2).
//!
//! Library functions writing to a `dyn Write`, so the CLI is a thin wrapper and tests assert on
//! the captured text. `check` forces a fresh token per tenant (claims are snapshotted at
//! issuance: a role assigned a minute ago must show) and prints one row per tenant plus the fix
//! for each problem. The claims only predict Exchange's answer (Exchange-side RBAC for
//! applications authorizes an app without showing in the token, so a missing directory role is
//! a warning), so for every tenant with a usable token `check` then asks Exchange itself, in
//! the configured mode and through the same code requests take (`forward::probe`: `winrm`
//! opens and deletes a shell on `/PowerShell-LiveID`, `rest` runs `Get-OrganizationConfig`
//! through the bridge): accepted → ok, refused → error with the text a script would see;
//! Exchange unreachable → the verdict stays, with why the probe failed.
//!
//! In `rest` mode the proxy also serves `/compliance/powershell-liveid/`, and Security &
//! Compliance judges an app differently (its own token audience, its own directory roles,
//! an unsettled application permission: scc-rest-adminapi.md §1, §8). So `check` asks S&C
//! too, the same way (a read-only S&C cmdlet through the S&C bridge, after the pre-flight
//! policy judged the S&C token by S&C's roles), and prints a `(compliance)` note with the
//! fix when S&C would refuse: the role fix, or the permission question with both possible
//! fixes. A note, not a failure: S&C is optional.
//!
//! `check --config-only` ([`check_config`]) is the offline half, for systemd's `ExecStartPre=`
//! and CI: it loads everything `serve` loads before binding (the config, users and their
//! hashes, the listener certificate, the audit file, every tenant's credential files and
//! variables), with the very functions `serve` uses, and asks no one on the network. It fails
//! only for what would stop `serve` itself. A tenant whose own credential is unusable is
//! listed with its fix but does not fail it: `serve` starts without that tenant's tokens and
//! answers its requests with the fault, so one bad tenant never stops the others.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Config, Environment, TenantName};
use crate::forward::probe::{Probe, Verdict};
use crate::forward::{Route, TenantRoute, UpstreamError};
use crate::token::claims::{self, Claims};
use crate::token::{Audience, Diagnosis, EngineError, TokenEngine, TokenError};

/// Why an onboarding command could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The tenant is not in the configuration.
    #[error("tenant {tenant} is not configured; [[tenant]] names are {known}")]
    UnknownTenant {
        /// What was asked for.
        tenant: TenantName,
        /// What exists.
        known: String,
    },
    /// No token for the tenant.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// `[exchange]` is unusable (endpoint, CA file).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// What would stop `serve` before it binds (users, listener certificate, audit file).
    #[error(transparent)]
    Serve(#[from] crate::ServeError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

fn known(config: &Config) -> String {
    config
        .tenants
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn require<'a>(
    config: &'a Config,
    tenant: &TenantName,
) -> Result<&'a crate::config::Tenant, Error> {
    config.tenant(tenant).ok_or_else(|| Error::UnknownTenant {
        tenant: tenant.clone(),
        known: known(config),
    })
}

/// One tenant's row in the `check` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStatus {
    /// The tenant.
    pub tenant: TenantName,
    /// "ok", "warning" or "error".
    pub verdict: &'static str,
    /// Roles in the token.
    pub roles: String,
    /// Supported directory roles in the token.
    pub directory_roles: String,
    /// Minutes until expiry.
    pub expires_in_min: Option<u64>,
    /// What to do, when something is wrong.
    pub fix: Option<String>,
}

/// `exo-authproxy check`: a table of tenants and the fix for each problem. Returns whether
/// every tenant is ready (warnings allowed), which decides the exit code.
///
/// # Errors
/// [`Error`] when the engine cannot start, `tenant` is unknown, or output fails.
pub async fn check(
    config: &Config,
    env: &dyn Environment,
    tenant: Option<&TenantName>,
    out: &mut dyn Write,
) -> Result<bool, Error> {
    let engine = Arc::new(TokenEngine::new(config, env)?);
    let names: Vec<TenantName> = match tenant {
        Some(t) => vec![require(config, t)?.name.clone()],
        None => config.tenants.iter().map(|t| t.name.clone()).collect(),
    };
    let probe = Probe::new(config, engine.clone())?;
    let mut rows = Vec::new();
    for name in &names {
        let mut row = status(&engine, name).await;
        if row.verdict != "error"
            && let Some(tenant) = config.tenant(name)
        {
            settle(&mut row, &probe, config, tenant).await;
        }
        rows.push(row);
    }
    writeln!(
        out,
        "{:<16} {:<8} {:<22} {:<34} {:>8}",
        "TENANT", "TOKEN", "ROLES", "DIRECTORY ROLE", "EXPIRES"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<16} {:<8} {:<22} {:<34} {:>8}",
            r.tenant.as_str(),
            r.verdict,
            if r.roles.is_empty() { "-" } else { &r.roles },
            if r.directory_roles.is_empty() {
                "none"
            } else {
                &r.directory_roles
            },
            r.expires_in_min.map_or("-".into(), |m| format!("{m} min")),
        )?;
    }
    let mut ready = true;
    for r in &rows {
        if let Some(fix) = &r.fix {
            writeln!(out, "\n{} ({}): {fix}", r.tenant, r.verdict)?;
        }
        ready &= r.verdict != "error";
    }
    // rest mode serves /compliance/powershell-liveid/ too: S&C takes its own token, other
    // directory roles and maybe another permission (scc-rest-adminapi.md §1, §8), so it is
    // asked itself. A note, not a failure: S&C is optional.
    if config.exchange.mode == crate::config::Mode::Rest {
        for r in rows.iter().filter(|r| r.verdict != "error") {
            if let Some(note) = compliance_note(&engine, &probe, config, &r.tenant).await {
                writeln!(out, "\n{} (compliance): {note}", r.tenant)?;
            }
        }
    }
    // Not a failure yet: the tenant works today, and the notice says until when.
    for name in &names {
        if let Some(target) = engine.target(name)
            && let Ok(crate::token::Credential::Certificate(cert)) = &target.credential
            && let Some(notice) =
                cert.expiry_notice(std::time::SystemTime::now(), crate::token::EXPIRY_WARNING)
        {
            writeln!(out, "\n{name} (note): {notice}")?;
        }
    }
    writeln!(
        out,
        "\n{}",
        if ready {
            "all tenants ready"
        } else {
            "not every tenant is ready"
        }
    )?;
    Ok(ready)
}

/// What `check --config-only` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigCheck {
    /// Tenants whose credential cannot be used (`serve` answers them with the fault).
    pub unusable: Vec<TenantName>,
}

/// `exo-authproxy check --config-only`: everything `serve` loads before binding, no network
/// (see the module docs). Prints a line per tenant (its credential, or the fix) and returns the
/// tenants that will be refused; `Ok` means `serve` starts.
///
/// The listener certificate is loaded as `serve` loads it, so a missing self-signed one is
/// generated into `state_dir` here (where `serve` would generate it a moment later).
///
/// # Errors
/// [`Error::Serve`] or [`Error::Engine`]: `serve` would refuse to start; [`Error::Io`].
pub fn check_config(
    config: &Config,
    env: &dyn Environment,
    out: &mut dyn Write,
) -> Result<ConfigCheck, Error> {
    let engine = Arc::new(TokenEngine::new(config, env)?);
    let services = crate::Services::for_config(config, engine.clone())?;
    let prepared = crate::Prepared::new(config, services)?;
    match prepared.tls().map(|t| t.source()) {
        Some(crate::listener::tls::CertSource::SelfSigned { created: true, .. }) => writeln!(
            out,
            "listener: generated a self-signed certificate. {}",
            prepared.tls().map(|t| t.trust_hint()).unwrap_or_default()
        )?,
        Some(_) => writeln!(out, "listener: certificate loaded")?,
        None => writeln!(out, "listener: plaintext (loopback only)")?,
    }
    writeln!(
        out,
        "users: {} with valid argon2id hashes; listen {}",
        config.users.len(),
        prepared.listen_address()
    )?;
    let now = SystemTime::now();
    let mut unusable = Vec::new();
    for t in &config.tenants {
        let target = engine.target(&t.name);
        let credential = target.as_ref().map(|x| &x.credential);
        match offline_credential(credential, now) {
            Ok(described) => {
                writeln!(out, "tenant {}: ok: {described}", t.name)?;
                if let Some(Ok(crate::token::Credential::Certificate(cert))) = credential
                    && let Some(notice) = cert.expiry_notice(now, crate::token::EXPIRY_WARNING)
                {
                    writeln!(out, "tenant {} (note): {notice}", t.name)?;
                }
            }
            Err(problem) => {
                writeln!(out, "tenant {}: error: {problem}", t.name)?;
                unusable.push(t.name.clone());
            }
        }
    }
    if unusable.is_empty() {
        writeln!(
            out,
            "\nconfiguration ok; `exo-authproxy check` asks Entra and Exchange per tenant"
        )?;
    } else {
        writeln!(
            out,
            "\nconfiguration ok, but {} tenant(s) cannot get tokens: serve starts and answers \
             their requests with token-unavailable, the other tenants are unaffected. Fix the \
             above, then `exo-authproxy check --tenant <name>` asks Entra and Exchange.",
            unusable.len()
        )?;
    }
    Ok(ConfigCheck { unusable })
}

/// A tenant's credential as far as it can be judged without the network: its description, or
/// what is wrong with it.
fn offline_credential(
    credential: Option<&Result<crate::token::Credential, crate::token::CredentialError>>,
    now: SystemTime,
) -> Result<String, String> {
    use crate::token::Credential;
    let credential = match credential {
        None => return Err("not known to the token engine".into()),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(c)) => c,
    };
    match credential {
        Credential::Certificate(c) => c.check_validity(now).map_err(|e| e.to_string())?,
        Credential::Federated(path) => match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 => {}
            Ok(_) => return Err(format!("federated token file {} is empty", path.display())),
            Err(e) => {
                return Err(format!(
                    "cannot read federated token file {}: {e} (Kubernetes: is the projected \
                     service-account token mounted there?)",
                    path.display()
                ));
            }
        },
        Credential::Secret { .. } => {}
    }
    Ok(credential.describe())
}

/// The route `check` probes `tenant` with, on `audience`'s endpoint.
fn probe_route(config: &Config, tenant: &crate::config::Tenant, audience: Audience) -> Route {
    Route {
        user: "check".into(),
        tenant: Arc::new(TenantRoute {
            name: tenant.name.clone(),
            tenant_id: tenant.tenant_id.clone(),
            organization: tenant.organization.clone(),
            app_id: config.client_id_for(tenant).to_owned(),
            require_directory_role: tenant.require_directory_role,
        }),
        audience,
    }
}

/// Turns the row's claims-based verdict into the one Exchange gave.
async fn settle(
    row: &mut TenantStatus,
    probe: &Probe,
    config: &Config,
    tenant: &crate::config::Tenant,
) {
    let route = probe_route(config, tenant, Audience::Exchange);
    match probe.run(&route).await {
        Verdict::Accepted if row.verdict == "warning" => {
            row.verdict = "ok";
            row.fix = Some(
                "no supported directory role in the token, but Exchange accepts the app \
                 (an Exchange role assignment, RBAC for applications, authorizes it)"
                    .into(),
            );
        }
        Verdict::Accepted => {}
        Verdict::Refused(text) => {
            row.verdict = "error";
            row.fix = Some(text);
        }
        Verdict::Inconclusive(why) => {
            let note = format!(
                "Exchange at {} could not be probed: {why}",
                config.exchange.endpoint
            );
            row.fix = Some(match row.fix.take() {
                Some(fix) => format!("{fix} ({note})"),
                None => note,
            });
        }
    }
}

/// What `/compliance/powershell-liveid/` meets for `tenant`, asked of Security & Compliance
/// itself: None when S&C accepts the app and its token shows an S&C role; otherwise the
/// text a script would see (the pre-flight refusal, S&C's role refusal or the permission
/// question), or why S&C could not be asked.
async fn compliance_note(
    engine: &TokenEngine,
    probe: &Probe,
    config: &Config,
    tenant: &TenantName,
) -> Option<String> {
    let t = config.tenant(tenant)?;
    let token = match engine.refresh_for(tenant, Audience::Compliance).await {
        Ok(t) => t,
        Err(e) => return Some(format!("no Security & Compliance token: {e}")),
    };
    let route = probe_route(config, t, Audience::Compliance);
    // The pre-flight policy, as a script's request meets it (roles judged for S&C).
    if let Err(refusal) = crate::forward::policy::check(&route, &token) {
        return Some(refusal.to_string());
    }
    let warning = match token.diagnosis {
        Diagnosis::Warning(w) => Some(w),
        _ => None,
    };
    match probe.run(&route).await {
        Verdict::Accepted => warning.map(|_| {
            "no directory role Security & Compliance accepts in the token, but S&C accepts the \
             app (an S&C role group assignment, New-ServicePrincipal + Add-RoleGroupMember, \
             authorizes it)"
                .to_owned()
        }),
        Verdict::Refused(text) => Some(text),
        Verdict::Inconclusive(why) => {
            let note = format!(
                "Security & Compliance at {} could not be probed: {why}",
                config.compliance_endpoint()
            );
            Some(match warning {
                Some(w) => format!("{w} ({note})"),
                None => note,
            })
        }
    }
}

/// The status of one tenant, with a forced token refresh.
pub async fn status(engine: &TokenEngine, tenant: &TenantName) -> TenantStatus {
    let mut row = TenantStatus {
        tenant: tenant.clone(),
        verdict: "error",
        roles: String::new(),
        directory_roles: String::new(),
        expires_in_min: None,
        fix: None,
    };
    match engine.refresh(tenant).await {
        Err(e) => row.fix = Some(e.to_string()),
        Ok(token) => {
            if let Ok(c) = Claims::decode(token.token.expose()) {
                row.roles = c.roles.join(",");
                row.directory_roles = c.directory_roles().join(",");
            }
            row.expires_in_min = token
                .expires_at
                .duration_since(SystemTime::now())
                .ok()
                .map(|d| d.as_secs() / 60);
            match token.diagnosis {
                Diagnosis::Ready => row.verdict = "ok",
                Diagnosis::Warning(w) => {
                    row.verdict = "warning";
                    row.fix = Some(w);
                }
                Diagnosis::Unusable(u) => row.fix = Some(u),
            }
        }
    }
    row
}

/// `exo-authproxy token`: the decoded claims of `tenant`'s token (a fresh one), as JSON, and
/// the token itself only when `raw`.
///
/// # Errors
/// [`Error`] as for [`check`], and [`Error::Token`] when no token can be had.
pub async fn token(
    config: &Config,
    env: &dyn Environment,
    tenant: &TenantName,
    raw: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    token_for(config, env, tenant, Audience::Exchange, raw, out).await
}

/// `token --audience exchange|compliance`: as [`token`], for `audience`'s resource (the
/// Security & Compliance token is the one `/compliance/powershell-liveid/` uses).
///
/// # Errors
/// As for [`token`].
pub async fn token_for(
    config: &Config,
    env: &dyn Environment,
    tenant: &TenantName,
    audience: Audience,
    raw: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    require(config, tenant)?;
    let engine = TokenEngine::new(config, env)?;
    let token = engine.refresh_for(tenant, audience).await?;
    if raw {
        writeln!(out, "{}", token.token.expose())?;
        return Ok(());
    }
    let claims = Claims::decode(token.token.expose());
    let diagnosis = match &token.diagnosis {
        Diagnosis::Ready => serde_json::json!({"verdict": "ready"}),
        Diagnosis::Warning(w) => serde_json::json!({"verdict": "warning", "fix": w}),
        Diagnosis::Unusable(u) => serde_json::json!({"verdict": "unusable", "fix": u}),
    };
    let expires = token
        .expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let doc = match claims {
        Ok(c) => serde_json::json!({
            "tenant": tenant.as_str(),
            "audience": audience.as_str(),
            "claims": c,
            "directory_roles": c.directory_roles(),
            "expires_at": expires,
            "diagnosis": diagnosis,
        }),
        Err(why) => serde_json::json!({
            "tenant": tenant.as_str(),
            "audience": audience.as_str(),
            "claims": null,
            "decode_error": why,
            "expires_at": expires,
            "diagnosis": diagnosis,
        }),
    };
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )?;
    Ok(())
}

/// `exo-authproxy consent-url`: the admin-consent URL for `tenant` and the role step after it.
///
/// # Errors
/// [`Error::UnknownTenant`].
pub fn consent_url(config: &Config, tenant: &TenantName) -> Result<String, Error> {
    let t = require(config, tenant)?;
    let client_id = config.client_id_for(t);
    let url = claims::consent_url(&config.entra.authority, t.tenant_id.as_str(), client_id);
    Ok(format!(
        "1. An administrator of {org} ({tenant}) opens, signs in and accepts:\n   {url}\n\
         2. Then assign a directory role to the app's service principal in {org}: Entra admin \
         center → Roles and administrators → Exchange Administrator → Add assignments → app \
         {client_id} (or use Exchange RBAC for applications: New-ServicePrincipal, \
         Add-RoleGroupMember).\n\
         3. Verify with: exo-authproxy check --config <file> --tenant {tenant}\n",
        org = t.organization,
    ))
}
