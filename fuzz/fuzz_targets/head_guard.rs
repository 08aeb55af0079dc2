//! The listener's request-head guard (`listener::head_guard::HeadGuard`) over an in-memory
//! client: any bytes, cut into any reads, either pass through to hyper unchanged or end in
//! one refusal — a complete HTTP 4xx response with `X-Exo-Authproxy-Error`, sent before the
//! connection is shut, with hyper shown a prefix of the input and then EOF. The refusal
//! depends on the bytes only, never on how the client's writes were cut into reads.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use exo_authproxy::listener::head_guard::{HeadGuard, Rearm};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the client was sent, and whether the connection was shut.
#[derive(Default)]
struct Sent {
    bytes: Vec<u8>,
    shut: bool,
}

/// A client that sent `chunks` (one per read) and then closed.
struct Client {
    chunks: VecDeque<Vec<u8>>,
    sent: Arc<Mutex<Sent>>,
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.chunks.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.chunks.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut sent = self.sent.lock().unwrap();
        assert!(!sent.shut, "written after the shutdown");
        sent.bytes.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.sent.lock().unwrap().shut = true;
        Poll::Ready(Ok(()))
    }
}

/// hyper's answer, written after the reads end.
const HYPER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\n";

/// What hyper reads until EOF, what the client was sent by then, and whether what hyper
/// wrote afterwards ([`HYPER`]) reached the client.
fn run(chunks: Vec<Vec<u8>>, read_size: usize) -> (Vec<u8>, Sent, bool) {
    let shared = Arc::new(Mutex::new(Sent::default()));
    let client = Client {
        chunks: chunks.into(),
        sent: shared.clone(),
    };
    let mut guard = HeadGuard::new(client, Rearm::default());
    let mut cx = Context::from_waker(Waker::noop());
    let mut seen = Vec::new();
    let mut scratch = vec![0u8; read_size];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => seen.extend_from_slice(buf.filled()),
            other => panic!("an in-memory client never blocks or fails: {other:?}"),
        }
    }
    let before = std::mem::take(&mut *shared.lock().unwrap());
    let _ = Pin::new(&mut guard).poll_write(&mut cx, HYPER);
    drop(guard);
    let after = std::mem::take(&mut *shared.lock().unwrap());
    (seen, before, after.bytes == HYPER)
}

/// The refusal must be one whole response the client can read.
fn check_refusal(sent: &Sent) {
    let text = String::from_utf8_lossy(&sent.bytes);
    assert!(sent.shut, "a refused connection is shut");
    assert!(
        text.starts_with("HTTP/1.1 4"),
        "a 4xx status line: {text:?}"
    );
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-exo-authproxy-error: "), "{head:?}");
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(body.len(), length, "the whole body is sent");
}

fuzz_target!(|data: &[u8]| {
    // First byte: how the reads are cut; the rest is what the client sent.
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    let read_size = usize::from(cut / 64) * 4096 + 512;
    let chunks: Vec<Vec<u8>> = input.chunks(step).map(<[u8]>::to_vec).collect();
    let (seen, sent, passed) = run(chunks, read_size);
    let (seen_whole, sent_whole, _) = run(vec![input.to_vec()], 64 * 1024);
    assert!(
        input.starts_with(&seen),
        "hyper sees the client's bytes, in order"
    );
    assert_eq!(
        sent.bytes, sent_whole.bytes,
        "the cut of the reads changed the answer"
    );
    if sent.bytes.is_empty() {
        assert!(!sent.shut && !sent_whole.shut);
        assert_eq!(seen, input, "an accepted head passes every byte through");
        assert_eq!(seen_whole, input);
        assert!(passed, "hyper's answer reaches the client");
    } else {
        check_refusal(&sent);
        assert!(!passed, "nothing hyper writes follows the refusal");
    }
});
