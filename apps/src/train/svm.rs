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
//! For an example `(x, y)` at step `t` (this rank's examples so far):
//!
//! ```text
//! s  = w·x + b
//! w ← (1 - η_t λ) w                 (regularisation)
//! w ← w + η_t y x    if y s < 1     (hinge subgradient)
//! b ← b + 0.01 η_t y if y s < 1
//! ```
//!
//! - **Learning rate** `η_t = 1 / (λ (t + t0))`. `t0 = 1 / (λ η0)`, where
//!   `η0` is calibrated on a sample of 1,000 training examples (the first
//!   of rank 0's shard, after the shuffle; the value is sent to every rank): starting from `η = 1`, try
//!   `η` multiplied or divided by 2, training one pass over the sample from a
//!   zero model with the constant `η` and measuring `P` on the sample, and
//!   move in the direction in which `P` decreases until it stops decreasing;
//!   keep the smaller `η` of the best pair.
//! - **Scaled weights**: `w = wscale · v`. The regularisation step only
//!   multiplies `wscale`, so a step costs O(non-zeros of x). When `wscale`
//!   falls below 1e-5 it is folded into `v` (O(d), rare: `wscale` decays
//!   like `t0 / t`).
//! - **Bias**: like `svmsgd`, the bias learns at 1% of the weights' rate
//!   ([`BIAS_RATE`]); a full-rate, unregularised bias jumps by `η_t` on every
//!   margin violation, which is large early on.
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
//! The learning rate's clock `t` counts this rank's examples with `--udf avg`
//! (each rank runs its own SGD and the models are averaged), and every
//! rank's examples with `--udf sum` (`t` advances by the number of ranks per
//! example): the sum of the ranks' deltas over a round then approximates
//! one SGD pass over all their examples, up to the staleness of the other
//! ranks' updates within a round, which large `cb` or early large rates turn
//! into overshoot.
//!
//! # Synthetic data
//!
//! Without `data`, [`run_svm`] generates [`SynthSvmData`] (by default
//! 400,000 training and 40,000 test examples of
//! [`synth_sparse`]: 50,000 features, 50
//! non-zeros per row on average, 5% label noise, seed 1; about 300 MB of
//! text) into `<out>/synth-sparse/`, reused by later runs with the same
//! options.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::libsvm::{binary_sign, one_vs_rest, Feature, SparseDataset, DEFAULT_MAX_FEATURES};
use crate::data::synth::{synth_sparse, SynthSparseOptions, DEFAULT_LABEL_NOISE};

use super::checkpoint;
use super::files::DataFiles;
use super::metrics::TestMetric;
use super::sync::{allreduce_max, allreduce_scalar, broadcast_from, first_rank_where, ModelSync};
use super::{
    create_out, load_rng, metrics_writer, run_loop, short_number, shuffle_once, Clock, Finish,
    Learner, LoopConfig, RunFacts, RunOutput, TrainError, Udf,
};

mod calibration;
mod file;
use calibration::calibrate;
pub use file::predict_svm;

/// The bias learns at this fraction of the weights' learning rate.
pub const BIAS_RATE: f64 = 0.01;
/// `wscale` is folded into the weights when it falls below this.
const WSCALE_MIN: f64 = 1e-5;
/// The averaged model's factors are folded in when `ca` falls below this.
const AVG_SCALE_MIN: f64 = 1e-2;
/// Examples in the learning-rate calibration sample.
pub const CALIBRATION_SAMPLE: usize = 1000;
/// Most halvings or doublings the calibration tries.
const CALIBRATION_STEPS: usize = 40;

/// The synthetic data set used when no data is given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthSvmData {
    /// Training examples.
    pub rows: u64,
    /// Test examples (generated after the training examples, same model).
    pub test_rows: u64,
    /// Number of features.
    pub features: u32,
    /// Mean non-zeros per example.
    pub nnz: u32,
    /// Probability that a label is flipped.
    pub label_noise: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for SynthSvmData {
    fn default() -> Self {
        SynthSvmData {
            rows: 400_000,
            test_rows: 40_000,
            features: 50_000,
            nnz: 50,
            label_noise: DEFAULT_LABEL_NOISE,
            seed: 1,
        }
    }
}

impl SynthSvmData {
    /// The generator options for training and test rows together.
    pub fn generator(&self) -> SynthSparseOptions {
        let mut o = SynthSparseOptions::new(
            self.rows + self.test_rows,
            self.features,
            self.nnz,
            self.seed,
        );
        o.label_noise = self.label_noise;
        o
    }
}

/// The λ of this objective that gives the same minimiser as liblinear's
/// primal `½ ||w||² + C Σ_i hinge_i` on `n` examples: dividing that by `C n`
/// gives `λ/2 ||w||² + mean hinge` with `λ = 1 / (C n)`.
pub fn lambda_for_c(c: f64, n: u64) -> f64 {
    1.0 / (c * n as f64)
}

/// Options of [`run_svm`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
// The SVM's options: one of its fields per option (and flag).
pub struct SvmOptions {
    /// Training file (LIBSVM). `None`: generate [`SvmOptions::synth`].
    pub data: Option<PathBuf>,
    /// Test file (LIBSVM). Without `data`, the synthetic test split.
    pub test: Option<PathBuf>,
    /// Regularisation λ (> 0). `None`: `1 / n` for `n` training examples,
    /// which is liblinear's default `C = 1` (see [`lambda_for_c`]).
    pub lambda: Option<f64>,
    /// Passes over the training data.
    pub epochs: u32,
    /// Examples between synchronisations, at most (0: only at epoch ends).
    pub cb: u64,
    /// How models are merged.
    pub udf: Udf,
    /// Objective to reach; its time is reported.
    pub goal_loss: Option<f64>,
    /// Stop once the goal loss is reached.
    pub stop_at_goal: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Print the summary as one JSON line.
    pub json: bool,
    /// No progress bar, no summary line (unless `json`).
    pub quiet: bool,
    /// Averaged SGD.
    pub averaged: bool,
    /// Seed of the example order.
    pub seed: u64,
    /// Shuffle the local examples once, then visit them in blocks taken in a
    /// new random order every epoch (see [`SHUFFLE_BLOCK`](super::SHUFFLE_BLOCK));
    /// else in file order.
    pub shuffle: bool,
    /// Learn a bias.
    pub bias: bool,
    /// The learning rate at t = 0; `None`: calibrate.
    pub eta0: Option<f64>,
    /// Evaluations per epoch (at least 1).
    pub evals_per_epoch: u32,
    /// For multiclass labels: this class is +1, the others -1. `None`:
    /// labels above 0 are +1.
    pub positive_class: Option<f64>,
    /// Write `objective.png` and `objective.svg`.
    pub plot: bool,
    /// The data generated when `data` is `None`.
    pub synth: SynthSvmData,
    /// Largest feature index accepted in the training and test files
    /// (1-based, as in the file); a file with a larger one is refused
    /// before any model is sized by it. See [`DEFAULT_MAX_FEATURES`].
    #[serde(default = "default_max_features")]
    pub max_features: u32,
    /// The model file, checkpoints, resuming.
    #[serde(flatten)]
    pub keep: checkpoint::Keep,
}

fn default_max_features() -> u32 {
    DEFAULT_MAX_FEATURES
}

impl Default for SvmOptions {
    fn default() -> Self {
        SvmOptions {
            data: None,
            test: None,
            lambda: None,
            epochs: 10,
            cb: 5000,
            udf: Udf::Avg,
            goal_loss: None,
            stop_at_goal: false,
            out: PathBuf::from("malt-train-svm"),
            json: false,
            quiet: false,
            averaged: false,
            seed: 1,
            shuffle: true,
            bias: true,
            eta0: None,
            evals_per_epoch: 1,
            positive_class: None,
            plot: true,
            synth: SynthSvmData::default(),
            max_features: DEFAULT_MAX_FEATURES,
            keep: checkpoint::Keep::default(),
        }
    }
}

impl SvmOptions {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::InvalidOptions(m));
        if let Some(l) = self.lambda {
            if !(l.is_finite() && l > 0.0) {
                return bad(format!("lambda must be positive, got {l}"));
            }
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if let Some(e) = self.eta0 {
            if !(e.is_finite() && e > 0.0) {
                return bad(format!("eta0 must be positive, got {e}"));
            }
        }
        if let Some(g) = self.goal_loss {
            if !g.is_finite() {
                return bad(format!("goal loss must be finite, got {g}"));
            }
        }
        if self.evals_per_epoch == 0 {
            return bad("evals per epoch must be at least 1".into());
        }
        Ok(())
    }

    fn label(&self, raw: f64) -> f64 {
        match self.positive_class {
            Some(c) => one_vs_rest(raw, c),
            None => binary_sign(raw),
        }
    }
}

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
    use_bias: bool,
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
    eta0: f64,
}

impl SvmState {
    fn new(d: usize, lambda: f64, use_bias: bool, averaged: bool, eta0: f64) -> Self {
        let len = if averaged { 2 * (d + 1) } else { d + 1 };
        SvmState {
            d,
            lambda,
            use_bias,
            averaged,
            m: vec![0.0; len],
            wscale: 1.0,
            b: 0.0,
            avg_on: false,
            avg_steps: 0,
            ca: 1.0,
            cb: 0.0,
            ab: 0.0,
            t: 0,
            clock_step: 1,
            eta0,
        }
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
            if self.use_bias {
                self.b += BIAS_RATE * eta * y;
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
        if self.st.averaged {
            for &i in order {
                let r = 1.0 + lambda * eta0 * self.st.t as f64;
                let eta = eta0 / r.powf(0.75);
                let i = i as usize;
                self.st.step(self.train.features(i), self.labels[i], eta);
            }
        } else {
            for &i in order {
                // = 1 / (λ (t + t0)) with t0 = 1 / (λ η0).
                let eta = eta0 / (1.0 + lambda * eta0 * self.st.t as f64);
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
        ]
    }

    fn restore(&mut self, state: &[f64]) -> Result<(), TrainError> {
        let [t, avg_on, avg_steps, b, ab] = state else {
            return Err(TrainError::InvalidOptions(format!(
                "a checkpoint with {} state values; an svm run keeps 5",
                state.len()
            )));
        };
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

    let mut clock = Clock::running();
    let eta0 = match opts.eta0 {
        Some(e) => e,
        None => {
            // Rank 0 calibrates, or the first rank with examples.
            let root = first_rank_where(sync, !train.is_empty())?.unwrap_or(0);
            let mine = if part == root {
                // The first examples: a random sample when shuffled.
                let idx: Vec<u32> = (0..train.len().min(CALIBRATION_SAMPLE) as u32).collect();
                calibrate(d, (lambda, opts.bias), &train, &labels, &idx)
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
        "svm learning rate"
    );
    if !(eta0 > 0.0 && eta0 * lambda < 1.0) {
        return Err(TrainError::InvalidOptions(format!(
            "eta0 {eta0} is unusable with lambda {lambda}: eta0 * lambda must be below 1"
        )));
    }

    let mut st = SvmState::new(d, lambda, opts.bias, opts.averaged, eta0);
    if opts.udf == Udf::Sum {
        // Summed deltas move the model as far as one SGD pass over every
        // rank's examples, so the rate follows the examples of all ranks.
        st.clock_step = sync.world() as u64;
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
        cb: opts.cb,
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
            cb: opts.cb,
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
        let mut st = SvmState::new(d, lambda, true, false, eta);
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
        let mut st = SvmState::new(d, lambda, true, true, eta);
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
        let reg = (1e-4, true);
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
        assert_eq!(pts[0].objective, 1.0, "zero model: hinge 1 everywhere");
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
