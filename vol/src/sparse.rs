//! [`SparseVector`]: a sparse vector (index/value pairs, absent entries are
//! zero) shared with `scatter()` and merged with `gather(udf)`.
//!
//! A scatter sends every stored entry (the body is the sparse encoding of
//! [`crate::wire`]); the receiver keeps the newest update of each
//! in-neighbour and `gather()` merges them **by index**, with the semantics
//! of [`crate::udf`] for sparse updates: for each index, the local value
//! (zero if absent) and the values the fresh updates carry for that index.
//! So `Avg` gives `(local + carried) / (1 + number carrying)` and indices no
//! update carries keep their local value. When every rank stores the same
//! indices this is exactly the dense average. Indices that only peers carry
//! become stored entries of the local vector.
//!
//! The local vector is a [`SparseEntries`], reached through `Deref`.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use dstorm::{Group, Update};

use crate::consistency::Consistency;
use crate::element::Element;
use crate::entries::{SparseEntries, SparseIndex, SparseUpdate};
use crate::error::VolError;
use crate::exchange::{describe, Core, GatherInfo, VectorOptions};
use crate::representation::Representation;
use crate::stats::Stats;
use crate::udf::{Merge, Update as UdfUpdate};
use crate::wire::{
    decode_sparse_into, encode_sparse_into, sparse_encoded_len, Header, Kind, HEADER_LEN,
};

fn index_name<I: SparseIndex>() -> &'static str {
    if I::WIDTH == 4 {
        "u32"
    } else {
        "u64"
    }
}

/// A sparse vector shared by every rank of a group; see the [module
/// documentation](self).
#[derive(Debug)]
pub struct SparseVector<I: SparseIndex, V: Element> {
    core: Core,
    local: SparseEntries<I, V>,
    max_entries: usize,
    send_buf: Vec<u8>,
    spare: Vec<u8>,
    /// Per in-neighbour: the entries of its newest update.
    in_idx: Vec<Vec<u64>>,
    in_val: Vec<Vec<V>>,
    union: Vec<u64>,
    compact: Vec<V>,
    positions: Vec<Vec<u64>>,
}

impl<I: SparseIndex, V: Element> SparseVector<I, V> {
    /// Creates an empty sparse vector of logical length `len` named `name`
    /// that may hold up to `max_entries` stored entries, collectively: every
    /// rank must pass the same name, length, limit, index and value types and
    /// options, or every rank gets [`VolError::Mismatch`]. The
    /// representation option must be the default (dense): a sparse vector
    /// always sends its entries.
    pub fn new(
        group: &Group,
        name: &str,
        len: u64,
        max_entries: usize,
        opts: &VectorOptions,
    ) -> Result<Self, VolError> {
        let desc = describe(
            name,
            "sparse",
            V::KIND.name(),
            index_name::<I>(),
            len,
            max_entries as u64,
            opts,
        );
        let body = sparse_encoded_len::<V>(max_entries, len);
        let capacity = body.as_ref().map(|b| HEADER_LEN + b).unwrap_or(HEADER_LEN);
        let check = || {
            let invalid = |problem: String| VolError::InvalidVector {
                vector: name.to_owned(),
                problem,
            };
            body?;
            if opts.representation != Representation::Dense {
                return Err(invalid(format!(
                    "representation {} applies to dense vectors only; a sparse vector always sends its entries",
                    opts.representation
                )));
            }
            if opts.schedule == crate::Schedule::Allreduce {
                return Err(invalid(
                    "the allreduce schedule applies to dense vectors only; a sparse vector's gather runs the direct one".into(),
                ));
            }
            if len > 0 && len - 1 > I::MAX {
                return Err(invalid(format!(
                    "length {len} has indices that do not fit in {}",
                    index_name::<I>()
                )));
            }
            Ok(())
        };
        let core = Core::create(group, desc, opts, capacity, check)?;
        let k = core.senders.len();
        Ok(SparseVector {
            local: SparseEntries::new(len),
            max_entries,
            send_buf: vec![0u8; capacity],
            spare: if k > 0 {
                vec![0u8; capacity]
            } else {
                Vec::new()
            },
            in_idx: vec![Vec::new(); k],
            in_val: vec![Vec::new(); k],
            union: Vec::new(),
            compact: Vec::new(),
            positions: vec![Vec::new(); k],
            core,
        })
    }

    /// The vector's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The largest number of stored entries a scatter may send.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The local sparse vector.
    pub fn as_sparse(&self) -> &SparseEntries<I, V> {
        &self.local
    }

    /// The local sparse vector, mutable.
    pub fn as_sparse_mut(&mut self) -> &mut SparseEntries<I, V> {
        &mut self.local
    }

    /// The iteration the vector is in (completed gathers).
    pub fn iteration(&self) -> u64 {
        self.core.iteration
    }

    /// The ranks `scatter()` writes to.
    pub fn out_neighbors(&self) -> &[usize] {
        self.core.obj.out_neighbors()
    }

    /// The ranks whose updates `gather()` merges.
    pub fn in_neighbors(&self) -> &[usize] {
        &self.core.senders
    }

    /// The bound on this vector's consistency waits.
    pub fn wait_timeout(&self) -> Duration {
        self.core.timeout
    }

    /// Bounds this vector's later consistency waits by `timeout` (rank-local,
    /// as [`VectorOptions::wait_timeout`]). A gather that ends with
    /// [`VolError::Timeout`] changed no value and can be made again, so a
    /// caller can wait in short slices and check for signals in between.
    pub fn set_wait_timeout(&mut self, timeout: Duration) {
        self.core.timeout = timeout;
    }

    /// Statistics so far.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Statistics as one line of JSON.
    pub fn stats_json(&self) -> Result<String, VolError> {
        self.core.stats.to_json()
    }

    /// Pushes every stored entry to every out-neighbour, tagged with the
    /// current iteration. Fails with [`VolError::TooManyEntries`] if the
    /// vector holds more entries than it was created for.
    pub fn scatter(&mut self) -> Result<(), VolError> {
        let nnz = self.local.nnz();
        if nnz > self.max_entries {
            return Err(VolError::TooManyEntries {
                vector: self.core.name.clone(),
                nnz,
                max: self.max_entries,
            });
        }
        let len = self.local.len();
        let version = self.core.version + 1;
        let mut h = Header::new(Kind::Pairs, V::KIND, version, 0, len);
        h.index_width = I::WIDTH as u8;
        h.write(&mut self.send_buf);
        let body = encode_sparse_into(
            self.local.indices(),
            self.local.values(),
            len,
            &mut self.send_buf[HEADER_LEN..],
        )?;
        self.core
            .send(self.send_buf[..HEADER_LEN + body].into(), true)
    }

    /// Nothing to wait for; see [`crate::DenseVector::flush`].
    pub fn flush(&mut self) -> Result<(), VolError> {
        Ok(())
    }

    /// Merges the newest update of every in-neighbour that sent one since
    /// the previous gather, by index, after the consistency wait; then
    /// advances the iteration.
    pub fn gather(&mut self, mut udf: impl Merge<V>) -> Result<GatherInfo, VolError> {
        self.gather_with(&mut udf)
    }

    /// Like [`gather`](Self::gather), borrowing the merge function.
    pub fn gather_with<M: Merge<V> + ?Sized>(
        &mut self,
        udf: &mut M,
    ) -> Result<GatherInfo, VolError> {
        let t = self.core.iteration;
        let waited = self.core.wait_progress()?;
        let deadline = Instant::now() + self.core.timeout;
        let bsp = self.core.consistency == Consistency::Bsp;
        for i in 0..self.core.senders.len() {
            let p = self.core.senders[i];
            if bsp {
                while self.core.received[i] <= t {
                    let left = Core::left(deadline);
                    match self.core.obj.poll_from_timeout(p, &mut self.spare, left)? {
                        Some(u) => self.apply(i, u)?,
                        None => return Err(self.core.missing_update(t, p)),
                    }
                }
            } else {
                for _ in 0..self.core.depth {
                    match self.core.obj.poll_from(p, &mut self.spare)? {
                        Some(u) => self.apply(i, u)?,
                        None => break,
                    }
                }
            }
        }
        let mut info = GatherInfo {
            iteration: t,
            wait_ns: u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
            ..GatherInfo::default()
        };
        // Union of the local indices and the fresh updates' indices.
        self.union.clear();
        self.union
            .extend(self.local.indices().iter().map(|i| i.to_u64()));
        for (i, idx) in self.in_idx.iter().enumerate() {
            if self.core.fresh[i] {
                self.union.extend_from_slice(idx);
            }
        }
        self.union.sort_unstable();
        self.union.dedup();
        // The local values at those indices (zero where absent).
        self.compact.clear();
        self.compact.resize(self.union.len(), V::zero());
        let mut j = 0;
        for (k, v) in self.local.iter() {
            let k = k.to_u64();
            while self.union[j] < k {
                j += 1;
            }
            self.compact[j] = v;
        }
        // Each update's indices as positions in the union.
        for (i, idx) in self.in_idx.iter().enumerate() {
            let pos = &mut self.positions[i];
            pos.clear();
            if !self.core.fresh[i] {
                continue;
            }
            let mut j = 0;
            for &k in idx {
                while self.union[j] < k {
                    j += 1;
                }
                pos.push(j as u64);
            }
        }
        let mut updates: Vec<UdfUpdate<'_, V>> = Vec::with_capacity(self.core.fresh.len());
        for i in 0..self.core.fresh.len() {
            if self.core.fresh[i] {
                let u = SparseUpdate::new(&self.positions[i], &self.in_val[i])?;
                updates.push(UdfUpdate::Sparse(u));
                let s = t.saturating_sub(self.core.mirror_iter[i]);
                info.merged += 1;
                info.max_staleness = info.max_staleness.max(s);
                info.staleness_sum += s;
            }
        }
        udf.merge(&mut self.compact, &updates)?;
        drop(updates);
        let (li, lv) = self.local.parts_mut();
        li.clear();
        lv.clear();
        for (&k, &v) in self.union.iter().zip(&self.compact) {
            // Every index is below the length, which fits I (checked at
            // creation), so the conversion cannot fail.
            if let Some(k) = I::from_u64(k) {
                li.push(k);
                lv.push(v);
            }
        }
        self.core.record_merges(t);
        self.core.finish_gather();
        Ok(info)
    }

    fn apply(&mut self, i: usize, u: Update) -> Result<(), VolError> {
        let p = self.core.senders[i];
        self.core.note_read(i, u.iteration);
        let len = self.local.len();
        let bytes = self
            .spare
            .get(..u.len)
            .ok_or_else(|| self.core.bad_update(p, "longer than a slot"))?;
        let h = Header::parse(bytes).map_err(|e| self.core.bad_update(p, e.to_string()))?;
        if h.kind != Kind::Pairs
            || usize::from(h.value_width) != V::WIDTH
            || usize::from(h.index_width) != I::WIDTH
            || h.len != len
        {
            return Err(self.core.bad_update(
                p,
                format!(
                    "{:?} update of a vector of length {} with {}-byte indices and {}-byte values; expected the entries of a vector of length {len} with {}-byte indices and {}-byte values",
                    h.kind, h.len, h.index_width, h.value_width, I::WIDTH, V::WIDTH
                ),
            ));
        }
        decode_sparse_into(
            &bytes[HEADER_LEN..],
            len,
            &mut self.in_idx[i],
            &mut self.in_val[i],
        )
        .map_err(|e| self.core.bad_update(p, e.to_string()))?;
        if self.in_idx[i].len() > self.max_entries {
            return Err(self.core.bad_update(
                p,
                format!(
                    "{} entries; the vector holds at most {}",
                    self.in_idx[i].len(),
                    self.max_entries
                ),
            ));
        }
        self.core.mirror_iter[i] = u.iteration;
        self.core.fresh[i] = true;
        Ok(())
    }

    /// A control-channel barrier over the whole group; recorded as a wait.
    pub fn barrier(&mut self, group: &Group) -> Result<(), VolError> {
        self.core.barrier(group)
    }

    /// After the group regrouped: creates this vector's queues again among
    /// the survivors (see [`DenseVector::rejoin`](crate::DenseVector::rejoin));
    /// the local entries are kept. Collective among the survivors.
    pub fn rejoin(&mut self, group: &Group) -> Result<(), VolError> {
        self.core.rejoin(group)?;
        let k = self.core.senders.len();
        if k > 0 && self.spare.is_empty() {
            self.spare = vec![0u8; self.send_buf.len()];
        }
        self.in_idx = vec![Vec::new(); k];
        self.in_val = vec![Vec::new(); k];
        self.positions = vec![Vec::new(); k];
        Ok(())
    }
}

impl<I: SparseIndex, V: Element> Deref for SparseVector<I, V> {
    type Target = SparseEntries<I, V>;
    fn deref(&self) -> &SparseEntries<I, V> {
        &self.local
    }
}

impl<I: SparseIndex, V: Element> DerefMut for SparseVector<I, V> {
    fn deref_mut(&mut self) -> &mut SparseEntries<I, V> {
        &mut self.local
    }
}
