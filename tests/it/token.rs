//! Token engine against the simulated Entra ID (real TLS on 127.0.0.1:0), and the cache's
//! timing through its seam under paused time (issue #3, Tests).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use exo_authproxy::config::{Config, TenantName};
use exo_authproxy::onboarding;
use exo_authproxy::sandbox::entra::{
    App, EntraSim, FederatedIssuer, RegisteredCertificate, SimHandle,
};
use exo_authproxy::sandbox::pki::{AppCertificate, AppCertificateFiles, TestCa};
use exo_authproxy::secret::Secret;
use exo_authproxy::token::claims::EXCHANGE_ADMINISTRATOR;
use exo_authproxy::token::{
    AccessToken, CacheKey, Diagnosis, Fetched, Settings, TokenCache, TokenEngine, TokenError,
    TokenSource,
};
use futures_util::future::BoxFuture;
use http::StatusCode;
use tokio::time::Instant;

const CLIENT: &str = "7a3c1f0e-1234-4abc-9def-0123456789ab";
const CONTOSO: &str = "0f9c3b1e-1111-2222-3333-444455556666";
const FABRIKAM: &str = "6f1d2c3b-aaaa-bbbb-cccc-111122223333";
const NORTHWIND: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "s3cr3t-value-Q~abcdefghijklmnop";
const PFX_PASSWORD: &str = "pfx-pass-word-42";

struct Sim {
    entra: EntraSim,
    handle: SimHandle,
    dir: tempfile::TempDir,
    app: AppCertificate,
    _files: AppCertificateFiles,
}

/// Simulated Entra with the app registered (certificate + secret), contoso consented with
/// Exchange Administrator, fabrikam consented without a directory role, northwind existing
/// but not consented.
async fn start() -> Sim {
    let ca = TestCa::new("test CA").unwrap();
    let entra = EntraSim::new().unwrap();
    let app = AppCertificate::generate("exo-authproxy test app").unwrap();
    entra.register_app(App {
        client_id: CLIENT.into(),
        display_name: "test app".into(),
        certificates: vec![RegisteredCertificate::from(&app)],
        secrets: vec![Secret::new(SECRET.into())],
        federated: vec![],
    });
    entra.add_tenant(CONTOSO);
    entra.assign_role(CONTOSO, CLIENT, EXCHANGE_ADMINISTRATOR);
    entra.consent(FABRIKAM, CLIENT, true);
    entra.add_tenant(NORTHWIND);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = entra
        .spawn(listener, ca.loopback_server_config().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let files = app.write_to(dir.path(), "app", PFX_PASSWORD).unwrap();
    Sim {
        entra,
        handle,
        dir,
        app,
        _files: files,
    }
}

impl Sim {
    fn config(&self, credentials: &str, tenants: &[(&str, &str, &str)]) -> Config {
        let mut text = format!(
            r#"state_dir = "state"
[listen]
address = "127.0.0.1:0"
[entra]
authority = "{}"
client_id = "{CLIENT}"
ca_file = "ca.pem"
{credentials}
[exchange]
mode = "rest"
endpoint = "https://127.0.0.1:1"
"#,
            self.handle.authority
        );
        for (name, id, extra) in tenants {
            text.push_str(&format!(
                "[[tenant]]\nname = \"{name}\"\ntenant_id = \"{id}\"\norganization = \"{name}.onmicrosoft.com\"\n{extra}\n"
            ));
        }
        Config::parse(&text, &self.dir.path().join("exo-authproxy.toml")).unwrap()
    }

    fn pem(&self) -> &'static str {
        "certificate = \"app.pem\"\nprivate_key = \"app-key.pem\""
    }
}

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("EXO_SECRET".to_string(), SECRET.to_string()),
        ("EXO_PFX".to_string(), PFX_PASSWORD.to_string()),
        ("WRONG_SECRET".to_string(), "not-the-secret".to_string()),
    ])
}

fn contoso() -> TenantName {
    TenantName::from("contoso")
}

async fn ready_token(sim: &Sim, credentials: &str) -> AccessToken {
    let config = sim.config(credentials, &[("contoso", CONTOSO, "")]);
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let token = engine.token(&contoso()).await.unwrap();
    assert_eq!(token.diagnosis, Diagnosis::Ready, "{:?}", token.diagnosis);
    assert!(token.uti.is_some());
    assert!(token.expires_at > SystemTime::now() + Duration::from_secs(3000));
    // The token verifies with the simulator's published key and says what Exchange needs.
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["https://outlook.office365.com"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token.token.expose(),
        &sim.entra.decoding_key(),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["tid"], CONTOSO);
    assert_eq!(data.claims["appid"], CLIENT);
    assert_eq!(data.header.kid.as_deref(), Some(sim.entra.kid()));
    assert_eq!(sim.entra.token_requests(CONTOSO), 1);
    token
}

#[tokio::test]
async fn certificate_and_key_in_two_pem_files_get_a_ready_token() {
    let sim = start().await;
    let token = ready_token(&sim, sim.pem()).await;
    let claims = exo_authproxy::token::claims::Claims::decode(token.token.expose()).unwrap();
    assert_eq!(claims.directory_roles(), ["Exchange Administrator"]);
}

#[tokio::test]
async fn certificate_and_key_in_one_pem_file_get_a_token() {
    let sim = start().await;
    ready_token(&sim, "certificate = \"app-combined.pem\"").await;
}

#[tokio::test]
async fn pfx_with_password_from_the_environment_gets_a_token() {
    let sim = start().await;
    ready_token(&sim, "pfx = \"app.pfx\"\npfx_password_env = \"EXO_PFX\"").await;
}

#[tokio::test]
async fn client_secret_from_the_environment_gets_a_token() {
    let sim = start().await;
    ready_token(&sim, "client_secret_env = \"EXO_SECRET\"").await;
}

#[tokio::test]
async fn pfx_with_the_wrong_password_is_a_credential_error_for_that_tenant() {
    let sim = start().await;
    let config = sim.config(
        "pfx = \"app.pfx\"\npfx_password_env = \"WRONG_SECRET\"",
        &[("contoso", CONTOSO, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine.token(&contoso()).await.unwrap_err().to_string();
    assert!(err.starts_with("tenant contoso: credential: "), "{err}");
    assert!(err.contains("app.pfx: cannot open it"), "{err}");
    assert!(
        err.contains("check the password in pfx_password_env"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");
    assert_eq!(sim.entra.total_token_requests(), 0);
}

#[tokio::test]
async fn federated_token_file_is_read_again_for_every_request() {
    let sim = start().await;
    let issuer = FederatedIssuer::new("https://oidc.example/cluster").unwrap();
    let subject = "system:serviceaccount:exo:authproxy";
    let mut app = App {
        client_id: CLIENT.into(),
        display_name: "test app".into(),
        ..App::default()
    };
    app.federated.push(issuer.credential(subject));
    sim.entra.register_app(app);
    let file = sim.dir.path().join("azure-identity-token");
    std::fs::write(&file, issuer.mint(subject, 0, 3600)).unwrap();
    let config = sim.config(
        "federated_token_file = \"azure-identity-token\"",
        &[("contoso", CONTOSO, "")],
    );
    // Every forced refresh asks Entra here (no rate limit): the file is what is tested.
    let settings = Settings {
        forced_refresh_interval: Duration::ZERO,
        ..Settings::default()
    };
    let engine = TokenEngine::with_settings(&config, &env(), settings).unwrap();
    assert_eq!(
        engine.token(&contoso()).await.unwrap().diagnosis,
        Diagnosis::Ready
    );

    // Kubernetes rotated the file, and this one has expired: the next request reads it.
    std::fs::write(&file, issuer.mint(subject, 7200, 3600)).unwrap();
    let err = engine.refresh(&contoso()).await.unwrap_err().to_string();
    assert!(err.contains("AADSTS700024"), "{err}");
    assert!(err.contains("azure-identity-token has expired"), "{err}");

    std::fs::write(&file, issuer.mint(subject, 0, 3600)).unwrap();
    engine.refresh(&contoso()).await.unwrap();
    assert_eq!(sim.entra.token_requests(CONTOSO), 3);

    std::fs::write(
        &file,
        issuer.mint("system:serviceaccount:other:sa", 0, 3600),
    )
    .unwrap();
    let err = engine.refresh(&contoso()).await.unwrap_err().to_string();
    assert!(err.contains("AADSTS700213"), "{err}");
    assert!(err.contains("no federated credential on app"), "{err}");
}

#[tokio::test]
async fn certificate_not_uploaded_names_the_thumbprint_to_upload() {
    let sim = start().await;
    let other = AppCertificate::generate("not uploaded").unwrap();
    let files = other.write_to(sim.dir.path(), "other", "x").unwrap();
    let config = sim.config(
        "certificate = \"other.pem\"\nprivate_key = \"other-key.pem\"",
        &[("contoso", CONTOSO, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine.token(&contoso()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, TokenError::Rejected(r) if r.status == 401 && r.code == Some(700027)),
        "{text}"
    );
    let expect = format!(
        "Entra ID rejected app {CLIENT} (AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application."
    );
    assert!(text.contains(&expect), "{text}");
    assert!(
        text.contains(&format!(
            "upload {} (thumbprint {}) to app {CLIENT}",
            files.certificate.display(),
            other.thumbprint()
        )),
        "{text}"
    );
    assert!(text.contains("trace id "), "{text}");
    assert_ne!(other.thumbprint(), sim.app.thumbprint());
    // A configuration error is not retried.
    assert_eq!(sim.entra.token_requests(CONTOSO), 1);
}

#[tokio::test]
async fn unknown_tenant_says_it_does_not_exist_at_the_authority() {
    let sim = start().await;
    let missing = "99999999-9999-4999-8999-999999999999";
    let config = sim.config(sim.pem(), &[("ghost", missing, "")]);
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine.token(&"ghost".into()).await.unwrap_err().to_string();
    assert!(
        err.contains("AADSTS90002: Tenant '99999999-9999-4999-8999-999999999999' not found"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "tenant {missing} does not exist at {}: check tenant_id of [[tenant]] ghost",
            sim.handle.authority
        )),
        "{err}"
    );
}

#[tokio::test]
async fn unconsented_tenant_gives_the_admin_consent_url() {
    let sim = start().await;
    let config = sim.config(sim.pem(), &[("northwind", NORTHWIND, "")]);
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine
        .token(&"northwind".into())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AADSTS700016"), "{err}");
    assert!(
        err.contains(&format!(
            "have an administrator of northwind grant admin consent: {}/{NORTHWIND}/adminconsent?client_id={CLIENT}&scope=https://outlook.office365.com/.default",
            sim.handle.authority
        )),
        "{err}"
    );
}

#[tokio::test]
async fn bad_client_secret_says_to_paste_the_value_not_the_id() {
    let sim = start().await;
    let config = sim.config(
        "client_secret_env = \"WRONG_SECRET\"",
        &[("contoso", CONTOSO, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine.token(&contoso()).await.unwrap_err().to_string();
    assert!(
        err.contains("AADSTS7000215: Invalid client secret provided"),
        "{err}"
    );
    assert!(
        err.contains("the client secret in $WRONG_SECRET is wrong for app 7a3c1f0e-1234-4abc-9def-0123456789ab: paste the secret's *Value*, not its Secret ID"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_cause_one_token_request() {
    let sim = start().await;
    sim.entra.set_latency(Duration::from_millis(200));
    let config = sim.config(sim.pem(), &[("contoso", CONTOSO, "")]);
    let engine = Arc::new(TokenEngine::new(&config, &env()).unwrap());
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.token(&contoso()).await.map(|t| t.uti) })
        })
        .collect();
    let mut utis = std::collections::HashSet::new();
    for t in tasks {
        utis.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(utis.len(), 1, "every caller got the same token");
    assert_eq!(sim.entra.token_requests(CONTOSO), 1);
}

#[tokio::test]
async fn one_tenant_failing_leaves_the_others_working() {
    let sim = start().await;
    let config = sim.config(
        sim.pem(),
        &[
            ("contoso", CONTOSO, ""),
            ("northwind", NORTHWIND, ""),
            (
                "fabrikam",
                FABRIKAM,
                "client_secret_env = \"UNSET_VARIABLE\"",
            ),
        ],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    sim.entra.fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    let (northwind, fabrikam) = (TenantName::from("northwind"), TenantName::from("fabrikam"));
    let contoso = contoso();
    let (a, b, c) = tokio::join!(
        engine.token(&northwind),
        engine.token(&fabrikam),
        engine.token(&contoso),
    );
    assert!(a.unwrap_err().to_string().contains("AADSTS700016"));
    assert_eq!(
        b.unwrap_err().to_string(),
        "tenant fabrikam: credential: environment variable UNSET_VARIABLE (the app's client \
         secret) is not set; set it or change client_secret_env in the config"
    );
    assert_eq!(c.unwrap().diagnosis, Diagnosis::Ready);
}

#[tokio::test]
async fn entra_503_and_429_are_retried_and_retry_after_is_honoured() {
    let sim = start().await;
    let config = sim.config(sim.pem(), &[("contoso", CONTOSO, "")]);
    let engine = TokenEngine::new(&config, &env()).unwrap();
    sim.entra.fail_next(1, StatusCode::SERVICE_UNAVAILABLE);
    engine.token(&contoso()).await.unwrap();
    assert_eq!(sim.entra.token_requests(CONTOSO), 2);

    sim.entra.throttle_next(1, 1);
    let started = Instant::now();
    engine.refresh(&contoso()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(sim.entra.token_requests(CONTOSO), 4);

    sim.entra.fail_next(10, StatusCode::BAD_GATEWAY);
    let settings = Settings {
        backoff_base: Duration::from_millis(1),
        ..Settings::default()
    };
    let engine = TokenEngine::with_settings(&config, &env(), settings).unwrap();
    let err = engine.token(&contoso()).await.unwrap_err().to_string();
    assert!(
        err.contains("unavailable after 4 attempt(s): HTTP 502 Bad Gateway: AADSTS90033"),
        "{err}"
    );
}

#[tokio::test]
async fn a_token_without_a_directory_role_names_the_role_to_assign() {
    let sim = start().await;
    let config = sim.config(
        sim.pem(),
        &[("contoso", CONTOSO, ""), ("fabrikam", FABRIKAM, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let Diagnosis::Warning(text) = engine.token(&"fabrikam".into()).await.unwrap().diagnosis else {
        panic!("expected a warning");
    };
    assert!(text.contains(&format!("tenant fabrikam: the token of app {CLIENT} carries no supported directory role: assign Exchange Administrator to the app's service principal in fabrikam (Entra admin center → Roles and administrators → Exchange Administrator → Add assignment), or give it an Exchange role group")), "{text}");

    // `check` prints both and passes: a warning alone does not fail it.
    let mut out = Vec::new();
    let ready = onboarding::check(&config, &env(), None, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(ready, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TENANT           TOKEN    ROLES"),
        "{out}"
    );
    assert!(
        lines[1]
            .starts_with("contoso          ok       Exchange.ManageAsApp   Exchange Administrator"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("fabrikam         warning  Exchange.ManageAsApp   none"),
        "{out}"
    );
    assert!(
        out.contains("fabrikam (warning): tenant fabrikam: the token of app"),
        "{out}"
    );
    assert!(out.ends_with("all tenants ready\n"), "{out}");

    // Once the role is assigned, check (which forces a fresh token) shows it at once.
    sim.entra
        .assign_role(FABRIKAM, CLIENT, EXCHANGE_ADMINISTRATOR);
    let mut out = Vec::new();
    onboarding::check(&config, &env(), Some(&"fabrikam".into()), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("fabrikam         ok "), "{out}");
}

#[tokio::test]
async fn check_fails_for_an_unconsented_tenant_and_consent_url_says_what_to_do() {
    let sim = start().await;
    let config = sim.config(
        sim.pem(),
        &[("contoso", CONTOSO, ""), ("northwind", NORTHWIND, "")],
    );
    let mut out = Vec::new();
    let ready = onboarding::check(&config, &env(), None, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!ready, "{out}");
    assert!(out.contains("northwind        error    -"), "{out}");
    assert!(
        out.contains("northwind (error): tenant northwind: Entra ID rejected app"),
        "{out}"
    );
    let text = onboarding::consent_url(&config, &"northwind".into()).unwrap();
    assert!(
        text.contains(&format!(
            "{}/{NORTHWIND}/adminconsent?client_id={CLIENT}",
            sim.handle.authority
        )),
        "{text}"
    );
    assert!(
        text.contains("Exchange Administrator → Add assignments"),
        "{text}"
    );
    let err = onboarding::consent_url(&config, &"nope".into())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "tenant nope is not configured; [[tenant]] names are contoso, northwind"
    );
}

#[tokio::test]
async fn token_command_prints_claims_and_the_token_only_when_raw() {
    let sim = start().await;
    let config = sim.config(sim.pem(), &[("contoso", CONTOSO, "")]);
    let mut out = Vec::new();
    onboarding::token(&config, &env(), &contoso(), false, &mut out)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["claims"]["tid"], CONTOSO);
    assert_eq!(doc["claims"]["roles"][0], "Exchange.ManageAsApp");
    assert_eq!(doc["directory_roles"][0], "Exchange Administrator");
    assert_eq!(doc["diagnosis"]["verdict"], "ready");
    assert!(
        !String::from_utf8_lossy(&out).contains("eyJ"),
        "no token without --raw"
    );
    let mut raw = Vec::new();
    onboarding::token(&config, &env(), &contoso(), true, &mut raw)
        .await
        .unwrap();
    assert!(raw.starts_with(b"eyJ"));
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    // Every thread's log output at every level (the harness's one global subscriber): other
    // tests' lines landing here too only widen what is checked.
    let (capture, _guard) = crate::support::harness::Logs::capture_all();

    let sim = start().await;
    let mut tokens = Vec::new();
    for creds in [
        sim.pem(),
        "client_secret_env = \"EXO_SECRET\"",
        "pfx = \"app.pfx\"\npfx_password_env = \"EXO_PFX\"",
    ] {
        let config = sim.config(
            creds,
            &[("contoso", CONTOSO, ""), ("fabrikam", FABRIKAM, "")],
        );
        let engine = TokenEngine::new(&config, &env()).unwrap();
        let t = engine.token(&contoso()).await.unwrap();
        tracing::info!(token = ?t, "debug print of a token");
        tokens.push(t.token.expose().clone());
        let mut out = Vec::new();
        onboarding::check(&config, &env(), None, &mut out)
            .await
            .unwrap();
    }
    let config = sim.config(
        "client_secret_env = \"WRONG_SECRET\"",
        &[("contoso", CONTOSO, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let _ = engine.token(&contoso()).await;

    let log = capture.text();
    assert!(log.contains("token issued"), "the capture works: {log}");
    assert!(log.contains("<redacted>"), "{log}");
    let key_line = sim.app.key_pem.expose().lines().nth(1).unwrap().to_owned();
    for secret in [SECRET, PFX_PASSWORD, "not-the-secret", key_line.as_str()] {
        assert!(!log.contains(secret), "{secret:?} leaked into the log");
    }
    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token leaked into the log");
    }
}

// ---- cache timing through the seam, paused time, no sockets ----

const HOUR: Duration = Duration::from_secs(3600);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

type Step = Result<(&'static str, Duration), TokenError>;

/// A token source that plays a script, taking `delay` per fetch.
struct Scripted {
    steps: Mutex<VecDeque<Step>>,
    calls: AtomicU32,
    delay: Duration,
}

impl Scripted {
    fn new(steps: Vec<Step>, delay: Duration) -> Self {
        Self {
            steps: Mutex::new(steps.into()),
            calls: AtomicU32::new(0),
            delay,
        }
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for Scripted {
    fn fetch<'a>(&'a self, _key: &'a CacheKey) -> BoxFuture<'a, Result<Fetched, TokenError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let step = self
                .steps
                .lock()
                .unwrap()
                .pop_front()
                .expect("script exhausted");
            step.map(|(name, lifetime)| Fetched {
                token: AccessToken {
                    token: Secret::new(name.to_owned()),
                    expires_at: SystemTime::now() + lifetime,
                    uti: Some(name.to_owned()),
                    diagnosis: Diagnosis::Ready,
                },
                lifetime,
                refresh_in: None,
            })
        })
    }
}

fn unavailable(retry_after: Option<Duration>) -> TokenError {
    TokenError::Unavailable {
        tenant: contoso(),
        url: "https://login.example/t/oauth2/v2.0/token".into(),
        status: Some(if retry_after.is_some() { 429 } else { 503 }),
        reason: "HTTP 503".into(),
        retry_after,
        attempts: 1,
    }
}

fn key() -> CacheKey {
    CacheKey {
        audience: exo_authproxy::token::Audience::Exchange,
        authority: "https://login.example".into(),
        tenant: contoso(),
        client_id: CLIENT.into(),
    }
}

fn one_attempt() -> Settings {
    Settings {
        max_attempts: 1,
        ..Settings::default()
    }
}

async fn name(cache: &TokenCache<Scripted>) -> Result<String, TokenError> {
    cache
        .acquire(&key())
        .await
        .map(|t| t.token.expose().clone())
}

#[tokio::test(start_paused = true)]
async fn refresh_happens_ahead_of_expiry_without_a_caller_waiting() {
    let source = Scripted::new(vec![Ok(("first", HOUR)), Ok(("second", HOUR))], 10 * SECOND);
    let cache = TokenCache::new(source, Settings::default());
    assert_eq!(name(&cache).await.unwrap(), "first");
    // Entry times count from the fetch's completion (10 s in).
    tokio::time::sleep(HOUR / 2 - SECOND).await; // just before half-life
    assert_eq!(name(&cache).await.unwrap(), "first");
    assert_eq!(cache.source().calls(), 1);
    tokio::time::sleep(2 * SECOND).await; // past half-life
    let asked = Instant::now();
    assert_eq!(
        name(&cache).await.unwrap(),
        "first",
        "served at once while refreshing"
    );
    assert_eq!(
        Instant::now(),
        asked,
        "the caller did not wait for the refresh"
    );
    tokio::time::sleep(11 * SECOND).await; // the background fetch completes
    assert_eq!(cache.source().calls(), 2);
    assert_eq!(name(&cache).await.unwrap(), "second");
}

#[tokio::test(start_paused = true)]
async fn failed_refreshes_keep_serving_the_token_until_five_minutes_before_expiry() {
    let mut steps: Vec<Step> = vec![Ok(("first", HOUR))];
    steps.extend((0..20).map(|_| Err(unavailable(None))));
    let cache = TokenCache::new(Scripted::new(steps, Duration::ZERO), one_attempt());
    assert_eq!(name(&cache).await.unwrap(), "first");
    tokio::time::sleep(HOUR / 2 + SECOND).await;
    // Entra is down from here on: every call until 55 min still gets the token.
    let mut t = HOUR / 2 + SECOND;
    while t < HOUR - 5 * MINUTE - SECOND {
        assert_eq!(name(&cache).await.unwrap(), "first", "at {t:?}");
        tokio::time::sleep(20 * SECOND).await;
        t += 20 * SECOND;
    }
    let retries = cache.source().calls() - 1;
    assert!(
        (2..=12).contains(&retries),
        "background retries back off: {retries}"
    );
    tokio::time::sleep((HOUR - 5 * MINUTE + SECOND).saturating_sub(t)).await;
    let err = name(&cache).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "tenant contoso: token endpoint https://login.example/t/oauth2/v2.0/token unavailable \
         after 1 attempt(s): HTTP 503"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_before_the_next_attempt() {
    let steps = vec![Err(unavailable(Some(7 * SECOND))), Ok(("after-429", HOUR))];
    let cache = TokenCache::new(Scripted::new(steps, Duration::ZERO), Settings::default());
    let start = Instant::now();
    assert_eq!(name(&cache).await.unwrap(), "after-429");
    assert_eq!(start.elapsed(), 7 * SECOND);
    assert_eq!(cache.source().calls(), 2);

    // A Retry-After longer than a caller should wait is reported, not slept through.
    let steps = vec![Err(unavailable(Some(HOUR)))];
    let cache = TokenCache::new(Scripted::new(steps, Duration::ZERO), Settings::default());
    let err = name(&cache).await.unwrap_err().to_string();
    assert!(
        err.ends_with("(Entra asked to retry after 3600 s)"),
        "{err}"
    );
    assert_eq!(cache.source().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_exponentially_with_a_cap() {
    let mut steps: Vec<Step> = (0..5).map(|_| Err(unavailable(None))).collect();
    steps.push(Ok(("finally", HOUR)));
    let settings = Settings {
        max_attempts: 6,
        ..Settings::default()
    };
    let cache = TokenCache::new(Scripted::new(steps, Duration::ZERO), settings);
    let start = Instant::now();
    assert_eq!(name(&cache).await.unwrap(), "finally");
    // 200, 400, 800, 1600, 3200 ms, each jittered to 50-100 %.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(3100) && waited <= Duration::from_millis(6200),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_cold_callers_share_one_fetch_and_one_failure() {
    let cache = TokenCache::new(
        Scripted::new(vec![Err(unavailable(None)), Ok(("ok", HOUR))], SECOND),
        one_attempt(),
    );
    let results = futures_util::future::join_all((0..500).map(|_| name(&cache))).await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(
        cache.source().calls(),
        1,
        "a failure is shared, not retried per waiter"
    );
    let results = futures_util::future::join_all((0..500).map(|_| name(&cache))).await;
    assert!(results.iter().all(|r| r.as_deref().ok() == Some("ok")));
    assert_eq!(cache.source().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn forced_refresh_replaces_the_token_and_tenants_do_not_share() {
    let cache = TokenCache::new(
        Scripted::new(
            vec![Ok(("a", HOUR)), Ok(("b", HOUR)), Ok(("other", HOUR))],
            Duration::ZERO,
        ),
        Settings::default(),
    );
    assert_eq!(name(&cache).await.unwrap(), "a");
    assert_eq!(cache.refresh(&key()).await.unwrap().token.expose(), "b");
    assert_eq!(name(&cache).await.unwrap(), "b");
    let other = CacheKey {
        tenant: "fabrikam".into(),
        ..key()
    };
    assert_eq!(cache.acquire(&other).await.unwrap().token.expose(), "other");
    assert_eq!(name(&cache).await.unwrap(), "b");
    assert_eq!(cache.source().calls(), 3);
}

/// Posts a hand-built assertion straight to the simulator.
async fn post_assertion(sim: &Sim, tenant: &str, aud: &str) -> (u16, serde_json::Value, String) {
    post_assertion_signed_by(sim, tenant, aud, "app").await
}

/// As [`post_assertion`], signed with the certificate written as `<stem>.pem`.
async fn post_assertion_signed_by(
    sim: &Sim,
    tenant: &str,
    aud: &str,
    stem: &str,
) -> (u16, serde_json::Value, String) {
    use exo_authproxy::config::Credentials;
    use exo_authproxy::token::{Credential, assertion, client, credential};
    let creds = Credentials {
        certificate: Some(sim.dir.path().join(format!("{stem}.pem"))),
        private_key: Some(sim.dir.path().join(format!("{stem}-key.pem"))),
        ..Credentials::default()
    };
    let Credential::Certificate(cert) = credential::resolve(&creds, &env()).unwrap() else {
        panic!("a certificate credential")
    };
    let jwt = assertion::sign(&cert, CLIENT, aud, SystemTime::now()).unwrap();
    let tls = client::tls_client_config(Some(&sim.dir.path().join("ca.pem"))).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let jwt = jwt.expose().clone();
    let url = format!("{}/{tenant}/oauth2/v2.0/token", sim.handle.authority);
    let mut statuses = Vec::new();
    let mut last = serde_json::Value::Null;
    // Sent twice: the second time the jti is a replay.
    for _ in 0..2 {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", CLIENT),
                ("scope", "https://outlook.office365.com/.default"),
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", jwt.as_str()),
            ])
            .finish();
        let rsp = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        statuses.push(rsp.status().as_u16());
        last = rsp.json().await.unwrap();
    }
    (statuses[0], last, format!("{statuses:?}"))
}

#[tokio::test]
async fn simulated_entra_refuses_replayed_and_misaddressed_assertions() {
    let sim = start().await;
    let right = format!("{}/{CONTOSO}/oauth2/v2.0/token", sim.handle.authority);
    let (first, replay, statuses) = post_assertion(&sim, CONTOSO, &right).await;
    assert_eq!(first, 200, "{statuses}");
    assert_eq!(statuses, "[200, 401]");
    assert_eq!(replay["error_codes"][0], 50012);
    assert!(
        replay["error_description"]
            .as_str()
            .unwrap()
            .contains("has already been used (replay)")
    );
    for key in ["trace_id", "correlation_id", "timestamp", "error_uri"] {
        assert!(replay[key].is_string(), "{key} in {replay}");
    }

    // An assertion addressed to another tenant's token URL is refused.
    let other = format!("{}/{FABRIKAM}/oauth2/v2.0/token", sim.handle.authority);
    let (first, body, _) = post_assertion(&sim, CONTOSO, &other).await;
    assert_eq!(first, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS50012: Client assertion audience claim does not match")
    );
}

#[tokio::test]
async fn a_key_that_does_not_belong_to_the_certificate_is_refused_before_asking_entra() {
    let sim = start().await;
    let other = AppCertificate::generate("other").unwrap();
    other.write_to(sim.dir.path(), "other", "x").unwrap();
    let config = sim.config(
        "certificate = \"app.pem\"\nprivate_key = \"other-key.pem\"",
        &[("contoso", CONTOSO, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine.token(&contoso()).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "tenant contoso: credential: {}: the private key does not belong to the certificate: \
             configure the key that was generated with it",
            sim.dir.path().join("app.pem").display()
        )
    );
    assert_eq!(sim.entra.total_token_requests(), 0);
}

/// An expired app certificate: the proxy says so (date, thumbprint, fix) without asking
/// Entra, and simulated Entra refuses an assertion it signs, as Entra does (AADSTS700027).
#[tokio::test]
async fn an_expired_certificate_names_its_date_and_the_fix_before_asking_entra() {
    let sim = start().await;
    let expired =
        AppCertificate::generate_valid("expired", Some(((2020, 1, 1), (2021, 1, 1)))).unwrap();
    let files = expired.write_to(sim.dir.path(), "expired", "x").unwrap();
    sim.entra.register_app(App {
        client_id: CLIENT.into(),
        display_name: "test app".into(),
        certificates: vec![
            RegisteredCertificate::from(&sim.app),
            RegisteredCertificate::from(&expired),
        ],
        secrets: vec![],
        federated: vec![],
    });
    let config = sim.config(
        "certificate = \"expired.pem\"\nprivate_key = \"expired-key.pem\"",
        &[("contoso", CONTOSO, "")],
    );
    let engine = TokenEngine::new(&config, &env()).unwrap();
    let err = engine.token(&contoso()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TokenError::Credential { .. }), "{text}");
    for needle in [
        files.certificate.display().to_string(),
        format!("thumbprint {}", expired.thumbprint()),
        "expired on 2021-01-01 00:00 UTC".into(),
        "upload its public part (.cer) to the app registration".into(),
    ] {
        assert!(text.contains(&needle), "{needle} missing from {text}");
    }
    assert_eq!(sim.entra.token_requests(CONTOSO), 0, "Entra was not asked");

    let url = format!("{}/{CONTOSO}/oauth2/v2.0/token", sim.handle.authority);
    let (first, body, _) = post_assertion_signed_by(&sim, CONTOSO, &url, "expired").await;
    assert_eq!(first, 401);
    assert_eq!(body["error_codes"][0], 700027);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("is expired"),
        "{body}"
    );
}

/// A certificate ending within 30 days still works, and `check` says until when and what
/// to do, without calling the tenant not ready.
#[tokio::test]
async fn check_notes_a_certificate_that_expires_soon() {
    use chrono::Datelike;
    let sim = start().await;
    let soon = chrono::Utc::now().date_naive() + chrono::Days::new(10);
    let ymd = |d: chrono::NaiveDate| (d.year(), d.month() as u8, d.day() as u8);
    let cert = AppCertificate::generate_valid(
        "expiring",
        Some((ymd(soon - chrono::Days::new(365)), ymd(soon))),
    )
    .unwrap();
    cert.write_to(sim.dir.path(), "expiring", "x").unwrap();
    sim.entra.register_app(App {
        client_id: CLIENT.into(),
        display_name: "test app".into(),
        certificates: vec![RegisteredCertificate::from(&cert)],
        secrets: vec![],
        federated: vec![],
    });
    let config = sim.config(
        "certificate = \"expiring.pem\"\nprivate_key = \"expiring-key.pem\"",
        &[("contoso", CONTOSO, "")],
    );
    let mut out = Vec::new();
    let ready = onboarding::check(&config, &env(), None, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(ready, "{out}");
    let expected = format!(
        "contoso (note): the app certificate {} (thumbprint {}) expires on {} 00:00 UTC, in 9 days: upload a new certificate",
        sim.dir.path().join("expiring.pem").display(),
        cert.thumbprint(),
        soon.format("%Y-%m-%d")
    );
    assert!(out.contains(&expected), "{expected}\nnot in\n{out}");
}
