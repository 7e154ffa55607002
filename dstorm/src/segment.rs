//! Memory that peers write into: a mapping (a shared file for shm, anonymous
//! memory for tcp) plus the slot protocol that makes one-sided writes safe to
//! read without locks.
//!
//! Writer: header words, release fence, payload, trailer (release store).
//! Reader (header-trailer-header): load the header, load the trailer, copy the
//! payload, acquire fence, load the header again. The copy is kept only if the
//! trailer matches the header's sequence number and the header did not change
//! during the copy, so a slot that is being written, or was abandoned half
//! way, is detected as torn and never returned.
//!
//! Peer memory is only ever touched through raw pointers and atomics; no
//! `&[u8]` to it is handed out to safe code.

use crate::layout::{pad8, Layout, PEER_WORDS_BYTES};
use crate::wire::{checksum, Payload, SlotHeader, HEADER_BYTES};
use memmap2::{MmapMut, MmapOptions, MmapRaw};
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Control-block word offsets.
pub(crate) mod ctl {
    pub const MAGIC: usize = 0;
    pub const OWNER: usize = 8; // rank (low 32) | version (high 32)
    pub const PID: usize = 16;
    pub const START_TIME: usize = 24;
    pub const JOB: usize = 32;
    pub const SIZE: usize = 40;
    /// Bumped (never stored) by whoever makes data visible, then futex-woken:
    /// only ever incremented, so a parked reader cannot miss a change.
    pub const DOORBELL: usize = 48; // u32
    pub const WAITERS: usize = 52; // u32
    pub const OBJECT: usize = 56;
    /// The owner's PID namespace (the inode of `/proc/self/ns/pid`; 0:
    /// unknown), so that a process in another namespace sharing the
    /// directory does not take a live owner's pid for a dead one.
    pub const PID_NS: usize = 72;
    pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"MALTSEG1");
}

/// The value a trailer holds for a slot write: a mix of the sequence number
/// and the payload length, so that stale payload bytes that happen to sit
/// where a shorter update's trailer goes are not mistaken for a trailer.
pub(crate) fn trailer_value(seq: u64, len: u64) -> u64 {
    (seq ^ 0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9)
        .rotate_left(29)
        ^ len.wrapping_mul(0x94d0_49bb_1331_11eb)
}

/// What a reader found in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotRead {
    /// Never written.
    Empty,
    /// Being written, abandoned half way, or overwritten during the copy.
    Torn { seq: u64 },
    /// A complete update; its payload is in the output buffer.
    Ok(SlotHeader),
}

/// A mapped region that remote writers may modify at any time.
#[derive(Debug)]
pub(crate) struct Region {
    map: MmapRaw,
    /// Where remote writers (verbs) store into their doorbell words, so that
    /// a reader spinning on them sees new data before the local ring: the
    /// offset of the first word and how many there are, one per peer,
    /// [`PEER_WORDS_BYTES`] apart. Never slept on: their values may repeat.
    bells: Option<(usize, usize)>,
}

// The region is only accessed through atomics and raw-pointer copies, so
// sharing it between threads is as safe as sharing it between processes.
impl Region {
    /// Anonymous zeroed memory (tcp receive segments).
    pub fn anon(len: usize) -> io::Result<Region> {
        let m: MmapMut = MmapOptions::new().len(len.max(1)).map_anon()?;
        Ok(Region {
            map: MmapRaw::from(m),
            bells: None,
        })
    }

    /// A shared mapping of `file`, which must be at least `len` bytes.
    pub fn shared(file: &File, len: usize) -> io::Result<Region> {
        // Populate: fault the pages in now, not on the first writes.
        let map = MmapOptions::new().len(len).populate().map_raw(file)?;
        Ok(Region { map, bells: None })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Makes [`doorbell`](Self::doorbell) also watch the peers' doorbell
    /// words of `layout`, which remote writers store into.
    #[cfg(any(feature = "verbs", test))]
    pub fn watch_bells(&mut self, layout: &crate::layout::Layout) {
        let first = layout.bell_offset(0);
        self.check(first, PEER_WORDS_BYTES * layout.world, 8);
        self.bells = Some((first, layout.world));
    }

    /// Start of the mapping, for registering it with an RDMA device.
    #[cfg(feature = "verbs")]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn check(&self, off: usize, len: usize, align: usize) {
        assert!(
            off.is_multiple_of(align) && off.checked_add(len).is_some_and(|e| e <= self.len()),
            "segment access out of bounds or misaligned: offset {off} length {len} in {}",
            self.len()
        );
    }

    /// The 8-byte word at `off`.
    pub fn word(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: `off` is 8-aligned and inside the mapping (checked above); the
        // mapping is page-aligned, so the address is aligned for AtomicU64,
        // which has the size and alignment of u64. The mapping lives as long
        // as `self`, and every access to shared words goes through atomics.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU64) }
    }

    /// The 4-byte word at `off`.
    pub fn word32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as for `word`, with 4-byte alignment.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const AtomicU32) }
    }

    fn load_header(&self, off: usize) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[1] = self.word(off + 8).load(Ordering::Acquire);
        for (i, slot) in w.iter_mut().enumerate() {
            if i != 1 {
                *slot = self.word(off + 8 * i).load(Ordering::Relaxed);
            }
        }
        w
    }

    fn store_header(&self, off: usize, h: &SlotHeader) {
        let w = h.to_words();
        // The sequence number first: a reader that sees any other word of
        // the new header (after its acquire fence) sees the new sequence
        // number on its second look, and the old trailer no longer matches
        // it. Stored last, a reader could pair the old sequence number (and
        // so the old, intact trailer) with the new iteration or length.
        self.word(off + 8).store(w[1], Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, v) in w.iter().enumerate() {
            if i != 1 {
                self.word(off + 8 * i).store(*v, Ordering::Relaxed);
            }
        }
        // Everything stored after this fence (payload, trailer) is ordered
        // after the new header for any reader that observes it.
        fence(Ordering::Release);
    }

    fn publish_trailer(&self, off: usize, h: &SlotHeader) {
        let t = Layout::trailer_offset(off, h.len as usize);
        self.word(t)
            .store(trailer_value(h.seq, h.len), Ordering::Release);
    }

    /// Writes a whole slot (header, payload, trailer) at `off` in the
    /// protocol's order.
    pub fn store_slot(&self, off: usize, h: &SlotHeader, payload: Payload<'_>) {
        self.store_slot_torn(off, h, payload);
        self.publish_trailer(off, h);
    }

    /// Writes header and payload but no trailer, as a writer that died in
    /// the middle of a write would (the first part of [`store_slot`], and
    /// a test hook on its own).
    ///
    /// [`store_slot`]: Self::store_slot
    pub fn store_slot_torn(&self, off: usize, h: &SlotHeader, payload: Payload<'_>) {
        debug_assert_eq!(h.len as usize, payload.len());
        self.check(off, HEADER_BYTES + pad8(payload.len()) + 8, 64);
        self.store_header(off, h);
        let mut at = off + HEADER_BYTES;
        for part in [payload.head, payload.body] {
            // SAFETY: the destination range is inside the mapping (the whole
            // payload was checked above, and the parts follow each other in
            // it) and does not overlap `part`, which is local memory. Only
            // this writer stores into this slot (per-sender queues);
            // concurrent readers use the header-trailer-header check and
            // discard what they copied if it changed underneath them.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.map.as_mut_ptr().add(at),
                    part.len(),
                );
            }
            at += part.len();
        }
    }

    /// The tcp receive path: stores the header, reads the payload straight
    /// from `src` into the slot, and publishes the trailer only if the
    /// payload's checksum matches. Returns whether it did.
    pub fn recv_slot(&self, off: usize, h: &SlotHeader, src: &mut impl Read) -> io::Result<bool> {
        let len = h.len as usize;
        self.check(off, HEADER_BYTES + pad8(len) + 8, 64);
        self.store_header(off, h);
        // SAFETY: the range is inside the mapping (checked above). This
        // receive thread is the only writer of the sender's queue (one
        // connection per sender is served by one thread, and frames are
        // validated to target the sender's own slots), and local readers copy
        // it only through raw pointers and discard the copy unless the
        // trailer, written after this slice is dropped, matches.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(off + HEADER_BYTES), len)
        };
        src.read_exact(dst)?;
        if checksum(dst) != h.checksum {
            return Ok(false);
        }
        self.publish_trailer(off, h);
        Ok(true)
    }

    /// Reads the slot at `off` into `out` if it is complete and consistent.
    pub fn read_slot(&self, off: usize, capacity: usize, out: &mut [u8]) -> SlotRead {
        let h1 = self.load_header(off);
        let seq = h1[1];
        if seq == 0 {
            return SlotRead::Empty;
        }
        let len = h1[4];
        if len > capacity as u64 || len as usize > out.len() {
            return SlotRead::Torn { seq };
        }
        let len = len as usize;
        let t = self
            .word(Layout::trailer_offset(off, len))
            .load(Ordering::Acquire);
        if t != trailer_value(seq, len as u64) {
            return SlotRead::Torn { seq };
        }
        self.check(off + HEADER_BYTES, len, 1);
        // SAFETY: the source range is inside the mapping (checked above) and
        // `out` is local memory of at least `len` bytes. A concurrent writer
        // may change the source during the copy; the header re-check below
        // detects that and the copy is then discarded.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(off + HEADER_BYTES),
                out.as_mut_ptr(),
                len,
            );
        }
        fence(Ordering::Acquire);
        let h2 = self.load_header(off);
        if h1 != h2 {
            return SlotRead::Torn { seq };
        }
        match SlotHeader::from_words(&h1) {
            Ok(h) => SlotRead::Ok(h),
            Err(_) => SlotRead::Torn { seq },
        }
    }

    /// The header of the slot at `off` if it holds a complete update, without
    /// copying the payload.
    pub fn complete_header(&self, off: usize, capacity: usize) -> Option<SlotHeader> {
        self.complete_words(off, capacity)
            .and_then(|h1| SlotHeader::from_words(&h1).ok())
    }

    /// The raw header words of the slot at `off` if it holds a complete
    /// update (its trailer matches), for [`read_part`](Self::read_part).
    pub fn complete_words(&self, off: usize, capacity: usize) -> Option<[u64; 8]> {
        let h1 = self.load_header(off);
        let (seq, len) = (h1[1], h1[4]);
        if seq == 0 || len > capacity as u64 {
            return None;
        }
        let t = self
            .word(Layout::trailer_offset(off, len as usize))
            .load(Ordering::Acquire);
        fence(Ordering::Acquire);
        if t != trailer_value(seq, len) || self.load_header(off) != h1 {
            return None;
        }
        Some(h1)
    }

    /// Copies `out.len()` payload bytes, from payload offset `from`, of the
    /// slot at `off`, which [`complete_words`](Self::complete_words) found
    /// complete with header words `h1`. Returns whether the header still
    /// reads `h1` after the copy, i.e. whether the bytes copied are that
    /// update's: the trailer matched before, so the update was whole, and a
    /// writer starting another one stores its header before any payload
    /// byte (the header-trailer-header check, applied to a part).
    pub fn read_part(&self, off: usize, h1: &[u64; 8], from: usize, out: &mut [u8]) -> bool {
        let len = h1[4] as usize;
        let in_update = from.checked_add(out.len()).is_some_and(|end| end <= len);
        if !in_update {
            return false;
        }
        self.check(off + HEADER_BYTES + from, out.len(), 1);
        // SAFETY: the source range is inside the mapping (checked above) and
        // `out` is local memory. A concurrent writer may change the source
        // during the copy; the header re-check below detects that and the
        // caller then discards the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(off + HEADER_BYTES + from),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        fence(Ordering::Acquire);
        self.load_header(off) == *h1
    }

    /// The sequence number in the header at `off` (0 if never written).
    pub fn peek_seq(&self, off: usize) -> u64 {
        self.word(off + 8).load(Ordering::Acquire)
    }

    /// Bumps the doorbell and wakes parked readers.
    pub fn ring(&self) {
        let bell = self.word32(ctl::DOORBELL);
        bell.fetch_add(1, Ordering::SeqCst);
        if self.word32(ctl::WAITERS).load(Ordering::SeqCst) != 0 {
            futex_wake(bell);
        }
    }

    /// A snapshot of the doorbell (low 32 bits) and of the sum of the words
    /// remote writers store into (high 32 bits): it changes whenever the
    /// doorbell or one of those words does. (Each writer stores a counter of
    /// its own, so two writers' changes cannot cancel out between looks
    /// short of 2^32 writes.)
    pub fn doorbell(&self) -> u64 {
        let local = self.word32(ctl::DOORBELL).load(Ordering::SeqCst);
        let remote = match self.bells {
            None => 0,
            Some((first, n)) => (0..n).fold(0u32, |sum, i| {
                sum.wrapping_add(
                    self.word32(first + i * PEER_WORDS_BYTES)
                        .load(Ordering::SeqCst),
                )
            }),
        };
        u64::from(remote) << 32 | u64::from(local)
    }

    /// Parks until the doorbell has been rung since the snapshot `seen` was
    /// taken, or `timeout` passes. Only the rung (monotonic) half counts
    /// here: a remotely stored value may come back to an earlier one.
    pub fn park(&self, seen: u64, timeout: Duration) {
        let seen = seen as u32;
        let waiters = self.word32(ctl::WAITERS);
        let bell = self.word32(ctl::DOORBELL);
        waiters.fetch_add(1, Ordering::SeqCst);
        if bell.load(Ordering::SeqCst) == seen {
            futex_wait(bell, seen, timeout);
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the u32 behind `word`, which is valid and
    // aligned for the duration of the call; `ts` outlives the call. Shared
    // (non-private) futexes work across processes mapping the same file.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address of `word` as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u64, len: usize) -> SlotHeader {
        SlotHeader {
            seq,
            epoch: 1,
            sender: 2,
            iteration: 7,
            len: len as u64,
            checksum: 0,
            object: 0,
        }
    }

    #[test]
    fn a_complete_slot_reads_back_and_a_torn_one_does_not() {
        let r = Region::anon(4096).unwrap();
        let mut out = vec![0u8; 1024];
        assert_eq!(r.read_slot(256, 1000, &mut out), SlotRead::Empty);
        r.store_slot(256, &hdr(1, 5), b"hello"[..].into());
        assert_eq!(r.read_slot(256, 1000, &mut out), SlotRead::Ok(hdr(1, 5)));
        assert_eq!(&out[..5], b"hello");
        // A payload in two parts lands as one.
        r.store_slot(256, &hdr(2, 5), Payload::new(b"wo", b"rld"));
        assert_eq!(r.read_slot(256, 1000, &mut out), SlotRead::Ok(hdr(2, 5)));
        assert_eq!(&out[..5], b"world");
        r.store_slot_torn(256, &hdr(3, 3), b"abc"[..].into());
        assert_eq!(r.read_slot(256, 1000, &mut out), SlotRead::Torn { seq: 3 });
        // A longer payload's stale bytes at a shorter one's trailer position
        // are not taken for a trailer, even when they hold the sequence number.
        let mut p = [0u8; 16];
        p[8..].copy_from_slice(&4u64.to_le_bytes());
        r.store_slot(256, &hdr(4, 16), p[..].into());
        r.store_slot_torn(256, &hdr(4, 8), [1u8; 8][..].into());
        assert_eq!(r.read_slot(256, 1000, &mut out), SlotRead::Torn { seq: 4 });
    }

    /// A reader racing a writer that rewrites one slot never takes a header
    /// that mixes two updates for a complete one: every header it accepts
    /// has the iteration its writer paired with that sequence number, and
    /// the payload read with it is that update's. (The writer used to store
    /// the sequence number last, so a reader could pair the old sequence
    /// number and trailer with the new iteration.) Bounded by writes and
    /// by time.
    #[test]
    fn a_reader_racing_a_writer_never_accepts_a_mixed_header() {
        let r = std::sync::Arc::new(Region::anon(4096).unwrap());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (r, done) = (r.clone(), done.clone());
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut seq = 1u64;
                while seq < 5_000_000 && start.elapsed() < std::time::Duration::from_secs(3) {
                    let mut h = hdr(seq, 8);
                    h.iteration = seq * 3;
                    r.store_slot(0, &h, seq.to_le_bytes()[..].into());
                    seq += 1;
                }
                done.store(true, Ordering::Release);
                seq
            })
        };
        let (mut accepted, mut mixed) = (0u64, Vec::new());
        let mut out = [0u8; 64];
        while !done.load(Ordering::Acquire) {
            if let Some(h) = r.complete_header(0, 64) {
                accepted += 1;
                if h.iteration != h.seq * 3 && mixed.len() < 5 {
                    mixed.push((h.seq, h.iteration));
                }
            }
            if let SlotRead::Ok(h) = r.read_slot(0, 64, &mut out) {
                let payload = u64::from_le_bytes(out[..8].try_into().unwrap());
                if (h.iteration != h.seq * 3 || payload != h.seq) && mixed.len() < 5 {
                    mixed.push((h.seq, h.iteration));
                }
            }
        }
        let writes = writer.join().unwrap();
        assert!(accepted > 0 && writes > 1000, "{accepted} of {writes}");
        assert_eq!(mixed, Vec::new(), "accepted mixed headers (seq, iteration)");
    }

    #[test]
    fn oversize_length_in_a_header_is_torn_not_a_panic() {
        let r = Region::anon(4096).unwrap();
        r.store_slot(0, &hdr(1, 16), [0u8; 16][..].into());
        r.word(32).store(1 << 40, Ordering::Relaxed);
        let mut out = vec![0u8; 64];
        assert_eq!(r.read_slot(0, 64, &mut out), SlotRead::Torn { seq: 1 });
    }

    #[test]
    fn checksum_mismatch_leaves_the_slot_torn() {
        let r = Region::anon(4096).unwrap();
        let mut h = hdr(1, 4);
        h.checksum = checksum(b"good");
        assert!(!r.recv_slot(0, &h, &mut &b"evil"[..]).unwrap());
        let mut out = [0u8; 8];
        assert_eq!(r.read_slot(0, 8, &mut out), SlotRead::Torn { seq: 1 });
        h.seq = 2;
        assert!(r.recv_slot(0, &h, &mut &b"good"[..]).unwrap());
        assert_eq!(r.read_slot(0, 8, &mut out), SlotRead::Ok(h));
    }

    #[test]
    fn park_returns_when_rung_and_times_out_otherwise() {
        let r = std::sync::Arc::new(Region::anon(4096).unwrap());
        let seen = r.doorbell();
        let t = std::time::Instant::now();
        r.park(seen, Duration::from_millis(20));
        assert!(t.elapsed() >= Duration::from_millis(15));
        let r2 = r.clone();
        let h = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            while r2.doorbell() == seen && t.elapsed() < Duration::from_secs(10) {
                r2.park(seen, Duration::from_secs(10));
            }
            r2.doorbell()
        });
        r.ring();
        assert_ne!(h.join().unwrap(), seen);
    }

    /// A region watching the doorbell words of 3 peers.
    fn with_bells() -> (Region, Layout) {
        let layout = Layout::new(8, 1, vec![0, 1, 2], 3);
        let mut r = Region::anon(layout.total.max(4096)).unwrap();
        r.watch_bells(&layout);
        (r, layout)
    }

    /// A store into any peer's doorbell word changes the snapshot without a
    /// local ring, and the snapshot ignores words that are not doorbells.
    #[test]
    fn each_peers_bell_word_moves_the_snapshot() {
        let (r, layout) = with_bells();
        let mut seen = r.doorbell();
        for peer in 0..3 {
            r.word32(layout.bell_offset(peer))
                .fetch_add(1 + peer as u32, Ordering::SeqCst);
            assert_ne!(r.doorbell(), seen, "peer {peer}'s bell");
            seen = r.doorbell();
        }
        r.word(layout.ack_offset(1)).store(99, Ordering::SeqCst);
        assert_eq!(r.doorbell(), seen, "an ack word is not a doorbell");
    }

    /// A remote writer stores its own values into its bell word; even when
    /// its store and the ring that follows bring the word back to the value
    /// a reader saw, the reader does not sleep through the ring.
    #[test]
    fn a_repeated_remote_bell_value_does_not_hide_a_ring() {
        let (r, layout) = with_bells();
        let remote = r.word32(layout.bell_offset(1));
        remote.store(7, Ordering::SeqCst);
        r.ring();
        let seen = r.doorbell();
        // The sender stores a value one below, the ring makes it +1...
        remote.store(6, Ordering::SeqCst);
        r.ring();
        // ...and a third store brings the remote word back.
        remote.store(7, Ordering::SeqCst);
        assert_ne!(r.doorbell(), seen);
        let t = std::time::Instant::now();
        r.park(seen, Duration::from_secs(10));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "parked through a ring for {:?}",
            t.elapsed()
        );
    }
}
