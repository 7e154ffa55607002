//! Byte layouts that cross process boundaries: the 64-byte slot header and
//! trailer of a receive queue, and the 64-byte frame header of the tcp
//! transport. Pure encoding and decoding, no I/O; every decoder validates and
//! returns a typed error, never panics.

/// Size of a slot header and of a frame header.
pub const HEADER_BYTES: usize = 64;
/// Size of a slot trailer (the sequence number again).
pub const TRAILER_BYTES: usize = 8;
/// Magic of a slot header ("MALT", little-endian).
pub const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"MALT");
/// Magic of a tcp frame header ("MLTF", little-endian).
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"MLTF");
/// Format version of slots and frames.
pub const VERSION: u16 = 1;

/// Why bytes from outside were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than a header.
    #[error("short header: {0} bytes")]
    Short(usize),
    /// Wrong magic number.
    #[error("bad magic {0:#010x}")]
    Magic(u32),
    /// Unsupported format version.
    #[error("unsupported version {0}")]
    Version(u16),
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    Kind(u16),
    /// Reserved bytes are not zero.
    #[error("reserved bytes are not zero")]
    Reserved,
}

/// The header of one receive-queue slot. Written before the payload; the
/// trailer after the payload repeats `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotHeader {
    /// Per-queue sequence number, from 1; 0 means the slot was never written.
    pub seq: u64,
    /// Group epoch of the writer.
    pub epoch: u32,
    /// Rank of the writer.
    pub sender: u32,
    /// The writer's iteration (application clock).
    pub iteration: u64,
    /// Payload length in bytes.
    pub len: u64,
    /// Payload checksum (tcp path; 0 where the transport cannot corrupt).
    pub checksum: u64,
    /// Object id.
    pub object: u32,
}

impl SlotHeader {
    /// The header as eight little-endian words, the unit in which it is
    /// stored in shared memory.
    pub fn to_words(&self) -> [u64; 8] {
        [
            u64::from(SLOT_MAGIC) | (u64::from(VERSION) << 32),
            self.seq,
            u64::from(self.epoch) | (u64::from(self.sender) << 32),
            self.iteration,
            self.len,
            self.checksum,
            u64::from(self.object),
            0,
        ]
    }

    /// Decodes eight words; rejects wrong magic, version or reserved bits.
    pub fn from_words(w: &[u64; 8]) -> Result<SlotHeader, WireError> {
        let magic = w[0] as u32;
        if magic != SLOT_MAGIC {
            return Err(WireError::Magic(magic));
        }
        let version = (w[0] >> 32) as u16;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        if (w[0] >> 48) != 0 || (w[6] >> 32) != 0 || w[7] != 0 {
            return Err(WireError::Reserved);
        }
        Ok(SlotHeader {
            seq: w[1],
            epoch: w[2] as u32,
            sender: (w[2] >> 32) as u32,
            iteration: w[3],
            len: w[4],
            checksum: w[5],
            object: w[6] as u32,
        })
    }
}

/// What a tcp frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum FrameKind {
    /// First frame on a connection: payload is the job token.
    Hello = 1,
    /// A slot write: payload is the slot's data, `offset` the slot's offset.
    Slot = 2,
    /// An 8-byte word write (acknowledgements, clocks): value in `seq`.
    Word = 3,
}

/// The fixed header in front of every tcp frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: FrameKind,
    /// Group epoch of the sender.
    pub epoch: u32,
    /// Rank of the sender.
    pub sender: u32,
    /// Target object (Slot, Word); world size (Hello).
    pub object: u32,
    /// Byte offset inside the target segment.
    pub offset: u64,
    /// Payload bytes that follow the header.
    pub len: u64,
    /// Slot sequence number, or the word's value.
    pub seq: u64,
    /// The sender's iteration.
    pub iteration: u64,
    /// xxh3 of the payload.
    pub checksum: u64,
}

impl FrameHeader {
    /// Encodes into exactly 64 bytes.
    pub fn encode(&self, out: &mut [u8; HEADER_BYTES]) {
        out[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(self.kind as u16).to_le_bytes());
        out[8..12].copy_from_slice(&self.epoch.to_le_bytes());
        out[12..16].copy_from_slice(&self.sender.to_le_bytes());
        out[16..20].copy_from_slice(&self.object.to_le_bytes());
        out[20..24].copy_from_slice(&0u32.to_le_bytes());
        out[24..32].copy_from_slice(&self.offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.len.to_le_bytes());
        out[40..48].copy_from_slice(&self.seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.iteration.to_le_bytes());
        out[56..64].copy_from_slice(&self.checksum.to_le_bytes());
    }

    /// Decodes and checks magic, version, kind and reserved bytes. Semantic
    /// checks (epoch, sender, bounds) belong to the receiver, which knows the
    /// segment.
    pub fn decode(b: &[u8]) -> Result<FrameHeader, WireError> {
        if b.len() < HEADER_BYTES {
            return Err(WireError::Short(b.len()));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let magic = u32_at(0);
        if magic != FRAME_MAGIC {
            return Err(WireError::Magic(magic));
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let kind = match u16_at(6) {
            1 => FrameKind::Hello,
            2 => FrameKind::Slot,
            3 => FrameKind::Word,
            k => return Err(WireError::Kind(k)),
        };
        if u32_at(20) != 0 {
            return Err(WireError::Reserved);
        }
        Ok(FrameHeader {
            kind,
            epoch: u32_at(8),
            sender: u32_at(12),
            object: u32_at(16),
            offset: u64_at(24),
            len: u64_at(32),
            seq: u64_at(40),
            iteration: u64_at(48),
            checksum: u64_at(56),
        })
    }
}

/// Checksum of payload bytes (xxh3, 64-bit). The implementation picks its
/// SIMD width at run time (AVX2 where the CPU has it), so a portable build
/// still hashes at about the speed of memcpy.
pub fn checksum(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// The bytes of one update, in two parts written back to back: a `head`
/// (a format header, say) and a `body`. A caller whose header does not sit
/// in front of its data, such as a vector over memory the application owns,
/// sends both without first copying them together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Payload<'a> {
    /// The first bytes.
    pub head: &'a [u8],
    /// The bytes that follow `head`.
    pub body: &'a [u8],
}

impl<'a> Payload<'a> {
    /// `head` followed by `body`.
    pub fn new(head: &'a [u8], body: &'a [u8]) -> Self {
        Payload { head, body }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`checksum`] of the concatenation, without concatenating.
    pub fn checksum(&self) -> u64 {
        if self.head.is_empty() {
            return checksum(self.body);
        }
        use std::hash::Hasher;
        use twox_hash::xxhash3_64::{RawHasher, SecretBuffer};
        // The default seed and secret, on the stack: no allocation per update.
        let mut h = RawHasher::new(SecretBuffer::default());
        h.write(self.head);
        h.write(self.body);
        h.finish()
    }
}

impl<'a> From<&'a [u8]> for Payload<'a> {
    fn from(body: &'a [u8]) -> Self {
        Payload { head: &[], body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> impl Strategy<Value = SlotHeader> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(|(seq, epoch, sender, iteration, len, checksum, object)| {
                SlotHeader {
                    seq,
                    epoch,
                    sender,
                    iteration,
                    len,
                    checksum,
                    object,
                }
            })
    }

    fn frame() -> impl Strategy<Value = FrameHeader> {
        (
            prop_oneof![
                Just(FrameKind::Hello),
                Just(FrameKind::Slot),
                Just(FrameKind::Word)
            ],
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<[u64; 5]>(),
        )
            .prop_map(|(kind, epoch, sender, object, w)| FrameHeader {
                kind,
                epoch,
                sender,
                object,
                offset: w[0],
                len: w[1],
                seq: w[2],
                iteration: w[3],
                checksum: w[4],
            })
    }

    #[test]
    fn a_payloads_checksum_is_that_of_its_concatenation() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in [0, 1, 32, 999, 1000] {
            let p = Payload::new(&bytes[..cut], &bytes[cut..]);
            assert_eq!(p.len(), 1000);
            assert_eq!(p.checksum(), checksum(&bytes), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn slot_header_round_trips(h in header()) {
            prop_assert_eq!(SlotHeader::from_words(&h.to_words()), Ok(h));
        }

        #[test]
        fn slot_header_decoder_never_panics(w in any::<[u64; 8]>()) {
            let _ = SlotHeader::from_words(&w);
        }

        #[test]
        fn frame_header_round_trips(f in frame()) {
            let mut b = [0u8; HEADER_BYTES];
            f.encode(&mut b);
            prop_assert_eq!(FrameHeader::decode(&b), Ok(f));
        }

        #[test]
        fn frame_decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = FrameHeader::decode(&b);
        }

        #[test]
        fn any_flipped_magic_or_version_bit_is_rejected(f in frame(), bit in 0usize..48) {
            let mut b = [0u8; HEADER_BYTES];
            f.encode(&mut b);
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(FrameHeader::decode(&b).is_err());
        }
    }

    #[test]
    fn short_and_bad_frames_are_typed_errors() {
        assert_eq!(FrameHeader::decode(&[0u8; 10]), Err(WireError::Short(10)));
        let mut b = [0u8; HEADER_BYTES];
        FrameHeader {
            kind: FrameKind::Slot,
            epoch: 1,
            sender: 2,
            object: 3,
            offset: 4,
            len: 5,
            seq: 6,
            iteration: 7,
            checksum: 8,
        }
        .encode(&mut b);
        let mut bad = b;
        bad[6] = 9;
        assert_eq!(FrameHeader::decode(&bad), Err(WireError::Kind(9)));
        let mut bad = b;
        bad[21] = 1;
        assert_eq!(FrameHeader::decode(&bad), Err(WireError::Reserved));
    }
}
