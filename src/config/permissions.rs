//! Warnings for secret files that other local users can read.
//!
//! The proxy turns local passwords into Exchange admin tokens for every tenant it serves, so
//! whoever can read the app's private key or PFX can mint those tokens without it, and whoever
//! can read the configuration file gets the `[[user]]` password hashes to crack offline.
//! `serve` and `check` therefore name each such file readable by its group or by others, with
//! the `chmod` that fixes it. A warning and not a refusal: a deployment may grant a group on
//! purpose (a Kubernetes secret mounted with `defaultMode: 0440` and an `fsGroup`), and
//! refusing would take the proxy down over something it cannot judge.
//!
//! What is checked: the configuration file; per credential set (`[entra]` and each
//! `[[tenant]]`) the `private_key`, the `pfx`, or the `certificate` when no `private_key` is
//! given (then it holds the key); the listener's `private_key` (or its `certificate` likewise).
//! Not checked: certificates that come with a separate key (public), the federated token file
//! (short-lived, and Kubernetes projects it world-readable by default), and client secrets
//! (they come from environment variables, not files). Only Unix mode bits are read; on
//! Windows, where ACLs decide and `icacls` is the tool, nothing is reported.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, Credentials};

/// A secret file readable by more than its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// What the file is, in the configuration's words.
    pub what: String,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits (`0o644`).
    pub mode: u32,
}

impl fmt::Display for Exposed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match (self.mode & 0o040 != 0, self.mode & 0o004 != 0) {
            (true, true) => "its group and all other users",
            (false, true) => "all other users",
            _ => "its group",
        };
        write!(
            f,
            "{} {} is readable by {who} (mode {:04o}): anyone who can read it can act as the proxy; \
             run `chmod 600 {}` as its owner (the account the proxy runs as)",
            self.what,
            self.path.display(),
            self.mode & 0o7777,
            self.path.display()
        )
    }
}

/// The secret files of `config` (loaded from `config_path`), each once, with what they are.
fn secret_files(config: &Config, config_path: &Path) -> Vec<(String, PathBuf)> {
    let mut files = vec![(
        "the configuration file (it holds the [[user]] password hashes)".to_owned(),
        config_path.to_owned(),
    )];
    let mut credential = |owner: &str, c: &Credentials| {
        if let Some(key) = &c.private_key {
            files.push((format!("{owner} private_key"), key.clone()));
        } else if let Some(cert) = &c.certificate {
            files.push((
                format!("{owner} certificate (it holds the private key)"),
                cert.clone(),
            ));
        }
        if let Some(pfx) = &c.pfx {
            files.push((format!("{owner} pfx"), pfx.clone()));
        }
        if let Some(file) = &c.pfx_password_file {
            files.push((format!("{owner} pfx_password_file"), file.clone()));
        }
        if let Some(file) = &c.client_secret_file {
            files.push((format!("{owner} client_secret_file"), file.clone()));
        }
    };
    credential("[entra]", &config.entra.credentials());
    for tenant in &config.tenants {
        credential(
            &format!("[[tenant]] {}", tenant.name),
            &tenant.credentials(),
        );
    }
    if let Some(key) = &config.listen.private_key {
        files.push(("[listen] private_key".to_owned(), key.clone()));
    } else if let Some(cert) = &config.listen.certificate {
        files.push((
            "[listen] certificate (it holds the private key)".to_owned(),
            cert.clone(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|(_, path)| seen.insert(path.clone()));
    files
}

/// The secret files of `config` that their group or others can read. Files that cannot be
/// read are left out: loading reports those.
#[cfg(unix)]
pub fn exposed(config: &Config, config_path: &Path) -> Vec<Exposed> {
    use std::os::unix::fs::PermissionsExt;
    secret_files(config, config_path)
        .into_iter()
        .filter_map(|(what, path)| {
            let mode = std::fs::metadata(&path).ok()?.permissions().mode();
            (mode & 0o044 != 0).then_some(Exposed { what, path, mode })
        })
        .collect()
}

/// Nothing on Windows: ACLs, not mode bits, decide there.
#[cfg(not(unix))]
pub fn exposed(config: &Config, config_path: &Path) -> Vec<Exposed> {
    let _ = secret_files(config, config_path);
    Vec::new()
}

/// Logs one warning per exposed file; returns how many there were.
pub fn warn_exposed(config: &Config, config_path: &Path) -> usize {
    let found = exposed(config, config_path);
    for file in &found {
        tracing::warn!(path = %file.path.display(), mode = format_args!("{:04o}", file.mode & 0o7777), "{file}");
    }
    found.len()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A config with an `[entra]` key pair, a tenant with a PFX, and a listener key.
    fn setup(dir: &Path) -> (Config, PathBuf) {
        for f in [
            "app.pem",
            "app.key",
            "fabrikam.pfx",
            "listen.pem",
            "listen.key",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
            chmod(&dir.join(f), 0o600);
        }
        let text = r#"state_dir = "state"

[listen]
address = "127.0.0.1:8443"
certificate = "listen.pem"
private_key = "listen.key"

[entra]
client_id = "6a8ff8e6-0000-4000-8000-00000000a11c"
certificate = "app.pem"
private_key = "app.key"

[exchange]
mode = "winrm"

[[tenant]]
name = "contoso"
tenant_id = "0f9c3b1e-1111-2222-3333-444455556666"
organization = "contoso.onmicrosoft.com"

[[tenant]]
name = "fabrikam"
tenant_id = "7d2e4f60-aaaa-bbbb-cccc-ddddeeeeffff"
organization = "fabrikam.onmicrosoft.com"
pfx = "fabrikam.pfx"
"#;
        let path = dir.join("exo-authproxy.toml");
        std::fs::write(&path, text).unwrap();
        chmod(&path, 0o600);
        (Config::load(&path).unwrap(), path)
    }

    #[test]
    fn owner_only_files_raise_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (config, path) = setup(dir.path());
        assert_eq!(exposed(&config, &path), []);
        assert_eq!(warn_exposed(&config, &path), 0);
    }

    #[test]
    fn each_readable_secret_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let (config, path) = setup(dir.path());
        chmod(&path, 0o644);
        chmod(&dir.path().join("app.key"), 0o640);
        chmod(&dir.path().join("fabrikam.pfx"), 0o604);
        chmod(&dir.path().join("listen.key"), 0o644);
        // Certificates with a separate key are public: no warning.
        chmod(&dir.path().join("app.pem"), 0o644);
        let found = exposed(&config, &path);
        let names: Vec<_> = found
            .iter()
            .map(|e| e.path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "exo-authproxy.toml",
                "app.key",
                "fabrikam.pfx",
                "listen.key"
            ]
        );
        let texts: Vec<_> = found.iter().map(ToString::to_string).collect();
        assert!(texts[0].contains("configuration file") && texts[0].contains("0644"));
        assert!(
            texts[1].starts_with("[entra] private_key")
                && texts[1].contains("its group (mode 0640)")
        );
        assert!(
            texts[2].starts_with("[[tenant]] fabrikam pfx") && texts[2].contains("all other users")
        );
        for (text, file) in texts.iter().zip(&found) {
            assert!(
                text.contains(&format!("chmod 600 {}", file.path.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn a_certificate_without_a_separate_key_holds_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, path) = setup(dir.path());
        config.entra.private_key = None;
        chmod(&dir.path().join("app.pem"), 0o644);
        let found = exposed(&config, &path);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .to_string()
                .contains("certificate (it holds the private key)")
        );
    }
}
