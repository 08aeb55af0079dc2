//! Checking the parsed values: no I/O, and every error names the key and a valid example.

use std::collections::HashSet;

use super::load::{Checker, Seg};
use super::{CertStoreName, Config, Credentials, Error, normalize_thumbprint};

impl Config {
    pub(super) fn validate(&self, check: &Checker<'_>) -> Result<(), Error> {
        use Seg::{Idx, Key};
        // [listen]
        let l = &self.listen;
        if l.plaintext && !l.address.ip().is_loopback() {
            return Err(check.invalid(
                &[Key("listen"), Key("plaintext")],
                "listen.plaintext",
                format!(
                    "plaintext is refused on the non-loopback address {}: Basic passwords would \
                     cross the network in clear",
                    l.address
                ),
                "address = \"127.0.0.1:8443\" with plaintext = true, or remove plaintext",
            ));
        }
        if l.certificate.is_some() != l.private_key.is_some() {
            let key = if l.certificate.is_some() {
                "certificate"
            } else {
                "private_key"
            };
            return Err(check.invalid(
                &[Key("listen"), Key(key)],
                &format!("listen.{key}"),
                "certificate and private_key go together".into(),
                "certificate = \"listener.pem\" and private_key = \"listener-key.pem\"",
            ));
        }
        if l.plaintext && l.certificate.is_some() {
            return Err(check.invalid(
                &[Key("listen"), Key("plaintext")],
                "listen.plaintext",
                "plaintext = true contradicts a configured certificate".into(),
                "remove plaintext, or remove certificate and private_key",
            ));
        }
        // [admin]
        if let Some(admin) = &self.admin {
            let clash = admin.address.port() == l.address.port()
                && admin.address.port() != 0
                && (admin.address.ip() == l.address.ip()
                    || admin.address.ip().is_unspecified()
                    || l.address.ip().is_unspecified());
            if clash {
                return Err(check.invalid(
                    &[Key("admin"), Key("address")],
                    "admin.address",
                    format!(
                        "{} is the proxy's own [listen] address: health and metrics need a port of their own",
                        admin.address
                    ),
                    "address = \"127.0.0.1:9090\"",
                ));
            }
        }
        // [entra]
        check_url(
            check,
            &[Key("entra"), Key("authority")],
            "entra.authority",
            &self.entra.authority,
            "authority = \"https://login.microsoftonline.com\"",
        )?;
        check_guid(
            check,
            &[Key("entra"), Key("client_id")],
            "entra.client_id",
            &self.entra.client_id,
            "the app registration's Application (client) ID",
        )?;
        check_credentials(
            check,
            &[Key("entra")],
            "entra",
            &self.entra.credentials(),
            true,
        )?;
        // [exchange]
        check_url(
            check,
            &[Key("exchange"), Key("endpoint")],
            "exchange.endpoint",
            &self.exchange.endpoint,
            "endpoint = \"https://outlook.office365.com\"",
        )?;
        // [compliance]
        if let Some(endpoint) = &self.compliance.endpoint {
            check_url(
                check,
                &[Key("compliance"), Key("endpoint")],
                "compliance.endpoint",
                endpoint,
                "endpoint = \"https://ps.compliance.protection.outlook.com\"",
            )?;
        }
        // [[tenant]]
        if self.tenants.is_empty() {
            return Err(check.invalid(
                &[],
                "tenant",
                "no [[tenant]] is configured: there is nothing to proxy to".into(),
                "[[tenant]] name = \"contoso\" tenant_id = \"0f9c3b1e-1111-2222-3333-444455556666\" \
                 organization = \"contoso.onmicrosoft.com\"",
            ));
        }
        let mut names = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let at = |k: &'static str| [Key("tenant"), Idx(i), Key(k)];
            let name = t.name.as_str();
            if !valid_name(name) {
                return Err(check.invalid(
                    &at("name"),
                    &format!("tenant[{i}].name"),
                    format!("{name:?} is not a usable name (letters, digits, '-', '_', '.')"),
                    "name = \"contoso\"",
                ));
            }
            if !names.insert(name) {
                return Err(check.invalid(
                    &at("name"),
                    &format!("tenant[{i}].name"),
                    format!("tenant {name:?} is configured twice"),
                    "a distinct name per [[tenant]], e.g. name = \"fabrikam\"",
                ));
            }
            check_guid(
                check,
                &at("tenant_id"),
                &format!("tenant {name}: tenant_id"),
                t.tenant_id.as_str(),
                "the tenant's Directory (tenant) ID",
            )?;
            let org = t.organization.as_str();
            if !org.contains('.') || !org.split('.').all(valid_label) {
                return Err(check.invalid(
                    &at("organization"),
                    &format!("tenant {name}: organization"),
                    format!("{org:?} is not a domain name"),
                    "organization = \"contoso.onmicrosoft.com\"",
                ));
            }
            if let Some(id) = &t.client_id {
                check_guid(
                    check,
                    &at("client_id"),
                    &format!("tenant {name}: client_id"),
                    id,
                    "the app registration's Application (client) ID",
                )?;
            }
            let own = t.credentials();
            if !own.is_empty() {
                check_credentials(
                    check,
                    &[Key("tenant"), Idx(i)],
                    &format!("tenant {name}"),
                    &own,
                    false,
                )?;
            }
        }
        // [[user]]
        let known: Vec<&str> = self.tenants.iter().map(|t| t.name.as_str()).collect();
        let mut users = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = |k: &'static str| [Key("user"), Idx(i), Key(k)];
            if u.name.is_empty() || u.name.contains(':') {
                return Err(check.invalid(
                    &at("name"),
                    &format!("user[{i}].name"),
                    format!(
                        "{:?} cannot be a Basic-auth user name (empty or contains ':')",
                        u.name
                    ),
                    "name = \"reporting\"",
                ));
            }
            if !users.insert(u.name.to_lowercase()) {
                return Err(check.invalid(
                    &at("name"),
                    &format!("user[{i}].name"),
                    format!(
                        "user {:?} is configured twice (names are case-insensitive)",
                        u.name
                    ),
                    "a distinct name per [[user]]",
                ));
            }
            if let Err(problem) = check_phc(&u.password_hash) {
                return Err(check.invalid(
                    &at("password_hash"),
                    &format!("user {}: password_hash", u.name),
                    problem,
                    "the output of `exo-authproxy hash-password`, e.g. \
                     \"$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>\"",
                ));
            }
            if u.tenants.is_empty() {
                return Err(check.invalid(
                    &at("tenants"),
                    &format!("user {}: tenants", u.name),
                    "the list is empty: the user could not reach any tenant".into(),
                    &format!("tenants = [\"{}\"]", known[0]),
                ));
            }
            for (j, tn) in u.tenants.iter().enumerate() {
                if !known.contains(&tn.as_str()) {
                    return Err(check.invalid(
                        &[Key("user"), Idx(i), Key("tenants"), Idx(j)],
                        &format!("user {}: tenants", u.name),
                        format!(
                            "unknown tenant {:?}; [[tenant]] names are {}",
                            tn.as_str(),
                            known.join(", ")
                        ),
                        &format!("tenants = [\"{}\"]", known[0]),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_credentials(
    check: &Checker<'_>,
    at: &[Seg<'_>],
    what: &str,
    c: &Credentials,
    is_default: bool,
) -> Result<(), Error> {
    let key = |k: &'static str| {
        let mut v = at.to_vec();
        v.push(Seg::Key(k));
        v
    };
    // `[entra]`'s keys by their dotted names, as for every other table (and as the
    // `EXO_AUTHPROXY_ENTRA_*` variables are matched); a tenant's after its name.
    let name = |k: &str| {
        if is_default {
            format!("{what}.{k}")
        } else {
            format!("{what}: {k}")
        }
    };
    let kinds = [
        ("certificate", c.certificate.is_some()),
        ("pfx", c.pfx.is_some()),
        ("certificate_thumbprint", c.certificate_thumbprint.is_some()),
        ("client_secret_env", c.client_secret_env.is_some()),
        ("client_secret_file", c.client_secret_file.is_some()),
        ("federated_token_file", c.federated_token_file.is_some()),
    ];
    let set: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
    let example = "certificate = \"app.pem\" and private_key = \"app-key.pem\"; or pfx = \"app.pfx\" \
                   with pfx_password_env = \"EXO_AUTHPROXY_PFX_PASSWORD\" (or pfx_password_file); \
                   or (Windows) certificate_thumbprint = \"<40 hex digits>\" with store = \"LocalMachine\\\\My\"; \
                   or client_secret_env = \"EXO_AUTHPROXY_CLIENT_SECRET\" (or client_secret_file = \
                   \"/run/credentials/exo-authproxy.service/client-secret\"); or federated_token_file = \
                   \"/var/run/secrets/azure/tokens/azure-identity-token\"";
    if set.len() > 1 {
        return Err(check.invalid(
            &key(set[1]),
            &name(set[1]),
            format!(
                "more than one credential kind is configured ({}); choose one",
                set.join(", ")
            ),
            example,
        ));
    }
    if c.private_key.is_some() && c.certificate.is_none() {
        return Err(check.invalid(
            &key("private_key"),
            &name("private_key"),
            "private_key needs the certificate it belongs to".into(),
            "certificate = \"app.pem\" next to private_key = \"app-key.pem\"",
        ));
    }
    for (k, set) in [
        ("pfx_password_env", c.pfx_password_env.is_some()),
        ("pfx_password_file", c.pfx_password_file.is_some()),
    ] {
        if set && c.pfx.is_none() {
            return Err(check.invalid(
                &key(k),
                &name(k),
                format!("{k} is only used with pfx"),
                "pfx = \"app.pfx\" next to pfx_password_env = \"EXO_AUTHPROXY_PFX_PASSWORD\"",
            ));
        }
    }
    if c.pfx_password_env.is_some() && c.pfx_password_file.is_some() {
        return Err(check.invalid(
            &key("pfx_password_file"),
            &name("pfx_password_file"),
            "the PFX password comes from pfx_password_env or pfx_password_file, not both; choose one"
                .into(),
            "pfx_password_file = \"/run/credentials/exo-authproxy.service/pfx-password\"",
        ));
    }
    check_store_credential(check, &key, &name, c)?;
    for (k, v) in [
        ("pfx_password_env", &c.pfx_password_env),
        ("client_secret_env", &c.client_secret_env),
    ] {
        if let Some(variable) = v
            && (variable.is_empty() || variable.contains('=') || variable.contains('\0'))
        {
            return Err(check.invalid(
                &key(k),
                &name(k),
                format!("{variable:?} is not an environment variable name"),
                "client_secret_env = \"EXO_AUTHPROXY_CLIENT_SECRET\" (the name, not the secret)",
            ));
        }
    }
    if set.is_empty() && is_default {
        return Err(check.invalid(
            at,
            what,
            "no credential is configured for the app".into(),
            example,
        ));
    }
    Ok(())
}

fn check_url(
    check: &Checker<'_>,
    at: &[Seg<'_>],
    key: &str,
    value: &str,
    example: &str,
) -> Result<(), Error> {
    let problem = match url::Url::parse(value) {
        Err(e) => Some(format!("{value:?} is not a URL ({e})")),
        Ok(u) if u.scheme() != "https" => Some(format!(
            "{value:?} is not https: tokens and Basic credentials must not cross the network in clear"
        )),
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            Some(format!("{value:?} must not have a query or fragment"))
        }
        Ok(u) if u.path() != "/" => Some(format!(
            "{value:?} must be the scheme and host only (path {:?} is added by the proxy)",
            u.path()
        )),
        Ok(_) => None,
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(check.invalid(at, key, p, example)),
    }
}

fn check_guid(
    check: &Checker<'_>,
    at: &[Seg<'_>],
    key: &str,
    value: &str,
    what: &str,
) -> Result<(), Error> {
    if uuid::Uuid::try_parse(value).is_ok() && value.len() == 36 {
        return Ok(());
    }
    Err(check.invalid(
        at,
        key,
        format!("{value:?} is not a GUID"),
        &format!("\"0f9c3b1e-1111-2222-3333-444455556666\" ({what}, from the Entra admin center)"),
    ))
}

fn check_phc(phc: &str) -> Result<(), String> {
    let hash = argon2::PasswordHash::new(phc)
        .map_err(|e| format!("not a PHC string ({e}); never put the password itself here"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "algorithm {} is not argon2id",
            hash.algorithm.as_str()
        ));
    }
    argon2::Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    if hash.hash.is_none() {
        return Err("the PHC string has no hash part".into());
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Whether a URL host is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `certificate_thumbprint` and `store`: well-formed, and only where there is a Windows
/// certificate store to look in.
fn check_store_credential<'a>(
    check: &Checker<'_>,
    key: &dyn Fn(&'static str) -> Vec<Seg<'a>>,
    name: &dyn Fn(&str) -> String,
    c: &Credentials,
) -> Result<(), Error> {
    if let Some(store) = &c.store {
        if c.certificate_thumbprint.is_none() {
            return Err(check.invalid(
                &key("store"),
                &name("store"),
                "store is only used with certificate_thumbprint".into(),
                "certificate_thumbprint = \"<40 hex digits>\" next to store = \"LocalMachine\\\\My\"",
            ));
        }
        if CertStoreName::parse(store).is_none() {
            return Err(check.invalid(
                &key("store"),
                &name("store"),
                format!(
                    "{store:?} is not a Windows certificate store; write it as \
                     <LocalMachine|CurrentUser>\\<store name>"
                ),
                "store = \"LocalMachine\\\\My\" (or \"CurrentUser\\\\My\")",
            ));
        }
    }
    let Some(thumbprint) = &c.certificate_thumbprint else {
        return Ok(());
    };
    if normalize_thumbprint(thumbprint).is_none() {
        return Err(check.invalid(
            &key("certificate_thumbprint"),
            &name("certificate_thumbprint"),
            format!(
                "{thumbprint:?} is not a SHA-1 thumbprint (40 hex digits; spaces and colons \
                 between them are fine)"
            ),
            "certificate_thumbprint = \"3F2A9C...\" as `Get-ChildItem Cert:\\LocalMachine\\My` \
             or the app registration's Certificates tab shows it",
        ));
    }
    if !cfg!(windows) {
        return Err(check.invalid(
            &key("certificate_thumbprint"),
            &name("certificate_thumbprint"),
            "certificate_thumbprint reads the Windows certificate store and works only on \
             Windows; on this system give the certificate as a file: export it with its private \
             key (Export-PfxCertificate) and configure pfx, or convert it to PEM and configure \
             certificate and private_key"
                .into(),
            "pfx = \"app.pfx\" with pfx_password_env = \"EXO_AUTHPROXY_PFX_PASSWORD\"; or \
             certificate = \"app.pem\" and private_key = \"app-key.pem\"",
        ));
    }
    Ok(())
}
