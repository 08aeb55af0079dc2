//! WinRM stream compression (reference psrp-protocol.md §2.11): Xpress-Huffman (MS-XCA) chunks.
//!
//! Windows PowerShell compresses Send stream data by default; we decompress it, and answer
//! with stored (uncompressed) chunks, which every client accepts. A stream is a sequence of
//! chunks `{u16 originalSize-1, u16 compressedSize-1}` (little-endian) + body; equal sizes
//! mean the body is stored as is, otherwise it is one MS-XCA §2.2.4 "LZ77+Huffman" block
//! sequence that decodes to exactly `originalSize` bytes.
//!
//! The decoder is written from MS-XCA rather than taken from the `xpress-huffman` crate:
//! 0.1.3 stops when its input runs out and returns `Ok` with the last bytes missing (the
//! final symbols can sit in the 32 bits already buffered). Here decoding is driven by the
//! output size the chunk header promises — reads past the end of the body yield zero bits —
//! and any chunk that does not produce exactly that many bytes is an error, never a short
//! result. Each chunk is decoded on its own (no history across chunks), and every failure
//! names the chunk.

/// Largest original size of one chunk (the u16 header field holds size − 1).
pub const MAX_CHUNK: usize = 65_536;

/// Symbols of the Huffman alphabet: 256 literals + 16 length classes × 16 offset bit counts.
const SYMBOLS: usize = 512;
/// Longest code, in bits.
const MAX_CODE_BITS: u32 = 15;
/// Output covered by one MS-XCA block.
const BLOCK: usize = 65_536;
/// Marks a decoding-table slot no code maps to.
const UNASSIGNED: u16 = u16::MAX;

/// A chunk stream that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XpressError {
    /// The chunk header or body is cut short.
    #[error("compressed stream truncated")]
    Truncated,
    /// The decompressed data would exceed the caller's limit.
    #[error("compressed stream expands beyond the {limit}-byte limit")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A chunk claims to be larger compressed than uncompressed (such chunks are stored).
    #[error(
        "compressed chunk {chunk} claims {compressed} compressed bytes for {original} original \
         bytes; a compressor stores such data instead"
    )]
    CompressedLarger {
        /// Index of the chunk in the stream, from 0.
        chunk: usize,
        /// Original size from the header.
        original: usize,
        /// Compressed size from the header.
        compressed: usize,
    },
    /// The block's Huffman code lengths do not form a prefix code.
    #[error("compressed chunk {chunk}: the Huffman code table is invalid ({reason})")]
    InvalidTable {
        /// Index of the chunk.
        chunk: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bit stream holds a code the table does not define.
    #[error("compressed chunk {chunk}: undefined Huffman code at output byte {position}")]
    InvalidCode {
        /// Index of the chunk.
        chunk: usize,
        /// Output bytes produced before it.
        position: usize,
    },
    /// A match reaches back before the start of the chunk.
    #[error(
        "compressed chunk {chunk}: match offset {offset} at output byte {position} reaches \
         before the start of the data"
    )]
    BadOffset {
        /// Index of the chunk.
        chunk: usize,
        /// The match offset.
        offset: usize,
        /// Output bytes produced before it.
        position: usize,
    },
    /// A match length is malformed or runs past the chunk's original size.
    #[error(
        "compressed chunk {chunk}: match of {length} bytes at output byte {position} is malformed \
         or runs past the {original}-byte original size"
    )]
    BadLength {
        /// Index of the chunk.
        chunk: usize,
        /// The match length (0 when the length field itself is malformed).
        length: usize,
        /// Output bytes produced before it.
        position: usize,
        /// Original size of the chunk.
        original: usize,
    },
}

/// Decodes a sequence of `{u16 original-1, u16 compressed-1}` chunks, refusing more than
/// `limit` bytes of output.
///
/// # Errors
/// [`XpressError`] for malformed or oversize input.
pub fn decompress_stream(data: &[u8], limit: usize) -> Result<Vec<u8>, XpressError> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut chunk = 0;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(XpressError::Truncated);
        }
        let original = usize::from(u16::from_le_bytes([rest[0], rest[1]])) + 1;
        let compressed = usize::from(u16::from_le_bytes([rest[2], rest[3]])) + 1;
        let body = rest.get(4..4 + compressed).ok_or(XpressError::Truncated)?;
        rest = &rest[4 + compressed..];
        if out.len() + original > limit {
            return Err(XpressError::TooLarge { limit });
        }
        if compressed == original {
            out.extend_from_slice(body);
        } else if compressed > original {
            return Err(XpressError::CompressedLarger {
                chunk,
                original,
                compressed,
            });
        } else {
            let start = out.len();
            decompress_into(body, original, &mut out, start, chunk)?;
        }
        chunk += 1;
    }
    Ok(out)
}

/// Decodes one MS-XCA LZ77+Huffman buffer (no chunk header) to exactly `original` bytes.
///
/// # Errors
/// [`XpressError`] when the data is malformed or does not produce `original` bytes.
pub fn decompress(data: &[u8], original: usize) -> Result<Vec<u8>, XpressError> {
    let mut out = Vec::with_capacity(original);
    decompress_into(data, original, &mut out, 0, 0)?;
    Ok(out)
}

/// Encodes `data` as stored (uncompressed) chunks of at most 64 KiB each.
pub fn store_stream(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4 * data.len().div_ceil(MAX_CHUNK));
    for chunk in data.chunks(MAX_CHUNK) {
        let size = u16::try_from(chunk.len() - 1)
            .expect("chunks are at most 65536 bytes")
            .to_le_bytes();
        out.extend_from_slice(&size);
        out.extend_from_slice(&size);
        out.extend_from_slice(chunk);
    }
    out
}

/// The canonical-Huffman decoding table of one block: for every 15-bit prefix, the symbol
/// and its code length.
struct Table {
    symbol: Vec<u16>,
    length: [u8; SYMBOLS],
}

impl Table {
    fn build(lengths: &[u8], chunk: usize) -> Result<Self, XpressError> {
        let mut length = [0u8; SYMBOLS];
        for (i, byte) in lengths.iter().enumerate() {
            length[2 * i] = byte & 0x0F;
            length[2 * i + 1] = byte >> 4;
        }
        let mut symbol = vec![UNASSIGNED; 1 << MAX_CODE_BITS];
        let mut next = 0usize;
        for bits in 1..=MAX_CODE_BITS {
            for (s, len) in length.iter().enumerate() {
                if u32::from(*len) != bits {
                    continue;
                }
                let count = 1usize << (MAX_CODE_BITS - bits);
                let slots =
                    symbol
                        .get_mut(next..next + count)
                        .ok_or(XpressError::InvalidTable {
                            chunk,
                            reason: "the code lengths over-subscribe the code space",
                        })?;
                slots.fill(s as u16);
                next += count;
            }
        }
        if next == 0 {
            return Err(XpressError::InvalidTable {
                chunk,
                reason: "no symbol has a code",
            });
        }
        Ok(Self { symbol, length })
    }
}

/// MS-XCA's bit reader: 16-bit little-endian words into a 32-bit window, reading zeros past
/// the end (the final symbols of a block may sit in bits already buffered).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    window: u32,
    extra: i32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        let mut bits = Self {
            data,
            pos,
            window: 0,
            extra: 16,
        };
        bits.window = (u32::from(bits.word()) << 16) | u32::from(bits.word());
        bits
    }

    fn word(&mut self) -> u16 {
        let lo = self.data.get(self.pos).copied().unwrap_or(0);
        let hi = self.data.get(self.pos + 1).copied().unwrap_or(0);
        self.pos += 2;
        u16::from_le_bytes([lo, hi])
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn peek(&self, n: u32) -> u32 {
        if n == 0 { 0 } else { self.window >> (32 - n) }
    }

    fn consume(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.window = if n >= 32 { 0 } else { self.window << n };
        self.extra -= n as i32;
        if self.extra < 0 {
            let w = u32::from(self.word());
            self.window |= w << (-self.extra) as u32;
            self.extra += 16;
        }
    }
}

fn decompress_into(
    data: &[u8],
    original: usize,
    out: &mut Vec<u8>,
    start: usize,
    chunk: usize,
) -> Result<(), XpressError> {
    let end = start + original;
    let mut input = 0usize;
    while out.len() < end {
        let lengths = data.get(input..input + 256).ok_or(XpressError::Truncated)?;
        let table = Table::build(lengths, chunk)?;
        let mut bits = Bits::new(data, input + 256);
        let block_end = (out.len() + BLOCK).min(end);
        while out.len() < block_end {
            let position = out.len() - start;
            let symbol = table.symbol[bits.peek(MAX_CODE_BITS) as usize];
            if symbol == UNASSIGNED {
                return Err(XpressError::InvalidCode { chunk, position });
            }
            bits.consume(u32::from(table.length[usize::from(symbol)]));
            if symbol < 256 {
                out.push(symbol as u8);
                continue;
            }
            let symbol = symbol - 256;
            let offset_bits = u32::from(symbol >> 4);
            let mut length = usize::from(symbol & 0x0F);
            if length == 15 {
                length = usize::from(bits.byte());
                if length == 255 {
                    length = usize::from(u16::from_le_bytes([bits.byte(), bits.byte()]));
                    if length == 0 {
                        let b = [bits.byte(), bits.byte(), bits.byte(), bits.byte()];
                        length = u32::from_le_bytes(b) as usize;
                    }
                    if length < 15 {
                        return Err(XpressError::BadLength {
                            chunk,
                            length: 0,
                            position,
                            original,
                        });
                    }
                    length -= 15;
                }
                length += 15;
            }
            length += 3;
            let offset = (bits.peek(offset_bits) as usize) + (1usize << offset_bits);
            bits.consume(offset_bits);
            if offset > position {
                return Err(XpressError::BadOffset {
                    chunk,
                    offset,
                    position,
                });
            }
            if length > end - out.len() {
                return Err(XpressError::BadLength {
                    chunk,
                    length,
                    position,
                    original,
                });
            }
            let from = out.len() - offset;
            if offset >= length {
                out.extend_from_within(from..from + length);
            } else {
                for i in 0..length {
                    let b = out[from + i];
                    out.push(b);
                }
            }
        }
        input = bits.pos;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::remoting::fragment::Defragmenter;
    use crate::remoting::message::{Message, MessageType};

    fn b64(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .unwrap()
    }

    fn hex(text: &str) -> Vec<u8> {
        hex::decode(text.split_whitespace().collect::<String>()).unwrap()
    }

    fn sha256(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn real_windows_receive_chunks_decode_to_the_captured_messages() {
        let chunks: Vec<Vec<u8>> = include_str!("testdata/xpress_windows_chunks.b64")
            .split_whitespace()
            .map(b64)
            .collect();
        assert_eq!(chunks.len(), 6);
        // Each chunk alone, then all of them as one stream.
        let mut joined = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let original = usize::from(u16::from_le_bytes([c[0], c[1]])) + 1;
            let out = decompress_stream(c, MAX_CHUNK).unwrap();
            assert_eq!(out.len(), original, "chunk {i}");
            joined.extend_from_slice(c);
        }
        let stream = decompress_stream(&joined, 1 << 20).unwrap();
        assert_eq!(stream.len(), 131_351);
        assert_eq!(
            sha256(&stream),
            "df480909b3df7f870b5c40b9291fd50a1188b2008e69e0fd4dee758256c62b80"
        );
        let messages: Vec<Message> = Defragmenter::default()
            .push(&stream)
            .unwrap()
            .iter()
            .map(|m| Message::decode(m).unwrap())
            .collect();
        assert_eq!(messages.len(), 2);
        let expected = format!("<S>{}</S>", "hi".repeat(65_536));
        assert_eq!(messages[0].xml().unwrap(), expected);
        assert_eq!(messages[1].message_type, MessageType::PipelineState);
        assert!(
            messages[1]
                .xml()
                .unwrap()
                .contains("<I32 N=\"PipelineState\">4</I32>")
        );
    }

    #[test]
    fn ms_xca_examples_decode() {
        let abc = hex(include_str!("testdata/xpress_ms_xca_abc.hex"));
        assert_eq!(decompress(&abc, 300).unwrap(), b"abc".repeat(100));
        let alphabet = hex(include_str!("testdata/xpress_ms_xca_alphabet.hex"));
        assert_eq!(
            decompress(&alphabet, 26).unwrap(),
            b"abcdefghijklmnopqrstuvwxyz"
        );
    }

    #[test]
    fn chunk_whose_last_symbols_are_in_the_buffered_bits_decodes_fully() {
        let chunk = b64(include_str!("testdata/xpress_tricky_chunk.b64"));
        let original = b64(include_str!("testdata/xpress_tricky_original.b64"));
        let out = decompress_stream(&chunk, MAX_CHUNK).unwrap();
        assert_eq!(out.len(), 398);
        assert_eq!(out, original);
        assert_eq!(
            sha256(&out),
            "36fd36eb338985ca2757ef74d266571a04cd5202679b653f343181e6f6a30c61"
        );
    }

    #[test]
    fn stored_chunks_round_trip_at_the_64k_boundary() {
        for len in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let stored = store_stream(&data);
            assert_eq!(stored.len(), len + 4 * len.div_ceil(MAX_CHUNK));
            assert_eq!(decompress_stream(&stored, usize::MAX).unwrap(), data);
        }
        assert_eq!(&store_stream(b"ab")[..4], &[1, 0, 1, 0]);
    }

    #[test]
    fn malformed_streams_are_typed_errors() {
        assert_eq!(
            decompress_stream(&[1, 0, 1], 100),
            Err(XpressError::Truncated)
        );
        assert_eq!(
            decompress_stream(&[1, 0, 1, 0, b'a'], 100),
            Err(XpressError::Truncated)
        );
        assert_eq!(
            decompress_stream(&store_stream(&[0; 100]), 99),
            Err(XpressError::TooLarge { limit: 99 })
        );
        assert_eq!(
            decompress_stream(&[0, 0, 1, 0, 1, 2], 100),
            Err(XpressError::CompressedLarger {
                chunk: 0,
                original: 1,
                compressed: 2
            })
        );
        // 300 original bytes, 260 compressed: a table with no codes.
        let mut empty_table = vec![0x2B, 0x01, 0x03, 0x01];
        empty_table.extend(vec![0; 260]);
        assert_eq!(
            decompress_stream(&empty_table, 1000),
            Err(XpressError::InvalidTable {
                chunk: 0,
                reason: "no symbol has a code"
            })
        );
        // Every symbol of length 1: over-subscribed.
        let mut over = vec![0x2B, 0x01, 0x03, 0x01];
        over.extend(vec![0x11; 256]);
        over.extend(vec![0; 4]);
        assert!(matches!(
            decompress_stream(&over, 1000),
            Err(XpressError::InvalidTable { .. })
        ));
        // Codes: literal 0 = `0`, match symbol 256 (length 3, offset 1) = `1`.
        let mut table = vec![0u8; 256];
        table[0] = 0x01;
        table[128] = 0x01;
        // A match as the very first symbol reaches before the data.
        let mut first_match = table.clone();
        first_match.extend([0x00, 0x80, 0, 0]);
        assert_eq!(
            decompress(&first_match, 10),
            Err(XpressError::BadOffset {
                chunk: 0,
                offset: 1,
                position: 0
            })
        );
        // Literal, then a 3-byte match that would run past a 3-byte original.
        let mut overrun = table.clone();
        overrun.extend([0x00, 0x40, 0, 0]);
        assert_eq!(decompress(&overrun, 4).unwrap(), [0, 0, 0, 0]);
        assert_eq!(
            decompress(&overrun, 3),
            Err(XpressError::BadLength {
                chunk: 0,
                length: 3,
                position: 1,
                original: 3
            })
        );
        // Only one 1-bit code: the other half of the code space is undefined.
        let mut half = vec![0u8; 256];
        half[0] = 0x01;
        half.extend([0x00, 0x80, 0, 0]);
        assert_eq!(
            decompress(&half, 2),
            Err(XpressError::InvalidCode {
                chunk: 0,
                position: 0
            })
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decompress_stream(&data, 1 << 20);
        }

        #[test]
        fn decoder_never_panics_on_mutated_real_chunks(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            original in 1usize..70_000,
        ) {
            let mut chunk = b64(include_str!("testdata/xpress_tricky_chunk.b64"));
            for (at, byte) in flips {
                let len = chunk.len();
                chunk[at % len] = byte;
            }
            let _ = decompress_stream(&chunk, 1 << 20);
            let _ = decompress(&chunk[4..], original);
        }

        #[test]
        fn stored_streams_round_trip(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(decompress_stream(&store_stream(&data), 3000).unwrap(), data);
        }
    }
}
