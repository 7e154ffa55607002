//! malt's errors as Python exceptions: each runtime error becomes an
//! instance of a class of `malt.errors` (a subclass of `malt.Error`) that
//! carries the runtime's message.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use vol::{GroupError, VolError};

/// An error of the binding, before it becomes a Python exception.
#[derive(Debug)]
pub(crate) enum Failure {
    /// From the runtime.
    Vol(VolError),
    /// From joining or leaving the group.
    Group(GroupError),
    /// A class of `malt.errors` and the message.
    Binding(&'static str, String),
    /// A Python exception already raised (a merge callable's, a signal's).
    Python(PyErr),
}

impl From<VolError> for Failure {
    fn from(e: VolError) -> Self {
        Failure::Vol(e)
    }
}

impl From<vol::ParseError> for Failure {
    fn from(e: vol::ParseError) -> Self {
        Failure::Vol(e.into())
    }
}

impl From<GroupError> for Failure {
    fn from(e: GroupError) -> Self {
        Failure::Group(e)
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Python(e)
    }
}

/// An invalid argument, with its message.
pub(crate) fn invalid(msg: impl Into<String>) -> Failure {
    Failure::Binding("InvalidArgumentError", msg.into())
}

/// The `malt.errors` class of a group error.
fn group_class(e: &GroupError) -> &'static str {
    use GroupError as G;
    match e {
        G::Config(_)
        | G::RankOutOfRange { .. }
        | G::MissingToken
        | G::Refused { .. }
        | G::Unsupported { .. } => "ConfigError",
        G::Timeout { .. } | G::Late(_) => "TimeoutError",
        G::Regrouped { .. } => "RegroupedError",
        G::Evicted { .. } => "EvictedError",
        G::Quorum { .. } => "QuorumError",
        G::Mismatch { .. } | G::CallMismatch(_) => "MismatchError",
        G::Size { .. } | G::BadObject { .. } | G::NotNeighbor { .. } => "InvalidArgumentError",
        G::Aborted(_) => "AbortedError",
        _ => "CommError",
    }
}

/// The `malt.errors` class of a runtime error.
fn vol_class(e: &VolError) -> &'static str {
    use VolError as V;
    match e {
        V::Dstorm(d) => group_class(d),
        V::Mismatch { .. } => "MismatchError",
        V::Timeout { .. } => "TimeoutError",
        V::Graph(_)
        | V::Parse(_)
        | V::InvalidVector { .. }
        | V::Wire(_)
        | V::TooManyEntries { .. }
        | V::DuplicateVector { .. } => "InvalidArgumentError",
        V::CallOrder { .. } => "CallOrderError",
        V::Merge(_) => "MergeError",
        V::BadUpdate { .. } | V::Protocol(_) => "CommError",
        _ => "Error",
    }
}

/// Whether a group error ends the job where its class says it may not: a
/// call mismatch, and a timeout of the group's own waits (a gather that
/// timed out can be made again).
fn ends_job(e: &GroupError) -> bool {
    matches!(
        e,
        GroupError::CallMismatch(_) | GroupError::Timeout { .. } | GroupError::Late(_)
    )
}

/// Raises `class` of `malt.errors` with `msg`; `ends` marks an instance
/// that ends the job where its class does not say so.
fn raise(py: Python<'_>, class: &str, msg: String, ends: bool) -> PyErr {
    let made = py
        .import("malt.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((msg.clone(),)))
        .and_then(|e| {
            if ends {
                e.setattr("ends_job", true)?;
            }
            Ok(e)
        });
    match made {
        Ok(e) => PyErr::from_value(e),
        // The package is broken (malt.errors missing): still say what failed.
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

impl Failure {
    /// The Python exception.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Vol(e) => {
                let ends = matches!(&e, VolError::Dstorm(d) if ends_job(d));
                raise(py, vol_class(&e), e.to_string(), ends)
            }
            Failure::Group(e) => raise(py, group_class(&e), e.to_string(), ends_job(&e)),
            Failure::Binding(class, msg) => raise(py, class, msg, false),
            Failure::Python(e) => e,
        }
    }
}

/// A result of the binding.
pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

/// Turns a binding result into a Python one.
pub(crate) fn py_result<T>(py: Python<'_>, r: Result<T>) -> PyResult<T> {
    r.map_err(|e| e.into_py(py))
}
