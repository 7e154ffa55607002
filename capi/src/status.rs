//! Status codes, the error type behind them, the per-thread last error
//! message, and the guard every exported function runs its body in.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What every malt call returns: `MALT_OK`, or the kind of failure.
/// `malt_last_error()` then gives the message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum malt_status {
    /// Success.
    MALT_OK = 0,
    /// A required pointer argument is NULL.
    MALT_ERR_NULL = 1,
    /// An argument is out of range: an unknown graph, consistency mode or
    /// merge function, a name that is not UTF-8, an index beyond the
    /// vector's length, options the vector cannot have.
    MALT_ERR_INVALID_ARGUMENT = 2,
    /// A buffer is too small, or a count exceeds what the vector was created
    /// for.
    MALT_ERR_LENGTH = 3,
    /// Not a live vector handle: already freed, or never returned by malt.
    MALT_ERR_BAD_HANDLE = 4,
    /// The call does not apply to this kind of vector (for example
    /// `malt_dense_data_f64` on a vector of floats, or a sparse call on a
    /// dense vector).
    MALT_ERR_TYPE = 5,
    /// `malt_init` has not been called (or failed).
    MALT_ERR_NOT_INITIALIZED = 6,
    /// `malt_init` was already called successfully.
    MALT_ERR_ALREADY_INITIALIZED = 7,
    /// `malt_finalize` was called; the library cannot be used again in this
    /// process.
    MALT_ERR_FINALIZED = 8,
    /// Called from inside a merge callback, where only `malt_rank`,
    /// `malt_world_size`, `malt_local_rank`, `malt_local_world`,
    /// `malt_last_error` and `malt_status_string` are allowed.
    MALT_ERR_REENTRANT = 9,
    /// The environment does not describe a usable job (rank, world size,
    /// token, transport), or a rank was refused by the master; or the
    /// launcher gave no local rank or local world size (`malt_local_rank`,
    /// `malt_local_world`).
    MALT_ERR_CONFIG = 10,
    /// Ranks disagree about a collectively created vector (name, length,
    /// type or options; the job goes on), or made different calls: one
    /// waits in a gather for a peer's update while the peer waits in a
    /// collective (`malt_barrier`, `malt_finalize`, a vector's creation).
    /// The second kind ends the job: every rank gets it, naming both ranks
    /// and their counts, within about a second.
    MALT_ERR_MISMATCH = 11,
    /// A bounded wait ended before the peers arrived (`MALT_TIMEOUT`). The
    /// job is over: later calls return MALT_ERR_COMM.
    MALT_ERR_TIMEOUT = 12,
    /// Communication failed: a peer, the control channel, a segment, or the
    /// job was aborted. The job is over.
    MALT_ERR_COMM = 13,
    /// A merge callback returned non-zero.
    MALT_ERR_CALLBACK = 14,
    /// Memory for the vector cannot be allocated.
    MALT_ERR_NO_MEMORY = 15,
    /// An internal error (a bug in malt) was caught at the boundary; the
    /// vector involved, if any, is unusable.
    MALT_ERR_INTERNAL = 16,
    /// The group lost ranks and regrouped (fault-tolerant jobs, see
    /// `MALT_MIN_RANKS`): call `malt_regroup`, then `malt_vector_rejoin` for
    /// every dense vector (in the same order on every survivor), take over
    /// the departed ranks' work (`malt_members`) and go on. The failed call
    /// merged whole updates or none.
    MALT_ERR_REGROUPED = 17,
    /// This rank was evicted from the group (suspected dead); it cannot go
    /// on.
    MALT_ERR_EVICTED = 18,
    /// Fewer ranks are left than `MALT_MIN_RANKS`: the job stops.
    MALT_ERR_QUORUM = 19,
    /// A call out of order, found on this rank alone: `malt_gather` under
    /// MALT_BSP before this rank's `malt_scatter` of the iteration. Nothing
    /// was waited for or changed; the job goes on.
    MALT_ERR_CALL_ORDER = 20,
}

use malt_status::*;

/// Every failure, with the message `malt_last_error()` returns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("argument `{0}` is NULL")]
    Null(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Length(String),
    #[error("{0:#x} is not a live vector handle (already freed, or not returned by malt)")]
    BadHandle(usize),
    #[error("{0}")]
    Type(String),
    #[error("malt is not initialized: call malt_init() first")]
    NotInitialized,
    #[error("malt is already initialized")]
    AlreadyInitialized,
    #[error("malt was finalized; it cannot be used again in this process")]
    Finalized,
    #[error("not allowed inside a merge callback (only malt_rank, malt_world_size, malt_local_rank, malt_local_world, malt_last_error and malt_status_string are)")]
    Reentrant,
    #[error("the merge callback returned {0}")]
    Callback(c_int),
    #[error("{0}")]
    NoMemory(String),
    #[error("{0}")]
    Config(String),
    #[error("the vector is unusable after an internal error in an earlier call")]
    Broken,
    #[error(transparent)]
    Vol(#[from] vol::VolError),
    #[error(transparent)]
    Dstorm(#[from] vol::GroupError),
}

fn group_status(e: &vol::GroupError) -> malt_status {
    use vol::GroupError as D;
    match e {
        D::Config(_) | D::RankOutOfRange { .. } | D::MissingToken | D::Refused { .. } => {
            MALT_ERR_CONFIG
        }
        D::Unsupported { .. } => MALT_ERR_CONFIG,
        D::Timeout { .. } | D::Late(_) => MALT_ERR_TIMEOUT,
        D::Regrouped { .. } => MALT_ERR_REGROUPED,
        D::Evicted { .. } => MALT_ERR_EVICTED,
        D::Quorum { .. } => MALT_ERR_QUORUM,
        D::Mismatch { .. } | D::CallMismatch(_) => MALT_ERR_MISMATCH,
        D::Size { .. } => MALT_ERR_LENGTH,
        // Invalid specs: capacity, depth, graph, a name already in use.
        D::BadObject { .. } => MALT_ERR_INVALID_ARGUMENT,
        _ => MALT_ERR_COMM,
    }
}

impl Error {
    pub(crate) fn status(&self) -> malt_status {
        use vol::VolError as V;
        match self {
            Error::Null(_) => MALT_ERR_NULL,
            Error::Invalid(_) => MALT_ERR_INVALID_ARGUMENT,
            Error::Length(_) => MALT_ERR_LENGTH,
            Error::BadHandle(_) => MALT_ERR_BAD_HANDLE,
            Error::Type(_) => MALT_ERR_TYPE,
            Error::NotInitialized => MALT_ERR_NOT_INITIALIZED,
            Error::AlreadyInitialized => MALT_ERR_ALREADY_INITIALIZED,
            Error::Finalized => MALT_ERR_FINALIZED,
            Error::Reentrant => MALT_ERR_REENTRANT,
            Error::Callback(_) => MALT_ERR_CALLBACK,
            Error::NoMemory(_) => MALT_ERR_NO_MEMORY,
            Error::Config(_) => MALT_ERR_CONFIG,
            Error::Broken => MALT_ERR_INTERNAL,
            Error::Dstorm(d) => group_status(d),
            Error::Vol(v) => match v {
                V::Dstorm(d) => group_status(d),
                V::Mismatch { .. } => MALT_ERR_MISMATCH,
                V::Timeout { .. } => MALT_ERR_TIMEOUT,
                V::Graph(_) | V::Parse(_) | V::InvalidVector { .. } | V::Wire(_) => {
                    MALT_ERR_INVALID_ARGUMENT
                }
                V::TooManyEntries { .. } => MALT_ERR_LENGTH,
                V::CallOrder { .. } => MALT_ERR_CALL_ORDER,
                V::BadUpdate { .. } | V::Protocol(_) => MALT_ERR_COMM,
                _ => MALT_ERR_INTERNAL,
            },
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Records `msg` as this thread's last error.
pub(crate) fn set_last_error(msg: String) {
    let mut bytes = msg.into_bytes();
    bytes.retain(|&b| b != 0);
    let c = CString::new(bytes).unwrap_or_default();
    // During thread teardown the slot may be gone; the message is then lost.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "unknown panic"
    }
}

/// Runs the body of the exported function `func`: no panic leaves it, and a
/// failure becomes a status code plus this thread's last error message.
pub(crate) fn call(func: &'static str, f: impl FnOnce() -> Result<(), Error>) -> malt_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MALT_OK,
        Ok(Err(e)) => {
            let status = e.status();
            set_last_error(format!("{func}: {e}"));
            status
        }
        Err(payload) => {
            let msg = format!(
                "{func}: internal error (a bug in malt): {}",
                panic_message(payload.as_ref())
            );
            // Dropping a payload can itself panic; never let that escape.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(msg);
            MALT_ERR_INTERNAL
        }
    }
}

/// Fails when the calling thread is inside a merge callback.
pub(crate) fn not_in_callback() -> Result<(), Error> {
    if IN_CALLBACK.try_with(Cell::get).unwrap_or(false) {
        Err(Error::Reentrant)
    } else {
        Ok(())
    }
}

/// Marks the calling thread as inside a merge callback until dropped.
pub(crate) struct CallbackScope(());

impl CallbackScope {
    pub(crate) fn enter() -> Self {
        let _ = IN_CALLBACK.try_with(|c| c.set(true));
        CallbackScope(())
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        let _ = IN_CALLBACK.try_with(|c| c.set(false));
    }
}

/// The message of the most recent failed malt call on the calling thread
/// (prefixed with the function's name), or an empty string if none failed.
/// Never NULL.
///
/// The string belongs to the library and stays valid until the next failing
/// malt call on the same thread; copy it to keep it. Successful calls leave
/// it unchanged.
///
/// Thread safety: safe from any thread, including inside merge callbacks;
/// each thread has its own message.
#[no_mangle]
pub extern "C" fn malt_last_error() -> *const c_char {
    const EMPTY: &CStr = c"";
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ptr())
            .unwrap_or(EMPTY.as_ptr())
    })
    .unwrap_or(EMPTY.as_ptr())
}

/// The name of a status code (`"MALT_ERR_NULL"`, ...), or `"unknown status"`
/// for a value that is none. Never NULL; the string is static.
///
/// Thread safety: safe from any thread, including inside merge callbacks.
#[no_mangle]
pub extern "C" fn malt_status_string(status: c_int) -> *const c_char {
    let s: &'static CStr = match status {
        0 => c"MALT_OK",
        1 => c"MALT_ERR_NULL",
        2 => c"MALT_ERR_INVALID_ARGUMENT",
        3 => c"MALT_ERR_LENGTH",
        4 => c"MALT_ERR_BAD_HANDLE",
        5 => c"MALT_ERR_TYPE",
        6 => c"MALT_ERR_NOT_INITIALIZED",
        7 => c"MALT_ERR_ALREADY_INITIALIZED",
        8 => c"MALT_ERR_FINALIZED",
        9 => c"MALT_ERR_REENTRANT",
        10 => c"MALT_ERR_CONFIG",
        11 => c"MALT_ERR_MISMATCH",
        12 => c"MALT_ERR_TIMEOUT",
        13 => c"MALT_ERR_COMM",
        14 => c"MALT_ERR_CALLBACK",
        15 => c"MALT_ERR_NO_MEMORY",
        16 => c"MALT_ERR_INTERNAL",
        17 => c"MALT_ERR_REGROUPED",
        18 => c"MALT_ERR_EVICTED",
        19 => c"MALT_ERR_QUORUM",
        20 => c"MALT_ERR_CALL_ORDER",
        _ => c"unknown status",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: malt_last_error never returns NULL and the string stays
        // valid until the next failing call on this thread.
        unsafe { CStr::from_ptr(malt_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_an_internal_error_with_a_message() {
        let s = call("malt_test", || panic!("boom {}", 7));
        assert_eq!(s, MALT_ERR_INTERNAL);
        let m = last();
        assert!(m.starts_with("malt_test: internal error"), "{m}");
        assert!(m.contains("boom 7"), "{m}");
    }

    #[test]
    fn errors_set_the_message_and_success_keeps_it() {
        assert_eq!(call("f", || Err(Error::Null("x"))), MALT_ERR_NULL);
        assert_eq!(last(), "f: argument `x` is NULL");
        assert_eq!(call("g", || Ok(())), MALT_OK);
        assert_eq!(last(), "f: argument `x` is NULL");
    }

    #[test]
    fn messages_with_nul_bytes_are_kept_without_them() {
        set_last_error("a\0b".into());
        assert_eq!(last(), "ab");
    }

    #[test]
    fn every_status_has_its_name() {
        for s in 0..=20 {
            // SAFETY: static NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(malt_status_string(s)) }.to_string_lossy();
            assert!(name.starts_with("MALT_"), "{s}: {name}");
        }
        // SAFETY: as above.
        let u = unsafe { CStr::from_ptr(malt_status_string(21)) };
        assert_eq!(u.to_str().ok(), Some("unknown status"));
        assert_eq!(MALT_ERR_QUORUM as c_int, 19);
        assert_eq!(MALT_ERR_CALL_ORDER as c_int, 20);
    }

    #[test]
    fn callbacks_are_marked_and_unmarked() {
        assert!(not_in_callback().is_ok());
        {
            let _s = CallbackScope::enter();
            assert!(matches!(not_in_callback(), Err(Error::Reentrant)));
        }
        assert!(not_in_callback().is_ok());
    }
}
