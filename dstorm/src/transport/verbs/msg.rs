//! Control messages sent over a peer's queue pair (two-sided SEND), 40
//! bytes, little-endian:
//!
//! ```text
//! [magic "MLTV" u32][kind u16][version u16][object u32][rkey u32][addr u64][len u64]
//! [words_rkey u32][zero u32]
//! ```
//! - `Announce`: this rank's segment of `object` lies at `addr` (`len`
//!   bytes). The receiving peer may write its own queue in it under `rkey`
//!   (0: it is not a sender of this object) and its own peer words under
//!   `words_rkey`, and nothing else: each announcement is for one peer.
//! - `Gone`: this rank destroyed its segment of `object`; the peer stops
//!   writing into it and answers `GoneAck`.
//! - `GoneAck`: every write of the sender into `object` precedes this
//!   message on the connection (so has landed): the memory may be released.

/// Size of an encoded message.
pub(crate) const MSG_BYTES: usize = 40;
const MAGIC: u32 = u32::from_le_bytes(*b"MLTV");
const VERSION: u16 = 2;

/// A control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Msg {
    /// A segment is ready for remote writes.
    Announce {
        /// Object id.
        object: u32,
        /// Remote address of the segment.
        addr: u64,
        /// Its length.
        len: u64,
        /// The remote key of the receiving peer's queue (0: none).
        rkey: u32,
        /// The remote key of the receiving peer's words.
        words_rkey: u32,
    },
    /// A segment is being released.
    Gone {
        /// Object id.
        object: u32,
    },
    /// No more writes into a released segment will come from the sender.
    GoneAck {
        /// Object id.
        object: u32,
    },
}

impl Msg {
    /// The encoding.
    pub fn encode(&self) -> [u8; MSG_BYTES] {
        let (kind, object, rkey, addr, len, words_rkey) = match *self {
            Msg::Announce {
                object,
                addr,
                len,
                rkey,
                words_rkey,
            } => (1u16, object, rkey, addr, len, words_rkey),
            Msg::Gone { object } => (2, object, 0, 0, 0, 0),
            Msg::GoneAck { object } => (3, object, 0, 0, 0, 0),
        };
        let mut b = [0u8; MSG_BYTES];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&kind.to_le_bytes());
        b[6..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&object.to_le_bytes());
        b[12..16].copy_from_slice(&rkey.to_le_bytes());
        b[16..24].copy_from_slice(&addr.to_le_bytes());
        b[24..32].copy_from_slice(&len.to_le_bytes());
        b[32..36].copy_from_slice(&words_rkey.to_le_bytes());
        b
    }

    /// Decodes a received message; `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<Msg> {
        if b.len() != MSG_BYTES {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        if u32_at(0) != MAGIC || u16_at(6) != VERSION {
            return None;
        }
        let object = u32_at(8);
        let (rkey, addr, len) = (u32_at(12), u64_at(16), u64_at(24));
        let words_rkey = u32_at(32);
        if u32_at(36) != 0 {
            return None;
        }
        match u16_at(4) {
            1 => Some(Msg::Announce {
                object,
                addr,
                len,
                rkey,
                words_rkey,
            }),
            2 if (rkey, addr, len, words_rkey) == (0, 0, 0, 0) => Some(Msg::Gone { object }),
            3 if (rkey, addr, len, words_rkey) == (0, 0, 0, 0) => Some(Msg::GoneAck { object }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        for m in [
            Msg::Announce {
                object: 3,
                addr: 0x7f00_1234_5000,
                len: 1 << 20,
                rkey: 0xabcd,
                words_rkey: 0x1234,
            },
            Msg::Gone { object: 9 },
            Msg::GoneAck { object: u32::MAX },
        ] {
            assert_eq!(Msg::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let good = Msg::Gone { object: 1 }.encode();
        assert_eq!(Msg::decode(&good[..MSG_BYTES - 1]), None);
        let mut b = good;
        b[0] ^= 1;
        assert_eq!(Msg::decode(&b), None);
        let mut b = good;
        b[4] = 7;
        assert_eq!(Msg::decode(&b), None);
        let mut b = good;
        b[6..8].copy_from_slice(&(VERSION - 1).to_le_bytes());
        assert_eq!(Msg::decode(&b), None);
        let mut b = good;
        b[20] = 1;
        assert_eq!(Msg::decode(&b), None);
        let mut b = good;
        b[33] = 1;
        assert_eq!(Msg::decode(&b), None);
        let mut b = good;
        b[38] = 1;
        assert_eq!(Msg::decode(&b), None);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Msg::decode(&b);
        }
    }
}
