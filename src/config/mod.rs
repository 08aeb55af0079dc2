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
//! Every scalar key can also come from an `EXO_AUTHPROXY_<SECTION>_<KEY>` variable
//! ([`SETTINGS`], [`Config::load_with_env`]), so a Kubernetes Secret or a systemd credential
//! can supply it without a file being rewritten. The variables are merged into the parsed TOML
//! table before it is deserialized, so they may supply a key the file lacks, and checked by
//! the same validation; an error about such a value names the variable, not a line.
//!
//! Relative paths are resolved against the directory of the configuration file at parse time,
//! so the rest of the program only ever sees absolute (or cwd-relative, for a relative config
//! path) paths and does not need to know where the file was.
//!
//! Layout: `schema` holds the structs the file deserializes into, `load` reads and parses it
//! (and turns spans into `file:line:col` errors), `validate` checks the values, and
//! `environment` is where environment variables come from.

mod environment;
mod load;
pub mod permissions;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

pub use environment::{Environment, Kind, PREFIX, ProcessEnvironment, SETTINGS, Setting};
pub use load::Error;
pub use schema::{
    Admin, Audit, CertStoreName, Config, Credentials, DEFAULT_STORE, Entra, Exchange, Listen, Mode,
    Organization, StoreLocation, Tenant, TenantId, TenantName, User, normalize_thumbprint,
};
pub use validate::is_loopback_host;
