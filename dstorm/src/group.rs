//! A group of ranks and the objects they share.

use crate::config::{Config, TransportKind};
use crate::control::View;
use crate::control::{self, Client};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::segment::{Region, SlotRead};
use crate::transport::{Endpoint, Links, RejectCounts, Transport};
use crate::wire::SlotHeader;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a sender does when its next slot in a receiver's queue still holds
/// an update the receiver has not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// Latest wins: the old update is overwritten and counted as lapped.
    #[default]
    Overwrite,
    /// The sender waits for the receiver's acknowledgement (bounded by the timeout).
    Backpressure,
}

/// A collective object's description; every rank must pass the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// Unique name within the group.
    pub name: String,
    /// Largest update in bytes.
    pub capacity: usize,
    /// Slots per sender queue, at least 2.
    pub depth: usize,
    /// Overwrite or backpressure.
    pub flow: FlowControl,
    /// Out-neighbours of every rank (`None`: every rank writes to every other).
    pub graph: Option<Vec<Vec<usize>>>,
}

impl ObjectSpec {
    /// An all-to-all object of `capacity` bytes, depth 2, overwrite.
    pub fn new(name: impl Into<String>, capacity: usize) -> ObjectSpec {
        ObjectSpec {
            name: name.into(),
            capacity,
            depth: 2,
            flow: FlowControl::Overwrite,
            graph: None,
        }
    }

    /// Sets the queue depth.
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Sets the flow control.
    pub fn flow(mut self, flow: FlowControl) -> Self {
        self.flow = flow;
        self
    }

    /// Sets the out-neighbour lists of every rank.
    pub fn graph(mut self, out_neighbors: Vec<Vec<usize>>) -> Self {
        self.graph = Some(out_neighbors);
        self
    }

    fn bad(&self, problem: String) -> Error {
        Error::BadObject {
            name: self.name.clone(),
            problem,
        }
    }

    /// Out-neighbours per rank, validated and normalised (sorted, no self loops).
    fn adjacency(&self, world: usize) -> Result<Vec<Vec<usize>>> {
        if self.capacity == 0 {
            return Err(self.bad("capacity must be at least 1 byte".into()));
        }
        if self.capacity > (1 << 40) {
            return Err(self.bad(format!("capacity {} is absurd", self.capacity)));
        }
        if !(2..=1024).contains(&self.depth) {
            return Err(self.bad(format!("depth {} is not in 2..=1024", self.depth)));
        }
        let adj = match &self.graph {
            None => (0..world)
                .map(|r| (0..world).filter(|p| *p != r).collect())
                .collect(),
            Some(g) => {
                if g.len() != world {
                    return Err(
                        self.bad(format!("graph has {} rows for a world of {world}", g.len()))
                    );
                }
                let mut adj = Vec::with_capacity(world);
                for (r, row) in g.iter().enumerate() {
                    if let Some(p) = row.iter().find(|p| **p >= world) {
                        return Err(
                            self.bad(format!("rank {r} names out-neighbour {p} >= {world}"))
                        );
                    }
                    let mut row: Vec<usize> = row.iter().copied().filter(|p| *p != r).collect();
                    row.sort_unstable();
                    row.dedup();
                    adj.push(row);
                }
                adj
            }
        };
        Ok(adj)
    }
}

/// A rank's membership in a job: identity, control channel and transport.
#[derive(Debug)]
pub struct Group {
    cfg: Config,
    table: Vec<Endpoint>,
    control: Mutex<Client>,
    view: Arc<View>,
    transport: Arc<dyn Transport>,
    /// (name, epoch) of every object created, indexed by object id.
    objects: Mutex<Vec<(String, u32)>>,
    /// Rank 0: signalled when the coordinator has seen every rank leave.
    /// (In a mutex so that a group can be shared between threads.)
    coordinator: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    monitor: Option<crate::monitor::Monitor>,
    finished: bool,
}

/// The group after a regroup, as [`Group::regroup`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The epoch now in force.
    pub epoch: u32,
    /// The survivors, ascending (original rank numbers).
    pub members: Vec<usize>,
    /// Every rank that has left the group so far.
    pub dead: Vec<usize>,
}

impl Membership {
    /// This rank's position among the survivors and their number: the
    /// share of the work it takes on (for re-sharding data).
    pub fn share_of(&self, rank: usize) -> Option<(usize, usize)> {
        self.members
            .iter()
            .position(|r| *r == rank)
            .map(|i| (i, self.members.len()))
    }
}

fn make_transport(cfg: &Config) -> Result<Arc<dyn Transport>> {
    Ok(match cfg.transport {
        TransportKind::Shm => Arc::new(crate::transport::shm::ShmTransport::new(
            &cfg.shm_dir,
            &cfg.token,
            cfg.rank,
        )?),
        TransportKind::Tcp => Arc::new(crate::transport::tcp::TcpTransport::new(
            &crate::transport::tcp::bind_addr(cfg),
            cfg.rank,
            cfg.world,
            &cfg.token,
            1,
            cfg.timeout,
        )?),
        TransportKind::Verbs => crate::transport::verbs::transport(cfg)?,
    })
}

impl Group {
    /// Joins the job described by the environment (see [`Config::from_env`]).
    pub fn from_env() -> Result<Group> {
        Group::join(Config::from_env()?)
    }

    /// Joins the job described by `cfg`: rank 0 starts the coordinator, every
    /// rank says hello, receives the endpoint table and connects its transport.
    pub fn join(cfg: Config) -> Result<Group> {
        if cfg.rank >= cfg.world {
            return Err(Error::RankOutOfRange {
                rank: cfg.rank,
                world: cfg.world,
            });
        }
        let coordinator = if cfg.rank == 0 && !cfg.external_coordinator {
            let l = control::bind(&cfg.master_addr, cfg.master_port)?;
            let policy = cfg.fault_policy();
            Some(
                control::spawn_coordinator(
                    l,
                    cfg.token.clone(),
                    cfg.world,
                    cfg.bounds(),
                    policy,
                    Default::default(),
                    None,
                )?
                .1,
            )
        } else {
            None
        };
        let transport = make_transport(&cfg)?;
        // A coordinator hosted by a rank may move to another if that rank
        // fails (see `failover`): each rank of a fault-tolerant job stands
        // by to host it.
        let standby = if cfg.fault_policy().tolerant(cfg.world) && !cfg.external_coordinator {
            let bind = crate::transport::tcp::bind_addr(&cfg);
            Some(crate::transport::tcp::listen(
                &bind,
                "bind the standby coordinator listener",
            )?)
        } else {
            None
        };
        let me = Endpoint {
            rank: cfg.rank,
            host: crate::env::hostname().unwrap_or_default(),
            pid: std::process::id(),
            data_addr: transport.local_endpoint(),
            standby: standby.as_ref().map(|(_, addr)| addr.to_string()),
        };
        let (client, table, nonce) =
            Client::join(&cfg, me, transport.clone(), standby.map(|(l, _)| l))?;
        transport.welcome(nonce);
        transport.start(&table)?;
        let view = client.view().clone();
        let mut g = Group {
            cfg,
            table,
            control: Mutex::new(client),
            view,
            transport,
            objects: Mutex::new(Vec::new()),
            coordinator: Mutex::new(coordinator),
            monitor: None,
            finished: false,
        };
        if let Err(e) = g.start_monitor() {
            // The others hear why, not only that this rank left.
            g.fail(&e);
            return Err(e);
        }
        tracing::info!(
            rank = g.cfg.rank,
            world = g.cfg.world,
            transport = %g.cfg.transport.as_str(),
            "joined the job"
        );
        Ok(g)
    }

    /// The first barrier, then the fault monitor. Every job of several
    /// ranks runs the fault monitors: a dead, stopped or hung rank is found
    /// within 2T and ends a job that tolerates no failure (or is evicted
    /// from one that does), so collectives need no short timeout.
    fn start_monitor(&mut self) -> Result<()> {
        // Every rank's transport is connected before anyone writes.
        self.barrier()?;
        if self.cfg.world > 1 {
            let mut beats =
                self.create_object(&ObjectSpec::new(crate::monitor::HEARTBEAT_OBJECT, 8).depth(2))?;
            // Heartbeats flow whatever the epoch.
            beats.ignore_membership();
            self.monitor = Some(crate::monitor::Monitor::start(
                beats,
                self.view.clone(),
                self.cfg.fail_timeout,
            )?);
        }
        Ok(())
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.cfg.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.cfg.world
    }

    /// This rank's number among the ranks on its host, where the launcher
    /// says (`malt launch`, torchrun, mpirun, MPICH, srun).
    pub fn local_rank(&self) -> Option<usize> {
        self.cfg.local_rank
    }

    /// How many ranks of the job run on this host, where the launcher says.
    pub fn local_world(&self) -> Option<usize> {
        self.cfg.local_world
    }

    /// Membership epoch: 1 at the start, one more after every regroup.
    pub fn epoch(&self) -> u32 {
        self.view.epoch()
    }

    /// The ranks currently in the group, ascending (all ranks until a
    /// regroup removes some).
    pub fn members(&self) -> Vec<usize> {
        self.view.members()
    }

    /// Whether the job survives failures (`MALT_MIN_RANKS` below the world size).
    pub fn fault_tolerant(&self) -> bool {
        self.cfg.fault_policy().tolerant(self.cfg.world)
    }

    /// `Ok` while the group is intact; [`Error::Regrouped`] once it lost
    /// members and this rank has not called [`regroup`](Self::regroup)
    /// yet; [`Error::Evicted`] or [`Error::Quorum`] when it is over.
    pub fn check(&self) -> Result<()> {
        let epoch = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .epoch();
        self.view.check(epoch)
    }

    /// After [`Error::Regrouped`]: joins the survivors in the new epoch (a
    /// collective among them). If another rank fails meanwhile, regroups
    /// again, within the job timeout. Objects of older epochs stay refused;
    /// create them again (vol: `rejoin`).
    pub fn regroup(&self) -> Result<Membership> {
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
            let epoch = c.adopt();
            let members = self.view.members();
            let dead = self.view.dead();
            match c.allgather("regroup", String::new()) {
                Ok(_) => {
                    return Ok(Membership {
                        epoch,
                        members,
                        dead,
                    })
                }
                Err(Error::Regrouped { .. }) if Instant::now() < deadline => {
                    drop(c);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The transport carrying model bytes.
    pub fn transport(&self) -> TransportKind {
        self.transport.kind()
    }

    /// How a waiting reader spins before it parks: for `MALT_SPIN_US` on
    /// shm and tcp, the transport's own setting on verbs, yielding its CPU
    /// between looks from the start when this host runs more ranks than
    /// this process may use CPUs.
    fn spin(&self) -> Spin {
        let base = match (self.cfg.spin, self.transport.kind()) {
            (Some(spin), TransportKind::Shm | TransportKind::Tcp) => spin,
            _ => self.transport.spin(),
        };
        let host = self.table.get(self.cfg.rank).map(|e| e.host.as_str());
        let here = self
            .table
            .iter()
            .filter(|e| Some(e.host.as_str()) == host)
            .count();
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Spin::new(base, here > cpus)
    }

    /// The configuration this group was joined with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The endpoint table received at rendezvous.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.table
    }

    /// Frames this rank's receive path rejected, by reason (tcp).
    pub fn rejected(&self) -> RejectCounts {
        self.transport.rejected()
    }

    /// Every member's `data` in rank order (control channel; small data only).
    pub fn allgather(&self, data: &str) -> Result<Vec<String>> {
        self.ctl("allgather", data.to_string())
    }

    fn ctl(&self, op: &'static str, data: String) -> Result<Vec<String>> {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allgather(op, data)
    }

    /// Waits until every rank has called `barrier`, at most the job timeout.
    pub fn barrier(&self) -> Result<()> {
        self.ctl("barrier", String::new()).map(|_| ())
    }

    /// Tells the other ranks that this one is stopping because of
    /// `reason`, before it leaves: in a job that tolerates no failure every
    /// rank's error then names this rank and says why, within moments
    /// (a fault-tolerant job regroups without it). Call it on the way out
    /// of an error; dropping the group afterwards says goodbye.
    pub fn fail(&self, reason: impl std::fmt::Display) {
        self.view
            .announce_failure(format!("stopped with an error: {reason}"));
    }

    /// A final barrier, then leave: peers may still be writing to this rank
    /// until everybody is done.
    pub fn finish(mut self) -> Result<()> {
        self.finish_in_place()
    }

    /// [`finish`](Self::finish) for a group held behind a lock or a shared
    /// pointer: the final barrier, after which dropping the group says a
    /// clean goodbye. Dropping a group that has not finished tells the
    /// others that this rank left the job before its end, which stops a job
    /// that tolerates no failure.
    pub fn finish_in_place(&mut self) -> Result<()> {
        self.barrier()?;
        self.finished = true;
        Ok(())
    }

    /// Creates an object collectively. Every rank must pass the same spec;
    /// otherwise every rank gets [`Error::Mismatch`] naming the first rank
    /// and field that differ.
    pub fn create_object(&self, spec: &ObjectSpec) -> Result<Object> {
        let world = self.world();
        let adj_local = spec.adjacency(world);
        let mine = serde_json::to_string(spec).map_err(|e| Error::Protocol(e.to_string()))?;
        let epoch = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .epoch();
        let members = self.view.members();
        let all = self.ctl("create object", mine)?;
        let specs: Vec<ObjectSpec> = all
            .iter()
            .map(|s| serde_json::from_str(s).map_err(|e| Error::Protocol(e.to_string())))
            .collect::<Result<_>>()?;
        check_agreement(&specs, &members)?;
        // Only members take part: departed ranks neither send nor receive.
        let adj: Vec<Vec<usize>> = adj_local?
            .into_iter()
            .enumerate()
            .map(|(r, row)| {
                if members.binary_search(&r).is_err() {
                    return Vec::new();
                }
                row.into_iter()
                    .filter(|p| members.binary_search(p).is_ok())
                    .collect()
            })
            .collect();
        let id = {
            let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
            if objects.iter().any(|(n, e)| *n == spec.name && *e == epoch) {
                return Err(spec.bad("an object of this name already exists".into()));
            }
            objects.push((spec.name.clone(), epoch));
            (objects.len() - 1) as u32
        };
        let rank = self.rank();
        let in_of =
            |r: usize| -> Vec<usize> { (0..world).filter(|s| adj[*s].contains(&r)).collect() };
        let layout_of = |r: usize| Layout::new(spec.capacity, spec.depth, in_of(r), world);
        let layout = layout_of(rank);
        let region = self.transport.create(id, &spec.name, &layout)?;
        // Every segment exists before anyone connects to it.
        let created = self.barrier();
        if let Err(e) = created {
            self.transport.destroy(id);
            return Err(e);
        }
        let out = adj[rank].clone();
        let mut linked: Vec<usize> = out.clone();
        if spec.flow == FlowControl::Backpressure {
            linked.extend(layout.senders.iter().copied());
            linked.sort_unstable();
            linked.dedup();
        }
        let peers: Vec<(usize, Layout)> = linked.iter().map(|p| (*p, layout_of(*p))).collect();
        let links = self.transport.connect(id, &spec.name, &peers);
        // Nobody may drop (and so unlink) the object before every peer has
        // connected to it, and a failure anywhere fails the creation
        // everywhere: the ranks exchange how connecting went.
        let status = match &links {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        let outcome = self.ctl("connect object", status).and_then(|all| {
            match all.iter().enumerate().find(|(_, s)| !s.is_empty()) {
                None => Ok(()),
                Some((r, why)) => Err(spec.bad(format!("rank {r} could not connect: {why}"))),
            }
        });
        let links = match (links, outcome) {
            (Err(e), _) | (_, Err(e)) => {
                self.transport.destroy(id);
                return Err(e);
            }
            (Ok(l), Ok(())) => l,
        };
        let mut queue_at = vec![None; world];
        for (p, l) in &peers {
            queue_at[*p] = l.queue_index(rank);
        }
        let nq = layout.senders.len();
        tracing::debug!(
            object = %spec.name,
            id,
            capacity = spec.capacity,
            depth = spec.depth,
            ?out,
            senders = ?layout.senders,
            "created an object"
        );
        self.view.register(&region);
        Ok(Object {
            id,
            name: spec.name.clone(),
            rank,
            epoch,
            view: self.view.clone(),
            tracks: true,
            tolerant: self.fault_tolerant(),
            spin: self.spin(),
            timeout: self.cfg.timeout,
            flow: spec.flow,
            out,
            queue_at,
            send_seq: vec![0; world],
            next_seq: vec![1; nq],
            together: Vec::new(),
            cursor: 0,
            counters: Counters {
                peers: (0..world).map(|_| PeerCounters::default()).collect(),
                ..Counters::default()
            },
            layout,
            region,
            links,
            transport: self.transport.clone(),
        })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.view
                .announce_failure(format!("rank {} panicked", self.cfg.rank));
        }
        self.monitor.take();
        self.view.bye(self.finished);
        // Rank 0 hosts the coordinator: leaving at once could cut off the
        // answers other ranks are still waiting for. Stay (bounded) until
        // every rank has left.
        let coordinator = self
            .coordinator
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // So does a rank that took the coordinator over.
        for done in coordinator.into_iter().chain(self.view.take_hosted()) {
            let _ = done.recv_timeout(self.cfg.timeout.min(HOST_LINGER));
        }
    }
}

/// Longest a rank that hosts the coordinator stays after leaving, for the
/// others' last answers: a rank that is stopped or hung at the end must not
/// keep it forever.
const HOST_LINGER: Duration = Duration::from_secs(30);

/// A group may be shared between threads (collectives serialise on the
/// control channel).
#[allow(dead_code)]
fn assert_group_is_sync() {
    fn sync<T: Sync + Send>() {}
    sync::<Group>();
}

fn check_agreement(specs: &[ObjectSpec], members: &[usize]) -> Result<()> {
    let base = &specs[0];
    for (i, s) in specs.iter().enumerate().skip(1) {
        let rank = members.get(i).copied().unwrap_or(i);
        let diff: Option<(&'static str, String, String)> = if s.name != base.name {
            Some(("the name", base.name.clone(), s.name.clone()))
        } else if s.capacity != base.capacity {
            Some((
                "the size in bytes",
                base.capacity.to_string(),
                s.capacity.to_string(),
            ))
        } else if s.depth != base.depth {
            Some((
                "the queue depth",
                base.depth.to_string(),
                s.depth.to_string(),
            ))
        } else if s.flow != base.flow {
            Some((
                "the flow control",
                format!("{:?}", base.flow),
                format!("{:?}", s.flow),
            ))
        } else if s.graph != base.graph {
            Some((
                "the graph",
                format!("{:?}", base.graph),
                format!("{:?}", s.graph),
            ))
        } else {
            None
        };
        if let Some((what, ours, theirs)) = diff {
            return Err(Error::Mismatch {
                name: base.name.clone(),
                rank,
                what,
                ours,
                theirs,
            });
        }
    }
    Ok(())
}

/// An update returned by [`Object::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The rank that wrote it.
    pub sender: usize,
    /// Its per-queue sequence number (1, 2, ...).
    pub seq: u64,
    /// The sender's iteration when it wrote.
    pub iteration: u64,
    /// Payload length; the payload is in the first `len` bytes of the buffer.
    pub len: usize,
}

/// Counters for one peer of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerCounters {
    /// Updates written to this peer.
    pub written: u64,
    /// Bytes written to this peer.
    pub bytes_written: u64,
    /// Updates received from this peer.
    pub received: u64,
    /// Bytes received from this peer.
    pub bytes_received: u64,
    /// Torn slots from this peer detected and skipped.
    pub torn: u64,
    /// Updates from this peer overwritten before they were read.
    pub lapped: u64,
    /// Updates from this peer dropped for carrying another epoch.
    pub stale_epoch: u64,
}

/// Counters for one object on this rank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Updates written.
    pub written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Updates received.
    pub received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Torn slots detected and skipped (never returned).
    pub torn: u64,
    /// Updates overwritten before they were read.
    pub lapped: u64,
    /// Updates dropped for carrying another epoch.
    pub stale_epoch: u64,
    /// Times a backpressured write had to wait for an acknowledgement.
    pub backpressure_waits: u64,
    /// Per-peer counters, indexed by rank.
    pub peers: Vec<PeerCounters>,
}

/// This rank's handle on a shared object: write to out-neighbours, poll
/// what in-neighbours wrote.
#[derive(Debug)]
pub struct Object {
    id: u32,
    name: String,
    rank: usize,
    epoch: u32,
    view: Arc<View>,
    /// Refuses use once the group has moved to another epoch (unless
    /// [`ignore_membership`](Object::ignore_membership) was called).
    tracks: bool,
    /// The job survives failures: a failed write waits for the regroup.
    tolerant: bool,
    /// Polling before parking: the transport's spin, stretched after
    /// short waits (see [`Spin`]).
    spin: Spin,
    timeout: Duration,
    flow: FlowControl,
    out: Vec<usize>,
    /// For each rank we link to: the index of our queue in its segment.
    queue_at: Vec<Option<usize>>,
    send_seq: Vec<u64>,
    next_seq: Vec<u64>,
    /// Queue, slot offset and header words of each update being read by
    /// [`Object::read_together`] (kept to avoid allocating per call).
    together: Vec<(usize, usize, [u64; 8])>,
    cursor: usize,
    counters: Counters,
    layout: Layout,
    region: Arc<Region>,
    links: Box<dyn Links>,
    transport: Arc<dyn Transport>,
}

impl Object {
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Largest update in bytes.
    pub fn capacity(&self) -> usize {
        self.layout.capacity
    }

    /// Ranks this rank writes to.
    pub fn out_neighbors(&self) -> &[usize] {
        &self.out
    }

    /// Ranks that write to this rank.
    pub fn in_neighbors(&self) -> &[usize] {
        &self.layout.senders
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn target(&self, peer: usize, len: usize) -> Result<usize> {
        if len > self.layout.capacity {
            return Err(Error::Size {
                name: self.name.clone(),
                what: "update",
                got: len,
                limit: self.layout.capacity,
            });
        }
        match self.queue_at.get(peer).copied().flatten() {
            Some(q) if self.out.binary_search(&peer).is_ok() => Ok(q),
            _ => Err(Error::NotNeighbor {
                name: self.name.clone(),
                rank: self.rank,
                peer,
                role: "receiver",
            }),
        }
    }

    fn header(&self, seq: u64, iteration: u64, len: usize) -> SlotHeader {
        SlotHeader {
            seq,
            epoch: self.epoch,
            sender: self.rank as u32,
            iteration,
            len: len as u64,
            checksum: 0,
            object: self.id,
        }
    }

    /// Writes `payload` one-sided into `peer`'s queue, tagged with `iteration`.
    /// Returns once the bytes are handed to the transport (visible at the
    /// peer for shm); with backpressure, first waits (bounded) until the slot
    /// is free.
    pub fn write(&mut self, peer: usize, payload: &[u8], iteration: u64) -> Result<()> {
        self.check()?;
        let q = self.target(peer, payload.len())?;
        let seq = self.send_seq[peer] + 1;
        if self.flow == FlowControl::Backpressure && seq > self.layout.depth as u64 {
            self.wait_ack(peer, seq - self.layout.depth as u64)?;
        }
        self.send(peer, q, seq, payload, iteration, true)
            .map(|_| ())
    }

    /// Like [`write`](Self::write), but returns `Ok(false)` at once, writing
    /// nothing, when the link to `peer` is busy with another write: the
    /// fault monitor's heartbeats, which must neither wait behind a large
    /// update nor stop beating to the other peers meanwhile. Ignores
    /// backpressure (heartbeat objects have none).
    pub(crate) fn try_write(
        &mut self,
        peer: usize,
        payload: &[u8],
        iteration: u64,
    ) -> Result<bool> {
        self.check()?;
        let q = self.target(peer, payload.len())?;
        let seq = self.send_seq[peer] + 1;
        self.send(peer, q, seq, payload, iteration, false)
    }

    /// Writes update `seq` into queue `q` of `peer` (waiting for a busy link,
    /// or not) and counts it; `Ok(false)` when the link was busy.
    fn send(
        &mut self,
        peer: usize,
        q: usize,
        seq: u64,
        payload: &[u8],
        iteration: u64,
        wait: bool,
    ) -> Result<bool> {
        let off = self.layout.seq_offset(q, seq);
        let h = self.header(seq, iteration, payload.len());
        let sent = if wait {
            self.links.write_slot(peer, off, &h, payload).map(|()| true)
        } else {
            self.links.try_write_slot(peer, off, &h, payload)
        };
        match sent {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(self.write_failed(peer, e)),
        }
        self.send_seq[peer] = seq;
        let c = &mut self.counters;
        c.written += 1;
        c.bytes_written += payload.len() as u64;
        c.peers[peer].written += 1;
        c.peers[peer].bytes_written += payload.len() as u64;
        Ok(true)
    }

    /// A count that grows while data from `peer` arrives on this object's
    /// transport (all objects; see `Links::arrivals`); `None` where the
    /// transport cannot see a write in progress.
    pub(crate) fn arrivals(&self, peer: usize) -> Option<u64> {
        self.links.arrivals(peer)
    }

    /// Writes `payload` to every out-neighbour.
    pub fn write_all(&mut self, payload: &[u8], iteration: u64) -> Result<()> {
        for i in 0..self.out.len() {
            self.write(self.out[i], payload, iteration)?;
        }
        Ok(())
    }

    /// From now on this object reports what its transport sees and ignores
    /// the group's membership news (regroup, abort): for objects that live
    /// across epochs (the fault monitor's heartbeats) and transport tests.
    #[doc(hidden)]
    pub fn ignore_membership(&mut self) {
        self.tracks = false;
    }

    /// Test hook: a write to `peer` that stops between payload and trailer,
    /// as a writer killed in the middle would leave it.
    #[doc(hidden)]
    pub fn write_torn(&mut self, peer: usize, payload: &[u8], iteration: u64) -> Result<()> {
        let q = self.target(peer, payload.len())?;
        let seq = self.send_seq[peer] + 1;
        let off = self.layout.seq_offset(q, seq);
        let h = self.header(seq, iteration, payload.len());
        self.links.write_slot_torn(peer, off, &h, payload)?;
        self.send_seq[peer] = seq;
        Ok(())
    }

    /// Test hook: a whole slot write into queue `queue` of `peer`'s
    /// segment (an index into its senders, which need not be this rank's
    /// queue), as a peer that disregards the layout would send it.
    #[doc(hidden)]
    pub fn write_into_queue(&mut self, peer: usize, queue: usize, payload: &[u8]) -> Result<()> {
        self.target(peer, payload.len())?;
        let h = self.header(1, 1, payload.len());
        let off = self.layout.slot_offset(queue, 0);
        self.links.write_slot(peer, off, &h, payload)
    }

    /// Test hook: a word written at `offset` of `peer`'s segment, anywhere.
    #[doc(hidden)]
    pub fn write_word_at(&mut self, peer: usize, offset: usize, value: u64) -> Result<()> {
        self.target(peer, 0)?;
        self.links.write_word(peer, offset, value)
    }

    /// Test hook: the word at `offset` of this rank's own segment.
    #[doc(hidden)]
    pub fn read_word_at(&self, offset: usize) -> u64 {
        self.region.word(offset).load(Ordering::SeqCst)
    }

    /// `Ok` while the group is still in this object's epoch.
    fn check(&self) -> Result<()> {
        if self.tracks {
            self.view.check(self.epoch)
        } else {
            Ok(())
        }
    }

    /// A write to `peer` failed. In a fault-tolerant job the peer is
    /// reported and the error becomes the regroup that follows (bounded by
    /// the timeout); otherwise it is returned as is.
    fn write_failed(&self, peer: usize, e: Error) -> Error {
        if !self.tracks || !self.tolerant || !matches!(e, Error::Peer { .. }) || self.view.ended() {
            return self.check().err().unwrap_or(e);
        }
        self.view.suspect(peer, format!("write failed: {e}"));
        if self.view.wait_change(self.epoch, self.timeout) {
            if let Err(news) = self.view.check(self.epoch) {
                return news;
            }
        }
        e
    }

    fn wait_ack(&mut self, peer: usize, need: u64) -> Result<()> {
        let word = self.region.word(self.layout.ack_offset(peer));
        if word.load(Ordering::Acquire) >= need {
            return Ok(());
        }
        self.counters.backpressure_waits += 1;
        let start = Instant::now();
        let deadline = start + self.timeout;
        loop {
            let bell = self.region.doorbell();
            if word.load(Ordering::Acquire) >= need {
                return Ok(());
            }
            self.check()?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    op: format!(
                        "object {:?}: backpressure wait for rank {peer} to read update {need}",
                        self.name
                    ),
                    waited: start.elapsed(),
                    missing: vec![peer],
                });
            }
            park(&self.region, &*self.links, bell, deadline, &mut self.spin);
        }
    }

    /// Returns the oldest unread consistent update of the next sender (senders
    /// are served round-robin), copied into `out`, which must hold
    /// [`capacity`](Self::capacity) bytes. Torn slots are skipped and counted;
    /// overwritten updates are counted as lapped. Never blocks, never allocates.
    pub fn poll(&mut self, out: &mut [u8]) -> Result<Option<Update>> {
        if out.len() < self.layout.capacity {
            return Err(Error::Size {
                name: self.name.clone(),
                what: "poll buffer",
                got: out.len(),
                limit: self.layout.capacity,
            });
        }
        let n = self.layout.senders.len();
        for i in 0..n {
            let q = (self.cursor + i) % n;
            if let Some(u) = self.poll_queue(q, out)? {
                self.cursor = (q + 1) % n;
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    /// Like [`poll`](Self::poll), restricted to updates from `sender`.
    pub fn poll_from(&mut self, sender: usize, out: &mut [u8]) -> Result<Option<Update>> {
        let Some(q) = self.layout.queue_index(sender) else {
            return Err(Error::NotNeighbor {
                name: self.name.clone(),
                rank: self.rank,
                peer: sender,
                role: "sender",
            });
        };
        if out.len() < self.layout.capacity {
            return Err(Error::Size {
                name: self.name.clone(),
                what: "poll buffer",
                got: out.len(),
                limit: self.layout.capacity,
            });
        }
        self.poll_queue(q, out)
    }

    /// Polls until an update arrives or `timeout` passes (then `Ok(None)`).
    /// Spins briefly, then parks on the segment's doorbell.
    pub fn poll_timeout(&mut self, out: &mut [u8], timeout: Duration) -> Result<Option<Update>> {
        self.poll_until(timeout, |o| o.poll(out))
    }

    /// Like [`poll_timeout`](Self::poll_timeout), restricted to `sender`.
    pub fn poll_from_timeout(
        &mut self,
        sender: usize,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Update>> {
        self.poll_until(timeout, |o| o.poll_from(sender, out))
    }

    /// Repeats `try_once` until it returns an update or `timeout` passes,
    /// parking on the doorbell in between.
    fn poll_until(
        &mut self,
        timeout: Duration,
        mut try_once: impl FnMut(&mut Self) -> Result<Option<Update>>,
    ) -> Result<Option<Update>> {
        // The clock is read only once the first look found nothing: on
        // some machines (virtual ones without a usable TSC) a read costs
        // microseconds, as much as a whole soft-RoCE write.
        let mut deadline = None;
        loop {
            let bell = self.region.doorbell();
            if let Some(u) = try_once(self)? {
                return Ok(Some(u));
            }
            self.check()?;
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + timeout);
            if now >= deadline {
                return Ok(None);
            }
            park(&self.region, &*self.links, bell, deadline, &mut self.spin);
        }
    }

    /// Waits until an update from `sender` with an iteration of at least
    /// `min_iteration` is complete in this rank's segment, without copying or
    /// consuming it (a later [`poll`](Self::poll) still returns it).
    /// `Ok(None)` when `timeout` passes first.
    pub fn wait_visible(
        &mut self,
        sender: usize,
        min_iteration: u64,
        timeout: Duration,
    ) -> Result<Option<Update>> {
        let Some(q) = self.layout.queue_index(sender) else {
            return Err(Error::NotNeighbor {
                name: self.name.clone(),
                rank: self.rank,
                peer: sender,
                role: "sender",
            });
        };
        let (depth, capacity, epoch) = (self.layout.depth, self.layout.capacity, self.epoch);
        self.poll_until(timeout, |o| {
            for s in 0..depth {
                let off = o.layout.slot_offset(q, s);
                if let Some(h) = o.region.complete_header(off, capacity) {
                    if h.iteration >= min_iteration && h.epoch == epoch {
                        return Ok(Some(Update {
                            sender,
                            seq: h.seq,
                            iteration: h.iteration,
                            len: h.len as usize,
                        }));
                    }
                }
            }
            Ok(None)
        })
    }

    /// Reads the oldest unread update of each of `senders` together, part by
    /// part, without copying any of them whole: for each range of `part`
    /// payload bytes (the last one shorter) it copies that range of every
    /// update into `stage` (update `i` at `i * part`), checks that none
    /// changed, and calls `f(offset, len, stage)`. This is for merges that
    /// work element by element, so that an update is read once, from the
    /// segment, instead of being copied out first and read again.
    ///
    /// Reads only when every sender's oldest unread update is complete, of
    /// this epoch, of iteration `iteration`, `len` bytes long, and follows
    /// the previous one read from that queue (nothing lapped); otherwise
    /// returns `Ok(false)` having read nothing, and [`poll_from`] deals with
    /// what is there. `f` may decline at the first part (`Break`): the
    /// updates then stay unread and the result is `Ok(false)`; a `Break`
    /// at a later part ends the read early. Once `f` has accepted a part
    /// the updates count as received (as by [`poll_from`]) and the result
    /// is `Ok(true)`.
    ///
    /// The caller must know that no sender can overwrite the update while it
    /// is read (under a consistency protocol that keeps every sender fewer
    /// than the queue depth ahead); if one does, the parts already passed to
    /// `f` stay passed, the update is counted torn and skipped, and the
    /// result is [`Error::Overwritten`].
    ///
    /// [`poll_from`]: Self::poll_from
    pub fn read_together<E: From<Error>>(
        &mut self,
        senders: &[usize],
        iteration: u64,
        len: usize,
        part: usize,
        stage: &mut [u8],
        f: impl FnMut(usize, usize, &[u8]) -> std::result::Result<ControlFlow<()>, E>,
    ) -> std::result::Result<bool, E> {
        let k = senders.len();
        if part == 0 {
            return Err(Error::BadObject {
                name: self.name.clone(),
                problem: "read_together with parts of 0 bytes".into(),
            }
            .into());
        }
        if stage.len() < k * part {
            return Err(Error::Size {
                name: self.name.clone(),
                what: "read_together stage",
                got: stage.len(),
                limit: k * part,
            }
            .into());
        }
        // Queue, slot offset and header words per sender, in a list kept
        // from call to call so that reading allocates nothing.
        let mut heads = std::mem::take(&mut self.together);
        heads.clear();
        let r = self.read_heads(senders, iteration, len, &mut heads);
        let r = match r {
            Ok(true) => self.read_parts(senders, len, part, stage, &heads, f),
            other => other.map_err(E::from),
        };
        self.together = heads;
        r
    }

    /// The first half of [`read_together`](Self::read_together): finds each
    /// sender's next update and checks that it is the one asked for.
    fn read_heads(
        &self,
        senders: &[usize],
        iteration: u64,
        len: usize,
        heads: &mut Vec<(usize, usize, [u64; 8])>,
    ) -> Result<bool> {
        for &sender in senders {
            let Some(q) = self.layout.queue_index(sender) else {
                return Err(Error::NotNeighbor {
                    name: self.name.clone(),
                    rank: self.rank,
                    peer: sender,
                    role: "sender",
                });
            };
            let seq = self.next_seq[q];
            let off = self.layout.seq_offset(q, seq);
            let expected = |h: &SlotHeader| {
                h.seq == seq
                    && h.sender as usize == sender
                    && h.object == self.id
                    && h.epoch == self.epoch
                    && h.iteration == iteration
                    && h.len as usize == len
            };
            match self.region.complete_words(off, self.layout.capacity) {
                Some(w) if SlotHeader::from_words(&w).is_ok_and(|h| expected(&h)) => {
                    heads.push((q, off, w));
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The second half of [`read_together`](Self::read_together): the parts.
    fn read_parts<E: From<Error>>(
        &mut self,
        senders: &[usize],
        len: usize,
        part: usize,
        stage: &mut [u8],
        heads: &[(usize, usize, [u64; 8])],
        mut f: impl FnMut(usize, usize, &[u8]) -> std::result::Result<ControlFlow<()>, E>,
    ) -> std::result::Result<bool, E> {
        let mut from = 0;
        while from < len {
            let n = part.min(len - from);
            for (i, &(q, off, ref words)) in heads.iter().enumerate() {
                let dst = &mut stage[i * part..i * part + n];
                if !self.region.read_part(off, words, from, dst) {
                    if from == 0 {
                        // Nothing used yet: overwritten before it was read,
                        // which poll_from counts as lapped.
                        return Ok(false);
                    }
                    let (sender, seq) = (senders[i], words[1]);
                    self.next_seq[q] = seq + 1;
                    self.count_torn(sender);
                    return Err(Error::Overwritten {
                        name: self.name.clone(),
                        sender,
                        seq,
                    }
                    .into());
                }
            }
            match f(from, n, stage)? {
                ControlFlow::Continue(()) => from += n,
                ControlFlow::Break(()) if from == 0 => return Ok(false),
                ControlFlow::Break(()) => break,
            }
        }
        // Every update counts as read even when acknowledging one fails, so
        // that none is read twice and the other senders get their acks.
        let mut acked = Ok(());
        for (i, &(q, _, words)) in heads.iter().enumerate() {
            self.next_seq[q] = words[1] + 1;
            let r = self.consumed(senders[i], words[1], len);
            acked = acked.and(r);
        }
        acked?;
        Ok(true)
    }

    /// Accounts for update `seq` of `sender` (`len` bytes) having been read,
    /// and acknowledges it under backpressure.
    fn consumed(&mut self, sender: usize, seq: u64, len: usize) -> Result<()> {
        let c = &mut self.counters;
        c.received += 1;
        c.bytes_received += len as u64;
        c.peers[sender].received += 1;
        c.peers[sender].bytes_received += len as u64;
        if self.flow == FlowControl::Backpressure {
            let ack = self.layout.ack_offset(self.rank);
            self.links.write_word(sender, ack, seq)?;
        }
        Ok(())
    }

    fn poll_queue(&mut self, q: usize, out: &mut [u8]) -> Result<Option<Update>> {
        let sender = self.layout.senders[q];
        let depth = self.layout.depth;
        // A bounded number of attempts: a writer that laps us on every try
        // must not keep us here forever.
        for _ in 0..4 * depth + 4 {
            let next = self.next_seq[q];
            let mut oldest = u64::MAX;
            let mut newest = 0;
            for s in 0..depth {
                let seq = self.region.peek_seq(self.layout.slot_offset(q, s));
                if seq >= next {
                    oldest = oldest.min(seq);
                    newest = newest.max(seq);
                }
            }
            if oldest == u64::MAX {
                return Ok(None);
            }
            let off = self.layout.seq_offset(q, oldest);
            match self.region.read_slot(off, self.layout.capacity, out) {
                SlotRead::Ok(h) if h.seq == oldest => {
                    self.skip_to(q, sender, oldest);
                    self.next_seq[q] = oldest + 1;
                    if h.sender as usize != sender || h.object != self.id {
                        self.count_torn(sender);
                        continue;
                    }
                    if h.epoch != self.epoch {
                        self.counters.stale_epoch += 1;
                        self.counters.peers[sender].stale_epoch += 1;
                        continue;
                    }
                    let len = h.len as usize;
                    self.consumed(sender, oldest, len)?;
                    return Ok(Some(Update {
                        sender,
                        seq: oldest,
                        iteration: h.iteration,
                        len,
                    }));
                }
                SlotRead::Torn { seq } if seq == oldest => {
                    if newest > oldest {
                        // The writer has moved on: this slot will never
                        // complete. Skip it and count it as torn.
                        self.skip_to(q, sender, oldest);
                        self.count_torn(sender);
                        self.next_seq[q] = oldest + 1;
                        continue;
                    }
                    // Still being written: nothing to return yet.
                    return Ok(None);
                }
                // The slot changed between the peek and the read: look again.
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Accounts for sequence numbers between the expected one and `seq`
    /// that were overwritten before we read them.
    fn skip_to(&mut self, q: usize, sender: usize, seq: u64) {
        let lost = seq.saturating_sub(self.next_seq[q]);
        self.counters.lapped += lost;
        self.counters.peers[sender].lapped += lost;
    }

    fn count_torn(&mut self, sender: usize) {
        self.counters.torn += 1;
        self.counters.peers[sender].torn += 1;
    }
}

/// Doorbell looks per clock read while a reader spins (well under a
/// microsecond of `spin_loop` hints).
const SPIN_LOOKS: u32 = 16;

/// The longest a reader's spin grows to (see [`Spin`]).
pub(crate) const SPIN_MAX: Duration = Duration::from_micros(500);

/// How long a waiting reader spins before it parks.
///
/// A parked reader costs its writer a wake-up, and on a virtual machine a
/// wake-up of an idle CPU takes tens of microseconds (35 µs on the 2-vCPU
/// machine of the README's numbers), longer than the transport's spin. Two
/// ranks in a ping-pong then stay parked for good once a hiccup parks one
/// of them: each waits out its spin before the other's wake-up completes
/// and parks in turn, so every message pays a wake-up. So after a wait
/// that ended with a ring sooner than [`SPIN_MAX`], the next wait spins
/// twice that long (at most [`SPIN_MAX`]); a wait that timed out or took
/// longer drops back to the transport's spin, so an idle reader does not
/// burn a core. Beyond the transport's spin the reader yields its CPU
/// between looks, so a peer that shares the CPU still runs; on a host with
/// more ranks than CPUs it yields from the start. A transport spin of zero
/// (`MALT_SPIN_US=0`, or verbs with `MALT_RDMA_SPIN_US=0`) turns the
/// stretching off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spin {
    /// The transport's spin: the floor.
    base: Duration,
    /// Polling without yielding: the transport's spin, or none when the
    /// host runs more ranks than there are CPUs (as MPI libraries do).
    pure: Duration,
    /// The spin of the next wait.
    now: Duration,
}

impl Spin {
    pub(crate) fn new(base: Duration, oversubscribed: bool) -> Spin {
        let pure = if oversubscribed { Duration::ZERO } else { base };
        Spin {
            base,
            pure,
            now: base,
        }
    }

    /// Learns from a wait that took `waited` and ended with a ring
    /// (`rung`) or its deadline.
    pub(crate) fn learn(&mut self, waited: Duration, rung: bool) {
        let limit = SPIN_MAX.max(self.base);
        self.now = if self.base.is_zero() || !rung || waited > limit {
            self.base
        } else {
            (waited * 2).clamp(self.base, limit)
        };
    }
}

/// Spins for a moment, then parks on `region`'s doorbell until it moves or
/// `deadline` passes, telling `links` while it is parked.
fn park(region: &Region, links: &dyn Links, bell: u64, deadline: Instant, spin: &mut Spin) {
    let start = Instant::now();
    let pure_until = start + spin.pure;
    let spin_until = (start + spin.now).min(deadline);
    // Looks at the doorbell [`SPIN_LOOKS`] times per clock read, so that a
    // slow clock does not delay noticing the bell.
    loop {
        for _ in 0..SPIN_LOOKS {
            if region.doorbell() != bell {
                return;
            }
            std::hint::spin_loop();
        }
        let now = Instant::now();
        if now >= spin_until {
            break;
        }
        if now >= pure_until {
            std::thread::yield_now();
        }
    }
    let now = Instant::now();
    if now < deadline {
        links.parking(true);
        region.park(bell, deadline - now);
        links.parking(false);
    }
    spin.learn(start.elapsed(), region.doorbell() != bell);
}

impl Drop for Object {
    fn drop(&mut self) {
        self.transport.destroy(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::{Spin, SPIN_MAX};
    use std::time::Duration;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_short_wait_stretches_the_next_spin_to_twice_its_length_up_to_the_cap() {
        let mut s = Spin::new(30 * US, false);
        s.learn(70 * US, true);
        assert_eq!(s.now, 140 * US);
        s.learn(10 * US, true);
        assert_eq!(s.now, 30 * US, "never below the transport's spin");
        s.learn(400 * US, true);
        assert_eq!(s.now, SPIN_MAX);
    }

    #[test]
    fn a_timeout_or_a_long_wait_drops_back_to_the_transports_spin() {
        let mut s = Spin::new(30 * US, false);
        s.learn(70 * US, true);
        s.learn(70 * US, false);
        assert_eq!(s.now, 30 * US, "timed out");
        s.learn(70 * US, true);
        s.learn(SPIN_MAX + US, true);
        assert_eq!(s.now, 30 * US, "longer than the cap");
    }

    #[test]
    fn a_zero_spin_stays_zero_and_a_spin_above_the_cap_is_kept() {
        let mut s = Spin::new(Duration::ZERO, false);
        s.learn(70 * US, true);
        assert_eq!(s.now, Duration::ZERO);
        let base = SPIN_MAX * 2;
        let mut s = Spin::new(base, false);
        s.learn(70 * US, true);
        assert_eq!(s.now, base);
        s.learn(base - US, true);
        assert_eq!(s.now, base);
    }
}
