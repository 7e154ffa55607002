//! `malt bench write`: the fields its JSON lines promise, on shm and tcp,
//! with and without `--throughput-only`.

mod common;

use common::{malt, run_with_deadline};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn bench_write(transport: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(malt());
    cmd.args(["bench", "write", "--transport", transport])
        .args(["--size", "4096", "--iters", "200", "--json"])
        .args(extra);
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    let lines = job.json_lines();
    assert_eq!(lines.len(), 1, "one size, one line: {}", job.stdout);
    lines.into_iter().next().unwrap_or_default()
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
        let g = positive(&v, "gbps");
        let w = positive(&v, "woken_gbps");
        let base = positive(&v, "baseline_gbps");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(positive(&v, "ratio"), g / base), "{v}");
        assert!(close(positive(&v, "woken_ratio"), w / base), "{v}");
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
    assert_eq!(v["lat_us_p50"], 0.0, "{v}");
    assert_eq!(v["ratio"], 0.0, "{v}");
}
