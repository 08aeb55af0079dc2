//! The proxy's own limits on a request's head (request line, header count, header bytes),
//! enforced on the bytes before hyper parses them, so an oversized head gets the proxy's answer
//! (`414`/`431` with `X-Exo-Authproxy-Error` and a one-line reason) in both modes.
//!
//! Why an IO wrapper: hyper answers a head it cannot parse itself, before the service runs (a
//! bare `431` with an empty body, or nothing at all when it gives up), so a check inside the
//! service never sees those requests. The guard reads the head's bytes as they arrive, and when
//! a limit is passed it writes the refusal, closes the connection and hands hyper an EOF.
//! hyper's own limits are set well above the guard's (see `serve_http`), so it is the guard
//! that answers.
//!
//! The guard scans from the start of the connection until the blank line that ends a head,
//! then stays passive until the listener re-arms it ([`Rearm`]), which it does once a request's
//! body has been read completely (a request whose body was left unread closes the connection
//! instead). Bytes hyper reads ahead while a request is in flight (pipelining) are not
//! counted: for those hyper's larger limits are the bound.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::errors::{self, ProxyError};

/// Longest request line (method, target, version) accepted.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;
/// Largest head (request line and all header fields) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// After a refusal, at most this much more of the client's input is read and dropped, so a
/// client still sending its head reads the refusal instead of a connection reset (a lingering
/// close); hyper's header timeout bounds the time.
const MAX_LINGER_BYTES: usize = 1024 * 1024;

/// Set by the listener when the request in flight is finished and the next bytes are a head.
#[derive(Clone, Default)]
pub struct Rearm(Arc<AtomicBool>);

impl Rearm {
    /// The next bytes read start a new head.
    pub fn rearm(&self) {
        self.0.store(true, Ordering::Release);
    }
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// Where the scan of the current head is.
#[derive(Default)]
struct Scan {
    /// Between heads (the body of a request in flight passes unexamined).
    passive: bool,
    bytes: usize,
    /// Complete lines after the request line.
    fields: usize,
    /// Characters in the current line (CR not counted).
    line: usize,
    /// Still on the request line.
    in_request_line: bool,
    /// Spaces seen on the request line.
    spaces: usize,
    /// Bytes of the current header line before its colon (`None` once the colon was seen).
    name: Option<usize>,
}

impl Scan {
    fn new() -> Self {
        Self {
            in_request_line: true,
            name: Some(0),
            ..Self::default()
        }
    }

    fn malformed(reason: &'static str) -> Option<ProxyError> {
        Some(ProxyError::MalformedHead { reason })
    }

    /// Scans `data`; the refusal when a limit is passed.
    fn feed(&mut self, data: &[u8]) -> Option<ProxyError> {
        for &b in data {
            if self.passive {
                return None;
            }
            self.bytes += 1;
            if self.bytes > MAX_HEAD_BYTES {
                return Some(ProxyError::HeadTooLarge {
                    limit: MAX_HEAD_BYTES,
                });
            }
            match b {
                b'\n' if self.in_request_line => {
                    // Empty lines before the request line are tolerated (RFC 9112 §2.2).
                    if self.line > 0 {
                        if self.spaces != 2 {
                            return Self::malformed(
                                "the request line is not METHOD TARGET VERSION",
                            );
                        }
                        self.in_request_line = false;
                    }
                    self.line = 0;
                }
                b'\n' if self.line == 0 => self.passive = true,
                b'\n' => {
                    if self.name.is_some() {
                        return Self::malformed("a header line without a colon");
                    }
                    self.fields += 1;
                    self.line = 0;
                    self.name = Some(0);
                    if self.fields > MAX_HEADERS {
                        return Some(ProxyError::TooManyHeaders { limit: MAX_HEADERS });
                    }
                }
                b'\r' => {}
                b'\t' | b' ' if !self.in_request_line && self.name.is_some() => {
                    return Self::malformed(
                        "white space in a header name (or a folded header line)",
                    );
                }
                0..=8 | 10..=31 | 127 => {
                    return Self::malformed("a control character in the request head");
                }
                _ => {
                    self.line += 1;
                    if self.in_request_line {
                        if b == b' ' {
                            self.spaces += 1;
                        }
                        if self.line > MAX_REQUEST_LINE {
                            return Some(ProxyError::RequestLineTooLong {
                                limit: MAX_REQUEST_LINE,
                            });
                        }
                    } else if let Some(name) = &mut self.name {
                        if b == b':' {
                            if *name == 0 {
                                return Self::malformed("a header line with an empty name");
                            }
                            self.name = None;
                        } else {
                            *name += 1;
                        }
                    }
                }
            }
        }
        None
    }
}

/// The client stream, with the head limits enforced on what hyper reads.
pub struct HeadGuard<S> {
    inner: S,
    rearm: Rearm,
    scan: Scan,
    /// The refusal being written, and how much of it is out.
    refusal: Option<(Vec<u8>, usize)>,
    /// Refused: reads are EOF (after the linger), writes are discarded.
    closed: bool,
    /// Bytes dropped since the refusal.
    lingered: usize,
}

impl<S> HeadGuard<S> {
    /// Guards `inner`; the first bytes are a head.
    pub fn new(inner: S, rearm: Rearm) -> Self {
        Self {
            inner,
            rearm,
            scan: Scan::new(),
            refusal: None,
            closed: false,
            lingered: 0,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> HeadGuard<S> {
    /// Writes the refusal and closes; Ready once done (errors end it too: the client is gone).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((bytes, sent)) = &mut self.refusal {
            while *sent < bytes.len() {
                match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..])) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => *sent += n,
                }
            }
            let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
            self.refusal = None;
        }
        self.closed = true;
        Poll::Ready(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            ready!(this.poll_refuse(cx));
        }
        if this.closed {
            while this.lingered < MAX_LINGER_BYTES {
                let mut scratch = [0u8; 8192];
                let mut dropped = ReadBuf::new(&mut scratch);
                match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut dropped)) {
                    Ok(()) if !dropped.filled().is_empty() => {
                        this.lingered += dropped.filled().len();
                    }
                    _ => break,
                }
            }
            return Poll::Ready(Ok(()));
        }
        if this.rearm.take() {
            this.scan = Scan::new();
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(err) = this.scan.feed(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        buf.set_filled(before);
        tracing::info!(code = err.code(), error = %err, "refused a request head");
        this.refusal = Some((errors::raw_response(&err), 0));
        // Writes the refusal, then lingers (the branches above).
        Pin::new(this).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed || this.refusal.is_some() {
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed || this.refusal.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed || this.refusal.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &[u8]) -> Option<&'static str> {
        Scan::new().feed(data).map(|e| e.code())
    }

    #[test]
    fn an_ordinary_head_passes_and_the_body_is_not_scanned() {
        let mut head = b"POST /powershell-liveid HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'\n', 10 * MAX_HEADERS));
        head.extend(std::iter::repeat_n(b'a', 2 * MAX_HEAD_BYTES));
        assert_eq!(scan(&head), None);
    }

    #[test]
    fn each_limit_has_its_code() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(scan(long_line.as_bytes()), Some("request-line-too-long"));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(scan(many.as_bytes()), Some("too-many-headers"));
        let exactly = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(MAX_HEADERS));
        assert_eq!(scan(exactly.as_bytes()), None);
        for bad in [
            "HELLO\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\n: empty\r\n\r\n",
        ] {
            assert_eq!(scan(bad.as_bytes()), Some("malformed-request"), "{bad:?}");
        }
        let big = format!(
            "GET / HTTP/1.1\r\nA: {}\r\n\r\n",
            "b".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(scan(big.as_bytes()), Some("request-header-too-large"));
    }
}
