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

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use quick_xml::NsReader;
use quick_xml::escape::escape;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

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

/// Deepest element nesting accepted in an envelope (real ones are < 10 deep).
const MAX_DEPTH: usize = 32;

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
}

impl Fault {
    /// A `s:Sender` fault.
    pub fn sender(subcode: &'static str, wsman_code: u32, message: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Sender,
            subcode,
            wsman_code,
            message: message.into(),
        }
    }

    /// A `s:Receiver` fault.
    pub fn receiver(subcode: &'static str, wsman_code: u32, message: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Receiver,
            subcode,
            wsman_code,
            message: message.into(),
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

/// The fault as an HTTP 500 `application/soap+xml;charset=UTF-8` response. `relates_to` is the
/// request's `wsa:MessageID` when known.
pub fn fault_response(fault: &Fault, relates_to: Option<&str>) -> http::Response<Bytes> {
    let code = match fault.code {
        FaultCode::Sender => "s:Sender",
        FaultCode::Receiver => "s:Receiver",
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
    soap_response(http::StatusCode::INTERNAL_SERVER_ERROR, body)
}

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

/// What one request asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// `wsa:Action`.
    pub action: String,
    /// `wsa:To`.
    pub to: Option<String>,
    /// `wsman:ResourceURI`.
    pub resource_uri: Option<String>,
    /// `wsa:MessageID`, verbatim (echoed as RelatesTo).
    pub message_id: Option<String>,
    /// `wsa:ReplyTo/wsa:Address`.
    pub reply_to: Option<String>,
    /// `wsman:MaxEnvelopeSize`: bound of our response envelope.
    pub max_envelope_size: Option<usize>,
    /// `wsman:OperationTimeout`.
    pub operation_timeout: Option<Duration>,
    /// `wsman:SelectorSet/Selector[@Name=ShellId]`.
    pub shell_id: Option<String>,
    /// `wsman:OptionSet/Option` (name, value), in order.
    pub options: Vec<(String, String)>,
    /// `rsp:CompressionType` (e.g. `xpress`).
    pub compression_type: Option<String>,
    /// The body.
    pub body: Body,
}

/// The recognised body of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Body {
    /// Empty (Delete) or not one we read.
    #[default]
    Empty,
    /// `rsp:Shell` (Create).
    Shell(ShellBody),
    /// `rsp:CommandLine` (Command).
    CommandLine(CommandLineBody),
    /// `rsp:Send`.
    Send(Vec<SendStream>),
    /// `rsp:Receive`.
    Receive(ReceiveBody),
    /// `rsp:Signal`.
    Signal(SignalBody),
    /// Something else (element namespace and local name), e.g. `rsp:Disconnect`.
    Other(String),
}

/// `rsp:Shell` of a Create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShellBody {
    /// `ShellId` attribute (client-chosen).
    pub shell_id: Option<String>,
    /// `Name` attribute.
    pub name: Option<String>,
    /// `rsp:InputStreams`.
    pub input_streams: Option<String>,
    /// `rsp:OutputStreams`.
    pub output_streams: Option<String>,
    /// `rsp:IdleTimeOut`.
    pub idle_timeout: Option<Duration>,
    /// `creationXml` (base64 text).
    pub creation_xml: Option<String>,
}

/// `rsp:CommandLine` of a Command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandLineBody {
    /// `CommandId` attribute.
    pub command_id: Option<String>,
    /// `rsp:Command` text (ignored for PSRP).
    pub command: Option<String>,
    /// `rsp:Arguments` texts (base64), in order.
    pub arguments: Vec<String>,
}

/// One `rsp:Send/rsp:Stream`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendStream {
    /// `Name` (`stdin`, `pr`).
    pub name: String,
    /// `CommandId`, absent for pool-level data.
    pub command_id: Option<String>,
    /// `End="true"`.
    pub end: bool,
    /// base64 text.
    pub data: String,
}

/// `rsp:Receive`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveBody {
    /// `rsp:DesiredStream` text (`stdout`).
    pub desired_stream: Option<String>,
    /// `CommandId` attribute of DesiredStream, absent for the pool.
    pub command_id: Option<String>,
}

/// `rsp:Signal`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalBody {
    /// `CommandId` attribute.
    pub command_id: Option<String>,
    /// `rsp:Code`.
    pub code: String,
}

/// Why a request envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Larger than allowed.
    #[error(
        "the request envelope is {size} bytes, more than the {limit} bytes this endpoint accepts; lower the client's data per request"
    )]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not well-formed XML or not UTF-8.
    #[error("the request is not a well-formed SOAP envelope: {0}")]
    Malformed(String),
    /// Nested deeper than any real request.
    #[error("the request envelope nests elements more than {MAX_DEPTH} deep")]
    TooDeep,
    /// No `s:Envelope` root.
    #[error("the request is XML but not a SOAP 1.2 envelope (root element {0})")]
    NotEnvelope(String),
    /// No `wsa:Action` header.
    #[error("the request has no wsa:Action header; send a WS-Management request")]
    NoAction,
}

impl ParseError {
    /// The WS-Man fault for this error.
    pub fn to_fault(&self) -> Fault {
        match self {
            Self::TooLarge { .. } => {
                Fault::sender("w:EncodingLimit", codes::ENCODING_LIMIT, self.to_string())
            }
            _ => Fault::sender(
                "w:SchemaValidationError",
                codes::INVALID_XML,
                self.to_string(),
            ),
        }
    }
}

/// The WS-Man operation of `envelope` (`Create`, `Delete`, `Command`, `Receive`, `Send`,
/// `Signal`, `Enumerate`, or `-`), read from the `Action` header without parsing the message:
/// the listener audits sessions and logs operations in both modes, and in `winrm` mode it
/// does not parse what it relays.
pub fn action_name(envelope: &[u8]) -> &'static str {
    const KNOWN: [&str; 7] = [
        "Create",
        "Delete",
        "Command",
        "Receive",
        "Send",
        "Signal",
        "Enumerate",
    ];
    let head = &envelope[..envelope.len().min(4096)];
    let Some(at) = head.windows(7).position(|w| w == b"Action>") else {
        return "-";
    };
    let rest = &head[at + 7..];
    let end = rest.iter().position(|b| *b == b'<').unwrap_or(rest.len());
    let uri = std::str::from_utf8(&rest[..end]).unwrap_or("");
    let last = uri.rsplit('/').next().unwrap_or("");
    KNOWN.iter().find(|k| **k == last).copied().unwrap_or("-")
}

/// Parses an xs:duration such as `PT20S`, `PT180.000S`, `P0DT0H3M0S`. Years/months are refused.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut secs = 0f64;
    let mut parse_part = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let mult = units.iter().find(|(u, _)| *u == c)?.1;
                let n: f64 = num.parse().ok()?;
                secs += n * mult;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    parse_part(date, &[('D', 86_400.0)])?;
    parse_part(time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// Formats a duration as `PT<secs>.<millis>S`.
pub fn format_duration(d: Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    None,
    Action,
    To,
    ResourceUri,
    MessageId,
    ReplyToAddress,
    MaxEnvelopeSize,
    OperationTimeout,
    ShellSelector,
    Option,
    CompressionType,
    InputStreams,
    OutputStreams,
    IdleTimeOut,
    CreationXml,
    Command,
    Arguments,
    SendStream,
    DesiredStream,
    SignalCode,
}

fn ns_of<'a>(r: &'a ResolveResult<'_>) -> &'a [u8] {
    match r {
        ResolveResult::Bound(ns) => ns.as_ref(),
        _ => b"",
    }
}

fn attr(
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'_>,
    name: &str,
) -> Result<Option<String>, ParseError> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|e| ParseError::Malformed(e.to_string()))?;
        let (ns, local) = reader.resolve_attribute(a.key);
        let unprefixed_or_ns =
            matches!(ns, ResolveResult::Unbound) || ns_of(&ns) == NS_SHELL.as_bytes();
        if local.as_ref() == name.as_bytes() && unprefixed_or_ns {
            let v = a
                .unescape_value()
                .map_err(|e| ParseError::Malformed(e.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Parses a request envelope (`body` already read by the HTTP layer), refusing more than
/// `limit` bytes.
///
/// # Errors
/// [`ParseError`] for anything that is not a WS-Man request we can read.
pub fn parse_request(body: &[u8], limit: usize) -> Result<Request, ParseError> {
    if body.len() > limit {
        return Err(ParseError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;

    let mut req = Request::default();
    // Stack of (namespace, local name) of open elements.
    let mut stack: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(16);
    let mut leaf = Leaf::None;
    let mut text = String::new();
    let mut option_name = String::new();
    let mut selector_is_shell = false;
    let mut saw_envelope = false;
    let mut body_kind_set = false;

    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| ParseError::Malformed(format!("{e} (near byte {position})")))?;
        let ns = ns_of(&resolved).to_vec();
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let local = e.local_name().as_ref().to_vec();
                if stack.is_empty() {
                    if ns != NS_SOAP.as_bytes() || local != b"Envelope" {
                        return Err(ParseError::NotEnvelope(
                            String::from_utf8_lossy(&local).into_owned(),
                        ));
                    }
                    saw_envelope = true;
                }
                let depth = stack.len();
                if depth >= MAX_DEPTH {
                    return Err(ParseError::TooDeep);
                }
                let in_header =
                    depth >= 2 && stack[1].1 == b"Header" && stack[1].0 == NS_SOAP.as_bytes();
                let in_body =
                    depth >= 2 && stack[1].1 == b"Body" && stack[1].0 == NS_SOAP.as_bytes();
                leaf = Leaf::None;
                text.clear();
                let nsb = ns.as_slice();
                if in_header {
                    if depth == 2 {
                        leaf = match (nsb, local.as_slice()) {
                            (n, b"Action") if n == NS_ADDRESSING.as_bytes() => Leaf::Action,
                            (n, b"To") if n == NS_ADDRESSING.as_bytes() => Leaf::To,
                            (n, b"MessageID") if n == NS_ADDRESSING.as_bytes() => Leaf::MessageId,
                            (n, b"ResourceURI") if n == NS_WSMAN.as_bytes() => Leaf::ResourceUri,
                            (n, b"MaxEnvelopeSize") if n == NS_WSMAN.as_bytes() => {
                                Leaf::MaxEnvelopeSize
                            }
                            (n, b"OperationTimeout") if n == NS_WSMAN.as_bytes() => {
                                Leaf::OperationTimeout
                            }
                            (n, b"CompressionType") if n == NS_SHELL.as_bytes() => {
                                Leaf::CompressionType
                            }
                            _ => Leaf::None,
                        };
                    } else if depth == 3 {
                        let parent = &stack[2];
                        if parent.0 == NS_ADDRESSING.as_bytes()
                            && parent.1 == b"ReplyTo"
                            && local == b"Address"
                        {
                            leaf = Leaf::ReplyToAddress;
                        } else if parent.0 == NS_WSMAN.as_bytes()
                            && parent.1 == b"SelectorSet"
                            && local == b"Selector"
                        {
                            selector_is_shell =
                                attr(&reader, e, "Name")?.as_deref() == Some("ShellId");
                            leaf = Leaf::ShellSelector;
                        } else if parent.0 == NS_WSMAN.as_bytes()
                            && parent.1 == b"OptionSet"
                            && local == b"Option"
                        {
                            option_name = attr(&reader, e, "Name")?.unwrap_or_default();
                            leaf = Leaf::Option;
                        }
                    }
                } else if in_body && depth == 2 && !body_kind_set {
                    body_kind_set = true;
                    let is_shell_ns = nsb == NS_SHELL.as_bytes();
                    req.body = match local.as_slice() {
                        b"Shell" if is_shell_ns => Body::Shell(ShellBody {
                            shell_id: attr(&reader, e, "ShellId")?,
                            name: attr(&reader, e, "Name")?,
                            ..ShellBody::default()
                        }),
                        b"CommandLine" if is_shell_ns => Body::CommandLine(CommandLineBody {
                            command_id: attr(&reader, e, "CommandId")?,
                            ..CommandLineBody::default()
                        }),
                        b"Send" if is_shell_ns => Body::Send(Vec::new()),
                        b"Receive" if is_shell_ns => Body::Receive(ReceiveBody::default()),
                        b"Signal" if is_shell_ns => Body::Signal(SignalBody {
                            command_id: attr(&reader, e, "CommandId")?,
                            ..SignalBody::default()
                        }),
                        other => Body::Other(String::from_utf8_lossy(other).into_owned()),
                    };
                } else if in_body && depth == 3 {
                    let is_shell_ns = nsb == NS_SHELL.as_bytes();
                    leaf = match (&mut req.body, local.as_slice()) {
                        (Body::Shell(_), b"InputStreams") if is_shell_ns => Leaf::InputStreams,
                        (Body::Shell(_), b"OutputStreams") if is_shell_ns => Leaf::OutputStreams,
                        (Body::Shell(_), b"IdleTimeOut") if is_shell_ns => Leaf::IdleTimeOut,
                        (Body::Shell(_), b"creationXml") if nsb == NS_POWERSHELL.as_bytes() => {
                            Leaf::CreationXml
                        }
                        (Body::CommandLine(_), b"Command") if is_shell_ns => Leaf::Command,
                        (Body::CommandLine(_), b"Arguments") if is_shell_ns => Leaf::Arguments,
                        (Body::Send(streams), b"Stream") if is_shell_ns => {
                            streams.push(SendStream {
                                name: attr(&reader, e, "Name")?.unwrap_or_default(),
                                command_id: attr(&reader, e, "CommandId")?,
                                end: attr(&reader, e, "End")?
                                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                                data: String::new(),
                            });
                            Leaf::SendStream
                        }
                        (Body::Receive(r), b"DesiredStream") if is_shell_ns => {
                            r.command_id = attr(&reader, e, "CommandId")?;
                            Leaf::DesiredStream
                        }
                        (Body::Signal(_), b"Code") if is_shell_ns => Leaf::SignalCode,
                        _ => Leaf::None,
                    };
                }
                if is_empty {
                    finish_leaf(&mut req, leaf, "", &option_name, selector_is_shell);
                    leaf = Leaf::None;
                } else {
                    stack.push((ns, local));
                }
            }
            Event::Text(t) if leaf != Leaf::None => {
                let s = t
                    .unescape()
                    .map_err(|e| ParseError::Malformed(e.to_string()))?;
                text.push_str(&s);
            }
            Event::CData(t) if leaf != Leaf::None => {
                text.push_str(
                    std::str::from_utf8(&t).map_err(|e| ParseError::Malformed(e.to_string()))?,
                );
            }
            Event::End(_) => {
                if leaf != Leaf::None {
                    finish_leaf(&mut req, leaf, &text, &option_name, selector_is_shell);
                    leaf = Leaf::None;
                    text.clear();
                }
                stack.pop();
            }
            Event::Eof => break,
            Event::DocType(_) => {
                return Err(ParseError::Malformed("DOCTYPE is not allowed".into()));
            }
            _ => {}
        }
    }
    if !saw_envelope {
        return Err(ParseError::Malformed("empty document".into()));
    }
    if !stack.is_empty() {
        return Err(ParseError::Malformed("the envelope is cut short".into()));
    }
    if req.action.is_empty() {
        return Err(ParseError::NoAction);
    }
    Ok(req)
}

fn finish_leaf(
    req: &mut Request,
    leaf: Leaf,
    text: &str,
    option_name: &str,
    selector_is_shell: bool,
) {
    let t = text.trim();
    match leaf {
        Leaf::None => {}
        Leaf::Action => req.action = t.to_owned(),
        Leaf::To => req.to = Some(t.to_owned()),
        Leaf::ResourceUri => req.resource_uri = Some(t.to_owned()),
        Leaf::MessageId => req.message_id = Some(t.to_owned()),
        Leaf::ReplyToAddress => req.reply_to = Some(t.to_owned()),
        Leaf::MaxEnvelopeSize => req.max_envelope_size = t.parse().ok(),
        Leaf::OperationTimeout => req.operation_timeout = parse_duration(t),
        Leaf::ShellSelector => {
            if selector_is_shell {
                req.shell_id = Some(t.to_owned());
            }
        }
        Leaf::Option => req.options.push((option_name.to_owned(), t.to_owned())),
        Leaf::CompressionType => req.compression_type = Some(t.to_owned()),
        Leaf::InputStreams => set_shell(req, |s| s.input_streams = Some(t.to_owned())),
        Leaf::OutputStreams => set_shell(req, |s| s.output_streams = Some(t.to_owned())),
        Leaf::IdleTimeOut => set_shell(req, |s| s.idle_timeout = parse_duration(t)),
        Leaf::CreationXml => set_shell(req, |s| s.creation_xml = Some(t.to_owned())),
        Leaf::Command => {
            if let Body::CommandLine(c) = &mut req.body {
                c.command = Some(text.to_owned());
            }
        }
        Leaf::Arguments => {
            if let Body::CommandLine(c) = &mut req.body {
                c.arguments.push(t.to_owned());
            }
        }
        Leaf::SendStream => {
            if let Body::Send(streams) = &mut req.body {
                if let Some(last) = streams.last_mut() {
                    last.data = t.to_owned();
                }
            }
        }
        Leaf::DesiredStream => {
            if let Body::Receive(r) = &mut req.body {
                r.desired_stream = Some(t.to_owned());
            }
        }
        Leaf::SignalCode => {
            if let Body::Signal(s) = &mut req.body {
                s.code = t.to_owned();
            }
        }
    }
}

fn set_shell(req: &mut Request, f: impl FnOnce(&mut ShellBody)) {
    if let Body::Shell(s) = &mut req.body {
        f(s);
    }
}

/// Escapes text for an XML text node or attribute.
pub fn xml_escape(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
    xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
    xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
    xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">
  <s:Header>
    <a:To>https://proxy.example.com/powershell-liveid/</a:To>
    <w:ResourceURI s:mustUnderstand="true">http://schemas.microsoft.com/powershell/Microsoft.Exchange</w:ResourceURI>
    <a:ReplyTo><a:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>
    <a:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action>
    <w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize>
    <a:MessageID>uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B</a:MessageID>
    <w:Locale xml:lang="en-US" s:mustUnderstand="false" />
    <w:OptionSet xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" s:mustUnderstand="true">
      <w:Option Name="protocolversion" MustComply="true">2.3</w:Option>
    </w:OptionSet>
    <w:OperationTimeout>PT180.000S</w:OperationTimeout>
    <rsp:CompressionType s:mustUnderstand="true" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">xpress</rsp:CompressionType>
  </s:Header>
  <s:Body>
    <rsp:Shell xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
               ShellId="1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B">
      <rsp:InputStreams>stdin pr</rsp:InputStreams>
      <rsp:OutputStreams>stdout</rsp:OutputStreams>
      <creationXml xmlns="http://schemas.microsoft.com/powershell">AAAA</creationXml>
    </rsp:Shell>
  </s:Body>
</s:Envelope>"#;

    #[test]
    fn parses_windows_create() {
        let r = parse_request(CREATE.as_bytes(), 1 << 20).unwrap();
        assert_eq!(r.action, ACTION_CREATE);
        assert_eq!(
            r.message_id.as_deref(),
            Some("uuid:0B9D2C4E-1A3F-4E5D-8C7B-6A5F4E3D2C1B")
        );
        assert_eq!(r.max_envelope_size, Some(512_000));
        assert_eq!(r.operation_timeout, Some(Duration::from_secs(180)));
        assert_eq!(r.compression_type.as_deref(), Some("xpress"));
        assert_eq!(
            r.options,
            vec![("protocolversion".to_owned(), "2.3".to_owned())]
        );
        assert_eq!(r.reply_to.as_deref(), Some(ANONYMOUS));
        let Body::Shell(s) = r.body else {
            panic!("not a shell body")
        };
        assert_eq!(
            s.shell_id.as_deref(),
            Some("1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B")
        );
        assert_eq!(s.creation_xml.as_deref(), Some("AAAA"));
        assert_eq!(s.input_streams.as_deref(), Some("stdin pr"));
    }

    #[test]
    fn other_prefixes_same_namespaces() {
        let x = CREATE
            .replace("<s:", "<env:")
            .replace("</s:", "</env:")
            .replace(" s:mustUnderstand", " env:mustUnderstand")
            .replace("xmlns:s=", "xmlns:env=")
            .replace("<a:", "<wsa:")
            .replace("</a:", "</wsa:")
            .replace("xmlns:a=", "xmlns:wsa=");
        let r = parse_request(x.as_bytes(), 1 << 20).unwrap();
        assert_eq!(r.action, ACTION_CREATE);
    }

    #[test]
    fn wrong_namespace_is_not_read() {
        let x = CREATE.replace(
            "xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\"",
            "xmlns:a=\"urn:other\"",
        );
        assert_eq!(
            parse_request(x.as_bytes(), 1 << 20),
            Err(ParseError::NoAction)
        );
    }

    #[test]
    fn refuses_oversize_malformed_and_deep() {
        assert!(matches!(
            parse_request(CREATE.as_bytes(), 100),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_request(b"<s:Envelope", 1000),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"", 1000),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"<x/>", 1000),
            Err(ParseError::NotEnvelope(_))
        ));
        let cut = &CREATE[..CREATE.len() - 20];
        assert!(matches!(
            parse_request(cut.as_bytes(), 1 << 20),
            Err(ParseError::Malformed(_))
        ));
        let deep = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP}\">{}{}</s:Envelope>",
            "<a>".repeat(40),
            "</a>".repeat(40)
        );
        assert_eq!(
            parse_request(deep.as_bytes(), 1 << 20),
            Err(ParseError::TooDeep)
        );
        let mismatched = format!("<s:Envelope xmlns:s=\"{NS_SOAP}\"><a></b></s:Envelope>");
        assert!(matches!(
            parse_request(mismatched.as_bytes(), 1 << 20),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn parses_send_receive_signal() {
        let env = |body: &str| {
            format!(
                "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\" \
                 xmlns:rsp=\"{NS_SHELL}\"><s:Header><a:Action>{ACTION_SEND}</a:Action>\
                 <w:SelectorSet><w:Selector Name=\"ShellId\">S1</w:Selector></w:SelectorSet>\
                 </s:Header><s:Body>{body}</s:Body></s:Envelope>"
            )
        };
        let r = parse_request(
            env("<rsp:Send><rsp:Stream Name=\"stdin\" CommandId=\"C1\" End=\"true\">QUJD</rsp:Stream>\
                 <rsp:Stream Name=\"pr\">REVG</rsp:Stream></rsp:Send>")
            .as_bytes(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(r.shell_id.as_deref(), Some("S1"));
        assert_eq!(
            r.body,
            Body::Send(vec![
                SendStream {
                    name: "stdin".into(),
                    command_id: Some("C1".into()),
                    end: true,
                    data: "QUJD".into()
                },
                SendStream {
                    name: "pr".into(),
                    command_id: None,
                    end: false,
                    data: "REVG".into()
                },
            ])
        );
        let r = parse_request(
            env("<rsp:Receive SequenceId=\"0\"><rsp:DesiredStream CommandId=\"C1\">stdout</rsp:DesiredStream></rsp:Receive>").as_bytes(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            r.body,
            Body::Receive(ReceiveBody {
                desired_stream: Some("stdout".into()),
                command_id: Some("C1".into())
            })
        );
        let r = parse_request(
            env("<rsp:Signal CommandId=\"C1\"><rsp:Code>powershell/signal/crtl_c</rsp:Code></rsp:Signal>").as_bytes(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            r.body,
            Body::Signal(SignalBody {
                command_id: Some("C1".into()),
                code: "powershell/signal/crtl_c".into()
            })
        );
        let r = parse_request(env("<rsp:Disconnect/>").as_bytes(), 1 << 20).unwrap();
        assert_eq!(r.body, Body::Other("Disconnect".into()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("PT180.000S"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("P0DT0H3M0S"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("PT0.5S"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("P1Y"), None);
        assert_eq!(parse_duration("20"), None);
        assert_eq!(parse_duration("PTxS"), None);
        assert_eq!(
            format_duration(Duration::from_millis(900_500)),
            "PT900.500S"
        );
    }

    #[test]
    fn fault_has_relates_to_code_and_text() {
        let rsp = fault_response(&Fault::unknown_shell("ABC<"), Some("uuid:1"));
        assert_eq!(rsp.status(), 500);
        let body = std::str::from_utf8(rsp.body()).unwrap();
        assert!(body.contains("<a:RelatesTo>uuid:1</a:RelatesTo>"));
        assert!(body.contains("Code=\"2150858843\""));
        assert!(body.contains("w:InvalidSelectors"));
        assert!(body.contains("ABC&lt;"));
        // The fault itself is a parseable envelope.
        let parsed = parse_request(rsp.body(), 1 << 20).unwrap();
        assert_eq!(parsed.action, ACTION_FAULT);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = parse_request(&bytes, 4096);
        }

        #[test]
        fn mutated_envelopes_never_panic(cut in 0usize..2000, pos in 0usize..2000, byte in proptest::num::u8::ANY) {
            let mut b = CREATE.as_bytes().to_vec();
            let pos = pos % b.len();
            b[pos] = byte;
            b.truncate(cut.max(1).min(b.len()));
            if let Ok(r) = parse_request(&b, 1 << 20) {
                let _ = fault_response(&Fault::unknown_shell(r.shell_id.as_deref().unwrap_or("")), r.message_id.as_deref());
            }
        }
    }
}
