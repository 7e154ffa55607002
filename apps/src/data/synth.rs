//! Deterministic synthetic data sets.
//!
//! Both generators draw every random number from ChaCha8 streams: the hidden
//! model from streams of the *model seed*, the rows from another stream of
//! the *seed* (the sample). The model seed defaults to the seed, so one seed
//! always yields the same bytes. The random streams are portable; the
//! floating-point functions used on them (`ln`, `powf`, `cos`) come from the
//! platform's math library, so bytes are guaranteed equal for the same build
//! of malt on the same platform.
//!
//! # Training and test sets from one model
//!
//! Two ways give files drawn from the same hidden model:
//!
//! - **The same model seed, different seeds** (`model_seed`, `malt data ...
//!   --model-seed M --seed S`): independent samples of one model. For
//!   ratings, a (user, item) pair may then be rated in both files (with
//!   independent noise).
//! - **One stream split in two** (`synth_*_files` with a test part, `malt
//!   data ... --test-rows N --test-out FILE`): the rows after the training
//!   rows go to the test file. The training file is byte for byte the file
//!   written without a test part, and for ratings no pair of the test file
//!   is in the training file. `malt train` splits its built-in data this way.
//!
//! # `synth_sparse`: RCV1-like sparse binary classification
//!
//! - **Features** are ranked by popularity; feature ranks are mapped to
//!   feature ids by a seeded permutation, so frequent features are spread over
//!   the index range. A row draws its features from a Zipf–Mandelbrot law,
//!   `P(rank r) ∝ 1 / (r + 1 + offset)^exponent` (defaults
//!   [`DEFAULT_ZIPF_EXPONENT`] and [`DEFAULT_ZIPF_OFFSET`]), without repetition.
//! - **Non-zeros per row** are uniform in `[nnz - nnz/2, nnz + nnz/2]`
//!   (clamped to `[1, features]`), so the mean is `nnz`.
//! - **Values** are TF-IDF-like: a term count `tf` (1, then +1 with
//!   probability 0.3 each time, at most 16) gives `(1 + ln tf) * idf`, where
//!   `idf = 1 + ln(1 / df)` and `df` is the expected fraction of rows holding
//!   the feature. Each row is scaled to unit L2 norm and values are rounded to
//!   multiples of 1e-5 (at least 1e-5), so every value is positive and short
//!   to write.
//! - **Labels** come from a hidden linear separator `w` (one standard normal
//!   weight per feature) and a bias set to minus the median score of a pilot
//!   sample of 4,095 rows, which balances the classes: `y = sign(w·x + b)`
//!   computed on the written values. Then each label is flipped with
//!   probability `label_noise` (default [`DEFAULT_LABEL_NOISE`] = 5%), so the
//!   best possible test error is about that rate.
//!
//! # `synth_dense`: small dense sets shaped like digits
//!
//! See the `dense` module: Gaussian clusters with a shared low-rank part,
//! one class of ten against the rest, standardised features.
//!
//! # `synth_ratings`: Netflix-like ratings
//!
//! - **Popularity**: users and items are drawn from Zipf–Mandelbrot laws over
//!   their popularity ranks (exponent [`DEFAULT_POPULARITY_EXPONENT`], offset
//!   [`DEFAULT_POPULARITY_OFFSET`]), ranks mapped to ids by seeded
//!   permutations. A (user, item) pair is rated at most once.
//! - **Ratings**: `rating = u_user · v_item + ε`, with `rank`-dimensional
//!   factors whose entries are independent normals with mean `sqrt(mean/rank)`,
//!   and a spread chosen so that `u·v` has mean `mean` (default
//!   [`DEFAULT_RATING_MEAN`]) and standard deviation [`RATING_SIGNAL_STDDEV`];
//!   `ε ~ N(0, noise_stddev²)` (default [`DEFAULT_RATING_NOISE_STDDEV`]).
//!   Ratings are not clipped and are written rounded to 0.001.
//! - **The noise floor**: the true low-rank model itself has an expected RMSE
//!   of `noise_stddev` on these ratings, so no model can do better on held-out
//!   ratings; the summary reports it and the RMSE the true model actually has
//!   on the generated ratings.
//! - Users are written as ids in `0..users`, items in `0..items`, one
//!   `user item rating` line per rating, in random order.
//!
//! # Limits
//!
//! The hidden models are held in memory, so their sizes are bounded:
//! `synth_sparse` takes at most [`MAX_SYNTH_FEATURES`] features (about 50
//! bytes each); `synth_ratings` at most [`MAX_SYNTH_ENTITIES`] users and as
//! many items, [`MAX_SYNTH_FACTORS`] factor values (`(users + items) *
//! rank`), and [`MAX_SYNTH_RATINGS`] ratings (every pair written is
//! remembered so that none repeats). Rows of `synth_sparse` are streamed
//! and not bounded. Options beyond a limit are a
//! [`SynthError::InvalidOptions`] naming it.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::libsvm::{format_line, push_f64, push_u64, Feature};

mod alias;
mod dense;
mod files;
use alias::Alias;
pub use dense::{
    synth_dense, synth_dense_files, SynthDenseOptions, SynthDenseSummary, DEFAULT_POSITIVES,
    DEFAULT_SPREAD,
};
use files::Part;
pub use files::{synth_ratings_file, synth_ratings_files, synth_sparse_file, synth_sparse_files};

/// Default probability that a `synth_sparse` label is flipped.
pub const DEFAULT_LABEL_NOISE: f64 = 0.05;
/// Default Zipf exponent of `synth_sparse` feature popularity.
pub const DEFAULT_ZIPF_EXPONENT: f64 = 1.0;
/// Default Zipf–Mandelbrot offset of `synth_sparse` feature popularity.
pub const DEFAULT_ZIPF_OFFSET: f64 = 20.0;
/// Default standard deviation of the Gaussian noise added to each rating:
/// the RMSE floor that no model can beat on held-out ratings.
pub const DEFAULT_RATING_NOISE_STDDEV: f64 = 0.5;
/// Default mean of the noiseless ratings.
pub const DEFAULT_RATING_MEAN: f64 = 3.6;
/// Standard deviation of the noiseless ratings `u·v`.
pub const RATING_SIGNAL_STDDEV: f64 = 1.0;
/// Default Zipf exponent of user and item popularity.
pub const DEFAULT_POPULARITY_EXPONENT: f64 = 0.8;
/// Default Zipf–Mandelbrot offset of user and item popularity.
pub const DEFAULT_POPULARITY_OFFSET: f64 = 100.0;

/// Most features of `synth_sparse`: 2^24 = 16,777,216 (about 800 MiB of
/// hidden model).
pub const MAX_SYNTH_FEATURES: u32 = 1 << 24;
/// Most users, and most items, of `synth_ratings`: 2^24.
pub const MAX_SYNTH_ENTITIES: u32 = 1 << 24;
/// Most factor values `(users + items) * rank` of `synth_ratings`: 2^28
/// (1 GiB of `f32`).
pub const MAX_SYNTH_FACTORS: u64 = 1 << 28;
/// Most ratings of `synth_ratings`: 2^27 = 134,217,728 (Netflix has about
/// 100 million).
pub const MAX_SYNTH_RATINGS: u64 = 1 << 27;

/// Rows of the pilot sample that sets the separator's bias.
const PILOT_ROWS: usize = 4095;
/// Values are multiples of this.
const VALUE_QUANTUM: f64 = 1e-5;

/// Errors of the generators.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// Writing failed.
    #[error("{file}: {source}")]
    Io {
        /// The output file (or `(output)`).
        file: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

fn invalid(msg: impl Into<String>) -> SynthError {
    SynthError::InvalidOptions(msg.into())
}

/// Options of [`synth_sparse`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthSparseOptions {
    /// Number of examples (at least 1).
    pub rows: u64,
    /// Number of features: ids are `0..features` (written 1-based).
    pub features: u32,
    /// Mean non-zeros per row, `1..=features/2`.
    pub nnz: u32,
    /// Seed of the rows (the sample), and of the hidden model unless
    /// `model_seed` is given.
    pub seed: u64,
    /// Seed of the hidden model (feature popularity, its permutation, the
    /// separator and its bias); `None`: `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
    /// Probability that a label is flipped, in `[0, 0.5)`.
    pub label_noise: f64,
    /// Zipf exponent of feature popularity (finite, `>= 0`).
    pub zipf_exponent: f64,
    /// Zipf–Mandelbrot offset of feature popularity (finite, `>= 0`).
    pub zipf_offset: f64,
}

impl SynthSparseOptions {
    /// The given sizes and seed with the default noise and popularity law.
    pub fn new(rows: u64, features: u32, nnz: u32, seed: u64) -> Self {
        SynthSparseOptions {
            rows,
            features,
            nnz,
            seed,
            model_seed: None,
            label_noise: DEFAULT_LABEL_NOISE,
            zipf_exponent: DEFAULT_ZIPF_EXPONENT,
            zipf_offset: DEFAULT_ZIPF_OFFSET,
        }
    }

    /// The seed the hidden model is drawn from.
    pub fn model_seed(&self) -> u64 {
        self.model_seed.unwrap_or(self.seed)
    }

    fn validate(&self) -> Result<(), SynthError> {
        if self.rows == 0 {
            return Err(invalid("rows must be at least 1"));
        }
        if !(2..=MAX_SYNTH_FEATURES).contains(&self.features) {
            return Err(invalid(format!(
                "features must be in 2..={MAX_SYNTH_FEATURES} (got {})",
                self.features
            )));
        }
        if self.nnz == 0 || self.nnz > self.features / 2 {
            return Err(invalid(format!(
                "nnz must be in 1..={} (half the features), got {}",
                self.features / 2,
                self.nnz
            )));
        }
        if !(0.0..0.5).contains(&self.label_noise) {
            return Err(invalid(format!(
                "label noise must be in [0, 0.5), got {}",
                self.label_noise
            )));
        }
        check_law("zipf", self.zipf_exponent, self.zipf_offset)
    }
}

fn check_law(what: &str, exponent: f64, offset: f64) -> Result<(), SynthError> {
    if !exponent.is_finite() || exponent < 0.0 {
        return Err(invalid(format!(
            "{what} exponent must be finite and >= 0, got {exponent}"
        )));
    }
    if !offset.is_finite() || offset < 0.0 {
        return Err(invalid(format!(
            "{what} offset must be finite and >= 0, got {offset}"
        )));
    }
    Ok(())
}

/// What [`synth_sparse`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthSparseSummary {
    /// Examples written.
    pub rows: u64,
    /// Number of features (ids `0..features`).
    pub features: u32,
    /// Non-zeros written in total.
    pub nnz: u64,
    /// Examples labelled +1.
    pub positives: u64,
    /// Labels flipped by the noise.
    pub flipped: u64,
    /// The flip probability.
    pub label_noise: f64,
    /// The seed.
    pub seed: u64,
    /// The model seed, when given apart from the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
}

/// `1 / (r + 1 + offset)^exponent` for ranks `0..n`.
fn zipf_weights(n: usize, exponent: f64, offset: f64) -> Vec<f64> {
    (0..n)
        .map(|r| (r as f64 + 1.0 + offset).powf(-exponent))
        .collect()
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>(); // in (0, 1]
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// The hidden part of `synth_sparse`: popularity law, idf, separator.
#[derive(Debug)]
pub(crate) struct SparseModel {
    popularity: Alias,
    rank_to_feature: Vec<u32>,
    idf: Vec<f64>,
    /// Separator weight of each feature id.
    pub(crate) weights: Vec<f32>,
    /// Separator bias.
    pub(crate) bias: f64,
    nnz_lo: u32,
    nnz_hi: u32,
}

/// Reused buffers of the row generator.
#[derive(Debug, Default)]
struct RowScratch {
    /// `mark[rank] == stamp` when the rank is in the current row.
    mark: Vec<u64>,
    stamp: u64,
    row: Vec<Feature>,
}

impl SparseModel {
    pub(crate) fn new(opts: &SynthSparseOptions) -> SparseModel {
        let d = opts.features as usize;
        let mut r = rng(opts.model_seed(), 0);
        let weights_by_rank = zipf_weights(d, opts.zipf_exponent, opts.zipf_offset);
        let total: f64 = weights_by_rank.iter().sum();
        let k = f64::from(opts.nnz);
        let idf = weights_by_rank
            .iter()
            .map(|w| {
                let p = w / total;
                // Expected fraction of rows that hold this feature.
                let df = (1.0 - (1.0 - p).powf(k)).max(1e-12);
                1.0 + (1.0 / df).ln()
            })
            .collect();
        let mut rank_to_feature: Vec<u32> = (0..opts.features).collect();
        rank_to_feature.shuffle(&mut r);
        let weights = (0..d).map(|_| gaussian(&mut r) as f32).collect();
        let nnz_lo = (opts.nnz - opts.nnz / 2).max(1);
        let nnz_hi = (opts.nnz + (opts.nnz - nnz_lo)).min(opts.features);
        let mut model = SparseModel {
            popularity: Alias::new(&weights_by_rank),
            rank_to_feature,
            idf,
            weights,
            bias: 0.0,
            nnz_lo,
            nnz_hi,
        };
        // Balance the classes: bias = -median score of a pilot sample.
        let mut pilot = rng(opts.model_seed(), 1);
        let mut scratch = RowScratch::default();
        let mut scores: Vec<f64> = (0..PILOT_ROWS)
            .map(|_| model.row(&mut pilot, &mut scratch))
            .collect();
        scores.sort_by(f64::total_cmp);
        model.bias = -scores[PILOT_ROWS / 2];
        model
    }

    /// `w·x` of a row held in `features`.
    pub(crate) fn score(&self, features: &[Feature]) -> f64 {
        features
            .iter()
            .map(|f| f64::from(self.weights[f.index as usize]) * f64::from(f.value))
            .sum()
    }

    /// Draws a row into `scratch.row` (sorted by index, unit norm, quantized)
    /// and returns its score without the bias.
    fn row(&self, rng: &mut ChaCha8Rng, scratch: &mut RowScratch) -> f64 {
        let d = self.rank_to_feature.len();
        if scratch.mark.len() != d {
            scratch.mark = vec![0; d];
        }
        scratch.stamp += 1;
        let stamp = scratch.stamp;
        let k = rng.gen_range(self.nnz_lo..=self.nnz_hi) as usize;
        scratch.row.clear();
        // Popularity draws, then uniform draws if the popular features keep
        // colliding (only for rows that are a large part of all features).
        let mut attempts = 0usize;
        while scratch.row.len() < k {
            attempts += 1;
            let rank = if attempts <= 8 * k + 64 {
                self.popularity.sample(rng)
            } else {
                rng.gen_range(0..d)
            };
            if scratch.mark[rank] == stamp {
                continue;
            }
            scratch.mark[rank] = stamp;
            let mut tf = 1u32;
            while tf < 16 && rng.gen::<f64>() < 0.3 {
                tf += 1;
            }
            let value = (1.0 + f64::from(tf).ln()) * self.idf[rank];
            scratch.row.push(Feature {
                index: self.rank_to_feature[rank],
                // Holds the unnormalized value until the norm is known.
                value: value as f32,
            });
        }
        scratch.row.sort_unstable_by_key(|f| f.index);
        let norm = scratch
            .row
            .iter()
            .map(|f| f64::from(f.value) * f64::from(f.value))
            .sum::<f64>()
            .sqrt();
        for f in &mut scratch.row {
            let q = (f64::from(f.value) / norm / VALUE_QUANTUM).round().max(1.0);
            f.value = (q * VALUE_QUANTUM) as f32;
        }
        self.score(&scratch.row)
    }
}

/// Writes `opts.rows` RCV1-like examples in LIBSVM format to `out` (buffered
/// internally). See the module documentation for the generating process.
pub fn synth_sparse<W: Write>(
    opts: &SynthSparseOptions,
    out: W,
) -> Result<SynthSparseSummary, SynthError> {
    opts.validate()?;
    let mut parts = [Part::new(out, opts.rows, "(output)")];
    let mut summaries = sparse_parts(opts, &mut parts)?;
    Ok(summaries.remove(0))
}

/// Writes `opts.rows` rows (the rows of the parts, in order) from one model
/// and one stream; a summary per part. `opts` must be valid.
fn sparse_parts<W: Write>(
    opts: &SynthSparseOptions,
    parts: &mut [Part<W>],
) -> Result<Vec<SynthSparseSummary>, SynthError> {
    debug_assert_eq!(parts.iter().map(|p| p.rows).sum::<u64>(), opts.rows);
    let model = SparseModel::new(opts);
    let mut r = rng(opts.seed, 2);
    let mut scratch = RowScratch::default();
    let mut line = Vec::with_capacity(4096);
    let mut summaries = Vec::with_capacity(parts.len());
    for part in parts {
        let name = part.name.clone();
        let io_err = |source| SynthError::Io {
            file: name.clone(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, &mut part.out);
        let mut summary = SynthSparseSummary {
            rows: part.rows,
            features: opts.features,
            nnz: 0,
            positives: 0,
            flipped: 0,
            label_noise: opts.label_noise,
            seed: opts.seed,
            model_seed: opts.model_seed,
        };
        for _ in 0..part.rows {
            let score = model.row(&mut r, &mut scratch) + model.bias;
            let mut label = if score > 0.0 { 1.0 } else { -1.0 };
            if r.gen::<f64>() < opts.label_noise {
                label = -label;
                summary.flipped += 1;
            }
            if label > 0.0 {
                summary.positives += 1;
            }
            summary.nnz += scratch.row.len() as u64;
            line.clear();
            format_line(label, None, &scratch.row, &mut line)
                .map_err(|p| io_err(io::Error::new(io::ErrorKind::InvalidData, p.to_string())))?;
            out.write_all(&line).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        summaries.push(summary);
    }
    Ok(summaries)
}

/// Options of [`synth_ratings`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthRatingsOptions {
    /// Number of users (ids `0..users`).
    pub users: u32,
    /// Number of items (ids `0..items`).
    pub items: u32,
    /// Rank of the hidden factor model (at least 1).
    pub rank: u32,
    /// Number of ratings, at most half of `users * items`.
    pub ratings: u64,
    /// Seed of the ratings (the sample), and of the hidden model unless
    /// `model_seed` is given.
    pub seed: u64,
    /// Seed of the hidden model (factors, popularity and the ids'
    /// permutations); `None`: `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
    /// Standard deviation of the rating noise (the RMSE floor).
    pub noise_stddev: f64,
    /// Mean of the noiseless ratings (`>= 0`).
    pub mean: f64,
    /// Zipf exponent of user and item popularity.
    pub popularity_exponent: f64,
    /// Zipf–Mandelbrot offset of user and item popularity.
    pub popularity_offset: f64,
}

impl SynthRatingsOptions {
    /// The given sizes and seed with the default noise, mean and popularity.
    pub fn new(users: u32, items: u32, rank: u32, ratings: u64, seed: u64) -> Self {
        SynthRatingsOptions {
            users,
            items,
            rank,
            ratings,
            seed,
            model_seed: None,
            noise_stddev: DEFAULT_RATING_NOISE_STDDEV,
            mean: DEFAULT_RATING_MEAN,
            popularity_exponent: DEFAULT_POPULARITY_EXPONENT,
            popularity_offset: DEFAULT_POPULARITY_OFFSET,
        }
    }

    /// The seed the hidden model is drawn from.
    pub fn model_seed(&self) -> u64 {
        self.model_seed.unwrap_or(self.seed)
    }

    fn validate(&self) -> Result<(), SynthError> {
        if self.users == 0 || self.items == 0 {
            return Err(invalid("users and items must be at least 1"));
        }
        if self.users > MAX_SYNTH_ENTITIES || self.items > MAX_SYNTH_ENTITIES {
            return Err(invalid(format!(
                "users and items must be at most {MAX_SYNTH_ENTITIES} each, got {} and {}",
                self.users, self.items
            )));
        }
        if self.rank == 0 || self.rank > 4096 {
            return Err(invalid(format!(
                "rank must be in 1..=4096, got {}",
                self.rank
            )));
        }
        let factors = (u64::from(self.users) + u64::from(self.items)) * u64::from(self.rank);
        if factors > MAX_SYNTH_FACTORS {
            return Err(invalid(format!(
                "(users + items) x rank = {factors} factor values, more than the limit of \
                 {MAX_SYNTH_FACTORS}"
            )));
        }
        if self.ratings > MAX_SYNTH_RATINGS {
            return Err(invalid(format!(
                "ratings must be at most {MAX_SYNTH_RATINGS}, got {}",
                self.ratings
            )));
        }
        let cells = u128::from(self.users) * u128::from(self.items);
        if self.ratings == 0 || u128::from(self.ratings) > cells / 2 {
            return Err(invalid(format!(
                "ratings must be in 1..={} (half of users x items), got {}",
                cells / 2,
                self.ratings
            )));
        }
        if !self.noise_stddev.is_finite() || self.noise_stddev < 0.0 {
            return Err(invalid(format!(
                "noise stddev must be finite and >= 0, got {}",
                self.noise_stddev
            )));
        }
        if !self.mean.is_finite() || self.mean < 0.0 {
            return Err(invalid(format!(
                "mean must be finite and >= 0, got {}",
                self.mean
            )));
        }
        check_law(
            "popularity",
            self.popularity_exponent,
            self.popularity_offset,
        )
    }
}

/// What [`synth_ratings`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthRatingsSummary {
    /// Number of users.
    pub users: u32,
    /// Number of items.
    pub items: u32,
    /// Rank of the hidden model.
    pub rank: u32,
    /// Ratings written.
    pub ratings: u64,
    /// The seed.
    pub seed: u64,
    /// The model seed, when given apart from the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
    /// Standard deviation of the added noise: the expected RMSE of the true
    /// model, the floor for any model on held-out ratings.
    pub noise_stddev: f64,
    /// RMSE of the true model on the written ratings (close to
    /// `noise_stddev`).
    pub true_model_rmse: f64,
    /// Mean of the written ratings.
    pub mean_rating: f64,
    /// Standard deviation of the written ratings.
    pub rating_stddev: f64,
    /// Distinct users with at least one rating.
    pub active_users: u32,
    /// Distinct items with at least one rating.
    pub active_items: u32,
}

/// The hidden part of `synth_ratings`.
#[derive(Debug)]
pub(crate) struct RatingsModel {
    users: Alias,
    items: Alias,
    user_ids: Vec<u32>,
    item_ids: Vec<u32>,
    rank: usize,
    /// `users × rank`, row-major by user id.
    pub(crate) u: Vec<f32>,
    /// `items × rank`, row-major by item id.
    pub(crate) v: Vec<f32>,
}

impl RatingsModel {
    pub(crate) fn new(opts: &SynthRatingsOptions) -> RatingsModel {
        let mut r = rng(opts.model_seed(), 0);
        let rank = opts.rank as usize;
        let rk = f64::from(opts.rank);
        // Entries ~ N(mu, s2): E[u·v] = rank mu² = mean and
        // Var[u·v] = rank (2 mu² s2 + s2²) = signal².
        let mu = (opts.mean / rk).sqrt();
        let signal = RATING_SIGNAL_STDDEV * RATING_SIGNAL_STDDEV;
        let s2 = ((opts.mean * opts.mean + rk * signal).sqrt() - opts.mean) / rk;
        let s = s2.sqrt();
        let mut factors = |n: u32| -> Vec<f32> {
            (0..n as usize * rank)
                .map(|_| (mu + s * gaussian(&mut r)) as f32)
                .collect()
        };
        let u = factors(opts.users);
        let v = factors(opts.items);
        let mut user_ids: Vec<u32> = (0..opts.users).collect();
        user_ids.shuffle(&mut r);
        let mut item_ids: Vec<u32> = (0..opts.items).collect();
        item_ids.shuffle(&mut r);
        let law = |n: u32| {
            Alias::new(&zipf_weights(
                n as usize,
                opts.popularity_exponent,
                opts.popularity_offset,
            ))
        };
        RatingsModel {
            users: law(opts.users),
            items: law(opts.items),
            user_ids,
            item_ids,
            rank,
            u,
            v,
        }
    }

    /// The noiseless rating of `user` for `item`.
    pub(crate) fn predict(&self, user: u32, item: u32) -> f64 {
        let a = &self.u[user as usize * self.rank..][..self.rank];
        let b = &self.v[item as usize * self.rank..][..self.rank];
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }
}

/// Writes `opts.ratings` Netflix-like `user item rating` lines to `out`
/// (buffered internally). See the module documentation for the generating
/// process; the summary carries the noise floor.
pub fn synth_ratings<W: Write>(
    opts: &SynthRatingsOptions,
    out: W,
) -> Result<SynthRatingsSummary, SynthError> {
    opts.validate()?;
    let mut parts = [Part::new(out, opts.ratings, "(output)")];
    let mut summaries = ratings_parts(opts, &mut parts)?;
    Ok(summaries.remove(0))
}

/// Writes `opts.ratings` ratings (those of the parts, in order) from one
/// model and one stream, no pair twice over all parts; a summary per part.
/// `opts` must be valid.
fn ratings_parts<W: Write>(
    opts: &SynthRatingsOptions,
    parts: &mut [Part<W>],
) -> Result<Vec<SynthRatingsSummary>, SynthError> {
    debug_assert_eq!(parts.iter().map(|p| p.rows).sum::<u64>(), opts.ratings);
    let model = RatingsModel::new(opts);
    let mut r = rng(opts.seed, 1);
    let mut seen: HashSet<u64> = HashSet::with_capacity(opts.ratings.min(1 << 26) as usize);
    let mut line = Vec::with_capacity(64);
    let mut summaries = Vec::with_capacity(parts.len());
    for part in parts {
        let name = part.name.clone();
        let io_err = |source| SynthError::Io {
            file: name.clone(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, &mut part.out);
        let mut user_seen = vec![false; opts.users as usize];
        let mut item_seen = vec![false; opts.items as usize];
        let (mut sum, mut sum_sq, mut err_sq) = (0.0f64, 0.0f64, 0.0f64);
        for _ in 0..part.rows {
            // Popular pairs collide; after many collisions fall back to
            // uniform draws, which succeed quickly since at most half the
            // pairs are rated.
            let mut attempts = 0u32;
            let (user, item) = loop {
                attempts += 1;
                let (user, item) = if attempts <= 64 {
                    (
                        model.user_ids[model.users.sample(&mut r)],
                        model.item_ids[model.items.sample(&mut r)],
                    )
                } else {
                    (r.gen_range(0..opts.users), r.gen_range(0..opts.items))
                };
                if seen.insert(u64::from(user) << 32 | u64::from(item)) {
                    break (user, item);
                }
            };
            user_seen[user as usize] = true;
            item_seen[item as usize] = true;
            let truth = model.predict(user, item);
            let noisy = truth + opts.noise_stddev * gaussian(&mut r);
            let rating = (noisy * 1000.0).round() / 1000.0;
            sum += rating;
            sum_sq += rating * rating;
            err_sq += (rating - truth) * (rating - truth);
            line.clear();
            push_u64(&mut line, u64::from(user));
            line.push(b' ');
            push_u64(&mut line, u64::from(item));
            line.push(b' ');
            push_f64(&mut line, rating);
            line.push(b'\n');
            out.write_all(&line).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        let n = (part.rows as f64).max(1.0);
        let mean_rating = sum / n;
        summaries.push(SynthRatingsSummary {
            users: opts.users,
            items: opts.items,
            rank: opts.rank,
            ratings: part.rows,
            seed: opts.seed,
            model_seed: opts.model_seed,
            noise_stddev: opts.noise_stddev,
            true_model_rmse: (err_sq / n).sqrt(),
            mean_rating,
            rating_stddev: (sum_sq / n - mean_rating * mean_rating).max(0.0).sqrt(),
            active_users: user_seen.iter().filter(|&&s| s).count() as u32,
            active_items: item_seen.iter().filter(|&&s| s).count() as u32,
        });
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::libsvm::{Example, LibsvmReader};
    use crate::data::ratings::{RatingsFormat, RatingsReader};
    use crate::data::testutil::TempDir;
    use rand::RngCore;

    fn sparse_bytes(opts: &SynthSparseOptions) -> (Vec<u8>, SynthSparseSummary) {
        let mut out = Vec::new();
        let summary = synth_sparse(opts, &mut out).unwrap();
        (out, summary)
    }

    fn ratings_bytes(opts: &SynthRatingsOptions) -> (Vec<u8>, SynthRatingsSummary) {
        let mut out = Vec::new();
        let summary = synth_ratings(opts, &mut out).unwrap();
        (out, summary)
    }

    #[test]
    fn sparse_is_deterministic_for_a_seed() {
        let opts = SynthSparseOptions::new(500, 2000, 20, 7);
        let (a, sa) = sparse_bytes(&opts);
        let (b, sb) = sparse_bytes(&opts);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        let (c, _) = sparse_bytes(&SynthSparseOptions { seed: 8, ..opts });
        assert_ne!(a, c);
        assert!(!a.is_empty());
    }

    #[test]
    fn sparse_rows_are_valid_normalized_and_balanced() {
        let opts = SynthSparseOptions::new(4000, 5000, 30, 1);
        let (bytes, summary) = sparse_bytes(&opts);
        let examples: Vec<Example> = LibsvmReader::new(&bytes[..], "s")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(examples.len(), 4000);
        assert_eq!(summary.rows, 4000);
        let mut nnz = 0u64;
        let mut positives = 0u64;
        for ex in &examples {
            assert!(ex.label == 1.0 || ex.label == -1.0);
            if ex.label > 0.0 {
                positives += 1;
            }
            let k = ex.features.len() as u32;
            assert!((15..=45).contains(&k), "row nnz {k}");
            nnz += u64::from(k);
            let mut norm = 0.0f64;
            for f in &ex.features {
                assert!(f.index < 5000);
                assert!(f.value >= 1e-5 && f.value <= 1.0, "value {}", f.value);
                norm += f64::from(f.value) * f64::from(f.value);
            }
            assert!((norm.sqrt() - 1.0).abs() < 1e-3, "norm {}", norm.sqrt());
        }
        assert_eq!(nnz, summary.nnz);
        assert_eq!(positives, summary.positives);
        let mean_nnz = nnz as f64 / 4000.0;
        assert!((mean_nnz - 30.0).abs() < 1.0, "mean nnz {mean_nnz}");
        let frac = positives as f64 / 4000.0;
        assert!((0.42..0.58).contains(&frac), "positive fraction {frac}");
    }

    #[test]
    fn sparse_feature_frequencies_follow_a_power_law() {
        let opts = SynthSparseOptions::new(5000, 2000, 20, 3);
        let (bytes, _) = sparse_bytes(&opts);
        let mut counts = vec![0u64; 2000];
        for ex in LibsvmReader::new(&bytes[..], "s") {
            for f in ex.unwrap().features {
                counts[f.index as usize] += 1;
            }
        }
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        // With exponent 1 and offset 20 the 1st, 100th and 1000th most
        // frequent features are drawn in ratios of about 1 : 0.17 : 0.02.
        let (top, r100, r1000) = (sorted[0] as f64, sorted[99] as f64, sorted[999] as f64);
        assert!(top > 3.0 * r100, "top {top} vs 100th {r100}");
        assert!(r100 > 3.0 * r1000, "100th {r100} vs 1000th {r1000}");
        // The popular features are spread over the index range.
        let top_ids: Vec<usize> = {
            let mut ids: Vec<usize> = (0..2000).collect();
            ids.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
            ids.truncate(20);
            ids
        };
        assert!(top_ids.iter().any(|&i| i >= 1000));
        assert!(top_ids.iter().any(|&i| i < 1000));
    }

    #[test]
    fn sparse_labels_follow_the_hidden_separator_up_to_the_noise() {
        let opts = SynthSparseOptions::new(20_000, 3000, 25, 11);
        let (bytes, summary) = sparse_bytes(&opts);
        let model = SparseModel::new(&opts);
        let mut disagree = 0u64;
        for ex in LibsvmReader::new(&bytes[..], "s") {
            let ex = ex.unwrap();
            let clean = if model.score(&ex.features) + model.bias > 0.0 {
                1.0
            } else {
                -1.0
            };
            if clean != ex.label {
                disagree += 1;
            }
        }
        // Recomputing from the written values reproduces the flips exactly.
        assert_eq!(disagree, summary.flipped);
        let rate = disagree as f64 / 20_000.0;
        assert!((0.04..0.06).contains(&rate), "flip rate {rate}");

        let quiet = SynthSparseOptions {
            label_noise: 0.0,
            ..opts
        };
        let (_, s) = sparse_bytes(&quiet);
        assert_eq!(s.flipped, 0);
    }

    #[test]
    fn sparse_rejects_bad_options() {
        let ok = SynthSparseOptions::new(10, 100, 5, 0);
        for bad in [
            SynthSparseOptions {
                rows: 0,
                ..ok.clone()
            },
            SynthSparseOptions {
                features: 1,
                ..ok.clone()
            },
            SynthSparseOptions {
                features: MAX_SYNTH_FEATURES + 1,
                ..ok.clone()
            },
            SynthSparseOptions {
                features: u32::MAX - 1,
                ..ok.clone()
            },
            SynthSparseOptions {
                nnz: 0,
                ..ok.clone()
            },
            SynthSparseOptions {
                nnz: 51,
                ..ok.clone()
            },
            SynthSparseOptions {
                label_noise: 0.5,
                ..ok.clone()
            },
            SynthSparseOptions {
                label_noise: f64::NAN,
                ..ok.clone()
            },
            SynthSparseOptions {
                zipf_exponent: -1.0,
                ..ok.clone()
            },
            SynthSparseOptions {
                zipf_offset: f64::INFINITY,
                ..ok.clone()
            },
        ] {
            let err = synth_sparse(&bad, Vec::new()).unwrap_err();
            assert!(matches!(err, SynthError::InvalidOptions(_)), "{bad:?}");
        }
        // Half the features is allowed, and every row then still has
        // distinct features.
        let dense = SynthSparseOptions::new(50, 10, 5, 0);
        let (bytes, _) = sparse_bytes(&dense);
        assert_eq!(LibsvmReader::new(&bytes[..], "d").count(), 50);
    }

    #[test]
    fn alias_table_matches_the_weights() {
        let weights = [1.0, 2.0, 3.0, 4.0, 0.0];
        let table = Alias::new(&weights);
        let mut r = rng(5, 9);
        let mut counts = [0u32; 5];
        for _ in 0..100_000 {
            counts[table.sample(&mut r)] += 1;
        }
        assert_eq!(counts[4], 0);
        for i in 0..4 {
            let expected = weights[i] / 10.0;
            let got = f64::from(counts[i]) / 100_000.0;
            assert!((got - expected).abs() < 0.01, "{i}: {got} vs {expected}");
        }
    }

    #[test]
    fn gaussian_has_unit_variance() {
        let mut r = rng(1, 0);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| gaussian(&mut r)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
    }

    #[test]
    fn streams_are_independent() {
        let mut a = rng(1, 0);
        let mut b = rng(1, 1);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn ratings_are_deterministic_for_a_seed() {
        let opts = SynthRatingsOptions::new(300, 200, 4, 5000, 42);
        let (a, sa) = ratings_bytes(&opts);
        let (b, sb) = ratings_bytes(&opts);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        let (c, _) = ratings_bytes(&SynthRatingsOptions { seed: 43, ..opts });
        assert_ne!(a, c);
    }

    #[test]
    fn ratings_have_the_documented_noise_floor_and_shape() {
        let opts = SynthRatingsOptions::new(2000, 500, 5, 40_000, 9);
        let (bytes, summary) = ratings_bytes(&opts);
        let model = RatingsModel::new(&opts);
        let ratings: Vec<_> = RatingsReader::new(&bytes[..], "r", RatingsFormat::Whitespace)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(ratings.len(), 40_000);
        let mut pairs = HashSet::new();
        let mut per_user = vec![0u32; 2000];
        let (mut sum, mut err_sq) = (0.0f64, 0.0f64);
        for r in &ratings {
            assert!(r.user < 2000 && r.item < 500);
            assert!(pairs.insert((r.user, r.item)), "duplicate pair");
            per_user[r.user as usize] += 1;
            let e = f64::from(r.value) - model.predict(r.user, r.item);
            err_sq += e * e;
            sum += f64::from(r.value);
        }
        let rmse = (err_sq / 40_000.0).sqrt();
        assert!(
            (rmse - DEFAULT_RATING_NOISE_STDDEV).abs() < 0.025,
            "true-model RMSE {rmse}"
        );
        assert!((rmse - summary.true_model_rmse).abs() < 1e-4);
        let mean = sum / 40_000.0;
        assert!((mean - DEFAULT_RATING_MEAN).abs() < 0.15, "mean {mean}");
        assert!((mean - summary.mean_rating).abs() < 1e-3);
        // Total spread: signal and noise.
        let expected_sd = (1.0f64 + 0.25).sqrt();
        assert!(
            (summary.rating_stddev - expected_sd).abs() < 0.15,
            "stddev {}",
            summary.rating_stddev
        );
        // Popularity is skewed: the busiest user rates far more than the median.
        per_user.sort_unstable();
        let (median, max) = (per_user[1000], per_user[1999]);
        assert!(max > 4 * median.max(1), "max {max}, median {median}");
    }

    #[test]
    fn ratings_reject_bad_options() {
        let ok = SynthRatingsOptions::new(10, 10, 2, 20, 0);
        for bad in [
            SynthRatingsOptions {
                users: 0,
                ..ok.clone()
            },
            SynthRatingsOptions {
                users: u32::MAX,
                ..ok.clone()
            },
            SynthRatingsOptions {
                items: MAX_SYNTH_ENTITIES + 1,
                ..ok.clone()
            },
            SynthRatingsOptions {
                users: MAX_SYNTH_ENTITIES,
                items: MAX_SYNTH_ENTITIES,
                rank: 9,
                ..ok.clone()
            },
            SynthRatingsOptions {
                users: MAX_SYNTH_ENTITIES,
                items: MAX_SYNTH_ENTITIES,
                ratings: MAX_SYNTH_RATINGS + 1,
                ..ok.clone()
            },
            SynthRatingsOptions {
                rank: 0,
                ..ok.clone()
            },
            SynthRatingsOptions {
                ratings: 0,
                ..ok.clone()
            },
            SynthRatingsOptions {
                ratings: 51,
                ..ok.clone()
            },
            SynthRatingsOptions {
                noise_stddev: -0.1,
                ..ok.clone()
            },
            SynthRatingsOptions {
                mean: -1.0,
                ..ok.clone()
            },
            SynthRatingsOptions {
                popularity_exponent: f64::NAN,
                ..ok.clone()
            },
        ] {
            let err = synth_ratings(&bad, Vec::new()).unwrap_err();
            assert!(matches!(err, SynthError::InvalidOptions(_)), "{bad:?}");
        }
        // The densest allowed request completes with distinct pairs.
        let dense = SynthRatingsOptions::new(10, 10, 2, 50, 0);
        let (bytes, s) = ratings_bytes(&dense);
        assert_eq!(s.ratings, 50);
        let lines: HashSet<(u32, u32)> = RatingsReader::new(&bytes[..], "d", RatingsFormat::Auto)
            .map(|r| {
                let r = r.unwrap();
                (r.user, r.item)
            })
            .collect();
        assert_eq!(lines.len(), 50);
    }

    #[test]
    fn file_variants_write_complete_files() {
        let dir = TempDir::new("synth");
        let sparse = dir.path().join("s.svm");
        let opts = SynthSparseOptions::new(100, 500, 10, 2);
        let s = synth_sparse_file(&opts, &sparse).unwrap();
        let (bytes, s2) = sparse_bytes(&opts);
        assert_eq!(std::fs::read(&sparse).unwrap(), bytes);
        assert_eq!(s, s2);
        let ratings = dir.path().join("r.txt");
        let ropts = SynthRatingsOptions::new(50, 40, 2, 300, 2);
        synth_ratings_file(&ropts, &ratings).unwrap();
        assert_eq!(std::fs::read(&ratings).unwrap(), ratings_bytes(&ropts).0);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // An unwritable destination is a typed error.
        let err = synth_sparse_file(&opts, &dir.path().join("no/such/dir/s.svm")).unwrap_err();
        assert!(matches!(err, SynthError::Io { .. }));
        assert!(err.to_string().contains("s.svm"));
    }

    #[test]
    fn the_model_seed_defaults_to_the_seed() {
        let opts = SynthSparseOptions::new(300, 1000, 10, 7);
        let (a, sa) = sparse_bytes(&opts);
        let same = SynthSparseOptions {
            model_seed: Some(7),
            ..opts.clone()
        };
        assert_eq!(sparse_bytes(&same).0, a);
        // Without it, the options and the summary read as before.
        let v = serde_json::to_value(&sa).unwrap();
        assert!(v.get("model_seed").is_none(), "{v}");
        assert!(serde_json::to_value(&opts)
            .unwrap()
            .get("model_seed")
            .is_none());
        let other = SynthSparseOptions {
            model_seed: Some(8),
            ..opts.clone()
        };
        let (c, sc) = sparse_bytes(&other);
        assert_ne!(c, a);
        assert_eq!(serde_json::to_value(&sc).unwrap()["model_seed"], 8);

        let ropts = SynthRatingsOptions::new(100, 80, 3, 1000, 4);
        let (r, _) = ratings_bytes(&ropts);
        let rsame = SynthRatingsOptions {
            model_seed: Some(4),
            ..ropts.clone()
        };
        assert_eq!(ratings_bytes(&rsame).0, r);
    }

    fn sparse_examples(opts: &SynthSparseOptions) -> Vec<Example> {
        LibsvmReader::new(&sparse_bytes(opts).0[..], "s")
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The fraction of `examples` that `score` puts on the wrong side.
    fn error(examples: &[Example], score: impl Fn(&[Feature]) -> f64) -> f64 {
        let wrong = examples
            .iter()
            .filter(|ex| (score(&ex.features) > 0.0) != (ex.label > 0.0))
            .count();
        wrong as f64 / examples.len() as f64
    }

    /// An averaged perceptron with a bias, 5 passes over `examples`.
    fn fit(examples: &[Example], features: usize) -> (Vec<f64>, f64) {
        let (mut w, mut b) = (vec![0.0; features], 0.0);
        let (mut sum_w, mut sum_b) = (vec![0.0; features], 0.0);
        for _ in 0..5 {
            for ex in examples {
                let s: f64 = ex
                    .features
                    .iter()
                    .map(|f| w[f.index as usize] * f64::from(f.value))
                    .sum::<f64>()
                    + b;
                if (s > 0.0) != (ex.label > 0.0) {
                    for f in &ex.features {
                        w[f.index as usize] += ex.label * f64::from(f.value);
                    }
                    b += ex.label;
                }
                for (a, x) in sum_w.iter_mut().zip(&w) {
                    *a += x;
                }
                sum_b += b;
            }
        }
        (sum_w, sum_b)
    }

    #[test]
    fn files_of_one_model_seed_share_the_separator() {
        // The reported problem: --seed 11 for the training file and --seed
        // 12 for the test file draw two separators. With one --model-seed
        // the two files are samples of one model.
        let train = SynthSparseOptions {
            model_seed: Some(5),
            ..SynthSparseOptions::new(20_000, 2000, 20, 11)
        };
        let test = SynthSparseOptions {
            rows: 5000,
            seed: 12,
            ..train.clone()
        };
        let old_test = SynthSparseOptions {
            model_seed: None,
            ..test.clone()
        };
        let (tr, te, old) = (
            sparse_examples(&train),
            sparse_examples(&test),
            sparse_examples(&old_test),
        );
        assert_ne!(tr[..100], te[..100], "the samples differ");
        let truth = SparseModel::new(&train);
        let true_score = |x: &[Feature]| truth.score(x) + truth.bias;
        // The true separator errs by the label noise (5%) on both files.
        for (name, ex) in [("train", &tr), ("test", &te)] {
            let e = error(ex, true_score);
            assert!(e < 0.08, "true separator on {name}: {e}");
        }
        // A separator fitted on the training file does well on the test
        // file of the same model, and no better than chance on another's.
        let (w, b) = fit(&tr, 2000);
        let fitted = |x: &[Feature]| {
            x.iter()
                .map(|f| w[f.index as usize] * f64::from(f.value))
                .sum::<f64>()
                + b
        };
        let same = error(&te, fitted);
        assert!(same < 0.25, "fitted separator on the same model: {same}");
        let other = error(&old, fitted);
        assert!(other > 0.4, "fitted separator on another model: {other}");
        let e = error(&old, true_score);
        assert!(e > 0.4, "true separator on another model: {e}");
    }

    #[test]
    fn ratings_of_one_model_seed_share_the_factors() {
        let a = SynthRatingsOptions {
            model_seed: Some(3),
            ..SynthRatingsOptions::new(1000, 300, 4, 20_000, 21)
        };
        let b = SynthRatingsOptions {
            seed: 22,
            ..a.clone()
        };
        let old_b = SynthRatingsOptions {
            model_seed: None,
            ..b.clone()
        };
        let model = RatingsModel::new(&a);
        let rmse = |o: &SynthRatingsOptions| {
            let bytes = ratings_bytes(o).0;
            let ratings: Vec<_> = RatingsReader::new(&bytes[..], "r", RatingsFormat::Whitespace)
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let sq: f64 = ratings
                .iter()
                .map(|r| (f64::from(r.value) - model.predict(r.user, r.item)).powi(2))
                .sum();
            (sq / ratings.len() as f64).sqrt()
        };
        assert_ne!(ratings_bytes(&a).0, ratings_bytes(&b).0);
        let same = rmse(&b);
        assert!((same - DEFAULT_RATING_NOISE_STDDEV).abs() < 0.03, "{same}");
        let other = rmse(&old_b);
        assert!(other > 1.0, "another model's ratings: {other}");
    }

    #[test]
    fn a_test_part_continues_the_stream_and_leaves_the_training_file_alone() {
        let dir = TempDir::new("synth-split");
        let f = |n: &str| dir.path().join(n);
        let opts = SynthSparseOptions::new(400, 1000, 10, 9);
        let alone = synth_sparse_file(&opts, &f("alone.svm")).unwrap();
        let (train, test) =
            synth_sparse_files(&opts, &f("train.svm"), Some((100, &f("test.svm")))).unwrap();
        let read = |n: &str| std::fs::read(f(n)).unwrap();
        assert_eq!(read("train.svm"), read("alone.svm"));
        assert_eq!(train, alone);
        let test = test.unwrap();
        assert_eq!(test.rows, 100);
        let mut both = read("train.svm");
        both.extend(read("test.svm"));
        let whole = SynthSparseOptions {
            rows: 500,
            ..opts.clone()
        };
        assert_eq!(both, sparse_bytes(&whole).0);
        assert_eq!(train.nnz + test.nnz, sparse_bytes(&whole).1.nnz);

        let ropts = SynthRatingsOptions::new(200, 100, 3, 3000, 9);
        let ralone = synth_ratings_file(&ropts, &f("alone.r")).unwrap();
        let (rtrain, rtest) =
            synth_ratings_files(&ropts, &f("train.r"), Some((1000, &f("test.r")))).unwrap();
        assert_eq!(read("train.r"), read("alone.r"));
        assert_eq!(rtrain, ralone);
        let rtest = rtest.unwrap();
        assert_eq!(rtest.ratings, 1000);
        assert!((rtest.true_model_rmse - DEFAULT_RATING_NOISE_STDDEV).abs() < 0.05);
        let pairs = |n: &str| -> HashSet<(u32, u32)> {
            RatingsReader::new(&read(n)[..], n, RatingsFormat::Whitespace)
                .map(|r| {
                    let r = r.unwrap();
                    (r.user, r.item)
                })
                .collect()
        };
        let (a, b) = (pairs("train.r"), pairs("test.r"));
        assert_eq!((a.len(), b.len()), (3000, 1000));
        assert!(a.is_disjoint(&b), "a pair is rated in both files");

        // Refused: no test rows, the same file twice, more ratings in all
        // than the model allows. Nothing is left behind.
        let before = std::fs::read_dir(dir.path()).unwrap().count();
        for (n, test) in [(0, "t0.svm"), (10, "x.svm")] {
            let err = synth_sparse_files(&opts, &f("x.svm"), Some((n, &f(test)))).unwrap_err();
            assert!(matches!(err, SynthError::InvalidOptions(_)), "{err}");
        }
        let full = SynthRatingsOptions::new(10, 10, 2, 50, 0);
        let err = synth_ratings_files(&full, &f("y.r"), Some((1, &f("z.r")))).unwrap_err();
        assert!(err.to_string().contains("half of users x items"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    }
}
