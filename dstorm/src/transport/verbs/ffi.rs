//! The data-path verbs calls (post, poll, completion events) made directly,
//! without allocation, on handles owned by sideway objects; plus the
//! eventfd that wakes the receive thread.

use rdma_mummy_sys as sys;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// A queue pair handle. Valid while the sideway queue pair it came from lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QpPtr(pub NonNull<sys::ibv_qp>);
// SAFETY: verbs objects may be used from any thread; libibverbs serialises
// access to each queue internally. The owner keeps the object alive.
unsafe impl Send for QpPtr {}
// SAFETY: as above.
unsafe impl Sync for QpPtr {}

/// A completion queue handle. Valid while its sideway owner lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CqPtr(pub NonNull<sys::ibv_cq>);
// SAFETY: as for `QpPtr`.
unsafe impl Send for CqPtr {}
// SAFETY: as for `QpPtr`.
unsafe impl Sync for CqPtr {}

/// A completion channel handle. Valid while its sideway owner lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelPtr(pub NonNull<sys::ibv_comp_channel>);
// SAFETY: as for `QpPtr`.
unsafe impl Send for ChannelPtr {}
// SAFETY: as for `QpPtr`.
unsafe impl Sync for ChannelPtr {}

/// What a send work request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// RDMA WRITE.
    Write,
    /// RDMA WRITE with immediate data (consumes a receive at the peer).
    WriteImm(u32),
    /// Two-sided SEND.
    Send,
}

/// One send work request from registered local memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendWr {
    pub id: u64,
    pub op: Op,
    pub local: u64,
    pub len: u32,
    pub lkey: u32,
    pub remote: u64,
    pub rkey: u32,
    pub signalled: bool,
}

/// A zeroed send work request.
fn blank_send_wr() -> sys::ibv_send_wr {
    // SAFETY: ibv_send_wr is a C struct of integers, raw pointers and unions
    // of the same; all-zero bytes are a valid value of each (null pointers,
    // zero numbers).
    unsafe { std::mem::zeroed() }
}

/// Posts up to two work requests, in order, with one call.
///
/// # Safety
/// `qp` must be a live queue pair; every `local..local+len` must lie in
/// memory registered under `lkey` that stays valid and unmodified until the
/// request completes.
pub(crate) unsafe fn post_send(qp: QpPtr, wrs: &[SendWr]) -> io::Result<()> {
    let n = wrs.len().min(2);
    let mut sges = [sys::ibv_sge {
        addr: 0,
        length: 0,
        lkey: 0,
    }; 2];
    let mut raw = [blank_send_wr(), blank_send_wr()];
    for i in 0..n {
        let w = &wrs[i];
        sges[i] = sys::ibv_sge {
            addr: w.local,
            length: w.len,
            lkey: w.lkey,
        };
        let r = &mut raw[i];
        r.wr_id = w.id;
        r.num_sge = 1;
        r.send_flags = if w.signalled {
            sys::ibv_send_flags::IBV_SEND_SIGNALED.0
        } else {
            0
        };
        match w.op {
            Op::Write => r.opcode = sys::ibv_wr_opcode::IBV_WR_RDMA_WRITE,
            Op::WriteImm(imm) => {
                r.opcode = sys::ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM;
                r.imm_data_invalidated_rkey_union.imm_data = imm.to_be();
            }
            Op::Send => r.opcode = sys::ibv_wr_opcode::IBV_WR_SEND,
        }
        if w.op != Op::Send {
            r.wr.rdma = sys::rdma_t {
                remote_addr: w.remote,
                rkey: w.rkey,
            };
        }
    }
    let base = raw.as_mut_ptr();
    for i in 0..n {
        // SAFETY: `i < n <= 2`, inside both arrays, which live until the
        // post below returns (the provider copies the requests).
        unsafe {
            (*base.add(i)).sg_list = sges.as_mut_ptr().add(i);
            (*base.add(i)).next = if i + 1 < n {
                base.add(i + 1)
            } else {
                std::ptr::null_mut()
            };
        }
    }
    let mut bad: *mut sys::ibv_send_wr = std::ptr::null_mut();
    // SAFETY: `qp` is live (caller); the request list is well formed and
    // lives for the call; local memory validity is the caller's contract.
    let rc = unsafe { sys::ibv_post_send(qp.0.as_ptr(), base, &mut bad) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Posts one receive of `len` bytes at `addr`.
///
/// # Safety
/// `qp` must be live and `addr..addr+len` registered under `lkey`, valid
/// until the receive completes or the queue pair is destroyed.
pub(crate) unsafe fn post_recv(
    qp: QpPtr,
    id: u64,
    addr: u64,
    len: u32,
    lkey: u32,
) -> io::Result<()> {
    let mut sge = sys::ibv_sge {
        addr,
        length: len,
        lkey,
    };
    let mut wr = sys::ibv_recv_wr {
        wr_id: id,
        next: std::ptr::null_mut(),
        sg_list: &mut sge,
        num_sge: 1,
    };
    let mut bad: *mut sys::ibv_recv_wr = std::ptr::null_mut();
    // SAFETY: `qp` is live (caller); `wr` and `sge` live for the call.
    let rc = unsafe { sys::ibv_post_recv(qp.0.as_ptr(), &mut wr, &mut bad) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// A work completion, copied out of the queue.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Completion {
    pub id: u64,
    pub status: u32,
    pub opcode: u32,
    pub vendor_err: u32,
    pub byte_len: u32,
    pub imm: u32,
}

/// Polls up to `out.len()` (at most 32) completions; returns how many.
///
/// # Safety
/// `cq` must be live and polled by one thread at a time.
pub(crate) unsafe fn poll_cq(cq: CqPtr, out: &mut [Completion]) -> io::Result<usize> {
    // SAFETY: ibv_wc is plain C data (integers and a union of integers); all
    // zeroes is a valid value.
    let mut wcs: [sys::ibv_wc; 32] = unsafe { std::mem::zeroed() };
    let n = out.len().min(32);
    // SAFETY: `cq` is live (caller); `wcs` has room for `n` entries.
    let rc = unsafe { sys::ibv_poll_cq(cq.0.as_ptr(), n as i32, wcs.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    let got = rc as usize;
    for (o, w) in out.iter_mut().zip(&wcs[..got]) {
        *o = Completion {
            id: w.wr_id,
            status: w.status,
            opcode: w.opcode,
            vendor_err: w.vendor_err,
            byte_len: w.byte_len,
            // SAFETY: both union members are u32; reading either is defined.
            imm: u32::from_be(unsafe { w.imm_data_invalidated_rkey_union.imm_data }),
        };
    }
    Ok(got)
}

/// Asks for an event on the channel at the next completion.
///
/// # Safety
/// `cq` must be live.
pub(crate) unsafe fn req_notify(cq: CqPtr) -> io::Result<()> {
    // SAFETY: `cq` is live (caller).
    let rc = unsafe { sys::ibv_req_notify_cq(cq.0.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Takes and acknowledges one pending event of a non-blocking channel, if
/// any (the channel stays readable while more are pending; each of ours
/// serves one completion queue, which raises one event per arming).
///
/// # Safety
/// `ch` must be live, set non-blocking, and its completion queues live.
pub(crate) unsafe fn take_event(ch: ChannelPtr) {
    let mut cq: *mut sys::ibv_cq = std::ptr::null_mut();
    let mut ctx: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `ch` is live and non-blocking (caller): this returns at once,
    // with -1 when no event is pending.
    let rc = unsafe { sys::ibv_get_cq_event(ch.0.as_ptr(), &mut cq, &mut ctx) };
    if rc == 0 && !cq.is_null() {
        // SAFETY: `cq` was just returned by the channel and is live.
        unsafe { sys::ibv_ack_cq_events(cq, 1) };
    }
}

/// The file descriptor of a channel.
///
/// # Safety
/// `ch` must be live.
pub(crate) unsafe fn channel_fd(ch: ChannelPtr) -> RawFd {
    // SAFETY: `ch` is live (caller); `fd` is a plain field.
    unsafe { ch.0.as_ref().fd }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes (-1: no
/// limit). Returns which were readable.
pub(crate) fn wait_readable<const N: usize>(fds: [RawFd; N], timeout_ms: i32) -> [bool; N] {
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `p` is a valid array of N pollfd structures for the call.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return [false; N];
    }
    p.map(|x| x.revents != 0)
}

/// An eventfd used to wake a thread blocked in [`wait_readable`].
#[derive(Debug)]
pub(crate) struct Wakeup(OwnedFd);

impl Wakeup {
    pub fn new() -> io::Result<Wakeup> {
        // SAFETY: plain system call with constant flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Wakeup(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to our own fd.
        let _ = unsafe { libc::write(self.fd(), one.as_ptr().cast(), 8) };
    }

    pub fn clear(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local buffer from our
        // own non-blocking fd.
        let _ = unsafe { libc::read(self.fd(), b.as_mut_ptr().cast(), 8) };
    }
}
