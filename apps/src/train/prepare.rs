//! Synthetic training and test files for runs without data.
//!
//! The generators of [`crate::data::synth`] write one stream of lines; the
//! first `train_rows` lines go to the training file and the rest to the test
//! file. Both generators draw their hidden model from the seed alone, so the
//! test lines come from the same model as the training lines (for ratings,
//! whose lines come in random order, this is a random split).
//!
//! Rank 0 generates, unless the directory already holds files made with the
//! same options (recorded in `options.json`); the other ranks wait for it
//! through an all-reduce, which also carries a failure flag so that they stop
//! with [`TrainError::PeerFailed`] instead of waiting on a dead generator.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::sync::ModelSync;
use super::TrainError;

/// The files of a split data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitFiles {
    pub train: PathBuf,
    pub test: PathBuf,
}

/// Sends the first `first_lines` lines to `a` and everything after to `b`.
struct LineSplit<A, B> {
    a: A,
    b: B,
    remaining: u64,
}

impl<A: Write, B: Write> Write for LineSplit<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return self.b.write(buf);
        }
        let mut end = buf.len();
        let mut seen = 0u64;
        for (i, &c) in buf.iter().enumerate() {
            if c == b'\n' {
                seen += 1;
                if seen == self.remaining {
                    end = i + 1;
                    break;
                }
            }
        }
        self.a.write_all(&buf[..end])?;
        self.remaining -= seen;
        Ok(end)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.a.flush()?;
        self.b.flush()
    }
}

/// Makes `dir/train.<ext>` and `dir/test.<ext>` with `generate`, on rank 0,
/// unless files made from the same `key` are there; every rank returns the
/// paths once they exist.
pub(crate) fn split_synthetic<K, S, G>(
    sync: &mut dyn ModelSync,
    dir: &Path,
    ext: &str,
    key: &K,
    train_rows: u64,
    generate: G,
) -> Result<SplitFiles, TrainError>
where
    K: serde::Serialize,
    S: serde::Serialize,
    G: FnOnce(&mut dyn Write) -> Result<S, TrainError>,
{
    let files = SplitFiles {
        train: dir.join(format!("train.{ext}")),
        test: dir.join(format!("test.{ext}")),
    };
    let mut outcome = Ok(());
    if sync.rank() == 0 {
        outcome = make(dir, &files, key, train_rows, generate);
    }
    let mut failed = [if outcome.is_err() { 1.0 } else { 0.0 }];
    sync.allreduce_sum(&mut failed)?;
    outcome?;
    if failed[0] > 0.0 {
        return Err(TrainError::PeerFailed(0));
    }
    Ok(files)
}

fn make<K, S, G>(
    dir: &Path,
    files: &SplitFiles,
    key: &K,
    train_rows: u64,
    generate: G,
) -> Result<(), TrainError>
where
    K: serde::Serialize,
    S: serde::Serialize,
    G: FnOnce(&mut dyn Write) -> Result<S, TrainError>,
{
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let key_path = dir.join("options.json");
    let key_text = serde_json::to_string_pretty(key).unwrap_or_default();
    let cached = std::fs::read_to_string(&key_path).is_ok_and(|k| k == key_text)
        && files.train.is_file()
        && files.test.is_file();
    if cached {
        return Ok(());
    }
    // A stale key must not survive a half-written pair of files.
    let _ = std::fs::remove_file(&key_path);
    let tmp_train = files.train.with_extension("partial");
    let tmp_test = files.test.with_extension("partial");
    let create = |p: &Path| {
        File::create(p)
            .map(|f| BufWriter::with_capacity(1 << 20, f))
            .map_err(|e| TrainError::io(p, e))
    };
    let mut split = LineSplit {
        a: create(&tmp_train)?,
        b: create(&tmp_test)?,
        remaining: train_rows,
    };
    let result = generate(&mut split).and_then(|summary| {
        split
            .flush()
            .map_err(|e| TrainError::io(&files.train, e))
            .map(|_| summary)
    });
    drop(split);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_train);
            let _ = std::fs::remove_file(&tmp_test);
            return Err(e);
        }
    };
    std::fs::rename(&tmp_train, &files.train).map_err(|e| TrainError::io(&files.train, e))?;
    std::fs::rename(&tmp_test, &files.test).map_err(|e| TrainError::io(&files.test, e))?;
    let summary_path = dir.join("summary.json");
    let summary_text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&summary_path, summary_text + "\n")
        .map_err(|e| TrainError::io(&summary_path, e))?;
    std::fs::write(&key_path, key_text).map_err(|e| TrainError::io(&key_path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use crate::train::sync::NoSync;

    #[test]
    fn line_split_cuts_after_n_lines_across_writes() {
        let mut s = LineSplit {
            a: Vec::new(),
            b: Vec::new(),
            remaining: 3,
        };
        for chunk in ["l1\nl", "2\nl3", "\nl4\n", "l5\n"] {
            s.write_all(chunk.as_bytes()).unwrap();
        }
        assert_eq!(String::from_utf8(s.a).unwrap(), "l1\nl2\nl3\n");
        assert_eq!(String::from_utf8(s.b).unwrap(), "l4\nl5\n");
    }

    #[test]
    fn generates_once_then_reuses() {
        let dir = TempDir::new("train-prepare");
        let mut calls = 0;
        for _ in 0..2 {
            let files = split_synthetic(&mut NoSync, dir.path(), "txt", &("k", 1), 2, |w| {
                calls += 1;
                w.write_all(b"a\nb\nc\n")
                    .map_err(|e| TrainError::io(Path::new("x"), e))?;
                Ok(3u32)
            })
            .unwrap();
            assert_eq!(std::fs::read_to_string(&files.train).unwrap(), "a\nb\n");
            assert_eq!(std::fs::read_to_string(&files.test).unwrap(), "c\n");
        }
        assert_eq!(calls, 1);
        // A different key regenerates.
        split_synthetic(&mut NoSync, dir.path(), "txt", &("k", 2), 1, |w| {
            calls += 1;
            w.write_all(b"x\ny\n")
                .map_err(|e| TrainError::io(Path::new("x"), e))?;
            Ok(2u32)
        })
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("test.txt")).unwrap(),
            "y\n"
        );
    }
}
