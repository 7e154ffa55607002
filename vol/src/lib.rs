//! vol — the Vector Object Library.
//!
//! Dense and sparse model vectors that a data-parallel SGD loop shares with
//! `scatter(graph)` and merges with `gather(udf)`, on top of `dstorm`.

pub mod consistency;
pub mod element;
pub mod error;
pub mod graph;
pub mod sparse;
pub mod stats;
pub mod udf;

pub use consistency::Consistency;
pub use element::{Element, ElementKind};
pub use error::{GraphError, MergeError, ParseError, VolError, WireError};
pub use graph::Graph;
pub use sparse::{Encoding, Representation, SparseIndex, SparseUpdate, SparseVector};
pub use stats::{PeerStats, StalenessHistogram, Stats};
pub use udf::{Merge, PerIndex, Udf, Update};
