//! The [`ModelSync`] seam implemented with vol: the model travels as a
//! `vol::DenseVector<f32>` with one-sided `scatter()` and a local
//! `gather(udf)`; scalars for metrics and decisions go through the control
//! channel (they are a few numbers, never model bytes).

use super::sync::{ModelSync, SyncInfo, SyncMode, SyncPoint};
use super::TrainError;
use dstorm::Group;
use std::time::Duration;
use vol::{Consistency, DenseVector, Graph, Representation, VectorOptions};

/// A rank's communication for training: a group and, from the first
/// synchronisation on, the shared model vector.
#[derive(Debug)]
pub struct VolSync {
    group: Group,
    opts: VectorOptions,
    model: Option<DenseVector<f32>>,
}

impl VolSync {
    /// Joins the job described by the environment with this graph and
    /// consistency for the model.
    pub fn new(
        group: Group,
        graph: Graph,
        consistency: Consistency,
        representation: Representation,
    ) -> Self {
        let opts = VectorOptions::new()
            .graph(graph)
            .consistency(consistency)
            .representation(representation);
        VolSync {
            group,
            opts,
            model: None,
        }
    }

    /// The group, for a final barrier.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Ends the job cleanly: drops the vector, then a final barrier.
    pub fn finish(self) -> Result<(), TrainError> {
        let rank = self.group.rank();
        drop(self.model);
        self.group.finish().map_err(|e| err(rank, "finish", e))
    }

    fn vector(&mut self, len: usize) -> Result<&mut DenseVector<f32>, TrainError> {
        let rank = self.group.rank();
        if self.model.as_ref().is_some_and(|m| m.len() != len) {
            return Err(TrainError::InvalidOptions(format!(
                "the model changed length from {} to {len}",
                self.model.as_ref().map_or(0, |m| m.len())
            )));
        }
        if self.model.is_none() {
            let v = DenseVector::<f32>::new(&self.group, "malt-train-model", len, &self.opts)
                .map_err(|e| err(rank, "create the model vector", e))?;
            self.model = Some(v);
        }
        Ok(self.model.as_mut().expect("created above"))
    }
}

fn err(rank: usize, what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Sync {
        rank,
        what: what.to_string(),
        message: e.to_string(),
    }
}

impl ModelSync for VolSync {
    fn rank(&self) -> usize {
        self.group.rank()
    }

    fn world(&self) -> usize {
        self.group.world()
    }

    fn sync(&mut self, point: SyncPoint<'_>) -> Result<SyncInfo, TrainError> {
        let rank = self.rank();
        let model = point.model;
        let v = self.vector(model.len())?;
        let sent_before = v.stats().bytes_sent;
        match point.mode {
            SyncMode::Average => v.copy_from_slice(model),
            SyncMode::SumDeltas { base } => {
                for ((d, m), b) in v.iter_mut().zip(model.iter()).zip(base) {
                    *d = m - b;
                }
            }
        }
        v.scatter().map_err(|e| err(rank, "scatter", e))?;
        let info = match point.mode {
            SyncMode::Average => v.gather(vol::Udf::Avg),
            SyncMode::SumDeltas { .. } => v.gather(vol::Udf::Sum),
        }
        .map_err(|e| err(rank, "gather", e))?;
        match point.mode {
            SyncMode::Average => model.copy_from_slice(v),
            SyncMode::SumDeltas { base } => {
                for ((m, d), b) in model.iter_mut().zip(v.iter()).zip(base) {
                    *m = b + d;
                }
            }
        }
        Ok(SyncInfo {
            merged: info.merged,
            bytes_sent: v.stats().bytes_sent - sent_before,
            waited: Duration::from_nanos(info.wait_ns),
        })
    }

    fn allreduce_sum(&mut self, xs: &mut [f64]) -> Result<(), TrainError> {
        let rank = self.rank();
        let mine = serde_json::to_string(&xs).map_err(|e| err(rank, "allreduce", e))?;
        let all = self
            .group
            .allgather(&mine)
            .map_err(|e| err(rank, "allreduce", e))?;
        let mut sum = vec![0.0f64; xs.len()];
        // Summed in rank order on every rank: identical results everywhere.
        for (r, s) in all.iter().enumerate() {
            let v: Vec<f64> = serde_json::from_str(s).map_err(|e| err(rank, "allreduce", e))?;
            if v.len() != xs.len() {
                return Err(err(
                    rank,
                    "allreduce",
                    format!("rank {r} sent {} values, this rank {}", v.len(), xs.len()),
                ));
            }
            for (a, b) in sum.iter_mut().zip(v) {
                *a += b;
            }
        }
        xs.copy_from_slice(&sum);
        Ok(())
    }

    fn bytes_sent(&self) -> u64 {
        self.model.as_ref().map_or(0, |m| m.stats().bytes_sent)
    }
}
