//! An external token issuer (Kubernetes, GitHub OIDC, …) for federated-credential tests.
//!
//! Separate because it is not part of Entra: it stands for the workload's own identity
//! provider, whose tokens Entra is asked to trust.

use serde_json::json;

use crate::sandbox::pki::{AppCertificate, PkiError};
use crate::secret::Secret;

use super::{FEDERATED_AUDIENCE, FederatedCredential, now_secs};

/// An external token issuer for federated credentials (Kubernetes, GitHub OIDC, …).
pub struct FederatedIssuer {
    /// `iss` of its tokens.
    pub issuer: String,
    key: Secret<jsonwebtoken::EncodingKey>,
    public_key: Vec<u8>,
}

impl FederatedIssuer {
    /// A new issuer with a fresh RSA key.
    ///
    /// # Errors
    /// [`PkiError`] when key generation fails.
    pub fn new(issuer: &str) -> Result<Self, PkiError> {
        let c = AppCertificate::generate("federated issuer")?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(c.key_pem.expose().as_bytes())
            .map_err(|e| PkiError::Pfx(format!("issuer key: {e}")))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            key: Secret::new(key),
            public_key: c.public_key,
        })
    }

    /// The credential to put on an app so it trusts this issuer's tokens about `subject`.
    pub fn credential(&self, subject: &str) -> FederatedCredential {
        FederatedCredential {
            issuer: self.issuer.clone(),
            subject: subject.to_owned(),
            audience: FEDERATED_AUDIENCE.to_owned(),
            public_key: self.public_key.clone(),
        }
    }

    /// A token about `subject` for [`FEDERATED_AUDIENCE`], valid from `now - age` for
    /// `lifetime` seconds (an `age` past `lifetime` makes an expired token).
    pub fn mint(&self, subject: &str, age: u64, lifetime: u64) -> String {
        let start = now_secs().saturating_sub(age);
        let claims = json!({
            "iss": self.issuer, "sub": subject, "aud": [FEDERATED_AUDIENCE],
            "iat": start, "nbf": start, "exp": start + lifetime,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            self.key.expose(),
        )
        .expect("signing with a freshly generated RSA key does not fail")
    }
}
