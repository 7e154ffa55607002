//! vol — the Vector Object Library.
//!
//! Dense and sparse model vectors that a data-parallel SGD loop shares with
//! `scatter()` and merges with `gather(udf)`, on top of `dstorm`'s one-sided
//! writes: a scatter stores the vector into the receive queues of the
//! graph's out-neighbours, and a gather merges, locally, whatever has
//! landed. No rank ever asks another for anything on the data path.
//!
//! # Quick start
//!
//! An ordinary SGD loop becomes data-parallel by keeping its model in a
//! [`DenseVector`] and calling `scatter()` and `gather(Udf::Avg)` every few
//! batches. Under `malt launch -n 4 ./my-program` (or srun, mpirun,
//! torchrun) every rank runs the same code and joins with
//! [`Group::from_env`]; this example runs as a one-rank job on the
//! shared-memory transport. A program depends on vol only: the group, its
//! configuration and the launcher detection are re-exported here.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use vol::{Config, Consistency, DenseVector, Graph, Group, Udf, VectorOptions};
//!
//! // A one-rank job on a free local port (inside a launcher:
//! // `Group::from_env()?`).
//! let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
//! let group = Group::join(Config::local(0, 1, port, "vol-quick-start"))?;
//!
//! // The model of y = 2 x0 - 3 x1, created collectively by every rank.
//! let opts = VectorOptions::new()
//!     .graph(Graph::Halton)
//!     .consistency(Consistency::Bsp);
//! let mut w = DenseVector::<f32>::new(&group, "w", 2, &opts)?;
//!
//! // This rank's shard of the data.
//! let shard: Vec<([f32; 2], f32)> = (0..64)
//!     .map(|i| {
//!         let x = [(i % 8) as f32 / 8.0, (i / 8) as f32 / 8.0];
//!         (x, 2.0 * x[0] - 3.0 * x[1])
//!     })
//!     .collect();
//!
//! let lr = 0.5;
//! for _epoch in 0..300 {
//!     for batch in shard.chunks(16) {
//!         // The user's code, unchanged: `w` dereferences to `[f32]`.
//!         let mut grad = [0.0f32; 2];
//!         for (x, y) in batch {
//!             let err = w[0] * x[0] + w[1] * x[1] - y;
//!             grad[0] += err * x[0];
//!             grad[1] += err * x[1];
//!         }
//!         for j in 0..2 {
//!             w[j] -= lr * grad[j] / batch.len() as f32;
//!         }
//!     }
//!     w.scatter()?; // one-sided push to the graph's out-neighbours
//!     w.gather(Udf::Avg)?; // average with the peers' models
//! }
//! assert!((w[0] - 2.0).abs() < 1e-2, "w = {:?}", &w[..]);
//! assert!((w[1] + 3.0).abs() < 1e-2, "w = {:?}", &w[..]);
//! assert_eq!(w.iteration(), 300);
//! let stats = w.stats_json()?; // traffic, merges, staleness, waits
//! assert!(stats.contains("\"gathers\":300"));
//! drop(w);
//! group.finish()?;
//! # Ok(())
//! # }
//! ```
//!
//! # The pieces
//!
//! * Vectors: [`DenseVector<f32>`](DenseVector), [`DenseVector<f64>`](DenseVector)
//!   and [`SparseVector<u32|u64, f32|f64>`](SparseVector), created collectively:
//!   all ranks must agree on name, length, types and [`VectorOptions`], or
//!   every rank gets [`VolError::Mismatch`]. [`Registry`] finds vectors by
//!   name.
//! * Communication graphs ([`Graph`]): `All`, `Halton` (about log2 N peers,
//!   any update reaches everyone within ceil(log2 N) rounds), `Random`,
//!   `Ring`, `Custom`; a graph that is not strongly connected is rejected on
//!   every rank.
//! * Merge functions ([`udf`]): `Udf::Avg` (own copy included), `Sum`,
//!   `Max`, `Min`, closures over dense updates, [`PerIndex`] closures, or
//!   any [`Merge`] implementation. A dense vector under `All` and `Bsp`
//!   from 3 ranks and 16 KiB up runs the [`allreduce`] schedule by default,
//!   which merges with the four `Udf`s only: give it
//!   [`Schedule::Direct`] to merge with anything else.
//! * Consistency ([`Consistency`]): `Bsp`, `Ssp { s }`, `Async`; see
//!   [`exchange`] for how progress is tracked and waits are bounded.
//! * Flow control ([`FlowControl`]): `Overwrite` (latest wins, lapped
//!   updates counted) or `Backpressure` (a sender waits for the receiver's
//!   acknowledgement before reusing a slot).
//! * Representation ([`Representation`]): dense vectors can send only their
//!   changed entries; see [`dense`].
//! * Statistics ([`Stats`]): bytes and updates per peer, merges, torn and
//!   lapped updates, staleness histogram, time spent waiting; as JSON too.
//! * Sparse data ([`entries`]): [`SparseEntries`], the local value of a
//!   [`SparseVector`], and [`SparseUpdate`], what a merge function sees.
//! * The byte format of updates ([`wire`]) and its [`EncodingError`].
//! * The group (re-exported from dstorm): [`Group`] joins a job
//!   ([`Group::from_env`] inside any launcher, [`Config::from_env`] to adjust
//!   the configuration first), with its [`Config`], [`TransportKind`],
//!   [`FaultPolicy`] and [`Membership`]; its errors are [`GroupError`].

#![warn(missing_docs)]

pub mod allreduce;
pub mod consistency;
pub mod dense;
pub mod element;
pub mod entries;
pub mod error;
pub mod exchange;
pub mod graph;
pub mod registry;
pub mod representation;
pub mod sparse;
pub mod stats;
pub mod udf;
pub mod wire;

pub use allreduce::Schedule;
pub use consistency::Consistency;
pub use dense::{DenseVector, Values};
pub use dstorm::{Config, FaultPolicy, FlowControl, Group, Membership, TransportKind};
pub use element::{Element, ElementKind};
pub use entries::{SparseEntries, SparseIndex, SparseUpdate};
pub use error::{GraphError, MergeError, ParseError, VolError};
pub use exchange::{barrier, GatherInfo, VectorOptions};
pub use graph::Graph;
pub use registry::{Named, Registry};
pub use representation::{Encoding, Representation};
pub use sparse::SparseVector;
pub use stats::{PeerStats, StalenessHistogram, Stats};
pub use udf::{Merge, PerIndex, Udf, Update};
pub use wire::EncodingError;

/// The error of the group's own operations (joining, barriers, membership):
/// dstorm's error, which [`VolError::Dstorm`] wraps.
pub use dstorm::Error as GroupError;

/// The shared sparse vector under its former name.
pub type SparseVec<I, V> = SparseVector<I, V>;
