//! `malt data`: generators are deterministic for a seed and errors are clear.

mod common;

use common::{malt, run_with_deadline};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

fn data(args: &[&str]) -> common::Job {
    let mut c = Command::new(malt());
    c.arg("data").args(args);
    run_with_deadline(c, DEADLINE)
}

#[test]
fn synthetic_data_is_deterministic_for_a_seed() {
    let dir = std::env::temp_dir().join(format!("malt-cli-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = |name: &str| dir.join(name).display().to_string();
    for (name, seed) in [("a.svm", "7"), ("b.svm", "7"), ("c.svm", "8")] {
        let j = data(&[
            "synth-sparse",
            "--rows",
            "500",
            "--features",
            "300",
            "--nnz",
            "8",
            "--seed",
            seed,
            "--out",
            &f(name),
        ]);
        assert_eq!(j.code, Some(0), "{j:?}");
        let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
        assert_eq!(v["rows"], 500);
    }
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    assert_eq!(read("a.svm"), read("b.svm"));
    assert_ne!(read("a.svm"), read("c.svm"));
    for (name, seed) in [("r1.txt", "3"), ("r2.txt", "3")] {
        let j = data(&[
            "synth-ratings",
            "--users",
            "200",
            "--items",
            "50",
            "--rank",
            "4",
            "--ratings",
            "2000",
            "--seed",
            seed,
            "--out",
            &f(name),
        ]);
        assert_eq!(j.code, Some(0), "{j:?}");
    }
    assert_eq!(read("r1.txt"), read("r2.txt"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_requests_fail_with_a_message() {
    let j = data(&[
        "fashion-mnist",
        "--out",
        "/tmp/unused",
        "--source",
        "/nonexistent-dir",
    ]);
    assert_eq!(j.code, Some(2), "{j:?}");
    assert!(
        j.stderr.contains("apt-get install dataset-fashion-mnist"),
        "{}",
        j.stderr
    );
    let j = data(&[
        "synth-sparse",
        "--rows",
        "10",
        "--features",
        "4",
        "--nnz",
        "50",
        "--out",
        "/tmp/unused.svm",
    ]);
    assert_eq!(j.code, Some(2), "{j:?}");
    assert!(j.stderr.contains("nnz"), "{}", j.stderr);
}
