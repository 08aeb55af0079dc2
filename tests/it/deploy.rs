//! Deployment as it runs (issue 15): the real binary started the way the systemd unit starts it.
//!
//! - One bad tenant never stops the others: a config with a tenant nobody consented to and a
//!   tenant whose certificate file is missing passes `check --config-only` (the unit's
//!   `ExecStartPre=`), `serve` starts, the good tenants are served and each bad one gets its
//!   own fault. What stops `serve` itself (a broken password hash) fails the check with 64.
//! - `Type=notify`: with `NOTIFY_SOCKET` pointing at a datagram socket the test bound, the
//!   proxy sends `READY=1` (its `STATUS=` names the bound addresses, which is how this test
//!   finds a proxy started on port 0), `WATCHDOG=1` pings and `STOPPING=1` at the drain.
//! - The unit file verifies with `systemd-analyze verify` where systemd-analyze exists.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use exo_authproxy::errors::PROXY_ERROR;
use exo_authproxy::sandbox::{World, WorldOptions};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use crate::support::harness::{PASSWORD, Recorder, USER, admin_get, client_trusting, post_soap};

/// Guards against a hang only; no test asserts how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

const ENVELOPE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action><a:MessageID>uuid:11111111-2222-3333-4444-555555555555</a:MessageID><w:OperationTimeout>PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"#;

/// A directory simulated Entra knows, where nobody consented to the app (AADSTS700016).
const UNCONSENTED_ID: &str = "5e5e5e5e-0000-4000-8000-00000000beef";

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exo-authproxy"));
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// The sandbox world on port 0 (the binary binds it), with the test's own directory.
async fn world(dir: &Path) -> World {
    let mut options = WorldOptions::new(
        exo_authproxy::config::Mode::Winrm,
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Recorder::default()),
    );
    options.password = PASSWORD.into();
    World::start(dir, options).await.expect("world")
}

/// Edits the world's config file as an admin would (through TOML, not by hand).
fn edit_config(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    edit(&mut doc);
    std::fs::write(path, toml::to_string(&doc).unwrap()).unwrap();
}

fn array<'a>(doc: &'a mut toml::Table, key: &str) -> &'a mut Vec<toml::Value> {
    doc.get_mut(key)
        .and_then(toml::Value::as_array_mut)
        .unwrap_or_else(|| panic!("the sandbox config has [[{key}]]"))
}

/// Adds `unconsented` (Entra knows the directory; no consent) and `nokey` (its own certificate
/// file does not exist) as tenants the demo user may use.
fn add_bad_tenants(world: &World) {
    world.entra.add_tenant(UNCONSENTED_ID);
    edit_config(&world.config_path, |doc| {
        let tenant = |name: &str, id: &str| {
            let mut t = toml::Table::new();
            t.insert("name".into(), name.into());
            t.insert("tenant_id".into(), id.into());
            t.insert(
                "organization".into(),
                format!("{name}.onmicrosoft.com").into(),
            );
            t
        };
        let unconsented = tenant("unconsented", UNCONSENTED_ID);
        let mut nokey = tenant("nokey", "6f6f6f6f-0000-4000-8000-00000000f00d");
        nokey.insert("certificate".into(), "missing-app.pem".into());
        let tenants = array(doc, "tenant");
        tenants.push(unconsented.into());
        tenants.push(nokey.into());
        for user in array(doc, "user") {
            let names = user
                .get_mut("tenants")
                .and_then(toml::Value::as_array_mut)
                .unwrap();
            names.push("unconsented".into());
            names.push("nokey".into());
        }
    });
}

/// `serve --config` with `NOTIFY_SOCKET` (and the admin listener on port 0 through its
/// variable), as systemd starts it.
struct Served {
    child: Child,
    notify: UnixDatagram,
    _socket_dir: tempfile::TempDir,
}

impl Served {
    fn spawn(config: &Path, extra_env: &[(&str, &str)]) -> Self {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket = socket_dir.path().join("notify");
        let notify = UnixDatagram::bind(&socket).unwrap();
        let mut cmd = bin();
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &socket)
            .env("EXO_AUTHPROXY_ADMIN_ADDRESS", "127.0.0.1:0")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            notify,
            _socket_dir: socket_dir,
        }
    }

    /// The next notification (one datagram).
    async fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(HANG_GUARD, self.notify.recv(&mut buf))
            .await
            .expect("a notification arrives")
            .unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Waits for `READY=1` and reads the bound addresses from its `STATUS=`.
    async fn ready(&self) -> (String, SocketAddr) {
        let message = self.next().await;
        assert!(
            message.starts_with("READY=1\n"),
            "READY=1 comes first: {message:?}"
        );
        let status = message
            .lines()
            .find_map(|l| l.strip_prefix("STATUS="))
            .unwrap_or_else(|| panic!("READY=1 has a STATUS=: {message:?}"));
        // "serving https://127.0.0.1:PORT/powershell-liveid; admin http://127.0.0.1:PORT"
        let url = status
            .strip_prefix("serving ")
            .and_then(|s| s.split(';').next())
            .unwrap_or_else(|| panic!("{status}"))
            .to_owned();
        let admin = status
            .split("admin http://")
            .nth(1)
            .unwrap_or_else(|| panic!("the admin address is in {status}"))
            .parse()
            .unwrap();
        (url, admin)
    }

    /// `exo-authproxy shutdown`, then `STOPPING=1` and exit 0.
    async fn shutdown(mut self, admin: SocketAddr) {
        let stop = bin()
            .args(["shutdown", "--admin", &admin.to_string()])
            .status()
            .await
            .unwrap();
        assert!(stop.success());
        loop {
            let message = self.next().await;
            if message == "WATCHDOG=1" {
                continue;
            }
            assert!(
                message.starts_with("STOPPING=1\n"),
                "after READY=1 only WATCHDOG=1 until STOPPING=1: {message:?}"
            );
            break;
        }
        let status = tokio::time::timeout(HANG_GUARD, self.child.wait())
            .await
            .expect("serve exits after the drain")
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }
}

fn listener_cert(world: &World) -> PathBuf {
    world
        .config
        .state_dir
        .join(exo_authproxy::listener::tls::GENERATED_CERT)
}

fn fault_text(body: &str) -> &str {
    let start = body
        .find("<f:Message>")
        .map_or(0, |i| i + "<f:Message>".len());
    let end = body[start..]
        .find("</f:Message>")
        .map_or(body.len(), |i| start + i);
    &body[start..end]
}

#[tokio::test]
async fn check_config_only_passes_one_bad_tenant_and_names_it_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path()).await;
    add_bad_tenants(&world);
    let out = bin()
        .args(["check", "--config-only", "--config"])
        .arg(&world.config_path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "serve would start, so the unit's ExecStartPre must pass:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "tenant contoso: ok: certificate",
        "tenant fabrikam: ok: certificate",
        "tenant nokey: error: cannot read certificate",
        "missing-app.pem",
        "1 tenant(s) cannot get tokens",
        "generated a self-signed certificate",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    for tenant in ["0f9c3b1e-1111-2222-3333-444455556666", UNCONSENTED_ID] {
        assert_eq!(
            world.entra.token_requests(tenant),
            0,
            "--config-only asks Entra nothing"
        );
    }
}

#[tokio::test]
async fn check_config_only_fails_with_64_for_what_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path()).await;
    edit_config(&world.config_path, |doc| {
        let user = array(doc, "user")[0].as_table_mut().unwrap();
        user.insert("password_hash".into(), "$argon2id$not-a-hash".into());
    });
    let out = bin()
        .args(["check", "--config-only", "--config"])
        .arg(&world.config_path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(USER), "names the user to fix: {stderr}");
    // And serve agrees: it refuses the same config (with its own code for the same reason).
    let serve = bin()
        .args(["serve", "--config"])
        .arg(&world.config_path)
        .env("EXO_AUTHPROXY_LISTEN_ADDRESS", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert_eq!(serve.status.code(), Some(64));
}

#[tokio::test]
async fn one_bad_tenant_at_start_leaves_the_others_serving() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path()).await;
    add_bad_tenants(&world);
    let served = Served::spawn(&world.config_path, &[]);
    let (url, admin) = served.ready().await;
    let client = client_trusting(&listener_cert(&world));
    let post = |org: &str| {
        let query = format!("DelegatedOrg={org}.onmicrosoft.com");
        let (client, url) = (client.clone(), url.clone());
        async move { post_soap(&client, &url, Some((USER, PASSWORD)), &query, ENVELOPE).await }
    };

    let rsp = post("contoso").await;
    assert_eq!(rsp.status(), 200, "a good tenant is served");

    let rsp = post("unconsented").await;
    assert_eq!(rsp.status(), 500);
    assert_eq!(rsp.headers()[PROXY_ERROR], "token-unavailable");
    let body = rsp.text().await.unwrap();
    let text = fault_text(&body);
    assert!(
        text.contains("unconsented") && text.contains("700016"),
        "the fault names the tenant and Entra's refusal: {text}"
    );

    let rsp = post("nokey").await;
    assert_eq!(rsp.status(), 500);
    assert_eq!(rsp.headers()[PROXY_ERROR], "token-unavailable");
    let body = rsp.text().await.unwrap();
    let text = fault_text(&body);
    assert!(
        text.contains("nokey") && text.contains("missing-app.pem"),
        "the fault names the tenant and the missing file: {text}"
    );

    // The bad tenants did not poison anything: the good ones still work afterwards.
    for good in ["contoso", "fabrikam"] {
        let rsp = post(good).await;
        assert_ne!(
            rsp.headers().get(PROXY_ERROR).and_then(|v| v.to_str().ok()),
            Some("token-unavailable"),
            "{good}"
        );
    }
    assert_eq!(post("contoso").await.status(), 200);
    let (status, _) = admin_get(admin, "/healthz/liveness").await;
    assert_eq!(status, 200);
    served.shutdown(admin).await;
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_and_stopping_from_serve() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path()).await;
    // 0.2 s: pings every 0.1 s, so the test sees one without waiting long.
    let served = Served::spawn(&world.config_path, &[("WATCHDOG_USEC", "200000")]);
    let (url, admin) = served.ready().await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(
        !url.contains(":0/"),
        "the bound port, not the configured 0: {url}"
    );
    // READY=1 means serving: the startup probe agrees at once, no polling.
    let (status, _) = admin_get(admin, "/healthz/startup").await;
    assert_eq!(status, 200);
    assert_eq!(served.next().await, "WATCHDOG=1");
    served.shutdown(admin).await;
}

#[tokio::test]
async fn the_systemd_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/exo-authproxy.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/local/bin/exo-authproxy check --config-only",
        "WatchdogSec=",
        "NotifyAccess=main",
    ] {
        assert!(
            text.contains(line),
            "{line} missing from {}",
            unit.display()
        );
    }
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed: deploy/exo-authproxy.service was NOT verified"
        );
        return;
    };
    assert!(found.status.success());
    // verify needs the ExecStart binaries to exist: a copy of the unit pointing at this build.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("exo-authproxy.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/exo-authproxy",
            env!("CARGO_BIN_EXE_exo-authproxy"),
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a running systemd (a container) verify still parses the unit; only problems of
    // the unit itself count.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("exo-authproxy.service"))
        .collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
    // The exposure score docs/onboarding.md records: the unit never gets worse than it says.
    let out = tokio::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exo-authproxy.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("systemd-analyze security printed no score:\n{text}"));
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/onboarding.md"))
            .unwrap();
    let recorded: f64 = docs
        .split("exposure level ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("docs/onboarding.md records the unit's \"exposure level N.N\"");
    eprintln!("systemd-analyze security: exposure level {score} (docs say {recorded})");
    assert!(
        score <= recorded,
        "the unit's exposure rose to {score}; docs/onboarding.md says {recorded}"
    );
}

/// Secrets as a Kubernetes Secret (`kubectl create secret --from-file`), a systemd
/// `EnvironmentFile=` or a heredoc deliver them: with a trailing `\n` or `\r\n` nobody meant.
/// The client secret and the PFX password still work, and the federated token file (re-read on
/// every use, as kubelet rotates it) is read without its line ending.
#[tokio::test]
async fn secrets_ending_in_a_newline_still_get_tokens() {
    use exo_authproxy::sandbox::entra::{App, EntraSim, RegisteredCertificate};
    use exo_authproxy::sandbox::pki::{AppCertificate, TestCa};
    use exo_authproxy::secret::Secret;

    const CLIENT: &str = "7a3c1f0e-1234-4abc-9def-0123456789ab";
    const TENANT: &str = "0f9c3b1e-1111-2222-3333-444455556666";
    let ca = TestCa::new("test CA").unwrap();
    let entra = EntraSim::new().unwrap();
    let app = AppCertificate::generate("exo-authproxy test app").unwrap();
    entra.register_app(App {
        client_id: CLIENT.into(),
        display_name: "test app".into(),
        certificates: vec![RegisteredCertificate::from(&app)],
        secrets: vec![Secret::new("s3cr3t-Q~value".into())],
        federated: vec![],
    });
    entra.assign_role(
        TENANT,
        CLIENT,
        exo_authproxy::token::claims::EXCHANGE_ADMINISTRATOR,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = entra
        .spawn(listener, ca.loopback_server_config().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let _files = app.write_to(dir.path(), "app", "pfx-pass").unwrap();
    let config = |credentials: &str| {
        let text = format!(
            "state_dir = \"state\"\n[listen]\naddress = \"127.0.0.1:0\"\n[entra]\nauthority = \"{}\"\n\
             client_id = \"{CLIENT}\"\nca_file = \"ca.pem\"\n{credentials}\n[exchange]\nmode = \"rest\"\n\
             endpoint = \"https://127.0.0.1:1\"\n[[tenant]]\nname = \"contoso\"\ntenant_id = \"{TENANT}\"\n\
             organization = \"contoso.onmicrosoft.com\"\n",
            handle.authority
        );
        exo_authproxy::config::Config::parse(&text, &dir.path().join("exo-authproxy.toml")).unwrap()
    };
    let contoso = exo_authproxy::config::TenantName::from("contoso");
    for ending in ["\n", "\r\n"] {
        let env = std::collections::BTreeMap::from([
            ("SECRET".to_owned(), format!("s3cr3t-Q~value{ending}")),
            ("PFX_PASSWORD".to_owned(), format!("pfx-pass{ending}")),
        ]);
        for credentials in [
            "client_secret_env = \"SECRET\"",
            "pfx = \"app.pfx\"\npfx_password_env = \"PFX_PASSWORD\"",
        ] {
            let engine =
                exo_authproxy::token::TokenEngine::new(&config(credentials), &env).unwrap();
            let token = engine.refresh(&contoso).await;
            assert!(token.is_ok(), "{credentials} ending {ending:?}: {token:?}");
        }
        let federated = dir.path().join("azure-identity-token");
        std::fs::write(&federated, format!("eyJ.header.sig{ending}")).unwrap();
        let read = exo_authproxy::token::credential::read_federated(&federated)
            .await
            .unwrap();
        assert_eq!(read.expose(), "eyJ.header.sig");
    }
    // Only the line ending goes: a secret that is wrong stays wrong.
    let env =
        std::collections::BTreeMap::from([("SECRET".to_owned(), "s3cr3t-Q~valu\n".to_owned())]);
    let engine =
        exo_authproxy::token::TokenEngine::new(&config("client_secret_env = \"SECRET\""), &env)
            .unwrap();
    let err = engine.refresh(&contoso).await.unwrap_err().to_string();
    assert!(err.contains("7000215"), "{err}");
}
