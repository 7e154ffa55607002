//! Support for dstorm's multi-process tests. There is no `malt launch` in
//! this package, so the test binary is its own launcher: it re-runs itself
//! once per rank (an `#[ignore]`d entry selected with `--exact --ignored`)
//! with the rank variables a launcher would set, rank 0 hosts the
//! coordinator, and ranks report through `RESULT {json}` lines.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a process (or, from [`launch_self`], a whole job) printed and how
/// it ended.
#[derive(Debug)]
pub struct Job {
    /// Exit code (None: ended by a signal, or killed at the deadline).
    pub code: Option<i32>,
    /// Signal that ended the process, if any.
    pub signal: Option<i32>,
    /// The process was still running at the deadline and was killed.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Job {
    /// The JSON objects the ranks printed after `RESULT `, ordered by rank.
    pub fn results(&self) -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = self
            .stdout
            .lines()
            .filter_map(|l| l.split_once("RESULT ").map(|(_, j)| j))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        v.sort_by_key(|r| r["rank"].as_u64().unwrap_or(u64::MAX));
        v
    }
}

/// Runs `cmd` with a hard deadline. A process still running then gets
/// SIGTERM, then SIGKILL, and is reported with `code: None`.
pub fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Job {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_child(cmd.spawn().expect("spawn"), deadline)
}

/// Waits for `child` (spawned with piped stdout and stderr) as
/// [`run_with_deadline`] does.
pub fn wait_child(mut child: std::process::Child, deadline: Duration) -> Job {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::ExitStatusExt;
        let s = child.wait().ok();
        let _ = tx.send((s.and_then(|s| s.code()), s.and_then(|s| s.signal())));
    });
    let (code, signal, timed_out) = match rx.recv_timeout(deadline) {
        Ok((code, signal)) => (code, signal, false),
        Err(_) => {
            let _ = kill(pid, Signal::SIGTERM);
            if rx.recv_timeout(Duration::from_secs(5)).is_err() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = rx.recv_timeout(Duration::from_secs(5));
            }
            (None, None, true)
        }
    };
    Job {
        code,
        signal,
        timed_out,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    }
}

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

/// Prints a result line for the parent test to collect.
pub fn report(v: serde_json::Value) {
    println!("RESULT {v}");
}

/// Starts one process per environment, all running this test binary's
/// ignored entry `entry`, and waits for all of them (bounded by `deadline`,
/// after which the rest are killed). Returns each one's job.
pub fn spawn_ranks(entry: &str, envs: &[Vec<(String, String)>], deadline: Duration) -> Vec<Job> {
    let me = std::env::current_exe().expect("current_exe");
    let handles: Vec<_> = envs
        .iter()
        .map(|env| {
            let mut cmd = Command::new(&me);
            cmd.args([
                "--exact",
                entry,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ]);
            for k in [
                "MALT_RANK",
                "MALT_WORLD_SIZE",
                "MALT_JOB_TOKEN",
                "RANK",
                "WORLD_SIZE",
            ] {
                cmd.env_remove(k);
            }
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            std::thread::spawn(move || run_with_deadline(cmd, deadline))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("rank thread"))
        .collect()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Environment for rank `rank` of `world` with the given token and port.
pub fn rank_env(
    rank: usize,
    world: usize,
    token: &str,
    port: u16,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut v = vec![
        ("MALT_RANK".to_string(), rank.to_string()),
        ("MALT_WORLD_SIZE".to_string(), world.to_string()),
        ("MALT_JOB_TOKEN".to_string(), token.to_string()),
        ("MALT_MASTER_ADDR".to_string(), "127.0.0.1".to_string()),
        ("MALT_MASTER_PORT".to_string(), port.to_string()),
    ];
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

/// A private directory for shared-memory segment files, removed on drop.
pub struct ShmDir(pub std::path::PathBuf);

impl ShmDir {
    /// A fresh directory under /dev/shm (or the temp dir if absent).
    pub fn new(tag: &str) -> ShmDir {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("malt-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("shm dir");
        ShmDir(p)
    }

    /// The directory as a string.
    pub fn path(&self) -> String {
        self.0.display().to_string()
    }

    /// Names of the files in it.
    pub fn files(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
