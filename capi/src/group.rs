//! Joining and leaving the job, identity, barrier.

use crate::runtime::{self, malt_vector, Vector};
use crate::status::{call, malt_status, Error};

/// Joins the job this process was started in, as described by the
/// environment: `malt launch`, srun, mpirun or torchrun set it (see the
/// README's table of variables; without any, a one-rank job on the
/// default port). Blocks until every rank has joined, at most
/// `MALT_TIMEOUT` seconds.
///
/// Returns MALT_ERR_ALREADY_INITIALIZED after a successful call,
/// MALT_ERR_FINALIZED after `malt_finalize`, MALT_ERR_CONFIG for an
/// unusable environment, MALT_ERR_TIMEOUT or MALT_ERR_COMM when the ranks
/// cannot meet. A failed call may be retried.
///
/// Thread safety: call once per process, before any other malt call
/// (except `malt_last_error` and `malt_status_string`), from one thread.
/// Collective: every rank calls it.
#[no_mangle]
pub extern "C" fn malt_init() -> malt_status {
    call("malt_init", runtime::init)
}

/// `malt_init`, after checking that this library can serve a program
/// compiled against `malt.h` of version `major.minor.patch`: the header's
/// `malt_init()` macro calls it with the header's `MALT_VERSION_*`. A
/// library of another major version (of another minor version, while the
/// major is 0), or older than the header, returns MALT_ERR_CONFIG naming
/// both versions and joins nothing.
///
/// Thread safety: as `malt_init`.
#[no_mangle]
pub extern "C" fn malt_init_version(major: u32, minor: u32, patch: u32) -> malt_status {
    call("malt_init", || {
        runtime::check_version((major, minor, patch))?;
        runtime::init()
    })
}

/// Frees every vector still alive, waits until every rank has called
/// `malt_finalize` (at most `MALT_TIMEOUT` seconds: peers may still be
/// writing into this rank's memory until then) and leaves the job. The
/// library cannot be initialised again in this process; later calls return
/// MALT_ERR_FINALIZED, and pointers from `malt_dense_data_*` are invalid.
///
/// Thread safety: collective; call it from one thread once every other
/// malt call has returned.
#[no_mangle]
pub extern "C" fn malt_finalize() -> malt_status {
    call("malt_finalize", runtime::finalize)
}

/// Stores this process's rank, `0 .. world size - 1`, in `*rank`.
///
/// Thread safety: safe from any thread, including inside merge callbacks.
///
/// # Safety
///
/// `rank` must be NULL (MALT_ERR_NULL) or point to writable memory for a
/// `size_t`.
#[no_mangle]
pub unsafe extern "C" fn malt_rank(rank: *mut usize) -> malt_status {
    call("malt_rank", || {
        if rank.is_null() {
            return Err(Error::Null("rank"));
        }
        let (r, _) = runtime::identity()?;
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { rank.write_unaligned(r) };
        Ok(())
    })
}

/// Stores the number of ranks of the job in `*world`.
///
/// Thread safety: safe from any thread, including inside merge callbacks.
///
/// # Safety
///
/// `world` must be NULL (MALT_ERR_NULL) or point to writable memory for a
/// `size_t`.
#[no_mangle]
pub unsafe extern "C" fn malt_world_size(world: *mut usize) -> malt_status {
    call("malt_world_size", || {
        if world.is_null() {
            return Err(Error::Null("world"));
        }
        let (_, w) = runtime::identity()?;
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { world.write_unaligned(w) };
        Ok(())
    })
}

/// Stores this process's rank among the ranks of the job on its host,
/// `0 .. local world size - 1`, in `*local_rank` (to pick a GPU or a
/// socket, for example). It comes from the launcher: `MALT_LOCAL_RANK`
/// (`malt launch`), `OMPI_COMM_WORLD_LOCAL_RANK` (Open MPI),
/// `MPI_LOCALRANKID` (MPICH), `LOCAL_RANK` (torchrun) or `SLURM_LOCALID`
/// (srun); a one-rank job is local rank 0. Where the launcher gives none,
/// returns MALT_ERR_CONFIG (naming the variable) and leaves `*local_rank`
/// as it was.
///
/// Thread safety: safe from any thread, including inside merge callbacks.
///
/// # Safety
///
/// `local_rank` must be NULL (MALT_ERR_NULL) or point to writable memory
/// for a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn malt_local_rank(local_rank: *mut usize) -> malt_status {
    call("malt_local_rank", || {
        if local_rank.is_null() {
            return Err(Error::Null("local_rank"));
        }
        let r = runtime::local_identity()?.0.ok_or_else(|| {
            unknown(
                "local rank",
                "MALT_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, LOCAL_RANK or \
                 SLURM_LOCALID",
            )
        })?;
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { local_rank.write_unaligned(r) };
        Ok(())
    })
}

/// Stores the number of ranks of the job on this process's host in
/// `*local_world`. It comes from the launcher: `MALT_LOCAL_WORLD_SIZE`
/// (`malt launch`), `OMPI_COMM_WORLD_LOCAL_SIZE` (Open MPI),
/// `MPI_LOCALNRANKS` (MPICH), `LOCAL_WORLD_SIZE` (torchrun) or a plain
/// number in `SLURM_NTASKS_PER_NODE` (srun); a one-rank job has 1. Where
/// the launcher gives none, returns MALT_ERR_CONFIG (naming the variable)
/// and leaves `*local_world` as it was.
///
/// Thread safety: safe from any thread, including inside merge callbacks.
///
/// # Safety
///
/// `local_world` must be NULL (MALT_ERR_NULL) or point to writable memory
/// for a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn malt_local_world(local_world: *mut usize) -> malt_status {
    call("malt_local_world", || {
        if local_world.is_null() {
            return Err(Error::Null("local_world"));
        }
        let w = runtime::local_identity()?.1.ok_or_else(|| {
            unknown(
                "local world size",
                "MALT_LOCAL_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS, \
                 LOCAL_WORLD_SIZE or SLURM_NTASKS_PER_NODE",
            )
        })?;
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { local_world.write_unaligned(w) };
        Ok(())
    })
}

/// The error of a local number the launcher did not give.
fn unknown(what: &str, vars: &str) -> Error {
    Error::Dstorm(vol::GroupError::Config(format!(
        "the launcher gave no {what}: none of {vars} is set to a usable number"
    )))
}

/// Waits until every rank has called `malt_barrier` (through the control
/// channel), at most `MALT_TIMEOUT` seconds (then MALT_ERR_TIMEOUT naming
/// the ranks that did not arrive).
///
/// Thread safety: collective; every rank must issue its collectives
/// (vector creation, barrier, finalize) in the same order, so issue them
/// from one thread. Scatter and gather may run in other threads meanwhile.
#[no_mangle]
pub extern "C" fn malt_barrier() -> malt_status {
    call("malt_barrier", || {
        runtime::with_group(|g| {
            vol::barrier(g)?;
            Ok(())
        })
    })
}

/// After a call returned MALT_ERR_REGROUPED: joins the surviving ranks in
/// the new membership epoch, stored in `*epoch` if it is not NULL. Then
/// rejoin every vector (`malt_vector_rejoin`) and re-assign the
/// departed ranks' work (`malt_members`). Ranks keep their numbers.
///
/// Thread safety: a collective among the survivors (see `malt_barrier`).
///
/// # Safety
///
/// `epoch` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_regroup(epoch: *mut u32) -> malt_status {
    call("malt_regroup", || {
        let m = runtime::with_group(|g| Ok(g.regroup()?))?;
        if !epoch.is_null() {
            // SAFETY: non-NULL and writable by the caller's contract.
            unsafe { epoch.write_unaligned(m.epoch) };
        }
        Ok(())
    })
}

/// Stores the number of ranks currently in the group in `*count` and, when
/// they fit in `capacity`, the ranks themselves, ascending, in `ranks`
/// (MALT_ERR_LENGTH otherwise; pass NULL, 0 to ask for the number). All
/// ranks until a regroup removes some.
///
/// Thread safety: safe from any thread (it waits for a collective running
/// in another thread).
///
/// # Safety
///
/// `ranks` must be NULL or writable for `capacity` elements; `count` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_members(
    ranks: *mut usize,
    capacity: usize,
    count: *mut usize,
) -> malt_status {
    call("malt_members", || {
        if count.is_null() {
            return Err(Error::Null("count"));
        }
        let members = runtime::with_group(|g| Ok(g.members()))?;
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { count.write_unaligned(members.len()) };
        if members.len() > capacity {
            return Err(Error::Length(format!(
                "{} members; the array holds {capacity}",
                members.len()
            )));
        }
        if !members.is_empty() && ranks.is_null() {
            return Err(Error::Null("ranks"));
        }
        for (k, r) in members.iter().enumerate() {
            // SAFETY: non-NULL (checked) and writable for `capacity > k`
            // elements by the caller's contract.
            unsafe { ranks.add(k).write_unaligned(*r) };
        }
        Ok(())
    })
}

/// Stores the membership epoch in `*epoch`: 1 at the start, one more after
/// every regroup.
///
/// Thread safety: as `malt_members`.
///
/// # Safety
///
/// `epoch` must be NULL (MALT_ERR_NULL) or writable.
#[no_mangle]
pub unsafe extern "C" fn malt_epoch(epoch: *mut u32) -> malt_status {
    call("malt_epoch", || {
        if epoch.is_null() {
            return Err(Error::Null("epoch"));
        }
        let e = runtime::with_group(|g| Ok(g.epoch()))?;
        // SAFETY: non-NULL (checked) and writable by the caller's contract.
        unsafe { epoch.write_unaligned(e) };
        Ok(())
    })
}

/// After `malt_regroup`: creates a vector's queues again among the
/// survivors, with its graph laid out over them. The local values (and a
/// dense vector's data pointer) are kept; the iteration moves to the
/// highest any survivor had reached.
///
/// Thread safety: a collective among the survivors (see `malt_barrier`);
/// every survivor rejoins the same vectors in the same order.
#[no_mangle]
pub extern "C" fn malt_vector_rejoin(vector: *mut malt_vector) -> malt_status {
    call("malt_vector_rejoin", || {
        runtime::with_vector(vector, |v| {
            runtime::with_group(|g| match v {
                Vector::DenseF32(d) => Ok(d.rejoin(g)?),
                Vector::DenseF64(d) => Ok(d.rejoin(g)?),
                Vector::SparseF32(sv) => Ok(sv.rejoin(g)?),
                Vector::SparseF64(sv) => Ok(sv.rejoin(g)?),
            })
        })
    })
}
