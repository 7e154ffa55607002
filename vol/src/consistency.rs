//! Consistency models: how far a rank may run ahead of its peers.
//!
//! Every rank counts its iterations (`t`, the number of the iteration it is
//! about to start) and publishes the count to every peer. Before iteration
//! `t` a rank consults [`Consistency::must_wait`] with the latest iteration
//! numbers it has seen from its peers:
//!
//! * [`Consistency::Ssp`]`{ s }` (stale synchronous parallel): wait while
//!   `t - min(peer iteration) > s`, i.e. a rank is at most `s` iterations
//!   ahead of the slowest peer.
//! * [`Consistency::Bsp`] (bulk synchronous): SSP with `s = 0` — nobody starts
//!   iteration `t` before every peer has reached it — and, in addition, the
//!   exchange itself is fenced by a barrier (done by the runtime, not here).
//! * [`Consistency::Async`]: never wait.
//!
//! A peer that is ahead never causes a wait. With no peers (a world of one)
//! nobody waits.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

/// A consistency model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// Bulk synchronous parallel: lock-step iterations, barrier around each
    /// exchange.
    #[default]
    Bsp,
    /// Asynchronous: never wait for peers.
    Async,
    /// Stale synchronous parallel with staleness bound `s`.
    Ssp {
        /// Iterations a rank may be ahead of the slowest peer.
        s: u64,
    },
}

impl Consistency {
    /// The staleness bound: `Some(0)` for BSP, `Some(s)` for SSP, `None` for
    /// ASYNC.
    pub fn staleness_bound(&self) -> Option<u64> {
        match *self {
            Consistency::Bsp => Some(0),
            Consistency::Ssp { s } => Some(s),
            Consistency::Async => None,
        }
    }

    /// Whether the exchange is fenced by a barrier (BSP only).
    pub fn uses_barrier(&self) -> bool {
        matches!(self, Consistency::Bsp)
    }

    /// Whether a rank about to start iteration `my_iter` must keep waiting,
    /// given the latest iteration numbers of its peers: true iff there is a
    /// bound `s` and `my_iter - min(peer_iters) > s`. Never true for ASYNC, or
    /// with no peers.
    pub fn must_wait(&self, my_iter: u64, peer_iters: impl IntoIterator<Item = u64>) -> bool {
        let Some(s) = self.staleness_bound() else {
            return false;
        };
        match peer_iters.into_iter().min() {
            Some(slowest) => my_iter.saturating_sub(slowest) > s,
            None => false,
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Bsp => f.write_str("bsp"),
            Consistency::Async => f.write_str("async"),
            Consistency::Ssp { s } => write!(f, "ssp:{s}"),
        }
    }
}

impl FromStr for Consistency {
    type Err = ParseError;

    /// Parses `bsp`, `async` or `ssp:S` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseError::new("consistency mode", s, reason);
        let t = s.trim().to_ascii_lowercase();
        match t.split_once(':') {
            None if t == "bsp" => Ok(Consistency::Bsp),
            None if t == "async" => Ok(Consistency::Async),
            Some(("ssp", bound)) => bound
                .trim()
                .parse::<u64>()
                .map(|s| Consistency::Ssp { s })
                .map_err(|e| err(format!("staleness bound {bound:?}: {e}"))),
            _ => Err(err("expected bsp, async or ssp:S".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssp_waits_only_beyond_the_bound() {
        let ssp = Consistency::Ssp { s: 2 };
        assert!(!ssp.must_wait(5, [3, 4, 9]));
        assert!(ssp.must_wait(6, [3, 4, 9]));
        assert!(ssp.must_wait(100, [0]));
        // Peers ahead never block.
        assert!(!ssp.must_wait(0, [10, 20]));
        // No peers, no wait.
        assert!(!ssp.must_wait(1_000, []));
    }

    #[test]
    fn bsp_is_ssp_zero() {
        for t in 0..6u64 {
            for slowest in 0..6u64 {
                let peers = [slowest, slowest + 3];
                assert_eq!(
                    Consistency::Bsp.must_wait(t, peers),
                    Consistency::Ssp { s: 0 }.must_wait(t, peers)
                );
                assert_eq!(Consistency::Bsp.must_wait(t, peers), t > slowest);
            }
        }
        assert!(Consistency::Bsp.uses_barrier());
        assert!(!Consistency::Ssp { s: 0 }.uses_barrier());
    }

    #[test]
    fn async_never_waits() {
        assert!(!Consistency::Async.must_wait(u64::MAX, [0, 0]));
        assert_eq!(Consistency::Async.staleness_bound(), None);
    }

    #[test]
    fn text_round_trip() {
        for (text, c) in [
            ("bsp", Consistency::Bsp),
            ("async", Consistency::Async),
            ("ssp:0", Consistency::Ssp { s: 0 }),
            ("ssp:3", Consistency::Ssp { s: 3 }),
        ] {
            assert_eq!(text.parse::<Consistency>().unwrap(), c);
            assert_eq!(c.to_string(), text);
        }
        assert_eq!(
            " SSP:4 ".parse::<Consistency>().unwrap(),
            Consistency::Ssp { s: 4 }
        );
        for bad in ["", "ssp", "ssp:", "ssp:-1", "ssp:x", "bsp:1", "sync"] {
            let e = bad.parse::<Consistency>().unwrap_err();
            assert_eq!(e.input, bad);
        }
    }
}
