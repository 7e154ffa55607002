//! Vector options from Python's keyword arguments, and merge functions:
//! the built-in reductions by name, or a Python callable.

use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;
use vol::{FlowControl, Merge, MergeError, Udf, VectorOptions};

use crate::buffer::Viewable;
use crate::errors::{invalid, Result};
use crate::slot::MergeScope;

/// The options of a vector, as Python passes them (strings, as in
/// `malt launch` and `malt train`).
#[derive(Debug)]
pub(crate) struct Options<'a> {
    pub graph: &'a str,
    pub sync: &'a str,
    pub flow: &'a str,
    pub representation: &'a str,
    pub schedule: &'a str,
    pub depth: usize,
    pub timeout: Option<f64>,
}

impl Options<'_> {
    /// vol's options, each field checked.
    pub(crate) fn parse(&self) -> Result<VectorOptions> {
        let mut o = VectorOptions::new()
            .graph(self.graph.parse()?)
            .consistency(self.sync.parse()?)
            .representation(self.representation.parse()?)
            .schedule(self.schedule.parse()?)
            .depth(self.depth);
        o = o.flow(match self.flow.trim().to_ascii_lowercase().as_str() {
            "overwrite" => FlowControl::Overwrite,
            "backpressure" => FlowControl::Backpressure,
            other => {
                return Err(invalid(format!(
                    "flow {other:?}: expected \"overwrite\" or \"backpressure\""
                )))
            }
        });
        if let Some(t) = self.timeout {
            o = o.wait_timeout(seconds(t, "timeout")?);
        }
        Ok(o)
    }
}

/// A duration in seconds from Python, checked.
pub(crate) fn seconds(t: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(t).map_err(|_| {
        invalid(format!(
            "{what} {t}: expected a finite number of seconds >= 0"
        ))
    })
}

/// What `gather()` merges with.
#[derive(Debug)]
pub(crate) enum MergeFn {
    /// `"avg"`, `"sum"`, `"max"` or `"min"`.
    Builtin(Udf),
    /// A callable `f(local, updates)`.
    Python(PyMerge),
}

impl MergeFn {
    /// From `gather()`'s argument: a name or a callable.
    pub(crate) fn from_py(udf: &Bound<'_, PyAny>) -> Result<MergeFn> {
        if let Ok(name) = udf.extract::<String>() {
            return Ok(MergeFn::Builtin(name.parse()?));
        }
        if udf.is_callable() {
            return Ok(MergeFn::Python(PyMerge {
                f: udf.clone().unbind(),
                raised: None,
            }));
        }
        Err(invalid(format!(
            "gather's merge function must be one of {} or a callable f(local, updates), not {}",
            Udf::NAMES,
            udf.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "this object".into())
        )))
    }
}

/// A Python callable as a merge function. It is called as `f(local,
/// updates)`: `local` a NumPy copy of this rank's values, `updates` a list
/// of NumPy arrays, the peers' updates to merge. It returns the merged
/// values (an array of the vector's length), or `None` after changing
/// `local` in place. What it raises ends the gather (nothing merged) and
/// reaches the caller unchanged.
#[derive(Debug)]
pub(crate) struct PyMerge {
    f: Py<PyAny>,
    /// The exception the callable raised, re-raised by `gather()`.
    pub raised: Option<PyErr>,
}

impl PyMerge {
    fn call<T: Viewable>(
        &self,
        py: Python<'_>,
        local: &mut [T],
        incoming: &[&[T]],
    ) -> PyResult<()> {
        let mine = PyArray1::from_slice(py, local);
        let updates = PyList::empty(py);
        for u in incoming {
            updates.append(PyArray1::from_slice(py, u))?;
        }
        let out = self.f.bind(py).call1((mine.clone(), updates))?;
        let result = if out.is_none() {
            mine
        } else {
            out.cast_into::<PyArray1<T>>()?
        };
        if result.len() != local.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "the merge function returned {} values for a vector of {}",
                result.len(),
                local.len()
            )));
        }
        let values = result.readonly();
        local.copy_from_slice(values.as_slice()?);
        Ok(())
    }
}

impl<T: Viewable> Merge<T> for PyMerge {
    fn merge_dense(&mut self, local: &mut [T], incoming: &[&[T]]) -> Result<(), MergeError> {
        let _scope = MergeScope::enter();
        Python::attach(|py| match self.call(py, local, incoming) {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                self.raised = Some(e);
                Err(MergeError::Failed(format!(
                    "the Python merge function raised {msg}"
                )))
            }
        })
    }
}
