//! The send path: a write to a peer is copied into its staging ring
//! (waiting, bounded by the job timeout, for completions to free room) and
//! posted on its queue pair, followed by a write with immediate data into
//! this rank's doorbell word in the peer's segment; completions are reaped
//! under the peer's send lock. [`VerbsLinks`] writes slots and words of one
//! object this way; control messages go the same path as two-sided SENDs.

use super::failure::Failure;
use super::ffi::{self, Completion, Op, SendWr};
use super::msg::{Msg, MSG_BYTES};
use super::pair::{Peer, SendSide};
use super::rc::{lock, Shared};
use super::ring::Reservation;
use super::segments::RemoteSeg;
use crate::error::{Error, Result};
use crate::layout::{pad8, PEER_BELL_AT, PEER_WORDS_BYTES};
use crate::transport::Links;
use crate::wire::{Payload, SlotHeader, HEADER_BYTES};
use rdma_mummy_sys::ibv_wc_status;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes staged for a doorbell write (4 used).
const BELL_BYTES: usize = 8;
/// Immediate data with this bit marks a chunk of a longer write: counted as
/// a sign of life from the peer, not a doorbell ring (object ids stay below).
pub(crate) const PROGRESS_IMM: u32 = 1 << 31;
/// Longest wait in one `poll(2)`, so that deadlines are checked.
const MAX_WAIT_MS: i32 = 100;

/// A deadline `timeout` after the first time it is needed: writes that
/// find room in the staging memory at once never read the clock, which
/// costs microseconds on virtual machines without a usable TSC.
pub(crate) struct Deadline {
    timeout: Duration,
    start: Option<Instant>,
}

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        Deadline {
            timeout,
            start: None,
        }
    }

    /// When the wait started (`now` if this is the first call) and when it
    /// ends.
    fn started(&mut self, now: Instant) -> (Instant, Instant) {
        let start = *self.start.get_or_insert(now);
        (start, start + self.timeout)
    }
}

impl Shared {
    /// Sends a control message to `p` (waits for staging room, bounded).
    pub fn send_msg(&self, p: &Peer, msg: Msg, op: &'static str) -> Result<()> {
        let mut s = lock(&p.send);
        let mut deadline = Deadline::after(self.timeout);
        self.send_msg_locked(p, &mut s, msg, op, Some(&mut deadline))
            .map(|_| ())
    }

    /// With `deadline` None: only if there is room now (returns `Ok(false)` otherwise).
    pub fn send_msg_locked(
        &self,
        p: &Peer,
        s: &mut SendSide,
        msg: Msg,
        op: &'static str,
        deadline: Option<&mut Deadline>,
    ) -> Result<bool> {
        if p.has_failed() {
            // Fails, with the cause the send completions may hold.
            self.reap(p, s, op)?;
        }
        let r = match deadline {
            Some(d) => self.reserve(p, s, MSG_BYTES, 1, d, op)?,
            None => {
                self.reap(p, s, op)?;
                match s.ring.reserve(MSG_BYTES, 1) {
                    Some(r) => r,
                    None => return Ok(false),
                }
            }
        };
        let bytes = msg.encode();
        // SAFETY: the reservation lies inside the staging buffer and no
        // posted request reads it (the ring hands out only released bytes).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.staging.ptr().add(r.start), MSG_BYTES);
        }
        let wr = SendWr {
            id: 0,
            op: Op::Send,
            local: s.staging.addr() + r.start as u64,
            len: MSG_BYTES as u32,
            lkey: s.staging.lkey(),
            remote: 0,
            rkey: 0,
            signalled: false,
        };
        self.post(p, s, r, MSG_BYTES, &mut [wr], op)?;
        Ok(true)
    }

    /// Polls `p`'s send completions, releasing staging memory. A failed
    /// completion fails the peer and is returned as its error.
    fn reap(&self, p: &Peer, s: &mut SendSide, op: &'static str) -> Result<usize> {
        let mut comps = [Completion::default(); 16];
        let mut total = 0;
        loop {
            // SAFETY: the send CQ lives as long as `s`; it is only polled
            // under the send lock, which the caller holds.
            let n = unsafe { ffi::poll_cq(s.cq, &mut comps) }.map_err(|e| {
                let f = Failure::from_io("polling send completions", &e);
                self.peer_failed(p.rank, f.clone());
                f.to_error(op, p.rank)
            })?;
            for c in &comps[..n] {
                if c.status != ibv_wc_status::IBV_WC_SUCCESS {
                    let f = Failure::from_status(c.status, c.vendor_err, "rdma work request");
                    self.peer_failed(p.rank, f);
                } else {
                    s.ring.complete(c.id);
                }
            }
            total += n;
            if n < comps.len() {
                break;
            }
        }
        match p.failure() {
            Some(f) => Err(f.to_error(op, p.rank)),
            None => Ok(total),
        }
    }

    /// Reserves staging room, waiting for completions until `deadline`.
    fn reserve(
        &self,
        p: &Peer,
        s: &mut SendSide,
        len: usize,
        wrs: usize,
        deadline: &mut Deadline,
        op: &'static str,
    ) -> Result<Reservation> {
        loop {
            if let Some(r) = s.ring.reserve(len, wrs) {
                return Ok(r);
            }
            if self.reap(p, s, op)? > 0 {
                continue;
            }
            if !s.ring.awaiting_completion() {
                return Err(Error::Protocol(format!(
                    "verbs: {len} bytes do not fit the staging memory for rank {} \
                     (MALT_RDMA_STAGING={})",
                    p.rank, self.settings.staging
                )));
            }
            let now = Instant::now();
            let (start, deadline) = deadline.started(now);
            if now >= deadline {
                return Err(Error::Timeout {
                    op: format!(
                        "{op}: waiting for rank {} to complete earlier writes",
                        p.rank
                    ),
                    waited: now - start,
                    missing: vec![p.rank],
                });
            }
            // Arm the channel, look once more (a completion may have come
            // before arming), then sleep until an event or the deadline.
            // SAFETY: the CQ is live and polled only under the send lock.
            if let Err(e) = unsafe { ffi::req_notify(s.cq) } {
                let f = Failure::from_io("arming send completion events", &e);
                self.peer_failed(p.rank, f.clone());
                return Err(f.to_error(op, p.rank));
            }
            if self.reap(p, s, op)? > 0 {
                continue;
            }
            let ms = (deadline - now).as_millis().clamp(1, MAX_WAIT_MS as u128) as i32;
            // SAFETY: the channel is live while `s` is.
            let fd = unsafe { ffi::channel_fd(s.channel) };
            let [ready] = ffi::wait_readable([fd], ms);
            if ready {
                // SAFETY: the channel is live and non-blocking, its CQ live.
                unsafe { ffi::take_event(s.channel) };
            }
        }
    }

    /// Posts requests whose bytes are in reservation `r`, and records them.
    fn post(
        &self,
        p: &Peer,
        s: &mut SendSide,
        r: Reservation,
        len: usize,
        wrs: &mut [SendWr],
        op: &'static str,
    ) -> Result<()> {
        let n = wrs.len();
        let signalled = s.ring.should_signal(&r, n);
        for w in wrs.iter_mut() {
            w.id = s.next_id;
            s.next_id += 1;
            w.signalled = false;
        }
        let last = wrs[n - 1].id;
        wrs[n - 1].signalled = signalled;
        // SAFETY: every request reads bytes of reservation `r`, inside the
        // registered staging buffer, which the ring keeps untouched until
        // the request's completion (or a later one) is reaped.
        if let Err(e) = unsafe { ffi::post_send(p.qp_ptr, wrs) } {
            let f = Failure::from_io("posting an rdma work request", &e);
            self.peer_failed(p.rank, f.clone());
            return Err(f.to_error(op, p.rank));
        }
        s.ring.commit(r, len, n, last, signalled);
        Ok(())
    }
}

/// The bytes of one slot write: header, payload, zero padding, trailer.
struct Image<'a> {
    parts: [&'a [u8]; 5],
    total: usize,
}

impl Image<'_> {
    /// Copies bytes `from..from + len` of the image to `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for `len` bytes and not overlap the parts.
    unsafe fn copy_to(&self, mut dst: *mut u8, from: usize, len: usize) {
        let (mut skip, mut left) = (from, len);
        for part in self.parts {
            if left == 0 {
                break;
            }
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let n = (part.len() - skip).min(left);
            // SAFETY: `skip + n <= part.len()`; `dst` has `left >= n` bytes
            // left (caller) and does not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr().add(skip), dst, n);
                dst = dst.add(n);
            }
            skip = 0;
            left -= n;
        }
    }
}

const ZEROS: [u8; 8] = [0; 8];

/// Writes into peers' segments of one object.
#[derive(Debug)]
pub(crate) struct VerbsLinks {
    shared: Arc<Shared>,
    object: u32,
    remotes: Vec<Option<RemoteSeg>>,
}

impl VerbsLinks {
    /// Links of `object` into the segments in `remotes` (by rank).
    pub fn new(shared: Arc<Shared>, object: u32, remotes: Vec<Option<RemoteSeg>>) -> VerbsLinks {
        VerbsLinks {
            shared,
            object,
            remotes,
        }
    }

    /// Writes `img` at `offset` of `peer`'s segment. Without `wait`, returns
    /// `Ok(false)` at once, writing nothing, when another write holds the
    /// link or the staging memory is full (single-chunk images only; a
    /// larger one always waits).
    fn write_image(
        &mut self,
        peer: usize,
        offset: usize,
        img: &Image<'_>,
        wait: bool,
    ) -> Result<bool> {
        const OP: &str = "rdma write";
        let sh = &*self.shared;
        let remote = self
            .remotes
            .get(peer)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Protocol(format!("no verbs link to rank {peer}")))?;
        if offset as u64 + img.total as u64 > remote.len {
            return Err(Error::Protocol(format!(
                "a write of {} bytes at offset {offset} exceeds rank {peer}'s segment of {} bytes",
                img.total, remote.len
            )));
        }
        let p = sh.peer(peer)?;
        let mut guard = if wait {
            lock(&p.send)
        } else {
            match p.send.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
            }
        };
        let s = &mut *guard;
        sh.reap(p, s, OP)?;
        if remote.gone.load(Ordering::SeqCst) {
            // The peer released the segment: like a frame for a missing
            // object over tcp, the write goes nowhere.
            return Ok(true);
        }
        // This rank's words go under their key, everything else under its
        // queue's: a write anywhere else in the segment (another sender's
        // queue, the control block) fails at the peer's adapter with a
        // remote access error.
        let words = remote.words_at..remote.words_at + PEER_WORDS_BYTES;
        let rkey = if words.contains(&offset) {
            remote.words_rkey
        } else {
            remote.queue_rkey
        };
        let mut deadline = Deadline::after(sh.timeout);
        let max = s.ring.max_reservation() - 64;
        let chunks = img.total.div_ceil(max).max(1);
        let wait = wait || chunks > 1;
        let chunk = img.total.div_ceil(chunks).div_ceil(64) * 64;
        let mut at = 0;
        while at < img.total {
            let n = chunk.min(img.total - at);
            let last = at + n == img.total;
            let len = if last { pad8(n) + BELL_BYTES } else { n };
            let wrs = if last { 2 } else { 1 };
            let r = if wait {
                sh.reserve(p, s, len, wrs, &mut deadline, OP)?
            } else {
                // One image, one chunk: nothing is posted yet, so giving up
                // here leaves the stream of writes as it was.
                match s.ring.reserve(len, wrs) {
                    Some(r) => r,
                    None => return Ok(false),
                }
            };
            // SAFETY: the reservation lies inside the staging buffer and no
            // posted request reads it; the image parts are caller memory.
            unsafe { img.copy_to(s.staging.ptr().add(r.start), at, n) };
            let mut wrs = [
                SendWr {
                    id: 0,
                    // A chunk of a longer image says so to the receiver, whose
                    // fault monitor counts it as a sign of life.
                    op: if last {
                        Op::Write
                    } else {
                        Op::WriteImm(PROGRESS_IMM | self.object)
                    },
                    local: s.staging.addr() + r.start as u64,
                    len: n as u32,
                    lkey: s.staging.lkey(),
                    remote: remote.addr + (offset + at) as u64,
                    rkey,
                    signalled: false,
                },
                SendWr {
                    id: 0,
                    op: Op::WriteImm(self.object),
                    local: s.staging.addr() + (r.start + pad8(n)) as u64,
                    len: 4,
                    lkey: s.staging.lkey(),
                    remote: remote.addr + (remote.words_at + PEER_BELL_AT) as u64,
                    rkey: remote.words_rkey,
                    signalled: false,
                },
            ];
            if last {
                // A new value in this rank's doorbell word there: a reader
                // spinning on the doorbell sees it change.
                let v = sh
                    .bell
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_add(1)
                    .to_ne_bytes();
                // SAFETY: the 8 doorbell bytes follow the image inside the reservation.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        v.as_ptr(),
                        s.staging.ptr().add(r.start + pad8(n)),
                        4,
                    );
                }
                sh.post(p, s, r, len, &mut wrs, OP)?;
            } else {
                sh.post(p, s, r, len, &mut wrs[..1], OP)?;
            }
            at += n;
        }
        Ok(true)
    }
}

impl VerbsLinks {
    /// Writes a whole slot (header, payload, padding, trailer) as one image.
    fn put_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
        wait: bool,
    ) -> Result<bool> {
        let hb = header_bytes(h);
        let tb = crate::segment::trailer_value(h.seq, payload.len() as u64).to_ne_bytes();
        let pad = pad8(payload.len()) - payload.len();
        let img = Image {
            parts: [&hb, payload.head, payload.body, &ZEROS[..pad], &tb],
            total: HEADER_BYTES + pad8(payload.len()) + 8,
        };
        self.write_image(peer, offset, &img, wait)
    }
}

fn header_bytes(h: &SlotHeader) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    for (i, w) in h.to_words().iter().enumerate() {
        b[8 * i..8 * i + 8].copy_from_slice(&w.to_ne_bytes());
    }
    b
}

impl Links for VerbsLinks {
    fn parking(&self, parked: bool) {
        self.shared.set_parked(parked);
    }

    fn arrivals(&self, peer: usize) -> Option<u64> {
        let p = self.shared.peers.get(peer).and_then(Option::as_ref)?;
        Some(p.arrivals.load(Ordering::Relaxed))
    }

    fn write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()> {
        self.put_slot(peer, offset, h, payload, true).map(|_| ())
    }

    fn try_write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<bool> {
        self.put_slot(peer, offset, h, payload, false)
    }

    #[cfg(feature = "testing")]
    fn write_slot_torn(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()> {
        let hb = header_bytes(h);
        let img = Image {
            parts: [&hb, payload.head, payload.body, &[], &[]],
            total: HEADER_BYTES + payload.len(),
        };
        self.write_image(peer, offset, &img, true).map(|_| ())
    }

    fn write_word(&mut self, peer: usize, offset: usize, value: u64) -> Result<()> {
        let v = value.to_ne_bytes();
        let img = Image {
            parts: [&v, &[], &[], &[], &[]],
            total: 8,
        };
        self.write_image(peer, offset, &img, true).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_copy_across_their_parts() {
        let h = SlotHeader {
            seq: 5,
            epoch: 1,
            sender: 2,
            iteration: 9,
            len: 5,
            checksum: 0,
            object: 3,
        };
        let hb = header_bytes(&h);
        let tb = 77u64.to_ne_bytes();
        let img = Image {
            parts: [&hb, b"he", b"llo", &ZEROS[..3], &tb],
            total: 64 + 8 + 8,
        };
        let mut whole = vec![0xaau8; img.total];
        // SAFETY: `whole` holds `img.total` bytes.
        unsafe { img.copy_to(whole.as_mut_ptr(), 0, img.total) };
        assert_eq!(&whole[..64], &hb);
        assert_eq!(&whole[64..69], b"hello");
        assert_eq!(&whole[69..72], &[0, 0, 0]);
        assert_eq!(&whole[72..], &tb);
        for from in 0..img.total {
            for len in 0..=img.total - from {
                let mut part = vec![0u8; len];
                // SAFETY: `part` holds `len` bytes.
                unsafe { img.copy_to(part.as_mut_ptr(), from, len) };
                assert_eq!(part, whole[from..from + len]);
            }
        }
    }
}
