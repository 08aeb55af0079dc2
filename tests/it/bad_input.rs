//! The bad-input matrix (issue 13): one table of hostile or broken requests, each sent to the
//! real proxy in both modes (`rest`: the proxy's remoting endpoint answers WS-Man; `winrm`: the
//! simulated Exchange does), each asserting the exact status and `X-Exo-Authproxy-Error` code,
//! and that a good session works right after. Malformed HTTP goes over a TLS socket written to
//! directly; WS-Man-level cases go through an open shell. pypsrp runs once per mode at the end.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use exo_authproxy::config::Mode;
use exo_authproxy::remoting::fragment::Fragment;
use exo_authproxy::remoting::message::{Destination, Message, MessageType};
use exo_authproxy::remoting::wsman;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::harness::{PASSWORD, Sandboxed, SandboxedOptions, USER};
use crate::support::python;
use crate::support::wire::{RPID, SHELL_ID, Wire, envelope};

/// What the client saw: the first response's status and code, or nothing (status 0).
#[derive(Debug, Default)]
struct Seen {
    status: u16,
    code: Option<String>,
    body: String,
    /// Complete responses on the connection.
    responses: usize,
}

/// Expected (status, code); status 0: the connection ends without a reply.
type Want = (u16, Option<&'static str>);

const fn want(status: u16, code: &'static str) -> Want {
    (status, Some(code))
}
/// A response the proxy relayed (Exchange's own): no code.
const fn relayed(status: u16) -> Want {
    (status, None)
}
const NO_REPLY: Want = (0, None);

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(format!("{user}:{password}").as_bytes()))
}

/// A Receive for a shell that does not exist: harmless, and answered by whoever speaks WS-Man.
fn receive_unknown() -> String {
    envelope(
        wsman::ACTION_RECEIVE,
        Some("9D1E0F2A-0000-4000-8000-00000000DEAD"),
        "<w:OperationTimeout>PT5S</w:OperationTimeout>",
        "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
    )
}

/// A request head; `headers` are raw lines; Host and Connection: close are added.
fn head(method: &str, target: &str, headers: &[String]) -> Vec<u8> {
    let mut h = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// An authenticated SOAP POST with `extra` header lines and `body` (Content-Length added).
fn post(extra: &[String], body: &[u8]) -> Vec<u8> {
    let mut headers = vec![
        format!("Authorization: {}", basic(USER, PASSWORD)),
        "Content-Type: application/soap+xml;charset=UTF-8".to_owned(),
        format!("Content-Length: {}", body.len()),
    ];
    headers.extend_from_slice(extra);
    let mut out = head("POST", "/powershell-liveid", &headers);
    out.extend_from_slice(body);
    out
}

/// A POST without the default Authorization (the case supplies its own lines).
fn post_with(lines: &[String], body: &[u8]) -> Vec<u8> {
    let mut headers = vec![format!("Content-Length: {}", body.len())];
    headers.extend_from_slice(lines);
    let mut out = head("POST", "/powershell-liveid", &headers);
    out.extend_from_slice(body);
    out
}

fn auth_line(value: &[u8]) -> Vec<u8> {
    [b"Authorization: ".as_slice(), value].concat()
}

/// A POST with one raw (possibly non-UTF-8) Authorization line.
fn post_raw_auth(value: &[u8]) -> Vec<u8> {
    let body = receive_unknown();
    let mut out = format!(
        "POST /powershell-liveid HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend(auth_line(value));
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// How a raw case talks to the listener.
enum Send {
    /// Write the bytes over TLS, read the reply.
    Tls(Vec<u8>),
    /// Write the bytes over TLS, then close our side.
    TlsThenClose(Vec<u8>),
    /// Write the bytes over TLS and keep the connection open; the server's timers decide
    /// (the clock is paused, so no real waiting).
    TlsStall(Vec<u8>),
    /// Write, and hang up without reading the reply.
    TlsHangUp(Vec<u8>),
    /// Write the bytes over plain TCP.
    Tcp(Vec<u8>),
    /// Read until the server closes, counting responses.
    TlsPipeline(Vec<u8>),
}

/// A WS-Man-level case, run in a session whose shell is open.
enum Soap {
    /// POST this envelope.
    Envelope(String),
    /// Send these stdin bytes for the pool (already fragment-encoded).
    PoolSend(Vec<u8>),
    /// Delete the shell twice; the second answer counts.
    DoubleDelete,
}

enum Input {
    Raw(Send),
    Soap(Soap),
}

struct Case {
    name: &'static str,
    input: Input,
    winrm: Want,
    rest: Want,
}

fn both(name: &'static str, input: Input, w: Want) -> Case {
    Case {
        name,
        input,
        winrm: w,
        rest: w,
    }
}

fn raw(send: Send) -> Input {
    Input::Raw(send)
}

/// One pool message (SESSION_CAPABILITY-shaped type with `data`) as fragments of `max` bytes.
fn pool_fragments(object_id: u64, data: &str, max: usize) -> Vec<Vec<u8>> {
    let msg = Message {
        destination: Destination::Server,
        message_type: MessageType::SetMaxRunspaces,
        rpid: uuid::Uuid::parse_str(RPID).unwrap(),
        pid: uuid::Uuid::nil(),
        data: [b"\xEF\xBB\xBF".as_slice(), data.as_bytes()].concat(),
    };
    exo_authproxy::remoting::fragment::fragment(object_id, &msg.encode(), max)
}

fn send_envelope(data: &str) -> String {
    envelope(
        wsman::ACTION_SEND,
        Some(SHELL_ID),
        "",
        &format!("<rsp:Send><rsp:Stream Name=\"stdin\">{data}</rsp:Stream></rsp:Send>"),
    )
}

fn cases() -> Vec<Case> {
    let body = receive_unknown();
    let bodyb = body.as_bytes();
    // What a harmless, well-formed, authenticated request gets: an unknown-shell fault from
    // whoever speaks WS-Man (relayed in winrm mode, the proxy's endpoint in rest mode).
    let passes = |name| Case {
        name,
        input: raw(Send::Tls(Vec::new())),
        winrm: relayed(500),
        rest: want(500, "unknown-shell"),
    };
    let mut c = vec![
        // --- Authorization ---
        both(
            "authorization missing",
            raw(Send::Tls(post_with(
                &["Content-Type: application/soap+xml".into()],
                bodyb,
            ))),
            want(401, "missing-credentials"),
        ),
        both(
            "authorization duplicated",
            raw(Send::Tls(post(
                &[format!("Authorization: {}", basic(USER, PASSWORD))],
                bodyb,
            ))),
            want(401, "malformed-credentials"),
        ),
        both(
            "authorization garbage",
            raw(Send::Tls(post_raw_auth(b"Basic !!!not-base64!!!"))),
            want(401, "malformed-credentials"),
        ),
        both(
            "authorization other scheme",
            raw(Send::Tls(post_raw_auth(b"Bearer eyJhbGciOi.x.y"))),
            want(401, "malformed-credentials"),
        ),
        both(
            "authorization without colon",
            raw(Send::Tls(post_raw_auth(
                format!("Basic {}", b64(b"nocolon")).as_bytes(),
            ))),
            want(401, "malformed-credentials"),
        ),
        both(
            "authorization decodes to non-UTF-8",
            raw(Send::Tls(post_raw_auth(
                format!("Basic {}", b64(b"\xff\xfe:\xc3\x28")).as_bytes(),
            ))),
            want(401, "malformed-credentials"),
        ),
        both(
            "authorization header value not UTF-8",
            raw(Send::Tls(post_raw_auth(b"Basic \xe9\xe9\xe9"))),
            want(401, "malformed-credentials"),
        ),
        both(
            "authorization with a NUL byte on the wire",
            raw(Send::Tls(post_raw_auth(b"Basic ab\0cd"))),
            want(400, "malformed-request"),
        ),
        both(
            "authorization decodes to a NUL in the password",
            raw(Send::Tls(post_raw_auth(
                basic(USER, "pass\0word").as_bytes(),
            ))),
            want(401, "bad-credentials"),
        ),
        both(
            "authorization 100 KB password",
            raw(Send::TlsThenClose(post_raw_auth(
                basic(USER, &"p".repeat(100_000)).as_bytes(),
            ))),
            want(431, "request-header-too-large"),
        ),
        // --- the head ---
        both(
            "huge request line",
            raw(Send::TlsThenClose(head(
                "POST",
                &format!("/powershell-liveid?x={}", "a".repeat(20_000)),
                &[],
            ))),
            want(414, "request-line-too-long"),
        ),
        both(
            "huge header line",
            raw(Send::TlsThenClose(post(
                &[format!("X-Pad: {}", "b".repeat(70_000))],
                bodyb,
            ))),
            want(431, "request-header-too-large"),
        ),
        both(
            "10,000 headers",
            raw(Send::TlsThenClose(post(
                &(0..10_000)
                    .map(|i| format!("X-H{i}: v"))
                    .collect::<Vec<_>>(),
                bodyb,
            ))),
            want(431, "too-many-headers"),
        ),
        both(
            "101 small headers",
            raw(Send::TlsThenClose(post(
                &(0..101).map(|i| format!("X{i}: v")).collect::<Vec<_>>(),
                bodyb,
            ))),
            want(431, "too-many-headers"),
        ),
        both(
            "garbage request line",
            raw(Send::TlsThenClose(b"HELLO WORLD\r\n\r\n".to_vec())),
            want(400, "malformed-request"),
        ),
        both(
            "header without a colon",
            raw(Send::TlsThenClose(post(&["NoColonHere".into()], bodyb))),
            want(400, "malformed-request"),
        ),
        both(
            "slowloris head",
            raw(Send::TlsStall(
                b"POST /powershell-liveid HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec(),
            )),
            NO_REPLY,
        ),
        // --- the body ---
        both(
            "slowloris body",
            raw(Send::TlsStall({
                let mut b = post(&[], bodyb);
                b.truncate(b.len() - bodyb.len() / 2);
                b
            })),
            want(408, "client-body-timeout"),
        ),
        both(
            "Content-Length longer than the body, then EOF",
            raw(Send::TlsThenClose({
                let mut b = post(&[], bodyb);
                b.truncate(b.len() - 10);
                b
            })),
            want(400, "client-body"),
        ),
        Case {
            name: "Content-Length shorter than the body",
            input: raw(Send::Tls(Vec::new())), // built below
            winrm: relayed(500),
            rest: want(500, "unknown-shell"),
        },
        both(
            "truncated chunked body, then EOF",
            raw(Send::TlsThenClose({
                let mut b = head(
                    "POST",
                    "/powershell-liveid",
                    &[
                        format!("Authorization: {}", basic(USER, PASSWORD)),
                        "Content-Type: application/soap+xml".into(),
                        "Transfer-Encoding: chunked".into(),
                    ],
                );
                b.extend_from_slice(b"400\r\n<s:Envelope");
                b
            })),
            want(400, "client-body"),
        ),
        both(
            "body over the limit",
            raw(Send::Tls(post(
                &[],
                &vec![b' '; exo_authproxy::listener::MAX_BODY + 1],
            ))),
            want(413, "request-too-large"),
        ),
        // --- Content-Type ---
        both(
            "Content-Type text/plain",
            raw(Send::Tls({
                let mut b = head(
                    "POST",
                    "/powershell-liveid",
                    &[
                        format!("Authorization: {}", basic(USER, PASSWORD)),
                        "Content-Type: text/plain".into(),
                        format!("Content-Length: {}", bodyb.len()),
                    ],
                );
                b.extend_from_slice(bodyb);
                b
            })),
            want(415, "unsupported-content-type"),
        ),
        both(
            "Content-Type missing",
            raw(Send::Tls(post_with(
                &[format!("Authorization: {}", basic(USER, PASSWORD))],
                bodyb,
            ))),
            want(415, "unsupported-content-type"),
        ),
        Case {
            input: raw(Send::Tls(post_with(
                &[
                    format!("Authorization: {}", basic(USER, PASSWORD)),
                    "Content-Type: APPLICATION/SOAP+XML ; Charset=utf-8".into(),
                ],
                bodyb,
            ))),
            ..passes("Content-Type in upper case with parameters is WS-Man's")
        },
        // --- paths, transport ---
        both(
            "unknown path",
            raw(Send::Tls(head("GET", "/wsman", &[]))),
            want(404, "unknown-path"),
        ),
        both(
            "root path",
            raw(Send::Tls(head("POST", "/", &[]))),
            want(404, "unknown-path"),
        ),
        both(
            "dot-dot path",
            raw(Send::Tls(head(
                "POST",
                "/powershell-liveid/../metrics",
                &[],
            ))),
            want(404, "unknown-path"),
        ),
        both(
            "percent-encoded NUL path",
            raw(Send::Tls(head("POST", "/powershell-liveid%00", &[]))),
            want(404, "unknown-path"),
        ),
        both(
            "plain HTTP on the TLS port",
            raw(Send::Tcp(head("POST", "/powershell-liveid", &[]))),
            want(400, "plaintext-on-tls-port"),
        ),
        both(
            "TLS garbage",
            raw(Send::Tcp(
                [&[0x16u8, 0x03, 0x01, 0x00, 0x10][..], &[0xAB; 16]].concat(),
            )),
            NO_REPLY,
        ),
        both(
            "disconnect mid-request",
            raw(Send::TlsHangUp(
                b"POST /powershell-liveid HTTP/1.1\r\nContent-Le".to_vec(),
            )),
            NO_REPLY,
        ),
        both(
            "disconnect mid-response",
            raw(Send::TlsHangUp(post(&[], bodyb))),
            NO_REPLY,
        ),
        // --- smuggling ---
        both(
            "Content-Length with Transfer-Encoding: the pipelined request is not executed",
            raw(Send::TlsPipeline({
                let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
                let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
                let mut b = format!(
                    "POST /powershell-liveid HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                    basic(USER, PASSWORD),
                    chunked.len() + smuggled.len()
                )
                .into_bytes();
                b.extend_from_slice(chunked.as_bytes());
                b.extend_from_slice(smuggled.as_bytes());
                b
            })),
            // One response (checked in `run_raw`): the Receive's fault.
            (500, None),
        ),
    ];
    // The rest-mode answer to the smuggling case is the endpoint's fault, with its code.
    let last = c.last_mut().unwrap();
    last.rest = want(500, "unknown-shell");
    // Content-Length shorter: the first 10 bytes are the envelope, which does not parse.
    let short = c
        .iter_mut()
        .find(|c| c.name == "Content-Length shorter than the body")
        .unwrap();
    short.input = raw(Send::Tls({
        let mut b = post_with(
            &[
                format!("Authorization: {}", basic(USER, PASSWORD)),
                "Content-Type: application/soap+xml".into(),
            ],
            bodyb,
        );
        let at = b
            .windows(16)
            .position(|w| w == b"Content-Length: ")
            .unwrap();
        let end = at + b[at..].iter().position(|&x| x == b'\r').unwrap();
        b.splice(at..end, b"Content-Length: 10".iter().copied());
        b
    }));
    short.winrm = relayed(500);
    short.rest = want(500, "bad-request-data");
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"] {
        c.push(both(
            method,
            raw(Send::Tls(head(method, "/powershell-liveid", &[]))),
            want(405, "method-not-allowed"),
        ));
    }
    // --- WS-Man level, in an open shell ---
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol4;</s:Body></s:Envelope>"#;
    let deep = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>{}{}</s:Body></s:Envelope>",
        "<a>".repeat(50_000),
        "</a>".repeat(50_000)
    );
    let mut bad_utf8 = receive_unknown().into_bytes();
    let at = bad_utf8.windows(6).position(|w| w == b"stdout").unwrap();
    bad_utf8[at] = 0xC3;
    bad_utf8[at + 1] = 0x28;
    let doctype = format!(
        "<!DOCTYPE x SYSTEM \"file:///etc/passwd\">{}",
        receive_unknown()
    );
    let soap = |name, s: Soap, winrm: Want, rest: Want| Case {
        name,
        input: Input::Soap(s),
        winrm,
        rest,
    };
    let env = |s: String| Soap::Envelope(s);
    let cyc = r#"<Obj RefId="0"><MS><Obj N="Self" RefId="1"><MS><Ref N="Loop" RefId="0" /></MS></Obj><Ref N="Again" RefId="1" /></MS></Obj>"#;
    let giant = format!(
        "<Obj RefId=\"0\"><MS><S N=\"Big\">{}</S></MS></Obj>",
        "x".repeat(1_000_000)
    );
    let unknown = r#"<Obj RefId="0"><TN RefId="0"><T>Evil.Type</T></TN><Evil N="x"><Deeper/></Evil><Unknown N="y">1</Unknown></Obj>"#;
    let frags = |data: &str, max| pool_fragments(1000, data, max);
    let two = frags(
        &"<Obj RefId=\"0\"><MS><S N=\"A\">aaaa</S></MS></Obj>".repeat(8),
        64,
    );
    let out_of_order: Vec<u8> = two.iter().rev().flatten().copied().collect();
    let duplicated: Vec<u8> = [two[0].clone(), two[0].clone()].concat();
    let truncated = {
        let mut one = frags("<Obj RefId=\"0\"><MS /></Obj>", 32 * 1024).concat();
        // The header says the blob is longer than what follows.
        one.truncate(one.len() - 5);
        one
    };
    let (bad_start, _) = Fragment::parse(&two[1])
        .map(|(f, r)| (f.fragment_id, r))
        .unwrap();
    assert_eq!(bad_start, 1, "two fragments at least");
    c.push(Case {
        name: "invalid UTF-8 in the envelope",
        input: raw(Send::Tls(post(&[], &bad_utf8))),
        winrm: relayed(500),
        rest: want(500, "bad-request-data"),
    });
    c.extend([
        soap("billion laughs", env(bomb.into()), relayed(500), want(500, "bad-request-data")),
        soap("deep nesting", env(deep), relayed(500), want(500, "bad-request-data")),
        soap("DOCTYPE", env(doctype), relayed(500), want(500, "bad-request-data")),
        soap(
            "CLIXML cycle via RefId",
            Soap::PoolSend(frags(cyc, 32 * 1024).concat()),
            relayed(500),
            want(500, "bad-request-data"),
        ),
        soap(
            "CLIXML giant string",
            Soap::PoolSend(frags(&giant, 32 * 1024).concat()),
            relayed(500),
            // 1.3 MB of envelope against the shell's MaxEnvelopeSize of 512 000.
            want(500, "envelope-too-large"),
        ),
        soap(
            "CLIXML unknown types",
            Soap::PoolSend(frags(unknown, 32 * 1024).concat()),
            relayed(200),
            (200, None),
        ),
        soap(
            "bad base64 in Send",
            env(send_envelope("!!!not base64%%%")),
            relayed(500),
            want(500, "bad-request-data"),
        ),
        soap(
            "fragments out of order",
            Soap::PoolSend(out_of_order),
            relayed(500),
            want(500, "bad-request-data"),
        ),
        soap(
            "fragment duplicated",
            Soap::PoolSend(duplicated),
            relayed(500),
            want(500, "bad-request-data"),
        ),
        soap(
            "fragment truncated",
            Soap::PoolSend(truncated),
            relayed(500),
            want(500, "bad-request-data"),
        ),
        soap(
            "unknown shell id",
            env(receive_unknown()),
            relayed(500),
            want(500, "unknown-shell"),
        ),
        soap(
            "unknown command id",
            env(envelope(
                wsman::ACTION_RECEIVE,
                Some(SHELL_ID),
                "<w:OperationTimeout>PT1S</w:OperationTimeout>",
                "<rsp:Receive><rsp:DesiredStream CommandId=\"0BADC0DE-0000-4000-8000-000000000000\">stdout</rsp:DesiredStream></rsp:Receive>",
            )),
            relayed(500),
            want(500, "unknown-command"),
        ),
        soap("double Delete", Soap::DoubleDelete, relayed(500), want(500, "unknown-shell")),
        soap(
            "absurd MaxEnvelopeSize",
            env(receive_unknown().replace(
                "<w:MaxEnvelopeSize s:mustUnderstand=\"true\">512000</w:MaxEnvelopeSize>",
                "<w:MaxEnvelopeSize s:mustUnderstand=\"true\">99999999999999999999</w:MaxEnvelopeSize>",
            )),
            relayed(500),
            // Tolerated (clamped); the Receive then finds no such shell.
            want(500, "unknown-shell"),
        ),
        soap(
            "absurd OperationTimeout",
            env(envelope(
                wsman::ACTION_RECEIVE,
                Some(SHELL_ID),
                "<w:OperationTimeout>PT99999999999999999S</w:OperationTimeout>",
                "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
            )),
            relayed(500),
            want(500, "operation-timeout"),
        ),
    ]);
    c
}

async fn tls_connect(h: &Sandboxed) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut cfg = exo_authproxy::forward::client::client_tls(Some(&h.listener_cert)).unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(h.proxy).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector
        .connect(name, tcp)
        .await
        .expect("TLS to the listener")
}

/// Parses what came back: the first response's status, code, body; how many responses.
fn parse(bytes: &[u8]) -> Seen {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut seen = Seen {
        responses: text.matches("HTTP/1.1 ").count(),
        ..Seen::default()
    };
    let Some(end) = text.find("\r\n\r\n") else {
        return seen;
    };
    let mut lines = text[..end].lines();
    seen.status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("x-exo-authproxy-error") {
                seen.code = Some(v.trim().to_owned());
            }
        }
    }
    seen.body = text[end + 4..].chars().take(400).collect();
    seen
}

/// Reads until EOF, or until one complete response with a Content-Length when `first_only`.
async fn read_reply<R: tokio::io::AsyncRead + Unpin>(rd: &mut R, first_only: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if first_only && complete(&out) {
            return out;
        }
    }
}

fn complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let len = text[..end].lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    len.is_some_and(|len| out.len() >= end + 4 + len)
}

async fn run_raw(h: &Sandboxed, send: &Send) -> Seen {
    match send {
        Send::Tcp(bytes) => {
            let mut tcp = TcpStream::connect(h.proxy).await.unwrap();
            let _ = tcp.write_all(bytes).await;
            parse(&read_reply(&mut tcp, false).await)
        }
        Send::TlsHangUp(bytes) => {
            let mut s = tls_connect(h).await;
            let _ = s.write_all(bytes).await;
            let _ = s.flush().await;
            drop(s);
            Seen::default()
        }
        Send::TlsStall(bytes) => {
            let mut s = tls_connect(h).await;
            s.write_all(bytes).await.unwrap();
            s.flush().await.unwrap();
            // The server's timers decide; the paused clock jumps to them.
            tokio::time::pause();
            let out = read_reply(&mut s, true).await;
            tokio::time::resume();
            parse(&out)
        }
        Send::Tls(bytes) | Send::TlsThenClose(bytes) | Send::TlsPipeline(bytes) => {
            let s = tls_connect(h).await;
            let (mut rd, mut wr) = tokio::io::split(s);
            let bytes = bytes.clone();
            let close = matches!(send, Send::TlsThenClose(_));
            // The writer runs beside the reader: the server may answer (and close) before
            // it has read everything.
            let writer = tokio::spawn(async move {
                let _ = wr.write_all(&bytes).await;
                let _ = wr.flush().await;
                if close {
                    let _ = wr.shutdown().await;
                }
                wr
            });
            let first_only = !matches!(send, Send::TlsPipeline(_));
            let out =
                tokio::time::timeout(Duration::from_secs(60), read_reply(&mut rd, first_only))
                    .await
                    .expect("a reply or a close");
            let _ = writer.await;
            parse(&out)
        }
    }
}

async fn delete_shell(w: &Wire<'_>) -> crate::support::wire::Reply {
    w.post(envelope(wsman::ACTION_DELETE, Some(SHELL_ID), "", ""))
        .await
}

async fn run_soap(h: &Sandboxed, soap: &Soap) -> Seen {
    let (w, _) = Wire::open(h, false).await;
    let r = match soap {
        Soap::Envelope(xml) => w.post(xml.clone()).await,
        Soap::PoolSend(data) => w.send_raw(None, data).await,
        Soap::DoubleDelete => {
            assert_eq!(delete_shell(&w).await.status, 200);
            delete_shell(&w).await
        }
    };
    let _ = delete_shell(&w).await;
    Seen {
        status: r.status,
        code: r.proxy_error.clone(),
        body: r.body.chars().take(400).collect(),
        responses: 1,
    }
}

/// A good session right after: a shell opens (the pool reaches Opened) and closes.
async fn good_session(h: &Sandboxed, after: &str) {
    let (w, msgs) = Wire::open(h, false).await;
    assert_eq!(msgs.len(), 3, "after {after}: the pool opens");
    let r = delete_shell(&w).await;
    assert_eq!(r.status, 200, "after {after}: {r:?}");
}

async fn matrix(mode: Mode) {
    let h = Sandboxed::start(SandboxedOptions::simulated(mode, 3)).await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let seen = match &case.input {
            Input::Raw(send) => run_raw(&h, send).await,
            Input::Soap(soap) => run_soap(&h, soap).await,
        };
        let wanted = match mode {
            Mode::Winrm => case.winrm,
            _ => case.rest,
        };
        let got = (seen.status, seen.code.as_deref());
        if got != wanted {
            failures.push(format!(
                "{mode:?} {:?}: want {wanted:?}, got {got:?}: {}",
                case.name, seen.body
            ));
        }
        // A 5xx the proxy made up must not be for a client's HTTP mistake: only WS-Man
        // faults (the protocol's way to refuse an envelope) are 500.
        if seen.status >= 500 {
            assert!(
                matches!(case.input, Input::Soap(_)) || seen.body.contains("Envelope"),
                "{mode:?} {}: a 5xx that is not a WS-Man fault: {}",
                case.name,
                seen.body
            );
        }
        if matches!(case.input, Input::Raw(Send::TlsPipeline(_))) {
            assert_eq!(
                seen.responses, 1,
                "{mode:?} {}: the smuggled request ran",
                case.name
            );
            assert!(!seen.body.contains("smuggled"));
        }
        good_session(&h, case.name).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The real client, once, at the end.
    let mut env = h.pypsrp_env("");
    env.push(("MAILBOXES".into(), "3".into()));
    let out = python::run_script("proxy_session.py", env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"ok\": true"),
        "pypsrp after the matrix ({mode:?}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn bad_input_matrix_rest_mode_issue_13() {
    matrix(Mode::Rest).await;
}

#[tokio::test]
async fn bad_input_matrix_winrm_mode_issue_13() {
    matrix(Mode::Winrm).await;
}
