//! The listener's TLS: a configured certificate (reloaded on SIGHUP) or a self-signed one.
//!
//! TLS is on by default because WinRM clients send Basic credentials only over HTTPS unless
//! the machine is reconfigured (`AllowUnencrypted` + `TrustedHosts`). With no certificate
//! configured the proxy generates one on first start (ECDSA P-256, SANs `localhost`,
//! `127.0.0.1`, `::1` and the bind host), keeps it in `state_dir` and reuses it, so the
//! fingerprint a user trusted once stays valid across restarts. The current
//! `rustls::ServerConfig` sits behind a lock that the accept loop reads per connection: a
//! reload swaps it and open connections keep the one they started with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// File names of the generated certificate inside `state_dir`.
pub const GENERATED_CERT: &str = "listener.pem";
/// Its key (mode 0600).
pub const GENERATED_KEY: &str = "listener-key.pem";

/// Why the listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}; check [listen] certificate / private_key")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("{path} holds no PEM {what}; expected a PEM file with -----BEGIN {what}-----")]
    NoPem {
        /// The file.
        path: PathBuf,
        /// "CERTIFICATE" or "PRIVATE KEY".
        what: &'static str,
    },
    /// rustls refused the pair (key does not match, unsupported algorithm).
    #[error("{cert} / {key}: {source}; the key must belong to the first certificate in the chain")]
    Pair {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The self-signed certificate could not be generated or stored.
    #[error(
        "cannot create the self-signed listener certificate in {dir}: {reason}; make state_dir writable or configure [listen] certificate"
    )]
    Generate {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where the listener certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `[listen] certificate` + `private_key`: reloaded on SIGHUP.
    Configured {
        /// Chain.
        cert: PathBuf,
        /// Key.
        key: PathBuf,
    },
    /// Generated into `state_dir` (new or reused).
    SelfSigned {
        /// The certificate file users trust.
        cert: PathBuf,
        /// Its key.
        key: PathBuf,
        /// Whether it was generated on this start.
        created: bool,
    },
}

/// The listener certificate: the current rustls config and facts to print.
#[derive(Debug)]
pub struct ListenerTls {
    current: RwLock<Arc<ServerConfig>>,
    source: CertSource,
    fingerprint: RwLock<String>,
}

impl ListenerTls {
    /// Loads the configured pair, or generates/reuses the self-signed one in `state_dir`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and the fix.
    pub fn load(
        configured: Option<(&Path, &Path)>,
        state_dir: &Path,
        bind: SocketAddr,
    ) -> Result<Self, TlsError> {
        let source = match configured {
            Some((cert, key)) => CertSource::Configured {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            None => ensure_self_signed(state_dir, bind)?,
        };
        let (cert, key) = match &source {
            CertSource::Configured { cert, key } | CertSource::SelfSigned { cert, key, .. } => {
                (cert.clone(), key.clone())
            }
        };
        let (config, fingerprint) = server_config(&cert, &key)?;
        Ok(Self {
            current: RwLock::new(config),
            source,
            fingerprint: RwLock::new(fingerprint),
        })
    }

    /// The config new connections use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .expect("tls lock is never poisoned: no panics under it")
            .clone()
    }

    /// Where the certificate came from.
    pub fn source(&self) -> &CertSource {
        &self.source
    }

    /// The certificate file path.
    pub fn cert_path(&self) -> &Path {
        match &self.source {
            CertSource::Configured { cert, .. } | CertSource::SelfSigned { cert, .. } => cert,
        }
    }

    /// SHA-256 of the leaf certificate, colon-separated upper-case hex.
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .read()
            .expect("tls lock is never poisoned")
            .clone()
    }

    /// Re-reads the files (SIGHUP). On error the current certificate stays in use.
    ///
    /// # Errors
    /// As for [`ListenerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let (cert, key) = match &self.source {
            CertSource::Configured { cert, key } | CertSource::SelfSigned { cert, key, .. } => {
                (cert, key)
            }
        };
        let (config, fingerprint) = server_config(cert, key)?;
        *self.current.write().expect("tls lock is never poisoned") = config;
        *self
            .fingerprint
            .write()
            .expect("tls lock is never poisoned") = fingerprint;
        Ok(())
    }

    /// How to trust the certificate, for the startup log and the sandbox banner.
    pub fn trust_hint(&self) -> String {
        let path = self.cert_path().display();
        format!(
            "certificate {path} (SHA-256 {fp}). Trust it: Windows: Import-Certificate -FilePath {path} \
             -CertStoreLocation Cert:\\LocalMachine\\Root (or connect with -SessionOption \
             (New-PSSessionOption -SkipCACheck -SkipCNCheck)); Linux: copy it to \
             /usr/local/share/ca-certificates/exo-authproxy.crt and run update-ca-certificates \
             (pypsrp: cert_validation=\"{path}\")",
            fp = self.fingerprint()
        )
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn server_config(cert: &Path, key: &Path) -> Result<(Arc<ServerConfig>, String), TlsError> {
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoPem {
            path: cert.to_path_buf(),
            what: "CERTIFICATE",
        });
    };
    let fingerprint = fingerprint(leaf);
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoPem {
        path: key.to_path_buf(),
        what: "PRIVATE KEY",
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Pair {
            cert: cert.into(),
            key: key.into(),
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsError::Pair {
            cert: cert.into(),
            key: key.into(),
            source,
        })?;
    // WinRM speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), fingerprint))
}

/// SHA-256 of a DER certificate as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ensure_self_signed(state_dir: &Path, bind: SocketAddr) -> Result<CertSource, TlsError> {
    let cert = state_dir.join(GENERATED_CERT);
    let key = state_dir.join(GENERATED_KEY);
    if cert.exists() && key.exists() {
        return Ok(CertSource::SelfSigned {
            cert,
            key,
            created: false,
        });
    }
    let fail = |reason: String| TlsError::Generate {
        dir: state_dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(state_dir).map_err(|e| fail(e.to_string()))?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let host = bind.ip().to_string();
    if !bind.ip().is_unspecified() && !names.contains(&host) {
        names.push(host);
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| fail(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "exo-authproxy localhost");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let pair = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let issued = params.self_signed(&pair).map_err(|e| fail(e.to_string()))?;
    write_private(&key, pair.serialize_pem().as_bytes()).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&cert, issued.pem()).map_err(|e| fail(e.to_string()))?;
    Ok(CertSource::SelfSigned {
        cert,
        key,
        created: true,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = ListenerTls::load(None, dir.path(), bind).unwrap();
        assert!(matches!(
            first.source(),
            CertSource::SelfSigned { created: true, .. }
        ));
        let second = ListenerTls::load(None, dir.path(), bind).unwrap();
        assert!(matches!(
            second.source(),
            CertSource::SelfSigned { created: false, .. }
        ));
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(GENERATED_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
        assert!(first.trust_hint().contains("Import-Certificate"));
    }

    #[test]
    fn configured_pair_reloads_and_a_bad_file_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let gen_dir = dir.path().join("gen");
        ListenerTls::load(None, &gen_dir, bind).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::copy(gen_dir.join(GENERATED_CERT), &cert).unwrap();
        std::fs::copy(gen_dir.join(GENERATED_KEY), &key).unwrap();
        let tls = ListenerTls::load(Some((&cert, &key)), dir.path(), bind).unwrap();
        let before = tls.fingerprint();

        // A new pair on disk: the reload picks it up.
        std::fs::remove_file(gen_dir.join(GENERATED_CERT)).unwrap();
        ListenerTls::load(None, &gen_dir, bind).unwrap();
        std::fs::copy(gen_dir.join(GENERATED_CERT), &cert).unwrap();
        std::fs::copy(gen_dir.join(GENERATED_KEY), &key).unwrap();
        tls.reload().unwrap();
        let after = tls.fingerprint();
        assert_ne!(before, after);

        std::fs::write(&cert, "not pem").unwrap();
        let err = tls.reload().unwrap_err();
        assert!(matches!(err, TlsError::NoPem { .. }), "{err}");
        assert_eq!(
            tls.fingerprint(),
            after,
            "a failed reload keeps serving the old certificate"
        );
    }
}
