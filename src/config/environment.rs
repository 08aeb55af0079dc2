//! Where environment variables come from: a parameter, so tests never touch the process
//! environment (STYLE.md §2.8).

use std::collections::{BTreeMap, HashMap};

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

/// The prefix of every configuration variable.
pub const PREFIX: &str = "EXO_AUTHPROXY_";

/// How a variable's text becomes a TOML value (checked here, so a bad value names its variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any non-empty text.
    Text,
    /// A path; relative ones are relative to the configuration file, as in the file.
    Path,
    /// `true` or `false`.
    Bool,
    /// `IP:port`.
    SocketAddr,
    /// One of the listed words.
    OneOf(&'static [&'static str]),
}

/// One scalar key that a variable can set.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The table (`None`: top level).
    pub section: Option<&'static str>,
    /// The key in it.
    pub key: &'static str,
    /// Its type.
    pub kind: Kind,
    /// A valid value, for messages and the README.
    pub example: &'static str,
}

impl Setting {
    /// `EXO_AUTHPROXY_<SECTION>_<KEY>` (top level: `EXO_AUTHPROXY_<KEY>`).
    pub fn variable(&self) -> String {
        let name = match self.section {
            Some(section) => format!("{section}_{}", self.key),
            None => self.key.to_owned(),
        };
        format!("{PREFIX}{}", name.to_ascii_uppercase())
    }

    /// The dotted key (`listen.address`), as validation errors name it.
    pub fn dotted(&self) -> String {
        match self.section {
            Some(section) => format!("{section}.{}", self.key),
            None => self.key.to_owned(),
        }
    }
}

const fn set(
    section: Option<&'static str>,
    key: &'static str,
    kind: Kind,
    example: &'static str,
) -> Setting {
    Setting {
        section,
        key,
        kind,
        example,
    }
}

/// Every scalar key of the file that a variable can set: all of them outside the `[[tenant]]`
/// and `[[user]]` arrays (those are lists of tables, with no name a variable could use).
/// A new scalar key gets a row here and in README's table; `tests/it/config_env.rs`
/// (`every_scalar_key_has_a_variable`) checks both against the schema and the example file.
pub const SETTINGS: &[Setting] = &[
    set(None, "state_dir", Kind::Path, "/var/lib/exo-authproxy"),
    set(
        Some("listen"),
        "address",
        Kind::SocketAddr,
        "127.0.0.1:8443",
    ),
    set(
        Some("listen"),
        "certificate",
        Kind::Path,
        "/etc/exo-authproxy/listener.pem",
    ),
    set(
        Some("listen"),
        "private_key",
        Kind::Path,
        "/etc/exo-authproxy/listener-key.pem",
    ),
    set(Some("listen"), "plaintext", Kind::Bool, "false"),
    set(
        Some("entra"),
        "authority",
        Kind::Text,
        "https://login.microsoftonline.com",
    ),
    set(
        Some("entra"),
        "client_id",
        Kind::Text,
        "9c6f3a52-0000-4000-8000-00000000a11d",
    ),
    set(
        Some("entra"),
        "certificate",
        Kind::Path,
        "/etc/exo-authproxy/app.pem",
    ),
    set(
        Some("entra"),
        "private_key",
        Kind::Path,
        "/etc/exo-authproxy/app-key.pem",
    ),
    set(
        Some("entra"),
        "pfx",
        Kind::Path,
        "/etc/exo-authproxy/app.pfx",
    ),
    set(
        Some("entra"),
        "pfx_password_env",
        Kind::Text,
        "EXO_PFX_PASSWORD",
    ),
    set(
        Some("entra"),
        "pfx_password_file",
        Kind::Path,
        "/run/credentials/exo-authproxy.service/pfx-password",
    ),
    set(
        Some("entra"),
        "certificate_thumbprint",
        Kind::Text,
        "3F2A9C0B6D1E4F5A7B8C9D0E1F2A3B4C5D6E7F80",
    ),
    set(Some("entra"), "store", Kind::Text, "LocalMachine\\My"),
    set(
        Some("entra"),
        "client_secret_env",
        Kind::Text,
        "EXO_CLIENT_SECRET",
    ),
    set(
        Some("entra"),
        "client_secret_file",
        Kind::Path,
        "/run/credentials/exo-authproxy.service/client-secret",
    ),
    set(
        Some("entra"),
        "federated_token_file",
        Kind::Path,
        "/var/run/secrets/azure/tokens/azure-identity-token",
    ),
    set(
        Some("entra"),
        "ca_file",
        Kind::Path,
        "/etc/exo-authproxy/entra-ca.pem",
    ),
    set(
        Some("exchange"),
        "mode",
        Kind::OneOf(&["winrm", "rest"]),
        "rest",
    ),
    set(
        Some("exchange"),
        "endpoint",
        Kind::Text,
        "https://outlook.office365.com",
    ),
    set(
        Some("exchange"),
        "ca_file",
        Kind::Path,
        "/etc/exo-authproxy/exchange-ca.pem",
    ),
    set(Some("admin"), "address", Kind::SocketAddr, "127.0.0.1:9090"),
    set(
        Some("audit"),
        "file",
        Kind::Path,
        "/var/lib/exo-authproxy/audit.jsonl",
    ),
];

/// A variable whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    /// The variable.
    pub variable: String,
    /// What is wrong.
    pub problem: String,
    /// A valid value.
    pub example: String,
}

/// Sets every key whose variable `env` has into `table` (creating the section when the file
/// has none, so `EXO_AUTHPROXY_ADMIN_ADDRESS` alone turns the admin listener on). Returns the
/// settings applied, in [`SETTINGS`] order.
///
/// # Errors
/// The first variable whose value is not of its key's type.
pub(super) fn apply(
    env: &dyn Environment,
    table: &mut toml::Table,
) -> Result<Vec<Setting>, BadValue> {
    let mut applied = Vec::new();
    for setting in SETTINGS {
        let variable = setting.variable();
        let Some(text) = env.var(&variable) else {
            continue;
        };
        let value = convert(setting, &text).map_err(|problem| BadValue {
            variable: variable.clone(),
            problem,
            example: format!("{variable}={}", setting.example),
        })?;
        let target = match setting.section {
            None => &mut *table,
            Some(section) => {
                let entry = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => t,
                    _ => {
                        return Err(BadValue {
                            variable,
                            problem: format!(
                                "the configuration file's `{section}` is not a table, so there is no [{section}] for it to set"
                            ),
                            example: format!("[{section}] in the file"),
                        });
                    }
                }
            }
        };
        target.insert(setting.key.to_owned(), value);
        applied.push(*setting);
    }
    Ok(applied)
}

fn convert(setting: &Setting, text: &str) -> Result<toml::Value, String> {
    // A value from a Secret or a heredoc often ends with a newline nobody meant.
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Err("it is empty; unset it to use the file's value".into());
    }
    let shown: String = text.chars().take(100).collect();
    match setting.kind {
        Kind::Text | Kind::Path => Ok(toml::Value::String(text.to_owned())),
        Kind::Bool => match text {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("{shown:?} is not true or false")),
        },
        Kind::SocketAddr => text
            .parse::<std::net::SocketAddr>()
            .map(|_| toml::Value::String(text.to_owned()))
            .map_err(|_| {
                format!("{shown:?} is not an IP:port address (a host name is not accepted)")
            }),
        Kind::OneOf(words) => {
            if words.contains(&text) {
                Ok(toml::Value::String(text.to_owned()))
            } else {
                Err(format!("{shown:?} is not one of {}", words.join(", ")))
            }
        }
    }
}
