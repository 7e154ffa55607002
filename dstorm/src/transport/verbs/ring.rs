//! Bookkeeping of one peer's staging memory and send queue: a byte ring of
//! registered memory that outgoing writes are copied into, and the work
//! requests in flight that still read from it.
//!
//! Completions are selective: a work request is signalled only when the
//! ring or the send queue would be half full after it, or after 15
//! unsignalled ones in a row. A reliable connection completes work requests
//! in order, so the completion of a signalled request releases it and every
//! older one. This keeps the unsignalled tail below half of the ring and of
//! the queue, so a request of at most a quarter of the ring always fits once
//! the newest signalled request has completed: a writer that must wait
//! always has a completion to wait for.

use std::collections::VecDeque;

/// Longest run of unsignalled work requests.
const MAX_STREAK: u32 = 15;

/// Where a reservation lies in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// Offset of the bytes in the staging memory (8-aligned).
    pub start: usize,
    /// Bytes charged, including any unused tail skipped to wrap around.
    charged: usize,
}

#[derive(Debug, Clone, Copy)]
// `start` and `len` are kept for the overlap checks of the tests.
#[cfg_attr(not(test), allow(dead_code))]
struct Entry {
    id: u64,
    start: usize,
    len: usize,
    charged: usize,
    wrs: usize,
    signalled: bool,
}

/// The in-flight state of one peer's send path.
#[derive(Debug)]
pub(crate) struct Ring {
    cap: usize,
    sq_depth: usize,
    head: usize,
    used: usize,
    wrs: usize,
    streak: u32,
    signalled_in_flight: usize,
    entries: VecDeque<Entry>,
}

impl Ring {
    /// A ring over `cap` bytes (a multiple of 8) for a send queue of `sq_depth` requests.
    pub fn new(cap: usize, sq_depth: usize) -> Ring {
        Ring {
            cap: cap & !7,
            sq_depth,
            head: 0,
            used: 0,
            wrs: 0,
            streak: 0,
            signalled_in_flight: 0,
            entries: VecDeque::with_capacity(sq_depth),
        }
    }

    /// The largest single reservation that is always satisfiable once the
    /// ring drains (a quarter of the ring).
    pub fn max_reservation(&self) -> usize {
        (self.cap / 4) & !63
    }

    /// Where `len` bytes for `wrs` work requests fit now, if they do.
    pub fn reserve(&mut self, len: usize, wrs: usize) -> Option<Reservation> {
        let len = len.div_ceil(8) * 8;
        if len > self.cap || self.wrs + wrs > self.sq_depth {
            return None;
        }
        if self.entries.is_empty() {
            self.head = 0;
        }
        let free = self.cap - self.used;
        if self.head + len <= self.cap {
            (len <= free).then_some(Reservation {
                start: self.head,
                charged: len,
            })
        } else {
            let waste = self.cap - self.head;
            (waste + len <= free).then_some(Reservation {
                start: 0,
                charged: waste + len,
            })
        }
    }

    /// Whether the last work request of a reservation must be signalled.
    pub fn should_signal(&self, r: &Reservation, wrs: usize) -> bool {
        self.streak + 1 > MAX_STREAK
            || (self.used + r.charged) * 2 >= self.cap
            || (self.wrs + wrs) * 2 >= self.sq_depth
    }

    /// Records a reservation as posted: `wrs` work requests, the last of
    /// which has id `id` (ids increase).
    pub fn commit(&mut self, r: Reservation, len: usize, wrs: usize, id: u64, signalled: bool) {
        self.used += r.charged;
        self.wrs += wrs;
        self.head = r.start + len.div_ceil(8) * 8;
        if self.head >= self.cap {
            self.head = 0;
        }
        if signalled {
            self.streak = 0;
            self.signalled_in_flight += 1;
        } else {
            self.streak += 1;
        }
        self.entries.push_back(Entry {
            id,
            start: r.start,
            len,
            charged: r.charged,
            wrs,
            signalled,
        });
    }

    /// The signalled request `id` completed: releases it and everything older.
    pub fn complete(&mut self, id: u64) {
        while let Some(e) = self.entries.front() {
            if e.id > id {
                break;
            }
            self.used -= e.charged;
            self.wrs -= e.wrs;
            if e.signalled {
                self.signalled_in_flight -= 1;
            }
            self.entries.pop_front();
        }
        if self.entries.is_empty() {
            self.streak = 0;
        }
    }

    /// Whether a completion is still to come (a signalled request is in flight).
    pub fn awaiting_completion(&self) -> bool {
        self.signalled_in_flight > 0
    }

    /// Nothing in flight.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    fn spans(&self) -> Vec<(usize, usize)> {
        self.entries.iter().map(|e| (e.start, e.len)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_around_and_releases_in_order() {
        let mut r = Ring::new(1024, 64);
        let a = r.reserve(300, 1).unwrap();
        assert_eq!(a.start, 0);
        assert!(!r.should_signal(&a, 1));
        r.commit(a, 300, 1, 1, false);
        let b = r.reserve(300, 1).unwrap();
        assert_eq!(b.start, 304);
        assert!(r.should_signal(&b, 1), "half full after it");
        r.commit(b, 300, 1, 2, true);
        let c = r.reserve(300, 1).unwrap();
        assert_eq!(c.start, 608);
        r.commit(c, 300, 1, 3, true);
        // 912..1024 is too short: nothing fits until the oldest completes.
        assert_eq!(r.reserve(300, 1), None);
        r.complete(2);
        let d = r.reserve(300, 1).unwrap();
        assert_eq!(d.start, 0, "wrapped");
        r.commit(d, 300, 1, 4, true);
        r.complete(4);
        assert!(r.is_idle());
        assert!(!r.awaiting_completion());
    }

    #[test]
    fn the_send_queue_depth_bounds_requests_in_flight() {
        let mut r = Ring::new(1 << 20, 8);
        for id in 1..=8 {
            let x = r.reserve(8, 1).unwrap();
            let s = r.should_signal(&x, 1);
            r.commit(x, 8, 1, id, s);
        }
        assert_eq!(r.reserve(8, 1), None);
        assert!(r.awaiting_completion());
        r.complete(8);
        assert!(r.reserve(8, 2).is_some());
    }

    #[test]
    fn at_most_fifteen_unsignalled_in_a_row() {
        let mut r = Ring::new(1 << 20, 1024);
        let mut run = 0;
        for id in 1..200 {
            let x = r.reserve(8, 1).unwrap();
            let s = r.should_signal(&x, 1);
            r.commit(x, 8, 1, id, s);
            run = if s { 0 } else { run + 1 };
            assert!(run <= 15);
            if s {
                r.complete(id);
            }
        }
    }

    proptest! {
        /// Whatever the sizes and however late completions come, a request
        /// of at most a quarter of the ring never finds the ring full with
        /// no completion to wait for, and in-flight bytes never overlap.
        #[test]
        fn never_stuck_and_never_overlapping(
            cap in 256usize..8192,
            depth in 4usize..64,
            ops in proptest::collection::vec((0usize..10_000, 1usize..3, any::<bool>()), 1..400),
        ) {
            let mut r = Ring::new(cap, depth);
            let max = r.max_reservation().max(8);
            let mut id = 0u64;
            let mut signalled: VecDeque<u64> = VecDeque::new();
            for (len, wrs, complete_now) in ops {
                let len = 1 + len % max;
                if complete_now {
                    if let Some(s) = signalled.pop_front() {
                        r.complete(s);
                    }
                }
                let res = loop {
                    if let Some(x) = r.reserve(len, wrs) {
                        break x;
                    }
                    prop_assert!(r.awaiting_completion(), "stuck: {r:?}");
                    let s = signalled.pop_front().expect("a signalled request");
                    r.complete(s);
                };
                id += wrs as u64;
                let sig = r.should_signal(&res, wrs);
                r.commit(res, len, wrs, id, sig);
                if sig {
                    signalled.push_back(id);
                }
                let mut spans = r.spans();
                spans.sort_unstable();
                for w in spans.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 <= w[1].0, "overlap {spans:?}");
                }
                for (s, l) in spans {
                    prop_assert!(s % 8 == 0 && s + l <= r.cap);
                }
            }
        }
    }
}
