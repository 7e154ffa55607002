//! Training applications: a linear SVM trained by SGD ([`svm`]) and matrix
//! factorization by SGD ([`mf`]), both data-parallel through a narrow
//! communication seam ([`ModelSync`]).
//!
//! # Shape of a run
//!
//! Every trainer keeps its model as one flat `f32` vector and runs the same
//! loop (`run_loop`):
//!
//! 1. Each rank loads its shard of the training (and test) file: every example
//!    is read by exactly one rank.
//! 2. The ranks agree on the schedule: with `n_max` the largest shard, an
//!    epoch is `R = ceil(n_max / cb)` rounds (`R = 1` when `cb` is 0); in
//!    round `k` a rank trains on its examples `[k n / R, (k+1) n / R)` of
//!    this epoch's order, then synchronises. So every rank makes the same
//!    number of [`ModelSync::sync`] calls, a rank never trains on more than
//!    `cb` examples between two syncs, and the last round's sync is the
//!    epoch-end sync.
//! 3. Evaluations happen after `evals_per_epoch` evenly spaced rounds of each
//!    epoch, and once before training. They pass over the local training and
//!    test shards, sum the results over the ranks with
//!    [`ModelSync::allreduce_sum`] and give one [`MetricPoint`]. The training
//!    clock stops while they run.
//! 4. With a goal loss, the (interpolated) training time at which the
//!    objective first reaches it is recorded; with `stop_at_goal`, training
//!    stops there (every rank sees the same reduced objective, so all stop
//!    together).
//!
//! With `shuffle`, each rank shuffles its examples once when loading them
//! and visits blocks of [`SHUFFLE_BLOCK`] examples in a new order every
//! epoch.
//!
//! Rank 0 writes `metrics.csv` ([`metrics`]), `summary.json` ([`RunSummary`])
//! and `objective.{png,svg}` ([`plot`]) into the output directory, shows the
//! progress bar ([`progress`]) and prints the summary (one JSON line with
//! `json`, else a short line unless `quiet`).
//!
//! # Comparing with a single rank
//!
//! `--compare-single` is assembled from the pieces: run the same options
//! with [`NoSync`] (one process, its own output directory) to get the
//! single-rank [`RunOutput`]; take the goal loss from the options or from
//! that run (MALT's figures use the loss single-rank SGD reaches); run the
//! job with the goal; then on rank 0 call [`RunSummary::compare_with`] on the
//! job's summary, which fills `single_time_to_goal_s` and `speedup`, and
//! [`plot_comparison`], which draws both curves with the speedup written on
//! the plot.

use std::io;
use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::libsvm::LibsvmError;
use crate::data::ratings::RatingsError;
use crate::data::synth::SynthError;
use crate::data::DataError;

pub mod checkpoint;
pub mod cli;
mod files;
pub mod load;
pub mod metrics;
pub mod mf;
pub mod model;
pub mod plot;
mod prepare;
pub mod progress;
mod stratified;
pub mod svm;
pub mod sync;
pub mod vol_sync;

pub use metrics::{Comparison, MetricPoint, RunSummary};
pub use mf::{run_mf, MfOptions};
pub use svm::{run_svm, SvmOptions};
pub use sync::{
    InProcessGroup, InProcessSync, ModelSync, NoSync, Regroup, SyncInfo, SyncMode, SyncPoint, Udf,
};

use metrics::{MetricsWriter, TestMetric};
use progress::Progress;
use sync::{allreduce_max, allreduce_scalar};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// An option is out of range or inconsistent.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// Reading or generating data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// There is nothing to train on.
    #[error("no training examples in {0} (on any rank)")]
    NoExamples(String),
    /// Communication failed.
    #[error("rank {rank}: {what} failed: {message}")]
    Sync {
        /// The rank that saw the failure.
        rank: usize,
        /// The operation (`sync`, `allreduce`, ...).
        what: String,
        /// What went wrong.
        message: String,
    },
    /// Another rank failed while preparing shared data.
    #[error("rank {0} failed to prepare the data (see its error)")]
    PeerFailed(usize),
    /// A metrics file is malformed.
    #[error("{file}:{line}: {problem}")]
    Metrics {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A model file is not one this build can use.
    #[error("model {file}: {problem}")]
    Model {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// Drawing a plot failed.
    #[error("plot {file}: {message}")]
    Plot {
        /// The picture file.
        file: String,
        /// What went wrong.
        message: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<LibsvmError> for TrainError {
    fn from(e: LibsvmError) -> Self {
        TrainError::Data(e.into())
    }
}

impl From<RatingsError> for TrainError {
    fn from(e: RatingsError) -> Self {
        TrainError::Data(e.into())
    }
}

impl From<SynthError> for TrainError {
    fn from(e: SynthError) -> Self {
        TrainError::Data(e.into())
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The final summary (the same on every rank but for the times, which
    /// are each rank's own).
    pub summary: RunSummary,
    /// Every evaluation point, in order.
    pub points: Vec<MetricPoint>,
    /// The final flat model of this rank.
    pub model: Vec<f32>,
}

/// A model trained by SGD on local examples, as the shared loop drives it.
pub(crate) trait Learner {
    /// Number of local training examples.
    fn len(&self) -> usize;

    /// Called before each epoch (0-based).
    fn begin_epoch(&mut self, _epoch: u32) {}

    /// Trains on the local examples `order`, in that order.
    fn train(&mut self, order: &[u32]);

    /// The flat model with any pending scale factors folded in, ready to be
    /// sent or overwritten.
    fn plain_model(&mut self) -> &mut [f32];

    /// Called after the seam overwrote the flat model.
    fn model_changed(&mut self) {}

    /// Number of local sums an evaluation produces.
    fn eval_slots(&self) -> usize;

    /// Fills `out` (`eval_slots()` values) with this rank's evaluation sums.
    fn eval_local(&mut self, out: &mut [f64]);

    /// Objective and test metric from the sums over all ranks.
    fn eval_global(&self, sums: &[f64], world: usize) -> (f64, Option<f64>);

    /// After a regroup: loads part `part` of `parts` of the training (and
    /// test) data, taking over the departed ranks' examples; the model is
    /// kept.
    fn reshard(&mut self, _part: usize, _parts: usize) -> Result<(), TrainError> {
        Err(TrainError::InvalidOptions(
            "this trainer cannot take over a departed rank's data".into(),
        ))
    }

    /// What a checkpoint keeps beside the flat model (see [`checkpoint`]):
    /// the trainer's other state, after [`plain_model`](Self::plain_model).
    fn state(&mut self) -> Vec<f64> {
        Vec::new()
    }

    /// Takes back [`state`](Self::state) after the flat model was restored
    /// (and [`model_changed`](Self::model_changed) called).
    fn restore(&mut self, _state: &[f64]) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Loop settings shared by the trainers.
#[derive(Debug, Clone)]
pub(crate) struct LoopConfig {
    pub epochs: u32,
    pub cb: u64,
    pub udf: Udf,
    pub goal: Option<f64>,
    pub stop_at_goal: bool,
    pub evals_per_epoch: u32,
    pub shuffle: bool,
    pub seed: u64,
    pub quiet: bool,
    /// Write checkpoints (the app's name, where, how often).
    pub checkpoint: Option<(&'static str, checkpoint::Checkpoints)>,
    /// Continue from this checkpoint.
    pub resume: Option<checkpoint::Resumed>,
}

/// What the loop measured.
#[derive(Debug, Clone)]
pub(crate) struct LoopResult {
    pub points: Vec<MetricPoint>,
    pub epochs_done: f64,
    pub train_seconds: f64,
    pub examples: u64,
    pub time_to_goal: Option<f64>,
    pub bytes_sent: u64,
    pub syncs: u64,
    pub regroups: Vec<Regroup>,
}

/// The facts of a run that only the trainer knows, for its summary.
pub(crate) struct RunFacts {
    pub app: &'static str,
    pub metric: TestMetric,
    pub train_examples: u64,
    pub test_examples: u64,
    pub parameters: u64,
    pub lambda: f64,
    pub udf: Udf,
    pub cb: u64,
    pub goal_loss: Option<f64>,
    /// See [`RunSummary::noise_floor`].
    pub noise_floor: Option<f64>,
}

impl LoopResult {
    /// The run's summary: what the loop measured and the trainer's facts,
    /// for `ranks` ranks at the end, `wall` being when the run started.
    pub(crate) fn summary(&self, facts: RunFacts, ranks: usize, wall: Instant) -> RunSummary {
        let last = self.points.last().copied();
        let test = last.and_then(|p| p.test);
        RunSummary {
            app: facts.app.into(),
            ranks,
            epochs: self.epochs_done,
            seconds: self.train_seconds,
            wall_seconds: wall.elapsed().as_secs_f64(),
            final_loss: last.map_or(f64::NAN, |p| p.objective),
            test_error: test.filter(|_| facts.metric == TestMetric::Error),
            test_rmse: test.filter(|_| facts.metric == TestMetric::Rmse),
            noise_floor: facts.noise_floor,
            goal_loss: facts.goal_loss,
            time_to_goal_s: self.time_to_goal,
            examples: self.examples,
            examples_per_s: self.examples as f64 / self.train_seconds.max(1e-9),
            bytes_sent: self.bytes_sent,
            syncs: self.syncs,
            train_examples: facts.train_examples,
            test_examples: facts.test_examples,
            parameters: facts.parameters,
            lambda: facts.lambda,
            udf: facts.udf.name().into(),
            cb: facts.cb,
            comparison: None,
            regroups: self.regroups.clone(),
        }
    }
}

/// Rank 0's `metrics.csv` in `out` (other ranks write none).
pub(crate) fn metrics_writer(
    rank: usize,
    out: &Path,
    metric: TestMetric,
) -> Result<Option<MetricsWriter>, TrainError> {
    if rank != 0 {
        return Ok(None);
    }
    MetricsWriter::create(&out.join("metrics.csv"), metric).map(Some)
}

/// Examples visited consecutively in a shuffled epoch.
///
/// With `shuffle`, a rank shuffles its examples once when it loads them
/// (`shuffle_once`), and every epoch visits blocks of this many consecutive
/// examples in a new random order. Visiting single examples in random order
/// costs a cache miss per example, which on sparse data is most of the time
/// of an SGD step; blocks keep the order random at the scale that matters to
/// SGD while memory is read sequentially.
pub const SHUFFLE_BLOCK: usize = 256;

/// The seeded generator of a rank's one-time shuffle (a stream apart from
/// the epochs' one).
pub(crate) fn load_rng(seed: u64, rank: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1 << 32 | rank as u64);
    rng
}

/// A random permutation of `0..n`, for the one-time shuffle of the local
/// examples.
pub(crate) fn shuffle_once(n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    p.shuffle(rng);
    p
}

/// Writes into `order` the examples of `blocks` (block ids of
/// [`SHUFFLE_BLOCK`] examples), in that order.
pub(crate) fn block_order(blocks: &[u32], n: usize, order: &mut Vec<u32>) {
    order.clear();
    for &b in blocks {
        let lo = b as usize * SHUFFLE_BLOCK;
        let hi = (lo + SHUFFLE_BLOCK).min(n);
        order.extend(lo as u32..hi as u32);
    }
}

/// The agreed number of rounds per epoch.
pub(crate) fn rounds_per_epoch(n_max: u64, cb: u64) -> u64 {
    if cb == 0 || n_max == 0 {
        1
    } else {
        n_max.div_ceil(cb)
    }
}

/// Rounds (0-based) after which an epoch is evaluated.
pub(crate) fn eval_rounds(rounds: u64, evals: u32) -> Vec<u64> {
    let e = u64::from(evals.max(1));
    let mut v: Vec<u64> = (1..=e).map(|j| (j * rounds).div_ceil(e) - 1).collect();
    v.dedup();
    v
}

/// Training time: a stopwatch that can be paused.
#[derive(Debug)]
pub(crate) struct Clock {
    total: f64,
    since: Option<Instant>,
}

impl Clock {
    pub(crate) fn running() -> Self {
        Clock {
            total: 0.0,
            since: Some(Instant::now()),
        }
    }

    pub(crate) fn pause(&mut self) {
        if let Some(s) = self.since.take() {
            self.total += s.elapsed().as_secs_f64();
        }
    }

    pub(crate) fn resume(&mut self) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.total + self.since.map_or(0.0, |s| s.elapsed().as_secs_f64())
    }
}

/// Evaluates on every rank and returns the point.
fn evaluate<L: Learner>(
    learner: &mut L,
    sync: &mut dyn ModelSync,
    examples_local: u64,
    time_s: f64,
    epoch: f64,
) -> Result<MetricPoint, TrainError> {
    let slots = learner.eval_slots();
    let mut sums = vec![0.0; slots + 1];
    sums[0] = examples_local as f64;
    learner.eval_local(&mut sums[1..]);
    sync.allreduce_sum(&mut sums)?;
    let (objective, test) = learner.eval_global(&sums[1..], sync.world());
    Ok(MetricPoint {
        time_s,
        epoch,
        examples: sums[0].round() as u64,
        objective,
        test,
    })
}

/// After a regroup: the learner takes over its share of the departed
/// ranks' data. Returns the round the survivors continue from.
fn take_over<L: Learner>(
    learner: &mut L,
    sync: &mut dyn ModelSync,
    log: &mut Vec<Regroup>,
) -> Result<Option<u64>, TrainError> {
    let Some(r) = sync.take_regroup() else {
        return Ok(None);
    };
    learner.reshard(r.part, r.parts)?;
    let next = r.iteration;
    log.push(r);
    Ok(Some(next))
}

/// A visiting order for `n` examples (shuffled by blocks if asked).
fn new_order(
    n: usize,
    shuffle: bool,
    rng: &mut ChaCha8Rng,
    blocks: &mut Vec<u32>,
    order: &mut Vec<u32>,
) {
    *order = (0..n as u32).collect();
    *blocks = (0..n.div_ceil(SHUFFLE_BLOCK) as u32).collect();
    if shuffle {
        blocks.shuffle(rng);
        block_order(blocks, n, order);
    }
}

/// The training loop shared by the trainers; see the module documentation.
pub(crate) fn run_loop<L: Learner>(
    learner: &mut L,
    sync: &mut dyn ModelSync,
    cfg: &LoopConfig,
    clock: &mut Clock,
    mut metrics: Option<&mut MetricsWriter>,
) -> Result<LoopResult, TrainError> {
    let rank = sync.rank();
    let world = sync.world();
    let mut n = learner.len();
    let n_max = allreduce_max(sync, n as f64)? as u64;
    let rounds = rounds_per_epoch(n_max, cfg.cb);
    let evals = eval_rounds(rounds, cfg.evals_per_epoch);
    let communicate = world > 1;
    let mut base: Vec<f32> = if communicate && cfg.udf == Udf::Sum {
        learner.plain_model().to_vec()
    } else {
        Vec::new()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(rank as u64 + 1);
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut blocks: Vec<u32> = (0..n.div_ceil(SHUFFLE_BLOCK) as u32).collect();
    let progress = Progress::new(u64::from(cfg.epochs) * n as u64, rank, cfg.quiet);
    let mut points = Vec::new();
    let mut examples_local = 0u64;
    let mut syncs = 0u64;
    let mut time_to_goal = None;
    let mut regroups: Vec<Regroup> = Vec::new();

    // A resumed run starts where the checkpoint was taken, with the order
    // of examples the uninterrupted run would have had.
    let mut start = 0u32;
    if let Some(r) = &cfg.resume {
        let flat = learner.plain_model();
        flat.copy_from_slice(&r.model);
        learner.model_changed();
        learner.restore(&r.state)?;
        start = r.epoch.min(cfg.epochs);
        for _ in 0..start {
            if cfg.shuffle {
                blocks.shuffle(&mut rng);
            }
        }
    }
    clock.pause();
    let p = evaluate(learner, sync, 0, clock.seconds(), f64::from(start))?;
    if let Some(m) = metrics.as_deref_mut() {
        m.write(&p)?;
    }
    progress.status(0, cfg.epochs, Some(p.objective));
    points.push(p);
    clock.resume();
    take_over(learner, sync, &mut regroups)?;

    // Rounds are numbered across epochs: round g is round g % rounds of
    // epoch g / rounds, and its sync is the model vector's iteration g.
    let total = u64::from(cfg.epochs) * rounds;
    // Set when training stops at the goal, part way through an epoch.
    let mut stopped_at = None;
    let mut current: Option<u32> = None;
    let mut g = u64::from(start) * rounds;
    while g < total {
        let epoch = (g / rounds) as u32;
        let k = g % rounds;
        if current != Some(epoch) {
            current = Some(epoch);
            learner.begin_epoch(epoch);
            if cfg.shuffle {
                blocks.shuffle(&mut rng);
                block_order(&blocks, n, &mut order);
            }
        }
        let lo = (k as usize * n) / rounds as usize;
        let hi = ((k as usize + 1) * n) / rounds as usize;
        learner.train(&order[lo..hi]);
        examples_local += (hi - lo) as u64;
        progress.advance((hi - lo) as u64);
        if communicate {
            let epoch_end = k + 1 == rounds;
            let model = learner.plain_model();
            let mode = match cfg.udf {
                Udf::Avg => SyncMode::Average,
                Udf::Sum => SyncMode::SumDeltas { base: &base },
            };
            sync.sync(SyncPoint {
                model,
                mode,
                iteration: examples_local,
                epoch,
                epoch_end,
            })?;
            syncs += 1;
            learner.model_changed();
            if cfg.udf == Udf::Sum {
                base.copy_from_slice(learner.plain_model());
            }
            if let Some(next) = take_over(learner, sync, &mut regroups)? {
                n = learner.len();
                new_order(n, cfg.shuffle, &mut rng, &mut blocks, &mut order);
                // The survivors continue from the round after the last one
                // any of them completed: redo this round if it was cut
                // short, skip ahead if others were ahead. No evaluation
                // lies in between (evaluations are collective).
                if next != g + 1 {
                    g = next.clamp(g, total);
                    continue;
                }
            }
        }
        if evals.contains(&k) {
            clock.pause();
            let epochs_done = f64::from(epoch) + (k + 1) as f64 / rounds as f64;
            let p = evaluate(learner, sync, examples_local, clock.seconds(), epochs_done)?;
            if let Some(m) = metrics.as_deref_mut() {
                m.write(&p)?;
            }
            progress.status(epoch + 1, cfg.epochs, Some(p.objective));
            points.push(p);
            let mut reached = cfg.goal.is_some_and(|g| p.objective <= g);
            if cfg.goal.is_some() {
                // Ranks decide together even if their reduced objectives
                // differ in the last bits: a sum of 0s and 1s is exact.
                reached = allreduce_scalar(sync, f64::from(u8::from(reached)))? > 0.5;
            }
            if take_over(learner, sync, &mut regroups)?.is_some() {
                n = learner.len();
                new_order(n, cfg.shuffle, &mut rng, &mut blocks, &mut order);
            }
            if reached && time_to_goal.is_none() {
                time_to_goal = cfg.goal.and_then(|g| metrics::time_to_goal(&points, g));
            }
            clock.resume();
            if reached && cfg.stop_at_goal {
                stopped_at = Some(epochs_done);
                break;
            }
        }
        if let Some((app, cp)) = &cfg.checkpoint {
            if k + 1 == rounds && (epoch + 1).is_multiple_of(cp.every) {
                let state = learner.state();
                let flat = learner.plain_model().to_vec();
                let who = (sync.part().0, sync.world());
                let mut barrier = || allreduce_scalar(sync, 0.0).map(|_| ());
                checkpoint::write(cp, app, epoch + 1, who, &flat, state, &mut barrier)?;
            }
        }
        g += 1;
    }
    let epochs_done = stopped_at.unwrap_or((g.min(total) / rounds) as f64);
    clock.pause();
    progress.finish();
    let mut totals = [sync.bytes_sent() as f64];
    sync.allreduce_sum(&mut totals)?;
    take_over(learner, sync, &mut regroups)?;
    let last = points.last().copied();
    Ok(LoopResult {
        examples: last.map_or(0, |p| p.examples),
        epochs_done,
        train_seconds: clock.seconds(),
        time_to_goal,
        bytes_sent: totals[0].round() as u64,
        syncs,
        points,
        regroups,
    })
}

/// Output files of rank 0 and the summary line.
pub(crate) struct Finish<'a> {
    pub title: String,
    pub out: &'a Path,
    pub metric: TestMetric,
    pub json: bool,
    pub quiet: bool,
    pub plot: bool,
}

impl Finish<'_> {
    /// Writes `summary.json` and the plot, and prints the summary.
    pub(crate) fn write(
        &self,
        summary: &RunSummary,
        points: &[MetricPoint],
    ) -> Result<(), TrainError> {
        summary.write(&self.out.join("summary.json"))?;
        if self.plot {
            let label = format!("{} rank{}", summary.ranks, plural(summary.ranks));
            // A picture that cannot be drawn does not undo the training.
            let drawn = plot::plot_objective(
                &self.out.join("objective"),
                &plot::PlotSpec {
                    title: &self.title,
                    y_label: self.y_label(),
                    metric: self.metric,
                    main: plot::Curve {
                        label: &label,
                        points,
                    },
                    baseline: None,
                    goal: summary.goal_loss,
                    speedup: None,
                    floor: summary.noise_floor,
                },
            );
            if let Err(e) = drawn {
                tracing::warn!("{e}");
            }
        }
        if self.json {
            println!("{}", summary.to_json());
        } else if !self.quiet {
            println!("{}", summary.human());
        }
        Ok(())
    }

    fn y_label(&self) -> &'static str {
        match self.metric {
            TestMetric::Error => "objective (λ/2 |w|² + mean hinge loss)",
            TestMetric::Rmse => "training RMSE",
        }
    }
}

/// `x` with at most 4 significant digits, for titles: `1e-6`, `1.667e-5`,
/// `0.05`, `2`.
pub(crate) fn short_number(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e4).contains(&x.abs()) {
        let s = format!("{x:.3e}");
        match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        }
    } else {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Draws a multi-rank run against its single-rank run with the speedup to
/// the goal (as `--compare-single` does) into `<out>/compare.{png,svg}`,
/// after [`RunSummary::compare_with`] has filled the comparison.
pub fn plot_comparison(
    out: &Path,
    title: &str,
    y_label: &str,
    multi: (&RunSummary, &[MetricPoint]),
    single: &[MetricPoint],
) -> Result<plot::PlotFiles, TrainError> {
    let label = format!("{} rank{}", multi.0.ranks, plural(multi.0.ranks));
    let metric = if multi.0.app == "mf" {
        TestMetric::Rmse
    } else {
        TestMetric::Error
    };
    plot::plot_objective(
        &out.join("compare"),
        &plot::PlotSpec {
            title,
            y_label,
            metric,
            floor: multi.0.noise_floor,
            main: plot::Curve {
                label: &label,
                points: multi.1,
            },
            baseline: Some(plot::Curve {
                label: "1 rank",
                points: single,
            }),
            goal: multi.0.goal_loss,
            speedup: multi.0.comparison.as_ref().and_then(|c| c.speedup),
        },
    )
}

/// Creates the output directory.
pub(crate) fn create_out(out: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_rounds_and_evals() {
        assert_eq!(rounds_per_epoch(10_000, 5000), 2);
        assert_eq!(rounds_per_epoch(10_001, 5000), 3);
        assert_eq!(rounds_per_epoch(10, 0), 1);
        assert_eq!(rounds_per_epoch(0, 7), 1);
        assert_eq!(eval_rounds(10, 1), vec![9]);
        assert_eq!(eval_rounds(10, 2), vec![4, 9]);
        assert_eq!(eval_rounds(3, 5), vec![0, 1, 2]);
        assert_eq!(eval_rounds(1, 0), vec![0]);
    }

    #[test]
    fn block_order_is_a_permutation() {
        let n = 3 * SHUFFLE_BLOCK + 17;
        let mut blocks: Vec<u32> = (0..n.div_ceil(SHUFFLE_BLOCK) as u32).collect();
        let mut rng = load_rng(5, 0);
        blocks.shuffle(&mut rng);
        let mut order = Vec::new();
        block_order(&blocks, n, &mut order);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
        // Consecutive within blocks.
        let first = blocks[0] as usize * SHUFFLE_BLOCK;
        assert_eq!(order[1] as usize, first + 1);
        let p = shuffle_once(100, &mut rng);
        let mut q = p.clone();
        q.sort_unstable();
        assert_eq!(q, (0..100).collect::<Vec<u32>>());
        assert_ne!(p, q);
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(1e-6), "1e-6");
        assert_eq!(short_number(1.0 / 60_000.0), "1.667e-5");
        assert_eq!(short_number(2.5e-6), "2.5e-6");
        assert_eq!(short_number(0.05), "0.05");
        assert_eq!(short_number(2.0), "2");
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(123456.0), "1.235e5");
    }

    #[test]
    fn clock_stops_while_paused() {
        let mut c = Clock::running();
        c.pause();
        let a = c.seconds();
        let b = c.seconds();
        assert_eq!(a, b);
        c.resume();
        assert!(c.seconds() >= a);
    }
}
