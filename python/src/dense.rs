//! `malt._malt.DenseVector`: a dense float32 or float64 vector whose local
//! values NumPy views without a copy.

use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vol::{allreduce, DenseVector, GatherInfo, Schedule, VectorOptions};

use crate::buffer::{view, Block, Shared, Viewable};
use crate::errors::{invalid, py_result, Failure, Result};
use crate::merge::{MergeFn, Options};
use crate::slot::{in_merge, Slot};
use crate::{in_slices, PyGroup};

/// A vector over a block NumPy views.
type Wrapped<T> = DenseVector<T, Shared<T>>;

/// The vector, of either element type.
enum Dense {
    F32(Wrapped<f32>),
    F64(Wrapped<f64>),
}

/// Runs `$body` with `$v` bound to the vector, whichever its type.
macro_rules! each {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            Dense::F32($v) => $body,
            Dense::F64($v) => $body,
        }
    };
}

/// A dense vector shared by every rank.
#[pyclass(module = "malt._malt", name = "DenseVector", frozen)]
pub(crate) struct PyDense {
    vector: Slot<Dense>,
    /// The NumPy view of the values (a `PyArray1` of `dtype`).
    array: Py<PyAny>,
    name: String,
    len: usize,
    dtype: &'static str,
    /// The bound on a gather's wait, set at creation.
    timeout: Duration,
    /// The options it was created with.
    opts: VectorOptions,
}

/// A new vector of `len` values (a copy of `init` when given) over a block
/// NumPy can view.
fn create<T: Viewable>(
    py: Python<'_>,
    group: &PyGroup,
    name: &str,
    len: usize,
    init: Option<&Bound<'_, PyAny>>,
    opts: &VectorOptions,
) -> PyResult<(Wrapped<T>, Py<PyAny>)> {
    let block = match init {
        Some(a) => {
            let a = a.cast::<PyArray1<T>>()?.readonly();
            let values = a.as_slice()?;
            if values.len() != len {
                return py_result(
                    py,
                    Err(invalid(format!(
                        "the initial values hold {} elements, not {len}",
                        values.len()
                    ))),
                );
            }
            Block::new(values.iter().copied())
        }
        None => Block::new(std::iter::repeat_n(T::zero(), len)),
    };
    let Some(block) = block else {
        return Err(pyo3::exceptions::PyMemoryError::new_err(format!(
            "vector {name:?}: {len} values do not fit in memory"
        )));
    };
    let array = view(py, &block)?.into_any().unbind();
    let values = Shared(block);
    let v = group.with(py, move |g| Ok(DenseVector::wrap(g, name, values, opts)?))?;
    Ok((v, array))
}

impl PyDense {
    /// Runs `f` on the open vector, with the GIL released.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Dense) -> Result<R> + Send,
    ) -> Result<R> {
        self.vector.with(py, f)
    }

    /// A gather under the vector's lock, in slices (see [`in_slices`]).
    fn gather_sliced(&self, py: Python<'_>, merge: &mut MergeFn) -> Result<GatherInfo> {
        let (total, opts, len) = (self.timeout, &self.opts, self.len);
        self.with(py, |d| {
            each!(d, v => {
                if let MergeFn::Python(_) = merge {
                    // The same rule vol applied at creation (and at a rejoin,
                    // among the members left): refused here, before vol
                    // would refuse it on every rank and break the vector.
                    let members = v.in_neighbors().len() + 1;
                    let width = std::mem::size_of_val(&v[0]);
                    if matches!(
                        allreduce::choose(opts, members, len, width),
                        Ok(Schedule::Allreduce)
                    ) {
                        return Err(invalid(format!(
                            "vector {:?} runs the allreduce schedule (auto picks it under all/bsp from 3 ranks and 16 KiB), which merges with \"avg\", \"sum\", \"max\" or \"min\" only: create it with schedule=\"direct\" to merge with a function",
                            self.name
                        )));
                    }
                }
                in_slices(total, |slice| {
                    v.set_wait_timeout(slice);
                    let r = match merge {
                        MergeFn::Builtin(u) => v.gather_with(u),
                        MergeFn::Python(p) => v.gather_with(p),
                    };
                    v.set_wait_timeout(total);
                    Ok(r?)
                })
            })
        })
    }
}

/// `info` as a dict.
pub(crate) fn info_dict<'py>(py: Python<'py>, info: &GatherInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("iteration", info.iteration)?;
    d.set_item("merged", info.merged)?;
    d.set_item("max_staleness", info.max_staleness)?;
    d.set_item("staleness_sum", info.staleness_sum)?;
    d.set_item("wait_s", info.wait_ns as f64 * 1e-9)?;
    d.set_item("in_place", info.in_place)?;
    d.set_item("schedule", info.schedule.to_string())?;
    Ok(d)
}

#[pymethods]
impl PyDense {
    #[new]
    #[pyo3(signature = (group, name, length, dtype, init, graph, sync, flow, representation, schedule, depth, timeout))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        group: &PyGroup,
        name: &str,
        length: usize,
        dtype: &str,
        init: Option<&Bound<'_, PyAny>>,
        graph: &str,
        sync: &str,
        flow: &str,
        representation: &str,
        schedule: &str,
        depth: usize,
        timeout: Option<f64>,
    ) -> PyResult<PyDense> {
        let opts = Options {
            graph,
            sync,
            flow,
            representation,
            schedule,
            depth,
            timeout,
        };
        let opts = py_result(py, opts.parse())?;
        let (inner, array, dtype, timeout) = match dtype {
            "float32" => {
                let (v, a) = create::<f32>(py, group, name, length, init, &opts)?;
                let t = v.wait_timeout();
                (Dense::F32(v), a, "float32", t)
            }
            "float64" => {
                let (v, a) = create::<f64>(py, group, name, length, init, &opts)?;
                let t = v.wait_timeout();
                (Dense::F64(v), a, "float64", t)
            }
            other => {
                return py_result(
                    py,
                    Err(invalid(format!(
                        "dtype {other:?}: a dense vector holds float32 or float64"
                    ))),
                )
            }
        };
        Ok(PyDense {
            vector: Slot::new(
                inner,
                format!("vector {name:?}"),
                format!("vector {name:?} is closed"),
            ),
            array,
            name: name.to_owned(),
            len: length,
            dtype,
            timeout,
            opts,
        })
    }

    /// The NumPy view of the local values (no copy). It stays valid after
    /// the vector is closed, but is then no longer shared.
    #[getter]
    fn array(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.vector.ended() {
            return Err(self.vector.ended_error().into_py(py));
        }
        if in_merge() {
            // Its gather holds `&mut` over these values meanwhile.
            return Err(Failure::Binding(
                "CallOrderError",
                format!(
                    "vector {:?}: .array cannot be used inside a merge function, which gets copies of the values",
                    self.name
                ),
            )
            .into_py(py));
        }
        Ok(self.array.clone_ref(py))
    }

    /// The vector's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Its number of values.
    fn __len__(&self) -> usize {
        self.len
    }

    /// `"float32"` or `"float64"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.vector.ended()
    }

    /// The bound on a gather's wait, in seconds.
    #[getter]
    fn timeout(&self) -> f64 {
        self.timeout.as_secs_f64()
    }

    /// The iteration the vector is in (gathers so far).
    #[getter]
    fn iteration(&self, py: Python<'_>) -> PyResult<u64> {
        py_result(py, self.with(py, |d| Ok(each!(d, v => v.iteration()))))
    }

    /// The ranks this vector's scatter writes to.
    #[getter]
    fn out_neighbors(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        py_result(
            py,
            self.with(py, |d| Ok(each!(d, v => v.out_neighbors().to_vec()))),
        )
    }

    /// The ranks whose updates its gather merges.
    #[getter]
    fn in_neighbors(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        py_result(
            py,
            self.with(py, |d| Ok(each!(d, v => v.in_neighbors().to_vec()))),
        )
    }

    /// Sends the local values to the out-neighbours.
    fn scatter(&self, py: Python<'_>) -> PyResult<()> {
        py_result(py, self.with(py, |d| Ok(each!(d, v => v.scatter())?)))
    }

    /// Merges the peers' updates into the local values with `udf`: "avg",
    /// "sum", "max", "min", or a callable `f(local, updates)`. Waits in
    /// slices, checking for signals in between.
    fn gather<'py>(
        &self,
        py: Python<'py>,
        udf: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut merge = py_result(py, MergeFn::from_py(udf))?;
        match self.gather_sliced(py, &mut merge) {
            Ok(info) => info_dict(py, &info),
            Err(e) => {
                // A Python merge function's own exception, unchanged.
                if let MergeFn::Python(p) = &mut merge {
                    if let Some(raised) = p.raised.take() {
                        return Err(raised);
                    }
                }
                Err(e.into_py(py))
            }
        }
    }

    /// After the group regrouped: the vector's queues again, among the
    /// survivors (collective).
    fn rejoin(&self, py: Python<'_>, group: &PyGroup) -> PyResult<()> {
        py_result(py, self.vector.same_process())?;
        group.with(py, |g| {
            self.vector
                .with_released(|d| Ok(each!(d, v => v.rejoin(g))?))
        })
    }

    /// Statistics as one line of JSON.
    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        py_result(py, self.with(py, |d| Ok(each!(d, v => v.stats_json())?)))
    }

    /// Ends the vector (its `.array` views keep the memory).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py_result(py, self.vector.end(py))
    }
}
