//! Client assertion checks: certificate-signed assertions and federated tokens.
//!
//! Separate because this is where the simulator is strict the way Entra is (key found by
//! `x5t`, audience, issuer, subject, time window, no replayed `jti`), and each refusal carries
//! the AADSTS code the proxy maps.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::response::aadsts;
use super::{App, EntraSim, lock, now_secs};

impl EntraSim {
    pub(super) fn check_assertion(
        &self,
        app: &App,
        url: &str,
        assertion: &str,
    ) -> Result<(), Response<Full<Bytes>>> {
        let unauthorized = StatusCode::UNAUTHORIZED;
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| {
            aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!("The client assertion is not a valid JWT ({e})."),
            )
        })?;
        let client_id = &app.client_id;
        let now = now_secs();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.algorithms = vec![
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::PS256,
        ];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        if header.x5t.is_none() && header.x5t_s256.is_none() {
            return self.check_federated(app, assertion, &validation, now);
        }
        let key = app.certificates.iter().find(|c| {
            header.x5t.as_ref().is_none_or(|t| *t == c.x5t)
                && header.x5t_s256.as_ref().is_none_or(|t| *t == c.x5t_s256)
        });
        let Some(key) = key else {
            let thumb = header
                .x5t
                .as_deref()
                .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
                .map(hex::encode_upper)
                .unwrap_or_else(|| header.x5t_s256.clone().unwrap_or_default());
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                700027,
                &format!(
                    "The certificate with identifier used to sign the client assertion is not \
                     registered on application. [Reason - The key was not found., Thumbprint of \
                     key used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer \
                     or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
                ),
            ));
        };
        if key
            .not_after
            .is_some_and(|until| until < std::time::SystemTime::now())
        {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is expired on \
                 application. [Reason - The key used is expired.]",
            ));
        }
        let data = jsonwebtoken::decode::<Value>(
            assertion,
            &jsonwebtoken::DecodingKey::from_rsa_der(&key.public_key),
            &validation,
        )
        .map_err(|e| {
            aadsts(
                unauthorized,
                "invalid_client",
                700027,
                &format!(
                    "Client assertion failed signature validation. [Reason - The key used to \
                     sign does not match the registered certificate ({e}).]"
                ),
            )
        })?;
        let c = &data.claims;
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        if s("aud") != Some(url) {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!(
                    "Client assertion audience claim does not match Realm issuer. Review the \
                     documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials. \
                     [aud {:?}, expected {url:?}]",
                    s("aud").unwrap_or_default()
                ),
            ));
        }
        if s("iss") != Some(client_id) || s("sub") != Some(client_id) {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!(
                    "Client assertion iss and sub must both be the client id '{client_id}' \
                     (iss {:?}, sub {:?}).",
                    s("iss").unwrap_or_default(),
                    s("sub").unwrap_or_default()
                ),
            ));
        }
        check_window(c, now)?;
        let Some(jti) = s("jti") else {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                "Client assertion must contain a 'jti' claim.",
            ));
        };
        let mut seen = lock(&self.state.seen_jti);
        if seen.len() >= 100_000 {
            // Bounded memory; assertions live five minutes, so old ids are long expired.
            seen.clear();
        }
        if !seen.insert(format!("{client_id}/{jti}")) {
            return Err(aadsts(
                unauthorized,
                "invalid_client",
                50012,
                &format!("The client assertion with jti '{jti}' has already been used (replay)."),
            ));
        }
        Ok(())
    }

    fn check_federated(
        &self,
        app: &App,
        assertion: &str,
        validation: &jsonwebtoken::Validation,
        now: u64,
    ) -> Result<(), Response<Full<Bytes>>> {
        let bad = StatusCode::BAD_REQUEST;
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
            .map_err(|e| {
                aadsts(
                    bad,
                    "invalid_request",
                    50027,
                    &format!("The federated assertion is not a valid JWT ({e})."),
                )
            })?
            .claims;
        let s = |k: &str| {
            unverified
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let (iss, sub) = (s("iss"), s("sub"));
        let by_issuer: Vec<_> = app.federated.iter().filter(|f| f.issuer == iss).collect();
        if by_issuer.is_empty() {
            return Err(aadsts(
                bad,
                "invalid_request",
                700211,
                &format!(
                    "No matching federated identity record found for presented assertion issuer '{iss}'."
                ),
            ));
        }
        let Some(fic) = by_issuer.into_iter().find(|f| f.subject == sub) else {
            return Err(aadsts(
                bad,
                "invalid_request",
                700213,
                &format!(
                    "No matching federated identity record found for presented assertion subject '{sub}'."
                ),
            ));
        };
        let aud_ok = match unverified.get("aud") {
            Some(Value::String(a)) => *a == fic.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&fic.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(aadsts(
                bad,
                "invalid_request",
                700212,
                &format!(
                    "No matching federated identity record found for presented assertion \
                     audience; expected '{}'.",
                    fic.audience
                ),
            ));
        }
        let data = jsonwebtoken::decode::<Value>(
            assertion,
            &jsonwebtoken::DecodingKey::from_rsa_der(&fic.public_key),
            validation,
        )
        .map_err(|e| {
            aadsts(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                50012,
                &format!("The federated assertion failed signature validation ({e})."),
            )
        })?;
        check_window(&data.claims, now)
    }
}

fn check_window(c: &Value, now: u64) -> Result<(), Response<Full<Bytes>>> {
    let n = |k: &str| c.get(k).and_then(Value::as_u64);
    let exp = n("exp").unwrap_or(0);
    let nbf = n("nbf").or(n("iat")).unwrap_or(0);
    // Entra tolerates a few minutes of clock skew on nbf, none on exp.
    if now >= exp || nbf > now + 300 {
        return Err(aadsts(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {now}, \
                 assertion valid from {nbf}, expiry time of assertion {exp}."
            ),
        ));
    }
    Ok(())
}
