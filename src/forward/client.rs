//! The HTTPS client both upstream modes reach Exchange with, and why it could not be built.
//!
//! One module because the two modes must trust the same roots (the public ones plus
//! `[exchange] ca_file`, which the sandbox and private test clouds set) and parse
//! `[exchange] endpoint` the same way; a difference between them would show up as "works in
//! winrm mode, TLS error in rest mode". Redirects are never followed by the client itself:
//! `winrm` follows them under its own policy (`redirect`), and the REST API does not redirect.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

/// A connection attempt to Exchange gives up after this (then the request fails clearly).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle upstream connections are kept this long (Exchange closes them after ~100 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `[exchange] endpoint` is not a URL.
    #[error(
        "[exchange] endpoint {value:?} is not an https URL (e.g. https://outlook.office365.com)"
    )]
    Endpoint {
        /// The value.
        value: String,
    },
    /// `[exchange] ca_file` unreadable or not PEM.
    #[error("[exchange] ca_file {path}: {reason}; expected PEM certificates")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// reqwest refused the configuration.
    #[error("cannot build the HTTPS client for Exchange: {0}")]
    Client(String),
}

/// `[exchange] endpoint` as a URL with a host (https, or http for a loopback test endpoint).
///
/// # Errors
/// [`UpstreamError::Endpoint`].
pub fn endpoint(value: &str) -> Result<Url, UpstreamError> {
    Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        .ok_or_else(|| UpstreamError::Endpoint {
            value: value.to_owned(),
        })
}

/// The HTTP/1.1 client to Exchange: trusted roots from [`client_tls`], no system proxy, no
/// automatic redirects.
///
/// # Errors
/// [`UpstreamError`] for a bad CA file or a configuration reqwest refuses.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, UpstreamError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_file)?)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .map_err(|e| UpstreamError::Client(e.to_string()))
}

/// The rustls client config trusting the public roots plus `ca_file`.
///
/// # Errors
/// [`UpstreamError::CaFile`].
pub fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let fail = |reason: String| UpstreamError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| fail(e.to_string()))?;
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(fail("no certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
