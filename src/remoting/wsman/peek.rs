//! [`peek`]: the SOAP header of an envelope, for code that routes, logs or audits a request
//! without acting on its body (the listener in both modes; `winrm` mode relays the body as is).
//!
//! It is the request parser itself ([`super::parse_request`]'s reader, stopped at `s:Body`),
//! not a text search: headers are matched by namespace and local name, so
//! `<a:Action s:mustUnderstand="true">` (pypsrp, Windows PowerShell), `<wsa:Action>` and a
//! default-namespace `<Action xmlns=…>` all read the same, and a `MessageID` inside the body
//! is never mistaken for the header. At most [`PEEK_LIMIT`] bytes are read: the header of a
//! real envelope is 2–3 KiB, and a hostile one costs one pass over that much.

use std::time::Duration;

use super::parse::{Scope, read};
use super::{
    ACTION_COMMAND, ACTION_CREATE, ACTION_DELETE, ACTION_RECEIVE, ACTION_SEND, ACTION_SIGNAL,
    Request,
};

/// Bytes of an envelope [`peek`] reads: far above any real SOAP header.
pub const PEEK_LIMIT: usize = 64 * 1024;

/// What the SOAP header of a request says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// `wsa:Action`, verbatim (a URI).
    pub action: Option<String>,
    /// `wsa:MessageID`, verbatim (echoed as `RelatesTo`).
    pub message_id: Option<String>,
    /// `wsman:OperationTimeout`.
    pub operation_timeout: Option<Duration>,
    /// `wsman:ResourceURI`.
    pub resource_uri: Option<String>,
    /// `wsman:SelectorSet/Selector[@Name=ShellId]`.
    pub shell_id: Option<String>,
    /// `wsman:MaxEnvelopeSize`.
    pub max_envelope_size: Option<usize>,
}

impl Head {
    /// The WS-Man operation (`Create`, `Delete`, `Command`, `Receive`, `Send`, `Signal`,
    /// `Enumerate`, `Get`, `Put`, `Identify`), or `-` when the action is missing or unknown.
    pub fn operation(&self) -> &'static str {
        const OTHERS: [(&str, &str); 5] = [
            (
                "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate",
                "Enumerate",
            ),
            (
                "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull",
                "Pull",
            ),
            ("http://schemas.xmlsoap.org/ws/2004/09/transfer/Get", "Get"),
            ("http://schemas.xmlsoap.org/ws/2004/09/transfer/Put", "Put"),
            (
                "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd/Identify",
                "Identify",
            ),
        ];
        let known = [
            (ACTION_CREATE, "Create"),
            (ACTION_DELETE, "Delete"),
            (ACTION_COMMAND, "Command"),
            (ACTION_SEND, "Send"),
            (ACTION_RECEIVE, "Receive"),
            (ACTION_SIGNAL, "Signal"),
        ];
        let Some(action) = self.action.as_deref() else {
            return "-";
        };
        known
            .iter()
            .chain(OTHERS.iter())
            .find(|(uri, _)| uri.eq_ignore_ascii_case(action))
            .map_or("-", |(_, name)| name)
    }
}

/// Reads the SOAP header of `envelope` (at most [`PEEK_LIMIT`] bytes). Never fails: what
/// cannot be read is `None` (a malformed envelope yields whatever came before the error).
pub fn peek(envelope: &[u8]) -> Head {
    let mut req = Request::default();
    let _ = read(
        &envelope[..envelope.len().min(PEEK_LIMIT)],
        Scope::Header,
        &mut req,
    );
    Head {
        action: (!req.action.is_empty()).then_some(req.action),
        message_id: req.message_id.filter(|m| !m.is_empty() && m.len() < 200),
        operation_timeout: req.operation_timeout,
        resource_uri: req.resource_uri,
        shell_id: req.shell_id,
        max_envelope_size: req.max_envelope_size,
    }
}
