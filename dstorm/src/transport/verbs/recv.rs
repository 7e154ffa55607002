//! The receive side of a rank: one completion queue and registered buffer
//! for the receives of every peer's queue pair, and the thread that serves
//! them. An immediate value rings that object's doorbell (waking its parked
//! readers) or, for a chunk of a longer write, counts as a sign of life; a
//! control message updates the segment tables; every receive is reposted,
//! and the `GoneAck`s owed are sent. The thread sleeps on the completion
//! channel only while a reader of this rank is parked (or during a burst of
//! completions); otherwise it looks every few milliseconds.

use super::device::Port;
use super::failure::Failure;
use super::ffi::{self, ChannelPtr, Completion, CqPtr, Wakeup};
use super::memory::{DmaBuf, Registered};
use super::msg::{Msg, MSG_BYTES};
use super::pair::{completion_channel, Peer};
use super::rc::{device_err, lock, Shared};
use super::segments::RemoteSeg;
use super::send::PROGRESS_IMM;
use crate::error::Result;
use crate::transport::RejectCounters;
use rdma_mummy_sys::{ibv_wc_opcode, ibv_wc_status};
use sideway::ibverbs::completion::{BasicCompletionQueue, CompletionChannel, CompletionQueue};
use sideway::ibverbs::protection_domain::ProtectionDomain;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per receive buffer (control messages are 40 bytes).
pub(crate) const RECV_BUF: usize = 64;
/// How often the receive thread looks at its completions while no reader
/// is parked (and completions raise no events).
const QUIET_MS: i32 = 10;
/// After a look that found this share of a peer's receive queue used,
/// completions raise events again for [`BUSY_HOLD`], so that a fast stream
/// of writes never waits for receives to be reposted.
const BUSY_SHARE: usize = 8;
/// See [`BUSY_SHARE`].
const BUSY_HOLD: Duration = Duration::from_millis(100);

/// What the receive thread works with.
#[derive(Debug)]
pub(crate) struct Receiver {
    cq_ptr: CqPtr,
    cq: Arc<BasicCompletionQueue>,
    channel_ptr: ChannelPtr,
    _channel: Arc<CompletionChannel>,
    /// `depth` buffers of [`RECV_BUF`] bytes per rank, by rank.
    bufs: Registered,
    /// Receives posted per peer.
    pub depth: usize,
    pub rejects: RejectCounters,
    /// Set when the transport drops: the thread returns.
    pub closed: AtomicBool,
    pub wakeup: Wakeup,
    /// Readers parked on a doorbell of this rank, any object.
    pub parked: AtomicUsize,
}

impl Receiver {
    /// The receive side for `world` ranks, `depth` receives per peer.
    pub fn new(
        port: &Port,
        pd: &Arc<ProtectionDomain>,
        world: usize,
        depth: usize,
    ) -> Result<Receiver> {
        let npeers = world.saturating_sub(1).max(1);
        let channel = completion_channel(port)?;
        let cq = port
            .ctx
            .create_cq_builder()
            .setup_cqe((depth * npeers + 16) as u32)
            .setup_comp_channel(&channel, 0)
            .build()
            .map_err(|e| device_err("creating the receive completion queue", port, e))?;
        let buf = DmaBuf::new(world * depth * RECV_BUF)
            .map_err(|e| device_err("allocating receive buffers", port, e))?;
        let bufs = Registered::new(pd, buf, "receive buffers")?;
        let wakeup = Wakeup::new().map_err(|e| device_err("creating an eventfd", port, e))?;
        // SAFETY: the handles stay valid while `cq` and `channel` live,
        // which the `Receiver` keeps together.
        let (cq_ptr, ch_ptr) = unsafe { (CqPtr(cq.cq()), ChannelPtr(channel.comp_channel())) };
        Ok(Receiver {
            cq_ptr,
            cq,
            channel_ptr: ch_ptr,
            _channel: channel,
            bufs,
            depth,
            rejects: RejectCounters::default(),
            closed: AtomicBool::new(false),
            wakeup,
            parked: AtomicUsize::new(0),
        })
    }

    /// The completion queue every peer's queue pair receives into.
    pub fn cq(&self) -> &Arc<BasicCompletionQueue> {
        &self.cq
    }
}

impl Shared {
    /// Posts receive `index` of `p`'s queue pair.
    pub fn post_recv(&self, p: &Peer, index: usize) -> io::Result<()> {
        let off = (p.rank * self.recv.depth + index) * RECV_BUF;
        let id = ((p.rank as u64) << 32) | index as u64;
        // SAFETY: the buffer lies inside `recv.bufs`, which stays
        // registered until after every queue pair is destroyed (`Drop` of
        // `Shared`).
        unsafe {
            ffi::post_recv(
                p.qp_ptr,
                id,
                self.recv.bufs.addr() + off as u64,
                RECV_BUF as u32,
                self.recv.bufs.lkey(),
            )
        }
    }

    /// A thread of this rank starts (`true`) or stops waiting for the
    /// receive thread: while any does, completions raise events.
    pub fn set_parked(&self, parked: bool) {
        if parked {
            self.recv.parked.fetch_add(1, Ordering::SeqCst);
            // After the count: the receive thread reads it once woken.
            self.recv.wakeup.wake();
        } else {
            self.recv.parked.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The receive thread: sleeps on the receive completion channel; an
    /// immediate value rings that object's doorbell (waking its parked
    /// readers), a control message updates the segment tables, and every
    /// receive is reposted.
    pub fn recv_loop(self: Arc<Self>) {
        let rx = &self.recv;
        // SAFETY: the channel lives as long as `self`.
        let ch_fd = unsafe { ffi::channel_fd(rx.channel_ptr) };
        let mut busy_until = Instant::now();
        while !rx.closed.load(Ordering::Acquire) {
            let drained = self.drain_recv();
            self.flush_acks();
            if drained >= rx.depth / BUSY_SHARE {
                busy_until = Instant::now() + BUSY_HOLD;
            }
            let pending = || {
                self.peers
                    .iter()
                    .flatten()
                    .any(|p| p.has_pending.load(Ordering::Acquire))
            };
            if rx.parked.load(Ordering::SeqCst) == 0 && Instant::now() >= busy_until {
                // Nobody is parked: a spinning reader watches the bell word
                // the writers store into, so completions need not raise
                // events (each one a wake-up of this thread, taking a core
                // from the ranks). Look again within QUIET_MS to repost
                // receives and read control messages; a reader about to park
                // or to wait for a control message wakes this thread at once
                // (`parking`), and a burst of completions brings events back
                // (BUSY_SHARE).
                let ms = if pending() { 2 } else { QUIET_MS };
                let [wake] = ffi::wait_readable([rx.wakeup.fd()], ms);
                if wake {
                    rx.wakeup.clear();
                }
                continue;
            }
            // Arm, then look once more: a completion that came before the
            // arming raises no event.
            // SAFETY: the receive CQ lives as long as `self`.
            if let Err(e) = unsafe { ffi::req_notify(rx.cq_ptr) } {
                tracing::error!(error = %e, "verbs: cannot arm receive completions; receive thread stops");
                return;
            }
            if self.drain_recv() > 0 {
                continue;
            }
            let ms = if pending() { 2 } else { 1000 };
            let [ev, wake] = ffi::wait_readable([ch_fd, rx.wakeup.fd()], ms);
            if ev {
                // SAFETY: live non-blocking channel with a live CQ.
                unsafe { ffi::take_event(rx.channel_ptr) };
            }
            if wake {
                rx.wakeup.clear();
            }
        }
    }

    /// Handles every completion in the receive queue; returns how many.
    fn drain_recv(&self) -> usize {
        let mut comps = [Completion::default(); 32];
        let mut total = 0;
        loop {
            // SAFETY: the receive CQ lives as long as `self`; only the
            // receive thread polls it.
            let n = match unsafe { ffi::poll_cq(self.recv.cq_ptr, &mut comps) } {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "verbs: polling receive completions failed");
                    return total;
                }
            };
            for c in &comps[..n] {
                self.on_recv(c);
            }
            total += n;
            if n < comps.len() {
                return total;
            }
        }
    }

    fn on_recv(&self, c: &Completion) {
        let rank = (c.id >> 32) as usize;
        let index = (c.id & 0xffff_ffff) as usize;
        let Some(p) = self.peers.get(rank).and_then(Option::as_ref) else {
            return;
        };
        if c.status != ibv_wc_status::IBV_WC_SUCCESS {
            self.peer_failed(
                rank,
                Failure::from_status(c.status, c.vendor_err, "receive from the peer"),
            );
            return;
        }
        let rejects = &self.recv.rejects;
        match c.opcode {
            ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM => {
                p.arrivals.fetch_add(1, Ordering::Relaxed);
                // A chunk of a longer write only says the peer lives.
                if c.imm & PROGRESS_IMM == 0 {
                    let local = self.segs.local.read().unwrap_or_else(|e| e.into_inner());
                    match local.get(c.imm as usize).and_then(Option::as_ref) {
                        Some(seg) => seg.region.ring(),
                        None => RejectCounters::bump(&rejects.bad_object),
                    }
                }
            }
            ibv_wc_opcode::IBV_WC_RECV => {
                let mut b = [0u8; MSG_BYTES];
                let len = (c.byte_len as usize).min(MSG_BYTES);
                let off = (rank * self.recv.depth + index) * RECV_BUF;
                // SAFETY: the receive completed, so the device has finished
                // writing this buffer, and it is not reposted until after
                // the copy; it lies inside `recv.bufs`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.recv.bufs.ptr().add(off),
                        b.as_mut_ptr(),
                        len,
                    );
                }
                match Msg::decode(&b[..len]).filter(|_| c.byte_len as usize == MSG_BYTES) {
                    Some(m) => self.on_msg(p, m),
                    None => RejectCounters::bump(&rejects.bad_header),
                }
            }
            _ => RejectCounters::bump(&rejects.bad_header),
        }
        if let Err(e) = self.post_recv(p, index) {
            self.peer_failed(rank, Failure::from_io("reposting a receive", &e));
        }
    }

    fn on_msg(&self, p: &Peer, m: Msg) {
        match m {
            Msg::Announce {
                object,
                addr,
                len,
                rkey,
                words_rkey,
            } => {
                lock(&self.segs.remote).insert(
                    (object, p.rank),
                    RemoteSeg {
                        addr,
                        len,
                        queue_rkey: rkey,
                        words_rkey,
                        words_at: 0,
                        gone: Arc::new(AtomicBool::new(false)),
                    },
                );
                self.segs.remote_cv.notify_all();
            }
            Msg::Gone { object } => {
                if let Some(r) = lock(&self.segs.remote).remove(&(object, p.rank)) {
                    r.gone.store(true, Ordering::SeqCst);
                }
                // Posted under the send lock after `gone` is set: every
                // write that missed the flag is already ahead of the ack.
                lock(&p.pending_acks).push(object);
                p.has_pending.store(true, Ordering::Release);
            }
            Msg::GoneAck { object } => {
                let mut d = lock(&self.segs.draining);
                if let Some(e) = d.get_mut(&object) {
                    if let Some(w) = e.waiting.get_mut(p.rank) {
                        *w = false;
                    }
                    if !e.waiting.iter().any(|w| *w) {
                        d.remove(&object);
                    }
                }
            }
        }
    }

    /// Sends the acknowledgements the receive thread owes, without waiting
    /// for a send lock or staging room (retried on the next round).
    fn flush_acks(&self) {
        for p in self.peers.iter().flatten() {
            if !p.has_pending.load(Ordering::Acquire) {
                continue;
            }
            let Ok(mut s) = p.send.try_lock() else {
                continue;
            };
            let mut acks = lock(&p.pending_acks);
            while let Some(&object) = acks.last() {
                match self.send_msg_locked(p, &mut s, Msg::GoneAck { object }, "verbs ack", None) {
                    Ok(true) => {
                        acks.pop();
                    }
                    Ok(false) => break,
                    Err(_) => {
                        acks.clear();
                        break;
                    }
                }
            }
            p.has_pending.store(!acks.is_empty(), Ordering::Release);
        }
    }
}
