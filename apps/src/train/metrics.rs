//! What a training run records: `metrics.csv` rows written as training goes,
//! and one final [`RunSummary`] (printed as a JSON line with `--json`, and
//! written to `summary.json`, pretty-printed like every `summary.json` of a
//! run: the job's, and with `--compare-single` the single rank's in
//! `single/`).
//!
//! # `metrics.csv`
//!
//! One header line, then one row per evaluation point (including the initial
//! model at time 0):
//!
//! ```text
//! time_s,epoch,examples,objective,test_error
//! 0.000000,0.0000,0,1.00000000,0.51230000
//! 0.412345,1.0000,200000,0.31234567,0.09870000
//! ```
//!
//! - `time_s`: training time in seconds on rank 0: wall time since training
//!   started, less the time spent evaluating (evaluation passes over the data
//!   are not part of training, and the clock stops while they run).
//! - `epoch`: epochs done, fractional when evaluating inside an epoch.
//! - `examples`: examples trained on so far, summed over the ranks.
//! - `objective`: the training objective (see the trainer).
//! - `test_error` (svm, fraction misclassified) or `test_rmse` (mf); empty
//!   when there is no test set.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::TrainError;

/// One evaluation point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricPoint {
    /// Training seconds so far (evaluation excluded).
    pub time_s: f64,
    /// Epochs done.
    pub epoch: f64,
    /// Examples trained on, over all ranks.
    pub examples: u64,
    /// Training objective.
    pub objective: f64,
    /// Test error or test RMSE, if there is a test set.
    pub test: Option<f64>,
}

/// Which test metric a run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMetric {
    /// Fraction of misclassified test examples.
    Error,
    /// Root mean squared error on test ratings.
    Rmse,
}

impl TestMetric {
    /// The column / JSON key.
    pub fn column(self) -> &'static str {
        match self {
            TestMetric::Error => "test_error",
            TestMetric::Rmse => "test_rmse",
        }
    }
}

/// Writes `metrics.csv`, one flushed row per point so that the file can be
/// followed while training runs.
#[derive(Debug)]
pub struct MetricsWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl MetricsWriter {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path, metric: TestMetric) -> Result<Self, TrainError> {
        let file = File::create(path).map_err(|e| TrainError::io(path, e))?;
        let mut w = MetricsWriter {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
        };
        let header = format!("time_s,epoch,examples,objective,{}\n", metric.column());
        w.write_raw(header.as_bytes())?;
        Ok(w)
    }

    /// Appends one row and flushes it.
    pub fn write(&mut self, p: &MetricPoint) -> Result<(), TrainError> {
        let test = p.test.map(|t| format!("{t:.8}")).unwrap_or_default();
        let row = format!(
            "{:.6},{:.4},{},{:.8},{}\n",
            p.time_s, p.epoch, p.examples, p.objective, test
        );
        self.write_raw(row.as_bytes())
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        self.out
            .write_all(bytes)
            .and_then(|_| self.out.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads a `metrics.csv` back (for plots of earlier runs and for tests).
/// A malformed row is a [`TrainError::Metrics`] naming the line.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricPoint>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |line: usize, why: &str| TrainError::Metrics {
        file: path.display().to_string(),
        line,
        problem: why.to_string(),
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h))
            if h == "time_s,epoch,examples,objective,test_error"
                || h == "time_s,epoch,examples,objective,test_rmse" => {}
        _ => return Err(bad(1, "missing or unknown header")),
    }
    let mut points = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return Err(bad(n, "expected 5 fields"));
        }
        let num = |s: &str, what: &str| -> Result<f64, TrainError> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(n, &format!("bad {what} `{s}`")))
        };
        points.push(MetricPoint {
            time_s: num(f[0], "time")?,
            epoch: num(f[1], "epoch")?,
            examples: f[2]
                .parse()
                .map_err(|_| bad(n, &format!("bad examples `{}`", f[2])))?,
            objective: num(f[3], "objective")?,
            test: if f[4].is_empty() {
                None
            } else {
                Some(num(f[4], "test metric")?)
            },
        });
    }
    Ok(points)
}

/// The first training time at which the objective reaches `goal`, linearly
/// interpolated between the last point above the goal and the first point at
/// or below it. `None` if it is never reached.
pub fn time_to_goal(points: &[MetricPoint], goal: f64) -> Option<f64> {
    let first = points.iter().position(|p| p.objective <= goal)?;
    let at = points[first];
    if first == 0 {
        return Some(at.time_s);
    }
    let before = points[first - 1];
    let drop = before.objective - at.objective;
    if drop <= 0.0 || !drop.is_finite() {
        return Some(at.time_s);
    }
    let frac = ((before.objective - goal) / drop).clamp(0.0, 1.0);
    Some(before.time_s + frac * (at.time_s - before.time_s))
}

/// The single-rank run a multi-rank run is compared with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
// summary.json's comparison keys, flattened into the summary.
pub struct Comparison {
    /// Time for the single-rank run to reach the goal loss.
    pub single_time_to_goal_s: Option<f64>,
    /// `single_time_to_goal_s / time_to_goal_s`, when both reached the goal;
    /// with several pairs (`--repeat`), the median over the pairs.
    pub speedup: Option<f64>,
    /// Final objective of the single-rank run.
    pub single_final_loss: f64,
    /// Training seconds of the single-rank run.
    pub single_seconds: f64,
    /// Whether this run reached the goal loss.
    #[serde(default)]
    pub goal_reached: bool,
    /// Whether the single-rank run reached the goal loss.
    #[serde(default)]
    pub single_goal_reached: bool,
    /// Cores other processes kept busy during this run (see
    /// [`super::load`]); with several pairs, the most of any pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_cores: Option<f64>,
    /// The same during the single-rank run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_others_cores: Option<f64>,
    /// Whether other processes used at least [`super::load::BUSY_CORES`]
    /// during either run of any pair: the speedup is then not this
    /// machine's alone.
    #[serde(default)]
    pub machine_busy: bool,
    /// The speedup of each pair, in the order they ran (`--repeat R`,
    /// R > 1); `None` for a pair in which a run missed the goal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speedups: Vec<Option<f64>>,
}

/// The goal of `--compare-single`: 99% of the way from the single-rank run's
/// first objective to the best (lowest) it reached. The best, not the
/// final: a run whose objective rises again at the end would otherwise set
/// a goal both runs pass in their first epoch. `None` without points.
pub fn goal_from(points: &[MetricPoint]) -> Option<f64> {
    let first = points.first()?.objective;
    let best = points
        .iter()
        .map(|p| p.objective)
        .filter(|o| o.is_finite())
        .fold(f64::INFINITY, f64::min);
    best.is_finite().then_some(best + 0.01 * (first - best))
}

/// The median speedup of the pairs, a pair in which a run missed the goal
/// counting below every speedup; `None` unless more than half the pairs
/// reached the goal in both runs (the median is then a measured speedup).
pub fn median_speedup(speedups: &[Option<f64>]) -> Option<f64> {
    let mut have: Vec<f64> = speedups.iter().flatten().copied().collect();
    if 2 * have.len() <= speedups.len() {
        return None;
    }
    // Pairs without a speedup sort below every speedup; fewer than half of
    // them, so the middle is always a measured one.
    let missing = speedups.len() - have.len();
    have.sort_by(f64::total_cmp);
    let at = |i: usize| have[i - missing];
    let n = speedups.len();
    Some(if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    })
}

/// The final line of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
// summary.json: its fields are the file's keys.
pub struct RunSummary {
    /// `svm` or `mf`.
    pub app: String,
    /// Number of ranks.
    pub ranks: usize,
    /// Epochs done (fractional if training stopped inside an epoch).
    pub epochs: f64,
    /// Training seconds on rank 0 (evaluation excluded).
    pub seconds: f64,
    /// Wall seconds of the whole run on rank 0: data, training, evaluation.
    pub wall_seconds: f64,
    /// Objective at the last evaluation.
    pub final_loss: f64,
    /// Test error at the last evaluation (svm with a test set).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_error: Option<f64>,
    /// Test RMSE at the last evaluation (mf with a test set).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_rmse: Option<f64>,
    /// The test RMSE no model can beat (mf on the built-in synthetic
    /// ratings: their noise's standard deviation).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub noise_floor: Option<f64>,
    /// The goal loss, if one was given.
    pub goal_loss: Option<f64>,
    /// Training time to reach the goal loss (interpolated), if reached.
    pub time_to_goal_s: Option<f64>,
    /// Examples trained on, over all ranks.
    pub examples: u64,
    /// `examples / seconds`.
    pub examples_per_s: f64,
    /// Bytes sent for model synchronisation, over all ranks.
    pub bytes_sent: u64,
    /// Model synchronisations (scatter/gather rounds) of rank 0; every rank
    /// makes as many. `bytes_sent / (ranks · syncs)` is what a rank sends
    /// per round.
    pub syncs: u64,
    /// Training examples (all shards).
    pub train_examples: u64,
    /// Test examples (all shards).
    pub test_examples: u64,
    /// Length of the flat model vector.
    pub parameters: u64,
    /// The regularisation λ used.
    pub lambda: f64,
    /// Merge rule.
    pub udf: String,
    /// Examples between synchronisations (at most).
    pub cb: u64,
    /// The comparison with a single-rank run (`--compare-single`).
    #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
    pub comparison: Option<Comparison>,
    /// Regroups this rank went through (fault-tolerant jobs): who left, and
    /// when training resumed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub regroups: Vec<super::Regroup>,
}

impl RunSummary {
    /// Compares this run with `single`, the single-rank run on the same data,
    /// at `goal`; sets [`RunSummary::comparison`], and `goal_loss` and
    /// `time_to_goal_s` from this run's points.
    pub fn compare_with(
        &mut self,
        points: &[MetricPoint],
        single: &RunSummary,
        single_points: &[MetricPoint],
        goal: f64,
    ) {
        self.goal_loss = Some(goal);
        self.time_to_goal_s = time_to_goal(points, goal);
        let single_time = time_to_goal(single_points, goal);
        let speedup = match (single_time, self.time_to_goal_s) {
            (Some(s), Some(m)) if m > 0.0 => Some(s / m),
            _ => None,
        };
        self.comparison = Some(Comparison {
            single_time_to_goal_s: single_time,
            speedup,
            single_final_loss: single.final_loss,
            single_seconds: single.seconds,
            goal_reached: self.time_to_goal_s.is_some(),
            single_goal_reached: single_time.is_some(),
            others_cores: None,
            single_others_cores: None,
            machine_busy: false,
            speedups: Vec::new(),
        });
    }

    /// The summary as one JSON line.
    pub fn to_json(&self) -> String {
        // A struct of numbers and strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A short human-readable line.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} ranks={} epochs={:.2} time={:.2}s loss={:.6}",
            self.app, self.ranks, self.epochs, self.seconds, self.final_loss
        );
        if let Some(e) = self.test_error {
            s.push_str(&format!(" test_error={:.2}%", 100.0 * e));
        }
        if let Some(r) = self.test_rmse {
            s.push_str(&format!(" test_rmse={r:.4}"));
        }
        if let (Some(g), Some(t)) = (self.goal_loss, self.time_to_goal_s) {
            s.push_str(&format!(" goal {g:.6} at {t:.2}s"));
        }
        s.push_str(&format!(" examples/s={:.0}", self.examples_per_s));
        if let Some(c) = &self.comparison {
            if let Some(sp) = c.speedup {
                s.push_str(&format!(" speedup={sp:.2}x"));
            }
        }
        s
    }

    /// The line `--compare-single` prints after the job's own summary line
    /// (which has no comparison yet): the times to the goal and the
    /// speedup. `None` before [`RunSummary::compare_with`].
    pub fn comparison_line(&self) -> Option<String> {
        let c = self.comparison.as_ref()?;
        let goal = self.goal_loss.map_or("-".into(), |g| format!("{g:.6}"));
        let time = |t: Option<f64>| t.map_or("not reached".into(), |t| format!("{t:.2}s"));
        let mut s = format!(
            "goal {goal}: {} rank{} {}, 1 rank {}",
            self.ranks,
            if self.ranks == 1 { "" } else { "s" },
            time(self.time_to_goal_s),
            time(c.single_time_to_goal_s)
        );
        if let Some(sp) = c.speedup {
            s.push_str(&format!(" speedup={sp:.2}x"));
        }
        let have: Vec<f64> = c.speedups.iter().flatten().copied().collect();
        if c.speedups.len() > 1 {
            let (lo, hi) = have
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
            s.push_str(&format!(
                " (median of {} interleaved pairs; {} reached the goal in both runs{})",
                c.speedups.len(),
                have.len(),
                if have.is_empty() {
                    String::new()
                } else {
                    format!(", speedups {lo:.2}-{hi:.2}x")
                }
            ));
        }
        if c.machine_busy {
            let most = c
                .others_cores
                .unwrap_or(0.0)
                .max(c.single_others_cores.unwrap_or(0.0));
            s.push_str(&format!(
                "; the machine was busy: other processes used up to {most:.2} cores meanwhile"
            ));
        }
        Some(s)
    }

    /// Writes the summary as pretty JSON (with a final newline) to `path`:
    /// the one format of every `summary.json`.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| TrainError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    fn p(time_s: f64, objective: f64) -> MetricPoint {
        MetricPoint {
            time_s,
            epoch: time_s,
            examples: (time_s * 100.0) as u64,
            objective,
            test: Some(objective / 2.0),
        }
    }

    #[test]
    fn csv_is_well_formed_and_reads_back() {
        let dir = TempDir::new("train-metrics");
        let path = dir.path().join("metrics.csv");
        let points = vec![
            p(0.0, 1.0),
            p(0.5, 0.4),
            MetricPoint {
                test: None,
                ..p(1.25, 0.3)
            },
        ];
        let mut w = MetricsWriter::create(&path, TestMetric::Error).unwrap();
        for q in &points {
            w.write(q).unwrap();
        }
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "time_s,epoch,examples,objective,test_error");
        assert_eq!(lines.len(), 4);
        for l in &lines[1..] {
            assert_eq!(l.split(',').count(), 5, "{l}");
        }
        assert!(lines[3].ends_with(','), "no test value: {}", lines[3]);
        let back = read_metrics(&path).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in back.iter().zip(&points) {
            assert!((a.time_s - b.time_s).abs() < 1e-6);
            assert_eq!(a.examples, b.examples);
            assert!((a.objective - b.objective).abs() < 1e-8);
            assert_eq!(a.test.is_some(), b.test.is_some());
        }
        let rmse = dir.path().join("rmse.csv");
        MetricsWriter::create(&rmse, TestMetric::Rmse).unwrap();
        assert!(std::fs::read_to_string(&rmse)
            .unwrap()
            .starts_with("time_s,epoch,examples,objective,test_rmse\n"));
    }

    #[test]
    fn malformed_csv_names_the_line() {
        let dir = TempDir::new("train-metrics-bad");
        let path = dir.path().join("m.csv");
        std::fs::write(
            &path,
            "time_s,epoch,examples,objective,test_error\n0,0,0,1,\n1,1,x,0.5,0.1\n",
        )
        .unwrap();
        let err = read_metrics(&path).unwrap_err();
        assert!(matches!(err, TrainError::Metrics { line: 3, .. }), "{err}");
        std::fs::write(&path, "a,b\n").unwrap();
        assert!(matches!(
            read_metrics(&path).unwrap_err(),
            TrainError::Metrics { line: 1, .. }
        ));
    }

    fn at(t: f64, objective: f64) -> MetricPoint {
        MetricPoint {
            time_s: t,
            epoch: t,
            examples: 0,
            objective,
            test: None,
        }
    }

    #[test]
    fn the_goal_is_near_the_best_objective_not_the_last() {
        // A noisy end (0.098 -> 0.111) must not make the goal trivial.
        let pts = [at(0.0, 1.0), at(1.0, 0.2), at(2.0, 0.098), at(3.0, 0.111)];
        let g = goal_from(&pts).unwrap();
        assert!((g - (0.098 + 0.01 * 0.902)).abs() < 1e-12, "{g}");
        assert_eq!(
            time_to_goal(&pts[..2], g),
            None,
            "reached before the best point"
        );
        assert!(time_to_goal(&pts, g).unwrap() > 1.0);
        assert_eq!(goal_from(&[]), None);
    }

    #[test]
    fn the_median_speedup_needs_most_pairs_to_reach_the_goal() {
        assert_eq!(median_speedup(&[Some(2.0)]), Some(2.0));
        assert_eq!(
            median_speedup(&[Some(1.0), Some(3.0), Some(2.0)]),
            Some(2.0)
        );
        assert_eq!(median_speedup(&[Some(1.0), Some(3.0)]), Some(2.0));
        // A missed goal sorts below every speedup.
        assert_eq!(median_speedup(&[None, Some(3.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median_speedup(&[None, Some(1.0), Some(3.0), Some(2.0)]),
            Some(1.5)
        );
        assert_eq!(median_speedup(&[None, Some(3.0)]), None);
        assert_eq!(median_speedup(&[]), None);
    }

    #[test]
    fn time_to_goal_interpolates() {
        let pts = vec![p(0.0, 1.0), p(1.0, 0.6), p(2.0, 0.2), p(3.0, 0.1)];
        assert_eq!(time_to_goal(&pts, 0.4), Some(1.5));
        assert_eq!(time_to_goal(&pts, 0.2), Some(2.0));
        assert_eq!(time_to_goal(&pts, 2.0), Some(0.0));
        assert_eq!(time_to_goal(&pts, 0.05), None);
        assert_eq!(time_to_goal(&[], 1.0), None);
    }

    #[test]
    fn summary_json_has_the_documented_keys() {
        let single_pts = vec![p(0.0, 1.0), p(4.0, 0.2)];
        let multi_pts = vec![p(0.0, 1.0), p(2.0, 0.2)];
        let mut s = RunSummary {
            app: "svm".into(),
            ranks: 2,
            epochs: 3.0,
            seconds: 2.0,
            wall_seconds: 3.0,
            final_loss: 0.2,
            test_error: Some(0.1),
            test_rmse: None,
            noise_floor: None,
            goal_loss: None,
            time_to_goal_s: None,
            examples: 600,
            examples_per_s: 300.0,
            bytes_sent: 0,
            syncs: 30,
            train_examples: 200,
            test_examples: 50,
            parameters: 11,
            lambda: 1e-4,
            udf: "avg".into(),
            cb: 10,
            comparison: None,
            regroups: Vec::new(),
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        for key in [
            "ranks",
            "epochs",
            "seconds",
            "final_loss",
            "test_error",
            "time_to_goal_s",
            "examples_per_s",
            "bytes_sent",
            "syncs",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(v.get("test_rmse").is_none());
        assert!(v.get("speedup").is_none());
        let single = s.clone();
        s.compare_with(&multi_pts, &single, &single_pts, 0.6);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["single_time_to_goal_s"], 2.0);
        assert_eq!(v["time_to_goal_s"], 1.0);
        assert_eq!(v["speedup"], 2.0);
        assert!(s.human().contains("speedup=2.00x"), "{}", s.human());
        assert_eq!(
            s.comparison_line().unwrap(),
            "goal 0.600000: 2 ranks 1.00s, 1 rank 2.00s speedup=2.00x"
        );
        let back: RunSummary = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back, s);
        // summary.json is pretty and reads back the same.
        let dir = TempDir::new("train-summary");
        let path = dir.path().join("summary.json");
        s.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"app\": \"svm\","), "{text}");
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<RunSummary>(&text).unwrap(), s);
    }
}
