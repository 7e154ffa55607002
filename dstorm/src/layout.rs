//! Where everything lives inside a segment. Pure arithmetic shared by the
//! writer (which computes offsets in a peer's segment) and the reader.
//!
//! ```text
//! [control block: 128 B][peer words: world x 16 B, padded to 64][queue of sender s0][queue of s1]...
//! peer words of rank p = [ack u64][bell u32][unused u32]
//! queue = depth slots; slot = [header 64 B][payload, padded to 8][trailer 8 B], padded to 64
//! ```
//! Everything a peer `p` may write into a segment is its queue (if it is a
//! sender) and its own 16 bytes of peer words: on verbs each is a memory
//! region of its own, so `p` cannot touch the control block, another
//! sender's queue or another peer's words.
//! The trailer follows the payload actually written, so a short update is one
//! contiguous write of `64 + round8(len) + 8` bytes.

use crate::wire::{HEADER_BYTES, TRAILER_BYTES};

/// Bytes of the control block at the start of every segment.
pub const CONTROL_BYTES: usize = 128;
/// Bytes of each peer's words (its ack word and its doorbell word).
pub const PEER_WORDS_BYTES: usize = 16;
/// Where a peer's doorbell word lies within its words.
pub const PEER_BELL_AT: usize = 8;
/// Alignment of slots (a cache line).
pub const SLOT_ALIGN: usize = 64;

const fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Rounds a payload length up to whole 8-byte words.
pub const fn pad8(len: usize) -> usize {
    round_up(len, 8)
}

/// The layout of one rank's segment for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Largest payload a slot holds.
    pub capacity: usize,
    /// Slots per sender queue.
    pub depth: usize,
    /// Bytes per slot.
    pub slot_bytes: usize,
    /// Ranks allowed to write into this segment, ascending.
    pub senders: Vec<usize>,
    /// World size (length of the ack table).
    pub world: usize,
    /// Offset of the first queue.
    pub queues_offset: usize,
    /// Total size in bytes.
    pub total: usize,
}

impl Layout {
    /// The layout for `senders` (any order, deduplicated here).
    pub fn new(capacity: usize, depth: usize, mut senders: Vec<usize>, world: usize) -> Layout {
        senders.sort_unstable();
        senders.dedup();
        let slot_bytes = round_up(HEADER_BYTES + pad8(capacity) + TRAILER_BYTES, SLOT_ALIGN);
        let queues_offset = round_up(CONTROL_BYTES + PEER_WORDS_BYTES * world, SLOT_ALIGN);
        let total = queues_offset + senders.len() * depth * slot_bytes;
        Layout {
            capacity,
            depth,
            slot_bytes,
            senders,
            world,
            queues_offset,
            total,
        }
    }

    /// Index of `sender`'s queue, if it may write here.
    pub fn queue_index(&self, sender: usize) -> Option<usize> {
        self.senders.binary_search(&sender).ok()
    }

    /// Offset of slot `slot` of queue `queue`.
    pub fn slot_offset(&self, queue: usize, slot: usize) -> usize {
        self.queues_offset + (queue * self.depth + slot) * self.slot_bytes
    }

    /// Offset of the slot that sequence number `seq` of `queue` uses.
    pub fn seq_offset(&self, queue: usize, seq: u64) -> usize {
        self.slot_offset(queue, (seq % self.depth as u64) as usize)
    }

    /// Offset of `peer`'s words: the ack word in which it reports what it
    /// consumed of ours, then the doorbell word it stores into after a
    /// remote write (verbs), [`PEER_WORDS_BYTES`] in all.
    pub fn ack_offset(&self, peer: usize) -> usize {
        CONTROL_BYTES + PEER_WORDS_BYTES * peer
    }

    /// Offset of `peer`'s doorbell word (u32).
    pub fn bell_offset(&self, peer: usize) -> usize {
        self.ack_offset(peer) + PEER_BELL_AT
    }

    /// Offset and length of queue `queue` (all its slots).
    pub fn queue_range(&self, queue: usize) -> (usize, usize) {
        (self.slot_offset(queue, 0), self.depth * self.slot_bytes)
    }

    /// Offset of a slot's trailer for a payload of `len` bytes.
    pub fn trailer_offset(slot_offset: usize, len: usize) -> usize {
        slot_offset + HEADER_BYTES + pad8(len)
    }

    /// If `offset` is the start of one of `sender`'s slots, its slot index.
    pub fn slot_of(&self, sender: usize, offset: usize) -> Option<usize> {
        let q = self.queue_index(sender)?;
        let start = self.slot_offset(q, 0);
        let rel = offset.checked_sub(start)?;
        if !rel.is_multiple_of(self.slot_bytes) || rel / self.slot_bytes >= self.depth {
            return None;
        }
        Some(rel / self.slot_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_disjoint_and_inside_the_segment() {
        for cap in [1usize, 7, 8, 63, 64, 1000, 1 << 20] {
            let l = Layout::new(cap, 3, vec![3, 0, 2, 3], 5);
            assert_eq!(l.senders, vec![0, 2, 3]);
            let mut last_end = l.queues_offset;
            for q in 0..3 {
                for s in 0..3 {
                    let off = l.slot_offset(q, s);
                    assert_eq!(off % SLOT_ALIGN, 0);
                    assert!(off >= last_end);
                    let end = Layout::trailer_offset(off, cap) + TRAILER_BYTES;
                    assert!(end <= off + l.slot_bytes);
                    last_end = off + l.slot_bytes;
                }
            }
            assert_eq!(last_end, l.total);
            assert!(l.ack_offset(4) + PEER_WORDS_BYTES <= l.queues_offset);
            assert_eq!(l.bell_offset(4), l.ack_offset(4) + 8);
            for q in 0..3 {
                let (off, len) = l.queue_range(q);
                assert_eq!(off, l.slot_offset(q, 0));
                assert_eq!(off + len, l.slot_offset(q, 2) + l.slot_bytes);
            }
        }
    }

    #[test]
    fn slot_of_accepts_only_the_senders_own_slot_starts() {
        let l = Layout::new(100, 2, vec![1, 4], 6);
        let q4 = l.queue_index(4).unwrap();
        assert_eq!(l.slot_of(4, l.slot_offset(q4, 1)), Some(1));
        assert_eq!(l.slot_of(4, l.slot_offset(q4, 1) + 8), None);
        assert_eq!(l.slot_of(1, l.slot_offset(q4, 0)), None);
        assert_eq!(l.slot_of(2, l.slot_offset(0, 0)), None);
        assert_eq!(l.slot_of(4, l.total), None);
        assert_eq!(l.slot_of(4, 0), None);
        assert_eq!(l.seq_offset(q4, 5), l.slot_offset(q4, 1));
    }
}
