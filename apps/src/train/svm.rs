//! Linear SVM trained by stochastic gradient descent, the way Bottou's
//! `svmsgd` does it.
//!
//! # What is minimised
//!
//! ```text
//! P(w, b) = λ/2 ||w||² + (1/n) Σ_i max(0, 1 - y_i (w·x_i + b))
//! ```
//!
//! over all training examples of all ranks; the bias `b` is not regularised.
//! This is the training objective reported in `metrics.csv`. The test error
//! is the fraction of test examples with `sign(w·x + b) != y` (a score of 0
//! counts as -1).
//!
//! # The SGD step
//!
//! For an example `(x, y)` at step `t` (the examples trained on so far;
//! see below for several ranks):
//!
//! ```text
//! s  = w·x + b
//! w ← (1 - η_t λ) w                 (regularisation)
//! w ← w + η_t y x    if y s < 1     (hinge subgradient)
//! b ← b + ρ η_t y    if y s < 1     (ρ: the bias's rate, below)
//! ```
//!
//! - **Learning rate** `η_t = 1 / (λ (t + t0))`. `t0 = 1 / (λ η0)`, where
//!   `η0` (`--eta0`, else calibrated) is found on a sample of 1,000
//!   training examples (the first of rank 0's shard after the shuffle, or,
//!   when the shard is smaller, of the whole file as one rank would shuffle
//!   it, so that `η0` does not depend on the number of ranks; the value is
//!   sent to every rank): starting from `η = 1`, try
//!   `η` multiplied or divided by 2, training one pass over the sample from a
//!   zero model with the constant `η` and measuring `P` on the sample, and
//!   move in the direction in which `P` decreases until it stops decreasing;
//!   keep the smaller `η` of the best pair.
//! - **Scaled weights**: `w = wscale · v`. The regularisation step only
//!   multiplies `wscale`, so a step costs O(non-zeros of x). When `wscale`
//!   falls below 1e-5 it is folded into `v` (O(d), rare: `wscale` decays
//!   like `t0 / t`).
//! - **Bias**: the bias learns at `ρ = clamp(0.01 · mean ||x||², 0.01, 1)`
//!   times the weights' rate ([`bias_rate`], over all ranks' training
//!   rows), starting at the mean label ([`bias_start`]: -0.8 with 10%
//!   positives). For rows of unit norm (text, the built-in data) `ρ` is
//!   `svmsgd`'s 1% ([`BIAS_RATE`]): a full-rate, unregularised bias would
//!   jump by `η_t` on every margin violation, as far as the weights move
//!   the score. Dense rows move the score by `η_t ||x||²` (64 on
//!   standardised 64-feature rows), so a 1% bias from 0 barely moved and
//!   an uneven class balance was never learnt (objective 0.36 where 0.050
//!   is reached now, on the digits-shaped sets of `malt data
//!   synth-dense`). `η0` is calibrated with `svmsgd`'s bias (1%, from 0),
//!   as before, on every data set.
//! - **Averaged SGD** (`averaged`): the reported model is the running
//!   average `a` of the iterates, from the start of the second epoch on
//!   (before that, and in one-epoch runs, `a = w`): `a ← (1 - μ) a + μ w`
//!   with `μ = 1/k` at the k-th averaged step. The rate becomes
//!   `η_t = η0 / (1 + λ η0 t)^0.75` (the slower decay averaging wants). `a` is
//!   kept as `ca · u + cb · v`, so that an averaged step also costs
//!   O(non-zeros); the factors are folded in when `ca` gets small.
//!
//! # The flat model
//!
//! `[w_0 .. w_{d-1}, b]`, and with `averaged` also `[a_0 .. a_{d-1}, a_b]`
//! after it, where `d` is the largest feature index of the training data
//! over all ranks plus one. Before a sync the scale factors are folded in, so
//! the seam sees plain weights; model averaging then averages both the
//! iterates and the averages. Test features with an index `>= d` have weight
//! 0.
//!
//! The learning rate's clock `t` counts every rank's examples (`t` advances
//! by the number of ranks `N` per example), so `η_t` is the rate sequential
//! SGD would use after as many examples. With `--udf sum` the sum of the
//! ranks' deltas over a round then approximates one SGD pass over all their
//! examples, up to the staleness of the other ranks' updates within a round,
//! which large `cb` or early large rates turn into overshoot. With `--udf avg`
//! each rank steps with `N η_t` (capped at `0.5 / λ`): the mean of the
//! models divides each rank's step by `N`, so without the factor the merged
//! model would move only as far per epoch as `n / N` sequential steps while
//! `t < t0` (the whole run, on small data sets). The scaled step is capped
//! at `max(η'_t, 1 / mean ||x||²)`, where `η'_t` is the rate of the rank's
//! own clock (`t / N`, the rate before the scaling): a step that moves a
//! row's own margin by more than 1 overshoots, and where the calibrated
//! `η0` is already that large (rows of unit norm, `η0 = 2`) N-fold steps
//! made 4 ranks end 13% above one on 100,000 rows. Asymptotically both are
//! `1 / (λ t)` for the rank's own count `t`, as before (with `--averaged`,
//! `N^{1/4}` times that). The scaling assumes that a merge averages all N
//! models (graph `all`, BSP); sparser graphs and ASYNC/SSP average fewer.
//! A rank trains on
//! at most `1/32` of its shard between two syncs ([`sync_cadence`]), so
//! that the ranks' models, each stepping `N` times as far, stay close to
//! the path of sequential SGD. Together, on 1,300-row sets at 20 epochs,
//! 2 and 4 ranks end within 1% of one rank's objective at the default λ
//! (mean of 5 seeds; `tests/convergence.rs`), where they ended 14% and 54%
//! above it.
//!
//! # Synthetic data
//!
//! Without `data`, [`run_svm`] generates [`SynthSvmData`] (by default
//! 400,000 training and 40,000 test examples of
//! [`synth_sparse`]: 50,000 features, 50
//! non-zeros per row on average, 5% label noise, seed 1; about 300 MB of
//! text) into `<out>/synth-sparse/`, reused by later runs with the same
//! options.

use std::path::Path;
use std::time::Instant;

use crate::data::libsvm::{Feature, SparseDataset};
use crate::data::synth::synth_sparse;

use super::files::DataFiles;
use super::metrics::TestMetric;
use super::sync::{allreduce_max, allreduce_scalar, broadcast_from, first_rank_where, ModelSync};
use super::{
    create_out, load_rng, metrics_writer, run_loop, short_number, shuffle_once, Clock, Finish,
    Learner, LoopConfig, RunFacts, RunOutput, TrainError, Udf,
};

mod calibration;
mod file;
mod options;
use calibration::calibrate;
pub use file::predict_svm;
pub use options::{lambda_for_c, SvmOptions, SynthSvmData};

/// The bias's fraction of the weights' learning rate for rows of unit
/// norm (svmsgd's), and its least (see [`bias_rate`]).
pub const BIAS_RATE: f64 = 0.01;
/// The most the bias's rate grows to (see [`bias_rate`]): the weights'.
pub const MAX_BIAS_RATE: f64 = 1.0;

/// The bias's rate for rows of mean squared norm `mean_sq`: [`BIAS_RATE`]
/// for rows of unit norm (svmsgd's setting, made for such rows), growing
/// with the rows' squared norm up to [`MAX_BIAS_RATE`]. A step moves a
/// row's score by `η ||x||²` through the weights and by `rate · η` through
/// the bias; with a fixed 1% the bias of dense rows (`||x||²` in the tens)
/// hardly moves, and with it the calibrated `η0` shrinks until the model
/// cannot learn an uneven class balance in any number of epochs. The
/// learning rate is still calibrated with svmsgd's bias (1%, from 0):
/// a fast bias in the one-pass calibration favours rates that the weights
/// of long rows cannot follow (Fashion-MNIST, `||x||²` about 100, ended at
/// 6.4% test error; calibrated as svmsgd does, 4.1% as before).
pub fn bias_rate(mean_sq: f64) -> f64 {
    if mean_sq.is_finite() {
        (BIAS_RATE * mean_sq).clamp(BIAS_RATE, MAX_BIAS_RATE)
    } else {
        BIAS_RATE
    }
}

/// Where the bias starts, for `positives` of `n` labels +1: the mean
/// label `(2 positives - n) / n`, the constant of least squared error. On
/// an uneven balance it lies near the best constant under the hinge loss
/// (-1 below half positives: -0.8 at 10%), so the bias need not first
/// travel there at its slow rate; on even classes it is 0, where the
/// hinge's own best constant, a jump to ±1, would send a slow bias the
/// wrong way.
pub fn bias_start(positives: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (2.0 * positives as f64 - n as f64) / n as f64
}

/// How the bias learns: its fraction of the weights' rate and where it
/// starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bias {
    pub rate: f64,
    pub start: f64,
}

impl Bias {
    /// svmsgd's bias: 1% of the rate, from 0. The learning rate is
    /// calibrated with it.
    pub(crate) const SVMSGD: Bias = Bias {
        rate: BIAS_RATE,
        start: 0.0,
    };
}

/// Fewest synchronisations per epoch of a job of several ranks (see
/// [`sync_cadence`]).
pub const MIN_SYNCS_PER_EPOCH: u64 = 32;

/// The examples a rank trains on between two synchronisations: `cb`, but
/// at most `1/32` of the largest shard `n_max` when several ranks merge
/// their models ([`MIN_SYNCS_PER_EPOCH`]). Each rank steps `N` times as far
/// as sequential SGD would (see the module documentation), so a long round
/// lets the ranks' models drift apart along paths sequential SGD would not
/// take; on a small data set the default `cb` would be a whole epoch. `cb`
/// 0 (only at epoch ends) and one rank are left alone.
pub fn sync_cadence(cb: u64, n_max: u64, world: usize) -> u64 {
    if world <= 1 || cb == 0 {
        return cb;
    }
    cb.min((n_max / MIN_SYNCS_PER_EPOCH).max(1))
}

/// The last value of an svm checkpoint's state: its clock `t` counts every
/// rank's examples (states of 5 values, written before, counted one
/// rank's).
const CLOCK_OF_ALL_RANKS: f64 = 2.0;

/// `wscale` is folded into the weights when it falls below this.
const WSCALE_MIN: f64 = 1e-5;
/// The averaged model's factors are folded in when `ca` falls below this.
const AVG_SCALE_MIN: f64 = 1e-2;
/// Examples in the learning-rate calibration sample.
pub const CALIBRATION_SAMPLE: usize = 1000;
/// Most halvings or doublings the calibration tries.
const CALIBRATION_STEPS: usize = 40;

/// `Σ w[i] x_i` over the features; every index must be below `w.len()`.
#[inline]
fn dot(w: &[f32], x: &[Feature]) -> f64 {
    let mut s = 0.0f64;
    for f in x {
        s += f64::from(w[f.index as usize] * f.value);
    }
    s
}

/// `Σ w[i] x_i`, ignoring features beyond `w`.
fn dot_checked(w: &[f32], x: &[Feature]) -> f64 {
    x.iter()
        .filter_map(|f| w.get(f.index as usize).map(|&wi| f64::from(wi * f.value)))
        .sum()
}

#[inline]
fn axpy(w: &mut [f32], a: f32, x: &[Feature]) {
    for f in x {
        w[f.index as usize] += a * f.value;
    }
}

/// The learner's state; see the module documentation for the layout.
#[derive(Debug, Clone)]
// The weights, their scale factors and the averaged model move together
// in every step: its fields are one state.
struct SvmState {
    d: usize,
    lambda: f64,
    /// The bias's fraction of the weights' rate; `None`: no bias.
    bias_rate: Option<f64>,
    averaged: bool,
    m: Vec<f32>,
    wscale: f64,
    b: f64,
    avg_on: bool,
    avg_steps: u64,
    ca: f64,
    cb: f64,
    ab: f64,
    /// The learning rate's clock: examples trained on, counted
    /// `clock_step` at a time.
    t: u64,
    clock_step: u64,
    /// Factor of every step's rate: the number of ranks with `--udf avg`
    /// (the merge divides each rank's step by it), else 1.
    rate_scale: f64,
    /// The most a scaled step may be unless the rank's own-clock rate is
    /// larger: `1 / mean ||x||²` (see the module documentation).
    scaled_max: f64,
    eta0: f64,
}

impl SvmState {
    fn new(d: usize, lambda: f64, bias: Option<Bias>, averaged: bool, eta0: f64) -> Self {
        let len = if averaged { 2 * (d + 1) } else { d + 1 };
        SvmState {
            d,
            lambda,
            bias_rate: bias.map(|b| b.rate),
            averaged,
            m: vec![0.0; len],
            wscale: 1.0,
            b: bias.map_or(0.0, |b| b.start),
            avg_on: false,
            avg_steps: 0,
            ca: 1.0,
            cb: 0.0,
            ab: 0.0,
            t: 0,
            clock_step: 1,
            rate_scale: 1.0,
            scaled_max: f64::INFINITY,
            eta0,
        }
    }

    /// The learning rate's clock counts the examples of all `world` ranks
    /// (`t` advances by `world` per local example), so that `η_t` is the
    /// rate sequential SGD would use after as many examples. With model
    /// averaging each rank's step is also `world` times that rate: the mean
    /// of the models divides every rank's step by `world`, so the merged
    /// model then moves as far per example as sequential SGD (the linear
    /// scaling of a mini-batch of `world` examples), in the constant-rate
    /// phase `t < t0` as well as later. Asymptotically (`t ≫ t0`) this is
    /// the old per-rank rate `1 / (λ t_rank)`.
    fn set_world(&mut self, world: usize, udf: Udf) {
        self.clock_step = world as u64;
        self.rate_scale = if udf == Udf::Avg { world as f64 } else { 1.0 };
    }

    /// One SGD step with rate `eta`.
    #[inline]
    fn step(&mut self, x: &[Feature], y: f64, eta: f64) {
        let d = self.d;
        let (v, rest) = self.m.split_at_mut(d);
        let s = self.wscale * dot(v, x) + self.b;
        self.wscale *= 1.0 - eta * self.lambda;
        if y * s < 1.0 {
            let coef = eta * y / self.wscale;
            axpy(v, coef as f32, x);
            if self.avg_on {
                let u = &mut rest[1..=d];
                axpy(u, (-self.cb * coef / self.ca) as f32, x);
            }
            if let Some(rate) = self.bias_rate {
                self.b += rate * eta * y;
            }
        }
        if self.wscale < WSCALE_MIN {
            self.fold_w();
        }
        if self.avg_on {
            self.avg_steps += 1;
            let mu = 1.0 / self.avg_steps as f64;
            self.ca *= 1.0 - mu;
            self.cb = (1.0 - mu) * self.cb + mu * self.wscale;
            self.ab = (1.0 - mu) * self.ab + mu * self.b;
            if self.ca < AVG_SCALE_MIN {
                self.fold_avg();
            }
        }
        self.t += self.clock_step;
    }

    /// `v ← wscale v`, `wscale ← 1` (the averaged form stays the same).
    fn fold_w(&mut self) {
        if self.wscale == 1.0 {
            return;
        }
        let s = self.wscale as f32;
        for x in &mut self.m[..self.d] {
            *x *= s;
        }
        self.cb /= self.wscale;
        self.wscale = 1.0;
    }

    /// `u ← ca u + cb v`, `ca ← 1`, `cb ← 0`.
    fn fold_avg(&mut self) {
        if !self.avg_on || (self.ca == 1.0 && self.cb == 0.0) {
            return;
        }
        let d = self.d;
        let (v, rest) = self.m.split_at_mut(d);
        let (ca, cb) = (self.ca as f32, self.cb as f32);
        for (u, &w) in rest[1..=d].iter_mut().zip(v.iter()) {
            *u = ca * *u + cb * w;
        }
        self.ca = 1.0;
        self.cb = 0.0;
    }

    /// Starts averaging: `a = w`.
    fn start_averaging(&mut self) {
        if !self.averaged || self.avg_on {
            return;
        }
        let d = self.d;
        self.m[d + 1..=2 * d].fill(0.0);
        self.ca = 1.0;
        self.cb = self.wscale;
        self.ab = self.b;
        self.avg_on = true;
        self.avg_steps = 1;
    }

    /// Folds every factor in and writes the scalars into the flat model.
    fn plain(&mut self) -> &mut [f32] {
        self.fold_w();
        self.fold_avg();
        let d = self.d;
        self.m[d] = self.b as f32;
        if self.averaged {
            if !self.avg_on {
                self.ab = self.b;
            }
            self.m[2 * d + 1] = self.ab as f32;
        }
        &mut self.m
    }

    /// Reads the scalars back after the flat model was overwritten.
    fn reload(&mut self) {
        let d = self.d;
        self.wscale = 1.0;
        self.b = f64::from(self.m[d]);
        if self.averaged {
            self.ca = 1.0;
            self.cb = 0.0;
            self.ab = f64::from(self.m[2 * d + 1]);
        }
    }

    /// The model evaluated: the average once averaging runs, else `w`.
    /// Call after [`SvmState::plain`].
    fn eval_model(&self) -> (&[f32], f64) {
        let d = self.d;
        if self.avg_on {
            (&self.m[d + 1..=2 * d], self.ab)
        } else {
            (&self.m[..d], self.b)
        }
    }
}

fn hinge(y: f64, s: f64) -> f64 {
    (1.0 - y * s).max(0.0)
}

struct SvmLearner<'a> {
    st: SvmState,
    train: SparseDataset,
    labels: Vec<f64>,
    test: Option<(SparseDataset, Vec<f64>)>,
    /// Where the shards come from, to take over departed ranks' data.
    opts: &'a SvmOptions,
    files: DataFiles,
    rank: usize,
}

impl Learner for SvmLearner<'_> {
    fn len(&self) -> usize {
        self.train.len()
    }

    fn begin_epoch(&mut self, epoch: u32) {
        if epoch == 1 {
            self.st.start_averaging();
        }
    }

    fn train(&mut self, order: &[u32]) {
        // Two loops, so that the plain rate never pays for the power of the
        // averaged one.
        let (lambda, eta0) = (self.st.lambda, self.st.eta0);
        let (scale, cap, smax) = (self.st.rate_scale, 0.5 / lambda, self.st.scaled_max);
        let ranks = self.st.clock_step as f64;
        if self.st.averaged {
            for &i in order {
                let t = self.st.t as f64;
                let global = eta0 / (1.0 + lambda * eta0 * t).powf(0.75);
                // One rank: the same rate, without a second power.
                let own = if ranks > 1.0 {
                    eta0 / (1.0 + lambda * eta0 * t / ranks).powf(0.75)
                } else {
                    global
                };
                let eta = (scale * global).min(own.max(smax)).min(cap);
                let i = i as usize;
                self.st.step(self.train.features(i), self.labels[i], eta);
            }
        } else {
            for &i in order {
                // = 1 / (λ (t + t0)) with t0 = 1 / (λ η0).
                let t = self.st.t as f64;
                let global = eta0 / (1.0 + lambda * eta0 * t);
                let own = if ranks > 1.0 {
                    eta0 / (1.0 + lambda * eta0 * t / ranks)
                } else {
                    global
                };
                let eta = (scale * global).min(own.max(smax)).min(cap);
                let i = i as usize;
                self.st.step(self.train.features(i), self.labels[i], eta);
            }
        }
    }

    fn plain_model(&mut self) -> &mut [f32] {
        self.st.plain()
    }

    fn model_changed(&mut self) {
        self.st.reload();
    }

    fn state(&mut self) -> Vec<f64> {
        let st = &self.st;
        vec![
            st.t as f64,
            f64::from(u8::from(st.avg_on)),
            st.avg_steps as f64,
            st.b,
            st.ab,
            CLOCK_OF_ALL_RANKS,
        ]
    }

    fn restore(&mut self, state: &[f64]) -> Result<(), TrainError> {
        let [t, avg_on, avg_steps, b, ab, clock] = state else {
            let why = if state.len() == 5 {
                "it was written before the learning rate's clock counted every rank's \
                 examples (2026-12-07): resume it with the malt that wrote it, or start again"
                    .to_string()
            } else {
                format!("it has {} state values; an svm run keeps 6", state.len())
            };
            return Err(TrainError::InvalidOptions(format!(
                "this svm checkpoint cannot be resumed: {why}"
            )));
        };
        if *clock != CLOCK_OF_ALL_RANKS {
            return Err(TrainError::InvalidOptions(format!(
                "this svm checkpoint cannot be resumed: unknown clock {clock}"
            )));
        }
        let st = &mut self.st;
        st.t = *t as u64;
        st.avg_on = *avg_on != 0.0 && st.averaged;
        st.avg_steps = *avg_steps as u64;
        st.b = *b;
        st.ab = *ab;
        Ok(())
    }

    fn eval_slots(&self) -> usize {
        5
    }

    fn reshard(&mut self, part: usize, parts: usize) -> Result<(), TrainError> {
        let ((train, labels), test) = load(&self.files, part, parts, self.opts, self.rank)?;
        self.test = test;
        self.train = train;
        self.labels = labels;
        self.st.set_world(parts, self.opts.udf);
        Ok(())
    }

    fn eval_local(&mut self, out: &mut [f64]) {
        self.st.plain();
        let (w, b) = self.st.eval_model();
        let mut loss = 0.0;
        for (i, &y) in self.labels.iter().enumerate() {
            loss += hinge(y, dot(w, self.train.features(i)) + b);
        }
        let norm: f64 = w.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        out[0] = loss;
        out[1] = self.labels.len() as f64;
        out[2] = 0.5 * self.st.lambda * norm;
        if let Some((test, labels)) = &self.test {
            let mut errors = 0u64;
            for (i, &y) in labels.iter().enumerate() {
                let s = dot_checked(w, test.features(i)) + b;
                let predicted = if s > 0.0 { 1.0 } else { -1.0 };
                if predicted != y {
                    errors += 1;
                }
            }
            out[3] = errors as f64;
            out[4] = labels.len() as f64;
        }
    }

    fn eval_global(&self, sums: &[f64], world: usize) -> (f64, Option<f64>) {
        let objective = sums[2] / world as f64 + sums[0] / sums[1].max(1.0);
        let test = (sums[4] > 0.0).then(|| sums[3] / sums[4]);
        (objective, test)
    }
}

/// Examples and their labels, mapped as the options say.
type Examples = (SparseDataset, Vec<f64>);

/// Part `part` of `parts` of the training and test examples, with labels
/// mapped; the training part shuffled once if the options say so.
fn load(
    files: &DataFiles,
    part: usize,
    parts: usize,
    opts: &SvmOptions,
    rank: usize,
) -> Result<(Examples, Option<Examples>), TrainError> {
    let read = |path: &Path, part, parts| -> Result<Examples, TrainError> {
        let data = SparseDataset::load_shard_limited(path, part, parts, opts.max_features)?;
        let labels = data.labels().iter().map(|&l| opts.label(l)).collect();
        Ok((data, labels))
    };
    let shuffle = |(train, labels): Examples| {
        if !opts.shuffle {
            return (train, labels);
        }
        let perm = shuffle_once(train.len(), &mut load_rng(opts.seed, rank));
        let mut shuffled = SparseDataset::new();
        let mut shuffled_labels = Vec::with_capacity(labels.len());
        for &i in &perm {
            shuffled.push(train.label(i as usize), train.features(i as usize));
            shuffled_labels.push(labels[i as usize]);
        }
        (shuffled, shuffled_labels)
    };
    files.load(part, parts, read, shuffle)
}

/// Trains a linear SVM on this rank's shard, synchronising through `sync`;
/// see the module documentation. Every rank of a job calls it with the same
/// options. Rank 0 writes `metrics.csv`, `summary.json` and (with `plot`)
/// `objective.{png,svg}` into `opts.out`.
pub fn run_svm(opts: &SvmOptions, sync: &mut dyn ModelSync) -> Result<RunOutput, TrainError> {
    opts.validate()?;
    let wall = Instant::now();
    let rank = sync.rank();
    create_out(&opts.out)?;
    let synth = &opts.synth;
    let gen = synth.generator();
    let files = DataFiles::given_or_synthetic(
        opts.data.as_ref(),
        opts.test.as_ref(),
        sync,
        &opts.out.join("synth-sparse"),
        "libsvm",
        synth,
        synth.rows,
        |w| Ok(synth_sparse(&gen, w)?),
    )?;
    let (part, parts) = sync.part();
    let ((train, labels), test) = load(&files, part, parts, opts, rank)?;
    let n_train = allreduce_scalar(sync, train.len() as f64)?.round() as u64;
    if n_train == 0 {
        return Err(TrainError::NoExamples(files.train.display().to_string()));
    }
    let n_test = allreduce_scalar(sync, test.as_ref().map_or(0, |t| t.0.len()) as f64)?;
    let d = allreduce_max(sync, f64::from(train.dim()))? as usize;
    let lambda = opts.lambda.unwrap_or(1.0 / n_train as f64);
    let squares: f64 = (0..train.len())
        .map(|i| {
            let x = train.features(i);
            x.iter().map(|f| f64::from(f.value).powi(2)).sum::<f64>()
        })
        .sum();
    let positives = labels.iter().filter(|&&y| y > 0.0).count() as f64;
    let squares_all = allreduce_scalar(sync, squares)?;
    let bias = if opts.bias {
        let squares = squares_all;
        let positives = allreduce_scalar(sync, positives)?.round() as u64;
        Some(Bias {
            rate: bias_rate(squares / n_train as f64),
            start: bias_start(positives, n_train),
        })
    } else {
        None
    };

    let mut clock = Clock::running();
    let eta0 = match opts.eta0 {
        Some(e) => e,
        None => {
            // Rank 0 calibrates, or the first rank with examples.
            let root = first_rank_where(sync, !train.is_empty())?.unwrap_or(0);
            let mine = if part == root {
                // The first examples: a random sample when shuffled.
                let small = n_train <= (32 * CALIBRATION_SAMPLE) as u64;
                let whole = if parts > 1 && train.len() < CALIBRATION_SAMPLE && small {
                    // A shard smaller than the sample: calibrate on the
                    // sample one rank would use (the first examples of the
                    // whole file shuffled as rank 0 of one would), so that
                    // eta0 does not depend on the number of ranks.
                    // On failure (the file changed under the job), the
                    // shard's own sample serves: no rank fails alone.
                    load(&files.train_only(), 0, 1, opts, 0).ok().map(|l| l.0)
                } else {
                    None
                };
                let (cal, cal_labels) = match &whole {
                    Some((t, l)) => (t, l),
                    None => (&train, &labels),
                };
                let idx: Vec<u32> = (0..cal.len().min(CALIBRATION_SAMPLE) as u32).collect();
                // svmsgd's bias: the rate it finds, unchanged on every
                // data set, is the one that works with the weights.
                let svmsgd = bias.map(|_| Bias::SVMSGD);
                calibrate(d, (lambda, svmsgd), cal, cal_labels, &idx)
            } else {
                0.0
            };
            broadcast_from(sync, root, mine)?
        }
    };
    tracing::debug!(
        eta0,
        t0 = 1.0 / (lambda * eta0),
        lambda,
        ?bias,
        "svm learning rate"
    );
    if !(eta0 > 0.0 && eta0 * lambda < 1.0) {
        return Err(TrainError::InvalidOptions(format!(
            "eta0 {eta0} is unusable with lambda {lambda}: eta0 * lambda must be below 1"
        )));
    }

    let mut st = SvmState::new(d, lambda, bias, opts.averaged, eta0);
    st.set_world(sync.world(), opts.udf);
    if squares_all > 0.0 {
        // A step of `1 / ||x||²` moves a row's own margin by 1.
        st.scaled_max = n_train as f64 / squares_all;
    }
    let n_max = allreduce_max(sync, train.len() as f64)? as u64;
    let cb = sync_cadence(opts.cb, n_max, sync.world());
    if cb != opts.cb {
        tracing::info!(
            asked = opts.cb,
            cb,
            n_max,
            "examples between synchronisations lowered to 1/{MIN_SYNCS_PER_EPOCH} of the largest shard"
        );
    }
    let mut learner = SvmLearner {
        st,
        train,
        labels,
        test,
        opts,
        files,
        rank,
    };
    let mut metrics = metrics_writer(rank, &opts.out, TestMetric::Error)?;
    let cfg = LoopConfig {
        epochs: opts.epochs,
        cb,
        udf: opts.udf,
        goal: opts.goal_loss,
        stop_at_goal: opts.stop_at_goal,
        evals_per_epoch: opts.evals_per_epoch,
        shuffle: opts.shuffle,
        seed: opts.seed,
        quiet: opts.quiet,
        checkpoint: opts.keep.checkpoints("svm"),
        resume: opts.keep.resumed("svm", rank, learner.st.m.len())?,
    };
    let res = run_loop(&mut learner, sync, &cfg, &mut clock, metrics.as_mut())?;
    let summary = res.summary(
        RunFacts {
            app: "svm",
            metric: TestMetric::Error,
            train_examples: n_train,
            test_examples: n_test.round() as u64,
            parameters: learner.st.m.len() as u64,
            lambda,
            udf: opts.udf,
            cb,
            goal_loss: opts.goal_loss,
            noise_floor: None,
        },
        sync.world(),
        wall,
    );
    // The lowest surviving rank reports (rank 0 unless it has left).
    if sync.part().0 == 0 {
        Finish {
            title: format!(
                "SVM-SGD{}, λ={}, {} rank{}",
                if opts.averaged { " (averaged)" } else { "" },
                short_number(lambda),
                summary.ranks,
                if summary.ranks == 1 { "" } else { "s" }
            ),
            out: &opts.out,
            metric: TestMetric::Error,
            json: opts.json,
            quiet: opts.quiet,
            plot: opts.plot,
        }
        .write(&summary, &res.points)?;
    }
    learner.st.plain();
    if let (Some(path), 0) = (&opts.keep.model, sync.part().0) {
        file::save_model(path, opts, &learner.st, res.epochs_done)?;
    }
    let model = learner.st.m.clone();
    Ok(RunOutput {
        summary,
        points: res.points,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::calibration::try_eta;
    use super::*;
    use crate::data::libsvm::binary_sign;
    use crate::data::testutil::TempDir;
    use crate::train::metrics::read_metrics;
    use crate::train::sync::{InProcessGroup, NoSync};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::time::Duration;

    fn f(index: u32, value: f32) -> Feature {
        Feature { index, value }
    }

    /// Small RCV1-like data: 4,000 training and 1,000 test rows.
    fn small(out: &Path) -> SvmOptions {
        SvmOptions {
            out: out.to_path_buf(),
            lambda: Some(1e-4),
            epochs: 6,
            cb: 500,
            quiet: true,
            synth: SynthSvmData {
                rows: 4000,
                test_rows: 1000,
                features: 500,
                nnz: 10,
                label_noise: 0.05,
                seed: 7,
            },
            ..SvmOptions::default()
        }
    }

    /// Dense SGD in f64, the textbook way: the reference for the scaled
    /// sparse implementation.
    struct Reference {
        w: Vec<f64>,
        b: f64,
        a: Vec<f64>,
        ab: f64,
        k: u64,
    }

    impl Reference {
        fn step(&mut self, x: &[Feature], y: f64, eta: f64, lambda: f64, average: bool) {
            let s: f64 = x
                .iter()
                .map(|f| self.w[f.index as usize] * f64::from(f.value))
                .sum::<f64>()
                + self.b;
            for w in &mut self.w {
                *w *= 1.0 - eta * lambda;
            }
            if y * s < 1.0 {
                for f in x {
                    self.w[f.index as usize] += eta * y * f64::from(f.value);
                }
                self.b += BIAS_RATE * eta * y;
            }
            if average {
                self.k += 1;
                let mu = 1.0 / self.k as f64;
                for (a, w) in self.a.iter_mut().zip(&self.w) {
                    *a = (1.0 - mu) * *a + mu * w;
                }
                self.ab = (1.0 - mu) * self.ab + mu * self.b;
            }
        }
    }

    fn examples() -> Vec<(Vec<Feature>, f64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        (0..400)
            .map(|i| {
                let mut idx: Vec<u32> = (0..5).map(|_| rng.gen_range(0..30)).collect();
                idx.sort_unstable();
                idx.dedup();
                let x = idx
                    .into_iter()
                    .map(|j| f(j, rng.gen_range(-1.0..1.0)))
                    .collect();
                (x, if i % 3 == 0 { -1.0 } else { 1.0 })
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= tol * (1.0 + w.abs()),
                "index {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn scaled_sgd_matches_dense_sgd() {
        let (d, lambda, eta) = (30, 0.1, 0.5);
        let mut st = SvmState::new(d, lambda, Some(Bias::SVMSGD), false, eta);
        let mut r = Reference {
            w: vec![0.0; d],
            b: 0.0,
            a: vec![0.0; d],
            ab: 0.0,
            k: 0,
        };
        for (j, (x, y)) in examples().iter().enumerate() {
            st.step(x, *y, eta);
            r.step(x, *y, eta, lambda, false);
            if j == 150 {
                // Folding must not change the model.
                st.fold_w();
            }
        }
        // 400 steps at 1 - ηλ = 0.95 shrink wscale below WSCALE_MIN, so
        // the automatic fold ran too.
        assert!(0.95f64.powi(400) < WSCALE_MIN);
        let plain = st.plain().to_vec();
        assert_close(&plain[..d], &r.w, 1e-4);
        assert!((f64::from(plain[d]) - r.b).abs() < 1e-6);
    }

    #[test]
    fn scaled_averaging_matches_the_running_mean() {
        let (d, lambda, eta) = (30, 0.01, 0.2);
        let mut st = SvmState::new(d, lambda, Some(Bias::SVMSGD), true, eta);
        let mut r = Reference {
            w: vec![0.0; d],
            b: 0.0,
            a: vec![0.0; d],
            ab: 0.0,
            k: 0,
        };
        let ex = examples();
        // Plain steps first, then averaging from step 100 on.
        for (x, y) in &ex[..100] {
            st.step(x, *y, eta);
            r.step(x, *y, eta, lambda, false);
        }
        st.start_averaging();
        r.a.clone_from(&r.w);
        r.ab = r.b;
        r.k = 1;
        for (j, (x, y)) in ex[100..].iter().enumerate() {
            st.step(x, *y, eta);
            r.step(x, *y, eta, lambda, true);
            if j == 77 {
                st.fold_avg();
            }
        }
        let plain = st.plain().to_vec();
        assert_eq!(plain.len(), 2 * (d + 1));
        assert_close(&plain[..d], &r.w, 1e-4);
        assert_close(&plain[d + 1..2 * d + 1], &r.a, 1e-4);
        assert!((f64::from(plain[2 * d + 1]) - r.ab).abs() < 1e-5);
        let (w, b) = st.eval_model();
        assert_eq!(w.len(), d);
        assert!((b - r.ab).abs() < 1e-5);
    }

    #[test]
    fn the_bias_rate_is_svmsgds_for_unit_rows_and_grows_with_the_rows_norm() {
        assert_eq!(bias_rate(1.0), BIAS_RATE);
        assert_eq!(bias_rate(0.25), BIAS_RATE, "never below 1%");
        assert!((bias_rate(64.0) - 0.64).abs() < 1e-12);
        assert_eq!(bias_rate(1e6), MAX_BIAS_RATE);
        assert_eq!(bias_rate(f64::NAN), BIAS_RATE);
    }

    #[test]
    fn the_bias_starts_at_the_mean_label() {
        assert!((bias_start(130, 1300) + 0.8).abs() < 1e-12);
        assert!((bias_start(975, 1300) - 0.5).abs() < 1e-12);
        assert_eq!(bias_start(650, 1300), 0.0);
        assert_eq!(bias_start(0, 0), 0.0);
    }

    #[test]
    fn small_shards_sync_at_least_32_times_an_epoch() {
        // The default cb on 1,300 rows over 2 ranks: 650 / 32, rounded
        // down so that an epoch has at least 32 rounds.
        for n in [33, 650, 1000, 159_999] {
            let cb = sync_cadence(5000, n, 2);
            assert!(super::super::rounds_per_epoch(n, cb) >= 32, "{n}: cb {cb}");
        }
        assert_eq!(sync_cadence(5000, 650, 2), 20);
        // Large shards keep cb; one rank and cb 0 are left alone.
        assert_eq!(sync_cadence(5000, 200_000, 2), 5000);
        assert_eq!(sync_cadence(5000, 650, 1), 5000);
        assert_eq!(sync_cadence(0, 650, 4), 0);
        assert_eq!(sync_cadence(5000, 3, 4), 1);
        assert_eq!(sync_cadence(5000, 0, 4), 1);
    }

    #[test]
    fn calibration_picks_a_rate_near_the_best_on_the_sample() {
        let dir = TempDir::new("svm-calibrate");
        let opts = small(dir.path());
        let gen = opts.synth.generator();
        let path = dir.path().join("d.svm");
        crate::data::synth::synth_sparse_file(&gen, &path).unwrap();
        let data = SparseDataset::load(&path).unwrap();
        let labels: Vec<f64> = data.labels().iter().map(|&l| binary_sign(l)).collect();
        let idx: Vec<u32> = (0..CALIBRATION_SAMPLE as u32).collect();
        let d = data.dim() as usize;
        let reg = (1e-4, Some(Bias::SVMSGD));
        let eta = calibrate(d, reg, &data, &labels, &idx);
        assert!(eta > 0.0 && eta * reg.0 < 1.0, "{eta}");
        let best = (-12..=12)
            .map(|e| try_eta(d, reg, &data, &labels, &idx, 2f64.powi(e)))
            .fold(f64::INFINITY, f64::min);
        let chosen = try_eta(d, reg, &data, &labels, &idx, eta);
        assert!(chosen <= 1.2 * best, "chosen {chosen}, best {best}");
    }

    #[test]
    fn single_rank_converges_on_synthetic_data() {
        let dir = TempDir::new("svm-single");
        let opts = small(dir.path());
        let out = run_svm(&opts, &mut NoSync).unwrap();
        let pts = &out.points;
        assert_eq!(pts.len(), 1 + opts.epochs as usize);
        // The initial model is w = 0 and the mean label as bias: on these
        // balanced classes (the separator's bias is the median score) about
        // 0, a mean hinge of 1 - (2p - 1)², about 1.
        assert!(
            pts[0].objective <= 1.0 && pts[0].objective > 0.98,
            "{pts:?}"
        );
        let last = pts.last().unwrap();
        // The objective falls, nearly monotonically across epochs.
        assert!(last.objective < 0.7 * pts[0].objective, "{pts:?}");
        assert!(last.objective <= pts[1].objective + 1e-3, "{pts:?}");
        // 5% label noise makes 5% the floor; a single run gives about 13%
        // on this small set; chance is 50%.
        let err = last.test.unwrap();
        assert!(err < 0.20, "test error {err}");
        assert_eq!(out.summary.train_examples, 4000);
        assert_eq!(out.summary.test_examples, 1000);
        assert_eq!(out.summary.examples, 4000 * u64::from(opts.epochs));
        assert_eq!(out.summary.bytes_sent, 0);
        // Files of rank 0.
        let csv = read_metrics(&dir.path().join("metrics.csv")).unwrap();
        assert_eq!(csv.len(), pts.len());
        for name in ["summary.json", "objective.png", "objective.svg"] {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len > 100, "{name}: {len} bytes");
        }
        let synth = dir.path().join("synth-sparse");
        assert!(synth.join("train.libsvm").is_file() && synth.join("test.libsvm").is_file());
    }

    #[test]
    fn averaged_sgd_converges_too() {
        let dir = TempDir::new("svm-asgd");
        let opts = SvmOptions {
            averaged: true,
            ..small(dir.path())
        };
        let out = run_svm(&opts, &mut NoSync).unwrap();
        let last = out.points.last().unwrap();
        assert!(last.objective < 0.7, "{:?}", out.points);
        assert!(last.test.unwrap() < 0.20, "{:?}", out.points);
        assert_eq!(out.model.len(), 2 * (500 + 1));
    }

    fn two_ranks(opts: &SvmOptions) -> Vec<RunOutput> {
        let group = InProcessGroup::new(2, Duration::from_secs(120)).unwrap();
        let handles: Vec<_> = (0..2)
            .map(|r| {
                let mut member = group.member(r).unwrap();
                let opts = opts.clone();
                std::thread::spawn(move || run_svm(&opts, &mut member))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    }

    #[test]
    fn two_ranks_converge_with_either_merge() {
        for udf in [Udf::Avg, Udf::Sum] {
            let dir = TempDir::new("svm-two");
            let opts = SvmOptions {
                udf,
                ..small(dir.path())
            };
            let outs = two_ranks(&opts);
            // Bulk-synchronous all-to-all merges leave identical models.
            assert_eq!(outs[0].model, outs[1].model, "{udf}");
            let s = &outs[0].summary;
            assert_eq!(s.ranks, 2);
            assert_eq!(s.train_examples, 4000);
            assert_eq!(s.examples, 4000 * u64::from(opts.epochs));
            assert!(s.bytes_sent > 0);
            let last = outs[0].points.last().unwrap();
            assert!(last.objective < 0.7, "{udf}: {:?}", outs[0].points);
            assert!(last.test.unwrap() < 0.20, "{udf}: {:?}", outs[0].points);
            // Every rank sees the same reduced evaluations (times are each
            // rank's own).
            for (a, b) in outs[0].points.iter().zip(&outs[1].points) {
                assert_eq!(
                    (a.examples, a.objective, a.test),
                    (b.examples, b.objective, b.test)
                );
            }
        }
    }

    #[test]
    fn goal_loss_is_timed_and_can_stop_training() {
        let dir = TempDir::new("svm-goal");
        let opts = SvmOptions {
            goal_loss: Some(0.8),
            stop_at_goal: true,
            epochs: 50,
            evals_per_epoch: 4,
            ..small(dir.path())
        };
        let out = run_svm(&opts, &mut NoSync).unwrap();
        let t = out.summary.time_to_goal_s.expect("goal reached");
        assert!(t >= 0.0 && t <= out.summary.seconds, "{t}");
        assert!(out.summary.epochs < 50.0, "stopped early");
        assert!(out.summary.final_loss <= 0.8);
        // Only the last point is at or below the goal.
        let below = out.points.iter().filter(|p| p.objective <= 0.8).count();
        assert_eq!(below, 1);
    }

    #[test]
    fn bad_options_and_inputs_are_typed_errors() {
        let dir = TempDir::new("svm-bad");
        for opts in [
            SvmOptions {
                lambda: Some(0.0),
                ..small(dir.path())
            },
            SvmOptions {
                epochs: 0,
                ..small(dir.path())
            },
            SvmOptions {
                eta0: Some(1e9),
                ..small(dir.path())
            },
        ] {
            assert!(matches!(
                run_svm(&opts, &mut NoSync),
                Err(TrainError::InvalidOptions(_))
            ));
        }
        let missing = SvmOptions {
            data: Some(dir.path().join("absent.svm")),
            ..small(dir.path())
        };
        let err = run_svm(&missing, &mut NoSync).unwrap_err();
        assert!(matches!(err, TrainError::Data(_)), "{err}");
        assert!(err.to_string().contains("absent.svm"), "{err}");
        let bad = dir.path().join("bad.svm");
        std::fs::write(&bad, "1 1:1\n-1 0:2\n").unwrap();
        let err = run_svm(
            &SvmOptions {
                data: Some(bad),
                ..small(dir.path())
            },
            &mut NoSync,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad.svm:2"), "{err}");
        let empty = dir.path().join("empty.svm");
        std::fs::write(&empty, "# nothing\n").unwrap();
        let err = run_svm(
            &SvmOptions {
                data: Some(empty),
                ..small(dir.path())
            },
            &mut NoSync,
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::NoExamples(_)), "{err}");
    }

    #[test]
    fn c_maps_to_lambda() {
        assert_eq!(lambda_for_c(1.0, 60_000), 1.0 / 60_000.0);
        assert_eq!(lambda_for_c(0.5, 4), 0.5);
    }

    #[test]
    fn default_lambda_is_one_over_n() {
        let dir = TempDir::new("svm-default-lambda");
        let opts = SvmOptions {
            lambda: None,
            epochs: 1,
            ..small(dir.path())
        };
        let out = run_svm(&opts, &mut NoSync).unwrap();
        assert_eq!(out.summary.lambda, 1.0 / 4000.0);
    }

    #[test]
    fn test_features_beyond_the_model_are_ignored() {
        let w = [1.0f32, 2.0];
        assert_eq!(dot_checked(&w, &[f(0, 1.0), f(1, 1.0), f(9, 5.0)]), 3.0);
        assert_eq!(dot(&w, &[f(1, 0.5)]), 1.0);
    }
}
