//! WS-Man faults: the [`Fault`] value, Windows' WSManFault codes and the HTTP 500 that carries it.
//!
//! Separate because every fault the proxy makes (through `errors.rs`) is built here, so the
//! text PowerShell shows has one source.

use std::fmt::Write as _;

use bytes::Bytes;
use quick_xml::escape::escape;

use super::{ACTION_FAULT, NS_WSMANFAULT, envelope_head, soap_response};

/// A WS-Man fault: what a WinRM client shows the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `s:Sender` (the client's request is wrong) or `s:Receiver` (we could not do it).
    pub code: SoapCode,
    /// WS-Management subcode, e.g. `w:InvalidSelectors`, `w:AccessDenied`, `w:InternalError`.
    pub subcode: &'static str,
    /// WSManFault `Code` attribute (e.g. 2150858843 unknown shell, 2150858793 timeout).
    pub wsman_code: u32,
    /// The text the user sees.
    pub message: String,
    /// The proxy's code for it (the response carries it as an extension; see [`FaultCode`]).
    pub proxy_code: FaultCode,
}

/// SOAP fault code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapCode {
    /// `s:Sender`
    Sender,
    /// `s:Receiver`
    Receiver,
}

/// The proxy's own code for a fault it made, as a response extension: the listener copies it
/// into `X-Exo-Authproxy-Error` and counts it, so a fault the endpoint invented is never
/// mistaken for Exchange's answer. Stable kebab-case values (`shell-quota`, `unknown-shell`,
/// `shell-wrong-tenant`, `memory-budget`, `bad-request-data`, …): scripts and dashboards
/// match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultCode(pub &'static str);

/// WSManFault codes used by the endpoint (values from Windows' `wsmerror.h`).
pub mod codes {
    /// ERROR_WSMAN_OPERATION_TIMEDOUT (0x80338029): a Receive had nothing to return in time.
    pub const OPERATION_TIMEDOUT: u32 = 2_150_858_793;
    /// ERROR_WSMAN_INVALID_SELECTORS (0x8033805B): unknown or closed ShellId.
    pub const INVALID_SELECTORS: u32 = 2_150_858_843;
    /// ERROR_WSMAN_ACTION_NOT_SUPPORTED.
    pub const ACTION_NOT_SUPPORTED: u32 = 2_150_858_771;
    /// ERROR_WSMAN_DESTINATION_UNREACHABLE: unknown resource URI / configuration name.
    pub const DESTINATION_UNREACHABLE: u32 = 2_150_858_770;
    /// ERROR_WSMAN_ENCODING_LIMIT: the request envelope is larger than accepted.
    pub const ENCODING_LIMIT: u32 = 2_150_858_805;
    /// ERROR_WSMAN_INVALID_XML: the body is not the XML we expected.
    pub const INVALID_XML: u32 = 2_150_858_819;
    /// ERROR_WSMAN_QUOTA_MAX_SHELLS: too many shells for this user.
    pub const QUOTA_MAX_SHELLS: u32 = 2_150_859_173;
    /// ERROR_WSMAN_QUOTA_MAX_OPERATIONS: too many commands in one shell.
    pub const QUOTA_MAX_OPERATIONS: u32 = 2_150_859_174;
    /// ERROR_WSMAN_ALREADY_EXISTS: a ShellId/CommandId already in use.
    pub const ALREADY_EXISTS: u32 = 2_150_858_803;
    /// ERROR_WSMAN_UNSUPPORTED_FEATURE: an option we cannot honour (mustUnderstand).
    pub const UNSUPPORTED_FEATURE: u32 = 2_150_858_818;
    /// ERROR_ACCESS_DENIED (5): what WinRM answers a request it may not serve for this user.
    pub const ACCESS_DENIED: u32 = 5;
}

impl FaultCode {
    /// The code a fault gets from its WSManFault code unless the endpoint names a more
    /// specific one ([`Fault::with_code`]).
    pub fn of_wsman(wsman_code: u32) -> Self {
        Self(match wsman_code {
            codes::OPERATION_TIMEDOUT => "operation-timeout",
            codes::INVALID_SELECTORS => "unknown-shell",
            codes::ACTION_NOT_SUPPORTED => "action-not-supported",
            codes::DESTINATION_UNREACHABLE => "unknown-configuration",
            codes::ENCODING_LIMIT => "envelope-too-large",
            codes::INVALID_XML => "bad-request-data",
            codes::QUOTA_MAX_SHELLS => "shell-quota",
            codes::QUOTA_MAX_OPERATIONS => "command-quota",
            codes::ALREADY_EXISTS => "already-exists",
            codes::UNSUPPORTED_FEATURE => "unsupported-feature",
            codes::ACCESS_DENIED => "access-denied",
            _ => "remoting-fault",
        })
    }
}

impl Fault {
    /// A `s:Sender` fault.
    pub fn sender(subcode: &'static str, wsman_code: u32, message: impl Into<String>) -> Self {
        Self {
            code: SoapCode::Sender,
            subcode,
            wsman_code,
            message: message.into(),
            proxy_code: FaultCode::of_wsman(wsman_code),
        }
    }

    /// The same fault with a more specific proxy code.
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.proxy_code = FaultCode(code);
        self
    }

    /// A `s:Receiver` fault.
    pub fn receiver(subcode: &'static str, wsman_code: u32, message: impl Into<String>) -> Self {
        Self {
            code: SoapCode::Receiver,
            subcode,
            wsman_code,
            message: message.into(),
            proxy_code: FaultCode::of_wsman(wsman_code),
        }
    }

    /// The Receive long-poll expired with nothing to say; clients re-poll on this.
    pub fn timed_out() -> Self {
        Self::receiver(
            "w:TimedOut",
            codes::OPERATION_TIMEDOUT,
            "The WS-Management service cannot complete the operation within the time specified \
             in OperationTimeout.",
        )
    }

    /// Unknown (or someone else's, or closed) shell.
    pub fn unknown_shell(shell_id: &str) -> Self {
        Self::sender(
            "w:InvalidSelectors",
            codes::INVALID_SELECTORS,
            format!(
                "The WS-Management service cannot process the request because the request \
                 contained invalid selectors for the resource: shell {shell_id} does not exist \
                 (it was closed, timed out after being idle, or belongs to another user). \
                 Create a new session with New-PSSession."
            ),
        )
    }
}

/// The fault as an HTTP 500 `application/soap+xml;charset=UTF-8` response, carrying its
/// [`FaultCode`] as a response extension. `relates_to` is the request's `wsa:MessageID` when
/// known.
pub fn fault_response(fault: &Fault, relates_to: Option<&str>) -> http::Response<Bytes> {
    let code = match fault.code {
        SoapCode::Sender => "s:Sender",
        SoapCode::Receiver => "s:Receiver",
    };
    let msg = escape(fault.message.as_str());
    let mut body = String::with_capacity(1024 + 2 * msg.len());
    body.push_str(&envelope_head(ACTION_FAULT, relates_to));
    let _ = write!(
        body,
        "<s:Body><s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{sub}</s:Value>\
         </s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{msg}</s:Text></s:Reason>\
         <s:Detail><f:WSManFault xmlns:f=\"{NS_WSMANFAULT}\" Code=\"{wc}\" Machine=\"exo-authproxy\">\
         <f:Message>{msg}</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>",
        sub = escape(fault.subcode),
        wc = fault.wsman_code,
    );
    let mut rsp = soap_response(http::StatusCode::INTERNAL_SERVER_ERROR, body);
    rsp.extensions_mut().insert(fault.proxy_code);
    rsp
}
