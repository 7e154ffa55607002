//! Support for dstorm's multi-process tests. There is no `malt launch` in
//! this package, so the test binary is its own launcher: it re-runs itself
//! once per rank (an `#[ignore]`d entry selected with `--exact --ignored`)
//! with the rank variables a launcher would set, rank 0 hosts the
//! coordinator, and ranks report through `RESULT {json}` lines.
#![allow(dead_code)]

mod procs;
pub use procs::*;

use std::time::Duration;

/// Runs `ranks` copies of this test binary's ignored test `entry` as one
/// job over `transport`, as `malt launch --timeout 20` would (but with rank
/// 0 hosting the coordinator, and segment files in a private directory
/// removed afterwards), with extra environment. The job's output is every
/// rank's, each line behind `[rank] `; its code is 0 when every rank exited
/// 0, else the first failing rank's (None for a signal or the deadline).
pub fn launch_self(
    ranks: usize,
    transport: &str,
    entry: &str,
    env: &[(&str, &str)],
    deadline: Duration,
) -> Job {
    let dir = ShmDir::new(&format!("{entry}-{transport}"));
    let (world, shm) = (ranks.to_string(), dir.path());
    let mut extra = vec![
        ("MALT_TRANSPORT", transport),
        ("MALT_TIMEOUT", "20"),
        ("MALT_SHM_DIR", shm.as_str()),
        ("MALT_LOCAL_WORLD_SIZE", world.as_str()),
    ];
    extra.extend_from_slice(env);
    let token = format!("dstorm-test-{}-{entry}", std::process::id());
    let port = free_port();
    let envs: Vec<_> = (0..ranks)
        .map(|r| {
            let mut e = rank_env(r, ranks, &token, port, &extra);
            e.push(("MALT_LOCAL_RANK".into(), r.to_string()));
            e
        })
        .collect();
    let jobs = spawn_ranks(entry, &envs, deadline);
    let tagged = |text: &str, rank: usize| -> String {
        text.lines().map(|l| format!("[{rank}] {l}\n")).collect()
    };
    let failed = jobs.iter().find(|j| j.code != Some(0));
    Job {
        code: failed.map_or(Some(0), |j| j.code),
        signal: failed.and_then(|j| j.signal),
        timed_out: jobs.iter().any(|j| j.timed_out),
        stdout: jobs
            .iter()
            .enumerate()
            .map(|(r, j)| tagged(&j.stdout, r))
            .collect(),
        stderr: jobs
            .iter()
            .enumerate()
            .map(|(r, j)| tagged(&j.stderr, r))
            .collect(),
    }
}
