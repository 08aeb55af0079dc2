//! Configuration from the environment (issue 15): `EXO_AUTHPROXY_<SECTION>_<KEY>` overrides
//! the file (file < environment), may supply keys the file lacks, and a bad value is an error
//! that names the variable and a valid example.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use exo_authproxy::config::{Config, Error, Mode, SETTINGS};
use exo_authproxy::sandbox::{World, WorldOptions};
use tokio::net::TcpListener;

use crate::support::harness::{PASSWORD, Recorder, admin_get, world_tenants};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/exo-authproxy.example.toml")
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn variables_override_the_file_and_the_file_stays_the_default() {
    let text = std::fs::read_to_string(example()).unwrap();
    let file_only = Config::parse(&text, &example()).unwrap();
    let vars = env(&[
        ("EXO_AUTHPROXY_EXCHANGE_MODE", "winrm"),
        ("EXO_AUTHPROXY_LISTEN_ADDRESS", "127.0.0.1:18443"),
        (
            "EXO_AUTHPROXY_ENTRA_CLIENT_ID",
            "11111111-2222-4333-8444-555555555555\n",
        ),
        ("EXO_AUTHPROXY_STATE_DIR", "/srv/exo-state"),
        ("EXO_AUTHPROXY_ADMIN_ADDRESS", "127.0.0.1:19090"),
    ]);
    let config = Config::parse_with_env(&text, &example(), &vars).unwrap();
    assert_eq!(file_only.exchange.mode, Mode::Rest);
    assert_eq!(config.exchange.mode, Mode::Winrm);
    assert_eq!(config.listen.address, "127.0.0.1:18443".parse().unwrap());
    assert_eq!(
        config.entra.client_id, "11111111-2222-4333-8444-555555555555",
        "the trailing newline a Secret often has is dropped"
    );
    assert_eq!(config.state_dir, Path::new("/srv/exo-state"));
    assert_eq!(
        config.admin.as_ref().map(|a| a.address),
        Some("127.0.0.1:19090".parse().unwrap())
    );
    // What no variable sets comes from the file.
    assert_eq!(config.entra.certificate, file_only.entra.certificate);
    assert_eq!(config.tenants.len(), file_only.tenants.len());
    // An unrelated variable changes nothing.
    let other = env(&[("EXO_AUTHPROXY_LOG", "debug")]);
    let same = Config::parse_with_env(&text, &example(), &other).unwrap();
    assert_eq!(same.listen.address, file_only.listen.address);
}

#[test]
fn a_variable_supplies_a_required_key_the_file_lacks() {
    let text = std::fs::read_to_string(example()).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("client_id"))
        .map(|l| format!("{l}\n"))
        .collect();
    let err = Config::parse(&without, &example()).unwrap_err();
    assert!(err.to_string().contains("client_id"), "{err}");
    let vars = env(&[(
        "EXO_AUTHPROXY_ENTRA_CLIENT_ID",
        "11111111-2222-4333-8444-555555555555",
    )]);
    let config = Config::parse_with_env(&without, &example(), &vars).unwrap();
    assert_eq!(
        config.entra.client_id,
        "11111111-2222-4333-8444-555555555555"
    );
}

#[test]
fn a_bad_value_names_the_variable_and_a_valid_example() {
    let source = std::fs::read_to_string(example()).unwrap();
    for (variable, value, says) in [
        (
            "EXO_AUTHPROXY_EXCHANGE_MODE",
            "REST-please",
            "not one of winrm, rest",
        ),
        ("EXO_AUTHPROXY_LISTEN_ADDRESS", "localhost:8443", "IP:port"),
        ("EXO_AUTHPROXY_LISTEN_PLAINTEXT", "yes", "true or false"),
        ("EXO_AUTHPROXY_ENTRA_AUTHORITY", "", "empty"),
        // Well-typed, refused by validation: still blamed on the variable, not a file line.
        ("EXO_AUTHPROXY_ENTRA_CLIENT_ID", "not-a-guid", "not-a-guid"),
        ("EXO_AUTHPROXY_LISTEN_PLAINTEXT_", "true", ""), // not a setting: ignored
    ] {
        let vars = env(&[(variable, value)]);
        let result = Config::parse_with_env(&source, &example(), &vars);
        if says.is_empty() {
            assert!(result.is_ok(), "{variable}: {:?}", result.err());
            continue;
        }
        let err = result.unwrap_err();
        let text = err.to_string();
        let Error::Env {
            variable: named,
            example: valid,
            ..
        } = &err
        else {
            panic!("{variable}: not blamed on the variable: {text}")
        };
        assert_eq!(named, variable, "{text}");
        assert!(text.contains(says), "{variable}: {text}");
        assert!(valid.starts_with(&format!("{variable}=")), "{text}");
        // The example is itself accepted.
        let fixed = valid.split_once('=').unwrap().1;
        let ok = Config::parse_with_env(&source, &example(), &env(&[(variable, fixed)]));
        assert!(ok.is_ok(), "{variable}={fixed}: {:?}", ok.err());
    }
}

#[test]
fn every_setting_has_a_distinct_variable_and_is_in_the_readme() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut seen = std::collections::HashSet::new();
    for setting in SETTINGS {
        let variable = setting.variable();
        assert!(seen.insert(variable.clone()), "{variable} twice");
        assert!(
            readme.contains(&format!("`{variable}`")),
            "README's configuration table lacks `{variable}`"
        );
    }
}

/// The user's view: `serve` from a file with no `[admin]`, the admin listener and a
/// different proxy port given by variables; `wait` on the variable's address, `shutdown`.
#[tokio::test]
async fn serve_takes_its_listeners_from_variables() {
    let dir = tempfile::tempdir().unwrap();
    let placeholder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut options = WorldOptions::new(
        Mode::Winrm,
        placeholder.local_addr().unwrap(),
        Arc::new(Recorder::default()),
    );
    options.password = PASSWORD.into();
    options.tenants = world_tenants();
    let world = World::start(dir.path(), options).await.expect("world");
    let file = std::fs::read_to_string(&world.config_path).unwrap();
    assert!(!file.contains("[admin]"), "the file has no admin listener");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (proxy, admin) = (free(), free());
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_exo-authproxy"))
        .args(["serve", "--config"])
        .arg(&world.config_path)
        .env("EXO_AUTHPROXY_LISTEN_ADDRESS", proxy.to_string())
        .env("EXO_AUTHPROXY_ADMIN_ADDRESS", admin.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_exo-authproxy");
    let wait = tokio::process::Command::new(bin)
        .args(["wait", "--admin", &admin.to_string(), "--timeout", "100s"])
        .status()
        .await
        .unwrap();
    assert!(
        wait.success(),
        "the admin listener from the variable came up"
    );
    assert_eq!(admin_get(admin, "/healthz/liveness").await.0, 200);
    tokio::net::TcpStream::connect(proxy)
        .await
        .expect("the proxy listens on the variable's address");
    let stop = tokio::process::Command::new(bin)
        .args(["shutdown", "--admin", &admin.to_string()])
        .status()
        .await
        .unwrap();
    assert!(stop.success());
    let status = tokio::time::timeout(Duration::from_secs(120), serve.wait())
        .await
        .expect("serve exits after shutdown")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn serve_refuses_a_bad_variable_with_exit_64_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exo-authproxy"))
        .args(["serve", "--config"])
        .arg(example())
        .env("EXO_AUTHPROXY_EXCHANGE_MODE", "soap")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("EXO_AUTHPROXY_EXCHANGE_MODE"), "{stderr}");
    assert!(
        stderr.contains("EXO_AUTHPROXY_EXCHANGE_MODE=rest"),
        "{stderr}"
    );
}

/// Both directions between [`SETTINGS`] and the schema: every row names a real key (the
/// schema denies unknown keys, so all of them set at once must load), and every scalar key
/// the complete example file uses outside `[[tenant]]`/`[[user]]` has a row.
#[test]
fn every_scalar_key_has_a_variable() {
    let source = std::fs::read_to_string(example()).unwrap();
    let all: BTreeMap<String, String> = SETTINGS
        .iter()
        .map(|s| {
            // Only one credential kind may be set: leave the others to the file.
            let value = match (s.section, s.key) {
                (Some("entra"), "pfx" | "pfx_password_env" | "client_secret_env")
                | (Some("entra"), "federated_token_file" | "private_key") => None,
                (Some("listen"), "certificate" | "private_key") => Some("listener.pem"),
                _ => Some(s.example),
            };
            (s.variable(), value)
        })
        .filter_map(|(k, v)| v.map(|v| (k, v.to_owned())))
        .collect();
    let config = Config::parse_with_env(&source, &example(), &all);
    // listen.certificate without its private_key is refused by validation: that is still a
    // key the schema knows (the error names the variable, not "unknown field").
    if let Err(err) = &config {
        let text = err.to_string();
        assert!(!text.contains("unknown field"), "{text}");
    }
    let table: toml::Table = toml::from_str(&source).unwrap();
    let known: std::collections::HashSet<String> = SETTINGS.iter().map(|s| s.dotted()).collect();
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                for (inner, v) in section {
                    if !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)) {
                        let dotted = format!("{key}.{inner}");
                        assert!(
                            known.contains(&dotted),
                            "no EXO_AUTHPROXY_ variable for {dotted}"
                        );
                    }
                }
            }
            toml::Value::Array(_) => {} // [[tenant]], [[user]]
            _ => assert!(known.contains(key), "no EXO_AUTHPROXY_ variable for {key}"),
        }
    }
}
