//! WS-Management envelopes: parsing requests (quick-xml, size-bounded) and building responses.
//!
//! SKELETON (issue #4). `Fault` and `fault_response` are used by `errors.rs` for every
//! proxy-made WS-Man fault, so the text PowerShell shows is built in one place.

use bytes::Bytes;

/// A WS-Man fault: what a WinRM client shows the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `s:Sender` (the client's request is wrong) or `s:Receiver` (we could not do it).
    pub code: FaultCode,
    /// WS-Management subcode, e.g. `w:InvalidSelectors`, `w:AccessDenied`, `w:InternalError`.
    pub subcode: &'static str,
    /// WSManFault `Code` attribute (e.g. 2150858843 unknown shell, 2150858793 timeout).
    pub wsman_code: u32,
    /// The text the user sees.
    pub message: String,
}

/// SOAP fault code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// `s:Sender`
    Sender,
    /// `s:Receiver`
    Receiver,
}

/// The fault as an HTTP 500 `application/soap+xml;charset=UTF-8` response. `relates_to` is the
/// request's `wsa:MessageID` when known.
pub fn fault_response(fault: &Fault, relates_to: Option<&str>) -> http::Response<Bytes> {
    let _ = (fault, relates_to);
    todo!("issue #4")
}
