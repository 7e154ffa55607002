//! Failures of the verbs transport: a peer killed with SIGKILL becomes a
//! typed error naming it at the writer within a bounded time, an update
//! slower than the failure timeout is not taken for a dead peer, and a
//! missing device or bad setting is refused with a message that says what
//! to do.
//!
//! Built only with the `verbs` feature. The multi-process tests need an RDMA
//! device and are ignored elsewhere; run it in the soft-RoCE guest:
//! `rxe-setup/in-guest.sh <test binary> --ignored --skip rank_`
//! (rxe-setup/ci-verbs.sh does).

mod common;

use common::{free_port, rank_env, report, run_with_deadline, spawn_ranks};
use dstorm::{Error, Group, ObjectSpec};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the writer may take to report the dead peer (the settings
/// below make the queue pair give up after about 8 ms of silence; the
/// guest is slow and its timers coarse).
const DETECTION_BOUND: Duration = Duration::from_secs(5);

/// Rank 1 makes sure one write got through, then kills itself; rank 0
/// keeps writing until the transport reports the failure.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_writer_and_victim() {
    let g = Group::from_env().expect("join");
    let graph = vec![vec![1], vec![]];
    let mut a = g
        .create_object(&ObjectSpec::new("faults-a", 4096).graph(graph.clone()))
        .expect("create a");
    let mut b = g
        .create_object(&ObjectSpec::new("faults-b", 64).graph(graph))
        .expect("create b");
    let buf = vec![7u8; 4096];
    if g.rank() == 0 {
        a.write(1, &buf, 1).expect("first write");
    } else {
        let seen = a
            .wait_visible(0, 1, Duration::from_secs(20))
            .expect("wait")
            .is_some();
        report(json!({"rank": 1, "first_write_seen": seen}));
    }
    g.barrier().expect("barrier");
    if g.rank() == 1 {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).expect("raise");
        unreachable!("SIGKILL returned");
    }
    // What the transport itself reports: the coordinator's news of the
    // death (which usually arrives first on one host) is kept out.
    a.ignore_membership();
    b.ignore_membership();
    let start = Instant::now();
    let mut writes = 1u64;
    let failure = loop {
        writes += 1;
        match a.write(1, &buf, writes) {
            Ok(()) if start.elapsed() < Duration::from_secs(60) => continue,
            Ok(()) => break None,
            Err(e) => break Some(e),
        }
    };
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let peer_of = |e: &Error| match e {
        Error::Peer { peer, .. } => Some(*peer),
        _ => None,
    };
    // The connection is per peer: another object's write to it fails at
    // once, and so does the next write to the first object.
    let t = Instant::now();
    let other = b.write(1, &[1u8; 64], 1).err();
    let again = a.write(1, &buf, writes + 1).err();
    report(json!({
        "rank": 0,
        "error": failure.as_ref().map(|e| e.to_string()),
        "peer": failure.as_ref().and_then(peer_of),
        "elapsed_ms": elapsed_ms,
        "writes": writes,
        "other_object_peer": other.as_ref().and_then(peer_of),
        "again_peer": again.as_ref().and_then(peer_of),
        "followups_ms": t.elapsed().as_millis() as u64,
    }));
    // No final barrier: rank 1 is gone.
}

#[test]
#[ignore = "requires an RDMA device (run in the guest: rxe-setup/ci-verbs.sh)"]
fn a_killed_peer_is_a_peer_error_at_the_writer_within_a_bound() {
    let port = free_port();
    let extra = [
        ("MALT_TRANSPORT", "verbs"),
        ("MALT_TIMEOUT", "20"),
        ("MALT_RDMA_TIMEOUT", "10"),
        ("MALT_RDMA_RETRY", "1"),
    ];
    let envs: Vec<_> = (0..2)
        .map(|r| rank_env(r, 2, "verbs-faults", port, &extra))
        .collect();
    let jobs = spawn_ranks("rank_writer_and_victim", &envs, Duration::from_secs(120));
    let (w, v) = (&jobs[0], &jobs[1]);
    assert_eq!(v.signal, Some(9), "the victim should die by SIGKILL: {v:?}");
    assert!(
        v.stdout.contains(r#""first_write_seen":true"#),
        "the path worked before the kill: {v:?}"
    );
    assert_eq!(w.code, Some(0), "writer: {w:?}");
    let r = &w.results()[0];
    eprintln!("writer: {r}");
    assert_eq!(r["peer"], 1, "a Peer error naming rank 1: {r}");
    let msg = r["error"].as_str().unwrap_or_default();
    assert!(msg.contains("rank 1"), "{r}");
    let elapsed = Duration::from_millis(r["elapsed_ms"].as_u64().unwrap_or(u64::MAX));
    assert!(
        elapsed < DETECTION_BOUND,
        "detected after {elapsed:?}, bound {DETECTION_BOUND:?}: {r}"
    );
    assert_eq!(r["other_object_peer"], 1, "{r}");
    assert_eq!(r["again_peer"], 1, "{r}");
    assert!(r["followups_ms"].as_u64().unwrap_or(u64::MAX) < 1000, "{r}");
}

/// Ranks 1 and 3 write where they may not in rank 0's segment: rank 1 into
/// rank 2's queue, rank 3 over the control block. Both writes must fail at
/// rank 0's adapter (a remote access error at the writer), leave rank 0's
/// memory as it was, and not keep rank 2's own update from arriving.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_foreign_writer() {
    let g = Group::from_env().expect("join");
    let mut o = g
        .create_object(&ObjectSpec::new("foreign", 64))
        .expect("create");
    o.ignore_membership();
    let rank = g.rank();
    let control_before = o.read_word_at(0);
    let attack = match rank {
        // Rank 0's senders are 1, 2, 3: queue 1 is rank 2's.
        1 => Some(o.write_into_queue(0, 1, &[0xee; 64])),
        3 => Some(o.write_word_at(0, 0, u64::MAX)),
        _ => None,
    };
    if let Some(first) = attack {
        // The failure comes back with a later completion: write on (into
        // the rank's own queue) until the connection reports it.
        let start = Instant::now();
        let mut outcome = first;
        let mut i = 1;
        while outcome.is_ok() && start.elapsed() < Duration::from_secs(20) {
            i += 1;
            outcome = o.write(0, &[rank as u8; 64], i);
        }
        let e = outcome.err();
        report(json!({
            "rank": rank,
            "error": e.as_ref().map(|e| e.to_string()),
            "peer": e.as_ref().and_then(|e| match e {
                Error::Peer { peer, .. } => Some(*peer),
                _ => None,
            }),
        }));
    }
    g.barrier().expect("barrier after the foreign writes");
    let mut out = vec![0u8; 64];
    if rank == 0 {
        // Whatever landed of the foreign writes is there by now: the
        // writers saw their failures, which the adapter reports after it
        // refused (or applied) the write.
        let early = o.poll_from(2, &mut out).expect("poll rank 2's queue");
        report(json!({
            "rank": 0,
            "foreign_in_queue_2": early.is_some(),
            "control_unchanged": o.read_word_at(0) == control_before,
        }));
    }
    g.barrier().expect("barrier before rank 2 writes");
    if rank == 2 {
        o.write(0, &[2u8; 64], 7).expect("rank 2's own update");
    }
    if rank == 0 {
        let u = o
            .poll_from_timeout(2, &mut out, Duration::from_secs(20))
            .expect("poll rank 2's update");
        report(json!({
            "rank": 0,
            "own_update": u.map(|u| u.iteration),
            "own_payload_ok": out.iter().all(|b| *b == 2),
        }));
    }
    g.barrier().expect("final barrier");
}

#[test]
#[ignore = "requires an RDMA device (run in the guest: rxe-setup/ci-verbs.sh)"]
fn a_write_outside_the_senders_own_queue_is_a_remote_access_error() {
    let port = free_port();
    let extra = [
        ("MALT_TRANSPORT", "verbs"),
        ("MALT_TIMEOUT", "60"),
        ("MALT_RDMA_TIMEOUT", "10"),
        ("MALT_RDMA_RETRY", "1"),
    ];
    let envs: Vec<_> = (0..4)
        .map(|r| rank_env(r, 4, "verbs-foreign", port, &extra))
        .collect();
    let jobs = spawn_ranks("rank_foreign_writer", &envs, Duration::from_secs(180));
    for (r, j) in jobs.iter().enumerate() {
        assert_eq!(j.code, Some(0), "rank {r}: {j:?}");
    }
    for r in [1, 3] {
        let res = &jobs[r].results()[0];
        eprintln!("rank {r}: {res}");
        assert_eq!(
            res["peer"], 0,
            "rank {r}: a Peer error naming rank 0: {res}"
        );
        let msg = res["error"].as_str().unwrap_or_default();
        assert!(msg.contains("remote access error"), "rank {r}: {res}");
    }
    let results = jobs[0].results();
    eprintln!("rank 0: {results:?}");
    assert_eq!(results[0]["foreign_in_queue_2"], false, "{results:?}");
    assert_eq!(results[0]["control_unchanged"], true, "{results:?}");
    assert_eq!(results[1]["own_update"], 7, "{results:?}");
    assert_eq!(results[1]["own_payload_ok"], true, "{results:?}");
}

/// An update that takes longer than the failure timeout to arrive is slow,
/// not dead: its chunks tell the receiver's fault monitor that the writer
/// lives, while the heartbeats wait behind it. Two ranks exchange 64 MiB
/// updates (about 2 s each way in the soft-RoCE guest) with T = 1 s.
#[test]
#[ignore = "requires an RDMA device (run in the guest: rxe-setup/ci-verbs.sh)"]
fn an_update_that_takes_longer_than_t_is_not_a_failure() {
    common::slow_updates_are_not_failures(&[], "verbs", 1, 64 << 20);
}

/// `malt check --transport verbs` with a device that does not exist, or a
/// malformed setting: exit 2 and a message naming the problem (with the
/// soft-RoCE advice for a missing device). Works with or without a device.
#[test]
fn unusable_verbs_settings_are_refused_with_advice() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(common::malt());
        cmd.args(["check", "--transport", "verbs"]);
        for k in ["MALT_RANK", "MALT_WORLD_SIZE", "MALT_JOB_TOKEN"] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied())
            .env("MALT_MASTER_PORT", free_port().to_string());
        run_with_deadline(cmd, Duration::from_secs(60))
    };
    let j = run(&[("MALT_RDMA_DEVICE", "no-such-rdma-device0")]);
    assert_eq!(j.code, Some(2), "{j:?}");
    assert!(j.stderr.contains("unsupported"), "{}", j.stderr);
    assert!(j.stderr.contains("rxe-setup/in-guest.sh"), "{}", j.stderr);
    assert!(j.stderr.contains("rxe-setup/rxe-up.sh"), "{}", j.stderr);
    for (k, v) in [
        ("MALT_RDMA_TIMEOUT", "99"),
        ("MALT_RDMA_RETRY", "many"),
        ("MALT_RDMA_STAGING", "1k"),
    ] {
        let j = run(&[(k, v)]);
        assert_eq!(j.code, Some(2), "{k}={v}: {j:?}");
        assert!(j.stderr.contains(k), "{k}={v}: {}", j.stderr);
    }
}
