//! Local Basic authentication: the `[[user]]` table, argon2id, a verification cache, a throttle.
//!
//! Every WS-Man POST carries the Basic credential again, so verifying argon2id (tens of
//! milliseconds by design) per request would make each Receive slow and the proxy easy to
//! overload. A successful verification is therefore remembered for [`CACHE_TTL`] under a keyed
//! hash of the credential (HMAC-SHA-256 with a key drawn at process start): the cache never
//! holds a password, and an entry is useless outside this process. Misses run argon2 in
//! `spawn_blocking` behind a semaphore sized to the cores, so a burst of wrong passwords
//! cannot starve the runtime. Comparisons are constant-time (`subtle`). Addresses that fail
//! [`FAILURE_LIMIT`] times within [`FAILURE_WINDOW`] are answered at once without hashing until
//! the window passes; cached successes still pass, so one user's typo does not lock out a
//! script already running from the same host.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::User;
use crate::errors::ProxyError;
use crate::secret::Secret;

/// How long a successful verification is trusted without re-hashing.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Failed attempts per address before the throttle engages.
pub const FAILURE_LIMIT: u32 = 10;
/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Cache entries kept at most (oldest evicted first when full).
const CACHE_CAPACITY: usize = 4096;
/// Addresses tracked by the throttle at most.
const THROTTLE_CAPACITY: usize = 4096;
/// The longest `Authorization` value considered (Basic with an 8 KiB password fits).
const MAX_HEADER: usize = 12 * 1024;

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

/// The authenticator: users, cache, throttle.
pub struct Authenticator {
    users: Vec<Entry>,
    key: [u8; 32],
    hashing: Semaphore,
    cache: Mutex<HashMap<[u8; 32], (usize, Instant)>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    verifications: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// The index of an authenticated `[[user]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIndex(pub usize);

impl Authenticator {
    /// Checks every hash now, so a bad one fails at startup, not at the first login.
    ///
    /// # Errors
    /// [`UsersError::BadHash`].
    pub fn new(users: &[User]) -> Result<Self, UsersError> {
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
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            users: entries,
            key: rand::random(),
            hashing: Semaphore::new(cores),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            verifications: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many argon2 verifications ran (tests assert the cache works).
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Authenticates the request's `Authorization` header from `client`.
    ///
    /// # Errors
    /// Missing, malformed, throttled or wrong credentials, each a 401 at the edge.
    pub async fn authenticate(
        &self,
        header: Option<&HeaderValue>,
        client: IpAddr,
    ) -> Result<UserIndex, ProxyError> {
        let header = header.ok_or(ProxyError::MissingCredentials)?;
        let creds = Credentials::parse(header)?;
        let digest = self.keyed_hash(&creds);
        let now = Instant::now();
        if let Some(index) = self.cached(&digest, now) {
            return Ok(index);
        }
        if let Some(retry_after) = self.throttled(client, now) {
            return Err(ProxyError::Throttled {
                client,
                retry_after,
            });
        }
        // Constant-time name match over every user, so timing does not reveal which exist.
        let mut found = None;
        for (i, entry) in self.users.iter().enumerate() {
            if bool::from(entry.name.as_bytes().ct_eq(creds.user.as_bytes())) {
                found = Some(i);
            }
        }
        let verified = match found {
            Some(i) => self
                .verify(self.users[i].phc.clone(), creds.password)
                .await
                .then_some(i),
            None => {
                // Spend the same effort for an unknown user as for a wrong password.
                if let Some(first) = self.users.first() {
                    let _ = self
                        .verify(first.phc.clone(), Secret::new(String::new()))
                        .await;
                }
                None
            }
        };
        match verified {
            Some(i) => {
                self.remember(digest, i, now);
                Ok(UserIndex(i))
            }
            None => {
                self.record_failure(client, now);
                crate::audit::login_failed(&creds.user, client);
                Err(ProxyError::BadCredentials)
            }
        }
    }

    async fn verify(&self, phc: Arc<str>, password: Secret<String>) -> bool {
        let _permit = self
            .hashing
            .acquire()
            .await
            .expect("the hashing semaphore is never closed");
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let Ok(hash) = PasswordHash::new(&phc) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &hash)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    fn keyed_hash(&self, creds: &Credentials) -> [u8; 32] {
        let mut message = Vec::with_capacity(creds.user.len() + creds.password.expose().len() + 1);
        message.extend_from_slice(creds.user.as_bytes());
        message.push(0);
        message.extend_from_slice(creds.password.expose().as_bytes());
        hmac_sha256(&self.key, &message)
    }

    fn cached(&self, digest: &[u8; 32], now: Instant) -> Option<UserIndex> {
        let cache = self
            .cache
            .lock()
            .expect("auth cache lock is never poisoned");
        // HashMap lookup compares keys with ==; recheck with a constant-time compare. The key is
        // a keyed hash, so an attacker cannot steer lookups anyway.
        let (stored, (index, expires)) = cache.get_key_value(digest)?;
        (bool::from(stored.ct_eq(digest)) && *expires > now).then_some(UserIndex(*index))
    }

    fn remember(&self, digest: [u8; 32], index: usize, now: Instant) {
        let mut cache = self
            .cache
            .lock()
            .expect("auth cache lock is never poisoned");
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(digest, (index, now + CACHE_TTL));
    }

    fn throttled(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self
            .failures
            .lock()
            .expect("throttle lock is never poisoned");
        let (count, since) = failures.get(&client)?;
        let window_end = *since + FAILURE_WINDOW;
        (*count >= FAILURE_LIMIT && window_end > now).then(|| window_end - now)
    }

    fn record_failure(&self, client: IpAddr, now: Instant) {
        let mut failures = self
            .failures
            .lock()
            .expect("throttle lock is never poisoned");
        if failures.len() >= THROTTLE_CAPACITY {
            failures.retain(|_, (_, since)| *since + FAILURE_WINDOW > now);
        }
        let entry = failures.entry(client).or_insert((0, now));
        if entry.1 + FAILURE_WINDOW <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

/// HMAC-SHA-256 (RFC 2104) over sha2, which the crate already uses.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
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
    fn hmac_matches_rfc4231_case_2_shape() {
        // Key "Jefe" padded to 32 bytes with zeros is the same HMAC as the 4-byte key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
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

    #[tokio::test]
    async fn an_address_is_throttled_after_the_limit_but_cached_successes_pass() {
        let auth = Authenticator::new(&users()).unwrap();
        let good = HeaderValue::from_str(&Credentials::encode("reporting", "sandbox")).unwrap();
        auth.authenticate(Some(&good), ip(3)).await.unwrap();
        let wrong = HeaderValue::from_str(&Credentials::encode("reporting", "typo")).unwrap();
        for _ in 0..FAILURE_LIMIT {
            assert_eq!(
                auth.authenticate(Some(&wrong), ip(3))
                    .await
                    .unwrap_err()
                    .code(),
                "bad-credentials"
            );
        }
        let before = auth.verifications();
        assert_eq!(
            auth.authenticate(Some(&wrong), ip(3))
                .await
                .unwrap_err()
                .code(),
            "auth-throttled"
        );
        assert_eq!(
            auth.verifications(),
            before,
            "throttled attempts cost no hashing"
        );
        assert!(auth.authenticate(Some(&good), ip(3)).await.is_ok());
        assert_eq!(
            auth.authenticate(Some(&wrong), ip(4))
                .await
                .unwrap_err()
                .code(),
            "bad-credentials"
        );
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
