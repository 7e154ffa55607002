//! [`Slot`]: how the binding holds a runtime object (the group, a vector)
//! for Python: behind a lock, used with the GIL released, ended once, and
//! never touched by a child made by `fork`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;

use crate::errors::{Failure, Result};

/// A runtime object held for Python.
pub(crate) struct Slot<T> {
    /// `None` once ended (closed, finished).
    value: Mutex<Option<T>>,
    /// Whether it ended, read without the lock (which a call holds, maybe
    /// calling Python, while the GIL is released).
    ended: AtomicBool,
    /// What it is, for messages: `vector "w"`, `the group`.
    what: String,
    /// What using it after its end raises.
    ended_msg: String,
    /// The process that made it.
    pid: u32,
}

thread_local! {
    /// Whether this thread runs a Python merge function, inside a gather
    /// that holds its vector's lock.
    static IN_MERGE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running a Python merge function until dropped.
pub(crate) struct MergeScope(bool);

impl MergeScope {
    pub(crate) fn enter() -> MergeScope {
        MergeScope(IN_MERGE.with(|m| m.replace(true)))
    }
}

impl Drop for MergeScope {
    fn drop(&mut self) {
        IN_MERGE.with(|m| m.set(self.0));
    }
}

/// Whether this thread runs a Python merge function.
pub(crate) fn in_merge() -> bool {
    IN_MERGE.with(Cell::get)
}

/// Locks `m`, whatever an earlier holder's panic left (every guarded value
/// stays consistent between calls).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Send> Slot<T> {
    pub(crate) fn new(value: T, what: String, ended_msg: String) -> Slot<T> {
        Slot {
            value: Mutex::new(Some(value)),
            ended: AtomicBool::new(false),
            what,
            ended_msg,
            pid: std::process::id(),
        }
    }

    /// Whether [`end`](Self::end) was called.
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The error of a use after the end.
    pub(crate) fn ended_error(&self) -> Failure {
        Failure::Binding("ClosedError", self.ended_msg.clone())
    }

    /// Fails in a process other than the one that made the object: a child
    /// made by `fork` (a DataLoader worker, say) inherits the parent's
    /// objects but must not write into the job's queues or speak for the
    /// parent on its control connection.
    pub(crate) fn same_process(&self) -> Result<()> {
        let now = std::process::id();
        if now == self.pid {
            return Ok(());
        }
        Err(Failure::Binding(
            "ForkError",
            format!(
                "{} belongs to process {}, and this is process {now}, a child made by fork: a child may read (and change its own copy of) a vector's .array, but not call malt",
                self.what, self.pid
            ),
        ))
    }

    /// Runs `f` on the object where the GIL is already released.
    pub(crate) fn with_released<R>(&self, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        self.same_process()?;
        if in_merge() {
            // Its gather holds this vector's lock (or waits for the group's
            // in a rejoin): waiting here would never end.
            return Err(Failure::Binding(
                "CallOrderError",
                format!(
                    "{} cannot be used inside a merge function: a merge function gets copies of the values and returns the merged ones",
                    self.what
                ),
            ));
        }
        match lock(&self.value).as_mut() {
            Some(v) => f(v),
            None => Err(self.ended_error()),
        }
    }

    /// Runs `f` on the object with the GIL released (every call may wait
    /// for the other ranks).
    pub(crate) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> Result<R> + Send,
    ) -> Result<R> {
        self.same_process()?;
        py.detach(|| self.with_released(f))
    }

    /// Ends the object (dropping it with the GIL released); ending it again
    /// does nothing.
    pub(crate) fn end(&self, py: Python<'_>) -> Result<()> {
        self.same_process()?;
        py.detach(|| drop(lock(&self.value).take()));
        self.ended.store(true, Ordering::Release);
        Ok(())
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child's copy: ending it would close the parent's
            // vector or leave the parent's job. `get_mut` takes no lock: one
            // held by a parent's thread at the fork is never released here.
            let value = self.value.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = value.take() {
                std::mem::forget(v);
            }
        }
    }
}
