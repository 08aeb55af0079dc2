//! WinRM stream compression (reference psrp-protocol.md §2.11): Xpress-Huffman (MS-XCA) chunks.
//!
//! SKELETON (issue #4, codec work owns this file). Windows PowerShell compresses Send stream
//! data by default; we decompress it, and answer with stored (uncompressed) chunks.

/// A chunk stream that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XpressError {
    /// The chunk header or body is cut short.
    #[error("compressed stream truncated")]
    Truncated,
}

/// Decodes a sequence of `{u16 original-1, u16 compressed-1}` chunks, refusing more than
/// `limit` bytes of output.
///
/// # Errors
/// [`XpressError`] for malformed or oversize input.
pub fn decompress_stream(data: &[u8], limit: usize) -> Result<Vec<u8>, XpressError> {
    let _ = (data, limit);
    todo!("issue #4")
}

/// Encodes `data` as stored (uncompressed) chunks of at most 64 KiB each.
pub fn store_stream(data: &[u8]) -> Vec<u8> {
    let _ = data;
    todo!("issue #4")
}
