//! `malt._malt`, the Rust half of the Python package `malt`: the group,
//! dense and sparse vectors, and their errors. The Python half (`malt/`)
//! adds the keyword defaults, NumPy conversions, context managers and the
//! torch helper; see `malt/__init__.py`.
//!
//! Every call that may wait (joining, creation, gather, barrier, finish)
//! releases the GIL, and a gather waits in slices of at most
//! 100 ms (`SLICE`), checking for signals (Ctrl-C) in between.

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use vol::{GatherInfo, Group, VolError};

mod buffer;
mod dense;
mod errors;
mod merge;
mod slot;
mod sparse;

use errors::{py_result, Failure, Result};
use slot::Slot;

/// The longest a gather waits between two checks for signals.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Runs `once` (a gather bounded by the wait it is given) until it ends
/// other than by timing out, or until `total` has passed, in waits of at
/// most [`SLICE`], where the GIL is released and the vector's lock held
/// throughout; between them, raises what a signal handler raised (Ctrl-C:
/// `KeyboardInterrupt`). A gather that timed out changed nothing and is made
/// again. Its info counts the time of the slices before it as waited; the
/// timeout that ends it all says how long was waited in total.
pub(crate) fn in_slices(
    total: Duration,
    mut once: impl FnMut(Duration) -> Result<GatherInfo>,
) -> Result<GatherInfo> {
    let start = Instant::now();
    loop {
        let slice = total.saturating_sub(start.elapsed()).min(SLICE);
        let before = start.elapsed();
        match once(slice) {
            Ok(mut info) => {
                let earlier = u64::try_from(before.as_nanos()).unwrap_or(u64::MAX);
                info.wait_ns = info.wait_ns.saturating_add(earlier);
                return Ok(info);
            }
            Err(Failure::Vol(VolError::Timeout { .. })) if start.elapsed() < total => {
                Python::attach(|py| py.check_signals())?;
            }
            Err(Failure::Vol(VolError::Timeout {
                vector,
                op,
                iteration,
                missing,
                ..
            })) => {
                return Err(Failure::Vol(VolError::Timeout {
                    vector,
                    op,
                    iteration,
                    waited: start.elapsed(),
                    missing,
                }))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The job this process is a rank of.
#[pyclass(module = "malt._malt", name = "Group", frozen)]
pub(crate) struct PyGroup {
    group: Slot<Group>,
    rank: usize,
    world: usize,
    local_rank: Option<usize>,
    local_world: Option<usize>,
}

impl PyGroup {
    /// Runs `f` on the group, with the GIL released (every group call may
    /// wait for the other ranks).
    pub(crate) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Group) -> Result<R> + Send,
    ) -> PyResult<R> {
        py_result(py, self.group.with(py, |g| f(g)))
    }
}

#[pymethods]
impl PyGroup {
    /// Joins the job described by the environment (malt launch, torchrun,
    /// srun, mpirun; none: a job of one rank).
    #[staticmethod]
    fn from_env(py: Python<'_>) -> PyResult<PyGroup> {
        let group = py_result(py, py.detach(|| Group::from_env().map_err(Failure::from)))?;
        Ok(PyGroup {
            rank: group.rank(),
            world: group.world(),
            local_rank: group.local_rank(),
            local_world: group.local_world(),
            group: Slot::new(
                group,
                "the group".into(),
                "the group has finished; malt.init() cannot join again in this process".into(),
            ),
        })
    }

    /// This process's rank, 0 to size - 1.
    #[getter]
    fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks the job started with.
    #[getter]
    fn size(&self) -> usize {
        self.world
    }

    /// This process's rank among the ranks on its host, if the launcher
    /// says.
    #[getter]
    fn local_rank(&self) -> Option<usize> {
        self.local_rank
    }

    /// The number of ranks on this host, if the launcher says.
    #[getter]
    fn local_size(&self) -> Option<usize> {
        self.local_world
    }

    /// Whether `finish()` was called.
    #[getter]
    fn finished(&self) -> bool {
        self.group.ended()
    }

    /// The ranks still in the group, ascending.
    fn members(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        self.with(py, |g| Ok(g.members()))
    }

    /// Waits until every rank has called `barrier()`.
    fn barrier(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |g| Ok(g.barrier()?))
    }

    /// After a `RegroupedError`: joins the survivors; returns
    /// `(epoch, members, dead)`.
    fn regroup(&self, py: Python<'_>) -> PyResult<(u32, Vec<usize>, Vec<usize>)> {
        self.with(py, |g| {
            let m = g.regroup()?;
            Ok((m.epoch, m.members, m.dead))
        })
    }

    /// Tells the other ranks that this one stops because of `reason`.
    fn fail(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        self.with(py, |g| {
            g.fail(reason);
            Ok(())
        })
    }

    /// The final barrier, then leaves the job. Vectors still open cannot
    /// communicate afterwards. Finishing again does nothing.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        if self.group.ended() {
            return py_result(py, self.group.same_process());
        }
        py_result(
            py,
            self.group
                .with(py, |g| Ok(g.finish_in_place()?))
                .and_then(|()| self.group.end(py)),
        )
    }
}

/// The Rust half of the `malt` package.
#[pymodule]
fn _malt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGroup>()?;
    m.add_class::<dense::PyDense>()?;
    m.add_class::<sparse::PySparse>()?;
    m.add_class::<buffer::Memory>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SLICE_S", SLICE.as_secs_f64())?;
    Ok(())
}
