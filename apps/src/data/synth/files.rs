//! The generators' output files: the first rows of a stream into one file
//! and, optionally, the rows after them into a test file, each written
//! under a temporary name and renamed into place once both are complete.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{
    invalid, ratings_parts, sparse_parts, SynthError, SynthRatingsOptions, SynthRatingsSummary,
    SynthSparseOptions, SynthSparseSummary,
};

/// [`super::synth_sparse`] into the file at `path`. The data go to a temporary file
/// next to it, renamed to `path` once complete.
pub fn synth_sparse_file(
    opts: &SynthSparseOptions,
    path: &Path,
) -> Result<SynthSparseSummary, SynthError> {
    synth_sparse_files(opts, path, None).map(|(train, _)| train)
}

/// [`synth_sparse_file`], and with `test = Some((rows, test_path))` that
/// many more rows of the same model and stream, after the `opts.rows` rows
/// of `path`, into `test_path` (see the module documentation). Each file
/// goes to a temporary file first; both are renamed once both are complete.
/// Returns the summaries of the two files.
pub fn synth_sparse_files(
    opts: &SynthSparseOptions,
    path: &Path,
    test: Option<(u64, &Path)>,
) -> Result<(SynthSparseSummary, Option<SynthSparseSummary>), SynthError> {
    opts.validate()?;
    let total = SynthSparseOptions {
        rows: with_test(opts.rows, test)?,
        ..opts.clone()
    };
    total.validate()?;
    split_into_files(opts.rows, path, test, |parts| sparse_parts(&total, parts))
}

/// Writes the first `rows` rows of a generator's stream to `path` and, with
/// `test = Some((n, test_path))`, the next `n` to `test_path`, through
/// `generate` (which writes each part's rows); both files are renamed into
/// place once both are complete. Returns the parts' summaries.
pub(super) fn split_into_files<S>(
    rows: u64,
    path: &Path,
    test: Option<(u64, &Path)>,
    generate: impl FnOnce(&mut [Part<File>]) -> Result<Vec<S>, SynthError>,
) -> Result<(S, Option<S>), SynthError> {
    let paths = output_paths(path, test)?;
    let counts = [rows, test.map_or(0, |(n, _)| n)];
    let mut summaries = write_atomically(&paths, |files| {
        let mut parts: Vec<Part<File>> = files
            .into_iter()
            .zip(counts)
            .map(|((f, name), n)| Part::new(f, n, &name))
            .collect();
        generate(&mut parts)
    })?;
    let test_summary = (summaries.len() > 1).then(|| summaries.remove(1));
    Ok((summaries.remove(0), test_summary))
}

/// One output of a generator: the next `rows` rows of the stream go to
/// `out`, named `name` in errors.
pub(super) struct Part<W> {
    pub(super) out: W,
    pub(super) rows: u64,
    pub(super) name: String,
}

impl<W> Part<W> {
    pub(super) fn new(out: W, rows: u64, name: &str) -> Self {
        Part {
            out,
            rows,
            name: name.to_string(),
        }
    }
}

/// `rows` plus the rows of the test part, if any.
pub(super) fn with_test(rows: u64, test: Option<(u64, &Path)>) -> Result<u64, SynthError> {
    match test {
        None => Ok(rows),
        Some((0, _)) => Err(invalid("test rows must be at least 1")),
        Some((n, _)) => rows
            .checked_add(n)
            .ok_or_else(|| invalid("training and test rows overflow")),
    }
}

/// The output file and the test file, which must differ.
fn output_paths<'a>(
    path: &'a Path,
    test: Option<(u64, &'a Path)>,
) -> Result<Vec<&'a Path>, SynthError> {
    let mut paths = vec![path];
    if let Some((_, t)) = test {
        if t == path {
            return Err(invalid(format!(
                "the test file must differ from the output file ({})",
                path.display()
            )));
        }
        paths.push(t);
    }
    Ok(paths)
}

/// [`super::synth_ratings`] into the file at `path`. The data go to a temporary file
/// next to it, renamed to `path` once complete.
pub fn synth_ratings_file(
    opts: &SynthRatingsOptions,
    path: &Path,
) -> Result<SynthRatingsSummary, SynthError> {
    synth_ratings_files(opts, path, None).map(|(train, _)| train)
}

/// [`synth_ratings_file`], and with `test = Some((ratings, test_path))` that
/// many more ratings of the same model and stream, none of a pair rated in
/// `path`, into `test_path` (see the module documentation). Both files are
/// renamed into place once both are complete. Returns the summaries of the
/// two files.
pub fn synth_ratings_files(
    opts: &SynthRatingsOptions,
    path: &Path,
    test: Option<(u64, &Path)>,
) -> Result<(SynthRatingsSummary, Option<SynthRatingsSummary>), SynthError> {
    opts.validate()?;
    let total = SynthRatingsOptions {
        ratings: with_test(opts.ratings, test)?,
        ..opts.clone()
    };
    total.validate()?;
    split_into_files(opts.ratings, path, test, |parts| {
        ratings_parts(&total, parts)
    })
}

/// Runs `write` on temporary files next to `paths` (given with the names of
/// the final files, for errors), then renames each to its path; the
/// temporary files are removed on failure.
fn write_atomically<T>(
    paths: &[&Path],
    write: impl FnOnce(Vec<(File, String)>) -> Result<T, SynthError>,
) -> Result<T, SynthError> {
    let tmp: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let mut name = p.file_name().unwrap_or_default().to_os_string();
            name.push(".partial");
            p.with_file_name(name)
        })
        .collect();
    let io_err = |path: &Path| {
        let file = path.display().to_string();
        move |source| SynthError::Io { file, source }
    };
    let remove_all = || {
        for t in &tmp {
            let _ = std::fs::remove_file(t);
        }
    };
    let mut files = Vec::with_capacity(paths.len());
    for (p, t) in paths.iter().zip(&tmp) {
        match File::create(t) {
            Ok(f) => files.push((f, p.display().to_string())),
            Err(e) => {
                remove_all();
                return Err(io_err(p)(e));
            }
        }
    }
    let result = write(files).and_then(|summary| {
        for (p, t) in paths.iter().zip(&tmp) {
            std::fs::rename(t, p).map_err(io_err(p))?;
        }
        Ok(summary)
    });
    if result.is_err() {
        remove_all();
    }
    result
}
