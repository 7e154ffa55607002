//! The sparse data a vector holds and merges: [`SparseEntries`] (sorted
//! index/value pairs of a vector of some logical length, the local value of
//! a [`crate::SparseVector`]), [`SparseUpdate`] (a borrowed update ready to
//! merge) and [`SparseIndex`], their index types.
//!
//! Their byte encodings are in [`crate::wire`].

use std::fmt;

use crate::element::{Element, Sealed};
use crate::wire::{
    check_indices, encode_sparse_into, encode_sparse_to_vec, read_indices, read_values,
    sparse_encoded_len, EncodingError, SparseHeader,
};

/// An index type of a [`SparseEntries`]: `u32` or `u64`.
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
    pub fn new(indices: &'a [u64], values: &'a [T]) -> Result<Self, EncodingError> {
        if indices.len() != values.len() {
            return Err(EncodingError::PairCountMismatch {
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
pub struct SparseEntries<I: SparseIndex, V: Element> {
    len: u64,
    indices: Vec<I>,
    values: Vec<V>,
}

impl<I: SparseIndex, V: Element> SparseEntries<I, V> {
    /// An empty sparse vector of logical length `len`.
    pub fn new(len: u64) -> Self {
        SparseEntries {
            len,
            indices: Vec::new(),
            values: Vec::new(),
        }
    }

    /// An empty sparse vector with room for `capacity` pairs.
    pub fn with_capacity(len: u64, capacity: usize) -> Self {
        SparseEntries {
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
    ) -> Result<Self, EncodingError> {
        let mut pairs: Vec<(I, V)> = pairs.into_iter().collect();
        pairs.sort_by_key(|&(i, _)| i);
        let mut v = SparseEntries::with_capacity(len, pairs.len());
        for (i, x) in pairs {
            let index = i.to_u64();
            if index >= len {
                return Err(EncodingError::IndexOutOfBounds { index, len });
            }
            if v.indices.last() == Some(&i) {
                return Err(EncodingError::DuplicateIndex { index });
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
    pub fn insert(&mut self, index: I, value: V) -> Result<Option<V>, EncodingError> {
        if index.to_u64() >= self.len {
            return Err(EncodingError::IndexOutOfBounds {
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
    pub fn write_into_dense(&self, dense: &mut [V]) -> Result<(), EncodingError> {
        if dense.len() as u64 != self.len {
            return Err(EncodingError::LengthMismatch {
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
    pub fn encoded_len(&self) -> Result<usize, EncodingError> {
        sparse_encoded_len::<V>(self.nnz(), self.len)
    }

    /// Encodes into the front of `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, EncodingError> {
        encode_sparse_into(&self.indices, &self.values, self.len, out)
    }

    /// Encodes into `out`, replacing its contents (reuses its allocation).
    pub fn encode_to_vec(&self, out: &mut Vec<u8>) -> Result<(), EncodingError> {
        encode_sparse_to_vec(&self.indices, &self.values, self.len, out)
    }

    /// Decodes a sparse update for a vector of length `len`.
    pub fn decode(bytes: &[u8], len: u64) -> Result<Self, EncodingError> {
        let header = SparseHeader::parse::<V>(bytes)?;
        let mut v = SparseEntries::with_capacity(len, header.count);
        let (idx_bytes, val_bytes) = header.split(bytes);
        read_indices(idx_bytes, header.index_width, len, |index| {
            let i = I::from_u64(index).ok_or(EncodingError::IndexTooWide {
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

impl<V: Element> SparseEntries<u64, V> {
    /// A borrowed view for merging.
    pub fn as_update(&self) -> SparseUpdate<'_, V> {
        SparseUpdate {
            indices: &self.indices,
            values: &self.values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_vector_basics() {
        let mut v = SparseEntries::<u32, f32>::new(10);
        assert_eq!(v.insert(7, 1.0).unwrap(), None);
        assert_eq!(v.insert(2, 2.0).unwrap(), None);
        assert_eq!(v.insert(7, 3.0).unwrap(), Some(1.0));
        assert_eq!(
            v.insert(10, 0.0),
            Err(EncodingError::IndexOutOfBounds { index: 10, len: 10 })
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
        let v = SparseEntries::<u64, f64>::from_pairs(5, [(4, 1.0), (0, 2.0)]).unwrap();
        assert_eq!(v.indices(), &[0, 4]);
        assert_eq!(v.values(), &[2.0, 1.0]);
        assert_eq!(
            SparseEntries::<u64, f64>::from_pairs(5, [(1, 1.0), (1, 2.0)]),
            Err(EncodingError::DuplicateIndex { index: 1 })
        );
        assert_eq!(
            SparseEntries::<u64, f64>::from_pairs(5, [(5, 1.0)]),
            Err(EncodingError::IndexOutOfBounds { index: 5, len: 5 })
        );
    }

    #[test]
    fn sparse_update_checks_invariants() {
        assert!(SparseUpdate::new(&[1, 3], &[1.0f32, 2.0]).is_ok());
        assert_eq!(
            SparseUpdate::new(&[1, 3], &[1.0f32]),
            Err(EncodingError::PairCountMismatch {
                indices: 2,
                values: 1
            })
        );
        assert!(matches!(
            SparseUpdate::new(&[3, 3], &[1.0f32, 2.0]),
            Err(EncodingError::NotSorted { position: 1, .. })
        ));
        assert!(matches!(
            SparseUpdate::new(&[5, 1], &[1.0f32, 2.0]),
            Err(EncodingError::NotSorted { .. })
        ));
    }
}
