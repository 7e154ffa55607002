//! Checkpoints of a training run (`--checkpoint DIR --checkpoint-every N`)
//! and resuming from one (`--resume DIR`).
//!
//! A checkpoint is taken at the end of every N-th epoch, after the epoch's
//! last synchronisation and evaluation, at the same round on every rank:
//! under BSP with the `all` graph every rank then holds the same merged
//! model (with other graphs and modes, rank 0's). In `DIR`:
//!
//! - `model-E`: the flat model after epoch E, written by rank 0 (the model
//!   file format of [`super::model`]);
//! - `rank-R-E.json`: rank R's own training state after epoch E (for svm:
//!   the learning rate's clock, the bias in full precision, the averaging
//!   state);
//! - `checkpoint.json`: which epoch is complete, written by rank 0 once
//!   every rank has written its state (so a run killed while writing leaves
//!   the previous checkpoint in force). The files of all but the last two
//!   checkpoints are removed.
//!
//! `--resume DIR` loads the model and this rank's state (rank 0's when the
//! job now has other ranks, as after a failure) and continues with epoch
//! E + 1, with the same order of examples the uninterrupted run would have
//! had. Training times in the resumed run's metrics count that run only.

use std::path::{Path, PathBuf};

use super::{model, TrainError};

/// What a run keeps beyond its metrics, and where it starts from: the
/// model file, checkpoints, a checkpoint to resume from. The same for
/// every trainer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Keep {
    /// Where rank 0 writes the trained model (see [`super::model`]).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Write a checkpoint into this directory every `checkpoint_every`
    /// epochs.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints (0 counts as 1).
    #[serde(default)]
    pub checkpoint_every: u32,
    /// Continue from the checkpoint in this directory.
    #[serde(default)]
    pub resume: Option<PathBuf>,
}

impl Keep {
    /// The checkpoints to write, for the loop.
    pub(crate) fn checkpoints(&self, app: &'static str) -> Option<(&'static str, Checkpoints)> {
        let dir = self.checkpoint.clone()?;
        let every = self.checkpoint_every.max(1);
        Some((app, Checkpoints { dir, every }))
    }

    /// The checkpoint to resume from, read for `rank` (see [`read`]).
    pub(crate) fn resumed(
        &self,
        app: &str,
        rank: usize,
        len: usize,
    ) -> Result<Option<Resumed>, TrainError> {
        self.resume
            .as_deref()
            .map(|dir| read(dir, app, rank, len))
            .transpose()
    }
}

/// Where and how often to write checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checkpoints {
    pub dir: PathBuf,
    /// Every this many epochs (at least 1).
    pub every: u32,
}

/// What `checkpoint.json` says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Marker {
    app: String,
    /// Epochs done when it was taken.
    epoch: u32,
    /// Ranks of the job that took it.
    world: usize,
    /// Length of the flat model.
    values: u64,
}

/// One rank's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct RankState {
    rank: usize,
    epoch: u32,
    state: Vec<f64>,
}

/// A checkpoint read back for this rank.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resumed {
    /// Epochs done.
    pub epoch: u32,
    pub model: Vec<f32>,
    pub state: Vec<f64>,
}

fn bad(dir: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::Model {
        file: dir.display().to_string(),
        problem: problem.into(),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let tmp = path.with_extension("partial");
    let text = serde_json::to_string(value).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let meta = std::fs::metadata(path).map_err(|e| TrainError::io(path, e))?;
    if meta.len() > 64 << 20 {
        return Err(bad(
            path,
            format!("{} bytes: not a checkpoint file", meta.len()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| bad(path, e.to_string()))
}

/// Writes this rank's part of the checkpoint after `epoch` epochs; rank 0
/// also the model, and then, after `barrier` (every rank has written),
/// the marker. Collective.
pub(crate) fn write(
    cp: &Checkpoints,
    app: &str,
    epoch: u32,
    (rank, world): (usize, usize),
    flat: &[f32],
    state: Vec<f64>,
    barrier: &mut dyn FnMut() -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let dir = &cp.dir;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mine = RankState { rank, epoch, state };
    write_json(&dir.join(format!("rank-{rank}-{epoch}.json")), &mine)?;
    if rank == 0 {
        let header = model::ModelHeader {
            app: app.into(),
            values: 0,
            features: None,
            positive_class: None,
            max_features: None,
            users: None,
            items: None,
            rank: None,
            epochs: f64::from(epoch),
            options: serde_json::Value::Null,
        };
        model::write(&dir.join(format!("model-{epoch}")), header, flat, &[])?;
    }
    barrier()?;
    if rank == 0 {
        let marker = Marker {
            app: app.into(),
            epoch,
            world,
            values: flat.len() as u64,
        };
        write_json(&dir.join("checkpoint.json"), &marker)?;
        // Keep this checkpoint and the one before it.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let old = epoch_of(&name).is_some_and(|e| e + cp.every < epoch);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(())
}

/// The epoch a checkpoint file belongs to (`model-E`, `rank-R-E.json`).
fn epoch_of(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let (kind, e) = stem.rsplit_once('-')?;
    (kind == "model" || kind.starts_with("rank-")).then(|| e.parse().ok())?
}

/// Reads the checkpoint in `dir` for `rank`, checking it is one of `app`
/// with a model of `len` values.
pub(crate) fn read(dir: &Path, app: &str, rank: usize, len: usize) -> Result<Resumed, TrainError> {
    let marker: Marker = read_json(&dir.join("checkpoint.json"))?;
    if marker.app != app {
        return Err(bad(
            dir,
            format!("a checkpoint of {}, not of {app}", marker.app),
        ));
    }
    if marker.values != len as u64 {
        return Err(bad(
            dir,
            format!(
                "its model has {} values; this run's has {len} (other data or options)",
                marker.values
            ),
        ));
    }
    let e = marker.epoch;
    let m = model::read(&dir.join(format!("model-{e}")))?;
    if m.values.len() != len {
        return Err(bad(
            dir,
            format!("model-{e} has {} values, not {len}", m.values.len()),
        ));
    }
    let own = dir.join(format!("rank-{rank}-{e}.json"));
    let path = if own.exists() {
        own
    } else {
        dir.join(format!("rank-0-{e}.json"))
    };
    let st: RankState = read_json(&path)?;
    if st.epoch != e {
        return Err(bad(&path, format!("of epoch {}, not {e}", st.epoch)));
    }
    Ok(Resumed {
        epoch: e,
        model: m.values.iter().map(|&v| v as f32).collect(),
        state: st.state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    #[test]
    fn a_checkpoint_reads_back_and_old_ones_go() {
        let t = TempDir::new("checkpoint");
        let cp = Checkpoints {
            dir: t.path().join("cp"),
            every: 1,
        };
        let mut barrier = || Ok(());
        for epoch in 1..=3u32 {
            let flat = [epoch as f32, 0.5];
            write(
                &cp,
                "svm",
                epoch,
                (0, 1),
                &flat,
                vec![f64::from(epoch), 1.0 / 3.0],
                &mut barrier,
            )
            .unwrap();
        }
        let r = read(&cp.dir, "svm", 0, 2).unwrap();
        assert_eq!(r.epoch, 3);
        assert_eq!(r.model, vec![3.0, 0.5]);
        assert_eq!(r.state, vec![3.0, 1.0 / 3.0]);
        // Another rank of a smaller job takes rank 0's state.
        assert_eq!(read(&cp.dir, "svm", 5, 2).unwrap().state, r.state);
        assert!(!cp.dir.join("model-1").exists() && cp.dir.join("model-2").exists());
        let e = read(&cp.dir, "mf", 0, 2).unwrap_err().to_string();
        assert!(e.contains("not of mf"), "{e}");
        let e = read(&cp.dir, "svm", 0, 7).unwrap_err().to_string();
        assert!(e.contains("has 2 values; this run's has 7"), "{e}");
        assert!(read(&t.path().join("none"), "svm", 0, 2).is_err());
    }
}
