//! LIBSVM / svmlight sparse text format: a streaming reader, a writer and an
//! in-memory data set.
//!
//! # Format
//!
//! One example per line:
//!
//! ```text
//! <label> [qid:<n>] <index>:<value> <index>:<value> ... [# comment]
//! ```
//!
//! - `label` is a finite number: `+1`/`-1` or `1`/`0` for binary tasks,
//!   integers for multiclass tasks, any real for regression. It is kept as an
//!   `f64`; [`binary_sign`] maps binary labels to ±1.
//! - `qid:<n>` (optional, right after the label) is a non-negative integer.
//! - indices are **1-based** in the file and strictly increasing within a line;
//!   in memory a [`Feature`] holds the **0-based** index (`file index - 1`).
//! - values are finite numbers, read as `f32`.
//! - fields are separated by spaces or tabs; `#` starts a comment that runs to
//!   the end of the line; blank and comment-only lines are skipped; `\r\n` line
//!   ends are accepted.
//!
//! A malformed line is a [`LibsvmError::Parse`] naming the file, the 1-based
//! line number and the [`LineProblem`].
//!
//! # Feature limit
//!
//! A model over a LIBSVM file holds one weight per feature, so the largest
//! index of a file sizes memory. Readers refuse a line with an index above
//! their limit, [`DEFAULT_MAX_FEATURES`] (2^26 = 67,108,864 features, a
//! 256 MiB `f32` model) unless raised with
//! [`LibsvmReader::with_max_features`] (`malt train svm --max-features`),
//! with a [`LibsvmError::FeatureLimit`] naming the file, the line and the
//! limit.
//!
//! The reader keeps one line buffer and fills an [`Example`] the caller owns,
//! so [`LibsvmReader::read_example`] does not allocate once the buffers have
//! grown to the longest line. The `Iterator` implementation is a convenience
//! that allocates one `Example` per line.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use super::lines::{fields, show, LineReader};
use super::shard::{self, ByteRange, ShardError, ShardInput};
use super::Location;

/// Features a [`LibsvmReader`] accepts unless told otherwise: indices
/// `1..=DEFAULT_MAX_FEATURES` in the file. 2^26 = 67,108,864 covers the
/// common public sets (RCV1: 47,236; news20: 1,355,191; url: 3,231,961;
/// KDD Cup 2010: under 30 million) while bounding the model a file can ask
/// for to 256 MiB of `f32` weights.
pub const DEFAULT_MAX_FEATURES: u32 = 1 << 26;

/// One non-zero entry of a sparse example.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Feature {
    /// 0-based feature index (the file holds `index + 1`).
    pub index: u32,
    /// The value.
    pub value: f32,
}

/// One labelled sparse example.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Example {
    /// The label as written in the file.
    pub label: f64,
    /// The `qid:` field, if present.
    pub qid: Option<u64>,
    /// Non-zero features, strictly increasing by index.
    pub features: Vec<Feature>,
}

impl Example {
    /// The label as a binary sign; see [`binary_sign`].
    pub fn sign(&self) -> f64 {
        binary_sign(self.label)
    }

    /// One past the largest feature index (0 for an example without features).
    pub fn dim(&self) -> u32 {
        self.features.last().map_or(0, |f| f.index + 1)
    }
}

/// Maps a binary label to ±1: `+1.0` for labels above zero, `-1.0` otherwise.
/// This reads both conventions, `+1`/`-1` and `1`/`0`. For multiclass labels
/// use [`one_vs_rest`].
pub fn binary_sign(label: f64) -> f64 {
    if label > 0.0 {
        1.0
    } else {
        -1.0
    }
}

/// `+1.0` when `label` is `class`, `-1.0` otherwise.
pub fn one_vs_rest(label: f64, class: f64) -> f64 {
    if label == class {
        1.0
    } else {
        -1.0
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// The label is not a finite number.
    BadLabel(String),
    /// `qid:` is not followed by a non-negative integer.
    BadQid(String),
    /// `qid:` appears after a feature.
    MisplacedQid(String),
    /// A feature field has no `:`.
    MissingColon(String),
    /// The index is not a non-negative integer.
    BadIndex(String),
    /// The index is 0 (indices are 1-based).
    ZeroIndex(String),
    /// The index does not fit in 32 bits.
    IndexTooLarge(String),
    /// The index is not greater than the one before it.
    NonIncreasingIndex {
        /// The previous index (1-based, as in the file).
        previous: u64,
        /// This index (1-based, as in the file).
        index: u64,
    },
    /// The value is not a number.
    BadValue(String),
    /// The value is infinite or NaN.
    NonFiniteValue(String),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::BadLabel(t) => write!(f, "bad label `{t}` (expected a finite number)"),
            LineProblem::BadQid(t) => {
                write!(f, "bad qid `{t}` (expected qid:<non-negative integer>)")
            }
            LineProblem::MisplacedQid(t) => {
                write!(f, "`{t}`: qid must come right after the label")
            }
            LineProblem::MissingColon(t) => {
                write!(f, "missing colon in `{t}` (expected index:value)")
            }
            LineProblem::BadIndex(t) => {
                write!(f, "bad index in `{t}` (expected a positive integer)")
            }
            LineProblem::ZeroIndex(t) => write!(f, "index 0 in `{t}` (indices start at 1)"),
            LineProblem::IndexTooLarge(t) => {
                write!(f, "index too large in `{t}` (at most {})", u32::MAX)
            }
            LineProblem::NonIncreasingIndex { previous, index } => write!(
                f,
                "index {index} after index {previous} (indices must be strictly increasing)"
            ),
            LineProblem::BadValue(t) => write!(f, "bad value in `{t}` (expected a number)"),
            LineProblem::NonFiniteValue(t) => {
                write!(f, "value in `{t}` is not finite")
            }
        }
    }
}

/// Why an example cannot be written.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleProblem {
    /// The label is infinite or NaN.
    NonFiniteLabel(f64),
    /// A value is infinite or NaN.
    NonFiniteValue {
        /// 0-based index of the feature.
        index: u32,
        /// The value.
        value: f32,
    },
    /// Indices are not strictly increasing.
    NonIncreasingIndex {
        /// 0-based previous index.
        previous: u32,
        /// 0-based index.
        index: u32,
    },
    /// Index `u32::MAX` cannot be written (the file index would overflow).
    IndexTooLarge(u32),
}

impl fmt::Display for ExampleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExampleProblem::NonFiniteLabel(l) => write!(f, "label {l} is not finite"),
            ExampleProblem::NonFiniteValue { index, value } => {
                write!(f, "value {value} of feature {index} is not finite")
            }
            ExampleProblem::NonIncreasingIndex { previous, index } => write!(
                f,
                "feature index {index} after {previous} (indices must be strictly increasing)"
            ),
            ExampleProblem::IndexTooLarge(i) => write!(f, "feature index {i} is too large"),
        }
    }
}

/// Errors of LIBSVM reading and writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibsvmError {
    /// Reading or writing failed.
    #[error("{file}: {source}")]
    Io {
        /// The file (or `(output)` for a writer without a name).
        file: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A line is malformed.
    #[error("{at}: {problem}")]
    Parse {
        /// The file and line.
        at: Location,
        /// What is wrong.
        problem: LineProblem,
    },
    /// A line has a feature index above the reader's limit.
    #[error(
        "{at}: feature index {index} is beyond the limit of {limit} features \
         (raise it with --max-features)"
    )]
    FeatureLimit {
        /// The file and line.
        at: Location,
        /// The largest index of the line, 1-based as in the file.
        index: u64,
        /// The reader's limit: indices `1..=limit` are accepted.
        limit: u32,
    },
    /// An example given to the writer cannot be written.
    #[error("cannot write example: {0}")]
    InvalidExample(ExampleProblem),
    /// The shard could not be computed or opened.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// Parses one line into `ex`.
///
/// Returns `Ok(false)` for a blank or comment-only line (then `ex` is left as
/// it was), `Ok(true)` when `ex` now holds the line's example.
pub fn parse_line(line: &[u8], ex: &mut Example) -> Result<bool, LineProblem> {
    let data = match line.iter().position(|&b| b == b'#') {
        Some(i) => &line[..i],
        None => line,
    };
    let mut it = fields(data);
    let Some(label) = it.next() else {
        return Ok(false);
    };
    ex.label = parse_f64(label)
        .filter(|l| l.is_finite())
        .ok_or_else(|| LineProblem::BadLabel(show(label)))?;
    ex.qid = None;
    ex.features.clear();
    let mut previous: u64 = 0;
    let mut first = true;
    for tok in it {
        let Some(colon) = tok.iter().position(|&b| b == b':') else {
            return Err(LineProblem::MissingColon(show(tok)));
        };
        let (name, value) = (&tok[..colon], &tok[colon + 1..]);
        if name == b"qid" {
            if !first {
                return Err(LineProblem::MisplacedQid(show(tok)));
            }
            first = false;
            let qid = parse_u64(value).ok_or_else(|| LineProblem::BadQid(show(tok)))?;
            ex.qid = Some(qid);
            continue;
        }
        first = false;
        let index = parse_u64(name).ok_or_else(|| LineProblem::BadIndex(show(tok)))?;
        if index == 0 {
            return Err(LineProblem::ZeroIndex(show(tok)));
        }
        if index > u64::from(u32::MAX) {
            return Err(LineProblem::IndexTooLarge(show(tok)));
        }
        if index <= previous {
            return Err(LineProblem::NonIncreasingIndex { previous, index });
        }
        let value = parse_f32(value).ok_or_else(|| LineProblem::BadValue(show(tok)))?;
        if !value.is_finite() {
            return Err(LineProblem::NonFiniteValue(show(tok)));
        }
        ex.features.push(Feature {
            index: (index - 1) as u32,
            value,
        });
        previous = index;
    }
    Ok(true)
}

/// Decimal digits only; saturates at `u64::MAX` so that huge indices are
/// reported as too large rather than malformed.
fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in t {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(v)
}

fn parse_f32(t: &[u8]) -> Option<f32> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

fn parse_f64(t: &[u8]) -> Option<f64> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// Streaming LIBSVM reader over any [`BufRead`].
#[derive(Debug)]
pub struct LibsvmReader<R> {
    lines: LineReader<R>,
    max_features: u32,
}

impl LibsvmReader<BufReader<File>> {
    /// Opens the file at `path`.
    pub fn open(path: &Path) -> Result<Self, LibsvmError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| LibsvmError::Io {
            file: name.clone(),
            source,
        })?;
        Ok(Self::new(BufReader::with_capacity(1 << 18, f), name))
    }
}

impl LibsvmReader<ShardInput> {
    /// Opens the part of the file at `path` that rank `rank` of `world`
    /// reads (see [`shard`]). Errors still carry the line number
    /// in the whole file.
    pub fn open_shard(path: &Path, rank: usize, world: usize) -> Result<Self, LibsvmError> {
        let range = shard::shard(path, rank, world)?;
        Self::open_range(path, range)
    }

    /// Opens `range` of the file at `path`; `range` must start on a line.
    pub fn open_range(path: &Path, range: ByteRange) -> Result<Self, LibsvmError> {
        let input = shard::open_range(path, range)?;
        Ok(LibsvmReader {
            lines: LineReader::with_range(
                input,
                path.display().to_string(),
                Some(path.to_path_buf()),
                range.start,
            ),
            max_features: DEFAULT_MAX_FEATURES,
        })
    }
}

impl<R: BufRead> LibsvmReader<R> {
    /// Reads from `inner`; `name` names the input in errors.
    pub fn new(inner: R, name: impl Into<String>) -> Self {
        LibsvmReader {
            lines: LineReader::new(inner, name.into()),
            max_features: DEFAULT_MAX_FEATURES,
        }
    }

    /// Accepts feature indices `1..=max_features` (in the file's 1-based
    /// numbering) instead of [`DEFAULT_MAX_FEATURES`]; a line with a larger
    /// index is a [`LibsvmError::FeatureLimit`]. `u32::MAX` accepts every
    /// index the format holds.
    pub fn with_max_features(mut self, max_features: u32) -> Self {
        self.max_features = max_features;
        self
    }

    /// The largest feature index accepted (1-based, as in the file).
    pub fn max_features(&self) -> u32 {
        self.max_features
    }

    /// Reads the next example into `ex`, reusing its buffer. Returns
    /// `Ok(false)` at the end of the input.
    pub fn read_example(&mut self, ex: &mut Example) -> Result<bool, LibsvmError> {
        loop {
            let more = self.lines.next_line().map_err(|source| LibsvmError::Io {
                file: self.lines.name().to_string(),
                source,
            })?;
            if !more {
                return Ok(false);
            }
            match parse_line(self.lines.line(), ex) {
                Ok(true) if ex.dim() > self.max_features => {
                    return Err(LibsvmError::FeatureLimit {
                        at: self.lines.location(),
                        index: u64::from(ex.dim()),
                        limit: self.max_features,
                    })
                }
                Ok(true) => return Ok(true),
                Ok(false) => continue,
                Err(problem) => {
                    return Err(LibsvmError::Parse {
                        at: self.lines.location(),
                        problem,
                    })
                }
            }
        }
    }

    /// Lines read so far, counted from the start of this reader (blank and
    /// comment lines included).
    pub fn lines_read(&self) -> u64 {
        self.lines.lines_read()
    }

    /// Offset in the file of the next unread byte.
    pub fn position(&self) -> u64 {
        self.lines.position()
    }
}

impl<R: BufRead> Iterator for LibsvmReader<R> {
    type Item = Result<Example, LibsvmError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut ex = Example::default();
        match self.read_example(&mut ex) {
            Ok(true) => Some(Ok(ex)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Appends one LIBSVM line (with `\n`) for the example to `out`.
///
/// Numbers are written in the shortest form that reads back to the same
/// value, so writing then reading is exact.
pub fn format_line(
    label: f64,
    qid: Option<u64>,
    features: &[Feature],
    out: &mut Vec<u8>,
) -> Result<(), ExampleProblem> {
    if !label.is_finite() {
        return Err(ExampleProblem::NonFiniteLabel(label));
    }
    let mut previous: Option<u32> = None;
    for f in features {
        if !f.value.is_finite() {
            return Err(ExampleProblem::NonFiniteValue {
                index: f.index,
                value: f.value,
            });
        }
        if f.index == u32::MAX {
            return Err(ExampleProblem::IndexTooLarge(f.index));
        }
        if let Some(p) = previous {
            if f.index <= p {
                return Err(ExampleProblem::NonIncreasingIndex {
                    previous: p,
                    index: f.index,
                });
            }
        }
        previous = Some(f.index);
    }
    push_f64(out, label);
    if let Some(q) = qid {
        out.extend_from_slice(b" qid:");
        push_u64(out, q);
    }
    for f in features {
        out.push(b' ');
        push_u64(out, u64::from(f.index) + 1);
        out.push(b':');
        push_f32(out, f.value);
    }
    out.push(b'\n');
    Ok(())
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the shortest decimal form of `v` that reads back exactly, in
/// exponent form for very small or very large magnitudes.
pub(crate) fn push_f32(out: &mut Vec<u8>, v: f32) {
    let a = v.abs();
    // Writing into a Vec cannot fail.
    let _ = if a == 0.0 || (1e-5..1e9).contains(&a) {
        write!(out, "{v}")
    } else {
        write!(out, "{v:e}")
    };
}

/// As [`push_f32`] for `f64`.
pub(crate) fn push_f64(out: &mut Vec<u8>, v: f64) {
    let a = v.abs();
    let _ = if a == 0.0 || (1e-5..1e15).contains(&a) {
        write!(out, "{v}")
    } else {
        write!(out, "{v:e}")
    };
}

/// Writes LIBSVM lines to any [`Write`].
///
/// The writer formats each line into a reused buffer and hands it to `inner`
/// in one call; wrap unbuffered outputs in a [`BufWriter`] (as
/// [`LibsvmWriter::create`] does).
#[derive(Debug)]
pub struct LibsvmWriter<W: Write> {
    inner: W,
    name: String,
    buf: Vec<u8>,
}

impl LibsvmWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<Self, LibsvmError> {
        let name = path.display().to_string();
        let f = File::create(path).map_err(|source| LibsvmError::Io {
            file: name.clone(),
            source,
        })?;
        Ok(Self::with_name(BufWriter::with_capacity(1 << 18, f), name))
    }
}

impl<W: Write> LibsvmWriter<W> {
    /// Writes to `inner`.
    pub fn new(inner: W) -> Self {
        Self::with_name(inner, "(output)")
    }

    /// Writes to `inner`, named `name` in errors.
    pub fn with_name(inner: W, name: impl Into<String>) -> Self {
        LibsvmWriter {
            inner,
            name: name.into(),
            buf: Vec::with_capacity(4096),
        }
    }

    /// Writes one example. Feature indices are 0-based and must be strictly
    /// increasing; label and values must be finite.
    pub fn write(
        &mut self,
        label: f64,
        qid: Option<u64>,
        features: &[Feature],
    ) -> Result<(), LibsvmError> {
        self.buf.clear();
        format_line(label, qid, features, &mut self.buf).map_err(LibsvmError::InvalidExample)?;
        self.inner
            .write_all(&self.buf)
            .map_err(|source| LibsvmError::Io {
                file: self.name.clone(),
                source,
            })
    }

    /// Writes one example.
    pub fn write_example(&mut self, ex: &Example) -> Result<(), LibsvmError> {
        self.write(ex.label, ex.qid, &ex.features)
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), LibsvmError> {
        self.inner.flush().map_err(|source| LibsvmError::Io {
            file: self.name.clone(),
            source,
        })
    }

    /// Returns the output (not flushed).
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Examples held in memory in compressed-row form: one flat array of features
/// and one offset per example.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseDataset {
    labels: Vec<f64>,
    offsets: Vec<usize>,
    features: Vec<Feature>,
    dim: u32,
}

impl SparseDataset {
    /// An empty data set.
    pub fn new() -> Self {
        SparseDataset {
            labels: Vec::new(),
            offsets: vec![0],
            features: Vec::new(),
            dim: 0,
        }
    }

    /// Reads every remaining example of `reader`.
    pub fn read<R: BufRead>(reader: &mut LibsvmReader<R>) -> Result<Self, LibsvmError> {
        let mut data = SparseDataset::new();
        let mut ex = Example::default();
        while reader.read_example(&mut ex)? {
            data.push(ex.label, &ex.features);
        }
        Ok(data)
    }

    /// Reads the whole file at `path`.
    pub fn load(path: &Path) -> Result<Self, LibsvmError> {
        Self::read(&mut LibsvmReader::open(path)?)
    }

    /// Reads the shard of rank `rank` of `world` of the file at `path`.
    pub fn load_shard(path: &Path, rank: usize, world: usize) -> Result<Self, LibsvmError> {
        Self::read(&mut LibsvmReader::open_shard(path, rank, world)?)
    }

    /// [`SparseDataset::load_shard`] accepting feature indices up to
    /// `max_features` (see [`LibsvmReader::with_max_features`]).
    pub fn load_shard_limited(
        path: &Path,
        rank: usize,
        world: usize,
        max_features: u32,
    ) -> Result<Self, LibsvmError> {
        Self::read(
            &mut LibsvmReader::open_shard(path, rank, world)?.with_max_features(max_features),
        )
    }

    /// Appends an example (features as a reader yields them).
    pub fn push(&mut self, label: f64, features: &[Feature]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.labels.push(label);
        self.features.extend_from_slice(features);
        self.offsets.push(self.features.len());
        if let Some(m) = features.iter().map(|f| f.index + 1).max() {
            self.dim = self.dim.max(m);
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// One past the largest feature index seen.
    pub fn dim(&self) -> u32 {
        self.dim
    }

    /// Total number of stored features.
    pub fn nnz(&self) -> usize {
        self.features.len()
    }

    /// All labels.
    pub fn labels(&self) -> &[f64] {
        &self.labels
    }

    /// Label of example `i` (panics if `i >= len()`, like slice indexing).
    pub fn label(&self, i: usize) -> f64 {
        self.labels[i]
    }

    /// Features of example `i` (panics if `i >= len()`, like slice indexing).
    pub fn features(&self, i: usize) -> &[Feature] {
        &self.features[self.offsets[i]..self.offsets[i + 1]]
    }

    /// `(label, features)` of example `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<(f64, &[Feature])> {
        (i < self.len()).then(|| (self.labels[i], self.features(i)))
    }

    /// Iterates over `(label, features)`.
    pub fn iter(&self) -> impl Iterator<Item = (f64, &[Feature])> + '_ {
        (0..self.len()).map(move |i| (self.labels[i], self.features(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use proptest::prelude::*;

    fn f(index: u32, value: f32) -> Feature {
        Feature { index, value }
    }

    fn parse(line: &str) -> Result<Option<Example>, LineProblem> {
        let mut ex = Example::default();
        Ok(parse_line(line.as_bytes(), &mut ex)?.then_some(ex))
    }

    fn read_all(text: &str) -> Result<Vec<Example>, LibsvmError> {
        LibsvmReader::new(text.as_bytes(), "test.svm").collect()
    }

    fn parse_error(text: &str) -> (Location, LineProblem) {
        match read_all(text) {
            Err(LibsvmError::Parse { at, problem }) => (at, problem),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn parses_documented_forms() {
        let ex = parse("+1 1:0.5 3:2").unwrap().unwrap();
        assert_eq!(ex.label, 1.0);
        assert_eq!(ex.qid, None);
        assert_eq!(ex.features, vec![f(0, 0.5), f(2, 2.0)]);
        assert_eq!(ex.dim(), 3);

        assert_eq!(parse("-1 7:1e-3").unwrap().unwrap().label, -1.0);
        assert_eq!(parse("0 2:1").unwrap().unwrap().sign(), -1.0);
        assert_eq!(parse("1 2:1").unwrap().unwrap().sign(), 1.0);
        assert_eq!(parse("7 2:1").unwrap().unwrap().label, 7.0);
        assert_eq!(parse("2.5 2:1").unwrap().unwrap().label, 2.5);

        let ex = parse("3 qid:42 10:-1.25\t11:+4 # a comment 12:9")
            .unwrap()
            .unwrap();
        assert_eq!(ex.label, 3.0);
        assert_eq!(ex.qid, Some(42));
        assert_eq!(ex.features, vec![f(9, -1.25), f(10, 4.0)]);

        // Label only (all-zero example) and trailing spaces.
        let ex = parse("-1   ").unwrap().unwrap();
        assert!(ex.features.is_empty());
        assert_eq!(ex.dim(), 0);

        // Blank and comment lines.
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   \t ").unwrap(), None);
        assert_eq!(parse("# only a comment").unwrap(), None);
        assert_eq!(parse("  # indented comment").unwrap(), None);

        // Largest index.
        let ex = parse("1 4294967295:1").unwrap().unwrap();
        assert_eq!(ex.features, vec![f(u32::MAX - 1, 1.0)]);
    }

    #[test]
    fn reader_skips_blank_lines_and_handles_crlf_and_no_trailing_newline() {
        let text = "# header\n+1 1:1\r\n\n-1 2:2\r\n   \n1 3:3";
        let got = read_all(text).unwrap();
        let labels: Vec<f64> = got.iter().map(|e| e.label).collect();
        assert_eq!(labels, vec![1.0, -1.0, 1.0]);
        assert_eq!(got[2].features, vec![f(2, 3.0)]);
    }

    #[test]
    fn read_example_reuses_the_buffer() {
        let text = "1 1:1 2:2 3:3\n-1 5:5\n";
        let mut r = LibsvmReader::new(text.as_bytes(), "t");
        let mut ex = Example::default();
        assert!(r.read_example(&mut ex).unwrap());
        let cap = ex.features.capacity();
        let ptr = ex.features.as_ptr();
        assert!(r.read_example(&mut ex).unwrap());
        assert_eq!(ex.features, vec![f(4, 5.0)]);
        assert_eq!(ex.features.capacity(), cap);
        assert_eq!(ex.features.as_ptr(), ptr);
        assert!(!r.read_example(&mut ex).unwrap());
        assert_eq!(r.lines_read(), 2);
    }

    #[test]
    fn malformed_lines_name_file_line_and_problem() {
        let cases: Vec<(&str, u64, LineProblem)> = vec![
            ("1 1:1\nabc 1:1\n", 2, LineProblem::BadLabel("abc".into())),
            ("nan 1:1\n", 1, LineProblem::BadLabel("nan".into())),
            ("inf 1:1\n", 1, LineProblem::BadLabel("inf".into())),
            ("1:1 2:2\n", 1, LineProblem::BadLabel("1:1".into())),
            (
                "1 1:1\n\n# c\n1 qid:x 1:1\n",
                4,
                LineProblem::BadQid("qid:x".into()),
            ),
            (
                "1 1:1 qid:3\n",
                1,
                LineProblem::MisplacedQid("qid:3".into()),
            ),
            ("1 1:1 2\n", 1, LineProblem::MissingColon("2".into())),
            ("1 a:1\n", 1, LineProblem::BadIndex("a:1".into())),
            ("1 :1\n", 1, LineProblem::BadIndex(":1".into())),
            ("1 -3:1\n", 1, LineProblem::BadIndex("-3:1".into())),
            ("1 0:1\n", 1, LineProblem::ZeroIndex("0:1".into())),
            (
                "1 4294967296:1\n",
                1,
                LineProblem::IndexTooLarge("4294967296:1".into()),
            ),
            (
                "1 99999999999999999999999:1\n",
                1,
                LineProblem::IndexTooLarge("99999999999999999999999:1".into()),
            ),
            (
                "1 1:1\n1 2:1\n1 5:1 3:1\n",
                3,
                LineProblem::NonIncreasingIndex {
                    previous: 5,
                    index: 3,
                },
            ),
            (
                "1 2:1 2:1\n",
                1,
                LineProblem::NonIncreasingIndex {
                    previous: 2,
                    index: 2,
                },
            ),
            ("1 1:x\n", 1, LineProblem::BadValue("1:x".into())),
            ("1 1:\n", 1, LineProblem::BadValue("1:".into())),
            ("1 1:1:1\n", 1, LineProblem::BadValue("1:1:1".into())),
            (
                "1 1:1e99\n",
                1,
                LineProblem::NonFiniteValue("1:1e99".into()),
            ),
            ("1 1:NaN\n", 1, LineProblem::NonFiniteValue("1:NaN".into())),
        ];
        for (text, line, problem) in cases {
            let (at, got) = parse_error(text);
            assert_eq!(got, problem, "input {text:?}");
            assert_eq!(at.line, Some(line), "input {text:?}");
            assert_eq!(at.file, "test.svm");
            let msg = LibsvmError::Parse { at, problem }.to_string();
            assert!(
                msg.starts_with(&format!("test.svm:{line}: ")),
                "message {msg:?}"
            );
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let (at, problem) = parse_error("1 1:1\n1 0:1\n");
        let msg = LibsvmError::Parse { at, problem }.to_string();
        assert_eq!(msg, "test.svm:2: index 0 in `0:1` (indices start at 1)");
        let (at, problem) = parse_error("1 3:1 2:1\n");
        let msg = LibsvmError::Parse { at, problem }.to_string();
        assert_eq!(
            msg,
            "test.svm:1: index 2 after index 3 (indices must be strictly increasing)"
        );
    }

    #[test]
    fn writer_writes_one_based_indices_and_short_numbers() {
        let mut w = LibsvmWriter::new(Vec::new());
        w.write(1.0, None, &[f(0, 0.5), f(9, 1.0)]).unwrap();
        w.write(-1.0, Some(3), &[]).unwrap();
        w.write(2.0, None, &[f(4, 1e-7), f(5, 3e20)]).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(text, "1 1:0.5 10:1\n-1 qid:3\n2 5:1e-7 6:3e20\n");
    }

    #[test]
    fn writer_rejects_invalid_examples() {
        let mut w = LibsvmWriter::new(Vec::new());
        assert!(matches!(
            w.write(f64::NAN, None, &[]),
            Err(LibsvmError::InvalidExample(ExampleProblem::NonFiniteLabel(
                _
            )))
        ));
        assert!(matches!(
            w.write(1.0, None, &[f(3, 1.0), f(3, 1.0)]),
            Err(LibsvmError::InvalidExample(
                ExampleProblem::NonIncreasingIndex {
                    previous: 3,
                    index: 3
                }
            ))
        ));
        assert!(matches!(
            w.write(1.0, None, &[f(1, f32::INFINITY)]),
            Err(LibsvmError::InvalidExample(
                ExampleProblem::NonFiniteValue { .. }
            ))
        ));
        assert!(matches!(
            w.write(1.0, None, &[f(u32::MAX, 1.0)]),
            Err(LibsvmError::InvalidExample(ExampleProblem::IndexTooLarge(
                _
            )))
        ));
        // Nothing was written for the rejected examples.
        assert!(w.into_inner().is_empty());
    }

    #[test]
    fn push_u64_writes_decimal() {
        for v in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn dataset_holds_examples_in_order() {
        let text = "1 1:1 3:3\n\n-1 2:2\n0\n";
        let data = SparseDataset::read(&mut LibsvmReader::new(text.as_bytes(), "t")).unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data.nnz(), 3);
        assert_eq!(data.dim(), 3);
        assert_eq!(data.labels(), &[1.0, -1.0, 0.0]);
        assert_eq!(data.features(0), &[f(0, 1.0), f(2, 3.0)]);
        assert_eq!(data.get(1), Some((-1.0, &[f(1, 2.0)][..])));
        assert_eq!(data.features(2), &[]);
        assert_eq!(data.get(3), None);
        assert_eq!(data.iter().count(), 3);
        assert!(SparseDataset::new().is_empty());
    }

    #[test]
    fn shards_read_every_example_once_with_absolute_line_numbers() {
        let dir = TempDir::new("libsvm-shard");
        let path = dir.path().join("d.svm");
        let mut text = String::from("# generated\n");
        for i in 0..200u32 {
            if i % 17 == 0 {
                text.push_str("\n# comment\n");
            }
            text.push_str(&format!("{} {}:{}\n", i, i % 50 + 1, i));
        }
        std::fs::write(&path, &text).unwrap();
        for world in 1..=8 {
            let mut labels = Vec::new();
            for rank in 0..world {
                let data = SparseDataset::load_shard(&path, rank, world).unwrap();
                labels.extend(data.labels().iter().map(|&l| l as u32));
            }
            assert_eq!(labels, (0..200).collect::<Vec<u32>>(), "world {world}");
        }
        // A bad line near the end is reported with its line number in the
        // whole file by whichever rank owns it.
        let bad_line = text.lines().count() as u64 + 1;
        text.push_str("1 0:1\n");
        std::fs::write(&path, &text).unwrap();
        let mut errors = Vec::new();
        for rank in 0..4 {
            if let Err(e) = SparseDataset::load_shard(&path, rank, 4) {
                errors.push(e);
            }
        }
        assert_eq!(errors.len(), 1);
        match &errors[0] {
            LibsvmError::Parse { at, problem } => {
                assert_eq!(at.line, Some(bad_line));
                assert_eq!(*problem, LineProblem::ZeroIndex("0:1".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn open_missing_file_is_typed() {
        let dir = TempDir::new("libsvm-missing");
        let err = LibsvmReader::open(&dir.path().join("absent.svm")).unwrap_err();
        assert!(matches!(err, LibsvmError::Io { .. }));
        assert!(err.to_string().contains("absent.svm"));
        let err = LibsvmReader::open_shard(&dir.path().join("absent.svm"), 0, 2).unwrap_err();
        assert!(matches!(err, LibsvmError::Shard(ShardError::Io { .. })));
    }

    #[test]
    fn file_round_trip() {
        let dir = TempDir::new("libsvm-file");
        let path = dir.path().join("w.svm");
        let examples = vec![
            Example {
                label: 1.0,
                qid: None,
                features: vec![f(0, 0.25), f(100, -3.5)],
            },
            Example {
                label: 0.0,
                qid: Some(9),
                features: vec![],
            },
        ];
        let mut w = LibsvmWriter::create(&path).unwrap();
        for ex in &examples {
            w.write_example(ex).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let back: Vec<Example> = LibsvmReader::open(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, examples);
    }

    fn arb_example() -> impl Strategy<Value = Example> {
        let label = prop_oneof![
            Just(1.0f64),
            Just(-1.0),
            Just(0.0),
            (-1000i32..1000).prop_map(f64::from),
            any::<f64>().prop_filter("finite", |l| l.is_finite()),
        ];
        let value = prop_oneof![
            any::<f32>().prop_filter("finite", |v| v.is_finite()),
            -10.0f32..10.0,
            Just(0.0f32),
        ];
        let features =
            proptest::collection::btree_map(0u32..u32::MAX, value, 0..30).prop_map(|m| {
                m.into_iter()
                    .map(|(index, value)| Feature { index, value })
                    .collect::<Vec<_>>()
            });
        (label, proptest::option::of(any::<u64>()), features).prop_map(|(label, qid, features)| {
            Example {
                label,
                qid,
                features,
            }
        })
    }

    proptest! {
        #[test]
        fn writer_then_reader_round_trips(examples in proptest::collection::vec(arb_example(), 0..20)) {
            let mut w = LibsvmWriter::new(Vec::new());
            for ex in &examples {
                w.write_example(ex).unwrap();
            }
            let bytes = w.into_inner();
            let back: Vec<Example> = LibsvmReader::new(&bytes[..], "p")
                .with_max_features(u32::MAX)
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(back.len(), examples.len());
            for (a, b) in back.iter().zip(&examples) {
                // Compare bit patterns so that -0.0 and 0.0 are told apart.
                prop_assert_eq!(a.label.to_bits(), b.label.to_bits());
                prop_assert_eq!(a.qid, b.qid);
                prop_assert_eq!(a.features.len(), b.features.len());
                for (x, y) in a.features.iter().zip(&b.features) {
                    prop_assert_eq!(x.index, y.index);
                    prop_assert_eq!(x.value.to_bits(), y.value.to_bits());
                }
            }
        }

        #[test]
        fn parser_never_panics(line in "[-+0-9a-z:.#qe \t]{0,60}") {
            let mut ex = Example::default();
            let _ = parse_line(line.as_bytes(), &mut ex);
        }

        #[test]
        fn parser_never_panics_on_arbitrary_bytes(
            line in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut ex = Example::default();
            if let Ok(true) = parse_line(&line, &mut ex) {
                // What is accepted is what the format promises.
                prop_assert!(ex.label.is_finite());
                prop_assert!(ex.features.windows(2).all(|w| w[0].index < w[1].index));
                prop_assert!(ex.features.iter().all(|f| f.value.is_finite()));
            }
        }

        #[test]
        fn reader_keeps_every_line_under_its_limit(
            text in proptest::collection::vec(any::<u8>(), 0..400),
            indices in proptest::collection::vec(1u64..=u64::from(u32::MAX) + 2, 0..4),
            limit in 1u32..=u32::MAX,
        ) {
            // Arbitrary bytes, then lines with indices around any limit.
            let mut input = text;
            for i in indices {
                input.extend_from_slice(format!("\n+1 {i}:1\n").as_bytes());
            }
            let mut r = LibsvmReader::new(&input[..], "p").with_max_features(limit);
            let mut ex = Example::default();
            loop {
                match r.read_example(&mut ex) {
                    Ok(true) => prop_assert!(ex.dim() <= limit),
                    Ok(false) => break,
                    Err(LibsvmError::FeatureLimit { index, limit: l, .. }) => {
                        prop_assert_eq!(l, limit);
                        prop_assert!(index > u64::from(limit));
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn indices_beyond_the_limit_name_file_line_and_limit() {
        let text = "+1 1:1 3:1\n\n-1 2:1 67108865:1\n";
        let err = read_all(text).unwrap_err();
        match &err {
            LibsvmError::FeatureLimit { at, index, limit } => {
                assert_eq!(at.file, "test.svm");
                assert_eq!(at.line, Some(3));
                assert_eq!(*index, u64::from(DEFAULT_MAX_FEATURES) + 1);
                assert_eq!(*limit, DEFAULT_MAX_FEATURES);
            }
            other => panic!("expected the feature limit, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "test.svm:3: feature index 67108865 is beyond the limit of 67108864 features \
             (raise it with --max-features)"
        );
        // The largest index under the default limit, and a raised limit.
        let ok = read_all("+1 67108864:1\n").unwrap();
        assert_eq!(ok[0].dim(), DEFAULT_MAX_FEATURES);
        let big = "+1 4000000000:1\n";
        assert!(matches!(
            read_all(big),
            Err(LibsvmError::FeatureLimit {
                index: 4_000_000_000,
                ..
            })
        ));
        let mut r = LibsvmReader::new(big.as_bytes(), "t").with_max_features(u32::MAX);
        assert_eq!(r.max_features(), u32::MAX);
        let mut ex = Example::default();
        assert!(r.read_example(&mut ex).unwrap());
        assert_eq!(ex.dim(), 4_000_000_000);
        let mut r = LibsvmReader::new("1 3:1\n".as_bytes(), "t").with_max_features(2);
        assert!(matches!(
            r.read_example(&mut ex),
            Err(LibsvmError::FeatureLimit {
                index: 3,
                limit: 2,
                ..
            })
        ));
    }

    #[test]
    fn shards_keep_the_limit() {
        let dir = TempDir::new("libsvm-limit");
        let path = dir.path().join("d.svm");
        std::fs::write(&path, "+1 1:1\n-1 5:1\n").unwrap();
        assert_eq!(SparseDataset::load_shard(&path, 0, 1).unwrap().dim(), 5);
        let err = SparseDataset::load_shard_limited(&path, 0, 1, 4).unwrap_err();
        match err {
            LibsvmError::FeatureLimit { at, index, limit } => {
                assert_eq!((at.line, index, limit), (Some(2), 5, 4));
                assert!(at.file.ends_with("d.svm"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let data = SparseDataset::load_shard_limited(&path, 0, 1, 5).unwrap();
        assert_eq!(data.dim(), 5);
    }
}
