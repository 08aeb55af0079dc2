//! The remoting endpoint served over real TLS on 127.0.0.1:0, for pypsrp and crafted requests.
//!
//! hyper 1 + tokio-rustls with a throw-away CA and a leaf certificate for `127.0.0.1` /
//! `localhost` made by rcgen; the CA's PEM is written to a temp dir so pypsrp can verify the
//! server (`cert_validation=<path>`), exactly as a real client verifies the proxy. The owner of
//! a request is the Basic user name (any password), standing in for the proxy's real Basic
//! check so tests can show that shells are only visible to their owner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use exo_authproxy::remoting::{Endpoint, Executor, Settings};

/// A running test server.
pub struct TestServer<E: Executor> {
    /// `https://127.0.0.1:PORT/powershell-liveid/`
    pub url: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server certificate.
    pub ca_path: PathBuf,
    /// The endpoint behind it.
    pub endpoint: Arc<Endpoint<E>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl<E: Executor> Drop for TestServer<E> {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close_all();
    }
}

fn certificates() -> (rcgen::Certificate, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "exo-authproxy test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
        .expect("server cert");
    (ca_cert, config)
}

fn owner_of(req: &http::Request<hyper::body::Incoming>) -> String {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, _)| u.to_owned()))
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// Serves `endpoint` until dropped. `caller` is what every request's executor call sees.
pub async fn serve<E: Executor>(
    executor: Arc<E>,
    settings: Settings,
    caller: E::Caller,
) -> TestServer<E> {
    let limit = settings.max_envelope_size;
    let endpoint = Arc::new(Endpoint::new(executor, settings));
    let (ca, tls) = certificates();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let ep = endpoint.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let ep = ep.clone();
            let caller = caller.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let ep = ep.clone();
                    let caller = caller.clone();
                    async move {
                        let owner = owner_of(&req);
                        let (parts, body) = req.into_parts();
                        let rsp = match Limited::new(body, limit).collect().await {
                            Ok(b) => {
                                let req = http::Request::from_parts(parts, b.to_bytes());
                                ep.handle(&owner, caller, req).await
                            }
                            Err(_) => {
                                let mut r =
                                    http::Response::new(Bytes::from_static(b"request too large"));
                                *r.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
                                r
                            }
                        };
                        Ok::<_, std::convert::Infallible>(rsp.map(Full::new))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TestServer {
        url: format!("https://127.0.0.1:{}/powershell-liveid/", addr.port()),
        addr,
        ca_path,
        endpoint,
        _dir: dir,
        task,
    }
}
