//! The proxy between its simulators, all in-process on `127.0.0.1:0` over real TLS.
//!
//! Both harnesses start the sandbox's own [`World`](exo_authproxy::sandbox::World)
//! (simulated Entra + Exchange + a real TOML config loaded by `Config::load`) and the real
//! `serve(...)` through [`RunningProxy`](exo_authproxy::sandbox::RunningProxy), the same
//! wiring the `sandbox` command uses: nothing is assembled twice. Nothing sleeps: every
//! listener is bound before its server starts, so a test can connect at once.
//!
//! [`Harness`] puts a scripted token source in front ([`SignedTokens`]: RS256 JWTs with a key
//! simulated Exchange is told to trust, signature, aud, exp, roles, wids all real; it counts
//! fetches and refreshes and can play "Entra down"), so listener and forwarding tests
//! control tokens exactly. [`Sandboxed`] runs the real token engine against simulated Entra.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use exo_authproxy::config::{Config, TenantName};
use exo_authproxy::listener::basic_auth::Credentials;
use exo_authproxy::sandbox::exchange::{self, ExchangeSim, RpsService};
use exo_authproxy::sandbox::{AppIdentity, RunningProxy, World, WorldOptions, WorldTenant};
use exo_authproxy::secret::Secret;
use exo_authproxy::token::TokenProvider;
use exo_authproxy::token::{AccessToken, Diagnosis, TokenError};
use exo_authproxy::{Prepared, Services};
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use tokio::net::TcpListener;

/// Exchange Administrator's role template id.
pub const EXCHANGE_ADMIN: &str = exo_authproxy::sandbox::claims::EXCHANGE_ADMINISTRATOR;
/// The demo app's client id.
pub const APP_ID: &str = exo_authproxy::sandbox::DEMO_APP_ID;
/// The `kid` of [`SignedTokens`]' signing key.
const SIGNED_TOKENS_KID: &str = "harness-key";
/// The demo user and password.
pub const USER: &str = "reporting";
/// The demo password.
pub const PASSWORD: &str = "sandbox";

/// A simulated tenant and how it is set up.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    /// Local name (also the organization's first label).
    pub name: &'static str,
    /// Directory id.
    pub tenant_id: &'static str,
    /// Whether the app holds a supported directory role (token `wids`).
    pub directory_role: bool,
    /// Whether Exchange has a role assignment for the app (RBAC for applications).
    pub exchange_role: bool,
    /// `require_directory_role = true`.
    pub require_directory_role: bool,
}

impl TenantSpec {
    /// The organization domain.
    pub fn organization(&self) -> String {
        format!("{}.onmicrosoft.com", self.name)
    }

    fn to_world(&self) -> WorldTenant {
        WorldTenant {
            name: self.name.into(),
            tenant_id: self.tenant_id.into(),
            directory_role: self.directory_role,
            exchange_role: self.exchange_role,
            require_directory_role: self.require_directory_role,
        }
    }
}

/// The demo tenants: contoso (ready), fabrikam (consented, no role), northwind (Exchange RBAC).
pub fn demo_tenants() -> Vec<TenantSpec> {
    vec![
        TenantSpec {
            name: "contoso",
            tenant_id: "0f9c3b1e-1111-2222-3333-444455556666",
            directory_role: true,
            exchange_role: false,
            require_directory_role: false,
        },
        TenantSpec {
            name: "fabrikam",
            tenant_id: "7d2e4f60-aaaa-bbbb-cccc-ddddeeeeffff",
            directory_role: false,
            exchange_role: false,
            require_directory_role: false,
        },
        TenantSpec {
            name: "northwind",
            tenant_id: "3b8a1c2d-9999-8888-7777-666655554444",
            directory_role: false,
            exchange_role: true,
            require_directory_role: false,
        },
    ]
}

/// What to start.
pub struct Options {
    /// Tenants (the demo user may use all of them, first = default).
    pub tenants: Vec<TenantSpec>,
    /// The RPS service behind `/PowerShell-LiveID`.
    pub rps: Arc<dyn RpsService>,
    /// Shutdown grace period.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tenants: demo_tenants(),
            rps: Arc::new(Recorder::default()),
            grace: Duration::from_secs(10),
        }
    }
}

/// Mints real RS256 tokens trusted by simulated Exchange.
pub struct SignedTokens {
    key: EncodingKey,
    tenants: Vec<TenantSpec>,
    /// Fetches (first token per tenant).
    pub fetches: AtomicU64,
    /// Forced refreshes.
    pub refreshes: AtomicU64,
    /// Entra down: every fetch fails.
    pub down: AtomicBool,
    /// The tokens handed out (tests assert they never show up in logs).
    pub issued: Mutex<Vec<String>>,
    cache: Mutex<std::collections::HashMap<TenantName, AccessToken>>,
    /// Tenants whose role was assigned after the first token (refresh picks it up).
    pub role_assigned_later: Mutex<HashSet<String>>,
}

impl SignedTokens {
    fn mint(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        let spec = self
            .tenants
            .iter()
            .find(|t| t.name == tenant.0)
            .ok_or_else(|| TokenError::UnknownTenant(tenant.clone()))?;
        if self.down.load(Ordering::SeqCst) {
            return Err(TokenError::Unavailable {
                tenant: tenant.clone(),
                url: format!("https://127.0.0.1:1/{}/oauth2/v2.0/token", spec.tenant_id),
                status: Some(503),
                reason: "HTTP 503 Service Unavailable".into(),
                retry_after: None,
                attempts: 3,
            });
        }
        let role =
            spec.directory_role || self.role_assigned_later.lock().unwrap().contains(spec.name);
        let mut wids = vec![exchange::NOT_A_ROLE];
        if role {
            wids.push(EXCHANGE_ADMIN);
        }
        let exp = chrono::Utc::now().timestamp() + 3600;
        let uti = uuid::Uuid::new_v4().to_string();
        let claims = serde_json::json!({
            "aud": exchange::EXCHANGE_RESOURCE, "iss": format!("https://sts.windows.net/{}/", spec.tenant_id),
            "tid": spec.tenant_id, "appid": APP_ID, "roles": ["Exchange.ManageAsApp"], "wids": wids,
            "exp": exp, "uti": uti, "idtyp": "app",
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(SIGNED_TOKENS_KID.into());
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).expect("sign");
        self.issued.lock().unwrap().push(jwt.clone());
        let diagnosis = if role {
            Diagnosis::Ready
        } else {
            Diagnosis::Warning(format!(
                "tenant {}: no supported directory role: assign Exchange Administrator",
                spec.name
            ))
        };
        Ok(AccessToken {
            token: Secret::new(jwt),
            expires_at: SystemTime::now() + Duration::from_secs(3600),
            uti: Some(uti),
            diagnosis,
        })
    }
}

impl TokenProvider for SignedTokens {
    fn token<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            if let Some(t) = self.cache.lock().unwrap().get(tenant) {
                return Ok(t.clone());
            }
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let t = self.mint(tenant)?;
            self.cache.lock().unwrap().insert(tenant.clone(), t.clone());
            Ok(t)
        })
    }
    fn refresh<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            let t = self.mint(tenant)?;
            self.cache.lock().unwrap().insert(tenant.clone(), t.clone());
            Ok(t)
        })
    }
}

/// One request as simulated Exchange's RPS service saw it (after its token checks).
#[derive(Debug, Clone)]
pub struct Seen {
    /// Owner key (`tid/appid`).
    pub owner: String,
    /// Who the token says.
    pub app: AppIdentity,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// An RPS service that records requests and answers a fixed SOAP body (the body's length in
/// it), setting an affinity cookie. With `hold` set, the first request waits until released.
#[derive(Default)]
pub struct Recorder {
    /// Everything seen.
    pub seen: Mutex<Vec<Seen>>,
    /// When set, each request waits for a permit here before answering (in-flight tests).
    pub hold: Option<Arc<tokio::sync::Semaphore>>,
    /// Told when a request arrived.
    pub arrived: tokio::sync::Notify,
}

impl RpsService for Recorder {
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        app: AppIdentity,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'a, http::Response<Bytes>> {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let len = body.len();
            self.seen.lock().unwrap().push(Seen {
                owner: owner.to_owned(),
                app,
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body,
            });
            self.arrived.notify_one();
            if let Some(hold) = &self.hold {
                let _permit = hold.acquire().await.expect("hold semaphore open");
            }
            let mut rsp = http::Response::new(Bytes::from(format!(
                "<s:Envelope><s:Body>got {len} bytes</s:Body></s:Envelope>"
            )));
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
            );
            rsp.headers_mut().insert(
                http::header::SET_COOKIE,
                http::HeaderValue::from_static("X-BackEndCookie=pod-7; path=/; secure"),
            );
            rsp.headers_mut()
                .insert("request-id", http::HeaderValue::from_static("5e1f-req"));
            rsp
        })
    }
}

/// Captured log output of the current thread (use with a current-thread runtime).
///
/// One global subscriber, installed once, formats an event only when the emitting thread has
/// a capture open and writes it there. Why not a thread-local `set_default` subscriber:
/// tracing caches each callsite's interest globally, and a callsite first hit on another
/// thread while this thread's subscriber was the only one alive was cached as "never" — the
/// capture then missed events at random when tests ran in parallel. With one global
/// subscriber whose filter is dynamic, every callsite's interest is "sometimes", for good.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends the current thread's capture when dropped.
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

/// The process-wide capture of [`Logs::capture_all`], if one is open.
static ALL: Mutex<Option<Logs>> = Mutex::new(None);
static ALL_OPEN: AtomicBool = AtomicBool::new(false);

/// Ends the process-wide capture when dropped.
pub struct CaptureAllGuard(());

impl Drop for CaptureAllGuard {
    fn drop(&mut self) {
        ALL_OPEN.store(false, Ordering::SeqCst);
        ALL.lock().unwrap().take();
    }
}

/// Where the global subscriber writes: the current thread's capture and the process-wide one.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = c.borrow().as_ref() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        if let Some(logs) = ALL.lock().unwrap().as_ref() {
            logs.0.lock().unwrap().extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Starts capturing this thread's log output (DEBUG and above); keep the guard alive.
    pub fn capture() -> (Self, CaptureGuard) {
        Self::install();
        let logs = Self::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard(()))
    }

    /// Starts capturing every thread's log output at every level (a test that greps all logs
    /// for secrets: other tests' lines landing here only widen what is checked).
    pub fn capture_all() -> (Self, CaptureAllGuard) {
        Self::install();
        let logs = Self::default();
        *ALL.lock().unwrap() = Some(logs.clone());
        ALL_OPEN.store(true, Ordering::SeqCst);
        (logs, CaptureAllGuard(()))
    }

    /// Installs the global subscriber (once). A test with a scoped subscriber of its own
    /// calls this so tracing never caches a callsite as uninteresting for it.
    pub fn install() {
        use tracing_subscriber::layer::SubscriberExt;
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            // Dynamic: `filter_fn` would cache each callsite's first answer for good.
            let capturing = tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
                ALL_OPEN.load(Ordering::SeqCst)
                    || (*meta.level() <= tracing::Level::DEBUG
                        && CAPTURE.with(|c| c.borrow().is_some()))
            });
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| ThreadCapture);
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::Layer::with_filter(layer, capturing));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test installs a global subscriber");
        });
    }
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Everything running for one test.
pub struct Harness {
    /// The proxy's address.
    pub proxy: SocketAddr,
    /// The admin listener's address (health, metrics).
    pub admin: SocketAddr,
    /// `https://127.0.0.1:<port>/powershell-liveid`
    pub url: String,
    /// The proxy's listener certificate (self-signed, generated into state_dir).
    pub listener_cert: PathBuf,
    /// Simulated Exchange.
    pub exchange: Arc<ExchangeSim>,
    /// Its address.
    pub exchange_addr: SocketAddr,
    /// The token source.
    pub tokens: Arc<SignedTokens>,
    /// The loaded config.
    pub config: Config,
    /// The simulators (simulated Entra is there too, unused: [`SignedTokens`] mints).
    pub world: World,
    running: RunningProxy,
    /// The state/config directory.
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Starts simulated Exchange and the proxy (winrm mode).
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let enc = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
        let dec = DecodingKey::from_rsa_pem(pair.public_key_pem().as_bytes()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut world_options = WorldOptions::new(
            exo_authproxy::config::Mode::Winrm,
            listener.local_addr().unwrap(),
            options.rps.clone(),
        );
        world_options.password = PASSWORD.into();
        world_options.tenants = options.tenants.iter().map(TenantSpec::to_world).collect();
        let trusted = vec![(SIGNED_TOKENS_KID.to_owned(), dec)];
        let world = World::start_trusting(dir.path(), world_options, trusted)
            .await
            .expect("sandbox world");
        let tokens = Arc::new(SignedTokens {
            key: enc,
            tenants: options.tenants.clone(),
            fetches: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            down: AtomicBool::new(false),
            issued: Mutex::new(Vec::new()),
            cache: Mutex::new(Default::default()),
            role_assigned_later: Mutex::new(HashSet::new()),
        });
        let prepared = Prepared::new(
            &world.config,
            Services {
                tokens: tokens.clone(),
                rest: None,
                metrics: Arc::new(exo_authproxy::metrics::Metrics::new()),
                audit: Default::default(),
                sessions: Default::default(),
            },
        )
        .expect("prepare");
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = RunningProxy::spawn(prepared, listener, admin, options.grace).unwrap();
        Self {
            proxy: running.proxy,
            admin: running.admin,
            url: running.url(),
            listener_cert: running.listener_cert.clone().expect("tls on"),
            exchange: world.exchange.clone(),
            exchange_addr: world.exchange_addr,
            tokens,
            config: world.config.clone(),
            world,
            running,
            dir,
        }
    }

    /// A reqwest client trusting the proxy's listener certificate.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.listener_cert)
    }
}

/// POSTs a WS-Man-like `body` to `url?query`, as `user:password` when `auth` is given.
pub async fn post_soap(
    client: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
    query: &str,
    body: &str,
) -> reqwest::Response {
    let url = if query.is_empty() {
        url.to_owned()
    } else {
        format!("{url}?{query}")
    };
    let mut req = client
        .post(url)
        .header("content-type", "application/soap+xml;charset=UTF-8")
        .body(body.to_owned());
    if let Some((u, p)) = auth {
        req = req.header("authorization", Credentials::encode(u, p));
    }
    req.send().await.expect("request to the proxy")
}

/// A reqwest client trusting `cert` (a proxy's listener certificate).
pub fn client_trusting(cert: &std::path::Path) -> reqwest::Client {
    let tls = exo_authproxy::forward::client::client_tls(Some(cert)).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .unwrap()
}

impl Harness {
    /// POSTs a WS-Man-like body as `user:password` with `query`.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        auth: Option<(&str, &str)>,
        query: &str,
        body: &str,
    ) -> reqwest::Response {
        post_soap(client, &self.url, auth, query, body).await
    }

    /// Stops the proxy (as SIGTERM does) and waits for `serve` to return.
    pub async fn shutdown(&mut self) -> Result<(), exo_authproxy::ServeError> {
        let result = self.running.shutdown().await;
        self.world.stop_exchange();
        result
    }

    /// Stops simulated Exchange and waits until its port is closed.
    pub async fn stop_exchange(&mut self) {
        self.world.stop_exchange_and_wait().await;
    }

    /// Begins shutdown without waiting.
    pub fn begin_shutdown(
        &mut self,
    ) -> tokio::task::JoinHandle<Result<(), exo_authproxy::ServeError>> {
        self.running.begin_shutdown().expect("not yet shut down")
    }
}

/// The sandbox world (simulated Entra + simulated Exchange, real token engine) with the real
/// `serve(...)` on 127.0.0.1:0: the end-to-end harness (rest-mode tests reuse it with
/// `mode` and `rest`).
pub struct Sandboxed {
    /// The world: simulators, config, CA.
    pub world: World,
    /// The proxy's address.
    pub proxy: SocketAddr,
    /// The admin listener's address (health, metrics).
    pub admin: SocketAddr,
    /// `https://127.0.0.1:<port>/powershell-liveid`
    pub url: String,
    /// The proxy's listener certificate.
    pub listener_cert: PathBuf,
    /// The token engine the proxy uses.
    pub tokens: Arc<exo_authproxy::token::TokenEngine>,
    running: RunningProxy,
    /// With [`SandboxedOptions::reload_from_mount`]: the directory the config is mounted in,
    /// laid out as the kubelet mounts a Secret ([`kubelet_write`]).
    pub mounted_config: Option<PathBuf>,
    /// Keeps the files.
    pub dir: tempfile::TempDir,
}

/// Lays `config` out as the kubelet mounts a Secret or ConfigMap: `dir/exo-authproxy.toml` →
/// `..data/exo-authproxy.toml`, `..data` → `..<version>`; a new version is swapped in by
/// renaming a new `..data` symlink over the old one.
#[cfg(unix)]
pub fn kubelet_write(dir: &std::path::Path, version: &str, config: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("exo-authproxy.toml"), config).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("exo-authproxy.toml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/exo-authproxy.toml", &link).unwrap();
    }
}

/// What [`Sandboxed::start`] builds.
pub struct SandboxedOptions {
    /// Upstream mode.
    pub mode: exo_authproxy::config::Mode,
    /// Tenants.
    pub tenants: Vec<exo_authproxy::sandbox::WorldTenant>,
    /// Simulated Exchange's RPS service.
    pub rps: Arc<dyn RpsService>,
    /// Simulated REST admin API.
    pub adminapi: Option<exchange::AdminApi>,
    /// The proxy's rest-mode endpoint.
    pub rest: Option<Arc<dyn exo_authproxy::forward::RemotingService>>,
    /// Serve the config from a kubelet-style mount and watch it (every 50 ms) for reloads.
    pub reload_from_mount: bool,
    /// Tenants (by name) whose app holds Compliance Administrator (Security & Compliance).
    pub compliance_admins: Vec<String>,
    /// Write `[audit] file` (`<dir>/state/audit.jsonl`, see [`Sandboxed::audit_lines`]).
    pub audit_file: bool,
}

/// contoso (role), fabrikam (none), northwind (Exchange RBAC only).
pub fn world_tenants() -> Vec<exo_authproxy::sandbox::WorldTenant> {
    let mut t = exo_authproxy::sandbox::demo_tenants();
    t.push(exo_authproxy::sandbox::WorldTenant {
        name: "northwind".into(),
        tenant_id: "3b8a1c2d-9999-8888-7777-666655554444".into(),
        directory_role: false,
        exchange_role: true,
        require_directory_role: false,
    });
    t
}

impl SandboxedOptions {
    /// The real simulated Exchange (RPS endpoint + REST admin API) with `mailboxes` per tenant.
    pub fn simulated(mode: exo_authproxy::config::Mode, mailboxes: usize) -> Self {
        let (_data, rps, adminapi) = exo_authproxy::sandbox::simulated_exchange(mailboxes);
        Self {
            mode,
            rps,
            adminapi: Some(adminapi),
            ..Self::default()
        }
    }
}

impl Default for SandboxedOptions {
    fn default() -> Self {
        Self {
            mode: exo_authproxy::config::Mode::Winrm,
            tenants: world_tenants(),
            rps: Arc::new(Recorder::default()),
            adminapi: None,
            rest: None,
            reload_from_mount: false,
            compliance_admins: vec!["contoso".into()],
            audit_file: false,
        }
    }
}

impl Sandboxed {
    /// Starts the world and the proxy.
    pub async fn start(options: SandboxedOptions) -> Self {
        Self::start_tweaked(options, |_| {}).await
    }

    /// [`Sandboxed::start`], with the loaded config changed by `tweak` before the proxy is
    /// prepared: the fault tests point `[exchange] endpoint` or `[entra] authority` at a
    /// scripted server of their own.
    pub async fn start_tweaked(options: SandboxedOptions, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut world_options =
            WorldOptions::new(options.mode, listener.local_addr().unwrap(), options.rps);
        world_options.password = PASSWORD.into();
        world_options.tenants = options.tenants;
        world_options.adminapi = options.adminapi;
        world_options.compliance_admins = options.compliance_admins;
        world_options.audit_file = options.audit_file;
        let mut world = World::start(dir.path(), world_options)
            .await
            .expect("sandbox world");
        tweak(&mut world.config);
        let (prepared, tokens) = match options.rest {
            Some(rest) => world.prepare(Some(rest)),
            None => world.prepare_for_mode(),
        }
        .expect("prepare the proxy");
        #[cfg(unix)]
        let (prepared, mounted_config) = if options.reload_from_mount {
            let mount = dir.path().join("mount");
            let text = std::fs::read_to_string(&world.config_path).unwrap();
            kubelet_write(&mount, "v1", &text);
            let source = exo_authproxy::reload::Source::new(
                mount.join("exo-authproxy.toml"),
                world.config.clone(),
                Arc::new(std::collections::HashMap::<String, String>::new()),
                tokens.clone(),
                Duration::from_millis(50),
            );
            (prepared.with_reload(source), Some(mount))
        } else {
            (prepared, None)
        };
        #[cfg(not(unix))]
        let mounted_config = None;
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running =
            RunningProxy::spawn(prepared, listener, admin, Duration::from_secs(10)).unwrap();
        Self {
            world,
            proxy: running.proxy,
            admin: running.admin,
            url: running.url(),
            listener_cert: running.listener_cert.clone().expect("tls on"),
            tokens,
            running,
            mounted_config,
            dir,
        }
    }

    /// GETs `path` from the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path).await
    }

    /// A client trusting the listener certificate.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.listener_cert)
    }

    /// POSTs `body` as the demo user with `query`.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        query: &str,
        body: &str,
    ) -> reqwest::Response {
        post_soap(client, &self.url, Some((USER, PASSWORD)), query, body).await
    }

    /// The environment for `tests/interop/proxy_session.py`.
    pub fn pypsrp_env(&self, query: &str) -> Vec<(String, String)> {
        vec![
            ("PROXY_HOST".into(), "127.0.0.1".into()),
            ("PROXY_PORT".into(), self.proxy.port().to_string()),
            ("PROXY_USER".into(), USER.into()),
            ("PROXY_PASSWORD".into(), PASSWORD.into()),
            ("PROXY_CA".into(), self.listener_cert.display().to_string()),
            ("PROXY_QUERY".into(), query.into()),
        ]
    }

    /// Stops the proxy (as SIGTERM) and waits for `serve`.
    pub async fn shutdown(&mut self) -> Result<(), exo_authproxy::ServeError> {
        self.running.shutdown().await
    }

    /// `https://127.0.0.1:<port><path>` on the proxy's listener (e.g. the compliance path).
    pub fn url_for(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.proxy.port())
    }

    /// The `[audit] file` lines written so far (with `audit_file`), parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let path = &self
            .world
            .config
            .audit
            .as_ref()
            .expect("started with audit_file")
            .file;
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }
}

/// GETs `path` from an admin listener at `addr`: (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let rsp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("admin request");
    (rsp.status().as_u16(), rsp.text().await.unwrap())
}
