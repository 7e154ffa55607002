//! The trained model on disk (`malt train ... --model FILE`) and
//! `malt predict`.
//!
//! # Format (version 1)
//!
//! Text, so that any tool can read it:
//!
//! ```text
//! malt-model 1
//! {"app":"svm","values":5001,"features":5000,...}
//! 0.0123
//! -0.5
//! ...
//! ```
//!
//! The first line names the format and its version. The second is a JSON
//! [`ModelHeader`]: the app (`svm` or `mf`), how many values follow, the
//! model's shape (svm: `features`, the largest feature index the training
//! data had plus one; mf: `users`, `items`, `rank`), how labels were read
//! (svm: `positive_class`) and the training options as given. Then one
//! value per line, each printed so that it reads back to the same bits:
//! - svm: `features` weights (`f32`), then the bias (`f64`);
//! - mf: the flat factor model (`f32`): the global mean, then for each user
//!   its bias and `rank` factors, then the same for each item.
//!
//! A reader checks the first line, the header, and that exactly `values`
//! values follow; a count the file's size cannot hold is refused before
//! anything is allocated for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use super::TrainError;

/// The first word of a model file.
pub const MAGIC: &str = "malt-model";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// The second line of a model file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelHeader {
    /// `svm` or `mf`.
    pub app: String,
    /// Values that follow, one per line.
    pub values: u64,
    /// svm: weights (the training data's largest feature index plus one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<u64>,
    /// svm: the class read as +1 (`None`: labels above 0 are +1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<f64>,
    /// svm: the largest feature index a data file may have (as in training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<u32>,
    /// mf: users, items and factors per user or item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// mf: items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// mf: factors per user or item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u64>,
    /// Epochs trained.
    pub epochs: f64,
    /// The training options, as the trainer had them.
    pub options: serde_json::Value,
}

/// A model read back: its header and values (`f64`, exact for the `f32`
/// values too).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    /// The header.
    pub header: ModelHeader,
    /// The values, in file order.
    pub values: Vec<f64>,
}

fn bad(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::Model {
        file: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Writes a model: `header` (whose `values` is set here) and the values,
/// the `f32` ones first and then the `f64` ones. Written to a temporary
/// file next to `path` and renamed, so a reader never sees half a model.
pub fn write(
    path: &Path,
    mut header: ModelHeader,
    single: &[f32],
    double: &[f64],
) -> Result<(), TrainError> {
    header.values = (single.len() + double.len()) as u64;
    let tmp = path.with_extension("partial");
    let io = |e| TrainError::io(path, e);
    let file = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    let json = serde_json::to_string(&header).map_err(|e| bad(path, e.to_string()))?;
    writeln!(w, "{MAGIC} {VERSION}").map_err(io)?;
    writeln!(w, "{json}").map_err(io)?;
    // Display prints the shortest text that reads back to the same value.
    for x in single {
        writeln!(w, "{x}").map_err(io)?;
    }
    for x in double {
        writeln!(w, "{x}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a model written by [`write()`], checking the format line, the
/// header, and the number of values.
pub fn read(path: &Path) -> Result<ModelFile, TrainError> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let size = file.metadata().map_err(|e| TrainError::io(path, e))?.len();
    let mut r = BufReader::new(file);
    let mut line = String::new();
    let mut next = |r: &mut BufReader<std::fs::File>, what: &str| -> Result<String, TrainError> {
        line.clear();
        // A line longer than the header could be is not a model file.
        let n = r
            .by_ref()
            .take(1 << 20)
            .read_line(&mut line)
            .map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            return Err(bad(path, format!("ends before {what}")));
        }
        Ok(line.trim_end().to_string())
    };
    let first = next(&mut r, "its first line")?;
    match first.split_once(' ') {
        Some((MAGIC, v)) if v == VERSION.to_string() => {}
        Some((MAGIC, v)) => {
            return Err(bad(
                path,
                format!("model format version {v}; this malt reads version {VERSION}"),
            ))
        }
        _ => {
            return Err(bad(
                path,
                format!("not a malt model (no \"{MAGIC} {VERSION}\" line)"),
            ))
        }
    }
    let header: ModelHeader = serde_json::from_str(&next(&mut r, "its header")?)
        .map_err(|e| bad(path, format!("header: {e}")))?;
    // Every value takes at least two bytes ("0\n").
    if header.values > size / 2 {
        return Err(bad(
            path,
            format!(
                "the header announces {} values; a file of {size} bytes cannot hold them",
                header.values
            ),
        ));
    }
    let mut values = Vec::with_capacity(header.values as usize);
    for i in 0..header.values {
        let text = next(&mut r, &format!("value {} of {}", i + 1, header.values))?;
        let v: f64 = text
            .parse()
            .map_err(|_| bad(path, format!("value {}: {text:?} is not a number", i + 1)))?;
        values.push(v);
    }
    if !next(&mut r, "its end").map_or(true, |rest| rest.is_empty()) {
        return Err(bad(
            path,
            format!(
                "more than the {} values its header announces",
                header.values
            ),
        ));
    }
    Ok(ModelFile { header, values })
}

impl ModelFile {
    /// Fails unless this is a model of `app`.
    pub fn expect_app(&self, path: &Path, app: &str) -> Result<(), TrainError> {
        if self.header.app == app {
            Ok(())
        } else {
            Err(bad(
                path,
                format!("a model of {}, not of {app}", self.header.app),
            ))
        }
    }
}

/// What `malt predict` found on labelled data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    /// `svm` or `mf`.
    pub app: String,
    /// Examples (svm) or ratings (mf) predicted.
    pub examples: u64,
    /// svm: the fraction predicted wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_error: Option<f64>,
    /// mf: the root mean squared error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_rmse: Option<f64>,
}

/// `malt predict`: reads the model at `model_path`, predicts every example
/// (svm) or rating (mf) of `data`, writes the predictions to `out` (one per
/// line: svm `+1`/`-1` and the score, mf the predicted rating) and returns
/// the error or RMSE on the data's labels.
pub fn predict(model_path: &Path, data: &Path, out: &mut dyn Write) -> Result<Scored, TrainError> {
    let m = read(model_path)?;
    match m.header.app.as_str() {
        "svm" => super::svm::predict_svm(&m, model_path, data, out),
        "mf" => super::mf::predict_mf(&m, model_path, data, out),
        other => Err(bad(
            model_path,
            format!("a model of {other:?}, which this malt cannot predict with"),
        )),
    }
}

impl Scored {
    /// One line for people: what was predicted, and how well.
    pub fn human(&self) -> String {
        let mut s = format!("{} examples={}", self.app, self.examples);
        if let Some(e) = self.test_error {
            s.push_str(&format!(" test_error={:.2}%", 100.0 * e));
        }
        if let Some(r) = self.test_rmse {
            s.push_str(&format!(" test_rmse={r:.6}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    fn header(app: &str) -> ModelHeader {
        ModelHeader {
            app: app.into(),
            values: 0,
            features: Some(3),
            positive_class: None,
            max_features: None,
            users: None,
            items: None,
            rank: None,
            epochs: 2.0,
            options: serde_json::json!({"lambda": 0.5}),
        }
    }

    #[test]
    fn a_model_reads_back_bit_for_bit() {
        let dir = TempDir::new("model-rt");
        let p = dir.path().join("m.model");
        let w = [0.1f32, -3.5e-8, f32::MAX];
        let b = [1.0f64 / 3.0];
        write(&p, header("svm"), &w, &b).unwrap();
        let m = read(&p).unwrap();
        assert_eq!(m.header.values, 4);
        assert_eq!(m.header.features, Some(3));
        for (got, want) in m.values.iter().zip(w) {
            assert_eq!(*got as f32, want);
        }
        assert_eq!(m.values[3], b[0]);
        assert!(m.expect_app(&p, "svm").is_ok());
        let e = m.expect_app(&p, "mf").unwrap_err().to_string();
        assert!(e.contains("a model of svm, not of mf"), "{e}");
    }

    #[test]
    fn a_header_whose_shape_overflows_is_refused_by_predict() {
        let dir = TempDir::new("model-shape");
        let p = dir.path().join("m.model");
        let data = dir.path().join("d.txt");
        std::fs::write(&data, "1 1 3\n").unwrap();
        for (app, h) in [
            (
                "svm",
                ModelHeader {
                    features: Some(u64::MAX),
                    ..header("svm")
                },
            ),
            (
                "mf",
                ModelHeader {
                    features: None,
                    users: Some(u64::MAX),
                    items: Some(2),
                    rank: Some(u64::MAX),
                    ..header("mf")
                },
            ),
        ] {
            write(&p, h, &[0.5], &[]).unwrap();
            let e = predict(&p, &data, &mut Vec::new()).unwrap_err().to_string();
            assert!(e.contains("values for"), "{app}: {e}");
        }
    }

    #[test]
    fn damaged_and_foreign_files_are_named_errors() {
        let dir = TempDir::new("model-bad");
        let p = dir.path().join("m.model");
        let h = serde_json::to_string(&ModelHeader {
            values: 2,
            ..header("svm")
        })
        .unwrap();
        for (text, want) in [
            ("1:0.5 2:1\n".to_string(), "not a malt model"),
            (format!("{MAGIC} 9\n{h}\n"), "version 9"),
            (format!("{MAGIC} 1\n{{\"app\":\n"), "header"),
            (format!("{MAGIC} 1\n{h}\n0.5\n"), "ends before value 2 of 2"),
            (format!("{MAGIC} 1\n{h}\n0.5\nx\n"), "value 2: \"x\""),
            (
                format!("{MAGIC} 1\n{h}\n0.5\n1\n2\n"),
                "more than the 2 values",
            ),
            (
                format!(
                    "{MAGIC} 1\n{}\n",
                    serde_json::to_string(&ModelHeader {
                        values: u64::MAX,
                        ..header("svm")
                    })
                    .unwrap()
                ),
                "cannot hold them",
            ),
        ] {
            std::fs::write(&p, &text).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("m.model"), "{text:?}: {e}");
        }
    }
}
