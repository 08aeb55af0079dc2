//! Lifecycle commands through the real binary and the real admin listener (issue 15, DESIGN §2):
//! `exo-authproxy wait` returns once `/healthz/startup` answers 200 (or fails at its timeout
//! with the reason), and `exo-authproxy shutdown` drains the proxy exactly as SIGTERM does,
//! accepted from loopback peers only.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use exo_authproxy::sandbox::{World, WorldOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::support::harness::{PASSWORD, Recorder, admin_get, world_tenants};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exo-authproxy"));
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Guards against a hang only (a broken drain would otherwise block the test run forever);
/// no test asserts how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The sandbox world and `serve(...)` on `proxy`, with the admin listener the test bound,
/// stopping only when something pulls the admin trigger (the shutdown future never completes).
struct Served {
    served: tokio::task::JoinHandle<Result<(), exo_authproxy::ServeError>>,
    proxy: SocketAddr,
    _world: World,
    _dir: tempfile::TempDir,
}

async fn serve_until_quit(admin: TcpListener) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let mut options = WorldOptions::new(
        exo_authproxy::config::Mode::Winrm,
        proxy,
        Arc::new(Recorder::default()),
    );
    options.password = PASSWORD.into();
    options.tenants = world_tenants();
    let world = World::start(dir.path(), options).await.expect("world");
    let (prepared, _tokens) = world.prepare_for_mode().expect("prepare");
    let served = tokio::spawn(exo_authproxy::serve_with_grace(
        prepared,
        exo_authproxy::Listeners {
            proxy: listener,
            admin: Some(admin),
        },
        std::future::pending::<()>(),
        Duration::from_secs(5),
    ));
    Served {
        served,
        proxy,
        _world: world,
        _dir: dir,
    }
}

#[tokio::test]
async fn wait_started_before_the_proxy_exits_0_once_startup_answers() {
    // The admin port is bound but nobody serves it yet: `wait` connects, gets no answer, and
    // must keep trying rather than fail or hang.
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = admin.local_addr().unwrap();
    let waiting = bin()
        .args(["wait", "--admin", &address.to_string(), "--timeout", "100s"])
        .output();
    let waiting = tokio::spawn(waiting);
    let served = serve_until_quit(admin).await;
    let out = tokio::time::timeout(HANG_GUARD, waiting)
        .await
        .expect("wait returns")
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(admin_get(address, "/healthz/startup").await.0, 200);
    served.served.abort();
}

#[tokio::test]
async fn wait_fails_at_its_timeout_naming_the_address_and_the_last_error() {
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap(); // dropped at once: nothing listens there
    let out = tokio::time::timeout(
        HANG_GUARD,
        bin()
            .args(["wait", "--admin", &address.to_string(), "--timeout", "1s"])
            .output(),
    )
    .await
    .expect("wait gives up")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not report started"), "{stderr}");
    assert!(stderr.contains(&address.to_string()), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

#[tokio::test]
async fn shutdown_command_drains_the_proxy_and_serve_returns_ok() {
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = admin.local_addr().unwrap();
    let mut served = serve_until_quit(admin).await;
    let (status, body) = admin_get(address, "/quitquitquit").await;
    assert_eq!(status, 405, "GET does not stop anything: {body}");
    assert!(
        !served.served.is_finished(),
        "still serving after the refused GET"
    );
    let out = bin()
        .args(["shutdown", "--admin", &address.to_string()])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = tokio::time::timeout(HANG_GUARD, &mut served.served)
        .await
        .expect("serve returns after /quitquitquit")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(served.proxy).await.is_err(),
        "the proxy listener is closed"
    );
}

#[tokio::test]
async fn shutdown_of_nothing_fails_with_the_address() {
    let address = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = bin()
        .args(["shutdown", "--admin", &address.to_string()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the admin listener"),
        "{stderr}"
    );
    assert!(stderr.contains(&address.to_string()), "{stderr}");
}

/// This host's address on a non-loopback interface, if it has one (the routing table picks
/// it; the UDP "connect" sends nothing).
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn quitquitquit_from_a_non_loopback_peer_is_refused_and_the_proxy_keeps_serving() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("SKIPPED: this host has no non-loopback address to send from");
        return;
    };
    let admin = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = admin.local_addr().unwrap().port();
    let served = serve_until_quit(admin).await;
    let outside = SocketAddr::new(ip, port);
    let out = bin()
        .args(["shutdown", "--admin", &outside.to_string()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(stderr.contains("loopback only"), "{stderr}");
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(admin_get(local, "/healthz/readiness").await.0, 200);
    assert!(!served.served.is_finished());
    served.served.abort();
}

/// The user's view: `sandbox` in the foreground, `wait` for it, `shutdown` it: exit 0.
#[tokio::test]
async fn sandbox_command_waits_then_stops_through_shutdown_with_exit_0() {
    let mut sandbox = bin()
        .args(["sandbox", "--mode", "rest", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sandbox.stdout.take().unwrap()).lines();
    let admin = tokio::time::timeout(HANG_GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // "  health        http://127.0.0.1:PORT/healthz/readiness   metrics ..."
            if let Some(rest) = line.trim().strip_prefix("health") {
                let url = rest.split_whitespace().next().unwrap();
                let hostport = url
                    .strip_prefix("http://")
                    .and_then(|u| u.split('/').next())
                    .unwrap();
                return hostport.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("the sandbox printed no health line");
    })
    .await
    .expect("banner");
    let wait = bin()
        .args(["wait", "--admin", &admin.to_string(), "--timeout", "100s"])
        .status()
        .await
        .unwrap();
    assert!(wait.success());
    let stop = bin()
        .args(["shutdown", "--admin", &admin.to_string()])
        .status()
        .await
        .unwrap();
    assert!(stop.success());
    let status = tokio::time::timeout(HANG_GUARD, sandbox.wait())
        .await
        .expect("the sandbox exits after shutdown")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
