//! dstorm over real processes: torn writes, lapping, updates read in parts.
//! Transport-generic tests read the transport from `MALT_TEST_TRANSPORTS`
//! (default `shm,tcp`). Byte-exact delivery through `malt check` is tested
//! with the CLI, in the workspace's tests/cli_check.rs.

mod common;

use common::{launch_self, report, Job};
use dstorm::{FlowControl, Group, ObjectSpec};
use serde_json::json;
use std::ops::ControlFlow;
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

/// Byte `i` of the update of iteration `it` in the read-together test.
fn together_byte(it: u64, i: usize) -> u8 {
    (it as usize * 131 + i * 7 + i / 4093) as u8
}

/// Rank 0 writes updates of 3 parts and a bit into a depth-2 queue; rank 1
/// reads them with `read_together`: once whole, once while rank 0
/// overwrites the update between two parts, once after it was lapped.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_read_together() {
    const PART: usize = 4096;
    const LEN: usize = 3 * PART + 100;
    let g = group();
    let mut data = g
        .create_object(
            &ObjectSpec::new("together", LEN)
                .depth(2)
                .graph(vec![vec![1], vec![]]),
        )
        .unwrap();
    let mut signal = g.create_object(&ObjectSpec::new("signal", 8)).unwrap();
    let wait = Duration::from_secs(20);
    let update = |it: u64| -> Vec<u8> { (0..LEN).map(|i| together_byte(it, i)).collect() };
    let mut word = [0u8; 8];
    if g.rank() == 0 {
        data.write(1, &update(1), 1).unwrap();
        data.write(1, &update(2), 2).unwrap();
        // Overwrite 2 (3 goes to the other slot, 4 to 2's) while it is read.
        signal
            .poll_from_timeout(1, &mut word, wait)
            .unwrap()
            .unwrap();
        data.write(1, &update(3), 3).unwrap();
        data.write(1, &update(4), 4).unwrap();
        signal.write(1, &[1; 8], 1).unwrap();
        g.barrier().unwrap();
        // 5, 6, 7 before rank 1 reads: 7 overwrites 5 in the slot that
        // rank 1 reads next.
        for it in 5..=7 {
            data.write(1, &update(it), it).unwrap();
        }
        g.barrier().unwrap();
    } else {
        let mut stage = vec![0u8; PART];
        let mut buf = vec![0u8; LEN];
        // 1. Whole, after refusing the wrong iteration or length.
        data.wait_visible(0, 2, wait).unwrap().unwrap();
        let mut got = Vec::new();
        let mut collect = |from: usize, n: usize, stage: &[u8]| {
            assert_eq!(from, got.len());
            got.extend_from_slice(&stage[..n]);
            Ok::<_, dstorm::Error>(ControlFlow::Continue(()))
        };
        let wrong_iteration = data
            .read_together(&[0], 2, LEN, PART, &mut stage, &mut collect)
            .unwrap();
        let wrong_len = data
            .read_together(&[0], 1, LEN - 1, PART, &mut stage, &mut collect)
            .unwrap();
        let whole = data
            .read_together(&[0], 1, LEN, PART, &mut stage, &mut collect)
            .unwrap();
        let first = json!({
            "refused": [wrong_iteration, wrong_len],
            "read": whole,
            "exact": got == update(1),
            "bytes_received": data.counters().peers[0].bytes_received,
            "received": data.counters().received,
        });
        // 2. Overwritten between the first and the second part.
        let mut parts = 0;
        let overwritten = data.read_together(
            &[0],
            2,
            LEN,
            PART,
            &mut stage,
            |from: usize, _n: usize, stage: &[u8]| {
                parts += 1;
                if from == 0 {
                    assert_eq!(stage[..PART], update(2)[..PART]);
                    signal.write(0, &[1; 8], 1)?;
                    signal.poll_from_timeout(0, &mut word, wait)?;
                }
                Ok::<_, dstorm::Error>(ControlFlow::Continue(()))
            },
        );
        let second = json!({
            "error": format!("{overwritten:?}"),
            "parts": parts,
            "torn": data.counters().torn,
            "next": data.poll_from(0, &mut buf).unwrap().map(|u| u.iteration),
            "next_exact": buf == update(3),
            "then": data.poll_from(0, &mut buf).unwrap().map(|u| u.iteration),
        });
        g.barrier().unwrap();
        // 3. Lapped before the read: nothing read, poll_from counts it.
        g.barrier().unwrap();
        data.wait_visible(0, 7, wait).unwrap().unwrap();
        let stale = data
            .read_together(&[0], 5, LEN, PART, &mut stage, |_, _, _| {
                Ok::<_, dstorm::Error>(ControlFlow::Continue(()))
            })
            .unwrap();
        let mut after = Vec::new();
        while let Some(u) = data.poll_from(0, &mut buf).unwrap() {
            after.push(u.iteration);
        }
        report(json!({
            "rank": 1,
            "first": first,
            "second": second,
            "third": {"read": stale, "after": after, "lapped": data.counters().lapped},
        }));
    }
    g.finish().unwrap();
}

#[test]
fn read_together_reads_whole_updates_and_reports_one_overwritten_while_read() {
    for t in transports() {
        let job = launch_self(2, &t, "rank_read_together", &[], DEADLINE);
        assert_ok(&job, &t);
        let r = &job.results()[0];
        let first = &r["first"];
        assert_eq!(first["refused"], json!([false, false]), "{t}: {r}");
        assert_eq!(first["read"], true, "{t}: {r}");
        assert_eq!(first["exact"], true, "{t}: {r}");
        let len = 3 * 4096 + 100;
        assert_eq!(first["bytes_received"], len, "{t}: {r}");
        assert_eq!(first["received"], 1, "{t}: {r}");
        let second = &r["second"];
        assert!(
            second["error"]
                .as_str()
                .unwrap()
                .starts_with("Err(Overwritten"),
            "{t}: {r}"
        );
        assert_eq!(second["parts"], 1, "{t}: {r}");
        assert_eq!(second["torn"], 1, "{t}: {r}");
        assert_eq!(second["next"], 3, "{t}: {r}");
        assert_eq!(second["next_exact"], true, "{t}: {r}");
        assert_eq!(second["then"], 4, "{t}: {r}");
        let third = &r["third"];
        assert_eq!(third["read"], false, "{t}: {r}");
        assert_eq!(third["after"], json!([6, 7]), "{t}: {r}");
        assert_eq!(third["lapped"], 1, "{t}: {r}");
    }
}

#[test]
fn a_dropped_objects_name_can_be_used_again_and_a_live_ones_cannot() {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let g = Group::join(dstorm::Config::local(0, 1, port, "names")).unwrap();
    let spec = ObjectSpec::new("w", 64);
    let first = g.create_object(&spec).unwrap();
    let again = g.create_object(&spec).unwrap_err().to_string();
    assert!(again.contains("already exists"), "{again}");
    drop(first);
    let second = g.create_object(&spec).expect("the name is free again");
    assert!(g.create_object(&spec).is_err());
    drop(second);
    g.finish().unwrap();
}

#[test]
fn two_single_rank_jobs_started_without_a_launcher_do_not_collide() {
    // No launcher variables, no port: what a program started by hand sees.
    let bare = |_: &str| -> Option<String> { None };
    let a = Group::join(dstorm::Config::from_source(&bare).unwrap()).expect("first job");
    let b = Group::join(dstorm::Config::from_source(&bare).unwrap()).expect("second job, at once");
    assert_eq!((a.world(), b.world()), (1, 1));
    a.finish().unwrap();
    b.finish().unwrap();
}
