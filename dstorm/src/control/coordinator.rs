//! The coordinator's decisions: rendezvous, collective rounds, failures,
//! regroups and takeovers, as a state machine without I/O. The control
//! channel ([`crate::control`]) owns the sockets and threads and feeds it.

use crate::auth;
pub(crate) use crate::config::Bounds;
use crate::control::{FromMaster, ToMaster};
use crate::fault::{Decider, Decision, FaultPolicy};
use crate::transport::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the coordinator has decided so far, as the process hosting it sees
/// it (`malt launch` ends the ranks still alive once the outcome is known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobState {
    /// Ranks removed from the group (crashed, or suspected by the fault
    /// monitors), ascending. A rank evicted while stopped or hung may still
    /// be running.
    pub evicted: Vec<usize>,
    /// Ranks that said a clean goodbye, ascending.
    pub finished: Vec<usize>,
    /// Why the job was stopped, once it was: quorum lost, too many regroups,
    /// a collective that timed out, or a failure in a job that tolerates
    /// none.
    pub aborted: Option<String>,
    /// The job's random nonce, sent to every rank with the welcome: with
    /// the token it names the job's shm segment files
    /// ([`crate::shm_job`]).
    pub nonce: u64,
    /// The first rank the coordinator saw fail (left without finishing,
    /// crashed, or announced a panic): the cause, when the others then
    /// stop too.
    pub first_failed: Option<usize>,
}

/// What the coordinator was told: a connection authenticated, a message
/// arrived on it, or it closed.
#[derive(Debug)]
pub(crate) enum Input {
    Connected(usize, auth::Claim),
    Message(usize, ToMaster),
    Closed(usize),
    /// The process of a rank ended, as its launcher saw (`why`: "killed by
    /// SIGKILL"). A rank's connection may outlive its process (a child it
    /// forked holds the socket), so this is news the connection may never
    /// bring.
    Exited(usize, String),
}

/// What the coordinator wants done: a message sent on a connection, or the
/// connection closed.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// The message is shared: a broadcast (a welcome with the endpoint
    /// table, a gather's answer) is held once, not once per rank.
    Send(usize, Arc<FromMaster>),
    Close(usize),
}

/// What a rank that takes over as coordinator knows of the group, from its
/// own view: the coordinator it replaces was hosted by rank `host`.
#[derive(Debug, Clone)]
pub(crate) struct Takeover {
    pub host: usize,
    pub epoch: u32,
    pub members: Vec<usize>,
    pub dead: Vec<usize>,
    pub nonce: u64,
    /// How long the members may take to reach the new coordinator.
    pub window: Duration,
}

/// How long a collective round waits before the coordinator tells every
/// rank who is in it (see [`FromMaster::Waiting`]): a rank waiting for one
/// of them elsewhere then knows it would wait forever.
pub(crate) const STALL: Duration = Duration::from_millis(250);

/// A collective round in progress.
#[derive(Debug)]
struct Round {
    epoch: u32,
    round: u64,
    /// The call, as the first rank to arrive named it.
    op: String,
    started: Instant,
    /// Whether the ranks were told who is waiting in it.
    announced: bool,
    /// Contributions by rank.
    got: BTreeMap<usize, String>,
}

/// A takeover collecting the members that reach the new coordinator.
#[derive(Debug)]
struct Rejoin {
    host: usize,
    epoch: u32,
    since: Instant,
    window: Duration,
    /// The members of the last view, the old host included.
    last: Vec<usize>,
    got: BTreeSet<usize>,
}

/// The coordinator's decisions, free of I/O: the thread that owns the
/// sockets feeds it [`Input`]s with the time they happened, calls
/// [`tick`](Self::tick) at its [`deadline`](Self::deadline), and carries
/// out what [`take_out`](Self::take_out) returns. Unit tests drive it with
/// made-up times.
///
/// Its fields are the job's state as the coordinator sees it (connections
/// and their claims, the rendezvous, the current round, the outcome), read
/// and changed together as each input is handled.
pub(crate) struct Coordinator {
    world: usize,
    timeout: Duration,
    rendezvous: Duration,
    tolerant: bool,
    decider: Decider,
    /// Connections that may still be sent to.
    open: BTreeSet<usize>,
    out: Vec<Out>,
    rejoin: Option<Rejoin>,
    /// connection id -> rank, for connections that said a valid hello.
    ranks: BTreeMap<usize, usize>,
    endpoints: BTreeMap<usize, Endpoint>,
    started: Option<Instant>,
    welcomed: bool,
    aborted: Option<String>,
    /// What the ranks a timed-out round waited for are told, by rank: that
    /// they came late, not that they are missing.
    late: BTreeMap<usize, String>,
    round: Option<Round>,
    done: BTreeSet<usize>,
    dead: BTreeSet<usize>,
    /// What the host process sees of `dead`, `done` and `aborted`.
    public: Arc<Mutex<JobState>>,
    /// This job's random nonce.
    nonce: u64,
    /// The first rank seen to fail.
    first_failed: Option<usize>,
    /// What each connection proved it is (rank, world) in its handshake.
    claims: BTreeMap<usize, auth::Claim>,
}

impl Coordinator {
    pub fn new(
        world: usize,
        bounds: Bounds,
        policy: FaultPolicy,
        public: Arc<Mutex<JobState>>,
    ) -> Coordinator {
        let nonce = rand::random();
        public.lock().unwrap_or_else(|p| p.into_inner()).nonce = nonce;
        Coordinator {
            world,
            timeout: bounds.timeout,
            rendezvous: bounds.rendezvous,
            tolerant: policy.tolerant(world),
            decider: Decider::new(world, policy),
            open: BTreeSet::new(),
            out: Vec::new(),
            rejoin: None,
            ranks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            started: None,
            welcomed: false,
            aborted: None,
            late: BTreeMap::new(),
            round: None,
            done: BTreeSet::new(),
            dead: BTreeSet::new(),
            public,
            nonce,
            first_failed: None,
            claims: BTreeMap::new(),
        }
    }

    /// A coordinator that replaces one that failed with its host, rank
    /// `t.host`: it waits up to `t.window` for the other members of the last
    /// view to reach it, then goes on with them (the old host and whoever
    /// did not come are evicted) if they are a majority of that view, and
    /// stops the job otherwise.
    pub fn takeover(
        world: usize,
        bounds: Bounds,
        policy: FaultPolicy,
        public: Arc<Mutex<JobState>>,
        t: Takeover,
        now: Instant,
    ) -> Coordinator {
        let mut c = Coordinator::new(world, bounds, policy, public);
        c.nonce = t.nonce;
        c.public.lock().unwrap_or_else(|p| p.into_inner()).nonce = t.nonce;
        c.welcomed = true;
        c.started = Some(now);
        c.decider = Decider::resume(policy, t.epoch, &t.members);
        c.dead = t.dead.into_iter().collect();
        c.rejoin = Some(Rejoin {
            host: t.host,
            epoch: t.epoch,
            since: now,
            window: t.window,
            last: t.members,
            got: BTreeSet::new(),
        });
        c
    }

    /// A member of the last view reached this coordinator after the old
    /// one failed.
    fn rejoined(&mut self, id: usize, rank: usize, world: usize, epoch: u32, now: Instant) {
        let proved = self
            .claims
            .get(&id)
            .is_some_and(|c| c.rank as usize == rank && c.world as usize == world);
        if !proved || world != self.world {
            return self.refuse(
                id,
                format!("rejoin as rank {rank} of {world} differs from what the handshake proved"),
            );
        }
        if let Some(reason) = self.aborted.clone() {
            return self.send_to(id, &FromMaster::Aborted { reason });
        }
        let taken = self.ranks.values().any(|r| *r == rank);
        if self.dead.contains(&rank) || !self.decider.is_member(rank) || taken {
            let epoch = self.decider.epoch();
            self.send_to(
                id,
                &FromMaster::Evicted {
                    epoch,
                    reason: "the group went on without this rank".into(),
                },
            );
            return self.refuse(id, format!("rank {rank} cannot rejoin"));
        }
        self.ranks.insert(id, rank);
        let Some(rj) = self.rejoin.as_mut() else {
            return;
        };
        if rank == rj.host {
            return;
        }
        tracing::info!(rank, epoch, "a rank reached the new coordinator");
        rj.got.insert(rank);
        if rj.got.len() + 1 >= rj.last.len() {
            self.conclude_rejoin(now);
        }
    }

    /// Ends a takeover's wait: the members that came go on without the
    /// others if they are a majority of the last view.
    fn conclude_rejoin(&mut self, now: Instant) {
        let Some(rj) = self.rejoin.take() else {
            return;
        };
        let got: Vec<usize> = rj.got.iter().copied().collect();
        if 2 * got.len() <= rj.last.len() {
            return self.abort(format!(
                "rank {}, which hosted the coordinator, failed, and only ranks {} of the {} \
                 ranks of epoch {} reached the new coordinator: without a majority the job \
                 stops rather than risk two groups going on",
                rj.host,
                crate::error::RankList(&got),
                rj.last.len(),
                rj.epoch
            ));
        }
        tracing::warn!(host = rj.host, ranks = ?got, "the coordinator moved to a survivor");
        self.first_failed.get_or_insert(rj.host);
        for r in rj.last.iter().filter(|r| !rj.got.contains(r)) {
            self.decider.crashed(*r, now);
        }
        self.act(now);
    }

    /// Copies what changed of the verdicts to [`JobState`]; the three only
    /// grow, so comparing sizes finds every change.
    pub fn publish(&self) {
        let mut st = self.public.lock().unwrap_or_else(|p| p.into_inner());
        if st.evicted.len() != self.dead.len() {
            st.evicted = self.dead.iter().copied().collect();
        }
        if st.finished.len() != self.done.len() {
            st.finished = self.done.iter().copied().collect();
        }
        if st.aborted.is_none() && self.aborted.is_some() {
            st.aborted = self.aborted.clone();
        }
        if st.first_failed.is_none() {
            st.first_failed = self.first_failed;
        }
    }

    /// What to do now, in order.
    pub fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    fn send_to(&mut self, conn: usize, msg: &FromMaster) {
        self.send_shared(conn, &Arc::new(msg.clone()));
    }

    fn send_shared(&mut self, conn: usize, msg: &Arc<FromMaster>) {
        if self.open.contains(&conn) {
            self.out.push(Out::Send(conn, msg.clone()));
        }
    }

    fn close(&mut self, conn: usize) {
        if self.open.remove(&conn) {
            self.out.push(Out::Close(conn));
        }
    }

    /// Sends `msg` to every rank, rank 0 last: unless a launcher runs the
    /// coordinator (`malt launch`), rank 0's process hosts it, and a message
    /// that ends the job (an abort) makes that process exit, which would cut
    /// off the ranks not yet told.
    fn send_ranks(&mut self, msg: &FromMaster) {
        let mut ids: Vec<(usize, usize)> = self.ranks.iter().map(|(id, r)| (*r, *id)).collect();
        ids.sort_unstable_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        let msg = Arc::new(msg.clone());
        for (_, id) in ids {
            self.send_shared(id, &msg);
        }
    }

    fn conn_of(&self, rank: usize) -> Option<usize> {
        self.ranks
            .iter()
            .find(|(_, r)| **r == rank)
            .map(|(id, _)| *id)
    }

    fn abort(&mut self, reason: String) {
        tracing::error!(%reason, "aborting the job");
        self.send_ranks(&FromMaster::Aborted {
            reason: reason.clone(),
        });
        self.aborted = Some(reason);
    }

    fn refuse(&mut self, conn: usize, reason: String) {
        tracing::warn!(%reason, "refused a control connection");
        self.send_to(conn, &FromMaster::Refused { reason });
        self.close(conn);
    }

    fn missing(&self, present: impl Fn(usize) -> bool) -> Vec<usize> {
        self.decider
            .members()
            .into_iter()
            .filter(|r| !present(*r))
            .collect()
    }

    /// When [`tick`](Self::tick) must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        if self.aborted.is_some() {
            return None;
        }
        let own = match (&self.round, self.started, self.welcomed) {
            (Some(r), _, _) => Some(r.started + self.timeout),
            (None, Some(t), false) => Some(t + self.rendezvous),
            _ => None,
        };
        let stall = self
            .round
            .as_ref()
            .filter(|r| !r.announced)
            .map(|r| r.started + STALL);
        let rejoin = self.rejoin.as_ref().map(|r| r.since + r.window);
        [own, stall, self.decider.deadline(), rejoin]
            .into_iter()
            .flatten()
            .min()
    }

    /// Handles one input at `now`; true once every rank has left after the
    /// rendezvous (the coordinator's work is done).
    pub fn input(&mut self, input: Input, now: Instant) -> bool {
        match input {
            Input::Connected(id, claim) => {
                self.open.insert(id);
                self.claims.insert(id, claim);
                self.started.get_or_insert(now);
                if let Some(reason) = self.aborted.clone() {
                    self.send_to(id, &FromMaster::Aborted { reason });
                }
            }
            Input::Message(id, m) => self.message(id, m, now),
            Input::Exited(rank, why) => {
                // Before the welcome a fault-tolerant job leaves a rank
                // that never joined to the launcher's count of survivors.
                let counts = self.welcomed || !self.tolerant;
                if rank < self.world && !self.done.contains(&rank) && counts {
                    self.failed(rank, why, now);
                }
            }
            Input::Closed(id) => {
                self.open.remove(&id);
                self.claims.remove(&id);
                if let Some(rank) = self.ranks.remove(&id) {
                    if !self.done.contains(&rank) {
                        self.failed(rank, "left the job without saying goodbye".into(), now);
                    }
                }
                if self.welcomed && self.ranks.is_empty() && self.rejoin.is_none() {
                    return true;
                }
            }
        }
        false
    }

    /// `rank` is gone: a regroup in a fault-tolerant job, the end otherwise.
    fn failed(&mut self, rank: usize, why: String, now: Instant) {
        if self.aborted.is_some() || self.dead.contains(&rank) {
            return;
        }
        self.first_failed.get_or_insert(rank);
        if self.tolerant && self.welcomed {
            tracing::warn!(rank, %why, "rank failed");
            self.decider.crashed(rank, now);
            self.act(now);
        } else {
            self.abort(format!("rank {rank} {why}"));
        }
    }

    /// Acts on every deadline that has passed by `now`.
    pub fn tick(&mut self, now: Instant) {
        if self
            .rejoin
            .as_ref()
            .is_some_and(|r| r.since + r.window <= now)
        {
            self.conclude_rejoin(now);
        }
        if self.decider.deadline().is_some_and(|d| d <= now) {
            self.act(now);
        }
        self.announce_stall(now);
        let overdue = match (&self.round, self.started, self.welcomed) {
            (Some(r), _, _) => r.started + self.timeout <= now,
            (None, Some(t), false) => t + self.rendezvous <= now,
            _ => false,
        };
        if !overdue || self.aborted.is_some() {
            return;
        }
        if let Some(Round { round, got, op, .. }) = self.round.take() {
            let missing = self.missing(|r| got.contains_key(&r));
            let waited = crate::error::Seconds(self.timeout);
            let reason = format!("{op} timed out after {waited} (MALT_TIMEOUT)");
            let late = format!(
                "{op}: the other ranks stopped waiting for this rank after {waited} (MALT_TIMEOUT); it arrived too late, and the job is over"
            );
            self.late = missing.iter().map(|r| (*r, late.clone())).collect();
            let ids: Vec<(usize, usize)> = self.ranks.iter().map(|(i, r)| (*i, *r)).collect();
            for (id, rank) in ids {
                let msg = match self.late.get(&rank) {
                    Some(reason) => FromMaster::Late {
                        reason: reason.clone(),
                    },
                    None => FromMaster::Failed {
                        round,
                        reason: reason.clone(),
                        missing: missing.clone(),
                    },
                };
                self.send_to(id, &msg);
            }
            self.aborted = Some(format!(
                "{reason} waiting for ranks {}",
                crate::error::RankList(&missing)
            ));
        } else if !self.welcomed {
            let have: BTreeSet<usize> = self.ranks.values().copied().collect();
            let missing: Vec<usize> = (0..self.world).filter(|r| !have.contains(r)).collect();
            self.abort(format!(
                "rendezvous timed out after {} (MALT_RENDEZVOUS_TIMEOUT) waiting for ranks {}",
                crate::error::Seconds(self.rendezvous),
                crate::error::RankList(&missing)
            ));
        }
    }

    /// Tells every rank who waits in a round that has lasted [`STALL`].
    fn announce_stall(&mut self, now: Instant) {
        if self.aborted.is_some() {
            return;
        }
        let Some(r) = self.round.as_mut() else {
            return;
        };
        if r.announced || r.started + STALL > now {
            return;
        }
        r.announced = true;
        let msg = FromMaster::Waiting {
            epoch: r.epoch,
            round: r.round,
            op: r.op.clone(),
            arrived: r.got.keys().copied().collect(),
        };
        self.send_ranks(&msg);
    }

    /// Ends the job because the ranks made different calls.
    fn abort_mismatch(&mut self, reason: String) {
        tracing::error!(%reason, "aborting the job");
        self.send_ranks(&FromMaster::Mismatched {
            reason: reason.clone(),
        });
        self.aborted = Some(reason);
    }

    /// Carries out the decider's verdict, if it has one now.
    fn act(&mut self, now: Instant) {
        let Some(decision) = self.decider.decide(now) else {
            return;
        };
        let (evicted, epoch) = match &decision {
            Decision::Regroup { evicted, epoch, .. } => (evicted.clone(), *epoch),
            Decision::Quorum { evicted, .. } | Decision::TooManyRegroups { evicted, .. } => {
                (evicted.clone(), self.decider.epoch() + 1)
            }
        };
        for r in &evicted {
            self.dead.insert(*r);
            if let Some(id) = self.conn_of(*r) {
                self.send_to(
                    id,
                    &FromMaster::Evicted {
                        epoch,
                        reason: "suspected dead by the fault monitor".into(),
                    },
                );
                self.ranks.remove(&id);
                self.close(id);
            }
        }
        // A round in progress belonged to the old group.
        self.round = None;
        match decision {
            Decision::Regroup { epoch, members, .. } => {
                tracing::warn!(epoch, ?members, ?evicted, "regrouping");
                let dead: Vec<usize> = self.dead.iter().copied().collect();
                self.send_ranks(&FromMaster::Regroup {
                    epoch,
                    members,
                    dead,
                });
            }
            Decision::Quorum { alive, min, .. } => {
                let reason = format!(
                    "only {} ranks {} are left, fewer than the minimum of {min}",
                    alive.len(),
                    crate::error::RankList(&alive)
                );
                tracing::error!(%reason, "stopping the job");
                self.send_ranks(&FromMaster::Quorum { alive, min });
                self.aborted = Some(reason);
            }
            Decision::TooManyRegroups { regroups, .. } => {
                self.abort(format!(
                    "ranks {evicted:?} failed after {regroups} regroups, the most allowed \
                     (MALT_MAX_REGROUPS)"
                ));
            }
        }
    }

    fn message(&mut self, id: usize, m: ToMaster, now: Instant) {
        match m {
            ToMaster::Hello {
                rank,
                world,
                endpoint,
            } => self.hello(id, rank, world, endpoint),
            ToMaster::Rejoin { rank, world, epoch } => self.rejoined(id, rank, world, epoch, now),
            ToMaster::Gather {
                epoch,
                round,
                data,
                op,
            } => {
                let Some(&rank) = self.ranks.get(&id) else {
                    return self.refuse(id, "gather before hello".into());
                };
                if let Some(reason) = self.aborted.clone() {
                    if let Some(late) = self.late.get(&rank) {
                        let reason = late.clone();
                        return self.send_to(id, &FromMaster::Late { reason });
                    }
                    return self.send_to(id, &FromMaster::Aborted { reason });
                }
                let current = self.decider.epoch();
                if epoch < current {
                    // Sent before this rank heard of the regroup; the
                    // regroup message tells it to start over.
                    return;
                }
                if epoch > current {
                    return self.abort(format!(
                        "rank {rank} is in epoch {epoch} while the group is in epoch {current}"
                    ));
                }
                let r = self.round.get_or_insert_with(|| Round {
                    epoch,
                    round,
                    op: op.clone(),
                    started: now,
                    announced: false,
                    got: BTreeMap::new(),
                });
                if (r.epoch, r.round) != (epoch, round) {
                    let reason = format!(
                        "rank {rank} is in collective round {round} while others are in round {}",
                        r.round
                    );
                    return self.abort(reason);
                }
                if r.op != op {
                    let (first, theirs) = (*r.got.keys().next().unwrap_or(&rank), r.op.clone());
                    return self.abort_mismatch(format!(
                        "the ranks made different calls: rank {rank} called {op} while rank {first} called {theirs} (collective call number {round} of each)"
                    ));
                }
                r.got.insert(rank, data);
                let members = self.decider.members();
                if members.iter().all(|m| r.got.contains_key(m)) {
                    if let Some(Round {
                        epoch, round, got, ..
                    }) = self.round.take()
                    {
                        let data: Vec<String> = got.into_values().collect();
                        self.send_ranks(&FromMaster::Gathered { epoch, round, data });
                    }
                }
            }
            ToMaster::Suspect { peer, reason } => {
                let Some(&rank) = self.ranks.get(&id) else {
                    return;
                };
                if !self.welcomed || self.done.contains(&peer) || self.dead.contains(&peer) {
                    return;
                }
                tracing::warn!(rank, peer, %reason, "suspicion reported");
                if self.tolerant {
                    self.decider.suspect(rank, peer, now);
                    self.act(now);
                } else {
                    // A job that tolerates no failure ends now, naming the
                    // silent rank, instead of when a wait times out.
                    self.failed(
                        peer,
                        format!("was suspected dead by rank {rank}'s fault monitor: {reason}"),
                        now,
                    );
                }
            }
            ToMaster::Mismatch { reason } => {
                if self.ranks.contains_key(&id) && self.aborted.is_none() {
                    self.abort_mismatch(reason);
                }
            }
            ToMaster::Failing { reason } => {
                if let Some(&rank) = self.ranks.get(&id) {
                    self.failed(rank, format!("failed: {reason}"), now);
                }
            }
            ToMaster::Bye { clean } => {
                if let Some(&rank) = self.ranks.get(&id) {
                    if clean {
                        self.done.insert(rank);
                        self.decider.finished(rank);
                    } else {
                        // Left without finishing the job: it stopped with an
                        // error (reported in its own output), or dropped its
                        // group without `finish`. The others are told now,
                        // not when their next wait times out.
                        self.failed(
                            rank,
                            "left the job without finishing it (it stopped with an error: see its \
                             output)"
                                .into(),
                            now,
                        );
                        self.done.insert(rank);
                    }
                }
            }
        }
    }

    fn hello(&mut self, id: usize, rank: usize, world: usize, endpoint: Endpoint) {
        let proved = self
            .claims
            .get(&id)
            .is_some_and(|c| c.rank as usize == rank && c.world as usize == world);
        if !proved {
            return self.refuse(
                id,
                format!("hello as rank {rank} of {world} differs from what the handshake proved"),
            );
        }
        if let Some(reason) = self.aborted.clone() {
            return self.send_to(id, &FromMaster::Aborted { reason });
        }
        if world != self.world {
            self.refuse(
                id,
                format!(
                    "world size {world} disagrees with the coordinator's {}",
                    self.world
                ),
            );
            return self.abort(format!(
                "rank {rank} says the world has {world} ranks, the coordinator says {}",
                self.world
            ));
        }
        if rank >= self.world {
            self.refuse(id, format!("rank {rank} is out of range for world {world}"));
            return self.abort(format!(
                "a process claimed rank {rank} in a world of {world}"
            ));
        }
        if self.dead.contains(&rank) {
            let epoch = self.decider.epoch();
            self.send_to(
                id,
                &FromMaster::Evicted {
                    epoch,
                    reason: "the group went on without this rank".into(),
                },
            );
            return self.refuse(id, format!("rank {rank} was evicted"));
        }
        if self.ranks.values().any(|r| *r == rank) || self.welcomed {
            self.refuse(id, format!("rank {rank} is already taken"));
            return self.abort(format!("two processes claimed rank {rank}"));
        }
        self.ranks.insert(id, rank);
        self.endpoints.insert(rank, endpoint);
        tracing::debug!(
            rank,
            joined = self.ranks.len(),
            world = self.world,
            "a rank joined the rendezvous"
        );
        if self.ranks.len() == self.world {
            let table: Vec<Endpoint> = self.endpoints.values().cloned().collect();
            tracing::info!(world = self.world, "every rank joined: rendezvous complete");
            self.welcomed = true;
            let nonce = self.nonce;
            self.send_ranks(&FromMaster::Welcome {
                table,
                epoch: 1,
                nonce,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    /// What `out` sends, each message with its connection.
    fn sent(out: &[Out]) -> Vec<(usize, FromMaster)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send(id, m) => Some((*id, (**m).clone())),
                Out::Close(_) => None,
            })
            .collect()
    }

    fn policy(world: usize, min: usize) -> FaultPolicy {
        let _ = world;
        FaultPolicy {
            min_ranks: min,
            fail_timeout: T,
            max_regroups: 3,
        }
    }

    fn bounds() -> Bounds {
        Bounds {
            timeout: crate::config::NO_TIMEOUT,
            rendezvous: Duration::from_secs(60),
        }
    }

    fn claim(rank: usize, world: usize) -> auth::Claim {
        auth::Claim {
            rank: rank as u32,
            world: world as u32,
            epoch: 0,
        }
    }

    fn endpoint(rank: usize) -> Endpoint {
        Endpoint {
            rank,
            host: "host".into(),
            pid: 1,
            data_addr: None,
            standby: None,
        }
    }

    /// Connection `rank` (ids equal ranks here) connects and says hello.
    fn hello(c: &mut Coordinator, rank: usize, world: usize, now: Instant) {
        c.input(Input::Connected(rank, claim(rank, world)), now);
        c.input(
            Input::Message(
                rank,
                ToMaster::Hello {
                    rank,
                    world,
                    endpoint: endpoint(rank),
                },
            ),
            now,
        );
    }

    fn job(world: usize, min: usize, now: Instant) -> Coordinator {
        let mut c = Coordinator::new(world, bounds(), policy(world, min), Default::default());
        for r in 0..world {
            hello(&mut c, r, world, now);
        }
        let welcomed = sent(&c.take_out())
            .iter()
            .filter(|o| matches!(o, (_, FromMaster::Welcome { .. })))
            .count();
        assert_eq!(welcomed, world);
        c
    }

    /// The reasons of the aborts sent, one per connection told.
    fn aborts(out: &[Out]) -> Vec<String> {
        sent(out)
            .into_iter()
            .filter_map(|(_, m)| match m {
                FromMaster::Aborted { reason } => Some(reason),
                _ => None,
            })
            .collect()
    }

    fn regroups(out: &[Out]) -> Vec<(usize, u32, Vec<usize>, Vec<usize>)> {
        sent(out)
            .into_iter()
            .filter_map(|(id, m)| match m {
                FromMaster::Regroup {
                    epoch,
                    members,
                    dead,
                } => Some((id, epoch, members, dead)),
                _ => None,
            })
            .collect()
    }

    fn gather(c: &mut Coordinator, rank: usize, now: Instant) {
        gather_in(c, rank, "barrier", now);
    }

    /// Rank `rank` enters round 1, a round of the call `op`.
    fn gather_in(c: &mut Coordinator, rank: usize, op: &str, now: Instant) {
        c.input(
            Input::Message(
                rank,
                ToMaster::Gather {
                    epoch: 1,
                    round: 1,
                    data: format!("r{rank}"),
                    op: op.into(),
                },
            ),
            now,
        );
    }

    #[test]
    fn a_round_that_waits_a_while_is_announced_once_naming_who_is_in_it() {
        let t0 = Instant::now();
        let mut c = job(3, 3, t0);
        gather(&mut c, 2, t0);
        gather(&mut c, 0, t0 + STALL / 2);
        assert_eq!(c.deadline(), Some(t0 + STALL));
        c.tick(t0 + STALL / 2);
        assert!(c.take_out().is_empty());
        c.tick(t0 + STALL);
        let mut told: Vec<(usize, Vec<usize>, String)> = sent(&c.take_out())
            .into_iter()
            .filter_map(|(id, m)| match m {
                FromMaster::Waiting { arrived, op, .. } => Some((id, arrived, op)),
                _ => None,
            })
            .collect();
        told.sort();
        let want: Vec<(usize, Vec<usize>, String)> = (0..3)
            .map(|id| (id, vec![0, 2], "barrier".to_string()))
            .collect();
        assert_eq!(told, want);
        c.tick(t0 + 2 * STALL);
        assert!(c.take_out().is_empty(), "announced twice");
    }

    #[test]
    fn ranks_in_different_calls_of_one_round_end_the_job_as_a_mismatch() {
        let t0 = Instant::now();
        let mut c = job(2, 2, t0);
        gather_in(&mut c, 0, "barrier", t0);
        gather_in(&mut c, 1, "vector creation", t0);
        let reasons: Vec<String> = sent(&c.take_out())
            .into_iter()
            .filter_map(|(_, m)| match m {
                FromMaster::Mismatched { reason } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].contains("rank 1 called vector creation while rank 0 called barrier"),
            "{reasons:?}"
        );
    }

    #[test]
    fn the_rendezvous_waits_its_bound_and_names_the_missing_ranks() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(3, bounds(), policy(3, 3), Default::default());
        hello(&mut c, 0, 3, t0);
        hello(&mut c, 1, 3, t0 + Duration::from_secs(30));
        assert_eq!(c.deadline(), Some(t0 + Duration::from_secs(60)));
        c.tick(t0 + Duration::from_secs(59));
        assert!(aborts(&c.take_out()).is_empty());
        c.tick(t0 + Duration::from_secs(60));
        let a = aborts(&c.take_out());
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[0].contains("waiting for ranks [2]"), "{a:?}");
        assert!(a[0].contains("MALT_RENDEZVOUS_TIMEOUT"), "{a:?}");
    }

    #[test]
    fn a_round_waits_for_live_ranks_for_as_long_as_they_live() {
        let t0 = Instant::now();
        let mut c = job(2, 2, t0);
        gather(&mut c, 0, t0);
        // An hour later rank 1 (alive, heartbeats flowing) is still
        // computing: nothing happens but the notice of who waits.
        c.tick(t0 + Duration::from_secs(3600));
        let out = c.take_out();
        assert!(
            sent(&out)
                .iter()
                .all(|(_, m)| matches!(m, FromMaster::Waiting { .. })),
            "{out:?}"
        );
        c.tick(t0 + Duration::from_secs(3600));
        assert!(c.take_out().is_empty());
        assert!(c
            .deadline()
            .is_none_or(|d| d >= t0 + Duration::from_secs(300 * 24 * 3600)));
        gather(&mut c, 1, t0 + Duration::from_secs(3601));
        let out = c.take_out();
        let gathered = sent(&out)
            .iter()
            .filter(|o| matches!(o, (_, FromMaster::Gathered { .. })))
            .count();
        assert_eq!(gathered, 2, "{out:?}");
    }

    #[test]
    fn a_suspicion_ends_a_job_that_tolerates_no_failure_naming_the_rank() {
        let t0 = Instant::now();
        let mut c = job(3, 3, t0);
        c.input(
            Input::Message(
                0,
                ToMaster::Suspect {
                    peer: 2,
                    reason: "no heartbeat for 2.0 s".into(),
                },
            ),
            t0 + T,
        );
        let a = aborts(&c.take_out());
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(
            a[0].starts_with("rank 2 was suspected dead by rank 0"),
            "{a:?}"
        );
        assert!(a[0].contains("no heartbeat for 2.0 s"), "{a:?}");
        c.publish();
        assert_eq!(c.public.lock().unwrap().first_failed, Some(2));
    }

    #[test]
    fn a_rank_whose_process_ended_fails_while_its_connection_stays_open() {
        // A child the rank forked holds its socket: no Closed comes.
        let t0 = Instant::now();
        let mut c = job(2, 2, t0);
        c.input(Input::Exited(0, "killed by SIGKILL".into()), t0 + T / 10);
        let a = aborts(&c.take_out());
        assert_eq!(a, vec!["rank 0 killed by SIGKILL".to_string(); 2]);
        c.publish();
        assert_eq!(c.public.lock().unwrap().first_failed, Some(0));
    }

    #[test]
    fn a_tolerant_job_regroups_without_a_rank_whose_process_ended() {
        let t0 = Instant::now();
        let mut c = job(3, 2, t0);
        c.input(Input::Exited(2, "exited with status 1".into()), t0 + T / 10);
        // After the window in which failures are gathered into one regroup.
        c.tick(t0 + 10 * T);
        let out = c.take_out();
        let r = regroups(&out);
        assert_eq!(r.len(), 2, "{out:?}");
        assert!(
            r.iter()
                .all(|(id, _, m, d)| *id < 2 && m == &[0, 1] && d == &[2]),
            "{r:?}"
        );
        assert!(aborts(&out).is_empty(), "{out:?}");
        // The dead rank's connection (held by its child) is told and closed.
        assert!(
            sent(&out)
                .iter()
                .any(|(id, m)| *id == 2 && matches!(m, FromMaster::Evicted { .. })),
            "{out:?}"
        );
        assert!(out.iter().any(|o| matches!(o, Out::Close(2))), "{out:?}");
    }

    #[test]
    fn before_the_welcome_only_a_job_that_tolerates_no_failure_stops() {
        let t0 = Instant::now();
        let mut tolerant = Coordinator::new(3, bounds(), policy(3, 2), Default::default());
        hello(&mut tolerant, 0, 3, t0);
        tolerant.input(Input::Exited(1, "exited with status 3".into()), t0);
        assert!(aborts(&tolerant.take_out()).is_empty());
        let mut strict = Coordinator::new(3, bounds(), policy(3, 3), Default::default());
        hello(&mut strict, 0, 3, t0);
        strict.input(Input::Exited(1, "exited with status 3".into()), t0);
        assert_eq!(
            aborts(&strict.take_out()),
            vec!["rank 1 exited with status 3".to_string()]
        );
    }

    #[test]
    fn the_end_of_a_process_that_said_goodbye_is_no_failure() {
        let t0 = Instant::now();
        let mut c = job(2, 2, t0);
        c.input(Input::Message(1, ToMaster::Bye { clean: true }), t0);
        c.input(Input::Exited(1, "exited with status 1".into()), t0);
        // A rank number outside the job is ignored, not trusted.
        c.input(Input::Exited(7, "killed by SIGKILL".into()), t0);
        assert!(aborts(&c.take_out()).is_empty());
        c.publish();
        assert_eq!(c.public.lock().unwrap().first_failed, None);
    }

    #[test]
    fn a_finished_rank_going_quiet_is_not_a_failure() {
        let t0 = Instant::now();
        let mut c = job(2, 2, t0);
        c.input(Input::Message(1, ToMaster::Bye { clean: true }), t0);
        c.input(Input::Closed(1), t0);
        c.input(
            Input::Message(
                0,
                ToMaster::Suspect {
                    peer: 1,
                    reason: "no heartbeat".into(),
                },
            ),
            t0 + 2 * T,
        );
        assert!(aborts(&c.take_out()).is_empty());
    }

    fn takeover(world: usize, min: usize, now: Instant) -> Coordinator {
        Coordinator::takeover(
            world,
            bounds(),
            policy(world, min),
            Default::default(),
            Takeover {
                host: 0,
                epoch: 1,
                members: (0..world).collect(),
                dead: Vec::new(),
                nonce: 7,
                window: Duration::from_secs(6),
            },
            now,
        )
    }

    fn rejoin(c: &mut Coordinator, rank: usize, world: usize, now: Instant) {
        c.input(Input::Connected(rank, claim(rank, world)), now);
        c.input(
            Input::Message(
                rank,
                ToMaster::Rejoin {
                    rank,
                    world,
                    epoch: 1,
                },
            ),
            now,
        );
    }

    #[test]
    fn a_takeover_by_a_majority_regroups_without_the_old_host() {
        let t0 = Instant::now();
        let mut c = takeover(4, 2, t0);
        for r in 1..4 {
            rejoin(&mut c, r, 4, t0 + Duration::from_millis(10 * r as u64));
        }
        // Everyone but the old host came: no need to wait out the window,
        // only the decider's short collection window.
        let d = c.deadline().expect("a decision is due");
        assert!(d <= t0 + Duration::from_secs(1), "{d:?}");
        c.tick(d);
        let r = regroups(&c.take_out());
        assert_eq!(r.len(), 3, "{r:?}");
        for (_, epoch, members, dead) in &r {
            assert_eq!(
                (*epoch, members.clone(), dead.clone()),
                (2, vec![1, 2, 3], vec![0])
            );
        }
        c.publish();
        let st = c.public.lock().unwrap().clone();
        assert_eq!(
            (st.evicted, st.first_failed, st.nonce),
            (vec![0], Some(0), 7)
        );
    }

    #[test]
    fn a_takeover_waits_its_window_for_members_that_may_still_come() {
        let t0 = Instant::now();
        let mut c = takeover(5, 2, t0);
        for r in 1..4 {
            rejoin(&mut c, r, 5, t0);
        }
        // Rank 4 has not come: wait for it until the window closes.
        c.tick(t0 + Duration::from_secs(5));
        assert!(regroups(&c.take_out()).is_empty());
        c.tick(t0 + Duration::from_secs(6));
        let d = c.deadline().expect("a decision is due");
        c.tick(d);
        let r = regroups(&c.take_out());
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(
            (r[0].2.clone(), r[0].3.clone()),
            (vec![1, 2, 3], vec![0, 4])
        );
        // Rank 4 comes late: it is told that the group went on without it.
        rejoin(&mut c, 4, 5, t0 + Duration::from_secs(8));
        let out = c.take_out();
        assert!(
            sent(&out)
                .iter()
                .any(|o| matches!(o, (4, FromMaster::Evicted { .. }))),
            "{out:?}"
        );
        assert!(out.iter().any(|o| matches!(o, Out::Close(4))), "{out:?}");
    }

    #[test]
    fn a_takeover_without_a_majority_stops_the_job() {
        let t0 = Instant::now();
        let mut c = takeover(4, 1, t0);
        rejoin(&mut c, 1, 4, t0);
        rejoin(&mut c, 3, 4, t0);
        c.tick(t0 + Duration::from_secs(6));
        let out = c.take_out();
        let a = aborts(&out);
        assert_eq!(a.len(), 2, "{out:?}");
        assert!(a[0].contains("only ranks [1, 3] of the 4 ranks"), "{a:?}");
        assert!(a[0].contains("majority"), "{a:?}");
        assert!(regroups(&out).is_empty());
    }

    #[test]
    fn a_takeover_below_the_minimum_stops_the_job() {
        let t0 = Instant::now();
        let mut c = takeover(4, 4, t0);
        for r in 1..4 {
            rejoin(&mut c, r, 4, t0);
        }
        let d = c.deadline().expect("a decision is due");
        c.tick(d);
        let out = c.take_out();
        assert!(
            sent(&out)
                .iter()
                .any(|o| matches!(o, (_, FromMaster::Quorum { .. }))),
            "{out:?}"
        );
    }

    #[test]
    fn a_rejoin_that_differs_from_the_handshake_is_refused() {
        let t0 = Instant::now();
        let mut c = takeover(3, 1, t0);
        c.input(Input::Connected(9, claim(1, 3)), t0);
        c.input(
            Input::Message(
                9,
                ToMaster::Rejoin {
                    rank: 2,
                    world: 3,
                    epoch: 1,
                },
            ),
            t0,
        );
        let out = c.take_out();
        assert!(
            sent(&out)
                .iter()
                .any(|o| matches!(o, (9, FromMaster::Refused { .. }))),
            "{out:?}"
        );
        assert!(out.iter().any(|o| matches!(o, Out::Close(9))), "{out:?}");
    }
}
