//! The client assertion (RFC 7523) that proves possession of the app's certificate.
//!
//! Header `alg` RS256 with both `x5t` (SHA-1) and `x5t#S256` (SHA-256) of the certificate:
//! Entra finds the registered key by either, and sending both is harmless
//! (entra-client-credentials.md §3.1). Claims: `aud` = the exact token URL (an assertion for
//! one tenant is useless for another), `iss` = `sub` = client id, a fresh `jti`, `nbf` = `iat`
//! = now, and `exp` five minutes later (Entra wants at most ten; short limits the value of a
//! leaked assertion). A new assertion is built for every token request: they are cheap next
//! to the round trip, and it avoids replay questions entirely.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::credential::CertificateKey;
use crate::secret::Secret;

/// How long an assertion is valid.
pub const LIFETIME_SECS: u64 = 300;

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

/// Signs an assertion for `token_url` as `client_id`.
///
/// # Errors
/// Only when signing fails, which for a key that loaded means a crypto-library fault.
pub fn sign(
    cert: &CertificateKey,
    client_id: &str,
    token_url: &str,
    now: SystemTime,
) -> Result<Secret<String>, jsonwebtoken::errors::Error> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.x5t = Some(cert.x5t.clone());
    header.x5t_s256 = Some(cert.x5t_s256.clone());
    let claims = Claims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + LIFETIME_SECS,
    };
    jsonwebtoken::encode(&header, &claims, cert.key.expose()).map(Secret::new)
}
