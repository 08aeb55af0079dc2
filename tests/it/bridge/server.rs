//! A small HTTPS server (real TLS, real HTTP/1.1) serving the simulated admin API, for bridge
//! tests and the bridge benchmark until the full sandbox (`sandbox/exchange.rs`) is used.
//! Token "verification" is deliberately minimal: any non-empty Bearer token is the test app.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use exo_authproxy::bridge::RestCaller;
use exo_authproxy::config::{Organization, TenantId, TenantName};
use exo_authproxy::sandbox::AppIdentity;
use exo_authproxy::sandbox::data::ExchangeData;
use exo_authproxy::secret::Secret;
use exo_authproxy::token::TokenProvider;
use exo_authproxy::token::{AccessToken, Diagnosis, TokenError};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const TENANT_ID: &str = "0f9c3b1e-1111-2222-3333-444455556666";
pub const ORGANIZATION: &str = "contoso.onmicrosoft.com";

pub fn app() -> AppIdentity {
    AppIdentity {
        tenant_id: TENANT_ID.into(),
        app_id: "app-1".into(),
        organization: ORGANIZATION.into(),
    }
}

pub fn caller() -> RestCaller {
    RestCaller {
        user: "reporting".into(),
        tenant: TenantName("contoso".into()),
        tenant_id: TenantId(TENANT_ID.into()),
        organization: Organization(ORGANIZATION.into()),
        app_id: "app-1".into(),
    }
}

/// Tokens for tests: `tok-<generation>`, counting fetches and refreshes.
#[derive(Default)]
pub struct TestTokens {
    pub fetches: AtomicU32,
    pub refreshes: AtomicU32,
    pub fail: std::sync::atomic::AtomicBool,
}

impl TestTokens {
    fn issue(&self, tenant: &TenantName) -> Result<AccessToken, TokenError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(TokenError::Malformed {
                tenant: tenant.clone(),
                detail: "Entra ID rejected the certificate (AADSTS700027)".into(),
            });
        }
        Ok(AccessToken {
            token: Secret::new(format!("tok-{}", self.refreshes.load(Ordering::SeqCst))),
            expires_at: std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            uti: None,
            diagnosis: Diagnosis::Ready,
        })
    }
}

impl TokenProvider for TestTokens {
    fn token<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(std::future::ready(self.issue(tenant)))
    }
    fn refresh<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(self.issue(tenant)))
    }
}

pub struct AdminApi {
    pub url: url::Url,
    pub data: Arc<ExchangeData>,
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdminApi {
    pub async fn start(data: Arc<ExchangeData>) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("cert");
        let ca_pem = ck.cert.pem();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = url::Url::parse(&format!("https://{}", listener.local_addr().expect("addr")))
            .expect("url");
        let served = data.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let data = served.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let data = data.clone();
                        async move { Ok::<_, Infallible>(serve(&data, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            url,
            data,
            ca_pem,
            task,
        }
    }

    /// A client trusting only this server's certificate.
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("pem")])
            .build()
            .expect("client")
    }
}

async fn serve(
    data: &ExchangeData,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let authorized = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.is_empty());
    if !authorized {
        let mut rsp = hyper::Response::new(Full::new(Bytes::new()));
        *rsp.status_mut() = hyper::StatusCode::UNAUTHORIZED;
        return rsp;
    }
    let tenant = parts
        .uri
        .path()
        .split('/')
        .nth(3)
        .unwrap_or_default()
        .to_owned();
    let request = http::Request::from_parts(parts, body);
    let rsp = exo_authproxy::sandbox::adminapi::handle(data, &app(), &tenant, request).await;
    rsp.map(Full::new)
}
