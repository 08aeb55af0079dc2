//! The InvokeCommand client: one Exchange cmdlet per call, paged, retried, bounded.
//!
//! Each invocation is `POST {endpoint}/adminapi/beta/{tenant_id}/InvokeCommand` with
//! `{"CmdletInput":{"CmdletName":…,"Parameters":{…}}}` and the headers the
//! ExchangeOnlineManagement module sends (reference exo-rest-adminapi.md §4): the tenant's
//! Bearer token, `X-AnchorMailbox: APP:SystemMailbox{bb558c35-…}@<tenant_id>` (app-only),
//! `Prefer: odata.maxpagesize=N`, a fresh `client-request-id` per HTTP request and a
//! `connection-id` per pipeline, `X-CmdletName`, `X-ResponseFormat: json` (see `convert` for
//! why not clixml).
//!
//! Pages are fetched lazily: [`RestCall::next`] requests one page and returns its objects;
//! the next page (`@odata.nextLink`, re-POSTing the same body, §6) is requested only when the
//! pipeline asks again, so the first object reaches the client as soon as the first page is
//! parsed and a stopped pipeline requests nothing more. A next link must point at the
//! configured endpoint's origin; the token is never sent anywhere else.
//!
//! Failures (§9, §11): 401 → one token refresh and retry; 429/503 → wait `Retry-After`
//! (or 2 s, 4 s, 8 s … without one, capped) and retry up to `max_retries` times; Exchange's
//! transient exceptions (`DCOverloadedException`, …) likewise; connection failures before a
//! request was sent are retried too. A request that may have reached Exchange without an
//! answer (the connection broke after it was sent, a 504) is sent again only for a `Get-`:
//! [`may_resend`] is the one rule, which `winrm` mode follows too. Each request has the
//! cmdlet's timeout (the module's: 960 s, longer for a few cmdlets); running out of it is a
//! clear error saying what to do, never a resend. Response bodies are read up to
//! `max_page_bytes`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use url::Url;
use uuid::Uuid;

use super::RestCaller;
use super::catalog::{Entry, compliance_refusal};
use super::convert;
use super::errors::{ErrorOrigin, ExchangeError, bridge_record};
use super::pipeline::{Backend, Batch, Call, CallSite, Failure};
use super::region::{Regions, regional_base};
use crate::config::TenantName;
use crate::remoting::binding::CommonParameters;
use crate::remoting::executor::ErrorCategory;
use crate::token::claims::{ComplianceRoleRefusal, PermissionQuestion, RoleRefusal};
use crate::token::{AccessToken, Audience, TokenError, TokenProvider};

/// The system mailbox app-only requests anchor on.
pub const ANCHOR_MAILBOX: &str = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}";

/// Exchange's pagination warning, shown only with the last page.
pub const MORE_RESULTS: &str = "There are more results available than are currently displayed. To view them, \
                                increase the value for the ResultSize parameter.";

/// Exchange's transient exceptions the module retries (§11.1).
const TRANSIENT: &[&str] = &[
    "DCOverloadedException",
    "SuitabilityDirectoryException",
    "ServerInMMException",
    "ADServerSettingsChangedException",
    "StorageTransientException",
];

/// What became of a request to Exchange that got no usable answer: the input of
/// [`may_resend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It never left: no connection could be made.
    NotSent,
    /// Exchange answered that it did not run it (401, 403 role refusal, a redirect, 421, 429,
    /// 503, a transient exception such as `DCOverloadedException`).
    Refused,
    /// It may have run: the connection broke after it was sent, or a gateway gave up on it
    /// (504).
    Lost,
    /// The request's own deadline passed: it may have run, and waiting again is the caller's
    /// choice, not the proxy's.
    TimedOut,
}

impl Delivery {
    /// A transport error's delivery: a failed connect never sent anything.
    pub fn of(e: &reqwest::Error) -> Self {
        if e.is_connect() {
            Self::NotSent
        } else if e.is_timeout() {
            Self::TimedOut
        } else {
            Self::Lost
        }
    }
}

/// The one retry rule for requests to Exchange, in both modes (docs/design.md, "Retries"):
/// a request is sent again only when it never left or Exchange said it did not run it, or,
/// when it may have run, only if running it twice changes nothing (`read_only`: a `Get-`).
/// A timed-out request is never sent again. The caller bounds the number of attempts.
pub fn may_resend(delivery: Delivery, read_only: bool) -> bool {
    match delivery {
        Delivery::NotSent | Delivery::Refused => true,
        Delivery::Lost => read_only,
        Delivery::TimedOut => false,
    }
}

/// Whether a transport error is Exchange's TLS certificate being refused: sending again
/// cannot help, and the fix is the operator's.
fn certificate_refused(e: &reqwest::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // rustls' error reaches reqwest wrapped in an io::Error, whose `source` skips it.
        let wrapped = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|w| w as &(dyn std::error::Error + 'static));
        // The type when it can be reached, else rustls' own wording for it.
        if [Some(c), wrapped].into_iter().flatten().any(|err| {
            matches!(
                err.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(_))
            ) || err.to_string().starts_with("invalid peer certificate")
        }) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether running `cmdlet` twice changes nothing (its verb is `Get`).
pub fn read_only(cmdlet: &str) -> bool {
    cmdlet
        .split_once('-')
        .is_some_and(|(verb, _)| verb.eq_ignore_ascii_case("Get"))
}

/// Limits and behaviour of the REST client. Defaults are the module's (§11.1).
#[derive(Debug, Clone)]
pub struct RestSettings {
    /// `https://outlook.office365.com` (or a sovereign cloud, or the sandbox).
    pub endpoint: Url,
    /// `Prefer: odata.maxpagesize` (≤ 1000).
    pub page_size: u32,
    /// Retries after 429/503/504/transient errors (attempts = retries + 1).
    pub max_retries: u32,
    /// First back-off without Retry-After; doubles per retry.
    pub retry_base: Duration,
    /// Longest wait honoured from one Retry-After (120 s). Exchange asking for more fails the
    /// cmdlet at once with a ThrottlingError naming the wait, rather than holding the
    /// pipeline for an unbounded time.
    pub max_retry_after: Duration,
    /// Per-request timeout for cmdlets not in `cmdlet_timeouts`.
    pub timeout: Duration,
    /// Longer timeouts for slow cmdlets.
    pub cmdlet_timeouts: Vec<(String, Duration)>,
    /// Largest response body read (32 MiB: a page of 1,000 full Get-Mailbox objects is
    /// 10–20 MiB of JSON, and the parsed page costs a few times its bytes, so this bounds one
    /// page to some hundred MiB at worst; see also [`MAX_PAGE_OBJECTS`]).
    pub max_page_bytes: usize,
    /// Ask Exchange which cmdlets the app may run (EXOModuleFile) and trim the catalog.
    pub fetch_exported_cmdlets: bool,
    /// How long a tenant's fetched cmdlet list is kept.
    pub catalog_ttl: Duration,
    /// Which endpoint this client calls: Exchange, or Security & Compliance (its own token
    /// audience, UPN anchor and regional host, scc-rest-adminapi.md).
    pub audience: Audience,
    /// How long a discovered S&C region is kept without a failure there.
    pub region_ttl: Duration,
}

impl RestSettings {
    /// The module's defaults against `endpoint`.
    pub fn new(endpoint: Url) -> Self {
        let s = |n: u64| Duration::from_secs(n + 60);
        Self {
            endpoint,
            page_size: 1000,
            max_retries: 5,
            retry_base: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(120),
            timeout: Duration::from_secs(960),
            cmdlet_timeouts: vec![
                ("Get-DistributionGroupMember".into(), s(3600)),
                ("Import-TransportRuleCollection".into(), s(3600)),
                ("Set-OrganizationConfig".into(), s(1800)),
                ("Set-UnifiedGroup".into(), s(3600)),
                ("Update-DistributionGroupMember".into(), s(3600)),
                ("Update-RoleGroupMember".into(), s(1800)),
            ],
            max_page_bytes: 32 * 1024 * 1024,
            fetch_exported_cmdlets: true,
            catalog_ttl: Duration::from_secs(3600),
            audience: Audience::Exchange,
            region_ttl: Duration::from_secs(3600),
        }
    }

    /// The module's defaults against the global Security & Compliance host `endpoint`.
    pub fn compliance(endpoint: Url) -> Self {
        Self {
            audience: Audience::Compliance,
            ..Self::new(endpoint)
        }
    }

    fn timeout_for(&self, cmdlet: &str) -> Duration {
        self.cmdlet_timeouts
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(cmdlet))
            .map_or(self.timeout, |(_, d)| *d)
    }
}

/// The HTTP side of the bridge.
pub struct RestClient<T: ?Sized> {
    http: reqwest::Client,
    settings: RestSettings,
    tokens: Arc<T>,
    pub(super) metrics: crate::metrics::BridgeMetrics,
    pub(super) audit: crate::audit::Audit,
    regions: Regions,
}

/// Which URL a page request goes to.
#[derive(Debug, Clone)]
enum PageUrl {
    /// The first page: InvokeCommand on the tenant's base (discovered for S&C).
    First,
    /// A next link (already checked against the first page's origin).
    Next(Url),
}

#[derive(Deserialize)]
struct Page {
    #[serde(default, deserialize_with = "bounded_objects")]
    value: Option<Vec<convert::RestObject>>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
    #[serde(rename = "@adminapi.warnings", default)]
    warnings: Option<Vec<Json>>,
    #[serde(rename = "@adminapi.errors", default)]
    errors: Option<Vec<Json>>,
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn origin(resp: &reqwest::Response) -> ErrorOrigin {
    let be = header(resp, "x-calculatedbetarget");
    ErrorOrigin {
        server: be.split('.').next().unwrap_or_default().to_owned(),
        request_id: header(resp, "request-id"),
        timestamp: header(resp, "date"),
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    parse_retry_after(&header(resp, "retry-after"), chrono::Utc::now())
}

/// The longest `Retry-After` hint kept as is; longer ones are clamped to it (a day: far beyond
/// [`RestSettings::max_retry_after`], so the caller still refuses to wait that long, and far
/// below where `Duration` arithmetic could overflow).
const MAX_RETRY_HINT: Duration = Duration::from_secs(24 * 3600);

/// `Retry-After` as delay-seconds (fractions accepted, as Exchange has sent them) or an
/// HTTP-date, clamped to [`MAX_RETRY_HINT`]. Negative, non-finite or unparsable values are
/// `None` (the caller backs off on its own); a date in the past is zero. Never panics,
/// whatever the upstream sends.
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(
            Duration::try_from_secs_f64(secs)
                .unwrap_or(MAX_RETRY_HINT)
                .min(MAX_RETRY_HINT),
        );
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .signed_duration_since(now)
            .to_std()
            .unwrap_or_default()
            .min(MAX_RETRY_HINT),
    )
}

/// Why a capped read stopped.
enum Capped {
    /// The body is longer than the limit (declared or read).
    TooLarge,
    /// The connection failed.
    Transport(reqwest::Error),
}

/// Reads at most `limit` bytes of `resp`'s body.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, Capped> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(Capped::TooLarge);
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Capped::Transport)? {
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(Capped::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// The start of an error body, at most [`MAX_ERROR_BODY`] bytes (what follows is dropped: the
/// parts of Exchange's error that matter come first).
async fn read_error_body(mut resp: reqwest::Response) -> Bytes {
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() == MAX_ERROR_BODY {
            break;
        }
    }
    buf.into()
}

/// Largest error body read (Exchange's error JSON is a few KiB; the rest is dropped).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Most objects accepted in one page: Exchange sends at most `odata.maxpagesize` (≤ 1000),
/// so ten times that is a broken or hostile upstream. Counted while parsing, so a page of
/// 32 MiB of `{}` cannot become ten million maps first.
pub const MAX_PAGE_OBJECTS: usize = 10_000;

/// Largest EXOModuleFile body read: the cmdlet list is tens of KiB, the module material
/// beside it a few MiB.
const MAX_MODULE_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Most cmdlet names taken from EXOModuleFile (Exchange Online exports about a thousand).
pub const MAX_EXPORTED_CMDLETS: usize = 5_000;

/// Whether `name` looks like a cmdlet name: `Verb-Noun`, ASCII letters, digits, `-` and `_`,
/// at most 128 characters. Anything else from EXOModuleFile is dropped, so later code can
/// slice names by bytes and nothing odd reaches the catalog or the logs.
fn is_cmdlet_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name.contains('-')
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The page parser alone, for the `rest_page` target in `fuzz/`: a page body as
/// [`RestCall`] reads it, its objects converted as it converts them. Not an API.
///
/// # Errors
/// The JSON error for a body that is not a page.
#[doc(hidden)]
pub fn fuzz_page(
    body: &[u8],
    types: &[String],
) -> Result<Vec<crate::remoting::clixml::Value>, serde_json::Error> {
    let page: Page = serde_json::from_slice(body)?;
    Ok(page
        .value
        .unwrap_or_default()
        .into_iter()
        .map(|o| convert::object_from_properties(o.0, types))
        .collect())
}

/// A page's `value`, refused while parsing once it holds more than [`MAX_PAGE_OBJECTS`].
fn bounded_objects<'de, D>(de: D) -> Result<Option<Vec<convert::RestObject>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Objects;
    impl<'de> serde::de::Visitor<'de> for Objects {
        type Value = Option<Vec<convert::RestObject>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut objects = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(object) = seq.next_element()? {
                if objects.len() == MAX_PAGE_OBJECTS {
                    return Err(serde::de::Error::custom(format_args!(
                        "the page holds more than {MAX_PAGE_OBJECTS} objects"
                    )));
                }
                objects.push(object);
            }
            Ok(Some(objects))
        }
    }
    de.deserialize_any(Objects)
}

/// EXOModuleFile's body, keeping only `value[0].exportedCmdlets` (everything else is skipped
/// without being built).
#[derive(Deserialize)]
struct ModuleFile {
    #[serde(default, deserialize_with = "first_exported")]
    value: Option<String>,
}

fn first_exported<'de, D>(de: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Module {
        #[serde(rename = "exportedCmdlets", default)]
        exported: Option<String>,
    }
    struct First;
    impl<'de> serde::de::Visitor<'de> for First {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of module descriptions")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<Module>()?.and_then(|m| m.exported);
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    de.deserialize_any(First)
}

/// The cmdlet names of an `exportedCmdlets` list: well-formed names only, each once
/// (case-insensitively), at most [`MAX_EXPORTED_CMDLETS`].
///
/// # Errors
/// A text naming the limit when the list is longer.
fn exported_names(list: &str) -> Result<Vec<String>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut names = Vec::new();
    let mut dropped = 0usize;
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !is_cmdlet_name(name) {
            dropped += 1;
            continue;
        }
        if seen.insert(name.to_ascii_lowercase()) {
            if names.len() == MAX_EXPORTED_CMDLETS {
                return Err(format!(
                    "EXOModuleFile lists more than {MAX_EXPORTED_CMDLETS} cmdlets; Exchange Online exports about a \
                     thousand, so the answer is not trusted"
                ));
            }
            names.push(name.to_owned());
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "EXOModuleFile listed names that are not cmdlet names (Verb-Noun, ASCII); ignored them"
        );
    }
    Ok(names)
}

impl<T: TokenProvider + ?Sized> RestClient<T> {
    /// A client over `http` (its trust roots decide which endpoints it accepts).
    pub fn new(http: reqwest::Client, tokens: Arc<T>, settings: RestSettings) -> Self {
        Self {
            http,
            settings,
            tokens,
            metrics: crate::metrics::BridgeMetrics::default(),
            audit: crate::audit::Audit::log(),
            regions: Regions::default(),
        }
    }

    fn tokens_resource_hint(&self) -> &'static str {
        match self.settings.audience {
            Audience::Exchange => "https://outlook.office365.com",
            Audience::Compliance => {
                "https://ps.compliance.protection.outlook.com (or the cloud's S&C host)"
            }
        }
    }

    fn service(&self) -> &'static str {
        self.settings.audience.service()
    }

    /// `X-AnchorMailbox`: Exchange's app-only `APP:` anchor on the tenant id; S&C's is the UPN
    /// of the same system mailbox in the organization (scc-rest-adminapi.md §2).
    fn anchor(&self, caller: &RestCaller) -> String {
        match self.settings.audience {
            Audience::Exchange => format!("APP:{ANCHOR_MAILBOX}@{}", caller.tenant_id),
            Audience::Compliance => format!("UPN:{ANCHOR_MAILBOX}@{}", caller.organization),
        }
    }

    async fn token(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        self.tokens.token_for(tenant, self.settings.audience).await
    }

    /// Where `caller`'s cmdlets run: the endpoint, or for S&C the tenant's pinned region
    /// (discovered now when there is none).
    ///
    /// # Errors
    /// A text saying why the region could not be discovered.
    pub async fn base(&self, caller: &RestCaller) -> Result<Url, String> {
        if self.settings.audience == Audience::Exchange {
            return Ok(self.settings.endpoint.clone());
        }
        if let Some(base) = self.regions.get(&caller.tenant_id) {
            return Ok(base);
        }
        let _one = self.regions.discovering.lock().await;
        if let Some(base) = self.regions.get(&caller.tenant_id) {
            return Ok(base);
        }
        let base = self.discover(caller).await?;
        self.regions
            .pin(&caller.tenant_id, base.clone(), self.settings.region_ttl);
        Ok(base)
    }

    /// The module's discovery (scc-rest-adminapi.md §2): `GET {global}/AdminApi/v1.0/{tid}/
    /// EXOModuleFile` with only `Authorization` and `X-AnchorMailbox`, redirects off; a 302
    /// names the region, any other answer means the global host serves the tenant.
    async fn discover(&self, caller: &RestCaller) -> Result<Url, String> {
        let global = &self.settings.endpoint;
        let token = self
            .token(&caller.tenant)
            .await
            .map_err(|e| e.to_string())?;
        let mut url = global.clone();
        url.set_path(&format!(
            "{}/AdminApi/v1.0/{}/EXOModuleFile",
            global.path().trim_end_matches('/'),
            caller.tenant_id
        ));
        url.set_query(Some("Version=3.9.2"));
        self.metrics.discoveries.inc();
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(60))
            .header("Authorization", format!("Bearer {}", token.token.expose()))
            .header("X-AnchorMailbox", self.anchor(caller))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Security & Compliance at {} could not be reached to find tenant {}'s region: {e}",
                    global.origin().ascii_serialization(),
                    caller.tenant
                )
            })?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .chars()
                .take(2048)
                .collect::<String>();
            let base = regional_base(global, &location).map_err(|why| {
                format!(
                    "Security & Compliance's region redirect for tenant {} cannot be used: {why}; the \
                     tenant's token is sent only to {} and its regional hosts",
                    caller.tenant,
                    global.origin().ascii_serialization()
                )
            })?;
            tracing::info!(tenant = %caller.tenant, region = %base.origin().ascii_serialization(), "S&C region discovered");
            return Ok(base);
        }
        if status.is_server_error() {
            return Err(format!(
                "Security & Compliance at {} answered HTTP {status} when asked for tenant {}'s region; \
                 try again shortly",
                global.origin().ascii_serialization(),
                caller.tenant
            ));
        }
        tracing::info!(tenant = %caller.tenant, %status, "S&C answered without a region redirect; using the global host");
        Ok(global.clone())
    }

    /// The settings.
    pub fn settings(&self) -> &RestSettings {
        &self.settings
    }

    fn invoke_url(base: &Url, caller: &RestCaller) -> Url {
        let mut url = base.clone();
        url.set_path(&format!(
            "{}/adminapi/beta/{}/InvokeCommand",
            base.path().trim_end_matches('/'),
            caller.tenant_id
        ));
        url
    }

    /// Why a 2xx body could not be read ([`read_capped`] up to
    /// [`RestSettings::max_page_bytes`]: refused by its `Content-Length` before reading, or as
    /// soon as the bytes read pass the limit, never after), as the cmdlet's error.
    fn body_failure(&self, cmdlet: &str, capped: Capped) -> Failure {
        let limit = self.settings.max_page_bytes;
        match capped {
            Capped::TooLarge => Failure::Terminating(bridge_record(
                cmdlet,
                "ResponseTooLarge",
                ErrorCategory::LimitsExceeded,
                format!(
                    "Exchange Online's answer to {cmdlet} is larger than the bridge's limit of {limit} bytes per \
                     page; ask for fewer objects per call (-ResultSize, -Filter) or select fewer properties."
                ),
            )),
            Capped::Transport(e) => self.transport_failure(cmdlet, &e),
        }
    }

    fn transport_failure(&self, cmdlet: &str, e: &reqwest::Error) -> Failure {
        let delivery = Delivery::of(e);
        // What the user must know before running it again: whether it may have run.
        let may_have_run = if read_only(cmdlet) || may_resend(delivery, false) {
            ""
        } else {
            " It may or may not have run, so the proxy did not send it again: check the result (with the \
             matching Get- cmdlet) before running it again."
        };
        if e.is_timeout() {
            let limit = self.settings.timeout_for(cmdlet);
            let limit = if limit < Duration::from_secs(1) {
                format!("{} ms", limit.as_millis())
            } else {
                format!("{} seconds", limit.as_secs())
            };
            return Failure::Terminating(bridge_record(
                cmdlet,
                "OperationTimeout",
                ErrorCategory::OperationTimeout,
                format!(
                    "Exchange Online did not finish {cmdlet} within {limit}. The REST API stops every cmdlet \
                     after 15 minutes: narrow the query (-ResultSize, -Filter, -Identity) or split the work into \
                     smaller batches.{may_have_run}"
                ),
            ));
        }
        let mut reason = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            reason.push_str(": ");
            reason.push_str(&c.to_string());
            cause = c.source();
        }
        let what = match delivery {
            Delivery::NotSent => "could not be reached for",
            _ => "stopped answering during",
        };
        if certificate_refused(e) {
            reason.push_str(
                "; Exchange's TLS certificate was not accepted: if the endpoint uses a private CA, set \
                 [exchange] ca_file to its certificate",
            );
        }
        Failure::Terminating(bridge_record(
            cmdlet,
            "ConnectionError",
            ErrorCategory::ConnectionError,
            format!(
                "Exchange Online at {} {what} {cmdlet} ({reason}).{may_have_run}",
                self.settings.endpoint
            ),
        ))
    }

    /// How long to wait before retry `attempt`: Exchange's hint, or 2 s, 4 s, 8 s … without
    /// one; never longer than [`RestSettings::max_retry_after`].
    fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        hint.unwrap_or_else(|| {
            self.settings
                .retry_base
                .saturating_mul(1u32 << attempt.min(10))
        })
        .min(self.settings.max_retry_after)
    }

    /// Exchange asked for a longer wait than [`RestSettings::max_retry_after`]: fail now and
    /// say when to try again.
    fn wait_refused(
        &self,
        cmdlet: &str,
        tenant: &TenantName,
        status: u16,
        wait: Duration,
    ) -> Failure {
        let again = chrono::TimeDelta::from_std(wait)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_add_signed(d))
            .map_or_else(String::new, |t| {
                format!(" after {}", t.format("%Y-%m-%d %H:%M:%S UTC"))
            });
        Failure::Terminating(bridge_record(
            cmdlet,
            "ThrottlingError",
            ErrorCategory::LimitsExceeded,
            format!(
                "Exchange Online asked to wait {} s before {cmdlet} is retried for tenant {tenant} (HTTP {status} with \
                 Retry-After), longer than the bridge waits ({} s): run it again{again}, or run fewer commands in \
                 parallel.",
                wait.as_secs(),
                self.settings.max_retry_after.as_secs()
            ),
        ))
    }

    fn count_retry(&self, reason: &'static str) {
        self.metrics
            .retries
            .get_or_create(&crate::metrics::RetryLabels { reason })
            .inc();
    }

    /// POSTs one page request with retries; returns the 200 body.
    async fn post(
        &self,
        ctx: &CallCtx<'_>,
        target: &PageUrl,
    ) -> Result<(Bytes, ErrorOrigin, Url), Failure> {
        let cmdlet = ctx.entry.metadata.name.as_str();
        let tenant = &ctx.caller.tenant;
        let read_only = read_only(cmdlet);
        let mut refreshed = false;
        let mut attempt = 0u32;
        let mut token = self
            .token(tenant)
            .await
            .map_err(|e| token_failure(cmdlet, tenant, self.settings.audience, &e))?;
        // S&C: a first page that fails at the pinned region may rediscover it, once.
        let mut may_rediscover =
            self.settings.audience == Audience::Compliance && matches!(target, PageUrl::First);
        loop {
            let url = match target {
                PageUrl::Next(u) => u.clone(),
                PageUrl::First => {
                    let base = self.base(ctx.caller).await.map_err(|why| {
                        Failure::Terminating(bridge_record(
                            cmdlet,
                            "ConnectionError",
                            ErrorCategory::ConnectionError,
                            why,
                        ))
                    })?;
                    Self::invoke_url(&base, ctx.caller)
                }
            };
            let url = &url;
            let request_id = Uuid::new_v4();
            let mut req = self
                .http
                .post(url.clone())
                .timeout(self.settings.timeout_for(cmdlet))
                .header("Authorization", format!("Bearer {}", token.token.expose()))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .header("Accept-Charset", "UTF-8")
                .header("X-AnchorMailbox", self.anchor(ctx.caller))
                .header("Prefer", format!("odata.maxpagesize={}", ctx.page_size))
                .header("X-CmdletName", cmdlet)
                .header("client-request-id", request_id.to_string())
                .header("connection-id", ctx.connection_id.to_string())
                .header("X-ResponseFormat", "json")
                .header("X-ClientApplication", "exo-authproxy")
                .body(ctx.body.clone());
            if let Some(w) = ctx.warning_action {
                req = req.header("WarningAction", w);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() && may_rediscover => {
                    may_rediscover = false;
                    self.regions
                        .forget(&ctx.caller.tenant_id, "connection failed");
                    continue;
                }
                Err(e) => {
                    let delivery = Delivery::of(&e);
                    if may_resend(delivery, read_only)
                        && attempt < self.settings.max_retries
                        && !certificate_refused(&e)
                    {
                        tracing::warn!(%cmdlet, %request_id, error = %e, ?delivery, "no answer from Exchange; sending again");
                        self.count_retry(match delivery {
                            Delivery::NotSent => "connect",
                            _ => "lost",
                        });
                        tokio::time::sleep(self.backoff(attempt, None)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(self.transport_failure(cmdlet, &e));
                }
            };
            let status = resp.status().as_u16();
            let origin = origin(&resp);
            tracing::debug!(%cmdlet, %request_id, exchange_request_id = %origin.request_id, status, user = %ctx.caller.user, "InvokeCommand");
            match status {
                200..=299 => match read_capped(resp, self.settings.max_page_bytes).await {
                    Ok(body) => return Ok((body, origin, url.clone())),
                    // The page broke off: a Get- asks for it again, nothing else is resent.
                    Err(Capped::Transport(e))
                        if may_resend(Delivery::of(&e), read_only)
                            && attempt < self.settings.max_retries =>
                    {
                        tracing::warn!(%cmdlet, %request_id, error = %e, "the answer broke off; asking again");
                        self.count_retry("lost");
                        tokio::time::sleep(self.backoff(attempt, None)).await;
                        attempt += 1;
                        continue;
                    }
                    Err(capped) => return Err(self.body_failure(cmdlet, capped)),
                },
                421 if may_rediscover => {
                    may_rediscover = false;
                    self.regions
                        .forget(&ctx.caller.tenant_id, "421 Misdirected Request");
                    continue;
                }
                401 if !refreshed => {
                    refreshed = true;
                    let newer = self
                        .tokens
                        .refresh_for(tenant, self.settings.audience)
                        .await
                        .map_err(|e| token_failure(cmdlet, tenant, self.settings.audience, &e))?;
                    // Forced refreshes are bounded per tenant: no newer token yet means the
                    // diagnosis now, not the refused token sent again.
                    if newer.token.expose() != token.token.expose() {
                        token = newer;
                        continue;
                    }
                }
                429 | 503 | 504
                    if attempt < self.settings.max_retries
                        && may_resend(
                            if status == 504 {
                                Delivery::Lost
                            } else {
                                Delivery::Refused
                            },
                            read_only,
                        ) =>
                {
                    let hint = retry_after(&resp);
                    if let Some(wait) = hint.filter(|w| *w > self.settings.max_retry_after) {
                        return Err(self.wait_refused(cmdlet, tenant, status, wait));
                    }
                    self.count_retry(match status {
                        429 => "429",
                        503 => "503",
                        _ => "504",
                    });
                    let wait = self.backoff(attempt, hint);
                    tracing::info!(%cmdlet, status, wait_ms = wait.as_millis() as u64, attempt, "throttled; waiting");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                _ => {}
            }
            let hint = retry_after(&resp);
            let body = read_error_body(resp).await;
            let parsed = ExchangeError::from_rest_body(&body);
            // A 404 that is not an Exchange error body (an unknown identity is one) means the
            // region no longer serves the tenant.
            if status == 404 && parsed.is_none() && may_rediscover {
                may_rediscover = false;
                self.regions
                    .forget(&ctx.caller.tenant_id, "404 without an error body");
                continue;
            }
            if let Some(e) = &parsed
                && TRANSIENT.iter().any(|t| e.class.ends_with(t))
                && attempt < self.settings.max_retries
            {
                if let Some(wait) = hint.filter(|w| *w > self.settings.max_retry_after) {
                    return Err(self.wait_refused(cmdlet, tenant, status, wait));
                }
                self.count_retry("transient");
                tokio::time::sleep(self.backoff(attempt, hint)).await;
                attempt += 1;
                continue;
            }
            return Err(match (status, parsed) {
                // S&C's role refusal: its own roles, both fixes.
                (403, e) if self.settings.audience == Audience::Compliance => {
                    Failure::Terminating(bridge_record(
                        cmdlet,
                        "PermissionDenied",
                        ErrorCategory::PermissionDenied,
                        ComplianceRoleRefusal {
                            tenant: tenant.clone(),
                            organization: ctx.caller.organization.0.clone(),
                            app_id: ctx.caller.app_id.clone(),
                            detail: e.map_or_else(|| "HTTP 403".to_owned(), |e| e.message),
                        }
                        .to_string(),
                    ))
                }
                // S&C refused app-only: which permission it checks is open (§8, question 1),
                // so the record asks the question with both fixes.
                (401, e) if self.settings.audience == Audience::Compliance => {
                    Failure::Terminating(bridge_record(
                        cmdlet,
                        "AuthenticationError",
                        ErrorCategory::AuthenticationError,
                        PermissionQuestion {
                            tenant: tenant.clone(),
                            app_id: ctx.caller.app_id.clone(),
                            detail: format!(
                                "HTTP 401 even with a freshly fetched token{}; the token's \
                                 audience is {}",
                                e.map(|e| format!(": {}", e.message)).unwrap_or_default(),
                                self.tokens_resource_hint()
                            ),
                        }
                        .to_string(),
                    ))
                }
                // Exchange refused an app without a directory role: DESIGN.md §4's text,
                // the same winrm mode shows.
                (401 | 403, _) if token.lacks_directory_role() => {
                    Failure::Terminating(bridge_record(
                        cmdlet,
                        "PermissionDenied",
                        ErrorCategory::PermissionDenied,
                        RoleRefusal {
                            tenant: tenant.clone(),
                            organization: ctx.caller.organization.0.clone(),
                            app_id: ctx.caller.app_id.clone(),
                        }
                        .to_string(),
                    ))
                }
                (401, e) => Failure::Terminating(bridge_record(
                    cmdlet,
                    "AuthenticationError",
                    ErrorCategory::AuthenticationError,
                    format!(
                        "Exchange Online refused the app's token for tenant {tenant} (401) even after a fresh token \
                         was fetched{}: check that the app has Exchange.ManageAsApp with admin consent in this tenant \
                         and that the token's audience is https://outlook.office365.com.",
                        e.map(|e| format!(" ({})", e.message)).unwrap_or_default()
                    ),
                )),
                (403, e) => Failure::Terminating(bridge_record(
                    cmdlet,
                    "PermissionDenied",
                    ErrorCategory::PermissionDenied,
                    match e {
                        Some(e) => e.message,
                        None => format!(
                            "The app isn't assigned to any management roles that allow running {cmdlet} in tenant \
                             {tenant} (403): assign Exchange Administrator to the app's service principal, or an \
                             Exchange role group that includes {cmdlet}."
                        ),
                    },
                )),
                (429, _) => Failure::Terminating(bridge_record(
                    cmdlet,
                    "ThrottlingError",
                    ErrorCategory::LimitsExceeded,
                    format!(
                        "Exchange Online is throttling this tenant ({tenant}); {cmdlet} was still refused after {} \
                         retries. Wait a few minutes, or run fewer commands in parallel.",
                        self.settings.max_retries
                    ),
                )),
                (400..=499, Some(e)) => Failure::from_exchange(&e, cmdlet, &origin),
                (504, _) if !read_only => Failure::Terminating(bridge_record(
                    cmdlet,
                    "OperationTimeout",
                    ErrorCategory::OperationTimeout,
                    format!(
                        "Exchange Online's gateway gave up waiting for {cmdlet} in tenant {tenant} (HTTP 504): it may \
                         or may not have run, so the proxy did not send it again. Check the result (with the matching \
                         Get- cmdlet) before running it again."
                    ),
                )),
                (_, e) => Failure::Terminating(bridge_record(
                    cmdlet,
                    "ServerSideError",
                    ErrorCategory::NotSpecified,
                    format!(
                        "A server side error has occurred because of which the operation could not be completed \
                         (HTTP {status}{}). Please try again after some time. If the problem still persists, please \
                         reach out to MS support.",
                        e.map(|e| format!(": {}", e.message)).unwrap_or_default()
                    ),
                )),
            });
        }
    }

    /// The cmdlet names Exchange lets this app run (EXOModuleFile, §10).
    ///
    /// # Errors
    /// A text saying what failed.
    pub async fn exported_cmdlets(&self, caller: &RestCaller) -> Result<Vec<String>, String> {
        let token = self
            .token(&caller.tenant)
            .await
            .map_err(|e| e.to_string())?
            .token;
        let base = self.base(caller).await?;
        let mut url = base.clone();
        url.set_path(&format!(
            "{}/adminapi/v1.0/{}/EXOModuleFile",
            base.path().trim_end_matches('/'),
            caller.tenant_id
        ));
        url.set_query(Some("Version=3.9.2"));
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(60))
            .header("Authorization", format!("Bearer {}", token.expose()))
            .header("CommandName", "*")
            .header("X-AnchorMailbox", self.anchor(caller))
            .header("client-request-id", Uuid::new_v4().to_string())
            .send()
            .await
            .map_err(|e| format!("EXOModuleFile request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("EXOModuleFile answered HTTP {}", resp.status()));
        }
        let body = read_capped(resp, MAX_MODULE_FILE_BYTES)
            .await
            .map_err(|e| match e {
                Capped::TooLarge => format!(
                    "EXOModuleFile's answer is larger than {MAX_MODULE_FILE_BYTES} bytes; not read"
                ),
                Capped::Transport(e) => format!("EXOModuleFile could not be read: {e}"),
            })?;
        let module: ModuleFile = serde_json::from_slice(&body)
            .map_err(|e| format!("EXOModuleFile body is not the expected JSON: {e}"))?;
        let list = module
            .value
            .ok_or("EXOModuleFile has no value[0].exportedCmdlets")?;
        exported_names(&list)
    }
}

fn token_failure(
    cmdlet: &str,
    tenant: &TenantName,
    audience: Audience,
    e: &crate::token::TokenError,
) -> Failure {
    Failure::Terminating(bridge_record(
        cmdlet,
        "TokenUnavailable",
        ErrorCategory::AuthenticationError,
        format!(
            "No {} token for tenant {tenant}, so {cmdlet} could not run: {e}",
            audience.service()
        ),
    ))
}

struct CallCtx<'a> {
    caller: &'a RestCaller,
    site: CallSite<'a>,
    started: tokio::time::Instant,
    entry: &'a Entry,
    /// The parameters' names (the audit trail records names, never values).
    parameter_names: Vec<String>,
    body: Bytes,
    page_size: u32,
    connection_id: Uuid,
    warning_action: Option<&'static str>,
}

/// One cmdlet invocation in flight: its pages, one per [`Call::next`].
pub struct RestCall<'a, T: ?Sized> {
    client: &'a RestClient<T>,
    ctx: CallCtx<'a>,
    next_url: Option<PageUrl>,
    pages: u32,
    objects: u64,
    /// Error records written (non-terminating errors, `@adminapi.errors`).
    errors: u64,
    /// The result is counted and audited (else dropping the call records `stopped`).
    settled: bool,
}

impl<T: ?Sized> RestCall<'_, T> {
    /// Counts and audits the call's result, once.
    fn settle(&mut self, result: &'static str) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let cmdlet = &self.ctx.entry.metadata.name;
        self.client
            .metrics
            .calls
            .get_or_create(&crate::metrics::CmdletLabels {
                endpoint: self.client.settings.audience.as_str(),
                cmdlet: cmdlet.clone(),
                result,
            })
            .inc();
        let origin = self.ctx.site.origin;
        let nonempty = |s: &'_ str| !s.is_empty();
        self.client.audit.command(&crate::audit::CommandEvent {
            user: &self.ctx.caller.user,
            tenant: self.ctx.caller.tenant.as_str(),
            endpoint: self.client.settings.audience.as_str(),
            session: Some(origin.shell_id.as_str()).filter(|s| nonempty(s)),
            pipeline: Some(origin.command_id.as_str()).filter(|s| nonempty(s)),
            position: self.ctx.site.position,
            cmdlet,
            parameters: &self.ctx.parameter_names,
            result,
            objects: self.objects,
            errors: self.errors,
            duration: self.ctx.started.elapsed(),
        });
    }
}

impl<T: ?Sized> Drop for RestCall<'_, T> {
    fn drop(&mut self) {
        // Ctrl-C, Select-Object -First n, or the pipeline failing downstream.
        self.settle("stopped");
    }
}

impl<T: TokenProvider + ?Sized> RestCall<'_, T> {
    /// [`RestCall::fetch_page`], counted: a page received, and the call's result once known.
    async fn page(&mut self) -> Option<Result<Batch, Failure>> {
        let step = self.fetch_page().await;
        let result = match &step {
            Some(Ok(batch)) => {
                self.client.metrics.pages.inc();
                self.objects += batch.objects.len() as u64;
                self.errors += batch.errors.len() as u64;
                if self.next_url.is_some() {
                    return step;
                }
                if self.errors > 0 { "error" } else { "ok" }
            }
            Some(Err(Failure::NonTerminating(_))) => {
                self.errors += 1;
                "error"
            }
            Some(Err(Failure::Terminating(_))) => "failed",
            None => return step,
        };
        self.settle(result);
        step
    }

    async fn fetch_page(&mut self) -> Option<Result<Batch, Failure>> {
        let target = self.next_url.take()?;
        let cmdlet = self.ctx.entry.metadata.name.clone();
        let (body, origin, url) = match self.client.post(&self.ctx, &target).await {
            Ok(x) => x,
            Err(f) => return Some(Err(f)),
        };
        self.pages += 1;
        let page: Page = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return Some(Err(Failure::Terminating(bridge_record(
                    &cmdlet,
                    "InvalidResponse",
                    ErrorCategory::InvalidResult,
                    format!(
                        "Exchange Online's answer to {cmdlet} (page {}) is not the expected JSON: {e}",
                        self.pages
                    ),
                ))));
            }
        };
        if let Some(next) = page.next.as_deref() {
            match Url::parse(next) {
                Ok(u) if u.origin() == url.origin() => self.next_url = Some(PageUrl::Next(u)),
                _ => {
                    return Some(Err(Failure::Terminating(bridge_record(
                        &cmdlet,
                        "InvalidNextLink",
                        ErrorCategory::InvalidResult,
                        format!(
                            "{}'s next-page link for {cmdlet} ({next}) does not point at {}; the bridge \
                             does not send the tenant's token anywhere else.",
                            self.client.service(),
                            url.origin().ascii_serialization()
                        ),
                    ))));
                }
            }
        }
        let types = &self.ctx.entry.output_types;
        let objects = page
            .value
            .unwrap_or_default()
            .into_iter()
            .map(|o| convert::object_from_properties(o.0, types))
            .collect();
        let last = self.next_url.is_none();
        let warnings = page
            .warnings
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_owned))
            // The module shows the pagination warning only with the last page (§6).
            .filter(|w| last || w != MORE_RESULTS)
            .collect();
        let errors = page
            .errors
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let parsed = match &e {
                    Json::String(s) => ExchangeError::parse_detail(s),
                    other => ExchangeError::from_rest_body(
                        &serde_json::to_vec(&serde_json::json!({ "error": other }))
                            .unwrap_or_default(),
                    ),
                };
                parsed.map(|p| p.to_error_record(&cmdlet, &origin))
            })
            .collect();
        Some(Ok(Batch {
            objects,
            warnings,
            errors,
        }))
    }
}

impl<T: TokenProvider + ?Sized> Call for RestCall<'_, T> {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Batch, Failure>>> {
        Box::pin(self.page())
    }
}

fn page_size(settings: &RestSettings, parameters: &Map<String, Json>) -> u32 {
    let rs = parameters
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ResultSize"))
        .map(|(_, v)| v);
    let n = match rs {
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(s)) => s.parse().ok(),
        _ => None,
    };
    let max = settings.page_size.clamp(1, 1000);
    n.map_or(max, |n| u32::try_from(n).unwrap_or(max).clamp(1, max))
}

impl<T: TokenProvider + ?Sized> Backend for RestClient<T> {
    type Caller = RestCaller;

    fn call<'a>(
        &'a self,
        caller: &'a RestCaller,
        site: CallSite<'a>,
        entry: &'a Entry,
        parameters: Map<String, Json>,
        common: &'a CommonParameters,
    ) -> Box<dyn Call + 'a> {
        if self.settings.audience == Audience::Compliance
            && let Some(why) = compliance_refusal(&entry.metadata.name)
        {
            tracing::info!(cmdlet = %entry.metadata.name, tenant = %caller.tenant, "refused: not supported app-only on S&C");
            return Box::new(Refused(Some(Failure::Terminating(bridge_record(
                &entry.metadata.name,
                "NotSupportedAppOnly",
                ErrorCategory::NotImplemented,
                why,
            )))));
        }
        let page_size = page_size(&self.settings, &parameters);
        let parameter_names = parameters.keys().cloned().collect();
        let body = serde_json::json!({
            "CmdletInput": { "CmdletName": entry.metadata.name, "Parameters": Json::Object(parameters) }
        });
        Box::new(RestCall {
            client: self,
            ctx: CallCtx {
                caller,
                site,
                started: tokio::time::Instant::now(),
                entry,
                parameter_names,
                body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                page_size,
                connection_id: Uuid::new_v4(),
                warning_action: common.warning_action.map(|w| w.as_str()),
            },
            next_url: Some(PageUrl::First),
            pages: 0,
            objects: 0,
            errors: 0,
            settled: false,
        })
    }
}

/// A call refused before anything was sent: its one answer is the refusal.
struct Refused(Option<Failure>);

impl Call for Refused {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Batch, Failure>>> {
        let refusal = self.0.take();
        Box::pin(async move { refusal.map(Err) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::any;

    #[test]
    fn page_size_follows_result_size() {
        let s = RestSettings::new(Url::parse("https://outlook.office365.com").unwrap());
        let p = |v: Json| page_size(&s, v.as_object().unwrap());
        assert_eq!(p(serde_json::json!({})), 1000);
        assert_eq!(p(serde_json::json!({"ResultSize": 10})), 10);
        assert_eq!(p(serde_json::json!({"resultsize": "25"})), 25);
        assert_eq!(p(serde_json::json!({"ResultSize": "Unlimited"})), 1000);
        assert_eq!(p(serde_json::json!({"ResultSize": 50_000})), 1000);
    }

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn retry_after_is_clamped_or_ignored_never_a_panic() {
        let now = at("2026-12-04T12:00:00Z");
        let secs = |n: f64| Some(Duration::from_secs_f64(n));
        for (value, want) in [
            ("5", secs(5.0)),
            (" 0 ", secs(0.0)),
            ("1.5", secs(1.5)),
            ("0.001", secs(0.001)),
            ("86400", Some(MAX_RETRY_HINT)),
            ("4294967295", Some(MAX_RETRY_HINT)),
            ("18446744073709551616", Some(MAX_RETRY_HINT)),
            ("1e30", Some(MAX_RETRY_HINT)),
            ("1e308", Some(MAX_RETRY_HINT)),
            ("-3", None),
            ("-0.5", None),
            ("-1e308", None),
            ("NaN", None),
            ("inf", None),
            ("-inf", None),
            ("soon", None),
            ("", None),
            ("5 seconds", None),
            (&"9".repeat(400), None),
            ("Fri, 04 Dec 2026 12:00:30 GMT", secs(30.0)),
            ("Fri, 04 Dec 2026 11:00:00 GMT", secs(0.0)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", secs(0.0)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(MAX_RETRY_HINT)),
            ("Fri, 32 Dec 2026 12:00:30 GMT", None),
        ] {
            assert_eq!(parse_retry_after(value, now), want, "{value:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(value in ".{0,80}", offset in any::<i64>()) {
            let now = chrono::DateTime::from_timestamp(offset % 100_000_000_000, 0)
                .unwrap_or_default();
            let _ = parse_retry_after(&value, now);
        }
    }

    #[test]
    fn a_page_with_too_many_objects_is_refused_while_parsing() {
        let ok = format!("{{\"value\":[{}{{}}]}}", "{},".repeat(MAX_PAGE_OBJECTS - 1));
        let page: Page = serde_json::from_str(&ok).unwrap();
        assert_eq!(page.value.unwrap().len(), MAX_PAGE_OBJECTS);
        let hostile = format!("{{\"value\":[{}{{}}]}}", "{},".repeat(MAX_PAGE_OBJECTS));
        let err = serde_json::from_str::<Page>(&hostile).err().unwrap();
        assert!(err.to_string().contains("more than 10000 objects"), "{err}");
        let empty: Page = serde_json::from_str(r#"{"value":null}"#).unwrap();
        assert!(empty.value.is_none());
    }

    #[test]
    fn the_module_file_keeps_the_first_list_and_skips_the_rest() {
        let body = r#"{"@odata.context":"x","value":[{"exportedCmdlets":"Get-Mailbox,Set-Mailbox","module":"AAAA"},{"exportedCmdlets":"Nope-Nope"},{"big":[1,2,3]}]}"#;
        let module: ModuleFile = serde_json::from_str(body).unwrap();
        assert_eq!(module.value.as_deref(), Some("Get-Mailbox,Set-Mailbox"));
        let none: ModuleFile = serde_json::from_str(r#"{"value":[]}"#).unwrap();
        assert!(none.value.is_none());
    }

    #[test]
    fn exported_names_are_cmdlet_names_each_once_and_bounded() {
        let names = exported_names(
            "Get-Mailbox, get-mailbox,Sét-Mailbox,Ädd-X,,-Foo,NoVerb,Set-CASMailbox,Get-\u{0}x",
        )
        .unwrap();
        assert_eq!(names, ["Get-Mailbox", "Set-CASMailbox"]);
        let long = (0..MAX_EXPORTED_CMDLETS)
            .map(|n| format!("Get-Thing{n}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(exported_names(&long).unwrap().len(), MAX_EXPORTED_CMDLETS);
        let err = exported_names(&format!("{long},Get-OneMore")).unwrap_err();
        assert!(err.contains("more than 5000 cmdlets"), "{err}");
    }

    #[test]
    fn timeouts_per_cmdlet() {
        let s = RestSettings::new(Url::parse("https://outlook.office365.com").unwrap());
        assert_eq!(s.timeout_for("Get-Mailbox"), Duration::from_secs(960));
        assert_eq!(
            s.timeout_for("get-distributiongroupmember"),
            Duration::from_secs(3660)
        );
    }
}
