//! `malt bench`: measurements that print ratios against a baseline measured
//! in the same run, and the report that puts malt next to Open MPI and Gloo
//! (`benches/peers/run.sh`).

pub mod gather;
mod markdown;
pub mod plot;
pub mod report;
pub mod traffic;
pub mod usage;
pub mod write;

use std::fmt;
use std::str::FromStr;

/// Largest message size in a plan or `malt bench write --size`: 1 GiB
/// (`gather` sizes count floats and are bounded by [`gather::MAX_LEN`]).
pub const MAX_SIZE: usize = 1 << 30;

/// Most timed operations (updates, rounds) at one size: `--iters`,
/// `--rounds` and a plan's COUNT.
pub const MAX_COUNT: usize = 10_000_000;

/// What the benchmarks measure at each size: `N:COUNT,N:COUNT,...`, where N
/// is the message size (bytes for `write`, floats for `gather`) and COUNT
/// the number of timed operations (updates, rounds) at that size. The peer
/// programs in `benches/peers` read the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan(pub Vec<(usize, usize)>);

/// Why a plan could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No entries.
    #[error("the plan is empty (want N:COUNT,N:COUNT,...)")]
    Empty,
    /// An entry is not `N:COUNT` with both numbers above zero.
    #[error("bad plan entry {entry:?}: want N:COUNT with N and COUNT above zero")]
    Entry {
        /// The entry as written.
        entry: String,
    },
    /// An entry's N or COUNT is above its limit ([`MAX_SIZE`], [`MAX_COUNT`]).
    #[error("plan entry {entry:?} is beyond the limits: N at most {MAX_SIZE}, COUNT at most {MAX_COUNT}")]
    Limit {
        /// The entry as written.
        entry: String,
    },
}

impl FromStr for Plan {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || PlanError::Entry {
                entry: entry.to_string(),
            };
            let (n, c) = entry.split_once(':').ok_or_else(bad)?;
            let n: usize = n.trim().parse().map_err(|_| bad())?;
            let c: usize = c.trim().parse().map_err(|_| bad())?;
            if n == 0 || c == 0 {
                return Err(bad());
            }
            if n > MAX_SIZE || c > MAX_COUNT {
                return Err(PlanError::Limit {
                    entry: entry.to_string(),
                });
            }
            out.push((n, c));
        }
        if out.is_empty() {
            return Err(PlanError::Empty);
        }
        Ok(Plan(out))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, c)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}:{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_read_and_print_back() {
        let p: Plan = "1024:1000, 1048576:64".parse().expect("plan");
        assert_eq!(p.0, vec![(1024, 1000), (1_048_576, 64)]);
        assert_eq!(p.to_string(), "1024:1000,1048576:64");
        assert_eq!("".parse::<Plan>(), Err(PlanError::Empty));
        for bad in ["12", "a:3", "4:0", "0:4", "4:3:2", "4:-1"] {
            assert!(
                matches!(bad.parse::<Plan>(), Err(PlanError::Entry { .. })),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn plans_stay_under_the_limits() {
        let p: Plan = format!("{MAX_SIZE}:{MAX_COUNT}").parse().expect("plan");
        assert_eq!(p.0, vec![(MAX_SIZE, MAX_COUNT)]);
        for bad in [
            format!("{}:1", MAX_SIZE + 1),
            format!("1:{}", MAX_COUNT + 1),
            "64:1000000000000".to_string(),
            "18446744073709551615:1".to_string(),
        ] {
            let err = bad.parse::<Plan>().unwrap_err();
            assert!(matches!(err, PlanError::Limit { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains(&bad), "{err}");
        }
        // Beyond usize: not a number of this machine at all.
        assert!(matches!(
            "18446744073709551616:1".parse::<Plan>(),
            Err(PlanError::Entry { .. })
        ));
    }
}
