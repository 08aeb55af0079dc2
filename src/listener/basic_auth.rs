//! Local Basic authentication: the `[[user]]` table, argon2id, a verification cache, a throttle.
//!
//! Every WS-Man POST carries the Basic credential again, so verifying argon2id (tens of
//! milliseconds by design) per request would make each Receive slow and the proxy easy to
//! overload. A successful verification is therefore remembered for [`CACHE_TTL`] under a keyed
//! hash of the credential (HMAC-SHA-256 with a key drawn at process start): the cache never
//! holds a password, and an entry is useless outside this process. Comparisons are
//! constant-time (`subtle`).
//!
//! Guessing is bounded by [`throttle`]: at most 10 argon2 checks per minute per (address,
//! user) and 30 per address, each reserved *before* its check runs, so concurrency cannot
//! outrun the count (issue 12). Checks of one (address, user) take turns, so 50 sessions a
//! script opens at once cost one check, not 50 racing for 10 slots. The cache is consulted only after the throttle: while a key is
//! throttled even the right password is refused (with the wait), or the cache would answer an
//! unlimited stream of guesses for free. A success clears its (address, user) window, so one
//! host's typos never lock out another user or the same user on another host, and a throttled
//! user is back as soon as the window has moved past the failures.
//!
//! CPU and memory: argon2 runs in `spawn_blocking` behind a global semaphore of [`AuthLimits::hashing`]
//! permits (2 by default: on the 2-core machines this runs on, half the CPU at most goes to
//! logins), and at most [`AuthLimits::queue`] checks wait for a permit; beyond that a login is
//! refused at once with `auth-busy` instead of queueing without bound. Logins answered from
//! the cache never wait there, so a flood of wrong passwords does not slow running scripts.
//! Each check's scratch (`m_cost`, 19 MiB by default) is returned to the kernel when the check
//! ends ([`ARGON2_SCRATCH_RESERVE_BLOCKS`]), so logins cost at most `hashing` scratches at a time
//! and nothing after.

mod throttle;

pub use throttle::{AddressKey, ThrottleLimits};

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use argon2::{Argon2, PasswordHash};
use base64::Engine;
use http::HeaderValue;
use lru::LruCache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::User;
use crate::errors::ProxyError;
use crate::secret::Secret;
use throttle::{Slot, Throttle};

/// How long a successful verification is trusted without re-hashing.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Failed attempts per (address, user) within [`FAILURE_WINDOW`] before the throttle engages.
pub const FAILURE_LIMIT: u32 = 10;
/// Failed attempts per address, across user names, within [`FAILURE_WINDOW`].
pub const ADDRESS_FAILURE_LIMIT: u32 = 30;
/// The window failed attempts are counted in (sliding).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The longest `Authorization` value considered (Basic with an 8 KiB password fits).
const MAX_HEADER: usize = 12 * 1024;

/// Limits of the authenticator; [`AuthLimits::default`] is what `serve` uses.
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// The throttle's windows and map bound.
    pub throttle: ThrottleLimits,
    /// argon2 checks running at once, process-wide.
    pub hashing: usize,
    /// argon2 checks waiting for a permit at most; more are refused with `auth-busy`.
    pub queue: usize,
    /// Cached successes kept at most (least recently used evicted first).
    pub cache: NonZeroUsize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            throttle: ThrottleLimits {
                per_user: FAILURE_LIMIT,
                per_address: ADDRESS_FAILURE_LIMIT,
                window: FAILURE_WINDOW,
                ..ThrottleLimits::default()
            },
            hashing: 2,
            queue: 64,
            cache: NonZeroUsize::new(4096).expect("non-zero"),
        }
    }
}

/// A parsed `Authorization: Basic` credential.
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Secret<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl Credentials {
    /// Parses `Basic base64(user:password)`.
    ///
    /// # Errors
    /// [`ProxyError::MalformedCredentials`] naming what is wrong, never echoing the value.
    pub fn parse(header: &HeaderValue) -> Result<Self, ProxyError> {
        let malformed = |reason| ProxyError::MalformedCredentials { reason };
        let bytes = header.as_bytes();
        if bytes.len() > MAX_HEADER {
            return Err(malformed("the header is too long"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("the header is not ASCII"))?;
        let (scheme, rest) = text
            .trim()
            .split_once(' ')
            .ok_or(malformed("no scheme, expected \"Basic <base64>\""))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(malformed(
                "the scheme is not Basic; connect with -Authentication Basic",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| malformed("the credential is not valid base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| malformed("the credential is not UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or(malformed("no ':' between user and password"))?;
        if user.is_empty() {
            return Err(malformed("the user name is empty"));
        }
        Ok(Self {
            user: user.to_owned(),
            password: Secret::new(password.to_owned()),
        })
    }

    /// The header value for these credentials (tests and clients).
    pub fn encode(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Why a user table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// A `password_hash` is not a PHC string argon2 understands.
    #[error(
        "[[user]] {user}: password_hash is not an argon2 PHC string ({reason}); generate one with `exo-authproxy hash-password`"
    )]
    BadHash {
        /// The user.
        user: String,
        /// The parser's complaint.
        reason: String,
    },
}

struct Entry {
    name: String,
    phc: Arc<str>,
}

/// The authenticator: users, cache, throttle, the argon2 queue.
pub struct Authenticator {
    users: Vec<Entry>,
    key: HmacKey,
    limits: AuthLimits,
    hashing: Semaphore,
    /// Checks waiting for a `hashing` permit now.
    waiting: AtomicUsize,
    cache: Mutex<LruCache<[u8; 32], (usize, Instant)>>,
    throttle: Throttle,
    verifications: AtomicU64,
    audit: crate::audit::Audit,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The index of an authenticated `[[user]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIndex(pub usize);

/// Why a check did not run: the queue for argon2 permits was full.
struct QueueFull;

/// Counts a check as waiting for a permit until dropped (also when the request is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Authenticator {
    /// Checks every hash now, so a bad one fails at startup, not at the first login.
    ///
    /// # Errors
    /// [`UsersError::BadHash`].
    pub fn new(users: &[User]) -> Result<Self, UsersError> {
        Self::with_limits(users, AuthLimits::default())
    }

    /// [`Authenticator::new`] with other limits (tests use small ones).
    ///
    /// # Errors
    /// [`UsersError::BadHash`].
    pub fn with_limits(users: &[User], limits: AuthLimits) -> Result<Self, UsersError> {
        let mut entries = Vec::with_capacity(users.len());
        for user in users {
            PasswordHash::new(&user.password_hash).map_err(|e| UsersError::BadHash {
                user: user.name.clone(),
                reason: e.to_string(),
            })?;
            entries.push(Entry {
                name: user.name.clone(),
                phc: Arc::from(user.password_hash.as_str()),
            });
        }
        Ok(Self {
            users: entries,
            key: HmacKey::new(&rand::random()),
            limits,
            hashing: Semaphore::new(limits.hashing.max(1)),
            waiting: AtomicUsize::new(0),
            cache: Mutex::new(LruCache::new(limits.cache)),
            throttle: Throttle::new(limits.throttle),
            verifications: AtomicU64::new(0),
            audit: crate::audit::Audit::log(),
        })
    }

    /// Records refused and throttled logins into `audit` (default: the log target).
    #[must_use]
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// How many argon2 verifications ran (tests assert the cache and the throttle work).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Authenticates the request's `Authorization` header from `client`.
    ///
    /// # Errors
    /// Missing, malformed or wrong credentials and throttled addresses (each a 401 at the
    /// edge), or [`ProxyError::LoginBusy`] when too many checks are queued.
    ///
    /// # Cancel safety
    /// Dropping the future while its argon2 check runs keeps the attempt counted.
    pub async fn authenticate(
        &self,
        header: Option<&HeaderValue>,
        client: IpAddr,
    ) -> Result<UserIndex, ProxyError> {
        let header = header.ok_or(ProxyError::MissingCredentials)?;
        let creds = Credentials::parse(header)?;
        let address = AddressKey::of(client);
        let user_key = self.user_key(&creds.user);
        let digest = self.keyed_hash(&creds);
        let now = Instant::now();
        // The throttle before the cache: a cached success must not answer throttled guesses.
        self.throttle
            .check(address, user_key, now)
            .map_err(|refusal| throttled(&self.audit, &creds.user, client, refusal))?;
        if let Some(index) = self.cached(&digest, now) {
            self.throttle.reset(address, user_key);
            return Ok(index);
        }
        // One check per (address, user) at a time; whoever waited looks again, as the check
        // before it may have cached this very credential or used up the window.
        let _turn = self.throttle.turn(address, user_key).await;
        let now = Instant::now();
        self.throttle
            .check(address, user_key, now)
            .map_err(|refusal| throttled(&self.audit, &creds.user, client, refusal))?;
        if let Some(index) = self.cached(&digest, now) {
            self.throttle.reset(address, user_key);
            return Ok(index);
        }
        let slot = self
            .throttle
            .reserve(address, user_key, now)
            .map_err(|refusal| throttled(&self.audit, &creds.user, client, refusal))?;
        // Constant-time name match over every user, so timing does not reveal which exist.
        let mut found = None;
        for (i, entry) in self.users.iter().enumerate() {
            if bool::from(entry.name.as_bytes().ct_eq(creds.user.as_bytes())) {
                found = Some(i);
            }
        }
        // Spend the same effort for an unknown user as for a wrong password.
        let (phc, password) = match (found, self.users.first()) {
            (Some(i), _) => (self.users[i].phc.clone(), creds.password),
            (None, Some(first)) => (first.phc.clone(), Secret::new(String::new())),
            (None, None) => {
                self.audit.login_failed(&creds.user, client);
                return Err(ProxyError::BadCredentials);
            }
        };
        let verified = match self.verify(phc, password).await {
            Ok(ok) => ok && found.is_some(),
            Err(QueueFull) => {
                self.throttle.cancel(slot);
                return Err(ProxyError::LoginBusy {
                    queued: self.limits.queue,
                    retry_after: Duration::from_secs(1),
                });
            }
        };
        match found.filter(|_| verified) {
            Some(i) => {
                self.throttle.succeeded(slot);
                self.remember(digest, i, Instant::now());
                Ok(UserIndex(i))
            }
            None => {
                drop::<Slot>(slot); // stays counted
                self.audit.login_failed(&creds.user, client);
                Err(ProxyError::BadCredentials)
            }
        }
    }

    /// One argon2 check on the blocking pool, behind the global permit; refused at once when
    /// [`AuthLimits::queue`] checks already wait.
    async fn verify(&self, phc: Arc<str>, password: Secret<String>) -> Result<bool, QueueFull> {
        let permit = match self.hashing.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(QueueFull);
                }
                let _waiting = Waiting(&self.waiting);
                self.hashing
                    .acquire()
                    .await
                    .expect("the hashing semaphore is never closed")
            }
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let ok =
            tokio::task::spawn_blocking(move || argon2_matches(&phc, password.expose().as_bytes()))
                .await
                .unwrap_or(false);
        drop(permit);
        Ok(ok)
    }

    /// The throttle's key for a user name as sent: fixed size whatever the name's length.
    fn user_key(&self, user: &str) -> throttle::UserKey {
        self.key.mac(&[b"user\0", user.as_bytes()])
    }

    fn keyed_hash(&self, creds: &Credentials) -> [u8; 32] {
        self.key.mac(&[
            creds.user.as_bytes(),
            b"\0",
            creds.password.expose().as_bytes(),
        ])
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 32], (usize, Instant)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, digest: &[u8; 32], now: Instant) -> Option<UserIndex> {
        let mut cache = self.cache();
        // The key is a keyed hash of the credential: an attacker can neither steer lookups
        // nor learn anything from their timing.
        let (index, expires) = *cache.get(digest)?;
        if expires > now {
            return Some(UserIndex(index));
        }
        cache.pop(digest);
        None
    }

    fn remember(&self, digest: [u8; 32], index: usize, now: Instant) {
        self.cache().put(digest, (index, now + CACHE_TTL));
    }
}

/// The refusal of a throttled attempt, audited at the 1st, 2nd, 4th, 8th … refusal of a key
/// so a flood cannot turn the audit trail into its amplifier.
fn throttled(
    audit: &crate::audit::Audit,
    user: &str,
    client: IpAddr,
    refusal: throttle::Refusal,
) -> ProxyError {
    // Whole seconds, rounded up: "wait 0s" would invite an immediate retry.
    let retry_after = Duration::from_secs(refusal.retry_after.as_secs_f64().ceil() as u64)
        .max(Duration::from_secs(1));
    if refusal.refused.is_power_of_two() {
        audit.login_throttled(user, client, refusal.refused, retry_after);
    }
    ProxyError::Throttled {
        client,
        retry_after,
    }
}

/// An HMAC-SHA-256 key (RFC 2104, over sha2, which the crate already uses) with its inner and
/// outer pad blocks hashed once: every request's credential is MACed twice (throttle key and
/// cache key), and the pads were half of that work.
#[derive(Clone)]
struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl HmacKey {
    fn new(key: &[u8; 32]) -> Self {
        const BLOCK: usize = 64;
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        Self {
            inner: Sha256::new().chain_update(ipad),
            outer: Sha256::new().chain_update(opad),
        }
    }

    /// The MAC of the concatenation of `parts`.
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for part in parts {
            inner.update(part);
        }
        self.outer
            .clone()
            .chain_update(inner.finalize())
            .finalize()
            .into()
    }
}

/// argon2's scratch is reserved with at least this many 1 KiB blocks (33 MiB of address space;
/// only the `m_cost` blocks the hash asks for are touched, so resident memory is unchanged).
///
/// Why: glibc serves an allocation from the heap, not from a fresh `mmap`, once its dynamic mmap
/// threshold has risen past the request's size, and freeing an mmapped chunk raises that
/// threshold to the chunk's size while it is at most 32 MiB. With argon2id's default 19 MiB
/// scratch, every check after the first was carved from a per-thread malloc arena and kept
/// there: 63 users' first logins left the process 475 MiB larger, and every expiry of the
/// verification cache grew it again (BENCHMARKS.md "scale", "soak"). A reservation above 32 MiB
/// is always mapped and unmapped on free (glibc; musl and Windows map allocations this large
/// anyway), so a login's scratch goes back to the kernel when its check ends.
const ARGON2_SCRATCH_RESERVE_BLOCKS: usize = 33 * 1024;

/// Whether `password` matches the argon2 PHC string `phc` (what `PasswordVerifier` does, with
/// the scratch reserved by [`ARGON2_SCRATCH_RESERVE_BLOCKS`]); the comparison is constant-time.
fn argon2_matches(phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map(argon2::Version::try_from)
        .transpose()
        .map(Option::unwrap_or_default)
    else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    let mut scratch = Vec::with_capacity(blocks.max(ARGON2_SCRATCH_RESERVE_BLOCKS));
    scratch.resize(blocks, argon2::Block::new());
    let mut computed = [0u8; argon2::password_hash::Output::MAX_LENGTH];
    let Some(computed) = computed.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, computed, &mut scratch)
        .is_ok()
        && bool::from(computed.ct_eq(expected.as_bytes()))
}

/// An argon2id PHC string for `password` (the `hash-password` command and tests).
///
/// # Errors
/// Only if argon2 rejects its own defaults (it does not).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantName;
    use proptest::prelude::*;
    use std::sync::atomic::Ordering;

    fn users() -> Vec<User> {
        vec![User {
            name: "reporting".into(),
            password_hash: hash_password("sandbox").unwrap(),
            tenants: vec![TenantName("contoso".into())],
        }]
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn argon2_matches_agrees_with_the_crates_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
        // RFC 9106-style PHC strings of other algorithms, versions and costs than ours, and the
        // malformed ones: the reserved-scratch check answers exactly as argon2's own verifier.
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let mut phcs = vec![hash_password("sandbox").unwrap()];
        for (algorithm, version, m, t, p, len) in [
            (
                argon2::Algorithm::Argon2i,
                argon2::Version::V0x13,
                64,
                3,
                1,
                32,
            ),
            (
                argon2::Algorithm::Argon2d,
                argon2::Version::V0x10,
                32,
                1,
                2,
                16,
            ),
            (
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                256,
                2,
                4,
                64,
            ),
        ] {
            let params = argon2::Params::new(m, t, p, Some(len)).unwrap();
            let phc = Argon2::new(algorithm, version, params)
                .hash_password(b"sandbox", &salt)
                .unwrap()
                .to_string();
            phcs.push(phc);
        }
        phcs.push("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ".into()); // no hash
        phcs.push("$argon2id$v=19$m=19456,t=2,p=1$!!$aGFzaA".into()); // bad salt
        phcs.push("$scrypt$ln=16,r=8,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into());
        for phc in &phcs {
            for password in ["sandbox", "Sandbox", "", "sandbox "] {
                let expected = PasswordHash::new(phc).is_ok_and(|hash| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &hash)
                        .is_ok()
                });
                assert_eq!(
                    argon2_matches(phc, password.as_bytes()),
                    expected,
                    "{phc} / {password:?}"
                );
            }
            assert!(!argon2_matches(phc, b"wrong"), "{phc}");
        }
        assert!(phcs[..4].iter().all(|phc| argon2_matches(phc, b"sandbox")));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2_shape() {
        // Key "Jefe" padded to 32 bytes with zeros is the same HMAC as the 4-byte key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = HmacKey::new(&key).mac(&[b"what do ya ", b"want for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn right_password_verifies_once_then_hits_the_cache() {
        let auth = Authenticator::new(&users()).unwrap();
        let header = HeaderValue::from_str(&Credentials::encode("reporting", "sandbox")).unwrap();
        for _ in 0..5 {
            assert_eq!(
                auth.authenticate(Some(&header), ip(1)).await.unwrap(),
                UserIndex(0)
            );
        }
        assert_eq!(auth.verifications(), 1);
    }

    #[tokio::test]
    async fn wrong_unknown_missing_malformed_are_each_401_codes() {
        let auth = Authenticator::new(&users()).unwrap();
        let wrong = HeaderValue::from_str(&Credentials::encode("reporting", "nope")).unwrap();
        let unknown = HeaderValue::from_str(&Credentials::encode("mallory", "sandbox")).unwrap();
        let cases: [(Option<HeaderValue>, &str); 6] = [
            (Some(wrong), "bad-credentials"),
            (Some(unknown), "bad-credentials"),
            (None, "missing-credentials"),
            (
                Some(HeaderValue::from_static("Basic !!!")),
                "malformed-credentials",
            ),
            (
                Some(HeaderValue::from_static("Bearer abc")),
                "malformed-credentials",
            ),
            (
                Some(HeaderValue::from_static("Basic bm9jb2xvbg==")),
                "malformed-credentials",
            ),
        ];
        for (header, code) in cases {
            let err = auth.authenticate(header.as_ref(), ip(2)).await.unwrap_err();
            assert_eq!(err.code(), code, "{err}");
        }
    }

    fn header(user: &str, password: &str) -> HeaderValue {
        HeaderValue::from_str(&Credentials::encode(user, password)).unwrap()
    }

    fn two_users() -> Vec<User> {
        let mut u = users();
        u.push(User {
            name: "ops".into(),
            password_hash: hash_password("ops-pw").unwrap(),
            tenants: vec![TenantName("contoso".into())],
        });
        u
    }

    async fn code(auth: &Authenticator, header: &HeaderValue, from: IpAddr) -> &'static str {
        match auth.authenticate(Some(header), from).await {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    /// Issue 12: 200 concurrent wrong passwords from one address cost exactly the limit.
    #[tokio::test(start_paused = true)]
    async fn concurrent_guesses_cost_exactly_the_limit_and_others_log_in_at_once() {
        let auth = Arc::new(Authenticator::new(&two_users()).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let auth = auth.clone();
            tasks.spawn(async move { code(&auth, &header("reporting", "guess"), ip(1)).await });
        }
        let mut codes = std::collections::BTreeMap::new();
        while let Some(c) = tasks.join_next().await {
            *codes.entry(c.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(
            codes,
            [("auth-throttled", 190), ("bad-credentials", 10)].into()
        );
        assert_eq!(auth.verifications(), u64::from(FAILURE_LIMIT));
        // The right password from another address, and another user from the same address.
        assert_eq!(
            code(&auth, &header("reporting", "sandbox"), ip(2)).await,
            "ok"
        );
        assert_eq!(code(&auth, &header("ops", "ops-pw"), ip(1)).await, "ok");
        // The right password from the guessing address: refused with the wait, without hashing.
        let before = auth.verifications();
        let err = auth
            .authenticate(Some(&header("reporting", "sandbox")), ip(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyError::Throttled { retry_after, .. } if retry_after == FAILURE_WINDOW),
            "{err:?}"
        );
        assert_eq!(auth.verifications(), before);
        // ... until the window has passed.
        tokio::time::sleep(FAILURE_WINDOW).await;
        assert_eq!(
            code(&auth, &header("reporting", "sandbox"), ip(1)).await,
            "ok"
        );
        // The success reset the streak: ten more tries, not one.
        for _ in 0..FAILURE_LIMIT {
            assert_eq!(
                code(&auth, &header("reporting", "x"), ip(1)).await,
                "bad-credentials"
            );
        }
        assert_eq!(
            code(&auth, &header("reporting", "x"), ip(1)).await,
            "auth-throttled"
        );
    }

    /// A script opening many sessions at once sends one credential many times before any is
    /// verified: they take turns, the first check is cached, nobody is throttled.
    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_right_logins_cost_one_check_and_none_is_refused() {
        let auth = Arc::new(Authenticator::new(&users()).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let auth = auth.clone();
            tasks.spawn(async move { code(&auth, &header("reporting", "sandbox"), ip(7)).await });
        }
        while let Some(c) = tasks.join_next().await {
            assert_eq!(c.unwrap(), "ok");
        }
        assert_eq!(auth.verifications(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_verify_cache_does_not_answer_throttled_guesses() {
        let auth = Authenticator::new(&users()).unwrap();
        let good = header("reporting", "sandbox");
        assert_eq!(code(&auth, &good, ip(3)).await, "ok");
        for _ in 0..FAILURE_LIMIT {
            assert_eq!(
                code(&auth, &header("reporting", "typo"), ip(3)).await,
                "bad-credentials"
            );
        }
        // Cached, yet refused: otherwise the cache is a free oracle for the guesser.
        assert_eq!(code(&auth, &good, ip(3)).await, "auth-throttled");
        // Other addresses keep using the cache.
        let before = auth.verifications();
        assert_eq!(code(&auth, &good, ip(4)).await, "ok");
        assert_eq!(auth.verifications(), before);
        tokio::time::sleep(FAILURE_WINDOW).await;
        assert_eq!(code(&auth, &good, ip(3)).await, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_spreading_guesses_over_names_meets_the_address_ceiling() {
        let auth = Authenticator::new(&two_users()).unwrap();
        for n in 0..ADDRESS_FAILURE_LIMIT {
            assert_eq!(
                code(&auth, &header(&format!("u{n}"), "pw"), ip(5)).await,
                "bad-credentials"
            );
        }
        assert_eq!(
            code(&auth, &header("ops", "ops-pw"), ip(5)).await,
            "auth-throttled"
        );
        assert_eq!(auth.verifications(), u64::from(ADDRESS_FAILURE_LIMIT));
        assert_eq!(code(&auth, &header("ops", "ops-pw"), ip(6)).await, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn the_argon2_queue_is_bounded_and_a_refused_check_is_not_counted() {
        let limits = AuthLimits {
            hashing: 1,
            queue: 3,
            ..AuthLimits::default()
        };
        let auth = Arc::new(Authenticator::with_limits(&users(), limits).unwrap());
        // Hold the only permit: every check now waits.
        let held = auth.hashing.acquire().await.unwrap();
        let mut waiting = tokio::task::JoinSet::new();
        for n in 0..3 {
            let auth = auth.clone();
            waiting.spawn(
                async move { code(&auth, &header("reporting", "sandbox"), ip(10 + n)).await },
            );
        }
        while auth.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let err = auth
            .authenticate(Some(&header("reporting", "sandbox")), ip(20))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "auth-busy");
        drop(held);
        while let Some(c) = waiting.join_next().await {
            assert_eq!(c.unwrap(), "ok");
        }
        assert_eq!(auth.verifications(), 3);
        assert_eq!(auth.waiting.load(Ordering::Acquire), 0);
        // The refused attempt cost ip(20) nothing: the full budget is still there.
        for _ in 0..FAILURE_LIMIT {
            assert_eq!(
                code(&auth, &header("reporting", "no"), ip(20)).await,
                "bad-credentials"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_names_and_addresses_keeps_the_maps_bounded() {
        let limits = AuthLimits {
            throttle: ThrottleLimits {
                capacity: NonZeroUsize::new(16).unwrap(),
                ..AuthLimits::default().throttle
            },
            ..AuthLimits::default()
        };
        let auth = Authenticator::with_limits(&users(), limits).unwrap();
        for n in 0..40u8 {
            let name = "x".repeat(1000) + &n.to_string();
            let _ = auth.authenticate(Some(&header(&name, "pw")), ip(n)).await;
        }
        let (users, addresses) = auth.throttle.len();
        assert!(users <= 16 && addresses <= 16, "{users} {addresses}");
    }

    #[test]
    fn a_bad_hash_is_refused_at_startup() {
        let mut u = users();
        u[0].password_hash = "plaintext".into();
        let err = Authenticator::new(&u).unwrap_err();
        assert!(err.to_string().contains("hash-password"), "{err}");
    }

    #[test]
    fn debug_of_credentials_hides_the_password() {
        let header = HeaderValue::from_str(&Credentials::encode("u", "hunter2")).unwrap();
        let creds = Credentials::parse(&header).unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn any_user_and_password_survive_encode_then_parse(
            user in "[^:\\x00]{1,64}", password in ".{0,2048}"
        ) {
            let header = HeaderValue::from_str(&Credentials::encode(&user, &password)).unwrap();
            let creds = Credentials::parse(&header).unwrap();
            prop_assert_eq!(creds.user, user);
            prop_assert_eq!(creds.password.expose(), &password);
        }

        #[test]
        fn parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(header) = HeaderValue::from_bytes(&raw) {
                let _ = Credentials::parse(&header);
            }
        }
    }
}
