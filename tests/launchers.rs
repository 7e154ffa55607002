//! Real `malt check` processes under the environments other launchers give:
//! torchrun (whose store holds `MASTER_PORT`), mpirun inside a Slurm
//! allocation (real mpirun when installed, and the same variables by hand),
//! srun with PMIx and a host list; and `malt launch` killed with SIGKILL.

mod common;

use common::{malt, run_with_deadline, Job, ShmDir};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEADLINE: Duration = Duration::from_secs(120);

/// Something unique to this run, for job ids.
fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// A private directory (mode 0700) for the per-user secret, removed on drop.
struct SecretDir(std::path::PathBuf);

impl SecretDir {
    fn new(tag: &str) -> SecretDir {
        use std::os::unix::fs::DirBuilderExt;
        let p = std::env::temp_dir().join(format!("malt-launchers-{}", unique(tag)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .expect("secret directory");
        SecretDir(p)
    }

    /// The secret file's path (made by the first rank that needs it).
    fn file(&self) -> String {
        self.0.join("secret").display().to_string()
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `program args` with only `vars` (and PATH, HOME, TMPDIR) in its
/// environment, so nothing of the caller's launcher leaks in.
fn clean_command(program: &str, args: &[&str], vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    for k in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs one `malt check` per environment, all at once, each bounded.
fn check_ranks(envs: Vec<Vec<(String, String)>>) -> Vec<Job> {
    let handles: Vec<_> = envs
        .into_iter()
        .map(|vars| {
            let cmd = clean_command(malt(), &["check", "--size", "4096"], &vars);
            std::thread::spawn(move || run_with_deadline(cmd, DEADLINE))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("rank thread"))
        .collect()
}

/// Every job exited 0 and printed one `"ok":true` line, and the ranks
/// were `0..n` of a world of `n`.
fn assert_all_ok(jobs: &[Job]) {
    let n = jobs.len();
    let mut ranks = Vec::new();
    for job in jobs {
        assert_eq!(job.code, Some(0), "{job:?}");
        let lines = job.json_lines();
        assert_eq!(lines.len(), 1, "{job:?}");
        assert_eq!(lines[0]["ok"], true, "{job:?}");
        assert_eq!(lines[0]["world"], n as u64, "{job:?}");
        ranks.push(lines[0]["rank"].as_u64().expect("rank"));
    }
    ranks.sort();
    assert_eq!(ranks, (0..n as u64).collect::<Vec<_>>());
}

fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// torchrun's agent binds `MASTER_PORT` for its own store; malt must take
/// another port, and the job must still work with the token derived from
/// `TORCHELASTIC_RUN_ID`.
#[test]
fn torchrun_workers_leave_master_port_to_torchruns_store() {
    let store = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the store's port");
    let port = store.local_addr().expect("local_addr").port();
    let secret = SecretDir::new("torchrun");
    let shm = ShmDir::new("torchrun");
    let run_id = unique("torchrun");
    let envs = (0..2)
        .map(|r| {
            vars(&[
                ("RANK", r.to_string()),
                ("WORLD_SIZE", "2".into()),
                ("LOCAL_RANK", r.to_string()),
                ("LOCAL_WORLD_SIZE", "2".into()),
                ("GROUP_RANK", "0".into()),
                ("MASTER_ADDR", "127.0.0.1".into()),
                ("MASTER_PORT", port.to_string()),
                ("TORCHELASTIC_RUN_ID", run_id.clone()),
                ("MALT_SECRET_FILE", secret.file()),
                ("MALT_SHM_DIR", shm.path()),
            ])
        })
        .collect();
    let jobs = check_ranks(envs);
    assert_all_ok(&jobs);
    // The store's listener was there all along.
    assert_eq!(store.local_addr().expect("still bound").port(), port);
    assert_eq!(shm.files(), Vec::<String>::new(), "segments left behind");
}

/// The variables a rank of `mpirun -np n` (Open MPI 4) sees inside a Slurm
/// batch step: its own rank, and the step's SLURM_PROCID=0 of 1.
fn mpirun_in_slurm_env(
    rank: usize,
    n: usize,
    jobid: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut v = vars(&[
        ("SLURM_PROCID", "0".into()),
        ("SLURM_NTASKS", "1".into()),
        ("SLURM_JOB_ID", "7".into()),
        ("SLURM_STEP_ID", "0".into()),
        ("SLURM_LOCALID", "0".into()),
        ("SLURM_NNODES", "1".into()),
        ("SLURM_JOB_NODELIST", "localhost".into()),
        ("OMPI_COMM_WORLD_RANK", rank.to_string()),
        ("OMPI_COMM_WORLD_SIZE", n.to_string()),
        ("OMPI_COMM_WORLD_LOCAL_RANK", rank.to_string()),
        ("OMPI_COMM_WORLD_LOCAL_SIZE", n.to_string()),
        ("OMPI_MCA_ess_base_jobid", jobid.to_string()),
        ("PMIX_RANK", rank.to_string()),
        ("PMIX_NAMESPACE", jobid.to_string()),
    ]);
    v.extend(vars(extra));
    v
}

/// The same environment as mpirun gives inside a Slurm allocation, by hand
/// (runs whether or not mpirun is installed).
#[test]
fn mpirun_variables_inside_a_slurm_allocation_by_hand() {
    let secret = SecretDir::new("mpi-by-hand");
    let shm = ShmDir::new("mpi-by-hand");
    let jobid = unique("ompi");
    let port = common::free_port().to_string();
    let envs = (0..4)
        .map(|r| {
            mpirun_in_slurm_env(
                r,
                4,
                &jobid,
                &[
                    ("MALT_SECRET_FILE", secret.file()),
                    ("MALT_SHM_DIR", shm.path()),
                    ("MALT_MASTER_PORT", port.clone()),
                ],
            )
        })
        .collect();
    assert_all_ok(&check_ranks(envs));
    assert_eq!(shm.files(), Vec::<String>::new(), "segments left behind");
}

/// The acceptance test: `mpirun -np 4 malt check` with the batch step's
/// Slurm variables exported. Skipped (saying why) where mpirun is absent.
#[test]
fn mpirun_inside_a_slurm_allocation() {
    let Some(mpirun) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mpirun"))
            .find(|p| p.is_file())
    }) else {
        eprintln!(
            "skipped: no mpirun on PATH (Debian: apt-get install openmpi-bin); \
             mpirun_variables_inside_a_slurm_allocation_by_hand covers the variables"
        );
        return;
    };
    let secret = SecretDir::new("mpirun");
    let shm = ShmDir::new("mpirun");
    let cmd = clean_command(
        mpirun.to_str().expect("utf-8 path"),
        &[
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "4",
            malt(),
            "check",
            "--size",
            "4096",
        ],
        &vars(&[
            ("SLURM_PROCID", "0".into()),
            ("SLURM_NTASKS", "1".into()),
            ("SLURM_JOB_ID", "7".into()),
            ("SLURM_STEP_ID", "0".into()),
            ("MALT_SECRET_FILE", secret.file()),
            ("MALT_SHM_DIR", shm.path()),
        ]),
    );
    let job = run_with_deadline(cmd, DEADLINE);
    assert_eq!(job.code, Some(0), "{job:?}");
    let lines = job.json_lines();
    assert_eq!(lines.len(), 4, "{job:?}");
    let mut ranks: Vec<u64> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["ok"], true, "{l}");
            assert_eq!(l["world"], 4, "{l}");
            l["rank"].as_u64().expect("rank")
        })
        .collect();
    ranks.sort();
    assert_eq!(ranks, [0, 1, 2, 3], "{job:?}");
    assert_eq!(shm.files(), Vec::<String>::new(), "segments left behind");
}

/// `srun --mpi=pmix` over two nodes: PMIx's rank with Slurm's step, and the
/// master is the first host of `SLURM_STEP_NODELIST` (here two loopback
/// addresses, so that both "nodes" are this host), not
/// `SLURM_LAUNCH_NODE_IPADDR`.
#[test]
fn srun_with_pmix_takes_the_master_from_the_step_nodelist() {
    let secret = SecretDir::new("srun");
    let shm = ShmDir::new("srun");
    let job = unique("srun");
    let port = common::free_port().to_string();
    let envs = (0..2)
        .map(|r| {
            vars(&[
                ("SLURM_PROCID", r.to_string()),
                ("SLURM_NTASKS", "2".into()),
                ("SLURM_NNODES", "2".into()),
                ("SLURM_LOCALID", "0".into()),
                ("SLURM_JOB_ID", job.clone()),
                ("SLURM_STEP_ID", "0".into()),
                ("SLURM_STEP_NODELIST", "127.0.0.[1-2]".into()),
                ("SLURM_JOB_NODELIST", "127.0.0.[1-2]".into()),
                ("SLURM_LAUNCH_NODE_IPADDR", "192.0.2.1".into()),
                ("PMIX_RANK", r.to_string()),
                ("PMIX_NAMESPACE", format!("slurm.pmix.{job}.0")),
                ("MALT_TRANSPORT", "tcp".into()),
                ("MALT_MASTER_PORT", port.clone()),
                ("MALT_SECRET_FILE", secret.file()),
                ("MALT_SHM_DIR", shm.path()),
            ])
        })
        .collect();
    assert_all_ok(&check_ranks(envs));
}

/// Whether `pid` is running (a zombie has exited).
fn alive(pid: i32) -> bool {
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

/// `malt launch` hosts the coordinator; SIGKILLed, it cannot stop its
/// ranks, which must notice the lost control channel and exit by
/// themselves, removing their segments.
#[test]
fn ranks_do_not_outlive_a_killed_launcher() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let shm = ShmDir::new("launcher-killed");
    let mut launcher = Command::new(malt())
        .args(["launch", "-n", "2", "--"])
        .arg(malt())
        .args(["check", "--rounds", "1000000", "--size", "64"])
        .env("MALT_SHM_DIR", shm.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn malt launch");
    let lpid = launcher.id() as i32;
    // Wait (bounded) until both ranks run and have made their segments.
    let t = Instant::now();
    let mut ranks = Vec::new();
    while t.elapsed() < Duration::from_secs(30) {
        ranks = common::children_of(lpid as u32);
        if ranks.len() == 2 && shm.files().len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = ranks.len() == 2 && shm.files().len() >= 2;
    let segments = shm.files();
    kill(Pid::from_raw(lpid), Signal::SIGKILL).expect("SIGKILL the launcher");
    let _ = launcher.wait();
    // No rank is left behind before the verdict.
    assert_gone(&ranks, &shm, Duration::from_secs(10));
    assert!(
        started,
        "the ranks did not start: children {ranks:?}, segments {segments:?}"
    );
}

/// Waits up to `deadline` for `ranks` to exit and `shm` to empty, then
/// SIGKILLs any rank left (never leaving one running) and asserts that
/// none was and that no segment is left.
fn assert_gone(ranks: &[i32], shm: &ShmDir, deadline: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let t = Instant::now();
    while t.elapsed() < deadline && (ranks.iter().any(|&p| alive(p)) || !shm.files().is_empty()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = ranks.iter().copied().filter(|&p| alive(p)).collect();
    for &p in &left {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    assert!(
        left.is_empty(),
        "ranks {left:?} still ran {deadline:?} after the launcher was killed"
    );
    assert_eq!(
        shm.files(),
        Vec::<String>::new(),
        "segments left {deadline:?} after the launcher was killed"
    );
}

/// The same before the job has started: a rank still dialling the
/// coordinator (which `malt launch`, now SIGKILLed, was to run) must give
/// up at once rather than retry for the whole rendezvous bound (15 min by
/// default), and leave nothing behind; while the launcher lives, a failed
/// attempt is retried. The "launcher" here is a shell that starts one rank
/// of two through a wrapper shell (so the rank's parent was never the
/// launcher) and then waits.
#[test]
fn a_rank_still_joining_ends_when_its_launcher_is_killed() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let shm = ShmDir::new("launcher-killed-joining");
    // The coordinator's port: the rank's attempts are accepted here and
    // closed unanswered, which shows the rank dialling.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("listener");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().expect("port").port().to_string();
    let vars = [
        ("MALT_RANK", "1"),
        ("MALT_WORLD_SIZE", "2"),
        ("MALT_MASTER_ADDR", "127.0.0.1"),
        ("MALT_MASTER_PORT", port.as_str()),
        ("MALT_JOB_TOKEN", "launcher-killed-joining"),
        ("MALT_COORDINATOR", "external"),
        ("MALT_RENDEZVOUS_TIMEOUT", "600"),
        ("MALT_SHM_DIR", &shm.path()),
    ];
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut launcher = clean_command(
        "sh",
        &[
            "-c",
            r#"export MALT_LAUNCHER_PID=$$; sh -c '"$0" check --rounds 1 --size 64; exit $?' "$0" & wait"#,
            malt(),
        ],
        &vars,
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn the shell");
    let lpid = launcher.id();
    let accept = |what: &str| {
        let t = Instant::now();
        loop {
            if let Ok((conn, _)) = listener.accept() {
                return Some(conn);
            }
            if t.elapsed() > Duration::from_secs(30) {
                eprintln!("no {what} attempt within 30 s");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // A first attempt that fails while the launcher lives is retried.
    let first = accept("first");
    drop(first);
    let second = accept("second");
    let wrapper = common::children_of(lpid);
    let rank: Vec<i32> = wrapper
        .iter()
        .flat_map(|&w| common::children_of(w as u32))
        .collect();
    kill(Pid::from_raw(lpid as i32), Signal::SIGKILL).expect("SIGKILL the shell");
    let _ = launcher.wait();
    let dialled_twice = second.is_some() && rank.len() == 1;
    // The launcher is gone: its coordinator closes the connection and stops
    // listening, and every later attempt is refused. Whatever happened, no
    // process is left behind before the verdict.
    drop(second);
    drop(listener);
    assert_gone(
        &[rank.clone(), wrapper.clone()].concat(),
        &shm,
        Duration::from_secs(5),
    );
    assert!(
        dialled_twice,
        "the rank did not dial the coordinator twice within 30 s each \
         (wrapper {wrapper:?}, rank {rank:?})"
    );
}
