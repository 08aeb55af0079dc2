//! PSRP fragments (MS-PSRP 2.2.4): big-endian header, object id, fragment id, start/end flags.
//!
//! A fragment is `u64 ObjectId | u64 FragmentId | u8 flags (S=1, E=2) | u32 length | blob`,
//! all big-endian (unlike the message header inside, which is little-endian). Messages are
//! split so that each *encoded* fragment, header included, fits the caller's budget: the
//! session layer derives that budget from the client's `MaxEnvelopeSize` and packs whole
//! fragments into each ReceiveResponse.
//!
//! The [`Defragmenter`] is the strict half: client ObjectIds need not start at 1 nor be
//! globally unique, so messages are reassembled per ObjectId, and anything that would make
//! the reassembled bytes ambiguous (a fragment out of order, a start fragment with a non-zero
//! id, a continuation with no start) is a typed error rather than a guess. Memory is bounded:
//! each message by `max_message_size`, and the number of half-received messages by
//! [`MAX_PENDING`], and, when the defragmenter is given a [`Charge`], the bytes it buffers
//! count against its owner's memory budget (released as messages complete or the
//! defragmenter is dropped).

use std::collections::HashMap;

use super::memory::{Charge, OverBudget};

/// Length of the fixed fragment header.
pub const HEADER_LEN: usize = 21;

/// Start-fragment flag.
pub const FLAG_START: u8 = 0x01;
/// End-fragment flag.
pub const FLAG_END: u8 = 0x02;

/// Most messages a [`Defragmenter`] holds half-received at once. PowerShell clients send one
/// message at a time per stream; a few interleave (pool and pipeline input). 64 is plenty.
pub const MAX_PENDING: usize = 64;

/// Default message size limit of [`Defragmenter::default`]: far above anything a client
/// sends for a command (the largest real inputs are pipeline objects of a few hundred KiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// A malformed or oversize fragment stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// Fewer than the 21 header bytes.
    #[error("PSRP fragment truncated")]
    Truncated,
    /// The header announces more blob bytes than the input holds.
    #[error(
        "PSRP fragment {object_id}/{fragment_id} announces {announced} bytes but only \
         {available} follow; a fragment must not be split across WS-Man messages"
    )]
    BlobTruncated {
        /// ObjectId of the fragment.
        object_id: u64,
        /// FragmentId of the fragment.
        fragment_id: u64,
        /// BlobLength in the header.
        announced: u32,
        /// Bytes actually left.
        available: usize,
    },
    /// A start fragment with a FragmentId other than 0.
    #[error("PSRP fragment {object_id}/{fragment_id} has the start flag but FragmentId is not 0")]
    StartNotFirst {
        /// ObjectId of the fragment.
        object_id: u64,
        /// FragmentId of the fragment.
        fragment_id: u64,
    },
    /// A continuation fragment for an object that was never started.
    #[error(
        "PSRP fragment {object_id}/{fragment_id} continues an object whose start fragment \
         never arrived"
    )]
    NoStart {
        /// ObjectId of the fragment.
        object_id: u64,
        /// FragmentId of the fragment.
        fragment_id: u64,
    },
    /// A start fragment for an object that is still being received.
    #[error("PSRP object {object_id} started again before its end fragment arrived")]
    Restarted {
        /// ObjectId of the fragment.
        object_id: u64,
    },
    /// A fragment that is not the next one of its object.
    #[error(
        "PSRP object {object_id}: expected fragment {expected}, got {got}; fragments must \
         arrive in order"
    )]
    OutOfOrder {
        /// ObjectId of the fragment.
        object_id: u64,
        /// The FragmentId that should have come next.
        expected: u64,
        /// The FragmentId that came.
        got: u64,
    },
    /// The reassembled message would exceed the limit.
    #[error(
        "PSRP object {object_id} exceeds the {limit}-byte message limit (at least {size} bytes)"
    )]
    TooLarge {
        /// ObjectId of the message.
        object_id: u64,
        /// Bytes it would have reached.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Buffering the fragment would take the owner over their memory budget.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    /// Too many messages are half-received at once.
    #[error(
        "more than {limit} PSRP messages are incomplete at once (object {object_id} would be \
         one more); the client is not sending end fragments"
    )]
    TooManyPending {
        /// ObjectId of the fragment that would exceed the limit.
        object_id: u64,
        /// [`MAX_PENDING`].
        limit: usize,
    },
}

/// One parsed fragment, borrowing its blob from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The message this fragment belongs to.
    pub object_id: u64,
    /// Position within the message, from 0.
    pub fragment_id: u64,
    /// Start flag.
    pub start: bool,
    /// End flag.
    pub end: bool,
    /// The slice of the message.
    pub blob: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Parses the first fragment of `input`; returns it and the bytes after it.
    ///
    /// # Errors
    /// [`FragmentError::Truncated`] or [`FragmentError::BlobTruncated`].
    pub fn parse(input: &'a [u8]) -> Result<(Self, &'a [u8]), FragmentError> {
        if input.len() < HEADER_LEN {
            return Err(FragmentError::Truncated);
        }
        let object_id = u64::from_be_bytes(input[0..8].try_into().expect("8 bytes"));
        let fragment_id = u64::from_be_bytes(input[8..16].try_into().expect("8 bytes"));
        let flags = input[16];
        let announced = u32::from_be_bytes(input[17..21].try_into().expect("4 bytes"));
        let rest = &input[HEADER_LEN..];
        let len = announced as usize;
        if rest.len() < len {
            return Err(FragmentError::BlobTruncated {
                object_id,
                fragment_id,
                announced,
                available: rest.len(),
            });
        }
        let (blob, rest) = rest.split_at(len);
        Ok((
            Self {
                object_id,
                fragment_id,
                start: flags & FLAG_START != 0,
                end: flags & FLAG_END != 0,
                blob,
            },
            rest,
        ))
    }

    /// Appends the wire form to `out`.
    ///
    /// # Panics
    /// If the blob is longer than `u32::MAX` bytes (the header cannot say so).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_header_into(self.blob.len(), out);
        out.extend_from_slice(self.blob);
    }

    /// Appends the header alone, for a blob of `len` bytes the caller places after it.
    ///
    /// # Panics
    /// If `len` is over `u32::MAX` (the header cannot say so).
    pub fn encode_header_into(&self, len: usize, out: &mut Vec<u8>) {
        let len = u32::try_from(len).expect("fragment blobs are far below 4 GiB");
        out.extend_from_slice(&self.object_id.to_be_bytes());
        out.extend_from_slice(&self.fragment_id.to_be_bytes());
        let mut flags = 0;
        if self.start {
            flags |= FLAG_START;
        }
        if self.end {
            flags |= FLAG_END;
        }
        out.push(flags);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Splits one message into fragments whose encoded size (header included) is at most
/// `max_fragment_size` bytes. A budget below 22 bytes is raised to 22 (one byte of data per
/// fragment) so that progress is always made; an empty message is one empty fragment.
pub fn fragment(object_id: u64, message: &[u8], max_fragment_size: usize) -> Vec<Vec<u8>> {
    let chunk = max_fragment_size.max(HEADER_LEN + 1) - HEADER_LEN;
    if message.is_empty() {
        let mut out = Vec::with_capacity(HEADER_LEN);
        Fragment {
            object_id,
            fragment_id: 0,
            start: true,
            end: true,
            blob: &[],
        }
        .encode_into(&mut out);
        return vec![out];
    }
    let count = message.len().div_ceil(chunk);
    message
        .chunks(chunk)
        .enumerate()
        .map(|(i, blob)| {
            let mut out = Vec::with_capacity(HEADER_LEN + blob.len());
            Fragment {
                object_id,
                fragment_id: i as u64,
                start: i == 0,
                end: i + 1 == count,
                blob,
            }
            .encode_into(&mut out);
            out
        })
        .collect()
}

/// A message being reassembled.
#[derive(Debug)]
struct Partial {
    next_fragment_id: u64,
    data: Vec<u8>,
}

/// Reassembles messages from fragments that may arrive split across several blobs.
#[derive(Debug)]
pub struct Defragmenter {
    max_message_size: usize,
    pending: HashMap<u64, Partial>,
    charge: Option<Charge>,
}

impl Default for Defragmenter {
    /// A defragmenter with [`DEFAULT_MAX_MESSAGE_SIZE`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl Defragmenter {
    /// A defragmenter refusing messages larger than `max_message_size`.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            pending: HashMap::new(),
            charge: None,
        }
    }

    /// A defragmenter whose buffered bytes are charged to `charge`'s budget.
    pub fn with_charge(max_message_size: usize, charge: Charge) -> Self {
        Self {
            charge: Some(charge),
            ..Self::new(max_message_size)
        }
    }

    /// Bytes buffered in half-received messages.
    pub fn buffered(&self) -> usize {
        self.pending.values().map(|p| p.data.len()).sum()
    }

    fn charge(&mut self, bytes: usize) -> Result<(), FragmentError> {
        match &mut self.charge {
            Some(c) => Ok(c.grow(bytes, "a half-received PSRP message")?),
            None => Ok(()),
        }
    }

    /// Drops a half-received message and releases its bytes.
    fn forget(&mut self, object_id: u64) -> Option<Vec<u8>> {
        let partial = self.pending.remove(&object_id)?;
        if let Some(c) = &mut self.charge {
            c.shrink(partial.data.len());
        }
        Some(partial.data)
    }

    /// Feeds one decoded blob (one or more fragments); returns the messages it completed.
    ///
    /// # Errors
    /// [`FragmentError`] for malformed input or a message over the limit. After an error the
    /// stream is out of sync: the caller should fail the pool or pipeline (MS-PSRP 3.1.5.1.2).
    pub fn push(&mut self, blob: &[u8]) -> Result<Vec<Vec<u8>>, FragmentError> {
        let mut done = Vec::new();
        let mut rest = blob;
        while !rest.is_empty() {
            let (frag, after) = Fragment::parse(rest)?;
            rest = after;
            if let Some(message) = self.accept(frag)? {
                done.push(message);
            }
        }
        Ok(done)
    }

    /// Messages started but not finished.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn accept(&mut self, frag: Fragment<'_>) -> Result<Option<Vec<u8>>, FragmentError> {
        let Fragment {
            object_id,
            fragment_id,
            start,
            end,
            blob,
        } = frag;
        let limit = self.max_message_size;
        if start {
            if fragment_id != 0 {
                return Err(FragmentError::StartNotFirst {
                    object_id,
                    fragment_id,
                });
            }
            if self.pending.contains_key(&object_id) {
                return Err(FragmentError::Restarted { object_id });
            }
            if blob.len() > limit {
                return Err(FragmentError::TooLarge {
                    object_id,
                    size: blob.len(),
                    limit,
                });
            }
            if end {
                return Ok(Some(blob.to_vec()));
            }
            if self.pending.len() >= MAX_PENDING {
                return Err(FragmentError::TooManyPending {
                    object_id,
                    limit: MAX_PENDING,
                });
            }
            self.charge(blob.len())?;
            self.pending.insert(
                object_id,
                Partial {
                    next_fragment_id: 1,
                    data: blob.to_vec(),
                },
            );
            return Ok(None);
        }
        let Some(partial) = self.pending.get(&object_id) else {
            return Err(FragmentError::NoStart {
                object_id,
                fragment_id,
            });
        };
        let (expected, have) = (partial.next_fragment_id, partial.data.len());
        if fragment_id != expected {
            self.forget(object_id);
            return Err(FragmentError::OutOfOrder {
                object_id,
                expected,
                got: fragment_id,
            });
        }
        let size = have.saturating_add(blob.len());
        if size > limit {
            self.forget(object_id);
            return Err(FragmentError::TooLarge {
                object_id,
                size,
                limit,
            });
        }
        if let Err(e) = self.charge(blob.len()) {
            self.forget(object_id);
            return Err(e);
        }
        let partial = self
            .pending
            .get_mut(&object_id)
            .expect("checked above and not removed since");
        partial.data.extend_from_slice(blob);
        partial.next_fragment_id += 1;
        if end {
            return Ok(self.forget(object_id));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Issue 12: fragments without the end bit pinned memory until the process died. They are
    /// charged to the owner's budget, refused past it, and released when the messages end or
    /// the defragmenter is dropped.
    #[test]
    fn half_received_messages_are_charged_and_released_issue_12() {
        use crate::remoting::memory::MemoryBudget;
        let budget = MemoryBudget::new("ops", 100_000);
        let start = |id: u64, len: usize| {
            let mut out = Vec::new();
            Fragment {
                object_id: id,
                fragment_id: 0,
                start: true,
                end: false,
                blob: &vec![7; len],
            }
            .encode_into(&mut out);
            out
        };
        let mut d = Defragmenter::with_charge(1 << 20, budget.empty());
        d.push(&start(1, 40_000)).unwrap();
        d.push(&start(2, 40_000)).unwrap();
        assert_eq!(budget.used(), 80_000);
        let err = d.push(&start(3, 40_000)).unwrap_err();
        assert!(matches!(err, FragmentError::OverBudget(_)), "{err}");
        assert!(err.to_string().contains("Remove-PSSession"), "{err}");
        assert_eq!(d.pending(), 2);
        // Finishing message 1 hands it out and releases its bytes.
        let mut end = Vec::new();
        Fragment {
            object_id: 1,
            fragment_id: 1,
            start: false,
            end: true,
            blob: b"!",
        }
        .encode_into(&mut end);
        assert_eq!(d.push(&end).unwrap()[0].len(), 40_001);
        assert_eq!(budget.used(), 40_000);
        drop(d);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn single_fragment_layout_matches_reference_11_5() {
        let msg = vec![0xAB; 103];
        let frags = fragment(5, &msg, 32 * 1024);
        assert_eq!(frags.len(), 1);
        let f = &frags[0];
        assert_eq!(&f[0..8], &[0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&f[8..16], &[0; 8]);
        assert_eq!(f[16], 0x03);
        assert_eq!(&f[17..21], &[0, 0, 0, 0x67]);
        assert_eq!(f.len(), 21 + 103);
    }

    #[test]
    fn big_message_splits_within_budget_and_reassembles() {
        let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let frags = fragment(7, &msg, 1000);
        assert_eq!(frags.len(), 100_000usize.div_ceil(979));
        assert!(frags.iter().all(|f| f.len() <= 1000));
        assert_eq!(frags[0][16], FLAG_START);
        assert_eq!(frags.last().unwrap()[16], FLAG_END);
        assert!(frags[1..frags.len() - 1].iter().all(|f| f[16] == 0));
        let mut d = Defragmenter::new(1 << 20);
        let mut out = Vec::new();
        for f in &frags {
            out.extend(d.push(f).unwrap());
        }
        assert_eq!(out, vec![msg]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn empty_message_is_one_empty_fragment() {
        let frags = fragment(1, &[], 100);
        assert_eq!(
            frags,
            vec![vec![
                0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0
            ]]
        );
        assert_eq!(
            Defragmenter::default().push(&frags[0]).unwrap(),
            vec![Vec::<u8>::new()]
        );
    }

    #[test]
    fn tiny_budget_still_makes_progress() {
        let frags = fragment(1, b"abc", 0);
        assert_eq!(frags.len(), 3);
        assert!(frags.iter().all(|f| f.len() == 22));
    }

    #[test]
    fn interleaved_objects_and_several_fragments_per_blob() {
        let a = fragment(1, b"aaaaaaaaaa", 24);
        let b = fragment(2, b"bbbbbb", 24);
        let mut blob = Vec::new();
        blob.extend_from_slice(&a[0]);
        blob.extend_from_slice(&b[0]);
        blob.extend_from_slice(&a[1]);
        let mut d = Defragmenter::default();
        assert!(d.push(&blob).unwrap().is_empty());
        assert_eq!(d.pending(), 2);
        let mut blob = Vec::new();
        blob.extend_from_slice(&b[1]);
        for f in &a[2..] {
            blob.extend_from_slice(f);
        }
        assert_eq!(
            d.push(&blob).unwrap(),
            vec![b"bbbbbb".to_vec(), b"aaaaaaaaaa".to_vec()]
        );
    }

    #[test]
    fn protocol_violations_are_typed_errors() {
        let frags = fragment(9, b"abcdef", 23);
        let mut d = Defragmenter::default();
        assert_eq!(
            d.push(&frags[1]),
            Err(FragmentError::NoStart {
                object_id: 9,
                fragment_id: 1
            })
        );
        d.push(&frags[0]).unwrap();
        assert_eq!(
            d.push(&frags[0]),
            Err(FragmentError::Restarted { object_id: 9 })
        );
        assert_eq!(
            d.push(&frags[2]),
            Err(FragmentError::OutOfOrder {
                object_id: 9,
                expected: 1,
                got: 2
            })
        );
        let mut bad_start = frags[1].clone();
        bad_start[16] = FLAG_START;
        assert_eq!(
            Defragmenter::default().push(&bad_start),
            Err(FragmentError::StartNotFirst {
                object_id: 9,
                fragment_id: 1
            })
        );
        assert_eq!(
            Defragmenter::default().push(&[0; 20]),
            Err(FragmentError::Truncated)
        );
        let mut cut = frags[0].clone();
        cut.pop();
        assert!(matches!(
            Defragmenter::default().push(&cut),
            Err(FragmentError::BlobTruncated {
                announced: 2,
                available: 1,
                ..
            })
        ));
    }

    #[test]
    fn size_and_pending_limits() {
        let frags = fragment(1, &[0; 100], 41);
        let mut d = Defragmenter::new(50);
        d.push(&frags[0]).unwrap();
        d.push(&frags[1]).unwrap();
        assert_eq!(
            d.push(&frags[2]),
            Err(FragmentError::TooLarge {
                object_id: 1,
                size: 60,
                limit: 50
            })
        );
        assert!(matches!(
            Defragmenter::new(10).push(&fragment(2, &[0; 11], 100)[0]),
            Err(FragmentError::TooLarge { size: 11, .. })
        ));
        let mut d = Defragmenter::default();
        for id in 0..MAX_PENDING as u64 {
            d.push(&fragment(id, b"xy", 22)[0]).unwrap();
        }
        assert!(matches!(
            d.push(&fragment(1000, b"xy", 22)[0]),
            Err(FragmentError::TooManyPending {
                object_id: 1000,
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn fragments_round_trip(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..6),
            budget in 22usize..300,
        ) {
            let mut d = Defragmenter::default();
            let mut wire = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                for f in fragment(i as u64 + 1, m, budget) {
                    prop_assert!(f.len() <= budget);
                    wire.extend(f);
                }
            }
            prop_assert_eq!(d.push(&wire).unwrap(), messages);
        }

        #[test]
        fn defragmenter_never_panics(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let mut d = Defragmenter::new(1000);
            for b in blobs {
                let _ = d.push(&b);
            }
        }

        #[test]
        fn defragmenter_survives_garbled_headers(
            seed in proptest::collection::vec(any::<u8>(), 1..300),
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..6),
        ) {
            let mut wire: Vec<u8> = fragment(3, &seed, 40).concat();
            for (at, byte) in flips {
                let len = wire.len();
                wire[at % len] = byte;
            }
            let _ = Defragmenter::new(1 << 16).push(&wire);
        }
    }
}
