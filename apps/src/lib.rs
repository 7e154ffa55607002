//! malt applications: data readers and generators, the training apps, the
//! launcher and the benchmarks behind the `malt` command line.

pub mod data;
