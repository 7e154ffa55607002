//! `synth_dense`: small dense binary classification sets shaped like
//! handwritten-digit data (the UCI/scikit-learn digits set: about 1,800
//! rows, 64 standardised features, one class of ten against the rest).
//!
//! - **Classes**: `classes` Gaussian clusters; class 0 is drawn with
//!   probability `positives` and labelled +1, every other class with an
//!   equal share of the rest and labelled -1.
//! - **Rows**: `x = μ_c + spread · (A z + e)`, where `μ_c` is the class
//!   centre (standard normal entries), `A` a `features × LATENT` loading
//!   matrix (normal entries of standard deviation 0.5) shared by all
//!   classes, `z` standard normal in `LATENT` dimensions and `e` standard
//!   normal noise per feature. The shared low-rank part makes the features
//!   correlated, as pixels are.
//! - **Standardised**: each feature is shifted and scaled by its exact
//!   mean and standard deviation under the model (not the sample's), so a
//!   training and a test file of one model get the same transform and each
//!   feature has mean about 0 and variance about 1. Values are rounded to
//!   multiples of 1e-4; exact zeros are left out of the line.
//! - The hidden model (centres, loadings) comes from the model seed, the
//!   rows (class, `z`, `e`) from the seed, as for the other generators.

use std::io::{BufWriter, Write};
use std::path::Path;

use rand::Rng;

use super::files::{split_into_files, with_test, Part};
use super::{gaussian, invalid, rng, SynthError};
use crate::data::libsvm::{format_line, Feature};

/// Dimensions of the shared low-rank part of the rows.
pub const LATENT: usize = 10;
/// Most features of `synth_dense`.
pub const MAX_DENSE_FEATURES: u32 = 4096;
/// Most classes of `synth_dense`.
pub const MAX_DENSE_CLASSES: u32 = 256;
/// Default fraction of rows in the positive class.
pub const DEFAULT_POSITIVES: f64 = 0.1;
/// Default spread of the clusters: about 2% of the rows sit closer to
/// another class's centre than to their own in the default shape.
pub const DEFAULT_SPREAD: f64 = 2.0;
/// Values are multiples of this.
const DENSE_QUANTUM: f64 = 1e-4;
/// Largest spread: beyond it the classes' centres vanish in the rounding
/// of the standardised values (and far beyond, the variance overflows).
pub const MAX_SPREAD: f64 = 1e4;

/// Options of [`synth_dense`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthDenseOptions {
    /// Number of examples (at least 1).
    pub rows: u64,
    /// Number of features, `2..=MAX_DENSE_FEATURES`.
    pub features: u32,
    /// Number of clusters, `2..=MAX_DENSE_CLASSES`; class 0 is +1.
    pub classes: u32,
    /// Probability of class 0 (+1), in `(0, 1)`.
    pub positives: f64,
    /// Scale of the within-class variation, in `(0, MAX_SPREAD]`.
    pub spread: f64,
    /// Seed of the rows, and of the model unless `model_seed` is given.
    pub seed: u64,
    /// Seed of the hidden model (centres and loadings); `None`: `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
}

impl SynthDenseOptions {
    /// The given size and seed in the digits-like shape: ten classes, 10%
    /// positives, the default spread.
    pub fn new(rows: u64, features: u32, seed: u64) -> Self {
        SynthDenseOptions {
            rows,
            features,
            classes: 10,
            positives: DEFAULT_POSITIVES,
            spread: DEFAULT_SPREAD,
            seed,
            model_seed: None,
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
        if !(2..=MAX_DENSE_FEATURES).contains(&self.features) {
            return Err(invalid(format!(
                "features must be in 2..={MAX_DENSE_FEATURES} (got {})",
                self.features
            )));
        }
        if !(2..=MAX_DENSE_CLASSES).contains(&self.classes) {
            return Err(invalid(format!(
                "classes must be in 2..={MAX_DENSE_CLASSES} (got {})",
                self.classes
            )));
        }
        if !(self.positives > 0.0 && self.positives < 1.0) {
            return Err(invalid(format!(
                "positives must be a fraction strictly between 0 and 1, got {}",
                self.positives
            )));
        }
        if !(self.spread > 0.0 && self.spread <= MAX_SPREAD) {
            return Err(invalid(format!(
                "spread must be positive and at most {MAX_SPREAD}, got {}",
                self.spread
            )));
        }
        Ok(())
    }
}

/// What [`synth_dense`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthDenseSummary {
    /// Examples written.
    pub rows: u64,
    /// Number of features.
    pub features: u32,
    /// Examples labelled +1.
    pub positives: u64,
    /// The seed.
    pub seed: u64,
    /// The model seed, when given apart from the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
}

/// The hidden part: centres, loadings, and the standardising transform.
struct DenseModel {
    d: usize,
    /// `classes × d`, already shifted by the feature means.
    centres: Vec<f64>,
    /// `d × LATENT`.
    loadings: Vec<f64>,
    /// `1 / standard deviation` of each feature.
    inv_sd: Vec<f64>,
    /// Cumulative class probabilities.
    cumulative: Vec<f64>,
    spread: f64,
}

impl DenseModel {
    fn new(opts: &SynthDenseOptions) -> DenseModel {
        let (d, c) = (opts.features as usize, opts.classes as usize);
        let mut r = rng(opts.model_seed(), 10);
        let mut centres: Vec<f64> = (0..c * d).map(|_| gaussian(&mut r)).collect();
        let loadings: Vec<f64> = (0..d * LATENT).map(|_| 0.5 * gaussian(&mut r)).collect();
        let rest = (1.0 - opts.positives) / (c - 1) as f64;
        let probs: Vec<f64> = (0..c)
            .map(|k| if k == 0 { opts.positives } else { rest })
            .collect();
        let mut inv_sd = Vec::with_capacity(d);
        for j in 0..d {
            let mean: f64 = (0..c).map(|k| probs[k] * centres[k * d + j]).sum();
            let second: f64 = (0..c).map(|k| probs[k] * centres[k * d + j].powi(2)).sum();
            let a2: f64 = loadings[j * LATENT..(j + 1) * LATENT]
                .iter()
                .map(|a| a * a)
                .sum();
            let var = (second - mean * mean) + opts.spread.powi(2) * (a2 + 1.0);
            inv_sd.push(1.0 / var.sqrt());
            for k in 0..c {
                centres[k * d + j] -= mean;
            }
        }
        let cumulative = probs
            .iter()
            .scan(0.0, |acc, p| {
                *acc += p;
                Some(*acc)
            })
            .collect();
        DenseModel {
            d,
            centres,
            loadings,
            inv_sd,
            cumulative,
            spread: opts.spread,
        }
    }

    /// Draws a row into `row`; returns its class.
    fn row(&self, r: &mut impl Rng, z: &mut [f64; LATENT], row: &mut Vec<Feature>) -> usize {
        let u: f64 = r.gen();
        let class = self
            .cumulative
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cumulative.len() - 1);
        for v in z.iter_mut() {
            *v = gaussian(r);
        }
        row.clear();
        for j in 0..self.d {
            let a = &self.loadings[j * LATENT..(j + 1) * LATENT];
            let shared: f64 = a.iter().zip(z.iter()).map(|(a, z)| a * z).sum();
            let x = self.centres[class * self.d + j] + self.spread * (shared + gaussian(r));
            let q = (x * self.inv_sd[j] / DENSE_QUANTUM).round() * DENSE_QUANTUM;
            if q != 0.0 {
                row.push(Feature {
                    index: j as u32,
                    value: q as f32,
                });
            }
        }
        class
    }
}

/// Writes `opts.rows` digits-like dense examples in LIBSVM format to `out`.
/// See the module documentation for the generating process.
pub fn synth_dense<W: Write>(
    opts: &SynthDenseOptions,
    out: W,
) -> Result<SynthDenseSummary, SynthError> {
    opts.validate()?;
    let mut parts = [Part::new(out, opts.rows, "(output)")];
    let mut summaries = dense_parts(opts, &mut parts)?;
    Ok(summaries.remove(0))
}

/// [`synth_dense`] into the file at `path` and, with `test = Some((rows,
/// test_path))`, that many more rows of the same model and stream into
/// `test_path`; both renamed into place once complete.
pub fn synth_dense_files(
    opts: &SynthDenseOptions,
    path: &Path,
    test: Option<(u64, &Path)>,
) -> Result<(SynthDenseSummary, Option<SynthDenseSummary>), SynthError> {
    opts.validate()?;
    let total = SynthDenseOptions {
        rows: with_test(opts.rows, test)?,
        ..opts.clone()
    };
    split_into_files(opts.rows, path, test, |parts| dense_parts(&total, parts))
}

fn dense_parts<W: Write>(
    opts: &SynthDenseOptions,
    parts: &mut [Part<W>],
) -> Result<Vec<SynthDenseSummary>, SynthError> {
    let model = DenseModel::new(opts);
    let mut r = rng(opts.seed, 11);
    let mut z = [0.0; LATENT];
    let mut row = Vec::with_capacity(model.d);
    let mut line = Vec::with_capacity(16 * model.d);
    let mut summaries = Vec::with_capacity(parts.len());
    for part in parts {
        let name = part.name.clone();
        let io_err = |source| SynthError::Io {
            file: name.clone(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, &mut part.out);
        let mut summary = SynthDenseSummary {
            rows: part.rows,
            features: opts.features,
            positives: 0,
            seed: opts.seed,
            model_seed: opts.model_seed,
        };
        for _ in 0..part.rows {
            let class = model.row(&mut r, &mut z, &mut row);
            let label = if class == 0 { 1.0 } else { -1.0 };
            summary.positives += u64::from(class == 0);
            line.clear();
            format_line(label, None, &row, &mut line).map_err(|p| {
                io_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    p.to_string(),
                ))
            })?;
            out.write_all(&line).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        summaries.push(summary);
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::libsvm::LibsvmReader;

    fn rows(opts: &SynthDenseOptions) -> Vec<(f64, Vec<Feature>)> {
        let mut buf = Vec::new();
        synth_dense(opts, &mut buf).expect("generate");
        LibsvmReader::new(&buf[..], "(test)")
            .map(|e| {
                let e = e.expect("valid line");
                (e.label, e.features)
            })
            .collect()
    }

    #[test]
    fn rows_are_standardised_with_the_asked_share_of_positives() {
        let opts = SynthDenseOptions::new(4000, 16, 3);
        let data = rows(&opts);
        assert_eq!(data.len(), 4000);
        let pos = data.iter().filter(|(y, _)| *y > 0.0).count() as f64 / 4000.0;
        assert!((pos - 0.1).abs() < 0.02, "positives {pos}");
        for j in 0..16u32 {
            let xs: Vec<f64> = data
                .iter()
                .map(|(_, f)| {
                    f.iter()
                        .find(|x| x.index == j)
                        .map_or(0.0, |x| f64::from(x.value))
                })
                .collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            assert!(mean.abs() < 0.1, "feature {j}: mean {mean}");
            assert!((var - 1.0).abs() < 0.15, "feature {j}: variance {var}");
        }
    }

    #[test]
    fn one_model_seed_gives_one_model_and_a_seed_gives_the_same_bytes() {
        let a = SynthDenseOptions::new(50, 8, 1);
        let mut b = SynthDenseOptions::new(50, 8, 2);
        assert_eq!(rows(&a), rows(&a));
        assert_ne!(rows(&a), rows(&b));
        // Same model, another sample: the class-0 rows of both files lie
        // around one centre.
        b.model_seed = Some(1);
        let centre = |data: &[(f64, Vec<Feature>)]| {
            let pos: Vec<_> = data.iter().filter(|(y, _)| *y > 0.0).collect();
            let mut c = [0.0f64; 8];
            for (_, f) in &pos {
                for x in f {
                    c[x.index as usize] += f64::from(x.value) / pos.len() as f64;
                }
            }
            c
        };
        let (a, b) = (
            rows(&SynthDenseOptions { rows: 3000, ..a }),
            rows(&SynthDenseOptions { rows: 3000, ..b }),
        );
        let (ca, cb) = (centre(&a), centre(&b));
        let far = ca
            .iter()
            .zip(&cb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(far < 0.3, "class-0 centres {ca:?} and {cb:?}");
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let ok = SynthDenseOptions::new(10, 8, 1);
        for bad in [
            SynthDenseOptions {
                rows: 0,
                ..ok.clone()
            },
            SynthDenseOptions {
                features: 1,
                ..ok.clone()
            },
            SynthDenseOptions {
                features: MAX_DENSE_FEATURES + 1,
                ..ok.clone()
            },
            SynthDenseOptions {
                classes: 1,
                ..ok.clone()
            },
            SynthDenseOptions {
                positives: 1.0,
                ..ok.clone()
            },
            SynthDenseOptions {
                positives: f64::NAN,
                ..ok.clone()
            },
            SynthDenseOptions {
                spread: 0.0,
                ..ok.clone()
            },
            SynthDenseOptions {
                spread: 1e200,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(
                    synth_dense(&bad, Vec::new()),
                    Err(SynthError::InvalidOptions(_))
                ),
                "{bad:?}"
            );
        }
    }
}
