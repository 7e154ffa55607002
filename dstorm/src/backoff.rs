//! The waits between attempts to reach a peer or a coordinator that may not
//! be listening yet: one policy for the control channel's join and rejoin
//! and for the tcp transport's data connections.

use std::time::{Duration, Instant};

/// The waits between attempts: the first one, doubling up to a longest
/// one, and never one that would end at or past the deadline.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration, deadline: Instant) -> Backoff {
        Backoff {
            next: first,
            max,
            deadline,
        }
    }

    /// Time left until the deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps before the next attempt and returns `true`; returns `false`
    /// at once when that attempt would start at or past the deadline.
    pub fn wait(&mut self) -> bool {
        if Instant::now() + self.next >= self.deadline {
            return false;
        }
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::{Duration, Instant};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_waits_double_up_to_the_longest() {
        let mut b = Backoff::new(MS, 4 * MS, Instant::now() + Duration::from_secs(60));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(b.next);
            assert!(b.wait());
        }
        assert_eq!(seen, [MS, 2 * MS, 4 * MS, 4 * MS]);
    }

    #[test]
    fn no_wait_reaches_the_deadline() {
        let start = Instant::now();
        let mut b = Backoff::new(50 * MS, 50 * MS, start + 20 * MS);
        assert!(!b.wait(), "a wait that would end past the deadline");
        assert!(start.elapsed() < 20 * MS, "refused without sleeping");
    }
}
