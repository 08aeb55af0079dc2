//! PSRP messages (MS-PSRP 2.2.1): destination, type, RPID/PID (.NET GUID byte order), data.
//!
//! SKELETON (issue #4, codec work owns this file).

use uuid::Uuid;

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 1
    Client,
    /// 2
    Server,
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
}

impl Message {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        todo!("issue #4")
    }

    /// Parses the wire form.
    ///
    /// # Errors
    /// [`MessageError`] for a malformed message.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let _ = bytes;
        todo!("issue #4")
    }
}
