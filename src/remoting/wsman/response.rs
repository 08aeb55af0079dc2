//! Response envelopes: the SOAP header every reply shares and the 200 that wraps a body.
//!
//! Separate from parsing because responses are written as text with every namespace declared
//! once, while requests are read with a namespace-resolving reader.

use std::fmt::Write as _;

use bytes::Bytes;
use quick_xml::escape::escape;

use super::{ANONYMOUS, NS_ADDRESSING, NS_SHELL, NS_SOAP, NS_TRANSFER, NS_WSMAN, NS_WSMV};

/// A SOAP response with the WS-Man content type.
pub fn soap_response(status: http::StatusCode, body: String) -> http::Response<Bytes> {
    let mut rsp = http::Response::new(Bytes::from(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
    );
    rsp
}

/// `<s:Envelope …><s:Header>…</s:Header>` of a response, all namespaces declared.
pub fn envelope_head(action: &str, relates_to: Option<&str>) -> String {
    let mut s = String::with_capacity(1024);
    let _ = write!(
        s,
        "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" \
         xmlns:x=\"{NS_TRANSFER}\" xmlns:w=\"{NS_WSMAN}\" xmlns:rsp=\"{NS_SHELL}\" \
         xmlns:p=\"{NS_WSMV}\"><s:Header><a:Action>{}</a:Action>\
         <a:MessageID>uuid:{}</a:MessageID><a:To>{ANONYMOUS}</a:To>",
        escape(action),
        uuid::Uuid::new_v4().to_string().to_uppercase(),
    );
    if let Some(id) = relates_to {
        let _ = write!(s, "<a:RelatesTo>{}</a:RelatesTo>", escape(id));
    }
    s.push_str("</s:Header>");
    s
}

/// A 200 response: `action` + `Response`, `body_inner` inside `<s:Body>`.
pub fn ok_response(
    request_action: &str,
    relates_to: Option<&str>,
    body_inner: &str,
) -> http::Response<Bytes> {
    let mut s = envelope_head(&format!("{request_action}Response"), relates_to);
    s.reserve(body_inner.len() + 32);
    s.push_str("<s:Body>");
    s.push_str(body_inner);
    s.push_str("</s:Body></s:Envelope>");
    soap_response(http::StatusCode::OK, s)
}

/// Bytes a response envelope costs besides its body content (head + body tags), for sizing.
pub const RESPONSE_OVERHEAD: usize = 1200;
