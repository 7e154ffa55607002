//! dstorm over real processes: byte-exact delivery, torn writes, lapping,
//! leftover segments, invalid tcp frames. Transport-generic tests read the
//! transport from `MALT_TEST_TRANSPORTS` (default `shm,tcp`).

mod common;

use common::{launch_self, report, Job};
use dstorm::{FlowControl, Group, ObjectSpec};
use serde_json::json;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn transports() -> Vec<String> {
    std::env::var("MALT_TEST_TRANSPORTS")
        .unwrap_or_else(|_| "shm,tcp".into())
        .split(',')
        .map(str::to_string)
        .collect()
}

fn assert_ok(job: &Job, what: &str) {
    assert_eq!(
        job.code,
        Some(0),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        job.code,
        job.stdout,
        job.stderr
    );
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
    assert_ok(&job, &what);
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

fn group() -> Group {
    Group::from_env().expect("join")
}

/// Rank 0 leaves one write without its trailer, then writes a good one.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_torn_write() {
    let g = group();
    let mut o = g
        .create_object(&ObjectSpec::new("torn", 4096).depth(4))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    if g.rank() == 0 {
        o.write_torn(1, &[7u8; 4096], 1).unwrap();
    }
    g.barrier().unwrap();
    let first = if g.rank() == 1 {
        o.poll_from_timeout(0, &mut buf, Duration::from_millis(300))
            .unwrap()
    } else {
        None
    };
    g.barrier().unwrap();
    if g.rank() == 0 {
        o.write(1, &[9u8; 4096], 2).unwrap();
    }
    let second = if g.rank() == 1 {
        o.poll_from_timeout(0, &mut buf, Duration::from_secs(10))
            .unwrap()
    } else {
        None
    };
    let good = buf.iter().all(|b| *b == 9);
    if g.rank() == 1 {
        report(json!({
            "rank": 1,
            "first": first.map(|u| u.iteration),
            "second": second.map(|u| u.iteration),
            "second_bytes_ok": good,
            "torn": o.counters().torn,
            "rejected_checksum": g.rejected().bad_checksum,
        }));
    }
    g.finish().unwrap();
}

#[test]
fn a_writer_stopped_before_the_trailer_is_never_read() {
    for t in transports() {
        let job = launch_self(2, &t, "rank_torn_write", &[], DEADLINE);
        assert_ok(&job, &t);
        let r = &job.results()[0];
        assert_eq!(
            r["first"],
            serde_json::Value::Null,
            "{t}: torn slot returned: {r}"
        );
        assert_eq!(r["second"], 2, "{t}: {r}");
        assert_eq!(r["second_bytes_ok"], true, "{t}: {r}");
        assert_eq!(r["torn"], 1, "{t}: {r}");
        if t == "tcp" {
            assert_eq!(r["rejected_checksum"], 1, "{t}: {r}");
        }
    }
}

fn stress_word(iteration: u64, i: usize) -> u64 {
    iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64
}

/// Rank 0 writes as fast as it can while rank 1 reads and checks every
/// update it gets, until rank 1 has seen torn slots or time runs out.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_stress() {
    const SIZE: usize = 256 * 1024;
    let g = group();
    let mut data = g
        .create_object(&ObjectSpec::new("stress", SIZE).graph(vec![vec![1], vec![]]))
        .unwrap();
    let mut stop = g
        .create_object(&ObjectSpec::new("stop", 8).graph(vec![vec![], vec![0]]))
        .unwrap();
    let mut buf = vec![0u8; SIZE];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    if g.rank() == 0 {
        let mut it = 0u64;
        let mut small = [0u8; 8];
        loop {
            it += 1;
            for (i, c) in buf.chunks_mut(8).enumerate() {
                c.copy_from_slice(&stress_word(it, i).to_le_bytes());
            }
            data.write(1, &buf, it).unwrap();
            if it.is_multiple_of(16) && stop.poll(&mut small).unwrap().is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                break;
            }
        }
        report(json!({"rank": 0, "written": it}));
    } else {
        let (mut good, mut bad) = (0u64, 0u64);
        while std::time::Instant::now() < deadline {
            if let Some(u) = data
                .poll_timeout(&mut buf, Duration::from_millis(100))
                .unwrap()
            {
                let ok = buf[..u.len]
                    .chunks(8)
                    .enumerate()
                    .all(|(i, c)| c == stress_word(u.iteration, i).to_le_bytes());
                if ok {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
            let c = data.counters();
            if c.torn > 0 && c.lapped > 0 && good > 100 {
                break;
            }
        }
        stop.write(0, &[1; 8], 0).unwrap();
        let c = data.counters();
        report(json!({"rank": 1, "good": good, "bad": bad, "torn": c.torn, "lapped": c.lapped}));
    }
    g.finish().unwrap();
}

#[test]
fn concurrent_writes_are_detected_as_torn_and_never_accepted() {
    // The in-process race needs one-sided stores into live memory: shm.
    let job = launch_self(2, "shm", "rank_stress", &[], DEADLINE);
    assert_ok(&job, "stress");
    let r = &job.results()[1];
    assert_eq!(r["bad"], 0, "a torn update was returned: {r}");
    assert!(r["good"].as_u64().unwrap() > 100, "{r}");
    assert!(
        r["torn"].as_u64().unwrap() > 0,
        "no torn slot detected: {r}"
    );
    assert!(r["lapped"].as_u64().unwrap() > 0, "{r}");
}

/// Rank 0 writes ten updates into a depth-2 queue before rank 1 reads any.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_lapping() {
    let g = group();
    let mut o = g
        .create_object(
            &ObjectSpec::new("lap", 64)
                .depth(2)
                .flow(FlowControl::Overwrite)
                .graph(vec![vec![1], vec![]]),
        )
        .unwrap();
    if g.rank() == 0 {
        for i in 1..=10u64 {
            o.write(1, &i.to_le_bytes(), i).unwrap();
        }
    }
    g.barrier().unwrap();
    if g.rank() == 1 {
        let mut buf = [0u8; 64];
        // tcp applies frames asynchronously: wait until the last is visible.
        o.wait_visible(0, 10, Duration::from_secs(10)).unwrap();
        let mut got = Vec::new();
        while let Some(u) = o.poll(&mut buf).unwrap() {
            let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
            got.push((u.iteration, v));
        }
        report(json!({"rank": 1, "got": got, "lapped": o.counters().lapped}));
    }
    g.finish().unwrap();
}

#[test]
fn lapping_is_counted_and_the_newest_updates_are_returned() {
    for t in transports() {
        let job = launch_self(2, &t, "rank_lapping", &[], DEADLINE);
        assert_ok(&job, &t);
        let r = &job.results()[0];
        assert_eq!(r["got"], json!([[9, 9], [10, 10]]), "{t}: {r}");
        assert_eq!(r["lapped"], 8, "{t}: {r}");
    }
}
