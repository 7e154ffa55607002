//! [`DenseVector`]: a dense model vector shared with `scatter()` and merged
//! with `gather(udf)`.
//!
//! # What gather merges
//!
//! A receiver keeps, for every in-neighbour, a *mirror*: that sender's
//! vector as of its newest update. Each `gather()` first waits as the
//! consistency mode requires (see [`crate::exchange`]), then reads what has
//! arrived from every in-neighbour, oldest first, into its mirror, and
//! finally merges, with the UDF, the local vector and every mirror that
//! received at least one update since the previous gather: **the newest
//! update of each sender, once**. Senders with nothing new are left out
//! (`Avg` then averages the own copy with the fresh mirrors only). Under
//! `Bsp` the merged update of every in-neighbour is exactly the one of the
//! current iteration.
//!
//! # Sparse representation
//!
//! With [`Representation::Sparse`] or [`Representation::Auto`] a scatter may
//! send only the entries that changed since the previous scatter (a *diff*,
//! tagged with the version it applies on). The receiver applies it to its
//! mirror, so the merged values are exactly those a dense update would have
//! carried: the representation changes the bytes on the wire, never the
//! result. The first scatter is always dense, a diff is sent dense instead
//! whenever its encoding would not be smaller than the whole vector, and
//! `Auto { threshold }` sends a diff only when fewer than `threshold * len`
//! entries changed (see [`crate::representation::diff_into`]). When a diff can be
//! lost (`Overwrite` outside `Bsp`), a receiver that missed one ignores the
//! sender's diffs (counted in `Stats::diffs_dropped`) until the sender's next
//! dense update, which comes at least every [`VectorOptions::refresh`]
//! scatters.
//!
//! # Memory the caller owns
//!
//! [`DenseVector::wrap`] shares values that live elsewhere: any `S` that
//! lends a slice through `AsRef<[T]>` and `AsMut<[T]>`, such as a
//! `&'a mut [T]` borrowed for the vector's lifetime (the borrow checker then
//! keeps every other access out while the vector lives; the values are the
//! caller's again once it is dropped or [`into_values`](DenseVector::into_values)
//! returns them). Scatter reads them and gather merges into them in place;
//! between calls the caller reads and writes them through the vector
//! (`Deref`/`DerefMut`). The slice must keep its length.
//!
//! # Copies
//!
//! The vector keeps the 32-byte update header (see [`crate::wire`]) apart
//! from its elements and hands both to dstorm as one two-part update
//! ([`dstorm::wire::Payload`]), so a dense scatter sends its memory as is:
//! the only copy is the transport's store into the peer's slot. A
//! dense update is polled straight into a spare buffer that then swaps
//! places with the sender's mirror. After the first gather, the dense path
//! allocates nothing.
//!
//! Under `Bsp`, with the dense representation and an
//! [elementwise](crate::udf::Merge::elementwise) merge (every [`Udf`] and
//! [`crate::udf::PerIndex`]), gather skips the mirrors: it merges the
//! updates range by range (64 KiB of each at a time, copied into a buffer
//! that stays in the core's cache) straight from the receive queues
//! ([`dstorm::Object::read_together`]), so each update is read from memory
//! once instead of being copied out and read again. `Bsp` keeps every sender
//! within one iteration, so with queues of depth 2 or more no update can be
//! overwritten while it is read ([`GatherInfo::in_place`] says when this
//! path was taken). Other merges, modes and representations use the
//! mirrors.
//!
//! [`Udf`]: crate::udf::Udf

use std::fmt::Debug;
use std::ops::{ControlFlow, Deref, DerefMut};
use std::time::{Duration, Instant};

use dstorm::wire::Payload;
use dstorm::{FlowControl, Group, Update};

use crate::allreduce::{self, Allreduce, Schedule};
use crate::consistency::Consistency;
use crate::element::Element;
use crate::error::VolError;
use crate::exchange::{describe, Core, GatherInfo, VectorOptions};
use crate::representation::{diff_into, Encoding, Representation};
use crate::stats::Stats;
use crate::udf::Merge;
use crate::wire::{
    decode_sparse_into, encode_dense_into, encode_sparse_into, sparse_encoded_len, Header, Kind,
    HEADER_LEN,
};

const LITTLE_ENDIAN: bool = cfg!(target_endian = "little");

/// The bytes of a slice of elements (their little-endian encoding on
/// little-endian machines).
pub(crate) fn as_bytes<T: Element>(xs: &[T]) -> &[u8] {
    bytemuck::cast_slice(xs)
}

pub(crate) fn as_bytes_mut<T: Element>(xs: &mut [T]) -> &mut [u8] {
    bytemuck::cast_slice_mut(xs)
}

/// Turns elements whose memory holds little-endian bytes into native
/// values (nothing to do on little-endian machines).
fn from_le_in_place<T: Element>(xs: &mut [T]) {
    if !LITTLE_ENDIAN {
        for x in xs {
            let mut b = T::Bytes::default();
            b.as_mut().copy_from_slice(bytemuck::bytes_of(x));
            *x = T::from_le_bytes(b);
        }
    }
}

/// Reuses the allocation of an (empty) vector of slices for slices of
/// another lifetime.
/// Bytes of each update per range merged in place: the ranges of all
/// in-neighbours together stay within the core's L2 cache.
pub(crate) fn in_place_part(senders: usize) -> usize {
    const STAGE: usize = 256 << 10;
    (STAGE / senders.max(1) / 4096).clamp(1, 16) * 4096
}

pub(crate) fn recycle<'a, 'b, T>(mut v: Vec<&'a [T]>) -> Vec<&'b [T]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [T] { &[] }).collect()
}

/// Where a dense vector's local values live: a buffer of its own
/// (`Vec<T>`, what [`DenseVector::new`] makes) or memory lent by the caller
/// (`&mut [T]`, or any type that lends a slice of constant length; see
/// [`DenseVector::wrap`]).
pub trait Values<T>: AsRef<[T]> + AsMut<[T]> + Debug {}

impl<T, S: AsRef<[T]> + AsMut<[T]> + Debug> Values<T> for S {}

/// A dense vector of `f32` or `f64` shared by every rank of a group.
///
/// Created collectively ([`DenseVector::new`], or [`DenseVector::wrap`] over
/// memory the caller owns); read and written locally like a slice (it
/// dereferences to `[T]`); shared with [`scatter`](Self::scatter) and merged
/// with [`gather`](Self::gather).
#[derive(Debug)]
// The local data, what was last sent and a mirror per in-neighbour serve one
// scatter/gather path; its fields are reused buffers so that path does not
// allocate.
pub struct DenseVector<T: Element, S: Values<T> = Vec<T>> {
    core: Core,
    len: usize,
    /// Elements an update header takes in front of the data in a mirror.
    hdr: usize,
    /// The local values.
    values: S,
    /// The header of the next dense update, sent in front of `values`.
    head: [u8; HEADER_LEN],
    repr: Representation,
    refresh: u64,
    /// Whether a diff can be lost on the way.
    lossy: bool,
    /// Sparse scatters since the last dense one.
    since_dense: u64,
    /// The data as last sent (sparse representations only).
    prev: Vec<T>,
    diff_idx: Vec<u64>,
    diff_val: Vec<T>,
    /// Encoded diffs (and dense updates on big-endian machines).
    send_buf: Vec<u8>,
    /// Per in-neighbour: `[header][data]` of its newest update.
    mirrors: Vec<Vec<T>>,
    /// Per in-neighbour: version of the mirror (0: none or out of sync).
    mirror_version: Vec<u64>,
    spare: Vec<T>,
    /// Parts of every in-neighbour's update, for merging in place
    /// ([`DenseVector::merge_in_place`]); allocated by the first such merge.
    stage: Vec<T>,
    dec_idx: Vec<u64>,
    dec_val: Vec<T>,
    refs: Vec<&'static [T]>,
    /// The allreduce schedule's state, when the vector runs it.
    ar: Option<Allreduce<T>>,
}

impl<T: Element> DenseVector<T> {
    /// Creates a vector of `len` zeros named `name`, collectively: every rank
    /// of `group` must call this with the same name, length, element type and
    /// options, or every rank gets [`VolError::Mismatch`].
    pub fn new(
        group: &Group,
        name: &str,
        len: usize,
        opts: &VectorOptions,
    ) -> Result<Self, VolError> {
        // An impossible length fails on every rank after the agreement
        // (see `create`), not here on one.
        let values = if len.checked_mul(T::WIDTH).is_some() {
            vec![T::zero(); len]
        } else {
            Vec::new()
        };
        Self::create(group, name, len, values, opts)
    }

    /// Like [`new`](Self::new), starting from `values` (only the length must
    /// agree across ranks).
    pub fn from_slice(
        group: &Group,
        name: &str,
        values: &[T],
        opts: &VectorOptions,
    ) -> Result<Self, VolError> {
        Self::create(group, name, values.len(), values.to_vec(), opts)
    }
}

impl<T: Element, S: Values<T>> DenseVector<T, S> {
    /// Shares `values`, memory the caller owns, as a vector named `name`,
    /// collectively (as [`new`](DenseVector::new); only the length must agree
    /// across ranks). Scatter sends the values from where they are and
    /// gather merges into them in place: no copy in or out. With
    /// `values: &'a mut [T]` the vector borrows the slice for `'a`; read and
    /// write it through the vector meanwhile, and have it back with
    /// [`into_values`](Self::into_values) or by dropping the vector.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// # let group = vol::Group::join(vol::Config::local(0, 1, port, "wrap-doc"))?;
    /// use vol::{DenseVector, Udf, VectorOptions};
    /// let mut weights = vec![1.0f64, 2.0, 3.0];
    /// let mut w = DenseVector::wrap(&group, "w", &mut weights[..], &VectorOptions::new())?;
    /// w[0] = 4.0;
    /// w.scatter()?;
    /// w.gather(Udf::Avg)?;
    /// drop(w);
    /// assert_eq!(weights, [4.0, 2.0, 3.0]);
    /// # group.finish()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn wrap(
        group: &Group,
        name: &str,
        values: S,
        opts: &VectorOptions,
    ) -> Result<Self, VolError> {
        let len = values.as_ref().len();
        Self::create(group, name, len, values, opts)
    }

    /// The values back, ending the vector (as dropping it does).
    pub fn into_values(self) -> S {
        self.values
    }

    fn create(
        group: &Group,
        name: &str,
        len: usize,
        values: S,
        opts: &VectorOptions,
    ) -> Result<Self, VolError> {
        let mut desc = describe(name, "dense", T::KIND.name(), "-", len as u64, 0, opts);
        let invalid = |problem: String| VolError::InvalidVector {
            vector: name.to_owned(),
            problem,
        };
        let body = match len.checked_mul(T::WIDTH) {
            _ if len == 0 => Err(invalid("it has no elements".into())),
            Some(b) => Ok(b),
            None => Err(invalid(format!(
                "{len} elements of {} do not fit in memory",
                T::KIND
            ))),
        };
        // Every rank computes the same sizes and schedule; an impossible
        // one fails everywhere after the agreement.
        let schedule = allreduce::choose(opts, group.members().len(), len, T::WIDTH);
        // Ranks compare the schedule they will run, not only the option: on
        // a machine of the other byte order `auto` chooses differently.
        if let Ok(s) = &schedule {
            desc.schedule = format!("{} ({s})", opts.schedule);
        }
        let capacity = match (&body, &schedule) {
            (Ok(_), Ok(s)) => allreduce::slot_capacity(*s, len, group.members().len(), T::WIDTH),
            _ => HEADER_LEN,
        };
        let core = Core::create(group, desc, opts, capacity, || {
            body?;
            schedule.as_ref().map_err(|p| invalid(p.clone()))?;
            Ok(())
        })?;
        let ar = match &schedule {
            Ok(Schedule::Allreduce) => Some(Allreduce::create(group, name, len, opts)?),
            _ => None,
        };
        let hdr = HEADER_LEN / T::WIDTH;
        // The allreduce schedule keeps no mirrors.
        let k = if ar.is_some() { 0 } else { core.senders.len() };
        let sparse = opts.representation.needs_previous();
        let lossy = opts.flow == FlowControl::Overwrite && opts.consistency != Consistency::Bsp;
        Ok(DenseVector {
            len,
            hdr,
            values,
            head: [0; HEADER_LEN],
            repr: opts.representation,
            refresh: opts.refresh,
            lossy,
            since_dense: 0,
            prev: Vec::new(),
            diff_idx: Vec::new(),
            diff_val: Vec::new(),
            send_buf: if sparse || !LITTLE_ENDIAN {
                vec![0u8; capacity]
            } else {
                Vec::new()
            },
            mirrors: (0..k).map(|_| vec![T::zero(); hdr + len]).collect(),
            mirror_version: vec![0; k],
            spare: if k > 0 {
                vec![T::zero(); hdr + len]
            } else {
                Vec::new()
            },
            stage: Vec::new(),
            dec_idx: Vec::new(),
            dec_val: Vec::new(),
            refs: Vec::with_capacity(k),
            core,
            ar,
        })
    }

    /// The vector's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The local values.
    pub fn as_slice(&self) -> &[T] {
        self.values.as_ref()
    }

    /// The local values, mutable. They never move while the vector lives
    /// (a vector's own buffer is allocated once, when it is created, and
    /// kept even on [`rejoin`](Self::rejoin)), so a pointer taken from them
    /// stays valid for the vector's lifetime (the C API relies on this).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.values.as_mut()
    }

    /// The values, checked to have kept their length (a [`Values`] type
    /// that lends a slice of another length is refused, not trusted).
    fn local(&self) -> Result<&[T], VolError> {
        let v = self.values.as_ref();
        if v.len() == self.len {
            Ok(v)
        } else {
            Err(self.resized(v.len()))
        }
    }

    fn resized(&self, now: usize) -> VolError {
        VolError::InvalidVector {
            vector: self.core.name.clone(),
            problem: format!(
                "its values changed length from {} to {now} elements",
                self.len
            ),
        }
    }

    /// The iteration the vector is in: the number of completed gathers.
    /// Scatters are tagged with it.
    pub fn iteration(&self) -> u64 {
        self.core.iteration
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.core.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.core.world
    }

    /// The ranks `scatter()` writes to.
    pub fn out_neighbors(&self) -> &[usize] {
        self.core.obj.out_neighbors()
    }

    /// The ranks whose updates `gather()` merges.
    pub fn in_neighbors(&self) -> &[usize] {
        &self.core.senders
    }

    /// The consistency mode.
    pub fn consistency(&self) -> Consistency {
        self.core.consistency
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

    /// Pushes the vector (or its changes, see the [module
    /// documentation](self)) to every out-neighbour, tagged with the current
    /// iteration. Does not wait for the receivers (with `Backpressure`, it
    /// waits only for a free slot).
    pub fn scatter(&mut self) -> Result<(), VolError> {
        self.local()?;
        if let Some(ar) = &mut self.ar {
            return ar.scatter(&mut self.core, self.values.as_ref());
        }
        let n = self.len;
        let version = self.core.version + 1;
        let mut enc = Encoding::Dense;
        let data = self.values.as_ref();
        let first = self.prev.is_empty() && n > 0;
        let refresh_due = self.lossy && self.refresh > 0 && self.since_dense + 1 >= self.refresh;
        if self.repr.needs_previous() && !first && !refresh_due {
            enc = diff_into(
                data,
                &self.prev,
                self.repr,
                &mut self.diff_idx,
                &mut self.diff_val,
            )?;
            if enc == Encoding::Sparse
                && sparse_encoded_len::<T>(self.diff_idx.len(), n as u64)? >= n * T::WIDTH
            {
                enc = Encoding::Dense;
            }
        }
        match enc {
            Encoding::Sparse => {
                Header::new(Kind::Diff, T::KIND, version, version - 1, n as u64)
                    .write(&mut self.send_buf);
                let body = encode_sparse_into(
                    &self.diff_idx,
                    &self.diff_val,
                    n as u64,
                    &mut self.send_buf[HEADER_LEN..],
                )?;
                self.core
                    .send(self.send_buf[..HEADER_LEN + body].into(), true)?;
                self.since_dense += 1;
            }
            Encoding::Dense => {
                let header = Header::new(Kind::Dense, T::KIND, version, 0, n as u64);
                if LITTLE_ENDIAN {
                    header.write(&mut self.head);
                    let body = as_bytes(self.values.as_ref());
                    self.core.send(Payload::new(&self.head, body), false)?;
                } else {
                    header.write(&mut self.send_buf);
                    encode_dense_into(self.values.as_ref(), &mut self.send_buf[HEADER_LEN..])?;
                    self.core.send(self.send_buf[..].into(), false)?;
                }
                self.since_dense = 0;
            }
        }
        if self.repr.needs_previous() {
            if self.prev.len() != n {
                self.prev = self.values.as_ref().to_vec();
            } else {
                self.prev.copy_from_slice(self.values.as_ref());
            }
        }
        Ok(())
    }

    /// Waits for local completion of the last scatter. Nothing to do: a
    /// scatter returns once its bytes are in the peers' segments (shm) or
    /// handed to the kernel (tcp), and the vector may be modified right
    /// away.
    pub fn flush(&mut self) -> Result<(), VolError> {
        Ok(())
    }

    /// Merges, with `udf`, every update that arrived since the previous
    /// gather (the newest per sender), after the wait the consistency mode
    /// requires; then advances the iteration. See the [module
    /// documentation](self).
    pub fn gather(&mut self, mut udf: impl Merge<T>) -> Result<GatherInfo, VolError> {
        self.gather_with(&mut udf)
    }

    /// Like [`gather`](Self::gather), borrowing the merge function (for
    /// stateful ones such as [`crate::udf::PerIndex`]).
    pub fn gather_with<M: Merge<T> + ?Sized>(
        &mut self,
        udf: &mut M,
    ) -> Result<GatherInfo, VolError> {
        let t = self.core.iteration;
        self.local()?;
        let started = Instant::now();
        let waited = self.core.wait_progress()?;
        let deadline = Instant::now() + self.core.timeout;
        let bsp = self.core.consistency == Consistency::Bsp;
        let mut info = GatherInfo {
            iteration: t,
            wait_ns: u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
            ..GatherInfo::default()
        };
        if let Some(ar) = &mut self.ar {
            info.schedule = Schedule::Allreduce;
            // One bound for the whole gather, waits of both phases included.
            let until = started + self.core.timeout;
            ar.gather(&mut self.core, self.values.as_mut(), udf, until, &mut info)?;
            self.core.stats.gathers_allreduce += 1;
            self.core.finish_gather();
            ar.add_losses(&mut self.core);
            return Ok(info);
        }
        info.schedule = Schedule::Direct;
        if bsp && self.merge_in_place(t, udf, &mut info)? {
            self.core.finish_gather();
            return Ok(info);
        }
        for i in 0..self.core.senders.len() {
            let p = self.core.senders[i];
            if bsp {
                // Exactly the update of this iteration (already visible).
                while self.core.received[i] <= t {
                    let left = Core::left(deadline);
                    let got =
                        self.core
                            .obj
                            .poll_from_timeout(p, as_bytes_mut(&mut self.spare), left)?;
                    match got {
                        Some(u) => self.apply(i, u)?,
                        None => return Err(self.core.missing_update(t, p)),
                    }
                }
            } else {
                // Everything queued (at most `depth` updates per sender).
                for _ in 0..self.core.depth {
                    match self.core.obj.poll_from(p, as_bytes_mut(&mut self.spare))? {
                        Some(u) => self.apply(i, u)?,
                        None => break,
                    }
                }
            }
        }
        let (hdr, n) = (self.hdr, self.len);
        let mut refs: Vec<&[T]> = recycle(std::mem::take(&mut self.refs));
        for (i, m) in self.mirrors.iter().enumerate() {
            if self.core.fresh[i] {
                refs.push(&m[hdr..hdr + n]);
                let s = t.saturating_sub(self.core.mirror_iter[i]);
                info.merged += 1;
                info.max_staleness = info.max_staleness.max(s);
                info.staleness_sum += s;
            }
        }
        let merged = udf.merge_dense(self.values.as_mut(), &refs);
        self.refs = recycle(refs);
        merged?;
        self.core.record_merges(t);
        self.core.finish_gather();
        Ok(info)
    }

    /// The `Bsp` fast path: when every in-neighbour's next update is the
    /// dense one of iteration `t` and `udf` is
    /// [elementwise](Merge::elementwise), merges them range by range straight
    /// from the receive queues ([`dstorm::Object::read_together`]): each
    /// update is read once, instead of being copied into a mirror and read
    /// again by the merge. `Ok(false)` when it does not apply (nothing read);
    /// the caller then polls and merges as usual. Under `Bsp` no sender can
    /// be a queue's depth ahead, so no update changes while it is read.
    fn merge_in_place<M: Merge<T> + ?Sized>(
        &mut self,
        t: u64,
        udf: &mut M,
        info: &mut GatherInfo,
    ) -> Result<bool, VolError> {
        let k = self.core.senders.len();
        let applies = k > 0
            && LITTLE_ENDIAN
            && !self.repr.needs_previous()
            && udf.elementwise()
            && self.core.received.iter().all(|&r| r == t)
            && !self.core.fresh.iter().any(|&f| f);
        if !applies {
            return Ok(false);
        }
        let part = in_place_part(k);
        let part_elems = part / T::WIDTH;
        if self.stage.len() != k * part_elems {
            self.stage = vec![T::zero(); k * part_elems];
        }
        let (hdr, n, width) = (self.hdr, self.len, T::WIDTH);
        let len = HEADER_LEN + n * width;
        let local = self.values.as_mut();
        let mut store: Vec<&'static [T]> = std::mem::take(&mut self.refs);
        let merged = self.core.obj.read_together(
            &self.core.senders,
            t,
            len,
            part,
            as_bytes_mut(&mut self.stage),
            |from, bytes, stage| -> Result<ControlFlow<()>, VolError> {
                let parts = |i: usize| &stage[i * part..i * part + bytes];
                if from == 0 {
                    let dense = (0..k).all(|i| {
                        Header::parse(parts(i)).is_ok_and(|h| {
                            h.kind == Kind::Dense
                                && usize::from(h.value_width) == width
                                && h.len == n as u64
                        })
                    });
                    if !dense {
                        // The usual path reads it and names what is wrong.
                        return Ok(ControlFlow::Break(()));
                    }
                }
                let (first, end) = (from / width, (from + bytes) / width);
                let lo = first.max(hdr);
                if lo < end {
                    let mut refs: Vec<&[T]> = recycle(std::mem::take(&mut store));
                    for i in 0..k {
                        let values: &[T] = bytemuck::cast_slice(parts(i));
                        refs.push(&values[lo - first..end - first]);
                    }
                    let r = udf.merge_dense(&mut local[lo - hdr..end - hdr], &refs);
                    store = recycle(refs);
                    r?;
                }
                Ok(ControlFlow::Continue(()))
            },
        );
        self.refs = store;
        if !merged? {
            return Ok(false);
        }
        for i in 0..k {
            self.core.note_data(i, t);
            self.core.received[i] = t + 1;
            // The mirror was not filled; with dense updates only, nothing
            // reads it before the next dense update replaces it.
            self.mirror_version[i] = 0;
            self.core.mirror_iter[i] = t;
            self.core.stats.record_merged(0);
        }
        info.merged = k;
        info.in_place = true;
        self.core.stats.gathers_in_place += 1;
        Ok(true)
    }

    /// Applies the update just polled into `spare` from in-neighbour `i`.
    fn apply(&mut self, i: usize, u: Update) -> Result<(), VolError> {
        let p = self.core.senders[i];
        self.core.note_read(i, u.iteration);
        let n = self.len;
        let bytes = as_bytes(&self.spare);
        let bytes = bytes
            .get(..u.len)
            .ok_or_else(|| self.core.bad_update(p, "longer than a slot"))?;
        let h = Header::parse(bytes).map_err(|e| self.core.bad_update(p, e.to_string()))?;
        if usize::from(h.value_width) != T::WIDTH || h.len != n as u64 {
            return Err(self.core.bad_update(
                p,
                format!(
                    "{}-byte values for a vector of {} elements; expected {}-byte values and {n}",
                    h.value_width,
                    h.len,
                    T::WIDTH
                ),
            ));
        }
        match h.kind {
            Kind::Dense => {
                let expect = HEADER_LEN + n * T::WIDTH;
                if u.len != expect {
                    return Err(self.core.bad_update(
                        p,
                        format!("dense update of {} bytes; expected {expect}", u.len),
                    ));
                }
                std::mem::swap(&mut self.spare, &mut self.mirrors[i]);
                from_le_in_place(&mut self.mirrors[i][self.hdr..]);
                self.mirror_version[i] = h.version;
                self.core.mirror_iter[i] = u.iteration;
                self.core.fresh[i] = true;
            }
            Kind::Diff => {
                decode_sparse_into(
                    &bytes[HEADER_LEN..],
                    n as u64,
                    &mut self.dec_idx,
                    &mut self.dec_val,
                )
                .map_err(|e| self.core.bad_update(p, e.to_string()))?;
                if self.mirror_version[i] != 0 && self.mirror_version[i] == h.base {
                    let m = &mut self.mirrors[i][self.hdr..];
                    for (&k, &v) in self.dec_idx.iter().zip(&self.dec_val) {
                        // Indices were checked to be below n.
                        m[k as usize] = v;
                    }
                    self.mirror_version[i] = h.version;
                    self.core.mirror_iter[i] = u.iteration;
                    self.core.fresh[i] = true;
                } else {
                    self.mirror_version[i] = 0;
                    self.core.stats.diffs_dropped += 1;
                }
            }
            Kind::Pairs => {
                return Err(self
                    .core
                    .bad_update(p, "a sparse vector's entries sent to a dense vector"))
            }
        }
        Ok(())
    }

    /// A control-channel barrier over the whole group (bounded by the
    /// group's timeout); the time it took is recorded as a wait.
    pub fn barrier(&mut self, group: &Group) -> Result<(), VolError> {
        self.core.barrier(group)
    }

    /// After the group regrouped (an operation returned an error for which
    /// [`VolError::is_regrouped`] holds, and [`Group::regroup`] has been
    /// called): creates this vector's queues again among the survivors, with
    /// the graph laid out over them. The local values are kept; the
    /// iteration moves to the highest any survivor had reached. Collective:
    /// every survivor rejoins the same vectors in the same order. The next
    /// scatter sends the whole vector.
    pub fn rejoin(&mut self, group: &Group) -> Result<(), VolError> {
        // The survivors choose the schedule again for their number.
        let members = group.members().len();
        let schedule = allreduce::choose(&self.core.opts, members, self.len, T::WIDTH)
            .map_err(|problem| self.core.invalid(problem))?;
        self.core.capacity = allreduce::slot_capacity(schedule, self.len, members, T::WIDTH);
        self.ar = None;
        self.core.rejoin(group)?;
        if schedule == Schedule::Allreduce {
            let (name, opts) = (&self.core.name, &self.core.opts);
            self.ar = Some(Allreduce::create(group, name, self.len, opts)?);
        }
        let k = self.ar.as_ref().map_or(self.core.senders.len(), |_| 0);
        let width = self.hdr + self.len;
        self.mirrors = (0..k).map(|_| vec![T::zero(); width]).collect();
        self.mirror_version = vec![0; k];
        if k > 0 && self.spare.is_empty() {
            self.spare = vec![T::zero(); width];
        }
        self.refs = Vec::with_capacity(k);
        // Receivers have no base for a diff: start over with a whole vector.
        self.prev.clear();
        self.since_dense = 0;
        Ok(())
    }
}

impl<T: Element, S: Values<T>> Deref for DenseVector<T, S> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Element, S: Values<T>> DerefMut for DenseVector<T, S> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}
