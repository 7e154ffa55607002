//! Sparse vectors, the byte encodings of updates, and the choice between
//! sending a dense vector whole or only its changed entries.
//!
//! # Wire encodings
//!
//! All multi-byte numbers are little-endian.
//!
//! **Dense update**: the `n` elements back to back, `n * width` bytes, no
//! header (the receiver knows the vector's length and element type; the
//! payload length is carried by the transport's slot header). See
//! [`encode_dense_into`] and [`decode_dense_into`].
//!
//! **Sparse update**: a 16-byte header followed by the indices, then the
//! values:
//!
//! ```text
//! offset  size            field
//! 0       8               count: number of (index, value) pairs, u64
//! 8       1               index width in bytes: 4 (u32) or 8 (u64)
//! 9       1               value width in bytes: 4 (f32) or 8 (f64)
//! 10      6               reserved, zero
//! 16      count * iw      indices, strictly increasing, each < vector length
//! ...     count * vw      values, in the same order
//! ```
//!
//! Encoders use 4-byte indices whenever the vector's length is at most
//! 2^32 (every index then fits), 8-byte indices otherwise. The decoder
//! accepts either width and checks everything: header fields, the exact total
//! length, that indices are strictly increasing and below the vector's length.
//! It never panics and never allocates more than the input's size.
//!
//! # Auto representation
//!
//! A dense vector may be sent as a sparse update holding only the entries
//! that changed since the copy last sent. [`diff_into`] compares the two and
//! picks the encoding: with [`Representation::Auto`]`{ threshold }` the update
//! is sparse when `changed < threshold * len`, i.e. when the changed fraction
//! is below the threshold ([`DEFAULT_SPARSE_THRESHOLD`] = 0.1), and dense
//! otherwise. At 0.1 a sparse f32 update with 4-byte indices costs at most
//! 0.2 of the dense bytes, and the receiver's merge touches only the carried
//! entries. "Changed" means a different bit pattern, so an unchanged NaN is not
//! resent and `-0.0` vs `0.0` counts as a change.

use std::fmt;
use std::str::FromStr;

use crate::element::{Element, Sealed};
use crate::error::{ParseError, WireError};

/// Size of the sparse update header in bytes.
pub const SPARSE_HEADER_LEN: usize = 16;

/// Default changed fraction below which [`Representation::Auto`] sends a
/// sparse update.
pub const DEFAULT_SPARSE_THRESHOLD: f64 = 0.1;

/// An index type of a [`SparseVector`]: `u32` or `u64`.
pub trait SparseIndex:
    Copy + Ord + Eq + std::hash::Hash + Send + Sync + fmt::Debug + fmt::Display + Sealed + 'static
{
    /// Width in bytes (4 or 8).
    const WIDTH: usize;
    /// The largest representable index.
    const MAX: u64;
    /// Widens to `u64`.
    fn to_u64(self) -> u64;
    /// Narrows from `u64`, `None` if it does not fit.
    fn from_u64(x: u64) -> Option<Self>;
}

impl SparseIndex for u32 {
    const WIDTH: usize = 4;
    const MAX: u64 = u32::MAX as u64;
    #[inline]
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn from_u64(x: u64) -> Option<Self> {
        u32::try_from(x).ok()
    }
}

impl SparseIndex for u64 {
    const WIDTH: usize = 8;
    const MAX: u64 = u64::MAX;
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
    #[inline]
    fn from_u64(x: u64) -> Option<Self> {
        Some(x)
    }
}

/// Index width used on the wire for a vector of length `len`: 4 bytes if
/// every index fits in a `u32`, else 8.
pub fn wire_index_width(len: u64) -> usize {
    if len <= u64::from(u32::MAX) + 1 {
        4
    } else {
        8
    }
}

/// Checks that `indices` are strictly increasing and below `len`.
fn check_indices<I: SparseIndex>(indices: &[I], len: u64) -> Result<(), WireError> {
    let mut previous: Option<u64> = None;
    for (position, &i) in indices.iter().enumerate() {
        let index = i.to_u64();
        if let Some(previous) = previous {
            if index <= previous {
                return Err(WireError::NotSorted {
                    previous,
                    index,
                    position,
                });
            }
        }
        if index >= len {
            return Err(WireError::IndexOutOfRange {
                index,
                position,
                len,
            });
        }
        previous = Some(index);
    }
    Ok(())
}

/// A borrowed sparse update ready to merge: strictly increasing `u64`
/// indices and their values.
///
/// The constructor checks the invariants, so merge functions can rely on
/// them; whether the indices fit the local vector is checked at merge time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseUpdate<'a, T> {
    indices: &'a [u64],
    values: &'a [T],
}

impl<'a, T: Element> SparseUpdate<'a, T> {
    /// Wraps `indices` and `values`; they must have the same length and the
    /// indices must be strictly increasing.
    pub fn new(indices: &'a [u64], values: &'a [T]) -> Result<Self, WireError> {
        if indices.len() != values.len() {
            return Err(WireError::PairCountMismatch {
                indices: indices.len(),
                values: values.len(),
            });
        }
        // `u64::MAX` itself is rejected; no vector can hold that index.
        check_indices(indices, u64::MAX)?;
        Ok(SparseUpdate { indices, values })
    }

    /// The indices, strictly increasing.
    pub fn indices(&self) -> &'a [u64] {
        self.indices
    }

    /// The values, in index order.
    pub fn values(&self) -> &'a [T] {
        self.values
    }

    /// Number of (index, value) pairs.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the update carries no pairs.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The (index, value) pairs in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, T)> + 'a {
        self.indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }
}

/// A sparse vector of logical length `len`: sorted (index, value) pairs,
/// every index below `len` and present at most once. Absent entries are zero.
///
/// Indices and values are kept in two parallel arrays (a structure of arrays)
/// so that they encode and merge without reshuffling.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseVector<I: SparseIndex, V: Element> {
    len: u64,
    indices: Vec<I>,
    values: Vec<V>,
}

impl<I: SparseIndex, V: Element> SparseVector<I, V> {
    /// An empty sparse vector of logical length `len`.
    pub fn new(len: u64) -> Self {
        SparseVector {
            len,
            indices: Vec::new(),
            values: Vec::new(),
        }
    }

    /// An empty sparse vector with room for `capacity` pairs.
    pub fn with_capacity(len: u64, capacity: usize) -> Self {
        SparseVector {
            len,
            indices: Vec::with_capacity(capacity),
            values: Vec::with_capacity(capacity),
        }
    }

    /// Builds a vector from pairs in any order; duplicate or out-of-range
    /// indices are rejected.
    pub fn from_pairs(
        len: u64,
        pairs: impl IntoIterator<Item = (I, V)>,
    ) -> Result<Self, WireError> {
        let mut pairs: Vec<(I, V)> = pairs.into_iter().collect();
        pairs.sort_by_key(|&(i, _)| i);
        let mut v = SparseVector::with_capacity(len, pairs.len());
        for (i, x) in pairs {
            let index = i.to_u64();
            if index >= len {
                return Err(WireError::IndexOutOfBounds { index, len });
            }
            if v.indices.last() == Some(&i) {
                return Err(WireError::DuplicateIndex { index });
            }
            v.indices.push(i);
            v.values.push(x);
        }
        Ok(v)
    }

    /// The logical length (dimension).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the logical length is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of stored (non-implicit) entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Sets entry `index` to `value`, returning the previous stored value.
    pub fn insert(&mut self, index: I, value: V) -> Result<Option<V>, WireError> {
        if index.to_u64() >= self.len {
            return Err(WireError::IndexOutOfBounds {
                index: index.to_u64(),
                len: self.len,
            });
        }
        match self.indices.binary_search(&index) {
            Ok(pos) => Ok(Some(std::mem::replace(&mut self.values[pos], value))),
            Err(pos) => {
                self.indices.insert(pos, index);
                self.values.insert(pos, value);
                Ok(None)
            }
        }
    }

    /// The stored value at `index`, if any.
    pub fn get(&self, index: I) -> Option<V> {
        self.indices
            .binary_search(&index)
            .ok()
            .map(|pos| self.values[pos])
    }

    /// Removes and returns the stored value at `index`, if any.
    pub fn remove(&mut self, index: I) -> Option<V> {
        let pos = self.indices.binary_search(&index).ok()?;
        self.indices.remove(pos);
        Some(self.values.remove(pos))
    }

    /// The index and value arrays, for code of this crate that keeps them
    /// strictly increasing, below the length, and of equal length.
    pub(crate) fn parts_mut(&mut self) -> (&mut Vec<I>, &mut Vec<V>) {
        (&mut self.indices, &mut self.values)
    }

    /// Removes every stored entry (keeps the length and the allocation).
    pub fn clear(&mut self) {
        self.indices.clear();
        self.values.clear();
    }

    /// The stored (index, value) pairs in index order.
    pub fn iter(&self) -> impl Iterator<Item = (I, V)> + '_ {
        self.indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }

    /// The stored indices, strictly increasing.
    pub fn indices(&self) -> &[I] {
        &self.indices
    }

    /// The stored values, in index order.
    pub fn values(&self) -> &[V] {
        &self.values
    }

    /// Writes the stored entries into `dense` (other entries untouched);
    /// `dense.len()` must equal the logical length.
    pub fn write_into_dense(&self, dense: &mut [V]) -> Result<(), WireError> {
        if dense.len() as u64 != self.len {
            return Err(WireError::LengthMismatch {
                what: "dense vector for a sparse vector's entries",
                expected: self.len,
                found: dense.len() as u64,
            });
        }
        for (&i, &x) in self.indices.iter().zip(&self.values) {
            // Every index is < len == dense.len(), so this is in range.
            if let Some(slot) = dense.get_mut(i.to_u64() as usize) {
                *slot = x;
            }
        }
        Ok(())
    }

    /// Bytes of this vector's sparse wire encoding.
    pub fn encoded_len(&self) -> Result<usize, WireError> {
        sparse_encoded_len::<V>(self.nnz(), self.len)
    }

    /// Encodes into the front of `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, WireError> {
        encode_sparse_into(&self.indices, &self.values, self.len, out)
    }

    /// Encodes into `out`, replacing its contents (reuses its allocation).
    pub fn encode_to_vec(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        encode_sparse_to_vec(&self.indices, &self.values, self.len, out)
    }

    /// Decodes a sparse update for a vector of length `len`.
    pub fn decode(bytes: &[u8], len: u64) -> Result<Self, WireError> {
        let header = SparseHeader::parse::<V>(bytes)?;
        let mut v = SparseVector::with_capacity(len, header.count);
        let (idx_bytes, val_bytes) = header.split(bytes);
        read_indices(idx_bytes, header.index_width, len, |index| {
            let i = I::from_u64(index).ok_or(WireError::IndexTooWide {
                index,
                width: I::WIDTH,
            })?;
            v.indices.push(i);
            Ok(())
        })?;
        v.values.extend(read_values::<V>(val_bytes));
        Ok(v)
    }
}

impl<V: Element> SparseVector<u64, V> {
    /// A borrowed view for merging.
    pub fn as_update(&self) -> SparseUpdate<'_, V> {
        SparseUpdate {
            indices: &self.indices,
            values: &self.values,
        }
    }
}

/// The parsed, validated header of a sparse update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseHeader {
    /// Number of pairs.
    pub count: usize,
    /// Index width in bytes: 4 or 8.
    pub index_width: usize,
    /// Value width in bytes: 4 or 8.
    pub value_width: usize,
}

impl SparseHeader {
    /// Parses and checks the header of `bytes` as a sparse update with
    /// element type `V`, including that the total length of `bytes` is
    /// exactly what the header implies. Does not look at the indices.
    pub fn parse<V: Element>(bytes: &[u8]) -> Result<Self, WireError> {
        let head = bytes
            .get(..SPARSE_HEADER_LEN)
            .ok_or(WireError::TruncatedHeader {
                len: bytes.len(),
                header: SPARSE_HEADER_LEN,
            })?;
        let mut count_bytes = [0u8; 8];
        count_bytes.copy_from_slice(&head[..8]);
        let count = u64::from_le_bytes(count_bytes);
        let iw = head[8];
        let vw = head[9];
        if iw != 4 && iw != 8 {
            return Err(WireError::BadIndexWidth(iw));
        }
        if usize::from(vw) != V::WIDTH {
            return Err(WireError::ValueWidthMismatch {
                expected: V::WIDTH,
                found: vw,
            });
        }
        if head[10..].iter().any(|&b| b != 0) {
            return Err(WireError::ReservedBytes);
        }
        let total = count
            .checked_mul(u64::from(iw) + u64::from(vw))
            .and_then(|b| b.checked_add(SPARSE_HEADER_LEN as u64))
            .ok_or(WireError::CountOverflow { count })?;
        if total != bytes.len() as u64 {
            return Err(WireError::LengthMismatch {
                what: "sparse update",
                expected: total,
                found: bytes.len() as u64,
            });
        }
        // total == bytes.len() fits in usize, hence so does count.
        let count = usize::try_from(count).map_err(|_| WireError::CountOverflow { count })?;
        Ok(SparseHeader {
            count,
            index_width: usize::from(iw),
            value_width: usize::from(vw),
        })
    }

    /// Splits a validated message into its index bytes and value bytes.
    fn split<'b>(&self, bytes: &'b [u8]) -> (&'b [u8], &'b [u8]) {
        let body = &bytes[SPARSE_HEADER_LEN..];
        body.split_at(self.count * self.index_width)
    }
}

/// Reads `idx_bytes` as indices of width `iw`, checking that they are
/// strictly increasing and below `len`, and hands each to `sink`.
fn read_indices(
    idx_bytes: &[u8],
    iw: usize,
    len: u64,
    mut sink: impl FnMut(u64) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut previous: Option<u64> = None;
    for (position, chunk) in idx_bytes.chunks_exact(iw).enumerate() {
        let index = if iw == 4 {
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            u64::from(u32::from_le_bytes(b))
        } else {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            u64::from_le_bytes(b)
        };
        if let Some(previous) = previous {
            if index <= previous {
                return Err(WireError::NotSorted {
                    previous,
                    index,
                    position,
                });
            }
        }
        if index >= len {
            return Err(WireError::IndexOutOfRange {
                index,
                position,
                len,
            });
        }
        previous = Some(index);
        sink(index)?;
    }
    Ok(())
}

/// Reads `bytes` (a multiple of `V::WIDTH`) as little-endian values.
fn read_values<V: Element>(bytes: &[u8]) -> impl Iterator<Item = V> + '_ {
    bytes.chunks_exact(V::WIDTH).map(|chunk| {
        let mut b = V::Bytes::default();
        b.as_mut().copy_from_slice(chunk);
        V::from_le_bytes(b)
    })
}

/// Bytes of the sparse encoding of `count` pairs of a vector of length `len`
/// with element type `V`.
pub fn sparse_encoded_len<V: Element>(count: usize, len: u64) -> Result<usize, WireError> {
    count
        .checked_mul(wire_index_width(len) + V::WIDTH)
        .and_then(|b| b.checked_add(SPARSE_HEADER_LEN))
        .ok_or(WireError::CountOverflow {
            count: count as u64,
        })
}

/// Encodes the pairs `(indices[i], values[i])` of a vector of length `len`
/// into the front of `out`, returning the bytes written.
///
/// Checks that the arrays have the same length, that indices are strictly
/// increasing and below `len`, and that `out` is large enough.
pub fn encode_sparse_into<I: SparseIndex, V: Element>(
    indices: &[I],
    values: &[V],
    len: u64,
    out: &mut [u8],
) -> Result<usize, WireError> {
    if indices.len() != values.len() {
        return Err(WireError::PairCountMismatch {
            indices: indices.len(),
            values: values.len(),
        });
    }
    check_indices(indices, len)?;
    let needed = sparse_encoded_len::<V>(indices.len(), len)?;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(WireError::BufferTooSmall { needed, available })?;
    let iw = wire_index_width(len);
    let (head, body) = out.split_at_mut(SPARSE_HEADER_LEN);
    head.fill(0);
    head[..8].copy_from_slice(&(indices.len() as u64).to_le_bytes());
    head[8] = iw as u8;
    head[9] = V::WIDTH as u8;
    let (idx_out, val_out) = body.split_at_mut(indices.len() * iw);
    if iw == 4 {
        for (chunk, &i) in idx_out.chunks_exact_mut(4).zip(indices) {
            // Indices are < len <= 2^32, so they fit in u32.
            chunk.copy_from_slice(&(i.to_u64() as u32).to_le_bytes());
        }
    } else {
        for (chunk, &i) in idx_out.chunks_exact_mut(8).zip(indices) {
            chunk.copy_from_slice(&i.to_u64().to_le_bytes());
        }
    }
    write_values(values, val_out);
    Ok(needed)
}

/// Like [`encode_sparse_into`], writing into `out` after clearing it (its
/// allocation is reused).
pub fn encode_sparse_to_vec<I: SparseIndex, V: Element>(
    indices: &[I],
    values: &[V],
    len: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    out.clear();
    out.resize(sparse_encoded_len::<V>(indices.len(), len)?, 0);
    encode_sparse_into(indices, values, len, out)?;
    Ok(())
}

/// Decodes a sparse update for a vector of length `len` into the reusable
/// buffers `indices` and `values` (cleared first; on error they are left
/// empty). Accepts 4- and 8-byte indices.
pub fn decode_sparse_into<V: Element>(
    bytes: &[u8],
    len: u64,
    indices: &mut Vec<u64>,
    values: &mut Vec<V>,
) -> Result<(), WireError> {
    indices.clear();
    values.clear();
    let header = SparseHeader::parse::<V>(bytes)?;
    let (idx_bytes, val_bytes) = header.split(bytes);
    indices.reserve(header.count);
    let r = read_indices(idx_bytes, header.index_width, len, |i| {
        indices.push(i);
        Ok(())
    });
    if let Err(e) = r {
        indices.clear();
        return Err(e);
    }
    values.extend(read_values::<V>(val_bytes));
    Ok(())
}

fn write_values<T: Element>(src: &[T], out: &mut [u8]) {
    for (chunk, &x) in out.chunks_exact_mut(T::WIDTH).zip(src) {
        chunk.copy_from_slice(x.to_le_bytes().as_ref());
    }
}

/// Bytes of the dense encoding of `n` elements of type `T`.
pub fn dense_encoded_len<T: Element>(n: usize) -> Result<usize, WireError> {
    n.checked_mul(T::WIDTH)
        .ok_or(WireError::CountOverflow { count: n as u64 })
}

/// Encodes `src` into the front of the preallocated `out` (little-endian,
/// no header), returning the bytes written. Does not allocate.
pub fn encode_dense_into<T: Element>(src: &[T], out: &mut [u8]) -> Result<usize, WireError> {
    let needed = dense_encoded_len::<T>(src.len())?;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(WireError::BufferTooSmall { needed, available })?;
    write_values(src, out);
    Ok(needed)
}

/// Decodes a dense update into `dst`, whose length must match exactly
/// (`bytes.len() == dst.len() * width`). Does not allocate; on error `dst` is
/// untouched.
pub fn decode_dense_into<T: Element>(bytes: &[u8], dst: &mut [T]) -> Result<(), WireError> {
    let expected = dense_encoded_len::<T>(dst.len())?;
    if bytes.len() != expected {
        return Err(WireError::LengthMismatch {
            what: "dense update",
            expected: expected as u64,
            found: bytes.len() as u64,
        });
    }
    for (x, v) in dst.iter_mut().zip(read_values::<T>(bytes)) {
        *x = v;
    }
    Ok(())
}

/// How a dense vector's updates are sent (a per-vector hint).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Representation {
    /// Always the whole vector (the default: no diff is computed and no
    /// previous copy is kept).
    #[default]
    Dense,
    /// Always the entries changed since the last send, as a sparse update.
    Sparse,
    /// Sparse when the changed fraction is below `threshold`, else dense; see
    /// [`diff_into`].
    Auto {
        /// Changed fraction in `[0, 1]` below which the update is sparse.
        threshold: f64,
    },
}

impl Representation {
    /// `Auto` with [`DEFAULT_SPARSE_THRESHOLD`].
    pub const fn auto() -> Self {
        Representation::Auto {
            threshold: DEFAULT_SPARSE_THRESHOLD,
        }
    }

    /// Checks the threshold of `Auto` (a number in `[0, 1]`).
    pub fn validate(&self) -> Result<(), WireError> {
        match *self {
            Representation::Auto { threshold } if !(0.0..=1.0).contains(&threshold) => {
                Err(WireError::BadThreshold(threshold))
            }
            _ => Ok(()),
        }
    }

    /// Whether sending needs a diff against the previously sent copy.
    pub fn needs_previous(&self) -> bool {
        !matches!(self, Representation::Dense)
    }
}

impl fmt::Display for Representation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Representation::Dense => f.write_str("dense"),
            Representation::Sparse => f.write_str("sparse"),
            Representation::Auto { threshold } => write!(f, "auto:{threshold}"),
        }
    }
}

impl FromStr for Representation {
    type Err = ParseError;

    /// Parses `dense`, `sparse`, `auto` (default threshold) or `auto:T` with
    /// `T` in `[0, 1]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseError::new("representation", s, reason);
        let t = s.trim().to_ascii_lowercase();
        match t.split_once(':') {
            None => match t.as_str() {
                "dense" => Ok(Representation::Dense),
                "sparse" => Ok(Representation::Sparse),
                "auto" => Ok(Representation::auto()),
                _ => Err(err("expected dense, sparse, auto or auto:THRESHOLD".into())),
            },
            Some(("auto", th)) => {
                let threshold: f64 = th
                    .trim()
                    .parse()
                    .map_err(|e| err(format!("threshold {th:?}: {e}")))?;
                let r = Representation::Auto { threshold };
                r.validate().map_err(|e| err(e.to_string()))?;
                Ok(r)
            }
            Some(_) => Err(err("expected dense, sparse, auto or auto:THRESHOLD".into())),
        }
    }
}

/// The encoding chosen for one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The whole vector.
    Dense,
    /// The changed entries, as (index, value) pairs.
    Sparse,
}

fn check_same_len<T>(current: &[T], previous: &[T]) -> Result<(), WireError> {
    if current.len() != previous.len() {
        return Err(WireError::LengthMismatch {
            what: "previously sent copy (elements)",
            expected: current.len() as u64,
            found: previous.len() as u64,
        });
    }
    Ok(())
}

/// Number of entries whose bit pattern differs between `current` and
/// `previous`.
pub fn changed_count<T: Element>(current: &[T], previous: &[T]) -> Result<usize, WireError> {
    check_same_len(current, previous)?;
    Ok(current
        .iter()
        .zip(previous)
        .filter(|(a, b)| a.to_bits_u64() != b.to_bits_u64())
        .count())
}

/// Decides how to send `current` given the copy sent last time, and for a
/// sparse update fills the reusable buffers with the changed entries.
///
/// * [`Representation::Dense`]: returns [`Encoding::Dense`] without scanning.
/// * [`Representation::Sparse`]: always [`Encoding::Sparse`] with every
///   changed entry.
/// * [`Representation::Auto`]`{ threshold }`: [`Encoding::Sparse`] if the
///   number of changed entries `c` satisfies `c < threshold * len`, else
///   [`Encoding::Dense`]. The scan stops as soon as the limit is reached.
///   (Threshold 0 therefore always sends dense; an empty vector with a
///   positive threshold sends an empty sparse update.)
///
/// `indices` and `values` are cleared first; they hold the changed entries,
/// in index order, only when the result is `Sparse`. A sparse update carries
/// new *values*, not deltas. The caller updates its previous copy after the
/// send succeeds.
pub fn diff_into<T: Element>(
    current: &[T],
    previous: &[T],
    repr: Representation,
    indices: &mut Vec<u64>,
    values: &mut Vec<T>,
) -> Result<Encoding, WireError> {
    repr.validate()?;
    check_same_len(current, previous)?;
    indices.clear();
    values.clear();
    let limit = match repr {
        Representation::Dense => return Ok(Encoding::Dense),
        Representation::Sparse => None,
        Representation::Auto { threshold } => Some(threshold * current.len() as f64),
    };
    for (i, (a, b)) in current.iter().zip(previous).enumerate() {
        if a.to_bits_u64() != b.to_bits_u64() {
            indices.push(i as u64);
            values.push(*a);
            if let Some(limit) = limit {
                if indices.len() as f64 >= limit {
                    indices.clear();
                    values.clear();
                    return Ok(Encoding::Dense);
                }
            }
        }
    }
    if let Some(limit) = limit {
        // Covers the case of no changes at all with a zero limit.
        if indices.len() as f64 >= limit {
            return Ok(Encoding::Dense);
        }
    }
    Ok(Encoding::Sparse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sparse_vector_basics() {
        let mut v = SparseVector::<u32, f32>::new(10);
        assert_eq!(v.insert(7, 1.0).unwrap(), None);
        assert_eq!(v.insert(2, 2.0).unwrap(), None);
        assert_eq!(v.insert(7, 3.0).unwrap(), Some(1.0));
        assert_eq!(
            v.insert(10, 0.0),
            Err(WireError::IndexOutOfBounds { index: 10, len: 10 })
        );
        assert_eq!(v.nnz(), 2);
        assert_eq!(v.len(), 10);
        assert_eq!(v.get(7), Some(3.0));
        assert_eq!(v.get(3), None);
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![(2, 2.0), (7, 3.0)]);
        let mut dense = vec![9.0f32; 10];
        v.write_into_dense(&mut dense).unwrap();
        assert_eq!(dense[2], 2.0);
        assert_eq!(dense[7], 3.0);
        assert_eq!(dense[0], 9.0);
        assert!(v.write_into_dense(&mut [0.0; 3]).is_err());
        assert_eq!(v.remove(2), Some(2.0));
        assert_eq!(v.remove(2), None);
        v.clear();
        assert_eq!(v.nnz(), 0);
    }

    #[test]
    fn from_pairs_sorts_and_rejects_duplicates() {
        let v = SparseVector::<u64, f64>::from_pairs(5, [(4, 1.0), (0, 2.0)]).unwrap();
        assert_eq!(v.indices(), &[0, 4]);
        assert_eq!(v.values(), &[2.0, 1.0]);
        assert_eq!(
            SparseVector::<u64, f64>::from_pairs(5, [(1, 1.0), (1, 2.0)]),
            Err(WireError::DuplicateIndex { index: 1 })
        );
        assert_eq!(
            SparseVector::<u64, f64>::from_pairs(5, [(5, 1.0)]),
            Err(WireError::IndexOutOfBounds { index: 5, len: 5 })
        );
    }

    #[test]
    fn sparse_update_checks_invariants() {
        assert!(SparseUpdate::new(&[1, 3], &[1.0f32, 2.0]).is_ok());
        assert_eq!(
            SparseUpdate::new(&[1, 3], &[1.0f32]),
            Err(WireError::PairCountMismatch {
                indices: 2,
                values: 1
            })
        );
        assert!(matches!(
            SparseUpdate::new(&[3, 3], &[1.0f32, 2.0]),
            Err(WireError::NotSorted { position: 1, .. })
        ));
        assert!(matches!(
            SparseUpdate::new(&[5, 1], &[1.0f32, 2.0]),
            Err(WireError::NotSorted { .. })
        ));
    }

    #[test]
    fn sparse_encoding_layout() {
        let v = SparseVector::<u32, f32>::from_pairs(100, [(1, 1.0), (0, 2.0)]).unwrap();
        let mut bytes = Vec::new();
        v.encode_to_vec(&mut bytes).unwrap();
        let mut expect = vec![2, 0, 0, 0, 0, 0, 0, 0, 4, 4, 0, 0, 0, 0, 0, 0];
        expect.extend_from_slice(&0u32.to_le_bytes());
        expect.extend_from_slice(&1u32.to_le_bytes());
        expect.extend_from_slice(&2.0f32.to_le_bytes());
        expect.extend_from_slice(&1.0f32.to_le_bytes());
        assert_eq!(bytes, expect);
        assert_eq!(v.encoded_len().unwrap(), bytes.len());
        // Vectors longer than 2^32 use 8-byte indices.
        let big = SparseVector::<u64, f64>::from_pairs(1 << 40, [(1 << 35, 1.0)]).unwrap();
        big.encode_to_vec(&mut bytes).unwrap();
        assert_eq!(bytes[8], 8);
        assert_eq!(bytes[9], 8);
        assert_eq!(bytes.len(), 16 + 16);
        assert_eq!(
            SparseVector::<u64, f64>::decode(&bytes, 1 << 40).unwrap(),
            big
        );
        // ... and do not fit a u32-indexed vector.
        assert_eq!(
            SparseVector::<u32, f64>::decode(&bytes, 1 << 40),
            Err(WireError::IndexTooWide {
                index: 1 << 35,
                width: 4
            })
        );
    }

    #[test]
    fn encoder_checks_its_input() {
        let mut out = [0u8; 64];
        assert!(matches!(
            encode_sparse_into(&[2u64, 1], &[1.0f32, 2.0], 10, &mut out),
            Err(WireError::NotSorted { .. })
        ));
        assert!(matches!(
            encode_sparse_into(&[10u64], &[1.0f32], 10, &mut out),
            Err(WireError::IndexOutOfRange { index: 10, .. })
        ));
        assert!(matches!(
            encode_sparse_into(&[1u64], &[1.0f32, 2.0], 10, &mut out),
            Err(WireError::PairCountMismatch { .. })
        ));
        assert_eq!(
            encode_sparse_into(&[1u64, 2], &[1.0f32, 2.0], 10, &mut out[..20]),
            Err(WireError::BufferTooSmall {
                needed: 32,
                available: 20
            })
        );
        assert_eq!(
            encode_sparse_into(&[1u64, 2], &[1.0f32, 2.0], 10, &mut out),
            Ok(32)
        );
    }

    fn valid_message() -> Vec<u8> {
        let v = SparseVector::<u32, f32>::from_pairs(10, [(1, 1.0), (4, 2.0)]).unwrap();
        let mut bytes = Vec::new();
        v.encode_to_vec(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn decoder_rejects_each_kind_of_damage() {
        let good = valid_message();
        let mut idx = Vec::new();
        let mut val = Vec::<f32>::new();
        decode_sparse_into(&good, 10, &mut idx, &mut val).unwrap();
        assert_eq!(idx, vec![1, 4]);
        assert_eq!(val, vec![1.0, 2.0]);

        let decode = |b: &[u8], len: u64| {
            let mut idx = vec![99];
            let mut val = vec![99.0f32];
            let r = decode_sparse_into(b, len, &mut idx, &mut val);
            if r.is_err() {
                assert!(idx.is_empty() && val.is_empty(), "buffers left dirty");
            }
            r
        };
        assert_eq!(
            decode(&good[..10], 10),
            Err(WireError::TruncatedHeader {
                len: 10,
                header: 16
            })
        );
        let mut b = good.clone();
        b[8] = 2;
        assert_eq!(decode(&b, 10), Err(WireError::BadIndexWidth(2)));
        let mut b = good.clone();
        b[9] = 8;
        assert_eq!(
            decode(&b, 10),
            Err(WireError::ValueWidthMismatch {
                expected: 4,
                found: 8
            })
        );
        let mut b = good.clone();
        b[15] = 1;
        assert_eq!(decode(&b, 10), Err(WireError::ReservedBytes));
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(
            decode(&b, 10),
            Err(WireError::LengthMismatch {
                expected: 32,
                found: 33,
                ..
            })
        ));
        let mut b = good.clone();
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            decode(&b, 10),
            Err(WireError::CountOverflow { count: u64::MAX })
        );
        // Index 4 is out of range for a vector of length 4.
        assert!(matches!(
            decode(&good, 4),
            Err(WireError::IndexOutOfRange {
                index: 4,
                position: 1,
                len: 4
            })
        ));
        // Swap the two indices.
        let mut b = good.clone();
        b[16..20].copy_from_slice(&4u32.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            decode(&b, 10),
            Err(WireError::NotSorted {
                previous: 4,
                index: 1,
                position: 1
            })
        ));
        // Duplicate index.
        let mut b = good.clone();
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(decode(&b, 10), Err(WireError::NotSorted { .. })));
        // Reading as f64 fails on the value width.
        let mut i2 = Vec::new();
        let mut v2 = Vec::<f64>::new();
        assert!(matches!(
            decode_sparse_into(&good, 10, &mut i2, &mut v2),
            Err(WireError::ValueWidthMismatch { .. })
        ));
    }

    #[test]
    fn dense_round_trip_and_length_checks() {
        let src = [1.0f64, -2.5, f64::INFINITY];
        let mut buf = [0u8; 32];
        assert_eq!(encode_dense_into(&src, &mut buf), Ok(24));
        let mut dst = [0.0f64; 3];
        decode_dense_into(&buf[..24], &mut dst).unwrap();
        assert_eq!(dst, src);
        assert_eq!(
            encode_dense_into(&src, &mut buf[..23]),
            Err(WireError::BufferTooSmall {
                needed: 24,
                available: 23
            })
        );
        let mut dst = [7.0f64; 3];
        assert!(matches!(
            decode_dense_into(&buf[..32], &mut dst),
            Err(WireError::LengthMismatch {
                expected: 24,
                found: 32,
                ..
            })
        ));
        assert_eq!(dst, [7.0; 3], "dst must be untouched on error");
        let src32 = [0.5f32, 1.5];
        let mut b32 = [0u8; 8];
        encode_dense_into(&src32, &mut b32).unwrap();
        assert_eq!(&b32[..4], &0.5f32.to_le_bytes());
        let mut d32 = [0.0f32; 2];
        decode_dense_into(&b32, &mut d32).unwrap();
        assert_eq!(d32, src32);
    }

    #[test]
    fn representation_text() {
        for (s, r) in [
            ("dense", Representation::Dense),
            ("sparse", Representation::Sparse),
            ("auto:0.25", Representation::Auto { threshold: 0.25 }),
            ("auto:0.1", Representation::auto()),
        ] {
            assert_eq!(s.parse::<Representation>().unwrap(), r);
            assert_eq!(r.to_string(), s);
        }
        assert_eq!(
            "auto".parse::<Representation>().unwrap(),
            Representation::Auto { threshold: 0.1 }
        );
        for bad in [
            "",
            "auto:",
            "auto:1.5",
            "auto:-0.1",
            "auto:NaN",
            "dense:1",
            "csr",
        ] {
            assert!(bad.parse::<Representation>().is_err(), "{bad}");
        }
        assert_eq!(Representation::default(), Representation::Dense);
        assert!(!Representation::Dense.needs_previous());
        assert!(Representation::auto().needs_previous());
    }

    #[test]
    fn auto_representation_switches_at_the_threshold() {
        let prev = vec![0.0f32; 100];
        let mut idx = Vec::new();
        let mut val = Vec::new();
        let auto = Representation::auto();
        for changed in 0..=100usize {
            let mut cur = prev.clone();
            for (i, x) in cur.iter_mut().enumerate().take(changed) {
                *x = i as f32 + 1.0;
            }
            assert_eq!(changed_count(&cur, &prev).unwrap(), changed);
            let enc = diff_into(&cur, &prev, auto, &mut idx, &mut val).unwrap();
            if changed < 10 {
                assert_eq!(enc, Encoding::Sparse, "{changed} changed");
                assert_eq!(idx, (0..changed as u64).collect::<Vec<_>>());
                assert_eq!(val, cur[..changed]);
                // Applying the diff to the previous copy gives the current one.
                let mut rebuilt = prev.clone();
                for (&i, &v) in idx.iter().zip(&val) {
                    rebuilt[i as usize] = v;
                }
                assert_eq!(rebuilt, cur);
            } else {
                assert_eq!(enc, Encoding::Dense, "{changed} changed");
                assert!(idx.is_empty() && val.is_empty());
            }
            // Forced modes.
            let enc = diff_into(&cur, &prev, Representation::Sparse, &mut idx, &mut val).unwrap();
            assert_eq!(enc, Encoding::Sparse);
            assert_eq!(idx.len(), changed);
            let enc = diff_into(&cur, &prev, Representation::Dense, &mut idx, &mut val).unwrap();
            assert_eq!(enc, Encoding::Dense);
        }
        // Threshold 0 never sends sparse; threshold 1 sends sparse unless
        // everything changed.
        let cur = prev.clone();
        let zero = Representation::Auto { threshold: 0.0 };
        assert_eq!(
            diff_into(&cur, &prev, zero, &mut idx, &mut val).unwrap(),
            Encoding::Dense
        );
        let one = Representation::Auto { threshold: 1.0 };
        let mut cur = vec![1.0f32; 100];
        cur[0] = 0.0;
        assert_eq!(
            diff_into(&cur, &prev, one, &mut idx, &mut val).unwrap(),
            Encoding::Sparse
        );
        cur[0] = 1.0;
        assert_eq!(
            diff_into(&cur, &prev, one, &mut idx, &mut val).unwrap(),
            Encoding::Dense
        );
    }

    #[test]
    fn diff_uses_bit_equality_and_checks_lengths() {
        let prev = [f64::NAN, 0.0, 1.0];
        let cur = [f64::NAN, -0.0, 1.0];
        let mut idx = Vec::new();
        let mut val = Vec::new();
        diff_into(&cur, &prev, Representation::Sparse, &mut idx, &mut val).unwrap();
        assert_eq!(idx, vec![1]);
        assert!(matches!(
            diff_into(&cur, &prev[..2], Representation::Sparse, &mut idx, &mut val),
            Err(WireError::LengthMismatch { .. })
        ));
        assert_eq!(
            diff_into(
                &cur,
                &prev,
                Representation::Auto { threshold: 2.0 },
                &mut idx,
                &mut val
            ),
            Err(WireError::BadThreshold(2.0))
        );
    }

    /// Strictly increasing indices below `len`, with values.
    fn sparse_pairs() -> impl Strategy<Value = (u64, Vec<(u64, f32)>)> {
        (1u64..5_000).prop_flat_map(|len| {
            (
                Just(len),
                proptest::collection::btree_map(0..len, any::<f32>(), 0..64)
                    .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
            )
        })
    }

    proptest! {
        #[test]
        fn sparse_round_trip((len, pairs) in sparse_pairs()) {
            let v = SparseVector::<u32, f32>::from_pairs(len, pairs.iter().map(|&(i, x)| (i as u32, x))).unwrap();
            let mut bytes = Vec::new();
            v.encode_to_vec(&mut bytes).unwrap();
            prop_assert_eq!(bytes.len(), v.encoded_len().unwrap());
            let back = SparseVector::<u32, f32>::decode(&bytes, len).unwrap();
            prop_assert_eq!(back.indices(), v.indices());
            // Compare bits: NaN payloads must survive.
            let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(back.values()), bits(v.values()));
            let mut idx = Vec::new();
            let mut val = Vec::<f32>::new();
            decode_sparse_into(&bytes, len, &mut idx, &mut val).unwrap();
            prop_assert_eq!(idx, pairs.iter().map(|p| p.0).collect::<Vec<_>>());
            prop_assert_eq!(bits(&val), pairs.iter().map(|p| p.1.to_bits()).collect::<Vec<_>>());
            // The same pairs through the u64-indexed type and the free encoder.
            let v64 = SparseVector::<u64, f32>::from_pairs(len, pairs.iter().copied()).unwrap();
            let mut bytes64 = Vec::new();
            encode_sparse_to_vec(v64.indices(), v64.values(), len, &mut bytes64).unwrap();
            prop_assert_eq!(&bytes64, &bytes);
        }

        #[test]
        fn dense_round_trip(values in proptest::collection::vec(any::<f64>(), 0..200)) {
            let mut buf = vec![0u8; values.len() * 8];
            encode_dense_into(&values, &mut buf).unwrap();
            let mut back = vec![0.0f64; values.len()];
            decode_dense_into(&buf, &mut back).unwrap();
            let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&back), bits(&values));
        }

        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            len in any::<u64>(),
        ) {
            let mut idx = Vec::new();
            let mut v32 = Vec::<f32>::new();
            let mut v64 = Vec::<f64>::new();
            if decode_sparse_into(&bytes, len, &mut idx, &mut v32).is_ok() {
                prop_assert_eq!(idx.len(), v32.len());
                prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(idx.iter().all(|&i| i < len));
            }
            let _ = decode_sparse_into(&bytes, len, &mut idx, &mut v64);
            let _ = SparseVector::<u32, f32>::decode(&bytes, len);
            let _ = SparseVector::<u64, f64>::decode(&bytes, len);
            let mut dense = vec![0.0f32; (len % 64) as usize];
            let _ = decode_dense_into(&bytes, &mut dense);
        }

        #[test]
        fn decoder_never_panics_on_damaged_messages(
            (len, pairs) in sparse_pairs(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let v = SparseVector::<u64, f32>::from_pairs(len, pairs).unwrap();
            let mut bytes = Vec::new();
            v.encode_to_vec(&mut bytes).unwrap();
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= b;
            }
            let end = cut.index(bytes.len() + 1);
            let mut idx = Vec::new();
            let mut val = Vec::<f32>::new();
            for slice in [&bytes[..], &bytes[..end]] {
                if decode_sparse_into(slice, len, &mut idx, &mut val).is_ok() {
                    prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(idx.iter().all(|&i| i < len));
                }
            }
        }
    }
}
