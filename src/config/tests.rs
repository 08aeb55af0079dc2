use super::*;

use std::path::Path;

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
fn admin_on_the_proxy_port_is_refused_before_anything_binds() {
    let text = base().replace(
        "[exchange]",
        "[admin]\naddress = \"0.0.0.0:8443\"\n[exchange]",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains(":9:11: admin.address: 0.0.0.0:8443 is the proxy's own [listen] address"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:9090"), "{err}");
    let fine = base().replace(
        "[exchange]",
        "[admin]\naddress = \"127.0.0.1:9090\"\n[exchange]",
    );
    assert!(parse(&fine).is_ok());
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
        err.contains(":8:21: entra.client_secret_env: more than one credential kind"),
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
