//! Support for multi-process tests: the test binary re-runs itself as the
//! rank program (an `#[ignore]`d entry selected with `--exact --ignored`)
//! under `malt launch`, and ranks report through `RESULT {json}` lines. The
//! process helpers are dstorm's tests' own (`dstorm/tests/common/procs.rs`).
#![allow(dead_code)]

#[path = "../../dstorm/tests/common/procs.rs"]
mod procs;
pub use procs::*;

use std::process::Command;
use std::time::Duration;

/// The `malt` binary built for these tests.
pub fn malt() -> &'static str {
    env!("CARGO_BIN_EXE_malt")
}

/// Runs `malt launch -n 2 --transport TRANSPORT --min-ranks 1
/// --fail-timeout T -- malt check --size SIZE --rounds 2`, behind `prefix`
/// (such as `ip netns exec NS`), and checks that a link slow enough for
/// every round to take longer than T is not taken for a failure: both ranks
/// finish with every byte right, every round took longer than T (the
/// premise), and nobody was suspected.
pub fn slow_updates_are_not_failures(prefix: &[&str], transport: &str, t_secs: u32, size: usize) {
    let (t, size) = (t_secs.to_string(), size.to_string());
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(malt());
            c
        }
        None => Command::new(malt()),
    };
    cmd.args(["launch", "-n", "2", "--transport", transport])
        .args([
            "--min-ranks",
            "1",
            "--fail-timeout",
            &t,
            "--timeout",
            "60",
            "--",
        ])
        .arg(malt())
        .args(["check", "--size", &size, "--rounds", "2"]);
    let job = run_with_deadline(cmd, Duration::from_secs(120));
    let lines = job.json_lines();
    assert_eq!(job.code, Some(0), "{job:?}");
    assert_eq!(lines.len(), 2, "{job:?}");
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
        let round_us = l["lat_us_p50"].as_f64().unwrap_or(0.0);
        assert!(
            round_us > f64::from(t_secs) * 1e6,
            "a round took {round_us} µs, not more than T = {t_secs} s: {l}"
        );
    }
    assert!(
        !job.stderr.contains("suspecting a peer") && !job.stdout.contains("suspecting a peer"),
        "nobody may be suspected: {job:?}"
    );
}

/// Launches `ranks` copies of this test binary running the ignored test
/// `entry`, over `transport`, with extra environment.
pub fn launch_self(
    ranks: usize,
    transport: &str,
    entry: &str,
    env: &[(&str, &str)],
    deadline: Duration,
) -> Job {
    let me = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(malt());
    cmd.args([
        "launch",
        "-n",
        &ranks.to_string(),
        "--transport",
        transport,
        "--timeout",
        "20",
        "--",
    ])
    .arg(me)
    .args([
        "--exact",
        entry,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_deadline(cmd, deadline)
}

/// Deterministic test data: element `i` of rank `r`'s initial vector.
pub fn initial(r: usize, i: usize) -> f64 {
    let x = (r as f64 + 1.0) * 0.37 + (i as f64) * 0.011;
    (x * 7.3).sin() * 10.0
}

/// Every rank's `f32` model in `f64`, as exact averaging says it should be:
/// each starts at [`initial`], and each exchange adds every rank's change
/// and leaves all of them at the mean.
pub struct ExactModels(Vec<Vec<f64>>);

impl ExactModels {
    /// `ranks` models of `len` elements.
    pub fn new(ranks: usize, len: usize) -> Self {
        ExactModels(
            (0..ranks)
                .map(|r| (0..len).map(|i| f64::from(initial(r, i) as f32)).collect())
                .collect(),
        )
    }

    /// One exchange: rank `r` changed element `i` by `change(r, i)` (as an
    /// `f32`, as the ranks add it); returns the mean every model now holds.
    pub fn exchange(&mut self, change: impl Fn(usize, usize) -> f64) -> Vec<f64> {
        for (r, model) in self.0.iter_mut().enumerate() {
            for (i, x) in model.iter_mut().enumerate() {
                *x += f64::from(change(r, i) as f32);
            }
        }
        let n = self.0.len() as f64;
        let len = self.0.first().map_or(0, Vec::len);
        let mean: Vec<f64> = (0..len)
            .map(|i| self.0.iter().map(|m| m[i]).sum::<f64>() / n)
            .collect();
        for model in &mut self.0 {
            model.copy_from_slice(&mean);
        }
        mean
    }
}
