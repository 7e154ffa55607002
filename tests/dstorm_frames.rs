//! The tcp receive path rejects and counts invalid frames and keeps working;
//! a segment file left by a SIGKILLed rank does not break the next run.

mod common;

use common::{free_port, launch_self, rank_env, report, spawn_ranks, ShmDir};
use dstorm::layout::Layout;
use dstorm::wire::{checksum, FrameHeader, FrameKind, HEADER_BYTES};
use dstorm::{Group, ObjectSpec};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const CAP: usize = 256;

fn hello(s: &mut TcpStream, token: &str) {
    let mut hb = [0u8; HEADER_BYTES];
    FrameHeader {
        kind: FrameKind::Hello,
        epoch: 1,
        sender: 1,
        object: 2,
        offset: 0,
        len: token.len() as u64,
        seq: 0,
        iteration: 0,
        checksum: checksum(token.as_bytes()),
    }
    .encode(&mut hb);
    s.write_all(&hb).unwrap();
    s.write_all(token.as_bytes()).unwrap();
}

fn frame(s: &mut TcpStream, f: FrameHeader, payload: &[u8]) {
    let mut hb = [0u8; HEADER_BYTES];
    f.encode(&mut hb);
    s.write_all(&hb).unwrap();
    s.write_all(payload).unwrap();
}

/// Rank 1 opens extra raw connections to rank 0 and sends every kind of bad
/// frame, then a good update through its real link.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_bad_frames() {
    let g = Group::from_env().unwrap();
    let mut o = g
        .create_object(&ObjectSpec::new("target", CAP).graph(vec![vec![], vec![0]]))
        .unwrap();
    if g.rank() == 1 {
        let token = std::env::var("MALT_JOB_TOKEN").unwrap();
        let addr = g.endpoints()[0].data_addr.clone().unwrap();
        let layout = Layout::new(CAP, 2, vec![1], 2);
        let slot = layout.slot_offset(0, 0) as u64;
        let payload = [3u8; 16];
        let good = FrameHeader {
            kind: FrameKind::Slot,
            epoch: 1,
            sender: 1,
            object: 0,
            offset: slot,
            len: payload.len() as u64,
            seq: 1,
            iteration: 1,
            checksum: checksum(&payload),
        };
        let mut s = TcpStream::connect(&addr).unwrap();
        hello(&mut s, &token);
        frame(
            &mut s,
            FrameHeader {
                offset: slot + 8,
                ..good
            },
            &payload,
        );
        frame(&mut s, FrameHeader { offset: 0, ..good }, &payload);
        frame(&mut s, FrameHeader { epoch: 7, ..good }, &payload);
        frame(&mut s, FrameHeader { sender: 0, ..good }, &payload);
        frame(&mut s, FrameHeader { object: 9, ..good }, &payload);
        frame(
            &mut s,
            FrameHeader {
                checksum: 1,
                ..good
            },
            &payload,
        );
        // Longer than any slot: counted, and the stream is closed.
        frame(
            &mut s,
            FrameHeader {
                len: CAP as u64 + 1,
                ..good
            },
            &[0u8; CAP + 1],
        );
        // A header with a wrong magic: counted, and the stream is closed.
        let mut u = TcpStream::connect(&addr).unwrap();
        hello(&mut u, &token);
        let mut hb = [0u8; HEADER_BYTES];
        good.encode(&mut hb);
        hb[0] ^= 0xff;
        u.write_all(&hb).unwrap();
        // A connection with a wrong token.
        let mut t = TcpStream::connect(&addr).unwrap();
        hello(&mut t, "not-the-token");
        // The receiver closes each of these once it has handled everything
        // sent on it: wait (bounded) for that.
        for c in [&mut s, &mut u, &mut t] {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 1];
            assert_eq!(
                c.read(&mut b).unwrap_or(0),
                0,
                "receiver kept a bad stream open"
            );
        }
        g.barrier().unwrap();
        o.write(0, &[42u8; CAP], 5).unwrap();
    } else {
        g.barrier().unwrap();
        let mut buf = [0u8; CAP];
        let u = o
            .poll_from_timeout(1, &mut buf, Duration::from_secs(10))
            .unwrap();
        // Counters are bumped by the receive threads; the good update arrived
        // after every bad frame on the closed connections had been handled.
        let r = g.rejected();
        report(json!({
            "rank": 0,
            "iteration": u.map(|u| u.iteration),
            "bytes_ok": buf.iter().all(|b| *b == 42),
            "rejected": r,
            "torn": o.counters().torn,
        }));
    }
    g.finish().unwrap();
}

#[test]
fn invalid_tcp_frames_are_rejected_counted_and_the_receiver_keeps_working() {
    let job = launch_self(2, "tcp", "rank_bad_frames", &[], DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    let r = &job.results()[0];
    assert_eq!(r["iteration"], 5, "{r}");
    assert_eq!(r["bytes_ok"], true, "{r}");
    let rej = &r["rejected"];
    for (k, n) in [
        ("bad_offset", 2),
        ("bad_epoch", 1),
        ("bad_sender", 1),
        ("bad_object", 1),
        ("bad_checksum", 1),
        ("bad_length", 1),
        ("bad_header", 1),
        ("bad_token", 1),
    ] {
        assert_eq!(rej[k], n, "{k}: {rej}");
    }
}

/// Creates an object, then dies by SIGKILL without cleaning up.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_create_and_die() {
    let g = Group::from_env().unwrap();
    let _o = g.create_object(&ObjectSpec::new("doomed", 4096)).unwrap();
    let me = nix::unistd::Pid::this();
    let _ = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGKILL);
}

#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_create_and_finish() {
    let g = Group::from_env().unwrap();
    let mut o = g.create_object(&ObjectSpec::new("doomed", 4096)).unwrap();
    o.write_all(&[1u8; 4096], 1).unwrap();
    report(json!({"rank": g.rank(), "ok": true}));
    g.finish().unwrap();
}

#[test]
fn a_segment_left_by_a_sigkilled_run_does_not_break_the_next_run() {
    let dir = ShmDir::new("leftover");
    let port = free_port();
    let extra = [("MALT_SHM_DIR", dir.path()), ("MALT_TIMEOUT", "10".into())];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let envs = |port| vec![rank_env(0, 1, "same-token", port, &extra)];
    let died = spawn_ranks("rank_create_and_die", &envs(port), DEADLINE);
    assert_eq!(died[0].signal, Some(9), "{:?}", died[0]);
    let left = dir.files();
    assert_eq!(
        left.len(),
        1,
        "the killed run should leave its segment: {left:?}"
    );
    // Same token, same file name: the dead owner's file is reclaimed.
    let next = spawn_ranks("rank_create_and_finish", &envs(free_port()), DEADLINE);
    assert_eq!(next[0].code, Some(0), "{:?}", next[0]);
    assert_eq!(next[0].results()[0]["ok"], true);
    assert!(
        dir.files().is_empty(),
        "segment not removed at shutdown: {:?}",
        dir.files()
    );
}
