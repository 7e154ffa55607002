//! The process-wide state behind the C API: the group this process joined,
//! and the table that maps vector handles to vectors.
//!
//! A handle is an opaque pointer whose value is a key of that table; the
//! library never dereferences it. A freed handle, a handle used after
//! `malt_finalize`, or any other pointer value is therefore detected and
//! reported instead of being followed. Keys are never reused within a
//! process.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::sync::{Arc, Mutex, MutexGuard};

use vol::{Consistency, DenseVector, Graph, Group, SparseVector, VectorOptions};

use crate::status::{not_in_callback, Error};
use crate::wrap::Store;

/// An opaque handle to a vector shared by every rank. Obtained from a
/// `malt_*_create_*` function, released with `malt_vector_free`.
#[derive(Debug)]
pub struct malt_vector {
    _opaque: [u8; 0],
}

/// Every rank sends to every other rank (the default).
pub const MALT_GRAPH_ALL: c_int = 0;
/// Rank `r` sends to about log2(N) peers at Halton offsets; any update
/// reaches every rank within ceil(log2 N) rounds.
pub const MALT_GRAPH_HALTON: c_int = 1;
/// Rank `r` sends to rank `(r + 1) mod N`.
pub const MALT_GRAPH_RING: c_int = 2;
/// Rank `r` sends to `random_peers` peers drawn from `random_seed` (the same
/// graph on every rank); a graph that is not strongly connected is rejected.
pub const MALT_GRAPH_RANDOM: c_int = 3;

/// Bulk synchronous: after one exchange under MALT_GRAPH_ALL every rank
/// holds the exact merge of every rank's vector (the default).
pub const MALT_BSP: c_int = 0;
/// Asynchronous: a gather never waits; it merges whatever has arrived.
pub const MALT_ASYNC: c_int = 1;
/// Stale synchronous parallel: a gather at iteration t waits until every
/// peer has scattered iteration t - staleness.
pub const MALT_SSP: c_int = 2;

/// How a vector communicates; every rank must pass equal options for a
/// vector. All zeros (or a NULL pointer) means the defaults: MALT_GRAPH_ALL
/// and MALT_BSP.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct malt_options {
    /// MALT_GRAPH_ALL, MALT_GRAPH_HALTON, MALT_GRAPH_RING or MALT_GRAPH_RANDOM.
    pub graph: c_int,
    /// MALT_GRAPH_RANDOM: peers per rank (below the world size).
    pub random_peers: u32,
    /// MALT_GRAPH_RANDOM: seed shared by every rank.
    pub random_seed: u64,
    /// MALT_BSP, MALT_ASYNC or MALT_SSP.
    pub consistency: c_int,
    /// MALT_SSP: iterations a rank may run ahead of the slowest peer.
    pub staleness: u64,
}

/// The vector behind a handle.
#[derive(Debug)]
pub(crate) enum Vector {
    DenseF32(DenseVector<f32, Store<f32>>),
    DenseF64(DenseVector<f64, Store<f64>>),
    SparseF32(SparseVector<u64, f32>),
    SparseF64(SparseVector<u64, f64>),
}

impl Vector {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Vector::DenseF32(_) => "dense vector of float",
            Vector::DenseF64(_) => "dense vector of double",
            Vector::SparseF32(_) => "sparse vector of float",
            Vector::SparseF64(_) => "sparse vector of double",
        }
    }
}

struct Runtime {
    /// `Group` is not `Sync`, so threads share it behind a lock; only
    /// collectives (which one thread issues anyway) take it.
    group: Arc<Mutex<Group>>,
    rank: usize,
    world: usize,
    local_rank: Option<usize>,
    local_world: Option<usize>,
    vectors: HashMap<usize, Arc<Mutex<Vector>>>,
    /// The memory of every live dense vector, by handle: no two may share
    /// a byte.
    spans: HashMap<usize, Span>,
    next: usize,
}

/// The bytes `start..end` of this process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

enum Phase {
    Uninit,
    Running(Runtime),
    Finalized,
}

static STATE: Mutex<Phase> = Mutex::new(Phase::Uninit);

/// The state; its lock is only held for table updates and init/finalize,
/// which leave it consistent even if interrupted.
fn state() -> MutexGuard<'static, Phase> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// This library's version.
fn version() -> (u32, u32, u32) {
    let part = |s: &str| s.parse().unwrap_or(0);
    (
        part(env!("CARGO_PKG_VERSION_MAJOR")),
        part(env!("CARGO_PKG_VERSION_MINOR")),
        part(env!("CARGO_PKG_VERSION_PATCH")),
    )
}

/// Fails unless this library serves programs built against `malt.h` of
/// version `header`: the same major version (and, below 1.0, the same
/// minor), and a library at least as new as the header.
pub(crate) fn check_version(header: (u32, u32, u32)) -> Result<(), Error> {
    compatible(version(), header)
}

fn compatible(lib: (u32, u32, u32), header: (u32, u32, u32)) -> Result<(), Error> {
    let same_line = lib.0 == header.0 && (lib.0 > 0 || lib.1 == header.1);
    if same_line && lib >= header {
        return Ok(());
    }
    let v = |(a, b, c): (u32, u32, u32)| format!("{a}.{b}.{c}");
    Err(Error::Config(format!(
        "the program was compiled against malt.h {} but runs with libmalt {}: rebuild it against this library's header, or run it with the library it was built for",
        v(header),
        v(lib)
    )))
}

/// Joins the job described by the environment.
pub(crate) fn init() -> Result<(), Error> {
    not_in_callback()?;
    let mut st = state();
    match *st {
        Phase::Running(_) => return Err(Error::AlreadyInitialized),
        Phase::Finalized => return Err(Error::Finalized),
        Phase::Uninit => {}
    }
    let group = Group::from_env()?;
    *st = Phase::Running(Runtime {
        rank: group.rank(),
        world: group.world(),
        local_rank: group.local_rank(),
        local_world: group.local_world(),
        group: Arc::new(Mutex::new(group)),
        vectors: HashMap::new(),
        spans: HashMap::new(),
        next: 1,
    });
    Ok(())
}

/// Frees every vector, then leaves the job through a final barrier.
pub(crate) fn finalize() -> Result<(), Error> {
    not_in_callback()?;
    let rt = {
        let mut st = state();
        match std::mem::replace(&mut *st, Phase::Finalized) {
            Phase::Running(rt) => rt,
            Phase::Uninit => {
                *st = Phase::Uninit;
                return Err(Error::NotInitialized);
            }
            Phase::Finalized => return Err(Error::Finalized),
        }
    };
    // A call still running on another thread keeps its vector until it
    // returns; every other vector is dropped here.
    drop(rt.vectors);
    let done = lock_group(&rt.group).finish_in_place();
    drop(rt.group);
    done?;
    Ok(())
}

fn lock_group(g: &Mutex<Group>) -> MutexGuard<'_, Group> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the collective `f` on the group.
pub(crate) fn with_group<R>(f: impl FnOnce(&Group) -> Result<R, Error>) -> Result<R, Error> {
    not_in_callback()?;
    let g = match &*state() {
        Phase::Running(rt) => rt.group.clone(),
        Phase::Uninit => return Err(Error::NotInitialized),
        Phase::Finalized => return Err(Error::Finalized),
    };
    let g = lock_group(&g);
    f(&g)
}

/// This rank and the world size.
pub(crate) fn identity() -> Result<(usize, usize), Error> {
    match &*state() {
        Phase::Running(rt) => Ok((rt.rank, rt.world)),
        Phase::Uninit => Err(Error::NotInitialized),
        Phase::Finalized => Err(Error::Finalized),
    }
}

/// This rank's local rank and the local world size, where the launcher
/// gave them.
pub(crate) fn local_identity() -> Result<(Option<usize>, Option<usize>), Error> {
    match &*state() {
        Phase::Running(rt) => Ok((rt.local_rank, rt.local_world)),
        Phase::Uninit => Err(Error::NotInitialized),
        Phase::Finalized => Err(Error::Finalized),
    }
}

/// Fails when `span` shares a byte with the values of a live vector: two
/// vectors over one array would each merge over the other's result.
pub(crate) fn check_unshared(span: Span, name: &str) -> Result<(), Error> {
    match &*state() {
        Phase::Running(rt) => {
            let overlap = rt
                .spans
                .values()
                .find(|s| s.start < span.end && span.start < s.end);
            match overlap {
                Some(s) => Err(Error::Invalid(format!(
                    "the memory for {name:?} ({:#x}..{:#x}) overlaps that of a live vector ({:#x}..{:#x})",
                    span.start, span.end, s.start, s.end
                ))),
                None => Ok(()),
            }
        }
        Phase::Uninit => Err(Error::NotInitialized),
        Phase::Finalized => Err(Error::Finalized),
    }
}

/// Adds a vector to the table, with the memory its values take (dense
/// vectors), and returns its handle.
pub(crate) fn register(v: Vector, span: Option<Span>) -> Result<*mut malt_vector, Error> {
    let mut st = state();
    match &mut *st {
        Phase::Running(rt) => {
            let key = rt.next;
            rt.next += 1;
            rt.vectors.insert(key, Arc::new(Mutex::new(v)));
            if let Some(s) = span {
                rt.spans.insert(key, s);
            }
            Ok(key as *mut malt_vector)
        }
        Phase::Uninit => Err(Error::NotInitialized),
        Phase::Finalized => Err(Error::Finalized),
    }
}

fn lookup(h: *const malt_vector) -> Result<Arc<Mutex<Vector>>, Error> {
    not_in_callback()?;
    if h.is_null() {
        return Err(Error::Null("vector"));
    }
    match &*state() {
        Phase::Running(rt) => rt
            .vectors
            .get(&(h as usize))
            .cloned()
            .ok_or(Error::BadHandle(h as usize)),
        Phase::Uninit => Err(Error::NotInitialized),
        Phase::Finalized => Err(Error::Finalized),
    }
}

/// Runs `f` on the vector behind `h`, holding that vector's lock (calls on
/// one vector are serialised; calls on different vectors run concurrently).
pub(crate) fn with_vector<R>(
    h: *const malt_vector,
    f: impl FnOnce(&mut Vector) -> Result<R, Error>,
) -> Result<R, Error> {
    let slot = lookup(h)?;
    // A poisoned lock means an earlier call panicked half-way through.
    let mut v = slot.lock().map_err(|_| Error::Broken)?;
    f(&mut v)
}

/// Removes the vector behind `h` from the table; it is dropped once no call
/// on it is running.
pub(crate) fn unregister(h: *const malt_vector) -> Result<(), Error> {
    not_in_callback()?;
    if h.is_null() {
        return Err(Error::Null("vector"));
    }
    let slot = match &mut *state() {
        Phase::Running(rt) => {
            rt.spans.remove(&(h as usize));
            rt.vectors
                .remove(&(h as usize))
                .ok_or(Error::BadHandle(h as usize))?
        }
        Phase::Uninit => return Err(Error::NotInitialized),
        Phase::Finalized => return Err(Error::Finalized),
    };
    drop(slot);
    Ok(())
}

/// Reads a vector name.
///
/// # Safety
///
/// `name` must be NULL or point to a NUL-terminated string.
pub(crate) unsafe fn read_name<'a>(name: *const c_char) -> Result<&'a str, Error> {
    if name.is_null() {
        return Err(Error::Null("name"));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(name) };
    let s = c
        .to_str()
        .map_err(|e| Error::Invalid(format!("the name is not UTF-8: {e}")))?;
    if s.is_empty() {
        return Err(Error::Invalid("the name is empty".into()));
    }
    Ok(s)
}

/// Converts C options into vol's.
///
/// # Safety
///
/// `opts` must be NULL or point to a readable `malt_options`.
pub(crate) unsafe fn read_options(opts: *const malt_options) -> Result<VectorOptions, Error> {
    let o = if opts.is_null() {
        malt_options::default()
    } else {
        // SAFETY: readable by the caller's contract; every bit pattern of
        // the integer fields is a valid value.
        unsafe { opts.read_unaligned() }
    };
    let graph = match o.graph {
        MALT_GRAPH_ALL => Graph::All,
        MALT_GRAPH_HALTON => Graph::Halton,
        MALT_GRAPH_RING => Graph::Ring,
        MALT_GRAPH_RANDOM => Graph::Random {
            k: o.random_peers as usize,
            seed: o.random_seed,
        },
        g => {
            return Err(Error::Invalid(format!(
                "unknown graph {g} (expected MALT_GRAPH_ALL, MALT_GRAPH_HALTON, MALT_GRAPH_RING or MALT_GRAPH_RANDOM)"
            )))
        }
    };
    let consistency = match o.consistency {
        MALT_BSP => Consistency::Bsp,
        MALT_ASYNC => Consistency::Async,
        MALT_SSP => Consistency::Ssp { s: o.staleness },
        c => {
            return Err(Error::Invalid(format!(
                "unknown consistency mode {c} (expected MALT_BSP, MALT_ASYNC or MALT_SSP)"
            )))
        }
    };
    // A C merge callback may depend on which values are the local ones,
    // which the allreduce schedule cannot honour: C vectors keep the
    // direct schedule.
    Ok(VectorOptions::new()
        .graph(graph)
        .consistency(consistency)
        .schedule(vol::Schedule::Direct))
}

/// Fails when `bytes` cannot be allocated at all, so that an absurd length
/// becomes an error instead of an abort inside the allocator.
pub(crate) fn probe_alloc(bytes: Option<usize>, what: &str) -> Result<(), Error> {
    let fail = || Error::NoMemory(format!("{what}: cannot allocate memory for it"));
    let bytes = bytes.ok_or_else(fail)?;
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(bytes).map_err(|_| fail())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_all_and_bsp() {
        // SAFETY: NULL is allowed.
        let o = unsafe { read_options(std::ptr::null()) }.expect("defaults");
        assert_eq!(o.graph, Graph::All);
        assert_eq!(o.consistency, Consistency::Bsp);
        let zero = malt_options::default();
        // SAFETY: points to a live value.
        assert_eq!(unsafe { read_options(&zero) }.expect("zeros"), o);
    }

    #[test]
    fn options_map_every_graph_and_mode() {
        let o = malt_options {
            graph: MALT_GRAPH_RANDOM,
            random_peers: 2,
            random_seed: 9,
            consistency: MALT_SSP,
            staleness: 3,
        };
        // SAFETY: points to a live value.
        let v = unsafe { read_options(&o) }.expect("valid");
        assert_eq!(v.graph, Graph::Random { k: 2, seed: 9 });
        assert_eq!(v.consistency, Consistency::Ssp { s: 3 });
        for (g, want) in [
            (MALT_GRAPH_HALTON, Graph::Halton),
            (MALT_GRAPH_RING, Graph::Ring),
        ] {
            let o = malt_options {
                graph: g,
                consistency: MALT_ASYNC,
                ..malt_options::default()
            };
            // SAFETY: points to a live value.
            let v = unsafe { read_options(&o) }.expect("valid");
            assert_eq!(v.graph, want);
            assert_eq!(v.consistency, Consistency::Async);
        }
    }

    #[test]
    fn unknown_option_values_are_errors() {
        for o in [
            malt_options {
                graph: 42,
                ..malt_options::default()
            },
            malt_options {
                consistency: -1,
                ..malt_options::default()
            },
        ] {
            // SAFETY: points to a live value.
            let e = unsafe { read_options(&o) }.expect_err("invalid");
            assert!(matches!(e, Error::Invalid(_)), "{e}");
        }
    }

    #[test]
    fn names_must_be_utf8_and_non_empty() {
        // SAFETY: NULL and NUL-terminated literals.
        unsafe {
            assert!(matches!(read_name(std::ptr::null()), Err(Error::Null(_))));
            assert!(matches!(read_name(c"".as_ptr()), Err(Error::Invalid(_))));
            assert!(matches!(
                read_name(c"\xff\xfe".as_ptr()),
                Err(Error::Invalid(_))
            ));
            assert_eq!(read_name(c"w".as_ptr()).ok(), Some("w"));
        }
    }

    #[test]
    fn a_header_is_served_by_libraries_of_its_line_at_least_as_new() {
        assert!(compatible((0, 2, 1), (0, 2, 0)).is_ok());
        assert!(compatible((0, 2, 1), (0, 2, 1)).is_ok());
        assert!(compatible((1, 4, 0), (1, 2, 7)).is_ok());
        for (lib, header) in [
            ((0, 2, 0), (0, 2, 1)),
            ((0, 3, 0), (0, 2, 0)),
            ((0, 2, 0), (0, 3, 0)),
            ((2, 0, 0), (1, 9, 0)),
            ((1, 2, 0), (1, 3, 0)),
        ] {
            let e = compatible(lib, header).unwrap_err().to_string();
            assert!(e.contains("compiled against malt.h"), "{e}");
        }
        assert!(check_version(version()).is_ok());
    }

    #[test]
    fn impossible_allocations_are_reported() {
        assert!(matches!(probe_alloc(None, "v"), Err(Error::NoMemory(_))));
        assert!(matches!(
            probe_alloc(Some(usize::MAX / 2), "v"),
            Err(Error::NoMemory(_))
        ));
        assert!(probe_alloc(Some(1024), "v").is_ok());
    }
}
