//! `malt launch`: start N local ranks of a job with the environment set, a
//! fresh job token and a free master port; run the job's coordinator;
//! prefix the ranks' output; forward SIGINT/SIGTERM; end every rank still
//! running once the job's outcome is decided, and remove what killed ranks
//! left in the shm directory.

use dstorm::error::Seconds;
use dstorm::TransportKind;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::IsTerminal;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod output;
use output::{pump, pump_to_screen, screen_width, Screen};

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Number of ranks.
    pub ranks: usize,
    /// Transport for model bytes (`MALT_TRANSPORT`).
    pub transport: TransportKind,
    /// Hard bound on the ranks' waits (`MALT_TIMEOUT`); none by default:
    /// the fault monitors find dead, stopped or hung ranks instead. The end
    /// of a decided job does not depend on it (see [`STOP_GRACE`]).
    pub timeout: Option<Duration>,
    /// The program and its arguments.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Prefix every output line with `[rank]`; without it, only rank 0's
    /// standard output is passed through, unchanged.
    pub prefix: bool,
    /// Extra environment for every rank.
    pub env: Vec<(String, String)>,
}

/// Fault tolerance of a launched job (see `malt launch --min-ranks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultOptions {
    /// Fewest ranks that must finish successfully (default: all). Below the
    /// world size, survivors regroup when ranks die.
    pub min_ranks: Option<usize>,
    /// Failure timeout `T` (`MALT_FAIL_TIMEOUT`).
    pub fail_timeout: Option<Duration>,
    /// Regroups allowed (`MALT_MAX_REGROUPS`).
    pub max_regroups: Option<u32>,
}

impl FaultOptions {
    fn policy(&self, ranks: usize) -> Result<dstorm::FaultPolicy, LaunchError> {
        let min_ranks = self.min_ranks.unwrap_or(ranks);
        if !(1..=ranks).contains(&min_ranks) {
            return Err(LaunchError::Invalid(format!(
                "--min-ranks {min_ranks} must be between 1 and the number of ranks {ranks}"
            )));
        }
        let fail_timeout = self
            .fail_timeout
            .unwrap_or(dstorm::config::DEFAULT_FAIL_TIMEOUT);
        if fail_timeout.is_zero() {
            return Err(LaunchError::Invalid(
                "--fail-timeout must be positive".into(),
            ));
        }
        Ok(dstorm::FaultPolicy {
            min_ranks,
            fail_timeout,
            max_regroups: self.max_regroups.unwrap_or(ranks as u32),
        })
    }
}

/// Why a launch failed before or while running ranks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// `-n 0` or similar.
    #[error("invalid launch: {0}")]
    Invalid(String),
    /// No free port for the master.
    #[error("no free port for the master: {0}")]
    Port(#[source] std::io::Error),
    /// The job's coordinator could not be started.
    #[error("cannot start the coordinator: {0}")]
    Coordinator(#[source] dstorm::Error),
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How a launched job ended.
#[derive(Debug, Clone)]
pub struct LaunchOutcome {
    /// Exit status per rank (None: could not be collected).
    pub statuses: Vec<Option<ExitStatus>>,
    /// The job was interrupted by SIGINT/SIGTERM.
    pub interrupted: bool,
    /// Ranks the launcher ended (SIGTERM, then SIGKILL if need be) once the
    /// outcome was decided, ascending.
    pub stopped: Vec<usize>,
    /// The first rank that failed by itself, if any.
    pub first_failure: Option<usize>,
    /// Ranks that had to succeed (`--min-ranks`; all by default).
    pub min_ranks: usize,
    /// Ranks the coordinator removed from the group, ascending.
    pub evicted: Vec<usize>,
    /// Why the coordinator stopped the job, if it did.
    pub aborted: Option<String>,
}

impl LaunchOutcome {
    /// Ranks that did not exit with status 0, with a description.
    pub fn failures(&self) -> Vec<(usize, String)> {
        self.statuses
            .iter()
            .enumerate()
            .filter_map(|(r, s)| match s {
                Some(s) if s.success() => None,
                Some(s) => Some((r, describe(s))),
                None => Some((r, "status unknown".into())),
            })
            .collect()
    }

    /// What `malt launch` prints when the job has ended: a line for each rank
    /// that failed, the coordinator's reason if it stopped the job, the
    /// ranks the launcher ended, and last, when ranks failed, how many
    /// succeeded and which were evicted.
    pub fn report(&self) -> Vec<String> {
        let failures = self.failures();
        let mut lines: Vec<String> = failures
            .iter()
            .map(|(rank, why)| {
                let by_us = if self.stopped.contains(rank) {
                    " (ended by the launcher)"
                } else {
                    ""
                };
                format!("rank {rank} {why}{by_us}")
            })
            .collect();
        if let Some(reason) = &self.aborted {
            lines.push(format!("the job was stopped: {reason}"));
        }
        if !failures.is_empty() || !self.evicted.is_empty() {
            let n = self.statuses.len();
            let mut last = format!(
                "{} of {n} ranks succeeded (at least {} required)",
                n - failures.len(),
                self.min_ranks
            );
            if !self.evicted.is_empty() {
                last.push_str(&format!("; evicted ranks {:?}", self.evicted));
            }
            lines.push(last);
        }
        lines
    }

    /// The exit code `malt launch` should return: 0 if at least
    /// `min_ranks` ranks succeeded (every rank by default), else the code of
    /// the first rank that failed by itself (128+signal for a signal).
    pub fn exit_code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let succeeded = self.statuses.len() - self.failures().len();
        if !self.interrupted
            && self.aborted.is_none()
            && succeeded >= self.min_ranks
            && self.min_ranks > 0
        {
            return 0;
        }
        let failed = self
            .first_failure
            .or_else(|| self.failures().first().map(|(r, _)| *r));
        match failed.map(|r| self.statuses[r]) {
            Some(Some(s)) => s
                .code()
                .or_else(|| s.signal().map(|g| 128 + g))
                .unwrap_or(1),
            Some(None) => 1,
            None if self.interrupted => 130,
            // Every process exited 0, yet the coordinator stopped the job.
            None if self.aborted.is_some() => 1,
            None => 0,
        }
    }
}

fn describe(s: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "ended".into(),
    }
}

/// A free TCP port on loopback (the listener is closed before returning).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A fresh random job token.
pub fn fresh_token() -> String {
    dstorm::secret::random_token()
}

/// Runs the job and waits for it. Never returns while a child it started is
/// still running.
pub fn launch(opts: &LaunchOptions) -> Result<LaunchOutcome, LaunchError> {
    launch_with(opts, &FaultOptions::default())
}

/// [`launch`] with fault tolerance: the coordinator runs in this process, so
/// any rank may die; with `min_ranks` below the number of ranks the
/// survivors regroup and the job succeeds when at least `min_ranks` ranks
/// do.
pub fn launch_with(
    opts: &LaunchOptions,
    faults: &FaultOptions,
) -> Result<LaunchOutcome, LaunchError> {
    if opts.ranks == 0 {
        return Err(LaunchError::Invalid("at least one rank is needed".into()));
    }
    let policy = faults.policy(opts.ranks)?;
    crate::log::set_tag("launch");
    let token = fresh_token();
    // The coordinator lives here, not in rank 0: any rank may fail.
    let coordinator = dstorm::CoordinatorHandle::start(
        "127.0.0.1",
        0,
        &token,
        opts.ranks,
        opts.timeout.unwrap_or(dstorm::config::NO_TIMEOUT),
        policy,
    )
    .map_err(LaunchError::Coordinator)?;
    let port = coordinator.port();
    let tolerated = opts.ranks - policy.min_ranks;
    let interrupted = Arc::new(AtomicBool::new(false));
    // Registered before the first rank starts: a signal that comes while
    // ranks are being started waits here and is forwarded to every rank
    // once they all run, instead of ending the launcher and leaving them.
    let signals = catch_signals();
    let start = Instant::now();
    let mut children: Vec<Child> = Vec::with_capacity(opts.ranks);
    let mut pumps = Vec::new();
    // When the launcher's stdout is a terminal, rank 0's stdout goes there
    // as it comes, and rank 0 draws its progress bar on it, as wide as the
    // terminal less the prefix.
    let rank0_prefix = if opts.prefix { "[0] " } else { "" };
    let screen = std::io::stdout()
        .is_terminal()
        .then(|| Arc::new(Mutex::new(Screen::new(rank0_prefix))));
    let columns = screen_width().saturating_sub(rank0_prefix.len() as u16);
    for rank in 0..opts.ranks {
        let mut cmd = Command::new(&opts.program);
        cmd.args(&opts.args)
            .env("MALT_RANK", rank.to_string())
            .env("MALT_WORLD_SIZE", opts.ranks.to_string())
            .env("MALT_LOCAL_RANK", rank.to_string())
            .env("MALT_LOCAL_WORLD_SIZE", opts.ranks.to_string())
            .env("MALT_MASTER_ADDR", "127.0.0.1")
            .env("MALT_MASTER_PORT", port.to_string())
            .env("MALT_JOB_TOKEN", &token)
            .env("MALT_TRANSPORT", opts.transport.as_str())
            .env("MALT_COORDINATOR", "external")
            .env("MALT_LAUNCHER_PID", std::process::id().to_string())
            .env("MALT_MIN_RANKS", policy.min_ranks.to_string())
            .env(
                "MALT_FAIL_TIMEOUT",
                policy.fail_timeout.as_secs_f64().to_string(),
            )
            .env("MALT_MAX_REGROUPS", policy.max_regroups.to_string())
            .env_remove("RANK")
            .env_remove("WORLD_SIZE")
            // Each rank leads a process group of its own, which the launcher
            // signals whole: a wrapper script's children end with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if opts.prefix || rank == 0 {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some(t) = opts.timeout {
            cmd.env("MALT_TIMEOUT", t.as_secs_f64().to_string());
        }
        if rank == 0 {
            match &screen {
                Some(_) => cmd
                    .env(crate::train::progress::PROGRESS_VAR, "1")
                    .env("COLUMNS", columns.to_string()),
                None => cmd.env(crate::train::progress::PROGRESS_VAR, "0"),
            };
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        match cmd.spawn() {
            Ok(mut c) => {
                if let Some(out) = c.stdout.take() {
                    if let (0, Some(screen)) = (rank, &screen) {
                        pumps.push(pump_to_screen(out, screen.clone()));
                    } else if opts.prefix || rank == 0 {
                        pumps.push(pump(out, rank, false, opts.prefix, screen.clone()));
                    } else {
                        // Drain and drop other ranks' stdout when not prefixing.
                        pumps.push(std::thread::spawn(move || {
                            let _ = std::io::copy(&mut { out }, &mut std::io::sink());
                        }));
                    }
                }
                if let Some(err) = c.stderr.take() {
                    pumps.push(pump(err, rank, true, opts.prefix, screen.clone()));
                }
                children.push(c);
            }
            Err(source) => {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(LaunchError::Spawn {
                    program: opts.program.display().to_string(),
                    source,
                });
            }
        }
    }
    tracing::info!(
        target: "malt::launch",
        ranks = opts.ranks,
        coordinator = %format_args!("127.0.0.1:{port}"),
        transport = %opts.transport.as_str(),
        min_ranks = policy.min_ranks,
        "started the ranks"
    );
    let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
    // Set as soon as a rank is reaped, so that no signal goes to its pid
    // (which the system may give to another process) after that.
    let exited: Arc<Vec<AtomicBool>> =
        Arc::new(pids.iter().map(|_| AtomicBool::new(false)).collect());
    let sig_thread = signals
        .map(|signals| forward_signals(signals, pids.clone(), exited.clone(), interrupted.clone()));
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = children
        .into_iter()
        .enumerate()
        .map(|(rank, mut c)| {
            let tx = tx.clone();
            let exited = exited.clone();
            std::thread::spawn(move || {
                let s = c.wait().ok();
                exited[rank].store(true, Ordering::Release);
                let _ = tx.send((rank, s));
            })
        })
        .collect();
    drop(tx);
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; opts.ranks];
    let mut done = vec![false; opts.ranks];
    let mut ending = Ending::default();
    let mut first_failure = None;
    let mut failed = 0usize;
    // Ranks whose process failed, for the coordinator: (when, rank, how).
    let mut news: Vec<(Instant, usize, String)> = Vec::new();
    while done.iter().any(|d| !d) {
        let now = Instant::now();
        news.retain(|(at, rank, how)| {
            let due = *at <= now;
            if due {
                coordinator.exited(*rank, how);
            }
            !due
        });
        let job = coordinator.state();
        if !ending.decided() {
            let survivors_done = (0..opts.ranks).all(|r| done[r] || job.evicted.contains(&r));
            let why = if interrupted.load(Ordering::Relaxed) {
                Some("interrupted")
            } else if job.aborted.is_some() {
                Some("the job was stopped")
            } else if failed > tolerated {
                Some("more ranks failed than --min-ranks allows")
            } else if survivors_done {
                Some("the survivors have finished")
            } else {
                None
            };
            if let Some(why) = why {
                tracing::info!(target: "malt::launch", at = %Seconds(start.elapsed()), why, "outcome decided");
                ending.decide(now, &job.evicted, &done, &pids);
            }
        }
        ending.step(now, &done, &pids);
        let wait = ending
            .next_step()
            .into_iter()
            .chain(news.iter().map(|n| n.0))
            .min()
            .map_or(POLL, |t| t.saturating_duration_since(now).min(POLL));
        match rx.recv_timeout(wait) {
            Ok((rank, s)) => {
                done[rank] = true;
                tracing::info!(
                    target: "malt::launch",
                    rank,
                    at = %Seconds(start.elapsed()),
                    status = %s.as_ref().map_or_else(|| "unknown".to_string(), describe),
                    "rank exited"
                );
                if !s.is_some_and(|s| s.success()) {
                    // The coordinator learns it from the rank's connection
                    // too, unless a process the rank forked holds it open.
                    // A goodbye the rank sent just before it ended comes
                    // first: the news waits a moment.
                    let how = s
                        .as_ref()
                        .map_or_else(|| "ended (status unknown)".to_string(), describe);
                    news.push((Instant::now() + EXIT_NEWS_DELAY, rank, how));
                    failed += 1;
                    if !ending.decided() && first_failure.is_none() {
                        first_failure = Some(rank);
                    }
                }
                statuses[rank] = s;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    // News of the last ranks to fail still goes out, at its time.
    if let Some(last) = news.iter().map(|n| n.0).max() {
        std::thread::sleep(last.saturating_duration_since(Instant::now()));
    }
    for (_, rank, how) in news.drain(..) {
        coordinator.exited(rank, &how);
    }
    for w in waiters {
        let _ = w.join();
    }
    // The ranks' output pipes close when the last process holding them
    // exits: a rank's leftover children are ended with its process group.
    if !pumps_end(&pumps, STOP_GRACE) {
        for pid in &pids {
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        }
        pumps_end(&pumps, STOP_GRACE);
    }
    for p in pumps {
        if p.is_finished() {
            let _ = p.join();
        }
    }
    if let Some(h) = sig_thread {
        h.close();
    }
    // Every rank is gone; the coordinator's last word stands.
    let job = coordinator.state();
    drop(coordinator);
    // The rank the coordinator saw fail first is the cause; the others may
    // have exited before it, stopped by the news.
    let first_failure = job
        .first_failed
        .filter(|r| {
            statuses
                .get(*r)
                .is_some_and(|s| !s.is_some_and(|s| s.success()))
        })
        .or(first_failure);
    // Ranks killed before they could remove their segment files (SIGKILL,
    // or stopped and ended here) leave them behind; nobody else will.
    let removed = dstorm::remove_shm_files(&shm_dir(opts), dstorm::shm_job(&token, job.nonce));
    if removed > 0 {
        tracing::info!(target: "malt::launch", removed, "removed segment files the ranks left behind");
    }
    Ok(LaunchOutcome {
        statuses,
        interrupted: interrupted.load(Ordering::Relaxed),
        stopped: ending.signalled,
        first_failure,
        min_ranks: policy.min_ranks,
        evicted: job.evicted,
        aborted: job.aborted,
    })
}

/// Whether the output pumps end within `within` (they end when the last
/// process holding a rank's pipes exits).
fn pumps_end(pumps: &[std::thread::JoinHandle<()>], within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        if pumps.iter().all(|p| p.is_finished()) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How often the launcher looks at the coordinator's verdicts.
const POLL: Duration = Duration::from_millis(100);

/// How long after a rank's process failed the launcher tells the
/// coordinator (see [`dstorm::CoordinatorHandle::exited`]): time for a
/// goodbye the rank sent as it ended to arrive first.
const EXIT_NEWS_DELAY: Duration = Duration::from_millis(100);

/// Once the outcome is decided: how long ranks that are still members get to
/// exit by themselves (they normally do at once: the coordinator told them),
/// and then how long after SIGTERM a rank gets before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// The end of a job whose outcome is decided: every rank still alive is
/// ended within 2 × [`STOP_GRACE`]. Evicted ranks get SIGTERM at once,
/// members after [`STOP_GRACE`]; each SIGTERM is followed by SIGCONT, so
/// that a stopped process acts on it; SIGKILL follows [`STOP_GRACE`] later.
#[derive(Debug, Default)]
struct Ending {
    decided: bool,
    /// When the ranks still alive get SIGTERM (and SIGCONT).
    term_at: Option<Instant>,
    /// When the ranks still alive get SIGKILL.
    kill_at: Option<Instant>,
    /// Ranks sent SIGTERM by the launcher, ascending.
    signalled: Vec<usize>,
}

impl Ending {
    fn decided(&self) -> bool {
        self.decided
    }

    fn decide(&mut self, now: Instant, evicted: &[usize], done: &[bool], pids: &[i32]) {
        self.decided = true;
        self.term_at = Some(now + STOP_GRACE);
        for &r in evicted {
            if r < done.len() && !done[r] {
                self.terminate(r, pids[r]);
                self.kill_at = Some(now + STOP_GRACE);
            }
        }
    }

    fn terminate(&mut self, rank: usize, pid: i32) {
        // The rank's process group: the rank and whatever it started.
        let group = Pid::from_raw(-pid);
        let _ = kill(group, Signal::SIGTERM);
        let _ = kill(group, Signal::SIGCONT);
        if let Err(i) = self.signalled.binary_search(&rank) {
            self.signalled.insert(i, rank);
        }
    }

    /// Sends what is due at `now` to the ranks not `done`.
    fn step(&mut self, now: Instant, done: &[bool], pids: &[i32]) {
        let alive = || (0..pids.len()).filter(|r| !done[*r]);
        if self.term_at.is_some_and(|t| now >= t) {
            self.term_at = None;
            for r in alive().collect::<Vec<_>>() {
                self.terminate(r, pids[r]);
            }
            let kill_at = now + STOP_GRACE;
            self.kill_at = Some(self.kill_at.map_or(kill_at, |k| k.min(kill_at)));
        }
        if self.kill_at.is_some_and(|t| now >= t) {
            self.kill_at = None;
            for r in alive() {
                let _ = kill(Pid::from_raw(-pids[r]), Signal::SIGKILL);
            }
        }
    }

    /// When [`step`](Self::step) next has something to do.
    fn next_step(&self) -> Option<Instant> {
        match (self.term_at, self.kill_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The directory the ranks put their segment files in.
fn shm_dir(opts: &LaunchOptions) -> PathBuf {
    opts.env
        .iter()
        .rev()
        .find(|(k, _)| k == "MALT_SHM_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .or_else(|| std::env::var_os("MALT_SHM_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(dstorm::config::DEFAULT_SHM_DIR))
}

/// Takes over SIGINT and SIGTERM: from here on they are held for
/// [`forward_signals`] instead of ending the launcher.
fn catch_signals() -> Option<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).ok()
}

/// Forwards SIGINT and SIGTERM to the children while the job runs,
/// including any that came before this was called.
fn forward_signals(
    mut signals: signal_hook::iterator::Signals,
    pids: Vec<i32>,
    exited: Arc<Vec<AtomicBool>>,
    flag: Arc<AtomicBool>,
) -> signal_hook::iterator::Handle {
    let handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            flag.store(true, Ordering::Relaxed);
            let s = if sig == signal_hook::consts::SIGINT {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            };
            for (pid, gone) in pids.iter().zip(exited.iter()) {
                if !gone.load(Ordering::Acquire) {
                    let _ = kill(Pid::from_raw(-pid), s);
                }
            }
        }
    });
    handle
}

/// True when this process runs inside a job (any launcher's rank variables).
pub fn inside_job() -> bool {
    [
        "MALT_RANK",
        "RANK",
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn outcome(codes: &[i32], min_ranks: usize) -> LaunchOutcome {
        LaunchOutcome {
            statuses: codes
                .iter()
                .map(|c| Some(ExitStatus::from_raw(c << 8)))
                .collect(),
            interrupted: false,
            stopped: Vec::new(),
            first_failure: codes.iter().position(|c| *c != 0),
            min_ranks,
            evicted: Vec::new(),
            aborted: None,
        }
    }

    #[test]
    fn a_job_the_coordinator_stopped_fails_even_when_every_process_exits_0() {
        let mut o = outcome(&[0, 0], 2);
        assert_eq!(o.exit_code(), 0);
        o.aborted = Some("rank 1 left the job without saying goodbye".into());
        assert_eq!(o.exit_code(), 1);
        assert!(o
            .report()
            .iter()
            .any(|l| l.contains("without saying goodbye")));
    }

    #[test]
    fn the_survivors_decide_the_status_and_the_last_line_names_the_evicted() {
        // Rank 2 was evicted while stopped and ended by the launcher (SIGKILL).
        let mut o = outcome(&[0, 0, 0, 0], 3);
        o.statuses[2] = Some(ExitStatus::from_raw(9));
        o.stopped = vec![2];
        o.evicted = vec![2];
        assert_eq!(o.exit_code(), 0);
        let report = o.report();
        assert_eq!(
            report[0],
            "rank 2 killed by SIGKILL (ended by the launcher)"
        );
        assert_eq!(
            report.last().map(String::as_str),
            Some("3 of 4 ranks succeeded (at least 3 required); evicted ranks [2]")
        );
        // Two evicted with three required: the survivors' quorum is lost.
        o.statuses[1] = Some(ExitStatus::from_raw(9));
        o.evicted = vec![1, 2];
        o.first_failure = Some(1);
        assert_eq!(o.exit_code(), 128 + 9);
    }
}
