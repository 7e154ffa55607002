//! Sparse vectors: index/value pairs, absent entries are zero.

use std::ffi::c_char;

use vol::wire::sparse_encoded_len;
use vol::{SparseEntries, SparseVector};

use crate::runtime::{self, malt_options, malt_vector, Vector};
use crate::status::{call, malt_status, Error};
use crate::vector::{clear_out, Elem};

fn sparse_of<'a, T: Elem>(
    v: &'a mut Vector,
    what: &str,
) -> Result<&'a mut SparseVector<u64, T>, Error> {
    let kind = v.kind();
    T::sparse(v).ok_or_else(|| {
        Error::Type(format!(
            "{what} needs a sparse vector of {}; this is a {kind}",
            T::C_NAME
        ))
    })
}

/// # Safety
///
/// As for `malt_sparse_create_f32`.
unsafe fn sparse_create<T: Elem>(
    name: *const c_char,
    len: u64,
    max_entries: usize,
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
    let what = format!("sparse vector {name:?} of up to {max_entries} entries");
    let bytes = sparse_encoded_len::<T>(max_entries, len)
        .ok()
        .and_then(|b| b.checked_add(64));
    runtime::probe_alloc(bytes, &what)?;
    let v = runtime::with_group(|g| {
        Ok(SparseVector::<u64, T>::new(
            g,
            name,
            len,
            max_entries,
            &opts,
        )?)
    })?;
    let h = runtime::register(T::wrap_sparse(v), None)?;
    // SAFETY: non-NULL (checked) and writable by the caller's contract.
    unsafe { vector.write_unaligned(h) };
    Ok(())
}

/// Creates an empty sparse vector of floats of logical length `len` that
/// holds at most `max_entries` stored entries (the size of its updates),
/// named `name`, shared by every rank; stores its handle in `*vector` (NULL
/// on failure). Indices are `uint64_t`. `options` may be NULL for the
/// defaults.
///
/// Collective: every rank must pass the same name, length, limit, element
/// type and options, or every rank gets MALT_ERR_MISMATCH.
///
/// Thread safety: a collective (see `malt_barrier`).
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string; `options` NULL or
/// readable; `vector` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_sparse_create_f32(
    name: *const c_char,
    len: u64,
    max_entries: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
) -> malt_status {
    call("malt_sparse_create_f32", || {
        // SAFETY: forwarded caller contract.
        unsafe { sparse_create::<f32>(name, len, max_entries, options, vector) }
    })
}

/// Like `malt_sparse_create_f32`, for a sparse vector of double.
///
/// Thread safety: a collective (see `malt_barrier`).
///
/// # Safety
///
/// As for `malt_sparse_create_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_sparse_create_f64(
    name: *const c_char,
    len: u64,
    max_entries: usize,
    options: *const malt_options,
    vector: *mut *mut malt_vector,
) -> malt_status {
    call("malt_sparse_create_f64", || {
        // SAFETY: forwarded caller contract.
        unsafe { sparse_create::<f64>(name, len, max_entries, options, vector) }
    })
}

/// Sets `pairs` (sorted by index, the last value of a repeated index
/// winning) into `sv`, all or nothing.
fn set_entries<T: Elem>(
    sv: &mut SparseVector<u64, T>,
    pairs: &mut [(u64, T)],
) -> Result<(), Error> {
    let len = sv.len();
    if let Some(&(i, _)) = pairs.iter().find(|(i, _)| *i >= len) {
        return Err(Error::Invalid(format!(
            "index {i} is out of range for a sparse vector of length {len}"
        )));
    }
    // Stable: among equal indices the input order is kept, so the last one
    // is the one given last.
    pairs.sort_by_key(|&(i, _)| i);
    let mut unique: Vec<(u64, T)> = Vec::with_capacity(pairs.len());
    for &(i, x) in pairs.iter() {
        match unique.last_mut() {
            Some(last) if last.0 == i => last.1 = x,
            _ => unique.push((i, x)),
        }
    }
    let new = unique.iter().filter(|(i, _)| sv.get(*i).is_none()).count();
    let total = sv.nnz() + new;
    if total > sv.max_entries() {
        return Err(Error::Length(format!(
            "{} entries would be stored; the vector was created for at most {}",
            total,
            sv.max_entries()
        )));
    }
    if new == 0 {
        for (i, x) in unique {
            sv.insert(i, x).map_err(vol::VolError::from)?;
        }
        return Ok(());
    }
    // Merge the two sorted lists (the update wins) and rebuild once.
    let mut merged: Vec<(u64, T)> = Vec::with_capacity(total);
    let mut old = sv.iter().peekable();
    for (i, x) in unique {
        while let Some(&(j, y)) = old.peek() {
            if j >= i {
                break;
            }
            merged.push((j, y));
            old.next();
        }
        if old.peek().map(|&(j, _)| j) == Some(i) {
            old.next();
        }
        merged.push((i, x));
    }
    merged.extend(old);
    let rebuilt = SparseEntries::from_pairs(len, merged).map_err(vol::VolError::from)?;
    *sv.as_sparse_mut() = rebuilt;
    Ok(())
}

/// # Safety
///
/// As for `malt_sparse_update_f32`.
unsafe fn sparse_update<T: Elem>(
    func: &str,
    vector: *mut malt_vector,
    indices: *const u64,
    values: *const T,
    count: usize,
) -> Result<(), Error> {
    if count > 0 && indices.is_null() {
        return Err(Error::Null("indices"));
    }
    if count > 0 && values.is_null() {
        return Err(Error::Null("values"));
    }
    let mut pairs: Vec<(u64, T)> = Vec::new();
    pairs
        .try_reserve_exact(count)
        .map_err(|_| Error::Length(format!("{count} entries cannot be allocated")))?;
    for k in 0..count {
        // SAFETY: both arrays are non-NULL (checked) and readable for
        // `count` elements by the caller's contract.
        let pair = unsafe {
            (
                indices.add(k).read_unaligned(),
                values.add(k).read_unaligned(),
            )
        };
        pairs.push(pair);
    }
    runtime::with_vector(vector, |v| {
        set_entries(sparse_of::<T>(v, func)?, &mut pairs)
    })
}

/// Stores `values[k]` at index `indices[k]` for `k < count` in this rank's
/// copy of a sparse vector of float, inserting or overwriting entries (for
/// a repeated index the last value wins). All or nothing: an index not
/// below the vector's length gives MALT_ERR_INVALID_ARGUMENT, more stored
/// entries than the vector was created for MALT_ERR_LENGTH, and the vector
/// is then unchanged. The arrays may be NULL when `count` is 0.
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// `indices` and `values` must each be NULL or readable for `count`
/// elements.
#[no_mangle]
pub unsafe extern "C" fn malt_sparse_update_f32(
    vector: *mut malt_vector,
    indices: *const u64,
    values: *const f32,
    count: usize,
) -> malt_status {
    call("malt_sparse_update_f32", || {
        // SAFETY: forwarded caller contract.
        unsafe { sparse_update::<f32>("malt_sparse_update_f32", vector, indices, values, count) }
    })
}

/// Like `malt_sparse_update_f32`, for a sparse vector of double.
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// As for `malt_sparse_update_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_sparse_update_f64(
    vector: *mut malt_vector,
    indices: *const u64,
    values: *const f64,
    count: usize,
) -> malt_status {
    call("malt_sparse_update_f64", || {
        // SAFETY: forwarded caller contract.
        unsafe { sparse_update::<f64>("malt_sparse_update_f64", vector, indices, values, count) }
    })
}

/// Removes every stored entry of this rank's copy of a sparse vector (of
/// either element type).
///
/// Thread safety: as `malt_scatter`.
#[no_mangle]
pub extern "C" fn malt_sparse_clear(vector: *mut malt_vector) -> malt_status {
    call("malt_sparse_clear", || {
        runtime::with_vector(vector, |v| {
            match v {
                Vector::SparseF32(s) => s.clear(),
                Vector::SparseF64(s) => s.clear(),
                other => {
                    return Err(Error::Type(format!(
                        "malt_sparse_clear needs a sparse vector; this is a {}",
                        other.kind()
                    )))
                }
            }
            Ok(())
        })
    })
}

/// # Safety
///
/// As for `malt_sparse_entries_f32`.
unsafe fn sparse_entries<T: Elem>(
    func: &str,
    vector: *mut malt_vector,
    indices: *mut u64,
    values: *mut T,
    capacity: usize,
    count: *mut usize,
) -> Result<(), Error> {
    if count.is_null() {
        return Err(Error::Null("count"));
    }
    runtime::with_vector(vector, |v| {
        let s = sparse_of::<T>(v, func)?;
        let nnz = s.nnz();
        // SAFETY: non-NULL (checked) and writable by the caller's contract.
        unsafe { count.write_unaligned(nnz) };
        if nnz > capacity {
            return Err(Error::Length(format!(
                "the vector stores {nnz} entries; the arrays hold {capacity}"
            )));
        }
        if nnz > 0 && indices.is_null() {
            return Err(Error::Null("indices"));
        }
        if nnz > 0 && values.is_null() {
            return Err(Error::Null("values"));
        }
        for (k, (i, x)) in s.iter().enumerate() {
            // SAFETY: both arrays are non-NULL (checked) and writable for
            // `capacity >= nnz > k` elements by the caller's contract.
            unsafe {
                indices.add(k).write_unaligned(i);
                values.add(k).write_unaligned(x);
            }
        }
        Ok(())
    })
}

/// Copies this rank's stored entries of a sparse vector of float, in
/// increasing index order, into `indices` and `values` (room for `capacity`
/// each) and their number into `*count`. When they do not fit, `*count` is
/// still set and MALT_ERR_LENGTH returned (pass NULL, NULL, 0 to ask for
/// the number).
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// `indices` and `values` must each be NULL or writable for `capacity`
/// elements; `count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_sparse_entries_f32(
    vector: *mut malt_vector,
    indices: *mut u64,
    values: *mut f32,
    capacity: usize,
    count: *mut usize,
) -> malt_status {
    call("malt_sparse_entries_f32", || {
        // SAFETY: forwarded caller contract.
        unsafe {
            sparse_entries::<f32>(
                "malt_sparse_entries_f32",
                vector,
                indices,
                values,
                capacity,
                count,
            )
        }
    })
}

/// Like `malt_sparse_entries_f32`, for a sparse vector of double.
///
/// Thread safety: as `malt_scatter`.
///
/// # Safety
///
/// As for `malt_sparse_entries_f32`.
#[no_mangle]
pub unsafe extern "C" fn malt_sparse_entries_f64(
    vector: *mut malt_vector,
    indices: *mut u64,
    values: *mut f64,
    capacity: usize,
    count: *mut usize,
) -> malt_status {
    call("malt_sparse_entries_f64", || {
        // SAFETY: forwarded caller contract.
        unsafe {
            sparse_entries::<f64>(
                "malt_sparse_entries_f64",
                vector,
                indices,
                values,
                capacity,
                count,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vol::{Config, Group, VectorOptions};

    fn one_rank(name: &str) -> Group {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        Group::join(Config::local(0, 1, port, name)).expect("one-rank group")
    }

    fn entries(sv: &SparseVector<u64, f32>) -> Vec<(u64, f32)> {
        sv.iter().collect()
    }

    #[test]
    fn updates_insert_overwrite_and_keep_the_last_duplicate() {
        let g = one_rank("capi-sparse-set");
        let mut sv =
            SparseVector::<u64, f32>::new(&g, "s", 100, 5, &VectorOptions::new()).expect("create");
        set_entries(&mut sv, &mut [(7, 1.0), (3, 2.0), (7, 3.0)]).expect("insert");
        assert_eq!(entries(&sv), [(3, 2.0), (7, 3.0)]);
        // Only existing indices: overwritten in place.
        set_entries(&mut sv, &mut [(3, 5.0)]).expect("overwrite");
        assert_eq!(entries(&sv), [(3, 5.0), (7, 3.0)]);
        // A mix: merged.
        set_entries(&mut sv, &mut [(99, 1.5), (0, 0.5), (7, 4.0)]).expect("merge");
        assert_eq!(entries(&sv), [(0, 0.5), (3, 5.0), (7, 4.0), (99, 1.5)]);
        drop(sv);
        g.finish().expect("finish");
    }

    #[test]
    fn bad_updates_change_nothing() {
        let g = one_rank("capi-sparse-bad");
        let mut sv =
            SparseVector::<u64, f32>::new(&g, "s", 10, 2, &VectorOptions::new()).expect("create");
        set_entries(&mut sv, &mut [(1, 1.0)]).expect("insert");
        let e = set_entries(&mut sv, &mut [(2, 1.0), (10, 1.0)]).expect_err("out of range");
        assert!(
            matches!(e, Error::Invalid(ref m) if m.contains("index 10")),
            "{e}"
        );
        let e = set_entries(&mut sv, &mut [(2, 1.0), (3, 1.0)]).expect_err("too many");
        assert!(
            matches!(e, Error::Length(ref m) if m.contains("at most 2")),
            "{e}"
        );
        assert_eq!(entries(&sv), [(1, 1.0)]);
        // Overwriting stays within the limit.
        set_entries(&mut sv, &mut [(1, 2.0), (4, 3.0)]).expect("fits");
        assert_eq!(entries(&sv), [(1, 2.0), (4, 3.0)]);
        drop(sv);
        g.finish().expect("finish");
    }
}
