//! The REST bridge against a hostile Exchange (issue 12): absurd `Retry-After` values,
//! oversized and overfull pages, and a cmdlet list with names no cmdlet has. Each must end in
//! a clear error or a completed pipeline, never a panic, an unbounded read or a long hang.
//!
//! The upstream is a small HTTPS server in this file: scripted replies first, then the real
//! simulated admin API (`sandbox::adminapi::handle`) for everything after them, so a retry
//! that gets through is answered the way Exchange would. The sandbox's own knobs cannot send
//! a fractional, negative, dated or garbage `Retry-After`, nor a streamed oversized page.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use exo_authproxy::bridge::{RestCaller, RestExecutor, RestSettings};
use exo_authproxy::config::{Organization, TenantId, TenantName};
use exo_authproxy::remoting::clixml::Value;
use exo_authproxy::remoting::executor::{
    Argument, Command, ErrorCategory, Executor, Output, OutputSink, Pipeline, PipelineEnd,
    Statement,
};
use exo_authproxy::sandbox::AppIdentity;
use exo_authproxy::sandbox::data::ExchangeData;
use exo_authproxy::secret::Secret;
use exo_authproxy::token::TokenProvider;
use exo_authproxy::token::{AccessToken, Diagnosis, TokenError};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use tokio::net::TcpListener;

const TENANT_ID: &str = "0f9c3b1e-1111-2222-3333-444455556666";
const ORGANIZATION: &str = "contoso.onmicrosoft.com";

type Body = BoxBody<Bytes, Infallible>;

/// One scripted answer.
enum Reply {
    /// Status, headers, body (with its Content-Length).
    Full(u16, Vec<(&'static str, String)>, Bytes),
    /// 200 streamed in `count` chunks of `chunk`, no Content-Length.
    Stream { count: usize, chunk: Bytes },
}

impl Reply {
    fn status(status: u16, retry_after: &str) -> Self {
        Self::Full(
            status,
            vec![("retry-after", retry_after.into())],
            Bytes::new(),
        )
    }

    fn into_response(self) -> hyper::Response<Body> {
        let (status, headers, body) = match self {
            Self::Full(status, headers, body) => (status, headers, Full::new(body).boxed()),
            Self::Stream { count, chunk } => {
                let frames = (0..count).map(move |_| Ok(Frame::data(chunk.clone())));
                let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
                (200, vec![], body)
            }
        };
        let mut rsp = hyper::Response::new(body);
        *rsp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            rsp.headers_mut().insert(name, value.parse().unwrap());
        }
        rsp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        rsp
    }
}

#[derive(Default)]
struct Script {
    invoke: Mutex<VecDeque<Reply>>,
    module_file: Mutex<VecDeque<Reply>>,
    invoke_requests: AtomicU32,
    module_file_requests: AtomicU32,
}

struct Hostile {
    url: url::Url,
    ca_pem: String,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn app() -> AppIdentity {
    AppIdentity {
        tenant_id: TENANT_ID.into(),
        app_id: "app-1".into(),
        organization: ORGANIZATION.into(),
    }
}

impl Hostile {
    async fn start() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("https://{}", listener.local_addr().unwrap())).unwrap();
        let script = Arc::new(Script::default());
        let data = Arc::new(ExchangeData::new(5));
        let served = script.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, script, data) = (acceptor.clone(), served.clone(), data.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let (script, data) = (script.clone(), data.clone());
                        async move { Ok::<_, Infallible>(answer(&script, &data, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            url,
            ca_pem: ck.cert.pem(),
            script,
            task,
        }
    }

    fn executor(&self, tune: impl FnOnce(&mut RestSettings)) -> RestExecutor<FixedToken> {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let mut settings = RestSettings::new(self.url.clone());
        settings.retry_base = Duration::from_millis(10);
        settings.fetch_exported_cmdlets = false;
        tune(&mut settings);
        RestExecutor::new(http, Arc::new(FixedToken), settings)
    }

    fn invoke(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.invoke.lock().unwrap().extend(replies);
    }
}

async fn answer(
    script: &Script,
    data: &ExchangeData,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    let module_file = req.uri().path().contains("EXOModuleFile");
    let (queue, counter) = if module_file {
        (&script.module_file, &script.module_file_requests)
    } else {
        (&script.invoke, &script.invoke_requests)
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(reply) = queue.lock().unwrap().pop_front() {
        return reply.into_response();
    }
    let tenant = parts
        .uri
        .path()
        .split('/')
        .nth(3)
        .unwrap_or_default()
        .to_owned();
    let request = http::Request::from_parts(parts, body);
    exo_authproxy::sandbox::adminapi::handle(data, &app(), &tenant, request)
        .await
        .map(|b| Full::new(b).boxed())
}

struct FixedToken;

impl TokenProvider for FixedToken {
    fn token<'a>(
        &'a self,
        _tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(std::future::ready(Ok(AccessToken {
            token: Secret::new("tok".into()),
            expires_at: std::time::SystemTime::now() + Duration::from_secs(3600),
            uti: None,
            diagnosis: Diagnosis::Ready,
        })))
    }
    fn refresh<'a>(
        &'a self,
        tenant: &'a TenantName,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        self.token(tenant)
    }
}

fn caller() -> RestCaller {
    RestCaller {
        user: "reporting".into(),
        tenant: TenantName("contoso".into()),
        tenant_id: TenantId(TENANT_ID.into()),
        organization: Organization(ORGANIZATION.into()),
        app_id: "app-1".into(),
    }
}

/// `Get-Mailbox` (all of them), run to its end; the objects it returned and how it ended.
async fn get_mailbox(exec: &RestExecutor<FixedToken>) -> (usize, PipelineEnd) {
    let pipeline = Pipeline {
        statements: vec![Statement {
            commands: vec![Command {
                name: "Get-Mailbox".into(),
                is_script: false,
                args: Vec::<Argument>::new(),
                merge_errors_into_output: false,
            }],
        }],
        no_input: true,
        origin: Default::default(),
    };
    let (sink, mut rx) = OutputSink::channel(64);
    let (_tx, input) = tokio::sync::mpsc::channel::<Value>(1);
    let collect = async move {
        let mut objects = 0;
        while let Some(out) = rx.recv().await {
            objects += usize::from(matches!(out, Output::Object(_)));
        }
        objects
    };
    let caller = caller();
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        exec.run(&caller, pipeline, input, sink),
    );
    let (end, objects) = tokio::join!(run, collect);
    (
        objects,
        end.expect("the bridge gave up within its own limits"),
    )
}

fn failure(end: PipelineEnd) -> exo_authproxy::remoting::executor::ErrorRecord {
    match end {
        PipelineEnd::Failed(record) => record,
        PipelineEnd::Completed => panic!("expected a failure"),
    }
}

#[tokio::test]
async fn r12_absurd_retry_after_values_neither_panic_nor_hang() {
    let upstream = Hostile::start().await;
    let exec = upstream.executor(|_| {});

    // Far beyond what the bridge waits (and beyond what Duration::from_secs_f64 takes):
    // a ThrottlingError at once that names the wait.
    upstream.invoke([Reply::status(429, "1e308")]);
    let record = failure(get_mailbox(&exec).await.1);
    assert_eq!(record.category, ErrorCategory::LimitsExceeded);
    assert!(
        record
            .fully_qualified_error_id
            .starts_with("ThrottlingError,"),
        "{record:?}"
    );
    assert!(
        record.message.contains("asked to wait 86400 s")
            && record.message.contains("contoso")
            && record
                .message
                .contains("longer than the bridge waits (120 s)"),
        "{}",
        record.message
    );
    assert_eq!(upstream.script.invoke_requests.load(Ordering::SeqCst), 1);

    // Garbage, negative, fractional and past-date hints: retried with the bridge's own
    // back-off, then the real answer.
    upstream.invoke([
        Reply::status(503, "soon"),
        Reply::status(429, "-5"),
        Reply::status(429, "0.01"),
        Reply::status(503, "Wed, 21 Oct 2015 07:28:00 GMT"),
        Reply::status(429, "NaN"),
    ]);
    let (objects, end) = get_mailbox(&exec).await;
    assert_eq!(end, PipelineEnd::Completed);
    assert_eq!(objects, 5);
    assert_eq!(
        upstream.script.invoke_requests.load(Ordering::SeqCst),
        1 + 6
    );
}

#[tokio::test]
async fn r12_an_oversized_or_overfull_page_is_a_clear_error_naming_the_cmdlet() {
    let upstream = Hostile::start().await;
    let limit = 1024 * 1024;
    let exec = upstream.executor(|s| s.max_page_bytes = limit);
    let too_large = |record: &exo_authproxy::remoting::executor::ErrorRecord| {
        assert_eq!(record.category, ErrorCategory::LimitsExceeded);
        assert!(
            record
                .message
                .contains("answer to Get-Mailbox is larger than")
                && record.message.contains(&format!("{limit} bytes")),
            "{}",
            record.message
        );
    };
    // Streamed without a length: stopped while reading.
    upstream.invoke([Reply::Stream {
        count: 64,
        chunk: Bytes::from(vec![b' '; 256 * 1024]),
    }]);
    too_large(&failure(get_mailbox(&exec).await.1));
    // Declared too long: refused before reading.
    upstream.invoke([Reply::Full(200, vec![], Bytes::from(vec![b' '; 2 * limit]))]);
    too_large(&failure(get_mailbox(&exec).await.1));
    // Small in bytes, huge in objects.
    let overfull = format!("{{\"value\":[{}{{}}]}}", "{},".repeat(20_000));
    upstream.invoke([Reply::Full(200, vec![], Bytes::from(overfull))]);
    let record = failure(get_mailbox(&exec).await.1);
    assert!(
        record.message.contains("Get-Mailbox")
            && record.message.contains("more than 10000 objects"),
        "{}",
        record.message
    );
    // The bridge still works afterwards.
    assert_eq!(get_mailbox(&exec).await, (5, PipelineEnd::Completed));
}

#[tokio::test]
async fn r12_odd_names_in_the_cmdlet_list_are_dropped_not_a_panic() {
    let upstream = Hostile::start().await;
    let exec = upstream.executor(|s| s.fetch_exported_cmdlets = true);
    // A multi-byte character across byte 4 used to panic the catalog's verb check.
    let list = "Get-Mailbox,Gé€t-Thing,Sét-Mailbox,\u{202e}Set-X,Remove-Mailbox";
    let body = serde_json::json!({ "value": [{ "exportedCmdlets": list }] }).to_string();
    upstream
        .script
        .module_file
        .lock()
        .unwrap()
        .push_back(Reply::Full(200, vec![], Bytes::from(body)));
    assert_eq!(get_mailbox(&exec).await, (5, PipelineEnd::Completed));
    assert_eq!(
        upstream.script.module_file_requests.load(Ordering::SeqCst),
        1
    );
}
