//! The verbs transport of one rank: its setup (device, protection domain,
//! the receive side, one [`Peer`] connection per peer, the receive
//! thread), the state those share, the order in which it is torn down, and
//! the [`Transport`] implementation, which hands segments to `segments`.
//! See the module documentation of `verbs` for the protocol; the send path
//! is in `send`, the receive thread in `recv`, failures in `failure`.

use super::device::{self, Port};
use super::endpoint::{native_little_endian, VerbsEndpoint};
use super::failure::Failure;
use super::pair::{Peer, SQ_DEPTH};
use super::recv::Receiver;
use super::segments::Segments;
use super::settings::{detection_time, Settings};
use crate::config::{Config, ProcessEnv, TransportKind};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::segment::Region;
use crate::transport::{Endpoint, Links, RejectCounts, Transport};
use sideway::ibverbs::protection_domain::ProtectionDomain;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most receives posted per peer (immediate data and control messages);
/// fewer when the device's completion queues are too small for all peers.
const RQ_DEPTH: usize = 1024;

/// Locks a mutex, ignoring poisoning (state stays consistent: every
/// critical section here either completes or only records a failure).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error of a failed device call.
pub(crate) fn device_err(step: &str, port: &Port, e: impl fmt::Display) -> Error {
    Error::Unsupported {
        transport: "verbs",
        why: format!("{} port {}: {step} failed: {e}", port.device, port.port),
    }
}

/// What the transport, its links and its receive thread share.
pub(crate) struct Shared {
    pub rank: usize,
    pub world: usize,
    pub timeout: Duration,
    /// Bound on waiting for a peer's segment announcement: the rendezvous
    /// bound (a live peer announces at once; `timeout` may be a year).
    pub setup_timeout: Duration,
    pub settings: Settings,
    pub port: Port,
    pub pd: Arc<ProtectionDomain>,
    /// This rank's first packet sequence number, on every queue pair.
    pub psn: u32,
    /// By rank; `None` at this rank's own.
    pub peers: Vec<Option<Peer>>,
    pub recv: Receiver,
    pub segs: Segments,
    /// The value this rank last wrote into its doorbell words at the peers.
    pub bell: AtomicU32,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The queue pairs first (each `Peer` destroys its own before its
        // staging memory): after that the device writes no receive buffer
        // and no segment of this rank.
        self.peers.clear();
        // Then the segments' registrations, before their memory may go.
        self.segs.clear();
        // The rest in any order: the receive buffers deregister before
        // they unmap (`Registered`), and sideway's handles keep what they
        // depend on (protection domain, device context) alive themselves.
    }
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
        let recv = Receiver::new(&port, &pd, cfg.world, rq_depth)?;
        let mut peers = Vec::with_capacity(cfg.world);
        for r in 0..cfg.world {
            peers.push(if r == cfg.rank {
                None
            } else {
                Some(Peer::new(
                    r,
                    &port,
                    &pd,
                    recv.cq(),
                    rq_depth,
                    settings.staging,
                )?)
            });
        }
        let psn = rand::random::<u32>() & 0xff_ffff;
        let shared = Arc::new(Shared {
            rank: cfg.rank,
            world: cfg.world,
            timeout: cfg.timeout,
            setup_timeout: cfg.timeout.min(cfg.rendezvous_timeout),
            settings,
            port,
            pd,
            psn,
            peers,
            recv,
            segs: Segments::default(),
            bell: AtomicU32::new(0),
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

impl Shared {
    /// The connection to `rank`.
    pub fn peer(&self, rank: usize) -> Result<&Peer> {
        self.peers
            .get(rank)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Protocol(format!("no verbs connection to rank {rank}")))
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
            p.connect(&self.port, &self.settings, self.psn, &e, dest)
                .map_err(|source| Error::Peer {
                    op: "connect verbs queue pair",
                    peer: ep.rank,
                    source,
                })?;
        }
        Ok(())
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
            self.shared.peer_failed(rank, Failure::left_group());
        }
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(self.local.clone())
    }

    fn start(&self, table: &[Endpoint]) -> Result<()> {
        self.shared.connect_all(table)
    }

    fn create(&self, object: u32, name: &str, layout: &Layout) -> Result<Arc<Region>> {
        self.shared.create(object, name, layout)
    }

    fn connect(
        &self,
        object: u32,
        name: &str,
        peers: &[(usize, Layout)],
    ) -> Result<Box<dyn Links>> {
        self.shared.connect(object, name, peers)
    }

    fn destroy(&self, object: u32) {
        self.shared.destroy(object)
    }

    fn rejected(&self) -> RejectCounts {
        self.shared.recv.rejects.snapshot()
    }
}

impl Drop for VerbsTransport {
    fn drop(&mut self) {
        self.shared.recv.closed.store(true, Ordering::Release);
        self.shared.recv.wakeup.wake();
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
