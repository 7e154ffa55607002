//! Error types of vol.
//!
//! [`VolError`] is the one error the public API returns. The transport-free
//! modules (graphs, merge functions, option parsing, and [`crate::wire`] for
//! encodings) have their own small error enums, each convertible into
//! [`VolError`] with `?`. Errors of the group itself (joining, the control
//! channel, membership) arrive wrapped as [`VolError::Dstorm`].
//!
//! [`Seconds`] and [`RankList`] format durations and rank lists the way
//! every message of malt does.

pub use dstorm::error::{RankList, Seconds};

use crate::wire::EncodingError;

/// Everything that can go wrong in vol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolError {
    /// A communication graph is invalid for the world it is used with.
    #[error("communication graph: {0}")]
    Graph(#[from] GraphError),
    /// An update could not be encoded or decoded.
    #[error("wire encoding: {0}")]
    Wire(#[from] EncodingError),
    /// A merge function (UDF) rejected its input.
    #[error("merge: {0}")]
    Merge(#[from] MergeError),
    /// A textual option (graph, UDF, consistency, representation) is malformed.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// Statistics could not be serialized to JSON.
    #[error("statistics to JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The communication layer failed (control channel, segment, peer
    /// connection, a bounded wait inside dstorm, ...).
    #[error(transparent)]
    Dstorm(#[from] dstorm::Error),
    /// A rank sent vol something over the control channel that it cannot
    /// read (a vector description, an iteration).
    #[error("malformed control message: {0}")]
    Protocol(String),
    /// Ranks disagree about a collectively created vector. Every rank gets
    /// this error (each compares every rank's description with rank 0's).
    #[error("vector {vector:?}: rank {rank} disagrees with rank 0 about the {what} ({ours} vs {theirs})")]
    Mismatch {
        /// Rank 0's name for the vector.
        vector: String,
        /// The first rank that disagrees.
        rank: usize,
        /// What differs (name, element type, length, graph, ...).
        what: &'static str,
        /// Rank 0's value.
        ours: String,
        /// The disagreeing rank's value.
        theirs: String,
    },
    /// No vector of this name is registered.
    #[error("unknown vector {name:?} (known: {known:?})")]
    UnknownVector {
        /// The name asked for.
        name: String,
        /// The names that are registered.
        known: Vec<String>,
    },
    /// A vector exists under this name but has another type.
    #[error("vector {name:?} is a {found}, not a {expected}")]
    WrongType {
        /// The vector's name.
        name: String,
        /// The type asked for.
        expected: &'static str,
        /// The type registered.
        found: &'static str,
    },
    /// A vector of this name is already registered.
    #[error("a vector named {name:?} is already registered")]
    DuplicateVector {
        /// The name.
        name: String,
    },
    /// A consistency wait did not end within the group's timeout.
    #[error("vector {vector:?}: {op} at iteration {iteration} timed out after {} waiting for ranks {}", Seconds(*waited), RankList(missing))]
    Timeout {
        /// The vector.
        vector: String,
        /// What was waited for.
        op: &'static str,
        /// This rank's iteration.
        iteration: u64,
        /// How long we waited.
        waited: std::time::Duration,
        /// The ranks that had not made enough progress.
        missing: Vec<usize>,
    },
    /// A peer's update could not be understood.
    #[error("vector {vector:?}: update from rank {sender} rejected: {problem}")]
    BadUpdate {
        /// The vector.
        vector: String,
        /// The rank that wrote it.
        sender: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A sparse vector holds more entries than it was created for.
    #[error("sparse vector {vector:?} holds {nnz} entries; it was created for at most {max}")]
    TooManyEntries {
        /// The vector.
        vector: String,
        /// Entries stored.
        nnz: usize,
        /// The limit given at creation.
        max: usize,
    },
    /// Options that cannot describe a vector.
    #[error("vector {vector:?}: {problem}")]
    InvalidVector {
        /// The vector.
        vector: String,
        /// What is wrong.
        problem: String,
    },
    /// A call in an order the vector's consistency mode cannot serve: a
    /// `Bsp` gather before this rank's scatter of the iteration. Local and
    /// deterministic: every rank that makes the call gets it, and nothing
    /// was waited for or changed.
    #[error("vector {vector:?}: {problem}")]
    CallOrder {
        /// The vector.
        vector: String,
        /// What is wrong.
        problem: String,
    },
}

impl VolError {
    /// The group lost ranks and regrouped: call
    /// [`dstorm::Group::regroup`], then `rejoin` every vector (in the same
    /// order on every survivor), re-assign the departed ranks' work and go
    /// on. Nothing was half-applied: the failed call either merged whole
    /// updates or none.
    pub fn is_regrouped(&self) -> bool {
        matches!(self, VolError::Dstorm(dstorm::Error::Regrouped { .. }))
    }

    /// The group is over for this rank: it was evicted, or too few ranks
    /// are left (`MALT_MIN_RANKS`), or the job was aborted.
    pub fn is_fatal_membership(&self) -> bool {
        matches!(
            self,
            VolError::Dstorm(
                dstorm::Error::Evicted { .. }
                    | dstorm::Error::Quorum { .. }
                    | dstorm::Error::Aborted(_)
            )
        )
    }
}

/// A communication graph that cannot be used for a given world.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The world has no ranks.
    #[error("a world must have at least one rank")]
    EmptyWorld,
    /// A rank is outside `0..world`.
    #[error("rank {rank} is out of range for a world of {world} ranks")]
    RankOutOfRange {
        /// The offending rank.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// A custom adjacency list does not have one row per rank.
    #[error("custom graph has {rows} adjacency rows but the world has {world} ranks")]
    WrongRowCount {
        /// Rows in the adjacency list.
        rows: usize,
        /// The world size.
        world: usize,
    },
    /// A custom adjacency list names a neighbour outside `0..world`.
    #[error("custom graph: rank {rank} lists neighbour {neighbor}, out of range for a world of {world} ranks")]
    NeighborOutOfRange {
        /// The rank whose row holds the neighbour.
        rank: usize,
        /// The offending neighbour.
        neighbor: usize,
        /// The world size.
        world: usize,
    },
    /// A random graph asks for more distinct peers than exist.
    #[error("random graph asks for {k} peers per rank but a world of {world} ranks has only {} other ranks", .world.saturating_sub(1))]
    DegreeTooLarge {
        /// Requested peers per rank.
        k: usize,
        /// The world size.
        world: usize,
    },
    /// The union of all ranks' out-edges is not strongly connected: some
    /// update could never reach some rank.
    #[error("graph {graph} is not strongly connected for {world} ranks: no path from rank {from} to rank {to}")]
    NotStronglyConnected {
        /// The graph, as text (see `Graph`'s `Display`).
        graph: String,
        /// The world size.
        world: usize,
        /// A rank that cannot reach `to`.
        from: usize,
        /// A rank that `from` cannot reach.
        to: usize,
    },
}

/// A merge function (UDF) was given inputs it cannot merge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// A dense update's length differs from the local vector's.
    #[error("incoming update {update} has {found} elements; the local vector has {expected}")]
    LengthMismatch {
        /// Position of the update in the incoming list.
        update: usize,
        /// Local length.
        expected: usize,
        /// The update's length.
        found: usize,
    },
    /// A sparse update carries an index outside the local vector.
    #[error("incoming sparse update {update} carries index {index}, out of range for a vector of length {len}")]
    IndexOutOfRange {
        /// Position of the update in the incoming list.
        update: usize,
        /// The offending index.
        index: u64,
        /// Local length.
        len: usize,
    },
    /// The merge function handles dense updates only.
    #[error("this merge function does not accept sparse updates (update {update} is sparse)")]
    SparseUnsupported {
        /// Position of the first sparse update.
        update: usize,
    },
    /// A merge function of the application's own refused its input, for the
    /// reason given. As with every merge error, the gather leaves the
    /// iteration where it was and keeps the updates for the next gather.
    #[error("the merge function failed: {0}")]
    Failed(String),
}

/// A textual option could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {input:?} as a {what}: {reason}")]
pub struct ParseError {
    /// What was being parsed (graph, UDF, consistency mode, ...).
    pub what: &'static str,
    /// The text given.
    pub input: String,
    /// Why it was rejected, including the accepted forms.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        ParseError {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}
