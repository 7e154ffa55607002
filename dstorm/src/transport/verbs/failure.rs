//! How a peer's connection fails. A failed completion (or a failed post,
//! poll or arming, or the group declaring the peer gone) fails the peer for
//! good: the first failure is kept, and the first one that is not a flush
//! is kept beside it as the cause, which every later operation on the peer
//! reports as [`Error::Peer`]. Failing a peer also stops this rank waiting
//! for it (segments being released, announcements awaited).

use super::pair::Peer;
use super::rc::{lock, Shared};
use crate::error::Error;
use rdma_mummy_sys::ibv_wc_status;
use std::io;
use std::sync::atomic::Ordering;

/// Why a peer's connection failed, kept for every later operation.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    kind: io::ErrorKind,
    what: String,
    /// A request flushed because the connection had already failed: a
    /// consequence, whose cause may come with another completion.
    flushed: bool,
}

impl Failure {
    /// A failed completion with `status` (and the adapter's `vendor` code).
    pub fn from_status(status: u32, vendor: u32, during: &str) -> Failure {
        use ibv_wc_status as s;
        let (kind, name) = match status {
            s::IBV_WC_RETRY_EXC_ERR => (
                io::ErrorKind::TimedOut,
                "transport retry counter exceeded (peer dead or unreachable)",
            ),
            s::IBV_WC_RNR_RETRY_EXC_ERR => (
                io::ErrorKind::TimedOut,
                "receiver-not-ready retry counter exceeded",
            ),
            s::IBV_WC_REM_ACCESS_ERR => (
                io::ErrorKind::PermissionDenied,
                "remote access error (segment released or access out of bounds)",
            ),
            s::IBV_WC_REM_INV_REQ_ERR => (io::ErrorKind::InvalidInput, "remote invalid request"),
            s::IBV_WC_REM_OP_ERR => (io::ErrorKind::Other, "remote operation error"),
            s::IBV_WC_WR_FLUSH_ERR => (
                io::ErrorKind::ConnectionAborted,
                "flushed: the connection had already failed",
            ),
            s::IBV_WC_LOC_LEN_ERR => (io::ErrorKind::Other, "local length error"),
            s::IBV_WC_LOC_QP_OP_ERR => (io::ErrorKind::Other, "local queue pair operation error"),
            s::IBV_WC_LOC_PROT_ERR => (io::ErrorKind::Other, "local protection error"),
            s::IBV_WC_LOC_ACCESS_ERR => (io::ErrorKind::Other, "local access error"),
            s::IBV_WC_BAD_RESP_ERR => (io::ErrorKind::Other, "bad response"),
            s::IBV_WC_REM_ABORT_ERR => (io::ErrorKind::ConnectionAborted, "remote aborted"),
            s::IBV_WC_FATAL_ERR => (io::ErrorKind::Other, "fatal device error"),
            s::IBV_WC_RESP_TIMEOUT_ERR => (io::ErrorKind::TimedOut, "response timeout"),
            _ => (io::ErrorKind::Other, "work request failed"),
        };
        Failure {
            kind,
            what: format!(
                "{during}: {name} (completion status {status}, vendor error {vendor:#x})"
            ),
            flushed: status == s::IBV_WC_WR_FLUSH_ERR,
        }
    }

    /// A verbs call that failed with `e`.
    pub fn from_io(during: &str, e: &io::Error) -> Failure {
        Failure {
            kind: e.kind(),
            what: format!("{during}: {e}"),
            flushed: false,
        }
    }

    /// The group declared the peer gone (`forget`).
    pub fn left_group() -> Failure {
        Failure {
            kind: io::ErrorKind::ConnectionAborted,
            what: "the peer left the group".into(),
            flushed: false,
        }
    }

    /// The error an operation `op` on `peer` returns.
    pub fn to_error(&self, op: &'static str, peer: usize) -> Error {
        Error::Peer {
            op,
            peer,
            source: io::Error::new(self.kind, self.what.clone()),
        }
    }
}

impl Peer {
    /// Why the connection failed, if it did: its cause when one was seen,
    /// else the first failure (a flush, say).
    pub fn failure(&self) -> Option<&Failure> {
        let f = self.failed.get()?;
        Some(self.cause.get().unwrap_or(f))
    }

    /// Whether the connection failed.
    pub fn has_failed(&self) -> bool {
        self.failed.get().is_some()
    }
}

impl Shared {
    /// Records that `rank`'s connection failed and stops waiting for it.
    pub fn peer_failed(&self, rank: usize, f: Failure) {
        let Some(p) = self.peers.get(rank).and_then(Option::as_ref) else {
            return;
        };
        if !f.flushed && p.cause.set(f.clone()).is_ok() && !self.recv.closed.load(Ordering::Relaxed)
        {
            tracing::warn!(peer = rank, error = %f.what, "verbs connection failed");
        }
        let _ = p.failed.set(f);
        let mut d = lock(&self.segs.draining);
        d.retain(|_, e| {
            if let Some(w) = e.waiting.get_mut(rank) {
                *w = false;
            }
            e.waiting.iter().any(|w| *w)
        });
        drop(d);
        self.segs.remote_cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_errors_read_as_peer_errors() {
        let f = Failure::from_status(ibv_wc_status::IBV_WC_RETRY_EXC_ERR, 0x81, "rdma write");
        match f.to_error("rdma write", 3) {
            Error::Peer { peer, source, .. } => {
                assert_eq!(peer, 3);
                assert_eq!(source.kind(), io::ErrorKind::TimedOut);
                assert!(source.to_string().contains("retry counter exceeded"));
            }
            e => panic!("{e:?}"),
        }
    }
}
