//! What dense and sparse vectors share: collective creation, the one-sided
//! push to out-neighbours, the progress clock and the consistency waits.
//!
//! # Iterations and progress
//!
//! A vector counts its exchanges: its *iteration* `t` starts at 0, every
//! `scatter()` is tagged with `t`, and every `gather()` completes iteration
//! `t` (afterwards the vector is at `t + 1`). A rank's *progress* is the
//! highest iteration it has scattered.
//!
//! `gather()` at iteration `t` first waits, under `Ssp { s }` (and `Bsp`,
//! which is `s = 0`), until every peer has scattered iteration `t - s` — the
//! rule "wait while `t - min(peer iteration) > s`" of [`crate::consistency`]
//! evaluated with the peers' scatter progress — so that every update it
//! merges is at most `s` iterations old. `Async` never waits.
//!
//! Progress is learnt one-sided, without asking anybody:
//!
//! * from an in-neighbour, by its data itself: an update tagged `u` in this
//!   rank's segment proves the sender reached `u` (checked with
//!   `Object::wait_visible`, without consuming the update);
//! * from every other rank, through a small *clock* object: each rank writes
//!   `iteration + 1` (8 bytes) after its data to every rank that does not
//!   receive its data. Under `Graph::All` every rank is an in-neighbour of
//!   every other, so no clock object is created and no clock bytes are sent.
//!
//! Under `Bsp` and `Ssp` every rank is expected to scatter once per
//! iteration (an exchange is `scatter()` then `gather()`): progress is only
//! published by scatters, so a rank that stops scattering is seen as stuck,
//! and its peers' waits end, after the group's timeout (or
//! [`VectorOptions::wait_timeout`]), with [`VolError::Timeout`] naming it.
//!
//! # BSP without a barrier message
//!
//! Under `Bsp`, the wait above means nobody finishes iteration `t`'s gather
//! before every rank has scattered iteration `t`, and the gather then merges
//! exactly the iteration-`t` update of every in-neighbour. That is a barrier
//! around the exchange made of the data writes themselves (plus clock words
//! for non-neighbours). It also makes lapping impossible with the default
//! queue depth of 2: a rank scatters iteration `t + 2` only after every rank
//! scattered `t + 1`, which each does only after consuming iteration `t`.
//! [`barrier`] (a control-channel barrier) is available separately.

use std::time::{Duration, Instant};

use dstorm::wire::Payload;
use dstorm::{FlowControl, Group, Object, ObjectSpec, Update};
use serde::{Deserialize, Serialize};

use crate::allreduce::Schedule;
use crate::consistency::Consistency;
use crate::error::VolError;
use crate::graph::Graph;
use crate::representation::Representation;
use crate::stats::Stats;

/// Default number of slots per sender queue.
pub const DEFAULT_DEPTH: usize = 2;

/// Default period of dense refreshes of a sparsely sent dense vector, see
/// [`VectorOptions::refresh`].
pub const DEFAULT_REFRESH: u64 = 16;

/// How a vector communicates. Every rank must pass equal options when it
/// creates the vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorOptions {
    /// Who `scatter()` writes to. Default: [`Graph::All`].
    pub graph: Graph,
    /// How far ranks may drift apart. Default: [`Consistency::Bsp`].
    pub consistency: Consistency,
    /// Dense vectors: whether updates go out whole or as the entries changed
    /// since the previous scatter. Default: [`Representation::Dense`].
    /// Ignored (must stay the default) for sparse vectors, which always send
    /// their stored entries.
    pub representation: Representation,
    /// What a sender does when the receiver has not read its previous
    /// updates yet. Default: [`FlowControl::Overwrite`].
    pub flow: FlowControl,
    /// Slots per sender queue, at least 2. Default: [`DEFAULT_DEPTH`].
    pub depth: usize,
    /// A dense vector sent as sparse diffs sends its whole value at least
    /// every `refresh` scatters when a diff can be lost (`Overwrite` flow
    /// control and a mode other than `Bsp`), so that a receiver that missed
    /// a diff catches up. 0 means never. Default: [`DEFAULT_REFRESH`].
    pub refresh: u64,
    /// Bound on this vector's consistency waits. Default (`None`): the
    /// group's timeout. A rank-local setting: ranks need not agree on it.
    pub wait_timeout: Option<Duration>,
    /// Dense vectors: how a gather reaches every rank's update, directly or
    /// by reduce-scatter and all-gather ([`crate::allreduce`]). Default:
    /// [`Schedule::Auto`]. Must stay the default for sparse vectors.
    pub schedule: Schedule,
}

impl Default for VectorOptions {
    fn default() -> Self {
        VectorOptions {
            graph: Graph::All,
            consistency: Consistency::Bsp,
            representation: Representation::Dense,
            flow: FlowControl::Overwrite,
            depth: DEFAULT_DEPTH,
            refresh: DEFAULT_REFRESH,
            wait_timeout: None,
            schedule: Schedule::Auto,
        }
    }
}

impl VectorOptions {
    /// The defaults: all-to-all, BSP, dense, overwrite, depth 2.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the communication graph.
    pub fn graph(mut self, graph: Graph) -> Self {
        self.graph = graph;
        self
    }

    /// Sets the consistency mode.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Sets the representation of a dense vector's updates.
    pub fn representation(mut self, representation: Representation) -> Self {
        self.representation = representation;
        self
    }

    /// Sets the flow control.
    pub fn flow(mut self, flow: FlowControl) -> Self {
        self.flow = flow;
        self
    }

    /// Sets the queue depth (slots per sender, at least 2).
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Sets the dense refresh period (see [`VectorOptions::refresh`]).
    pub fn refresh(mut self, refresh: u64) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets the schedule of a dense vector's gather.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Bounds this vector's consistency waits by `timeout` instead of the
    /// group's timeout.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }
}

/// What one `gather()` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GatherInfo {
    /// The iteration this gather completed (the vector is now at
    /// `iteration + 1`).
    pub iteration: u64,
    /// Incoming updates merged (at most one per in-neighbour: the newest).
    pub merged: usize,
    /// Largest staleness among them (`iteration` minus the sender's
    /// iteration; 0 if none merged or the sender was ahead).
    pub max_staleness: u64,
    /// Sum of their staleness (divide by `merged` for the mean).
    pub staleness_sum: u64,
    /// Time spent waiting for peers in this gather, in nanoseconds.
    pub wait_ns: u64,
    /// The updates were merged straight from the receive queues, range by
    /// range, without being copied out first (dense vectors under `Bsp`
    /// with an [elementwise](crate::udf::Merge::elementwise) merge).
    pub in_place: bool,
    /// The schedule this gather ran: [`Schedule::Direct`] or
    /// [`Schedule::Allreduce`] (see [`crate::allreduce`]).
    pub schedule: Schedule,
}

/// Waits until every rank has called `barrier` (through dstorm's control
/// channel), bounded by the group's timeout. Returns the time it took.
pub fn barrier(group: &Group) -> Result<Duration, VolError> {
    let start = Instant::now();
    group.barrier()?;
    Ok(start.elapsed())
}

/// What ranks compare when they create a vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Its fields are every option the ranks must agree on, compared one by one.
pub(crate) struct Descriptor {
    pub name: String,
    pub kind: String,
    pub element: String,
    pub index: String,
    pub len: u64,
    pub max_entries: u64,
    pub graph: String,
    pub consistency: String,
    pub representation: String,
    pub flow: String,
    pub depth: usize,
    pub refresh: u64,
    pub schedule: String,
}

impl Descriptor {
    /// The first field in which `other` differs: (what, ours, theirs).
    fn first_difference(&self, other: &Descriptor) -> Option<(&'static str, String, String)> {
        macro_rules! cmp {
            ($($field:ident => $what:expr),* $(,)?) => {
                $(
                    if self.$field != other.$field {
                        return Some(($what, self.$field.to_string(), other.$field.to_string()));
                    }
                )*
            };
        }
        cmp!(
            name => "name",
            kind => "vector kind",
            element => "element type",
            index => "index type",
            len => "length",
            max_entries => "maximum number of entries",
            graph => "graph",
            consistency => "consistency mode",
            representation => "representation",
            flow => "flow control",
            depth => "queue depth",
            refresh => "dense refresh period",
            schedule => "schedule",
        );
        None
    }
}

fn flow_name(flow: FlowControl) -> &'static str {
    match flow {
        FlowControl::Overwrite => "overwrite",
        FlowControl::Backpressure => "backpressure",
    }
}

/// Builds the descriptor of a vector from its options.
pub(crate) fn describe(
    name: &str,
    kind: &str,
    element: &str,
    index: &str,
    len: u64,
    max_entries: u64,
    opts: &VectorOptions,
) -> Descriptor {
    Descriptor {
        name: name.to_owned(),
        kind: kind.to_owned(),
        element: element.to_owned(),
        index: index.to_owned(),
        len,
        max_entries,
        graph: opts.graph.to_string(),
        consistency: opts.consistency.to_string(),
        representation: opts.representation.to_string(),
        flow: flow_name(opts.flow).to_owned(),
        depth: opts.depth,
        refresh: opts.refresh,
        schedule: opts.schedule.to_string(),
    }
}

/// The progress clock: who this rank learns progress from without data.
#[derive(Debug)]
struct Clock {
    obj: Object,
    buf: Vec<u8>,
    /// Ranks whose clock this rank reads.
    peers: Vec<usize>,
    /// Per rank: highest iteration + 1 seen on the clock (0: none).
    seen: Vec<u64>,
    /// Whether this rank writes its clock to anybody.
    writes: bool,
}

impl Clock {
    /// Reads every clock update that has arrived (bounded, never blocks).
    fn drain(&mut self) -> Result<(), VolError> {
        let bound = 4 * (self.peers.len() + 1) * 8;
        for _ in 0..bound {
            match self.obj.poll(&mut self.buf)? {
                Some(u) => self.note(u),
                None => break,
            }
        }
        Ok(())
    }

    fn note(&mut self, u: Update) {
        if let Some(s) = self.seen.get_mut(u.sender) {
            *s = (*s).max(u.iteration.saturating_add(1));
        }
    }

    /// The clock peers that have not scattered iteration `need`.
    fn behind(&self, need: u64) -> impl Iterator<Item = usize> + '_ {
        self.peers
            .iter()
            .copied()
            .filter(move |&p| self.seen[p] <= need)
    }
}

/// The communicating core of a vector.
#[derive(Debug)]
// Everything a vector's exchange needs between calls: the queues, the
// progress clock, per-in-neighbour progress and what recreates them after a
// regroup. Its fields change together in send, gather and rejoin.
pub(crate) struct Core {
    pub name: String,
    pub rank: usize,
    pub world: usize,
    pub timeout: Duration,
    pub consistency: Consistency,
    pub flow: FlowControl,
    pub depth: usize,
    pub obj: Object,
    clock: Option<Clock>,
    /// In-neighbours (data senders), ascending.
    pub senders: Vec<usize>,
    /// Per in-neighbour: highest iteration + 1 known to be visible (0: none).
    data_seen: Vec<u64>,
    /// Per in-neighbour: iteration + 1 of the last update read (0: none).
    pub received: Vec<u64>,
    /// Per in-neighbour: iteration of the update the vector holds of it.
    pub mirror_iter: Vec<u64>,
    /// Per in-neighbour: what the vector holds of it changed since the last
    /// merge.
    pub fresh: Vec<bool>,
    /// The iteration the vector is in.
    pub iteration: u64,
    /// Scatters done (the version of the last update sent).
    pub version: u64,
    /// The iteration of the last scatter, plus one (0: none yet).
    scattered: u64,
    pub stats: Stats,
    clock_payload: [u8; 8],
    /// What the vector was created with, to create it again after a regroup
    /// (which also starts the per-in-neighbour state afresh).
    desc: Descriptor,
    pub opts: VectorOptions,
    /// Bytes per update slot; a dense vector sets it anew before a rejoin
    /// when its schedule's slots change size with the number of members.
    pub capacity: usize,
    /// dstorm's loss counters (torn, lapped, stale epoch) of the objects
    /// this vector used before its last regroup.
    losses_before: [u64; 3],
}

impl Core {
    /// Collective creation: agree on the descriptor, validate the graph,
    /// create the data object (`capacity` bytes per update) and, if needed,
    /// the clock object. Every rank gets the same error on disagreement.
    ///
    /// `check` runs after the agreement and before anything is created: a
    /// check that fails there fails on every rank, and no rank is left
    /// holding an object its peers are still connecting to.
    pub fn create(
        group: &Group,
        desc: Descriptor,
        opts: &VectorOptions,
        capacity: usize,
        check: impl FnOnce() -> Result<(), VolError>,
    ) -> Result<Core, VolError> {
        let world = group.world();
        let rank = group.rank();
        let members = group.members();
        let mine = serde_json::to_string(&desc)?;
        let all = group.allgather_for("vector creation", &mine)?;
        let mut descs = Vec::with_capacity(all.len());
        for (r, text) in all.iter().enumerate() {
            let d: Descriptor = serde_json::from_str(text).map_err(|e| {
                VolError::Protocol(format!(
                    "rank {r} sent an unreadable vector description: {e}"
                ))
            })?;
            descs.push(d);
        }
        let base = &descs[0];
        for (i, d) in descs.iter().enumerate().skip(1) {
            if let Some((what, ours, theirs)) = base.first_difference(d) {
                return Err(VolError::Mismatch {
                    vector: base.name.clone(),
                    rank: members.get(i).copied().unwrap_or(i),
                    what,
                    ours,
                    theirs,
                });
            }
        }
        // Everyone now holds the same options: the checks below give the
        // same answer on every rank.
        let invalid = |problem: String| VolError::InvalidVector {
            vector: desc.name.clone(),
            problem,
        };
        opts.representation.validate()?;
        if !(2..=1024).contains(&opts.depth) {
            return Err(invalid(format!(
                "queue depth {} is not in 2..=1024",
                opts.depth
            )));
        }
        let adj = opts.graph.adjacency_among(world, &members)?;
        check()?;
        let spec = ObjectSpec::new(format!("vol:{}", desc.name), capacity)
            .depth(opts.depth)
            .flow(opts.flow)
            .graph(adj.clone());
        let obj = group.create_object(&spec)?;
        let senders = obj.in_neighbors().to_vec();
        let clock = if opts.consistency.staleness_bound().is_some() {
            // Each member writes its clock to every member that gets no data
            // from it.
            let complement: Vec<Vec<usize>> = adj
                .iter()
                .enumerate()
                .map(|(r, out)| {
                    if members.binary_search(&r).is_err() {
                        return Vec::new();
                    }
                    members
                        .iter()
                        .copied()
                        .filter(|p| *p != r && out.binary_search(p).is_err())
                        .collect()
                })
                .collect();
            if complement.iter().all(Vec::is_empty) {
                None
            } else {
                let spec = ObjectSpec::new(format!("vol-clock:{}", desc.name), 8)
                    .depth(2)
                    .graph(complement.clone());
                let obj = group.create_object(&spec)?;
                let peers = obj.in_neighbors().to_vec();
                Some(Clock {
                    obj,
                    buf: vec![0u8; 8],
                    peers,
                    seen: vec![0; world],
                    writes: !complement[rank].is_empty(),
                })
            }
        } else {
            None
        };
        Ok(Core {
            name: desc.name.clone(),
            rank,
            world,
            timeout: opts.wait_timeout.unwrap_or(group.config().timeout),
            consistency: opts.consistency,
            flow: opts.flow,
            depth: opts.depth,
            data_seen: vec![0; senders.len()],
            received: vec![0; senders.len()],
            mirror_iter: vec![0; senders.len()],
            fresh: vec![false; senders.len()],
            senders,
            obj,
            clock,
            iteration: 0,
            version: 0,
            scattered: 0,
            stats: Stats::new(world),
            clock_payload: [0; 8],
            desc,
            opts: opts.clone(),
            capacity,
            losses_before: [0; 3],
        })
    }

    /// After a regroup ([`dstorm::Group::regroup`]): creates the vector's
    /// queues again among the survivors, with the graph laid out over them,
    /// and moves the iteration to the highest any survivor had reached, so
    /// that their iterations agree again. Collective among the survivors.
    /// Statistics carry over.
    pub fn rejoin(&mut self, group: &Group) -> Result<(), VolError> {
        let all = group.allgather_for("vector rejoin", &self.iteration.to_string())?;
        let mut highest = self.iteration;
        for (i, text) in all.iter().enumerate() {
            let it: u64 = text.parse().map_err(|_| {
                VolError::Protocol(format!("member {i} sent an unreadable iteration {text:?}"))
            })?;
            highest = highest.max(it);
        }
        let mut fresh = Core::create(group, self.desc.clone(), &self.opts, self.capacity, || {
            Ok(())
        })?;
        fresh.iteration = highest;
        fresh.version = self.version;
        fresh.stats = std::mem::replace(&mut self.stats, Stats::new(0));
        fresh.stats.regroups += 1;
        fresh.losses_before = [
            fresh.stats.torn,
            fresh.stats.lapped,
            fresh.stats.stale_epoch,
        ];
        *self = fresh;
        Ok(())
    }

    /// Writes `payload` to every out-neighbour, tagged with the current
    /// iteration, then publishes progress on the clock.
    pub fn send(&mut self, payload: Payload<'_>, sparse: bool) -> Result<(), VolError> {
        self.send_with(0, |_| payload, sparse)
    }

    /// Like [`send`](Self::send), with the payload for each out-neighbour
    /// from `payload(peer)`, starting with out-neighbour number `first`
    /// and going round.
    pub fn send_with<'p>(
        &mut self,
        first: usize,
        mut payload: impl FnMut(usize) -> Payload<'p>,
        sparse: bool,
    ) -> Result<(), VolError> {
        let t = self.iteration;
        let backpressure = self.flow == FlowControl::Backpressure;
        let waits_before = self.obj.counters().backpressure_waits;
        let start = backpressure.then(Instant::now);
        let out = self.obj.out_neighbors().len();
        for i in 0..out {
            let peer = self.obj.out_neighbors()[(first + i) % out];
            let payload = payload(peer);
            self.obj.write_parts(peer, payload, t)?;
            self.stats.record_send(peer, payload.len() as u64);
            if sparse {
                self.stats.record_sparse_send();
            }
        }
        if let Some(start) = start {
            if self.obj.counters().backpressure_waits > waits_before {
                self.stats.record_wait(start.elapsed());
            }
        }
        if let Some(clock) = &mut self.clock {
            if clock.writes {
                self.clock_payload = t.saturating_add(1).to_le_bytes();
                for i in 0..clock.obj.out_neighbors().len() {
                    let peer = clock.obj.out_neighbors()[i];
                    clock.obj.write(peer, &self.clock_payload, t)?;
                    self.stats.clock_bytes_sent += 8;
                }
            }
        }
        self.version += 1;
        self.scattered = t + 1;
        self.stats.scatters += 1;
        Ok(())
    }

    /// Notes that an update tagged `iteration` from in-neighbour number `i`
    /// was seen.
    pub fn note_data(&mut self, i: usize, iteration: u64) {
        let v = &mut self.data_seen[i];
        *v = (*v).max(iteration.saturating_add(1));
    }

    /// Notes that an update tagged `iteration` from in-neighbour number `i`
    /// was read out of its queue.
    pub fn note_read(&mut self, i: usize, iteration: u64) {
        self.note_data(i, iteration);
        self.received[i] = self.received[i].max(iteration.saturating_add(1));
    }

    /// Records every fresh update as merged in the gather of iteration `t`
    /// and marks it used.
    pub fn record_merges(&mut self, t: u64) {
        for i in 0..self.fresh.len() {
            if self.fresh[i] {
                self.stats
                    .record_merged(t.saturating_sub(self.mirror_iter[i]));
                self.fresh[i] = false;
            }
        }
    }

    /// A control-channel barrier over the whole group (bounded by the
    /// group's timeout); the time it took is recorded as a wait.
    pub fn barrier(&mut self, group: &Group) -> Result<(), VolError> {
        let w = barrier(group)?;
        self.stats.record_wait(w);
        Ok(())
    }

    /// The consistency wait at the start of a gather: under a staleness
    /// bound `s`, until every peer has scattered iteration `t - s`. Returns
    /// the time waited (zero if no wait was needed).
    pub fn wait_progress(&mut self) -> Result<Duration, VolError> {
        if self.consistency == Consistency::Bsp && self.scattered != self.iteration + 1 {
            return Err(VolError::CallOrder {
                vector: self.name.clone(),
                problem: format!(
                    "gather at iteration {} before this rank's scatter of that iteration: under BSP a gather merges every rank's update of the current iteration, so each rank scatters first (under SSP and ASYNC a gather merges whatever has arrived)",
                    self.iteration
                ),
            });
        }
        let Some(s) = self.consistency.staleness_bound() else {
            return Ok(Duration::ZERO);
        };
        let Some(need) = self.iteration.checked_sub(s) else {
            return Ok(Duration::ZERO);
        };
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut waited = false;
        for i in 0..self.senders.len() {
            if self.data_seen[i] > need {
                continue;
            }
            let p = self.senders[i];
            let seen = match self.obj.wait_visible(p, need, Duration::ZERO)? {
                Some(u) => Some(u),
                None => {
                    waited = true;
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.obj.wait_visible(p, need, left)?
                }
            };
            match seen {
                Some(u) => self.note_data(i, u.iteration),
                None => return Err(self.timeout_error(need, start)),
            }
        }
        if let Some(clock) = &mut self.clock {
            clock.drain()?;
            while clock.behind(need).next().is_some() {
                waited = true;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.timeout_error(need, start));
                }
                if let Some(u) = clock.obj.poll_timeout(&mut clock.buf, left)? {
                    clock.note(u);
                    clock.drain()?;
                }
            }
        }
        if waited {
            let w = start.elapsed();
            self.stats.record_wait(w);
            Ok(w)
        } else {
            Ok(Duration::ZERO)
        }
    }

    fn timeout_error(&mut self, need: u64, start: Instant) -> VolError {
        let mut missing: Vec<usize> = Vec::new();
        for (i, &p) in self.senders.iter().enumerate() {
            let visible = self.data_seen[i] > need
                || matches!(self.obj.wait_visible(p, need, Duration::ZERO), Ok(Some(_)));
            if !visible {
                missing.push(p);
            }
        }
        if let Some(clock) = &self.clock {
            missing.extend(clock.behind(need));
        }
        missing.sort_unstable();
        missing.dedup();
        self.stats.record_timed_out_wait(start.elapsed());
        VolError::Timeout {
            vector: self.name.clone(),
            op: match self.consistency {
                Consistency::Bsp => "bsp wait for every rank's update",
                _ => "ssp wait for the slowest rank",
            },
            iteration: self.iteration,
            waited: start.elapsed(),
            missing,
        }
    }

    /// Ends a gather: copies dstorm's loss counters into the statistics and
    /// advances the iteration.
    pub fn finish_gather(&mut self) {
        let c = self.obj.counters();
        let [torn, lapped, stale] = self.losses_before;
        self.stats.torn = torn + c.torn;
        self.stats.lapped = lapped + c.lapped;
        self.stats.stale_epoch = stale + c.stale_epoch;
        self.stats.gathers += 1;
        self.iteration += 1;
    }

    /// A typed error for options that cannot describe this vector.
    pub fn invalid(&self, problem: String) -> VolError {
        VolError::InvalidVector {
            vector: self.name.clone(),
            problem,
        }
    }

    /// A typed error for a malformed update from `sender`.
    pub fn bad_update(&self, sender: usize, problem: impl Into<String>) -> VolError {
        VolError::BadUpdate {
            vector: self.name.clone(),
            sender,
            problem: problem.into(),
        }
    }

    /// The error of a BSP read at iteration `t` that gave up waiting for
    /// `peer`'s update.
    pub fn missing_update(&self, t: u64, peer: usize) -> VolError {
        VolError::Timeout {
            vector: self.name.clone(),
            op: "bsp read of an update",
            iteration: t,
            waited: self.timeout,
            missing: vec![peer],
        }
    }

    /// Remaining time until `deadline`.
    pub fn left(deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_report_the_first_difference() {
        let o = VectorOptions::default();
        let a = describe("w", "dense", "f32", "-", 10, 0, &o);
        assert_eq!(a.first_difference(&a.clone()), None);
        let b = describe("w", "dense", "f64", "-", 11, 0, &o);
        assert_eq!(
            a.first_difference(&b),
            Some(("element type", "f32".into(), "f64".into()))
        );
        let c = describe("w", "dense", "f32", "-", 11, 0, &o);
        assert_eq!(
            a.first_difference(&c),
            Some(("length", "10".into(), "11".into()))
        );
        let d = describe(
            "w",
            "dense",
            "f32",
            "-",
            10,
            0,
            &o.clone().graph(Graph::Halton),
        );
        assert_eq!(
            a.first_difference(&d),
            Some(("graph", "all".into(), "halton".into()))
        );
        let e = describe(
            "w",
            "dense",
            "f32",
            "-",
            10,
            0,
            &o.clone().flow(FlowControl::Backpressure),
        );
        assert_eq!(a.first_difference(&e).unwrap().0, "flow control");
    }

    #[test]
    fn options_builder() {
        let o = VectorOptions::new()
            .graph(Graph::Ring)
            .consistency(Consistency::Ssp { s: 2 })
            .representation(Representation::auto())
            .flow(FlowControl::Backpressure)
            .depth(4)
            .refresh(0);
        assert_eq!(o.graph, Graph::Ring);
        assert_eq!(o.consistency, Consistency::Ssp { s: 2 });
        assert_eq!(o.depth, 4);
        assert_eq!(o.refresh, 0);
        assert_eq!(VectorOptions::default().depth, DEFAULT_DEPTH);
    }
}
