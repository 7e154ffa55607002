//! The tcp receive path refuses and counts connections without the job's
//! secret or for a sender that has one, and keeps working;
//! a segment file left by a SIGKILLed rank does not break the next run.

mod common;

use common::{free_port, launch_self, rank_env, report, spawn_ranks, ShmDir};
use dstorm::auth::{AuthError, Channel, Claim};
use dstorm::{Group, ObjectSpec};
use serde_json::json;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const CAP: usize = 256;

/// Authenticates `s` to rank 0 as sender 1 of a 2-rank job with `token`.
fn prove(s: &TcpStream, token: &str) -> Result<(), dstorm::auth::AuthError> {
    let claim = Claim {
        rank: 1,
        world: 2,
        epoch: 1,
    };
    dstorm::auth::connect(s, token.as_bytes(), Channel::Data, 0, claim)
}

/// Rank 1 opens extra raw connections to rank 0's data port: one with a
/// wrong secret, and one with the right secret for a sender that already
/// has its connection. Both are refused and counted; then a good update
/// goes through the real link. (Bad frames on an authenticated connection
/// are tested in dstorm's tcp unit tests.)
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_bad_connections() {
    let g = Group::from_env().unwrap();
    let mut o = g
        .create_object(&ObjectSpec::new("target", CAP).graph(vec![vec![], vec![0]]))
        .unwrap();
    if g.rank() == 1 {
        let token = std::env::var("MALT_JOB_TOKEN").unwrap();
        let addr = g.endpoints()[0].data_addr.clone().unwrap();
        let t = TcpStream::connect(&addr).unwrap();
        let wrong = prove(&t, "not-the-token");
        assert!(matches!(wrong, Err(AuthError::Refused)), "{wrong:?}");
        let mut d = TcpStream::connect(&addr).unwrap();
        prove(&d, &token).unwrap();
        // The receiver closes the second claim once it has seen it.
        d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(d.read(&mut b).unwrap_or(0), 0, "a second claim was kept");
        g.barrier().unwrap();
        o.write(0, &[42u8; CAP], 5).unwrap();
    } else {
        g.barrier().unwrap();
        let mut buf = [0u8; CAP];
        let u = o
            .poll_from_timeout(1, &mut buf, Duration::from_secs(10))
            .unwrap();
        let r = g.rejected();
        report(json!({
            "rank": 0,
            "iteration": u.map(|u| u.iteration),
            "bytes_ok": buf.iter().all(|b| *b == 42),
            "rejected": r,
        }));
    }
    g.finish().unwrap();
}

#[test]
fn connections_without_the_secret_or_for_a_taken_sender_are_refused_and_counted() {
    let job = launch_self(2, "tcp", "rank_bad_connections", &[], DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    let r = &job.results()[0];
    assert_eq!(r["iteration"], 5, "{r}");
    assert_eq!(r["bytes_ok"], true, "{r}");
    let rej = &r["rejected"];
    assert_eq!(rej["bad_token"], 1, "{rej}");
    assert_eq!(rej["bad_sender"], 1, "{rej}");
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
