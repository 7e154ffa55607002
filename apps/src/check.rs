//! `malt check`: every rank writes a rank- and round-specific pattern to
//! every peer and verifies every byte it receives. The tool to run first on
//! a new cluster.

use dstorm::{FlowControl, Group, ObjectSpec, TransportKind};
use serde::Serialize;
use std::time::Instant;

use crate::quantile::percentile;

/// Largest update `malt check --size` writes: 1 GiB. Every rank holds two
/// buffers of this size besides its segments.
pub const MAX_SIZE: usize = 1 << 30;

/// Most rounds `malt check --rounds` runs (days of running).
pub const MAX_ROUNDS: usize = 1_000_000_000;

/// Most latency samples kept for the percentiles (8 MiB): beyond that
/// many rounds, a uniform sample of them (reservoir sampling).
const MAX_SAMPLES: usize = 1 << 20;

/// Options of `malt check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Override the transport from the environment.
    pub transport: Option<TransportKind>,
    /// Update size in bytes.
    pub size: usize,
    /// Rounds.
    pub rounds: usize,
}

/// One rank's result, printed as a JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// This rank.
    pub rank: usize,
    /// World size.
    pub world: usize,
    /// Transport used.
    pub transport: String,
    /// Every byte matched.
    pub ok: bool,
    /// Bytes received and verified.
    pub bytes_verified: u64,
    /// Torn slots detected (and skipped).
    pub torn: u64,
    /// Updates overwritten before they were read (must be 0 here).
    pub lapped: u64,
    /// Rounds run.
    pub rounds: usize,
    /// Update size.
    pub size: usize,
    /// Median time from the start of a round until all peers' updates were
    /// verified here, in microseconds.
    pub lat_us_p50: f64,
    /// 99th percentile of the same.
    pub lat_us_p99: f64,
    /// The first problem found, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The 8-byte word at `index` of the update `sender` writes to `receiver` in `round`.
fn pattern_word(sender: usize, receiver: usize, round: usize, index: usize) -> u64 {
    let seed = (sender as u64) << 40 ^ (receiver as u64) << 20 ^ round as u64;
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(index as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern.
pub fn fill(buf: &mut [u8], sender: usize, receiver: usize, round: usize) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let w = pattern_word(sender, receiver, round, i).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The first byte offset where `buf` differs from the pattern.
pub fn first_mismatch(buf: &[u8], sender: usize, receiver: usize, round: usize) -> Option<usize> {
    for (i, chunk) in buf.chunks(8).enumerate() {
        let w = pattern_word(sender, receiver, round, i).to_le_bytes();
        if chunk != &w[..chunk.len()] {
            let j = chunk.iter().zip(w).position(|(a, b)| *a != b).unwrap_or(0);
            return Some(i * 8 + j);
        }
    }
    None
}

/// `x` rounded to one decimal (latencies in µs: 693.7, not 693.7090000000001).
fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs the check on an already joined group.
pub fn check(group: &Group, opts: &CheckOptions) -> dstorm::Result<CheckReport> {
    let (rank, world) = (group.rank(), group.world());
    let size = opts.size.max(1);
    if size > MAX_SIZE {
        return Err(dstorm::Error::Size {
            name: "malt-check".into(),
            what: "update",
            got: size,
            limit: MAX_SIZE,
        });
    }
    let mut obj = group.create_object(
        &ObjectSpec::new("malt-check", size)
            .depth(2)
            .flow(FlowControl::Backpressure),
    )?;
    let timeout = group.config().timeout;
    let mut send = vec![0u8; size];
    let mut recv = vec![0u8; size];
    // Samples are kept as rounds complete, never reserved for rounds that
    // may not run.
    let mut lat = Vec::with_capacity(opts.rounds.min(1024));
    let mut pick = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(rank as u64);
    let mut verified = 0u64;
    let mut error = None;
    let senders: Vec<usize> = obj.in_neighbors().to_vec();
    let receivers: Vec<usize> = obj.out_neighbors().to_vec();
    'rounds: for round in 0..opts.rounds {
        group.barrier()?;
        let t0 = Instant::now();
        for &peer in &receivers {
            fill(&mut send, rank, peer, round);
            obj.write(peer, &send, round as u64)?;
        }
        for &s in &senders {
            let u = obj.poll_from_timeout(s, &mut recv, timeout)?;
            let Some(u) = u else {
                error = Some(format!(
                    "round {round}: no update from rank {s} within {}",
                    dstorm::error::Seconds(timeout)
                ));
                break 'rounds;
            };
            if u.iteration != round as u64 || u.len != size {
                error = Some(format!(
                    "round {round}: update from rank {s} carries iteration {} and {} bytes",
                    u.iteration, u.len
                ));
                break 'rounds;
            }
            if let Some(at) = first_mismatch(&recv[..u.len], s, rank, round) {
                error = Some(format!(
                    "round {round}: byte {at} of the update from rank {s} is wrong"
                ));
                break 'rounds;
            }
            verified += u.len as u64;
        }
        keep_sample(
            &mut lat,
            MAX_SAMPLES,
            round,
            t0.elapsed().as_secs_f64() * 1e6,
            &mut pick,
        );
    }
    lat.sort_by(f64::total_cmp);
    let c = obj.counters();
    if error.is_none() && c.lapped != 0 {
        error = Some(format!(
            "{} updates were lapped under backpressure",
            c.lapped
        ));
    }
    Ok(CheckReport {
        rank,
        world,
        transport: group.transport().to_string(),
        ok: error.is_none(),
        bytes_verified: verified,
        torn: c.torn,
        lapped: c.lapped,
        rounds: opts.rounds,
        size,
        lat_us_p50: tenths(percentile(&lat, 50.0)),
        lat_us_p99: tenths(percentile(&lat, 99.0)),
        error,
    })
}

/// Keeps the latency of round `round` (0, 1, ...) in `lat`, at most `max`
/// of them: beyond that, a uniform sample of every round so far (round
/// `round` replaces a kept sample with chance `max / (round + 1)`).
fn keep_sample(
    lat: &mut Vec<f64>,
    max: usize,
    round: usize,
    sample: f64,
    rng: &mut impl rand::Rng,
) {
    if lat.len() < max {
        lat.push(sample);
    } else if let Some(slot) = lat.get_mut(rng.gen_range(0..=round)) {
        *slot = sample;
    }
}

/// `malt check` as a command: returns the process exit code (0 ok, 1 a
/// verification failure, 2 the job could not run).
pub fn run(opts: &CheckOptions) -> i32 {
    if opts.size > MAX_SIZE {
        eprintln!(
            "malt check: --size {} is above the limit of {MAX_SIZE} bytes",
            opts.size
        );
        return 2;
    }
    if opts.rounds > MAX_ROUNDS {
        eprintln!(
            "malt check: --rounds {} is above the limit of {MAX_ROUNDS}",
            opts.rounds
        );
        return 2;
    }
    let mut cfg = match dstorm::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("malt check: {e}");
            return 2;
        }
    };
    if let Some(t) = opts.transport {
        cfg.transport = t;
    }
    let group = match Group::join(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("malt check: {e}");
            return 2;
        }
    };
    match check(&group, opts) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
            // Peers may still be verifying what we wrote.
            let finished = group.finish();
            if !report.ok {
                return 1;
            }
            if let Err(e) = finished {
                eprintln!("malt check: {e}");
                return 2;
            }
            0
        }
        Err(e) => {
            eprintln!("malt check: {e}");
            group.fail(&e);
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_sender_receiver_and_round_and_mismatches_are_found() {
        let mut a = vec![0u8; 1001];
        fill(&mut a, 1, 2, 3);
        assert_eq!(first_mismatch(&a, 1, 2, 3), None);
        assert!(first_mismatch(&a, 2, 1, 3).is_some());
        assert!(first_mismatch(&a, 1, 2, 4).is_some());
        assert!(first_mismatch(&a, 1, 3, 3).is_some());
        a[999] ^= 0x10;
        assert_eq!(first_mismatch(&a, 1, 2, 3), Some(999));
    }

    #[test]
    fn latency_samples_stay_bounded_and_uniform() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
        let mut lat = Vec::new();
        for round in 0..100_000 {
            keep_sample(&mut lat, 1000, round, round as f64, &mut rng);
        }
        assert_eq!(lat.len(), 1000);
        // A uniform sample of 0..100000: about a tenth below 10000, and the
        // median near 50000.
        let early = lat.iter().filter(|x| **x < 10_000.0).count();
        assert!(
            (50..=150).contains(&early),
            "{early} of 1000 from the first tenth"
        );
        lat.sort_by(f64::total_cmp);
        assert!(
            (40_000.0..60_000.0).contains(&lat[500]),
            "median {}",
            lat[500]
        );
    }
}
