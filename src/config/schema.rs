//! The structs the configuration file deserializes into, one per table.
//!
//! Every struct denies unknown keys; nothing is flattened (see the module docs of
//! [`crate::config`] for why).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::is_loopback_host;

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
    /// The Security & Compliance endpoint (`/compliance/powershell-liveid/`, `rest` mode).
    #[serde(default)]
    pub compliance: Compliance,
    /// Optional health and metrics listener.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Optional JSON-lines audit file.
    #[serde(default)]
    pub audit: Option<Audit>,
    /// `[[tenant]]` tables.
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<Tenant>,
    /// `[[user]]` tables.
    #[serde(rename = "user", default)]
    pub users: Vec<User>,
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
/// holds the key too), `pfx` (+ `pfx_password_env` or `pfx_password_file`),
/// `certificate_thumbprint` (+ `store`; Windows only), `client_secret_env` or
/// `client_secret_file`, or `federated_token_file`. Secrets read from a file lose a trailing
/// line ending (`\n`, `\r\n`).
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
    /// File holding the PFX password (a systemd credential, a mounted Secret).
    pub pfx_password_file: Option<PathBuf>,
    /// Windows only: SHA-1 thumbprint of a certificate in the Windows certificate store.
    pub certificate_thumbprint: Option<String>,
    /// Windows only: the store `certificate_thumbprint` is looked up in (`LocalMachine\\My`).
    pub store: Option<String>,
    /// Environment variable holding a client secret.
    pub client_secret_env: Option<String>,
    /// File holding a client secret (a systemd credential, a mounted Secret).
    pub client_secret_file: Option<PathBuf>,
    /// File holding a federated JWT (re-read on each use).
    pub federated_token_file: Option<PathBuf>,
}

impl Credentials {
    /// Whether any credential key is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The store `certificate_thumbprint` is looked up in when `store` is not set: where
/// `Import-PfxCertificate -CertStoreLocation Cert:\LocalMachine\My` puts a service's certificate.
pub const DEFAULT_STORE: &str = "LocalMachine\\My";

/// Which registry hive a Windows certificate store belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLocation {
    /// `LocalMachine`: the computer's stores (what a service account uses).
    LocalMachine,
    /// `CurrentUser`: the stores of the account the proxy runs as.
    CurrentUser,
}

/// A Windows certificate store, `<LocalMachine|CurrentUser>\<name>` (`LocalMachine\My`), as
/// PowerShell's `Cert:` drive spells it; a leading `Cert:\` is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStoreName {
    /// The hive.
    pub location: StoreLocation,
    /// The store in it: `My`, `Root`, `WebHosting`, …
    pub name: String,
}

impl CertStoreName {
    /// Parses `LocalMachine\My` (hive case-insensitive); `None` when it is not of that form.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = match text.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("cert:") => text[5..].trim_start_matches('\\'),
            _ => text,
        };
        let (hive, name) = text.split_once('\\')?;
        let location = if hive.eq_ignore_ascii_case("LocalMachine") {
            StoreLocation::LocalMachine
        } else if hive.eq_ignore_ascii_case("CurrentUser") {
            StoreLocation::CurrentUser
        } else {
            return None;
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
        valid.then(|| Self {
            location,
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for CertStoreName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hive = match self.location {
            StoreLocation::LocalMachine => "LocalMachine",
            StoreLocation::CurrentUser => "CurrentUser",
        };
        write!(f, "{hive}\\{}", self.name)
    }
}

/// A SHA-1 thumbprint as the 40 upper-case hex digits the Entra portal and `Get-ChildItem
/// Cert:` show, from the forms people paste: with spaces or colons between the bytes, lower
/// case, or with the invisible left-to-right mark (U+200E) the Windows certificate dialog puts
/// in front when copied. `None` when what is left is not 40 hex digits.
pub fn normalize_thumbprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | ':' | '\u{200e}' | '\u{feff}' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
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
    /// File holding the PFX password (a systemd credential, a mounted Secret).
    pub pfx_password_file: Option<PathBuf>,
    /// Windows only: SHA-1 thumbprint of a certificate in the Windows certificate store.
    pub certificate_thumbprint: Option<String>,
    /// Windows only: the store `certificate_thumbprint` is looked up in (`LocalMachine\\My`).
    pub store: Option<String>,
    /// Environment variable holding a client secret.
    pub client_secret_env: Option<String>,
    /// File holding a client secret (a systemd credential, a mounted Secret).
    pub client_secret_file: Option<PathBuf>,
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
            pfx_password_file: self.pfx_password_file.clone(),
            certificate_thumbprint: self.certificate_thumbprint.clone(),
            store: self.store.clone(),
            client_secret_env: self.client_secret_env.clone(),
            client_secret_file: self.client_secret_file.clone(),
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// `[compliance]`: where Security & Compliance cmdlets go (scc-rest-adminapi.md §3).
///
/// Nothing is required: the global S&C host follows the cloud of `[exchange] endpoint`, and
/// the regional host is discovered per tenant at run time (§2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compliance {
    /// The global S&C host; default from the cloud of `[exchange] endpoint`.
    pub endpoint: Option<String>,
    /// Extra trust roots for the S&C hosts (the global one and the regional ones).
    pub ca_file: Option<PathBuf>,
}

/// Exchange host → the global S&C host of the same cloud (scc-rest-adminapi.md §3).
const COMPLIANCE_HOSTS: &[(&str, &str)] = &[
    (
        "outlook.office365.com",
        "ps.compliance.protection.outlook.com",
    ),
    ("outlook.office.com", "ps.compliance.protection.outlook.com"),
    (
        "outlook.office365.us",
        "ps.compliance.protection.office365.us",
    ),
    (
        "webmail.apps.mil",
        "l5.ps.compliance.protection.office365.us",
    ),
    (
        "partner.outlook.cn",
        "ps.compliance.protection.partner.outlook.cn",
    ),
];

impl Config {
    /// The global S&C endpoint: `[compliance] endpoint`, else the one of `[exchange]
    /// endpoint`'s cloud (worldwide for a host not in the table, e.g. the sandbox's loopback
    /// Exchange, whose own S&C endpoint is then configured explicitly).
    pub fn compliance_endpoint(&self) -> String {
        if let Some(e) = &self.compliance.endpoint {
            return e.clone();
        }
        let host = url::Url::parse(&self.exchange.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let global = COMPLIANCE_HOSTS
            .iter()
            .find(|(exo, _)| *exo == host)
            .map_or("ps.compliance.protection.outlook.com", |(_, scc)| scc);
        format!("https://{global}")
    }

    /// The S&C token resource (§1: scheme + host, any label before `ps.compliance.protection`
    /// removed). A loopback endpoint is the sandbox or a test, simulating worldwide.
    pub fn compliance_resource(&self) -> String {
        compliance_resource(&self.compliance_endpoint())
    }
}

/// §1's rule on one endpoint URL.
pub fn compliance_resource(endpoint: &str) -> String {
    let worldwide = "https://ps.compliance.protection.outlook.com".to_owned();
    let Ok(url) = url::Url::parse(endpoint) else {
        return worldwide;
    };
    let Some(host) = url.host_str().filter(|h| !is_loopback_host(h)) else {
        return worldwide;
    };
    let lower = host.to_ascii_lowercase();
    match lower.find("ps.compliance.protection") {
        Some(at) => format!("https://{}", &lower[at..]),
        None => format!("https://{lower}"),
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Loopback by default.
    pub address: SocketAddr,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// JSON lines appended here (0600; reopened on SIGHUP for logrotate). Relative to the
    /// config file.
    pub file: PathBuf,
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
    /// File holding the PFX password (a systemd credential, a mounted Secret).
    pub pfx_password_file: Option<PathBuf>,
    /// Windows only: SHA-1 thumbprint of a certificate in the Windows certificate store.
    pub certificate_thumbprint: Option<String>,
    /// Windows only: the store `certificate_thumbprint` is looked up in (`LocalMachine\\My`).
    pub store: Option<String>,
    /// Environment variable holding a client secret.
    pub client_secret_env: Option<String>,
    /// File holding a client secret (a systemd credential, a mounted Secret).
    pub client_secret_file: Option<PathBuf>,
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
            pfx_password_file: self.pfx_password_file.clone(),
            certificate_thumbprint: self.certificate_thumbprint.clone(),
            store: self.store.clone(),
            client_secret_env: self.client_secret_env.clone(),
            client_secret_file: self.client_secret_file.clone(),
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

impl Config {
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
}

#[cfg(test)]
mod compliance_tests {
    use super::compliance_resource;

    #[test]
    fn the_compliance_resource_drops_the_label_before_ps_compliance_protection() {
        for (endpoint, want) in [
            (
                "https://ps.compliance.protection.outlook.com",
                "https://ps.compliance.protection.outlook.com",
            ),
            (
                "https://nam02b.ps.compliance.protection.outlook.com/",
                "https://ps.compliance.protection.outlook.com",
            ),
            (
                "https://l5.ps.compliance.protection.office365.us",
                "https://ps.compliance.protection.office365.us",
            ),
            (
                "https://ps.compliance.protection.partner.outlook.cn",
                "https://ps.compliance.protection.partner.outlook.cn",
            ),
            (
                "https://127.0.0.1:4443",
                "https://ps.compliance.protection.outlook.com",
            ),
        ] {
            assert_eq!(compliance_resource(endpoint), want, "{endpoint}");
        }
    }
}
