//! Processes for multi-process tests, shared by dstorm's own tests and the
//! workspace's: running a program with a deadline, this test binary's
//! ranks, their `RESULT {json}` reports, the rank variables, free ports, a
//! private shm directory, and finding a launcher's rank processes.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a process (or a whole launched job) printed and how it ended.
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

    /// Every JSON line (after an optional `[rank] ` prefix).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| match l.split_once("] ") {
                Some((p, rest)) if p.starts_with('[') => rest,
                _ => l,
            })
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Runs `cmd` with a hard deadline. A process still running then gets
/// SIGTERM (which `malt launch` forwards to its ranks), then SIGKILL, and the
/// job is reported with `code: None`.
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

/// Prints a result line for the parent test to collect.
pub fn report(v: serde_json::Value) {
    println!("RESULT {v}");
}

/// Starts one process per environment, all running this test binary's
/// ignored entry `entry`, and waits for all of them (bounded by `deadline`,
/// after which the rest are killed). Returns each one's job.
pub fn spawn_ranks(entry: &str, envs: &[Vec<(String, String)>], deadline: Duration) -> Vec<Job> {
    let me = std::env::current_exe().expect("current_exe");
    let me = me.to_str().expect("utf-8 path");
    spawn_programs(
        me,
        &[
            "--exact",
            entry,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        envs,
        deadline,
    )
}

/// Like [`spawn_ranks`] but running an arbitrary program.
pub fn spawn_programs(
    program: &str,
    args: &[&str],
    envs: &[Vec<(String, String)>],
    deadline: Duration,
) -> Vec<Job> {
    let handles: Vec<_> = envs
        .iter()
        .map(|env| {
            let mut cmd = Command::new(program);
            cmd.args(args);
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
/// A port no other call in this process has handed out: tests that run in
/// parallel threads never get the same one (the system may hand a closed
/// probe's port out again at once).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port not handed out before in 1000 tries");
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

/// The pids of `parent`'s children.
pub fn children_of(parent: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the command name: state, ppid, ...
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// The pid of the child of `parent` whose environment has `MALT_RANK=rank`.
pub fn child_with_rank(parent: u32, rank: usize) -> Option<i32> {
    let want = format!("MALT_RANK={rank}");
    children_of(parent).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .any(|v| v == want.as_bytes())
    })
}
