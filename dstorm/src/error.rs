//! The error type of dstorm: one enum, variants that name the operation and
//! the peer or segment involved.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in dstorm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required environment variable is missing or malformed.
    #[error("configuration: {0}")]
    Config(String),
    /// This rank's number is outside `0..world`.
    #[error("rank {rank} is out of range for a world of {world} ranks")]
    RankOutOfRange {
        /// The offending rank.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// No job token was given and none could be derived from the launcher.
    #[error("no job token: set MALT_JOB_TOKEN (malt launch sets it for you)")]
    MissingToken,
    /// The master (rank 0) could not be reached in time.
    #[error("master {addr} unreachable after {}: {source}", Seconds(*.waited))]
    MasterUnreachable {
        /// Address tried.
        addr: String,
        /// How long we kept trying.
        waited: Duration,
        /// Last connection error.
        #[source]
        source: io::Error,
    },
    /// The master refused this rank (wrong token, bad rank, ...).
    #[error("rank {rank} refused by the master: {reason}")]
    Refused {
        /// This rank.
        rank: usize,
        /// What the master said.
        reason: String,
    },
    /// The job was aborted by the master because of another rank's error.
    #[error("job aborted: {0}")]
    Aborted(String),
    /// The ranks made different calls: one waits for a peer's update while
    /// the peer waits in a collective call (a barrier, the final barrier, a
    /// vector's creation), so neither could ever go on. Every rank gets this
    /// error, with the message of the rank that found it (naming both ranks
    /// and what each did); the job is over.
    #[error("{0}")]
    CallMismatch(String),
    /// A collective operation did not complete in time.
    #[error("{op} timed out after {}{}", Seconds(*.waited), waiting_for(.missing))]
    Timeout {
        /// The operation (barrier, rendezvous, poll, ...).
        op: String,
        /// How long we waited.
        waited: Duration,
        /// Ranks that had not arrived, when known.
        missing: Vec<usize>,
    },
    /// This rank reached a collective call after the other ranks had
    /// stopped waiting for it (they got [`Error::Timeout`] naming it); the
    /// message says which call and how long they waited.
    #[error("{0}")]
    Late(String),
    /// A peer's control or data connection failed.
    #[error("{op} with rank {peer} failed: {source}")]
    Peer {
        /// What we were doing.
        op: &'static str,
        /// The peer's rank.
        peer: usize,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The control channel to the master failed.
    #[error("control channel ({op}) failed: {source}")]
    Control {
        /// What we were doing.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A control message could not be decoded.
    #[error("malformed control message: {0}")]
    Protocol(String),
    /// An update read in place ([`crate::Object::read_together`]) was
    /// overwritten by its sender before the read finished; the caller may
    /// already have used part of it.
    #[error(
        "object {name:?}: update {seq} from rank {sender} was overwritten while it was read in place (its sender ran more than the queue depth ahead)"
    )]
    Overwritten {
        /// The object.
        name: String,
        /// The rank that wrote the update.
        sender: usize,
        /// The update's sequence number in the sender's queue.
        seq: u64,
    },
    /// Ranks disagree about a collective object creation.
    #[error(
        "object {name:?}: rank {rank} disagrees with rank 0 about {what} ({ours} vs {theirs})"
    )]
    Mismatch {
        /// The object's name.
        name: String,
        /// The first rank that disagrees.
        rank: usize,
        /// What field differs.
        what: &'static str,
        /// Rank 0's value.
        ours: String,
        /// The disagreeing rank's value.
        theirs: String,
    },
    /// An object specification is invalid.
    #[error("object {name:?}: {problem}")]
    BadObject {
        /// The object's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A write or poll named a peer that is not a neighbour in this object's graph.
    #[error("object {name:?}: rank {peer} is not a {role} of rank {rank}")]
    NotNeighbor {
        /// Object name.
        name: String,
        /// This rank.
        rank: usize,
        /// The peer named.
        peer: usize,
        /// "receiver" or "sender".
        role: &'static str,
    },
    /// A payload does not fit the object's slots, or an output buffer is too small.
    #[error("object {name:?}: {what} of {got} bytes, limit {limit}")]
    Size {
        /// Object name.
        name: String,
        /// What was too large or small.
        what: &'static str,
        /// The size given.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// A shared-memory segment name is held by a live process.
    #[error("shared-memory segment {path} is in use by live process {pid}")]
    ShmInUse {
        /// The segment file.
        path: PathBuf,
        /// The owner.
        pid: u32,
    },
    /// The shared-memory directory has no room for a segment (a small
    /// tmpfs, such as Docker's default 64 MB `/dev/shm`).
    #[error(
        "no room in {dir} for a shared-memory segment of {needed} bytes ({free} bytes free): \
         give the directory more room (docker run --shm-size, a larger tmpfs) or set \
         MALT_SHM_DIR to a tmpfs with room for every rank's segments"
    )]
    ShmFull {
        /// The shared-memory directory.
        dir: PathBuf,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free in the directory when it was created.
        free: u64,
    },
    /// A segment file could not be created, opened or mapped.
    #[error("segment {path}: {op}: {source}")]
    Segment {
        /// The segment file.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A peer's segment has an unexpected size or header.
    #[error("segment {path}: {problem}")]
    SegmentMismatch {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The group lost members and regrouped: this rank survives in epoch
    /// `epoch`. Objects of the old epoch refuse further use; call
    /// [`Group::regroup`](crate::Group::regroup), re-create (vol: `rejoin`)
    /// what the application shares, re-assign the dead ranks' work and go on.
    #[error(
        "the group regrouped into epoch {epoch} without ranks {} (survivors {})",
        RankList(.dead),
        RankList(.members)
    )]
    Regrouped {
        /// The new epoch.
        epoch: u32,
        /// Every rank that has left the group so far.
        dead: Vec<usize>,
        /// The survivors, ascending.
        members: Vec<usize>,
    },
    /// This rank was evicted (it was suspected dead, e.g. stopped for longer
    /// than the failure timeout); the group went on without it.
    #[error("rank {rank} was evicted from the group in epoch {epoch}: {reason}")]
    Evicted {
        /// This rank.
        rank: usize,
        /// The epoch the group moved to without it.
        epoch: u32,
        /// Why.
        reason: String,
    },
    /// Fewer ranks are left than the job's minimum: the job stops.
    #[error(
        "only {} ranks {} are left, fewer than the minimum of {min}",
        alive.len(),
        RankList(.alive)
    )]
    Quorum {
        /// The ranks left.
        alive: Vec<usize>,
        /// The configured minimum (`MALT_MIN_RANKS`).
        min: usize,
    },
    /// The transport is not available in this build or on this machine.
    #[error("transport {transport} unsupported: {why}")]
    Unsupported {
        /// The transport.
        transport: &'static str,
        /// Why, and what to do.
        why: String,
    },
}

fn waiting_for(missing: &[usize]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!(" waiting for ranks {}", RankList(missing))
    }
}

/// A duration in seconds, rounded to what a reader needs: `4.85 s`,
/// `0.012 s`, `693.7 s`.
#[derive(Debug, Clone, Copy)]
pub struct Seconds(pub Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs_f64();
        if s.fract() == 0.0 {
            write!(f, "{s:.0} s")
        } else if s >= 100.0 {
            write!(f, "{s:.1} s")
        } else if s >= 0.1 {
            write!(f, "{s:.2} s")
        } else {
            write!(f, "{s:.3} s")
        }
    }
}

/// Ranks printed in full in a message; longer lists show this many and
/// say how many more there are, so that a message stays one short line
/// whatever the size of the job.
pub const RANKS_SHOWN: usize = 8;

/// A list of ranks as messages print it: `[1, 2, 3]`, or for more than
/// [`RANKS_SHOWN`] ranks the first of them and a count,
/// `[0, 1, 2, 3, 4, 5, 6, 7, … and 99992 more (100000 in all)]`.
#[derive(Debug, Clone, Copy)]
pub struct RankList<'a>(pub &'a [usize]);

impl std::fmt::Display for RankList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.0[..self.0.len().min(RANKS_SHOWN)];
        f.write_str("[")?;
        for (i, r) in shown.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        if self.0.len() > shown.len() {
            write!(
                f,
                ", \u{2026} and {} more ({} in all)",
                self.0.len() - shown.len(),
                self.0.len()
            )?;
        }
        f.write_str("]")
    }
}

/// dstorm's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_rank_lists_print_in_full() {
        assert_eq!(RankList(&[]).to_string(), "[]");
        assert_eq!(RankList(&[1]).to_string(), "[1]");
        let eight: Vec<usize> = (0..8).collect();
        assert_eq!(
            RankList(&eight).to_string(),
            format!("{eight:?}"),
            "a list of {RANKS_SHOWN} is not cut"
        );
        let e = Error::Timeout {
            op: "barrier".into(),
            waited: Duration::from_secs(1),
            missing: vec![1, 3],
        };
        assert_eq!(
            e.to_string(),
            "barrier timed out after 1 s waiting for ranks [1, 3]"
        );
    }

    #[test]
    fn seconds_are_rounded_for_a_reader() {
        let s = |d: Duration| Seconds(d).to_string();
        assert_eq!(s(Duration::from_nanos(4_847_928_081)), "4.85 s");
        assert_eq!(s(Duration::from_secs_f64(693.709)), "693.7 s");
        assert_eq!(s(Duration::from_micros(12_345)), "0.012 s");
        assert_eq!(s(Duration::from_secs(30)), "30 s");
        assert_eq!(s(Duration::ZERO), "0 s");
    }

    #[test]
    fn long_rank_lists_are_summarised_in_every_message() {
        let many: Vec<usize> = (1..100_000).collect();
        let shown = "[1, 2, 3, 4, 5, 6, 7, 8, \u{2026} and 99991 more (99999 in all)]";
        assert_eq!(RankList(&many).to_string(), shown);
        let errors = [
            Error::Timeout {
                op: "rendezvous".into(),
                waited: Duration::from_secs(1),
                missing: many.clone(),
            },
            Error::Regrouped {
                epoch: 2,
                dead: many.clone(),
                members: many.clone(),
            },
            Error::Quorum {
                alive: many.clone(),
                min: 100_000,
            },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(msg.len() < 300, "{} bytes: {msg}", msg.len());
            assert!(msg.contains(shown), "{msg}");
        }
        let quorum = Error::Quorum {
            alive: many,
            min: 100_000,
        };
        assert!(quorum.to_string().starts_with("only 99999 ranks [1, 2,"));
    }
}
