//! An svm model on disk: writing it after training (`--model`) and
//! predicting with it (`malt predict`); see [`crate::train::model`].

use std::path::Path;

use super::{dot_checked, SvmOptions, SvmState};
use crate::data::libsvm::{SparseDataset, DEFAULT_MAX_FEATURES};
use crate::train::{model, TrainError};

/// Writes the evaluated model (the averaged one once averaging runs) of
/// `st`, whose factors are folded in, to `path`.
pub(super) fn save_model(
    path: &Path,
    opts: &SvmOptions,
    st: &SvmState,
    epochs: f64,
) -> Result<(), TrainError> {
    let (w, b) = st.eval_model();
    let header = model::ModelHeader {
        app: "svm".into(),
        values: 0,
        features: Some(w.len() as u64),
        positive_class: opts.positive_class,
        max_features: Some(opts.max_features),
        users: None,
        items: None,
        rank: None,
        epochs,
        options: serde_json::to_value(opts).unwrap_or_default(),
    };
    model::write(path, header, w, &[b])
}

/// `malt predict` with an svm model: writes `+1` or `-1` and the score of
/// each example of `data` to `out`, one per line, and returns how many were
/// wrong. The same arithmetic as training's evaluation, so the error on the
/// training run's test file is the one it reported.
pub fn predict_svm(
    m: &model::ModelFile,
    model_path: &Path,
    data: &Path,
    out: &mut dyn std::io::Write,
) -> Result<model::Scored, TrainError> {
    m.expect_app(model_path, "svm")?;
    let h = &m.header;
    let bad = |problem: String| TrainError::Model {
        file: model_path.display().to_string(),
        problem,
    };
    let d = h
        .features
        .ok_or_else(|| bad("an svm model without `features`".into()))?;
    // `d` comes from the file: a count no file holds is refused, not added to.
    if Some(m.values.len() as u64) != d.checked_add(1) {
        return Err(bad(format!(
            "{} values for {d} features (expected one per feature and a bias)",
            m.values.len()
        )));
    }
    let w: Vec<f32> = m.values[..d as usize].iter().map(|&x| x as f32).collect();
    let b = m.values[d as usize];
    let opts = SvmOptions {
        positive_class: h.positive_class,
        ..SvmOptions::default()
    };
    let max = h.max_features.unwrap_or(DEFAULT_MAX_FEATURES);
    let set = SparseDataset::load_shard_limited(data, 0, 1, max)?;
    let mut errors = 0u64;
    let io = |e| TrainError::io(Path::new("standard output"), e);
    for i in 0..set.len() {
        let s = dot_checked(&w, set.features(i)) + b;
        let predicted = if s > 0.0 { 1.0 } else { -1.0 };
        if predicted != opts.label(set.label(i)) {
            errors += 1;
        }
        writeln!(out, "{predicted:+} {s}").map_err(io)?;
    }
    let n = set.len() as u64;
    Ok(model::Scored {
        app: "svm".into(),
        examples: n,
        test_error: (n > 0).then(|| errors as f64 / n as f64),
        test_rmse: None,
    })
}
