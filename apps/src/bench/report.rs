//! `malt bench report`: reads the measurements `benches/peers/run.sh`
//! collected (one JSON object per line) and writes a Markdown table, a JSON
//! file with medians, spreads and ratios, and a plot of throughput against
//! size; returns the summary the script prints as its last line.
//!
//! Input lines look like
//! `{"run":3,"system":"mpi_put","op":"write","data":{...}}`, where `data` is
//! one line printed by `malt bench write --json`, `malt bench gather --json`
//! or a peer program (they share the field names), and
//! `{"run":3,"system":"machine","op":"load","data":{"loadavg1":1.2}}` records
//! the load average when a run started.
//!
//! Speeds: a write's is its throughput; an exchange's is the inverse of the
//! median round time. Every ratio is malt's speed divided by the peer's, so
//! above 1 means malt is faster. Medians are over runs; the spread is the
//! smallest and largest run.

use super::markdown::markdown;
pub use super::markdown::{human_bytes, human_floats};
use super::plot::{self, Panel, Series};
use crate::quantile::{median, sorted_finite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Systems of the point-to-point comparison, in table order.
pub const WRITE_SYSTEMS: &[(&str, &str)] = &[
    ("malt", "malt write (shm)"),
    ("mpi_put", "MPI_Put+flush (Win_allocate)"),
    ("mpi_put_create", "MPI_Put+flush (Win_create)"),
    ("memcpy", "memcpy"),
];

/// Systems of the model exchange, in table order.
pub const EXCHANGE_SYSTEMS: &[(&str, &str)] = &[
    ("malt", "malt scatter+gather(Avg)"),
    ("mpi", "MPI_Allreduce+divide"),
    ("gloo", "Gloo allreduce+divide"),
];

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
}

#[derive(Debug, Deserialize)]
struct LoadData {
    loadavg1: f64,
    #[serde(default)]
    others_cores: Option<f64>,
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
    /// malt's speed over each peer's (medians); above 1: malt is faster.
    pub ratios: BTreeMap<String, f64>,
    /// The ratio of each run, measured side by side: `(run, ratio)`.
    pub ratio_runs: BTreeMap<String, Vec<(usize, f64)>>,
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

/// The acceptance ratios of issue 8 and whether they are met.
#[derive(Debug, Clone, Serialize)]
// The summary of a report as written to JSON: its fields are the keys.
pub struct Summary {
    /// malt's 4 MiB write throughput over MPI_Put + flush (Win_allocate).
    #[serde(rename = "write_vs_mpi_put_4MiB")]
    pub write_vs_mpi_put_4mib: Option<f64>,
    /// The same against a window made with MPI_Win_create.
    #[serde(rename = "write_vs_mpi_put_create_4MiB")]
    pub write_vs_mpi_put_create_4mib: Option<f64>,
    /// The same against memcpy.
    #[serde(rename = "write_vs_memcpy_4MiB")]
    pub write_vs_memcpy_4mib: Option<f64>,
    /// malt's 1 Mi float 2-rank round against MPI_Allreduce + divide.
    #[serde(rename = "gather_vs_mpi_allreduce_1M")]
    pub gather_vs_mpi_allreduce_1m: Option<f64>,
    /// The same against Gloo's allreduce + divide.
    #[serde(rename = "gather_vs_gloo_allreduce_1M")]
    pub gather_vs_gloo_allreduce_1m: Option<f64>,
    /// The same on 4 ranks against MPI.
    #[serde(rename = "gather_vs_mpi_allreduce_1M_4ranks")]
    pub gather_vs_mpi_allreduce_1m_4ranks: Option<f64>,
    /// The same on 4 ranks against Gloo.
    #[serde(rename = "gather_vs_gloo_allreduce_1M_4ranks")]
    pub gather_vs_gloo_allreduce_1m_4ranks: Option<f64>,
    /// Targets: write ≥ 1.2× MPI_Put, gather ≥ 2× MPI, ≥ 1.5× Gloo.
    pub targets_met: BTreeMap<String, Option<bool>>,
    /// Runs per system and size (the fewest seen).
    pub runs: usize,
    /// Highest 1-minute load average when a run started.
    pub load_max: Option<f64>,
    /// Most cores other processes took during a run.
    pub others_cores_max: Option<f64>,
    /// Whether this was the quick mode.
    pub quick: bool,
    /// The report's Markdown file.
    pub report: String,
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
    /// The acceptance ratios.
    pub summary: Summary,
}

type Table = BTreeMap<(usize, usize), BTreeMap<String, Vec<Sample>>>;

struct Collected {
    write: Table,
    exchange: Table,
    load: Vec<RunLoad>,
}

fn read_lines(path: &Path) -> Result<Collected, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut c = Collected {
        write: Table::new(),
        exchange: Table::new(),
        load: Vec::new(),
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
                c.exchange
                    .entry((d.ranks, d.len * 4))
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
            other => return Err(bad(format!("unknown op {other:?}"))),
        }
    }
    Ok(c)
}

/// `true` when a higher value is faster (throughput), `false` for times.
fn rows(table: &Table, higher_is_faster: bool) -> Vec<Row> {
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
        let speed = |v: f64| if higher_is_faster { v } else { 1.0 / v };
        let mut ratios = BTreeMap::new();
        let mut ratio_runs = BTreeMap::new();
        if let (Some(malt), Some(malt_samples)) = (stats.get("malt"), systems.get("malt")) {
            for (name, s) in &stats {
                if name == "malt" || s.value.median <= 0.0 || malt.value.median <= 0.0 {
                    continue;
                }
                ratios.insert(
                    name.clone(),
                    speed(malt.value.median) / speed(s.value.median),
                );
                let paired: Vec<(usize, f64)> = malt_samples
                    .iter()
                    .filter_map(|m| {
                        systems[name]
                            .iter()
                            .find(|p| p.run == m.run && p.value > 0.0 && m.value > 0.0)
                            .map(|p| (m.run, speed(m.value) / speed(p.value)))
                    })
                    .collect();
                if !paired.is_empty() {
                    ratio_runs.insert(name.clone(), paired);
                }
            }
        }
        out.push(Row {
            ranks,
            floats: bytes / 4,
            bytes,
            systems: stats,
            ratios,
            ratio_runs,
        });
    }
    out
}

fn ratio_at(rows: &[Row], ranks: usize, bytes: usize, peer: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.ranks == ranks && r.bytes == bytes)
        .and_then(|r| r.ratios.get(peer).copied())
}

fn summarize(
    write: &[Row],
    exchange: &[Row],
    load: Option<&Load>,
    opts: &ReportOptions,
) -> Summary {
    const MIB4: usize = 4 << 20;
    let s = Summary {
        write_vs_mpi_put_4mib: ratio_at(write, 2, MIB4, "mpi_put"),
        write_vs_mpi_put_create_4mib: ratio_at(write, 2, MIB4, "mpi_put_create"),
        write_vs_memcpy_4mib: ratio_at(write, 2, MIB4, "memcpy"),
        gather_vs_mpi_allreduce_1m: ratio_at(exchange, 2, MIB4, "mpi"),
        gather_vs_gloo_allreduce_1m: ratio_at(exchange, 2, MIB4, "gloo"),
        gather_vs_mpi_allreduce_1m_4ranks: ratio_at(exchange, 4, MIB4, "mpi"),
        gather_vs_gloo_allreduce_1m_4ranks: ratio_at(exchange, 4, MIB4, "gloo"),
        targets_met: BTreeMap::new(),
        runs: write
            .iter()
            .chain(exchange)
            .flat_map(|r| r.systems.values().map(|s| s.value.runs))
            .min()
            .unwrap_or(0),
        load_max: load.map(|l| l.max),
        others_cores_max: load.and_then(|l| l.others_max),
        quick: opts.quick,
        report: opts.out.join("report.md").display().to_string(),
    };
    let mut targets = BTreeMap::new();
    targets.insert(
        "write_vs_mpi_put_4MiB>=1.2".to_string(),
        s.write_vs_mpi_put_4mib.map(|r| r >= 1.2),
    );
    targets.insert(
        "gather_vs_mpi_allreduce_1M>=2".to_string(),
        s.gather_vs_mpi_allreduce_1m.map(|r| r >= 2.0),
    );
    targets.insert(
        "gather_vs_gloo_allreduce_1M>=1.5".to_string(),
        s.gather_vs_gloo_allreduce_1m.map(|r| r >= 1.5),
    );
    Summary {
        targets_met: targets,
        ..s
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn series(rows: &[Row], ranks: usize, systems: &[(&str, &str)], exchange: bool) -> Vec<Series> {
    systems
        .iter()
        .filter_map(|(key, label)| {
            let points: Vec<(f64, f64, f64, f64)> = rows
                .iter()
                .filter(|r| r.ranks == ranks)
                .filter_map(|r| {
                    let s = r.systems.get(*key)?;
                    let x = r.bytes as f64;
                    // Exchanges: vector bytes per second of round, in Gbit/s.
                    let y = |v: f64| if exchange { x * 8.0 / (v * 1e3) } else { v };
                    let (a, b) = (y(s.value.min), y(s.value.max));
                    Some((x, y(s.value.median), a.min(b), a.max(b)))
                })
                .collect();
            (!points.is_empty()).then(|| Series {
                label: label.to_string(),
                points,
            })
        })
        .collect()
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
    let write = rows(&c.write, true);
    let exchange = rows(&c.exchange, false);
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
    let summary = summarize(&write, &exchange, load.as_ref(), opts);
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
            series: series(&report.write, 2, WRITE_SYSTEMS, false),
        });
    }
    let mut ranks: Vec<usize> = report.exchange.iter().map(|x| x.ranks).collect();
    ranks.dedup();
    for n in ranks {
        panels.push(Panel {
            title: format!("model exchange (average of all ranks' vectors), {n} ranks"),
            y_label: "vector Gbit/s per round".into(),
            series: series(&report.exchange, n, EXCHANGE_SYSTEMS, true),
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

    fn sample_lines() -> String {
        let mut lines = Vec::new();
        for run in 1..=3 {
            let f = run as f64;
            lines.push(format!(
                r#"{{"run":{run},"system":"machine","op":"load","data":{{"loadavg1":{f},"others_cores":0.{run}}}}}"#
            ));
            for (sys, gbps) in [("malt", 240.0), ("mpi_put", 200.0), ("memcpy", 300.0)] {
                let g = gbps + f;
                let secs = (4u64 << 20) as f64 * 8.0 * 100.0 / (g * 1e9);
                lines.push(format!(
                    r#"{{"run":{run},"system":"{sys}","op":"write","data":{{"size":4194304,"iters":100,"gbps":{g},"secs":{secs},"cpu_secs":0.5}}}}"#
                ));
            }
            for (sys, us) in [("malt", 1000.0), ("mpi", 2500.0), ("gloo", 1400.0)] {
                lines.push(format!(
                    r#"{{"run":{run},"system":"{sys}","op":"exchange","data":{{"ranks":2,"len":1048576,"rounds":10,"round_us_p50":{us},"cpu_secs":0.02,"wall_secs":0.01}}}}"#
                ));
            }
        }
        lines.join("\n")
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("malt-report-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn report_has_the_ratios_and_files() {
        let dir = temp_dir("ok");
        let input = dir.join("raw.jsonl");
        std::fs::write(&input, sample_lines()).expect("write");
        let opts = ReportOptions {
            input,
            out: dir.join("out"),
            date: "2026-01-01".into(),
            machine: "test".into(),
            quick: true,
        };
        let s = run(&opts).expect("report");
        let w = s.write_vs_mpi_put_4mib.expect("write ratio");
        assert!((w - 242.0 / 202.0).abs() < 1e-9, "{w}");
        assert!((s.gather_vs_mpi_allreduce_1m.expect("mpi") - 2.5).abs() < 1e-9);
        assert!((s.gather_vs_gloo_allreduce_1m.expect("gloo") - 1.4).abs() < 1e-9);
        assert_eq!(s.targets_met["write_vs_mpi_put_4MiB>=1.2"], Some(false));
        assert_eq!(s.targets_met["gather_vs_mpi_allreduce_1M>=2"], Some(true));
        assert_eq!(
            s.targets_met["gather_vs_gloo_allreduce_1M>=1.5"],
            Some(false)
        );
        assert_eq!(s.gather_vs_mpi_allreduce_1m_4ranks, None);
        assert_eq!(s.runs, 3);
        assert_eq!(s.load_max, Some(3.0));
        assert_eq!(s.others_cores_max, Some(0.3));
        let md = std::fs::read_to_string(opts.out.join("report.md")).expect("md");
        assert!(md.contains("| 4 MiB |"), "{md}");
        assert!(md.contains("**2.50**"), "{md}");
        // Run 2 (load 2): malt 242 Gbit/s over MPI's 202, MPI 2.5x slower.
        let want = format!("| 2 | 2.00 | 0.20 | {:.2} | 2.50 | 1.40 |", 242.0 / 202.0);
        assert!(md.contains(&want), "{want} missing from {md}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(opts.out.join("report.json")).expect("json"),
        )
        .expect("parse");
        assert_eq!(json["exchange"][0]["ranks"], 2);
        for f in ["peers.png", "peers.svg"] {
            let len = std::fs::metadata(opts.out.join(f)).expect(f).len();
            assert!(len > 1000, "{f} has {len} bytes");
        }
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
        std::fs::write(&input, "\n").expect("write");
        assert!(matches!(run(&opts), Err(ReportError::Empty(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
