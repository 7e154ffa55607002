//! SGD threads within a rank on a stratified schedule: Hogwild's lock-free
//! parallel SGD (Niu, Recht, Ré and Wright, 2011) without conflicting
//! writes, in the manner of DSGD (Gemulla, Nijkamp, Haas and Sismanis, 2011).
//!
//! # The schedule
//!
//! With `T` threads, the user ids are cut into `T` contiguous blocks and the
//! item ids into `T` contiguous blocks; [`Stratified::balance`] places the
//! cuts so that each block holds about `1 / T` of the rank's ratings (with
//! balanced margins the `T` blocks of a sub-step below are about equal). A
//! rating belongs to the block `(a, b)` of its user's block `a` and its
//! item's block `b`. [`Stratified::train`] takes one round's ratings (the
//! range of the epoch's block-shuffled order between two syncs) and
//!
//! 1. buckets them by block: each of the `T` threads takes a contiguous
//!    chunk of the round and lists, per block, its runs of ratings in the
//!    chunk's order (the lists are reused from round to round);
//! 2. runs `T` sub-steps: in sub-step `s`, thread `a` takes the steps on the
//!    ratings of block `(a, (a + s) mod T)`, chunk after chunk, in the
//!    round's order.
//!
//! The blocks of a sub-step share no user and no item, so the threads write
//! disjoint rows: each gets `&mut` slices of its user block's rows (with
//! their biases) and of its item block's rows, split off the flat model with
//! `split_at_mut`. A step is the plain `f32` step of one thread
//! ([`sgd_step`](super::mf::sgd_step)); there are no atomics, no locks, no
//! lost or mixed updates and no `unsafe`. The global mean `μ` is not
//! trained (it stays the mean training rating), so the threads only read it.
//! Every thread of a phase is a scoped thread (the calling thread takes the
//! first part), joined before the next phase: `T + 1` joins per round, tens
//! of microseconds next to a round's milliseconds of steps.
//!
//! Bucketing a round rating by rating cost about a sixth of the threads'
//! time, so [`Stratified::balance`] also regroups the rank's ratings once,
//! within each window of [`SHUFFLE_BLOCK`] ratings (the blocks of ratings
//! the training loop visits in a shuffled order), by block, keeping each
//! block's ratings in their order. A window that a chunk takes whole and in
//! place is then `T²` runs, read from the table of its blocks' starts, and
//! the steps read the ratings sequentially; any other rating is a run of its
//! own, so any order is handled, only more slowly.
//!
//! # What it changes
//!
//! Every rating of the round is trained on exactly once, as with one
//! thread, but in a different order: the round's ratings are regrouped by
//! block, and the `T` blocks of a sub-step run side by side. The result is
//! deterministic (it does not depend on the threads' timing): it equals the
//! sequential steps in the order sub-step by sub-step, block by block, chunk
//! by chunk, which is what the tests check. Within a block a user's or an
//! item's ratings come in the round's order, but each sub-step moves a
//! `1 / T` slice of the users against a `1 / T` slice of the items, so the
//! visiting order is less uniformly mixed than the round's (the regrouping
//! within windows changes nothing more: a block's ratings keep their order).
//! On the built-in set this costs no measurable RMSE. With `T` = 1 the
//! learner does not use this module at all and runs the plain steps in the
//! round's order on the ratings as loaded.

use crate::data::ratings::Rating;

use super::mf::sgd_step;
use super::SHUFFLE_BLOCK;

/// Ratings are regrouped by block within windows of this many: the blocks
/// in which the training loop visits them, so that a round's ratings come
/// in runs of one block.
const WINDOW: usize = SHUFFLE_BLOCK;

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

/// One thread's chunk of a round, bucketed by block.
#[derive(Debug, Default)]
struct Chunk {
    /// Per block, the chunk's runs of consecutive ratings of the block, in
    /// the chunk's order: `(first, len)`.
    runs: Vec<Vec<(u32, u32)>>,
}

impl Chunk {
    /// Buckets `part` by block. A whole window of [`WINDOW`] ratings taken
    /// in place is `T²` runs (the window's blocks, [`Cuts::window_starts`]);
    /// any other rating is a run of its own.
    fn bucket(&mut self, part: &[u32], cuts: &Cuts) {
        let blocks = cuts.threads * cuts.threads;
        self.runs.resize_with(blocks, Vec::new);
        for r in &mut self.runs {
            r.clear();
        }
        let n = cuts.rating_block.len();
        let mut x = 0;
        while x < part.len() {
            let j = part[x] as usize;
            if j.is_multiple_of(WINDOW) {
                let len = WINDOW.min(n - j);
                let whole = part
                    .get(x..x + len)
                    .is_some_and(|w| w.iter().zip(j as u32..).all(|(&a, b)| a == b));
                if whole {
                    let starts = &cuts.window_starts[j / WINDOW * (blocks + 1)..][..blocks + 1];
                    for (b, s) in starts.windows(2).enumerate() {
                        if s[0] < s[1] {
                            self.runs[b].push((j as u32 + s[0], s[1] - s[0]));
                        }
                    }
                    x += len;
                    continue;
                }
            }
            self.runs[cuts.rating_block[j] as usize].push((j as u32, 1));
            x += 1;
        }
    }
}

/// Where the user and item ids are cut into blocks.
#[derive(Debug, Default)]
struct Cuts {
    threads: usize,
    /// The block of each user id (non-decreasing).
    user_block: Vec<u16>,
    /// The block of each item id (non-decreasing).
    item_block: Vec<u16>,
    /// User block `a` is the ids `user_starts[a]..user_starts[a + 1]`.
    user_starts: Vec<usize>,
    /// Item block `b` is the ids `item_starts[b]..item_starts[b + 1]`.
    item_starts: Vec<usize>,
    /// The block (`a T + b`) of each rating.
    rating_block: Vec<u32>,
    /// Per window of [`WINDOW`] ratings, where each block's ratings start
    /// in it, and its length (`T² + 1` each).
    window_starts: Vec<u32>,
}

impl Cuts {
    /// The block (`a T + b`) of a rating.
    #[inline]
    fn block(&self, r: &Rating) -> usize {
        let a = usize::from(self.user_block[r.user as usize]);
        let b = usize::from(self.item_block[r.item as usize]);
        a * self.threads + b
    }
}

/// Cuts `0..counts.len()` into `t` contiguous blocks of about equal sums of
/// `counts`: writes each id's block into `block` and the blocks' first ids
/// (and the end) into `starts`.
fn cut(counts: &[u64], t: usize, block: &mut Vec<u16>, starts: &mut Vec<usize>) {
    let total: u64 = counts.iter().sum::<u64>().max(1);
    block.clear();
    let mut before = 0u64;
    for &c in counts {
        // The block where the id's ratings begin, so that a block starts
        // once the ones before it hold their share.
        let b = ((u128::from(before) * t as u128) / u128::from(total)).min(t as u128 - 1);
        block.push(b as u16);
        before += c;
    }
    starts.clear();
    starts.extend((0..=t).map(|b| block.partition_point(|&x| usize::from(x) < b)));
}

/// SGD threads on the stratified schedule, and their reusable buffers.
#[derive(Debug)]
pub(super) struct Stratified {
    cuts: Cuts,
    chunks: Vec<Chunk>,
}

impl Stratified {
    /// `threads` threads (at least 1, at most 32,768).
    pub(super) fn new(threads: usize) -> Self {
        let threads = threads.clamp(1, 1 << 15);
        Stratified {
            cuts: Cuts {
                threads,
                ..Cuts::default()
            },
            chunks: (0..threads).map(|_| Chunk::default()).collect(),
        }
    }

    /// Cuts the `users` user ids and `items` item ids into blocks holding
    /// about equal shares of `ratings` (ids must be below `users` and
    /// `items`), and regroups each window of [`WINDOW`] ratings by block,
    /// keeping the order of each block's ratings. Call it before
    /// [`Stratified::train`] and again whenever the ratings change.
    pub(super) fn balance(&mut self, ratings: &mut [Rating], users: usize, items: usize) {
        let mut per_user = vec![0u64; users];
        let mut per_item = vec![0u64; items];
        for r in ratings.iter() {
            per_user[r.user as usize] += 1;
            per_item[r.item as usize] += 1;
        }
        let c = &mut self.cuts;
        cut(&per_user, c.threads, &mut c.user_block, &mut c.user_starts);
        cut(&per_item, c.threads, &mut c.item_block, &mut c.item_starts);
        let blocks = c.threads * c.threads;
        let mut rating_block = std::mem::take(&mut c.rating_block);
        rating_block.clear();
        c.window_starts.clear();
        let mut copy = Vec::with_capacity(WINDOW);
        let mut starts = vec![0u32; blocks + 1];
        for w in ratings.chunks_mut(WINDOW) {
            // A stable counting sort of the window by block.
            copy.clear();
            copy.extend_from_slice(w);
            starts.iter_mut().for_each(|x| *x = 0);
            for r in &copy {
                starts[c.block(r) + 1] += 1;
            }
            for b in 0..blocks {
                starts[b + 1] += starts[b];
            }
            c.window_starts.extend_from_slice(&starts);
            for r in &copy {
                let b = c.block(r);
                w[starts[b] as usize] = *r;
                starts[b] += 1;
            }
            rating_block.extend(w.iter().map(|r| c.block(r) as u32));
        }
        c.rating_block = rating_block;
    }

    /// The user block and item block of a rating.
    #[cfg(test)]
    pub(super) fn blocks_of(&self, r: &Rating) -> (usize, usize) {
        let b = self.cuts.block(r);
        (b / self.cuts.threads, b % self.cuts.threads)
    }

    /// Takes the SGD steps on `steps.ratings[j]` for `j` in `order`, on the
    /// threads, updating `model` (the flat model of
    /// [the factor model](super::mf)).
    pub(super) fn train(&mut self, model: &mut [f32], steps: Steps<'_>, order: &[u32]) {
        let t = self.cuts.threads;
        let k1 = steps.k + 1;
        let users = steps.users;
        let items = (model.len() - 1) / k1 - users;
        assert!(
            self.cuts.user_block.len() == users
                && self.cuts.item_block.len() == items
                && self.cuts.rating_block.len() == steps.ratings.len(),
            "the ratings are not the ones balanced"
        );
        // Bucketing: thread c buckets chunk c of the round.
        let cuts = &self.cuts;
        let per = order.len().div_ceil(t).max(1);
        std::thread::scope(|s| {
            let mut work = self.chunks.iter_mut().enumerate().map(|(c, chunk)| {
                let part = order.get(c * per..((c + 1) * per).min(order.len()));
                (chunk, part.unwrap_or(&[]))
            });
            let first = work.next();
            for (chunk, part) in work {
                s.spawn(move || chunk.bucket(part, cuts));
            }
            if let Some((chunk, part)) = first {
                chunk.bucket(part, cuts);
            }
        });
        let chunks = &self.chunks[..];
        let (head, item_rows) = model.split_at_mut(1 + users * k1);
        let (mean, user_rows) = head.split_first_mut().expect("the model starts with μ");
        let mean = *mean;
        for sub in 0..t {
            // Thread a: user block a against item block (a + sub) mod T.
            let (early, late) = item_rows.split_at_mut(cuts.item_starts[sub] * k1);
            let user_blocks = blocks(&mut *user_rows, &cuts.user_starts, 0, k1);
            let item_blocks = blocks(late, &cuts.item_starts[sub..], cuts.item_starts[sub], k1)
                .chain(blocks(early, &cuts.item_starts[..=sub], 0, k1));
            std::thread::scope(|s| {
                let mut work = user_blocks
                    .zip(item_blocks)
                    .enumerate()
                    .map(|(a, (p, q))| (a * t + (a + sub) % t, p, q));
                let first = work.next();
                for (b, p, q) in work {
                    s.spawn(move || steps.run(mean, p, q, chunks, b));
                }
                if let Some((b, p, q)) = first {
                    steps.run(mean, p, q, chunks, b);
                }
            });
        }
    }
}

/// The rows of a run of blocks: `rows` holds the ids `starts[0]..` (`first`
/// is `starts[0]`), and block `n` of the run the ids
/// `starts[n]..starts[n + 1]`. Yields each block's rows and first id.
fn blocks<'a>(
    mut rows: &'a mut [f32],
    starts: &'a [usize],
    first: usize,
    k1: usize,
) -> impl Iterator<Item = (&'a mut [f32], usize)> {
    debug_assert_eq!(starts.first(), Some(&first));
    starts.windows(2).map(move |w| {
        let (mine, rest) = std::mem::take(&mut rows).split_at_mut((w[1] - w[0]) * k1);
        rows = rest;
        (mine, w[0])
    })
}

impl Steps<'_> {
    /// One thread's steps on block `b` of every chunk: `users` and `items`
    /// are the rows of the block's users and items, with their first ids.
    fn run(
        &self,
        mean: f32,
        (p, u0): (&mut [f32], usize),
        (q, i0): (&mut [f32], usize),
        chunks: &[Chunk],
        b: usize,
    ) {
        let k1 = self.k + 1;
        let (inv_users, inv_items) = self
            .inv_counts
            .split_at(self.users.min(self.inv_counts.len()));
        let per_entity = !self.inv_counts.is_empty();
        let (eta, lambda) = (self.eta, self.lambda);
        for &(first, len) in chunks.iter().flat_map(|c| &c.runs[b]) {
            for r in &self.ratings[first as usize..][..len as usize] {
                let (u, i) = (r.user as usize, r.item as usize);
                let (lu, li) = if per_entity {
                    (lambda * inv_users[u], lambda * inv_items[i])
                } else {
                    (lambda, lambda)
                };
                let pu = &mut p[(u - u0) * k1..(u - u0 + 1) * k1];
                let qi = &mut q[(i - i0) * k1..(i - i0 + 1) * k1];
                sgd_step(pu, qi, mean, r.value, eta, lu, li);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_contiguous_and_balanced() {
        let mut block = Vec::new();
        let mut starts = Vec::new();
        // One heavy id, empty ids, and more blocks than ids with ratings.
        cut(&[6, 0, 0, 1, 1, 1, 1, 2], 2, &mut block, &mut starts);
        assert_eq!(block, [0, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(starts, [0, 1, 8]);
        cut(&[1, 1, 1, 1, 1, 1], 3, &mut block, &mut starts);
        assert_eq!(block, [0, 0, 1, 1, 2, 2]);
        assert_eq!(starts, [0, 2, 4, 6]);
        cut(&[0, 5], 4, &mut block, &mut starts);
        assert_eq!(block, [0, 0]);
        assert_eq!(starts, [0, 2, 2, 2, 2]);
        cut(&[], 2, &mut block, &mut starts);
        assert_eq!(starts, [0, 0, 0]);
    }

    #[test]
    fn balanced_blocks_hold_equal_shares_and_windows_keep_their_ratings() {
        let (users, items) = (300, 40);
        // Skewed popularity: low ids are rated most.
        let mut ratings: Vec<Rating> = (0..20_000u32)
            .map(|x| Rating {
                user: (x * 7919 % 300) * (x % 3 + 1) % 300,
                item: (x * 31 % 40) / (x % 4 + 1),
                value: x as f32,
            })
            .collect();
        let before = ratings.clone();
        let mut s = Stratified::new(2);
        s.balance(&mut ratings, users, items);
        let mut per = [[0usize; 2]; 2];
        for r in &ratings {
            let (a, b) = s.blocks_of(r);
            per[0][a] += 1;
            per[1][b] += 1;
        }
        for share in per.iter().flatten() {
            assert!(share.abs_diff(10_000) < 1_000, "{per:?}");
        }
        // Each window holds its ratings, grouped by block in their order.
        for (w, (a, b)) in ratings
            .chunks(WINDOW)
            .zip(before.chunks(WINDOW))
            .enumerate()
        {
            let starts = &s.cuts.window_starts[w * 5..][..5];
            for blk in 0..4 {
                let want: Vec<f32> = b
                    .iter()
                    .filter(|r| s.cuts.block(r) == blk)
                    .map(|r| r.value)
                    .collect();
                let got: Vec<f32> = a[starts[blk] as usize..starts[blk + 1] as usize]
                    .iter()
                    .map(|r| r.value)
                    .collect();
                assert_eq!(got, want);
            }
        }
    }
}
