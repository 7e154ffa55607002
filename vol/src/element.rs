//! Element types of vectors: `f32` and `f64`.
//!
//! [`Element`] is sealed: its byte width and little-endian encoding are part
//! of the wire format, so only the two implementations here exist.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

pub(crate) use sealed::Sealed;

/// The element type of a vector, as a value (used when ranks check that they
/// agree on a vector's type, and in wire headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementKind {
    /// 32-bit IEEE 754 float.
    F32,
    /// 64-bit IEEE 754 float.
    F64,
}

impl ElementKind {
    /// Width of one element in bytes.
    pub fn width(self) -> usize {
        match self {
            ElementKind::F32 => 4,
            ElementKind::F64 => 8,
        }
    }

    /// The type's name: `f32` or `f64`.
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::F32 => "f32",
            ElementKind::F64 => "f64",
        }
    }
}

impl fmt::Display for ElementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ElementKind {
    type Err = ParseError;

    /// Parses `f32` or `f64`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(ElementKind::F32),
            "f64" => Ok(ElementKind::F64),
            _ => Err(ParseError::new("element type", s, "expected f32 or f64")),
        }
    }
}

/// A vector element: `f32` or `f64`.
///
/// Elements are plain old data ([`bytemuck::Pod`]): a slice of them can be
/// viewed as bytes, which is how a dense update leaves the local vector
/// without an extra copy (on little-endian machines those bytes are the
/// wire format).
///
/// The arithmetic methods are plain IEEE operations, `#[inline]` and
/// monomorphised, so loops over slices of elements compile to the same code
/// as loops over `f32`/`f64` directly (and vectorise).
pub trait Element:
    Copy
    + Send
    + Sync
    + PartialEq
    + PartialOrd
    + Default
    + fmt::Debug
    + fmt::Display
    + bytemuck::Pod
    + Sealed
    + 'static
{
    /// The type as a value.
    const KIND: ElementKind;
    /// Width in bytes (4 or 8).
    const WIDTH: usize;
    /// The little-endian byte array of one element.
    type Bytes: Copy + Default + AsRef<[u8]> + AsMut<[u8]>;

    /// Zero.
    fn zero() -> Self;
    /// `self + rhs`.
    fn add(self, rhs: Self) -> Self;
    /// `self / rhs`.
    fn div(self, rhs: Self) -> Self;
    /// `count` as an element (for dividing by a number of contributions).
    fn from_count(count: usize) -> Self;
    /// `self / count`.
    #[inline]
    fn div_count(self, count: usize) -> Self {
        self.div(Self::from_count(count))
    }
    /// The larger of the two; if one is NaN, the other (IEEE `maxNum`, as
    /// `f32::max`).
    fn max(self, rhs: Self) -> Self;
    /// The smaller of the two; if one is NaN, the other (as `f32::min`).
    fn min(self, rhs: Self) -> Self;
    /// Little-endian bytes.
    fn to_le_bytes(self) -> Self::Bytes;
    /// From little-endian bytes.
    fn from_le_bytes(bytes: Self::Bytes) -> Self;
    /// The raw bit pattern, widened to 64 bits (equal bits = same value, also
    /// for NaN).
    fn to_bits_u64(self) -> u64;
    /// Converts to `f64` (exact for both types).
    fn to_f64(self) -> f64;
    /// Converts from `f64` (rounding to nearest for `f32`).
    fn from_f64(x: f64) -> Self;
}

macro_rules! float_element {
    ($t:ty, $kind:expr, $width:expr) => {
        impl Element for $t {
            const KIND: ElementKind = $kind;
            const WIDTH: usize = $width;
            type Bytes = [u8; $width];

            #[inline]
            fn zero() -> Self {
                0.0
            }
            #[inline]
            fn add(self, rhs: Self) -> Self {
                self + rhs
            }
            #[inline]
            fn div(self, rhs: Self) -> Self {
                self / rhs
            }
            #[inline]
            fn from_count(count: usize) -> Self {
                count as $t
            }
            #[inline]
            fn max(self, rhs: Self) -> Self {
                <$t>::max(self, rhs)
            }
            #[inline]
            fn min(self, rhs: Self) -> Self {
                <$t>::min(self, rhs)
            }
            #[inline]
            fn to_le_bytes(self) -> Self::Bytes {
                <$t>::to_le_bytes(self)
            }
            #[inline]
            fn from_le_bytes(bytes: Self::Bytes) -> Self {
                <$t>::from_le_bytes(bytes)
            }
            #[inline]
            fn to_bits_u64(self) -> u64 {
                u64::from(self.to_bits())
            }
            #[inline]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            #[inline]
            #[allow(clippy::cast_possible_truncation, clippy::unnecessary_cast)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
        }
    };
}

float_element!(f32, ElementKind::F32, 4);
float_element!(f64, ElementKind::F64, 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_widths() {
        assert_eq!(<f32 as Element>::KIND, ElementKind::F32);
        assert_eq!(<f64 as Element>::KIND, ElementKind::F64);
        assert_eq!(<f32 as Element>::WIDTH, ElementKind::F32.width());
        assert_eq!(<f64 as Element>::WIDTH, ElementKind::F64.width());
        for k in [ElementKind::F32, ElementKind::F64] {
            assert_eq!(k.to_string().parse::<ElementKind>().unwrap(), k);
        }
        assert!("f16".parse::<ElementKind>().is_err());
    }

    #[test]
    fn arithmetic_and_bytes() {
        assert_eq!(Element::add(1.5f32, 2.0), 3.5);
        assert_eq!(Element::div_count(9.0f64, 3), 3.0);
        assert_eq!(Element::max(f32::NAN, 1.0), 1.0);
        assert_eq!(Element::min(2.0f64, f64::NAN), 2.0);
        assert_eq!(Element::to_le_bytes(1.0f32), [0, 0, 0x80, 0x3f]);
        assert_eq!(<f64 as Element>::from_le_bytes(2.5f64.to_le_bytes()), 2.5);
        assert_ne!(0.0f32.to_bits_u64(), (-0.0f32).to_bits_u64());
        assert_eq!(f32::NAN.to_bits_u64(), f32::NAN.to_bits_u64());
        assert_eq!(<f32 as Element>::from_f64(0.1), 0.1f32);
    }
}
