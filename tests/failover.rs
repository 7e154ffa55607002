//! Losing the rank that hosts the coordinator. Under srun, mpirun or
//! torchrun the coordinator runs in rank 0's process; in a fault-tolerant
//! job the survivors move it to the lowest surviving rank and go on. Four
//! `malt train svm` ranks are started by hand with srun-style variables and
//! `MALT_MIN_RANKS=3`, and rank 0 is SIGKILLed (or SIGSTOPped: its
//! coordinator falls silent with it) halfway through training.

mod common;

use common::{free_port, malt, wait_child, Job, ShmDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORLD: usize = 4;
/// Failure timeout of these jobs, seconds.
const T: &str = "2";

/// 40 epochs; metrics.csv holds a header, the initial point, then one line
/// per epoch: 22 lines is halfway.
const ARGS: [&str; 12] = [
    "svm",
    "--synth-rows",
    "300000",
    "--synth-features",
    "20000",
    "--synth-nnz",
    "20",
    "--epochs",
    "40",
    "--cb",
    "2000",
    "--quiet",
];
const HALF: usize = 22;

struct Setup {
    base: PathBuf,
    shm: ShmDir,
    secret: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let base = std::env::temp_dir().join(format!("malt-failover-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("temp dir");
        Setup {
            secret: base.join("secret"),
            base,
            shm: ShmDir::new(&format!("failover-{tag}")),
        }
    }

    /// The ranks of one srun-style job (a job id of their own), sharing the
    /// output directory `job` (rank 0 prepares the data there).
    fn spawn(&self, job: &str) -> Vec<Child> {
        let port = free_port().to_string();
        (0..WORLD)
            .map(|r| {
                let mut cmd = Command::new(malt());
                cmd.arg("train")
                    .args(ARGS)
                    .args(["--json", "--out"])
                    .arg(self.base.join(job));
                for (k, _) in std::env::vars() {
                    if k.starts_with("MALT_")
                        || k.starts_with("SLURM_")
                        || k.starts_with("OMPI_")
                        || k.starts_with("PMI")
                    {
                        cmd.env_remove(k);
                    }
                }
                cmd.envs([
                    ("SLURM_PROCID", r.to_string()),
                    ("SLURM_NTASKS", WORLD.to_string()),
                    ("SLURM_JOB_ID", format!("{}{job}", std::process::id())),
                    ("SLURM_STEP_ID", "0".into()),
                    ("SLURM_NNODES", "1".into()),
                    ("MALT_SECRET_FILE", self.secret.display().to_string()),
                    ("MALT_MASTER_ADDR", "127.0.0.1".into()),
                    ("MALT_MASTER_PORT", port.clone()),
                    ("MALT_MIN_RANKS", "3".into()),
                    ("MALT_FAIL_TIMEOUT", T.into()),
                    ("MALT_SHM_DIR", self.shm.path()),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
                cmd.spawn().expect("spawn a rank")
            })
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn summary(j: &Job) -> Option<serde_json::Value> {
    j.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find(|v| v["app"] == "svm")
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Waits for every rank, each with what is left of one deadline.
fn wait_all(children: Vec<Child>, deadline: Instant) -> Vec<Job> {
    // Pipes are drained by `wait_child`'s threads, so one rank's output
    // cannot block another's exit: wait for them in parallel.
    let hs: Vec<_> = children
        .into_iter()
        .map(|c| {
            let left = deadline.saturating_duration_since(Instant::now());
            std::thread::spawn(move || wait_child(c, left))
        })
        .collect();
    hs.into_iter().map(|h| h.join().expect("waiter")).collect()
}

/// Runs the job without a fault, then again with `signal` sent to rank 0
/// once it has written half the epochs' metrics: the survivors must take
/// over and finish. A stopped rank 0 is continued once they have.
fn lose_rank_0(signal: Signal) {
    let setup = Setup::new(signal.as_ref());
    let clean = wait_all(
        setup.spawn("clean"),
        Instant::now() + Duration::from_secs(180),
    );
    for (r, j) in clean.iter().enumerate() {
        assert_eq!(j.code, Some(0), "fault-free rank {r}: {}", j.stderr);
    }
    let clean = summary(&clean[0]).expect("rank 0 reports the fault-free run");

    let mut ranks = setup.spawn("faulty");
    let victim = Pid::from_raw(ranks[0].id() as i32);
    let metrics = setup.base.join("faulty");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut signalled = false;
    while Instant::now() < deadline {
        if metrics_lines(&metrics) >= HALF {
            kill(victim, signal).expect("signal rank 0");
            signalled = true;
            break;
        }
        if ranks[0].try_wait().ok().flatten().is_some() {
            break;
        }
        // metrics.csv has no notification: look again after 5 ms.
        std::thread::sleep(Duration::from_millis(5));
    }
    let at = Instant::now();
    let rank0 = ranks.remove(0);
    let survivors = wait_all(ranks, at + Duration::from_secs(120));
    let took = at.elapsed();
    // A stopped rank 0 resumes once the others are done, and leaves.
    let _ = kill(victim, Signal::SIGCONT);
    let rank0 = wait_child(rank0, Duration::from_secs(60));
    assert!(signalled, "rank 0 never reached halfway: {}", rank0.stderr);
    for (i, j) in survivors.iter().enumerate() {
        assert_eq!(
            j.code,
            Some(0),
            "survivor {} must finish:\n{}",
            i + 1,
            j.stderr
        );
    }
    let faulty = summary(&survivors[0]).expect("rank 1, the lowest survivor, reports");
    eprintln!("clean: {clean}\nfaulty: {faulty}");
    assert_eq!(faulty["ranks"], 3, "{faulty}");
    let regroups = faulty["regroups"].as_array().expect("regroups reported");
    assert_eq!(regroups.len(), 1, "{faulty}");
    assert_eq!(regroups[0]["dead"], serde_json::json!([0]), "{faulty}");
    assert_eq!(
        faulty["train_examples"], clean["train_examples"],
        "{faulty}"
    );
    let (e0, e1) = (
        clean["test_error"].as_f64().expect("test_error"),
        faulty["test_error"].as_f64().expect("test_error"),
    );
    println!(
        "FAILOVER {{\"signal\":\"{signal}\",\"test_error_clean\":{e0},\"test_error_faulty\":{e1},\"survivors_done_s\":{:.2}}}",
        took.as_secs_f64()
    );
    assert!(
        (e1 - e0).abs() <= 0.01,
        "test error {e1} with the coordinator's host lost, {e0} without"
    );
    match signal {
        Signal::SIGKILL => assert_eq!(rank0.signal, Some(9), "rank 0: {rank0:?}"),
        // Back from its stop, rank 0 finds the group gone on without it.
        _ => assert_ne!(rank0.code, Some(0), "rank 0: {rank0:?}"),
    }
    assert!(!rank0.timed_out, "rank 0 did not leave: {rank0:?}");
    assert!(
        setup.shm.files().is_empty(),
        "left behind: {:?}",
        setup.shm.files()
    );
}

#[test]
fn the_survivors_of_a_killed_coordinators_host_take_over_and_finish() {
    lose_rank_0(Signal::SIGKILL);
}

#[test]
fn the_survivors_of_a_stopped_coordinators_host_take_over_and_finish() {
    lose_rank_0(Signal::SIGSTOP);
}
