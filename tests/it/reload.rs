//! Configuration reload as an operator meets it (issue 15): the real binary serving a config
//! file gets SIGHUP after the file was edited (a new user logs in; a broken file and a change
//! that needs a restart are refused with the reason on stderr while the running configuration
//! keeps serving), and an in-process proxy watching its files picks up a Kubernetes-style
//! Secret swap (the `..data` symlink renamed) with no signal at all, while a rest-mode
//! session opened before the swap keeps running commands.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use exo_authproxy::config::Mode;
use exo_authproxy::sandbox::{World, WorldOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::harness::{
    PASSWORD, Recorder, Sandboxed, SandboxedOptions, USER, client_trusting, kubelet_write,
    post_soap,
};
use crate::support::wire::{Cmd, Wire};

/// Guards against a hang only; no test asserts how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

const NEWCOMER: &str = "newcomer";
const NEWCOMER_PASSWORD: &str = "a-new-password-2026";

fn user_table(name: &str, password: &str) -> String {
    let hash = exo_authproxy::listener::basic_auth::hash_password(password).unwrap();
    format!("\n[[user]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\ntenants = [\"contoso\"]\n")
}

/// Whether the proxy at `url` lets `user` in (any answer but the 401 of bad credentials).
async fn logs_in(client: &reqwest::Client, url: &str, user: &str, password: &str) -> bool {
    let rsp = post_soap(client, url, Some((user, password)), "", "<s:Envelope/>").await;
    rsp.status() != 401
}

/// Polls until `user` can (or cannot) log in; panics at the hang guard.
async fn until_login(client: &reqwest::Client, url: &str, user: &str, password: &str, want: bool) {
    tokio::time::timeout(HANG_GUARD, async {
        while logs_in(client, url, user, password).await != want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{user} never became {}",
            if want { "able to log in" } else { "refused" }
        )
    });
}

struct Binary {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    url: String,
    cert: PathBuf,
}

impl Binary {
    /// `exo-authproxy serve --config <world's file>`, listening on the port it reports.
    async fn serve(world: &World) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exo-authproxy"))
            .args(["serve", "--config"])
            .arg(&world.config_path)
            .env("EXO_AUTHPROXY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = tx.send(line);
            }
        });
        let line = tokio::time::timeout(HANG_GUARD, async {
            loop {
                let line = lines.recv().await.expect("serve exited before listening");
                if line.contains("listening on https://") {
                    return line;
                }
            }
        })
        .await
        .expect("serve reports its address");
        let start = line.find("https://").unwrap();
        let url = line[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(['"', '\''])
            .to_owned();
        let cert = world
            .config
            .state_dir
            .join(exo_authproxy::listener::tls::GENERATED_CERT);
        Self {
            child,
            lines,
            url,
            cert,
        }
    }

    fn hangup(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for a stderr line containing `needle`, returns it.
    async fn line_with(&mut self, needle: &str) -> String {
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                let line = self.lines.recv().await.expect("serve exited");
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no stderr line with {needle:?}"))
    }
}

async fn world(dir: &Path, mode: Mode, listen: std::net::SocketAddr) -> World {
    let mut options = WorldOptions::new(mode, listen, std::sync::Arc::new(Recorder::default()));
    options.password = PASSWORD.into();
    World::start(dir, options).await.expect("sandbox world")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users_and_refuses_a_broken_config_or_a_restart_only_change_issue_15() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), Mode::Winrm, "127.0.0.1:0".parse().unwrap()).await;
    let mut proxy = Binary::serve(&world).await;
    let client = client_trusting(&proxy.cert);
    assert!(logs_in(&client, &proxy.url, USER, PASSWORD).await);
    assert!(!logs_in(&client, &proxy.url, NEWCOMER, NEWCOMER_PASSWORD).await);
    let original = std::fs::read_to_string(&world.config_path).unwrap();

    // A new user, then SIGHUP: the newcomer logs in, the demo user still does.
    let edited = original.clone() + &user_table(NEWCOMER, NEWCOMER_PASSWORD);
    std::fs::write(&world.config_path, &edited).unwrap();
    proxy.hangup();
    let line = proxy.line_with("configuration reloaded").await;
    assert!(line.contains("SIGHUP"), "{line}");
    assert!(logs_in(&client, &proxy.url, NEWCOMER, NEWCOMER_PASSWORD).await);
    assert!(logs_in(&client, &proxy.url, USER, PASSWORD).await);

    // A broken file: refused with the loader's reason (file, line, key); both users still in.
    std::fs::write(
        &world.config_path,
        edited.clone() + "\n[listen]\nbogus_key = 1\n",
    )
    .unwrap();
    proxy.hangup();
    let line = proxy.line_with("refused").await;
    assert!(
        line.contains("still serving the previous configuration"),
        "{line}"
    );
    assert!(
        line.contains(&world.config_path.display().to_string()),
        "{line}"
    );
    assert!(logs_in(&client, &proxy.url, NEWCOMER, NEWCOMER_PASSWORD).await);
    assert!(logs_in(&client, &proxy.url, USER, PASSWORD).await);

    // A user naming an unknown tenant: refused, nothing swapped (the newcomer stays).
    let bad_user = original.clone()
        + &user_table("third", "third-password-1").replace("\"contoso\"", "\"nowhere\"");
    std::fs::write(&world.config_path, bad_user).unwrap();
    proxy.hangup();
    let line = proxy.line_with("refused").await;
    assert!(line.contains("nowhere"), "{line}");
    assert!(logs_in(&client, &proxy.url, NEWCOMER, NEWCOMER_PASSWORD).await);

    // A setting that lives in a bound socket: refused, naming the key and the restart.
    let moved = edited.replace("mode = \"winrm\"", "mode = \"rest\"");
    assert_ne!(moved, edited, "the sandbox config names its mode");
    std::fs::write(
        &world.config_path,
        moved + &user_table("fourth", "fourth-password-1"),
    )
    .unwrap();
    proxy.hangup();
    let line = proxy.line_with("refused").await;
    assert!(line.contains("[exchange] changed"), "{line}");
    assert!(line.contains("restart"), "{line}");
    assert!(!logs_in(&client, &proxy.url, "fourth", "fourth-password-1").await);

    // Removing the newcomer again takes effect: a reload is not only additive.
    std::fs::write(&world.config_path, &original).unwrap();
    proxy.hangup();
    proxy.line_with("configuration reloaded").await;
    assert!(!logs_in(&client, &proxy.url, NEWCOMER, NEWCOMER_PASSWORD).await);
    assert!(logs_in(&client, &proxy.url, USER, PASSWORD).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_kubernetes_secret_is_picked_up_and_open_sessions_keep_running_issue_15() {
    let mut options = SandboxedOptions::simulated(Mode::Rest, 3);
    options.reload_from_mount = true;
    let h = Sandboxed::start(options).await;
    let mount = h.mounted_config.clone().expect("the config is mounted");
    let client = h.client();

    // A session opened before the swap.
    let (mut w, _) = Wire::open(&h, false).await;
    let before = w.run(&[Cmd::new("Get-Mailbox", [])], None).await;
    assert!(before.errors.is_empty(), "{:?}", before.errors);
    let mailboxes = before.outputs.len();
    assert!(mailboxes > 0);

    // The kubelet swaps in a new version of the Secret: a new user, no signal.
    let original = std::fs::read_to_string(mount.join("exo-authproxy.toml")).unwrap();
    kubelet_write(
        &mount,
        "v2",
        &(original.clone() + &user_table(NEWCOMER, NEWCOMER_PASSWORD)),
    );
    until_login(&client, &h.url, NEWCOMER, NEWCOMER_PASSWORD, true).await;

    // The session from before still runs commands, with the same results.
    let after = w.run(&[Cmd::new("Get-Mailbox", [])], None).await;
    assert!(after.errors.is_empty(), "{:?}", after.errors);
    assert_eq!(after.outputs.len(), mailboxes);
    let (status, metrics) = h.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("exo_authproxy_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );

    // A broken version is refused (counted), and the users of the running one keep working.
    kubelet_write(&mount, "v3", "this is not toml = = =");
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let (_, m) = h.admin_get("/metrics").await;
            if m.contains("exo_authproxy_config_reloads_total{result=\"refused\"} 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the broken version is seen and refused");
    assert!(logs_in(&client, &h.url, NEWCOMER, NEWCOMER_PASSWORD).await);
    assert!(logs_in(&client, &h.url, USER, PASSWORD).await);
    let last = w.run(&[Cmd::new("Get-Mailbox", [])], None).await;
    assert_eq!(last.outputs.len(), mailboxes);
}

/// A tenant whose app certificate is replaced (renewed) while serving: after the reload the
/// proxy signs with the new one; a tenant whose credential was broken at start works once
/// its files are fixed, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_broken_at_start_works_after_its_credential_is_fixed_and_reloaded_issue_15() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), Mode::Winrm, "127.0.0.1:0".parse().unwrap()).await;
    // Break the app key on disk before the proxy starts: every tenant shares it here.
    let key = world
        .config
        .entra
        .private_key
        .clone()
        .expect("the sandbox uses a key file");
    let good_key = std::fs::read(&key).unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut proxy = Binary::serve(&world).await;
    let client = client_trusting(&proxy.cert);
    let rsp = post_soap(
        &client,
        &proxy.url,
        Some((USER, PASSWORD)),
        "",
        "<s:Envelope/>",
    )
    .await;
    assert_eq!(
        rsp.headers()
            .get("x-exo-authproxy-error")
            .and_then(|v| v.to_str().ok()),
        Some("token-unavailable"),
        "a broken credential is the tenant's error, not a crash"
    );
    std::fs::write(&key, good_key).unwrap();
    proxy.hangup();
    proxy.line_with("configuration reloaded").await;
    let rsp = post_soap(
        &client,
        &proxy.url,
        Some((USER, PASSWORD)),
        "",
        "<s:Envelope/>",
    )
    .await;
    assert_ne!(
        rsp.headers()
            .get("x-exo-authproxy-error")
            .and_then(|v| v.to_str().ok()),
        Some("token-unavailable"),
        "the fixed credential is used after the reload"
    );
}
