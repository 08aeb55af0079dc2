//! The HTTPS server: TLS, one hyper connection per client, bounded bodies, drain on stop.
//!
//! Separate because it is plumbing that every simulator request passes through and that knows
//! nothing of Exchange's checks.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ExchangeSim;
use super::response::text;

const MAX_BODY: usize = 2 * 1024 * 1024;

/// Serves the simulator over TLS on `listener` until `stop` is cancelled. The "pod" a
/// redirect points to is `localhost:<port>` (the server certificate must name `localhost`).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    sim: Arc<ExchangeSim>,
    stop: CancellationToken,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
    let pod: Arc<str> = Arc::from(format!("localhost:{port}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tasks = TaskTracker::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            () = stop.cancelled() => break,
        };
        sim.counters
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (acceptor, sim, pod, stop) = (acceptor.clone(), sim.clone(), pod.clone(), stop.clone());
        tasks.spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (sim, pod) = (sim.clone(), pod.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let rsp = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                        Ok(body) => {
                            sim.handle(Request::from_parts(parts, body.to_bytes()), &pod)
                                .await
                        }
                        Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "request too large"),
                    };
                    Ok::<_, std::convert::Infallible>(rsp.map(Full::new))
                }
            });
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new()).keep_alive(true);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
}
