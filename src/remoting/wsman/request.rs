//! What a parsed request holds ([`Request`] and its [`Body`]) and why one was refused
//! ([`ParseError`]).
//!
//! Separate from the parser so the remoting endpoint reads the shape of a request without the
//! streaming-reader state machine that fills it.

use std::time::Duration;

use super::parse::MAX_DEPTH;
use super::{Fault, codes};

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
