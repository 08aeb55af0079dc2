//! Typed configuration (DESIGN.md §3).
//!
//! SKELETON: the struct shapes below are the contract other modules code against. The token
//! engine work (issue #3) owns this file: spans (`toml::Spanned`), `validate()` with
//! file:line:key messages, `resolve()`, and the tests. Keep the public field names.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// Loopback by default.
    pub address: SocketAddr,
    /// PEM chain replacing the self-signed certificate.
    pub certificate: Option<PathBuf>,
    /// Its private key.
    pub private_key: Option<PathBuf>,
    /// No TLS; refused on non-loopback addresses.
    #[serde(default)]
    pub plaintext: bool,
}

/// App credentials; `[entra]` holds the defaults and `[[tenant]]` may override them.
#[derive(Debug, Clone, Default, Deserialize)]
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

/// `[entra]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entra {
    /// `https://login.microsoftonline.com` unless a sovereign cloud or a test overrides it.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The app registration's client id.
    pub client_id: String,
    /// Default credentials.
    #[serde(flatten)]
    pub credentials: Credentials,
    /// Extra trust roots for the authority.
    pub ca_file: Option<PathBuf>,
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
    /// Overrides `[entra]` credentials.
    #[serde(flatten)]
    pub credentials: Credentials,
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
