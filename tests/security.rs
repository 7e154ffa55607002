//! A stranger on the same host, as another user would try it: joining a
//! job started the way srun does (no MALT_JOB_TOKEN, the job id public),
//! and holding memory in the processes that listen before authenticating.
//! Each case runs real processes and asserts that the job is unharmed.

mod common;

use common::{free_port, malt, run_with_deadline};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);

/// A private directory, removed on drop (world-traversable so that the
/// stranger can run the copy of malt inside it).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("malt-sec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The environment srun gives rank `rank` of a 2-rank job `job`, with our
/// own master port and a home of `home` (where the per-user secret is made).
fn srun_env(rank: usize, job: &str, port: u16, home: &Path) -> Vec<(String, String)> {
    [
        ("SLURM_PROCID", rank.to_string()),
        ("SLURM_NTASKS", "2".into()),
        ("SLURM_JOB_ID", job.into()),
        ("SLURM_STEP_ID", "0".into()),
        ("MALT_MASTER_ADDR", "127.0.0.1".into()),
        ("MALT_MASTER_PORT", port.to_string()),
        ("MALT_TRANSPORT", "tcp".into()),
        ("MALT_TIMEOUT", "30".into()),
        ("HOME", home.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `malt check` as a rank with exactly `env` (launcher variables of this
/// test process removed).
fn rank_cmd(program: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("check").args(args).env_clear();
    for k in ["PATH", "MALT_LOG"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs `cmd` as user nobody through setpriv, if this process may.
fn as_stranger(cmd: &Command) -> Option<Command> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        );
    Some(c)
}

/// A copy of the malt binary that the stranger may run.
fn public_malt(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("malt");
    std::fs::copy(malt(), &p).expect("copy malt");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn finish(child: Child, deadline: Duration) -> common::Job {
    common::wait_child(child, deadline)
}

#[test]
fn a_stranger_who_knows_the_slurm_job_id_can_neither_join_nor_abort_the_job() {
    let dir = Scratch::new("join");
    let malt = public_malt(&dir.0);
    let home = dir.0.join("home");
    let stranger_home = dir.0.join("stranger");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(&stranger_home).expect("home");
    std::os::unix::fs::chown(&stranger_home, Some(65534), Some(65534)).ok();
    let port = free_port();
    let job = "4242";
    // Rank 0 first: it hosts the coordinator.
    let rank0 = spawn(rank_cmd(
        &malt,
        &srun_env(0, job, port, &home),
        &["--rounds", "200"],
    ));
    // The stranger tries, as rank 1: with its own secret (what the
    // derivation gives another user), and with the token the old
    // derivation made from the job id alone.
    let mut tries = vec![srun_env(1, job, port, &stranger_home)];
    let mut guessed = srun_env(1, job, port, &stranger_home);
    guessed.push(("MALT_JOB_TOKEN".into(), format!("slurm:{job}.0")));
    tries.push(guessed);
    let mut refusals = 0;
    for env in &tries {
        let cmd = rank_cmd(&malt, env, &["--rounds", "2"]);
        let cmd = as_stranger(&cmd).unwrap_or(cmd);
        let t = Instant::now();
        let j = run_with_deadline(cmd, DEADLINE);
        assert_ne!(j.code, Some(0), "the stranger joined: {j:?}");
        assert!(!j.timed_out, "the stranger hung: {j:?}");
        assert!(
            j.stderr
                .contains("refused this process's proof of the job secret"),
            "{j:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        refusals += 1;
    }
    // The real rank 1 comes after, and the job runs as if nothing happened.
    let rank1 = spawn(rank_cmd(
        &malt,
        &srun_env(1, job, port, &home),
        &["--rounds", "200"],
    ));
    for j in [finish(rank0, DEADLINE), finish(rank1, DEADLINE)] {
        assert_eq!(j.code, Some(0), "{j:?}");
        let lines = j.json_lines();
        assert_eq!(lines.len(), 1, "{j:?}");
        assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    }
    assert_eq!(refusals, 2);
    // The secret was made private, in the home the ranks were given.
    use std::os::unix::fs::MetadataExt;
    let secret = home.join(".config/malt/secret");
    let m = std::fs::metadata(&secret).expect("secret made");
    assert_eq!(m.mode() & 0o077, 0, "secret readable by others");
}

/// Sockets of `pid` listening on TCP (ports), from /proc.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address, remote, state (0A: LISTEN), ..., inode at 9.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(p) = f[1]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(p);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn connections_that_announce_huge_messages_before_authenticating_hold_no_memory() {
    use std::io::Write;
    let dir = Scratch::new("rss");
    let home = dir.0.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let port = free_port();
    let me = PathBuf::from(malt());
    // Long enough to outlast the measurement; checked below.
    let args = ["--rounds", "3000", "--size", "1048576"];
    let rank0 = spawn(rank_cmd(&me, &srun_env(0, "5151", port, &home), &args));
    let rank1 = spawn(rank_cmd(&me, &srun_env(1, "5151", port, &home), &args));
    let pids = [rank0.id(), rank1.id()];
    // Wait (bounded) until both ranks listen on their data ports and rank
    // 0 on the control port too.
    let t = Instant::now();
    let ports = loop {
        let p: Vec<Vec<u16>> = pids.iter().map(|p| listening_ports(*p)).collect();
        if p[0].len() >= 2 && !p[1].is_empty() {
            break p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "ports not seen: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ports[0].contains(&port), "{ports:?}");
    let before: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    // 16 connections to each listening port, each sending a length prefix
    // of 63 MiB, as a control message would start, and 2 MiB of the body
    // (as far as the receiver takes them).
    let body = vec![7u8; 2 << 20];
    let mut held = Vec::new();
    for list in &ports {
        for p in list {
            for _ in 0..16 {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", *p)) {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = s.write_all(&(63u32 << 20).to_le_bytes());
                    let _ = s.write_all(&body);
                    held.push(s);
                }
            }
        }
    }
    // The largest RSS while they are held, sampled over one second (within
    // the handshake deadline, after which they are closed).
    let mut during = before.clone();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(1) {
        for (d, p) in during.iter_mut().zip(pids) {
            *d = (*d).max(rss_kib(p));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    assert!(
        alive.iter().all(|r| *r > 0),
        "a rank ended before the measurement did"
    );
    drop(held);
    for (i, (b, d)) in before.iter().zip(&during).enumerate() {
        let grew = d.saturating_sub(*b);
        assert!(grew < 16 * 1024, "rank {i} grew by {grew} KiB ({b} -> {d})");
        eprintln!("rank {i}: RSS {b} KiB -> {d} KiB with 16 connections on each port");
    }
    for j in [finish(rank0, DEADLINE), finish(rank1, DEADLINE)] {
        assert_eq!(j.code, Some(0), "{j:?}");
        let lines = j.json_lines();
        assert_eq!(lines.len(), 1, "{j:?}");
        assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    }
}
