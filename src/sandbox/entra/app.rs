//! What a test registers: apps with their certificates, secrets and federated credentials.
//!
//! Separate because these are the simulator's public inputs, read by tests and the sandbox,
//! while the registry that holds them stays private to the simulator.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::sandbox::pki::{AppCertificate, certificate_not_after, certificate_public_key};
use crate::secret::Secret;

/// A certificate registered on an app.
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    /// base64url SHA-1 of the DER.
    pub x5t: String,
    /// base64url SHA-256 of the DER.
    pub x5t_s256: String,
    /// PKCS#1 RSA public key.
    pub public_key: Vec<u8>,
    /// The certificate's `notAfter`: Entra refuses assertions from an expired certificate.
    pub not_after: Option<std::time::SystemTime>,
}

impl RegisteredCertificate {
    /// From a certificate's DER (what a user uploads as `.cer`).
    ///
    /// # Errors
    /// A message when the DER is not an X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        use sha1::Digest as _;
        let public_key =
            certificate_public_key(der).ok_or("not an X.509 certificate with a public key")?;
        Ok(Self {
            x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)),
            public_key,
            not_after: certificate_not_after(der),
        })
    }
}

impl From<&AppCertificate> for RegisteredCertificate {
    fn from(c: &AppCertificate) -> Self {
        Self {
            x5t: c.x5t(),
            x5t_s256: c.x5t_s256(),
            public_key: c.public_key.clone(),
            not_after: certificate_not_after(&c.der),
        }
    }
}

/// A federated identity credential on an app: trust tokens from `issuer` about `subject`.
#[derive(Debug, Clone)]
pub struct FederatedCredential {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `sub`.
    pub subject: String,
    /// Expected `aud` (usually [`FEDERATED_AUDIENCE`]).
    pub audience: String,
    /// The issuer's PKCS#1 RSA public key (real Entra fetches the issuer's JWKS).
    pub public_key: Vec<u8>,
}

/// An app registration (in its home tenant; multi-tenant).
#[derive(Debug, Clone, Default)]
pub struct App {
    /// Application (client) id.
    pub client_id: String,
    /// Display name.
    pub display_name: String,
    /// Uploaded certificates.
    pub certificates: Vec<RegisteredCertificate>,
    /// Client secret values.
    pub secrets: Vec<Secret<String>>,
    /// Federated identity credentials.
    pub federated: Vec<FederatedCredential>,
}
