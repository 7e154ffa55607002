//! One peer's connection: its reliable-connection queue pair (shared by
//! every object), the send side that feeds it (a send completion queue and
//! channel, registered staging memory and the ring that hands it out), and
//! the state the receive thread and the failure path keep for the peer.
//! [`Peer::new`] creates the queue pair in state Init; [`Peer::connect`]
//! takes it to RTR and RTS once the peer's endpoint is known.

use super::device::Port;
use super::endpoint::VerbsEndpoint;
use super::failure::Failure;
use super::ffi::{ChannelPtr, CqPtr, QpPtr};
use super::memory::{DmaBuf, Registered};
use super::rc::{device_err, lock};
use super::ring::Ring;
use super::settings::Settings;
use crate::error::Result;
use sideway::ibverbs::address::{AddressHandleAttribute, Gid};
use sideway::ibverbs::completion::{BasicCompletionQueue, CompletionChannel, CompletionQueue};
use sideway::ibverbs::device_context::Mtu;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{BasicQueuePair, QueuePair, QueuePairAttribute, QueuePairState};
use sideway::ibverbs::AccessFlags;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};

/// Send queue depth per peer (work requests in flight).
pub(crate) const SQ_DEPTH: usize = 256;
/// Receive-not-ready NAK timer (IB encoding 6: 0.08 ms).
const MIN_RNR_TIMER: u8 = 6;
/// Receive-not-ready retries: 7 means "retry forever" (a live peer's
/// receive thread always reposts; a dead peer shows up as a transport
/// retry error instead).
const RNR_RETRY: u8 = 7;

/// One peer's send path: its completion queue and channel, staging memory
/// and ring. Used only under the peer's send lock.
#[derive(Debug)]
pub(crate) struct SendSide {
    pub cq: CqPtr,
    _cq: Arc<BasicCompletionQueue>,
    /// The send completion queue's channel, slept on by a writer that
    /// waits for room.
    pub channel: ChannelPtr,
    _channel: Arc<CompletionChannel>,
    pub staging: Registered,
    pub ring: Ring,
    pub next_id: u64,
}

/// One peer's connection.
#[derive(Debug)]
pub(crate) struct Peer {
    pub rank: usize,
    /// The queue pair; `None` only while dropping (see `Drop`).
    qp: Mutex<Option<BasicQueuePair>>,
    /// Its handle for posting without the lock (valid while `qp` is `Some`).
    pub qp_ptr: QpPtr,
    pub qp_num: u32,
    pub send: Mutex<SendSide>,
    /// The first failure of the connection (see `failure`).
    pub failed: OnceLock<Failure>,
    /// The first failure that is not a flush, when one was seen: the cause
    /// reported in preference to `failed`.
    pub cause: OnceLock<Failure>,
    /// Objects whose `Gone` this rank must still acknowledge.
    pub pending_acks: Mutex<Vec<u32>>,
    pub has_pending: AtomicBool,
    /// Left the group (`forget`): no new segment is announced to it.
    pub left: AtomicBool,
    /// Immediate-data writes received from this peer: grows while a long
    /// update arrives chunk by chunk (the fault monitor's sign of life).
    pub arrivals: AtomicU64,
}

/// A non-blocking completion channel.
pub(crate) fn completion_channel(port: &Port) -> Result<Arc<CompletionChannel>> {
    let ch = CompletionChannel::new(&port.ctx)
        .map_err(|e| device_err("creating a completion channel", port, e))?;
    ch.set_nonblocking(true)
        .map_err(|e| device_err("configuring a completion channel", port, e))?;
    Ok(ch)
}

impl Peer {
    /// The connection to `rank`: a queue pair in state Init whose receives
    /// complete on `recv_cq` (at most `rq_depth` posted), with `staging`
    /// bytes of registered staging memory.
    pub fn new(
        rank: usize,
        port: &Port,
        pd: &Arc<ProtectionDomain>,
        recv_cq: &Arc<BasicCompletionQueue>,
        rq_depth: usize,
        staging: usize,
    ) -> Result<Peer> {
        let ch = completion_channel(port)?;
        let cq = port
            .ctx
            .create_cq_builder()
            .setup_cqe((SQ_DEPTH + 16) as u32)
            .setup_comp_channel(&ch, 0)
            .build()
            .map_err(|e| device_err("creating a send completion queue", port, e))?;
        let mut qp = pd
            .create_qp_builder()
            .setup_max_send_wr(SQ_DEPTH as u32)
            .setup_max_recv_wr(rq_depth as u32)
            .setup_max_send_sge(1)
            .setup_max_recv_sge(1)
            .setup_send_cq(cq.clone())
            .setup_recv_cq(recv_cq.clone())
            .build()
            .map_err(|e| device_err("creating a queue pair", port, e))?;
        let mut attr = QueuePairAttribute::new();
        attr.setup_state(QueuePairState::Init)
            .setup_pkey_index(0)
            .setup_port(port.port)
            .setup_access_flags(AccessFlags::LocalWrite | AccessFlags::RemoteWrite);
        qp.modify(&attr)
            .map_err(|e| device_err("initialising a queue pair", port, e))?;
        let buf =
            DmaBuf::new(staging).map_err(|e| device_err("allocating staging memory", port, e))?;
        let staging = Registered::new(pd, buf, "staging memory")?;
        // SAFETY: the handles stay valid while `qp`, `cq` and `ch` live,
        // which the `Peer` and its `SendSide` keep (the queue pair until
        // the peer drops).
        let (qp_ptr, cq_ptr, ch_ptr) = unsafe {
            (
                QpPtr(qp.qp()),
                CqPtr(cq.cq()),
                ChannelPtr(ch.comp_channel()),
            )
        };
        let qp_num = qp.qp_number();
        Ok(Peer {
            rank,
            qp: Mutex::new(Some(qp)),
            qp_ptr,
            qp_num,
            send: Mutex::new(SendSide {
                cq: cq_ptr,
                _cq: cq,
                channel: ch_ptr,
                _channel: ch,
                ring: Ring::new(staging.len(), SQ_DEPTH),
                staging,
                next_id: 1,
            }),
            failed: OnceLock::new(),
            cause: OnceLock::new(),
            pending_acks: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            left: AtomicBool::new(false),
            arrivals: AtomicU64::new(0),
        })
    }

    /// Connects the queue pair to queue pair `dest_qpn` of the peer
    /// described by `e` (RTR, then RTS); `psn` is this rank's first packet
    /// sequence number.
    pub fn connect(
        &self,
        port: &Port,
        settings: &Settings,
        psn: u32,
        e: &VerbsEndpoint,
        dest_qpn: u32,
    ) -> io::Result<()> {
        let mut guard = lock(&self.qp);
        let qp = guard
            .as_mut()
            .ok_or_else(|| io::Error::other("the queue pair is gone"))?;
        let mut ah = AddressHandleAttribute::new();
        ah.setup_port(port.port).setup_dest_lid(e.lid);
        if port.ethernet {
            ah.setup_grh(&Gid { raw: e.gid }, 0, port.gid_index as u8, 64, 0);
        }
        let mtu = Mtu::from(e.mtu.min(port.mtu));
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
            .setup_sq_psn(psn)
            .setup_timeout(settings.timeout_exp)
            .setup_retry_cnt(settings.retry)
            .setup_rnr_retry(RNR_RETRY)
            .setup_max_read_atomic(0);
        qp.modify(&rts)
            .map_err(|e| io::Error::other(format!("to RTS: {e}")))?;
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The queue pair goes first: once it is destroyed the device reads
        // no staging memory of this peer, and the registered memory (which
        // deregisters before it unmaps) and the completion queues it used
        // may follow in any order.
        drop(self.qp.get_mut().unwrap_or_else(|p| p.into_inner()).take());
    }
}
