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
//! reads its token cache, so it does strictly more per request. Simulated Exchange (real TLS,
//! real token checks) and the client run in this process for all three; nginx gets one
//! worker process and HAProxy one thread, the proxy runs on this process's 2-thread runtime.
//! Figures go into BENCHMARKS.md section "peers"; nothing here is asserted.
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

#[path = "../tests/it/support/harness.rs"]
#[allow(unused_imports)]
mod harness;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as WallClock};

use base64::Engine;
use harness::{Harness, Options, PASSWORD, USER};

const ENVELOPE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><a:MessageID xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">uuid:1</a:MessageID><w:OperationTimeout xmlns:w="x">PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"#;
const QUERY: &str = "BasicAuthToOAuthConversion=true&email=SystemMailbox%7Bbb558c35-97f1-4cb9-8ff7-d53741dc928c%7D%40contoso.onmicrosoft.com";
const SEQUENTIAL: usize = 2000;
const CONCURRENT_CLIENTS: usize = 16;
const PER_CLIENT: usize = 250;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = Harness::start(Options::default()).await;
        use exo_authproxy::forward::TokenSource;
        let token = h
            .tokens
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
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let ca = h.config.exchange.ca_file.clone().expect("the harness trusts its CA");
        let cert = h.listener_cert.clone();
        let key = cert.with_file_name(exo_authproxy::listener::tls::GENERATED_KEY);
        let exchange = h.exchange_addr.port();
        let direct = {
            let tls = exo_authproxy::forward::winrm::client_tls(Some(&ca)).unwrap();
            reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().unwrap()
        };
        let direct_url = format!("https://127.0.0.1:{exchange}/PowerShell-LiveID?{QUERY}");

        let mut paths: Vec<(String, String, String, Option<Peer>)> = vec![
            ("direct to simulated Exchange".into(), direct_url.clone(), basic.clone(), None),
            ("exo-authproxy".into(), h.url.clone(), local.clone(), None),
        ];
        let dir = h.dir.path();
        if on_path("nginx") {
            let port = free_port();
            let peer = nginx(dir, port, exchange, &basic, &cert, &key, &ca);
            wait_listening(port).await;
            paths.push(("nginx (static token)".into(), format!("https://127.0.0.1:{port}/powershell-liveid"), local.clone(), Some(peer)));
        } else {
            println!("nginx not on PATH: skipped");
        }
        if on_path("haproxy") {
            let port = free_port();
            let peer = haproxy(dir, port, exchange, &basic, &cert, &key, &ca);
            wait_listening(port).await;
            paths.push(("HAProxy (static token)".into(), format!("https://127.0.0.1:{port}/powershell-liveid"), local.clone(), Some(peer)));
        } else {
            println!("haproxy not on PATH: skipped");
        }

        println!(
            "sequential: {SEQUENTIAL} requests on one keep-alive connection; concurrent: {CONCURRENT_CLIENTS} clients × {PER_CLIENT} requests"
        );
        let mut base_p50 = 0.0;
        for (name, url, auth, _) in &paths {
            let client = if url == &direct_url { direct.clone() } else { h.client() };
            let _ = sequential(&client, url, auth, 100).await; // warm: TLS, pools, caches
            let v = sequential(&client, url, auth, SEQUENTIAL).await;
            let make = || if url == &direct_url { direct.clone() } else { h.client() };
            let rps = concurrent(&make, url, auth).await;
            let p50 = percentile(&v, 0.5);
            if url == &direct_url {
                base_p50 = p50;
            }
            println!(
                "{name:30} p50 {:6.0} µs  p90 {:6.0} µs  p99 {:6.0} µs  added p50 {:+6.0} µs  concurrent {:7.0} req/s",
                p50,
                percentile(&v, 0.9),
                percentile(&v, 0.99),
                p50 - base_p50,
                rps
            );
        }
    });
}
