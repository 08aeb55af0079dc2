//! Per-tenant token cache.
//!
//! Concurrent callers for one key share one token request: the first caller fetches while the
//! others wait on the slot's fetch lock and then take its result (a token, or the same error:
//! a failed fetch is not retried once per waiter). Entra answers a stampede with 429s.
//!
//! A token is refreshed in the background at half its lifetime (or at `refresh_in` when Entra
//! sends it) while callers keep getting the current one without waiting. A token is never
//! handed out within [`Settings::expiry_margin`] (5 minutes) of expiry: Exchange checks `exp`
//! when a session is built, and a script's session should not die mid-command. If a background
//! refresh fails, the still-valid token keeps being served and the refresh is retried later
//! with backoff, so scripts do not see Entra outages shorter than the remaining lifetime.
//!
//! A forced refresh (Exchange refused the token, so a newer one might carry a role assigned
//! since) fetches at most once per tenant per [`Settings::forced_refresh_interval`] (30 s):
//! every WS-Man request of a script whose app lacks a role is refused, and without the bound
//! each of them would cost an Entra request. Within the interval the latest token is returned,
//! so the caller gives the same diagnosis again.
//!
//! Transient failures (5xx, timeouts, 429) are retried with capped exponential backoff and
//! full jitter; a 429's `Retry-After` is honoured. Each key has its own slot, so one tenant's
//! failures never delay another.
//!
//! The source of tokens is a trait ([`TokenSource`]) and all timing uses `tokio::time`, so the
//! tests drive this module with a scripted source under `tokio::time::pause` (no sockets).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{AccessToken, TokenError};
use crate::config::TenantName;

/// What a cache slot is keyed by: one token per (authority, tenant, client id, audience).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Which service the token is for (Exchange or Security & Compliance).
    pub audience: super::Audience,
    /// The authority host URL.
    pub authority: Arc<str>,
    /// Our name for the tenant.
    pub tenant: TenantName,
    /// The app's client id.
    pub client_id: Arc<str>,
}

/// A token as a source delivered it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The token and its diagnosis.
    pub token: AccessToken,
    /// `expires_in`.
    pub lifetime: Duration,
    /// `refresh_in`, when Entra sent it.
    pub refresh_in: Option<Duration>,
}

/// Where tokens come from: Entra in production, a script in tests.
pub trait TokenSource: Send + Sync + 'static {
    /// One token request (no retries: the cache retries).
    fn fetch<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Result<Fetched, TokenError>>;
}

/// Timing policy. The defaults carry the reasons in their docs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A token this close to expiry is never handed out (5 min, as MSAL does).
    pub expiry_margin: Duration,
    /// Attempts per fetch, including the first (4: rides out a short blip, then says so).
    pub max_attempts: u32,
    /// First backoff (200 ms), doubled per attempt...
    pub backoff_base: Duration,
    /// ...up to this (5 s), with full jitter.
    pub backoff_cap: Duration,
    /// A `Retry-After` longer than this (60 s) is not waited out by a caller; the error says so.
    pub max_retry_after: Duration,
    /// After a failed background refresh, wait this long (30 s, doubling, capped at 5 min)
    /// before trying again.
    pub refresh_retry: Duration,
    /// At most one forced refresh per tenant this often (30 s): a role assigned in Entra
    /// shows in a new token within that, and a storm of refused requests costs Entra one
    /// request per interval, not one each.
    pub forced_refresh_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            expiry_margin: Duration::from_secs(300),
            max_attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            refresh_retry: Duration::from_secs(30),
            forced_refresh_interval: Duration::from_secs(30),
        }
    }
}

struct Entry {
    token: AccessToken,
    refresh_at: Instant,
    usable_until: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Arc<Entry>>,
    /// Bumped by every completed fetch (success or failure).
    generation: u64,
    last_error: Option<TokenError>,
    refreshing: bool,
    refresh_failures: u32,
    next_refresh: Option<Instant>,
    /// When the last forced refresh fetched (the rate limit's clock).
    last_forced: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the guard cannot leave State inconsistent (plain field writes).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Inner<S> {
    source: S,
    settings: Settings,
    slots: moka::future::Cache<CacheKey, Arc<Slot>>,
    metrics: std::sync::OnceLock<crate::metrics::TokenMetrics>,
}

/// What a tenant's slot says about its token (readiness, `/metrics`).
#[derive(Debug, Clone)]
pub enum Health {
    /// Never requested: tokens are fetched on first use.
    NotFetched,
    /// A token is handed out now, for this much longer at most.
    Usable {
        /// Until the expiry margin.
        usable_for: Duration,
        /// The last background refresh failed (the token is still served).
        refresh_failing: bool,
    },
    /// No usable token, and the last fetch failed with this.
    Failing(TokenError),
}

/// The cache. Cheap to clone (shared state).
pub struct TokenCache<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for TokenCache<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: TokenSource> TokenCache<S> {
    /// A cache over `source`.
    pub fn new(source: S, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                settings,
                slots: moka::future::Cache::builder().max_capacity(100_000).build(),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The source (tests read its counters).
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// Counts every fetch's outcome into `metrics` from now on (the first call wins).
    pub fn observe(&self, metrics: crate::metrics::TokenMetrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// The state of `key`'s token, without fetching.
    pub async fn health(&self, key: &CacheKey) -> Health {
        let Some(slot) = self.inner.slots.get(key).await else {
            return Health::NotFetched;
        };
        let st = slot.lock();
        let now = Instant::now();
        match (&st.current, &st.last_error) {
            (Some(entry), _) if now < entry.usable_until => Health::Usable {
                usable_for: entry.usable_until - now,
                refresh_failing: st.refresh_failures > 0,
            },
            (_, Some(err)) => Health::Failing(err.clone()),
            // Expired and not fetched again since: the next caller fetches.
            (Some(_), None) | (None, None) => Health::NotFetched,
        }
    }

    /// Forgets `key`'s token, error and back-off (a reload changed what it is fetched with).
    /// A fetch in flight finishes into the forgotten slot, seen by nobody.
    pub async fn forget(&self, key: &CacheKey) {
        self.inner.slots.invalidate(key).await;
    }

    async fn slot(&self, key: &CacheKey) -> Arc<Slot> {
        if let Some(slot) = self.inner.slots.get(key).await {
            return slot;
        }
        self.inner
            .slots
            .get_with(key.clone(), async { Arc::new(Slot::default()) })
            .await
    }

    /// A usable token for `key`: cached, or fetched once for all concurrent callers.
    ///
    /// # Errors
    /// The fetch's [`TokenError`] when no usable token is cached.
    ///
    /// # Cancel safety
    /// Cancelling a waiting caller affects nobody else. Cancelling the caller that is doing
    /// the fetch drops that request; the next waiter then starts its own.
    pub async fn acquire(&self, key: &CacheKey) -> Result<AccessToken, TokenError> {
        let slot = self.slot(key).await;
        let seen = {
            let mut st = slot.lock();
            let now = Instant::now();
            if let Some(entry) = st.current.clone()
                && now < entry.usable_until
            {
                if now >= entry.refresh_at
                    && !st.refreshing
                    && st.next_refresh.is_none_or(|t| now >= t)
                {
                    st.refreshing = true;
                    self.spawn_refresh(key.clone(), slot.clone());
                }
                return Ok(entry.token.clone());
            }
            st.generation
        };
        self.fetch_once(key, &slot, seen, false).await
    }

    /// Fetches a new token for `key` even if one is cached (claims are snapshotted at
    /// issuance: after an authorization failure, and for `check`). Concurrent forced refreshes
    /// share one fetch.
    ///
    /// # Errors
    /// The fetch's [`TokenError`]; the cached token, if any, stays for [`TokenCache::acquire`].
    ///
    /// Rate-limited: within [`Settings::forced_refresh_interval`] of the last forced fetch,
    /// the latest usable token is returned without asking Entra.
    pub async fn refresh(&self, key: &CacheKey) -> Result<AccessToken, TokenError> {
        let slot = self.slot(key).await;
        let seen = {
            let st = slot.lock();
            let now = Instant::now();
            if let (Some(at), Some(entry)) = (st.last_forced, &st.current)
                && now.saturating_duration_since(at) < self.inner.settings.forced_refresh_interval
                && now < entry.usable_until
            {
                tracing::debug!(tenant = %key.tenant, "forced refresh within the interval: reusing the latest token");
                return Ok(entry.token.clone());
            }
            st.generation
        };
        self.fetch_once(key, &slot, seen, true).await
    }

    async fn fetch_once(
        &self,
        key: &CacheKey,
        slot: &Arc<Slot>,
        seen: u64,
        forced: bool,
    ) -> Result<AccessToken, TokenError> {
        let _fetching = slot.fetching.lock().await;
        {
            let st = slot.lock();
            if st.generation != seen {
                // Someone fetched while we waited: share their outcome.
                let now = Instant::now();
                match (&st.current, &st.last_error) {
                    (_, Some(err)) => return Err(err.clone()),
                    (Some(entry), None) if now < entry.usable_until => {
                        return Ok(entry.token.clone());
                    }
                    _ => {}
                }
            } else if !forced
                && let Some(entry) = &st.current
                && Instant::now() < entry.usable_until
            {
                return Ok(entry.token.clone());
            }
        }
        let result = fetch_with_retry(&self.inner, key).await;
        let mut st = slot.lock();
        st.generation += 1;
        if forced {
            st.last_forced = Some(Instant::now());
        }
        match result {
            Ok(entry) => {
                let token = entry.token.clone();
                st.current = Some(Arc::new(entry));
                st.last_error = None;
                st.refresh_failures = 0;
                st.next_refresh = None;
                Ok(token)
            }
            Err(err) => {
                st.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    fn spawn_refresh(&self, key: CacheKey, slot: Arc<Slot>) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _fetching = slot.fetching.lock().await;
            let result = fetch_with_retry(&inner, &key).await;
            let mut st = slot.lock();
            st.refreshing = false;
            match result {
                Ok(entry) => {
                    tracing::debug!(tenant = %key.tenant, uti = entry.token.uti.as_deref().unwrap_or("-"),
                        "token refreshed ahead of expiry");
                    st.generation += 1;
                    st.current = Some(Arc::new(entry));
                    st.last_error = None;
                    st.refresh_failures = 0;
                    st.next_refresh = None;
                }
                Err(err) => {
                    st.refresh_failures += 1;
                    let base = inner.settings.refresh_retry;
                    let wait = base
                        .saturating_mul(1 << st.refresh_failures.min(4).saturating_sub(1))
                        .min(Duration::from_secs(300))
                        .max(err.retry_after().unwrap_or_default());
                    st.next_refresh = Some(Instant::now() + wait.min(Duration::from_secs(86_400)));
                    tracing::warn!(tenant = %key.tenant, error = %err, retry_in_s = wait.as_secs(),
                        "background token refresh failed; still serving the cached token");
                }
            }
        });
    }
}

/// One fetch (with its retries), counted once in the metrics.
async fn fetch_with_retry<S: TokenSource>(
    inner: &Inner<S>,
    key: &CacheKey,
) -> Result<Entry, TokenError> {
    let result = fetch_retrying(inner, key).await;
    if let Some(m) = inner.metrics.get() {
        m.requests
            .get_or_create(&crate::metrics::TokenLabels {
                tenant: key.tenant.0.clone(),
                audience: key.audience.as_str(),
                result: if result.is_ok() { "ok" } else { "error" },
            })
            .inc();
    }
    result
}

async fn fetch_retrying<S: TokenSource>(
    inner: &Inner<S>,
    key: &CacheKey,
) -> Result<Entry, TokenError> {
    let s = &inner.settings;
    let mut attempt = 1;
    loop {
        let err = match inner.source.fetch(key).await {
            Ok(fetched) => return entry(fetched, s, key),
            Err(err) => err,
        };
        if !err.is_transient() || attempt >= s.max_attempts {
            return Err(err.with_attempts(attempt));
        }
        let wait = match err.retry_after() {
            Some(after) if after > s.max_retry_after => return Err(err.with_attempts(attempt)),
            Some(after) => after,
            None => {
                let exp = s
                    .backoff_base
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(s.backoff_cap);
                exp.mul_f64(rand::random_range(0.5..=1.0))
            }
        };
        tracing::debug!(tenant = %key.tenant, attempt, wait_ms = wait.as_millis() as u64, error = %err,
            "token request failed; retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

fn entry(fetched: Fetched, s: &Settings, key: &CacheKey) -> Result<Entry, TokenError> {
    let now = Instant::now();
    let Some(usable) = fetched
        .lifetime
        .checked_sub(s.expiry_margin)
        .filter(|d| !d.is_zero())
    else {
        return Err(TokenError::Malformed {
            tenant: key.tenant.clone(),
            detail: format!(
                "Entra issued a token valid for only {} s, less than the {} s safety margin the proxy \
                 keeps before expiry (Entra issues 60–90 minutes): is [entra] authority a Microsoft \
                 identity platform endpoint, or does a token lifetime policy on the app shorten it?",
                fetched.lifetime.as_secs(),
                s.expiry_margin.as_secs()
            ),
        });
    };
    let usable = usable.min(super::MAX_TOKEN_LIFETIME);
    let refresh = fetched
        .refresh_in
        .unwrap_or(fetched.lifetime / 2)
        .min(usable);
    Ok(Entry {
        token: fetched.token,
        refresh_at: now + refresh,
        usable_until: now + usable,
    })
}
