//! Token engine benchmarks (issue #3): cached lookup cost per call, and 10,000 concurrent cold
//! callers → one token request. Plain std timing, no framework: the figures are coarse
//! (p50 of batch means) and go into BENCHMARKS.md with the machine and command.
//!
//! Run: `cargo bench --bench token`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use exo_authproxy::config::{Config, TenantName};
use exo_authproxy::sandbox::entra::{App, EntraSim, RegisteredCertificate};
use exo_authproxy::sandbox::pki::{AppCertificate, TestCa};
use exo_authproxy::secret::Secret;
use exo_authproxy::token::claims::EXCHANGE_ADMINISTRATOR;
use exo_authproxy::token::{
    AccessToken, CacheKey, Diagnosis, Fetched, Settings, TokenCache, TokenEngine, TokenError,
    TokenSource,
};
use futures_util::future::BoxFuture;

const CLIENT: &str = "7a3c1f0e-1234-4abc-9def-0123456789ab";
const TENANT: &str = "0f9c3b1e-1111-2222-3333-444455556666";

struct Fixed {
    calls: AtomicU32,
    delay: Duration,
    token: String,
}

impl TokenSource for Fixed {
    fn fetch<'a>(&'a self, _key: &'a CacheKey) -> BoxFuture<'a, Result<Fetched, TokenError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            Ok(Fetched {
                token: AccessToken {
                    token: Secret::new(self.token.clone()),
                    expires_at: SystemTime::now() + Duration::from_secs(3599),
                    uti: Some("bench".into()),
                    diagnosis: Diagnosis::Ready,
                },
                lifetime: Duration::from_secs(3599),
                refresh_in: None,
            })
        })
    }
}

fn key() -> CacheKey {
    CacheKey {
        audience: exo_authproxy::token::Audience::Exchange,
        authority: "https://login.microsoftonline.com".into(),
        tenant: TenantName::from("contoso"),
        client_id: CLIENT.into(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn cached_lookup(rt: &tokio::runtime::Runtime) {
    // A realistic token size (Exchange tokens are ~1.5-2 KiB).
    let source = Fixed {
        calls: AtomicU32::new(0),
        delay: Duration::ZERO,
        token: "x".repeat(1800),
    };
    let cache = TokenCache::new(source, Settings::default());
    let key = key();
    rt.block_on(async {
        cache.acquire(&key).await.unwrap();
        const BATCH: u32 = 1000;
        let mut means = Vec::new();
        for _ in 0..2000 {
            let start = Instant::now();
            for _ in 0..BATCH {
                std::hint::black_box(cache.acquire(&key).await.unwrap());
            }
            means.push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
        means.sort_by(f64::total_cmp);
        println!(
            "cached lookup (TokenCache::acquire, 1.8 KiB token clone): p50 {:.0} ns, p90 {:.0} ns, p99 {:.0} ns per call ({} batches of {BATCH})",
            percentile(&means, 0.5),
            percentile(&means, 0.9),
            percentile(&means, 0.99),
            means.len()
        );
        assert_eq!(cache.source().calls.load(Ordering::SeqCst), 1);
    });
}

fn cold_callers_scripted(rt: &tokio::runtime::Runtime) {
    let source = Fixed {
        calls: AtomicU32::new(0),
        delay: Duration::from_millis(50),
        token: "t".into(),
    };
    let cache = TokenCache::new(source, Settings::default());
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.acquire(&key()).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        println!(
            "10,000 concurrent cold callers, scripted source (50 ms fetch): {} fetch(es), all served in {:.1} ms",
            cache.source().calls.load(Ordering::SeqCst),
            start.elapsed().as_secs_f64() * 1000.0
        );
    });
}

fn cold_callers_simulated_entra(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let ca = TestCa::new("bench CA").unwrap();
        let entra = EntraSim::new().unwrap();
        let app = AppCertificate::generate("bench app").unwrap();
        entra.register_app(App {
            client_id: CLIENT.into(),
            display_name: "bench".into(),
            certificates: vec![RegisteredCertificate::from(&app)],
            ..App::default()
        });
        entra.assign_role(TENANT, CLIENT, EXCHANGE_ADMINISTRATOR);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = entra.spawn(listener, ca.loopback_server_config().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        app.write_to(dir.path(), "app", "x").unwrap();
        let text = format!(
            "state_dir = \"s\"\n[listen]\naddress = \"127.0.0.1:0\"\n[entra]\nauthority = \"{}\"\n\
             client_id = \"{CLIENT}\"\nca_file = \"ca.pem\"\ncertificate = \"app.pem\"\n\
             private_key = \"app-key.pem\"\n[exchange]\nendpoint = \"https://127.0.0.1:1\"\n\
             [[tenant]]\nname = \"contoso\"\ntenant_id = \"{TENANT}\"\norganization = \"contoso.onmicrosoft.com\"\n",
            handle.authority
        );
        let config = Config::parse(&text, &dir.path().join("c.toml")).unwrap();
        let engine = Arc::new(TokenEngine::new(&config, &BTreeMap::<String, String>::new()).unwrap());
        let start = Instant::now();
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.token(&TenantName::from("contoso")).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let cold = start.elapsed();
        let start = Instant::now();
        let n = 100_000;
        for _ in 0..n {
            std::hint::black_box(engine.token(&TenantName::from("contoso")).await.unwrap());
        }
        let warm = start.elapsed();
        println!(
            "10,000 concurrent cold callers, simulated Entra over TLS (sign assertion, verify, mint): {} token request(s), all served in {:.1} ms",
            entra.token_requests(TENANT),
            cold.as_secs_f64() * 1000.0
        );
        println!(
            "TokenEngine::token warm (name lookup + cache): mean {:.0} ns per call over {n} calls",
            warm.as_nanos() as f64 / f64::from(n)
        );
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    cached_lookup(&rt);
    cold_callers_scripted(&rt);
    cold_callers_simulated_entra(&rt);
}
