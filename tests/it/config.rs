//! Configuration loading (issue #3 §1): the example file loads, and mistakes are reported
//! with file:line:col, key and a valid example.

use std::path::Path;

use exo_authproxy::config::{Config, Error, Mode};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/exo-authproxy.example.toml")
}

#[test]
fn the_example_config_loads() {
    let config = Config::load(&example()).unwrap();
    assert_eq!(config.exchange.mode, Mode::Rest);
    assert_eq!(config.tenants.len(), 2);
    assert_eq!(config.users[0].tenants[1].as_str(), "fabrikam");
    let dir = example().parent().unwrap().to_owned();
    assert_eq!(config.entra.certificate, Some(dir.join("app.pem")));
    assert_eq!(config.state_dir, Path::new("/var/lib/exo-authproxy"));
    assert!(config.listen.address.ip().is_loopback());
}

#[test]
fn a_typo_in_the_example_is_reported_with_line_and_key() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("organization = \"fabrikam", "organisation = \"fabrikam");
    let err = Config::parse(&text, &example()).unwrap_err();
    let Error::Parse { line, message, .. } = &err else {
        panic!("{err}")
    };
    let expected_line = text
        .lines()
        .position(|l| l.starts_with("organisation"))
        .unwrap()
        + 1;
    assert_eq!(*line, expected_line, "{err}");
    assert!(message.contains("organisation"), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{expected_line}:", example().display()))
    );
}

#[test]
fn a_missing_file_says_which() {
    let err = Config::load(Path::new("/nonexistent/exo.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read configuration file /nonexistent/exo.toml: "),
        "{err}"
    );
}

#[test]
fn a_user_with_an_unknown_tenant_gets_the_known_names() {
    let text = std::fs::read_to_string(example()).unwrap().replace(
        "tenants = [\"contoso\", \"fabrikam\"]",
        "tenants = [\"contoso\", \"fabrikm\"]",
    );
    let err = Config::parse(&text, Path::new("exo.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(": user reporting: tenants: unknown tenant \"fabrikm\"; [[tenant]] names are contoso, fabrikam; for example: tenants = [\"contoso\"]"), "{err}");
}
