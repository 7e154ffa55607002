//! Per-vector statistics: traffic, merges, dropped updates, staleness and
//! time spent waiting.
//!
//! Recording never allocates: per-peer counters are sized when the
//! statistics are created and the staleness histogram has fixed buckets.

use std::time::Duration;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::error::VolError;

/// Exact buckets for staleness `0..EXACT`; above that, one bucket per power
/// of two.
const EXACT: usize = 16;
/// log2 of `EXACT`.
const EXACT_LOG2: u32 = 4;
/// Total buckets: `EXACT` exact ones, then `[2^k, 2^(k+1))` for
/// `k = 4..=63`.
const BUCKETS: usize = EXACT + (64 - EXACT_LOG2 as usize);

/// A histogram of update staleness (iterations between the sender's and the
/// receiver's clocks when an update is merged).
///
/// Buckets: one per value for `0..=15`, then one per power-of-two range
/// `[16, 32)`, `[32, 64)`, ..., `[2^63, 2^64)`. The maximum is kept exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalenessHistogram {
    counts: [u64; BUCKETS],
    total: u64,
    max: u64,
}

impl Default for StalenessHistogram {
    fn default() -> Self {
        StalenessHistogram {
            counts: [0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl StalenessHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket holding `staleness`.
    fn bucket(staleness: u64) -> usize {
        if staleness < EXACT as u64 {
            staleness as usize
        } else {
            // floor(log2) is in 4..=63.
            let log2 = 63 - staleness.leading_zeros();
            EXACT + (log2 - EXACT_LOG2) as usize
        }
    }

    /// The inclusive range `(low, high)` of staleness values bucket `i`
    /// covers, or `None` past the last bucket.
    pub fn bucket_bounds(i: usize) -> Option<(u64, u64)> {
        if i < EXACT {
            Some((i as u64, i as u64))
        } else if i < BUCKETS {
            let k = (i - EXACT) as u32 + EXACT_LOG2;
            let low = 1u64 << k;
            Some((low, low.wrapping_shl(1).wrapping_sub(1)))
        } else {
            None
        }
    }

    /// Number of buckets.
    pub const fn bucket_count() -> usize {
        BUCKETS
    }

    /// Records one observation.
    pub fn record(&mut self, staleness: u64) {
        self.counts[Self::bucket(staleness)] += 1;
        self.total += 1;
        self.max = self.max.max(staleness);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest staleness observed (0 if none).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The count in bucket `i` (0 past the last bucket).
    pub fn bucket_value(&self, i: usize) -> u64 {
        self.counts.get(i).copied().unwrap_or(0)
    }

    /// Non-empty buckets as `(low, high, count)`, `low..=high` the staleness
    /// range, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .filter_map(|(i, &c)| Self::bucket_bounds(i).map(|(lo, hi)| (lo, hi, c)))
    }

    /// An upper bound on the `q`-quantile (`q` in `[0, 1]`, clamped): the
    /// upper end of the bucket that holds it, capped by the maximum. `None`
    /// if the histogram is empty.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (_, hi, c) in self.iter() {
            seen += c;
            if seen >= rank {
                return Some(hi.min(self.max));
            }
        }
        Some(self.max)
    }

    /// Adds another histogram's observations to this one.
    pub fn merge_from(&mut self, other: &StalenessHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

/// Serialises as `{"count": N, "max": M, "buckets": [{"low":..,"high":..,"count":..}, ...]}`
/// with only non-empty buckets listed.
impl Serialize for StalenessHistogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Buckets<'a>(&'a StalenessHistogram);
        impl Serialize for Buckets<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(None)?;
                for (low, high, count) in self.0.iter() {
                    seq.serialize_element(&Bucket { low, high, count })?;
                }
                seq.end()
            }
        }
        #[derive(Serialize)]
        struct Bucket {
            low: u64,
            high: u64,
            count: u64,
        }
        let mut st = serializer.serialize_struct("StalenessHistogram", 3)?;
        st.serialize_field("count", &self.total)?;
        st.serialize_field("max", &self.max)?;
        st.serialize_field("buckets", &Buckets(self))?;
        st.end()
    }
}

/// Traffic to one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerStats {
    /// The peer's rank.
    pub rank: usize,
    /// Payload bytes written to this peer.
    pub bytes_sent: u64,
    /// Updates written to this peer.
    pub updates_sent: u64,
}

/// Statistics of one vector on one rank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
// One counter per statistic reported in the JSON: its fields are the keys.
pub struct Stats {
    /// Per-peer traffic, indexed by rank (this rank's own entry stays zero).
    pub peers: Vec<PeerStats>,
    /// Payload bytes written to all peers.
    pub bytes_sent: u64,
    /// Updates written to all peers.
    pub updates_sent: u64,
    /// Updates sent in sparse form (a subset of `updates_sent`).
    pub sparse_updates_sent: u64,
    /// Bytes of progress-clock words written (not included in `bytes_sent`).
    pub clock_bytes_sent: u64,
    /// `scatter()` calls.
    pub scatters: u64,
    /// `gather()` calls.
    pub gathers: u64,
    /// Gathers that merged the updates in place, straight from the receive
    /// queues (see [`crate::GatherInfo::in_place`]).
    pub gathers_in_place: u64,
    /// Gathers that ran the allreduce schedule (see
    /// [`crate::allreduce`]); the others ran the direct one.
    pub gathers_allreduce: u64,
    /// Incoming updates merged into the local vector.
    pub updates_merged: u64,
    /// Updates skipped because they were being overwritten while read.
    pub torn: u64,
    /// Updates overwritten by a newer one before they were read.
    pub lapped: u64,
    /// Updates dropped because they carried an older group epoch.
    pub stale_epoch: u64,
    /// Sparse diffs not applied because the update they build on was lost;
    /// the sender's next whole-vector update resynchronises.
    pub diffs_dropped: u64,
    /// Staleness of merged updates.
    pub staleness: StalenessHistogram,
    /// The largest staleness of a merged update.
    pub max_staleness: u64,
    /// Waits for peers (consistency, barriers, flow control).
    pub waits: u64,
    /// Total time spent in those waits, in nanoseconds.
    pub wait_ns: u64,
    /// Times the vector was created again after the group lost ranks.
    pub regroups: u64,
}

impl Stats {
    /// Zeroed statistics for a world of `world` ranks.
    pub fn new(world: usize) -> Self {
        Stats {
            peers: (0..world)
                .map(|rank| PeerStats {
                    rank,
                    ..PeerStats::default()
                })
                .collect(),
            ..Stats::default()
        }
    }

    /// Records one update of `bytes` payload bytes written to `peer`.
    /// A peer outside the world is counted in the totals only.
    pub fn record_send(&mut self, peer: usize, bytes: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.bytes_sent += bytes;
            p.updates_sent += 1;
        }
        self.bytes_sent += bytes;
        self.updates_sent += 1;
    }

    /// Records that one sent update was sparse.
    pub fn record_sparse_send(&mut self) {
        self.sparse_updates_sent += 1;
    }

    /// Records one merged update and its staleness.
    pub fn record_merged(&mut self, staleness: u64) {
        self.updates_merged += 1;
        self.staleness.record(staleness);
        self.max_staleness = self.max_staleness.max(staleness);
    }

    /// Records a torn (skipped) update.
    pub fn record_torn(&mut self) {
        self.torn += 1;
    }

    /// Records `n` lapped (overwritten before read) updates.
    pub fn record_lapped(&mut self, n: u64) {
        self.lapped += n;
    }

    /// Records an update dropped for carrying an old epoch.
    pub fn record_stale_epoch(&mut self) {
        self.stale_epoch += 1;
    }

    /// Records one wait and how long it took.
    pub fn record_wait(&mut self, waited: Duration) {
        self.waits += 1;
        self.wait_ns = self
            .wait_ns
            .saturating_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records the time of a consistency wait that timed out: it adds to
    /// the time spent waiting, not to the count of waits, so a caller that
    /// waits in slices (and makes a gather that timed out again) is charged
    /// its whole wait once.
    pub fn record_timed_out_wait(&mut self, waited: Duration) {
        self.wait_ns = self
            .wait_ns
            .saturating_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Time spent waiting.
    pub fn wait_time(&self) -> Duration {
        Duration::from_nanos(self.wait_ns)
    }

    /// The statistics as one line of JSON.
    pub fn to_json(&self) -> Result<String, VolError> {
        Ok(serde_json::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_once() {
        assert_eq!(StalenessHistogram::bucket_count(), 76);
        let mut next = 0u64;
        for i in 0..StalenessHistogram::bucket_count() {
            let (lo, hi) = StalenessHistogram::bucket_bounds(i).unwrap();
            assert_eq!(lo, next, "bucket {i}");
            assert!(hi >= lo);
            assert_eq!(StalenessHistogram::bucket(lo), i);
            assert_eq!(StalenessHistogram::bucket(hi), i);
            next = hi.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        assert_eq!(StalenessHistogram::bucket_bounds(76), None);
    }

    #[test]
    fn record_and_query() {
        let mut h = StalenessHistogram::new();
        assert_eq!(h.quantile_upper_bound(0.5), None);
        for s in [0, 0, 1, 3, 3, 3, 20, 1000, u64::MAX] {
            h.record(s);
        }
        assert_eq!(h.count(), 9);
        assert_eq!(h.max(), u64::MAX);
        assert_eq!(h.bucket_value(0), 2);
        assert_eq!(h.bucket_value(3), 3);
        assert_eq!(h.bucket_value(16), 1); // [16, 31]
        assert_eq!(h.bucket_value(999), 0);
        let buckets: Vec<_> = h.iter().collect();
        assert_eq!(buckets[0], (0, 0, 2));
        assert_eq!(buckets[3], (16, 31, 1));
        assert_eq!(buckets[4], (512, 1023, 1));
        assert_eq!(h.quantile_upper_bound(0.5), Some(3));
        assert_eq!(h.quantile_upper_bound(0.0), Some(0));
        assert_eq!(h.quantile_upper_bound(1.0), Some(u64::MAX));
        let mut g = StalenessHistogram::new();
        g.record(2);
        g.merge_from(&h);
        assert_eq!(g.count(), 10);
        assert_eq!(g.bucket_value(2), 1);
        assert_eq!(g.max(), u64::MAX);
    }

    #[test]
    fn stats_record_and_json() {
        let mut s = Stats::new(3);
        s.record_send(1, 100);
        s.record_send(1, 50);
        s.record_send(2, 10);
        s.record_send(7, 5);
        s.record_sparse_send();
        s.record_merged(0);
        s.record_merged(4);
        s.record_torn();
        s.record_lapped(3);
        s.record_stale_epoch();
        s.record_wait(Duration::from_micros(5));
        s.record_wait(Duration::from_micros(1));
        assert_eq!(s.peers[1].bytes_sent, 150);
        assert_eq!(s.peers[1].updates_sent, 2);
        assert_eq!(s.peers[0].updates_sent, 0);
        assert_eq!(s.bytes_sent, 165);
        assert_eq!(s.updates_sent, 4);
        assert_eq!(s.max_staleness, 4);
        assert_eq!(s.wait_time(), Duration::from_micros(6));
        let json: serde_json::Value = serde_json::from_str(&s.to_json().unwrap()).unwrap();
        assert_eq!(json["bytes_sent"], 165);
        assert_eq!(json["updates_merged"], 2);
        assert_eq!(json["torn"], 1);
        assert_eq!(json["lapped"], 3);
        assert_eq!(json["stale_epoch"], 1);
        assert_eq!(json["max_staleness"], 4);
        assert_eq!(json["wait_ns"], 6000);
        assert_eq!(json["waits"], 2);
        assert_eq!(json["peers"][2]["rank"], 2);
        assert_eq!(json["peers"][2]["bytes_sent"], 10);
        assert_eq!(json["staleness"]["count"], 2);
        assert_eq!(
            json["staleness"]["buckets"],
            serde_json::json!([
                {"low": 0, "high": 0, "count": 1},
                {"low": 4, "high": 4, "count": 1}
            ])
        );
        assert!(!s.to_json().unwrap().contains('\n'));
    }
}
