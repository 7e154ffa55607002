//! Bad input at join and creation time: every case ends in a typed error
//! naming the problem and a non-zero exit, within the job timeout.

mod common;

use common::{free_port, rank_env, run_with_deadline, Job, ShmDir};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every case must end well before this; the ranks' own timeout is 3 s.
const DEADLINE: Duration = Duration::from_secs(30);
const TIMEOUT: &str = "3";

/// One rank's environment and extra `malt check` arguments.
type RankRun<'a> = (Vec<(String, String)>, Vec<&'a str>);

/// Runs `malt check` once per (environment, extra args), concurrently.
fn checks(ranks: Vec<RankRun<'_>>) -> Vec<Job> {
    let handles: Vec<_> = ranks
        .into_iter()
        .map(|(env, args)| {
            let mut cmd = Command::new(common::malt());
            cmd.arg("check").args(args);
            for k in ["MALT_RANK", "MALT_WORLD_SIZE", "MALT_JOB_TOKEN"] {
                cmd.env_remove(k);
            }
            cmd.env("MALT_TIMEOUT", TIMEOUT).envs(env);
            std::thread::spawn(move || run_with_deadline(cmd, DEADLINE))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn assert_failed(job: &Job, needle: &str) {
    assert!(job.code.is_some(), "hung: {job:?}");
    assert_ne!(job.code, Some(0), "should fail: {job:?}");
    assert!(
        job.stderr.contains(needle),
        "stderr lacks {needle:?}:\n{}",
        job.stderr
    );
}

#[test]
fn rank_out_of_range_is_refused_at_once() {
    let port = free_port();
    let t = Instant::now();
    // A rank that waited for the rendezvous instead would take the whole
    // 60 s timeout; a loaded machine may take seconds to start the process.
    let env = rank_env(2, 2, "out-of-range", port, &[("MALT_TIMEOUT", "60")]);
    let jobs = checks(vec![(env, vec![])]);
    assert_failed(&jobs[0], "rank 2 is out of range for a world of 2");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn missing_token_is_refused_at_once() {
    let port = free_port();
    let mut env = rank_env(1, 2, "x", port, &[]);
    env.retain(|(k, _)| k != "MALT_JOB_TOKEN");
    let jobs = checks(vec![(env, vec![])]);
    assert_failed(&jobs[0], "no job token");
}

#[test]
fn duplicate_rank_aborts_the_job() {
    let port = free_port();
    let jobs = checks(vec![
        (rank_env(0, 3, "tok", port, &[]), vec![]),
        (rank_env(1, 3, "tok", port, &[]), vec![]),
        (rank_env(1, 3, "tok", port, &[]), vec![]),
    ]);
    for j in &jobs {
        assert_failed(j, "rank 1");
    }
    assert!(jobs.iter().any(|j| j.stderr.contains("already taken")));
}

#[test]
fn world_size_disagreement_aborts_the_job() {
    let port = free_port();
    let jobs = checks(vec![
        (rank_env(0, 2, "tok", port, &[]), vec![]),
        (rank_env(1, 3, "tok", port, &[]), vec![]),
    ]);
    assert_failed(&jobs[0], "says the world has 3 ranks");
    assert_failed(&jobs[1], "world size 3 disagrees");
}

#[test]
fn object_size_disagreement_is_reported_on_every_rank() {
    let port = free_port();
    let jobs = checks(vec![
        (rank_env(0, 2, "tok", port, &[]), vec!["--size", "100"]),
        (rank_env(1, 2, "tok", port, &[]), vec!["--size", "200"]),
    ]);
    for j in &jobs {
        assert_failed(
            j,
            "disagrees with rank 0 about the size in bytes (100 vs 200)",
        );
    }
}

#[test]
fn unreachable_master_is_an_error_after_the_timeout() {
    let port = free_port();
    let t = Instant::now();
    let jobs = checks(vec![(rank_env(1, 2, "tok", port, &[]), vec![])]);
    assert_failed(&jobs[0], "unreachable");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn wrong_token_is_refused_and_the_master_names_the_missing_rank() {
    let port = free_port();
    let jobs = checks(vec![
        (rank_env(0, 2, "right", port, &[]), vec![]),
        (rank_env(1, 2, "wrong", port, &[]), vec![]),
    ]);
    assert_failed(&jobs[1], "refused this process's proof of the job secret");
    assert_failed(&jobs[0], "waiting for ranks [1]");
}

#[test]
fn a_second_job_with_a_live_jobs_token_gets_segments_of_its_own() {
    let dir = ShmDir::new("inuse");
    let (p1, p2) = (free_port(), free_port());
    let extra = [("MALT_SHM_DIR", dir.path())];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Job A: a one-rank check with endless rounds keeps its segment alive.
    let mut a = Command::new(common::malt());
    a.args(["check", "--rounds", "1000000", "--size", "64"])
        .envs(rank_env(0, 1, "same", p1, &extra))
        .env("MALT_TIMEOUT", "20");
    let mut a = a.spawn().unwrap();
    // Wait (bounded) until job A's segment file exists.
    let t = Instant::now();
    while dir.files().is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let a_files = dir.files();
    assert!(!a_files.is_empty(), "job A never created its segment");
    // Job B, same token: the job's random nonce names its files apart.
    let jobs = checks(vec![(
        rank_env(0, 1, "same", p2, &extra),
        vec!["--size", "64"],
    )]);
    let still = dir.files();
    let _ = a.kill();
    let _ = a.wait();
    assert_eq!(jobs[0].code, Some(0), "{:?}", jobs[0]);
    assert_eq!(jobs[0].json_lines()[0]["ok"], true, "{:?}", jobs[0]);
    for f in &a_files {
        assert!(still.contains(f), "job B touched job A's {f}");
    }
}
