//! Hogwild within a rank: lock-free SGD threads over one shared factor
//! model, as in Niu, Recht, Ré and Wright's Hogwild (2011).
//!
//! [`Hogwild::train`] runs one round of SGD steps (the ratings `order`
//! names) on `T` threads. It copies the flat model into a vector of
//! [`AtomicU32`]s, each holding an `f32`'s bits, splits `order` into `T`
//! contiguous chunks (the order is block-shuffled every epoch, so each chunk
//! is a random part of the round) and runs one scoped thread per chunk. A
//! step loads the user's and the item's values with relaxed atomic loads,
//! computes the step exactly as the sequential one does, and stores the new
//! values with relaxed atomic stores. When every thread has joined, the
//! model is copied back, so the sync and the evaluations that follow see a
//! quiescent plain model.
//!
//! # What the races mean
//!
//! Two threads stepping on the same user or item at once both read the old
//! values and both write: one update may be lost, or the two mixed value by
//! value (each value is whole: an atomic `u32` is never torn). That is
//! Hogwild's semantics, which its analysis bounds when conflicts are sparse
//! (a step touches 2 of the `users + items` rows). Every shared access is
//! atomic, so there is no data race in Rust's memory model and no undefined
//! behaviour; relaxed loads and stores of a `u32` are plain moves on x86-64
//! and AArch64, so the shared model costs no fences or locked instructions.
//!
//! The copies in and out cost `(users + items)(k + 1)` values per round, small
//! next to a round's ratings at the default `cb`.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::data::ratings::Rating;

/// The most SGD threads per rank: this many per core of the machine, so
/// that a rank can be oversubscribed on purpose but not by a typo.
pub(super) const THREADS_PER_CORE: usize = 4;

/// The largest `--threads` accepted on this machine.
pub(super) fn max_threads() -> usize {
    THREADS_PER_CORE * std::thread::available_parallelism().map_or(1, usize::from)
}

/// What the SGD steps of a round read besides the model: the same for
/// every thread.
#[derive(Debug, Clone, Copy)]
pub(super) struct Steps<'a> {
    /// The rank's training ratings (`order` indexes them).
    pub ratings: &'a [Rating],
    /// Factors per user and item.
    pub k: usize,
    /// Users in the model (the item blocks follow theirs).
    pub users: usize,
    /// Learning rate.
    pub eta: f32,
    /// Regularisation λ.
    pub lambda: f32,
    /// Per user then per item, `1 / ratings of it` ([`PerEntity`]); empty:
    /// `λ` on every step.
    ///
    /// [`PerEntity`]: super::mf::Regularization::PerEntity
    pub inv_counts: &'a [f32],
}

/// Lock-free SGD threads and the shared model they step on.
#[derive(Debug)]
pub(super) struct Hogwild {
    threads: usize,
    /// The model as `f32` bits, shared by the threads of a round.
    shared: Vec<AtomicU32>,
}

impl Hogwild {
    /// `threads` threads (at least 1).
    pub(super) fn new(threads: usize) -> Self {
        Hogwild {
            threads: threads.max(1),
            shared: Vec::new(),
        }
    }

    /// Takes the SGD steps on `steps.ratings[j]` for `j` in `order`, on the
    /// threads, updating `model` (the flat model of
    /// [the factor model](super::mf)).
    pub(super) fn train(&mut self, model: &mut [f32], steps: Steps<'_>, order: &[u32]) {
        self.shared.resize_with(model.len(), || AtomicU32::new(0));
        for (a, x) in self.shared.iter_mut().zip(model.iter()) {
            *a.get_mut() = x.to_bits();
        }
        let shared = &self.shared[..];
        let chunk = order.len().div_ceil(self.threads).max(1);
        std::thread::scope(|s| {
            let mut chunks = order.chunks(chunk);
            let mine = chunks.next();
            for part in chunks {
                s.spawn(move || steps.run(shared, part));
            }
            if let Some(part) = mine {
                steps.run(shared, part);
            }
        });
        for (x, a) in model.iter_mut().zip(self.shared.iter_mut()) {
            *x = f32::from_bits(*a.get_mut());
        }
    }
}

impl Steps<'_> {
    /// One thread's steps, in the order of `part`.
    fn run(&self, m: &[AtomicU32], part: &[u32]) {
        let k1 = self.k + 1;
        let items = 1 + self.users * k1;
        let mean = load(&m[0]);
        let (inv_users, inv_items) = self
            .inv_counts
            .split_at(self.users.min(self.inv_counts.len()));
        let per_entity = !self.inv_counts.is_empty();
        let (eta, lambda) = (self.eta, self.lambda);
        // This thread's snapshot of the two rows a step reads.
        let mut p = vec![0.0f32; k1];
        let mut q = vec![0.0f32; k1];
        for &j in part {
            let r = self.ratings[j as usize];
            let (u, i) = (r.user as usize, r.item as usize);
            let (lu, li) = if per_entity {
                (lambda * inv_users[u], lambda * inv_items[i])
            } else {
                (lambda, lambda)
            };
            let pa = &m[1 + u * k1..1 + (u + 1) * k1];
            let qa = &m[items + i * k1..items + (i + 1) * k1];
            for (x, a) in p.iter_mut().zip(pa) {
                *x = load(a);
            }
            for (x, a) in q.iter_mut().zip(qa) {
                *x = load(a);
            }
            // The sequential step's arithmetic, operation for operation, on
            // this thread's snapshot, then stored.
            let mut pred = mean + p[0] + q[0];
            for (a, b) in p[1..].iter().zip(&q[1..]) {
                pred += a * b;
            }
            let e = r.value - pred;
            p[0] += eta * (e - lu * p[0]);
            q[0] += eta * (e - li * q[0]);
            for (a, b) in p[1..].iter_mut().zip(q[1..].iter_mut()) {
                let (pa, qb) = (*a, *b);
                *a += eta * (e * qb - lu * pa);
                *b += eta * (e * pa - li * qb);
            }
            for (a, &x) in pa.iter().zip(&p) {
                store(a, x);
            }
            for (a, &x) in qa.iter().zip(&q) {
                store(a, x);
            }
        }
    }
}

/// A shared value, as another thread may be writing it.
#[inline]
fn load(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Relaxed))
}

/// Overwrites a shared value (a racy read-modify-write with the `load`
/// before it: Hogwild's update).
#[inline]
fn store(a: &AtomicU32, x: f32) {
    a.store(x.to_bits(), Relaxed);
}
