//! `malt._malt.SparseVector`: a sparse float32 or float64 vector with
//! 64-bit indices, merged with the built-in reductions.

use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use vol::{SparseVector, Udf};

use crate::errors::{invalid, py_result, Result};
use crate::merge::{MergeFn, Options};
use crate::slot::Slot;
use crate::{in_slices, PyGroup};

/// The vector, of either value type.
enum Sparse {
    F32(SparseVector<u64, f32>),
    F64(SparseVector<u64, f64>),
}

macro_rules! each {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            Sparse::F32($v) => $body,
            Sparse::F64($v) => $body,
        }
    };
}

/// A sparse vector shared by every rank: it stores some of its `length`
/// entries and sends those.
#[pyclass(module = "malt._malt", name = "SparseVector", frozen)]
pub(crate) struct PySparse {
    vector: Slot<Sparse>,
    name: String,
    len: u64,
    max_entries: usize,
    dtype: &'static str,
    timeout: Duration,
}

impl PySparse {
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Sparse) -> Result<R> + Send,
    ) -> Result<R> {
        self.vector.with(py, f)
    }

    /// Stores `values[k]` at `indices[k]` for a value type `T`.
    fn set_typed<T: vol::Element + numpy::Element>(
        &self,
        py: Python<'_>,
        indices: &[u64],
        values: &Bound<'_, PyAny>,
        pick: impl FnOnce(&mut Sparse) -> Option<&mut SparseVector<u64, T>> + Send,
    ) -> PyResult<()> {
        let values = values.cast::<PyArray1<T>>()?.readonly();
        let values = values.as_slice()?.to_vec();
        let name = self.name.clone();
        py_result(
            py,
            self.with(py, move |s| {
                let v = pick(s).ok_or_else(|| invalid("values of the wrong dtype"))?;
                // Checked before anything is stored: all or none.
                let len = v.len();
                if let Some(&i) = indices.iter().find(|&&i| i >= len) {
                    return Err(invalid(format!(
                        "vector {name:?}: index {i} is beyond its length {len}"
                    )));
                }
                let mut new: Vec<u64> = indices
                    .iter()
                    .copied()
                    .filter(|&i| v.get(i).is_none())
                    .collect();
                new.sort_unstable();
                new.dedup();
                let max = v.max_entries();
                if v.nnz() + new.len() > max {
                    return Err(invalid(format!(
                        "vector {name:?}: {} entries stored and {} new ones exceed its max_entries {max}",
                        v.nnz(),
                        new.len()
                    )));
                }
                for (&i, &x) in indices.iter().zip(&values) {
                    v.insert(i, x)
                        .map_err(|e| invalid(format!("vector {name:?}: index {i}: {e}")))?;
                }
                Ok(())
            }),
        )
    }
}

#[pymethods]
impl PySparse {
    #[new]
    #[pyo3(signature = (group, name, length, max_entries, dtype, graph, sync, flow, depth, timeout))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        group: &PyGroup,
        name: &str,
        length: u64,
        max_entries: usize,
        dtype: &str,
        graph: &str,
        sync: &str,
        flow: &str,
        depth: usize,
        timeout: Option<f64>,
    ) -> PyResult<PySparse> {
        let opts = Options {
            graph,
            sync,
            flow,
            representation: "dense",
            schedule: "auto",
            depth,
            timeout,
        };
        let opts = py_result(py, opts.parse())?;
        let make = |py: Python<'_>| -> PyResult<Sparse> {
            group.with(py, |g| {
                Ok(match dtype {
                    "float32" => {
                        Sparse::F32(SparseVector::new(g, name, length, max_entries, &opts)?)
                    }
                    _ => Sparse::F64(SparseVector::new(g, name, length, max_entries, &opts)?),
                })
            })
        };
        let (inner, dtype) = match dtype {
            "float32" => (make(py)?, "float32"),
            "float64" => (make(py)?, "float64"),
            other => {
                return py_result(
                    py,
                    Err(invalid(format!(
                        "dtype {other:?}: a sparse vector holds float32 or float64"
                    ))),
                )
            }
        };
        let timeout = each!(&inner, v => v.wait_timeout());
        Ok(PySparse {
            vector: Slot::new(
                inner,
                format!("vector {name:?}"),
                format!("vector {name:?} is closed"),
            ),
            name: name.to_owned(),
            len: length,
            max_entries,
            dtype,
            timeout,
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The logical length.
    #[getter]
    fn length(&self) -> u64 {
        self.len
    }

    #[getter]
    fn max_entries(&self) -> usize {
        self.max_entries
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype
    }

    #[getter]
    fn closed(&self) -> bool {
        self.vector.ended()
    }

    #[getter]
    fn iteration(&self, py: Python<'_>) -> PyResult<u64> {
        py_result(py, self.with(py, |s| Ok(each!(s, v => v.iteration()))))
    }

    /// Stored entries.
    #[getter]
    fn nnz(&self, py: Python<'_>) -> PyResult<usize> {
        py_result(py, self.with(py, |s| Ok(each!(s, v => v.nnz()))))
    }

    /// Stores `values[k]` at `indices[k]` (NumPy arrays of uint64 and of the
    /// vector's dtype, of one length).
    fn set(
        &self,
        py: Python<'_>,
        indices: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let idx = indices.cast::<PyArray1<u64>>()?.readonly();
        let idx = idx.as_slice()?.to_vec();
        let n = values.len()?;
        if n != idx.len() {
            return py_result(
                py,
                Err(invalid(format!("{} indices but {n} values", idx.len()))),
            );
        }
        match self.dtype {
            "float32" => self.set_typed::<f32>(py, &idx, values, |s| match s {
                Sparse::F32(v) => Some(v),
                Sparse::F64(_) => None,
            }),
            _ => self.set_typed::<f64>(py, &idx, values, |s| match s {
                Sparse::F64(v) => Some(v),
                Sparse::F32(_) => None,
            }),
        }
    }

    /// The value stored at `index`, or `None`.
    fn get(&self, py: Python<'_>, index: u64) -> PyResult<Option<f64>> {
        py_result(
            py,
            self.with(py, |s| {
                Ok(match s {
                    Sparse::F32(v) => v.get(index).map(f64::from),
                    Sparse::F64(v) => v.get(index),
                })
            }),
        )
    }

    /// Removes the entry at `index`; returns whether there was one.
    fn remove(&self, py: Python<'_>, index: u64) -> PyResult<bool> {
        py_result(
            py,
            self.with(py, |s| Ok(each!(s, v => v.remove(index).is_some()))),
        )
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py_result(
            py,
            self.with(py, |s| {
                each!(s, v => v.clear());
                Ok(())
            }),
        )
    }

    /// `(indices, values)`: copies of the stored entries, by index.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        enum Items {
            F32(Vec<u64>, Vec<f32>),
            F64(Vec<u64>, Vec<f64>),
        }
        let items = py_result(
            py,
            self.with(py, |s| {
                Ok(match s {
                    Sparse::F32(v) => Items::F32(v.indices().to_vec(), v.values().to_vec()),
                    Sparse::F64(v) => Items::F64(v.indices().to_vec(), v.values().to_vec()),
                })
            }),
        )?;
        Ok(match items {
            Items::F32(i, x) => (
                PyArray1::from_vec(py, i).into_any().unbind(),
                PyArray1::from_vec(py, x).into_any().unbind(),
            ),
            Items::F64(i, x) => (
                PyArray1::from_vec(py, i).into_any().unbind(),
                PyArray1::from_vec(py, x).into_any().unbind(),
            ),
        })
    }

    fn scatter(&self, py: Python<'_>) -> PyResult<()> {
        py_result(py, self.with(py, |s| Ok(each!(s, v => v.scatter())?)))
    }

    /// Merges the peers' updates by index with "avg", "sum", "max" or
    /// "min"; waits in slices, checking for signals in between.
    fn gather<'py>(
        &self,
        py: Python<'py>,
        udf: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let udf: Udf = match py_result(py, MergeFn::from_py(udf))? {
            MergeFn::Builtin(u) => u,
            MergeFn::Python(_) => {
                return py_result(
                    py,
                    Err(invalid(
                        "a sparse vector merges with \"avg\", \"sum\", \"max\" or \"min\"",
                    )),
                )
            }
        };
        let total = self.timeout;
        let r = self.with(py, |s| {
            each!(s, v => in_slices(total, |slice| {
                v.set_wait_timeout(slice);
                let r = v.gather(udf);
                v.set_wait_timeout(total);
                Ok(r?)
            }))
        });
        crate::dense::info_dict(py, &py_result(py, r)?)
    }

    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        py_result(py, self.with(py, |s| Ok(each!(s, v => v.stats_json())?)))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py_result(py, self.vector.end(py))
    }
}
