//! Matrix factorization by stochastic gradient descent on `user item rating`
//! triplets, as in Hogwild's Netflix experiment.
//!
//! # Model and objective
//!
//! ```text
//! r̂(u, i) = μ + b_u + b_i + p_u · q_i
//! ```
//!
//! with `μ` the mean training rating (over all ranks, fixed), user and item
//! biases `b_u`, `b_i` and `k`-dimensional factors `p_u`, `q_i`. SGD visits
//! each training rating and takes a step on its squared error and its share
//! of the regularisation:
//!
//! ```text
//! e    = r - r̂(u, i)
//! b_u ← b_u + η (e - λ_u b_u)          b_i ← b_i + η (e - λ_i b_i)
//! p_u ← p_u + η (e q_i - λ_u p_u)      q_i ← q_i + η (e p_u - λ_i q_i)
//! ```
//!
//! With [`Regularization::PerEntity`] (the default) `λ_u = λ / n_u` and
//! `λ_i = λ / n_i`, where `n_u` and `n_i` count the user's and the item's
//! training ratings over all ranks, so that an epoch minimises
//! `Σ (r - r̂)² + λ (Σ_u |p_u|² + b_u² + Σ_i |q_i|² + b_i²)`: the MAP estimate
//! with Gaussian priors, with `λ` about noise variance / prior variance
//! (default 2). [`Regularization::PerRating`] uses `λ_u = λ_i = λ`, the form
//! of Funk's SVD and of Hogwild's experiment (a good `λ` is then about 0.02).
//! On synthetic ratings with few ratings per user the first generalises
//! slightly better.
//!
//! The learning rate is `η = lr · lr_decay^epoch`. Factors start as
//! independent uniform draws in `±init / sqrt(k)` from `seed` alone, so every
//! rank starts from the same model; biases start at 0.
//!
//! The objective reported (in `metrics.csv` and as `final_loss`, the one the
//! goal loss is compared with) is the **training RMSE** over every rank's
//! ratings; `test_rmse` is the RMSE on the test ratings. Users or items
//! beyond the training ids predict with their terms left out.
//!
//! # Threads within a rank
//!
//! With [`MfOptions::threads`] (`--threads T`, default 1) above 1, a rank
//! runs `T` SGD threads over its one model: Hogwild's lock-free parallel SGD,
//! on a stratified schedule (as DSGD) under which no two threads ever write
//! the same values (see `stratified.rs`). Users and items are cut into `T`
//! contiguous id blocks each, holding about equal shares of the rank's
//! ratings; each round's ratings (a range of the epoch's block-shuffled
//! order) are bucketed by (user block, item block) and trained in `T`
//! sub-steps, in sub-step `s` thread `a` on block `(a, (a + s) mod T)`. The
//! blocks of a sub-step share no user and no item, so each thread holds
//! `&mut` slices of its rows of the plain `f32` model and takes the plain
//! step: no atomics, no locks, no lost updates, no `unsafe`. `μ` is fixed,
//! so the threads only read it.
//!
//! Every rating is still trained on once per epoch; what changes is the
//! order within a round: block by block and sub-step by sub-step instead of
//! the round's order, each sub-step moving a `1 / T` slice of the users
//! against a `1 / T` slice of the items. The result is deterministic, and
//! on the built-in set reaches one thread's RMSE. For the schedule, the
//! rank's ratings are regrouped once by block within each window of
//! [`SHUFFLE_BLOCK`](super::SHUFFLE_BLOCK) ratings (a block's ratings keep
//! their order), so that a round's blocks are runs of consecutive ratings.
//! The threads have joined before each sync and evaluation, which see the
//! plain model as with one thread; ranks and threads combine (`R` ranks of
//! `T` threads each). With `T` = 1 the plain sequential step runs in the
//! round's order, as before. `T` is at most 4 per core of the machine; more
//! threads than cores only share the cores.
//!
//! On the built-in set with `k` = 10, on a noisy 2-core machine, four runs
//! of `benches/hogwild.sh` (5 interleaved pairs each) gave median ratios of
//! 2 threads' ratings per second to one thread's of 1.49x, 1.35x, 1.71x and
//! 1.79x (single pairs 1.19x to 2.1x; 2 ranks of one thread spread as much
//! in the same iterations), at the same RMSE (+0.01%); with the second core
//! free, pairs gave 1.8x to 1.95x. The bucketing takes about 3% of the
//! threads' time and a step on a thread is no slower than the plain one;
//! the spread is the machine's.
//!
//! # The flat model and what is synchronised
//!
//! `[μ, (b_u, p_u) for u in 0..users, (b_i, q_i) for i in 0..items]`: one
//! block of `k + 1` values per user, then per item, where `users` and `items`
//! are the largest ids of the training data over all ranks plus one. Ranks
//! hold different ratings (the file is sharded by lines) and synchronise the
//! whole vector: user and item factors and biases (`μ` is the same on every
//! rank and stays so under either merge rule).
//!
//! Which merge suits: every user and item is trained on by every rank, so
//! within a round each rank moves the same factors towards its own ratings'
//! fit. `avg` takes the mean of those moves, which is stable however long
//! the round; `sum` applies all of them (Hogwild's semantics, with other
//! ranks' updates seen one round late), which overshoots once a round is long
//! enough for each rank to fit its ratings on its own: on 10M synthetic
//! ratings with 2 ranks `sum` converges with `cb` = 100,000 and stalls at a
//! training RMSE near 0.89 with `cb` = 1,000,000, where `avg` converges. The
//! model is large (`(users + items)(k + 1)` values are sent per sync), so the
//! default `cb` is 1,000,000 ratings per rank.
//!
//! # Synthetic data
//!
//! Without `data`, [`run_mf`] generates [`SynthMfData`] (by default 3,000,000
//! training and 300,000 test ratings from
//! [`synth_ratings`]: 30,000 users, 3,000
//! items, rank 10, noise 0.5, seed 1) into `<out>/synth-ratings/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::ratings::{load_shard, Rating, RatingsFormat};
use crate::data::synth::{synth_ratings, SynthRatingsOptions, DEFAULT_RATING_NOISE_STDDEV};

use super::files::DataFiles;
use super::metrics::TestMetric;
use super::stratified::{max_threads, Steps, Stratified};
use super::sync::{allreduce_max, ModelSync};
use super::{checkpoint, model};
use super::{
    create_out, load_rng, metrics_writer, run_loop, short_number, Clock, Finish, Learner,
    LoopConfig, RunFacts, RunOutput, TrainError, Udf,
};

/// The largest model accepted (4 GiB of `f32`): ids are used as indices, so
/// a file with a stray huge id is refused rather than allocated for.
pub const MAX_PARAMETERS: u128 = 1 << 30;

/// The synthetic ratings used when no data is given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthMfData {
    /// Users.
    pub users: u32,
    /// Items.
    pub items: u32,
    /// Rank of the hidden model.
    pub rank: u32,
    /// Training ratings.
    pub ratings: u64,
    /// Test ratings (a random split of the same stream).
    pub test_ratings: u64,
    /// Standard deviation of the rating noise: the RMSE floor.
    pub noise_stddev: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for SynthMfData {
    fn default() -> Self {
        SynthMfData {
            users: 30_000,
            items: 3_000,
            rank: 10,
            ratings: 3_000_000,
            test_ratings: 300_000,
            noise_stddev: DEFAULT_RATING_NOISE_STDDEV,
            seed: 1,
        }
    }
}

impl SynthMfData {
    /// The generator options for training and test ratings together.
    pub fn generator(&self) -> SynthRatingsOptions {
        let mut o = SynthRatingsOptions::new(
            self.users,
            self.items,
            self.rank,
            self.ratings + self.test_ratings,
            self.seed,
        );
        o.noise_stddev = self.noise_stddev;
        o
    }
}

/// How the regularisation is spread over the SGD steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regularization {
    /// `λ` on every step (Funk's and Hogwild's form): a user with `n`
    /// ratings is penalised `n λ |p_u|²` in all, so heavy users are held
    /// back the most.
    PerRating,
    /// `λ / n_u` and `λ / n_i` on a step, with `n_u`, `n_i` the user's and
    /// item's ratings over all ranks: the objective is
    /// `Σ (r - r̂)² + λ (Σ_u |p_u|² + b_u² + Σ_i |q_i|² + b_i²)`, the maximum
    /// a posteriori estimate under Gaussian priors (`λ ≈ noise variance /
    /// prior variance`), which shrinks users with few ratings the most.
    #[default]
    PerEntity,
}

/// Options of [`run_mf`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
// The factor model's options: one of its fields per option (and flag).
pub struct MfOptions {
    /// Training ratings. `None`: generate [`MfOptions::synth`].
    pub data: Option<PathBuf>,
    /// Test ratings. Without `data`, the synthetic test split.
    pub test: Option<PathBuf>,
    /// Layout of the ratings files.
    pub format: RatingsFormat,
    /// Number of factors `k`.
    pub rank: u32,
    /// Regularisation λ (>= 0).
    pub lambda: f64,
    /// How λ is spread over the ratings.
    pub reg: Regularization,
    /// Learning rate of the first epoch.
    pub lr: f64,
    /// Factor applied to the learning rate after each epoch, in `(0, 1]`.
    pub lr_decay: f64,
    /// Factors start uniform in `±init / sqrt(k)`.
    pub init: f64,
    /// Passes over the training ratings.
    pub epochs: u32,
    /// Ratings between synchronisations, at most (0: only at epoch ends).
    pub cb: u64,
    /// How models are merged.
    pub udf: Udf,
    /// Training RMSE to reach; its time is reported.
    pub goal_loss: Option<f64>,
    /// Stop once the goal loss is reached.
    pub stop_at_goal: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Print the summary as one JSON line.
    pub json: bool,
    /// No progress bar, no summary line (unless `json`).
    pub quiet: bool,
    /// Seed of the initial factors and of the rating order.
    pub seed: u64,
    /// Shuffle the local ratings once, then visit them in blocks taken in a
    /// new random order every epoch (see [`SHUFFLE_BLOCK`](super::SHUFFLE_BLOCK)).
    pub shuffle: bool,
    /// Evaluations per epoch (at least 1).
    pub evals_per_epoch: u32,
    /// Lock-free SGD threads over the rank's model (Hogwild on a stratified
    /// schedule; see the module documentation): 1 to 4 per core.
    pub threads: usize,
    /// Write `objective.png` and `objective.svg`.
    pub plot: bool,
    /// The data generated when `data` is `None`.
    pub synth: SynthMfData,
    /// The model file, checkpoints, resuming.
    #[serde(flatten)]
    pub keep: checkpoint::Keep,
}

impl Default for MfOptions {
    fn default() -> Self {
        MfOptions {
            data: None,
            test: None,
            format: RatingsFormat::Auto,
            rank: 10,
            lambda: 2.0,
            reg: Regularization::PerEntity,
            lr: 0.05,
            lr_decay: 0.95,
            init: 0.5,
            epochs: 20,
            cb: 1_000_000,
            udf: Udf::Avg,
            goal_loss: None,
            stop_at_goal: false,
            out: PathBuf::from("malt-train-mf"),
            json: false,
            quiet: false,
            seed: 1,
            shuffle: true,
            evals_per_epoch: 1,
            threads: 1,
            plot: true,
            synth: SynthMfData::default(),
            keep: checkpoint::Keep::default(),
        }
    }
}

impl MfOptions {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::InvalidOptions(m));
        if self.rank == 0 || self.rank > 4096 {
            return bad(format!("rank must be in 1..=4096, got {}", self.rank));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return bad(format!("lambda must be >= 0, got {}", self.lambda));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad(format!("lr decay must be in (0, 1], got {}", self.lr_decay));
        }
        if !(self.init.is_finite() && self.init >= 0.0) {
            return bad(format!("init must be >= 0, got {}", self.init));
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.evals_per_epoch == 0 {
            return bad("evals per epoch must be at least 1".into());
        }
        let most = max_threads();
        if !(1..=most).contains(&self.threads) {
            return bad(format!(
                "--threads must be in 1..={most} (at most 4 per core), got {}",
                self.threads
            ));
        }
        if let Some(g) = self.goal_loss {
            if !g.is_finite() {
                return bad(format!("goal loss must be finite, got {g}"));
            }
        }
        Ok(())
    }
}

/// The factor model; see the module documentation for the layout.
#[derive(Debug, Clone)]
struct MfModel {
    k: usize,
    users: usize,
    items: usize,
    m: Vec<f32>,
}

impl MfModel {
    fn new(users: usize, items: usize, k: usize, mean: f32, init: f64, seed: u64) -> Self {
        let len = 1 + (users + items) * (k + 1);
        let mut m = vec![0.0f32; len];
        m[0] = mean;
        let scale = (init / (k as f64).sqrt()) as f32;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if scale > 0.0 {
            for block in m[1..].chunks_exact_mut(k + 1) {
                for x in &mut block[1..] {
                    *x = rng.gen_range(-scale..scale);
                }
            }
        }
        MfModel { k, users, items, m }
    }

    fn item_offset(&self) -> usize {
        1 + self.users * (self.k + 1)
    }

    /// Prediction for any ids: unknown users or items leave their terms out.
    fn predict(&self, user: u32, item: u32) -> f64 {
        let k1 = self.k + 1;
        let (u, i) = (user as usize, item as usize);
        let mut r = f64::from(self.m[0]);
        let pu = (u < self.users).then(|| &self.m[1 + u * k1..1 + (u + 1) * k1]);
        let io = self.item_offset();
        let qi = (i < self.items).then(|| &self.m[io + i * k1..io + (i + 1) * k1]);
        if let Some(p) = pu {
            r += f64::from(p[0]);
        }
        if let Some(q) = qi {
            r += f64::from(q[0]);
        }
        if let (Some(p), Some(q)) = (pu, qi) {
            let dot: f32 = p[1..].iter().zip(&q[1..]).map(|(a, b)| a * b).sum();
            r += f64::from(dot);
        }
        r
    }

    /// One SGD step on a rating whose ids are within the model.
    #[inline]
    fn step(&mut self, r: &Rating, eta: f32, lu: f32, li: f32) {
        let k1 = self.k + 1;
        let io = self.item_offset();
        let (head, items) = self.m.split_at_mut(io);
        let mean = head[0];
        let u = 1 + r.user as usize * k1;
        let i = r.item as usize * k1;
        let p = &mut head[u..u + k1];
        let q = &mut items[i..i + k1];
        let mut pred = mean + p[0] + q[0];
        for (a, b) in p[1..].iter().zip(&q[1..]) {
            pred += a * b;
        }
        let e = r.value - pred;
        p[0] += eta * (e - lu * p[0]);
        q[0] += eta * (e - li * q[0]);
        for (a, b) in p[1..].iter_mut().zip(q[1..].iter_mut()) {
            let (pa, qb) = (*a, *b);
            *a += eta * (e * qb - lu * pa);
            *b += eta * (e * pa - li * qb);
        }
    }
}

/// The step of [`MfModel::step`] on rows given apart, operation for
/// operation (the tests check that both give the same bits): `p` is the
/// user's row and `q` the item's (bias, then factors), `mean` is `μ`. The
/// threads of [`Stratified`] take it; one thread keeps its own copy, whose
/// code is unchanged.
#[inline]
pub(super) fn sgd_step(
    p: &mut [f32],
    q: &mut [f32],
    mean: f32,
    value: f32,
    eta: f32,
    lu: f32,
    li: f32,
) {
    let mut pred = mean + p[0] + q[0];
    for (a, b) in p[1..].iter().zip(&q[1..]) {
        pred += a * b;
    }
    let e = value - pred;
    p[0] += eta * (e - lu * p[0]);
    q[0] += eta * (e - li * q[0]);
    for (a, b) in p[1..].iter_mut().zip(q[1..].iter_mut()) {
        let (pa, qb) = (*a, *b);
        *a += eta * (e * qb - lu * pa);
        *b += eta * (e * pa - li * qb);
    }
}

struct MfLearner {
    model: MfModel,
    train: Vec<Rating>,
    test: Option<Vec<Rating>>,
    lambda: f32,
    /// Per user then per item: `1 / (ratings of it over all ranks)`, for
    /// [`Regularization::PerEntity`]; empty otherwise.
    inv_counts: Vec<f32>,
    lr: f64,
    lr_decay: f64,
    eta: f32,
    /// Where the shards come from, to take over departed ranks' ratings.
    source: Source,
    /// The SGD threads when there are several.
    threads: Option<Stratified>,
}

/// The rating files of a run and how this rank reads them.
struct Source {
    files: DataFiles,
    format: RatingsFormat,
    shuffle: bool,
    seed: u64,
    rank: usize,
}

impl Source {
    fn load(
        &self,
        part: usize,
        parts: usize,
    ) -> Result<(Vec<Rating>, Option<Vec<Rating>>), TrainError> {
        let read = |path: &Path, part, parts| Ok(load_shard(path, part, parts, self.format)?);
        let shuffle = |mut train: Vec<Rating>| {
            if self.shuffle {
                train.shuffle(&mut load_rng(self.seed, self.rank));
            }
            train
        };
        self.files.load(part, parts, read, shuffle)
    }
}

impl Learner for MfLearner {
    fn reshard(&mut self, part: usize, parts: usize) -> Result<(), TrainError> {
        let (train, test) = self.source.load(part, parts)?;
        self.train = train;
        self.test = test;
        if let Some(t) = &mut self.threads {
            t.balance(&mut self.train, self.model.users, self.model.items);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.train.len()
    }

    fn begin_epoch(&mut self, epoch: u32) {
        self.eta = (self.lr * self.lr_decay.powi(epoch as i32)) as f32;
    }

    fn train(&mut self, order: &[u32]) {
        if let Some(t) = &mut self.threads {
            let steps = Steps {
                ratings: &self.train,
                k: self.model.k,
                users: self.model.users,
                eta: self.eta,
                lambda: self.lambda,
                inv_counts: &self.inv_counts,
            };
            t.train(&mut self.model.m, steps, order);
        } else if self.inv_counts.is_empty() {
            for &j in order {
                let r = self.train[j as usize];
                self.model.step(&r, self.eta, self.lambda, self.lambda);
            }
        } else {
            let (users, items) = self.inv_counts.split_at(self.model.users);
            for &j in order {
                let r = self.train[j as usize];
                let lu = self.lambda * users[r.user as usize];
                let li = self.lambda * items[r.item as usize];
                self.model.step(&r, self.eta, lu, li);
            }
        }
    }

    fn plain_model(&mut self) -> &mut [f32] {
        &mut self.model.m
    }

    fn eval_slots(&self) -> usize {
        4
    }

    fn eval_local(&mut self, out: &mut [f64]) {
        let sq = |rs: &[Rating]| -> f64 {
            rs.iter()
                .map(|r| {
                    let e = f64::from(r.value) - self.model.predict(r.user, r.item);
                    e * e
                })
                .sum()
        };
        out[0] = sq(&self.train);
        out[1] = self.train.len() as f64;
        if let Some(t) = &self.test {
            out[2] = sq(t);
            out[3] = t.len() as f64;
        }
    }

    fn eval_global(&self, sums: &[f64], _world: usize) -> (f64, Option<f64>) {
        let train = (sums[0] / sums[1].max(1.0)).sqrt();
        let test = (sums[3] > 0.0).then(|| (sums[2] / sums[3]).sqrt());
        (train, test)
    }
}

/// Trains the factor model on this rank's shard of ratings, synchronising
/// through `sync`; see the module documentation. Every rank of a job calls it
/// with the same options. Rank 0 writes `metrics.csv`, `summary.json` and
/// (with `plot`) `objective.{png,svg}` into `opts.out`.
pub fn run_mf(opts: &MfOptions, sync: &mut dyn ModelSync) -> Result<RunOutput, TrainError> {
    opts.validate()?;
    let wall = Instant::now();
    let rank = sync.rank();
    let world = sync.world();
    create_out(&opts.out)?;
    let synth = &opts.synth;
    let gen = synth.generator();
    let files = DataFiles::given_or_synthetic(
        opts.data.as_ref(),
        opts.test.as_ref(),
        sync,
        &opts.out.join("synth-ratings"),
        "ratings",
        synth,
        synth.ratings,
        |w| Ok(synth_ratings(&gen, w)?),
    )?;
    let source = Source {
        files,
        format: opts.format,
        shuffle: opts.shuffle,
        seed: opts.seed,
        rank,
    };
    let (train, test) = source.load(rank, world)?;
    let mut sums = [
        train.len() as f64,
        train.iter().map(|r| f64::from(r.value)).sum(),
        test.as_ref().map_or(0, |t| t.len()) as f64,
    ];
    sync.allreduce_sum(&mut sums)?;
    let n_train = sums[0].round() as u64;
    if n_train == 0 {
        return Err(TrainError::NoExamples(
            source.files.train.display().to_string(),
        ));
    }
    let mean = (sums[1] / sums[0]) as f32;
    let max_user = train
        .iter()
        .map(|r| r.user)
        .max()
        .map_or(0.0, |u| f64::from(u) + 1.0);
    let max_item = train
        .iter()
        .map(|r| r.item)
        .max()
        .map_or(0.0, |i| f64::from(i) + 1.0);
    let users = allreduce_max(sync, max_user)? as usize;
    let items = allreduce_max(sync, max_item)? as usize;
    let params = 1 + (users as u128 + items as u128) * (u128::from(opts.rank) + 1);
    if params > MAX_PARAMETERS {
        return Err(TrainError::InvalidOptions(format!(
            "{users} users and {items} items (largest ids + 1) with rank {} make {params} \
             parameters, more than {MAX_PARAMETERS}",
            opts.rank
        )));
    }

    let inv_counts = match opts.reg {
        Regularization::PerRating => Vec::new(),
        Regularization::PerEntity => {
            let mut counts = vec![0.0f64; users + items];
            for r in &train {
                counts[r.user as usize] += 1.0;
                counts[users + r.item as usize] += 1.0;
            }
            sync.allreduce_sum(&mut counts)?;
            counts
                .into_iter()
                .map(|c| if c > 0.0 { (1.0 / c) as f32 } else { 0.0 })
                .collect()
        }
    };

    let mut clock = Clock::running();
    let mut learner = MfLearner {
        model: MfModel::new(users, items, opts.rank as usize, mean, opts.init, opts.seed),
        train,
        test,
        lambda: opts.lambda as f32,
        inv_counts,
        lr: opts.lr,
        lr_decay: opts.lr_decay,
        eta: opts.lr as f32,
        source,
        threads: (opts.threads > 1).then(|| Stratified::new(opts.threads)),
    };
    if let Some(t) = &mut learner.threads {
        t.balance(&mut learner.train, users, items);
    }
    let mut metrics = metrics_writer(rank, &opts.out, TestMetric::Rmse)?;
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
        checkpoint: opts.keep.checkpoints("mf"),
        resume: opts.keep.resumed("mf", rank, learner.model.m.len())?,
    };
    let res = run_loop(&mut learner, sync, &cfg, &mut clock, metrics.as_mut())?;
    let summary = res.summary(
        RunFacts {
            app: "mf",
            metric: TestMetric::Rmse,
            train_examples: n_train,
            test_examples: sums[2].round() as u64,
            parameters: learner.model.m.len() as u64,
            lambda: opts.lambda,
            udf: opts.udf,
            cb: opts.cb,
            goal_loss: opts.goal_loss,
            // The floor holds on the synthetic test ratings only.
            noise_floor: (opts.data.is_none() && opts.test.is_none())
                .then_some(opts.synth.noise_stddev),
        },
        sync.world(),
        wall,
    );
    // The lowest surviving rank reports (rank 0 unless it has left).
    if sync.part().0 == 0 {
        Finish {
            title: format!(
                "matrix factorization, k={}, λ={}, {} rank{}{}",
                opts.rank,
                short_number(opts.lambda),
                world,
                if world == 1 { "" } else { "s" },
                if opts.threads > 1 {
                    format!(" x {} threads", opts.threads)
                } else {
                    String::new()
                }
            ),
            out: &opts.out,
            metric: TestMetric::Rmse,
            json: opts.json,
            quiet: opts.quiet,
            plot: opts.plot,
        }
        .write(&summary, &res.points)?;
    }
    if let (Some(path), 0) = (&opts.keep.model, sync.part().0) {
        let m = &learner.model;
        let header = model::ModelHeader {
            app: "mf".into(),
            values: 0,
            features: None,
            positive_class: None,
            max_features: None,
            users: Some(m.users as u64),
            items: Some(m.items as u64),
            rank: Some(m.k as u64),
            epochs: res.epochs_done,
            options: serde_json::to_value(opts).unwrap_or_default(),
        };
        model::write(path, header, &m.m, &[])?;
    }
    Ok(RunOutput {
        summary,
        points: res.points,
        model: learner.model.m,
    })
}

/// `malt predict` with an mf model: writes the predicted rating of each
/// line of `data` (`user item rating`, in the format the model was trained
/// on) to `out`, one per line, and returns the RMSE. The same arithmetic
/// as training's evaluation (unknown users or items leave their terms out).
pub fn predict_mf(
    file: &model::ModelFile,
    model_path: &Path,
    data: &Path,
    out: &mut dyn std::io::Write,
) -> Result<model::Scored, TrainError> {
    file.expect_app(model_path, "mf")?;
    let h = &file.header;
    let bad = |problem: String| TrainError::Model {
        file: model_path.display().to_string(),
        problem,
    };
    let (Some(users), Some(items), Some(k)) = (h.users, h.items, h.rank) else {
        return Err(bad("an mf model without users, items and rank".into()));
    };
    // The shape comes from the file: sums that overflow are refused.
    let want = users
        .checked_add(items)
        .zip(k.checked_add(1))
        .and_then(|(n, k1)| n.checked_mul(k1))
        .and_then(|x| x.checked_add(1));
    if want != Some(file.values.len() as u64) {
        return Err(bad(format!(
            "{} values for {users} users, {items} items and rank {k}",
            file.values.len()
        )));
    }
    let m = MfModel {
        k: k as usize,
        users: users as usize,
        items: items as usize,
        m: file.values.iter().map(|&v| v as f32).collect(),
    };
    let format = h
        .options
        .get("format")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default();
    let ratings = crate::data::ratings::load(data, format)?;
    let io = |e| TrainError::io(Path::new("standard output"), e);
    let mut sq = 0.0;
    for r in &ratings {
        let p = m.predict(r.user, r.item);
        let e = f64::from(r.value) - p;
        sq += e * e;
        writeln!(out, "{p}").map_err(io)?;
    }
    let n = ratings.len() as u64;
    Ok(model::Scored {
        app: "mf".into(),
        examples: n,
        test_error: None,
        test_rmse: (n > 0).then(|| (sq / n as f64).sqrt()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use crate::train::metrics::read_metrics;
    use crate::train::sync::{InProcessGroup, NoSync};
    use std::time::Duration;

    /// 20,000 training and 3,000 test ratings of 500 users and 200 items,
    /// rank 3, noise 0.5.
    fn small(out: &std::path::Path) -> MfOptions {
        MfOptions {
            out: out.to_path_buf(),
            rank: 3,
            lambda: 3.0,
            lr: 0.04,
            lr_decay: 0.95,
            init: 0.5,
            epochs: 20,
            cb: 2000,
            quiet: true,
            synth: SynthMfData {
                users: 500,
                items: 200,
                rank: 3,
                ratings: 20_000,
                test_ratings: 3_000,
                noise_stddev: 0.5,
                seed: 5,
            },
            ..MfOptions::default()
        }
    }

    fn rating(user: u32, item: u32, value: f32) -> Rating {
        Rating { user, item, value }
    }

    #[test]
    fn a_step_follows_the_gradient() {
        let mut m = MfModel::new(2, 3, 2, 1.0, 0.0, 1);
        // Factors: p_1 = (1, 2), q_2 = (3, -1); biases 0.5 and -0.25.
        let k1 = 3;
        let io = m.item_offset();
        m.m[1 + k1..1 + 2 * k1].copy_from_slice(&[0.5, 1.0, 2.0]);
        m.m[io + 2 * k1..io + 3 * k1].copy_from_slice(&[-0.25, 3.0, -1.0]);
        let r = rating(1, 2, 4.0);
        // r̂ = 1 + 0.5 - 0.25 + (3 - 2) = 2.25, e = 1.75.
        assert!((m.predict(1, 2) - 2.25).abs() < 1e-6);
        let (eta, lu, li) = (0.1f32, 0.2f32, 0.4f32);
        m.step(&r, eta, lu, li);
        let e = 1.75f32;
        let want_p = [
            0.5 + eta * (e - lu * 0.5),
            1.0 + eta * (e * 3.0 - lu * 1.0),
            2.0 + eta * (-e - lu * 2.0),
        ];
        let want_q = [
            -0.25 + eta * (e - li * -0.25),
            3.0 + eta * (e * 1.0 - li * 3.0),
            -1.0 + eta * (e * 2.0 + li),
        ];
        for (g, w) in m.m[1 + k1..1 + 2 * k1].iter().zip(want_p) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        for (g, w) in m.m[io + 2 * k1..io + 3 * k1].iter().zip(want_q) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        // The mean and the other users and items are untouched.
        assert_eq!(m.m[0], 1.0);
        assert_eq!(&m.m[1..1 + k1], &[0.0; 3]);
        // Unknown ids leave their terms out.
        assert!((m.predict(7, 2) - (1.0 - 0.25 + f64::from(want_q[0] + 0.25))).abs() < 1e-6);
        assert_eq!(m.predict(9, 9), 1.0);
    }

    #[test]
    fn initial_factors_depend_on_the_seed_only() {
        let a = MfModel::new(10, 5, 4, 3.0, 0.5, 9);
        let b = MfModel::new(10, 5, 4, 3.0, 0.5, 9);
        let c = MfModel::new(10, 5, 4, 3.0, 0.5, 10);
        assert_eq!(a.m, b.m);
        assert_ne!(a.m, c.m);
        let bound = 0.5 / 2.0;
        assert!(a.m[1..].iter().all(|x| x.abs() <= bound));
        // Biases start at zero.
        assert!(a.m[1..].chunks(5).all(|block| block[0] == 0.0));
    }

    #[test]
    fn single_rank_reaches_near_the_noise_floor() {
        let dir = TempDir::new("mf-single");
        let opts = small(dir.path());
        let out = run_mf(&opts, &mut NoSync).unwrap();
        let pts = &out.points;
        assert_eq!(pts.len(), 1 + opts.epochs as usize);
        let first = pts[0].test.unwrap();
        let last = pts.last().unwrap();
        let rmse = last.test.unwrap();
        // Predicting the mean scores about the ratings' spread (1.07 here);
        // the noise floor is 0.5 and a single run reaches about 0.54.
        assert!(first > 1.0, "initial test RMSE {first}");
        assert!(rmse < 0.60, "test RMSE {rmse}: {pts:?}");
        assert!(last.objective < pts[1].objective, "{pts:?}");
        assert_eq!(out.summary.test_rmse, Some(rmse));
        assert_eq!(out.summary.test_error, None);
        assert_eq!(out.summary.train_examples, 20_000);
        assert_eq!(out.summary.parameters, 1 + (500 + 200) * 4);
        let csv = read_metrics(&dir.path().join("metrics.csv")).unwrap();
        assert_eq!(csv.len(), pts.len());
        assert!(std::fs::read_to_string(dir.path().join("metrics.csv"))
            .unwrap()
            .starts_with("time_s,epoch,examples,objective,test_rmse\n"));
    }

    #[test]
    fn per_rating_regularisation_converges_too() {
        let dir = TempDir::new("mf-per-rating");
        let opts = MfOptions {
            reg: Regularization::PerRating,
            lambda: 0.02,
            lr: 0.02,
            ..small(dir.path())
        };
        let out = run_mf(&opts, &mut NoSync).unwrap();
        let rmse = out.points.last().unwrap().test.unwrap();
        assert!(rmse < 0.60, "test RMSE {rmse}");
    }

    /// Runs `opts` as two ranks (threads of this process).
    fn two_ranks(opts: &MfOptions) -> Vec<RunOutput> {
        let group = InProcessGroup::new(2, Duration::from_secs(120)).unwrap();
        let handles: Vec<_> = (0..2)
            .map(|r| {
                let mut member = group.member(r).unwrap();
                let opts = opts.clone();
                std::thread::spawn(move || run_mf(&opts, &mut member))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    }

    #[test]
    fn two_ranks_converge_and_agree() {
        for udf in [Udf::Avg, Udf::Sum] {
            let dir = TempDir::new("mf-two");
            let opts = MfOptions {
                udf,
                // Averaging halves the step of each rank's update, so twice
                // the rate; summing keeps the single-rank rate.
                lr: if udf == Udf::Avg { 0.08 } else { 0.04 },
                ..small(dir.path())
            };
            let outs = two_ranks(&opts);
            assert_eq!(outs[0].model, outs[1].model, "{udf}");
            let s = &outs[0].summary;
            assert_eq!(s.ranks, 2);
            assert_eq!(s.train_examples, 20_000);
            assert_eq!(s.examples, 20_000 * u64::from(opts.epochs));
            let rmse = s.test_rmse.unwrap();
            assert!(rmse < 0.60, "{udf}: test RMSE {rmse}: {:?}", outs[0].points);
        }
    }

    #[test]
    fn threads_take_the_sequential_steps_in_the_schedule_order() {
        let (users, items, k) = (40, 15, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ratings: Vec<Rating> = (0..3000)
            .map(|_| {
                rating(
                    rng.gen_range(0..users as u32),
                    rng.gen_range(0..items as u32),
                    rng.gen_range(1.0..5.0),
                )
            })
            .collect();
        let inv: Vec<f32> = (0..users + items)
            .map(|_| rng.gen_range(0.01..0.5))
            .collect();
        // The loop's order (shuffled windows, the last one short), and one
        // that takes no window in place.
        let n = ratings.len();
        let mut windows: Vec<u32> = (0..n.div_ceil(crate::train::SHUFFLE_BLOCK) as u32).collect();
        windows.shuffle(&mut rng);
        let mut shuffled = Vec::new();
        crate::train::block_order(&windows, n, &mut shuffled);
        let reversed: Vec<u32> = (0..n as u32).rev().collect();
        let (eta, lambda) = (0.03f32, 0.7f32);
        let plain_steps = |m: &mut MfModel, rs: &[Rating], seq: &[u32], inv_counts: &[f32]| {
            for &j in seq {
                let r = rs[j as usize];
                let (lu, li) = if inv_counts.is_empty() {
                    (lambda, lambda)
                } else {
                    (
                        lambda * inv_counts[r.user as usize],
                        lambda * inv_counts[users + r.item as usize],
                    )
                };
                m.step(&r, eta, lu, li);
            }
        };
        for (inv_counts, order) in [(&[][..], &shuffled), (&inv[..], &reversed)] {
            // 16 threads: more blocks than items per block, some empty.
            for threads in [1, 2, 3, 16] {
                let mut h = Stratified::new(threads);
                let mut mine = ratings.clone();
                h.balance(&mut mine, users, items);
                // The ratings, regrouped within windows.
                let mut a = mine.clone();
                let mut b = ratings.clone();
                a.sort_by(|x, y| {
                    (x.user, x.item, x.value)
                        .partial_cmp(&(y.user, y.item, y.value))
                        .unwrap()
                });
                b.sort_by(|x, y| {
                    (x.user, x.item, x.value)
                        .partial_cmp(&(y.user, y.item, y.value))
                        .unwrap()
                });
                assert_eq!(a, b);
                if threads == 1 {
                    assert_eq!(mine, ratings);
                }
                let steps = Steps {
                    ratings: &mine,
                    k,
                    users,
                    eta,
                    lambda,
                    inv_counts,
                };
                // The schedule: sub-step by sub-step, thread by thread
                // (block (a, (a + s) mod T)), chunk by chunk of the round.
                let schedule = |order: &[u32]| {
                    let per = order.len().div_ceil(threads).max(1);
                    let mut seq = Vec::new();
                    for s in 0..threads {
                        for a in 0..threads {
                            for chunk in order.chunks(per) {
                                seq.extend(chunk.iter().filter(|&&j| {
                                    h.blocks_of(&mine[j as usize]) == (a, (a + s) % threads)
                                }));
                            }
                        }
                    }
                    seq
                };
                let want = schedule(order);
                let few = schedule(&order[..3]);
                // Every step is taken once; one thread keeps the order.
                let mut sorted = want.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
                if threads == 1 {
                    assert_eq!(&want, order);
                }
                // Two rounds on the same buffers: bit for bit the sequential
                // steps in that order, whatever the threads' timing.
                let mut plain = MfModel::new(users, items, k, 3.0, 0.5, 7);
                let mut model = plain.clone();
                for _ in 0..2 {
                    plain_steps(&mut plain, &mine, &want, inv_counts);
                    h.train(&mut model.m, steps, order);
                }
                assert_eq!(plain.m, model.m, "{threads} threads");
                assert_eq!(model.m[0], 3.0);
                // Fewer ratings than threads, and no ratings, are fine.
                h.train(&mut model.m, steps, &order[..3]);
                plain_steps(&mut plain, &mine, &few, inv_counts);
                assert_eq!(plain.m, model.m, "{threads} threads, 3 ratings");
                h.train(&mut model.m, steps, &[]);
                assert_eq!(plain.m, model.m);
            }
        }
    }

    #[test]
    fn threads_reach_the_rmse_of_one_thread() {
        let run = |threads: usize| {
            let dir = TempDir::new("mf-threads-rmse");
            let opts = MfOptions {
                threads,
                ..small(dir.path())
            };
            run_mf(&opts, &mut NoSync).unwrap().summary
        };
        let one = run(1);
        for threads in [2, 3] {
            let many = run(threads);
            assert_eq!(many.examples, one.examples);
            for (a, b, what) in [
                (one.final_loss, many.final_loss, "training"),
                (one.test_rmse.unwrap(), many.test_rmse.unwrap(), "test"),
            ] {
                assert!(
                    (a - b).abs() < 0.02 * a,
                    "{threads} threads: {what} RMSE {b} against {a} with one"
                );
            }
        }
    }

    #[test]
    fn two_ranks_of_two_threads_converge_and_agree() {
        let dir = TempDir::new("mf-two-threaded");
        let opts = MfOptions {
            threads: 2,
            lr: 0.08,
            ..small(dir.path())
        };
        let outs = two_ranks(&opts);
        assert_eq!(outs[0].model, outs[1].model);
        let rmse = outs[0].summary.test_rmse.unwrap();
        assert!(rmse < 0.60, "test RMSE {rmse}: {:?}", outs[0].points);
    }

    #[test]
    fn threads_are_checked() {
        let dir = TempDir::new("mf-threads");
        for threads in [0, max_threads() + 1, usize::MAX] {
            let opts = MfOptions {
                threads,
                ..small(dir.path())
            };
            match run_mf(&opts, &mut NoSync) {
                Err(TrainError::InvalidOptions(m)) => {
                    assert!(m.contains("--threads"), "{m}");
                    assert!(m.contains(&threads.to_string()), "{m}");
                }
                other => panic!("{threads} threads: {other:?}"),
            }
        }
        let opts = MfOptions {
            threads: max_threads(),
            epochs: 1,
            ..small(dir.path())
        };
        assert!(run_mf(&opts, &mut NoSync).is_ok());
    }

    #[test]
    fn bad_options_and_inputs_are_typed_errors() {
        let dir = TempDir::new("mf-bad");
        for opts in [
            MfOptions {
                rank: 0,
                ..small(dir.path())
            },
            MfOptions {
                lr: -1.0,
                ..small(dir.path())
            },
            MfOptions {
                lr_decay: 0.0,
                ..small(dir.path())
            },
            MfOptions {
                lambda: f64::NAN,
                ..small(dir.path())
            },
        ] {
            assert!(matches!(
                run_mf(&opts, &mut NoSync),
                Err(TrainError::InvalidOptions(_))
            ));
        }
        let bad = dir.path().join("bad.ratings");
        std::fs::write(&bad, "1 2 3\n1 x 3\n").unwrap();
        let err = run_mf(
            &MfOptions {
                data: Some(bad),
                ..small(dir.path())
            },
            &mut NoSync,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad.ratings:2"), "{err}");
        let huge = dir.path().join("huge.ratings");
        std::fs::write(&huge, "1 2 3\n4000000000 1 2\n").unwrap();
        let err = run_mf(
            &MfOptions {
                data: Some(huge),
                ..small(dir.path())
            },
            &mut NoSync,
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::InvalidOptions(_)), "{err}");
    }
}
