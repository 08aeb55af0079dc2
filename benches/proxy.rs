//! Added latency per request of the proxy, and memory with 100 open client sessions.
//!
//! `cargo bench --bench proxy` (release profile). The proxy runs in-process between simulated
//! Exchange (real TLS, real token checks, an RPS service answering a fixed envelope) and a
//! keep-alive HTTPS client; the same requests sent straight to simulated Exchange give the
//! baseline, so the difference is what the proxy adds (TLS termination, cached Basic check,
//! cached token, rewrite, a second TLS hop on a pooled connection). Figures go into
//! BENCHMARKS.md section "proxy"; nothing here is asserted.
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

#[path = "../tests/it/support/harness.rs"]
#[allow(unused_imports)]
mod harness;

use std::time::Instant as WallClock; // a benchmark measures wall time, not tokio's clock

use base64::Engine;
use harness::{Harness, Options, PASSWORD, USER};

const ENVELOPE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header><a:MessageID xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">uuid:1</a:MessageID><w:OperationTimeout xmlns:w="x">PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"#;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn timed(n: usize, mut send: impl AsyncFnMut() -> u16) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = WallClock::now();
        let status = send().await;
        assert_eq!(status, 200);
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(f64::total_cmp);
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = Harness::start(Options::default()).await;
        let via_proxy = h.client();
        let direct = {
            let tls = exo_authproxy::forward::client::client_tls(h.config.exchange.ca_file.as_deref()).unwrap();
            reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().unwrap()
        };
        // A real token, as the proxy would send it.
        use exo_authproxy::token::TokenProvider;
        let token = h.tokens.token(&exo_authproxy::config::TenantName("contoso".into())).await.unwrap();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("OAuthUser@0f9c3b1e-1111-2222-3333-444455556666:Bearer {}", token.token.expose()))
        );
        let direct_url = format!(
            "https://127.0.0.1:{}/PowerShell-LiveID?BasicAuthToOAuthConversion=true&email=SystemMailbox%7Bbb558c35-97f1-4cb9-8ff7-d53741dc928c%7D%40contoso.onmicrosoft.com",
            h.exchange_addr.port()
        );
        let n = 2000;
        // Warm both paths (TLS sessions, argon2 cache, token cache, pools).
        for _ in 0..50 {
            let _ = h.post(&via_proxy, Some((USER, PASSWORD)), "", ENVELOPE).await;
            let _ = direct.post(&direct_url).header("authorization", &basic).body(ENVELOPE).send().await.unwrap();
        }
        let base = timed(n, async || {
            direct.post(&direct_url).header("authorization", &basic).body(ENVELOPE).send().await.unwrap().status().as_u16()
        })
        .await;
        let proxied = timed(n, async || h.post(&via_proxy, Some((USER, PASSWORD)), "", ENVELOPE).await.status().as_u16()).await;
        println!("requests: {n} sequential on one keep-alive connection, 1 KiB envelope");
        for (name, v) in [("direct to simulated Exchange", &base), ("through exo-authproxy", &proxied)] {
            println!(
                "{name:32} p50 {:8.0} µs  p90 {:8.0} µs  p99 {:8.0} µs",
                percentile(v, 0.5),
                percentile(v, 0.9),
                percentile(v, 0.99)
            );
        }
        println!(
            "added by the proxy              p50 {:8.0} µs  p90 {:8.0} µs",
            percentile(&proxied, 0.5) - percentile(&base, 0.5),
            percentile(&proxied, 0.9) - percentile(&base, 0.9)
        );

        // 100 open sessions: 100 client connections, each authenticated and forwarded once,
        // kept open (and their pooled upstream connections with them).
        let before = rss_kib();
        let mut clients = Vec::new();
        for _ in 0..100 {
            let c = h.client();
            assert_eq!(h.post(&c, Some((USER, PASSWORD)), "", ENVELOPE).await.status(), 200);
            clients.push(c);
        }
        let with_proxy = rss_kib();
        let mut direct_clients = Vec::new();
        for _ in 0..100 {
            let tls = exo_authproxy::forward::client::client_tls(h.config.exchange.ca_file.as_deref()).unwrap();
            let c = reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().unwrap();
            assert_eq!(c.post(&direct_url).header("authorization", &basic).body(ENVELOPE).send().await.unwrap().status(), 200);
            direct_clients.push(c);
        }
        let with_direct = rss_kib();
        let proxy_path = with_proxy.saturating_sub(before);
        let direct_path = with_direct.saturating_sub(with_proxy);
        println!("RSS of the whole process: {before} KiB before; +{proxy_path} KiB for 100 sessions through the proxy; +{direct_path} KiB for 100 direct sessions");
        println!(
            "proxy's share for 100 open sessions ≈ {} KiB ({} KiB each)",
            proxy_path.saturating_sub(direct_path),
            proxy_path.saturating_sub(direct_path) / 100
        );
        drop((clients, direct_clients));
    });
}
