//! PSRP fragments (MS-PSRP 2.2.4): big-endian header, object id, fragment id, start/end flags.
//!
//! SKELETON (issue #4, codec work owns this file).

/// A malformed or oversize fragment stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// Fewer than the 21 header bytes.
    #[error("PSRP fragment truncated")]
    Truncated,
}

/// Splits one message into fragments whose encoded size (header included) is at most
/// `max_fragment_size` bytes.
pub fn fragment(object_id: u64, message: &[u8], max_fragment_size: usize) -> Vec<Vec<u8>> {
    let _ = (object_id, message, max_fragment_size);
    todo!("issue #4")
}

/// Reassembles messages from fragments that may arrive split across several blobs.
#[derive(Debug, Default)]
pub struct Defragmenter {}

impl Defragmenter {
    /// A defragmenter refusing messages larger than `max_message_size`.
    pub fn new(max_message_size: usize) -> Self {
        let _ = max_message_size;
        todo!("issue #4")
    }

    /// Feeds one decoded blob (one or more fragments); returns the messages it completed.
    ///
    /// # Errors
    /// [`FragmentError`] for malformed input or a message over the limit.
    pub fn push(&mut self, blob: &[u8]) -> Result<Vec<Vec<u8>>, FragmentError> {
        let _ = blob;
        todo!("issue #4")
    }
}
