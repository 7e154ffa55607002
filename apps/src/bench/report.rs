//! `malt bench report`: reads the measurements `benches/peers/run.sh`
//! collected (one JSON object per line) and writes a Markdown table, a JSON
//! file with medians, spreads and ratios, and a plot of throughput against
//! size; returns the summary the script prints as its last line.
//!
//! Input lines look like
//! `{"run":3,"system":"mpi_put","op":"write","data":{...}}`, where `data` is
//! one line printed by `malt bench write --json`, `malt bench gather --json`
//! or a peer program (they share the field names);
//! `{"run":3,"system":"machine","op":"load","data":{"loadavg1":1.2}}` records
//! the load average when a run started, and
//! `{"run":0,"system":"machine","op":"time","data":{"total_secs":600}}` the
//! script's run time.
//!
//! Speeds: a write's is its throughput; an exchange's is the inverse of its
//! median round time. A ratio is malt's speed divided by the peer's, so
//! above 1 means malt is faster. It is taken run by run (both measured in
//! the same run, side by side), and a cell's ratio is the median over runs;
//! a system's own numbers are medians over runs too, with the smallest and
//! largest run as the spread.
//!
//! The model exchange runs malt twice, with the direct and with the
//! allreduce schedule forced (systems `malt_direct` and `malt_allreduce`).
//! The targets hold malt to the schedule `--schedule auto` would pick at
//! each rank count and size ([`auto_system`]), under the name
//! [`MALT_AUTO`]; both schedules' ratios are reported as well.

use super::markdown::markdown;
pub use super::markdown::{human_bytes, human_floats};
use super::plot::{self, Panel};
use crate::quantile::{median, sorted_finite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// Systems of the point-to-point comparison, in table order.
pub const WRITE_SYSTEMS: &[(&str, &str)] = &[
    ("malt", "malt write (shm)"),
    ("mpi_put", "MPI_Put+flush (Win_allocate)"),
    ("mpi_put_create", "MPI_Put+flush (Win_create)"),
    ("memcpy", "memcpy"),
    ("memcpy_two_slot", "two-slot memcpy"),
];

/// Systems of the model exchange, in table order.
pub const EXCHANGE_SYSTEMS: &[(&str, &str)] = &[
    ("malt_direct", "malt direct"),
    ("malt_allreduce", "malt allreduce"),
    ("mpi", "MPI_Allreduce+divide"),
    ("gloo", "Gloo allreduce+divide"),
];

/// malt's system in the write comparison.
pub const MALT_WRITE: &str = "malt";

/// malt's systems in the model exchange, one per schedule: `(system,
/// schedule)`.
pub const MALT_EXCHANGE: &[(&str, &str)] =
    &[("malt_direct", "direct"), ("malt_allreduce", "allreduce")];

/// The ratios of the schedule `--schedule auto` picks, in
/// [`Row::ratios`] of the exchange.
pub const MALT_AUTO: &str = "malt_auto";

/// Exchange sizes (floats) the round targets cover: 1 Ki to 16 Mi.
pub const ROUND_FLOATS: RangeInclusive<usize> = (1 << 10)..=(16 << 20);

/// Write sizes (bytes) the two-slot target covers: 64 KiB to 64 MiB.
pub const WRITE_BYTES: RangeInclusive<usize> = (64 << 10)..=(64 << 20);

/// The targets: a key of the summary and the least value that meets it.
pub const TARGETS: &[(&str, f64)] = &[
    ("min_geomean_round_vs_mpi_allreduce", 1.0),
    ("min_geomean_round_vs_gloo", 1.5),
    ("min_cell_round_vs_mpi_allreduce", 0.85),
    ("min_cell_round_vs_gloo", 1.2),
    ("min_write_vs_two_slot", 0.95),
];

/// The text of a target in `targets_met`: `key>=value`.
pub fn target_text(key: &str, least: f64) -> String {
    format!("{key}>={least:?}")
}

/// The malt system whose schedule `--schedule auto` picks for a vector of
/// `bytes` bytes among `ranks` ranks (graph all, BSP, dense).
pub fn auto_system(ranks: usize, bytes: usize) -> &'static str {
    // vol's own rule, on the options malt bench gather uses (all, bsp).
    let opts = vol::VectorOptions::new();
    match vol::allreduce::choose(&opts, ranks, bytes / 4, 4) {
        Ok(vol::Schedule::Allreduce) => "malt_allreduce",
        _ => "malt_direct",
    }
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not one of the expected JSON objects.
    #[error("{path}:{line}: {why}")]
    Line {
        /// The input file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// Nothing to report.
    #[error("{0}: no measurements in the input")]
    Empty(PathBuf),
    /// The plot could not be drawn.
    #[error("plot {file}: {message}")]
    Plot {
        /// The picture.
        file: String,
        /// Why.
        message: String,
    },
    /// The report could not be serialized.
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Options of `malt bench report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The collected lines.
    pub input: PathBuf,
    /// Where report.md, report.json and the plot go.
    pub out: PathBuf,
    /// The date of the measurement, as the script saw it.
    pub date: String,
    /// One line describing the machine.
    pub machine: String,
    /// Whether this was the quick (smoke) mode.
    pub quick: bool,
}

#[derive(Debug, Deserialize)]
struct Line {
    run: usize,
    system: String,
    op: String,
    data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct WriteData {
    size: usize,
    iters: usize,
    gbps: f64,
    secs: f64,
    cpu_secs: f64,
}

#[derive(Debug, Deserialize)]
struct ExchangeData {
    ranks: usize,
    len: usize,
    rounds: usize,
    round_us_p50: f64,
    cpu_secs: f64,
    #[serde(default)]
    schedule: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoadData {
    loadavg1: f64,
    #[serde(default)]
    others_cores: Option<f64>,
}

/// How long the script ran, in seconds.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
pub struct RunTime {
    /// Installing packages and building.
    pub build_secs: Option<f64>,
    /// The measurement (every run of every system).
    pub measure_secs: Option<f64>,
    /// From the start of the script to the report.
    pub total_secs: Option<f64>,
}

/// One run's numbers for one system at one size.
#[derive(Debug, Clone, Copy)]
struct Sample {
    run: usize,
    /// Gbit/s for writes, microseconds per round for exchanges.
    value: f64,
    /// CPU microseconds per write or round, all ranks together.
    cpu_us: f64,
    /// Wall microseconds per write or round.
    wall_us: f64,
}

/// Median and spread over runs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    /// Median (the mean of the two middle runs for an even count).
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Runs.
    pub runs: usize,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let v = sorted_finite(values);
        let n = v.len();
        if n == 0 {
            return None;
        }
        Some(Spread {
            median: median(&v),
            min: v[0],
            max: v[n - 1],
            runs: n,
        })
    }
}

/// The geometric mean of `values`; `None` when there are none or one is not
/// a positive finite number.
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    let log: f64 = values.iter().map(|v| v.ln()).sum();
    Some((log / values.len() as f64).exp())
}

/// One system at one size.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStats {
    /// Gbit/s (writes) or microseconds per round (exchanges).
    pub value: Spread,
    /// Wall microseconds per write or round.
    pub wall_us: Spread,
    /// CPU microseconds per write or round, all ranks together.
    pub cpu_us: Spread,
}

/// malt's speed over a peer's at one size: run by run, and over runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratio {
    /// Median, smallest and largest of the runs' ratios.
    #[serde(flatten)]
    pub spread: Spread,
    /// `(run, ratio)` of every run that measured both.
    pub per_run: Vec<(usize, f64)>,
}

/// One size of one comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Ranks.
    pub ranks: usize,
    /// Message or vector size in floats (4 bytes).
    pub floats: usize,
    /// The same in bytes.
    pub bytes: usize,
    /// Per system.
    pub systems: BTreeMap<String, SystemStats>,
    /// Exchange only: the malt system `--schedule auto` picks here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<String>,
    /// Per malt system (and [`MALT_AUTO`]), per peer: malt's speed over the
    /// peer's; above 1, malt is faster.
    pub ratios: BTreeMap<String, BTreeMap<String, Ratio>>,
}

impl Row {
    /// The ratio of `malt` over `peer`, if both were measured.
    pub fn ratio(&self, malt: &str, peer: &str) -> Option<&Ratio> {
        self.ratios.get(malt).and_then(|m| m.get(peer))
    }
}

/// How busy the machine was with other work during one run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RunLoad {
    /// The run.
    pub run: usize,
    /// 1-minute load average when the run started (it also counts the
    /// previous run's own processes).
    pub loadavg1: f64,
    /// CPU time used by processes other than the benchmark's during the run,
    /// divided by the run's wall time: how many cores others took.
    pub others_cores: Option<f64>,
}

/// The load during the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Lowest 1-minute load average when a run started.
    pub min: f64,
    /// Highest.
    pub max: f64,
    /// Most cores other processes took during a run.
    pub others_max: Option<f64>,
    /// Per run, in run order.
    pub per_run: Vec<RunLoad>,
}

/// The round ratios of one malt schedule against MPI and Gloo.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Scores {
    /// Geometric mean over sizes of the median ratios against
    /// `MPI_Allreduce` (over rank counts: the smallest).
    pub geomean_vs_mpi_allreduce: Option<f64>,
    /// The same against Gloo.
    pub geomean_vs_gloo: Option<f64>,
    /// Smallest median ratio of any size against `MPI_Allreduce`.
    pub min_cell_vs_mpi_allreduce: Option<f64>,
    /// The same against Gloo.
    pub min_cell_vs_gloo: Option<f64>,
}

/// The targets of issue 22, whether they are met, and what they came from.
#[derive(Debug, Clone, Serialize)]
// The summary of a report as written to JSON: its fields are the keys of
// the line run.sh prints last, so they stay together in one struct.
pub struct Summary {
    /// Over rank counts, the smallest geometric mean over sizes of the
    /// median round ratio against `MPI_Allreduce` (malt: the auto schedule).
    pub min_geomean_round_vs_mpi_allreduce: Option<f64>,
    /// The same against Gloo.
    pub min_geomean_round_vs_gloo: Option<f64>,
    /// The smallest median round ratio of any size and rank count against
    /// `MPI_Allreduce`.
    pub min_cell_round_vs_mpi_allreduce: Option<f64>,
    /// The same against Gloo.
    pub min_cell_round_vs_gloo: Option<f64>,
    /// The smallest median ratio of malt's write throughput to the two-slot
    /// memcpy's, 64 KiB to 64 MiB.
    pub min_write_vs_two_slot: Option<f64>,
    /// The same against `MPI_Put` + flush (`MPI_Win_allocate`); no target.
    pub min_write_vs_mpi_put: Option<f64>,
    /// Each target (`key>=value`): met, not met, or `null` when not measured.
    pub targets_met: BTreeMap<String, Option<bool>>,
    /// Per rank count, per schedule (`auto`, `direct`, `allreduce`).
    pub round_by_ranks: BTreeMap<usize, BTreeMap<String, Scores>>,
    /// Per schedule, the smallest of each score over rank counts.
    pub round_by_schedule: BTreeMap<String, Scores>,
    /// Runs per system and size (the fewest seen).
    pub runs: usize,
    /// Highest 1-minute load average when a run started.
    pub load_max: Option<f64>,
    /// Most cores other processes took during a run.
    pub others_cores_max: Option<f64>,
    /// How long the script ran.
    #[serde(flatten)]
    pub time: RunTime,
    /// Whether this was the quick mode.
    pub quick: bool,
    /// The report's Markdown file.
    pub report: String,
}

impl Summary {
    /// The value of a key of [`TARGETS`].
    pub fn value(&self, key: &str) -> Option<f64> {
        match key {
            "min_geomean_round_vs_mpi_allreduce" => self.min_geomean_round_vs_mpi_allreduce,
            "min_geomean_round_vs_gloo" => self.min_geomean_round_vs_gloo,
            "min_cell_round_vs_mpi_allreduce" => self.min_cell_round_vs_mpi_allreduce,
            "min_cell_round_vs_gloo" => self.min_cell_round_vs_gloo,
            "min_write_vs_two_slot" => self.min_write_vs_two_slot,
            "min_write_vs_mpi_put" => self.min_write_vs_mpi_put,
            _ => None,
        }
    }
}

/// Everything written to report.json.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Date of the measurement.
    pub date: String,
    /// The machine.
    pub machine: String,
    /// Load during the measurement.
    pub load: Option<Load>,
    /// Point to point, 2 ranks.
    pub write: Vec<Row>,
    /// Model exchange, per rank count.
    pub exchange: Vec<Row>,
    /// The targets.
    pub summary: Summary,
}

type Table = BTreeMap<(usize, usize), BTreeMap<String, Vec<Sample>>>;

struct Collected {
    write: Table,
    exchange: Table,
    load: Vec<RunLoad>,
    time: RunTime,
}

/// The largest raw.jsonl `malt bench report` reads: a full run writes
/// about 100 KiB.
const MAX_INPUT: u64 = 64 << 20;

fn read_lines(path: &Path) -> Result<Collected, ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_INPUT {
        return Err(ReportError::Line {
            path: path.to_path_buf(),
            line: 0,
            why: format!("{size} bytes, more than the {MAX_INPUT} a run writes"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut c = Collected {
        write: Table::new(),
        exchange: Table::new(),
        load: Vec::new(),
        time: RunTime::default(),
    };
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let bad = |why: String| ReportError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            why,
        };
        let line: Line = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        match line.op.as_str() {
            "write" => {
                let d: WriteData =
                    serde_json::from_value(line.data).map_err(|e| bad(e.to_string()))?;
                if d.iters == 0 || d.size == 0 {
                    return Err(bad("a write with no size or no updates".into()));
                }
                if !WRITE_SYSTEMS.iter().any(|s| s.0 == line.system) {
                    return Err(bad(format!("unknown write system {:?}", line.system)));
                }
                let per = 1e6 / d.iters as f64;
                c.write
                    .entry((2, d.size))
                    .or_default()
                    .entry(line.system)
                    .or_default()
                    .push(Sample {
                        run: line.run,
                        value: d.gbps,
                        cpu_us: d.cpu_secs * per,
                        wall_us: d.secs * per,
                    });
            }
            "exchange" => {
                let d: ExchangeData =
                    serde_json::from_value(line.data).map_err(|e| bad(e.to_string()))?;
                if d.rounds == 0 || d.len == 0 {
                    return Err(bad("an exchange with no elements or no rounds".into()));
                }
                // A malt system must have run the schedule it is named for.
                if let Some(want) = MALT_EXCHANGE.iter().find(|m| m.0 == line.system) {
                    let ran = d.schedule.as_deref().unwrap_or("no");
                    if want.1 != ran {
                        return Err(bad(format!("system {} ran {ran} schedule", line.system)));
                    }
                } else if !EXCHANGE_SYSTEMS.iter().any(|s| s.0 == line.system) {
                    return Err(bad(format!("unknown exchange system {:?}", line.system)));
                }
                let bytes = d
                    .len
                    .checked_mul(4)
                    .ok_or_else(|| bad(format!("a vector of {} floats", d.len)))?;
                c.exchange
                    .entry((d.ranks, bytes))
                    .or_default()
                    .entry(line.system)
                    .or_default()
                    .push(Sample {
                        run: line.run,
                        value: d.round_us_p50,
                        cpu_us: d.cpu_secs * 1e6 / d.rounds as f64,
                        wall_us: d.round_us_p50,
                    });
            }
            "load" => {
                let d: LoadData =
                    serde_json::from_value(line.data).map_err(|e| bad(e.to_string()))?;
                c.load.push(RunLoad {
                    run: line.run,
                    loadavg1: d.loadavg1,
                    others_cores: d.others_cores,
                });
            }
            "time" => {
                c.time = serde_json::from_value(line.data).map_err(|e| bad(e.to_string()))?;
            }
            other => return Err(bad(format!("unknown op {other:?}"))),
        }
    }
    Ok(c)
}

/// The run-by-run ratio of `malt` over `peer` (speeds); `None` when no run
/// measured both.
fn ratio(malt: &[Sample], peer: &[Sample], higher_is_faster: bool) -> Option<Ratio> {
    let speed = |v: f64| if higher_is_faster { v } else { 1.0 / v };
    let per_run: Vec<(usize, f64)> = malt
        .iter()
        .filter(|m| m.value > 0.0)
        .filter_map(|m| {
            peer.iter()
                .find(|p| p.run == m.run && p.value > 0.0)
                .map(|p| (m.run, speed(m.value) / speed(p.value)))
        })
        .collect();
    let values: Vec<f64> = per_run.iter().map(|x| x.1).collect();
    Spread::of(&values).map(|spread| Ratio { spread, per_run })
}

/// The rows of one comparison: `malts` are malt's systems, every other
/// system is a peer; `higher_is_faster` for throughputs, not for times;
/// `auto` names the malt system the auto schedule picks (exchange).
fn rows(
    table: &Table,
    malts: &[&str],
    higher_is_faster: bool,
    auto: Option<fn(usize, usize) -> &'static str>,
) -> Vec<Row> {
    let mut out = Vec::new();
    for (&(ranks, bytes), systems) in table {
        let mut stats = BTreeMap::new();
        for (name, samples) in systems {
            let pick = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
            if let (Some(value), Some(wall_us), Some(cpu_us)) = (
                Spread::of(&pick(|s| s.value)),
                Spread::of(&pick(|s| s.wall_us)),
                Spread::of(&pick(|s| s.cpu_us)),
            ) {
                stats.insert(
                    name.clone(),
                    SystemStats {
                        value,
                        wall_us,
                        cpu_us,
                    },
                );
            }
        }
        let mut ratios: BTreeMap<String, BTreeMap<String, Ratio>> = BTreeMap::new();
        for malt in malts {
            let Some(m) = systems.get(*malt) else {
                continue;
            };
            for (peer, p) in systems.iter().filter(|(k, _)| !malts.contains(&k.as_str())) {
                if let Some(r) = ratio(m, p, higher_is_faster) {
                    ratios
                        .entry(malt.to_string())
                        .or_default()
                        .insert(peer.clone(), r);
                }
            }
        }
        let auto = auto.map(|f| f(ranks, bytes).to_string());
        if let Some(picked) = auto.as_ref().and_then(|a| ratios.get(a)).cloned() {
            ratios.insert(MALT_AUTO.to_string(), picked);
        }
        out.push(Row {
            ranks,
            floats: bytes / 4,
            bytes,
            systems: stats,
            auto,
            ratios,
        });
    }
    out
}

/// The median ratios of `malt` over `peer` at every size of `rows` whose
/// `size(row)` lies in `range`; `None` when there is no such size or one of
/// them lacks the ratio (a missing cell must not pass a target).
pub fn cells(
    rows: &[&Row],
    malt: &str,
    peer: &str,
    size: fn(&Row) -> usize,
    range: &RangeInclusive<usize>,
) -> Option<Vec<f64>> {
    let v: Option<Vec<f64>> = rows
        .iter()
        .filter(|r| range.contains(&size(r)))
        .map(|r| r.ratio(malt, peer).map(|x| x.spread.median))
        .collect();
    v.filter(|v| !v.is_empty())
}

fn min_of(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut out: Option<f64> = None;
    for v in values {
        let v = v?;
        out = Some(out.map_or(v, |o| o.min(v)));
    }
    out
}

/// The exchange rank counts of `rows`, ascending.
pub fn rank_counts(rows: &[Row]) -> Vec<usize> {
    let mut ranks: Vec<usize> = rows.iter().map(|x| x.ranks).collect();
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

/// The round scores of malt system `malt` at `ranks` ranks.
fn scores(exchange: &[Row], ranks: usize, malt: &str) -> Scores {
    let at: Vec<&Row> = exchange.iter().filter(|r| r.ranks == ranks).collect();
    let c = |peer| cells(&at, malt, peer, |r| r.floats, &ROUND_FLOATS);
    let (mpi, gloo) = (c("mpi"), c("gloo"));
    let least = |v: &Option<Vec<f64>>| v.as_ref().and_then(|v| min_of(v.iter().map(|x| Some(*x))));
    Scores {
        geomean_vs_mpi_allreduce: mpi.as_deref().and_then(geomean),
        geomean_vs_gloo: gloo.as_deref().and_then(geomean),
        min_cell_vs_mpi_allreduce: least(&mpi),
        min_cell_vs_gloo: least(&gloo),
    }
}

/// The summary of the rows: the targets and what they came from.
pub fn summarize(
    write: &[Row],
    exchange: &[Row],
    load: Option<&Load>,
    time: RunTime,
    opts: &ReportOptions,
) -> Summary {
    // (name, malt system), the name being the schedule's.
    let schedules = [
        ("auto", MALT_AUTO),
        (MALT_EXCHANGE[0].1, MALT_EXCHANGE[0].0),
        (MALT_EXCHANGE[1].1, MALT_EXCHANGE[1].0),
    ];
    let ranks = rank_counts(exchange);
    let mut round_by_ranks = BTreeMap::new();
    for &n in &ranks {
        let per: BTreeMap<String, Scores> = schedules
            .iter()
            .map(|&(name, malt)| (name.to_string(), scores(exchange, n, malt)))
            .collect();
        round_by_ranks.insert(n, per);
    }
    // Over rank counts: the smallest of each score, `None` when a rank
    // count lacks it (or none was measured).
    let least = |name: &str, f: fn(&Scores) -> Option<f64>| {
        if round_by_ranks.is_empty() {
            return None;
        }
        min_of(round_by_ranks.values().map(|per| per.get(name).and_then(f)))
    };
    let round_by_schedule: BTreeMap<String, Scores> = schedules
        .iter()
        .map(|&(name, _)| {
            let s = Scores {
                geomean_vs_mpi_allreduce: least(name, |s| s.geomean_vs_mpi_allreduce),
                geomean_vs_gloo: least(name, |s| s.geomean_vs_gloo),
                min_cell_vs_mpi_allreduce: least(name, |s| s.min_cell_vs_mpi_allreduce),
                min_cell_vs_gloo: least(name, |s| s.min_cell_vs_gloo),
            };
            (name.to_string(), s)
        })
        .collect();
    let all_write: Vec<&Row> = write.iter().collect();
    let write_min = |peer| {
        cells(&all_write, MALT_WRITE, peer, |r| r.bytes, &WRITE_BYTES)
            .and_then(|v| min_of(v.into_iter().map(Some)))
    };
    let auto = round_by_schedule.get("auto").copied().unwrap_or_default();
    let mut s = Summary {
        min_geomean_round_vs_mpi_allreduce: auto.geomean_vs_mpi_allreduce,
        min_geomean_round_vs_gloo: auto.geomean_vs_gloo,
        min_cell_round_vs_mpi_allreduce: auto.min_cell_vs_mpi_allreduce,
        min_cell_round_vs_gloo: auto.min_cell_vs_gloo,
        min_write_vs_two_slot: write_min("memcpy_two_slot"),
        min_write_vs_mpi_put: write_min("mpi_put"),
        targets_met: BTreeMap::new(),
        round_by_ranks,
        round_by_schedule,
        runs: write
            .iter()
            .chain(exchange)
            .flat_map(|r| r.systems.values().map(|s| s.value.runs))
            .min()
            .unwrap_or(0),
        load_max: load.map(|l| l.max),
        others_cores_max: load.and_then(|l| l.others_max),
        time,
        quick: opts.quick,
        report: opts.out.join("report.md").display().to_string(),
    };
    s.targets_met = TARGETS
        .iter()
        .map(|&(key, least)| (target_text(key, least), s.value(key).map(|v| v >= least)))
        .collect();
    s
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the input, writes report.md, report.json, peers.png and peers.svg
/// into `opts.out`, and returns the summary.
pub fn run(opts: &ReportOptions) -> Result<Summary, ReportError> {
    let c = read_lines(&opts.input)?;
    if c.write.is_empty() && c.exchange.is_empty() {
        return Err(ReportError::Empty(opts.input.clone()));
    }
    std::fs::create_dir_all(&opts.out).map_err(|source| ReportError::Io {
        path: opts.out.clone(),
        source,
    })?;
    let write = rows(&c.write, &[MALT_WRITE], true, None);
    let malts: Vec<&str> = MALT_EXCHANGE.iter().map(|m| m.0).collect();
    let exchange = rows(&c.exchange, &malts, false, Some(auto_system));
    let load = {
        let mut per_run = c.load.clone();
        per_run.sort_by_key(|l| l.run);
        let values: Vec<f64> = per_run.iter().map(|l| l.loadavg1).collect();
        let others: Vec<f64> = per_run.iter().filter_map(|l| l.others_cores).collect();
        Spread::of(&values).map(|s| Load {
            min: s.min,
            max: s.max,
            others_max: Spread::of(&others).map(|o| o.max),
            per_run,
        })
    };
    let summary = summarize(&write, &exchange, load.as_ref(), c.time, opts);
    let report = Report {
        date: opts.date.clone(),
        machine: opts.machine.clone(),
        load,
        write,
        exchange,
        summary,
    };
    write_file(&opts.out.join("report.md"), &markdown(&report))?;
    write_file(
        &opts.out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let mut panels = Vec::new();
    if !report.write.is_empty() {
        panels.push(Panel {
            title: "one-sided write, 2 ranks".into(),
            y_label: "Gbit/s".into(),
            series: plot::series(&report.write, 2, WRITE_SYSTEMS, false),
        });
    }
    for n in rank_counts(&report.exchange) {
        panels.push(Panel {
            title: format!("model exchange (average of all ranks' vectors), {n} ranks"),
            y_label: "vector Gbit/s per round".into(),
            series: plot::series(&report.exchange, n, EXCHANGE_SYSTEMS, true),
        });
    }
    plot::draw(&opts.out.join("peers"), &panels)
        .map_err(|(file, message)| ReportError::Plot { file, message })?;
    Ok(report.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("spread");
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).expect("spread");
        assert_eq!(s.median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn geomean_of_known_values() {
        let g = geomean(&[1.0, 4.0]).expect("geomean");
        assert!((g - 2.0).abs() < 1e-12, "{g}");
        let g = geomean(&[2.0, 8.0, 0.5]).expect("geomean");
        assert!((g - 2.0).abs() < 1e-12, "{g}");
        close(geomean(&[3.0]), 3.0);
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[1.0, 0.0]), None);
        assert_eq!(geomean(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn auto_picks_allreduce_from_3_ranks_and_16_kib() {
        assert_eq!(auto_system(2, 64 << 20), "malt_direct");
        assert_eq!(auto_system(4, 4 << 10), "malt_direct");
        assert_eq!(auto_system(4, (16 << 10) - 4), "malt_direct");
        assert_eq!(auto_system(4, 16 << 10), "malt_allreduce");
        assert_eq!(auto_system(8, 64 << 20), "malt_allreduce");
        assert_eq!(
            target_text("min_cell_round_vs_mpi_allreduce", 0.85),
            "min_cell_round_vs_mpi_allreduce>=0.85"
        );
        assert_eq!(target_text("x", 1.0), "x>=1.0");
    }

    fn ex(run: usize, system: &str, ranks: usize, floats: usize, us: f64) -> String {
        let schedule = match system.strip_prefix("malt_") {
            Some(s) => format!(r#","schedule":"{s}""#),
            None => String::new(),
        };
        format!(
            r#"{{"run":{run},"system":"{system}","op":"exchange","data":{{"ranks":{ranks},"len":{floats},"rounds":10,"round_us_p50":{us},"cpu_secs":0.02,"wall_secs":0.01{schedule}}}}}"#
        )
    }

    fn wr(run: usize, system: &str, bytes: usize, gbps: f64) -> String {
        let secs = bytes as f64 * 8.0 * 100.0 / (gbps * 1e9);
        format!(
            r#"{{"run":{run},"system":"{system}","op":"write","data":{{"size":{bytes},"iters":100,"gbps":{gbps},"secs":{secs},"cpu_secs":0.5}}}}"#
        )
    }

    /// Three runs with known answers. Ratios are taken run by run, then
    /// the median over runs: at 2 ranks and 1 Ki floats malt_direct takes
    /// 1, 1, 10 µs and MPI 3, 1, 2 µs, so the runs' ratios are 3, 1, 0.2
    /// (median 1) while the ratio of the medians would be 2.
    fn sample_lines(with_4_ranks: bool) -> String {
        let mut lines = Vec::new();
        let k = 1 << 10;
        let k16 = 16 << 10;
        for run in 1..=3 {
            let f = run as f64;
            let i = run - 1;
            lines.push(format!(
                r#"{{"run":{run},"system":"machine","op":"load","data":{{"loadavg1":{f},"others_cores":0.{run}}}}}"#
            ));
            // 2 ranks: auto is direct at every size.
            lines.push(ex(run, "malt_direct", 2, k, [1.0, 1.0, 10.0][i]));
            lines.push(ex(run, "mpi", 2, k, [3.0, 1.0, 2.0][i]));
            lines.push(ex(run, "gloo", 2, k, 100.0));
            lines.push(ex(run, "malt_allreduce", 2, k, 2.0));
            lines.push(ex(run, "malt_direct", 2, k16, 10.0));
            lines.push(ex(run, "mpi", 2, k16, 40.0));
            lines.push(ex(run, "gloo", 2, k16, 200.0));
            lines.push(ex(run, "malt_allreduce", 2, k16, 20.0));
            if with_4_ranks {
                // 4 ranks, no Gloo: auto is direct at 4 KiB, allreduce at
                // 64 KiB, each time the slower of the two schedules.
                lines.push(ex(run, "malt_direct", 4, k, 2.0));
                lines.push(ex(run, "malt_allreduce", 4, k, 1.0));
                lines.push(ex(run, "mpi", 4, k, 1.0));
                lines.push(ex(run, "malt_direct", 4, k16, 10.0));
                lines.push(ex(run, "malt_allreduce", 4, k16, 20.0));
                lines.push(ex(run, "mpi", 4, k16, 30.0));
            }
            // Writes: 4 KiB is outside the two-slot target's sizes.
            lines.push(wr(run, "malt", 4 << 10, 100.0));
            lines.push(wr(run, "memcpy_two_slot", 4 << 10, 400.0));
            lines.push(wr(run, "malt", 64 << 10, [90.0, 100.0, 110.0][i]));
            lines.push(wr(run, "memcpy_two_slot", 64 << 10, 100.0));
            lines.push(wr(run, "mpi_put", 64 << 10, 50.0));
            lines.push(wr(run, "malt", 4 << 20, [96.0, 80.0, 300.0][i]));
            lines.push(wr(run, "memcpy_two_slot", 4 << 20, [100.0, 50.0, 100.0][i]));
            lines.push(wr(run, "mpi_put", 4 << 20, 100.0));
        }
        lines.push(
            r#"{"run":0,"system":"machine","op":"time","data":{"build_secs":12,"measure_secs":300,"total_secs":312}}"#
                .into(),
        );
        lines.join("\n")
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("malt-report-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn report_of(tag: &str, text: &str) -> (Summary, PathBuf, PathBuf) {
        let dir = temp_dir(tag);
        let input = dir.join("raw.jsonl");
        std::fs::write(&input, text).expect("write");
        let opts = ReportOptions {
            input,
            out: dir.join("out"),
            date: "2026-01-01".into(),
            machine: "test".into(),
            quick: true,
        };
        let s = run(&opts).expect("report");
        (s, dir, opts.out)
    }

    #[track_caller]
    fn close(got: Option<f64>, want: f64) {
        let g = got.expect("a value");
        assert!((g - want).abs() < 1e-9, "got {g}, want {want}");
    }

    #[test]
    fn targets_take_medians_of_run_ratios_and_the_auto_schedule() {
        let (s, dir, out) = report_of("targets", &sample_lines(true));
        // 2 ranks, auto = direct: cells 1 (not 2) and 4; 4 ranks: auto
        // cells 0.5 (direct) and 1.5 (allreduce).
        let two = s.round_by_ranks[&2]["auto"];
        close(two.geomean_vs_mpi_allreduce, 2.0);
        close(two.min_cell_vs_mpi_allreduce, 1.0);
        close(two.geomean_vs_gloo, 2000f64.sqrt());
        close(two.min_cell_vs_gloo, 20.0);
        let four = s.round_by_ranks[&4]["auto"];
        close(four.geomean_vs_mpi_allreduce, 0.75f64.sqrt());
        close(four.min_cell_vs_mpi_allreduce, 0.5);
        assert_eq!(four.geomean_vs_gloo, None);
        close(s.min_geomean_round_vs_mpi_allreduce, 0.75f64.sqrt());
        close(s.min_cell_round_vs_mpi_allreduce, 0.5);
        // No Gloo at 4 ranks: the Gloo targets are not measured.
        assert_eq!(s.min_geomean_round_vs_gloo, None);
        assert_eq!(s.min_cell_round_vs_gloo, None);
        // Both schedules on their own.
        close(
            s.round_by_ranks[&2]["allreduce"].geomean_vs_mpi_allreduce,
            2f64.sqrt(),
        );
        close(
            s.round_by_ranks[&4]["direct"].geomean_vs_mpi_allreduce,
            1.5f64.sqrt(),
        );
        close(
            s.round_by_schedule["direct"].geomean_vs_mpi_allreduce,
            1.5f64.sqrt(),
        );
        close(
            s.round_by_schedule["allreduce"].min_cell_vs_mpi_allreduce,
            1.0,
        );
        // Gloo at 2 ranks only: nothing over rank counts.
        close(s.round_by_ranks[&2]["direct"].min_cell_vs_gloo, 20.0);
        close(s.round_by_ranks[&2]["allreduce"].min_cell_vs_gloo, 10.0);
        assert_eq!(s.round_by_schedule["direct"].min_cell_vs_gloo, None);
        // Writes, 64 KiB and 4 MiB: run ratios 0.9, 1, 1.1 and 0.96, 1.6, 3
        // (the ratio of the medians at 4 MiB would be 0.96); 4 KiB (0.25)
        // is left out.
        close(s.min_write_vs_two_slot, 1.0);
        close(s.min_write_vs_mpi_put, 0.96);
        let met = |k: &str| s.targets_met[k];
        assert_eq!(met("min_geomean_round_vs_mpi_allreduce>=1.0"), Some(false));
        assert_eq!(met("min_cell_round_vs_mpi_allreduce>=0.85"), Some(false));
        assert_eq!(met("min_geomean_round_vs_gloo>=1.5"), None);
        assert_eq!(met("min_cell_round_vs_gloo>=1.2"), None);
        assert_eq!(met("min_write_vs_two_slot>=0.95"), Some(true));
        assert_eq!(s.targets_met.len(), TARGETS.len());
        assert_eq!(s.runs, 3);
        assert_eq!(s.load_max, Some(3.0));
        assert_eq!(s.others_cores_max, Some(0.3));
        assert_eq!(s.time.total_secs, Some(312.0));
        assert_eq!(s.time.measure_secs, Some(300.0));
        let line = serde_json::to_value(&s).expect("summary json");
        assert_eq!(line["total_secs"], 312.0);
        assert!(line["min_geomean_round_vs_gloo"].is_null());
        assert_eq!(
            line["round_by_ranks"]["4"]["auto"]["min_cell_vs_mpi_allreduce"],
            0.5
        );

        let md = std::fs::read_to_string(out.join("report.md")).expect("md");
        for want in [
            "### Model exchange, 2 ranks",
            "### Model exchange, 4 ranks",
            "| 4 KiB | 100 (100–100) | 5000 |",
            "two-slot memcpy",
            "The script ran 312 s (12 s to install and build, 300 s to measure)",
            "| 2 | auto | 2.00 | 1.00 | 44.72 | 20.00 |",
            // 4 ranks, 1 Ki floats: auto is direct, in bold.
            "| 1 Ki (4 KiB) | direct | 2.00 (2.00–2.00) | 2000 | 1.00 (1.00–1.00) | 2000 | 1.00 (1.00–1.00) | 2000 | – | – | **0.50** (0.50–0.50) | 1.00 (1.00–1.00) | – | – |",
            // Run 3: 2 ranks / MPI sqrt(0.2 * 4), 4 ranks / MPI
            // sqrt(0.5 * 1.5), write / two-slot sqrt(1.1 * 3); no Gloo
            // column at 4 ranks.
            "| 3 | 3.00 | 0.30 | 0.89 | 14.14 | 0.87 | 1.82 |",
        ] {
            assert!(md.contains(want), "{want:?} missing from {md}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json"))
                .expect("parse");
        let cell = &json["exchange"][0]["ratios"]["malt_auto"]["mpi"];
        assert_eq!(cell["median"], 1.0);
        assert_eq!(cell["min"], 0.2);
        assert_eq!(cell["max"], 3.0);
        assert_eq!(cell["per_run"][0][1], 3.0);
        assert_eq!(json["exchange"][0]["auto"], "malt_direct");
        for f in ["peers.png", "peers.svg"] {
            let len = std::fs::metadata(out.join(f)).expect(f).len();
            assert!(len > 1000, "{f} has {len} bytes");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn targets_met_when_every_rank_count_passes() {
        let (s, dir, _) = report_of("met", &sample_lines(false));
        close(s.min_geomean_round_vs_gloo, 2000f64.sqrt());
        close(s.min_cell_round_vs_gloo, 20.0);
        for (key, least) in TARGETS {
            assert_eq!(
                s.targets_met[&target_text(key, *least)],
                Some(true),
                "{key}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_cell_fails_no_target_silently() {
        // Gloo at 1 Ki floats only: its 16 Ki cell is missing, so the
        // Gloo targets are not measured rather than computed from 1 Ki.
        let text: Vec<String> = sample_lines(false)
            .lines()
            .filter(|l| !(l.contains(r#""gloo""#) && l.contains(r#""len":16384"#)))
            .map(String::from)
            .collect();
        let (s, dir, _) = report_of("missing", &text.join("\n"));
        assert_eq!(s.min_geomean_round_vs_gloo, None);
        assert_eq!(s.min_cell_round_vs_gloo, None);
        close(s.min_geomean_round_vs_mpi_allreduce, 2.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let dir = temp_dir("bad");
        let input = dir.join("raw.jsonl");
        std::fs::write(
            &input,
            "{\"run\":1,\"system\":\"malt\",\"op\":\"write\",\"data\":{\"size\":4}}\n",
        )
        .expect("write");
        let opts = ReportOptions {
            input: input.clone(),
            out: dir.join("out"),
            date: String::new(),
            machine: String::new(),
            quick: false,
        };
        match run(&opts) {
            Err(ReportError::Line { line, .. }) => assert_eq!(line, 1),
            other => panic!("expected a line error, got {other:?}"),
        }
        // A malt system that ran another schedule than its name says.
        let wrong = ex(1, "malt_allreduce", 2, 1024, 5.0).replace("allreduce\"}", "direct\"}");
        std::fs::write(&input, format!("{}\n{wrong}\n", ex(1, "mpi", 2, 1024, 5.0)))
            .expect("write");
        match run(&opts) {
            Err(ReportError::Line { line, why, .. }) => {
                assert_eq!(line, 2);
                assert!(why.contains("direct"), "{why}");
            }
            other => panic!("expected a line error, got {other:?}"),
        }
        // A system the report does not know, and a malt line that does not
        // say which schedule ran.
        let unknown = ex(1, "gloo", 2, 1024, 5.0).replace("\"gloo\"", "\"gloo2\"");
        let silent = ex(1, "malt_direct", 2, 1024, 5.0).replace(",\"schedule\":\"direct\"", "");
        assert_ne!(silent, ex(1, "malt_direct", 2, 1024, 5.0));
        for (bad, says) in [(unknown, "gloo2"), (silent, "no schedule")] {
            std::fs::write(&input, format!("{bad}\n")).expect("write");
            match run(&opts) {
                Err(ReportError::Line { line, why, .. }) => {
                    assert_eq!(line, 1);
                    assert!(why.contains(says), "{why}");
                }
                other => panic!("expected a line error for {bad}, got {other:?}"),
            }
        }
        std::fs::write(&input, "\n").expect("write");
        assert!(matches!(run(&opts), Err(ReportError::Empty(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
