//! Merge functions (UDFs): how `gather()` folds the updates that arrived from
//! peers into the local vector.
//!
//! A merge function receives the local vector and the incoming updates, in
//! the order they were gathered, and overwrites the local vector with the
//! result. Built in ([`Udf`]):
//!
//! | UDF   | dense result at index `i`                              |
//! |-------|--------------------------------------------------------|
//! | `Avg` | `(local[i] + u_1[i] + ... + u_m[i]) / (1 + m)`          |
//! | `Sum` | `local[i] + u_1[i] + ... + u_m[i]`                      |
//! | `Max` | `max(local[i], u_1[i], ..., u_m[i])` (NaN ignored)      |
//! | `Min` | `min(local[i], u_1[i], ..., u_m[i])` (NaN ignored)      |
//!
//! `Avg` is model averaging with the rank's own copy included; with no
//! incoming update it leaves the vector unchanged. Sums are evaluated left to
//! right in the order given.
//!
//! # Sparse updates
//!
//! A sparse update carries values for some indices only; an index it does not
//! carry is *absent*, not zero. Every UDF works per index over the updates
//! that carry that index:
//!
//! * `Avg`: with `c_i` the number of incoming updates carrying index `i`
//!   (a dense update carries every index),
//!   `local[i] = (local[i] + sum of carried values) / (1 + c_i)`. Indices no
//!   update carries are unchanged. When every update carries every index this
//!   is exactly the dense `Avg`, bit for bit, if the updates are all sparse
//!   or all dense (in a mix, dense updates are summed first).
//! * `Sum`: carried values are added; `Max`/`Min`: carried values compete.
//!
//! # User functions
//!
//! Any closure `FnMut(&mut [T], &[&[T]])` is a [`Merge`] for dense updates
//! (lengths are checked before it is called). [`PerIndex`] wraps a closure
//! `FnMut(&mut T, &[T])` called once per index with the values carried for
//! that index, which handles sparse updates too. For full control implement
//! [`Merge`] directly; such a function reports its own failures as
//! [`MergeError::Failed`].
//!
//! All merges check every input before changing anything: on error the local
//! vector is untouched. A gather whose merge fails returns the error
//! (`VolError::Merge`), does not advance the iteration and keeps the updates
//! it read: the next gather merges them.

use std::fmt;
use std::str::FromStr;

use crate::element::Element;
use crate::entries::SparseUpdate;
use crate::error::{MergeError, ParseError};

/// One incoming update, as handed to a merge function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update<'a, T> {
    /// A whole vector (same length as the local vector).
    Dense(&'a [T]),
    /// Some entries, by index.
    Sparse(SparseUpdate<'a, T>),
}

impl<'a, T> Update<'a, T> {
    /// The dense slice, if this update is dense.
    pub fn as_dense(&self) -> Option<&'a [T]> {
        match self {
            Update::Dense(d) => Some(d),
            Update::Sparse(_) => None,
        }
    }

    /// Whether this update is sparse.
    pub fn is_sparse(&self) -> bool {
        matches!(self, Update::Sparse(_))
    }
}

/// A merge function: folds incoming updates into the local vector.
pub trait Merge<T: Element> {
    /// Merges dense updates, each as long as `local`.
    fn merge_dense(&mut self, local: &mut [T], incoming: &[&[T]]) -> Result<(), MergeError>;

    /// Merges a mix of dense and sparse updates.
    ///
    /// The default accepts dense updates only and passes them to
    /// [`Merge::merge_dense`]; a sparse update gives
    /// [`MergeError::SparseUnsupported`].
    fn merge(&mut self, local: &mut [T], incoming: &[Update<'_, T>]) -> Result<(), MergeError> {
        let mut dense = Vec::with_capacity(incoming.len());
        for (update, u) in incoming.iter().enumerate() {
            match u {
                Update::Dense(d) => dense.push(*d),
                Update::Sparse(_) => return Err(MergeError::SparseUnsupported { update }),
            }
        }
        self.merge_dense(local, &dense)
    }

    /// Whether [`merge_dense`](Merge::merge_dense) works index by index:
    /// calling it on consecutive ranges of the vectors, in increasing order,
    /// gives the same result as one call on the whole vectors, and it never
    /// fails when the lengths agree. A `Bsp` gather then merges dense updates
    /// range by range straight from the receive queues, reading each update
    /// once instead of copying it out first. Default `false`; true for
    /// [`Udf`] and [`PerIndex`].
    fn elementwise(&self) -> bool {
        false
    }

    /// The built-in reduction this merge is, if it is one: a merge that
    /// gives the same result whichever rank's values are the local ones,
    /// which the allreduce schedule needs (see [`crate::allreduce`]).
    /// Default `None`; `Some` for [`Udf`].
    fn reduction(&self) -> Option<Udf> {
        None
    }
}

/// The built-in merge functions. See the [module documentation](self) for the
/// exact semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Udf {
    /// Average of the local vector and the incoming ones (model averaging).
    Avg,
    /// Local vector plus the incoming ones (e.g. gradient sums).
    Sum,
    /// Elementwise maximum.
    Max,
    /// Elementwise minimum.
    Min,
}

fn check_dense<T>(local_len: usize, incoming: &[&[T]]) -> Result<(), MergeError> {
    for (update, d) in incoming.iter().enumerate() {
        if d.len() != local_len {
            return Err(MergeError::LengthMismatch {
                update,
                expected: local_len,
                found: d.len(),
            });
        }
    }
    Ok(())
}

fn check_updates<T: Element>(
    local_len: usize,
    incoming: &[Update<'_, T>],
) -> Result<(), MergeError> {
    for (update, u) in incoming.iter().enumerate() {
        match u {
            Update::Dense(d) if d.len() != local_len => {
                return Err(MergeError::LengthMismatch {
                    update,
                    expected: local_len,
                    found: d.len(),
                });
            }
            Update::Dense(_) => {}
            Update::Sparse(s) => {
                // Indices are strictly increasing: the last one is the largest.
                if let Some(&index) = s.indices().last() {
                    if index >= local_len as u64 {
                        return Err(MergeError::IndexOutOfRange {
                            update,
                            index,
                            len: local_len,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// `local[i] = op(local[i], x[i])`: one tight, vectorisable loop.
#[inline]
fn zip_apply<T: Element>(local: &mut [T], x: &[T], op: impl Fn(T, T) -> T) {
    for (l, &v) in local.iter_mut().zip(x) {
        *l = op(*l, v);
    }
}

/// `local[i] = local[i] / d` over a range.
#[inline]
fn div_all<T: Element>(local: &mut [T], d: T) {
    for l in local {
        *l = l.div(d);
    }
}

impl Udf {
    /// Dense kernel; lengths already checked.
    fn dense_kernel<T: Element>(self, local: &mut [T], incoming: &[&[T]]) {
        match self {
            Udf::Avg => {
                if let Some((last, rest)) = incoming.split_last() {
                    for x in rest {
                        zip_apply(local, x, T::add);
                    }
                    let d = T::from_count(incoming.len() + 1);
                    zip_apply(local, last, |l, v| l.add(v).div(d));
                }
            }
            Udf::Sum => {
                for x in incoming {
                    zip_apply(local, x, T::add);
                }
            }
            Udf::Max => {
                for x in incoming {
                    zip_apply(local, x, T::max);
                }
            }
            Udf::Min => {
                for x in incoming {
                    zip_apply(local, x, T::min);
                }
            }
        }
    }

    /// Averaging over a mix that contains at least one sparse update; inputs
    /// already checked.
    fn avg_mixed<T: Element>(local: &mut [T], incoming: &[Update<'_, T>]) {
        let mut n_dense = 0usize;
        for u in incoming {
            if let Update::Dense(d) = u {
                zip_apply(local, d, T::add);
                n_dense += 1;
            }
        }
        let sparse: Vec<SparseUpdate<'_, T>> = incoming
            .iter()
            .filter_map(|u| match u {
                Update::Sparse(s) => Some(*s),
                Update::Dense(_) => None,
            })
            .collect();
        let base = 1 + n_dense;
        let d_base = T::from_count(base);
        let mut cursors = vec![0usize; sparse.len()];
        // Indices below `done` have their final value.
        let mut done = 0usize;
        while let Some(i) = next_index(&sparse, &cursors) {
            let i = i as usize;
            if n_dense > 0 {
                div_all(&mut local[done..i], d_base);
            }
            let mut acc = local[i];
            let mut count = base;
            for (s, c) in sparse.iter().zip(cursors.iter_mut()) {
                if s.indices().get(*c) == Some(&(i as u64)) {
                    acc = acc.add(s.values()[*c]);
                    *c += 1;
                    count += 1;
                }
            }
            local[i] = acc.div_count(count);
            done = i + 1;
        }
        if n_dense > 0 {
            div_all(&mut local[done..], d_base);
        }
    }

    /// Every built-in name, for messages.
    pub const NAMES: &'static str = "avg, sum, max, min";

    /// The lowercase name: `avg`, `sum`, `max` or `min`.
    pub fn name(self) -> &'static str {
        match self {
            Udf::Avg => "avg",
            Udf::Sum => "sum",
            Udf::Max => "max",
            Udf::Min => "min",
        }
    }
}

/// `local = op(local, update)` for each update in order; `op` is a function
/// item, so each call site is monomorphised (no indirect call per element).
fn apply_each<T: Element>(
    local: &mut [T],
    incoming: &[Update<'_, T>],
    op: impl Fn(T, T) -> T + Copy,
) {
    for u in incoming {
        match u {
            Update::Dense(d) => zip_apply(local, d, op),
            Update::Sparse(s) => {
                for (i, v) in s.iter() {
                    let l = &mut local[i as usize];
                    *l = op(*l, v);
                }
            }
        }
    }
}

/// The smallest index at the sparse updates' cursors, if any remain.
fn next_index<T>(sparse: &[SparseUpdate<'_, T>], cursors: &[usize]) -> Option<u64>
where
    T: Element,
{
    sparse
        .iter()
        .zip(cursors)
        .filter_map(|(s, &c)| s.indices().get(c).copied())
        .min()
}

impl<T: Element> Merge<T> for Udf {
    fn merge_dense(&mut self, local: &mut [T], incoming: &[&[T]]) -> Result<(), MergeError> {
        check_dense(local.len(), incoming)?;
        self.dense_kernel(local, incoming);
        Ok(())
    }

    fn elementwise(&self) -> bool {
        true
    }

    fn reduction(&self) -> Option<Udf> {
        Some(*self)
    }

    fn merge(&mut self, local: &mut [T], incoming: &[Update<'_, T>]) -> Result<(), MergeError> {
        check_updates(local.len(), incoming)?;
        if !incoming.iter().any(Update::is_sparse) {
            let dense: Vec<&[T]> = incoming.iter().filter_map(Update::as_dense).collect();
            self.dense_kernel(local, &dense);
            return Ok(());
        }
        match self {
            Udf::Avg => Udf::avg_mixed(local, incoming),
            Udf::Sum => apply_each(local, incoming, T::add),
            Udf::Max => apply_each(local, incoming, T::max),
            Udf::Min => apply_each(local, incoming, T::min),
        }
        Ok(())
    }
}

/// User closures over dense updates: `|local: &mut [f32], incoming: &[&[f32]]| ...`.
/// Every incoming slice is checked to be as long as `local` before the
/// closure runs. Sparse updates are refused ([`MergeError::SparseUnsupported`]);
/// use [`PerIndex`] or implement [`Merge`] to accept them.
impl<T: Element, F> Merge<T> for F
where
    F: FnMut(&mut [T], &[&[T]]),
{
    fn merge_dense(&mut self, local: &mut [T], incoming: &[&[T]]) -> Result<(), MergeError> {
        check_dense(local.len(), incoming)?;
        self(local, incoming);
        Ok(())
    }
}

/// A merge function given as a per-index closure `f(&mut local_i, carried)`,
/// where `carried` holds the values the incoming updates carry for that index,
/// in update order. The closure is called for every index carried by at least
/// one update (every index if any update is dense), in increasing index
/// order, and never for an index no update carries.
///
/// ```
/// use vol::udf::{Merge, PerIndex};
/// // Average, like `Udf::Avg`.
/// let mut avg = PerIndex::new(|l: &mut f32, carried: &[f32]| {
///     *l = (*l + carried.iter().sum::<f32>()) / (1 + carried.len()) as f32;
/// });
/// let mut local = vec![1.0f32, 2.0];
/// avg.merge_dense(&mut local, &[&[3.0, 4.0]]).unwrap();
/// assert_eq!(local, [2.0, 3.0]);
/// ```
pub struct PerIndex<F, T> {
    f: F,
    scratch: Vec<T>,
}

impl<F, T> fmt::Debug for PerIndex<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerIndex").finish_non_exhaustive()
    }
}

impl<F, T> PerIndex<F, T>
where
    T: Element,
    F: FnMut(&mut T, &[T]),
{
    /// Wraps the per-index closure `f`.
    pub fn new(f: F) -> Self {
        PerIndex {
            f,
            scratch: Vec::new(),
        }
    }
}

impl<F, T> Merge<T> for PerIndex<F, T>
where
    T: Element,
    F: FnMut(&mut T, &[T]),
{
    fn elementwise(&self) -> bool {
        true
    }

    fn merge_dense(&mut self, local: &mut [T], incoming: &[&[T]]) -> Result<(), MergeError> {
        check_dense(local.len(), incoming)?;
        if incoming.is_empty() {
            return Ok(());
        }
        for (i, l) in local.iter_mut().enumerate() {
            self.scratch.clear();
            self.scratch.extend(incoming.iter().map(|x| x[i]));
            (self.f)(l, &self.scratch);
        }
        Ok(())
    }

    fn merge(&mut self, local: &mut [T], incoming: &[Update<'_, T>]) -> Result<(), MergeError> {
        check_updates(local.len(), incoming)?;
        let any_dense = incoming.iter().any(|u| !u.is_sparse());
        let sparse: Vec<SparseUpdate<'_, T>> = incoming
            .iter()
            .filter_map(|u| match u {
                Update::Sparse(s) => Some(*s),
                Update::Dense(_) => None,
            })
            .collect();
        let mut cursors = vec![0usize; sparse.len()];
        let mut next_dense = 0usize;
        loop {
            let i = if any_dense {
                if next_dense == local.len() {
                    break;
                }
                next_dense += 1;
                next_dense - 1
            } else {
                match next_index(&sparse, &cursors) {
                    Some(i) => i as usize,
                    None => break,
                }
            };
            self.scratch.clear();
            let mut k = 0usize;
            for u in incoming {
                match u {
                    Update::Dense(d) => self.scratch.push(d[i]),
                    Update::Sparse(s) => {
                        let c = &mut cursors[k];
                        if s.indices().get(*c) == Some(&(i as u64)) {
                            self.scratch.push(s.values()[*c]);
                            *c += 1;
                        }
                        k += 1;
                    }
                }
            }
            (self.f)(&mut local[i], &self.scratch);
        }
        Ok(())
    }
}

impl fmt::Display for Udf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Udf {
    type Err = ParseError;

    /// Parses `avg`, `sum`, `max` or `min` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avg" => Ok(Udf::Avg),
            "sum" => Ok(Udf::Sum),
            "max" => Ok(Udf::Max),
            "min" => Ok(Udf::Min),
            _ => Err(ParseError::new(
                "merge function",
                s,
                format!("expected one of {}", Udf::NAMES),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sp<'a>(idx: &'a [u64], val: &'a [f32]) -> Update<'a, f32> {
        Update::Sparse(SparseUpdate::new(idx, val).unwrap())
    }

    #[test]
    fn dense_builtins() {
        let a = [3.0f32, -1.0, 5.0];
        let b = [6.0f32, 2.0, -7.0];
        let run = |mut u: Udf| {
            let mut local = vec![0.0f32, 2.0, 2.0];
            u.merge_dense(&mut local, &[&a, &b]).unwrap();
            local
        };
        assert_eq!(run(Udf::Avg), vec![3.0, 1.0, 0.0]);
        assert_eq!(run(Udf::Sum), vec![9.0, 3.0, 0.0]);
        assert_eq!(run(Udf::Max), vec![6.0, 2.0, 5.0]);
        assert_eq!(run(Udf::Min), vec![0.0, -1.0, -7.0]);
    }

    #[test]
    fn avg_of_one_incoming_and_of_none() {
        let mut local = vec![1.0f64, 3.0];
        Udf::Avg.merge_dense(&mut local, &[&[3.0, 5.0]]).unwrap();
        assert_eq!(local, vec![2.0, 4.0]);
        Udf::Avg.merge_dense(&mut local, &[]).unwrap();
        assert_eq!(local, vec![2.0, 4.0]);
        Udf::Avg.merge(&mut local, &[]).unwrap();
        assert_eq!(local, vec![2.0, 4.0]);
    }

    #[test]
    fn max_min_ignore_nan() {
        let mut local = vec![f32::NAN, 1.0];
        Udf::Max
            .merge_dense(&mut local, &[&[2.0, f32::NAN]])
            .unwrap();
        assert_eq!(local, vec![2.0, 1.0]);
    }

    #[test]
    fn length_mismatch_leaves_local_untouched() {
        let mut local = vec![1.0f32, 1.0];
        let e = Udf::Sum
            .merge_dense(&mut local, &[&[1.0, 1.0], &[1.0]])
            .unwrap_err();
        assert_eq!(
            e,
            MergeError::LengthMismatch {
                update: 1,
                expected: 2,
                found: 1
            }
        );
        assert_eq!(local, vec![1.0, 1.0]);
        let e = Udf::Avg
            .merge(
                &mut local,
                &[Update::Dense(&[1.0, 1.0]), Update::Dense(&[2.0; 3])],
            )
            .unwrap_err();
        assert!(matches!(e, MergeError::LengthMismatch { update: 1, .. }));
        assert_eq!(local, vec![1.0, 1.0]);
    }

    #[test]
    fn sparse_index_out_of_range_leaves_local_untouched() {
        let mut local = vec![1.0f32; 4];
        let e = Udf::Avg
            .merge(&mut local, &[sp(&[0], &[5.0]), sp(&[1, 4], &[5.0, 5.0])])
            .unwrap_err();
        assert_eq!(
            e,
            MergeError::IndexOutOfRange {
                update: 1,
                index: 4,
                len: 4
            }
        );
        assert_eq!(local, vec![1.0; 4]);
    }

    #[test]
    fn sparse_avg_counts_per_index() {
        let mut local = vec![1.0f64; 5];
        let a = SparseUpdate::new(&[0, 2], &[3.0, 5.0]).unwrap();
        let b = SparseUpdate::new(&[2, 3], &[8.0, 2.0]).unwrap();
        Udf::Avg
            .merge(&mut local, &[Update::Sparse(a), Update::Sparse(b)])
            .unwrap();
        assert_eq!(local, vec![2.0, 1.0, 14.0 / 3.0, 1.5, 1.0]);
    }

    #[test]
    fn mixed_dense_and_sparse_avg() {
        let mut local = vec![0.0f32; 4];
        Udf::Avg
            .merge(
                &mut local,
                &[sp(&[1], &[6.0]), Update::Dense(&[3.0, 3.0, 3.0, 3.0])],
            )
            .unwrap();
        assert_eq!(local, vec![1.5, 3.0, 1.5, 1.5]);
        // An empty sparse update changes nothing.
        let mut local = vec![2.0f32; 3];
        Udf::Avg.merge(&mut local, &[sp(&[], &[])]).unwrap();
        assert_eq!(local, vec![2.0; 3]);
    }

    #[test]
    fn sparse_sum_max_min() {
        let ups = [sp(&[0, 2], &[1.0, -4.0]), sp(&[2], &[3.0])];
        let run = |mut u: Udf| {
            let mut local = vec![1.0f32, 1.0, 1.0];
            u.merge(&mut local, &ups).unwrap();
            local
        };
        assert_eq!(run(Udf::Sum), vec![2.0, 1.0, 0.0]);
        assert_eq!(run(Udf::Max), vec![1.0, 1.0, 3.0]);
        assert_eq!(run(Udf::Min), vec![1.0, 1.0, -4.0]);
    }

    #[test]
    fn closures_merge_dense_and_refuse_sparse() {
        let mut calls = 0;
        let mut sum_first = |local: &mut [f32], incoming: &[&[f32]]| {
            calls += 1;
            local[0] += incoming.iter().map(|x| x[0]).sum::<f32>();
        };
        let mut local = vec![1.0f32, 0.0];
        sum_first
            .merge_dense(&mut local, &[&[2.0, 9.0], &[3.0, 9.0]])
            .unwrap();
        assert_eq!(local, vec![6.0, 0.0]);
        sum_first
            .merge(&mut local, &[Update::Dense(&[1.0, 1.0])])
            .unwrap();
        assert_eq!(local, vec![7.0, 0.0]);
        assert_eq!(
            sum_first.merge(&mut local, &[Update::Dense(&[1.0, 1.0]), sp(&[0], &[1.0])]),
            Err(MergeError::SparseUnsupported { update: 1 })
        );
        assert!(sum_first.merge_dense(&mut local, &[&[1.0]]).is_err());
        assert_eq!(calls, 2);
        assert_eq!(local, vec![7.0, 0.0]);
    }

    #[test]
    fn per_index_sees_only_carried_values() {
        let mut seen = Vec::new();
        let mut rec = PerIndex::new(|l: &mut f32, carried: &[f32]| {
            seen.push((*l, carried.to_vec()));
            *l = -1.0;
        });
        let mut local = vec![0.0f32, 1.0, 2.0, 3.0];
        rec.merge(&mut local, &[sp(&[1, 3], &[10.0, 30.0]), sp(&[3], &[31.0])])
            .unwrap();
        drop(rec);
        assert_eq!(local, vec![0.0, -1.0, 2.0, -1.0]);
        assert_eq!(seen, vec![(1.0, vec![10.0]), (3.0, vec![30.0, 31.0])]);
    }

    #[test]
    fn udf_text_round_trip() {
        for u in [Udf::Avg, Udf::Sum, Udf::Max, Udf::Min] {
            assert_eq!(u.to_string().parse::<Udf>().unwrap(), u);
        }
        assert_eq!(" AVG ".parse::<Udf>().unwrap(), Udf::Avg);
        let e = "mean".parse::<Udf>().unwrap_err();
        assert_eq!(e.what, "merge function");
    }

    fn per_index_avg(l: &mut f64, carried: &[f64]) {
        let mut acc = *l;
        for &v in carried {
            acc += v;
        }
        *l = acc / (1 + carried.len()) as f64;
    }

    /// A local vector and `m` incoming full vectors of the same length.
    fn dense_case() -> impl Strategy<Value = (Vec<f32>, Vec<Vec<f32>>)> {
        (0usize..40, 0usize..6).prop_flat_map(|(n, m)| {
            let v = proptest::collection::vec(-1e6f32..1e6, n);
            (v.clone(), proptest::collection::vec(v, m))
        })
    }

    proptest! {
        #[test]
        fn sparse_avg_carrying_every_index_equals_dense_avg((local, incoming) in dense_case()) {
            for udf in [Udf::Avg, Udf::Sum, Udf::Max, Udf::Min] {
                let mut dense = local.clone();
                let slices: Vec<&[f32]> = incoming.iter().map(Vec::as_slice).collect();
                { let mut u = udf; u.merge_dense(&mut dense, &slices).unwrap(); }
                let all: Vec<u64> = (0..local.len() as u64).collect();
                let updates: Vec<Update<'_, f32>> = incoming
                    .iter()
                    .map(|x| Update::Sparse(SparseUpdate::new(&all, x).unwrap()))
                    .collect();
                let mut sparse = local.clone();
                { let mut u = udf; u.merge(&mut sparse, &updates).unwrap(); }
                let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&sparse), bits(&dense), "{}", udf);
                // The mixed entry point with dense updates agrees too.
                let as_dense: Vec<Update<'_, f32>> = slices.iter().map(|s| Update::Dense(s)).collect();
                let mut via_merge = local.clone();
                { let mut u = udf; u.merge(&mut via_merge, &as_dense).unwrap(); }
                prop_assert_eq!(bits(&via_merge), bits(&dense), "{}", udf);
            }
        }

        #[test]
        fn mixed_avg_matches_per_index_definition(
            n in 1usize..30,
            specs in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec((any::<bool>(), -100.0f64..100.0), 30)),
                0..5,
            ),
            local in proptest::collection::vec(-100.0f64..100.0, 30),
        ) {
            let local = &local[..n];
            // Build updates: dense ones take every value, sparse ones only
            // the flagged indices.
            let mut owned: Vec<(bool, Vec<u64>, Vec<f64>)> = Vec::new();
            for (dense, entries) in &specs {
                let entries = &entries[..n];
                if *dense {
                    owned.push((true, Vec::new(), entries.iter().map(|e| e.1).collect()));
                } else {
                    let (idx, val): (Vec<u64>, Vec<f64>) = entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.0)
                        .map(|(i, e)| (i as u64, e.1))
                        .unzip();
                    owned.push((false, idx, val));
                }
            }
            let updates: Vec<Update<'_, f64>> = owned
                .iter()
                .map(|(dense, idx, val)| {
                    if *dense {
                        Update::Dense(val.as_slice())
                    } else {
                        Update::Sparse(SparseUpdate::new(idx, val).unwrap())
                    }
                })
                .collect();
            let mut got = local.to_vec();
            Udf::Avg.merge(&mut got, &updates).unwrap();
            let mut reference = local.to_vec();
            PerIndex::new(per_index_avg).merge(&mut reference, &updates).unwrap();
            for (g, r) in got.iter().zip(&reference) {
                prop_assert!((g - r).abs() <= 1e-9 * (1.0 + r.abs()), "{} vs {}", g, r);
            }
            // Indices no update carries are unchanged.
            for i in 0..n {
                let carried = owned.iter().any(|(d, idx, _)| *d || idx.contains(&(i as u64)));
                if !carried {
                    prop_assert_eq!(got[i].to_bits(), local[i].to_bits());
                }
            }
        }
    }
}
