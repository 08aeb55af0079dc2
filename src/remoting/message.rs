//! PSRP messages (MS-PSRP 2.2.1): destination, type, RPID/PID (.NET GUID byte order), data.
//!
//! The header is 40 bytes: two little-endian `u32`s (destination, type) and two GUIDs in
//! `System.Guid.ToByteArray()` layout (first three groups little-endian). Decoding with
//! [`Uuid::from_bytes_le`] and encoding with [`Uuid::to_bytes_le`] are exact inverses, so the
//! ids a client sent are echoed byte for byte (reference psrp-protocol.md §3.3: never re-derive
//! the RPID from the ShellId). The data is UTF-8 CLIXML; Windows prefixes it with a BOM, so we
//! do too when sending ([`Message::to_client`]) and accept it with or without when receiving.

use uuid::Uuid;

use super::clixml::{self, ClixmlError, Value};

/// The UTF-8 byte-order mark Windows puts before every message's data.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Length of the fixed message header.
pub const HEADER_LEN: usize = 40;

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 1
    Client,
    /// 2
    Server,
}

impl Destination {
    /// The wire value.
    pub fn code(self) -> u32 {
        match self {
            Self::Client => 1,
            Self::Server => 2,
        }
    }
}

/// PSRP message type codes (reference psrp-protocol.md §5). Unknown codes are kept.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    SessionCapability,
    InitRunspacePool,
    PublicKey,
    EncryptedSessionKey,
    PublicKeyRequest,
    ConnectRunspacePool,
    SetMaxRunspaces,
    SetMinRunspaces,
    RunspaceAvailability,
    RunspacePoolState,
    CreatePipeline,
    GetAvailableRunspaces,
    UserEvent,
    ApplicationPrivateData,
    GetCommandMetadata,
    RunspacePoolInitData,
    ResetRunspaceState,
    RunspacePoolHostCall,
    RunspacePoolHostResponse,
    PipelineInput,
    EndOfPipelineInput,
    PipelineOutput,
    ErrorRecord,
    PipelineState,
    DebugRecord,
    VerboseRecord,
    WarningRecord,
    ProgressRecord,
    InformationRecord,
    PipelineHostCall,
    PipelineHostResponse,
    Other(u32),
}

/// Every known type with its code, in §5 order (one table for both directions).
const TYPE_CODES: [(MessageType, u32); 31] = [
    (MessageType::SessionCapability, 0x0001_0002),
    (MessageType::InitRunspacePool, 0x0001_0004),
    (MessageType::PublicKey, 0x0001_0005),
    (MessageType::EncryptedSessionKey, 0x0001_0006),
    (MessageType::PublicKeyRequest, 0x0001_0007),
    (MessageType::ConnectRunspacePool, 0x0001_0008),
    (MessageType::SetMaxRunspaces, 0x0002_1002),
    (MessageType::SetMinRunspaces, 0x0002_1003),
    (MessageType::RunspaceAvailability, 0x0002_1004),
    (MessageType::RunspacePoolState, 0x0002_1005),
    (MessageType::CreatePipeline, 0x0002_1006),
    (MessageType::GetAvailableRunspaces, 0x0002_1007),
    (MessageType::UserEvent, 0x0002_1008),
    (MessageType::ApplicationPrivateData, 0x0002_1009),
    (MessageType::GetCommandMetadata, 0x0002_100A),
    (MessageType::RunspacePoolInitData, 0x0002_100B),
    (MessageType::ResetRunspaceState, 0x0002_100C),
    (MessageType::RunspacePoolHostCall, 0x0002_1100),
    (MessageType::RunspacePoolHostResponse, 0x0002_1101),
    (MessageType::PipelineInput, 0x0004_1002),
    (MessageType::EndOfPipelineInput, 0x0004_1003),
    (MessageType::PipelineOutput, 0x0004_1004),
    (MessageType::ErrorRecord, 0x0004_1005),
    (MessageType::PipelineState, 0x0004_1006),
    (MessageType::DebugRecord, 0x0004_1007),
    (MessageType::VerboseRecord, 0x0004_1008),
    (MessageType::WarningRecord, 0x0004_1009),
    (MessageType::ProgressRecord, 0x0004_1010),
    (MessageType::InformationRecord, 0x0004_1011),
    (MessageType::PipelineHostCall, 0x0004_1100),
    (MessageType::PipelineHostResponse, 0x0004_1101),
];

impl MessageType {
    /// The wire code (`Other` keeps whatever was received).
    pub fn code(self) -> u32 {
        if let Self::Other(code) = self {
            return code;
        }
        TYPE_CODES
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, c)| *c)
            .expect("every named MessageType is in TYPE_CODES")
    }

    /// The type for a wire code; unknown codes become `Other`.
    pub fn from_code(code: u32) -> Self {
        TYPE_CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map(|(t, _)| *t)
            .unwrap_or(Self::Other(code))
    }
}

/// One PSRP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Destination.
    pub destination: Destination,
    /// Type.
    pub message_type: MessageType,
    /// Runspace pool id.
    pub rpid: Uuid,
    /// Pipeline id (nil for pool-level messages).
    pub pid: Uuid,
    /// CLIXML (UTF-8, possibly with a BOM from some clients).
    pub data: Vec<u8>,
}

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer than the 40 header bytes.
    #[error("PSRP message too short: {0} bytes, need at least 40")]
    TooShort(usize),
    /// The destination field is neither 1 (client) nor 2 (server).
    #[error("PSRP message has destination {0}; only 1 (client) and 2 (server) exist")]
    BadDestination(u32),
    /// The data is not UTF-8.
    #[error(
        "PSRP {message_type:?} message data is not UTF-8 (invalid byte at offset {offset}); \
         the client must send UTF-8 CLIXML"
    )]
    NotUtf8 {
        /// The message's type.
        message_type: MessageType,
        /// Offset of the first invalid byte in the data (after any BOM).
        offset: usize,
    },
    /// The data is not valid CLIXML.
    #[error("PSRP {message_type:?} message data is not valid CLIXML: {source}")]
    Clixml {
        /// The message's type.
        message_type: MessageType,
        /// What the CLIXML parser found.
        #[source]
        source: ClixmlError,
    },
}

impl Message {
    /// A server→client message whose data is `body` as CLIXML, BOM-prefixed like Windows.
    pub fn to_client(message_type: MessageType, rpid: Uuid, pid: Uuid, body: &Value) -> Self {
        // U+FEFF is the BOM's UTF-8 bytes: the text is written straight after it, no copy.
        let mut xml = String::with_capacity(512);
        xml.push('\u{FEFF}');
        clixml::write_xml(body, &mut xml);
        Self {
            destination: Destination::Client,
            message_type,
            rpid,
            pid,
            data: xml.into_bytes(),
        }
    }

    /// [`Message::to_client`] for `body`, already in fragments of at most
    /// `max_fragment_size` bytes with `object_id` — the bytes of
    /// `fragment(object_id, &to_client(..).encode(), max_fragment_size)`, made with one copy
    /// fewer per byte in the common case of a message that fits one fragment: the CLIXML is
    /// written straight after room for both headers, which are filled in afterwards. (Output
    /// objects are most of what a rest-mode session sends; BENCHMARKS.md, bridge.)
    pub fn client_fragments(
        message_type: MessageType,
        rpid: Uuid,
        pid: Uuid,
        body: &Value,
        object_id: u64,
        max_fragment_size: usize,
    ) -> Vec<Vec<u8>> {
        const FRAGMENT: usize = super::fragment::HEADER_LEN;
        let mut text = String::with_capacity(4096);
        // NUL is one byte of valid UTF-8: room for the headers, overwritten below.
        text.extend(std::iter::repeat_n('\0', FRAGMENT + HEADER_LEN));
        text.push('\u{FEFF}');
        clixml::write_xml(body, &mut text);
        let mut buf = text.into_bytes();
        let mut header = Vec::with_capacity(HEADER_LEN);
        Self {
            destination: Destination::Client,
            message_type,
            rpid,
            pid,
            data: Vec::new(),
        }
        .encode_into(&mut header);
        buf[FRAGMENT..FRAGMENT + HEADER_LEN].copy_from_slice(&header);
        let message = buf.len() - FRAGMENT;
        if message > max_fragment_size.max(FRAGMENT + 1) - FRAGMENT {
            return super::fragment::fragment(object_id, &buf[FRAGMENT..], max_fragment_size);
        }
        let mut head = Vec::with_capacity(FRAGMENT);
        super::fragment::Fragment {
            object_id,
            fragment_id: 0,
            start: true,
            end: true,
            blob: &[],
        }
        .encode_header_into(message, &mut head);
        buf[..FRAGMENT].copy_from_slice(&head);
        vec![buf]
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.destination.code().to_le_bytes());
        out.extend_from_slice(&self.message_type.code().to_le_bytes());
        out.extend_from_slice(&self.rpid.to_bytes_le());
        out.extend_from_slice(&self.pid.to_bytes_le());
        out.extend_from_slice(&self.data);
    }

    /// Parses the wire form.
    ///
    /// # Errors
    /// [`MessageError`] for a malformed message.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() < HEADER_LEN {
            return Err(MessageError::TooShort(bytes.len()));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes(
                bytes[at..at + 4]
                    .try_into()
                    .expect("4 bytes, length checked"),
            )
        };
        let guid_at = |at: usize| {
            Uuid::from_bytes_le(
                bytes[at..at + 16]
                    .try_into()
                    .expect("16 bytes, length checked"),
            )
        };
        let destination = match u32_at(0) {
            1 => Destination::Client,
            2 => Destination::Server,
            other => return Err(MessageError::BadDestination(other)),
        };
        Ok(Self {
            destination,
            message_type: MessageType::from_code(u32_at(4)),
            rpid: guid_at(8),
            pid: guid_at(24),
            data: bytes[HEADER_LEN..].to_vec(),
        })
    }

    /// The data as text, without a leading BOM.
    ///
    /// # Errors
    /// [`MessageError::NotUtf8`] when the data is not UTF-8.
    pub fn xml(&self) -> Result<&str, MessageError> {
        let data = self.data.strip_prefix(BOM).unwrap_or(&self.data);
        std::str::from_utf8(data).map_err(|e| MessageError::NotUtf8 {
            message_type: self.message_type,
            offset: e.valid_up_to(),
        })
    }

    /// The data parsed as CLIXML. Empty data (END_OF_PIPELINE_INPUT, a `$null` input) is
    /// [`Value::Nil`].
    ///
    /// # Errors
    /// [`MessageError::NotUtf8`] or [`MessageError::Clixml`].
    pub fn body(&self) -> Result<Value, MessageError> {
        let xml = self.xml()?;
        if xml.trim().is_empty() {
            return Ok(Value::Nil);
        }
        clixml::from_xml(xml).map_err(|source| MessageError::Clixml {
            message_type: self.message_type,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpid() -> Uuid {
        "1F0B3C2A-5D4E-4F60-8A7B-9C0D1E2F3A4B".parse().unwrap()
    }

    fn pid() -> Uuid {
        "6A1C9E3B-2F47-4D85-9B0E-7C4D2A1F8E63".parse().unwrap()
    }

    #[test]
    fn client_fragments_are_the_fragmented_encoding() {
        let small = Value::String("R&D <list>".into());
        let big = Value::String("x".repeat(70_000));
        for (body, max) in [
            (&small, 32 * 1024),
            (&small, 30),
            (&big, 32 * 1024),
            (&big, 100_000),
        ] {
            let msg = Message::to_client(MessageType::PipelineOutput, rpid(), pid(), body);
            assert_eq!(
                Message::client_fragments(MessageType::PipelineOutput, rpid(), pid(), body, 7, max),
                crate::remoting::fragment::fragment(7, &msg.encode(), max),
                "fragment size {max}"
            );
        }
    }

    #[test]
    fn header_layout_matches_reference_11_5() {
        let msg = Message {
            destination: Destination::Client,
            message_type: MessageType::PipelineState,
            rpid: rpid(),
            pid: pid(),
            data: b"\xEF\xBB\xBF<Obj RefId=\"0\"><MS><I32 N=\"PipelineState\">4</I32></MS></Obj>"
                .to_vec(),
        };
        let wire = msg.encode();
        assert_eq!(&wire[0..4], &[1, 0, 0, 0]);
        assert_eq!(&wire[4..8], &[0x06, 0x10, 0x04, 0x00]);
        assert_eq!(
            &wire[8..24],
            &[
                0x2A, 0x3C, 0x0B, 0x1F, 0x4E, 0x5D, 0x60, 0x4F, 0x8A, 0x7B, 0x9C, 0x0D, 0x1E, 0x2F,
                0x3A, 0x4B
            ]
        );
        assert_eq!(
            &wire[24..40],
            &[
                0x3B, 0x9E, 0x1C, 0x6A, 0x47, 0x2F, 0x85, 0x4D, 0x9B, 0x0E, 0x7C, 0x4D, 0x2A, 0x1F,
                0x8E, 0x63
            ]
        );
        assert_eq!(wire.len(), 103);
        assert_eq!(Message::decode(&wire).unwrap(), msg);
    }

    #[test]
    fn every_type_code_round_trips() {
        for (t, code) in TYPE_CODES {
            assert_eq!(t.code(), code);
            assert_eq!(MessageType::from_code(code), t);
        }
        assert_eq!(MessageType::from_code(0x1234), MessageType::Other(0x1234));
        assert_eq!(MessageType::Other(0x1234).code(), 0x1234);
        assert_eq!(MessageType::ProgressRecord.code(), 0x0004_1010);
        assert_eq!(MessageType::GetCommandMetadata.code(), 0x0002_100A);
    }

    #[test]
    fn short_and_bad_destination_are_errors() {
        assert_eq!(Message::decode(&[0; 39]), Err(MessageError::TooShort(39)));
        let mut wire = vec![0u8; 40];
        wire[0] = 3;
        assert_eq!(Message::decode(&wire), Err(MessageError::BadDestination(3)));
    }

    #[test]
    fn body_strips_bom_and_empty_is_nil() {
        let msg = Message::to_client(
            MessageType::PipelineOutput,
            rpid(),
            pid(),
            &Value::String("hi".into()),
        );
        assert!(msg.data.starts_with(BOM));
        assert_eq!(msg.xml().unwrap(), "<S>hi</S>");
        assert_eq!(msg.body().unwrap(), Value::String("hi".into()));
        let empty = Message {
            data: Vec::new(),
            ..msg.clone()
        };
        assert_eq!(empty.body().unwrap(), Value::Nil);
        let no_bom = Message {
            data: b"<I32>5</I32>".to_vec(),
            ..msg.clone()
        };
        assert_eq!(no_bom.body().unwrap(), Value::I32(5));
        let bad = Message {
            data: vec![b'<', 0xFF],
            ..msg
        };
        assert!(matches!(
            bad.xml(),
            Err(MessageError::NotUtf8 { offset: 1, .. })
        ));
    }
}
