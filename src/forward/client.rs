//! The HTTPS client both upstream modes reach Exchange with, and why it could not be built.
//!
//! One module because the two modes must trust the same roots (the public ones plus
//! `[exchange] ca_file`, which the sandbox and private test clouds set) and parse
//! `[exchange] endpoint` the same way; a difference between them would show up as "works in
//! winrm mode, TLS error in rest mode". Redirects are never followed by the client itself:
//! `winrm` follows them under its own policy (`redirect`), and the REST API does not redirect.
//!
//! Two clients: the rest mode's (reqwest, [`http_client`]: JSON, paging, a few requests per
//! cmdlet) and the passthrough hop's ([`Passthrough`]: every WS-Man request of every client).
//! The passthrough hop is hyper's HTTP/1.1 connection API over tokio-rustls with a pool of its
//! own, because that hop is the product's hot path and reqwest's pool cannot keep the promise
//! "never more upstream connections than client requests in flight": hyper-util's legacy pool
//! (under reqwest) races a new connect against the checkout whenever no idle connection is
//! there *yet*, and keeps the connection it opened even when the checkout wins. An answer's
//! connection goes back to its pool only after a spawned task sees it ready again, which is
//! after the proxy already handed the answer's last byte to its client, so a client that sends
//! its next request at once found no idle connection and a new one was opened: 94 upstream
//! connections for 64 client connections (issue 16). Here a connection is handed back the
//! moment its answer's last frame is read, *before* that frame goes to the client, and a
//! checkout only connects when no idle connection exists, so a client's next request always
//! finds the connection its previous one used. It also drops reqwest's per-request layers
//! (URL re-parsing, redirect and timeout wrappers, boxed futures): BENCHMARKS.md "passthrough"
//! has the instruction counts.

use std::collections::VecDeque;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
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
    /// reqwest or rustls refused the configuration.
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

/// Idle upstream connections kept per origin at most (beyond this a returned one is closed).
const MAX_IDLE_PER_ORIGIN: usize = 1024;
/// Upstream answer heads (status line + headers) are read into a buffer of at most this; the
/// body streams through it in pieces. Exchange's heads are ~1 KiB; hyper's default is ~400 KiB.
const UPSTREAM_MAX_BUF: usize = 64 * 1024;

/// Why a passthrough request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer (or no complete answer) within the request's deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// TCP or TLS connect failed.
    #[error("connecting: {0}")]
    Connect(String),
    /// The request or the answer's head failed on the connection.
    #[error("{0}")]
    Http(String),
}

impl SendError {
    /// What the failure says about whether Exchange may have acted on the request (the retry
    /// rule's input): a failed connect never sent it; a broken connection may have; a deadline
    /// passed is never resent.
    pub fn delivery(&self) -> crate::bridge::rest::Delivery {
        use crate::bridge::rest::Delivery;
        match self {
            Self::Connect(_) => Delivery::NotSent,
            Self::Timeout(_) => Delivery::TimedOut,
            Self::Http(_) => Delivery::Lost,
        }
    }
}

/// Where a connection goes: scheme, host, port (the pool's key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: Arc<str>,
    port: u16,
}

/// Where passthrough requests go (the endpoint, or a pod Exchange redirected to): the URL
/// without its query, its pool key and its `Host` header, prepared once and cheap to clone,
/// so a request costs no URL parsing.
#[derive(Debug, Clone)]
pub struct Target {
    url: Arc<Url>,
    origin: Origin,
    host: HeaderValue,
}

impl Target {
    /// The target `url` names (its query is not kept).
    ///
    /// # Errors
    /// [`SendError::Connect`] when `url` has no host or port.
    pub fn new(url: &Url) -> Result<Self, SendError> {
        let mut url = url.clone();
        url.set_query(None);
        url.set_fragment(None);
        let host = url
            .host_str()
            .ok_or_else(|| SendError::Connect("the URL has no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| SendError::Connect("the URL has no port".into()))?;
        let header = match url.port() {
            Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
            None => HeaderValue::from_str(host),
        }
        .map_err(|e| SendError::Connect(format!("Host header: {e}")))?;
        Ok(Self {
            origin: Origin {
                https: url.scheme() == "https",
                host: Arc::from(host),
                port,
            },
            host: header,
            url: Arc::new(url),
        })
    }

    /// The URL (no query).
    pub fn url(&self) -> &Url {
        &self.url
    }
}

struct IdleConn {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Idle connections per origin, most recently returned last.
type IdleLists = Vec<(Origin, VecDeque<IdleConn>)>;

struct Shared {
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<IdleLists>,
    opened: AtomicU64,
}

impl Shared {
    fn idle(&self) -> std::sync::MutexGuard<'_, IdleLists> {
        self.idle.lock().expect("the pool lock is never poisoned")
    }

    /// The most recently returned live connection to `origin`, if any.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let mut lists = self.idle();
        let (_, list) = lists.iter_mut().find(|(o, _)| o == origin)?;
        while let Some(idle) = list.pop_back() {
            if !idle.sender.is_closed() && idle.since.elapsed() < POOL_IDLE_TIMEOUT {
                return Some(idle.sender);
            }
        }
        None
    }

    fn give_back(&self, origin: Origin, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut lists = self.idle();
        let at = match lists.iter().position(|(o, _)| *o == origin) {
            Some(at) => at,
            None => {
                lists.push((origin, VecDeque::new()));
                lists.len() - 1
            }
        };
        let list = &mut lists[at].1;
        // Connections idle too long are closed here and at checkout (no sweeper task).
        while list
            .front()
            .is_some_and(|c| c.since.elapsed() >= POOL_IDLE_TIMEOUT || c.sender.is_closed())
        {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push_back(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// The passthrough hop's client (cheap to clone; one pool).
#[derive(Clone)]
pub struct Passthrough {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("opened", &self.connections_opened())
            .finish_non_exhaustive()
    }
}

impl Passthrough {
    /// A client trusting the public roots plus `ca_file` ([`client_tls`]).
    ///
    /// # Errors
    /// [`UpstreamError::CaFile`].
    pub fn new(ca_file: Option<&Path>) -> Result<Self, UpstreamError> {
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca_file)?));
        Ok(Self {
            shared: Arc::new(Shared {
                tls,
                idle: Mutex::new(Vec::new()),
                opened: AtomicU64::new(0),
            }),
        })
    }

    /// Upstream connections opened so far (tests, benchmarks).
    pub fn connections_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// POSTs `body` to `path_and_query` at `target` with `headers` (`Host` is set here) on a
    /// pooled connection. The answer's head must arrive, and its body end, within `deadline`.
    ///
    /// # Errors
    /// [`SendError`].
    pub async fn post(
        &self,
        target: &Target,
        path_and_query: String,
        mut headers: HeaderMap,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut timer = Box::pin(tokio::time::sleep(deadline));
        let uri = Uri::try_from(path_and_query)
            .map_err(|e| SendError::Http(format!("request URI: {e}")))?;
        headers.insert(header::HOST, target.host.clone());
        let origin = &target.origin;
        let build = |body: Bytes, headers: HeaderMap| {
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers;
            req
        };
        let exchange = async {
            // A pooled connection the upstream closed meanwhile fails before the request is
            // written ("canceled"): that one request is sent again on a new connection.
            if let Some(mut sender) = self.shared.checkout(origin) {
                if sender.ready().await.is_ok() {
                    match sender
                        .send_request(build(body.clone(), headers.clone()))
                        .await
                    {
                        Ok(rsp) => return Ok((sender, rsp)),
                        Err(e) if !e.is_canceled() => return Err(SendError::Http(chain(&e))),
                        Err(_) => {}
                    }
                }
            }
            let mut sender = self.connect(origin).await?;
            let rsp = sender
                .send_request(build(body, headers))
                .await
                .map_err(|e| SendError::Http(chain(&e)))?;
            Ok((sender, rsp))
        };
        let (sender, rsp) = tokio::select! {
            biased;
            done = exchange => done?,
            () = timer.as_mut() => return Err(SendError::Timeout(deadline)),
        };
        let (parts, body) = rsp.into_parts();
        let mut body = PooledBody {
            body,
            home: Some((self.shared.clone(), origin.clone(), sender)),
            timer,
            deadline,
        };
        if body.body.is_end_stream() {
            body.give_back();
        }
        Ok(Response::from_parts(parts, body))
    }

    async fn connect(&self, origin: &Origin) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let port = origin.port;
        let dial = origin.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((dial, port)))
            .await
            .map_err(|_| {
                SendError::Connect(format!("no TCP connection within {CONNECT_TIMEOUT:?}"))
            })?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
        let mut builder = http1::Builder::new();
        builder.max_buf_size(UPSTREAM_MAX_BUF);
        let sender = if origin.https {
            let name = rustls_pki_types::ServerName::try_from(dial.to_owned())
                .map_err(|e| SendError::Connect(format!("server name {dial:?}: {e}")))?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.shared.tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    SendError::Connect(format!("no TLS handshake within {CONNECT_TIMEOUT:?}"))
                })?
                .map_err(|e| SendError::Connect(format!("TLS: {e}")))?;
            handshake(&builder, tls).await?
        } else {
            handshake(&builder, tcp).await?
        };
        Ok(sender)
    }
}

async fn handshake<T>(
    builder: &http1::Builder,
    io: T,
) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Http(chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    sender
        .ready()
        .await
        .map_err(|e| SendError::Http(chain(&e)))?;
    Ok(sender)
}

/// An error and its causes, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An upstream answer's body: streamed as it arrives, its connection handed back to the pool
/// the moment the last frame is read (before the caller forwards that frame), and cut with a
/// timeout error when the request's deadline passes first. Dropped unfinished, the connection
/// is closed (the rest of that answer is never read).
pub struct PooledBody {
    body: Incoming,
    home: Option<(Arc<Shared>, Origin, SendRequest<Full<Bytes>>)>,
    timer: Pin<Box<Sleep>>,
    deadline: Duration,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("pooled", &self.home.is_some())
            .finish_non_exhaustive()
    }
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((shared, origin, sender)) = self.home.take() {
            shared.give_back(origin, sender);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = crate::errors::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        let frame = match polled {
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                this.home = None;
                return Poll::Ready(Some(Err(Box::new(SendError::Timeout(this.deadline)))));
            }
            Poll::Ready(frame) => frame,
        };
        match frame {
            Some(Ok(frame)) => {
                if this.body.is_end_stream() {
                    this.give_back();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.home = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            None => {
                this.give_back();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A plain-HTTP upstream on 127.0.0.1:0 counting accepted connections; `/slow` never
    /// answers, anything else gets `len` bytes.
    async fn upstream(len: usize) -> (Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<Incoming>| async move {
                            if req.uri().path() == "/slow" {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(vec![b'x'; len]),
                            )))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (url, accepted)
    }

    async fn read_all(rsp: Response<PooledBody>) -> usize {
        use http_body_util::BodyExt;
        rsp.into_body().collect().await.unwrap().to_bytes().len()
    }

    #[tokio::test]
    async fn an_answer_read_to_its_end_leaves_its_connection_for_the_next_request() {
        let (url, accepted) = upstream(64 * 1024).await;
        let client = Passthrough::new(None).unwrap();
        let target = Target::new(&url).unwrap();
        for _ in 0..3 {
            let rsp = client
                .post(
                    &target,
                    "/a?x=1".into(),
                    HeaderMap::new(),
                    Bytes::from_static(b"<e/>"),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            assert_eq!(read_all(rsp).await, 64 * 1024);
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
        assert_eq!(client.connections_opened(), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_closes_its_connection() {
        let (url, accepted) = upstream(256 * 1024).await;
        let client = Passthrough::new(None).unwrap();
        let target = Target::new(&url).unwrap();
        let unread = client
            .post(
                &target,
                "/a".into(),
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        drop(unread);
        // The rest of that answer is never mistaken for the next one.
        let rsp = client
            .post(
                &target,
                "/b".into(),
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(read_all(rsp).await, 256 * 1024);
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_within_the_deadline_is_a_timeout() {
        let (url, _) = upstream(1).await;
        let client = Passthrough::new(None).unwrap();
        let target = Target::new(&url).unwrap();
        let err = client
            .post(
                &target,
                "/slow".into(),
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(50),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::Timeout(d) if d == Duration::from_secs(50)),
            "{err}"
        );
    }

    #[test]
    fn a_target_names_host_and_port_only_when_not_the_default() {
        let t = Target::new(
            &Url::parse("https://outlook.office365.com/PowerShell-LiveID?a=1").unwrap(),
        )
        .unwrap();
        assert_eq!(t.host, "outlook.office365.com");
        assert_eq!(
            t.url().as_str(),
            "https://outlook.office365.com/PowerShell-LiveID"
        );
        let t = Target::new(&Url::parse("https://localhost:4443/x").unwrap()).unwrap();
        assert_eq!(t.host, "localhost:4443");
        assert_eq!(t.origin.port, 4443);
    }
}
