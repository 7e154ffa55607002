//! `malt bench gather`: the time of one vol exchange round (`scatter()` then
//! `gather(Udf::Avg)`) of a dense `f32` vector, and the bytes it moves, for
//! a graph and a consistency mode.
//!
//! Every rank runs `rounds` measured rounds after a short warm-up; rank 0
//! prints one line (JSON with `json`) with its round-time percentiles and
//! the job's totals, gathered over the control channel: bytes and updates
//! sent by all ranks, updates merged, the largest staleness seen.
//!
//! Outside a job, [`run`] launches itself on `ranks` local ranks (default
//! 2), the way `malt bench write` does.
//!
//! Every result carries the CPU time all ranks spent in the measured rounds
//! (getrusage) next to their wall time. A plan (`--plan LEN:ROUNDS,...`)
//! measures several lengths in one job, one result per length.

use super::usage::{cpu_secs, pin_from_env};
use super::{Plan, MAX_COUNT};
use crate::launch;
use crate::quantile::percentile;
use crate::train::cli::MAX_LOCAL_RANKS;
use dstorm::{Group, Object, ObjectSpec, TransportKind};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use vol::{Consistency, DenseVector, Graph, Schedule, Udf, VectorOptions};

/// Most elements of the vector (`--len`, a plan's LEN): 2^28 floats, 1 GiB.
pub const MAX_LEN: usize = 1 << 28;

/// Options of `malt bench gather`.
#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// Elements of the vector.
    pub len: usize,
    /// Communication graph.
    pub graph: Graph,
    /// Consistency mode.
    pub sync: Consistency,
    /// Measured rounds.
    pub rounds: usize,
    /// Print one JSON line instead of a table row.
    pub json: bool,
    /// Ranks to launch when not already inside a job (default 2).
    pub ranks: Option<usize>,
    /// Transport for model bytes (default: `MALT_TRANSPORT`, else shm).
    pub transport: Option<TransportKind>,
    /// Add a control-channel barrier between scatter and gather (to compare
    /// the one-sided BSP with a barrier-based one; use with `sync` async).
    pub control_barrier: bool,
    /// Lengths with their round counts, measured one after the other in the
    /// same job; when set, `len` and `rounds` are not used by [`run`].
    pub plan: Option<Plan>,
    /// Pin every rank to one CPU ([`super::usage::pin`]).
    pub pin: bool,
    /// The gather's schedule: auto, direct or allreduce.
    pub schedule: Schedule,
}

impl Default for GatherOptions {
    fn default() -> Self {
        GatherOptions {
            len: 1 << 20,
            graph: Graph::All,
            sync: Consistency::Bsp,
            rounds: 100,
            json: false,
            ranks: None,
            transport: None,
            control_barrier: false,
            plan: None,
            pin: false,
            schedule: Schedule::Auto,
        }
    }
}

/// One rank's measurements, exchanged over the control channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
// One rank's line of the benchmark's output: its fields are the line's columns.
struct RankResult {
    p50: f64,
    p99: f64,
    bytes_sent: u64,
    updates_sent: u64,
    clock_bytes_sent: u64,
    updates_merged: u64,
    gathers_in_place: u64,
    gathers_allreduce: u64,
    max_staleness: u64,
    lapped: u64,
    torn: u64,
    wait_ns: u64,
    cpu_secs: f64,
    wall_secs: f64,
}

/// The job's result, printed by rank 0.
#[derive(Debug, Clone, Serialize)]
// One JSON line of `malt bench gather`: its fields are the line's columns,
// which scripts and the report read by name.
pub struct GatherResult {
    /// Ranks in the job.
    pub ranks: usize,
    /// Elements of the vector.
    pub len: usize,
    /// Element type.
    pub element: &'static str,
    /// Graph.
    pub graph: String,
    /// Consistency mode.
    pub sync: String,
    /// The schedule the gathers ran: direct or allreduce (see
    /// `vol::allreduce`).
    pub schedule: String,
    /// Transport.
    pub transport: String,
    /// Measured rounds.
    pub rounds: usize,
    /// Whether a control-channel barrier separated scatter and gather.
    pub control_barrier: bool,
    /// Rank 0's median round time, microseconds.
    pub round_us_p50: f64,
    /// Rank 0's 99th percentile round time, microseconds.
    pub round_us_p99: f64,
    /// The largest median round time over all ranks, microseconds.
    pub round_us_p50_max: f64,
    /// Payload bytes sent by all ranks during the measured rounds.
    pub bytes_sent: u64,
    /// Updates sent by all ranks.
    pub updates_sent: u64,
    /// Progress-clock bytes sent by all ranks (not in `bytes_sent`).
    pub clock_bytes_sent: u64,
    /// Updates merged by all ranks.
    pub updates_merged: u64,
    /// Gathers (all ranks) that merged in place, straight from the receive
    /// queues: every one under `bsp`.
    pub gathers_in_place: u64,
    /// Gathers (all ranks) that ran the allreduce schedule.
    pub gathers_allreduce: u64,
    /// Largest staleness of a merged update on any rank.
    pub max_staleness: u64,
    /// Updates overwritten before they were read, all ranks.
    pub lapped: u64,
    /// Torn updates skipped, all ranks.
    pub torn: u64,
    /// Time spent in consistency waits, all ranks, nanoseconds.
    pub wait_ns: u64,
    /// CPU seconds (user + system) all ranks spent in the measured rounds.
    pub cpu_secs: f64,
    /// Rank 0's wall seconds for the measured rounds.
    pub wall_secs: f64,
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatherError {
    /// Bad options.
    #[error("{0}")]
    Invalid(String),
    /// vol failed.
    #[error(transparent)]
    Vol(#[from] vol::VolError),
    /// dstorm failed.
    #[error(transparent)]
    Dstorm(#[from] dstorm::Error),
    /// A rank's result could not be read.
    #[error("rank {rank} sent an unreadable result: {source}")]
    Result {
        /// The rank.
        rank: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

fn validate(opts: &GatherOptions) -> Result<(), GatherError> {
    if opts.rounds == 0 {
        return Err(GatherError::Invalid("--rounds must be at least 1".into()));
    }
    if opts.ranks == Some(0) {
        return Err(GatherError::Invalid("--ranks must be at least 1".into()));
    }
    if let Some(n) = opts.ranks.filter(|&n| n > MAX_LOCAL_RANKS) {
        return Err(GatherError::Invalid(format!(
            "--ranks {n} is above the limit of {MAX_LOCAL_RANKS}"
        )));
    }
    if opts.len == 0 || opts.plan.as_ref().is_some_and(|p| p.0.is_empty()) {
        return Err(GatherError::Invalid(
            "the vector needs at least one element".into(),
        ));
    }
    let steps = opts.plan.as_ref().map_or(&[][..], |p| &p.0[..]);
    for &(len, rounds) in steps.iter().chain([(opts.len, opts.rounds)].iter()) {
        if len > MAX_LEN {
            return Err(GatherError::Invalid(format!(
                "a vector of {len} elements is above the limit of {MAX_LEN}"
            )));
        }
        if rounds > MAX_COUNT {
            return Err(GatherError::Invalid(format!(
                "{rounds} rounds are above the limit of {MAX_COUNT}"
            )));
        }
    }
    Ok(())
}

/// The arguments that make `malt` run this benchmark inside a job.
pub fn command_line(opts: &GatherOptions) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "bench".into(),
        "gather".into(),
        "--len".into(),
        opts.len.to_string(),
        "--graph".into(),
        opts.graph.to_string(),
        "--sync".into(),
        opts.sync.to_string(),
        "--rounds".into(),
        opts.rounds.to_string(),
        "--schedule".into(),
        opts.schedule.to_string(),
    ];
    if let Some(t) = opts.transport {
        a.push("--transport".into());
        a.push(t.to_string());
    }
    if opts.json {
        a.push("--json".into());
    }
    if opts.control_barrier {
        a.push("--control-barrier".into());
    }
    if let Some(p) = &opts.plan {
        a.push("--plan".into());
        a.push(p.to_string());
    }
    if opts.pin {
        a.push("--pin".into());
    }
    a
}

/// The options of each measurement: one per plan entry, or `opts` itself.
fn steps(opts: &GatherOptions) -> Vec<GatherOptions> {
    match &opts.plan {
        Some(plan) => plan
            .0
            .iter()
            .map(|&(len, rounds)| GatherOptions {
                len,
                rounds,
                plan: None,
                ..opts.clone()
            })
            .collect(),
        None => vec![opts.clone()],
    }
}

/// Runs `malt bench gather`: inside a job, measures and (on rank 0) prints;
/// outside one, launches this executable on `opts.ranks` ranks (default 2)
/// with the same options. Returns the process exit code.
pub fn run(opts: &GatherOptions) -> i32 {
    if let Err(e) = validate(opts) {
        eprintln!("malt bench gather: {e}");
        return 2;
    }
    if !launch::inside_job() {
        return relaunch(opts);
    }
    if opts.pin {
        pin_from_env("malt bench gather");
    }
    let group = match join(opts.transport) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("malt bench gather: {e}");
            return 2;
        }
    };
    let leave = match leave_object(&group) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("malt bench gather: {e}");
            return 2;
        }
    };
    let mut measured = Ok(());
    for (i, step) in steps(opts).iter().enumerate() {
        match bench(&group, step) {
            Ok(Some(r)) => print(&r, opts.json, i == 0),
            Ok(None) => {}
            Err(e) => {
                measured = Err(e);
                break;
            }
        }
    }
    match measured {
        Ok(()) => match finish(group, leave) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("malt bench gather: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("malt bench gather: rank {}: {e}", group.rank());
            1
        }
    }
}

fn relaunch(opts: &GatherOptions) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("malt bench gather: cannot find my own executable: {e}");
            return 2;
        }
    };
    let transport = opts.transport.unwrap_or(TransportKind::Shm);
    let lo = launch::LaunchOptions {
        ranks: opts.ranks.unwrap_or(2),
        transport,
        timeout: None,
        program: exe,
        args: command_line(opts),
        prefix: false,
        env: Vec::new(),
    };
    match launch::launch(&lo) {
        Ok(outcome) => {
            for (rank, why) in outcome.failures() {
                eprintln!("malt bench gather: rank {rank} {why}");
            }
            outcome.exit_code()
        }
        Err(e) => {
            eprintln!("malt bench gather: {e}");
            2
        }
    }
}

fn join(transport: Option<TransportKind>) -> Result<Group, dstorm::Error> {
    let mut cfg = dstorm::Config::from_env()?;
    if let Some(t) = transport {
        cfg.transport = t;
    }
    Group::join(cfg)
}

/// An object through which every rank tells rank 0 it has seen the final
/// barrier: rank 0 hosts the control channel's coordinator and must not
/// exit before the others have received its last reply.
fn leave_object(group: &Group) -> Result<Object, dstorm::Error> {
    let rows: Vec<Vec<usize>> = (0..group.world())
        .map(|r| if r == 0 { Vec::new() } else { vec![0] })
        .collect();
    group.create_object(&ObjectSpec::new("bench-gather-leave", 8).graph(rows))
}

fn finish(group: Group, mut leave: Object) -> Result<(), dstorm::Error> {
    group.barrier()?;
    if group.rank() != 0 {
        leave.write(0, &[1u8; 8], 0)?;
    } else {
        let mut buf = [0u8; 8];
        let deadline = Instant::now() + group.config().timeout;
        for _ in 1..group.world() {
            let left = deadline.saturating_duration_since(Instant::now());
            if leave.poll_timeout(&mut buf, left)?.is_none() {
                break;
            }
        }
    }
    drop(leave);
    // Leaving without `finish` would abort the job for the others.
    group.finish()
}

/// Measures on an already joined group. Returns the job's result on rank 0
/// and `None` elsewhere.
pub fn bench(group: &Group, opts: &GatherOptions) -> Result<Option<GatherResult>, GatherError> {
    validate(opts)?;
    let rank = group.rank();
    let vopts = VectorOptions::new()
        .graph(opts.graph.clone())
        .consistency(opts.sync)
        .schedule(opts.schedule);
    let init: Vec<f32> = (0..opts.len)
        .map(|i| ((rank * 31 + i) % 1000) as f32 * 1e-3)
        .collect();
    let name = format!(
        "bench-gather:{}:{}:{}:{}:{}",
        opts.len,
        opts.graph,
        opts.sync,
        opts.schedule,
        if opts.control_barrier { "barrier" } else { "" }
    );
    let mut v = DenseVector::<f32>::from_slice(group, &name, &init, &vopts)?;
    let round = |v: &mut DenseVector<f32>| -> Result<Schedule, GatherError> {
        v.scatter()?;
        if opts.control_barrier {
            group.barrier()?;
        }
        Ok(v.gather(Udf::Avg)?.schedule)
    };
    let mut schedule = Schedule::Direct;
    for _ in 0..opts.rounds.min(5) {
        round(&mut v)?;
    }
    group.barrier()?;
    let before = v.stats().clone();
    // Samples are kept as rounds complete, never reserved for rounds that
    // may not run.
    let mut times = Vec::with_capacity(opts.rounds.min(1024));
    let cpu0 = cpu_secs();
    let start = Instant::now();
    for _ in 0..opts.rounds {
        let t0 = Instant::now();
        schedule = round(&mut v)?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let wall_secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let after = v.stats().clone();
    times.sort_by(f64::total_cmp);
    let mine = RankResult {
        p50: percentile(&times, 50.0),
        p99: percentile(&times, 99.0),
        bytes_sent: after.bytes_sent - before.bytes_sent,
        updates_sent: after.updates_sent - before.updates_sent,
        clock_bytes_sent: after.clock_bytes_sent - before.clock_bytes_sent,
        updates_merged: after.updates_merged - before.updates_merged,
        gathers_in_place: after.gathers_in_place - before.gathers_in_place,
        gathers_allreduce: after.gathers_allreduce - before.gathers_allreduce,
        max_staleness: after.max_staleness,
        lapped: after.lapped,
        torn: after.torn,
        wait_ns: after.wait_ns - before.wait_ns,
        cpu_secs: cpu,
        wall_secs,
    };
    let text =
        serde_json::to_string(&mine).map_err(|source| GatherError::Result { rank, source })?;
    let all = group.allgather(&text)?;
    // Keep the vector (and its segment) until every rank is done with it.
    group.barrier()?;
    drop(v);
    if rank != 0 {
        return Ok(None);
    }
    let mut ranks = Vec::with_capacity(all.len());
    for (r, t) in all.iter().enumerate() {
        let x: RankResult =
            serde_json::from_str(t).map_err(|source| GatherError::Result { rank: r, source })?;
        ranks.push(x);
    }
    Ok(Some(GatherResult {
        ranks: group.world(),
        len: opts.len,
        element: "f32",
        graph: opts.graph.to_string(),
        sync: opts.sync.to_string(),
        schedule: schedule.to_string(),
        transport: group.transport().to_string(),
        rounds: opts.rounds,
        control_barrier: opts.control_barrier,
        round_us_p50: ranks[0].p50,
        round_us_p99: ranks[0].p99,
        round_us_p50_max: ranks.iter().map(|r| r.p50).fold(0.0, f64::max),
        bytes_sent: ranks.iter().map(|r| r.bytes_sent).sum(),
        updates_sent: ranks.iter().map(|r| r.updates_sent).sum(),
        clock_bytes_sent: ranks.iter().map(|r| r.clock_bytes_sent).sum(),
        updates_merged: ranks.iter().map(|r| r.updates_merged).sum(),
        gathers_in_place: ranks.iter().map(|r| r.gathers_in_place).sum(),
        gathers_allreduce: ranks.iter().map(|r| r.gathers_allreduce).sum(),
        max_staleness: ranks.iter().map(|r| r.max_staleness).max().unwrap_or(0),
        lapped: ranks.iter().map(|r| r.lapped).sum(),
        torn: ranks.iter().map(|r| r.torn).sum(),
        wait_ns: ranks.iter().map(|r| r.wait_ns).sum(),
        cpu_secs: ranks.iter().map(|r| r.cpu_secs).sum(),
        wall_secs: ranks[0].wall_secs,
    }))
}

/// Prints the result: one JSON line, or a row (after a header when `header`).
pub fn print(r: &GatherResult, json: bool, header: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    if header {
        print_header();
    }
    println!(
        "{:>5} {:>10} {:>10} {:>8} {:>9} {:>9} {:>10.1} {:>10.1} {:>9.4} {:>14} {:>9} {:>9}",
        r.ranks,
        r.len,
        r.graph,
        r.sync,
        r.schedule,
        r.transport,
        r.round_us_p50,
        r.round_us_p99,
        r.cpu_secs,
        r.bytes_sent,
        r.updates_merged,
        r.max_staleness
    );
}

fn print_header() {
    println!(
        "{:>5} {:>10} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10} {:>9} {:>14} {:>9} {:>9}",
        "ranks",
        "len",
        "graph",
        "sync",
        "schedule",
        "transport",
        "p50 us",
        "p99 us",
        "cpu s",
        "bytes sent",
        "merged",
        "max stale"
    );
}
