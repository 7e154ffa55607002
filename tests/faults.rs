//! Fault monitors with real processes: ranks killed or stopped at chosen
//! points of a vol exchange, under `malt launch --min-ranks`. Survivors must
//! regroup within 2T, finish with whole (never half-applied) updates, and a
//! stopped rank must be evicted between T/2 and 2T and told so when it
//! resumes. The jobs run one at a time: their timing is what is tested.

mod common;

use common::malt;
use dstorm::Group;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use vol::{Consistency, DenseVector, Graph, Udf, VectorOptions};

/// Failure timeout T of these jobs, in seconds.
const T: f64 = 2.0;
/// Iterations every survivor completes.
const ITERS: u64 = 30;
/// The iteration at which victims fail.
const KILL_AT: u64 = 10;

static SERIAL: Mutex<()> = Mutex::new(());

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn say(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_default()
}

fn kill_self(signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), signal);
}

/// Stops a `malt launch` that overran its deadline: SIGTERM, which it
/// forwards to its ranks before they are stopped for good, then SIGKILL if
/// it is still there after 10 s.
fn stop_launcher(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let (tx, rx) = mpsc::channel();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    });
    let _ = child.wait();
    let _ = tx.send(());
    let _ = watchdog.join();
}

/// A job whose output lines arrive as they are printed.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Streaming {
    fn launch(ranks: usize, min_ranks: usize, scenario: &str, victims: &str) -> Streaming {
        Streaming::launch_on("shm", ranks, min_ranks, scenario, victims)
    }

    fn launch_on(
        transport: &str,
        ranks: usize,
        min_ranks: usize,
        scenario: &str,
        victims: &str,
    ) -> Streaming {
        Streaming::launch_env(transport, ranks, min_ranks, scenario, victims, &[])
    }

    fn launch_env(
        transport: &str,
        ranks: usize,
        min_ranks: usize,
        scenario: &str,
        victims: &str,
        env: &[(&str, &str)],
    ) -> Streaming {
        let me = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(malt());
        cmd.args([
            "launch",
            "-n",
            &ranks.to_string(),
            "--min-ranks",
            &min_ranks.to_string(),
            "--fail-timeout",
            &T.to_string(),
            "--timeout",
            "30",
            "--transport",
            transport,
            "--",
        ])
        .arg(me)
        .args([
            "--exact",
            "fault_rank",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FAULT_SCENARIO", scenario)
        .env("FAULT_VICTIMS", victims)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn malt launch");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((Instant::now(), line)).is_err() {
                        return;
                    }
                }
            });
        }
        Streaming {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The pid rank `rank` printed (waiting at most `within` for it).
    fn pid_of(&mut self, rank: usize, within: Duration) -> i32 {
        let tag = format!("[{rank}] ");
        let (_, line) = self.wait_for(&[&tag, "PID "], within).expect("a PID line");
        line.split_once("PID ")
            .and_then(|(_, p)| p.trim().parse().ok())
            .expect("a pid")
    }

    /// Waits (at most `within`) for a line containing every one of `needles`.
    fn wait_for(&mut self, needles: &[&str], within: Duration) -> Option<(Instant, String)> {
        let hit = |l: &str| needles.iter().all(|n| l.contains(n));
        if let Some(hit) = self.seen.iter().find(|(_, l)| hit(l)) {
            return Some(hit.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push((at, line.clone()));
                    if hit(&line) {
                        return Some((at, line));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits for the job to end (killing it at the deadline); returns its
    /// exit code and every line it printed.
    fn finish(mut self, within: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + within;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => {
                    // Collect output while waiting; also paces the loop.
                    if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                        self.seen.push(l);
                    }
                }
                _ => {
                    stop_launcher(&mut self.child);
                    break None;
                }
            }
        };
        // The pipes close when the last rank is gone: drain them (bounded).
        let drain_until = Instant::now() + Duration::from_secs(5);
        while let Ok(l) = self
            .lines
            .recv_timeout(drain_until.saturating_duration_since(Instant::now()))
        {
            self.seen.push(l);
        }
        (code, self.seen.into_iter().map(|(_, l)| l).collect())
    }
}

fn results(lines: &[String]) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.split_once("RESULT ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    v.sort_by_key(|r| r["rank"].as_u64().unwrap_or(u64::MAX));
    v
}

fn stamp(lines: &[String], tag: &str) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|l| l.split_once(tag).map(|(_, t)| t.trim()))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Runs one scenario with victims failing by themselves; checks that the
/// survivors regrouped within 2T of the failure and finished with whole
/// updates.
fn survivors_finish(scenario: &str, victims: &[usize], min_ranks: usize) -> Vec<String> {
    survivors_finish_on("shm", 4, scenario, victims, min_ranks)
}

fn survivors_finish_on(
    transport: &str,
    ranks: u64,
    scenario: &str,
    victims: &[usize],
    min_ranks: usize,
) -> Vec<String> {
    survivors_finish_env(transport, ranks, scenario, victims, min_ranks, &[])
}

fn survivors_finish_env(
    transport: &str,
    ranks: u64,
    scenario: &str,
    victims: &[usize],
    min_ranks: usize,
    env: &[(&str, &str)],
) -> Vec<String> {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let list: Vec<String> = victims.iter().map(|v| v.to_string()).collect();
    let job = Streaming::launch_env(
        transport,
        ranks as usize,
        min_ranks,
        scenario,
        &list.join(","),
        env,
    );
    let (code, lines) = job.finish(Duration::from_secs(90));
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "{scenario}: the job failed:\n{text}");
    let res = results(&lines);
    let survivors: Vec<u64> = (0..ranks)
        .filter(|r| !victims.contains(&(*r as usize)))
        .collect();
    let finished: Vec<u64> = res.iter().filter_map(|r| r["rank"].as_u64()).collect();
    assert_eq!(finished, survivors, "{scenario}: who finished:\n{text}");
    let killed = stamp(&lines, "KILLED ");
    assert!(!killed.is_empty(), "{scenario}: no victim failed:\n{text}");
    let first_kill = killed.iter().copied().fold(f64::INFINITY, f64::min);
    for r in &res {
        assert_eq!(r["iterations"], ITERS, "{scenario}: {r}");
        assert_eq!(r["uniform"], true, "{scenario}: a half-applied update: {r}");
        if scenario == "gather" {
            assert_eq!(r["sparse_uniform"], true, "{scenario}: sparse vector: {r}");
        }
        let dead: Vec<u64> = r["members"]
            .as_array()
            .map(|m| {
                (0..ranks)
                    .filter(|x| !m.iter().any(|y| y.as_u64() == Some(*x)))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<u64> = victims.iter().map(|v| *v as u64).collect();
        assert_eq!(
            dead, want,
            "{scenario}: survivors disagree on who left: {r}"
        );
        let resumed = r["resumed"].as_array().expect("resumed times");
        assert!(!resumed.is_empty(), "{scenario}: no regroup seen: {r}");
        let noticed = r["noticed"].as_array().expect("noticed times");
        let first = noticed[0].as_f64().expect("time");
        let took = first - first_kill;
        assert!(
            took < 2.0 * T,
            "{scenario}: rank {} learnt of the failure {took:.2} s after it (2T = {} s)",
            r["rank"],
            2.0 * T
        );
    }
    lines
}

#[test]
fn sigkill_during_scatter_survivors_regroup_and_finish() {
    survivors_finish("scatter", &[2], 3);
}

#[test]
fn sigkill_during_gather_survivors_regroup_and_finish() {
    survivors_finish("gather", &[1], 3);
}

/// The allreduce schedule (`vol::allreduce`) loses a rank while the victim
/// writes its shares (reduce-scatter), before it sends anything this round,
/// and some time into its gather (its merge or its all-gather writes): the
/// survivors regroup and finish, and every survivor's values are whole
/// (each is uniform: no share of another round mixed in).
#[test]
fn allreduce_loses_a_rank_mid_schedule_and_the_survivors_finish_whole() {
    let forced = [("FAULT_SCHEDULE", "allreduce")];
    for (scenario, victim) in [
        ("scatter", 2),
        ("gather", 1),
        ("allgather", 3),
        ("allgather", 0),
    ] {
        let lines = survivors_finish_env("shm", 4, scenario, &[victim], 3, &forced);
        let res = results(&lines);
        for r in &res {
            assert_eq!(r["schedule"], "allreduce", "{scenario}: {r}");
            // The same bits on every survivor.
            assert_eq!(r["value"], res[0]["value"], "{scenario}: {r}");
        }
    }
}

#[test]
fn sigkill_during_barrier_survivors_regroup_and_finish() {
    survivors_finish("barrier", &[3], 3);
}

#[test]
fn sigkill_during_ssp_wait_survivors_regroup_and_finish() {
    survivors_finish("ssp", &[2], 3);
}

#[test]
fn rank_zero_may_die_too() {
    survivors_finish("gather", &[0], 3);
}

#[test]
fn a_panicking_rank_is_announced_and_the_others_go_on() {
    let lines = survivors_finish("panic", &[1], 3);
    assert!(
        lines.iter().any(|l| l.contains("rank 1 panicked")),
        "the coordinator must hear of the panic:\n{}",
        lines.join("\n")
    );
}

#[test]
fn tcp_transport_survivors_regroup_and_finish() {
    survivors_finish_on("tcp", 4, "gather", &[2], 3);
}

/// Run by CI inside the soft-RoCE guest (`rxe-setup/ci-verbs.sh`).
#[test]
#[ignore = "requires an RDMA device"]
fn verbs_sigkill_one_of_three_survivors_regroup() {
    survivors_finish_on("verbs", 3, "gather", &[1], 2);
}

#[test]
fn a_second_rank_killed_during_the_regroup_costs_one_more_regroup() {
    let lines = survivors_finish("second", &[1, 3], 2);
    for r in results(&lines) {
        assert!(
            r["regroups"].as_u64().unwrap_or(0) >= 1,
            "survivor saw no regroup: {r}"
        );
    }
}

#[test]
fn below_the_minimum_every_survivor_stops_with_a_quorum_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let start = Instant::now();
    let job = Streaming::launch(4, 2, "gather", "1,2,3");
    let (code, lines) = job.finish(Duration::from_secs(60));
    let text = lines.join("\n");
    assert_ne!(code, Some(0), "the job must fail:\n{text}");
    assert!(code.is_some(), "the launcher had to be killed:\n{text}");
    let quorum: Vec<&String> = lines.iter().filter(|l| l.contains("QUORUM")).collect();
    assert_eq!(
        quorum.len(),
        1,
        "rank 0 must report the quorum loss:\n{text}"
    );
    assert!(quorum[0].contains("minimum of 2"), "{}", quorum[0]);
    let killed = stamp(&lines, "KILLED ");
    let stopped = stamp(&lines, "QUORUM ");
    let first_kill = killed.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        stopped[0] - first_kill < 2.0 * T,
        "quorum error {:.2} s after the failures",
        stopped[0] - first_kill
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_stopped_rank_is_evicted_between_t_half_and_2t_and_told_when_it_resumes() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut job = Streaming::launch(4, 3, "stop", "2");
    let launcher = job.child.id();
    let wait = Duration::from_secs(60);
    let pid = job.pid_of(2, wait);
    let (_, stop_line) = job
        .wait_for(&["[2] ", "STOPPED "], wait)
        .expect("victim stops");
    let stopped_at: f64 = stop_line
        .split_once("STOPPED ")
        .and_then(|(_, t)| t.trim().parse().ok())
        .expect("a time");
    let got = job.wait_for(&["NOTICED "], Duration::from_secs_f64(4.0 * T));
    // Resume the victim whatever happened, so that nothing stays stopped.
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    let (_, line) = got.expect("survivors regroup without the stopped rank");
    let evicted_at: f64 = line
        .split_once("NOTICED ")
        .and_then(|(_, t)| t.split_whitespace().next()?.parse().ok())
        .expect("a time");
    let after = evicted_at - stopped_at;
    assert!(
        after >= T / 2.0,
        "evicted {after:.2} s after stopping (T/2 = {})",
        T / 2.0
    );
    assert!(
        after <= 2.0 * T,
        "evicted {after:.2} s after stopping (2T = {})",
        2.0 * T
    );
    let (code, lines) = job.finish(Duration::from_secs(60));
    let text = lines.join("\n");
    assert_eq!(code, Some(0), "3 of 4 ranks suffice:\n{text}");
    let _ =
        std::fs::remove_file(std::env::temp_dir().join(format!("malt-faults-evicted-{launcher}")));
    let told: Vec<&String> = lines.iter().filter(|l| l.contains("EVICTED")).collect();
    assert_eq!(
        told.len(),
        1,
        "the resumed rank must learn it was evicted:\n{text}"
    );
    assert!(told[0].starts_with("[2]"), "{}", told[0]);
    assert_eq!(results(&lines).len(), 3, "{text}");
}

/// A rank stopped for good is evicted; once the survivors have finished,
/// the launcher ends it (SIGTERM and SIGCONT, then SIGKILL) within a bound
/// that does not depend on `--timeout` (30 s here), exits 0, names the
/// evicted rank on its last line, and leaves no segment file behind.
#[test]
fn a_rank_that_stays_stopped_is_ended_once_the_survivors_finish() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let shm = common::ShmDir::new("stays-stopped");
    let dir = shm.path();
    let mut job = Streaming::launch_env("shm", 4, 3, "stop", "2", &[("MALT_SHM_DIR", &dir)]);
    let wait = Duration::from_secs(60);
    let pid = job.pid_of(2, wait);
    let mut finished = None;
    for rank in [0, 1, 3] {
        let tag = format!("[{rank}] ");
        finished = job
            .wait_for(&[&tag, "RESULT "], wait)
            .map(|(at, _)| finished.map_or(at, |f: Instant| f.max(at)));
        if finished.is_none() {
            break;
        }
    }
    // Bound: the ranks' own exit after their result, then SIGTERM at once
    // for an evicted rank and SIGKILL 3 s later; 2T + 10 s as in the soak.
    let bound = Duration::from_secs_f64(2.0 * T + 10.0);
    let started = Instant::now();
    let (code, lines) = job.finish(bound);
    let exited = started.elapsed();
    // Whatever happened, nothing of ours stays stopped.
    let victim = Pid::from_raw(pid);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    if alive {
        let _ = kill(victim, Signal::SIGKILL);
        let _ = kill(victim, Signal::SIGCONT);
    }
    let text = lines.join("\n");
    assert!(finished.is_some(), "the survivors did not finish:\n{text}");
    assert!(
        code.is_some(),
        "the launcher was still waiting after {bound:?}:\n{text}"
    );
    assert!(exited <= bound, "the launcher took {exited:?}:\n{text}");
    assert_eq!(code, Some(0), "3 of 4 ranks suffice:\n{text}");
    assert!(
        !alive,
        "the stopped rank {pid} outlived the launcher:\n{text}"
    );
    let last = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("malt launch:"))
        .expect("a closing line");
    assert!(last.contains("evicted ranks [2]"), "{last}\n{text}");
    assert_eq!(results(&lines).len(), 3, "{text}");
    assert_eq!(
        shm.files(),
        Vec::<String>::new(),
        "segment files left behind"
    );
}

/// The rank program: a vol exchange of a vector whose elements are all
/// equal, so a half-applied update would show as unequal elements.
#[test]
#[ignore = "rank entry for the fault tests"]
fn fault_rank() {
    let scenario = env("FAULT_SCENARIO");
    let victims: Vec<usize> = env("FAULT_VICTIMS")
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    let group = Group::from_env().expect("join");
    let rank = group.rank();
    let victim = victims.contains(&rank);
    say(format!("PID {}", std::process::id()));
    let consistency = if scenario == "ssp" {
        Consistency::Ssp { s: 2 }
    } else {
        Consistency::Bsp
    };
    let len = if scenario == "scatter" || scenario == "allgather" {
        1 << 22
    } else {
        1024
    };
    let schedule: vol::Schedule = std::env::var("FAULT_SCHEDULE")
        .map(|s| s.parse().expect("FAULT_SCHEDULE"))
        .unwrap_or_default();
    let opts = VectorOptions::new()
        .graph(Graph::All)
        .consistency(consistency)
        .schedule(schedule);
    let sparse_opts = opts.clone().schedule(vol::Schedule::Auto);
    let init = vec![(rank * 10 + 1) as f32; len];
    let mut w = DenseVector::<f32>::from_slice(&group, "w", &init, &opts).expect("vector");
    // For "gather": a sparse vector too, with the same entries on every rank.
    let mut sv = (scenario == "gather").then(|| {
        let mut sv = vol::SparseVec::<u32, f32>::new(&group, "sv", 1 << 20, 64, &sparse_opts)
            .expect("sparse");
        for i in 0..16u32 {
            sv.insert(i * 4099, (rank * 10 + 1) as f32).expect("insert");
        }
        sv
    });
    // For "scatter" ("allgather"): a thread that kills this rank while it
    // is writing (some time into its gather).
    let in_scatter = Arc::new(AtomicBool::new(false));
    if victim && (scenario == "scatter" || scenario == "allgather") {
        let flag = in_scatter.clone();
        // Into the first write; into the merge of 4 MiB shares, or past it.
        let delay = Duration::from_micros(if scenario == "scatter" { 300 } else { 3000 });
        std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            let t = Instant::now();
            while t.elapsed() < delay {
                std::hint::spin_loop();
            }
            say(format!("KILLED {}", unix_now()));
            kill_self(nix::sys::signal::Signal::SIGKILL);
        });
    }
    let mut resumed = Vec::new();
    let mut noticed = Vec::new();
    // The vector's iteration is the loop counter: after a regroup it is the
    // highest any survivor had reached, so every survivor stops together.
    let mut failed_once = false;
    let mut last_schedule = vol::Schedule::Auto;
    let iters: u64 = env("FAULT_ITERS").parse().unwrap_or(ITERS);
    while w.iteration() < iters {
        let i = w.iteration();
        if victim && i == KILL_AT && !failed_once {
            failed_once = true;
            match scenario.as_str() {
                "gather" | "ssp" => {
                    say(format!("KILLED {}", unix_now()));
                    kill_self(nix::sys::signal::Signal::SIGKILL);
                }
                "second" if rank == victims[0] => {
                    say(format!("KILLED {}", unix_now()));
                    kill_self(nix::sys::signal::Signal::SIGKILL);
                }
                "stop" => {
                    say(format!("STOPPED {}", unix_now()));
                    kill_self(nix::sys::signal::Signal::SIGSTOP);
                }
                "scatter" => in_scatter.store(true, Ordering::Release),
                "panic" => {
                    say(format!("KILLED {}", unix_now()));
                    panic!("rank {rank} fails on purpose");
                }
                // The harness cuts the network when it sees this line, then
                // answers on stdin.
                "partition" => {
                    say(format!("KILLED {}", unix_now()));
                    let mut go = String::new();
                    let _ = std::io::stdin().read_line(&mut go);
                }
                _ => {}
            }
        }
        let step = (|| {
            if scenario == "barrier" && i == KILL_AT {
                if victim {
                    say(format!("KILLED {}", unix_now()));
                    kill_self(nix::sys::signal::Signal::SIGKILL);
                }
                w.barrier(&group)?;
            }
            // Every round changes every rank's values (each rank's stay
            // uniform), so a gather that mixed shares or updates of two
            // rounds would leave a vector that is not.
            for x in w.iter_mut() {
                *x += (rank + 1) as f32 * 0.25;
            }
            w.scatter()?;
            if scenario == "allgather" && victim && i == KILL_AT {
                in_scatter.store(true, Ordering::Release);
            }
            last_schedule = w.gather(Udf::Avg)?.schedule;
            if let Some(sv) = sv.as_mut() {
                sv.scatter()?;
                sv.gather(Udf::Avg)?;
            }
            Ok::<(), vol::VolError>(())
        })();
        match step {
            Ok(()) => {}
            Err(e) if e.is_regrouped() => {
                // When this rank learnt of the failure; the regroup and the
                // vectors' rejoin come after.
                let now = unix_now();
                say(format!("NOTICED {now}"));
                noticed.push(now);
                if scenario == "second" && victims.get(1) == Some(&rank) {
                    // Dies in the middle of the survivors' regroup.
                    say(format!("KILLED {}", unix_now()));
                    kill_self(nix::sys::signal::Signal::SIGKILL);
                }
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    group.regroup().expect("regroup");
                    let rejoined = w.rejoin(&group).and_then(|()| match sv.as_mut() {
                        Some(sv) => sv.rejoin(&group),
                        None => Ok(()),
                    });
                    match rejoined {
                        Ok(()) => break,
                        Err(e) if e.is_regrouped() && Instant::now() < deadline => continue,
                        Err(e) => panic!("rejoin: {e}"),
                    }
                }
                let now = unix_now();
                say(format!("REGROUPED {now} epoch {}", group.epoch()));
                resumed.push(now);
            }
            Err(e) => {
                let tag = match &e {
                    vol::VolError::Dstorm(dstorm::Error::Evicted { .. }) => "EVICTED",
                    vol::VolError::Dstorm(dstorm::Error::Quorum { .. }) => "QUORUM",
                    _ => "ERROR",
                };
                say(format!("{tag} {} {e}", unix_now()));
                if tag == "EVICTED" {
                    let _ = std::fs::write(evicted_mark(), b"");
                }
                std::process::exit(3);
            }
        }
    }
    if scenario == "stop" {
        // The launcher ends an evicted rank once the survivors are done:
        // give the resumed victim time to learn of its eviction (bounded;
        // nothing notifies a file's creation, so look every 10 ms).
        let until = Instant::now() + Duration::from_secs(10);
        while !evicted_mark().exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let first = w[0];
    let uniform = w.iter().all(|x| *x == first && x.is_finite());
    common::report(json!({
        "rank": rank,
        "iterations": w.iteration(),
        "uniform": uniform,
        "sparse_uniform": sv.as_ref().map(|sv| {
            let first = sv.as_sparse().iter().next().map(|(_, v)| v);
            sv.nnz() == 16 && sv.as_sparse().iter().all(|(_, v)| Some(v) == first)
        }),
        "value": first,
        "schedule": last_schedule.to_string(),
        "members": group.members(),
        "regroups": resumed.len(),
        "resumed": resumed,
        "noticed": noticed,
    }));
    drop(sv);
    drop(w);
    group.finish().expect("finish");
}

/// The file an evicted rank makes once it has said so, named after its
/// launcher (the ranks' parent).
fn evicted_mark() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "malt-faults-evicted-{}",
        std::os::unix::process::parent_id()
    ))
}

/// `malt launch -n 4 --min-ranks 3 -- malt train APP ARGS --json --out OUT`.
fn train_job(out: &std::path::Path, app_args: &[&str]) -> Command {
    let mut cmd = Command::new(malt());
    cmd.args([
        "launch",
        "-n",
        "4",
        "--min-ranks",
        "3",
        "--fail-timeout",
        &T.to_string(),
        "--",
        malt(),
        "train",
    ])
    .args(app_args)
    .args(["--quiet", "--json", "--out"])
    .arg(out)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn summary(stdout: &str, app: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .find(|v| v["app"] == app)
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"))
}

/// Runs a 4-rank training job without a fault, then again with rank 2
/// SIGKILLed once rank 0's `metrics.csv` has `half` lines. Returns both
/// summaries and the time of the kill.
fn train_with_a_kill(
    app: &str,
    app_args: &[&str],
    half: usize,
) -> (serde_json::Value, serde_json::Value, f64) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let base = std::env::temp_dir().join(format!("malt-faults-{app}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let clean = common::run_with_deadline(
        train_job(&base.join("clean"), app_args),
        Duration::from_secs(120),
    );
    assert_eq!(clean.code, Some(0), "{}", clean.stderr);
    let clean = summary(&clean.stdout, app);

    let out = base.join("faulty");
    let mut child = train_job(&out, app_args).spawn().expect("spawn");
    let launcher = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    // The job's exit arrives on a channel; a thread owns the launcher.
    let (done_tx, done) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait().ok();
        let _ = done_tx.send(status);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed_at = None;
    let mut status = None;
    while Instant::now() < deadline {
        let lines = std::fs::read_to_string(out.join("metrics.csv"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if lines >= half {
            let pid = common::child_with_rank(launcher, 2).expect("rank 2 is running");
            kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill rank 2");
            killed_at = Some(unix_now());
            break;
        }
        // metrics.csv has no notification: look again after 5 ms, unless
        // the job ends first.
        if let Ok(s) = done.recv_timeout(Duration::from_millis(5)) {
            status = Some(s);
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => match done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(s) => s,
            Err(_) => {
                // Stop it as malt launch is stopped: its ranks with it.
                let pid = Pid::from_raw(launcher as i32);
                let _ = kill(pid, Signal::SIGTERM);
                if done.recv_timeout(Duration::from_secs(5)).is_err() {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                None
            }
        },
    };
    let _ = waiter.join();
    let killed_at = killed_at.expect("the job reached half its epochs");
    let (stdout, stderr) = (to.join().unwrap(), te.join().unwrap());
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the job must succeed with 3 of 4 ranks:\n{stderr}"
    );
    let faulty = summary(&stdout, app);
    assert_eq!(faulty["ranks"], 3, "{faulty}");
    let regroups = faulty["regroups"].as_array().expect("regroups reported");
    assert_eq!(regroups.len(), 1, "{faulty}");
    assert_eq!(regroups[0]["dead"], json!([2]));
    let resumed = regroups[0]["resumed_unix_s"].as_f64().unwrap();
    assert!(
        resumed - killed_at < 2.0 * T,
        "training resumed {:.2} s after the kill",
        resumed - killed_at
    );
    // Every example was still trained on: the survivors took over rank 2's.
    assert_eq!(faulty["train_examples"], clean["train_examples"]);
    let _ = std::fs::remove_dir_all(&base);
    (clean, faulty, killed_at)
}

#[test]
fn svm_training_survives_a_rank_killed_halfway() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // 40 epochs; metrics.csv holds a header, the initial point, then one
    // line per epoch: 22 lines is halfway.
    let args = [
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
    ];
    let (clean, faulty, killed_at) = train_with_a_kill("svm", &args, 22);
    let resumed = faulty["regroups"][0]["resumed_unix_s"].as_f64().unwrap();
    println!(
        "RECOVERY {{\"kill_to_resume_s\":{:.4},\"test_error_clean\":{},\"test_error_faulty\":{}}}",
        resumed - killed_at,
        clean["test_error"],
        faulty["test_error"]
    );
    let (e0, e1) = (
        clean["test_error"].as_f64().unwrap(),
        faulty["test_error"].as_f64().unwrap(),
    );
    assert!(
        (e1 - e0).abs() <= 0.01,
        "test error {e1} with a rank killed, {e0} without"
    );
}

#[test]
fn mf_training_survives_a_rank_killed_halfway() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = [
        "mf",
        "--synth-users",
        "20000",
        "--synth-items",
        "5000",
        "--synth-ratings",
        "2000000",
        "--epochs",
        "20",
    ];
    let (clean, faulty, _) = train_with_a_kill("mf", &args, 12);
    let (r0, r1) = (
        clean["test_rmse"].as_f64().unwrap(),
        faulty["test_rmse"].as_f64().unwrap(),
    );
    // Averaging three models instead of four often ends lower: only a
    // loss of quality is a failure.
    assert!(
        r1 <= r0 + 0.01,
        "test RMSE {r1} with a rank killed, {r0} without"
    );
}

/// Two network namespaces joined by a veth pair: ranks in the root
/// namespace at 10.77.0.1, one rank in `malt-ft` at 10.77.0.2; netem on
/// either end shapes one direction. Removed on drop.
struct Netns;

const NETNS: &str = "malt-ft";

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).output();
        let _ = Command::new("ip").args(["link", "del", "malt-vr"]).output();
        sh(&["ip", "netns", "add", NETNS]);
        sh(&[
            "ip", "link", "add", "malt-vr", "type", "veth", "peer", "name", "malt-vb",
        ]);
        sh(&["ip", "link", "set", "malt-vb", "netns", NETNS]);
        sh(&["ip", "addr", "add", "10.77.0.1/24", "dev", "malt-vr"]);
        sh(&["ip", "link", "set", "malt-vr", "up"]);
        let inns = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", NETNS];
            v.extend_from_slice(a);
            sh(&v);
        };
        inns(&["ip", "addr", "add", "10.77.0.2/24", "dev", "malt-vb"]);
        inns(&["ip", "link", "set", "malt-vb", "up"]);
        inns(&["ip", "link", "set", "lo", "up"]);
        Netns
    }

    /// netem on traffic from the root namespace to the other one.
    fn shape_out(&self, netem: &str) {
        let mut a = vec!["tc", "qdisc", "replace", "dev", "malt-vr", "root", "netem"];
        a.extend(netem.split_whitespace());
        sh(&a);
    }

    /// netem on traffic from the other namespace to the root one.
    fn shape_back(&self, netem: &str) {
        let mut a = vec![
            "ip", "netns", "exec", NETNS, "tc", "qdisc", "replace", "dev", "malt-vb", "root",
            "netem",
        ];
        a.extend(netem.split_whitespace());
        sh(&a);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).output();
        let _ = Command::new("ip").args(["link", "del", "malt-vr"]).output();
    }
}

/// Four tcp ranks, rank 3 in the other namespace, rank 0 hosting the
/// coordinator; `cut` is called when rank 3 reaches the failure point.
fn namespaced_job(iters: u64, cut: impl FnOnce()) -> (Vec<String>, Vec<serde_json::Value>) {
    let me = std::env::current_exe().expect("current_exe");
    let port = common::free_port().to_string();
    let token = format!("netns-{}", std::process::id());
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut children = Vec::new();
    let mut victim_stdin = None;
    for rank in 0..4usize {
        let mut cmd = if rank == 3 {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", NETNS]).arg(&me);
            c
        } else {
            Command::new(&me)
        };
        cmd.args([
            "--exact",
            "fault_rank",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MALT_RANK", rank.to_string())
        .env("MALT_WORLD_SIZE", "4")
        .env("MALT_JOB_TOKEN", &token)
        .env("MALT_MASTER_ADDR", "10.77.0.1")
        .env("MALT_MASTER_PORT", &port)
        .env("MALT_TRANSPORT", "tcp")
        .env(
            "MALT_DATA_ADDR",
            if rank == 3 { "10.77.0.2" } else { "10.77.0.1" },
        )
        .env("MALT_MIN_RANKS", "3")
        .env("MALT_FAIL_TIMEOUT", T.to_string())
        .env("MALT_TIMEOUT", "20")
        .env("FAULT_SCENARIO", "partition")
        .env("FAULT_VICTIMS", "3")
        .env("FAULT_ITERS", iters.to_string())
        .stdin(if rank == 3 {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn rank");
        if rank == 3 {
            victim_stdin = child.stdin.take();
        }
        let out = child.stdout.take().expect("stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((rank, l));
            }
        });
        children.push(child);
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    let mut cut = Some(cut);
    let mut finished = 0;
    while finished < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((rank, l)) = rx.recv_timeout(left) else {
            break;
        };
        if rank == 3 && l.contains("KILLED ") {
            if let Some(c) = cut.take() {
                c();
                // Rank 3 waits for this before it goes on.
                if let Some(mut stdin) = victim_stdin.take() {
                    use std::io::Write;
                    let _ = writeln!(stdin, "go");
                }
            }
        }
        if rank != 3 && l.starts_with("RESULT ") {
            finished += 1;
        }
        lines.push(format!("[{rank}] {l}"));
    }
    // The isolated rank may still be waiting: it is ours to stop.
    for c in &mut children {
        if !matches!(c.try_wait(), Ok(Some(_))) {
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end && !matches!(c.try_wait(), Ok(Some(_))) {
                if let Ok((rank, l)) = rx.recv_timeout(Duration::from_millis(50)) {
                    lines.push(format!("[{rank}] {l}"));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let res = results(&lines);
    (lines, res)
}

/// Run by CI inside the soft-RoCE guest, whose kernel has netem.
#[test]
#[ignore = "needs root, network namespaces and netem"]
fn tcp_between_namespaces_delay_loss_and_asymmetric_drops() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ns = Netns::new();
    // A delay of T/4 each way is slow, not dead: nobody is evicted.
    ns.shape_out(&format!("delay {}ms", (T * 250.0) as u64));
    ns.shape_back(&format!("delay {}ms", (T * 250.0) as u64));
    let (lines, res) = namespaced_job(6, || {});
    let text = lines.join("\n");
    assert_eq!(res.len(), 4, "every rank finishes:\n{text}");
    for r in &res {
        assert_eq!(r["regroups"], 0, "{r}");
        assert_eq!(r["members"], json!([0, 1, 2, 3]), "{r}");
    }
    drop(ns);
    type Cut = fn(&Netns);
    let cases: [(&str, Cut); 3] = [
        ("100% loss both ways", |n| {
            n.shape_out("loss 100%");
            n.shape_back("loss 100%");
        }),
        ("rank 3 unheard", |n| n.shape_back("loss 100%")),
        ("rank 3 deaf", |n| n.shape_out("loss 100%")),
    ];
    for (what, cut) in cases {
        let ns = Netns::new();
        let (lines, res) = namespaced_job(ITERS, || cut(&ns));
        let text = lines.join("\n");
        let ranks: Vec<u64> = res.iter().filter_map(|r| r["rank"].as_u64()).collect();
        assert_eq!(
            ranks,
            vec![0, 1, 2],
            "{what}: the survivors finish:\n{text}"
        );
        for r in &res {
            assert_eq!(r["members"], json!([0, 1, 2]), "{what}: one group: {r}");
            assert_eq!(r["uniform"], true, "{what}: {r}");
        }
        drop(ns);
    }
}

/// A network namespace whose loopback is limited to `rate` by tbf (with an
/// MTU of 1500, so that every packet fits the bucket). Removed on drop.
struct SlowLoopback;

const SLOW_NETNS: &str = "malt-slow";

impl SlowLoopback {
    fn new(rate: &str) -> SlowLoopback {
        let _ = Command::new("ip")
            .args(["netns", "del", SLOW_NETNS])
            .output();
        sh(&["ip", "netns", "add", SLOW_NETNS]);
        let inns = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", SLOW_NETNS];
            v.extend_from_slice(a);
            sh(&v);
        };
        inns(&["ip", "link", "set", "lo", "mtu", "1500"]);
        inns(&["ip", "link", "set", "lo", "up"]);
        inns(&[
            "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst", "64kbit",
            "latency", "200ms",
        ]);
        SlowLoopback
    }
}

impl Drop for SlowLoopback {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", SLOW_NETNS])
            .output();
    }
}

/// A link so slow that one update takes longer than T to cross it is slow,
/// not dead: the heartbeats that would queue behind the update on the same
/// tcp connection are skipped, and the update's bytes count as signs of
/// life. Run by CI inside the soft-RoCE guest (root, namespaces, tbf).
#[test]
#[ignore = "needs root, network namespaces and tbf"]
fn an_update_that_takes_longer_than_t_on_a_slow_link_is_not_a_failure() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _ns = SlowLoopback::new("16mbit");
    // 4 MiB each way through 2 MB/s: about 4 s per round, twice T.
    common::slow_updates_are_not_failures(
        &["ip", "netns", "exec", SLOW_NETNS],
        "tcp",
        T as u32,
        4 << 20,
    );
}
