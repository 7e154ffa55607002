//! What an object counts: updates and bytes written and received, and the
//! updates lost (torn, lapped, of another epoch), per peer and in total.
//!
//! Every event is counted in one place, [`Counters::count`], which adds it
//! to its peer's row and to the totals, so that the two always agree.

use serde::Serialize;

/// Counters for one peer of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerCounters {
    /// Updates written to this peer.
    pub written: u64,
    /// Bytes written to this peer.
    pub bytes_written: u64,
    /// Updates received from this peer.
    pub received: u64,
    /// Bytes received from this peer.
    pub bytes_received: u64,
    /// Torn slots from this peer detected and skipped.
    pub torn: u64,
    /// Updates from this peer overwritten before they were read.
    pub lapped: u64,
    /// Updates from this peer dropped for carrying another epoch.
    pub stale_epoch: u64,
}

/// Counters for one object on this rank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Updates written.
    pub written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Updates received.
    pub received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Torn slots detected and skipped (never returned).
    pub torn: u64,
    /// Updates overwritten before they were read.
    pub lapped: u64,
    /// Updates dropped for carrying another epoch.
    pub stale_epoch: u64,
    /// Times a backpressured write had to wait for an acknowledgement.
    pub backpressure_waits: u64,
    /// Per-peer counters, indexed by rank.
    pub peers: Vec<PeerCounters>,
}

/// One event on an object, as [`Counters::count`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// An update of this many bytes was written to the peer.
    Written(u64),
    /// An update of this many bytes from the peer was read.
    Received(u64),
    /// A torn slot from the peer was skipped.
    Torn,
    /// This many updates from the peer were overwritten before being read.
    Lapped(u64),
    /// An update from the peer carried another epoch and was dropped.
    StaleEpoch,
}

impl Counters {
    /// Zero counters for an object in a world of `world` ranks.
    pub(crate) fn new(world: usize) -> Counters {
        Counters {
            peers: vec![PeerCounters::default(); world],
            ..Counters::default()
        }
    }

    /// Counts `event` to or from `peer`: in its row and in the totals.
    pub(crate) fn count(&mut self, peer: usize, event: Event) {
        let row = &mut self.peers[peer];
        match event {
            Event::Written(bytes) => {
                row.written += 1;
                row.bytes_written += bytes;
                self.written += 1;
                self.bytes_written += bytes;
            }
            Event::Received(bytes) => {
                row.received += 1;
                row.bytes_received += bytes;
                self.received += 1;
                self.bytes_received += bytes;
            }
            Event::Torn => {
                row.torn += 1;
                self.torn += 1;
            }
            Event::Lapped(n) => {
                row.lapped += n;
                self.lapped += n;
            }
            Event::StaleEpoch => {
                row.stale_epoch += 1;
                self.stale_epoch += 1;
            }
        }
    }

    /// A backpressured write had to wait for an acknowledgement.
    pub(crate) fn count_backpressure_wait(&mut self) {
        self.backpressure_waits += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{Counters, Event, PeerCounters};

    #[test]
    fn the_totals_are_the_sums_of_the_peer_rows() {
        let mut c = Counters::new(3);
        c.count(1, Event::Written(10));
        c.count(2, Event::Written(5));
        c.count(1, Event::Received(7));
        c.count(2, Event::Torn);
        c.count(0, Event::Lapped(3));
        c.count(0, Event::StaleEpoch);
        let sum = |f: fn(&PeerCounters) -> u64| c.peers.iter().map(f).sum::<u64>();
        assert_eq!((c.written, sum(|p| p.written)), (2, 2));
        assert_eq!((c.bytes_written, sum(|p| p.bytes_written)), (15, 15));
        assert_eq!((c.received, sum(|p| p.received)), (1, 1));
        assert_eq!((c.bytes_received, sum(|p| p.bytes_received)), (7, 7));
        assert_eq!((c.torn, sum(|p| p.torn)), (1, 1));
        assert_eq!((c.lapped, sum(|p| p.lapped)), (3, 3));
        assert_eq!((c.stale_epoch, sum(|p| p.stale_epoch)), (1, 1));
        assert_eq!(c.peers[1].bytes_written, 10);
    }
}
