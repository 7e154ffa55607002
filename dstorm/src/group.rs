//! A rank's membership in a job ([`Group`]): joining it (the coordinator
//! on rank 0, the transport, the fault monitor), its collectives, regroups
//! after failures, and the collective creation of the objects the ranks
//! share ([`Object`], in `object/`).

use crate::config::{Config, TransportKind};
use crate::control::View;
use crate::control::{self, Client};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::monitor::{Monitor, HEARTBEAT_OBJECT};
use crate::object::{
    check_agreement, FlowControl, Ident, Object, ObjectSpec, Spin, Tracking, Wiring,
};
use crate::transport::{Endpoint, RejectCounts, Transport};
use serde::Serialize;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A rank's membership in a job: identity, control channel and transport.
#[derive(Debug)]
pub struct Group {
    cfg: Config,
    table: Vec<Endpoint>,
    control: Mutex<Client>,
    view: Arc<View>,
    transport: Arc<dyn Transport>,
    /// (name, epoch) of every object created, indexed by object id.
    /// Every object created, by id: its name, its epoch, and whether it
    /// still lives (a dropped object's name may be used again).
    objects: Mutex<Vec<(String, u32, Weak<()>)>>,
    /// Rank 0: signalled when the coordinator has seen every rank leave.
    /// (In a mutex so that a group can be shared between threads.)
    coordinator: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    monitor: Option<Monitor>,
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
            // Connections are made at startup: a peer that is not
            // listening by the rendezvous bound is not coming.
            cfg.rendezvous_timeout,
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
    pub fn join(mut cfg: Config) -> Result<Group> {
        if cfg.rank >= cfg.world {
            return Err(Error::RankOutOfRange {
                rank: cfg.rank,
                world: cfg.world,
            });
        }
        let coordinator = if cfg.rank == 0 && !cfg.external_coordinator {
            let l = control::bind(&cfg.master_addr, cfg.master_port)?;
            if cfg.master_port == crate::config::ANY_PORT {
                // The ranks (this one alone) reach it where the system put it.
                cfg.master_port = l
                    .local_addr()
                    .map_err(|source| Error::Control {
                        op: "find the coordinator's port",
                        source,
                    })?
                    .port();
            }
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
            let mut beats = self.create_object(&ObjectSpec::new(HEARTBEAT_OBJECT, 8).depth(2))?;
            // Heartbeats flow whatever the epoch.
            beats.ignore_membership();
            self.monitor = Some(Monitor::start(
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

    /// Like [`allgather`](Self::allgather), for the call `op` (a vector's
    /// creation, say): errors and other ranks' messages about this round
    /// name it.
    pub fn allgather_for(&self, op: &'static str, data: &str) -> Result<Vec<String>> {
        self.ctl(op, data.to_string())
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
        self.ctl("the final barrier (finish, malt_finalize)", String::new())?;
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
        let all = self.ctl("object creation", mine)?;
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
        let held = Arc::new(());
        let id = {
            let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
            let live = |(n, e, held): &&(String, u32, Weak<()>)| {
                *n == spec.name && *e == epoch && held.strong_count() > 0
            };
            if objects.iter().any(|o| live(&o)) {
                return Err(spec.bad("an object of this name already exists".into()));
            }
            objects.push((spec.name.clone(), epoch, Arc::downgrade(&held)));
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
        let outcome = self.ctl("object connection", status).and_then(|all| {
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
        Ok(Object::new(
            Ident {
                id,
                name: spec.name.clone(),
                rank,
                epoch,
                held,
            },
            Tracking {
                view: self.view.clone(),
                tracks: true,
                tolerant: self.fault_tolerant(),
                timeout: self.cfg.timeout,
                quiet: if self.transport.kind() == crate::config::TransportKind::Shm {
                    crate::object::read::SHM_QUIET
                } else {
                    self.cfg.fail_timeout
                },
                stuck: None,
            },
            spec.flow,
            out,
            queue_at,
            self.spin(),
            Wiring {
                layout,
                region,
                links,
                transport: self.transport.clone(),
            },
        ))
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
