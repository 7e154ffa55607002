//! The verbs transport proper: one reliable-connection queue pair per peer,
//! shared by every object, a registered staging ring per peer for outgoing
//! writes, and one receive thread per rank for immediate data and control
//! messages. See the module documentation of `verbs` for the protocol.

use super::device::{self, Port};
use super::endpoint::{native_little_endian, VerbsEndpoint};
use super::ffi::{self, ChannelPtr, Completion, CqPtr, DmaBuf, Op, QpPtr, SendWr, Wakeup};
use super::msg::{Msg, MSG_BYTES};
use super::ring::{Reservation, Ring};
use super::settings::{detection_time, Settings};
use crate::config::{Config, ProcessEnv, TransportKind};
use crate::error::{Error, Result};
use crate::layout::{pad8, Layout, PEER_BELL_AT, PEER_WORDS_BYTES};
use crate::segment::Region;
use crate::transport::{Endpoint, Links, RejectCounters, RejectCounts, Transport};
use crate::wire::{SlotHeader, HEADER_BYTES};
use rdma_mummy_sys::{ibv_wc_opcode, ibv_wc_status};
use sideway::ibverbs::address::{AddressHandleAttribute, Gid};
use sideway::ibverbs::completion::{BasicCompletionQueue, CompletionChannel, CompletionQueue};
use sideway::ibverbs::device_context::Mtu;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{BasicQueuePair, QueuePair, QueuePairAttribute, QueuePairState};
use sideway::ibverbs::AccessFlags;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Send queue depth per peer (work requests in flight).
const SQ_DEPTH: usize = 256;
/// Most receives posted per peer (immediate data and control messages);
/// fewer when the device's completion queues are too small for all peers.
const RQ_DEPTH: usize = 1024;
/// Bytes per receive buffer (control messages are 40 bytes).
const RECV_BUF: usize = 64;
/// Bytes staged for a doorbell write (4 used).
const BELL_BYTES: usize = 8;
/// Receive-not-ready NAK timer (IB encoding 6: 0.08 ms).
const MIN_RNR_TIMER: u8 = 6;
/// Receive-not-ready retries: 7 means "retry forever" (a live peer's
/// receive thread always reposts; a dead peer shows up as a transport
/// retry error instead).
const RNR_RETRY: u8 = 7;
/// Immediate data with this bit marks a chunk of a longer write: counted as
/// a sign of life from the peer, not a doorbell ring (object ids stay below).
const PROGRESS_IMM: u32 = 1 << 31;
/// Longest wait in one `poll(2)`, so that deadlines are checked.
const MAX_WAIT_MS: i32 = 100;
/// How often the receive thread looks at its completions while no reader
/// is parked (and completions raise no events).
const QUIET_MS: i32 = 10;
/// After a look that found this share of a peer's receive queue used,
/// completions raise events again for [`BUSY_HOLD`], so that a fast stream
/// of writes never waits for receives to be reposted.
const BUSY_SHARE: usize = 8;
/// See [`BUSY_SHARE`].
const BUSY_HOLD: Duration = Duration::from_millis(100);

/// A deadline `timeout` after the first time it is needed: writes that
/// find room in the staging memory at once never read the clock, which
/// costs microseconds on virtual machines without a usable TSC.
struct Deadline {
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

/// Locks a mutex, ignoring poisoning (state stays consistent: every
/// critical section here either completes or only records a failure).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn device_err(step: &str, port: &Port, e: impl fmt::Display) -> Error {
    Error::Unsupported {
        transport: "verbs",
        why: format!("{} port {}: {step} failed: {e}", port.device, port.port),
    }
}

/// Why a peer's connection failed, kept for every later operation.
#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    what: String,
    /// A request flushed because the connection had already failed: a
    /// consequence, whose cause may come with another completion.
    flushed: bool,
}

impl Failure {
    fn from_status(status: u32, vendor: u32, during: &str) -> Failure {
        use ibv_wc_status as s;
        let (kind, name) = match status {
            s::IBV_WC_RETRY_EXC_ERR => (
                io::ErrorKind::TimedOut,
                "transport retry counter exceeded (peer dead or unreachable)",
            ),
            s::IBV_WC_RNR_RETRY_EXC_ERR => (
                io::ErrorKind::TimedOut,
                "receiver-not-ready retry counter exceeded",
            ),
            s::IBV_WC_REM_ACCESS_ERR => (
                io::ErrorKind::PermissionDenied,
                "remote access error (segment released or access out of bounds)",
            ),
            s::IBV_WC_REM_INV_REQ_ERR => (io::ErrorKind::InvalidInput, "remote invalid request"),
            s::IBV_WC_REM_OP_ERR => (io::ErrorKind::Other, "remote operation error"),
            s::IBV_WC_WR_FLUSH_ERR => (
                io::ErrorKind::ConnectionAborted,
                "flushed: the connection had already failed",
            ),
            s::IBV_WC_LOC_LEN_ERR => (io::ErrorKind::Other, "local length error"),
            s::IBV_WC_LOC_QP_OP_ERR => (io::ErrorKind::Other, "local queue pair operation error"),
            s::IBV_WC_LOC_PROT_ERR => (io::ErrorKind::Other, "local protection error"),
            s::IBV_WC_LOC_ACCESS_ERR => (io::ErrorKind::Other, "local access error"),
            s::IBV_WC_BAD_RESP_ERR => (io::ErrorKind::Other, "bad response"),
            s::IBV_WC_REM_ABORT_ERR => (io::ErrorKind::ConnectionAborted, "remote aborted"),
            s::IBV_WC_FATAL_ERR => (io::ErrorKind::Other, "fatal device error"),
            s::IBV_WC_RESP_TIMEOUT_ERR => (io::ErrorKind::TimedOut, "response timeout"),
            _ => (io::ErrorKind::Other, "work request failed"),
        };
        Failure {
            kind,
            what: format!(
                "{during}: {name} (completion status {status}, vendor error {vendor:#x})"
            ),
            flushed: status == s::IBV_WC_WR_FLUSH_ERR,
        }
    }

    fn from_io(during: &str, e: &io::Error) -> Failure {
        Failure {
            kind: e.kind(),
            what: format!("{during}: {e}"),
            flushed: false,
        }
    }

    fn to_error(&self, op: &'static str, peer: usize) -> Error {
        Error::Peer {
            op,
            peer,
            source: io::Error::new(self.kind, self.what.clone()),
        }
    }
}

/// This rank's segment of one object, registered for remote writes: one
/// memory region per peer for its words and one per sender for its queue,
/// so that no peer can write where another one (or only this rank) may.
#[derive(Debug)]
struct LocalSeg {
    // Deregistered before the memory is released.
    _mrs: Vec<Arc<MemoryRegion>>,
    region: Arc<Region>,
}

/// A peer's segment of one object, as its announcement described it.
#[derive(Debug, Clone)]
struct RemoteSeg {
    addr: u64,
    len: u64,
    /// The remote key of this rank's queue in it (0: not a sender).
    queue_rkey: u32,
    /// The remote key of this rank's words in it.
    words_rkey: u32,
    /// The offset of this rank's words in it (set by `connect`).
    words_at: usize,
    /// Set when the peer released the segment: writes into it are dropped.
    gone: Arc<AtomicBool>,
}

/// A released segment kept registered until every peer confirmed that its
/// writes into it have landed.
#[derive(Debug)]
struct Draining {
    _seg: Arc<LocalSeg>,
    waiting: Vec<bool>,
}

/// One peer's send path: its completion queue, staging memory and ring.
#[derive(Debug)]
struct SendSide {
    cq: CqPtr,
    _cq: Arc<BasicCompletionQueue>,
    // Deregistered before the staging memory is released.
    mr: Arc<MemoryRegion>,
    buf: DmaBuf,
    ring: Ring,
    next_id: u64,
}

#[derive(Debug)]
struct Peer {
    rank: usize,
    // Destroyed first: nothing reads the staging memory or writes the
    // receive buffers afterwards.
    qp: Mutex<BasicQueuePair>,
    qp_ptr: QpPtr,
    qp_num: u32,
    send: Mutex<SendSide>,
    channel: ChannelPtr,
    _channel: Arc<CompletionChannel>,
    failed: OnceLock<Failure>,
    /// The first failure that is not a flush, when one was seen: the cause
    /// reported in preference to `failed`.
    cause: OnceLock<Failure>,
    pending_acks: Mutex<Vec<u32>>,
    has_pending: AtomicBool,
    /// Left the group (`forget`): no new segment is announced to it.
    left: AtomicBool,
    /// Immediate-data writes received from this peer: grows while a long
    /// update arrives chunk by chunk (the fault monitor's sign of life).
    arrivals: AtomicU64,
}

impl Peer {
    /// Why the connection failed, if it did: its cause when one was seen,
    /// else the first failure (a flush, say).
    fn failure(&self) -> Option<&Failure> {
        let f = self.failed.get()?;
        Some(self.cause.get().unwrap_or(f))
    }
}

struct Shared {
    rank: usize,
    world: usize,
    timeout: Duration,
    settings: Settings,
    // Field order is drop order: queue pairs, then what they used.
    peers: Vec<Option<Peer>>,
    local: RwLock<Vec<Option<Arc<LocalSeg>>>>,
    draining: Mutex<HashMap<u32, Draining>>,
    recv_cq: CqPtr,
    _recv_cq: Arc<BasicCompletionQueue>,
    rq_depth: usize,
    recv_channel: ChannelPtr,
    _recv_channel: Arc<CompletionChannel>,
    recv_mr: Arc<MemoryRegion>,
    recv_buf: DmaBuf,
    pd: Arc<ProtectionDomain>,
    port: Port,
    psn: u32,
    remote: Mutex<HashMap<(u32, usize), RemoteSeg>>,
    remote_cv: Condvar,
    rejects: RejectCounters,
    closed: AtomicBool,
    wakeup: Wakeup,
    bell: AtomicU32,
    /// Readers parked on a doorbell of this rank, any object.
    parked: AtomicUsize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.port.device)
            .field("port", &self.port.port)
            .field("gid_index", &self.port.gid_index)
            .finish_non_exhaustive()
    }
}

/// The verbs transport of one rank.
#[derive(Debug)]
pub(crate) struct VerbsTransport {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    local: String,
}

impl VerbsTransport {
    pub fn new(cfg: &Config) -> Result<VerbsTransport> {
        let settings = Settings::from_source(&ProcessEnv)?;
        let port = device::open(&settings)?;
        let ctx = port.ctx.clone();
        let pd = ctx
            .alloc_pd()
            .map_err(|e| device_err("allocating a protection domain", &port, e))?;
        let channel = || -> Result<Arc<CompletionChannel>> {
            let ch = CompletionChannel::new(&ctx)
                .map_err(|e| device_err("creating a completion channel", &port, e))?;
            ch.set_nonblocking(true)
                .map_err(|e| device_err("configuring a completion channel", &port, e))?;
            Ok(ch)
        };
        let npeers = cfg.world.saturating_sub(1).max(1);
        let attr = ctx
            .query_device()
            .map_err(|e| device_err("querying the device", &port, e))?;
        let max_cqe = usize::try_from(attr.max_cqe()).unwrap_or(0);
        let max_wr = usize::try_from(attr.max_qp_wr()).unwrap_or(0);
        let rq_depth = RQ_DEPTH
            .min(max_wr)
            .min(max_cqe.saturating_sub(16) / npeers);
        if rq_depth < 16 || max_wr < SQ_DEPTH || max_cqe < SQ_DEPTH + 16 {
            return Err(device_err(
                "sizing queues",
                &port,
                format!(
                    "{npeers} peers need more than its {max_cqe} completion entries \
                     or {max_wr} work requests per queue"
                ),
            ));
        }
        let recv_channel = channel()?;
        let recv_cq = ctx
            .create_cq_builder()
            .setup_cqe((rq_depth * npeers + 16) as u32)
            .setup_comp_channel(&recv_channel, 0)
            .build()
            .map_err(|e| device_err("creating the receive completion queue", &port, e))?;
        let recv_buf = DmaBuf::new(cfg.world * rq_depth * RECV_BUF)
            .map_err(|e| device_err("allocating receive buffers", &port, e))?;
        // SAFETY: the buffer is a private anonymous mapping owned by
        // `Shared`, which deregisters the region (field `recv_mr`) before
        // unmapping it (field `recv_buf`, declared later).
        let recv_mr = unsafe {
            pd.reg_mr(
                recv_buf.addr() as usize,
                recv_buf.len(),
                AccessFlags::LocalWrite,
            )
        }
        .map_err(|e| mem_err("receive buffers", e))?;
        let mut peers = Vec::with_capacity(cfg.world);
        for r in 0..cfg.world {
            if r == cfg.rank {
                peers.push(None);
                continue;
            }
            let ch = channel()?;
            let cq = ctx
                .create_cq_builder()
                .setup_cqe((SQ_DEPTH + 16) as u32)
                .setup_comp_channel(&ch, 0)
                .build()
                .map_err(|e| device_err("creating a send completion queue", &port, e))?;
            let mut qp = pd
                .create_qp_builder()
                .setup_max_send_wr(SQ_DEPTH as u32)
                .setup_max_recv_wr(rq_depth as u32)
                .setup_max_send_sge(1)
                .setup_max_recv_sge(1)
                .setup_send_cq(cq.clone())
                .setup_recv_cq(recv_cq.clone())
                .build()
                .map_err(|e| device_err("creating a queue pair", &port, e))?;
            let mut attr = QueuePairAttribute::new();
            attr.setup_state(QueuePairState::Init)
                .setup_pkey_index(0)
                .setup_port(port.port)
                .setup_access_flags(AccessFlags::LocalWrite | AccessFlags::RemoteWrite);
            qp.modify(&attr)
                .map_err(|e| device_err("initialising a queue pair", &port, e))?;
            let buf = DmaBuf::new(settings.staging)
                .map_err(|e| device_err("allocating staging memory", &port, e))?;
            // SAFETY: the staging buffer is a private anonymous mapping owned
            // by the `SendSide` next to the region, whose field order
            // deregisters (`mr`) before unmapping (`buf`); the queue pair that
            // reads it is destroyed before either (field order of `Peer`).
            let mr = unsafe { pd.reg_mr(buf.addr() as usize, buf.len(), AccessFlags::LocalWrite) }
                .map_err(|e| mem_err("staging memory", e))?;
            // SAFETY: the handles stay valid while `qp`, `cq` and `ch` live,
            // which `Peer` keeps together.
            let (qp_ptr, cq_ptr, ch_ptr) = unsafe {
                (
                    QpPtr(qp.qp()),
                    CqPtr(cq.cq()),
                    ChannelPtr(ch.comp_channel()),
                )
            };
            let qp_num = qp.qp_number();
            peers.push(Some(Peer {
                rank: r,
                qp: Mutex::new(qp),
                qp_ptr,
                qp_num,
                send: Mutex::new(SendSide {
                    cq: cq_ptr,
                    _cq: cq,
                    ring: Ring::new(buf.len(), SQ_DEPTH),
                    mr,
                    buf,
                    next_id: 1,
                }),
                channel: ch_ptr,
                _channel: ch,
                failed: OnceLock::new(),
                cause: OnceLock::new(),
                pending_acks: Mutex::new(Vec::new()),
                has_pending: AtomicBool::new(false),
                left: AtomicBool::new(false),
                arrivals: AtomicU64::new(0),
            }));
        }
        // SAFETY: as for the send side: `Shared` keeps these alive together.
        let (recv_cq_ptr, recv_ch_ptr) =
            unsafe { (CqPtr(recv_cq.cq()), ChannelPtr(recv_channel.comp_channel())) };
        let wakeup = Wakeup::new().map_err(|e| device_err("creating an eventfd", &port, e))?;
        let psn = rand::random::<u32>() & 0xff_ffff;
        let shared = Arc::new(Shared {
            rank: cfg.rank,
            world: cfg.world,
            timeout: cfg.timeout,
            settings,
            peers,
            local: RwLock::new(Vec::new()),
            draining: Mutex::new(HashMap::new()),
            recv_cq: recv_cq_ptr,
            _recv_cq: recv_cq,
            rq_depth,
            recv_channel: recv_ch_ptr,
            _recv_channel: recv_channel,
            recv_mr,
            recv_buf,
            pd,
            port,
            psn,
            remote: Mutex::new(HashMap::new()),
            remote_cv: Condvar::new(),
            rejects: RejectCounters::default(),
            closed: AtomicBool::new(false),
            wakeup,
            bell: AtomicU32::new(0),
            parked: AtomicUsize::new(0),
        });
        for p in shared.peers.iter().flatten() {
            for i in 0..rq_depth {
                shared
                    .post_recv(p, i)
                    .map_err(|e| device_err("posting receives", &shared.port, e))?;
            }
        }
        let local = VerbsEndpoint {
            little_endian: native_little_endian(),
            port: shared.port.port,
            lid: shared.port.lid,
            mtu: shared.port.mtu,
            psn,
            gid: shared.port.gid,
            qpn: shared
                .peers
                .iter()
                .map(|p| p.as_ref().map(|p| p.qp_num))
                .collect(),
        }
        .encode();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("malt-verbs-recv-{}", cfg.rank))
            .spawn(move || s.recv_loop())
            .map_err(|e| device_err("starting the receive thread", &shared.port, e))?;
        tracing::debug!(
            rank = cfg.rank,
            device = %shared.port.device,
            port = shared.port.port,
            gid_index = shared.port.gid_index,
            failure_detection = ?detection_time(shared.settings.timeout_exp, shared.settings.retry),
            "verbs transport ready"
        );
        Ok(VerbsTransport {
            shared,
            thread: Mutex::new(Some(thread)),
            local,
        })
    }
}

fn mem_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Segment {
        path: PathBuf::from(format!("verbs:{what}")),
        op: "register memory with the RDMA device (raise `ulimit -l` if this is ENOMEM)",
        source: io::Error::other(e),
    }
}

impl Shared {
    fn peer(&self, rank: usize) -> Result<&Peer> {
        self.peers
            .get(rank)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Protocol(format!("no verbs connection to rank {rank}")))
    }

    fn post_recv(&self, p: &Peer, index: usize) -> io::Result<()> {
        let off = (p.rank * self.rq_depth + index) * RECV_BUF;
        let id = ((p.rank as u64) << 32) | index as u64;
        // SAFETY: the buffer lies inside `recv_buf`, registered as
        // `recv_mr`; both outlive the queue pair (field order of `Shared`).
        unsafe {
            ffi::post_recv(
                p.qp_ptr,
                id,
                self.recv_buf.addr() + off as u64,
                RECV_BUF as u32,
                self.recv_mr.lkey(),
            )
        }
    }

    /// Records that `rank`'s connection failed and stops waiting for it.
    fn peer_failed(&self, rank: usize, f: Failure) {
        let Some(p) = self.peers.get(rank).and_then(Option::as_ref) else {
            return;
        };
        if !f.flushed && p.cause.set(f.clone()).is_ok() && !self.closed.load(Ordering::Relaxed) {
            tracing::warn!(peer = rank, error = %f.what, "verbs connection failed");
        }
        let _ = p.failed.set(f);
        let mut d = lock(&self.draining);
        d.retain(|_, e| {
            if let Some(w) = e.waiting.get_mut(rank) {
                *w = false;
            }
            e.waiting.iter().any(|w| *w)
        });
        drop(d);
        self.remote_cv.notify_all();
    }

    /// Connects every queue pair to its peer (RTR, then RTS).
    fn connect_all(&self, table: &[Endpoint]) -> Result<()> {
        for ep in table {
            if ep.rank == self.rank {
                continue;
            }
            let text = ep.data_addr.as_deref().ok_or_else(|| {
                Error::Protocol(format!("rank {} published no verbs endpoint", ep.rank))
            })?;
            let e = VerbsEndpoint::decode(text, ep.rank, self.world)?;
            if e.little_endian != native_little_endian() {
                return Err(Error::Protocol(format!(
                    "rank {} stores words in the other byte order; \
                     the verbs transport needs peers of one byte order",
                    ep.rank
                )));
            }
            let p = self.peer(ep.rank)?;
            let Some(dest) = e.qpn.get(self.rank).copied().flatten() else {
                return Err(Error::Protocol(format!(
                    "rank {} published no queue pair for rank {}",
                    ep.rank, self.rank
                )));
            };
            self.connect_one(p, &e, dest)
                .map_err(|source| Error::Peer {
                    op: "connect verbs queue pair",
                    peer: ep.rank,
                    source,
                })?;
        }
        Ok(())
    }

    fn connect_one(&self, p: &Peer, e: &VerbsEndpoint, dest_qpn: u32) -> io::Result<()> {
        let mut qp = lock(&p.qp);
        let mut ah = AddressHandleAttribute::new();
        ah.setup_port(self.port.port).setup_dest_lid(e.lid);
        if self.port.ethernet {
            ah.setup_grh(&Gid { raw: e.gid }, 0, self.port.gid_index as u8, 64, 0);
        }
        let mtu = Mtu::from(e.mtu.min(self.port.mtu));
        let mut rtr = QueuePairAttribute::new();
        rtr.setup_state(QueuePairState::ReadyToReceive)
            .setup_path_mtu(mtu)
            .setup_dest_qp_num(dest_qpn)
            .setup_rq_psn(e.psn)
            .setup_max_dest_read_atomic(0)
            .setup_min_rnr_timer(MIN_RNR_TIMER)
            .setup_address_vector(&ah);
        qp.modify(&rtr)
            .map_err(|e| io::Error::other(format!("to RTR: {e}")))?;
        let mut rts = QueuePairAttribute::new();
        rts.setup_state(QueuePairState::ReadyToSend)
            .setup_sq_psn(self.psn)
            .setup_timeout(self.settings.timeout_exp)
            .setup_retry_cnt(self.settings.retry)
            .setup_rnr_retry(RNR_RETRY)
            .setup_max_read_atomic(0);
        qp.modify(&rts)
            .map_err(|e| io::Error::other(format!("to RTS: {e}")))?;
        Ok(())
    }

    /// Sends a control message to `p` (waits for staging room, bounded).
    fn send_msg(&self, p: &Peer, msg: Msg, op: &'static str) -> Result<()> {
        let mut s = lock(&p.send);
        let mut deadline = Deadline::after(self.timeout);
        self.send_msg_locked(p, &mut s, msg, op, Some(&mut deadline))
            .map(|_| ())
    }

    /// With `deadline` None: only if there is room now (returns `Ok(false)` otherwise).
    fn send_msg_locked(
        &self,
        p: &Peer,
        s: &mut SendSide,
        msg: Msg,
        op: &'static str,
        deadline: Option<&mut Deadline>,
    ) -> Result<bool> {
        if p.failed.get().is_some() {
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
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.buf.ptr().add(r.start), MSG_BYTES);
        }
        let wr = SendWr {
            id: 0,
            op: Op::Send,
            local: s.buf.addr() + r.start as u64,
            len: MSG_BYTES as u32,
            lkey: s.mr.lkey(),
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
            // SAFETY: the channel is live while `p` is.
            let fd = unsafe { ffi::channel_fd(p.channel) };
            let [ready] = ffi::wait_readable([fd], ms);
            if ready {
                // SAFETY: the channel is live and non-blocking, its CQ live.
                unsafe { ffi::take_event(p.channel) };
            }
        }
    }

    /// A thread of this rank starts (`true`) or stops waiting for the
    /// receive thread: while any does, completions raise events.
    fn set_parked(&self, parked: bool) {
        if parked {
            self.parked.fetch_add(1, Ordering::SeqCst);
            // After the count: the receive thread reads it once woken.
            self.wakeup.wake();
        } else {
            self.parked.fetch_sub(1, Ordering::SeqCst);
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

    /// The receive thread: sleeps on the receive completion channel; an
    /// immediate value rings that object's doorbell (waking its parked
    /// readers), a control message updates the segment tables, and every
    /// receive is reposted.
    fn recv_loop(self: Arc<Self>) {
        // SAFETY: the channel lives as long as `self`.
        let ch_fd = unsafe { ffi::channel_fd(self.recv_channel) };
        let mut busy_until = Instant::now();
        while !self.closed.load(Ordering::Acquire) {
            let drained = self.drain_recv();
            self.flush_acks();
            if drained >= self.rq_depth / BUSY_SHARE {
                busy_until = Instant::now() + BUSY_HOLD;
            }
            let pending = || {
                self.peers
                    .iter()
                    .flatten()
                    .any(|p| p.has_pending.load(Ordering::Acquire))
            };
            if self.parked.load(Ordering::SeqCst) == 0 && Instant::now() >= busy_until {
                // Nobody is parked: a spinning reader watches the bell word
                // the writers store into, so completions need not raise
                // events (each one a wake-up of this thread, taking a core
                // from the ranks). Look again within QUIET_MS to repost
                // receives and read control messages; a reader about to park
                // or to wait for a control message wakes this thread at once
                // (`parking`), and a burst of completions brings events back
                // (BUSY_SHARE).
                let ms = if pending() { 2 } else { QUIET_MS };
                let [wake] = ffi::wait_readable([self.wakeup.fd()], ms);
                if wake {
                    self.wakeup.clear();
                }
                continue;
            }
            // Arm, then look once more: a completion that came before the
            // arming raises no event.
            // SAFETY: the receive CQ lives as long as `self`.
            if let Err(e) = unsafe { ffi::req_notify(self.recv_cq) } {
                tracing::error!(error = %e, "verbs: cannot arm receive completions; receive thread stops");
                return;
            }
            if self.drain_recv() > 0 {
                continue;
            }
            let ms = if pending() { 2 } else { 1000 };
            let [ev, wake] = ffi::wait_readable([ch_fd, self.wakeup.fd()], ms);
            if ev {
                // SAFETY: live non-blocking channel with a live CQ.
                unsafe { ffi::take_event(self.recv_channel) };
            }
            if wake {
                self.wakeup.clear();
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
            let n = match unsafe { ffi::poll_cq(self.recv_cq, &mut comps) } {
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
        match c.opcode {
            ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM => {
                p.arrivals.fetch_add(1, Ordering::Relaxed);
                // A chunk of a longer write only says the peer lives.
                if c.imm & PROGRESS_IMM == 0 {
                    let local = self.local.read().unwrap_or_else(|e| e.into_inner());
                    match local.get(c.imm as usize).and_then(Option::as_ref) {
                        Some(seg) => seg.region.ring(),
                        None => RejectCounters::bump(&self.rejects.bad_object),
                    }
                }
            }
            ibv_wc_opcode::IBV_WC_RECV => {
                let mut b = [0u8; MSG_BYTES];
                let len = (c.byte_len as usize).min(MSG_BYTES);
                let off = (rank * self.rq_depth + index) * RECV_BUF;
                // SAFETY: the receive completed, so the device has finished
                // writing this buffer, and it is not reposted until after
                // the copy; it lies inside `recv_buf`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.recv_buf.ptr().add(off),
                        b.as_mut_ptr(),
                        len,
                    );
                }
                match Msg::decode(&b[..len]).filter(|_| c.byte_len as usize == MSG_BYTES) {
                    Some(m) => self.on_msg(p, m),
                    None => RejectCounters::bump(&self.rejects.bad_header),
                }
            }
            _ => RejectCounters::bump(&self.rejects.bad_header),
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
                lock(&self.remote).insert(
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
                self.remote_cv.notify_all();
            }
            Msg::Gone { object } => {
                if let Some(r) = lock(&self.remote).remove(&(object, p.rank)) {
                    r.gone.store(true, Ordering::SeqCst);
                }
                // Posted under the send lock after `gone` is set: every
                // write that missed the flag is already ahead of the ack.
                lock(&p.pending_acks).push(object);
                p.has_pending.store(true, Ordering::Release);
            }
            Msg::GoneAck { object } => {
                let mut d = lock(&self.draining);
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

impl Transport for VerbsTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Verbs
    }

    fn spin(&self) -> Duration {
        self.shared.settings.spin
    }

    fn forget(&self, peers: &[usize]) {
        for &rank in peers {
            if let Some(p) = self.shared.peers.get(rank).and_then(Option::as_ref) {
                p.left.store(true, Ordering::Release);
            }
            // A writer waiting for this peer's completions (a full staging
            // ring or send queue) gives up within one wait slice instead of
            // the adapter's retry time; until then it holds the peer's send
            // lock, and the fault monitor's heartbeats to everybody else
            // would wait behind it.
            self.shared.peer_failed(
                rank,
                Failure {
                    kind: io::ErrorKind::ConnectionAborted,
                    what: "the peer left the group".into(),
                    flushed: false,
                },
            );
        }
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(self.local.clone())
    }

    fn start(&self, table: &[Endpoint]) -> Result<()> {
        self.shared.connect_all(table)
    }

    fn create(&self, object: u32, name: &str, layout: &Layout) -> Result<Arc<Region>> {
        let sh = &self.shared;
        let mut region = Region::anon(layout.total).map_err(|source| Error::Segment {
            path: format!("verbs:{name}").into(),
            op: "allocate",
            source,
        })?;
        region.watch_bells(layout);
        let region = Arc::new(region);
        let (addr, len) = (region.as_mut_ptr() as u64, region.len() as u64);
        let register = |off: usize, n: usize| {
            debug_assert!(off + n <= region.len());
            // SAFETY: `off..off + n` lies inside the region's mapping (the
            // layout's ranges are inside its total), which lives as long as
            // the `LocalSeg` that holds both; it deregisters (`_mrs`) before
            // dropping its reference to the region.
            unsafe {
                sh.pd.reg_mr(
                    region.as_mut_ptr().add(off) as usize,
                    n,
                    AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
                )
            }
            .map_err(|e| mem_err(name, e))
        };
        // Each live peer gets its own words and, if it sends, its own queue,
        // each under a key of its own.
        let mut mrs = Vec::new();
        let mut announce = Vec::new();
        for p in sh.peers.iter().flatten() {
            if p.left.load(Ordering::Acquire) {
                continue;
            }
            let words = register(layout.ack_offset(p.rank), PEER_WORDS_BYTES)?;
            let queue = match layout.queue_index(p.rank) {
                Some(q) => {
                    let (off, n) = layout.queue_range(q);
                    Some(register(off, n)?)
                }
                None => None,
            };
            let msg = Msg::Announce {
                object,
                addr,
                len,
                rkey: queue.as_ref().map_or(0, |m| m.rkey()),
                words_rkey: words.rkey(),
            };
            announce.push((p, msg));
            mrs.push(words);
            mrs.extend(queue);
        }
        {
            let mut local = sh.local.write().unwrap_or_else(|e| e.into_inner());
            let i = object as usize;
            if local.len() <= i {
                local.resize_with(i + 1, || None);
            }
            local[i] = Some(Arc::new(LocalSeg {
                _mrs: mrs,
                region: region.clone(),
            }));
        }
        // Survivors create the next epoch's objects while departed ranks'
        // connections are failing or failed: those get no announcement.
        for (p, msg) in announce {
            if let Err(e) = sh.send_msg(p, msg, "announce verbs segment") {
                self.destroy(object);
                return Err(e);
            }
        }
        Ok(region)
    }

    fn connect(
        &self,
        object: u32,
        name: &str,
        peers: &[(usize, Layout)],
    ) -> Result<Box<dyn Links>> {
        let sh = &self.shared;
        let start = Instant::now();
        let deadline = start + sh.timeout;
        let mut remotes: Vec<Option<RemoteSeg>> = vec![None; sh.world];
        let mut table = lock(&sh.remote);
        for (peer, layout) in peers {
            let p = sh.peer(*peer)?;
            let seg = loop {
                if let Some(seg) = table.get(&(object, *peer)) {
                    break seg.clone();
                }
                if let Some(f) = p.failure() {
                    return Err(f.to_error("connect verbs segment", *peer));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout {
                        op: format!("object {name:?}: waiting for rank {peer}'s verbs segment"),
                        waited: now - start,
                        missing: vec![*peer],
                    });
                }
                // The announcement comes as a control message: have the
                // receive thread wake for it.
                sh.set_parked(true);
                table = sh
                    .remote_cv
                    .wait_timeout(table, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                sh.set_parked(false);
            };
            if seg.len != layout.total as u64 {
                return Err(Error::SegmentMismatch {
                    path: format!("verbs:{name}@rank{peer}").into(),
                    problem: format!("{} bytes announced, expected {}", seg.len, layout.total),
                });
            }
            remotes[*peer] = Some(RemoteSeg {
                words_at: layout.ack_offset(sh.rank),
                ..seg
            });
        }
        drop(table);
        Ok(Box::new(VerbsLinks {
            shared: sh.clone(),
            object,
            remotes,
        }))
    }

    fn destroy(&self, object: u32) {
        let sh = &self.shared;
        let seg = {
            let mut local = sh.local.write().unwrap_or_else(|e| e.into_inner());
            local.get_mut(object as usize).and_then(Option::take)
        };
        lock(&sh.remote).retain(|(o, _), _| *o != object);
        let Some(seg) = seg else {
            return;
        };
        let waiting: Vec<bool> = sh
            .peers
            .iter()
            .map(|p| p.as_ref().is_some_and(|p| p.failed.get().is_none()))
            .collect();
        if !waiting.iter().any(|w| *w) {
            return;
        }
        lock(&sh.draining).insert(
            object,
            Draining {
                _seg: seg,
                waiting: waiting.clone(),
            },
        );
        for (rank, w) in waiting.iter().enumerate() {
            if !*w {
                continue;
            }
            if let Some(p) = sh.peers[rank].as_ref() {
                // A failure here fails the peer, which also stops waiting for it.
                let _ = sh.send_msg(p, Msg::Gone { object }, "release verbs segment");
            }
        }
    }

    fn rejected(&self) -> RejectCounts {
        self.shared.rejects.snapshot()
    }
}

impl Drop for VerbsTransport {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wakeup.wake();
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

/// The bytes of one slot write: header, payload, zero padding, trailer.
struct Image<'a> {
    parts: [&'a [u8]; 4],
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
struct VerbsLinks {
    shared: Arc<Shared>,
    object: u32,
    remotes: Vec<Option<RemoteSeg>>,
}

impl VerbsLinks {
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
            unsafe { img.copy_to(s.buf.ptr().add(r.start), at, n) };
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
                    local: s.buf.addr() + r.start as u64,
                    len: n as u32,
                    lkey: s.mr.lkey(),
                    remote: remote.addr + (offset + at) as u64,
                    rkey,
                    signalled: false,
                },
                SendWr {
                    id: 0,
                    op: Op::WriteImm(self.object),
                    local: s.buf.addr() + (r.start + pad8(n)) as u64,
                    len: 4,
                    lkey: s.mr.lkey(),
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
                        s.buf.ptr().add(r.start + pad8(n)),
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
        payload: &[u8],
        wait: bool,
    ) -> Result<bool> {
        let hb = header_bytes(h);
        let tb = crate::segment::trailer_value(h.seq, payload.len() as u64).to_ne_bytes();
        let pad = pad8(payload.len()) - payload.len();
        let img = Image {
            parts: [&hb, payload, &ZEROS[..pad], &tb],
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
        payload: &[u8],
    ) -> Result<()> {
        self.put_slot(peer, offset, h, payload, true).map(|_| ())
    }

    fn try_write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: &[u8],
    ) -> Result<bool> {
        self.put_slot(peer, offset, h, payload, false)
    }

    fn write_slot_torn(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: &[u8],
    ) -> Result<()> {
        let hb = header_bytes(h);
        let img = Image {
            parts: [&hb, payload, &[], &[]],
            total: HEADER_BYTES + payload.len(),
        };
        self.write_image(peer, offset, &img, true).map(|_| ())
    }

    fn write_word(&mut self, peer: usize, offset: usize, value: u64) -> Result<()> {
        let v = value.to_ne_bytes();
        let img = Image {
            parts: [&v, &[], &[], &[]],
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
            parts: [&hb, b"hello", &ZEROS[..3], &tb],
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

    #[test]
    fn completion_errors_read_as_peer_errors() {
        let f = Failure::from_status(ibv_wc_status::IBV_WC_RETRY_EXC_ERR, 0x81, "rdma write");
        match f.to_error("rdma write", 3) {
            Error::Peer { peer, source, .. } => {
                assert_eq!(peer, 3);
                assert_eq!(source.kind(), io::ErrorKind::TimedOut);
                assert!(source.to_string().contains("retry counter exceeded"));
            }
            e => panic!("{e:?}"),
        }
    }
}
