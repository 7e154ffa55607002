//! The [`ModelSync`] seam implemented with vol: the model travels as a
//! `vol::DenseVector<f32>` with one-sided `scatter()` and a local
//! `gather(udf)`; scalars for metrics and decisions go through the control
//! channel (they are a few numbers, never model bytes).

use super::sync::{ModelSync, Regroup, SyncInfo, SyncMode, SyncPoint};
use super::TrainError;
use std::time::{Duration, Instant, SystemTime};
use vol::Group;
use vol::{Consistency, DenseVector, Graph, Representation, VectorOptions, VolError};

/// A rank's communication for training: a group and, from the first
/// synchronisation on, the shared model vector.
///
/// In a fault-tolerant job (`malt launch --min-ranks`), a call that finds
/// the group regrouped joins the survivors, re-creates the model vector
/// among them and reports a [`Regroup`] through
/// [`take_regroup`](ModelSync::take_regroup): a `sync` then returns without
/// merging (the local model goes on), a scalar reduction is repeated among
/// the survivors. Every survivor handles a regroup at its first call after
/// it, with the same collectives in the same order, so their calls stay
/// matched.
#[derive(Debug)]
pub struct VolSync {
    group: Group,
    opts: VectorOptions,
    model: Option<DenseVector<f32>>,
    part: (usize, usize),
    pending: Option<Regroup>,
    regroups: Vec<Regroup>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn is_regrouped(e: &vol::GroupError) -> bool {
    matches!(e, vol::GroupError::Regrouped { .. })
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
        let part = (group.rank(), group.world());
        VolSync {
            group,
            opts,
            model: None,
            part,
            pending: None,
            regroups: Vec::new(),
        }
    }

    /// Every regroup this rank went through.
    pub fn regroups(&self) -> &[Regroup] {
        &self.regroups
    }

    /// Joins the survivors after a regroup and re-creates the model vector
    /// among them; repeats if another rank fails meanwhile (bounded by the
    /// job timeout).
    fn handle_regroup(&mut self) -> Result<(), TrainError> {
        let rank = self.group.rank();
        let detected = unix_now();
        let deadline = Instant::now() + self.group.config().timeout;
        loop {
            let m = self.group.regroup().map_err(|e| err(rank, "regroup", e))?;
            let rejoined = match &mut self.model {
                Some(v) => v.rejoin(&self.group),
                None => Ok(()),
            };
            match rejoined {
                Ok(()) => {
                    let (part, parts) = m.share_of(rank).ok_or_else(|| {
                        err(rank, "regroup", "this rank is not among the survivors")
                    })?;
                    self.part = (part, parts);
                    let event = Regroup {
                        epoch: m.epoch,
                        part,
                        parts,
                        dead: m.dead,
                        iteration: self.model.as_ref().map_or(0, |v| v.iteration()),
                        detected_unix_s: detected,
                        resumed_unix_s: unix_now(),
                    };
                    tracing::warn!(?event, "rank {rank} continues after a regroup");
                    self.regroups.push(event.clone());
                    self.pending = Some(event);
                    return Ok(());
                }
                Err(e) if e.is_regrouped() && Instant::now() < deadline => continue,
                Err(e) => return Err(err(rank, "rejoin the model vector", e)),
            }
        }
    }

    /// The group, for a final barrier.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Ends the job cleanly: drops the vector, then a final barrier.
    /// Tells the other ranks why this one stops (see [`vol::Group::fail`]).
    pub fn fail(&self, reason: impl std::fmt::Display) {
        self.group.fail(reason);
    }

    /// The final barrier: every survivor is done before any leaves.
    pub fn finish(mut self) -> Result<(), TrainError> {
        let rank = self.group.rank();
        // A rank failing now still costs a regroup: the survivors finish
        // together.
        let deadline = Instant::now() + self.group.config().timeout;
        loop {
            match self.group.barrier() {
                Ok(()) => break,
                Err(e) if is_regrouped(&e) && Instant::now() < deadline => {
                    self.handle_regroup()?;
                }
                Err(e) => return Err(err(rank, "finish", e)),
            }
        }
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
        while self.model.is_none() {
            match DenseVector::<f32>::new(&self.group, "malt-train-model", len, &self.opts) {
                Ok(v) => self.model = Some(v),
                Err(e) if e.is_regrouped() => self.handle_regroup()?,
                Err(e) => return Err(err(rank, "create the model vector", e)),
            }
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
        self.part.1
    }

    fn part(&self) -> (usize, usize) {
        self.part
    }

    fn take_regroup(&mut self) -> Option<Regroup> {
        self.pending.take()
    }

    fn sync(&mut self, point: SyncPoint<'_>) -> Result<SyncInfo, TrainError> {
        match self.exchange(point) {
            Err(Interrupted::Regrouped) => {
                // The local model goes on unmerged this round.
                self.handle_regroup()?;
                Ok(SyncInfo::default())
            }
            Err(Interrupted::Failed(e)) => Err(e),
            Ok(info) => Ok(info),
        }
    }

    fn allreduce_sum(&mut self, xs: &mut [f64]) -> Result<(), TrainError> {
        let rank = self.rank();
        let mine = serde_json::to_string(&xs).map_err(|e| err(rank, "allreduce", e))?;
        let all = loop {
            match self.group.allgather(&mine) {
                Ok(all) => break all,
                // Every survivor repeats the reduction after regrouping.
                Err(e) if is_regrouped(&e) => self.handle_regroup()?,
                Err(e) => return Err(err(rank, "allreduce", e)),
            }
        };
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

/// Why an exchange stopped.
enum Interrupted {
    Regrouped,
    Failed(TrainError),
}

impl VolSync {
    fn exchange(&mut self, point: SyncPoint<'_>) -> Result<SyncInfo, Interrupted> {
        let rank = self.rank();
        let model = point.model;
        let fail = |what: &'static str| {
            move |e: VolError| {
                if e.is_regrouped() {
                    Interrupted::Regrouped
                } else {
                    Interrupted::Failed(err(rank, what, e))
                }
            }
        };
        let v = self.vector(model.len()).map_err(Interrupted::Failed)?;
        let sent_before = v.stats().bytes_sent;
        match point.mode {
            SyncMode::Average => v.copy_from_slice(model),
            SyncMode::SumDeltas { base } => {
                for ((d, m), b) in v.iter_mut().zip(model.iter()).zip(base) {
                    *d = m - b;
                }
            }
        }
        v.scatter().map_err(fail("scatter"))?;
        let info = match point.mode {
            SyncMode::Average => v.gather(vol::Udf::Avg),
            SyncMode::SumDeltas { .. } => v.gather(vol::Udf::Sum),
        }
        .map_err(fail("gather"))?;
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
}
