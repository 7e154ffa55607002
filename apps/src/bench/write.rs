//! `malt bench write`: one-sided write throughput and latency between two
//! ranks, next to a baseline measured in the same run: `memcpy` of the same
//! bytes for shm, a plain TCP socket stream of the same bytes for tcp.
//!
//! Throughput: rank 0 writes `iters` updates back to back; the clock stops
//! when rank 0 learns (through a one-sided write back) that the last update
//! is complete in rank 1's segment. Rank 1 is a passive target, as for
//! `MPI_Put` or `ib_write_bw`: it looks at its segment every
//! [`watch_interval`] without parking on it, so the writes never wake it. A
//! second run (`woken_*`) has rank 1 waiting on the segment instead, as a
//! reader blocked in `gather` does (spinning, then parked, so that a write
//! may have to wake it): what such a reader costs the writer. For shm a
//! third reference (`two_slot_*`) copies the same bytes into two
//! destination buffers in turn, the least any depth-2 queue must do.
//! Latency: ping-pong of single updates,
//! half the round trip, i.e. the time from `write` until the update is
//! visible (and copied out) at the receiver; a round trip is the gap
//! between the starts of consecutive pings (one clock read each).
//!
//! Throughput and its baseline are measured `--repeat` times, alternating
//! (malt, baseline, malt, baseline, ...), so that both see the same moments
//! of a noisy machine: `gbps` and `baseline_gbps` are the medians, `ratios`
//! the ratio of each adjacent pair, and `ratio` the median of those.
//!
//! Every result carries the CPU time all ranks spent during the throughput
//! run (getrusage), next to its wall time. `--plan` fixes the sizes and the
//! update counts (the way `benches/peers/run.sh` gives every system the same
//! work), and `--throughput-only` skips the latency and baseline parts.

use super::usage::cpu_secs;
use super::Plan;
use crate::quantile::{median, percentile, sorted_finite};
use dstorm::{Group, ObjectSpec, TransportKind};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Options of `malt bench write`.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// One size instead of the default sweep.
    pub size: Option<usize>,
    /// Updates per size instead of the default (1 GiB worth, 10..=20000).
    pub iters: Option<usize>,
    /// One JSON line per size.
    pub json: bool,
    /// Sizes with their update counts; overrides `size` and `iters`.
    pub plan: Option<Plan>,
    /// Measure throughput only: no latency run, no baseline.
    pub throughput_only: bool,
    /// Throughput runs per size, each (but with `throughput_only`) followed
    /// by a baseline run; `None` means [`DEFAULT_REPEAT`], or 1 with
    /// `throughput_only`.
    pub repeat: Option<usize>,
}

/// Alternating throughput and baseline runs per size by default.
pub const DEFAULT_REPEAT: usize = 5;

/// The default sweep: 64 B to 64 MiB in steps of 4.
pub fn default_sizes() -> Vec<usize> {
    (0..11).map(|i| 64usize << (2 * i)).collect()
}

fn default_iters(size: usize) -> usize {
    ((1usize << 30) / size).clamp(10, 20_000)
}

/// One size's result.
#[derive(Debug, Clone, Serialize)]
// One JSON line of `malt bench write`: its fields are the line's columns,
// which scripts and the report read by name.
pub struct WriteResult {
    /// Transport measured.
    pub transport: String,
    /// Ranks in the job.
    pub ranks: usize,
    /// Update size in bytes.
    pub size: usize,
    /// Updates in each throughput run.
    pub iters: usize,
    /// Throughput runs (each followed by a baseline run, but with
    /// `--throughput-only`).
    pub repeat: usize,
    /// malt's throughput in gigabits (1e9 bits) per second, median of the runs.
    pub gbps: f64,
    /// Wall seconds of the median throughput run.
    pub secs: f64,
    /// CPU seconds (user + system) all ranks spent in that run.
    pub cpu_secs: f64,
    /// The baseline's throughput, same unit, median of its runs.
    pub baseline_gbps: f64,
    /// What the baseline is.
    pub baseline: &'static str,
    /// malt's throughput over the baseline's, run by run (adjacent pairs).
    pub ratios: Vec<f64>,
    /// The median of `ratios`: above 1 means malt is faster.
    pub ratio: f64,
    /// Throughput with the receiver waiting on its segment as a reader
    /// blocked in `gather` does (writes wake it when it has parked);
    /// absent with `--throughput-only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub woken_gbps: Option<f64>,
    /// `woken_gbps / baseline_gbps` (the median baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub woken_ratio: Option<f64>,
    /// Median write-until-visible latency in microseconds.
    pub lat_us_p50: f64,
    /// 99th percentile of the same.
    pub lat_us_p99: f64,
    /// shm: `memcpy` of the same bytes alternating between two destination
    /// buffers, which is what a depth-2 receive queue must do at least
    /// (the ceiling of malt's write), median of its runs, each right after
    /// a baseline run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_slot_gbps: Option<f64>,
    /// shm: the median of malt's throughput over the two-destination
    /// `memcpy`'s, run by run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_slot_ratio: Option<f64>,
    /// The baseline's median one-way latency (raw socket ping-pong; tcp only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_lat_us_p50: Option<f64>,
}

/// Gigabits per second; 0 where no time was taken (ranks other than 0).
fn gbps(bytes: usize, iters: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        (bytes as f64 * iters as f64 * 8.0) / secs / 1e9
    } else {
        0.0
    }
}

/// The ratio of each malt run to the reference run after it, leaving out
/// pairs without a reference.
fn pairwise(runs: &[f64], refs: &[f64]) -> Vec<f64> {
    runs.iter()
        .zip(refs)
        .map(|(&g, &b)| ratio(g, b))
        .filter(|&x| x > 0.0)
        .collect()
}

/// `a / base`, or 0 without a baseline.
fn ratio(a: f64, base: f64) -> f64 {
    if base > 0.0 {
        a / base
    } else {
        0.0
    }
}

/// Updates written (and acknowledged) before the clock starts, so that the
/// pages of both segments are mapped, as the peers' warm-up does.
const WARM_UP: u64 = 3;

/// Shortest sleep of a passive receiver between two looks at its segment.
pub const WATCH_MIN: Duration = Duration::from_micros(100);
/// Longest sleep between two looks: a run of 1 GiB takes a few hundred ms,
/// and waking 10 000 times a second there costs a 2-core machine's writer
/// throughput that has nothing to do with the transport.
pub const WATCH_MAX: Duration = Duration::from_millis(2);

/// How long a passive receiver sleeps between looks once it has waited
/// `waited`: a hundredth of that, within [`WATCH_MIN`, `WATCH_MAX`], so
/// that seeing the last update late adds at most about 1% (or
/// [`WATCH_MIN`]) to the measured time.
pub fn watch_interval(waited: Duration) -> Duration {
    (waited / 100).clamp(WATCH_MIN, WATCH_MAX)
}

/// How rank 1 waits for the last update of a throughput run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiver {
    /// Looks every [`watch_interval`], never parked: writes do not wake it.
    Watching,
    /// Waits on the segment's doorbell (spins, then parks), as `gather`
    /// does: a write wakes it when it has parked.
    Parked,
}

/// The throughput run: rank 0's wall seconds (0 elsewhere) and this rank's
/// CPU seconds.
fn throughput(
    group: &Group,
    size: usize,
    iters: usize,
    timeout: Duration,
    receiver: Receiver,
    round: usize,
) -> dstorm::Result<(f64, f64)> {
    let rank = group.rank();
    let name = match receiver {
        Receiver::Watching => format!("bench-write-{size}-{round}"),
        Receiver::Parked => format!("bench-write-woken-{size}"),
    };
    let mut obj =
        group.create_object(&ObjectSpec::new(name, size).graph(pair_graph(group.world())))?;
    let buf = vec![0x5au8; size];
    let mut ack = vec![0u8; size];
    // Rank 0 writes iterations 1..=last; rank 1 answers the warm-up's last
    // and the run's last.
    let mut run = |obj: &mut dstorm::Object, first: u64, last: u64| -> dstorm::Result<()> {
        if rank == 0 {
            for i in first..=last {
                obj.write(1, &buf, i)?;
            }
            match obj.poll_from_timeout(1, &mut ack, timeout)? {
                Some(u) if u.iteration == last => Ok(()),
                other => Err(dstorm::Error::Protocol(format!(
                    "bench: expected the completion notice of {last}, got {other:?}"
                ))),
            }
        } else if rank == 1 {
            if wait_last(obj, last, timeout, receiver)?.is_none() {
                return Err(dstorm::Error::Timeout {
                    op: "bench write: waiting for the last update".into(),
                    waited: timeout,
                    missing: vec![0],
                });
            }
            obj.write(0, &buf[..8.min(size)], last)
        } else {
            Ok(())
        }
    };
    run(&mut obj, 1, WARM_UP)?;
    group.barrier()?;
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    run(&mut obj, WARM_UP + 1, WARM_UP + iters as u64)?;
    let secs = if rank == 0 {
        t0.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let cpu = cpu_secs() - cpu0;
    group.barrier()?;
    Ok((secs, cpu))
}

/// Rank 1's wait for update `last` of rank 0, the way `receiver` says.
fn wait_last(
    obj: &mut dstorm::Object,
    last: u64,
    timeout: Duration,
    receiver: Receiver,
) -> dstorm::Result<Option<dstorm::Update>> {
    if receiver == Receiver::Parked {
        return obj.wait_visible(0, last, timeout);
    }
    let start = Instant::now();
    loop {
        // A zero timeout looks once and never parks.
        if let Some(u) = obj.wait_visible(0, last, Duration::ZERO)? {
            return Ok(Some(u));
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Ok(None);
        }
        std::thread::sleep(watch_interval(waited));
    }
}

fn latency(
    group: &Group,
    size: usize,
    pings: usize,
    timeout: Duration,
) -> dstorm::Result<Vec<f64>> {
    let rank = group.rank();
    let mut obj = group.create_object(
        &ObjectSpec::new(format!("bench-lat-{size}"), size).graph(pair_graph(group.world())),
    )?;
    let buf = vec![0xa5u8; size];
    let mut rbuf = vec![0u8; size];
    let mut rtt = Vec::with_capacity(pings);
    group.barrier()?;
    let lost = |i| dstorm::Error::Timeout {
        op: format!("bench latency: ping {i}"),
        waited: timeout,
        missing: vec![1 - rank],
    };
    // One clock read per round trip, as perftest does: each round trip is
    // the time between the starts of two consecutive pings (on virtual
    // machines without a usable TSC a read costs microseconds).
    let mut last = Instant::now();
    for i in 1..=pings as u64 {
        if rank == 0 {
            obj.write(1, &buf, i)?;
            match obj.poll_from_timeout(1, &mut rbuf, timeout)? {
                Some(u) if u.iteration == i => {
                    let now = Instant::now();
                    rtt.push((now - last).as_secs_f64() * 1e6 / 2.0);
                    last = now;
                }
                _ => return Err(lost(i)),
            }
        } else if rank == 1 {
            match obj.poll_from_timeout(0, &mut rbuf, timeout)? {
                Some(u) if u.iteration == i => obj.write(0, &buf, i)?,
                _ => return Err(lost(i)),
            }
        }
    }
    group.barrier()?;
    rtt.sort_by(f64::total_cmp);
    Ok(rtt)
}

/// Rank 0 and rank 1 write to each other; other ranks only watch.
fn pair_graph(world: usize) -> Vec<Vec<usize>> {
    (0..world)
        .map(|r| match r {
            0 => vec![1],
            1 => vec![0],
            _ => vec![],
        })
        .collect()
}

/// `memcpy` of `size` bytes `iters` times, into `slots` destination
/// buffers in turn.
fn memcpy_into(size: usize, iters: usize, slots: usize) -> f64 {
    let src = vec![0x5au8; size];
    let mut dst: Vec<Vec<u8>> = (0..slots).map(|_| src.clone()).collect();
    let t0 = Instant::now();
    for i in 0..iters {
        let d = &mut dst[i % slots];
        d.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(d);
    }
    gbps(size, iters, t0.elapsed().as_secs_f64())
}

/// Raw socket stream of the same bytes; returns (gbps, one-way latency p50 in µs).
fn socket_baseline(
    group: &Group,
    size: usize,
    iters: usize,
    pings: usize,
) -> dstorm::Result<(f64, f64)> {
    let rank = group.rank();
    let io = |source: std::io::Error| dstorm::Error::Peer {
        op: "baseline socket",
        peer: 1 - rank.min(1),
        source,
    };
    let listener = if rank == 1 {
        Some(TcpListener::bind(("127.0.0.1", 0)).map_err(io)?)
    } else {
        None
    };
    let port = listener
        .as_ref()
        .map(|l| l.local_addr().map(|a| a.port()))
        .transpose()
        .map_err(io)?
        .unwrap_or(0);
    let ports = group.allgather(&port.to_string())?;
    let mut result = (0.0, 0.0);
    let mut buf = vec![0x5au8; size];
    if rank == 0 {
        let mut s = TcpStream::connect(("127.0.0.1", ports[1].parse().unwrap_or(0))).map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        let t0 = Instant::now();
        for _ in 0..iters {
            s.write_all(&buf).map_err(io)?;
        }
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map_err(io)?;
        let g = gbps(size, iters, t0.elapsed().as_secs_f64());
        let mut lat = Vec::with_capacity(pings);
        for _ in 0..pings {
            let t = Instant::now();
            s.write_all(&buf).map_err(io)?;
            s.read_exact(&mut buf).map_err(io)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
        }
        lat.sort_by(f64::total_cmp);
        result = (g, percentile(&lat, 50.0));
    } else if let Some(l) = listener {
        let (mut s, _) = l.accept().map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        for _ in 0..iters {
            s.read_exact(&mut buf).map_err(io)?;
        }
        s.write_all(&[1]).map_err(io)?;
        for _ in 0..pings {
            s.read_exact(&mut buf).map_err(io)?;
            s.write_all(&buf).map_err(io)?;
        }
    }
    group.barrier()?;
    Ok(result)
}

/// Runs the sweep on a joined group; rank 0 returns the results.
pub fn bench(group: &Group, opts: &WriteOptions) -> dstorm::Result<Vec<WriteResult>> {
    if group.world() < 2 {
        return Err(dstorm::Error::Config(
            "malt bench write needs two ranks (run it outside a job and it launches them)".into(),
        ));
    }
    let timeout = group.config().timeout;
    let steps: Vec<(usize, usize)> = match &opts.plan {
        Some(plan) => plan.0.clone(),
        None => opts
            .size
            .map(|s| vec![s])
            .unwrap_or_else(default_sizes)
            .into_iter()
            .map(|s| (s, opts.iters.unwrap_or_else(|| default_iters(s.max(1)))))
            .collect(),
    };
    let repeat = opts
        .repeat
        .unwrap_or(if opts.throughput_only {
            1
        } else {
            DEFAULT_REPEAT
        })
        .max(1);
    let mut out = Vec::new();
    for (size, iters) in steps {
        let size = size.max(1);
        let iters = iters.max(1);
        let pings = iters.min(2000);
        let what = match group.transport() {
            _ if opts.throughput_only => "none (--throughput-only)",
            TransportKind::Tcp => "tcp socket",
            TransportKind::Shm => "memcpy",
            TransportKind::Verbs => "ib_write_bw (run rxe-setup/bench-verbs.sh)",
        };
        let (mut runs, mut secs, mut cpus, mut bases) = (vec![], vec![], vec![], vec![]);
        let mut two_slot = vec![];
        let mut base_lat = None;
        for round in 0..repeat {
            let (s, cpu) = throughput(group, size, iters, timeout, Receiver::Watching, round)?;
            let cpu_all: f64 = group
                .allgather(&cpu.to_string())?
                .iter()
                .filter_map(|c| c.parse::<f64>().ok())
                .sum();
            runs.push(gbps(size, iters, s));
            secs.push(s);
            cpus.push(cpu_all);
            if opts.throughput_only {
                continue;
            }
            // The baseline's latency is measured once, after its last run.
            let last = round + 1 == repeat;
            bases.push(match group.transport() {
                TransportKind::Tcp => {
                    let (g, l) = socket_baseline(group, size, iters, if last { pings } else { 0 })?;
                    if last {
                        base_lat = Some(l);
                    }
                    g
                }
                TransportKind::Shm if group.rank() == 0 => {
                    let base = memcpy_into(size, iters, 1);
                    two_slot.push(memcpy_into(size, iters, 2));
                    base
                }
                _ => 0.0,
            });
            group.barrier()?;
        }
        let ratios = pairwise(&runs, &bases);
        let base = median(&sorted_finite(&bases));
        let (two_slot_gbps, two_slot_ratio) = if two_slot.is_empty() {
            (None, None)
        } else {
            let ratios = pairwise(&runs, &two_slot);
            (
                Some(median(&sorted_finite(&two_slot))),
                Some(median(&sorted_finite(&ratios))),
            )
        };
        let mut r = WriteResult {
            transport: group.transport().to_string(),
            ranks: group.world(),
            size,
            iters,
            repeat,
            gbps: median(&sorted_finite(&runs)),
            secs: median(&sorted_finite(&secs)),
            cpu_secs: median(&sorted_finite(&cpus)),
            baseline_gbps: base,
            baseline: what,
            ratio: median(&sorted_finite(&ratios)),
            ratios,
            woken_gbps: None,
            woken_ratio: None,
            lat_us_p50: 0.0,
            lat_us_p99: 0.0,
            baseline_lat_us_p50: base_lat,
            two_slot_gbps,
            two_slot_ratio,
        };
        if opts.throughput_only {
            out.push(r);
            continue;
        }
        let (woken_secs, _) = throughput(group, size, iters, timeout, Receiver::Parked, 0)?;
        let woken = gbps(size, iters, woken_secs);
        let lat = latency(group, size, pings, timeout)?;
        r.woken_gbps = Some(woken);
        r.woken_ratio = Some(ratio(woken, base));
        r.lat_us_p50 = percentile(&lat, 50.0);
        r.lat_us_p99 = percentile(&lat, 99.0);
        out.push(r);
    }
    Ok(out)
}

/// Prints results as JSON lines or a table.
pub fn print(results: &[WriteResult], json: bool) {
    if json {
        for r in results {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return;
    }
    println!(
        "{:>10} {:>8} {:>10} {:>9} {:>10} {:>7} {:>7} {:>7} {:>10} {:>10}  baseline",
        "size", "iters", "Gbit/s", "cpu s", "base", "ratio", "2-slot", "woken", "p50 us", "p99 us"
    );
    for r in results {
        println!(
            "{:>10} {:>8} {:>10.2} {:>9.4} {:>10.2} {:>7.3} {:>7} {:>7} {:>10.2} {:>10.2}  {}",
            r.size,
            r.iters,
            r.gbps,
            r.cpu_secs,
            r.baseline_gbps,
            r.ratio,
            r.two_slot_ratio
                .map(|w| format!("{w:.3}"))
                .unwrap_or_else(|| "-".into()),
            r.woken_ratio
                .map(|w| format!("{w:.3}"))
                .unwrap_or_else(|| "-".into()),
            r.lat_us_p50,
            r.lat_us_p99,
            r.baseline
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_interval_is_a_hundredth_of_the_wait_within_bounds() {
        assert_eq!(watch_interval(Duration::ZERO), WATCH_MIN);
        assert_eq!(watch_interval(Duration::from_millis(5)), WATCH_MIN);
        assert_eq!(
            watch_interval(Duration::from_millis(50)),
            Duration::from_micros(500)
        );
        assert_eq!(watch_interval(Duration::from_secs(10)), WATCH_MAX);
    }
}
