//! The data files of a training run and how a rank reads its part of them,
//! shared by the SVM and the factor model.
//!
//! A run trains on the files it is given, or, without them, on a synthetic
//! set that [`super::prepare`] generates on rank 0 (or finds in the data
//! directory). Each rank reads part
//! `part` of `parts` of the training file (shuffled once, when the run asks
//! for it) and of the test file; after a regroup it reads its new part of
//! the same files.

use std::path::{Path, PathBuf};

use super::prepare::split_synthetic;
use super::sync::ModelSync;
use super::TrainError;

/// The training file of a run and its test file, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataFiles {
    pub train: PathBuf,
    pub test: Option<PathBuf>,
}

impl DataFiles {
    /// The given files (`data` and `test`); without `data`, the synthetic
    /// set `generate` writes (on rank 0, into the data directory, unless
    /// files made from the same `key` are there; linked from `dir` as
    /// `train.<ext>` and `test.<ext>`), whose test file a given `test`
    /// replaces.
    #[allow(clippy::too_many_arguments)]
    pub fn given_or_synthetic<K, S, G>(
        data: Option<&PathBuf>,
        test: Option<&PathBuf>,
        sync: &mut dyn ModelSync,
        dir: &Path,
        ext: &str,
        key: &K,
        train_rows: u64,
        generate: G,
    ) -> Result<DataFiles, TrainError>
    where
        K: serde::Serialize,
        S: serde::Serialize,
        G: FnOnce(&mut dyn std::io::Write) -> Result<S, TrainError>,
    {
        if let Some(d) = data {
            return Ok(DataFiles {
                train: d.clone(),
                test: test.cloned(),
            });
        }
        let files = split_synthetic(sync, dir, ext, key, train_rows, generate)?;
        Ok(DataFiles {
            train: files.train,
            test: Some(test.cloned().unwrap_or(files.test)),
        })
    }

    /// The training file alone (no test file).
    pub fn train_only(&self) -> Self {
        DataFiles {
            train: self.train.clone(),
            test: None,
        }
    }

    /// Part `part` of `parts` of the training file, passed through
    /// `shuffle`, and of the test file, each read with `read`.
    pub fn load<T>(
        &self,
        part: usize,
        parts: usize,
        read: impl Fn(&Path, usize, usize) -> Result<T, TrainError>,
        shuffle: impl FnOnce(T) -> T,
    ) -> Result<(T, Option<T>), TrainError> {
        let train = shuffle(read(&self.train, part, parts)?);
        let test = match &self.test {
            Some(p) => Some(read(p, part, parts)?),
            None => None,
        };
        Ok((train, test))
    }
}
