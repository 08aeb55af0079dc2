//! The request parser: a namespace-resolving streaming reader, bounded in depth and size.
//!
//! Separate because this state machine (which element is the leaf being read, which selector
//! names the shell) is the only code that touches quick-xml's reader.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::*;

/// Deepest element nesting accepted in an envelope (real ones are < 10 deep).
pub(super) const MAX_DEPTH: usize = 32;

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

/// The namespaces the reader acts on; any other is `Other`. Resolved once per element, so the
/// element stack holds two bytes per level and reading allocates nothing per event (the
/// listener reads every request's header: this loop is on the hot path of both modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Soap,
    Addressing,
    Wsman,
    Shell,
    PowerShell,
    Other,
}

impl Ns {
    fn of(resolved: &ResolveResult<'_>) -> Self {
        match ns_of(resolved) {
            n if n == NS_SOAP.as_bytes() => Self::Soap,
            n if n == NS_ADDRESSING.as_bytes() => Self::Addressing,
            n if n == NS_WSMAN.as_bytes() => Self::Wsman,
            n if n == NS_SHELL.as_bytes() => Self::Shell,
            n if n == NS_POWERSHELL.as_bytes() => Self::PowerShell,
            _ => Self::Other,
        }
    }
}

/// The open elements the reader looks back at (the header, the body, and the parents of the
/// header leaves it reads); any other is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Header,
    Body,
    ReplyTo,
    SelectorSet,
    OptionSet,
    Other,
}

impl Open {
    fn of(ns: Ns, local: &[u8]) -> Self {
        match (ns, local) {
            (Ns::Soap, b"Header") => Self::Header,
            (Ns::Soap, b"Body") => Self::Body,
            (Ns::Addressing, b"ReplyTo") => Self::ReplyTo,
            (Ns::Wsman, b"SelectorSet") => Self::SelectorSet,
            (Ns::Wsman, b"OptionSet") => Self::OptionSet,
            _ => Self::Other,
        }
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
    let mut req = Request::default();
    read(body, Scope::Whole, &mut req)?;
    if req.action.is_empty() {
        return Err(ParseError::NoAction);
    }
    Ok(req)
}

/// How much of an envelope [`read`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Everything, and the document must be complete and well-formed.
    Whole,
    /// The SOAP header only: stops at the start of `s:Body` (what [`super::peek`] needs).
    Header,
}

/// Reads `body` into `req`. On error `req` holds what was read before it, which is what
/// [`super::peek`] wants from a truncated or hostile envelope.
pub(super) fn read(body: &[u8], scope: Scope, req: &mut Request) -> Result<(), ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;

    // The open elements, outermost first (at most MAX_DEPTH: no growth past the first push).
    let mut stack: Vec<Open> = Vec::with_capacity(MAX_DEPTH);
    let mut leaf = Leaf::None;
    let mut text = String::new();
    let mut option_name = String::new();
    let mut selector_is_shell = false;
    let mut saw_envelope = false;
    let mut body_kind_set = false;
    // SOAP 1.2: at most one Header, then one Body. A second Header (or Body) would be read
    // here but not by `peek`, which stops at the first Body: the listener would route and
    // audit one shell while the endpoint acts on another.
    let mut saw_header = false;
    let mut saw_body = false;

    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| ParseError::Malformed(format!("{e} (near byte {position})")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let ns = Ns::of(&resolved);
                let local_name = e.local_name();
                let local = local_name.as_ref();
                if stack.is_empty() {
                    if ns != Ns::Soap || local != b"Envelope" {
                        return Err(ParseError::NotEnvelope(
                            String::from_utf8_lossy(local).into_owned(),
                        ));
                    }
                    saw_envelope = true;
                }
                let depth = stack.len();
                if depth >= MAX_DEPTH {
                    return Err(ParseError::TooDeep);
                }
                let open = Open::of(ns, local);
                let in_header = depth >= 2 && stack[1] == Open::Header;
                let in_body = depth >= 2 && stack[1] == Open::Body;
                if depth == 1 {
                    let out_of_order = match open {
                        Open::Header => std::mem::replace(&mut saw_header, true) || saw_body,
                        Open::Body => std::mem::replace(&mut saw_body, true),
                        _ => false,
                    };
                    if out_of_order {
                        return Err(ParseError::Malformed(format!(
                            "s:{} out of place (near byte {position}): an envelope has at most one \
                             s:Header, then one s:Body",
                            String::from_utf8_lossy(local)
                        )));
                    }
                    if scope == Scope::Header && open == Open::Body {
                        return Ok(());
                    }
                }
                leaf = Leaf::None;
                text.clear();
                if in_header {
                    if depth == 2 {
                        leaf = match (ns, local) {
                            (Ns::Addressing, b"Action") => Leaf::Action,
                            (Ns::Addressing, b"To") => Leaf::To,
                            (Ns::Addressing, b"MessageID") => Leaf::MessageId,
                            (Ns::Wsman, b"ResourceURI") => Leaf::ResourceUri,
                            (Ns::Wsman, b"MaxEnvelopeSize") => Leaf::MaxEnvelopeSize,
                            (Ns::Wsman, b"OperationTimeout") => Leaf::OperationTimeout,
                            (Ns::Shell, b"CompressionType") => Leaf::CompressionType,
                            _ => Leaf::None,
                        };
                    } else if depth == 3 {
                        match (stack[2], ns, local) {
                            (Open::ReplyTo, _, b"Address") => leaf = Leaf::ReplyToAddress,
                            (Open::SelectorSet, _, b"Selector") => {
                                selector_is_shell =
                                    attr(&reader, e, "Name")?.as_deref() == Some("ShellId");
                                leaf = Leaf::ShellSelector;
                            }
                            (Open::OptionSet, _, b"Option") => {
                                option_name = attr(&reader, e, "Name")?.unwrap_or_default();
                                leaf = Leaf::Option;
                            }
                            _ => {}
                        }
                    }
                } else if in_body && depth == 2 && !body_kind_set {
                    body_kind_set = true;
                    let is_shell_ns = ns == Ns::Shell;
                    req.body = match local {
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
                    let is_shell_ns = ns == Ns::Shell;
                    leaf = match (&mut req.body, local) {
                        (Body::Shell(_), b"InputStreams") if is_shell_ns => Leaf::InputStreams,
                        (Body::Shell(_), b"OutputStreams") if is_shell_ns => Leaf::OutputStreams,
                        (Body::Shell(_), b"IdleTimeOut") if is_shell_ns => Leaf::IdleTimeOut,
                        (Body::Shell(_), b"creationXml") if ns == Ns::PowerShell => {
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
                    finish_leaf(req, leaf, "", &option_name, selector_is_shell);
                    leaf = Leaf::None;
                } else {
                    stack.push(open);
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
                    finish_leaf(req, leaf, &text, &option_name, selector_is_shell);
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
    Ok(())
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
