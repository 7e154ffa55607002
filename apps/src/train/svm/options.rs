//! The SVM's options and its built-in synthetic data set.

use std::path::PathBuf;

use crate::data::libsvm::{binary_sign, one_vs_rest, DEFAULT_MAX_FEATURES};
use crate::data::synth::{SynthSparseOptions, DEFAULT_LABEL_NOISE};

use super::super::checkpoint;
use super::super::{TrainError, Udf};

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

/// Options of [`run_svm`](super::run_svm).
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
    /// new random order every epoch (see [`SHUFFLE_BLOCK`](crate::train::SHUFFLE_BLOCK));
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
    pub(super) fn validate(&self) -> Result<(), TrainError> {
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

    pub(super) fn label(&self, raw: f64) -> f64 {
        match self.positive_class {
            Some(c) => one_vs_rest(raw, c),
            None => binary_sign(raw),
        }
    }
}
