//! The communication seam between a trainer and the runtime.
//!
//! A trainer keeps its whole model in one flat `f32` vector and, every `cb`
//! examples and at the end of every epoch, hands it to a [`ModelSync`]. The
//! seam merges it with the other ranks' models according to the [`Udf`] and
//! writes the result back in place. Besides the model, trainers need a few
//! global scalars (the objective over every shard, the largest feature index,
//! a calibrated learning rate to agree on): [`ModelSync::allreduce_sum`].
//!
//! # Who keeps what
//!
//! The trainer keeps the bookkeeping for `--udf sum`: it remembers the model
//! as it was right after the previous synchronisation (the *base*; the
//! initial model before the first one) and passes it in
//! [`SyncMode::SumDeltas`]. A seam implementation therefore holds no copy of
//! the model and needs no state across calls beyond its own communication
//! buffers.
//!
//! | `--udf` | [`SyncMode`]             | what the seam computes                                     |
//! |---------|--------------------------|------------------------------------------------------------|
//! | `avg`   | `Average`                | `model = mean(model_r over the ranks whose models arrived)` |
//! | `sum`   | `SumDeltas { base }`     | `model = base + Σ_r (model_r - base_r)`                    |
//!
//! With every rank starting from the same model and a bulk-synchronous
//! all-to-all exchange, every rank has the same base at every sync and both
//! rules keep the ranks' models identical. Under ASYNC or SSP, or with a
//! sparser graph, each rank merges what has arrived: for `avg` its own model
//! with the models received, for `sum` its own delta with the deltas
//! received.
//!
//! # Calls every rank makes
//!
//! The trainers call `sync` the same number of times on every rank (the
//! number of rounds per epoch is agreed first, see `Schedule`), and
//! `allreduce_sum` at the same points, so a bulk-synchronous implementation
//! can match calls by their order. Trainers skip `sync` entirely when
//! [`ModelSync::world`] is 1: merging a single model changes nothing.
//!
//! `allreduce_sum` should leave identical values on every rank (reduce, then
//! broadcast the one result). The trainers only take decisions on sums that
//! are exact whatever the order of addition (counts, flags, one non-zero
//! value among zeros), so a runtime that sums in arrival order, giving
//! results that differ in the last bits between ranks, still keeps the ranks
//! in step; only the reported metrics would differ that little.
//!
//! # Implementing it over a runtime
//!
//! A vector-exchange runtime (scatter the local vector to the graph's
//! out-neighbours, gather the received ones through a merge function)
//! implements `sync` as: for `Average`, scatter `model` and gather with an
//! averaging merge; for `SumDeltas`, compute `delta = model - base` into a
//! buffer of the seam, scatter it, gather the received deltas with a summing
//! merge into `delta`, and write `model = base + delta`. The consistency
//! model (BSP, SSP, ASYNC) decides how long `sync` waits for peers;
//! `iteration` is the rank's clock for SSP. [`InProcessGroup`] is the
//! bulk-synchronous all-to-all version of this within one process, and the
//! reference for the expected results.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::TrainError;

/// How the ranks' models are merged at a synchronisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Udf {
    /// Model averaging: every rank ends with the mean of the models.
    #[default]
    Avg,
    /// Delta summing: each rank contributes what its model moved since the
    /// previous sync, and adds the others' contributions to its own.
    Sum,
}

impl Udf {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Udf::Avg => "avg",
            Udf::Sum => "sum",
        }
    }
}

impl fmt::Display for Udf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Udf {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "avg" | "average" => Ok(Udf::Avg),
            "sum" => Ok(Udf::Sum),
            other => Err(TrainError::InvalidOptions(format!(
                "unknown udf `{other}` (expected avg or sum)"
            ))),
        }
    }
}

/// The merge a synchronisation asks for, with what it needs.
#[derive(Debug, Clone, Copy)]
pub enum SyncMode<'a> {
    /// `model = mean of the models`.
    Average,
    /// `model = base + Σ_r (model_r - base_r)`; `base` is this rank's model
    /// right after its previous sync, as long as the model.
    SumDeltas {
        /// This rank's model after the previous sync.
        base: &'a [f32],
    },
}

impl SyncMode<'_> {
    /// The [`Udf`] this mode implements.
    pub fn udf(&self) -> Udf {
        match self {
            SyncMode::Average => Udf::Avg,
            SyncMode::SumDeltas { .. } => Udf::Sum,
        }
    }
}

/// One synchronisation request.
#[derive(Debug)]
pub struct SyncPoint<'a> {
    /// This rank's model, in its plain form (no pending scale factors); the
    /// seam overwrites it with the merged model.
    pub model: &'a mut [f32],
    /// How to merge.
    pub mode: SyncMode<'a>,
    /// Examples this rank has trained on so far: the rank's clock.
    pub iteration: u64,
    /// Zero-based epoch this sync belongs to.
    pub epoch: u32,
    /// Whether this is the last sync of the epoch.
    pub epoch_end: bool,
}

/// What a synchronisation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyncInfo {
    /// Models (or deltas) of other ranks merged into this rank's model.
    pub merged: usize,
    /// Bytes this rank sent for this sync.
    pub bytes_sent: u64,
    /// Time spent waiting for peers.
    pub waited: Duration,
}

/// The group lost ranks and the survivors went on: what a trainer needs to
/// take over the departed ranks' data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Regroup {
    /// The group's epoch after the regroup.
    pub epoch: u32,
    /// This rank's share of the data from now on: part `part` of `parts`.
    pub part: usize,
    /// Number of ranks at work.
    pub parts: usize,
    /// Every rank that has left so far.
    pub dead: Vec<usize>,
    /// Synchronisations completed by the survivor furthest ahead: the
    /// survivors continue with this one.
    pub iteration: u64,
    /// When this rank learned of the failure (seconds since the Unix epoch).
    pub detected_unix_s: f64,
    /// When it was ready to train again (seconds since the Unix epoch).
    pub resumed_unix_s: f64,
}

/// The communication a trainer needs, and nothing more.
pub trait ModelSync {
    /// This rank (its number in the job as launched).
    fn rank(&self) -> usize;

    /// Number of ranks at work (fewer after a regroup).
    fn world(&self) -> usize;

    /// This rank's share of the data: (its position among the ranks at
    /// work, their number); `(rank, world)` until a regroup.
    fn part(&self) -> (usize, usize) {
        (self.rank(), self.world())
    }

    /// The regroup that happened since the last call, if any. After one,
    /// the trainer loads part [`Regroup::part`] of [`Regroup::parts`] of its
    /// data.
    fn take_regroup(&mut self) -> Option<Regroup> {
        None
    }

    /// Merges `point.model` with the other ranks' models (see [`SyncMode`])
    /// and writes the result into `point.model`.
    fn sync(&mut self, point: SyncPoint<'_>) -> Result<SyncInfo, TrainError>;

    /// Replaces every `xs[i]` by the sum of `xs[i]` over all ranks. Every
    /// rank calls it with the same length and ends with identical values.
    fn allreduce_sum(&mut self, xs: &mut [f64]) -> Result<(), TrainError>;

    /// Bytes this rank has sent for model synchronisation so far.
    fn bytes_sent(&self) -> u64;
}

/// A job of one rank: nothing to exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoSync;

impl ModelSync for NoSync {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn sync(&mut self, _point: SyncPoint<'_>) -> Result<SyncInfo, TrainError> {
        Ok(SyncInfo::default())
    }

    fn allreduce_sum(&mut self, _xs: &mut [f64]) -> Result<(), TrainError> {
        Ok(())
    }

    fn bytes_sent(&self) -> u64 {
        0
    }
}

/// Sums `value` over the ranks; every rank gets the same result.
pub fn allreduce_scalar(sync: &mut dyn ModelSync, value: f64) -> Result<f64, TrainError> {
    let mut xs = [value];
    sync.allreduce_sum(&mut xs)?;
    Ok(xs[0])
}

/// The largest `value` over the ranks, computed with sums only: each rank
/// writes its value into its own slot of a zeroed vector of `world` slots.
pub fn allreduce_max(sync: &mut dyn ModelSync, value: f64) -> Result<f64, TrainError> {
    let (me, n) = sync.part();
    let mut slots = vec![0.0; n];
    slots[me] = value;
    sync.allreduce_sum(&mut slots)?;
    Ok(slots.into_iter().fold(f64::NEG_INFINITY, f64::max))
}

/// Rank 0's `value`, on every rank.
pub fn broadcast_from_root(sync: &mut dyn ModelSync, value: f64) -> Result<f64, TrainError> {
    broadcast_from(sync, 0, value)
}

/// The `value` of the rank at position `root` (see [`ModelSync::part`]), on
/// every rank.
pub fn broadcast_from(
    sync: &mut dyn ModelSync,
    root: usize,
    value: f64,
) -> Result<f64, TrainError> {
    let mine = if sync.part().0 == root { value } else { 0.0 };
    allreduce_scalar(sync, mine)
}

/// The lowest position (see [`ModelSync::part`]) for which `mine` is true
/// on that rank, if any.
pub fn first_rank_where(sync: &mut dyn ModelSync, mine: bool) -> Result<Option<usize>, TrainError> {
    let (me, n) = sync.part();
    let mut slots = vec![0.0; n];
    if mine {
        slots[me] = 1.0;
    }
    sync.allreduce_sum(&mut slots)?;
    Ok(slots.iter().position(|&s| s > 0.0))
}

/// Ranks of one process that synchronise through shared memory: a
/// bulk-synchronous all-to-all reference implementation of [`ModelSync`],
/// used to run data-parallel training inside one process (one thread per
/// rank) and to test the trainers' side of the seam.
///
/// Every collective call waits for all ranks; a wait longer than the group's
/// timeout is a [`TrainError::Sync`]. `bytes_sent` counts what an all-to-all
/// exchange of the model would send: `(world - 1) * 4 * len` per sync.
#[derive(Debug, Clone)]
pub struct InProcessGroup {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    world: usize,
    timeout: Duration,
    state: Mutex<Collective>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Collective {
    generation: u64,
    arrived: usize,
    acc: Vec<f64>,
    result: Vec<f64>,
    failed: Option<String>,
}

impl InProcessGroup {
    /// A group of `world` ranks whose collective calls give up after
    /// `timeout`.
    pub fn new(world: usize, timeout: Duration) -> Result<Self, TrainError> {
        if world == 0 {
            return Err(TrainError::InvalidOptions(
                "a group needs at least one rank".into(),
            ));
        }
        Ok(InProcessGroup {
            shared: Arc::new(Shared {
                world,
                timeout,
                state: Mutex::new(Collective::default()),
                changed: Condvar::new(),
            }),
        })
    }

    /// The seam of rank `rank`; each rank's seam goes to its own thread.
    pub fn member(&self, rank: usize) -> Result<InProcessSync, TrainError> {
        if rank >= self.shared.world {
            return Err(TrainError::InvalidOptions(format!(
                "rank {rank} is outside a group of {}",
                self.shared.world
            )));
        }
        Ok(InProcessSync {
            shared: Arc::clone(&self.shared),
            rank,
            bytes_sent: 0,
            scratch: Vec::new(),
        })
    }
}

/// One rank of an [`InProcessGroup`].
#[derive(Debug)]
pub struct InProcessSync {
    shared: Arc<Shared>,
    rank: usize,
    bytes_sent: u64,
    scratch: Vec<f64>,
}

impl InProcessSync {
    /// Sums `xs` over the group; returns the time spent waiting.
    fn collective(&self, xs: &mut [f64], what: &str) -> Result<Duration, TrainError> {
        let sh = &*self.shared;
        let fail = |msg: String| TrainError::Sync {
            rank: self.rank,
            what: what.to_string(),
            message: msg,
        };
        let start = Instant::now();
        let deadline = start + sh.timeout;
        let mut st = sh
            .state
            .lock()
            .map_err(|_| fail("a rank panicked inside a collective call".into()))?;
        if let Some(msg) = &st.failed {
            return Err(fail(msg.clone()));
        }
        if st.arrived == 0 {
            st.acc.clear();
            st.acc.resize(xs.len(), 0.0);
        } else if st.acc.len() != xs.len() {
            let msg = format!(
                "rank {} contributed {} values where the others contributed {}",
                self.rank,
                xs.len(),
                st.acc.len()
            );
            st.failed = Some(msg.clone());
            sh.changed.notify_all();
            return Err(fail(msg));
        }
        for (a, x) in st.acc.iter_mut().zip(xs.iter()) {
            *a += *x;
        }
        st.arrived += 1;
        let generation = st.generation;
        if st.arrived == sh.world {
            st.result = std::mem::take(&mut st.acc);
            st.arrived = 0;
            st.generation += 1;
            sh.changed.notify_all();
        } else {
            while st.generation == generation {
                if let Some(msg) = &st.failed {
                    return Err(fail(msg.clone()));
                }
                let now = Instant::now();
                if now >= deadline {
                    let msg = format!(
                        "timed out after {} waiting for {} of {} ranks",
                        vol::error::Seconds(sh.timeout),
                        sh.world - st.arrived,
                        sh.world
                    );
                    st.failed = Some(msg.clone());
                    sh.changed.notify_all();
                    return Err(fail(msg));
                }
                st = sh
                    .changed
                    .wait_timeout(st, deadline - now)
                    .map_err(|_| fail("a rank panicked inside a collective call".into()))?
                    .0;
            }
        }
        xs.copy_from_slice(&st.result);
        Ok(start.elapsed())
    }
}

impl ModelSync for InProcessSync {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.shared.world
    }

    fn sync(&mut self, point: SyncPoint<'_>) -> Result<SyncInfo, TrainError> {
        let world = self.shared.world;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match point.mode {
            SyncMode::Average => buf.extend(point.model.iter().map(|&x| f64::from(x))),
            SyncMode::SumDeltas { base } => {
                if base.len() != point.model.len() {
                    return Err(TrainError::Sync {
                        rank: self.rank,
                        what: "sync".into(),
                        message: format!(
                            "base has {} values, the model {}",
                            base.len(),
                            point.model.len()
                        ),
                    });
                }
                buf.extend(
                    point
                        .model
                        .iter()
                        .zip(base)
                        .map(|(&m, &b)| f64::from(m) - f64::from(b)),
                );
            }
        }
        let waited = self.collective(&mut buf, "sync")?;
        match point.mode {
            SyncMode::Average => {
                let inv = 1.0 / world as f64;
                for (m, s) in point.model.iter_mut().zip(&buf) {
                    *m = (s * inv) as f32;
                }
            }
            SyncMode::SumDeltas { base } => {
                for ((m, s), &b) in point.model.iter_mut().zip(&buf).zip(base) {
                    *m = (f64::from(b) + s) as f32;
                }
            }
        }
        self.scratch = buf;
        let bytes = (world as u64 - 1) * 4 * point.model.len() as u64;
        self.bytes_sent += bytes;
        Ok(SyncInfo {
            merged: world - 1,
            bytes_sent: bytes,
            waited,
        })
    }

    fn allreduce_sum(&mut self, xs: &mut [f64]) -> Result<(), TrainError> {
        self.collective(xs, "allreduce").map(|_| ())
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn run_group<T: Send + 'static>(
        world: usize,
        f: impl Fn(InProcessSync) -> T + Send + Sync + Clone + 'static,
    ) -> Vec<T> {
        let group = InProcessGroup::new(world, Duration::from_secs(20)).unwrap();
        let handles: Vec<_> = (0..world)
            .map(|r| {
                let member = group.member(r).unwrap();
                let f = f.clone();
                thread::spawn(move || f(member))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn udf_parses_and_prints() {
        assert_eq!("avg".parse::<Udf>().unwrap(), Udf::Avg);
        assert_eq!("SUM".parse::<Udf>().unwrap(), Udf::Sum);
        let err = "max".parse::<Udf>().unwrap_err();
        assert!(err.to_string().contains("max"), "{err}");
        assert_eq!(Udf::Sum.to_string(), "sum");
    }

    #[test]
    fn no_sync_leaves_everything_alone() {
        let mut s = NoSync;
        let mut model = vec![1.0f32, 2.0];
        let info = s
            .sync(SyncPoint {
                model: &mut model,
                mode: SyncMode::Average,
                iteration: 3,
                epoch: 0,
                epoch_end: false,
            })
            .unwrap();
        assert_eq!(model, vec![1.0, 2.0]);
        assert_eq!(info, SyncInfo::default());
        let mut xs = [1.5, -2.0];
        s.allreduce_sum(&mut xs).unwrap();
        assert_eq!(xs, [1.5, -2.0]);
        assert_eq!(allreduce_max(&mut s, 7.0).unwrap(), 7.0);
        assert_eq!(broadcast_from_root(&mut s, 4.0).unwrap(), 4.0);
        assert_eq!(s.bytes_sent(), 0);
    }

    #[test]
    fn in_process_group_averages_sums_and_reduces() {
        let out = run_group(3, |mut s| {
            let r = s.rank() as f32;
            // Average: ranks hold r, r+1.
            let mut model = vec![r, r + 1.0];
            s.sync(SyncPoint {
                model: &mut model,
                mode: SyncMode::Average,
                iteration: 1,
                epoch: 0,
                epoch_end: false,
            })
            .unwrap();
            // Sum of deltas: common base 10, each rank moved by r+1.
            let base = vec![10.0f32; 2];
            let mut moved = vec![10.0 + r + 1.0; 2];
            s.sync(SyncPoint {
                model: &mut moved,
                mode: SyncMode::SumDeltas { base: &base },
                iteration: 2,
                epoch: 0,
                epoch_end: true,
            })
            .unwrap();
            let max = allreduce_max(&mut s, f64::from(r) * 2.0).unwrap();
            let root = broadcast_from_root(&mut s, 100.0 + f64::from(r)).unwrap();
            let from2 = broadcast_from(&mut s, 2, 100.0 + f64::from(r)).unwrap();
            let not_root = s.rank() >= 1;
            let first = first_rank_where(&mut s, not_root).unwrap();
            let none = first_rank_where(&mut s, false).unwrap();
            (
                model,
                moved,
                max,
                (root, from2),
                (first, none),
                s.bytes_sent(),
            )
        });
        for (model, moved, max, (root, from2), (first, none), bytes) in out {
            assert_eq!(from2, 102.0);
            assert_eq!(first, Some(1));
            assert_eq!(none, None);
            assert_eq!(model, vec![1.0, 2.0]);
            assert_eq!(moved, vec![16.0, 16.0]);
            assert_eq!(max, 4.0);
            assert_eq!(root, 100.0);
            assert_eq!(bytes, 2 * (2 * 4 * 2));
        }
    }

    #[test]
    fn mismatched_lengths_fail_every_rank() {
        let out = run_group(2, |mut s| {
            let mut xs = vec![0.0; 1 + s.rank()];
            s.allreduce_sum(&mut xs).is_err()
        });
        assert_eq!(out, vec![true, true]);
    }

    #[test]
    fn a_missing_rank_times_out() {
        let group = InProcessGroup::new(2, Duration::from_millis(50)).unwrap();
        let mut s = group.member(0).unwrap();
        let err = s.allreduce_sum(&mut [1.0]).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(group.member(2).is_err());
        assert!(InProcessGroup::new(0, Duration::from_secs(1)).is_err());
    }
}
