//! How a reader or a backpressured writer waits for its segment to change:
//! it spins on the doorbell for a while ([`Spin`], a policy that learns
//! from the last wait), then parks until the doorbell moves or the deadline
//! passes ([`park`]).

use crate::segment::Region;
use crate::transport::Links;
use std::time::{Duration, Instant};

/// Doorbell looks per clock read while a reader spins (well under a
/// microsecond of `spin_loop` hints).
const SPIN_LOOKS: u32 = 16;

/// The longest a reader's spin grows to (see [`Spin`]).
pub(crate) const SPIN_MAX: Duration = Duration::from_micros(500);

/// How long a waiting reader spins before it parks.
///
/// A parked reader costs its writer a wake-up, and on a virtual machine a
/// wake-up of an idle CPU takes tens of microseconds (35 µs measured on a
/// 2-vCPU machine), longer than the transport's spin. Two
/// ranks in a ping-pong then stay parked for good once a hiccup parks one
/// of them: each waits out its spin before the other's wake-up completes
/// and parks in turn, so every message pays a wake-up. So after a wait
/// that ended with a ring sooner than [`SPIN_MAX`], the next wait spins
/// twice that long (at most [`SPIN_MAX`]); a wait that timed out or took
/// longer drops back to the transport's spin, so an idle reader does not
/// burn a core. Beyond the transport's spin the reader yields its CPU
/// between looks, so a peer that shares the CPU still runs; on a host with
/// more ranks than CPUs it yields from the start. A transport spin of zero
/// (`MALT_SPIN_US=0`, or verbs with `MALT_RDMA_SPIN_US=0`) turns the
/// stretching off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spin {
    /// The transport's spin: the floor.
    base: Duration,
    /// Polling without yielding: the transport's spin, or none when the
    /// host runs more ranks than there are CPUs (as MPI libraries do).
    pure: Duration,
    /// The spin of the next wait.
    now: Duration,
}

impl Spin {
    pub(crate) fn new(base: Duration, oversubscribed: bool) -> Spin {
        let pure = if oversubscribed { Duration::ZERO } else { base };
        Spin {
            base,
            pure,
            now: base,
        }
    }

    /// Learns from a wait that took `waited` and ended with a ring
    /// (`rung`) or its deadline.
    pub(crate) fn learn(&mut self, waited: Duration, rung: bool) {
        let limit = SPIN_MAX.max(self.base);
        self.now = if self.base.is_zero() || !rung || waited > limit {
            self.base
        } else {
            (waited * 2).clamp(self.base, limit)
        };
    }
}

/// Spins for a moment, then parks on `region`'s doorbell until it moves or
/// `deadline` passes, telling `links` while it is parked.
pub(super) fn park(
    region: &Region,
    links: &dyn Links,
    bell: u64,
    deadline: Instant,
    spin: &mut Spin,
) {
    let start = Instant::now();
    let pure_until = start + spin.pure;
    let spin_until = (start + spin.now).min(deadline);
    // Looks at the doorbell [`SPIN_LOOKS`] times per clock read, so that a
    // slow clock does not delay noticing the bell.
    loop {
        for _ in 0..SPIN_LOOKS {
            if region.doorbell() != bell {
                return;
            }
            std::hint::spin_loop();
        }
        let now = Instant::now();
        if now >= spin_until {
            break;
        }
        if now >= pure_until {
            std::thread::yield_now();
        }
    }
    let now = Instant::now();
    if now < deadline {
        links.parking(true);
        region.park(bell, deadline - now);
        links.parking(false);
    }
    spin.learn(start.elapsed(), region.doorbell() != bell);
}

#[cfg(test)]
mod tests {
    use super::{Spin, SPIN_MAX};
    use std::time::Duration;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_short_wait_stretches_the_next_spin_to_twice_its_length_up_to_the_cap() {
        let mut s = Spin::new(30 * US, false);
        s.learn(70 * US, true);
        assert_eq!(s.now, 140 * US);
        s.learn(10 * US, true);
        assert_eq!(s.now, 30 * US, "never below the transport's spin");
        s.learn(400 * US, true);
        assert_eq!(s.now, SPIN_MAX);
    }

    #[test]
    fn a_timeout_or_a_long_wait_drops_back_to_the_transports_spin() {
        let mut s = Spin::new(30 * US, false);
        s.learn(70 * US, true);
        s.learn(70 * US, false);
        assert_eq!(s.now, 30 * US, "timed out");
        s.learn(70 * US, true);
        s.learn(SPIN_MAX + US, true);
        assert_eq!(s.now, 30 * US, "longer than the cap");
    }

    #[test]
    fn a_zero_spin_stays_zero_and_a_spin_above_the_cap_is_kept() {
        let mut s = Spin::new(Duration::ZERO, false);
        s.learn(70 * US, true);
        assert_eq!(s.now, Duration::ZERO);
        let base = SPIN_MAX * 2;
        let mut s = Spin::new(base, false);
        s.learn(70 * US, true);
        assert_eq!(s.now, base);
        s.learn(base - US, true);
        assert_eq!(s.now, base);
    }
}
