//! vol — the Vector Object Library.
//!
//! Dense and sparse model vectors that a data-parallel SGD loop shares with
//! `scatter(graph)` and merges with `gather(udf)`, on top of `dstorm`.
