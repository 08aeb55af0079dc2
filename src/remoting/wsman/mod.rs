//! WS-Management envelopes: parsing requests (quick-xml, size-bounded) and building responses.
//!
//! Requests are read with a namespace-resolving streaming reader: elements are matched by
//! namespace URI and local name, never by prefix or by searching the text, because clients use
//! different prefixes (`w:`/`wsman:`, `a:`/`wsa:`) for the same headers. Only what the
//! remoting endpoint acts on is kept ([`Request`]); everything else (Locale, SessionId,
//! OperationID, SequenceId, ReplyTo…) is skipped. Depth and size are bounded so a hostile body
//! costs at most one pass over `max_envelope_size` bytes.
//!
//! `Fault` and `fault_response` are used by `errors.rs` for every proxy-made WS-Man fault, so
//! the text PowerShell shows is built in one place.
//!
//! [`peek`] is the same parser stopped at `s:Body`: the one way the rest of the proxy (the
//! listener's logging, audit and `RelatesTo`; `winrm` mode's deadlines) reads a request's
//! Action, MessageID and OperationTimeout.

mod duration;
mod fault;
mod parse;
mod peek;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use duration::{format_duration, parse_duration};
pub use fault::{Fault, FaultCode, SoapCode, codes, fault_response};
pub use parse::parse_request;
pub use peek::{Head, PEEK_LIMIT, peek};
pub use request::{
    Body, CommandLineBody, ParseError, ReceiveBody, Request, SendStream, ShellBody, SignalBody,
};
pub use response::{RESPONSE_OVERHEAD, envelope_head, ok_response, soap_response};

use quick_xml::escape::escape;

/// SOAP 1.2 envelope namespace.
pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing (2004/08).
pub const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// DMTF WS-Management.
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
/// Microsoft WS-Management extensions.
pub const NS_WSMV: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
/// Windows remote shell.
pub const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
/// WS-Transfer.
pub const NS_TRANSFER: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
/// The default namespace of `creationXml`.
pub const NS_POWERSHELL: &str = "http://schemas.microsoft.com/powershell";
/// WSManFault detail namespace.
pub const NS_WSMANFAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";

/// `wsa:Action` of Create.
pub const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
/// `wsa:Action` of Delete.
pub const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
/// `wsa:Action` of Command.
pub const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
/// `wsa:Action` of Send.
pub const ACTION_SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";
/// `wsa:Action` of Receive.
pub const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
/// `wsa:Action` of Signal.
pub const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
/// `wsa:Action` of a fault response.
pub const ACTION_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
/// The anonymous reply address.
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
/// `rsp:CommandState` Done.
pub const COMMAND_STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";
/// `rsp:CommandState` Running.
pub const COMMAND_STATE_RUNNING: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running";
/// Signal: terminate the command (drop it and its output).
pub const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/Terminate";

/// The WS-Man operation of `envelope` (see [`Head::operation`]).
///
/// A thin wrapper kept for the listener, which audits sessions and logs operations in both
/// modes: `peek(envelope).operation()`.
pub fn action_name(envelope: &[u8]) -> &'static str {
    peek(envelope).operation()
}

/// Escapes text for an XML text node or attribute.
pub fn xml_escape(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s)
}
