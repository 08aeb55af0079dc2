//! What the front end reads from a request: the tenant in the path, the RPS token in Basic
//! auth, the mailbox anchor.
//!
//! Separate because these readers mirror Exchange's parsing of the request line and headers,
//! apart from the token checks that follow.

use base64::Engine;
use bytes::Bytes;
use http::{Request, header};

use crate::sandbox::AppIdentity;

/// The `{tenant}` of `<prefix>{tenant}<suffix>` (prefix and suffix matched case-insensitively),
/// in its original case.
pub(super) fn tenant_segment(path: &str, prefix: &str, suffix: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let tenant = lower.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!tenant.is_empty() && !tenant.contains('/'))
        .then(|| path[prefix.len()..prefix.len() + tenant.len()].to_owned())
}

/// `Basic base64(user:Bearer <jwt>)` with `BasicAuthToOAuthConversion=true`, else None.
pub(super) fn rps_token(request: &Request<Bytes>) -> Option<String> {
    let query = request.uri().query().unwrap_or("");
    let conversion = query.split(['&', ';']).any(|pair| {
        pair.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("BasicAuthToOAuthConversion") && v.eq_ignore_ascii_case("true")
        })
    });
    if !conversion {
        return None;
    }
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let b64 = value.strip_prefix("Basic ")?;
    let decoded =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?;
    let (_user, password) = decoded.split_once(':')?;
    password.strip_prefix("Bearer ").map(str::to_owned)
}

/// The `email=SystemMailbox{…}@<organization>` anchor must name the token's tenant.
pub(super) fn anchor_mismatch(request: &Request<Bytes>, app: &AppIdentity) -> Option<String> {
    let query = request.uri().query().unwrap_or("");
    let email = query.split(['&', ';']).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case("email").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })?;
    let domain = email.rsplit_once('@').map(|(_, d)| d)?;
    (!domain.eq_ignore_ascii_case(&app.organization)).then(|| {
        format!(
            "The anchor mailbox {email} is not in organization {}",
            app.organization
        )
    })
}
