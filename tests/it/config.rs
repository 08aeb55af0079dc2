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

/// The example file with `[entra]`'s PEM pair replaced by `lines`.
fn with_entra_credential(lines: &str) -> String {
    std::fs::read_to_string(example()).unwrap().replace(
        "certificate = \"app.pem\"\nprivate_key = \"app-key.pem\"\n",
        &format!("{lines}\n"),
    )
}

/// The Windows-store credential as people paste thumbprints: spaced pairs from the Windows
/// certificate dialog (with its invisible left-to-right mark), colon-separated from openssl,
/// lower case. All are the same 40 upper-case hex digits.
#[test]
fn a_thumbprint_is_normalised_from_the_forms_people_paste() {
    let want = "3F2A9C0B6D1E4F5A7B8C9D0E1F2A3B4C5D6E7F80";
    for pasted in [
        want,
        "3f2a9c0b6d1e4f5a7b8c9d0e1f2a3b4c5d6e7f80",
        "\u{200e}3f 2a 9c 0b 6d 1e 4f 5a 7b 8c 9d 0e 1f 2a 3b 4c 5d 6e 7f 80",
        "3F:2A:9C:0B:6D:1E:4F:5A:7B:8C:9D:0E:1F:2A:3B:4C:5D:6E:7F:80",
    ] {
        assert_eq!(
            exo_authproxy::config::normalize_thumbprint(pasted).as_deref(),
            Some(want),
            "{pasted:?}"
        );
    }
    for wrong in ["", "3F2A", &format!("{want}00"), &want.replace('F', "G")] {
        assert_eq!(
            exo_authproxy::config::normalize_thumbprint(wrong),
            None,
            "{wrong:?}"
        );
    }
    use exo_authproxy::config::{CertStoreName, StoreLocation};
    let machine = CertStoreName::parse("LocalMachine\\My").unwrap();
    assert_eq!(machine.location, StoreLocation::LocalMachine);
    assert_eq!(machine.name, "My");
    let user = CertStoreName::parse("Cert:\\currentuser\\WebHosting").unwrap();
    assert_eq!(user.location, StoreLocation::CurrentUser);
    assert_eq!(user.to_string(), "CurrentUser\\WebHosting");
    for wrong in [
        "My",
        "LocalMachine\\",
        "Machine\\My",
        "LocalMachine/My",
        "LocalMachine\\My\\x",
    ] {
        assert_eq!(CertStoreName::parse(wrong), None, "{wrong:?}");
    }
}

/// A malformed thumbprint or store, a store without a thumbprint and a thumbprint next to a
/// PEM pair are each refused on every platform, naming the key.
#[test]
fn a_bad_store_credential_is_refused_naming_the_key() {
    let thumb = "certificate_thumbprint = \"3F2A9C0B6D1E4F5A7B8C9D0E1F2A3B4C5D6E7F80\"";
    for (lines, key, says) in [
        (
            "certificate_thumbprint = \"3F2A9C0B\"".to_owned(),
            "entra.certificate_thumbprint",
            "is not a SHA-1 thumbprint",
        ),
        (
            format!("{thumb}\nstore = \"My\""),
            "entra.store",
            "is not a Windows certificate store",
        ),
        (
            "store = \"LocalMachine\\\\My\"".to_owned(),
            "entra.store",
            "store is only used with certificate_thumbprint",
        ),
        (
            format!("{thumb}\npfx = \"app.pfx\""),
            "entra.certificate_thumbprint",
            "more than one credential kind is configured (pfx, certificate_thumbprint)",
        ),
    ] {
        let text = with_entra_credential(&lines);
        let err = Config::parse(&text, &example()).unwrap_err();
        let Error::Invalid { key: named, .. } = &err else {
            panic!("{lines}: {err}")
        };
        assert_eq!(named, key, "{lines}: {err}");
        assert!(err.to_string().contains(says), "{lines}: {err}");
    }
}

/// Off Windows there is no certificate store: `check` refuses the key with exit 64 and says
/// what to configure instead, for `[entra]` and for a tenant.
#[cfg(not(windows))]
#[test]
fn a_certificate_thumbprint_is_refused_off_windows_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = std::fs::read_to_string(example()).unwrap().replace(
        "organization = \"fabrikam.onmicrosoft.com\"\n",
        "organization = \"fabrikam.onmicrosoft.com\"\n\
         certificate_thumbprint = \"3F2A9C0B6D1E4F5A7B8C9D0E1F2A3B4C5D6E7F80\"\n\
         store = \"CurrentUser\\\\My\"\n",
    );
    assert!(
        tenant.contains("store = \"CurrentUser"),
        "the example changed"
    );
    let entra = with_entra_credential(
        "certificate_thumbprint = \"3F 2A 9C 0B 6D 1E 4F 5A 7B 8C 9D 0E 1F 2A 3B 4C 5D 6E 7F 80\"\n\
         store = \"LocalMachine\\\\My\"",
    );
    for (text, key) in [
        (entra, "entra.certificate_thumbprint"),
        (tenant, "tenant fabrikam: certificate_thumbprint"),
    ] {
        let path = dir.path().join("exo.toml");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_exo-authproxy"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        for says in [
            key,
            "works only on Windows",
            "configure pfx",
            "certificate and private_key",
        ] {
            assert!(stderr.contains(says), "{says:?} not in {stderr}");
        }
    }
    // The same from the environment: blamed on the variable.
    let vars: std::collections::BTreeMap<String, String> = [(
        "EXO_AUTHPROXY_ENTRA_CERTIFICATE_THUMBPRINT".to_owned(),
        "3F2A9C0B6D1E4F5A7B8C9D0E1F2A3B4C5D6E7F80".to_owned(),
    )]
    .into();
    let text = with_entra_credential("");
    let err = Config::parse_with_env(&text, &example(), &vars).unwrap_err();
    let Error::Env { variable, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(variable, "EXO_AUTHPROXY_ENTRA_CERTIFICATE_THUMBPRINT");
    assert!(err.to_string().contains("works only on Windows"), "{err}");
}

/// On Windows the same configuration is valid; the store defaults to `LocalMachine\My`.
#[cfg(windows)]
#[test]
fn a_certificate_thumbprint_is_accepted_on_windows() {
    let text = with_entra_credential(
        "certificate_thumbprint = \"3f:2a:9c:0b:6d:1e:4f:5a:7b:8c:9d:0e:1f:2a:3b:4c:5d:6e:7f:80\"",
    );
    let config = Config::parse(&text, &example()).unwrap();
    let c = config.entra.credentials();
    assert!(c.certificate_thumbprint.is_some());
    assert_eq!(c.store, None);
}
