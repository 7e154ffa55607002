//! Numbers from outside (flags, environment, files) never panic (exit 101),
//! abort on an allocation (exit 134) or hang `malt`: each is accepted with a
//! meaning that does not make time or memory depend on its size, or refused
//! with exit status 2 and a message naming the input.

mod common;

use common::{malt, run_with_deadline, Job};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

/// One year in seconds, what a larger timeout means.
const ONE_YEAR_SECS: &str = "31536000";

/// Runs `malt ARGS` outside any job, with `env` added.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Job {
    let mut c = Command::new(malt());
    c.args(args);
    for k in [
        "MALT_RANK",
        "MALT_WORLD_SIZE",
        "MALT_JOB_TOKEN",
        "MALT_TIMEOUT",
        "MALT_FAIL_TIMEOUT",
        "MALT_MIN_RANKS",
        "MALT_MAX_REGROUPS",
        "RANK",
        "WORLD_SIZE",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "PMI_RANK",
        "PMI_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ] {
        c.env_remove(k);
    }
    c.env("RUST_BACKTRACE", "0");
    c.envs(env.iter().copied());
    run_with_deadline(c, DEADLINE)
}

fn run(args: &[&str]) -> Job {
    run_env(args, &[])
}

/// The command ended by itself, without a panic or an abort.
fn assert_no_crash(job: &Job, what: &str) {
    assert!(
        !job.timed_out,
        "{what}: still running at the deadline: {job:?}"
    );
    assert_eq!(job.signal, None, "{what}: ended by a signal: {job:?}");
    assert!(
        !matches!(job.code, Some(101) | Some(134)),
        "{what}: panicked or aborted: {job:?}"
    );
    assert!(
        !job.stderr.contains("panicked") && !job.stderr.contains("memory allocation"),
        "{what}: {job:?}"
    );
}

/// Succeeded.
fn assert_ok(job: &Job, what: &str) {
    assert_no_crash(job, what);
    assert_eq!(job.code, Some(0), "{what}: {job:?}");
}

/// Refused with status 2 and one line of standard error naming every one
/// of `names`.
fn assert_refused(job: &Job, what: &str, names: &[&str]) {
    assert_no_crash(job, what);
    assert_eq!(job.code, Some(2), "{what}: {job:?}");
    assert!(
        job.stderr
            .lines()
            .any(|l| names.iter().all(|n| l.contains(n))),
        "{what}: no line of the message names {names:?}:\n{}",
        job.stderr
    );
}

/// A fresh private directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("malt-outside-numbers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn launch_timeouts_above_a_year_mean_a_year() {
    let job = run(&["launch", "-n", "2", "--timeout", "1e30", "--", "true"]);
    assert_ok(&job, "launch --timeout 1e30");
    // The ranks are told the year.
    let same = format!("test \"$MALT_TIMEOUT\" = {ONE_YEAR_SECS}");
    let job = run(&[
        "launch",
        "-n",
        "2",
        "--timeout",
        "inf",
        "--",
        "sh",
        "-c",
        &same,
    ]);
    assert_ok(&job, "launch --timeout inf");
    let same = format!("test \"$MALT_FAIL_TIMEOUT\" = {ONE_YEAR_SECS}");
    let job = run(&[
        "launch",
        "-n",
        "2",
        "--min-ranks",
        "1",
        "--fail-timeout",
        "1e30",
        "--",
        "sh",
        "-c",
        &same,
    ]);
    assert_ok(&job, "launch --fail-timeout 1e30");
    let job = run_env(
        &[
            "launch",
            "-n",
            "2",
            "--min-ranks",
            "1",
            "--",
            "sh",
            "-c",
            &same,
        ],
        &[("MALT_FAIL_TIMEOUT", "1e300")],
    );
    assert_ok(&job, "MALT_FAIL_TIMEOUT=1e300");
    for bad in ["nan", "0", "-1", "-inf", "soon"] {
        let job = run(&["launch", "-n", "2", "--timeout", bad, "--", "true"]);
        assert_refused(&job, &format!("--timeout {bad}"), &["--timeout", bad]);
        let job = run(&["launch", "-n", "2", "--fail-timeout", bad, "--", "true"]);
        assert_refused(
            &job,
            &format!("--fail-timeout {bad}"),
            &["--fail-timeout", bad],
        );
    }
}

#[test]
fn train_timeouts_above_a_year_mean_a_year() {
    let dir = Dir::new("train-timeout");
    let out = dir.path().join("svm").display().to_string();
    let job = run(&[
        "train",
        "svm",
        "--ranks",
        "2",
        "--timeout",
        "1e30",
        "--json",
        "--no-plot",
        "--synth-rows",
        "200",
        "--synth-features",
        "50",
        "--synth-nnz",
        "5",
        "--epochs",
        "1",
        "--out",
        &out,
    ]);
    assert_ok(&job, "train svm --ranks 2 --timeout 1e30");
    assert!(job.stdout.contains("\"ranks\":2"), "{job:?}");
    let job = run(&["train", "svm", "--timeout", "NaN", "--out", &out]);
    assert_refused(&job, "train --timeout NaN", &["--timeout", "NaN"]);
}

#[test]
fn check_rounds_and_size_are_bounded() {
    for (flag, value) in [
        ("--rounds", "18446744073709551615"),
        ("--rounds", "1000000000000"),
        ("--rounds", "18446744073709551616"),
        ("--size", "1000000000000"),
        ("--size", "18446744073709551615"),
    ] {
        let job = run(&["check", flag, value]);
        assert_refused(&job, &format!("check {flag} {value}"), &[flag, value]);
    }
    // Within the limits, a one-rank check runs.
    let job = run(&["check", "--rounds", "3", "--size", "100"]);
    assert_ok(&job, "check --rounds 3 --size 100");
    assert!(job.stdout.contains("\"ok\":true"), "{job:?}");
}

#[test]
fn local_rank_counts_are_bounded() {
    let job = run(&["launch", "-n", "18446744073709551615", "--", "true"]);
    assert_refused(
        &job,
        "launch -n 2^64-1",
        &["--ranks", "18446744073709551615"],
    );
    let job = run(&["launch", "-n", "1025", "--", "true"]);
    assert_refused(&job, "launch -n 1025", &["--ranks", "1025", "1024"]);
    let job = run(&["train", "svm", "--ranks", "1000000"]);
    assert_refused(&job, "train --ranks 1000000", &["--ranks", "1000000"]);
    let job = run(&["bench", "gather", "--ranks", "100000"]);
    assert_refused(&job, "bench gather --ranks 100000", &["--ranks", "100000"]);
}

#[test]
fn bench_sizes_and_counts_are_bounded() {
    // (arguments, the flag or entry the message names)
    for (args, named) in [
        (
            &[
                "bench",
                "gather",
                "--len",
                "10",
                "--rounds",
                "1000000000000",
            ][..],
            "--rounds",
        ),
        (
            &["bench", "gather", "--len", "1000000000000", "--rounds", "1"][..],
            "--len",
        ),
        (
            &["bench", "gather", "--plan", "10:1000000000000"][..],
            "10:1000000000000",
        ),
        (&["bench", "write", "--size", "1000000000000"][..], "--size"),
        (
            &["bench", "write", "--size", "64", "--iters", "1000000000000"][..],
            "--iters",
        ),
        (
            &["bench", "write", "--plan", "1000000000000:10"][..],
            "1000000000000:10",
        ),
    ] {
        let job = run(args);
        assert_refused(&job, &args.join(" "), &[named, "1000000000000"]);
    }
}

#[test]
fn libsvm_feature_indices_are_bounded() {
    let dir = Dir::new("libsvm");
    let out = dir.path().join("svm").display().to_string();
    // One line asked for a 16 GB model before.
    let big = dir.file("big.libsvm", b"-1 1:1\n+1 4000000000:1\n");
    let job = run(&[
        "train",
        "svm",
        "--data",
        &big,
        "--quiet",
        "--no-plot",
        "--out",
        &out,
    ]);
    assert_refused(
        &job,
        "train svm on index 4000000000",
        &["big.libsvm:2", "4000000000", "67108864", "--max-features"],
    );
    // The limit is a flag.
    let small = dir.file("small.libsvm", b"+1 1:1\n-1 6:1\n+1 2:1 3:1\n-1 6:1\n");
    let common = ["--quiet", "--no-plot", "--epochs", "1", "--out", &out];
    let mut args = vec!["train", "svm", "--data", &small, "--max-features", "5"];
    args.extend(common);
    let job = run(&args);
    assert_refused(
        &job,
        "train svm --max-features 5",
        &["small.libsvm:2", "index 6", "5 features"],
    );
    let mut args = vec!["train", "svm", "--data", &small, "--max-features", "6"];
    args.extend(common);
    assert_ok(&run(&args), "train svm --max-features 6");
    for bad in ["0", "4294967296", "-1"] {
        let job = run(&["train", "svm", &format!("--max-features={bad}")]);
        assert_refused(
            &job,
            &format!("--max-features {bad}"),
            &["--max-features", bad],
        );
    }
    // Ratings ids size the factor model; past its limit they are refused.
    let ratings = dir.file("big.ratings", b"0 0 3\n1 4000000000 4\n");
    let mut args = vec!["train", "mf", "--data", &ratings];
    args.extend(common);
    let job = run(&args);
    assert_refused(&job, "train mf on item 4000000000", &["4000000001 items"]);
}

/// An IDX file: magic, dimensions, data.
fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[test]
fn idx_headers_are_checked_before_anything_is_sized_by_them() {
    for (rows, cols) in [(65_536, 65_536), (u32::MAX, u32::MAX)] {
        let dir = Dir::new("idx");
        // No images, of absurd size: a 32 GiB (or overflowing) row buffer before.
        dir.file(
            "train-images-idx3-ubyte",
            &idx(0x803, &[0, rows, cols], &[]),
        );
        dir.file("train-labels-idx1-ubyte", &idx(0x801, &[0], &[]));
        dir.file(
            "t10k-images-idx3-ubyte",
            &idx(0x803, &[1, 2, 2], &[0, 1, 2, 3]),
        );
        dir.file("t10k-labels-idx1-ubyte", &idx(0x801, &[1], &[3]));
        let src = dir.path().display().to_string();
        let out = dir.path().join("out").display().to_string();
        let job = run(&["data", "fashion-mnist", "--source", &src, "--out", &out]);
        assert_refused(
            &job,
            &format!("IDX images of {rows}x{cols}"),
            &[
                "train-images-idx3-ubyte",
                &format!("{rows}x{cols}"),
                "67108864",
            ],
        );
        // A header announcing more data than is there.
        dir.file(
            "train-images-idx3-ubyte",
            &idx(0x803, &[1 << 20, 28, 28], &[0; 784]),
        );
        dir.file("train-labels-idx1-ubyte", &idx(0x801, &[1 << 20], &[0]));
        let job = run(&["data", "fashion-mnist", "--source", &src, "--out", &out]);
        assert_refused(
            &job,
            "IDX short of its header",
            &["train-images-idx3-ubyte"],
        );
    }
}

#[test]
fn synthetic_sizes_are_bounded() {
    let dir = Dir::new("synth");
    let out = dir.path().join("s").display().to_string();
    let job = run(&[
        "data",
        "synth-sparse",
        "--rows",
        "1",
        "--features",
        "4000000000",
        "--nnz",
        "1",
        "--out",
        &out,
    ]);
    assert_refused(
        &job,
        "synth-sparse --features 4e9",
        &["features", "4000000000"],
    );
    let job = run(&[
        "data",
        "synth-ratings",
        "--users",
        "4000000000",
        "--items",
        "4000000000",
        "--rank",
        "1",
        "--ratings",
        "10",
        "--out",
        &out,
    ]);
    assert_refused(&job, "synth-ratings --users 4e9", &["users", "4000000000"]);
    let job = run(&[
        "data",
        "synth-ratings",
        "--users",
        "16777216",
        "--items",
        "16777216",
        "--rank",
        "4096",
        "--ratings",
        "10",
        "--out",
        &out,
    ]);
    assert_refused(
        &job,
        "synth-ratings --rank 4096",
        &["rank", "factor values"],
    );
    let job = run(&[
        "data",
        "synth-sparse",
        "--rows",
        "20",
        "--features",
        "100",
        "--nnz",
        "5",
        "--out",
        &out,
    ]);
    assert_ok(&job, "synth-sparse within the limits");
}
