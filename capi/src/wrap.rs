//! Dense vectors over memory the program already owns
//! (`malt_dense_wrap_f32` / `_f64`), and [`Store`], where a dense vector's
//! values live.

use std::ffi::c_char;
use std::ptr::NonNull;

use vol::DenseVector;

use crate::runtime::{self, malt_options, malt_vector, Span};
use crate::status::{call, malt_status, Error};
use crate::vector::{clear_out, Elem};

/// Where a dense vector's values live: a buffer malt allocated
/// (`malt_dense_create_*`) or the caller's memory (`malt_dense_wrap_*`).
#[derive(Debug)]
pub(crate) enum Store<T> {
    Own(Vec<T>),
    Lent { ptr: NonNull<T>, len: usize },
}

// SAFETY: a `Lent` store is the only user of its memory inside malt, and the
// caller promised (malt_dense_wrap_*) not to touch it while a call on the
// vector runs; the vector itself is used by one thread at a time (its lock in
// the runtime's table), so moving it to another thread is sound.
unsafe impl<T: Send> Send for Store<T> {}

impl<T> AsRef<[T]> for Store<T> {
    fn as_ref(&self) -> &[T] {
        match self {
            Store::Own(v) => v,
            // SAFETY: `ptr` is non-NULL, aligned and valid for `len` elements
            // until malt_vector_free or malt_finalize (checked alignment, and
            // the caller's contract); nothing else in malt aliases it.
            Store::Lent { ptr, len } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) },
        }
    }
}

impl<T> AsMut<[T]> for Store<T> {
    fn as_mut(&mut self) -> &mut [T] {
        match self {
            Store::Own(v) => v,
            // SAFETY: as for `as_ref`; `&mut self` makes this the only
            // borrow inside malt, and the caller does not touch the memory
            // while a malt call on the vector runs.
            Store::Lent { ptr, len } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

/// Checks a caller's pointer and length before anything is shared: non-NULL,
/// at least one element, aligned for `T`, not wrapping around the address
/// space; the byte range it covers.
pub(crate) fn check_region<T>(data: *mut T, len: usize) -> Result<Span, Error> {
    let ptr = NonNull::new(data).ok_or(Error::Null("data"))?;
    if len == 0 {
        return Err(Error::Invalid(
            "len is 0: a vector needs at least one element".into(),
        ));
    }
    let align = std::mem::align_of::<T>();
    let start = ptr.as_ptr() as usize;
    if !start.is_multiple_of(align) {
        return Err(Error::Invalid(format!(
            "data ({start:#x}) is not aligned to {align} bytes, as a {} must be",
            std::any::type_name::<T>()
        )));
    }
    let end = len
        .checked_mul(std::mem::size_of::<T>())
        .filter(|b| *b <= isize::MAX as usize)
        .and_then(|b| start.checked_add(b))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{len} elements from {start:#x} run past the end of the address space"
            ))
        })?;
    Ok(Span { start, end })
}

/// # Safety
///
/// As for `malt_dense_wrap_f32`.
unsafe fn dense_wrap<T: Elem>(
    name: *const c_char,
    data: *mut T,
    len: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
) -> Result<(), Error> {
    // SAFETY: NULL or writable by the caller's contract.
    unsafe { clear_out(vector) };
    if vector.is_null() {
        return Err(Error::Null("vector"));
    }
    // SAFETY: NULL or a NUL-terminated string by the caller's contract.
    let name = unsafe { runtime::read_name(name) }?;
    // SAFETY: NULL or a readable malt_options by the caller's contract.
    let opts = unsafe { runtime::read_options(options) }?;
    let span = check_region(data, len)?;
    runtime::check_unshared(span, name)?;
    let ptr = NonNull::new(data).ok_or(Error::Null("data"))?;
    let store = Store::Lent { ptr, len };
    let v = runtime::with_group(|g| Ok(DenseVector::wrap(g, name, store, &opts)?))?;
    let h = runtime::register(T::wrap_dense(v), Some(span))?;
    // SAFETY: `vector` is non-NULL (checked) and writable by the caller's
    // contract.
    unsafe { vector.write_unaligned(h) };
    Ok(())
}

/// Shares `len` floats at `data`, memory the program owns, as a dense vector
/// named `name`; stores its handle in `*vector` (NULL on failure). No copy
/// is made: `malt_scatter` sends the values from `data` and `malt_gather`
/// merges into `data` in place, so the program keeps training on its own
/// array. The values are shared as they are (not zeroed). `options` may be
/// NULL for the defaults.
///
/// The memory stays the program's: malt never frees it. Rules:
/// - `data` must be aligned for float (4 bytes; MALT_ERR_INVALID_ARGUMENT
///   otherwise), `len` at least 1, and the range must not overlap another
///   live vector's values (MALT_ERR_INVALID_ARGUMENT).
/// - The `len` elements must stay valid and in place until
///   `malt_vector_free` (or `malt_finalize`) returns.
/// - Between malt calls the program reads and writes them freely; while a
///   scatter or gather of this vector runs (say, in another thread) it must
///   not touch them.
/// - After `malt_vector_free` the memory holds the result of the last
///   gather and is the program's alone again.
///
/// Collective: every rank must call it with the same name, length, element
/// type and options, or every rank gets MALT_ERR_MISMATCH (the addresses may
/// differ). A wrapped vector is used like any other dense vector
/// (`malt_dense_data_f32` returns `data`).
///
/// Thread safety: a collective (see `malt_barrier`).
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string; `data` NULL or valid for
/// reads and writes of `len` floats until the vector is freed; `options`
/// NULL or readable; `vector` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_dense_wrap_f32(
    name: *const c_char,
    data: *mut f32,
    len: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
) -> malt_status {
    call("malt_dense_wrap_f32", || {
        // SAFETY: forwarded caller contract.
        unsafe { dense_wrap::<f32>(name, data, len, options, vector) }
    })
}

/// Like `malt_dense_wrap_f32`, for `len` doubles at `data` (aligned to 8
/// bytes). A program that keeps most of its model in float and a few values
/// (a bias, a scale) in double wraps each in a vector of its own type: no
/// value is rounded on the way.
///
/// Thread safety: a collective (see `malt_barrier`).
///
/// # Safety
///
/// As for `malt_dense_wrap_f32`, with doubles.
#[no_mangle]
pub unsafe extern "C" fn malt_dense_wrap_f64(
    name: *const c_char,
    data: *mut f64,
    len: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
) -> malt_status {
    call("malt_dense_wrap_f64", || {
        // SAFETY: forwarded caller contract.
        unsafe { dense_wrap::<f64>(name, data, len, options, vector) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_checked_before_use() {
        let mut xs = [0f64; 4];
        let p = xs.as_mut_ptr();
        assert!(matches!(
            check_region::<f64>(std::ptr::null_mut(), 4),
            Err(Error::Null("data"))
        ));
        assert!(matches!(check_region(p, 0), Err(Error::Invalid(_))));
        let odd = (p as usize + 4) as *mut f64;
        let e = check_region(odd, 1).unwrap_err().to_string();
        assert!(e.contains("not aligned to 8 bytes"), "{e}");
        assert!(matches!(
            check_region(p, usize::MAX / 4),
            Err(Error::Invalid(_))
        ));
        let s = check_region(p, 4).unwrap();
        assert_eq!(s.end - s.start, 32);
    }

    #[test]
    fn a_lent_store_is_the_callers_memory() {
        let mut xs = [1f32, 2.0, 3.0];
        let ptr = NonNull::new(xs.as_mut_ptr()).unwrap();
        let mut s = Store::Lent { ptr, len: 3 };
        s.as_mut()[1] = 5.0;
        assert_eq!(s.as_ref().as_ptr(), xs.as_ptr());
        drop(s);
        assert_eq!(xs, [1.0, 5.0, 3.0]);
    }
}
