//! Rest mode as its own process: the REST bridge's CPU per object against a fast upstream,
//! and cold start.
//!
//! `cargo bench --bench rest_mode [-- cpu|cold|scale]` (default: all three). Figures go into
//! BENCHMARKS.md, sections "bridge" and "cold start"; nothing here is asserted.
//!
//! The proxy is the release binary (`exo-authproxy serve`, rest mode, the sandbox world's
//! config), a process of its own, so its CPU time (`/proc/<pid>/stat` utime + stime) is the
//! proxy's alone. Simulated Entra, simulated Exchange and the client (a Windows-shaped
//! WS-Man/PSRP session through the real TLS listener, `tests/it/support/wire.rs`, no
//! compression) share this process.
//!
//! The upstream is *fast*: every REST answer is made once by the simulated admin API and
//! then replayed from memory (same bytes, same `@odata.nextLink`s), so a page costs the
//! simulator a token check and a copy, not the ≈80 ms of building 1,000 mailboxes that
//! `benches/bridge.rs` waits for. `cpu` runs `Get-Mailbox -ResultSize Unlimited` over 10,000
//! mailboxes (≈60 properties, pages of 1,000) and reports the proxy's CPU seconds per 10,000
//! objects and the time from the upstream handing out the first page to the client holding
//! the first object.
//!
//! `scale` opens 1,000 rest-mode sessions (16 per local user, the per-user cap; pools open,
//! idle) and reports the proxy's RSS growth, then lets 100 of them page 10,000 mailboxes each
//! at once and reports completeness, time to first object (p50/p99), CPU and peak RSS.
//! `SCALE_PAGING` sets how many sessions page (default 100; `0` measures the idle sessions
//! only).
//!
//! `soak` (issue 13) opens 1,000 sessions across 100 users, each holding a pool long-poll
//! Receive as a client does, runs 200 small commands per second over them for 5 minutes, samples
//! the proxy's RSS every 10 s (the curve), reports failed requests and the command latency
//! percentiles, then sends SIGTERM and reports how long the drain took and the exit status.
//! Not part of the default run (`-- soak`; `SOAK_SECONDS` shortens it).
//!
//! `PROXY_BIN=<path>` spawns that build of the binary instead (one with symbols, for
//! `perf record`).
//! `HEAPTRACK_RAW=<file>` runs the proxy under heaptrack's preload library, writing the raw
//! trace to `<file>` (`heaptrack_interpret < file | zstd > file.zst`, then `heaptrack_print`);
//! the proxy is killed at the end, so what it still held then is reported as leaked. RSS
//! figures of such a run include heaptrack's own bookkeeping.
//!
//! `cold` spawns the proxy with its certificate already on disk and reports the time from
//! spawn to the first served request: an anonymous POST (answered 401 by the listener: TLS
//! up, no token, no password check), the first authenticated shell open (the Basic check),
//! and the first command's first object (the token fetch from simulated Entra included).

#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

#[allow(unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallClock};

use bytes::Bytes;
use exo_authproxy::remoting::fragment::Defragmenter;
use exo_authproxy::remoting::message::MessageType;
use exo_authproxy::sandbox::data::ExchangeData;
use exo_authproxy::sandbox::exchange::AdminApi;
use exo_authproxy::sandbox::{World, WorldOptions};
use support::harness::{PASSWORD, Recorder};
use support::wire::{Cmd, Wire, colon, s};

const MAILBOXES: usize = 10_000;
const RUNS: usize = 5;

/// Every admin API answer, made once by the simulator, then replayed.
struct Replay {
    data: Arc<ExchangeData>,
    answers: Mutex<HashMap<String, http::Response<Bytes>>>,
    /// When the last first page (no `$skiptoken`) was handed out.
    first_page: Mutex<Option<WallClock>>,
}

fn copy(r: &http::Response<Bytes>) -> http::Response<Bytes> {
    let mut out = http::Response::new(r.body().clone());
    *out.status_mut() = r.status();
    *out.headers_mut() = r.headers().clone();
    out
}

impl Replay {
    fn api(self: &Arc<Self>) -> AdminApi {
        let me = self.clone();
        Arc::new(move |app, tenant, request: http::Request<Bytes>| {
            let me = me.clone();
            Box::pin(async move {
                let key = format!(
                    "{} {} {}",
                    request.method(),
                    request.uri(),
                    String::from_utf8_lossy(request.body())
                );
                let first = request.uri().path().ends_with("InvokeCommand")
                    && !request.uri().query().unwrap_or("").contains("skiptoken");
                let hit = me.answers.lock().unwrap().get(&key).map(copy);
                let rsp = match hit {
                    Some(r) => r,
                    None => {
                        let r = exo_authproxy::sandbox::adminapi::handle(
                            &me.data, &app, &tenant, request,
                        )
                        .await;
                        me.answers.lock().unwrap().insert(key, copy(&r));
                        r
                    }
                };
                if first {
                    *me.first_page.lock().unwrap() = Some(WallClock::now());
                }
                rsp
            })
        })
    }
}

/// heaptrack's preload library (where the distribution package installs it), for `HEAPTRACK_RAW`.
const HEAPTRACK_PRELOAD: &str = "/usr/lib/heaptrack/libheaptrack_preload.so";

/// A child process killed on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proxy {
    fn spawn(world: &World) -> Self {
        // PROXY_BIN: another build of the binary (one with symbols, for `perf record`).
        let bin = std::env::var_os("PROXY_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_exo-authproxy").into());
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&world.config_path)
            .env("EXO_AUTHPROXY_LOG", "warn")
            .stdout(Stdio::null());
        if let Some(raw) = std::env::var_os("HEAPTRACK_RAW") {
            cmd.env("LD_PRELOAD", HEAPTRACK_PRELOAD)
                .env("DUMP_HEAPTRACK_OUTPUT", raw);
        }
        Self(cmd.spawn().expect("start exo-authproxy serve"))
    }

    /// User + system CPU seconds of the whole process (all threads).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0 // CLK_TCK (getconf CLK_TCK = 100 on Linux)
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

fn client_trusting(cert: &std::path::Path) -> reqwest::Client {
    let tls = exo_authproxy::forward::client::client_tls(Some(cert)).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .unwrap()
}

/// `n` clients trusting `cert`, each from its own loopback address (127.0.0.1 … 127.0.0.n).
fn loopback_clients(cert: &std::path::Path, n: usize) -> Vec<reqwest::Client> {
    let tls = exo_authproxy::forward::client::client_tls(Some(cert)).unwrap();
    (1..=n)
        .map(|h| {
            reqwest::Client::builder()
                .use_preconfigured_tls(tls.clone())
                .local_address(std::net::IpAddr::from([127, 0, 0, h as u8]))
                .no_proxy()
                .build()
                .unwrap()
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn world(dir: &std::path::Path, port: u16, replay: &Arc<Replay>) -> World {
    world_with_users(dir, port, replay, Vec::new()).await
}

async fn world_with_users(
    dir: &std::path::Path,
    port: u16,
    replay: &Arc<Replay>,
    extra_users: Vec<String>,
) -> World {
    let mut options = WorldOptions::new(
        exo_authproxy::config::Mode::Rest,
        format!("127.0.0.1:{port}").parse().unwrap(),
        Arc::new(Recorder::default()),
    );
    options.password = PASSWORD.into();
    options.adminapi = Some(replay.api());
    options.extra_users = extra_users;
    World::start(dir, options).await.expect("sandbox world")
}

fn cert_of(world: &World) -> std::path::PathBuf {
    world
        .config
        .state_dir
        .join(exo_authproxy::listener::tls::GENERATED_CERT)
}

fn get_mailbox() -> Vec<Cmd> {
    vec![Cmd::new(
        "Get-Mailbox",
        [colon("ResultSize", s("Unlimited"))],
    )]
}

/// Runs `cmds`; (objects, time of the first object, end).
async fn run(w: &mut Wire<'_>, cmds: &[Cmd]) -> (usize, Option<WallClock>, WallClock) {
    let pid = w.start(cmds, true).await;
    let mut defrag = Defragmenter::new(64 << 20);
    let mut objects = 0;
    let mut first = None;
    loop {
        let r = w.receive(Some(&pid), "PT5S").await;
        if r.timed_out() {
            continue;
        }
        assert_eq!(r.status, 200, "Receive: {r:?}");
        for m in w.messages(&r, &mut defrag) {
            if m.message_type == MessageType::PipelineOutput {
                objects += 1;
                first.get_or_insert_with(WallClock::now);
            }
        }
        if r.command_state().as_deref() == Some(exo_authproxy::remoting::wsman::COMMAND_STATE_DONE)
        {
            return (objects, first, WallClock::now());
        }
    }
}

async fn wait_served(client: &reqwest::Client, url: &str) {
    for _ in 0..20_000 {
        if client.post(url).body("").send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the proxy never answered at {url}");
}

async fn cpu() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let replay = Arc::new(Replay {
        data: Arc::new(ExchangeData::new(MAILBOXES)),
        answers: Mutex::default(),
        first_page: Mutex::default(),
    });
    let world = world(dir.path(), port, &replay).await;
    let proxy = Proxy::spawn(&world);
    let url = format!("https://127.0.0.1:{port}/powershell-liveid");
    // The certificate appears once the listener is up.
    while !cert_of(&world).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = client_trusting(&cert_of(&world));
    wait_served(&client, &url).await;
    let (mut w, _) = Wire::open_client(client, &url, false, "").await;
    // Warm-up: the simulator makes every page once, the proxy fetches its token and catalog.
    let (n, _, _) = run(&mut w, &get_mailbox()).await;
    assert_eq!(n, MAILBOXES);
    let rss_idle = proxy.rss_mib();
    let mut cpu = Vec::new();
    let mut firsts = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..RUNS {
        let before = proxy.cpu_seconds();
        let start = WallClock::now();
        let (n, first, end) = run(&mut w, &get_mailbox()).await;
        let after = proxy.cpu_seconds();
        assert_eq!(n, MAILBOXES);
        let page = replay.first_page.lock().unwrap().expect("a first page");
        cpu.push((after - before) * 10_000.0 / n as f64);
        firsts.push(first.expect("objects").duration_since(page));
        totals.push(end - start);
    }
    println!(
        "rest_mode cpu: Get-Mailbox -ResultSize Unlimited, {MAILBOXES} mailboxes, pages of 1000, \
         replayed upstream, no compression, {RUNS} runs"
    );
    println!(
        "proxy CPU s per 10,000 objects: {}",
        cpu.iter()
            .map(|c| format!("{c:.3}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "first object after the first page left the upstream (ms): {}",
        firsts
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "wall per run (ms, shared machine): {}",
        totals
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "proxy RSS after warm-up {rss_idle:.1} MiB, after the runs {:.1} MiB",
        proxy.rss_mib()
    );
    w.close().await;
}

async fn cold() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let replay = Arc::new(Replay {
        data: Arc::new(ExchangeData::new(10)),
        answers: Mutex::default(),
        first_page: Mutex::default(),
    });
    let world = world(dir.path(), port, &replay).await;
    let url = format!("https://127.0.0.1:{port}/powershell-liveid");
    // First start writes the listener certificate; the measured starts reuse it.
    {
        let _p = Proxy::spawn(&world);
        while !cert_of(&world).exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_served(&client_trusting(&cert_of(&world)), &url).await;
    }
    let one = vec![Cmd::new("Get-Mailbox", [colon("ResultSize", s("1"))])];
    let mut rows = Vec::new();
    for _ in 0..RUNS {
        let client = client_trusting(&cert_of(&world));
        let spawned = WallClock::now();
        let _p = Proxy::spawn(&world);
        wait_served(&client, &url).await;
        let served = spawned.elapsed();
        let (mut w, _) = Wire::open_client(client, &url, false, "").await;
        let opened = spawned.elapsed();
        let (n, first, _) = run(&mut w, &one).await;
        assert_eq!(n, 1);
        let first = first.unwrap() - spawned;
        rows.push((served, opened, first));
    }
    println!("rest_mode cold start ({RUNS} spawns, listener certificate on disk), ms:");
    for (served, opened, first) in rows {
        println!(
            "  first request served {:6.1}  shell opened (Basic check) {:6.1}  first object (token fetched) {:6.1}",
            served.as_secs_f64() * 1e3,
            opened.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3
        );
    }
}

/// Sessions per local user (the proxy's `max_shells_per_owner`).
const PER_USER: usize = 16;
const SESSIONS: usize = 1_000;
const PAGING: usize = 100;

fn peak_rss_mib(proxy: &Proxy) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.0.id())).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn scale() {
    use futures_util::StreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let replay = Arc::new(Replay {
        data: Arc::new(ExchangeData::new(MAILBOXES)),
        answers: Mutex::default(),
        first_page: Mutex::default(),
    });
    let users: Vec<String> = (0..SESSIONS.div_ceil(PER_USER))
        .map(|i| format!("scale{i:03}"))
        .collect();
    let world = world_with_users(dir.path(), port, &replay, users.clone()).await;
    let proxy = Proxy::spawn(&world);
    let url = format!("https://127.0.0.1:{port}/powershell-liveid");
    while !cert_of(&world).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = client_trusting(&cert_of(&world));
    wait_served(&client, &url).await;
    // Warm-up: token, catalog, the replayed pages.
    {
        let (mut w, _) = Wire::open_client(client.clone(), &url, false, "").await;
        let (n, _, _) = run(&mut w, &get_mailbox()).await;
        assert_eq!(n, MAILBOXES);
        w.close().await;
    }
    // Every user's first Basic check (argon2id, ≈ 19 MiB of scratch each, 32 at once as the
    // opens below) before the baseline, so the growth below is the sessions' alone.
    // From SOAK_HOSTS loopback addresses: the login throttle allows 30 checks per address per
    // minute (a running check counts), so 63 first logins from one address would be refused
    // (`auth-throttled`) and their checks would fall into the opens.
    let after_warm_up = proxy.rss_mib();
    let hosts = loopback_clients(&cert_of(&world), SOAK_HOSTS);
    let refused = futures_util::stream::iter(users.iter().enumerate())
        .map(|(i, user)| {
            let client = hosts[i % hosts.len()].clone();
            let url = url.clone();
            async move {
                support::harness::post_soap(&client, &url, Some((user, PASSWORD)), "", "")
                    .await
                    .headers()
                    .get("x-exo-authproxy-error")
                    .is_some_and(|e| e == "auth-throttled")
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter(|throttled| *throttled)
        .count();
    assert_eq!(refused, 0, "first logins refused by the login throttle");
    let idle = proxy.rss_mib();
    println!(
        "rest_mode scale: proxy RSS after warm-up {after_warm_up:.1} MiB, after each of {} users' \
         first Basic check {idle:.1} MiB",
        users.len()
    );
    let opened = WallClock::now();
    let mut sessions: Vec<Wire<'static>> = futures_util::stream::iter(0..SESSIONS)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            let user = users[i / PER_USER].clone();
            async move {
                let shell = uuid::Uuid::new_v4().to_string().to_uppercase();
                Wire::open_as(client, &url, false, "", (&user, PASSWORD), &shell)
                    .await
                    .0
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let open_time = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_sessions = proxy.rss_mib();
    println!(
        "rest_mode scale: {SESSIONS} rest-mode sessions opened (pool open, idle) in {:.1} s; proxy RSS \
         {idle:.1} MiB before, {with_sessions:.1} MiB after: +{:.1} MiB (≈ {:.1} KiB per session)",
        open_time.as_secs_f64(),
        with_sessions - idle,
        (with_sessions - idle) * 1024.0 / SESSIONS as f64
    );
    let paging: usize = std::env::var("SCALE_PAGING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PAGING);
    if paging == 0 {
        drop(sessions);
        return;
    }
    // `paging` of them page 10,000 mailboxes each, all at once (spread over the users, at
    // most two sessions each, as separate scripts would be).
    let cpu_before = proxy.cpu_seconds();
    let started = WallClock::now();
    sessions.sort_by(|a, b| a.user.0.cmp(&b.user.0));
    let chosen: std::collections::HashSet<usize> = (0..paging)
        .map(|i| (i % users.len()) * PER_USER + i / users.len())
        .collect();
    let (mut picked, rest): (Vec<_>, Vec<_>) = sessions
        .into_iter()
        .enumerate()
        .partition(|(i, _)| chosen.contains(i));
    let sessions = rest;
    let results = futures_util::future::join_all(picked.iter_mut().map(|(_, w)| async move {
        let start = WallClock::now();
        let (n, first, end) = run(w, &get_mailbox()).await;
        (n, first.map(|f| f - start), end - start)
    }))
    .await;
    let wall = started.elapsed();
    let cpu = proxy.cpu_seconds() - cpu_before;
    let complete = results.iter().filter(|(n, _, _)| *n == MAILBOXES).count();
    let mut firsts: Vec<f64> = results
        .iter()
        .filter_map(|(_, f, _)| f.map(|f| f.as_secs_f64() * 1e3))
        .collect();
    firsts.sort_by(f64::total_cmp);
    let mut totals: Vec<f64> = results.iter().map(|(_, _, t)| t.as_secs_f64()).collect();
    totals.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "rest_mode scale: {paging} sessions paging {MAILBOXES} mailboxes each at once: {complete}/{paging} \
         complete with all objects; time to first object p50 {:.0} ms p99 {:.0} ms max {:.0} ms; \
         per-session total p50 {:.1} s max {:.1} s; all done in {:.1} s; proxy CPU {cpu:.1} s \
         ({:.3} s per 10,000 objects); proxy peak RSS (VmHWM) {:.1} MiB",
        pct(&firsts, 0.5),
        pct(&firsts, 0.99),
        firsts.last().copied().unwrap_or(0.0),
        pct(&totals, 0.5),
        totals.last().copied().unwrap_or(0.0),
        wall.as_secs_f64(),
        cpu * 10_000.0 / (paging * MAILBOXES) as f64,
        peak_rss_mib(&proxy)
    );
    drop(sessions);
}

const SOAK_USERS: usize = 100;
const SOAK_SESSIONS: usize = 1_000;
const SOAK_RATE: u32 = 200;
const SOAK_HOSTS: usize = 4;

/// One small command (one object back), run to completion; its latency, or why it failed.
async fn one_command(w: &mut Wire<'static>) -> Result<Duration, String> {
    let started = WallClock::now();
    let cmds = [Cmd::new("Get-Mailbox", [colon("ResultSize", s("1"))])];
    let pid = w.start(&cmds, true).await;
    let mut defrag = Defragmenter::new(1 << 20);
    let mut objects = 0;
    loop {
        let r = w.receive(Some(&pid), "PT30S").await;
        if r.timed_out() {
            continue;
        }
        if r.status != 200 {
            return Err(format!(
                "Receive answered {}: {:?}",
                r.status, r.proxy_error
            ));
        }
        objects += w
            .messages(&r, &mut defrag)
            .iter()
            .filter(|m| m.message_type == MessageType::PipelineOutput)
            .count();
        if r.command_state().as_deref() == Some(exo_authproxy::remoting::wsman::COMMAND_STATE_DONE)
        {
            return if objects == 1 {
                Ok(started.elapsed())
            } else {
                Err(format!("{objects} objects instead of 1"))
            };
        }
    }
}

async fn soak() {
    use futures_util::StreamExt as _;
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let replay = Arc::new(Replay {
        data: Arc::new(ExchangeData::new(MAILBOXES)),
        answers: Mutex::default(),
        first_page: Mutex::default(),
    });
    let users: Vec<String> = (0..SOAK_USERS).map(|i| format!("soak{i:03}")).collect();
    let world = world_with_users(dir.path(), port, &replay, users.clone()).await;
    let mut proxy = Proxy::spawn(&world);
    let url = format!("https://127.0.0.1:{port}/powershell-liveid");
    while !cert_of(&world).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = client_trusting(&cert_of(&world));
    wait_served(&client, &url).await;
    // The users' scripts run on SOAK_HOSTS hosts (127.0.0.1-4): the login throttle allows 30
    // argon2 checks per address per minute, so 100 users' first logins from one address
    // within a minute are refused (`auth-throttled`) — see BENCHMARKS.md "soak".
    let hosts = loopback_clients(&cert_of(&world), SOAK_HOSTS);
    let opened = WallClock::now();
    let sessions: Vec<Wire<'static>> = futures_util::stream::iter(0..SOAK_SESSIONS)
        .map(|i| {
            let user_index = i % SOAK_USERS;
            let client = hosts[user_index % SOAK_HOSTS].clone();
            let url = url.clone();
            let user = users[user_index].clone();
            async move {
                let shell = uuid::Uuid::new_v4().to_string().to_uppercase();
                Wire::open_as(client, &url, false, "", (&user, PASSWORD), &shell)
                    .await
                    .0
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    println!(
        "rest_mode soak: {SOAK_SESSIONS} sessions of {SOAK_USERS} users opened in {:.1} s; proxy RSS {:.1} MiB",
        opened.elapsed().as_secs_f64(),
        proxy.rss_mib()
    );
    let stop = tokio_util::sync::CancellationToken::new();
    // Set before SIGTERM: each poller stops after the answer it is waiting for (the drain's).
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poll_failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Every session keeps a pool Receive outstanding, as a client does.
    let mut pollers = tokio::task::JoinSet::new();
    for w in &sessions {
        let handle = w.same_shell();
        let (stop, failures, polls) = (stop.clone(), poll_failures.clone(), polls.clone());
        let draining = draining.clone();
        pollers.spawn(async move {
            loop {
                let r = tokio::select! {
                    r = handle.receive(None, "PT20S") => r,
                    () = stop.cancelled() => break,
                };
                polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !(r.status == 200 || r.timed_out()) {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if draining.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
        });
    }
    let sessions: Arc<Vec<tokio::sync::Mutex<Wire<'static>>>> =
        Arc::new(sessions.into_iter().map(tokio::sync::Mutex::new).collect());
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut commands = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / SOAK_RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = WallClock::now();
    let mut curve = vec![(0u64, proxy.rss_mib())];
    let mut next_sample = 10;
    let mut sent = 0usize;
    let cpu_before = proxy.cpu_seconds();
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let (task_sessions, task_latencies, task_failures) =
            (sessions.clone(), latencies.clone(), failures.clone());
        let i = sent % SOAK_SESSIONS;
        sent += 1;
        commands.spawn(async move {
            let mut w = task_sessions[i].lock().await;
            match one_command(&mut w).await {
                Ok(d) => task_latencies.lock().unwrap().push(d.as_secs_f64() * 1e3),
                Err(e) => task_failures.lock().unwrap().push(e),
            }
        });
        while let Some(done) = commands.try_join_next() {
            if let Err(e) = done {
                failures.lock().unwrap().push(format!("command task: {e}"));
            }
        }
        let t = started.elapsed().as_secs();
        if t >= next_sample {
            curve.push((t, proxy.rss_mib()));
            next_sample += 10;
        }
    }
    while let Some(done) = commands.join_next().await {
        if let Err(e) = done {
            failures.lock().unwrap().push(format!("command task: {e}"));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = proxy.cpu_seconds() - cpu_before;
    curve.push((started.elapsed().as_secs(), proxy.rss_mib()));
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let failed = failures.lock().unwrap().clone();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "rest_mode soak: {seconds} s, {sent} commands sent ({:.0}/s achieved), {} ok, {} failed;          latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms; pool long-polls answered {} ({} failed);          proxy CPU {cpu:.1} s",
        sent as f64 / wall,
        lat.len(),
        failed.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0),
        polls.load(std::sync::atomic::Ordering::Relaxed),
        poll_failures.load(std::sync::atomic::Ordering::Relaxed),
    );
    for f in failed.iter().take(5) {
        println!("  failure: {f}");
    }
    println!(
        "rest_mode soak: RSS curve (s: MiB): {}",
        curve
            .iter()
            .map(|(t, m)| format!("{t}: {m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // SIGTERM with every long-poll still outstanding: the drain answers them and exits 0.
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    let polls_before_term = polls.load(std::sync::atomic::Ordering::Relaxed);
    let term = WallClock::now();
    let pid = proxy.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::block_in_place(|| proxy.0.wait()).unwrap();
    let drained = term.elapsed();
    let mut panicked = 0;
    while let Some(done) = pollers.join_next().await {
        panicked += usize::from(done.is_err());
    }
    stop.cancel();
    println!(
        "rest_mode soak: SIGTERM with {SOAK_SESSIONS} long-polls outstanding: exited {:?} after {:.2} s; \
         {} long-polls answered during the drain ({} failed, {panicked} cut)",
        status.code(),
        drained.as_secs_f64(),
        polls.load(std::sync::atomic::Ordering::Relaxed) - polls_before_term,
        poll_failures.load(std::sync::atomic::Ordering::Relaxed),
    );
}

fn main() {
    let what = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if what.is_empty() || what == "cpu" {
            cpu().await;
        }
        if what.is_empty() || what == "cold" {
            cold().await;
        }
        if what.is_empty() || what == "scale" {
            scale().await;
        }
        if what == "soak" {
            soak().await;
        }
    });
}
