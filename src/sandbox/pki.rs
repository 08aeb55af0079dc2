//! The sandbox PKI: a throwaway CA, loopback server certificates and app certificates.
//!
//! The simulators speak real TLS, so something must issue their certificates and the proxy must
//! trust it: [`TestCa`] signs server certificates for `127.0.0.1`/`localhost` and its PEM goes
//! into `[entra] ca_file` / `[exchange] ca_file`. Server keys are ECDSA P-256 (fast to make);
//! app credentials are RSA-2048 because Entra client assertions are RS256 ([`AppCertificate`],
//! also as a PKCS#12 file). Everything is generated in memory per run; nothing here is ever a
//! production credential.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha1::Digest as _;

use crate::secret::Secret;

/// Why the PKI could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key or certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// Writing a file failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// PKCS#12 encoding failed.
    #[error("encoding the PFX: {0}")]
    Pfx(String),
    /// rustls refused the server certificate.
    #[error("building the TLS server config: {0}")]
    Tls(#[from] rustls::Error),
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

/// A certificate authority for one sandbox run.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh CA named `common_name`.
    ///
    /// # Errors
    /// [`PkiError::Generate`].
    pub fn new(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(generate("CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate("CA"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(generate("CA"))?;
        Ok(Self { issuer })
    }

    /// The CA certificate (PEM): what `ca_file` points at.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate (DER).
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    ///
    /// # Errors
    /// [`PkiError::Generate`].
    pub fn server_certificate(&self, names: &[&str]) -> Result<ServerCertificate, PkiError> {
        let key = KeyPair::generate().map_err(generate("server key"))?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .map_err(generate("server certificate"))?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate("server certificate"))?;
        Ok(ServerCertificate {
            chain: vec![cert.der().clone(), self.der()],
            cert_pem: cert.pem(),
            key: Secret::new(key.serialize_der()),
            key_pem: Secret::new(key.serialize_pem()),
        })
    }

    /// A rustls server config for loopback (`127.0.0.1`, `::1`, `localhost`), HTTP/1.1.
    ///
    /// # Errors
    /// As for [`TestCa::server_certificate`], or rustls refusing the key.
    pub fn loopback_server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        self.server_certificate(&["127.0.0.1", "::1", "localhost"])?
            .server_config()
    }
}

/// A server certificate signed by a [`TestCa`], with its key.
pub struct ServerCertificate {
    /// Leaf then CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf as PEM.
    pub cert_pem: String,
    /// PKCS#8 DER of the key.
    pub key: Secret<Vec<u8>>,
    /// The key as PEM.
    pub key_pem: Secret<String>,
}

impl ServerCertificate {
    /// A rustls server config serving this certificate, HTTP/1.1 only.
    ///
    /// # Errors
    /// [`PkiError::Tls`] when rustls refuses the key.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.expose().clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A calendar date: (year, month, day).
pub type Ymd = (i32, u8, u8);

/// An app registration's certificate: RSA-2048, self-signed like the ones people make with
/// `New-SelfSignedCertificate` for Exchange app-only auth.
pub struct AppCertificate {
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// The certificate PEM.
    pub cert_pem: String,
    /// PKCS#8 DER of the private key.
    pub key_der: Secret<Vec<u8>>,
    /// The private key PEM.
    pub key_pem: Secret<String>,
    /// The public key as PKCS#1 `RSAPublicKey` DER (what signature checks take).
    pub public_key: Vec<u8>,
}

impl AppCertificate {
    /// A fresh certificate with subject `CN=<common_name>`.
    ///
    /// # Errors
    /// [`PkiError::Generate`].
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        Self::generate_valid(common_name, None)
    }

    /// As [`AppCertificate::generate`], valid from `validity.0` to `validity.1`
    /// (`(year, month, day)`, UTC midnight) when given: tests make expired certificates.
    ///
    /// # Errors
    /// [`PkiError`].
    pub fn generate_valid(
        common_name: &str,
        validity: Option<(Ymd, Ymd)>,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(generate("RSA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(generate("app certificate"))?;
        if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let cert = params
            .self_signed(&key)
            .map_err(generate("app certificate"))?;
        Ok(Self {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_der: Secret::new(key.serialize_der()),
            key_pem: Secret::new(key.serialize_pem()),
            public_key: key.public_key_raw().to_vec(),
        })
    }

    /// Hex SHA-1 thumbprint (upper case), as the Entra portal shows it.
    pub fn thumbprint(&self) -> String {
        hex::encode_upper(sha1::Sha1::digest(&self.der))
    }

    /// `x5t`: base64url SHA-1 of the DER.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&self.der))
    }

    /// `x5t#S256`: base64url SHA-256 of the DER.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&self.der))
    }

    /// The certificate and key as a PKCS#12 file protected by `password`.
    ///
    /// # Errors
    /// [`PkiError::Pfx`].
    pub fn pfx(&self, password: &str) -> Result<Vec<u8>, PkiError> {
        let key = p12_keystore::PrivateKey::from_der(self.key_der.expose())
            .map_err(|e| PkiError::Pfx(e.to_string()))?;
        let cert = p12_keystore::Certificate::from_der(&self.der)
            .map_err(|e| PkiError::Pfx(e.to_string()))?;
        let local_key_id = sha1::Sha1::digest(&self.der).to_vec();
        let chain = p12_keystore::PrivateKeyChain::new(local_key_id, key, [cert]);
        let mut store = p12_keystore::KeyStore::new();
        store.add_entry("app", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
        store
            .writer(password)
            .write()
            .map_err(|e| PkiError::Pfx(e.to_string()))
    }

    /// Writes `<stem>.pem` (certificate), `<stem>-key.pem` (key), `<stem>-combined.pem` (both)
    /// and `<stem>.pfx` (with `pfx_password`) into `dir`.
    ///
    /// # Errors
    /// [`PkiError`] for encoding or I/O.
    pub fn write_to(
        &self,
        dir: &Path,
        stem: &str,
        pfx_password: &str,
    ) -> Result<AppCertificateFiles, PkiError> {
        let files = AppCertificateFiles {
            certificate: dir.join(format!("{stem}.pem")),
            private_key: dir.join(format!("{stem}-key.pem")),
            combined: dir.join(format!("{stem}-combined.pem")),
            pfx: dir.join(format!("{stem}.pfx")),
        };
        write(&files.certificate, self.cert_pem.as_bytes())?;
        write(&files.private_key, self.key_pem.expose().as_bytes())?;
        write(
            &files.combined,
            format!("{}{}", self.cert_pem, self.key_pem.expose()).as_bytes(),
        )?;
        write(&files.pfx, &self.pfx(pfx_password)?)?;
        Ok(files)
    }
}

/// Where [`AppCertificate::write_to`] put things.
#[derive(Debug, Clone)]
pub struct AppCertificateFiles {
    /// Certificate PEM.
    pub certificate: PathBuf,
    /// Key PEM.
    pub private_key: PathBuf,
    /// Certificate and key in one PEM.
    pub combined: PathBuf,
    /// PKCS#12.
    pub pfx: PathBuf,
}

/// Writes `data` to `path` (private files get mode 0600 on Unix).
///
/// # Errors
/// [`PkiError::Write`].
pub fn write(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(err)
}

/// The PKCS#1 `RSAPublicKey` of a DER certificate's SubjectPublicKeyInfo; None when `der` is
/// not an X.509 certificate.
///
/// Read with `x509-parser`, not with the proxy's own `token::x509`: the simulated Entra checks
/// the proxy's certificate handling, so it must not share it.
pub fn certificate_public_key(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// The certificate's `notAfter`; None when `der` is not an X.509 certificate.
pub fn certificate_not_after(der: &[u8]) -> Option<std::time::SystemTime> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
}

/// The modulus and exponent of a PKCS#1 `RSAPublicKey`, unsigned big-endian (for JWKS).
pub fn rsa_components(pkcs1: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use x509_parser::prelude::FromDer as _;
    let (_, key) = x509_parser::public_key::RSAPublicKey::from_der(pkcs1).ok()?;
    let unsigned = |b: &[u8]| {
        let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b[start..].to_vec()
    };
    Some((unsigned(key.modulus), unsigned(key.exponent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_certificate_public_key_is_found_in_its_der() {
        let app = AppCertificate::generate("test app").unwrap();
        assert_eq!(certificate_public_key(&app.der).unwrap(), app.public_key);
        let (n, e) = rsa_components(&app.public_key).unwrap();
        assert_eq!(n.len(), 256, "RSA-2048 modulus");
        assert_eq!(e, [1, 0, 1]);
        assert_eq!(app.x5t().len(), 27);
        assert_eq!(app.x5t_s256().len(), 43);
        let until = certificate_not_after(&app.der).unwrap();
        assert!(until > std::time::SystemTime::now());
        assert!(certificate_public_key(b"not a certificate").is_none());
    }

    #[test]
    fn pfx_round_trips_through_p12_keystore() {
        let app = AppCertificate::generate("pfx app").unwrap();
        let pfx = app.pfx("pw").unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &pfx,
            "pw",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        assert_eq!(chain.certs()[0].as_der(), app.der.as_slice());
        assert!(p12_keystore::KeyStore::from_pkcs12(&pfx, "wrong", Default::default()).is_err());
    }
}
