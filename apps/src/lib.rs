//! malt applications: data readers and generators, the launcher, the
//! cluster check and the benchmarks behind the `malt` command line.

#![warn(missing_docs)]

pub mod bench;
pub mod check;
pub mod data;
pub mod launch;
pub mod log;
pub mod quantile;
pub mod train;
