//! vol's byte format: the header in front of every update vol writes
//! through dstorm, the sparse and dense encodings of update bodies, and
//! [`EncodingError`], what goes wrong reading or writing them.
//!
//! All multi-byte numbers are little-endian.
//!
//! # Update header
//!
//! dstorm carries opaque bytes (its own slot header holds the sender, the
//! iteration and the length); vol prefixes each payload with 32 bytes of its
//! own:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "VOL1"
//! 4       1     kind: 1 = dense vector, 2 = sparse diff of a dense vector,
//!               3 = the entries of a sparse vector
//! 5       1     value width in bytes: 4 (f32) or 8 (f64)
//! 6       1     index width of the sender's sparse vector (kind 3), else 0
//! 7       1     reserved, zero
//! 8       8     version: the sender's scatter count for this vector (1, 2, ...)
//! 16      8     base: for a diff, the version it applies on top of; else 0
//! 24      8     the vector's logical length
//! 32      ...   body: the dense elements (kind 1) or a sparse encoding
//!               (kinds 2 and 3)
//! ```
//!
//! The header is 32 bytes so that the body stays aligned for both element
//! types: a dense vector keeps the header in front of its own elements and
//! hands the whole buffer to dstorm without copying it first.
//!
//! # Dense body
//!
//! The `n` elements back to back, `n * width` bytes, no header of its own
//! (the receiver knows the vector's length and element type). See
//! [`encode_dense_into`] and [`decode_dense_into`].
//!
//! # Sparse body
//!
//! A 16-byte header followed by the indices, then the values:
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

use crate::element::{Element, ElementKind};
use crate::entries::SparseIndex;

/// Bytes of the update header.
pub const HEADER_LEN: usize = 32;

const MAGIC: [u8; 4] = *b"VOL1";

/// What an update's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The whole dense vector.
    Dense,
    /// The entries of a dense vector that changed since version `base`.
    Diff,
    /// All stored entries of a sparse vector.
    Pairs,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Dense => 1,
            Kind::Diff => 2,
            Kind::Pairs => 3,
        }
    }

    fn from_code(c: u8) -> Option<Kind> {
        match c {
            1 => Some(Kind::Dense),
            2 => Some(Kind::Diff),
            3 => Some(Kind::Pairs),
            _ => None,
        }
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub kind: Kind,
    /// Value width in bytes.
    pub value_width: u8,
    /// Index width of a sparse vector (kind `Pairs`), else 0.
    pub index_width: u8,
    /// The sender's scatter count.
    pub version: u64,
    /// The version a diff applies on.
    pub base: u64,
    /// The vector's logical length.
    pub len: u64,
}

impl Header {
    /// A header for an update of a vector with elements of `element`.
    pub fn new(kind: Kind, element: ElementKind, version: u64, base: u64, len: u64) -> Header {
        Header {
            kind,
            value_width: element.width() as u8,
            index_width: 0,
            version,
            base,
            len,
        }
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`
    /// (which must be at least that long).
    pub fn write(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = self.kind.code();
        out[5] = self.value_width;
        out[6] = self.index_width;
        out[7] = 0;
        out[8..16].copy_from_slice(&self.version.to_le_bytes());
        out[16..24].copy_from_slice(&self.base.to_le_bytes());
        out[24..32].copy_from_slice(&self.len.to_le_bytes());
    }

    /// Parses the header at the front of `bytes`; the error says what is
    /// wrong.
    pub fn parse(bytes: &[u8]) -> Result<Header, EncodingError> {
        let h = bytes
            .get(..HEADER_LEN)
            .ok_or(EncodingError::TruncatedUpdate { len: bytes.len() })?;
        if h[..4] != MAGIC {
            return Err(EncodingError::BadMagic([h[0], h[1], h[2], h[3]]));
        }
        let kind = Kind::from_code(h[4]).ok_or(EncodingError::UnknownKind(h[4]))?;
        if h[7] != 0 {
            return Err(EncodingError::ReservedHeaderByte);
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Header {
            kind,
            value_width: h[5],
            index_width: h[6],
            version: word(8),
            base: word(16),
            len: word(24),
        })
    }
}

/// Size of the sparse update header in bytes.
pub const SPARSE_HEADER_LEN: usize = 16;

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
pub(crate) fn check_indices<I: SparseIndex>(indices: &[I], len: u64) -> Result<(), EncodingError> {
    let mut previous: Option<u64> = None;
    for (position, &i) in indices.iter().enumerate() {
        let index = i.to_u64();
        if let Some(previous) = previous {
            if index <= previous {
                return Err(EncodingError::NotSorted {
                    previous,
                    index,
                    position,
                });
            }
        }
        if index >= len {
            return Err(EncodingError::IndexOutOfRange {
                index,
                position,
                len,
            });
        }
        previous = Some(index);
    }
    Ok(())
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
    pub fn parse<V: Element>(bytes: &[u8]) -> Result<Self, EncodingError> {
        let head = bytes
            .get(..SPARSE_HEADER_LEN)
            .ok_or(EncodingError::TruncatedHeader {
                len: bytes.len(),
                header: SPARSE_HEADER_LEN,
            })?;
        let mut count_bytes = [0u8; 8];
        count_bytes.copy_from_slice(&head[..8]);
        let count = u64::from_le_bytes(count_bytes);
        let iw = head[8];
        let vw = head[9];
        if iw != 4 && iw != 8 {
            return Err(EncodingError::BadIndexWidth(iw));
        }
        if usize::from(vw) != V::WIDTH {
            return Err(EncodingError::ValueWidthMismatch {
                expected: V::WIDTH,
                found: vw,
            });
        }
        if head[10..].iter().any(|&b| b != 0) {
            return Err(EncodingError::ReservedBytes);
        }
        let total = count
            .checked_mul(u64::from(iw) + u64::from(vw))
            .and_then(|b| b.checked_add(SPARSE_HEADER_LEN as u64))
            .ok_or(EncodingError::CountOverflow { count })?;
        if total != bytes.len() as u64 {
            return Err(EncodingError::LengthMismatch {
                what: "sparse update",
                expected: total,
                found: bytes.len() as u64,
            });
        }
        // total == bytes.len() fits in usize, hence so does count.
        let count = usize::try_from(count).map_err(|_| EncodingError::CountOverflow { count })?;
        Ok(SparseHeader {
            count,
            index_width: usize::from(iw),
            value_width: usize::from(vw),
        })
    }

    /// Splits a validated message into its index bytes and value bytes.
    pub(crate) fn split<'b>(&self, bytes: &'b [u8]) -> (&'b [u8], &'b [u8]) {
        let body = &bytes[SPARSE_HEADER_LEN..];
        body.split_at(self.count * self.index_width)
    }
}

/// Reads `idx_bytes` as indices of width `iw`, checking that they are
/// strictly increasing and below `len`, and hands each to `sink`.
pub(crate) fn read_indices(
    idx_bytes: &[u8],
    iw: usize,
    len: u64,
    mut sink: impl FnMut(u64) -> Result<(), EncodingError>,
) -> Result<(), EncodingError> {
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
                return Err(EncodingError::NotSorted {
                    previous,
                    index,
                    position,
                });
            }
        }
        if index >= len {
            return Err(EncodingError::IndexOutOfRange {
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
pub(crate) fn read_values<V: Element>(bytes: &[u8]) -> impl Iterator<Item = V> + '_ {
    bytes.chunks_exact(V::WIDTH).map(|chunk| {
        let mut b = V::Bytes::default();
        b.as_mut().copy_from_slice(chunk);
        V::from_le_bytes(b)
    })
}

/// Bytes of the sparse encoding of `count` pairs of a vector of length `len`
/// with element type `V`.
pub fn sparse_encoded_len<V: Element>(count: usize, len: u64) -> Result<usize, EncodingError> {
    count
        .checked_mul(wire_index_width(len) + V::WIDTH)
        .and_then(|b| b.checked_add(SPARSE_HEADER_LEN))
        .ok_or(EncodingError::CountOverflow {
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
) -> Result<usize, EncodingError> {
    if indices.len() != values.len() {
        return Err(EncodingError::PairCountMismatch {
            indices: indices.len(),
            values: values.len(),
        });
    }
    check_indices(indices, len)?;
    let needed = sparse_encoded_len::<V>(indices.len(), len)?;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(EncodingError::BufferTooSmall { needed, available })?;
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
) -> Result<(), EncodingError> {
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
) -> Result<(), EncodingError> {
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
pub fn dense_encoded_len<T: Element>(n: usize) -> Result<usize, EncodingError> {
    n.checked_mul(T::WIDTH)
        .ok_or(EncodingError::CountOverflow { count: n as u64 })
}

/// Encodes `src` into the front of the preallocated `out` (little-endian,
/// no header), returning the bytes written. Does not allocate.
pub fn encode_dense_into<T: Element>(src: &[T], out: &mut [u8]) -> Result<usize, EncodingError> {
    let needed = dense_encoded_len::<T>(src.len())?;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(EncodingError::BufferTooSmall { needed, available })?;
    write_values(src, out);
    Ok(needed)
}

/// Decodes a dense update into `dst`, whose length must match exactly
/// (`bytes.len() == dst.len() * width`). Does not allocate; on error `dst` is
/// untouched.
pub fn decode_dense_into<T: Element>(bytes: &[u8], dst: &mut [T]) -> Result<(), EncodingError> {
    let expected = dense_encoded_len::<T>(dst.len())?;
    if bytes.len() != expected {
        return Err(EncodingError::LengthMismatch {
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

/// A malformed update header, sparse encoding or sparse vector, or a buffer
/// of the wrong size.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The bytes are shorter than the update header.
    #[error("{len} bytes is shorter than the {HEADER_LEN}-byte update header")]
    TruncatedUpdate {
        /// Bytes received.
        len: usize,
    },
    /// The update header does not start with the magic bytes.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// The update header names an unknown kind of body.
    #[error("unknown update kind {0}")]
    UnknownKind(u8),
    /// The update header's reserved byte is not zero.
    #[error("reserved header byte is not zero")]
    ReservedHeaderByte,
    /// The bytes are shorter than the fixed sparse header.
    #[error("sparse update of {len} bytes is shorter than its {header}-byte header")]
    TruncatedHeader {
        /// Bytes received.
        len: usize,
        /// Header size.
        header: usize,
    },
    /// The header names an index width other than 4 or 8 bytes.
    #[error("sparse update has index width {0}; expected 4 or 8")]
    BadIndexWidth(u8),
    /// The header's value width does not match the receiver's element type.
    #[error(
        "sparse update has value width {found}; the vector's elements are {expected} bytes wide"
    )]
    ValueWidthMismatch {
        /// Width the receiver expects.
        expected: usize,
        /// Width found in the header.
        found: u8,
    },
    /// Reserved header bytes are not zero.
    #[error("sparse update header has non-zero reserved bytes")]
    ReservedBytes,
    /// The byte length does not match what the header (or the vector) implies.
    #[error("{what}: expected {expected} bytes, found {found}")]
    LengthMismatch {
        /// What was being checked.
        what: &'static str,
        /// Bytes expected.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
    /// The header's pair count is too large to describe any buffer.
    #[error("sparse update claims {count} pairs, too many to address")]
    CountOverflow {
        /// The claimed pair count.
        count: u64,
    },
    /// An index is not below the vector's length.
    #[error("index {index} at position {position} is out of range for a vector of length {len}")]
    IndexOutOfRange {
        /// The offending index.
        index: u64,
        /// Its position among the pairs.
        position: usize,
        /// The vector's length.
        len: u64,
    },
    /// Indices are not strictly increasing (unsorted or duplicated).
    #[error("index {index} at position {position} does not follow {previous}: indices must be strictly increasing")]
    NotSorted {
        /// The previous index.
        previous: u64,
        /// The offending index.
        index: u64,
        /// Its position among the pairs.
        position: usize,
    },
    /// An index does not fit the sparse vector's index type.
    #[error("index {index} does not fit in a {width}-byte index")]
    IndexTooWide {
        /// The offending index.
        index: u64,
        /// Width of the index type in bytes.
        width: usize,
    },
    /// Index and value arrays differ in length.
    #[error("{indices} indices but {values} values")]
    PairCountMismatch {
        /// Number of indices.
        indices: usize,
        /// Number of values.
        values: usize,
    },
    /// The output buffer is too small.
    #[error("output buffer of {available} bytes is too small; {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// An index given to a sparse vector is not below its length.
    #[error("index {index} is out of range for a sparse vector of length {len}")]
    IndexOutOfBounds {
        /// The offending index.
        index: u64,
        /// The vector's length.
        len: u64,
    },
    /// The same index was given twice.
    #[error("index {index} appears more than once")]
    DuplicateIndex {
        /// The repeated index.
        index: u64,
    },
    /// An auto-representation threshold outside `[0, 1]`.
    #[error("sparse threshold {0} must be a number in [0, 1]")]
    BadThreshold(f64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::SparseEntries;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_parser_never_panics_and_round_trips_what_it_accepts(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Ok(h) = Header::parse(&bytes) {
                let mut b = [0u8; HEADER_LEN];
                h.write(&mut b);
                prop_assert_eq!(Header::parse(&b), Ok(h));
            }
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let h = Header::new(Kind::Diff, ElementKind::F64, 7, 6, 1000);
        let mut b = [0u8; 40];
        h.write(&mut b);
        assert_eq!(&b[..4], b"VOL1");
        assert_eq!(Header::parse(&b).unwrap(), h);
        assert!(Header::parse(&b[..31])
            .unwrap_err()
            .to_string()
            .contains("shorter"));
        let mut bad = b;
        bad[0] = b'X';
        assert!(Header::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bad = b;
        bad[4] = 9;
        assert!(Header::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("kind"));
        let mut bad = b;
        bad[7] = 1;
        assert!(Header::parse(&bad).is_err());
        let mut p = Header::new(Kind::Pairs, ElementKind::F32, 1, 0, 5);
        p.index_width = 8;
        p.write(&mut b);
        assert_eq!(Header::parse(&b).unwrap(), p);
    }

    #[test]
    fn sparse_encoding_layout() {
        let v = SparseEntries::<u32, f32>::from_pairs(100, [(1, 1.0), (0, 2.0)]).unwrap();
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
        let big = SparseEntries::<u64, f64>::from_pairs(1 << 40, [(1 << 35, 1.0)]).unwrap();
        big.encode_to_vec(&mut bytes).unwrap();
        assert_eq!(bytes[8], 8);
        assert_eq!(bytes[9], 8);
        assert_eq!(bytes.len(), 16 + 16);
        assert_eq!(
            SparseEntries::<u64, f64>::decode(&bytes, 1 << 40).unwrap(),
            big
        );
        // ... and do not fit a u32-indexed vector.
        assert_eq!(
            SparseEntries::<u32, f64>::decode(&bytes, 1 << 40),
            Err(EncodingError::IndexTooWide {
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
            Err(EncodingError::NotSorted { .. })
        ));
        assert!(matches!(
            encode_sparse_into(&[10u64], &[1.0f32], 10, &mut out),
            Err(EncodingError::IndexOutOfRange { index: 10, .. })
        ));
        assert!(matches!(
            encode_sparse_into(&[1u64], &[1.0f32, 2.0], 10, &mut out),
            Err(EncodingError::PairCountMismatch { .. })
        ));
        assert_eq!(
            encode_sparse_into(&[1u64, 2], &[1.0f32, 2.0], 10, &mut out[..20]),
            Err(EncodingError::BufferTooSmall {
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
        let v = SparseEntries::<u32, f32>::from_pairs(10, [(1, 1.0), (4, 2.0)]).unwrap();
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
            Err(EncodingError::TruncatedHeader {
                len: 10,
                header: 16
            })
        );
        let mut b = good.clone();
        b[8] = 2;
        assert_eq!(decode(&b, 10), Err(EncodingError::BadIndexWidth(2)));
        let mut b = good.clone();
        b[9] = 8;
        assert_eq!(
            decode(&b, 10),
            Err(EncodingError::ValueWidthMismatch {
                expected: 4,
                found: 8
            })
        );
        let mut b = good.clone();
        b[15] = 1;
        assert_eq!(decode(&b, 10), Err(EncodingError::ReservedBytes));
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(
            decode(&b, 10),
            Err(EncodingError::LengthMismatch {
                expected: 32,
                found: 33,
                ..
            })
        ));
        let mut b = good.clone();
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            decode(&b, 10),
            Err(EncodingError::CountOverflow { count: u64::MAX })
        );
        // Index 4 is out of range for a vector of length 4.
        assert!(matches!(
            decode(&good, 4),
            Err(EncodingError::IndexOutOfRange {
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
            Err(EncodingError::NotSorted {
                previous: 4,
                index: 1,
                position: 1
            })
        ));
        // Duplicate index.
        let mut b = good.clone();
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            decode(&b, 10),
            Err(EncodingError::NotSorted { .. })
        ));
        // Reading as f64 fails on the value width.
        let mut i2 = Vec::new();
        let mut v2 = Vec::<f64>::new();
        assert!(matches!(
            decode_sparse_into(&good, 10, &mut i2, &mut v2),
            Err(EncodingError::ValueWidthMismatch { .. })
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
            Err(EncodingError::BufferTooSmall {
                needed: 24,
                available: 23
            })
        );
        let mut dst = [7.0f64; 3];
        assert!(matches!(
            decode_dense_into(&buf[..32], &mut dst),
            Err(EncodingError::LengthMismatch {
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
            let v = SparseEntries::<u32, f32>::from_pairs(len, pairs.iter().map(|&(i, x)| (i as u32, x))).unwrap();
            let mut bytes = Vec::new();
            v.encode_to_vec(&mut bytes).unwrap();
            prop_assert_eq!(bytes.len(), v.encoded_len().unwrap());
            let back = SparseEntries::<u32, f32>::decode(&bytes, len).unwrap();
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
            let v64 = SparseEntries::<u64, f32>::from_pairs(len, pairs.iter().copied()).unwrap();
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
            let _ = SparseEntries::<u32, f32>::decode(&bytes, len);
            let _ = SparseEntries::<u64, f64>::decode(&bytes, len);
            let mut dense = vec![0.0f32; (len % 64) as usize];
            let _ = decode_dense_into(&bytes, &mut dense);
        }

        #[test]
        fn decoder_never_panics_on_damaged_messages(
            (len, pairs) in sparse_pairs(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let v = SparseEntries::<u64, f32>::from_pairs(len, pairs).unwrap();
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
