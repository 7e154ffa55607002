//! The verbs transport's settings, read from `MALT_RDMA_*` variables.

use crate::config::Env;
use crate::error::{Error, Result};

/// Default IB local ACK timeout exponent: 4.096 µs × 2^16 ≈ 268 ms.
pub(crate) const DEFAULT_TIMEOUT_EXP: u8 = 16;
/// Default transport retry count (the largest the standard allows).
pub(crate) const DEFAULT_RETRY: u8 = 7;
/// Default staging memory per peer.
pub(crate) const DEFAULT_STAGING: usize = 4 << 20;
const MIN_STAGING: usize = 64 << 10;
const MAX_STAGING: usize = 1 << 30;

/// What the environment asks of the verbs transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `MALT_RDMA_DEVICE`: device name; default the first with an active port.
    pub device: Option<String>,
    /// `MALT_RDMA_PORT`: port number; default the device's first active port.
    pub port: Option<u8>,
    /// `MALT_RDMA_GID_INDEX`: GID index; default a RoCEv2 IPv4-mapped GID
    /// (Ethernet) or index 0 (InfiniBand).
    pub gid_index: Option<u32>,
    /// `MALT_RDMA_TIMEOUT`: local ACK timeout exponent, 1..=31.
    pub timeout_exp: u8,
    /// `MALT_RDMA_RETRY`: transport retry count, 0..=7.
    pub retry: u8,
    /// `MALT_RDMA_STAGING`: bytes of registered staging memory per peer.
    pub staging: usize,
    /// `MALT_RDMA_SPIN_US`: how long a waiting reader polls its memory
    /// before it parks. An RDMA write lands without waking anybody; parking
    /// adds the wake-up (a completion, a thread, a futex) to the latency.
    pub spin: std::time::Duration,
}

/// Default reader spin on verbs: about ten times a soft-RoCE round trip
/// under emulation, a few hundred on hardware.
pub(crate) const DEFAULT_SPIN: std::time::Duration = std::time::Duration::from_micros(1000);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            device: None,
            port: None,
            gid_index: None,
            timeout_exp: DEFAULT_TIMEOUT_EXP,
            retry: DEFAULT_RETRY,
            staging: DEFAULT_STAGING,
            spin: DEFAULT_SPIN,
        }
    }
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    env: &dyn Env,
    key: &str,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<Option<T>> {
    let Some(v) = env.get(key) else {
        return Ok(None);
    };
    match v.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(Error::Config(format!(
            "{key}={v:?} must be {what} in {}..={}",
            range.start(),
            range.end()
        ))),
    }
}

/// Parses a byte count with an optional binary suffix (`k`, `m`, `g`).
fn bytes(v: &str) -> Option<usize> {
    let t = v.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// The time after which a write to an unresponsive peer fails: the ACK
/// timeout times (retries + 1).
pub(crate) fn detection_time(timeout_exp: u8, retry: u8) -> std::time::Duration {
    let one = std::time::Duration::from_nanos(4096u64 << timeout_exp.min(31));
    one * (u32::from(retry) + 1)
}

impl Settings {
    /// Reads the settings from `env`; malformed values are a typed error.
    pub fn from_source(env: &dyn Env) -> Result<Settings> {
        let mut s = Settings {
            device: env.get("MALT_RDMA_DEVICE").map(|d| d.trim().to_string()),
            port: number(env, "MALT_RDMA_PORT", 1u8..=255, "a port number")?,
            gid_index: number(env, "MALT_RDMA_GID_INDEX", 0u32..=255, "a GID index")?,
            ..Settings::default()
        };
        if let Some(t) = number(
            env,
            "MALT_RDMA_TIMEOUT",
            1u8..=31,
            "an ACK timeout exponent (4.096 us x 2^value)",
        )? {
            s.timeout_exp = t;
        }
        if let Some(r) = number(env, "MALT_RDMA_RETRY", 0u8..=7, "a retry count")? {
            s.retry = r;
        }
        if let Some(us) = number(env, "MALT_RDMA_SPIN_US", 0u64..=1_000_000, "microseconds")? {
            s.spin = std::time::Duration::from_micros(us);
        }
        if let Some(v) = env.get("MALT_RDMA_STAGING") {
            match bytes(&v) {
                Some(n) if (MIN_STAGING..=MAX_STAGING).contains(&n) => s.staging = n,
                _ => {
                    return Err(Error::Config(format!(
                        "MALT_RDMA_STAGING={v:?} must be a byte count from 64k to 1g"
                    )))
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::env::fake as env;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            Settings::from_source(&env(&[])).unwrap(),
            Settings::default()
        );
        let s = Settings::from_source(&env(&[
            ("MALT_RDMA_DEVICE", "rxe0"),
            ("MALT_RDMA_PORT", "2"),
            ("MALT_RDMA_GID_INDEX", "3"),
            ("MALT_RDMA_TIMEOUT", "10"),
            ("MALT_RDMA_RETRY", "1"),
            ("MALT_RDMA_STAGING", "8M"),
        ]))
        .unwrap();
        assert_eq!(s.device.as_deref(), Some("rxe0"));
        assert_eq!(s.port, Some(2));
        assert_eq!(s.gid_index, Some(3));
        assert_eq!((s.timeout_exp, s.retry), (10, 1));
        assert_eq!(s.staging, 8 << 20);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("MALT_RDMA_TIMEOUT", "0"),
            ("MALT_RDMA_TIMEOUT", "32"),
            ("MALT_RDMA_TIMEOUT", "soon"),
            ("MALT_RDMA_RETRY", "8"),
            ("MALT_RDMA_PORT", "0"),
            ("MALT_RDMA_GID_INDEX", "-1"),
            ("MALT_RDMA_GID_INDEX", "256"),
            ("MALT_RDMA_STAGING", "1k"),
            ("MALT_RDMA_STAGING", "lots"),
            ("MALT_RDMA_STAGING", "99999999999999999999g"),
        ] {
            match Settings::from_source(&env(&[(k, v)])) {
                Err(Error::Config(m)) => assert!(m.contains(k), "{m}"),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(bytes("65536"), Some(65536));
        assert_eq!(bytes("64k"), Some(65536));
        assert_eq!(bytes("4MiB"), Some(4 << 20));
        assert_eq!(bytes("1 g"), Some(1 << 30));
        assert_eq!(bytes("k"), None);
        assert_eq!(bytes(""), None);
    }

    #[test]
    fn detection_time_is_timeout_times_attempts() {
        let d = detection_time(10, 1);
        assert_eq!(d, std::time::Duration::from_nanos(2 * 4096 * 1024));
    }
}
