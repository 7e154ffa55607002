//! How long malt waits, with default settings (no `MALT_TIMEOUT`): a live
//! rank is waited for as long as it lives, whether it computes for minutes
//! before its first object or starts late; a dead or stopped rank is found
//! by the fault monitors and ends a job that tolerates no failure, naming
//! it, within 2T (T = 5 s by default).

mod common;

use common::{free_port, malt, rank_env, report, wait_child, Job};
use dstorm::{Group, ObjectSpec};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The default failure timeout T.
const T: Duration = Duration::from_secs(5);

/// Joins, sleeps `SLOW_SECS` on rank `SLOW_RANK` (a long data load, say),
/// then exchanges one update both ways and finishes.
#[test]
#[ignore = "rank program: run by the multi-process tests"]
fn rank_slow_start() {
    let g = Group::from_env().expect("join");
    let slow: Option<usize> = std::env::var("SLOW_RANK").ok().and_then(|v| v.parse().ok());
    if slow == Some(g.rank()) {
        let secs: u64 = std::env::var("SLOW_SECS").unwrap().parse().unwrap();
        // The work under test: a long computation outside malt's calls.
        std::thread::sleep(Duration::from_secs(secs));
    }
    let mut o = g
        .create_object(&ObjectSpec::new("first", 64))
        .expect("first object, after the slow rank's work");
    let peer = 1 - g.rank();
    o.write(peer, &[g.rank() as u8 + 1; 64], 1).expect("write");
    let mut out = vec![0u8; 64];
    let got = o
        .poll_from_timeout(peer, &mut out, Duration::from_secs(60))
        .expect("poll");
    report(json!({
        "rank": g.rank(),
        "got": got.is_some() && out.iter().all(|b| *b == peer as u8 + 1),
    }));
    drop(o);
    g.finish().expect("finish");
}

/// A rank of `rank_slow_start`, without `MALT_TIMEOUT`.
fn slow_rank(rank: usize, port: u16, tag: &str, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        "--exact",
        "rank_slow_start",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("MALT_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(rank_env(rank, 2, tag, port, extra))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn a rank")
}

fn assert_both_got_their_update(jobs: &[Job]) {
    for (r, j) in jobs.iter().enumerate() {
        assert_eq!(j.code, Some(0), "rank {r}: {j:?}");
        assert_eq!(j.results()[0]["got"], true, "rank {r}: {j:?}");
    }
}

#[test]
fn a_rank_that_works_120_s_before_its_first_object_is_waited_for() {
    let port = free_port();
    let extra = [("SLOW_RANK", "1"), ("SLOW_SECS", "120")];
    let start = Instant::now();
    let ranks: Vec<Child> = (0..2)
        .map(|r| slow_rank(r, port, "slow-work", &extra))
        .collect();
    let jobs: Vec<Job> = ranks
        .into_iter()
        .map(|c| wait_child(c, Duration::from_secs(300)))
        .collect();
    assert_both_got_their_update(&jobs);
    assert!(start.elapsed() >= Duration::from_secs(120));
}

#[test]
fn a_rank_that_starts_75_s_late_is_waited_for() {
    let port = free_port();
    let early = slow_rank(0, port, "late-start", &[]);
    // The scenario under test: the second rank starts 75 s later.
    std::thread::sleep(Duration::from_secs(75));
    let late = slow_rank(1, port, "late-start", &[]);
    let jobs = vec![
        wait_child(early, Duration::from_secs(120)),
        wait_child(late, Duration::from_secs(120)),
    ];
    assert_both_got_their_update(&jobs);
}

/// `malt launch -n 3 -- malt train svm` with default settings; once rank 0
/// has written a few epochs of metrics, `signal` goes to rank 1. Returns
/// the launcher's job and how long after the signal it exited.
fn train_and_signal(signal: Signal) -> (Job, Duration) {
    let out = std::env::temp_dir().join(format!("malt-waiting-{signal}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", "3", "--", malt(), "train", "svm"])
        .args(["--synth-rows", "20000", "--synth-features", "2000"])
        .args(["--epochs", "100000", "--quiet", "--no-plot", "--out"])
        .arg(&out)
        .env_remove("MALT_TIMEOUT")
        .env_remove("MALT_FAIL_TIMEOUT")
        .env_remove("MALT_MIN_RANKS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn malt launch");
    let launcher = child.id();
    let start = Instant::now();
    let mut victim = None;
    while start.elapsed() < Duration::from_secs(120) {
        let epochs = std::fs::read_to_string(out.join("metrics.csv"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if epochs >= 5 {
            victim = common::child_with_rank(launcher, 1);
            if victim.is_some() {
                break;
            }
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        // metrics.csv has no notification: look again after 10 ms.
        std::thread::sleep(Duration::from_millis(10));
    }
    let victim = victim.expect("training got going with rank 1 running");
    kill(Pid::from_raw(victim), signal).expect("signal rank 1");
    let signalled = Instant::now();
    let job = wait_child(child, Duration::from_secs(60));
    let took = signalled.elapsed();
    // Whatever the outcome, leave nothing stopped behind.
    let _ = kill(Pid::from_raw(victim), Signal::SIGCONT);
    let _ = std::fs::remove_dir_all(&out);
    (job, took)
}

#[test]
fn a_killed_rank_ends_a_default_job_within_2t_naming_it() {
    let (job, took) = train_and_signal(Signal::SIGKILL);
    eprintln!("exited {took:?} after the kill");
    assert_ne!(job.code, Some(0), "{job:?}");
    assert!(!job.timed_out, "{job:?}");
    assert!(
        took < 2 * T,
        "exited {took:?} after the kill: {}",
        job.stderr
    );
    assert!(job.stderr.contains("rank 1 "), "{}", job.stderr);
}

#[test]
fn a_stopped_rank_ends_a_default_job_within_2t_plus_5_s_naming_it() {
    let (job, took) = train_and_signal(Signal::SIGSTOP);
    eprintln!("exited {took:?} after the stop");
    assert_ne!(job.code, Some(0), "{job:?}");
    assert!(!job.timed_out, "{job:?}");
    assert!(
        took < 2 * T + Duration::from_secs(5),
        "exited {took:?} after the stop: {}",
        job.stderr
    );
    assert!(
        job.stderr.contains("rank 1 was suspected dead"),
        "{}",
        job.stderr
    );
}

/// Without a launcher of malt's, rank 0's process hosts the coordinator. A
/// stopped rank 0 silences its coordinator too, so the others cannot count
/// on it to act on their suspicions: in a job that tolerates no failure
/// each of them ends its group itself, naming rank 0, within 2T.
#[test]
fn a_stopped_coordinators_host_ends_a_default_job_within_2t_plus_5_s() {
    use std::io::BufRead;
    use std::sync::mpsc;
    let port = free_port();
    let (tx, joined) = mpsc::channel();
    let mut ranks = Vec::new();
    let mut readers = Vec::new();
    for r in 0..3 {
        let mut cmd = Command::new(malt());
        cmd.args(["check", "--rounds", "100000000"]);
        for (k, _) in std::env::vars() {
            if k.starts_with("MALT_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .envs(rank_env(
                r,
                3,
                "stopped-host",
                port,
                &[("MALT_LOG", "info")],
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a rank");
        let err = child.stderr.take().expect("stderr");
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut text = String::new();
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("joined the job") {
                    let _ = tx.send(r);
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        }));
        ranks.push(child);
    }
    let t = Instant::now();
    let mut n = 0;
    while n < 3 {
        let left = Duration::from_secs(60).saturating_sub(t.elapsed());
        joined.recv_timeout(left).expect("every rank joins");
        n += 1;
    }
    let host = Pid::from_raw(ranks[0].id() as i32);
    kill(host, Signal::SIGSTOP).expect("stop rank 0");
    let stopped = Instant::now();
    let mut took = [None, None];
    while stopped.elapsed() < Duration::from_secs(60) && took.iter().any(Option::is_none) {
        for (i, c) in ranks[1..].iter_mut().enumerate() {
            if took[i].is_none() {
                if let Ok(Some(st)) = c.try_wait() {
                    took[i] = Some((stopped.elapsed(), st.code()));
                }
            }
        }
        // Nothing notifies another process's exit here: look every 10 ms.
        std::thread::sleep(Duration::from_millis(10));
    }
    // Rank 0 is ours: end it whatever happened.
    let _ = kill(host, Signal::SIGKILL);
    let _ = kill(host, Signal::SIGCONT);
    for c in ranks.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let texts: Vec<String> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, t) in took.iter().enumerate() {
        let (after, code) =
            t.unwrap_or_else(|| panic!("rank {} kept running: {}", i + 1, texts[i + 1]));
        eprintln!("rank {} exited {after:?} after the stop", i + 1);
        assert_ne!(code, Some(0), "rank {}: {}", i + 1, texts[i + 1]);
        assert!(
            after < 2 * T + Duration::from_secs(5),
            "rank {}: {after:?}",
            i + 1
        );
        assert!(
            texts[i + 1].contains("rank 0, which hosts the coordinator, is suspected dead"),
            "rank {}: {}",
            i + 1,
            texts[i + 1]
        );
    }
}

/// `malt launch` is SIGKILLed while rank 1 computes outside malt's calls
/// (and rank 0 waits for it in a collective): both ranks end within
/// moments, not at rank 1's next call, and leave no segment file.
#[test]
fn ranks_busy_outside_malt_do_not_outlive_a_killed_launcher() {
    let shm = common::ShmDir::new("orphans");
    let mut launcher = Command::new(malt())
        .args(["launch", "-n", "2", "--"])
        .arg(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "rank_slow_start",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SLOW_RANK", "1")
        .env("SLOW_SECS", "120")
        .env("MALT_SHM_DIR", shm.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn malt launch");
    let lpid = launcher.id();
    // Wait (bounded) until both ranks have joined: their heartbeat
    // segments exist (one per rank).
    let t = Instant::now();
    let mut ranks = Vec::new();
    while t.elapsed() < Duration::from_secs(30) {
        ranks = common::children_of(lpid);
        if ranks.len() == 2 && shm.files().len() >= 2 {
            break;
        }
        // Nothing notifies another process's start: look every 20 ms.
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = ranks.len() == 2 && shm.files().len() >= 2;
    kill(Pid::from_raw(lpid as i32), Signal::SIGKILL).expect("SIGKILL the launcher");
    let _ = launcher.wait();
    let killed = Instant::now();
    let alive = |p: i32| kill(Pid::from_raw(p), None).is_ok() && !zombie(p);
    while killed.elapsed() < Duration::from_secs(10)
        && (ranks.iter().any(|p| alive(*p)) || !shm.files().is_empty())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = ranks.iter().copied().filter(|p| alive(*p)).collect();
    for p in &left {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    assert!(
        started,
        "the ranks did not start: {ranks:?}, {:?}",
        shm.files()
    );
    assert!(left.is_empty(), "ranks {left:?} outlived the launcher");
    eprintln!("ranks gone {:?} after the launcher", killed.elapsed());
    assert!(shm.files().is_empty(), "left behind: {:?}", shm.files());
}

/// Whether `pid` has exited but not been reaped (its parent, the killed
/// launcher, is gone; init reaps it soon).
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
