//! Data sets: LIBSVM reading and sharding, synthetic generators, converters.
//!
//! Everything here streams: readers reuse their line buffer and the example
//! they fill, generators write straight into any [`std::io::Write`], so files
//! with millions of lines are handled in constant memory.
//!
//! - [`libsvm`]: LIBSVM/svmlight reader and writer, and an in-memory
//!   [`libsvm::SparseDataset`].
//! - [`shard`]: splits a line-oriented file into per-rank byte ranges on line
//!   boundaries, so each example is read by exactly one rank and no rank
//!   parses the whole file.
//! - [`ratings`]: `user item rating` triplets (whitespace, CSV, MovieLens `::`).
//! - [`synth`]: deterministic RCV1-like sparse classification data and
//!   Netflix-like ratings.
//! - [`fashion_mnist`]: converts the IDX files of the Debian package
//!   `dataset-fashion-mnist` into LIBSVM files.
//!
//! Every failure is a typed error; errors about a line of a file carry a
//! [`Location`] that prints as `file:line`. [`DataError`] gathers all of them
//! for callers that handle the data commands together.

use std::fmt;

pub mod fashion_mnist;
pub mod libsvm;
mod lines;
pub mod ratings;
pub mod shard;
pub mod synth;

#[cfg(test)]
pub(crate) mod testutil;

/// Where in an input a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or a name such as `<stdin>` given to the reader).
    pub file: String,
    /// 1-based line number in the whole file. `None` only when the reader
    /// covers a byte range of a file and the lines before that range could not
    /// be counted; then [`Location::byte`] still locates the line.
    pub line: Option<u64>,
    /// Byte offset of the first byte of the line in the whole file.
    pub byte: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => write!(f, "{} (line starting at byte {})", self.file, self.byte),
        }
    }
}

/// Any error of the data layer, for callers that treat them alike.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Reading or writing LIBSVM data.
    #[error(transparent)]
    Libsvm(#[from] libsvm::LibsvmError),
    /// Reading ratings.
    #[error(transparent)]
    Ratings(#[from] ratings::RatingsError),
    /// Computing or opening a shard.
    #[error(transparent)]
    Shard(#[from] shard::ShardError),
    /// Generating synthetic data.
    #[error(transparent)]
    Synth(#[from] synth::SynthError),
    /// Converting Fashion-MNIST.
    #[error(transparent)]
    FashionMnist(#[from] fashion_mnist::FashionMnistError),
}
