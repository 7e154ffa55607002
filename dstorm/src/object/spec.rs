//! An object's description ([`ObjectSpec`]), its validation into the
//! out-neighbour lists of every rank, and the check that every rank passed
//! the same one.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// What a sender does when its next slot in a receiver's queue still holds
/// an update the receiver has not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// Latest wins: the old update is overwritten and counted as lapped.
    #[default]
    Overwrite,
    /// The sender waits for the receiver's acknowledgement (bounded by the timeout).
    Backpressure,
}

/// A collective object's description; every rank must pass the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// Unique name within the group.
    pub name: String,
    /// Largest update in bytes.
    pub capacity: usize,
    /// Slots per sender queue, at least 2.
    pub depth: usize,
    /// Overwrite or backpressure.
    pub flow: FlowControl,
    /// Out-neighbours of every rank (`None`: every rank writes to every other).
    pub graph: Option<Vec<Vec<usize>>>,
}

impl ObjectSpec {
    /// An all-to-all object of `capacity` bytes, depth 2, overwrite.
    pub fn new(name: impl Into<String>, capacity: usize) -> ObjectSpec {
        ObjectSpec {
            name: name.into(),
            capacity,
            depth: 2,
            flow: FlowControl::Overwrite,
            graph: None,
        }
    }

    /// Sets the queue depth.
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Sets the flow control.
    pub fn flow(mut self, flow: FlowControl) -> Self {
        self.flow = flow;
        self
    }

    /// Sets the out-neighbour lists of every rank.
    pub fn graph(mut self, out_neighbors: Vec<Vec<usize>>) -> Self {
        self.graph = Some(out_neighbors);
        self
    }

    pub(crate) fn bad(&self, problem: String) -> Error {
        Error::BadObject {
            name: self.name.clone(),
            problem,
        }
    }

    /// Out-neighbours per rank, validated and normalised (sorted, no self loops).
    pub(crate) fn adjacency(&self, world: usize) -> Result<Vec<Vec<usize>>> {
        if self.capacity == 0 {
            return Err(self.bad("capacity must be at least 1 byte".into()));
        }
        if self.capacity > (1 << 40) {
            return Err(self.bad(format!("capacity {} is absurd", self.capacity)));
        }
        if !(2..=1024).contains(&self.depth) {
            return Err(self.bad(format!("depth {} is not in 2..=1024", self.depth)));
        }
        let adj = match &self.graph {
            None => (0..world)
                .map(|r| (0..world).filter(|p| *p != r).collect())
                .collect(),
            Some(g) => {
                if g.len() != world {
                    return Err(
                        self.bad(format!("graph has {} rows for a world of {world}", g.len()))
                    );
                }
                let mut adj = Vec::with_capacity(world);
                for (r, row) in g.iter().enumerate() {
                    if let Some(p) = row.iter().find(|p| **p >= world) {
                        return Err(
                            self.bad(format!("rank {r} names out-neighbour {p} >= {world}"))
                        );
                    }
                    let mut row: Vec<usize> = row.iter().copied().filter(|p| *p != r).collect();
                    row.sort_unstable();
                    row.dedup();
                    adj.push(row);
                }
                adj
            }
        };
        Ok(adj)
    }
}

/// Checks that every rank passed the same spec (`specs` in the order of
/// `members`): otherwise [`Error::Mismatch`] names the first rank and field
/// that differ.
pub(crate) fn check_agreement(specs: &[ObjectSpec], members: &[usize]) -> Result<()> {
    let base = &specs[0];
    for (i, s) in specs.iter().enumerate().skip(1) {
        let rank = members.get(i).copied().unwrap_or(i);
        let diff: Option<(&'static str, String, String)> = if s.name != base.name {
            Some(("the name", base.name.clone(), s.name.clone()))
        } else if s.capacity != base.capacity {
            Some((
                "the size in bytes",
                base.capacity.to_string(),
                s.capacity.to_string(),
            ))
        } else if s.depth != base.depth {
            Some((
                "the queue depth",
                base.depth.to_string(),
                s.depth.to_string(),
            ))
        } else if s.flow != base.flow {
            Some((
                "the flow control",
                format!("{:?}", base.flow),
                format!("{:?}", s.flow),
            ))
        } else if s.graph != base.graph {
            Some((
                "the graph",
                format!("{:?}", base.graph),
                format!("{:?}", s.graph),
            ))
        } else {
            None
        };
        if let Some((what, ours, theirs)) = diff {
            return Err(Error::Mismatch {
                name: base.name.clone(),
                rank,
                what,
                ours,
                theirs,
            });
        }
    }
    Ok(())
}
