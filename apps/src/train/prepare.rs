//! Synthetic training and test files for runs without data, generated once
//! and kept in one data directory shared by every run.
//!
//! The generators of [`crate::data::synth`] write one stream of lines; the
//! first `train_rows` lines go to the training file and the rest to the test
//! file. Both generators draw their hidden model from the seed alone, so the
//! test lines come from the same model as the training lines (for ratings,
//! whose lines come in random order, this is a random split).
//!
//! # The data directory
//!
//! The files are kept in the data directory ([`data_dir`]): `--data-dir
//! DIR`, else `$MALT_DATA_DIR`, else `$XDG_CACHE_HOME/malt`, else
//! `~/.cache/malt`. They are named after a hash of everything that
//! determines their bytes (the kind of data, the generator's options, the
//! split and the version of malt):
//!
//! ```text
//! synth-sparse-<hash>.train.libsvm    synth-ratings-<hash>.train.ratings
//! synth-sparse-<hash>.test.libsvm     synth-ratings-<hash>.test.ratings
//! synth-sparse-<hash>.json            synth-ratings-<hash>.json
//! ```
//!
//! The `.json` record holds those parameters, the generator's summary and
//! the sizes of the two files; it is written last. A run reuses the files
//! when the record names the same parameters and both files have the
//! recorded sizes; otherwise (no record, a file missing or cut short) it
//! generates them again. Every file is written under a temporary name
//! (`*.partial`) and renamed into place, so no run ever reads a half-written
//! file; two runs that start on the same missing data at once both generate
//! it (the bytes are the same) and neither is disturbed. Files are never
//! removed: delete the directory to reclaim the space. For a job over
//! several machines the directory must be shared, like the output directory.
//!
//! The run's own `<out>/synth-sparse/` (or `synth-ratings/`) holds symbolic
//! links `train.<ext>` and `test.<ext>` to the files used, and the
//! generator's `summary.json`. When no file can be made in the data
//! directory, the files are generated into that directory instead.
//!
//! Rank 0 generates; the other ranks wait for it through an all-reduce,
//! which also carries a failure flag so that they stop with
//! [`TrainError::PeerFailed`] instead of waiting on a dead generator, and
//! whether the data directory was usable.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::sync::ModelSync;
use super::TrainError;

/// Environment variable naming the data directory (below `--data-dir`).
pub const DATA_DIR_ENV: &str = "MALT_DATA_DIR";

/// Temporary files older than this, left by runs that were killed, are
/// removed when data is generated.
const STALE_PARTIAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The data directory set by `--data-dir`.
static DATA_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the data directory of this process (`--data-dir`).
pub(crate) fn set_data_dir(dir: PathBuf) {
    *DATA_DIR.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
}

/// The directory of the generated data: `--data-dir`, else
/// `$MALT_DATA_DIR`, else `$XDG_CACHE_HOME/malt`, else `~/.cache/malt`,
/// else `malt-data` under the temporary directory. (Unit tests use
/// `malt-test-data` under the temporary directory unless it is set.)
pub(crate) fn data_dir() -> PathBuf {
    if let Some(d) = DATA_DIR.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return d;
    }
    if cfg!(test) {
        return std::env::temp_dir().join("malt-test-data");
    }
    default_data_dir(|k| std::env::var_os(k))
}

/// The data directory from the environment `get` gives.
fn default_data_dir(get: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = set(DATA_DIR_ENV) {
        return d;
    }
    // The XDG specification ignores relative paths.
    if let Some(d) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return d.join("malt");
    }
    if let Some(h) = set("HOME") {
        return h.join(".cache").join("malt");
    }
    std::env::temp_dir().join("malt-data")
}

/// The files of a split data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitFiles {
    pub train: PathBuf,
    pub test: PathBuf,
}

/// Everything that determines the bytes of a cached pair of files.
#[derive(serde::Serialize)]
struct CacheKey<'a, K> {
    kind: &'a str,
    ext: &'a str,
    train_rows: u64,
    options: &'a K,
    malt: &'static str,
}

/// The `.json` record written after the files.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    key: serde_json::Value,
    train_bytes: u64,
    test_bytes: u64,
    summary: serde_json::Value,
}

/// The cache entry of one key in a data directory.
#[derive(Debug, Clone)]
struct Entry {
    files: SplitFiles,
    record: PathBuf,
    key: serde_json::Value,
    /// The names of the links in the run's directory.
    train_link: String,
    test_link: String,
}

impl Entry {
    fn new<K: serde::Serialize>(
        root: &Path,
        kind: &str,
        ext: &str,
        key: &K,
        train_rows: u64,
    ) -> Result<Entry, TrainError> {
        let key = serde_json::to_value(CacheKey {
            kind,
            ext,
            train_rows,
            options: key,
            malt: env!("CARGO_PKG_VERSION"),
        })
        .map_err(|e| TrainError::InvalidOptions(format!("synthetic data options: {e}")))?;
        let stem = format!("{kind}-{:016x}", fnv1a(key.to_string().as_bytes()));
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Ok(Entry {
            files: SplitFiles {
                train: root.join(format!("{stem}.train.{ext}")),
                test: root.join(format!("{stem}.test.{ext}")),
            },
            record: root.join(format!("{stem}.json")),
            key,
            train_link: format!("train.{ext}"),
            test_link: format!("test.{ext}"),
        })
    }

    /// The record, when it names this key and both files have its sizes.
    fn complete(&self) -> Option<Record> {
        let text = std::fs::read_to_string(&self.record).ok()?;
        let record: Record = serde_json::from_str(&text).ok()?;
        let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
        (record.key == self.key
            && size(&self.files.train) == Some(record.train_bytes)
            && size(&self.files.test) == Some(record.test_bytes))
        .then_some(record)
    }
}

/// 64-bit FNV-1a: a hash that stays the same across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A temporary name next to `path`, unique to this process and call.
fn partial(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.partial", std::process::id()));
    path.with_file_name(name)
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

/// The training and test files made by `generate` from `key`, split after
/// `train_rows` lines: taken from the data directory ([`data_dir`]), or
/// generated there on rank 0 when missing or incomplete; linked from `dir`
/// (the run's `<out>/synth-*`), whose name names the kind of data. Every
/// rank returns the paths once the files exist.
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
    split_synthetic_in(sync, &data_dir(), dir, ext, key, train_rows, generate)
}

/// [`split_synthetic`] with the data directory `root`.
pub(crate) fn split_synthetic_in<K, S, G>(
    sync: &mut dyn ModelSync,
    root: &Path,
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
    let kind = dir
        .file_name()
        .map_or_else(|| "synth".into(), |n| n.to_string_lossy().into_owned());
    // [failed, generated into `dir`], as rank 0 saw them.
    let mut status = [0.0, 0.0];
    let mut outcome = Ok(());
    if sync.rank() == 0 {
        let here = match writable(root) {
            Ok(()) => root,
            Err(e) => {
                tracing::warn!(
                    "data directory {}: {e}; generating into {}",
                    root.display(),
                    dir.display()
                );
                status[1] = 1.0;
                dir
            }
        };
        outcome = Entry::new(here, &kind, ext, key, train_rows)
            .and_then(|entry| make(&entry, dir, train_rows, generate));
        if outcome.is_err() {
            status[0] = 1.0;
        }
    }
    sync.allreduce_sum(&mut status)?;
    outcome?;
    if status[0] > 0.0 {
        return Err(TrainError::PeerFailed(0));
    }
    let here = if status[1] > 0.0 { dir } else { root };
    Ok(Entry::new(here, &kind, ext, key, train_rows)?.files)
}

/// Whether files can be made in `root` (created if missing).
fn writable(root: &Path) -> io::Result<()> {
    std::fs::create_dir_all(root)?;
    let probe = partial(&root.join("probe"));
    File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// Makes the files of `entry` unless they are complete, and links them from
/// `dir`.
fn make<S, G>(entry: &Entry, dir: &Path, train_rows: u64, generate: G) -> Result<(), TrainError>
where
    S: serde::Serialize,
    G: FnOnce(&mut dyn Write) -> Result<S, TrainError>,
{
    let record = match entry.complete() {
        Some(r) => r,
        None => generate_entry(entry, train_rows, generate)?,
    };
    if let Err(e) = link(entry, dir, &record) {
        // The run has its data; only the pointers to it are missing.
        tracing::warn!("{}: {e}", dir.display());
    }
    Ok(())
}

/// Generates the files of `entry` and writes its record.
fn generate_entry<S, G>(entry: &Entry, train_rows: u64, generate: G) -> Result<Record, TrainError>
where
    S: serde::Serialize,
    G: FnOnce(&mut dyn Write) -> Result<S, TrainError>,
{
    let files = &entry.files;
    if let Some(root) = entry.record.parent() {
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        remove_stale_partials(root);
    }
    // A record must not vouch for files that are being replaced.
    let _ = std::fs::remove_file(&entry.record);
    let tmp_train = partial(&files.train);
    let tmp_test = partial(&files.test);
    let remove_temps = || {
        let _ = std::fs::remove_file(&tmp_train);
        let _ = std::fs::remove_file(&tmp_test);
    };
    let create = |p: &Path| {
        File::create(p)
            .map(|f| BufWriter::with_capacity(1 << 20, f))
            .map_err(|e| TrainError::io(p, e))
    };
    let result = create(&tmp_train).and_then(|a| {
        let mut split = LineSplit {
            a,
            b: create(&tmp_test)?,
            remaining: train_rows,
        };
        let summary = generate(&mut split)?;
        split.flush().map_err(|e| TrainError::io(&files.train, e))?;
        let done = |w: BufWriter<File>, p: &Path| {
            w.into_inner()
                .map_err(|e| TrainError::io(p, e.into_error()))?
                .sync_all()
                .map_err(|e| TrainError::io(p, e))
        };
        done(split.a, &files.train)?;
        done(split.b, &files.test)?;
        Ok(summary)
    });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            remove_temps();
            return Err(e);
        }
    };
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len());
    let record = Record {
        key: entry.key.clone(),
        train_bytes: size(&tmp_train).map_err(|e| TrainError::io(&files.train, e))?,
        test_bytes: size(&tmp_test).map_err(|e| TrainError::io(&files.test, e))?,
        summary: serde_json::to_value(&summary).unwrap_or_default(),
    };
    let renamed = std::fs::rename(&tmp_train, &files.train)
        .map_err(|e| TrainError::io(&files.train, e))
        .and_then(|_| {
            std::fs::rename(&tmp_test, &files.test).map_err(|e| TrainError::io(&files.test, e))
        });
    if let Err(e) = renamed {
        remove_temps();
        return Err(e);
    }
    let text = serde_json::to_string_pretty(&record).unwrap_or_default() + "\n";
    let tmp_record = partial(&entry.record);
    std::fs::write(&tmp_record, text)
        .and_then(|_| std::fs::rename(&tmp_record, &entry.record))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp_record);
            TrainError::io(&entry.record, e)
        })?;
    Ok(record)
}

/// Removes `*.partial` files in `root` that no run has touched for a day.
fn remove_stale_partials(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let path = e.path();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_PARTIAL);
        if stale && path.extension().is_some_and(|x| x == "partial") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Points `dir/train.<ext>` and `dir/test.<ext>` at the files of `entry`
/// and writes the generator's summary to `dir/summary.json`.
fn link(entry: &Entry, dir: &Path, record: &Record) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (target, name) in [
        (&entry.files.train, &entry.train_link),
        (&entry.files.test, &entry.test_link),
    ] {
        let at = dir.join(name);
        match std::fs::remove_file(&at) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(target, &at)?;
    }
    // The key file of the layout before the data directory.
    let _ = std::fs::remove_file(dir.join("options.json"));
    let text = serde_json::to_string_pretty(&record.summary).unwrap_or_default() + "\n";
    std::fs::write(dir.join("summary.json"), text)
}

#[cfg(unix)]
fn symlink(target: &Path, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(not(unix))]
fn symlink(target: &Path, at: &Path) -> io::Result<()> {
    std::fs::hard_link(target, at)
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

    fn gen_lines<'a>(
        text: &'static str,
        calls: &'a mut u32,
    ) -> impl FnOnce(&mut dyn Write) -> Result<u32, TrainError> + 'a {
        move |w| {
            *calls += 1;
            w.write_all(text.as_bytes())
                .map_err(|e| TrainError::io(Path::new("x"), e))?;
            Ok(text.lines().count() as u32)
        }
    }

    fn mtime(p: &Path) -> std::time::SystemTime {
        std::fs::metadata(p).unwrap().modified().unwrap()
    }

    #[test]
    fn generates_once_then_reuses_across_output_directories() {
        let tmp = TempDir::new("train-prepare");
        let root = tmp.path().join("cache");
        let run = |n: u32| tmp.path().join(format!("run{n}")).join("synth-x");
        let mut calls = 0;
        let first = split_synthetic_in(
            &mut NoSync,
            &root,
            &run(1),
            "txt",
            &("k", 1),
            2,
            gen_lines("a\nb\nc\n", &mut calls),
        )
        .unwrap();
        assert_eq!(calls, 1);
        assert!(first.train.starts_with(&root), "{first:?}");
        let name = first
            .train
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("synth-x-") && name.ends_with(".train.txt"),
            "{name}"
        );
        assert_eq!(std::fs::read_to_string(&first.train).unwrap(), "a\nb\n");
        assert_eq!(std::fs::read_to_string(&first.test).unwrap(), "c\n");
        let (train_time, test_time) = (mtime(&first.train), mtime(&first.test));
        // A second run, in another output directory, reuses the files.
        for n in [2, 2, 1] {
            let again = split_synthetic_in(
                &mut NoSync,
                &root,
                &run(n),
                "txt",
                &("k", 1),
                2,
                gen_lines("a\nb\nc\n", &mut calls),
            )
            .unwrap();
            assert_eq!(again, first);
        }
        assert_eq!(calls, 1, "the cached files were regenerated");
        assert_eq!(mtime(&first.train), train_time);
        assert_eq!(mtime(&first.test), test_time);
        // The runs' directories point at the cached files and hold the
        // generator's summary.
        for n in [1, 2] {
            let d = run(n);
            assert_eq!(
                std::fs::read_to_string(d.join("train.txt")).unwrap(),
                "a\nb\n"
            );
            assert_eq!(std::fs::read_to_string(d.join("test.txt")).unwrap(), "c\n");
            assert_eq!(
                std::fs::read_link(d.join("train.txt")).unwrap(),
                first.train
            );
            assert_eq!(
                std::fs::read_to_string(d.join("summary.json")).unwrap(),
                "3\n"
            );
        }
        // Different parameters: other files; the first ones stay.
        let other = split_synthetic_in(
            &mut NoSync,
            &root,
            &run(1),
            "txt",
            &("k", 2),
            1,
            gen_lines("x\ny\n", &mut calls),
        )
        .unwrap();
        assert_eq!(calls, 2);
        assert_ne!(other.train, first.train);
        assert_eq!(std::fs::read_to_string(&other.test).unwrap(), "y\n");
        assert_eq!(
            std::fs::read_to_string(run(1).join("test.txt")).unwrap(),
            "y\n"
        );
        assert_eq!(std::fs::read_to_string(&first.train).unwrap(), "a\nb\n");
        // The same options split elsewhere are other files too.
        let resplit = split_synthetic_in(
            &mut NoSync,
            &root,
            &run(3),
            "txt",
            &("k", 1),
            1,
            gen_lines("a\nb\nc\n", &mut calls),
        )
        .unwrap();
        assert_eq!(calls, 3);
        assert_ne!(resplit.train, first.train);
        // No temporary file is left.
        for e in std::fs::read_dir(&root).unwrap() {
            let name = e.unwrap().file_name();
            assert!(!name.to_string_lossy().ends_with(".partial"), "{name:?}");
        }
    }

    #[test]
    fn incomplete_cached_files_are_generated_again() {
        let tmp = TempDir::new("train-prepare-cut");
        let root = tmp.path().join("cache");
        let dir = tmp.path().join("run").join("synth-x");
        let mut calls = 0;
        let text = "line one\nline two\nline three\n";
        let get = |calls: &mut u32| {
            split_synthetic_in(
                &mut NoSync,
                &root,
                &dir,
                "txt",
                &"key",
                2,
                gen_lines(text, calls),
            )
            .unwrap()
        };
        let files = get(&mut calls);
        assert_eq!(calls, 1);
        // Cut short: generated again.
        std::fs::write(&files.train, "line one\nline").unwrap();
        assert_eq!(get(&mut calls), files);
        assert_eq!(calls, 2);
        assert_eq!(
            std::fs::read_to_string(&files.train).unwrap(),
            "line one\nline two\n"
        );
        // A missing test file, or a missing record: generated again.
        std::fs::remove_file(&files.test).unwrap();
        get(&mut calls);
        assert_eq!(calls, 3);
        assert_eq!(
            std::fs::read_to_string(&files.test).unwrap(),
            "line three\n"
        );
        let record = files.train.to_string_lossy().replace(".train.txt", ".json");
        assert!(Path::new(&record).is_file(), "{record}");
        std::fs::write(&record, "{").unwrap();
        get(&mut calls);
        assert_eq!(calls, 4);
        get(&mut calls);
        assert_eq!(calls, 4);
    }

    #[test]
    fn a_failed_generation_leaves_no_record_and_no_temporary_file() {
        let tmp = TempDir::new("train-prepare-fail");
        let root = tmp.path().join("cache");
        let dir = tmp.path().join("run").join("synth-x");
        let err = split_synthetic_in(&mut NoSync, &root, &dir, "txt", &1, 1, |w| {
            w.write_all(b"half\n").unwrap();
            Err::<u32, _>(TrainError::InvalidOptions("generator failed".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("generator failed"), "{err}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn an_unusable_data_directory_falls_back_to_the_run_directory() {
        let tmp = TempDir::new("train-prepare-fallback");
        // A file where the directory should be.
        let root = tmp.path().join("not-a-dir");
        std::fs::write(&root, "").unwrap();
        let dir = tmp.path().join("run").join("synth-x");
        let mut calls = 0;
        let files = split_synthetic_in(
            &mut NoSync,
            &root,
            &dir,
            "txt",
            &1,
            1,
            gen_lines("a\nb\n", &mut calls),
        )
        .unwrap();
        assert!(files.train.starts_with(&dir), "{files:?}");
        assert_eq!(
            std::fs::read_to_string(dir.join("train.txt")).unwrap(),
            "a\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("test.txt")).unwrap(),
            "b\n"
        );
    }

    #[test]
    fn the_data_directory_follows_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        const ALL: [(&str, &str); 3] = [
            (DATA_DIR_ENV, "/data/malt"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(default_data_dir(env(&ALL)), PathBuf::from("/data/malt"));
        assert_eq!(default_data_dir(env(&ALL[1..])), PathBuf::from("/xdg/malt"));
        assert_eq!(
            default_data_dir(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")])),
            PathBuf::from("/home/u/.cache/malt")
        );
        assert_eq!(
            default_data_dir(env(&[(DATA_DIR_ENV, ""), ("HOME", "/home/u")])),
            PathBuf::from("/home/u/.cache/malt")
        );
        assert_eq!(
            default_data_dir(env(&[])),
            std::env::temp_dir().join("malt-data")
        );
    }

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
