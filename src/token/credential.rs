//! App credentials: how the proxy proves to Entra ID that it is the app.
//!
//! Resolved once at startup from the configuration (the second, I/O stage after
//! `Config::parse`), per tenant, so a tenant with a broken credential is reported without
//! stopping the others. Certificates are preferred (proof of possession, nothing shared); a
//! client secret is accepted with a warning logged once. A federated token file is re-read on
//! every token request, because Kubernetes rotates it underneath us.
//!
//! On Windows the certificate may instead sit in the Windows certificate store, named by its
//! thumbprint (`certificate_thumbprint`, `store`). The proxy signs with `jsonwebtoken`, not with
//! CryptoAPI, so it exports the certificate with its key to an in-memory PKCS#12 under a random
//! password and reads that through the same code as a `pfx` file: one PFX path, one signer.
//! That needs a key marked exportable; the errors say how to import it so.
//!
//! Private keys, PFX passwords and secrets live in [`Secret`]; `Debug` of every type here
//! prints only paths and thumbprints.

use std::path::{Path, PathBuf};
use std::sync::Once;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::{PemObject, SectionKind};
use sha1::Digest as _;

use crate::config::{CertStoreName, Credentials, DEFAULT_STORE, Environment, normalize_thumbprint};
use crate::secret::Secret;

/// The resolved credential of one tenant's app.
#[derive(Debug)]
pub enum Credential {
    /// Certificate + RSA private key (from PEM, PFX or the Windows certificate store): signs a
    /// client assertion.
    Certificate(CertificateKey),
    /// A client secret from the environment or a file.
    Secret {
        /// Where it came from, for messages: `$NAME` or the file's path.
        from: String,
        /// The value.
        secret: Secret<String>,
    },
    /// A federated JWT read from this file on every use.
    Federated(PathBuf),
}

impl Credential {
    /// A short description for messages and `check`: kind and where it came from.
    pub fn describe(&self) -> String {
        match self {
            Self::Certificate(c) => {
                format!(
                    "certificate {} (thumbprint {})",
                    c.source.display(),
                    c.thumbprint
                )
            }
            Self::Secret { from, .. } => format!("client secret from {from}"),
            Self::Federated(p) => format!("federated token file {}", p.display()),
        }
    }
}

/// A certificate and the RSA private key that signs with it.
pub struct CertificateKey {
    /// The file the certificate came from (from the Windows certificate store: its PowerShell
    /// path, `Cert:\LocalMachine\My\<thumbprint>`).
    pub source: PathBuf,
    /// DER of the leaf certificate.
    pub der: Vec<u8>,
    /// Hex SHA-1 of the DER, upper case: what the Entra portal shows as "Thumbprint".
    pub thumbprint: String,
    /// base64url SHA-1 of the DER (`x5t`).
    pub x5t: String,
    /// base64url SHA-256 of the DER (`x5t#S256`).
    pub x5t_s256: String,
    /// The certificate's `notAfter` (None if it cannot be read): Entra refuses assertions
    /// signed with an expired certificate (AADSTS700027), so the proxy says so first.
    pub not_after: Option<std::time::SystemTime>,
    /// The signing key.
    pub(crate) key: Secret<jsonwebtoken::EncodingKey>,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey")
            .field("source", &self.source)
            .field("thumbprint", &self.thumbprint)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl CertificateKey {
    /// [`CredentialError::Expired`] when `now` is past the certificate's `notAfter`.
    ///
    /// # Errors
    /// That one.
    pub fn check_validity(&self, now: std::time::SystemTime) -> Result<(), CredentialError> {
        match self.not_after {
            Some(until) if until < now => Err(CredentialError::Expired {
                path: self.source.clone(),
                thumbprint: self.thumbprint.clone(),
                expired: chrono::DateTime::<chrono::Utc>::from(until)
                    .format("%Y-%m-%d %H:%M UTC")
                    .to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// A notice when the certificate is still valid but ends within `window` of `now`: the
    /// date, the days left and what to do (startup log, `check`).
    pub fn expiry_notice(
        &self,
        now: std::time::SystemTime,
        window: std::time::Duration,
    ) -> Option<String> {
        let until = self.not_after?;
        let left = until.duration_since(now).ok()?;
        (left < window).then(|| {
            format!(
                "the app certificate {} (thumbprint {}) expires on {}, in {} days: upload a new \
                 certificate to the app registration and configure it before then",
                self.source.display(),
                self.thumbprint,
                chrono::DateTime::<chrono::Utc>::from(until).format("%Y-%m-%d %H:%M UTC"),
                left.as_secs() / 86_400
            )
        })
    }

    /// From a DER certificate and a PKCS#1 or PKCS#8 RSA key (`key_der`, and as PEM text).
    fn new(
        source: &Path,
        der: Vec<u8>,
        key_der: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, CredentialError> {
        let cert_key = super::x509::certificate_public_key(&der)
            .and_then(|k| super::x509::rsa_public_components(&k))
            .ok_or_else(|| CredentialError::Certificate {
                path: source.to_owned(),
                problem: "the certificate has no RSA public key; Entra client assertions here \
                          are RS256: use an RSA 2048+ certificate"
                    .into(),
            })?;
        if cert_key.0.len() < 256 {
            return Err(CredentialError::Certificate {
                path: source.to_owned(),
                problem: format!(
                    "the certificate's RSA key has {} bits; use 2048 or more",
                    cert_key.0.len() * 8
                ),
            });
        }
        if super::x509::rsa_private_key_components(key_der).is_some_and(|k| k != cert_key) {
            return Err(CredentialError::Key {
                path: source.to_owned(),
                problem: "the private key does not belong to the certificate: configure the \
                          key that was generated with it"
                    .into(),
            });
        }
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(key_pem).map_err(|e| CredentialError::Key {
                path: source.to_owned(),
                problem: format!("not an RSA private key usable for RS256 ({e})"),
            })?;
        let sha1 = sha1::Sha1::digest(&der);
        let sha256 = sha2::Sha256::digest(&der);
        let not_after = super::x509::certificate_validity(&der).map(|(_, until)| until);
        Ok(Self {
            source: source.to_owned(),
            not_after,
            thumbprint: hex::encode_upper(sha1),
            x5t: URL_SAFE_NO_PAD.encode(sha1),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256),
            der,
            key: Secret::new(key),
        })
    }
}

/// Why a tenant's credential could not be loaded. Never contains key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {problem}", path.display())]
    Read {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        problem: String,
    },
    /// The certificate file has no usable certificate.
    #[error("{}: {problem}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The certificate's validity ended: Entra refuses assertions it signs.
    #[error(
        "{}: the certificate (thumbprint {thumbprint}) expired on {expired}: create a new certificate, upload its public part (.cer) to the app registration (App registrations → Certificates & secrets → Certificates) and configure it here",
        path.display()
    )]
    Expired {
        /// The file.
        path: PathBuf,
        /// Hex SHA-1, as the portal shows it.
        thumbprint: String,
        /// `notAfter`, as `YYYY-MM-DD HH:MM UTC`.
        expired: String,
    },
    /// The key is missing or not an RSA key.
    #[error("{}: {problem}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The PFX cannot be opened.
    #[error("{}: {problem}", path.display())]
    Pfx {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// An environment variable the config names is not set.
    #[error(
        "environment variable {name} ({what}) is not set; set it or change {key} in the config"
    )]
    MissingEnv {
        /// The variable.
        name: String,
        /// What it should hold.
        what: &'static str,
        /// The config key naming it.
        key: &'static str,
    },
    /// Neither `[entra]` nor the tenant configures a credential.
    #[error(
        "no credential is configured: set certificate/private_key, pfx, certificate_thumbprint (Windows), client_secret_env, client_secret_file or federated_token_file"
    )]
    NotConfigured,
    /// `certificate_thumbprint` or `store` is malformed (validation refuses both first).
    #[error(
        "certificate_thumbprint {thumbprint:?} in store {store:?}: give 40 hex digits and a store written as LocalMachine\\My or CurrentUser\\My"
    )]
    StoreReference {
        /// As configured.
        thumbprint: String,
        /// As configured.
        store: String,
    },
    /// `certificate_thumbprint` where there is no Windows certificate store.
    #[error(
        "certificate_thumbprint {thumbprint} reads the Windows certificate store, which exists only on Windows: configure the certificate as a file (pfx, or certificate and private_key)"
    )]
    StoreUnsupported {
        /// The configured thumbprint.
        thumbprint: String,
    },
    /// The Windows certificate store cannot be opened.
    #[error(
        "cannot open the Windows certificate store {store} to find certificate {thumbprint} ({problem}): check store (LocalMachine\\My or CurrentUser\\My) and that the service account may read it"
    )]
    StoreOpen {
        /// `LocalMachine\My`.
        store: String,
        /// The thumbprint looked for.
        thumbprint: String,
        /// What Windows said.
        problem: String,
    },
    /// No certificate in the store has this thumbprint.
    #[error(
        "no certificate with thumbprint {thumbprint} in the Windows certificate store {store}: import it there with its private key (Import-PfxCertificate -FilePath app.pfx -CertStoreLocation Cert:\\{store} -Exportable) or correct certificate_thumbprint/store; Get-ChildItem Cert:\\{store} lists what is there"
    )]
    StoreNotFound {
        /// `LocalMachine\My`.
        store: String,
        /// The thumbprint looked for.
        thumbprint: String,
    },
    /// The certificate is in the store but has no private key this account can use.
    #[error(
        "the certificate {thumbprint} in the Windows certificate store {store} has no private key this account can use ({problem}): import it with its private key (Import-PfxCertificate -Exportable), and grant the service account read access to the key (certlm.msc → the certificate → All Tasks → Manage Private Keys)"
    )]
    StoreNoPrivateKey {
        /// `LocalMachine\My`.
        store: String,
        /// The certificate's thumbprint.
        thumbprint: String,
        /// What Windows said.
        problem: String,
    },
    /// The private key is not exportable, so the proxy cannot sign with it.
    #[error(
        "the private key of certificate {thumbprint} in the Windows certificate store {store} is not exportable ({problem}): re-import the certificate with Import-PfxCertificate -Exportable, or configure it as a file (pfx, or certificate and private_key)"
    )]
    StoreKeyNotExportable {
        /// `LocalMachine\My`.
        store: String,
        /// The certificate's thumbprint.
        thumbprint: String,
        /// What Windows said, or what the export lacked.
        problem: String,
    },
}

/// Resolves the configured credential (reads files and environment variables).
///
/// # Errors
/// [`CredentialError`] naming the file or variable and what to do.
pub fn resolve(c: &Credentials, env: &dyn Environment) -> Result<Credential, CredentialError> {
    if let Some(cert) = &c.certificate {
        return from_pem(cert, c.private_key.as_deref()).map(Credential::Certificate);
    }
    if let Some(pfx) = &c.pfx {
        let password = match (&c.pfx_password_env, &c.pfx_password_file) {
            (Some(name), _) => Secret::new(secret_var(
                env,
                name,
                "the PFX password",
                "pfx_password_env",
            )?),
            (None, Some(path)) => Secret::new(secret_file("PFX password file", path)?),
            (None, None) => Secret::new(String::new()),
        };
        return from_pfx(pfx, &password).map(Credential::Certificate);
    }
    if let Some(thumbprint) = &c.certificate_thumbprint {
        let store = c.store.as_deref().unwrap_or(DEFAULT_STORE);
        let (Some(normal), Some(parsed)) = (
            normalize_thumbprint(thumbprint),
            CertStoreName::parse(store),
        ) else {
            return Err(CredentialError::StoreReference {
                thumbprint: thumbprint.clone(),
                store: store.to_owned(),
            });
        };
        return from_store(&normal, &parsed).map(Credential::Certificate);
    }
    let secret = match (&c.client_secret_env, &c.client_secret_file) {
        (Some(name), _) => Some((
            format!("${name}"),
            secret_var(env, name, "the app's client secret", "client_secret_env")?,
        )),
        (None, Some(path)) => Some((
            path.display().to_string(),
            secret_file("client secret file", path)?,
        )),
        (None, None) => None,
    };
    if let Some((from, secret)) = secret {
        static WARN: Once = Once::new();
        WARN.call_once(|| {
            tracing::warn!(
                from = %from,
                "using a client secret: certificates are preferred (no shared secret, proof of possession)"
            );
        });
        return Ok(Credential::Secret {
            from,
            secret: Secret::new(secret),
        });
    }
    if let Some(path) = &c.federated_token_file {
        return Ok(Credential::Federated(path.clone()));
    }
    Err(CredentialError::NotConfigured)
}

/// A secret from the variable `name`, without the line ending a Kubernetes Secret made with
/// `--from-file`, a systemd `EnvironmentFile=` or a heredoc leaves at its end (`\n`, `\r\n`):
/// Entra would refuse the secret with it (AADSTS7000215) and the PFX would not open.
fn secret_var(
    env: &dyn Environment,
    name: &str,
    what: &'static str,
    key: &'static str,
) -> Result<String, CredentialError> {
    let mut value = env.var(name).ok_or_else(|| CredentialError::MissingEnv {
        name: name.to_owned(),
        what,
        key,
    })?;
    let kept = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(kept);
    Ok(value)
}

/// A secret kept in a file (a systemd credential, a mounted Kubernetes Secret): its text
/// without the line ending editors and `echo` leave at its end.
fn secret_file(what: &'static str, path: &Path) -> Result<String, CredentialError> {
    let bytes = read(what, path)?;
    let mut text = String::from_utf8(bytes).map_err(|_| CredentialError::Read {
        what,
        path: path.to_owned(),
        problem: "it is not UTF-8 text".into(),
    })?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.is_empty() {
        return Err(CredentialError::Read {
            what,
            path: path.to_owned(),
            problem: "the file is empty".into(),
        });
    }
    Ok(text)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|e| CredentialError::Read {
        what,
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

/// Certificate PEM, with the key in the same file or in `key_path`.
fn from_pem(cert_path: &Path, key_path: Option<&Path>) -> Result<CertificateKey, CredentialError> {
    let cert_text = read("certificate", cert_path)?;
    let mut cert_der = None;
    let mut key_pem = None;
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(&cert_text) {
        let (kind, der) = item.map_err(|e| CredentialError::Certificate {
            path: cert_path.to_owned(),
            problem: format!("not valid PEM ({e})"),
        })?;
        match kind {
            SectionKind::Certificate if cert_der.is_none() => cert_der = Some(der),
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey => {
                key_pem = Some((pem_wrap(kind, &der), Secret::new(der)));
            }
            _ => {}
        }
    }
    let der = cert_der.ok_or_else(|| CredentialError::Certificate {
        path: cert_path.to_owned(),
        problem: "no \"BEGIN CERTIFICATE\" block; give the PEM certificate whose public part is \
                  uploaded to the app registration"
            .into(),
    })?;
    let key_pem = match key_path {
        Some(p) => {
            let text = read("private key", p)?;
            let mut found = None;
            for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(&text) {
                let (kind, der) = item.map_err(|e| CredentialError::Key {
                    path: p.to_owned(),
                    problem: format!("not valid PEM ({e})"),
                })?;
                match kind {
                    SectionKind::PrivateKey | SectionKind::RsaPrivateKey => {
                        found = Some((pem_wrap(kind, &der), Secret::new(der)));
                        break;
                    }
                    SectionKind::EcPrivateKey => {
                        return Err(CredentialError::Key {
                            path: p.to_owned(),
                            problem: "an EC key; Entra client assertions here are RS256: use an \
                                      RSA 2048+ certificate"
                                .into(),
                        });
                    }
                    _ => {}
                }
            }
            found.ok_or_else(|| CredentialError::Key {
                path: p.to_owned(),
                problem: "no \"BEGIN PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\" block (encrypted \
                          keys are not supported: use a PFX with pfx_password_env)"
                    .into(),
            })?
        }
        None => key_pem.ok_or_else(|| CredentialError::Key {
            path: cert_path.to_owned(),
            problem: "holds no private key; add private_key = \"app-key.pem\" or append the key \
                      to this file"
                .into(),
        })?,
    };
    let (key_pem, key_der) = key_pem;
    CertificateKey::new(cert_path, der, key_der.expose(), key_pem.expose())
}

fn pem_wrap(kind: SectionKind, der: &[u8]) -> Secret<Vec<u8>> {
    let label = match kind {
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    Secret::new(out.into_bytes())
}

/// Why a PKCS#12 blob gave no certificate and key.
enum PfxProblem {
    /// It does not open (password, format).
    Open(String),
    /// It holds no private key with a certificate.
    NoKey,
}

/// The leaf certificate (DER) and its private key (PKCS#8 DER) from a PKCS#12 blob: the one
/// reader for `pfx` files and Windows-store exports.
fn pfx_parts(data: &[u8], password: &str) -> Result<(Vec<u8>, Secret<Vec<u8>>), PfxProblem> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        data,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| PfxProblem::Open(e.to_string()))?;
    let (_, chain) = store.private_key_chain().ok_or(PfxProblem::NoKey)?;
    let cert = chain.certs().first().ok_or(PfxProblem::NoKey)?;
    Ok((
        cert.as_der().to_vec(),
        Secret::new(chain.key().as_der().to_vec()),
    ))
}

/// A certificate and key from [`pfx_parts`], named `source` in messages.
fn from_parts(
    source: &Path,
    (der, key_der): (Vec<u8>, Secret<Vec<u8>>),
) -> Result<CertificateKey, CredentialError> {
    let key_pem = pem_wrap(SectionKind::PrivateKey, key_der.expose());
    CertificateKey::new(source, der, key_der.expose(), key_pem.expose())
}

/// PKCS#12 with the leaf certificate and its key.
fn from_pfx(path: &Path, password: &Secret<String>) -> Result<CertificateKey, CredentialError> {
    let data = read("PFX", path)?;
    let parts = pfx_parts(&data, password.expose()).map_err(|problem| CredentialError::Pfx {
        path: path.to_owned(),
        problem: match problem {
            PfxProblem::Open(e) => format!(
                "cannot open it ({e}); check the password in pfx_password_env and that the file \
                 is a PKCS#12 export with the private key"
            ),
            PfxProblem::NoKey => "holds no private key with a certificate; export the \
                                  certificate *with* its private key"
                .into(),
        },
    })?;
    from_parts(path, parts)
}

/// The certificate with SHA-1 `thumbprint` (normalised) from a Windows certificate store,
/// exported with its key to an in-memory PKCS#12 and read by [`pfx_parts`].
#[cfg(windows)]
fn from_store(thumbprint: &str, store: &CertStoreName) -> Result<CertificateKey, CredentialError> {
    use rand::Rng as _;
    use schannel::cert_context::HashAlgorithm;
    use schannel::cert_store::{CertAdd, CertStoreBuilder, Memory};

    use crate::config::StoreLocation;

    let name = store.to_string();
    let open_failed = |e: std::io::Error| CredentialError::StoreOpen {
        store: name.clone(),
        thumbprint: thumbprint.to_owned(),
        problem: e.to_string(),
    };
    let mut builder = CertStoreBuilder::new();
    builder.read_only();
    let opened = match store.location {
        StoreLocation::LocalMachine => builder.open_local_machine(&store.name),
        StoreLocation::CurrentUser => builder.open_current_user(&store.name),
    }
    .map_err(open_failed)?;
    let want = hex::decode(thumbprint).unwrap_or_default();
    let cert = opened
        .certs()
        .find(|c| {
            c.fingerprint(HashAlgorithm::sha1())
                .is_ok_and(|f| f == want)
        })
        .ok_or_else(|| CredentialError::StoreNotFound {
            store: name.clone(),
            thumbprint: thumbprint.to_owned(),
        })?;
    // Asks for the key without any UI: fails when there is none or the account may not read it.
    cert.private_key()
        .silent(true)
        .acquire()
        .map_err(|e| CredentialError::StoreNoPrivateKey {
            store: name.clone(),
            thumbprint: thumbprint.to_owned(),
            problem: e.to_string(),
        })?;
    let not_exportable = |problem: String| CredentialError::StoreKeyNotExportable {
        store: name.clone(),
        thumbprint: thumbprint.to_owned(),
        problem,
    };
    let mut memory = Memory::new().map_err(open_failed)?.into_store();
    memory
        .add_cert(&cert, CertAdd::Always)
        .map_err(open_failed)?;
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let password = Secret::new(password);
    let pfx = Secret::new(
        memory
            .export_pkcs12(password.expose())
            .map_err(|e| not_exportable(e.to_string()))?,
    );
    let parts = pfx_parts(pfx.expose(), password.expose()).map_err(|problem| match problem {
        PfxProblem::Open(e) => not_exportable(format!("the export does not open: {e}")),
        PfxProblem::NoKey => not_exportable("Windows exported the certificate without it".into()),
    })?;
    from_parts(
        &std::path::PathBuf::from(format!("Cert:\\{name}\\{thumbprint}")),
        parts,
    )
}

/// Without a Windows certificate store, a thumbprint names nothing (validation says so first).
#[cfg(not(windows))]
fn from_store(thumbprint: &str, _store: &CertStoreName) -> Result<CertificateKey, CredentialError> {
    Err(CredentialError::StoreUnsupported {
        thumbprint: thumbprint.to_owned(),
    })
}

/// Reads the federated token (fresh on every request).
///
/// # Errors
/// [`CredentialError::Read`] when the file is missing or empty.
pub async fn read_federated(path: &Path) -> Result<Secret<String>, CredentialError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| CredentialError::Read {
            what: "federated token file",
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        return Err(CredentialError::Read {
            what: "federated token file",
            path: path.to_owned(),
            problem: "the file is empty".into(),
        });
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THUMB: &str = "3F2A9C0B6D1E4F5A7B8C9D0E1F2A3B4C5D6E7F80";
    /// `openssl x509 -fingerprint -sha1` of the certificate in the legacy export.
    const LEGACY_THUMBPRINT: &str = "2A7EBDF3FDFA08DEA8E20D580CA5B2E0D93FDB96";

    /// Validation refuses the key off Windows first; should a config reach the loader anyway,
    /// the tenant's credential is a typed error naming the thumbprint and the file kinds.
    #[cfg(not(windows))]
    #[test]
    fn a_thumbprint_off_windows_is_a_typed_error_naming_the_alternatives() {
        let c = Credentials {
            certificate_thumbprint: Some(
                "3f:2a:9c:0b:6d:1e:4f:5a:7b:8c:9d:0e:1f:2a:3b:4c:5d:6e:7f:80".into(),
            ),
            ..Credentials::default()
        };
        let env = std::collections::BTreeMap::<String, String>::new();
        let err = resolve(&c, &env).unwrap_err();
        assert!(
            matches!(&err, CredentialError::StoreUnsupported { thumbprint } if thumbprint == THUMB),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("pfx, or certificate and private_key"),
            "{err}"
        );
        let bad = Credentials {
            certificate_thumbprint: Some(THUMB.into()),
            store: Some("My".into()),
            ..Credentials::default()
        };
        assert!(matches!(
            resolve(&bad, &env),
            Err(CredentialError::StoreReference { .. })
        ));
    }

    /// What `export_pkcs12` gives on Windows (PFXExportCertStore without PBES2 flags): the
    /// certificates under pbeWithSHA1And40BitRC2-CBC, the key under 3-key triple DES, a SHA-1
    /// MAC (`openssl pkcs12 -export -legacy` writes the same; test key only). The store path
    /// reads it with the `pfx` reader, so that reader must open it.
    #[test]
    fn a_windows_legacy_export_opens_with_the_pfx_reader() {
        let pfx = include_bytes!("testdata/windows-legacy-export.pfx");
        let Ok(parts) = pfx_parts(pfx, "Winstore-Export-1") else {
            panic!("the legacy export does not open")
        };
        let key = from_parts(Path::new("Cert:\\LocalMachine\\My\\test"), parts).unwrap();
        assert_eq!(key.thumbprint, LEGACY_THUMBPRINT);
        assert!(matches!(pfx_parts(pfx, "wrong"), Err(PfxProblem::Open(_))));
    }

    /// Each store failure names the thumbprint, the store and the fix.
    #[test]
    fn store_errors_name_the_thumbprint_the_store_and_the_fix() {
        let store = || "LocalMachine\\My".to_owned();
        let thumbprint = || THUMB.to_owned();
        for (err, fix) in [
            (
                CredentialError::StoreNotFound {
                    store: store(),
                    thumbprint: thumbprint(),
                },
                "Import-PfxCertificate -FilePath app.pfx -CertStoreLocation Cert:\\LocalMachine\\My -Exportable",
            ),
            (
                CredentialError::StoreNoPrivateKey {
                    store: store(),
                    thumbprint: thumbprint(),
                    problem: "Keyset does not exist".into(),
                },
                "grant the service account read access to the key",
            ),
            (
                CredentialError::StoreKeyNotExportable {
                    store: store(),
                    thumbprint: thumbprint(),
                    problem: "Key not valid for use in specified state".into(),
                },
                "Import-PfxCertificate -Exportable, or configure it as a file",
            ),
        ] {
            let text = err.to_string();
            for says in [THUMB, "LocalMachine\\My", fix] {
                assert!(text.contains(says), "{says:?} not in {text}");
            }
        }
    }
}
