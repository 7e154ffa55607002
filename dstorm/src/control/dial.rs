//! Reaching a coordinator as a rank: one attempt (connect, then prove the
//! job token on the control channel), and the backoff between attempts
//! while the coordinator may not be listening yet. Used by the first join
//! and by the rejoin after the coordinator moved ([`super::failover`]).

use crate::auth;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connects to the coordinator at `addr` within `timeout` and authenticates
/// as `claim` with the job token `token`.
pub(crate) fn attempt(
    addr: &SocketAddr,
    timeout: Duration,
    token: &[u8],
    claim: auth::Claim,
) -> Result<TcpStream, auth::AuthError> {
    let s = TcpStream::connect_timeout(addr, timeout).map_err(auth::AuthError::Io)?;
    auth::connect(&s, token, auth::Channel::Control, auth::COORDINATOR, claim)?;
    Ok(s)
}

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
