//! exo-authproxy next to nginx and HAProxy doing the same forwarding job.
//!
//! `cargo bench --bench peers` (release profile; needs `nginx` and `haproxy` on PATH, e.g.
//! `apt-get install nginx-light haproxy`; a missing one is reported and skipped).
//!
//! The job, identical for all three: terminate TLS from a keep-alive client, replace the
//! `Authorization` header with `Basic base64(OAuthUser@tenant:Bearer <token>)`, rewrite the
//! URL to `/PowerShell-LiveID?BasicAuthToOAuthConversion=true&email=…`, and forward over TLS
//! to simulated Exchange, verifying its certificate, on a pooled upstream connection.
//! nginx and HAProxy are given the token as a static header (they cannot get one); the
//! proxy also checks the client's Basic credential (cached after the first argon2 check) and
//! reads its token cache (tokens from simulated Entra), so it does strictly more per request.
//!
//! All three run as their own process (`exo-authproxy serve` is the release binary with the
//! sandbox world's config), with the same listener certificate: nginx with one worker,
//! HAProxy with one thread, the proxy with its default runtime. Simulated Entra, simulated
//! Exchange (real TLS, real token checks, a fixed 200 answer) and the client run in this
//! process. Reported: sequential latency, concurrent throughput, and each process's RSS
//! growth with 100 open client connections. Figures go into BENCHMARKS.md section "peers";
//! nothing here is asserted.

#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as WallClock};

use base64::Engine;
use bytes::Bytes;
use exo_authproxy::sandbox::exchange::RpsService;
use exo_authproxy::sandbox::{AppIdentity, DEMO_USER, World, WorldOptions};
use futures_util::future::BoxFuture;

const PASSWORD: &str = "bench";

const ENVELOPE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><a:MessageID xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">uuid:1</a:MessageID><w:OperationTimeout xmlns:w="x">PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"#;
const QUERY: &str = "BasicAuthToOAuthConversion=true&email=SystemMailbox%7Bbb558c35-97f1-4cb9-8ff7-d53741dc928c%7D%40contoso.onmicrosoft.com";
const SEQUENTIAL: usize = 2000;
const CONCURRENT_CLIENTS: usize = 16;
const PER_CLIENT: usize = 250;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Simulated Exchange's `/PowerShell-LiveID` answering every authorized request with a fixed
/// small SOAP envelope (the tokens are still checked by the simulator in front of it).
struct Fixed;

impl RpsService for Fixed {
    fn handle<'a>(
        &'a self,
        _owner: &'a str,
        _app: AppIdentity,
        _request: http::Request<Bytes>,
    ) -> BoxFuture<'a, http::Response<Bytes>> {
        Box::pin(async {
            let mut rsp = http::Response::new(Bytes::from_static(ENVELOPE.as_bytes()));
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
            );
            rsp
        })
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// RSS of `pid` and its children (nginx's worker, HAProxy's master-less single process).
fn tree_rss_kib(pid: u32) -> u64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    rss_kib(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .map(rss_kib)
            .sum::<u64>()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn nginx(
    dir: &Path,
    port: u16,
    exchange: u16,
    basic: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Peer {
    let d = dir.display();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/nginx-body;
  proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fastcgi;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  upstream exchange {{ server 127.0.0.1:{exchange}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    keepalive_requests 100000;
    location / {{
      rewrite ^ /PowerShell-LiveID?{QUERY} break;
      proxy_pass https://exchange;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "{basic}";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {ca};
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }}
  }}
}}
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start nginx");
    Peer(child)
}

fn haproxy(
    dir: &Path,
    port: u16,
    exchange: u16,
    basic: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Peer {
    let combined = dir.join("haproxy.pem");
    let pem = std::fs::read_to_string(cert).unwrap() + &std::fs::read_to_string(key).unwrap();
    std::fs::write(&combined, pem).unwrap();
    let conf = format!(
        r#"global
  maxconn 1024
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port} ssl crt {combined}
  http-request set-header Authorization "{basic}"
  http-request set-path /PowerShell-LiveID
  http-request set-query "{query}"
  default_backend be
backend be
  server exchange 127.0.0.1:{exchange} ssl verify required ca-file {ca} sni str(localhost) verifyhost localhost
"#,
        combined = combined.display(),
        ca = ca.display(),
        // A log-format string: a literal % is written %%.
        query = QUERY.replace('%', "%%")
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .expect("start haproxy");
    Peer(child)
}

async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

/// `n` sequential requests on one keep-alive connection; sorted latencies in µs.
async fn sequential(client: &reqwest::Client, url: &str, auth: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = WallClock::now();
        let rsp = client
            .post(url)
            .header("authorization", auth)
            .header("content-type", "application/soap+xml;charset=UTF-8")
            .body(ENVELOPE)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200, "{url}");
        let _ = rsp.bytes().await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Requests/s with `CONCURRENT_CLIENTS` keep-alive clients, `PER_CLIENT` requests each.
async fn concurrent(make: &dyn Fn() -> reqwest::Client, url: &str, auth: &str) -> f64 {
    let start = WallClock::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT_CLIENTS {
        let client = make();
        let url = url.to_owned();
        let auth = auth.to_owned();
        tasks.push(tokio::spawn(async move {
            sequential(&client, &url, &auth, PER_CLIENT).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (CONCURRENT_CLIENTS * PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

fn client_trusting(cert: &Path) -> reqwest::Client {
    let tls = exo_authproxy::forward::client::client_tls(Some(cert)).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy_port = free_port();
        let world = World::start(
            dir.path(),
            WorldOptions {
                mode: exo_authproxy::config::Mode::Winrm,
                password: PASSWORD.into(),
                listen: format!("127.0.0.1:{proxy_port}").parse().unwrap(),
                tenants: exo_authproxy::sandbox::demo_tenants(),
                rps: std::sync::Arc::new(Fixed),
                adminapi: None,
                audit_file: false,
                extra_users: Vec::new(),
                compliance_admins: Vec::new(),
            },
        )
        .await
        .unwrap();
        // The token nginx and HAProxy send as a static header.
        let env = std::collections::HashMap::<String, String>::new();
        let engine = exo_authproxy::token::TokenEngine::new(&world.config, &env).unwrap();
        let token = engine
            .token(&exo_authproxy::config::TenantName("contoso".into()))
            .await
            .unwrap();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "OAuthUser@0f9c3b1e-1111-2222-3333-444455556666:Bearer {}",
                token.token.expose()
            ))
        );
        let local = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{DEMO_USER}:{PASSWORD}"))
        );
        let proxy = Peer(
            Command::new(env!("CARGO_BIN_EXE_exo-authproxy"))
                .arg("serve")
                .arg("--config")
                .arg(&world.config_path)
                .env("EXO_AUTHPROXY_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("start exo-authproxy serve"),
        );
        wait_listening(proxy_port).await;
        let cert = world
            .config
            .state_dir
            .join(exo_authproxy::listener::tls::GENERATED_CERT);
        let key = cert.with_file_name(exo_authproxy::listener::tls::GENERATED_KEY);
        let ca = world.ca_file.clone();
        let exchange = world.exchange_addr.port();
        let direct = client_trusting(&ca);
        let direct_url = format!("https://127.0.0.1:{exchange}/PowerShell-LiveID?{QUERY}");

        let mut paths: Vec<(String, String, String, Option<Peer>)> = vec![
            ("direct to simulated Exchange".into(), direct_url.clone(), basic.clone(), None),
            (
                "exo-authproxy serve".into(),
                format!("https://127.0.0.1:{proxy_port}/powershell-liveid"),
                local.clone(),
                Some(proxy),
            ),
        ];
        let dir = dir.path();
        if on_path("nginx") {
            let port = free_port();
            let peer = nginx(dir, port, exchange, &basic, &cert, &key, &ca);
            wait_listening(port).await;
            paths.push((
                "nginx (static token)".into(),
                format!("https://127.0.0.1:{port}/powershell-liveid"),
                local.clone(),
                Some(peer),
            ));
        } else {
            println!("nginx not on PATH: skipped");
        }
        if on_path("haproxy") {
            let port = free_port();
            let peer = haproxy(dir, port, exchange, &basic, &cert, &key, &ca);
            wait_listening(port).await;
            paths.push((
                "HAProxy (static token)".into(),
                format!("https://127.0.0.1:{port}/powershell-liveid"),
                local.clone(),
                Some(peer),
            ));
        } else {
            println!("haproxy not on PATH: skipped");
        }

        println!(
            "sequential: {SEQUENTIAL} requests on one keep-alive connection; concurrent: {CONCURRENT_CLIENTS} clients × {PER_CLIENT} requests; memory: 100 open connections"
        );
        let mut base_p50 = 0.0;
        for (name, url, auth, peer) in &paths {
            let make = || if url == &direct_url { direct.clone() } else { client_trusting(&cert) };
            let client = make();
            let _ = sequential(&client, url, auth, 100).await; // warm: TLS, pools, caches
            let v = sequential(&client, url, auth, SEQUENTIAL).await;
            let rps = concurrent(&make, url, auth).await;
            let p50 = percentile(&v, 0.5);
            if url == &direct_url {
                base_p50 = p50;
            }
            let memory = match peer {
                Some(Peer(child)) => {
                    let before = tree_rss_kib(child.id());
                    let mut open = Vec::new();
                    for _ in 0..100 {
                        let c = make();
                        let _ = sequential(&c, url, auth, 1).await;
                        open.push(c);
                    }
                    let after = tree_rss_kib(child.id());
                    drop(open);
                    format!(
                        "RSS {before} KiB, +{} KiB with 100 connections",
                        after.saturating_sub(before)
                    )
                }
                None => String::new(),
            };
            println!(
                "{name:30} p50 {:6.0} µs  p90 {:6.0} µs  p99 {:6.0} µs  added p50 {:+6.0} µs  concurrent {:7.0} req/s  {memory}",
                p50,
                percentile(&v, 0.9),
                percentile(&v, 0.99),
                p50 - base_p50,
                rps
            );
        }
        drop(world);
    });
}
