//! `malt bench write`: the fields its JSON lines promise, on shm and tcp,
//! with and without `--throughput-only`, and the alternating runs of
//! `--repeat`.

mod common;

use common::{malt, run_with_deadline};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn bench_write(transport: &str, extra: &[&str]) -> serde_json::Value {
    let job = run_bench_write(transport, extra);
    assert_eq!(job.code, Some(0), "{job:?}");
    let lines = job.json_lines();
    assert_eq!(lines.len(), 1, "one size, one line: {}", job.stdout);
    lines.into_iter().next().unwrap_or_default()
}

fn run_bench_write(transport: &str, extra: &[&str]) -> common::Job {
    let mut cmd = Command::new(malt());
    cmd.args(["bench", "write", "--transport", transport])
        .args(["--size", "4096", "--iters", "200", "--json"])
        .args(extra);
    run_with_deadline(cmd, DEADLINE)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn positive(v: &serde_json::Value, field: &str) -> f64 {
    let x = v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field}: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{field} = {x}: {v}");
    x
}

#[test]
fn write_reports_passive_and_woken_throughput_next_to_its_baseline() {
    for (transport, baseline) in [("shm", "memcpy"), ("tcp", "tcp socket")] {
        let v = bench_write(transport, &[]);
        assert_eq!(v["transport"], transport, "{v}");
        assert_eq!(v["baseline"], baseline, "{v}");
        assert_eq!(v["size"], 4096, "{v}");
        assert_eq!(v["iters"], 200, "{v}");
        assert_eq!(v["repeat"], 5, "the default: {v}");
        positive(&v, "gbps");
        let w = positive(&v, "woken_gbps");
        let base = positive(&v, "baseline_gbps");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let ratios: Vec<f64> = v["ratios"]
            .as_array()
            .unwrap_or_else(|| panic!("no ratios: {v}"))
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        assert_eq!(ratios.len(), 5, "one ratio per pair of runs: {v}");
        assert!(ratios.iter().all(|&r| r > 0.0 && r.is_finite()), "{v}");
        assert!(close(positive(&v, "ratio"), median(ratios)), "{v}");
        assert!(close(positive(&v, "woken_ratio"), w / base), "{v}");
        if transport == "shm" {
            // The ceiling of a depth-2 queue, measured in the same run.
            positive(&v, "two_slot_gbps");
            positive(&v, "two_slot_ratio");
        } else {
            assert!(v.get("two_slot_gbps").is_none(), "shm only: {v}");
        }
        positive(&v, "secs");
        positive(&v, "lat_us_p50");
        assert!(
            positive(&v, "lat_us_p99") >= positive(&v, "lat_us_p50"),
            "{v}"
        );
    }
}

#[test]
fn throughput_only_skips_the_woken_run_latency_and_baseline() {
    let v = bench_write("shm", &["--throughput-only"]);
    positive(&v, "gbps");
    assert!(v.get("woken_gbps").is_none(), "{v}");
    assert!(v.get("woken_ratio").is_none(), "{v}");
    assert!(v.get("two_slot_gbps").is_none(), "{v}");
    assert!(v.get("two_slot_ratio").is_none(), "{v}");
    assert_eq!(v["lat_us_p50"], 0.0, "{v}");
    assert_eq!(v["ratio"], 0.0, "{v}");
    assert_eq!(v["repeat"], 1, "one run without a baseline: {v}");
    assert_eq!(v["ratios"], serde_json::json!([]), "{v}");
}

#[test]
fn repeat_sets_the_number_of_alternating_runs_and_refuses_zero() {
    let v = bench_write("tcp", &["--repeat", "2"]);
    assert_eq!(v["repeat"], 2, "{v}");
    assert_eq!(v["ratios"].as_array().map(Vec::len), Some(2), "{v}");
    let job = run_bench_write("shm", &["--repeat", "0"]);
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(job.stderr.contains("--repeat"), "{job:?}");
}

/// `malt bench traffic`: one JSON line per schedule, the allreduce one
/// sending 2(N-1)/N of the vector against the direct one's N-1, and bad
/// options refused with exit status 2 and the option named.
#[test]
fn bench_traffic_prints_each_schedule_and_refuses_bad_options() {
    let mut cmd = Command::new(malt());
    cmd.args([
        "bench", "traffic", "--ranks", "64", "--len", "1048576", "--json",
    ]);
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    let lines = job.json_lines();
    assert_eq!(lines.len(), 2, "{}", job.stdout);
    assert_eq!(lines[0]["schedule"], "direct");
    assert_eq!(lines[1]["schedule"], "allreduce");
    let v = 1048576.0 * 4.0;
    let direct = lines[0]["bytes_per_rank"].as_f64().unwrap();
    let allreduce = lines[1]["bytes_per_rank"].as_f64().unwrap();
    assert_eq!(direct, 63.0 * (v + 32.0));
    assert_eq!(allreduce, 2.0 * 63.0 / 64.0 * v + 63.0 * 8.0);
    let mut cmd = Command::new(malt());
    cmd.args([
        "bench", "traffic", "--ranks", "64", "--len", "1000", "--graph", "halton",
    ]);
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    assert!(job.stdout.contains("halton"), "{job:?}");
    for bad in [["--ranks", "4097"], ["--ranks", "0"]] {
        let mut cmd = Command::new(malt());
        cmd.args(["bench", "traffic", "--len", "10"]).args(bad);
        let job = run_with_deadline(cmd, DEADLINE);
        assert_eq!(job.code, Some(2), "{bad:?}: {job:?}");
        assert!(job.stderr.contains("--ranks"), "{bad:?}: {job:?}");
    }
}
