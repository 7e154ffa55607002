//! The header vol puts in front of every update it writes through dstorm.
//!
//! dstorm carries opaque bytes (its own slot header holds the sender, the
//! iteration and the length); vol prefixes each payload with 32 bytes of its
//! own, all numbers little-endian:
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
//!               (kinds 2 and 3; see `crate::sparse`)
//! ```
//!
//! The header is 32 bytes so that the body stays aligned for both element
//! types: a dense vector keeps the header in front of its own elements and
//! hands the whole buffer to dstorm without copying it first.

use crate::element::ElementKind;

/// Bytes of the header.
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
    pub fn parse(bytes: &[u8]) -> Result<Header, String> {
        let h = bytes.get(..HEADER_LEN).ok_or_else(|| {
            format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte update header",
                bytes.len()
            )
        })?;
        if h[..4] != MAGIC {
            return Err(format!("bad magic {:02x?}", &h[..4]));
        }
        let kind = Kind::from_code(h[4]).ok_or_else(|| format!("unknown update kind {}", h[4]))?;
        if h[7] != 0 {
            return Err("reserved header byte is not zero".into());
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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(Header::parse(&b[..31]).unwrap_err().contains("shorter"));
        let mut bad = b;
        bad[0] = b'X';
        assert!(Header::parse(&bad).unwrap_err().contains("magic"));
        let mut bad = b;
        bad[4] = 9;
        assert!(Header::parse(&bad).unwrap_err().contains("kind"));
        let mut bad = b;
        bad[7] = 1;
        assert!(Header::parse(&bad).is_err());
        let mut p = Header::new(Kind::Pairs, ElementKind::F32, 1, 0, 5);
        p.index_width = 8;
        p.write(&mut b);
        assert_eq!(Header::parse(&b).unwrap(), p);
    }
}
