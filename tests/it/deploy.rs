//! Deployment as it runs (issue 15): the real binary started the way the systemd unit starts it.
//!
//! - One bad tenant never stops the others: a config with a tenant nobody consented to and a
//!   tenant whose certificate file is missing passes `check --config-only` (the unit's
//!   `ExecStartPre=`), `serve` starts, the good tenants are served and each bad one gets its
//!   own fault. What stops `serve` itself (a broken password hash) fails the check with 64.
//! - `Type=notify`: with `NOTIFY_SOCKET` pointing at a datagram socket the test bound, the
//!   proxy sends `READY=1` (its `STATUS=` names the bound addresses, which is how this test
//!   finds a proxy started on port 0), `WATCHDOG=1` pings and `STOPPING=1` at the drain.
//! - The unit file verifies with `systemd-analyze verify` where systemd-analyze exists, and its
//!   `systemd-analyze security` exposure stays at most what docs/onboarding.md records.
//! - Secrets as Kubernetes and systemd deliver them (a variable or a file ending in a newline).
//! - Kubernetes: every manifest's structure and restricted Pod Security fields, the schema
//!   validator where PyPI is reachable, and the config each carries through `check --config-only`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use exo_authproxy::sandbox::{World, WorldOptions};
use tokio::process::Command;

use crate::support::harness::{PASSWORD, Recorder, USER};

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

/// Adds `unconsented` (Entra knows the directory; no consent), `nokey` (its own certificate
/// file does not exist) and `notoken` (its workload-identity token file is not mounted) as
/// tenants the demo user may use.
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
        let mut notoken = tenant("notoken", "7a7a7a7a-0000-4000-8000-00000000cafe");
        notoken.insert("federated_token_file".into(), "missing-token".into());
        let tenants = array(doc, "tenant");
        tenants.push(unconsented.into());
        tenants.push(nokey.into());
        tenants.push(notoken.into());
        for user in array(doc, "user") {
            let names = user
                .get_mut("tenants")
                .and_then(toml::Value::as_array_mut)
                .unwrap();
            names.push("unconsented".into());
            names.push("nokey".into());
            names.push("notoken".into());
        }
    });
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
        "tenant notoken: error: cannot read federated token file",
        "2 tenant(s) cannot get tokens",
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

/// The real binary as systemd runs it: Unix only (systemd's socket is a Unix datagram socket).
#[cfg(unix)]
mod served {
    use std::net::SocketAddr;
    use std::time::Duration;

    use exo_authproxy::errors::PROXY_ERROR;
    use tokio::net::UnixDatagram;
    use tokio::process::Child;

    use super::*;
    use crate::support::harness::{admin_get, client_trusting, post_soap};

    /// Guards against a hang only; no test asserts how long anything takes.
    const HANG_GUARD: Duration = Duration::from_secs(120);

    const ENVELOPE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action><a:MessageID>uuid:11111111-2222-3333-4444-555555555555</a:MessageID><w:OperationTimeout>PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"#;

    /// `serve --config` with `NOTIFY_SOCKET` (and the admin listener on port 0 through its
    /// variable), as systemd starts it. Unix only: systemd's socket is a Unix datagram socket.
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

        let rsp = post("notoken").await;
        assert_eq!(rsp.headers()[PROXY_ERROR], "token-unavailable");
        let body = rsp.text().await.unwrap();
        assert!(
            fault_text(&body).contains("missing-token"),
            "the fault names the token file: {body}"
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
        // The same secrets as files: a systemd credential (LoadCredential=) or a mounted Secret.
        std::fs::write(
            dir.path().join("client-secret"),
            format!("s3cr3t-Q~value{ending}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("pfx-password"), format!("pfx-pass{ending}")).unwrap();
        for credentials in [
            "client_secret_env = \"SECRET\"",
            "pfx = \"app.pfx\"\npfx_password_env = \"PFX_PASSWORD\"",
            "client_secret_file = \"client-secret\"",
            "pfx = \"app.pfx\"\npfx_password_file = \"pfx-password\"",
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
    // An empty secret file is named, not sent.
    std::fs::write(dir.path().join("client-secret"), "\n").unwrap();
    let engine = exo_authproxy::token::TokenEngine::new(
        &config("client_secret_file = \"client-secret\""),
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    let err = engine.refresh(&contoso).await.unwrap_err().to_string();
    assert!(
        err.contains("client secret file") && err.contains("is empty"),
        "{err}"
    );
    // Only the line ending goes: a secret that is wrong stays wrong.
    let env =
        std::collections::BTreeMap::from([("SECRET".to_owned(), "s3cr3t-Q~valu\n".to_owned())]);
    let engine =
        exo_authproxy::token::TokenEngine::new(&config("client_secret_env = \"SECRET\""), &env)
            .unwrap();
    let err = engine.refresh(&contoso).await.unwrap_err().to_string();
    assert!(err.contains("7000215"), "{err}");
}

// ---- Kubernetes: deploy/k8s-*.yaml ------------------------------------------------------

/// The manifests every deployment guide points to.
const MANIFESTS: &[&str] = &[
    "deploy/k8s-job.yaml",
    "deploy/k8s-deployment.yaml",
    "deploy/k8s-workload-identity.yaml",
];

/// The pinned offline schema validator (PyPI), with the Kubernetes schemas it bundles: run as `python -m kubernetes_validate`.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every document of a multi-document YAML file, as JSON values.
fn documents(path: &Path) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde_json::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .collect()
}

fn str_at<'a>(v: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(serde_json::Value::as_str)
}

/// The restricted Pod Security Standard, for one container (pod-level values count where the
/// standard lets them).
fn assert_restricted(
    what: &str,
    pod: &serde_json::Value,
    container: &serde_json::Value,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let sc = &container["securityContext"];
    let psc = &pod["securityContext"];
    let either = |key: &str| {
        let c = &sc[key];
        if c.is_null() {
            psc[key].clone()
        } else {
            c.clone()
        }
    };
    if either("runAsNonRoot") != serde_json::json!(true) {
        wrong.push(format!("{what}: runAsNonRoot is not true"));
    }
    match either("runAsUser").as_u64() {
        Some(uid) if uid > 0 => {}
        other => wrong.push(format!(
            "{what}: runAsUser is {other:?}, not a numeric non-root uid"
        )),
    }
    if sc["allowPrivilegeEscalation"] != serde_json::json!(false) {
        wrong.push(format!("{what}: allowPrivilegeEscalation is not false"));
    }
    if sc["readOnlyRootFilesystem"] != serde_json::json!(true) {
        wrong.push(format!("{what}: readOnlyRootFilesystem is not true"));
    }
    if sc["capabilities"]["drop"] != serde_json::json!(["ALL"]) {
        wrong.push(format!("{what}: capabilities.drop is not [ALL]"));
    }
    if sc["capabilities"]["add"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        wrong.push(format!("{what}: adds capabilities"));
    }
    if either("seccompProfile")["type"] != "RuntimeDefault" {
        wrong.push(format!("{what}: seccompProfile is not RuntimeDefault"));
    }
    if sc["privileged"] == serde_json::json!(true) {
        wrong.push(format!("{what}: privileged"));
    }
    wrong
}

#[test]
fn kubernetes_manifests_are_complete_and_restricted() {
    let mut wrong = Vec::new();
    let mut sidecars = 0;
    for file in MANIFESTS {
        let docs = documents(&repo(file));
        assert!(!docs.is_empty(), "{file} is empty");
        for doc in &docs {
            let kind =
                str_at(doc, "/kind").unwrap_or_else(|| panic!("{file}: a document without kind"));
            let name = str_at(doc, "/metadata/name")
                .unwrap_or_else(|| panic!("{file}: {kind} without metadata.name"));
            let what = format!("{file} {kind}/{name}");
            let api = str_at(doc, "/apiVersion").unwrap_or_default();
            let expected = match kind {
                "Job" => "batch/v1",
                "Deployment" => "apps/v1",
                "Secret" | "ConfigMap" | "Service" | "ServiceAccount" => "v1",
                other => panic!("{what}: kind {other} is not checked here; add it"),
            };
            assert_eq!(api, expected, "{what}: apiVersion");
            let pod = match kind {
                "Job" => &doc["spec"]["template"],
                "Deployment" => &doc["spec"]["template"],
                _ => continue,
            };
            let spec = &pod["spec"];
            if kind == "Job" {
                let policy = str_at(spec, "/restartPolicy");
                assert!(
                    matches!(policy, Some("Never" | "OnFailure")),
                    "{what}: a Job's pod restartPolicy is Never or OnFailure, not {policy:?}"
                );
            } else {
                let selector = doc["spec"]["selector"]["matchLabels"].as_object().unwrap();
                for (k, v) in selector {
                    assert_eq!(
                        &pod["metadata"]["labels"][k], v,
                        "{what}: selector {k} matches the template"
                    );
                }
            }
            for forbidden in ["hostNetwork", "hostPID", "hostIPC"] {
                assert_ne!(
                    spec[forbidden],
                    serde_json::json!(true),
                    "{what}: {forbidden}"
                );
            }
            let volumes: Vec<&str> = spec["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    assert!(v["hostPath"].is_null(), "{what}: hostPath volume");
                    v["name"].as_str().unwrap()
                })
                .collect();
            let init = spec["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let main = spec["containers"].as_array().cloned().unwrap_or_default();
            assert!(!main.is_empty(), "{what}: no containers");
            for container in init.iter().chain(&main) {
                let cname = container["name"].as_str().unwrap();
                assert!(container["image"].is_string(), "{what} {cname}: image");
                wrong.extend(assert_restricted(
                    &format!("{what} {cname}"),
                    spec,
                    container,
                ));
                for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                    let vname = mount["name"].as_str().unwrap();
                    assert!(
                        volumes.contains(&vname),
                        "{what} {cname}: mounts unknown volume {vname}"
                    );
                }
            }
            let proxy = init
                .iter()
                .chain(&main)
                .find(|c| c["name"] == "exo-authproxy")
                .unwrap_or_else(|| panic!("{what}: no exo-authproxy container"));
            assert_eq!(
                proxy["args"],
                serde_json::json!([
                    "serve",
                    "--config",
                    "/etc/exo-authproxy/exo-authproxy.toml",
                    "--log-format",
                    "json"
                ]),
                "{what}"
            );
            assert!(
                proxy["startupProbe"]["httpGet"]["path"] == "/healthz/startup",
                "{what}: startup probe"
            );
            if !proxy["readinessProbe"].is_null() {
                assert_eq!(
                    proxy["readinessProbe"]["httpGet"]["path"], "/healthz/readiness",
                    "{what}: readiness (200 while any tenant can be served)"
                );
            }
            if kind == "Job" {
                assert!(
                    init.iter()
                        .any(|c| c["name"] == "exo-authproxy" && c["restartPolicy"] == "Always"),
                    "{what}: the proxy is a native sidecar (initContainers, restartPolicy: Always)"
                );
                sidecars += 1;
            }
            if pod["metadata"]["labels"]["azure.workload.identity/use"] == "true" {
                let account = str_at(spec, "/serviceAccountName").unwrap_or_else(|| {
                    panic!("{what}: workload identity needs serviceAccountName")
                });
                let sa = docs
                    .iter()
                    .find(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == account)
                    .unwrap_or_else(|| panic!("{what}: ServiceAccount {account} is in the file"));
                assert!(
                    str_at(
                        sa,
                        "/metadata/annotations/azure.workload.identity~1client-id"
                    )
                    .is_some(),
                    "{what}: the ServiceAccount names the app's client id"
                );
            } else {
                assert_eq!(
                    spec["automountServiceAccountToken"],
                    serde_json::json!(false),
                    "{what}: no API token without workload identity"
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "restricted Pod Security:\n{}",
        wrong.join("\n")
    );
    assert_eq!(sidecars, 2, "the Job and its workload-identity variant");
}

/// The config each manifest carries, as `serve` would load it in the pod: its paths pointed at
/// local files (that is all `check --config-only` needs besides the file itself), and each path
/// in it inside a volume the proxy container mounts (or the token the workload identity
/// webhook projects).
#[test]
fn the_config_in_every_manifest_passes_check_config_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = exo_authproxy::sandbox::pki::AppCertificate::generate("manifest test").unwrap();
    let files = app.write_to(dir.path(), "app", "unused").unwrap();
    let federated = dir.path().join("azure-identity-token");
    std::fs::write(&federated, "eyJ.header.sig\n").unwrap();
    for file in MANIFESTS {
        let docs = documents(&repo(file));
        let text = docs
            .iter()
            .find_map(|d| str_at(d, "/stringData/exo-authproxy.toml"))
            .unwrap_or_else(|| panic!("{file}: no Secret with exo-authproxy.toml"));
        let table: toml::Table = text.parse().unwrap();
        let pod = docs
            .iter()
            .find(|d| matches!(d["kind"].as_str(), Some("Job" | "Deployment")))
            .map(|d| &d["spec"]["template"])
            .unwrap();
        let proxy = ["initContainers", "containers"]
            .iter()
            .filter_map(|k| pod["spec"][k].as_array())
            .flatten()
            .find(|c| c["name"] == "exo-authproxy")
            .unwrap();
        let mut mounted: Vec<String> = proxy["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap().to_owned())
            .collect();
        if pod["metadata"]["labels"]["azure.workload.identity/use"] == "true" {
            mounted.push("/var/run/secrets/azure/tokens".into());
        }
        let state = dir.path().join(file.replace('/', "_"));
        let mut env = std::collections::BTreeMap::new();
        let mut point = |section: Option<&str>, key: &str, local: &Path| {
            let value = match section {
                Some(s) => table.get(s).and_then(|t| t.get(key)),
                None => table.get(key),
            };
            let Some(path) = value.and_then(toml::Value::as_str) else {
                return;
            };
            assert!(
                mounted
                    .iter()
                    .any(|m| path == m || path.starts_with(&format!("{m}/"))),
                "{file}: {key} = {path:?} is in no volume the proxy mounts ({mounted:?})"
            );
            let variable = match section {
                Some(s) => format!("EXO_AUTHPROXY_{}_{}", s.to_uppercase(), key.to_uppercase()),
                None => format!("EXO_AUTHPROXY_{}", key.to_uppercase()),
            };
            env.insert(variable, local.display().to_string());
        };
        point(None, "state_dir", &state);
        point(Some("entra"), "certificate", &files.certificate);
        point(Some("entra"), "private_key", &files.private_key);
        point(Some("entra"), "federated_token_file", &federated);
        point(Some("listen"), "certificate", &files.certificate);
        point(Some("listen"), "private_key", &files.private_key);
        point(Some("audit"), "file", &state.join("audit.jsonl"));
        let path = dir.path().join("exo-authproxy.toml");
        let config = exo_authproxy::config::Config::parse_with_env(text, &path, &env)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut out = Vec::new();
        let checked = exo_authproxy::onboarding::check_config(&config, &env, &mut out);
        let out = String::from_utf8_lossy(&out);
        let checked = checked.unwrap_or_else(|e| panic!("{file}: check --config-only: {e}\n{out}"));
        assert!(checked.unusable.is_empty(), "{file}:\n{out}");
    }
}

/// The manifests against the Kubernetes API's own schemas (strict: an unknown field fails), by
/// `kubernetes-validate` in a venv under target/. Without PyPI: a loud skip, a failure in CI.
#[test]
fn kubernetes_manifests_pass_the_schema_validator() {
    let Some(validator) = kubernetes_validate() else {
        return;
    };
    let out = std::process::Command::new(validator)
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.33.0",
        ])
        .args(MANIFESTS.iter().map(|m| repo(m)))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    // It checked every resource, and a mistake does fail it (so a pass means something).
    assert_eq!(text.matches(" passed for resource ").count(), 8, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let job = std::fs::read_to_string(repo("deploy/k8s-job.yaml")).unwrap();
    std::fs::write(
        &bad,
        job.replacen("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1),
    )
    .unwrap();
    let out = std::process::Command::new(validator)
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.33.0",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a misspelt field must fail the validator"
    );
}

fn kubernetes_validate() -> Option<&'static Path> {
    static VALIDATOR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let root = repo("target/k8s-validate-venv");
            // `python -m`: the venv is made under another name and renamed into place, which
            // breaks the absolute shebangs of its console scripts, not its python.
            let bin = root.join("bin").join("python");
            let marker = root.join(format!(".ready-{}", KUBERNETES_VALIDATE.replace("==", "-")));
            if marker.exists() && bin.exists() {
                return Some(bin);
            }
            let tmp = root.with_file_name(format!("k8s-validate-venv.tmp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let made = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&tmp)
                .status()
                .is_ok_and(|s| s.success())
                && std::process::Command::new(tmp.join("bin").join("python"))
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .arg(KUBERNETES_VALIDATE)
                    .stdin(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if !made {
                let _ = std::fs::remove_dir_all(&tmp);
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "pip install {KUBERNETES_VALIDATE} failed; CI=true requires the schema validation"
                );
                eprintln!(
                    "SKIPPED: cannot pip install {KUBERNETES_VALIDATE} (needs python3-venv and PyPI): the manifests were NOT schema-validated"
                );
                return None;
            }
            std::fs::write(tmp.join(marker.file_name().unwrap()), KUBERNETES_VALIDATE).unwrap();
            let _ = std::fs::remove_dir_all(&root);
            if std::fs::rename(&tmp, &root).is_err() {
                let _ = std::fs::remove_dir_all(&tmp); // another test process won the race
            }
            Some(bin)
        })
        .as_deref()
}

/// A secret comes from one place: a variable or a file, and a secret file only where it is used.
#[test]
fn secret_files_are_validated_like_their_variables() {
    let config = |credentials: &str| {
        let text = format!(
            "state_dir = \"state\"\n[listen]\naddress = \"127.0.0.1:0\"\n[entra]\n\
             client_id = \"7a3c1f0e-1234-4abc-9def-0123456789ab\"\n{credentials}\n[exchange]\n\
             mode = \"rest\"\n[[tenant]]\n\
             name = \"contoso\"\ntenant_id = \"0f9c3b1e-1111-2222-3333-444455556666\"\n\
             organization = \"contoso.onmicrosoft.com\"\n"
        );
        exo_authproxy::config::Config::parse(&text, Path::new("/etc/exo-authproxy/x.toml"))
    };
    let ok = config("pfx = \"app.pfx\"\npfx_password_file = \"pfx-password\"").unwrap();
    assert_eq!(
        ok.entra.pfx_password_file.as_deref(),
        Some(Path::new("/etc/exo-authproxy/pfx-password")),
        "relative to the config file, like every path"
    );
    for (credentials, needle) in [
        (
            "client_secret_env = \"S\"\nclient_secret_file = \"s\"",
            "more than one credential kind",
        ),
        (
            "pfx = \"app.pfx\"\npfx_password_env = \"P\"\npfx_password_file = \"p\"",
            "not both",
        ),
        (
            "certificate = \"app.pem\"\npfx_password_file = \"p\"",
            "pfx_password_file is only used with pfx",
        ),
    ] {
        let err = config(credentials).unwrap_err().to_string();
        assert!(err.contains(needle), "{credentials}: {err}");
    }
}
