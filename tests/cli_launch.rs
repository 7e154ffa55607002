//! `malt launch`: output prefixes, exit status, stopping survivors, signal
//! forwarding, and no rank left running.

mod common;

use common::{malt, run_with_deadline};
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn alive(pid: u32) -> bool {
    // A zombie is not alive: it has exited and waits to be reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// A shell loop that waits (at most 20 s) until every one of `names`
/// exists in `dir`.
fn wait_for_files(dir: &str, names: &[&str]) -> String {
    let missing: Vec<String> = names
        .iter()
        .map(|n| format!("[ ! -e {dir}/{n} ]"))
        .collect();
    format!(
        "i=0; while {{ {}; }} && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done",
        missing.join(" || ")
    )
}

fn pids(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.split_once("pid=").map(|(_, p)| p.trim()))
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn output_is_prefixed_and_environment_is_set() {
    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", "3", "--", "sh", "-c"])
        .arg("echo \"$MALT_RANK/$MALT_WORLD_SIZE $MALT_TRANSPORT ${#MALT_JOB_TOKEN}\"");
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    let mut lines: Vec<&str> = job.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["[0] 0/3 shm 32", "[1] 1/3 shm 32", "[2] 2/3 shm 32"]
    );
}

#[test]
fn a_failing_rank_fails_the_job_and_the_others_are_stopped() {
    // Rank 1 fails only once the others have said who they are (bounded).
    let dir = common::ShmDir::new("failing-rank");
    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", "3", "--timeout", "1", "--", "sh", "-c"])
        .arg(format!(
            "echo pid=$$; touch {d}/$MALT_RANK; if [ \"$MALT_RANK\" = 1 ]; then {wait}; exit 3; fi; exec sleep 120",
            d = dir.path(),
            wait = wait_for_files(&dir.path(), &["0", "2"])
        ));
    let t = Instant::now();
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(3), "{job:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        job.stderr.contains("rank 1 exited with status 3"),
        "{}",
        job.stderr
    );
    for rank in [0, 2] {
        assert!(
            job.stderr.contains(&format!(
                "rank {rank} killed by SIGTERM (ended by the launcher)"
            )),
            "{}",
            job.stderr
        );
    }
    let p = pids(&job.stdout);
    assert_eq!(p.len(), 3, "{}", job.stdout);
    for pid in p {
        assert!(!alive(pid), "rank process {pid} left running");
    }
}

/// Ranks that are wrapper scripts: once one fails, the others and what
/// they started are ended with their process groups, within the stop
/// grace, and the launcher does not wait for the children's output pipes.
#[test]
fn a_failing_rank_ends_the_other_ranks_children_too() {
    let dir = common::ShmDir::new("failing-wrapper");
    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", "3", "--timeout", "30", "--", "sh", "-c"])
        .arg(format!(
            "if [ \"$MALT_RANK\" = 1 ]; then {wait}; exit 3; fi; sleep 120 & echo pid=$!; touch {d}/$MALT_RANK; wait; true",
            d = dir.path(),
            wait = wait_for_files(&dir.path(), &["0", "2"])
        ));
    let t = Instant::now();
    let job = run_with_deadline(cmd, DEADLINE);
    let took = t.elapsed();
    assert_eq!(job.code, Some(3), "{job:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let p = pids(&job.stdout);
    assert_eq!(p.len(), 2, "{}", job.stdout);
    for pid in p {
        assert!(!alive(pid), "a rank's child {pid} left running");
    }
}

/// A rank that stops with an error (here: its shm directory is unusable)
/// says why and leaves; the others are told at once, with its reason,
/// instead of waiting for a timeout, and nothing is left behind. Default
/// settings: no `--timeout`.
#[test]
fn a_rank_that_fails_is_reported_to_the_others_at_once() {
    let shm = common::ShmDir::new("fail-fast");
    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", "2", "--", "sh", "-c"])
        .arg(format!(
            "[ \"$MALT_RANK\" = 1 ] && export MALT_SHM_DIR=/proc; exec {} check",
            malt()
        ))
        .env("MALT_SHM_DIR", shm.path());
    let t = Instant::now();
    let job = run_with_deadline(cmd, DEADLINE);
    let took = t.elapsed();
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(
        job.stderr.contains(
            "[0] malt check: job aborted: rank 1 failed: stopped with an error: segment /proc/"
        ),
        "rank 0 must learn rank 1's reason: {}",
        job.stderr
    );
    // "At once" against the failure timeout (5 s by default); starting five
    // processes on a loaded machine can take a second or two.
    assert!(took < Duration::from_secs(4), "took {took:?}: {job:?}");
    assert_eq!(shm.files(), Vec::<String>::new(), "files left behind");
}

/// `malt launch ... | head`: once the launcher's stdout is closed, the
/// ranks' further output is dropped, and the job runs to its end instead of
/// its ranks dying of SIGPIPE (or panicking, for a Rust `println!`).
#[test]
fn a_closed_standard_output_does_not_end_the_job() {
    let mut child = Command::new(malt())
        .args(["launch", "-n", "2", "--", "sh", "-c"])
        .arg("i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.contains("line"), "{first}");
    drop(out);
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        let _ = tx.send((child.wait(), text));
    });
    let (status, stderr) = rx.recv_timeout(DEADLINE).expect("malt launch did not end");
    let status = status.unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}: {stderr}");
    assert!(!stderr.contains("SIGPIPE"), "{stderr}");
}

#[test]
fn sigint_is_forwarded_and_nothing_is_left_running() {
    let mut child = Command::new(malt())
        .args([
            "launch",
            "-n",
            "2",
            "--",
            "sh",
            "-c",
            "echo pid=$$; exec sleep 120",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until both ranks have announced themselves.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let t = Instant::now();
    while pids(&seen).len() < 2 && t.elapsed() < Duration::from_secs(20) {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
    }
    let ranks = pids(&seen);
    assert_eq!(ranks.len(), 2, "{seen}");
    let launcher = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(launcher, nix::sys::signal::Signal::SIGINT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("malt launch did not exit after SIGINT")
        .unwrap();
    assert!(!status.success());
    for pid in ranks {
        assert!(!alive(pid), "rank process {pid} left running");
    }
}

/// A signal that reaches the launcher while it is still starting ranks is
/// forwarded too: the ranks already started end with the launcher instead
/// of running on unowned. Each rank writes its pid to a file; the signal
/// goes out as soon as the first file appears, while the launcher is
/// starting the other seven.
#[test]
fn a_signal_during_start_up_ends_the_ranks_already_started() {
    let dir = common::ShmDir::new("early-signal");
    let list = |dir: &common::ShmDir| -> Vec<u32> {
        dir.files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(format!("{}/{f}", dir.path())).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    for round in 0..5 {
        let mut child = Command::new(malt())
            .args(["launch", "-n", "8", "--", "sh", "-c"])
            .arg("echo $$ > \"$PIDS/$MALT_RANK.tmp\" && mv \"$PIDS/$MALT_RANK.tmp\" \"$PIDS/$MALT_RANK\"; exec sleep 120")
            .env("PIDS", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while list(&dir).is_empty() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let launcher = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(launcher, nix::sys::signal::Signal::SIGINT).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx.recv_timeout(Duration::from_secs(20));
        // The launcher has exited (or not): whatever it started and left
        // running is read now, and ended before the verdict.
        let left: Vec<u32> = list(&dir).into_iter().filter(|p| alive(*p)).collect();
        for p in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let status = status
            .expect("malt launch did not exit after SIGINT")
            .unwrap();
        assert!(!status.success(), "round {round}: {status:?}");
        assert_eq!(left, Vec::<u32>::new(), "round {round}: ranks left running");
        for f in dir.files() {
            let _ = std::fs::remove_file(format!("{}/{f}", dir.path()));
        }
    }
}

/// SIGINT and SIGTERM to `malt launch` during a real job: the launcher
/// exits non-zero, no rank is left, and no segment file stays behind.
#[test]
fn an_interrupted_job_leaves_no_segment_files() {
    use nix::sys::signal::Signal;
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let shm = common::ShmDir::new(&format!("interrupt-{sig}"));
        let mut child = Command::new(malt())
            .args(["launch", "-n", "2", "--"])
            .arg(malt())
            .args(["check", "--rounds", "1000000", "--size", "64"])
            .env("MALT_SHM_DIR", shm.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait (bounded) until both ranks have made their segments.
        let t = Instant::now();
        while shm.files().len() < 2 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            shm.files().len() >= 2,
            "{sig}: no segments: {:?}",
            shm.files()
        );
        let launcher = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(launcher, sig).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("malt launch did not exit")
            .unwrap();
        assert!(!status.success(), "{sig}");
        assert_eq!(
            shm.files(),
            Vec::<String>::new(),
            "{sig}: files left behind"
        );
    }
}

#[test]
fn launch_rejects_zero_ranks_and_a_missing_program() {
    let job = run_with_deadline(
        {
            let mut c = Command::new(malt());
            c.args(["launch", "-n", "0", "--", "true"]);
            c
        },
        DEADLINE,
    );
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(job.stderr.contains("at least one rank"), "{}", job.stderr);
    let job = run_with_deadline(
        {
            let mut c = Command::new(malt());
            c.args(["launch", "-n", "2", "--", "/nonexistent/program"]);
            c
        },
        DEADLINE,
    );
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(
        job.stderr.contains("cannot start /nonexistent/program"),
        "{}",
        job.stderr
    );
}

#[test]
fn check_on_verbs_without_support_explains_and_exits_2() {
    let mut cmd = Command::new(malt());
    cmd.args([
        "launch",
        "-n",
        "2",
        "--transport",
        "verbs",
        "--",
        malt(),
        "check",
    ]);
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(
        job.stderr.contains("transport verbs unsupported"),
        "{}",
        job.stderr
    );
    assert!(job.stderr.contains("rxe"), "{}", job.stderr);
}

/// The fault options may come from the environment, as under other
/// launchers: an exported `MALT_MIN_RANKS` makes the job tolerate a failed
/// rank and reaches every rank, and the flag still wins over it.
#[test]
fn fault_options_are_read_from_the_environment_and_flags_win() {
    let script = "echo \"$MALT_MIN_RANKS $MALT_FAIL_TIMEOUT $MALT_MAX_REGROUPS\"; \
                  if [ \"$MALT_RANK\" = 1 ]; then exit 3; fi";
    let mut cmd = Command::new(malt());
    cmd.args([
        "launch",
        "-n",
        "3",
        "--timeout",
        "5",
        "--",
        "sh",
        "-c",
        script,
    ])
    .env("MALT_MIN_RANKS", "2")
    .env("MALT_FAIL_TIMEOUT", "1.5")
    .env("MALT_MAX_REGROUPS", "4");
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "two of three succeeded: {job:?}");
    let mut lines: Vec<&str> = job.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["[0] 2 1.5 4", "[1] 2 1.5 4", "[2] 2 1.5 4"],
        "{job:?}"
    );

    let mut cmd = Command::new(malt());
    cmd.args([
        "launch",
        "-n",
        "3",
        "--min-ranks",
        "3",
        "--timeout",
        "5",
        "--",
    ])
    .args(["sh", "-c", script])
    .env("MALT_MIN_RANKS", "2");
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(3), "--min-ranks 3 wins: {job:?}");

    let mut cmd = Command::new(malt());
    cmd.args(["launch", "-n", "2", "--", "true"])
        .env("MALT_MIN_RANKS", "two");
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(2), "{job:?}");
    assert!(job.stderr.contains("--min-ranks"), "{}", job.stderr);
}
