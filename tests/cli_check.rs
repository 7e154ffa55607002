//! `malt check` under `malt launch`: byte-exact delivery for 2, 3 and 4
//! ranks and updates of 1 byte to 16 MiB. The transports come from
//! `MALT_TEST_TRANSPORTS` (default `shm,tcp`). dstorm's own multi-process
//! tests, which need no CLI, are in dstorm/tests/.

mod common;

use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn transports() -> Vec<String> {
    std::env::var("MALT_TEST_TRANSPORTS")
        .unwrap_or_else(|_| "shm,tcp".into())
        .split(',')
        .map(str::to_string)
        .collect()
}

fn check_job(ranks: usize, transport: &str, size: usize, rounds: usize) {
    let mut cmd = std::process::Command::new(common::malt());
    cmd.args([
        "launch",
        "-n",
        &ranks.to_string(),
        "--transport",
        transport,
        "--timeout",
        "30",
        "--",
    ])
    .arg(common::malt())
    .args([
        "check",
        "--size",
        &size.to_string(),
        "--rounds",
        &rounds.to_string(),
    ]);
    let job = common::run_with_deadline(cmd, DEADLINE);
    let what = format!("check -n {ranks} {transport} size {size}");
    assert_eq!(
        job.code,
        Some(0),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        job.code,
        job.stdout,
        job.stderr
    );
    let lines = job.json_lines();
    assert_eq!(lines.len(), ranks, "{what}: {}", job.stdout);
    for l in &lines {
        assert_eq!(l["ok"], true, "{what}: {l}");
        assert_eq!(l["transport"], transport);
        let expect = (ranks - 1) * size * rounds;
        assert_eq!(
            l["bytes_verified"].as_u64(),
            Some(expect as u64),
            "{what}: {l}"
        );
    }
}

#[test]
fn byte_exact_delivery_for_2_3_4_ranks_and_1_byte_to_16_mib() {
    for t in transports() {
        for ranks in [2, 3, 4] {
            check_job(ranks, &t, 1, 50);
            check_job(ranks, &t, 4097, 30);
            check_job(ranks, &t, 1 << 20, 5);
        }
        check_job(2, &t, 16 << 20, 3);
        check_job(4, &t, 16 << 20, 2);
    }
}
