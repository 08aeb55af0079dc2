//! Typed configuration (DESIGN.md §3): TOML → typed structs → `validate()`.
//!
//! Every struct denies unknown keys, so a typo fails at load instead of being silently ignored.
//! That is also why the credential keys are spelled out in both `[entra]` and `[[tenant]]`
//! rather than flattened from one struct: serde's `flatten` disables `deny_unknown_fields`.
//! [`Entra::credentials`] and [`Tenant::credentials`] give them back as one [`Credentials`].
//!
//! Loading has two stages (STYLE.md §2.8). [`Config::parse`] deserializes and validates with no
//! I/O beyond what it is handed: every error names `file:line:col`, the key, what is wrong and a
//! valid example. Positions come from a second, span-preserving parse of the same text
//! ([`toml::de::DeTable`]), so the public structs stay plain values. Reading certificates and
//! environment variables is the second stage and belongs to the token engine
//! ([`crate::token::TokenEngine::new`]), which takes the environment as a parameter
//! ([`Environment`]) so tests never touch the process environment.
//!
//! Relative paths are resolved against the directory of the configuration file at parse time,
//! so the rest of the program only ever sees absolute (or cwd-relative, for a relative config
//! path) paths and does not need to know where the file was.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Our local label for a tenant ("contoso"): config, logs, metrics, `[[user]].tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct TenantName(pub String);

/// Entra's directory id (a GUID): part of the token URL and of the REST admin API URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

/// The tenant's organization domain ("contoso.onmicrosoft.com"): DelegatedOrg and the RPS URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub struct Organization(pub String);

macro_rules! display_newtype {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $t {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    )*};
}
display_newtype!(TenantName, TenantId, Organization);

impl From<&str> for TenantName {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the generated listener certificate and other state live.
    pub state_dir: PathBuf,
    /// The client-facing listener.
    pub listen: Listen,
    /// Defaults for every tenant's Entra credentials.
    pub entra: Entra,
    /// The upstream.
    pub exchange: Exchange,
    /// Optional health and metrics listener.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// `[[tenant]]` tables.
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<Tenant>,
    /// `[[user]]` tables.
    #[serde(rename = "user", default)]
    pub users: Vec<User>,
}

/// `[listen]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Loopback by default: a proxy that turns passwords into admin tokens should not be
    /// reachable from the network unless someone decided so.
    pub address: SocketAddr,
    /// PEM chain replacing the self-signed certificate.
    pub certificate: Option<PathBuf>,
    /// Its private key.
    pub private_key: Option<PathBuf>,
    /// No TLS; refused on non-loopback addresses (Basic credentials would cross the network
    /// in clear).
    #[serde(default)]
    pub plaintext: bool,
}

/// App credentials; `[entra]` holds the defaults and `[[tenant]]` may override them.
///
/// Exactly one kind is configured: `certificate` (+ `private_key` unless the certificate file
/// holds the key too), `pfx` (+ `pfx_password_env`), `client_secret_env`, or
/// `federated_token_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Certificate PEM (may also hold the key).
    pub certificate: Option<PathBuf>,
    /// Private key PEM.
    pub private_key: Option<PathBuf>,
    /// PKCS#12 file.
    pub pfx: Option<PathBuf>,
    /// Environment variable holding the PFX password.
    pub pfx_password_env: Option<String>,
    /// Environment variable holding a client secret.
    pub client_secret_env: Option<String>,
    /// File holding a federated JWT (re-read on each use).
    pub federated_token_file: Option<PathBuf>,
}

impl Credentials {
    /// Whether any credential key is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `[entra]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entra {
    /// `https://login.microsoftonline.com` unless a sovereign cloud or a test overrides it.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The app registration's client id.
    pub client_id: String,
    /// Certificate PEM (may also hold the key).
    pub certificate: Option<PathBuf>,
    /// Private key PEM.
    pub private_key: Option<PathBuf>,
    /// PKCS#12 file.
    pub pfx: Option<PathBuf>,
    /// Environment variable holding the PFX password.
    pub pfx_password_env: Option<String>,
    /// Environment variable holding a client secret.
    pub client_secret_env: Option<String>,
    /// File holding a federated JWT (re-read on each use).
    pub federated_token_file: Option<PathBuf>,
    /// Extra trust roots for the authority.
    pub ca_file: Option<PathBuf>,
}

impl Entra {
    /// The default credentials as one value.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
            pfx: self.pfx.clone(),
            pfx_password_env: self.pfx_password_env.clone(),
            client_secret_env: self.client_secret_env.clone(),
            federated_token_file: self.federated_token_file.clone(),
        }
    }
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

/// `[exchange] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// WS-Man passthrough to `/PowerShell-LiveID`.
    #[default]
    Winrm,
    /// The proxy is the remoting endpoint and calls the REST admin API.
    Rest,
}

/// `[exchange]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// winrm or rest.
    #[serde(default)]
    pub mode: Mode,
    /// `https://outlook.office365.com` unless overridden.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Extra trust roots for the endpoint.
    pub ca_file: Option<PathBuf>,
}

impl Exchange {
    /// The resource the tokens are for, which is also their expected `aud`.
    ///
    /// The scope follows the Exchange host of the cloud (`outlook.office365.us`,
    /// `partner.outlook.cn`, …; entra-client-credentials.md §8). A loopback endpoint is the
    /// sandbox or a test, which simulates worldwide Exchange Online.
    pub fn resource(&self) -> String {
        match url::Url::parse(&self.endpoint) {
            Ok(url) if url.host_str().is_some_and(|h| !is_loopback_host(h)) => {
                format!("https://{}", url.host_str().unwrap_or_default())
            }
            _ => "https://outlook.office365.com".into(),
        }
    }
}

fn default_endpoint() -> String {
    "https://outlook.office365.com".into()
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Loopback by default.
    pub address: SocketAddr,
}

/// `[[tenant]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Local name.
    pub name: TenantName,
    /// Directory id.
    pub tenant_id: TenantId,
    /// Organization domain.
    pub organization: Organization,
    /// Refuse up front when the token has no supported directory role.
    #[serde(default)]
    pub require_directory_role: bool,
    /// Overrides `[entra] client_id`.
    pub client_id: Option<String>,
    /// Overrides `[entra]` credentials (all of them: credential keys are not mixed).
    pub certificate: Option<PathBuf>,
    /// Private key PEM.
    pub private_key: Option<PathBuf>,
    /// PKCS#12 file.
    pub pfx: Option<PathBuf>,
    /// Environment variable holding the PFX password.
    pub pfx_password_env: Option<String>,
    /// Environment variable holding a client secret.
    pub client_secret_env: Option<String>,
    /// File holding a federated JWT (re-read on each use).
    pub federated_token_file: Option<PathBuf>,
}

impl Tenant {
    /// This tenant's own credential keys (empty when it uses `[entra]`'s).
    pub fn credentials(&self) -> Credentials {
        Credentials {
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
            pfx: self.pfx.clone(),
            pfx_password_env: self.pfx_password_env.clone(),
            client_secret_env: self.client_secret_env.clone(),
            federated_token_file: self.federated_token_file.clone(),
        }
    }
}

/// `[[user]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Basic-auth user name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Allowed tenants; the first is the default.
    pub tenants: Vec<TenantName>,
}

/// Why the configuration cannot be used. Each says where and what a valid value looks like.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but a value is not acceptable.
    #[error("{}:{line}:{column}: {key}: {problem}; for example: {example}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key, e.g. `tenant[1].tenant_id`.
        key: String,
        /// What is wrong.
        problem: String,
        /// A valid value or snippet.
        example: String,
    },
}

/// Where environment variables come from: the process in production, a map in tests.
pub trait Environment: Send + Sync {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read, otherwise as for [`Config::parse`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`, which was read from `path` (used in messages and to resolve
    /// relative paths).
    ///
    /// # Errors
    /// [`Error::Parse`] for TOML and schema errors, [`Error::Invalid`] for values that fail
    /// validation.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let source = Source { text, path };
        let mut config: Config = toml::from_str(text).map_err(|err| {
            let (line, column) = source.line_col(err.span().map_or(0, |s| s.start));
            Error::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let spans = DeTable::parse(text).map_err(|err| {
            let (line, column) = source.line_col(err.span().map_or(0, |s| s.start));
            Error::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let check = Checker {
            source,
            root: &spans,
        };
        config.validate(&check)?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        Ok(config)
    }

    /// The tenant called `name`.
    pub fn tenant(&self, name: &TenantName) -> Option<&Tenant> {
        self.tenants.iter().find(|t| &t.name == name)
    }

    /// The credentials `tenant` uses: its own when it sets any credential key, else `[entra]`'s.
    pub fn credentials_for(&self, tenant: &Tenant) -> Credentials {
        let own = tenant.credentials();
        if own.is_empty() {
            self.entra.credentials()
        } else {
            own
        }
    }

    /// The client id `tenant` uses.
    pub fn client_id_for<'a>(&'a self, tenant: &'a Tenant) -> &'a str {
        tenant.client_id.as_deref().unwrap_or(&self.entra.client_id)
    }

    fn validate(&self, check: &Checker<'_>) -> Result<(), Error> {
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

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                fix(p);
            }
        };
        fix(&mut self.state_dir);
        fix_opt(&mut self.listen.certificate);
        fix_opt(&mut self.listen.private_key);
        let e = &mut self.entra;
        for p in [
            &mut e.certificate,
            &mut e.private_key,
            &mut e.pfx,
            &mut e.federated_token_file,
            &mut e.ca_file,
        ] {
            fix_opt(p);
        }
        fix_opt(&mut self.exchange.ca_file);
        for t in &mut self.tenants {
            for p in [
                &mut t.certificate,
                &mut t.private_key,
                &mut t.pfx,
                &mut t.federated_token_file,
            ] {
                fix_opt(p);
            }
        }
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
    let kinds = [
        ("certificate", c.certificate.is_some()),
        ("pfx", c.pfx.is_some()),
        ("client_secret_env", c.client_secret_env.is_some()),
        ("federated_token_file", c.federated_token_file.is_some()),
    ];
    let set: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
    let example = "certificate = \"app.pem\" and private_key = \"app-key.pem\"; or pfx = \"app.pfx\" \
                   with pfx_password_env = \"EXO_AUTHPROXY_PFX_PASSWORD\"; or client_secret_env = \
                   \"EXO_AUTHPROXY_CLIENT_SECRET\"; or federated_token_file = \
                   \"/var/run/secrets/azure/tokens/azure-identity-token\"";
    if set.len() > 1 {
        return Err(check.invalid(
            &key(set[1]),
            &format!("{what}: {}", set[1]),
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
            &format!("{what}: private_key"),
            "private_key needs the certificate it belongs to".into(),
            "certificate = \"app.pem\" next to private_key = \"app-key.pem\"",
        ));
    }
    if c.pfx_password_env.is_some() && c.pfx.is_none() {
        return Err(check.invalid(
            &key("pfx_password_env"),
            &format!("{what}: pfx_password_env"),
            "pfx_password_env is only used with pfx".into(),
            "pfx = \"app.pfx\" next to pfx_password_env = \"EXO_AUTHPROXY_PFX_PASSWORD\"",
        ));
    }
    for (k, v) in [
        ("pfx_password_env", &c.pfx_password_env),
        ("client_secret_env", &c.client_secret_env),
    ] {
        if let Some(name) = v
            && (name.is_empty() || name.contains('=') || name.contains('\0'))
        {
            return Err(check.invalid(
                &key(k),
                &format!("{what}: {k}"),
                format!("{name:?} is not an environment variable name"),
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

#[derive(Clone, Copy)]
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

#[derive(Clone, Copy, Debug)]
enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}

struct Checker<'a> {
    source: Source<'a>,
    root: &'a Spanned<DeTable<'a>>,
}

impl Checker<'_> {
    /// The span of the value at `path`, or of the deepest existing ancestor.
    fn span(&self, path: &[Seg<'_>]) -> Range<usize> {
        let mut best = 0..0;
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == *k)
                    .map(|(_, v)| v),
                (Seg::Idx(i), _, Some(v)) => match v.get_ref() {
                    DeValue::Array(a) => a.get(*i),
                    _ => None,
                },
                _ => None,
            };
            let Some(v) = next else { break };
            best = v.span();
            value = Some(v);
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    fn invalid(&self, at: &[Seg<'_>], key: &str, problem: String, example: &str) -> Error {
        let (line, column) = self.source.line_col(self.span(at).start);
        Error::Invalid {
            path: self.source.path.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem,
            example: example.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$\
                        tn6gLMzqpyEUzPsy7X7Pq3Gb7SoT5E0H1H4Y5s7aGUk";

    fn base() -> String {
        format!(
            r#"state_dir = "state"
[listen]
address = "127.0.0.1:8443"
[entra]
client_id = "7a3c1f0e-1234-4abc-9def-0123456789ab"
certificate = "app.pem"
private_key = "app-key.pem"
[exchange]
mode = "rest"
[[tenant]]
name = "contoso"
tenant_id = "0f9c3b1e-1111-2222-3333-444455556666"
organization = "contoso.onmicrosoft.com"
[[user]]
name = "reporting"
password_hash = "{HASH}"
tenants = ["contoso"]
"#
        )
    }

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/exo/exo-authproxy.toml"))
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/exo/state"));
        assert_eq!(
            c.entra.certificate.as_deref(),
            Some(Path::new("/etc/exo/app.pem"))
        );
        assert_eq!(c.exchange.mode, Mode::Rest);
        assert_eq!(c.exchange.resource(), "https://outlook.office365.com");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = base().replace("mode = \"rest\"", "mode = \"rest\"\nendpiont = \"x\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("/etc/exo/exo-authproxy.toml:10:"), "{err}");
        assert!(err.contains("endpiont"), "{err}");
    }

    #[test]
    fn unknown_user_tenant_points_at_the_entry() {
        let text = base().replace("tenants = [\"contoso\"]", "tenants = [\"contso\"]");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/exo/exo-authproxy.toml:17:12: user reporting: tenants: unknown tenant \"contso\"; [[tenant]] names are contoso"),
            "{err}"
        );
    }

    #[test]
    fn plaintext_is_refused_off_loopback() {
        let text = base().replace(
            "address = \"127.0.0.1:8443\"",
            "address = \"0.0.0.0:8443\"\nplaintext = true",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(":4:13: listen.plaintext: plaintext is refused"),
            "{err}"
        );
    }

    #[test]
    fn bad_phc_is_refused() {
        let text = base().replace(HASH, "hunter2");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("user reporting: password_hash: not a PHC string"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2"),
            "the value may be a password: {err}"
        );
    }

    #[test]
    fn two_credential_kinds_are_refused() {
        let text = base().replace(
            "private_key = \"app-key.pem\"",
            "private_key = \"app-key.pem\"\nclient_secret_env = \"S\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(":8:21: entra: client_secret_env: more than one credential kind"),
            "{err}"
        );
    }

    #[test]
    fn tenant_credentials_override_entra_as_a_whole() {
        let text = base().replace(
            "organization = \"contoso.onmicrosoft.com\"",
            "organization = \"contoso.onmicrosoft.com\"\nclient_secret_env = \"CONTOSO_SECRET\"",
        );
        let c = parse(&text).unwrap();
        let creds = c.credentials_for(&c.tenants[0]);
        assert_eq!(creds.client_secret_env.as_deref(), Some("CONTOSO_SECRET"));
        assert_eq!(creds.certificate, None);
    }

    #[test]
    fn bad_tenant_id_names_the_tenant() {
        let text = base().replace("0f9c3b1e-1111-2222-3333-444455556666", "contoso");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(":12:13: tenant contoso: tenant_id: \"contoso\" is not a GUID"),
            "{err}"
        );
    }

    proptest::proptest! {
        /// Any edit of a valid file (a byte dropped or replaced) is parsed or refused with a
        /// position inside the file, never a panic.
        #[test]
        fn damaged_configs_are_refused_with_a_position(at in 0usize..600, with in proptest::char::any()) {
            let text = base();
            let at = at % text.len();
            let mut damaged: String = text.chars().take(at).collect();
            damaged.push(with);
            damaged.extend(text.chars().skip(at + 1));
            if let Err(Error::Parse { line, column, .. } | Error::Invalid { line, column, .. }) = parse(&damaged) {
                proptest::prop_assert!(line >= 1 && line <= damaged.lines().count() + 1);
                proptest::prop_assert!(column >= 1);
            }
        }
    }

    #[test]
    fn sovereign_resource_follows_the_endpoint() {
        let text = base().replace(
            "mode = \"rest\"",
            "mode = \"rest\"\nendpoint = \"https://outlook.office365.us\"",
        );
        assert_eq!(
            parse(&text).unwrap().exchange.resource(),
            "https://outlook.office365.us"
        );
    }
}
