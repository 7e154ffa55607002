//! The choice between sending a dense vector whole or only its changed
//! entries.
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

use crate::element::Element;
use crate::error::ParseError;
use crate::wire::EncodingError;

/// Default changed fraction below which [`Representation::Auto`] sends a
/// sparse update.
pub const DEFAULT_SPARSE_THRESHOLD: f64 = 0.1;

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
    pub fn validate(&self) -> Result<(), EncodingError> {
        match *self {
            Representation::Auto { threshold } if !(0.0..=1.0).contains(&threshold) => {
                Err(EncodingError::BadThreshold(threshold))
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

fn check_same_len<T>(current: &[T], previous: &[T]) -> Result<(), EncodingError> {
    if current.len() != previous.len() {
        return Err(EncodingError::LengthMismatch {
            what: "previously sent copy (elements)",
            expected: current.len() as u64,
            found: previous.len() as u64,
        });
    }
    Ok(())
}

/// Number of entries whose bit pattern differs between `current` and
/// `previous`.
pub fn changed_count<T: Element>(current: &[T], previous: &[T]) -> Result<usize, EncodingError> {
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
) -> Result<Encoding, EncodingError> {
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
            Err(EncodingError::LengthMismatch { .. })
        ));
        assert_eq!(
            diff_into(
                &cur,
                &prev,
                Representation::Auto { threshold: 2.0 },
                &mut idx,
                &mut val
            ),
            Err(EncodingError::BadThreshold(2.0))
        );
    }
}
