//! Dense vectors, and what every vector has: scatter, gather, statistics,
//! free.

use std::ffi::{c_char, c_int, c_void};

use vol::{DenseVector, Element, Merge, MergeError, PerIndex, SparseVector, Udf};

use crate::runtime::{self, malt_options, malt_vector, Span, Vector};
use crate::status::{call, malt_status, CallbackScope, Error};
use crate::wrap::Store;

/// Merge function: the average of the local vector and the updates that
/// arrived (model averaging).
pub const MALT_UDF_AVG: c_int = 0;
/// Merge function: the local vector plus the updates that arrived.
pub const MALT_UDF_SUM: c_int = 1;
/// Merge function: the elementwise maximum (NaN ignored).
pub const MALT_UDF_MAX: c_int = 2;
/// Merge function: the elementwise minimum (NaN ignored).
pub const MALT_UDF_MIN: c_int = 3;

/// A merge callback over whole dense vectors of float: `incoming` holds
/// `count` (at least 1) pointers to the newest update of each sender that
/// sent one since the previous gather, each `len` elements long; write the
/// merged result into `local` (also `len` elements). Return 0, or non-zero
/// to make the gather fail with MALT_ERR_CALLBACK. The pointers are valid
/// during the call only. The callback must not unwind (throw) and may call
/// only `malt_rank`, `malt_world_size`, `malt_local_rank`,
/// `malt_local_world`, `malt_last_error` and `malt_status_string`.
pub type malt_merge_fn_f32 = Option<
    unsafe extern "C" fn(
        local: *mut f32,
        incoming: *const *const f32,
        count: usize,
        len: usize,
        user_data: *mut c_void,
    ) -> c_int,
>;

/// Like `malt_merge_fn_f32`, for vectors of double.
pub type malt_merge_fn_f64 = Option<
    unsafe extern "C" fn(
        local: *mut f64,
        incoming: *const *const f64,
        count: usize,
        len: usize,
        user_data: *mut c_void,
    ) -> c_int,
>;

/// A per-index merge callback over float: called once for each index that
/// at least one arrived update carries (every index when an update is
/// dense), in increasing order, with the local value in `*local` and the
/// `count` (at least 1) values the updates carry for that index in
/// `carried`. Write the merged value into `*local`. Return 0, or non-zero
/// to stop calling it and make the gather fail with MALT_ERR_CALLBACK.
/// Same restrictions as `malt_merge_fn_f32`.
pub type malt_merge_each_fn_f32 = Option<
    unsafe extern "C" fn(
        local: *mut f32,
        carried: *const f32,
        count: usize,
        user_data: *mut c_void,
    ) -> c_int,
>;

/// Like `malt_merge_each_fn_f32`, for vectors of double.
pub type malt_merge_each_fn_f64 = Option<
    unsafe extern "C" fn(
        local: *mut f64,
        carried: *const f64,
        count: usize,
        user_data: *mut c_void,
    ) -> c_int,
>;

/// The element types of the C API and how they sit in [`Vector`].
pub(crate) trait Elem: Element {
    const C_NAME: &'static str;
    fn wrap_dense(v: DenseVector<Self, Store<Self>>) -> Vector;
    fn dense(v: &mut Vector) -> Option<&mut DenseVector<Self, Store<Self>>>;
    fn wrap_sparse(v: SparseVector<u64, Self>) -> Vector;
    fn sparse(v: &mut Vector) -> Option<&mut SparseVector<u64, Self>>;
}

impl Elem for f32 {
    const C_NAME: &'static str = "float";
    fn wrap_dense(v: DenseVector<f32, Store<f32>>) -> Vector {
        Vector::DenseF32(v)
    }
    fn dense(v: &mut Vector) -> Option<&mut DenseVector<f32, Store<f32>>> {
        match v {
            Vector::DenseF32(d) => Some(d),
            _ => None,
        }
    }
    fn wrap_sparse(v: SparseVector<u64, f32>) -> Vector {
        Vector::SparseF32(v)
    }
    fn sparse(v: &mut Vector) -> Option<&mut SparseVector<u64, f32>> {
        match v {
            Vector::SparseF32(s) => Some(s),
            _ => None,
        }
    }
}

impl Elem for f64 {
    const C_NAME: &'static str = "double";
    fn wrap_dense(v: DenseVector<f64, Store<f64>>) -> Vector {
        Vector::DenseF64(v)
    }
    fn dense(v: &mut Vector) -> Option<&mut DenseVector<f64, Store<f64>>> {
        match v {
            Vector::DenseF64(d) => Some(d),
            _ => None,
        }
    }
    fn wrap_sparse(v: SparseVector<u64, f64>) -> Vector {
        Vector::SparseF64(v)
    }
    fn sparse(v: &mut Vector) -> Option<&mut SparseVector<u64, f64>> {
        match v {
            Vector::SparseF64(s) => Some(s),
            _ => None,
        }
    }
}

/// The dense vector of `T` behind `v`, or a type error naming `func`.
pub(crate) fn dense_of<'a, T: Elem>(
    v: &'a mut Vector,
    what: &str,
) -> Result<&'a mut DenseVector<T, Store<T>>, Error> {
    let kind = v.kind();
    T::dense(v).ok_or_else(|| {
        Error::Type(format!(
            "{what} needs a dense vector of {}; this is a {kind}",
            T::C_NAME
        ))
    })
}

/// Runs `$body` with `$x` bound to the concrete vector, whatever its kind.
macro_rules! each_vector {
    ($v:expr, $x:ident => $body:expr) => {
        match $v {
            Vector::DenseF32($x) => $body,
            Vector::DenseF64($x) => $body,
            Vector::SparseF32($x) => $body,
            Vector::SparseF64($x) => $body,
        }
    };
}

/// Writes NULL into an output handle, if there is one, so that a failed
/// create leaves no stale value behind.
///
/// # Safety
///
/// `out` must be NULL or writable.
pub(crate) unsafe fn clear_out<T>(out: *mut *mut T) {
    if !out.is_null() {
        // SAFETY: writable by the caller's contract.
        unsafe { out.write_unaligned(std::ptr::null_mut()) };
    }
}

/// # Safety
///
/// As for `malt_dense_create_f32`.
unsafe fn dense_create<T: Elem>(
    name: *const c_char,
    len: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
    data: *mut *mut T,
) -> Result<(), Error> {
    // SAFETY: NULL or writable by the caller's contract.
    unsafe {
        clear_out(vector);
        clear_out(data);
    }
    if vector.is_null() {
        return Err(Error::Null("vector"));
    }
    // SAFETY: NULL or a NUL-terminated string by the caller's contract.
    let name = unsafe { runtime::read_name(name) }?;
    // SAFETY: NULL or a readable malt_options by the caller's contract.
    let opts = unsafe { runtime::read_options(options) }?;
    let bytes = len
        .checked_add(64)
        .and_then(|n| n.checked_mul(std::mem::size_of::<T>()));
    runtime::probe_alloc(
        bytes,
        &format!("dense vector {name:?} of {len} {}s", T::C_NAME),
    )?;
    let values = Store::Own(vec![T::zero(); len]);
    let mut v = runtime::with_group(|g| Ok(DenseVector::wrap(g, name, values, &opts)?))?;
    // The local values never move while the vector lives: they are
    // allocated once, and scatter and gather work in place.
    let ptr = v.as_mut_slice().as_mut_ptr();
    let span = Span {
        start: ptr as usize,
        end: ptr as usize + len * std::mem::size_of::<T>(),
    };
    let h = runtime::register(T::wrap_dense(v), Some(span))?;
    // SAFETY: `vector` is non-NULL (checked) and writable, `data` NULL or
    // writable, by the caller's contract.
    unsafe {
        vector.write_unaligned(h);
        if !data.is_null() {
            data.write_unaligned(ptr);
        }
    }
    Ok(())
}

/// Creates a dense vector of `len` floats, all zero, named `name`, shared by
/// every rank; stores its handle in `*vector` and, if `data` is not NULL, a
/// pointer to this rank's `len` values in `*data` (valid until the vector is
/// freed or `malt_finalize`; read and write the model through it between
/// malt calls). `options` may be NULL for the defaults (MALT_GRAPH_ALL,
/// MALT_BSP). On failure `*vector` and `*data` are set to NULL.
///
/// Collective: every rank must call it with the same name, length, element
/// type and options, or every rank gets MALT_ERR_MISMATCH.
///
/// Thread safety: a collective (see `malt_barrier`).
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string; `options` NULL or
/// readable; `vector` and `data` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_dense_create_f32(
    name: *const c_char,
    len: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
    data: *mut *mut f32,
) -> malt_status {
    call("malt_dense_create_f32", || {
        // SAFETY: forwarded caller contract.
        unsafe { dense_create::<f32>(name, len, options, vector, data) }
    })
}

/// Like `malt_dense_create_f32`, for a vector of double.
///
/// Thread safety: a collective (see `malt_barrier`).
///
/// # Safety
///
/// As for `malt_dense_create_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_dense_create_f64(
    name: *const c_char,
    len: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
    data: *mut *mut f64,
) -> malt_status {
    call("malt_dense_create_f64", || {
        // SAFETY: forwarded caller contract.
        unsafe { dense_create::<f64>(name, len, options, vector, data) }
    })
}

/// # Safety
///
/// `data` and `len` NULL or writable.
unsafe fn dense_data<T: Elem>(
    func: &str,
    vector: *mut malt_vector,
    data: *mut *mut T,
    len: *mut usize,
) -> Result<(), Error> {
    if data.is_null() {
        return Err(Error::Null("data"));
    }
    runtime::with_vector(vector, |v| {
        let d = dense_of::<T>(v, func)?;
        let n = d.len();
        let p = d.as_mut_slice().as_mut_ptr();
        // SAFETY: `data` is non-NULL (checked) and writable, `len` NULL or
        // writable, by the caller's contract.
        unsafe {
            data.write_unaligned(p);
            if !len.is_null() {
                len.write_unaligned(n);
            }
        }
        Ok(())
    })
}

/// Stores the pointer to this rank's values of a dense vector of float in
/// `*data` (the same pointer `malt_dense_create_f32` gave) and, if `len` is
/// not NULL, their number in `*len`. MALT_ERR_TYPE for other vectors.
///
/// Thread safety: safe from any thread. The values themselves are not
/// synchronised: do not access them while a scatter or gather of this
/// vector runs in another thread.
///
/// # Safety
///
/// `data` and `len` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_dense_data_f32(
    vector: *mut malt_vector,
    data: *mut *mut f32,
    len: *mut usize,
) -> malt_status {
    call("malt_dense_data_f32", || {
        // SAFETY: forwarded caller contract.
        unsafe { dense_data::<f32>("malt_dense_data_f32", vector, data, len) }
    })
}

/// Like `malt_dense_data_f32`, for a vector of double.
///
/// Thread safety: as `malt_dense_data_f32`.
///
/// # Safety
///
/// As for `malt_dense_data_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_dense_data_f64(
    vector: *mut malt_vector,
    data: *mut *mut f64,
    len: *mut usize,
) -> malt_status {
    call("malt_dense_data_f64", || {
        // SAFETY: forwarded caller contract.
        unsafe { dense_data::<f64>("malt_dense_data_f64", vector, data, len) }
    })
}

/// Frees a vector (any kind). Its handle and data pointer become invalid;
/// freeing it again returns MALT_ERR_BAD_HANDLE. Not collective, but peers
/// that still scatter to it write into memory nobody reads: free vectors in
/// the same place of the program on every rank.
///
/// Thread safety: safe from any thread; a call on this vector running in
/// another thread finishes first.
#[no_mangle]
pub extern "C" fn malt_vector_free(vector: *mut malt_vector) -> malt_status {
    call("malt_vector_free", || runtime::unregister(vector))
}

/// Pushes this rank's vector (any kind) to the out-neighbours of its graph,
/// one-sided, tagged with its current iteration. Does not wait for the
/// receivers.
///
/// Thread safety: safe from any thread; calls on the same vector are
/// serialised, calls on different vectors run concurrently. Do not touch the
/// vector's values from another thread meanwhile.
#[no_mangle]
pub extern "C" fn malt_scatter(vector: *mut malt_vector) -> malt_status {
    call("malt_scatter", || {
        runtime::with_vector(vector, |v| {
            each_vector!(v, x => x.scatter()?);
            Ok(())
        })
    })
}

fn builtin_udf(udf: c_int) -> Result<Udf, Error> {
    Ok(match udf {
        MALT_UDF_AVG => Udf::Avg,
        MALT_UDF_SUM => Udf::Sum,
        MALT_UDF_MAX => Udf::Max,
        MALT_UDF_MIN => Udf::Min,
        u => {
            return Err(Error::Invalid(format!(
                "unknown merge function {u} (expected MALT_UDF_AVG, MALT_UDF_SUM, MALT_UDF_MAX or MALT_UDF_MIN)"
            )))
        }
    })
}

/// Waits as the vector's consistency mode requires (MALT_BSP: until every
/// rank scattered this iteration; MALT_SSP: until every rank is at most
/// `staleness` iterations behind; MALT_ASYNC: never), then merges into this
/// rank's vector, with the built-in merge function `udf` (MALT_UDF_AVG,
/// MALT_UDF_SUM, MALT_UDF_MAX, MALT_UDF_MIN), the newest update of every
/// in-neighbour that sent one since the previous gather; then advances the
/// iteration. Sparse vectors merge by index. Waits are bounded by
/// `MALT_TIMEOUT` (MALT_ERR_TIMEOUT naming the ranks that did not arrive).
///
/// Thread safety: as `malt_scatter`.
#[no_mangle]
pub extern "C" fn malt_gather(vector: *mut malt_vector, udf: c_int) -> malt_status {
    call("malt_gather", || {
        let udf = builtin_udf(udf)?;
        runtime::with_vector(vector, |v| {
            each_vector!(v, x => x.gather(udf)?);
            Ok(())
        })
    })
}

type WholeFn<T> = unsafe extern "C" fn(*mut T, *const *const T, usize, usize, *mut c_void) -> c_int;
type EachFn<T> = unsafe extern "C" fn(*mut T, *const T, usize, *mut c_void) -> c_int;

/// A C merge callback over whole dense vectors.
struct WholeMerge<T> {
    f: WholeFn<T>,
    user: *mut c_void,
    ptrs: Vec<*const T>,
    failed: Option<c_int>,
}

impl<T: Element> Merge<T> for WholeMerge<T> {
    fn merge_dense(&mut self, local: &mut [T], incoming: &[&[T]]) -> Result<(), MergeError> {
        for (update, d) in incoming.iter().enumerate() {
            if d.len() != local.len() {
                return Err(MergeError::LengthMismatch {
                    update,
                    expected: local.len(),
                    found: d.len(),
                });
            }
        }
        if incoming.is_empty() {
            return Ok(());
        }
        self.ptrs.clear();
        self.ptrs.extend(incoming.iter().map(|d| d.as_ptr()));
        let rc = {
            let _inside = CallbackScope::enter();
            // SAFETY: `local` is valid for `local.len()` writes and each of
            // the `ptrs.len()` pointers for `local.len()` reads (checked
            // above), all for the duration of the call; the callback's
            // contract (documented on the type) forbids keeping them or
            // unwinding.
            unsafe {
                (self.f)(
                    local.as_mut_ptr(),
                    self.ptrs.as_ptr(),
                    self.ptrs.len(),
                    local.len(),
                    self.user,
                )
            }
        };
        if rc != 0 {
            self.failed = Some(rc);
        }
        Ok(())
    }
}

fn gather_whole<T: Elem>(
    func: &str,
    vector: *mut malt_vector,
    f: Option<WholeFn<T>>,
    user: *mut c_void,
) -> Result<(), Error> {
    let f = f.ok_or(Error::Null("merge"))?;
    runtime::with_vector(vector, |v| {
        let d = dense_of::<T>(v, func)?;
        let mut m = WholeMerge {
            f,
            user,
            ptrs: Vec::new(),
            failed: None,
        };
        d.gather_with(&mut m)?;
        match m.failed {
            Some(rc) => Err(Error::Callback(rc)),
            None => Ok(()),
        }
    })
}

/// Like `malt_gather`, merging with the callback `merge` (called only when
/// at least one update arrived), which receives `user_data` unchanged. Dense
/// vectors of float only (MALT_ERR_TYPE otherwise; for sparse vectors use
/// `malt_gather_each_f32`). When the callback returns non-zero the gather
/// still completes (the iteration advances, the local values are what the
/// callback left) and MALT_ERR_CALLBACK is returned.
///
/// Thread safety: as `malt_scatter`; the callback runs on the calling
/// thread.
///
/// # Safety
///
/// `merge` must be NULL (MALT_ERR_NULL) or a function honouring the
/// contract of `malt_merge_fn_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_gather_fn_f32(
    vector: *mut malt_vector,
    merge: malt_merge_fn_f32,
    user_data: *mut c_void,
) -> malt_status {
    call("malt_gather_fn_f32", || {
        gather_whole::<f32>("malt_gather_fn_f32", vector, merge, user_data)
    })
}

/// Like `malt_gather_fn_f32`, for dense vectors of double.
///
/// Thread safety: as `malt_gather_fn_f32`.
///
/// # Safety
///
/// `merge` must be NULL or a function honouring the contract of
/// `malt_merge_fn_f64`.
#[no_mangle]
pub unsafe extern "C" fn malt_gather_fn_f64(
    vector: *mut malt_vector,
    merge: malt_merge_fn_f64,
    user_data: *mut c_void,
) -> malt_status {
    call("malt_gather_fn_f64", || {
        gather_whole::<f64>("malt_gather_fn_f64", vector, merge, user_data)
    })
}

fn gather_each<T: Elem>(
    func: &str,
    vector: *mut malt_vector,
    f: Option<EachFn<T>>,
    user: *mut c_void,
) -> Result<(), Error> {
    let f = f.ok_or(Error::Null("merge"))?;
    runtime::with_vector(vector, |v| {
        let mut failed: Option<c_int> = None;
        let mut m = PerIndex::new(|local: &mut T, carried: &[T]| {
            if failed.is_some() {
                return;
            }
            let _inside = CallbackScope::enter();
            // SAFETY: `local` is one writable element and `carried` holds
            // `carried.len()` readable ones, for the duration of the call;
            // the callback's contract forbids keeping them or unwinding.
            let rc = unsafe { f(local, carried.as_ptr(), carried.len(), user) };
            if rc != 0 {
                failed = Some(rc);
            }
        });
        let kind = v.kind();
        if let Some(d) = T::dense(v) {
            d.gather_with(&mut m)?;
        } else if let Some(s) = T::sparse(v) {
            s.gather_with(&mut m)?;
        } else {
            return Err(Error::Type(format!(
                "{func} needs a vector of {}; this is a {kind}",
                T::C_NAME
            )));
        }
        drop(m);
        match failed {
            Some(rc) => Err(Error::Callback(rc)),
            None => Ok(()),
        }
    })
}

/// Like `malt_gather`, merging index by index with the callback `merge`
/// (see `malt_merge_each_fn_f32`), for dense and sparse vectors of float
/// (MALT_ERR_TYPE otherwise). For a sparse vector, an index that only
/// peers carry starts from 0 and becomes a stored entry. When the callback
/// returns non-zero it is not called again, the gather completes, and
/// MALT_ERR_CALLBACK is returned.
///
/// Thread safety: as `malt_gather_fn_f32`.
///
/// # Safety
///
/// `merge` must be NULL (MALT_ERR_NULL) or a function honouring the
/// contract of `malt_merge_each_fn_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_gather_each_f32(
    vector: *mut malt_vector,
    merge: malt_merge_each_fn_f32,
    user_data: *mut c_void,
) -> malt_status {
    call("malt_gather_each_f32", || {
        gather_each::<f32>("malt_gather_each_f32", vector, merge, user_data)
    })
}

/// Like `malt_gather_each_f32`, for vectors of double.
///
/// Thread safety: as `malt_gather_fn_f32`.
///
/// # Safety
///
/// `merge` must be NULL or a function honouring the contract of
/// `malt_merge_each_fn_f64`.
#[no_mangle]
pub unsafe extern "C" fn malt_gather_each_f64(
    vector: *mut malt_vector,
    merge: malt_merge_each_fn_f64,
    user_data: *mut c_void,
) -> malt_status {
    call("malt_gather_each_f64", || {
        gather_each::<f64>("malt_gather_each_f64", vector, merge, user_data)
    })
}

/// Stores the vector's length in `*len` (elements for a dense vector, the
/// logical length for a sparse one).
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// `len` must be NULL (MALT_ERR_NULL) or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_vector_len(vector: *mut malt_vector, len: *mut u64) -> malt_status {
    call("malt_vector_len", || {
        if len.is_null() {
            return Err(Error::Null("len"));
        }
        let n = runtime::with_vector(vector, |v| {
            Ok(match v {
                Vector::DenseF32(d) => d.len() as u64,
                Vector::DenseF64(d) => d.len() as u64,
                Vector::SparseF32(s) => s.len(),
                Vector::SparseF64(s) => s.len(),
            })
        })?;
        // SAFETY: non-NULL (checked) and writable by the caller's contract.
        unsafe { len.write_unaligned(n) };
        Ok(())
    })
}

/// Stores the vector's iteration, the number of completed gathers, in
/// `*iteration`.
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// `iteration` must be NULL (MALT_ERR_NULL) or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_iteration(
    vector: *mut malt_vector,
    iteration: *mut u64,
) -> malt_status {
    call("malt_iteration", || {
        if iteration.is_null() {
            return Err(Error::Null("iteration"));
        }
        let t = runtime::with_vector(vector, |v| Ok(each_vector!(v, x => x.iteration())))?;
        // SAFETY: non-NULL (checked) and writable by the caller's contract.
        unsafe { iteration.write_unaligned(t) };
        Ok(())
    })
}

/// Writes the vector's statistics as one line of JSON (bytes and updates
/// sent per peer, updates merged, torn and lapped updates, a staleness
/// histogram, time spent waiting), NUL-terminated, into `buffer` of `size`
/// bytes. If `needed` is not NULL, the size the text needs (NUL included)
/// is stored there. A size query (`buffer` NULL, `size` 0, `needed` not
/// NULL) returns MALT_OK with the size; a buffer too small for the text
/// returns MALT_ERR_LENGTH (the size is still stored, nothing is written).
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// `buffer` must be NULL or writable for `size` bytes; `needed` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn malt_stats_json(
    vector: *mut malt_vector,
    buffer: *mut c_char,
    size: usize,
    needed: *mut usize,
) -> malt_status {
    call("malt_stats_json", || {
        let json = runtime::with_vector(vector, |v| Ok(each_vector!(v, x => x.stats_json()?)))?;
        let total = json.len() + 1;
        if !needed.is_null() {
            // SAFETY: non-NULL and writable by the caller's contract.
            unsafe { needed.write_unaligned(total) };
            if buffer.is_null() && size == 0 {
                return Ok(());
            }
        }
        if size < total {
            return Err(Error::Length(format!(
                "the statistics need {total} bytes; the buffer has {size}"
            )));
        }
        if buffer.is_null() {
            return Err(Error::Null("buffer"));
        }
        // SAFETY: `buffer` is non-NULL and writable for `size >= total`
        // bytes by the caller's contract; the source is a live String of
        // `total - 1` bytes that cannot overlap memory the caller owns.
        unsafe {
            std::ptr::copy_nonoverlapping(json.as_ptr(), buffer.cast::<u8>(), json.len());
            buffer.add(json.len()).write(0);
        }
        Ok(())
    })
}
