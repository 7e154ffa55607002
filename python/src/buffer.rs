//! Where a Python vector's values live, and the NumPy view of them: the
//! binding's only unsafe code.
//!
//! A dense vector's values are one heap block shared, through an [`Arc`],
//! by the vector (which scatters from it and merges into it) and by every
//! NumPy array viewing it (through a [`Memory`] object, the array's base).
//! Closing the vector drops its share; the block lives on while any view
//! does, so a view never points at freed memory.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::sync::Arc;

use numpy::ndarray::ArrayView1;
use numpy::PyArray1;
use pyo3::prelude::*;

/// `len` values that the vector and NumPy views share.
pub(crate) struct Block<T> {
    cells: Box<[UnsafeCell<T>]>,
}

// SAFETY: the cells are written only through `Shared::as_mut` (by the one
// vector that owns the `Shared`, under its lock) or by Python code through a
// NumPy view. Python code keeps off a view while a scatter or gather of its
// vector runs: another thread by the documented contract (as for any NumPy
// buffer handed to code that released the GIL), and the gather's own merge
// function because `.array` and every call on the vector refuse it there
// (a view it captured earlier is the documented exception it must not use).
unsafe impl<T: Send> Sync for Block<T> {}

impl<T: Copy> Block<T> {
    /// A block holding a copy of `values`; `None` when the memory cannot be
    /// had.
    pub(crate) fn new(values: impl ExactSizeIterator<Item = T>) -> Option<Arc<Block<T>>> {
        let mut cells = Vec::new();
        cells.try_reserve_exact(values.len()).ok()?;
        cells.extend(values.map(UnsafeCell::new));
        Some(Arc::new(Block {
            cells: cells.into_boxed_slice(),
        }))
    }

    fn len(&self) -> usize {
        self.cells.len()
    }

    /// The first value's address (`UnsafeCell<T>` has `T`'s layout).
    fn ptr(&self) -> *mut T {
        UnsafeCell::raw_get(self.cells.as_ptr())
    }
}

/// The vector's share of a [`Block`]: what `vol::DenseVector` holds as its
/// values.
pub(crate) struct Shared<T>(pub(crate) Arc<Block<T>>);

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared({} values)", self.0.cells.len())
    }
}

impl<T: Copy> AsRef<[T]> for Shared<T> {
    fn as_ref(&self) -> &[T] {
        // SAFETY: the block holds `len` initialised values at `ptr` for as
        // long as the `Arc` lives; Rust writes them only through `as_mut`,
        // which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.0.ptr(), self.0.len()) }
    }
}

impl<T: Copy> AsMut<[T]> for Shared<T> {
    fn as_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `as_ref`; `&mut self` makes this the only Rust
        // borrow (the vector owns the one `Shared` of its block), and Python
        // code keeps off the values while the vector's call runs (see the
        // `Sync` impl of `Block`).
        unsafe { std::slice::from_raw_parts_mut(self.0.ptr(), self.0.len()) }
    }
}

/// The memory behind a vector's `.array`: it stays valid while this object
/// (the array's `.base`) lives, even after the vector is closed.
#[pyclass(module = "malt._malt", frozen)]
pub(crate) struct Memory {
    /// A share of the block (its type erased): held only to be dropped.
    _kept: Box<dyn Any + Send + Sync>,
}

/// Element types a vector can hold and NumPy can view.
pub(crate) trait Viewable: vol::Element + numpy::Element {}

impl Viewable for f32 {}
impl Viewable for f64 {}

/// A writable one-dimensional NumPy array over `block`, whose base object
/// keeps the block alive.
pub(crate) fn view<'py, T: Viewable>(
    py: Python<'py>,
    block: &Arc<Block<T>>,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    let base = Bound::new(
        py,
        Memory {
            _kept: Box::new(block.clone()),
        },
    )?;
    // SAFETY: the block holds `len` values at `ptr`, aligned for `T`, and
    // is never reallocated; `base` owns a share of it, and NumPy keeps
    // `base` alive for as long as the array (or any array derived from it)
    // lives.
    let array = unsafe {
        let view = ArrayView1::from_shape_ptr(block.len(), block.ptr() as *const T);
        PyArray1::borrow_from_array(&view, base.into_any())
    };
    Ok(array)
}
