//! The C API from C: programs in `tests/c/` are compiled with the system C
//! compiler against `include/malt.h` and the freshly built shared library
//! (installed as libmalt.so and under its soname), then run as one- or
//! two-rank jobs with the environment `malt launch` would give them.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long any compiled program may run.
const DEADLINE: Duration = Duration::from_secs(90);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory next to this test binary, with `lib/libmalt.so` pointing at
/// the library cargo built for this run.
fn staging() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("test binary directory");
        let built = [deps.to_path_buf(), deps.join("..")]
            .iter()
            .map(|d| d.join("libmalt_capi.so"))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("libmalt_capi.so not found next to {}", exe.display()));
        const PREFIX: &str = "malt-capi-c-tests-";
        // Directories of earlier runs whose process is gone.
        if let Ok(entries) = std::fs::read_dir(deps) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(PREFIX) {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = deps.join(format!("{PREFIX}{}", std::process::id()));
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).expect("create staging directory");
        // The link-time name and the soname programs then look for.
        for name in ["libmalt.so", "libmalt.so.0"] {
            let staged = lib.join(name);
            if std::fs::hard_link(&built, &staged).is_err() {
                std::fs::copy(&built, &staged).expect("stage libmalt.so");
            }
        }
        dir
    })
}

/// What a finished (or killed) process printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(&self, what: &str) {
        assert!(
            self.code == Some(0) && !self.timed_out,
            "{what}: exit {:?}, timed out {}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.timed_out,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `cmd` to completion, killing it at `deadline`.
fn run(mut cmd: Command, deadline: Duration) -> Run {
    // cargo points LD_LIBRARY_PATH at its build directories, which would
    // take precedence over the programs' run path to the staged library.
    cmd.env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
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
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait().ok();
        let _ = tx.send(status.and_then(|s| s.code()));
    });
    let (code, timed_out) = match rx.recv_timeout(deadline) {
        Ok(code) => (code, false),
        Err(_) => {
            // Our child, not yet reaped: the waiter thread is still in wait().
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = rx.recv_timeout(Duration::from_secs(10));
            (None, true)
        }
    };
    let _ = waiter.join();
    Run {
        code,
        timed_out,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    }
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// Compiles `tests/c/<name>.c` with `extra` flags into the staging
/// directory and returns the executable.
fn compile(name: &str, out: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let dir = staging();
    let exe = dir.join(out);
    let lib = dir.join("lib");
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .args(extra)
        .arg("-I")
        .arg(crate_dir().join("../include"))
        .arg(crate_dir().join("tests/c").join(format!("{name}.c")))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lmalt", "-lm"]);
    let r = run(cmd, DEADLINE);
    if r.code == Some(0) {
        Ok(exe)
    } else {
        Err(format!(
            "{name}.c did not compile:\n{}{}",
            r.stdout, r.stderr
        ))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn token(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("capi-{tag}-{}-{nanos}", std::process::id())
}

/// The environment of rank `rank` of `world` in a job on `port`.
fn job_env(cmd: &mut Command, rank: usize, world: usize, port: u16, token: &str, transport: &str) {
    for k in [
        "RANK",
        "WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "OMPI_COMM_WORLD_RANK",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("MALT_RANK", rank.to_string())
        .env("MALT_WORLD_SIZE", world.to_string())
        .env("MALT_MASTER_ADDR", "127.0.0.1")
        .env("MALT_MASTER_PORT", port.to_string())
        .env("MALT_JOB_TOKEN", token)
        .env("MALT_TRANSPORT", transport)
        .env("MALT_TIMEOUT", "20");
    // Over shm every rank is on this host: give the local numbers as `malt
    // launch` does; over tcp leave them out, as a launcher may.
    cmd.env_remove("MALT_LOCAL_RANK")
        .env_remove("MALT_LOCAL_WORLD_SIZE");
    if transport == "shm" {
        cmd.env("MALT_LOCAL_RANK", rank.to_string())
            .env("MALT_LOCAL_WORLD_SIZE", world.to_string());
    }
}

/// Runs `exe` as `world` ranks of one job and returns each rank's run.
fn run_job(exe: &Path, world: usize, transport: &str, tag: &str) -> Vec<Run> {
    run_job_with(exe, world, transport, tag, &[])
}

/// Like [`run_job`], with extra environment.
fn run_job_with(
    exe: &Path,
    world: usize,
    transport: &str,
    tag: &str,
    extra: &[(&str, &str)],
) -> Vec<Run> {
    run_job_args(exe, &[], world, transport, tag, extra)
}

/// Like [`run_job_with`], passing `args` to every rank.
fn run_job_args(
    exe: &Path,
    args: &[&str],
    world: usize,
    transport: &str,
    tag: &str,
    extra: &[(&str, &str)],
) -> Vec<Run> {
    let port = free_port();
    let token = token(tag);
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let mut cmd = Command::new(exe);
            cmd.args(args);
            job_env(&mut cmd, rank, world, port, &token, transport);
            cmd.envs(extra.iter().copied());
            std::thread::spawn(move || run(cmd, DEADLINE))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("rank thread"))
        .collect()
}

#[test]
fn misuse_returns_error_codes_and_never_crashes() {
    let exe = compile("misuse", "misuse", &[]).unwrap_or_else(|e| panic!("{e}"));
    let runs = run_job(&exe, 1, "shm", "misuse");
    runs[0].assert_ok("misuse");
    assert!(
        runs[0].stdout.contains(" checks, 0 failed"),
        "{}",
        runs[0].stdout
    );
}

/// Whether the C compiler can build and run an AddressSanitizer program
/// (a property of the machine, not of malt).
fn asan_available() -> bool {
    let dir = staging();
    let src = dir.join("asan-probe.c");
    let exe = dir.join("asan-probe");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let mut cmd = Command::new(cc());
    cmd.arg("-fsanitize=address").arg(&src).arg("-o").arg(&exe);
    run(cmd, DEADLINE).code == Some(0) && run(Command::new(&exe), DEADLINE).code == Some(0)
}

#[test]
fn misuse_is_clean_under_address_sanitizer() {
    if !asan_available() {
        eprintln!("the C compiler cannot build AddressSanitizer programs here; capi/ci.sh runs this check");
        return;
    }
    let exe = compile(
        "misuse",
        "misuse-asan",
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let mut cmd = Command::new(&exe);
    job_env(&mut cmd, 0, 1, port, &token("asan"), "shm");
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:exitcode=86",
    );
    let r = run(cmd, DEADLINE);
    r.assert_ok("misuse under AddressSanitizer");
    assert!(!r.stderr.contains("AddressSanitizer"), "{}", r.stderr);
}

#[test]
fn two_ranks_exchange_through_the_c_api_over_shm() {
    let exe = compile("exchange", "exchange", &[]).unwrap_or_else(|e| panic!("{e}"));
    let runs = run_job(&exe, 2, "shm", "exchange-shm");
    for (rank, r) in runs.iter().enumerate() {
        r.assert_ok(&format!("rank {rank}"));
        assert!(
            r.stdout.contains(&format!("exchange rank {rank} of 2: ")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains(" checks, 0 failed"), "{}", r.stdout);
    }
}

#[test]
fn two_ranks_exchange_through_the_c_api_over_tcp() {
    let exe = compile("exchange", "exchange-tcp", &[]).unwrap_or_else(|e| panic!("{e}"));
    let runs = run_job(&exe, 2, "tcp", "exchange-tcp");
    for (rank, r) in runs.iter().enumerate() {
        r.assert_ok(&format!("rank {rank}"));
        assert!(r.stdout.contains(" checks, 0 failed"), "{}", r.stdout);
    }
}

#[test]
fn quick_start_converges_on_two_ranks() {
    let exe = compile("quick_start", "quick_start", &[]).unwrap_or_else(|e| panic!("{e}"));
    let runs = run_job(&exe, 2, "shm", "quick-start");
    for (rank, r) in runs.iter().enumerate() {
        r.assert_ok(&format!("rank {rank}"));
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("rank {rank} of 2: w = ")))
            .unwrap_or_else(|| panic!("no result line:\n{}", r.stdout));
        let w: Vec<f64> = line
            .rsplit("w = ")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(|x| x.parse().expect("a number"))
            .collect();
        assert!(
            (w[0] - 2.0).abs() < 1e-2 && (w[1] + 3.0).abs() < 1e-2,
            "{line}"
        );
        assert!(r.stdout.contains("\"gathers\":300"), "{}", r.stdout);
    }
}

#[test]
fn a_rank_without_a_job_token_gets_a_config_error() {
    let exe = compile("quick_start", "quick_start_config", &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(&exe);
    job_env(&mut cmd, 0, 2, free_port(), "unused", "shm");
    cmd.env_remove("MALT_JOB_TOKEN");
    let r = run(cmd, DEADLINE);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("malt_init"), "{}", r.stderr);
    assert!(r.stderr.contains("MALT_JOB_TOKEN"), "{}", r.stderr);
}

#[test]
fn survivors_regroup_and_rejoin_after_a_rank_dies() {
    let exe = compile("fault", "fault", &[]).unwrap_or_else(|e| panic!("{e}"));
    let runs = run_job_with(&exe, 3, "shm", "fault", &[("MALT_MIN_RANKS", "2")]);
    runs[2].assert_ok("rank 2");
    let left = &runs[2].stdout;
    assert!(
        left.contains("fault rank 2: leaving abruptly after ") && left.contains(" 0 failed"),
        "{left}"
    );
    for (rank, r) in runs.iter().enumerate().take(2) {
        r.assert_ok(&format!("rank {rank}"));
        assert!(
            r.stdout.contains(&format!("fault rank {rank}: "))
                && r.stdout.contains(" checks, 0 failed"),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn wrapped_vectors_average_in_the_programs_own_memory_at_two_and_three_ranks() {
    let exe = compile("wrap", "wrap", &[]).unwrap_or_else(|e| panic!("{e}"));
    for world in [2, 3] {
        let runs = run_job(&exe, world, "shm", &format!("wrap-{world}"));
        for (rank, r) in runs.iter().enumerate() {
            r.assert_ok(&format!("rank {rank} of {world}"));
            assert!(
                r.stdout.contains(&format!("wrap rank {rank} of {world}: "))
                    && r.stdout.contains(" checks, 0 failed"),
                "{}",
                r.stdout
            );
        }
    }
}

/// Runs `mismatch MODE` on `world` ranks and checks every rank's summary.
fn mismatch_job(mode: &str, world: usize, extra: &[(&str, &str)]) -> Vec<Run> {
    let out = format!("mismatch-{mode}");
    let exe = compile("mismatch", &out, &[]).unwrap_or_else(|e| panic!("{e}"));
    let tag = format!("mismatch-{mode}-{world}");
    let runs = run_job_args(&exe, &[mode], world, "shm", &tag, extra);
    for (rank, r) in runs.iter().enumerate() {
        r.assert_ok(&format!("{mode}: rank {rank} of {world}"));
        let summary = format!("mismatch {mode} rank {rank} of {world}: ");
        assert!(
            r.stdout.contains(&summary) && r.stdout.contains(" checks, 0 failed"),
            "{}",
            r.stdout
        );
    }
    runs
}

#[test]
fn unequal_scatter_counts_fail_every_rank_within_a_second_naming_both() {
    for world in [2, 3] {
        let runs = mismatch_job("counts", world, &[]);
        assert!(runs[0].stdout.contains("malt_finalize failed after"));
    }
}

#[test]
fn a_late_rank_is_told_it_came_late_and_the_others_name_it() {
    mismatch_job("late", 3, &[("MALT_TIMEOUT", "1")]);
}
