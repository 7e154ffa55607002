//! CPU time and core placement for the benchmarks.
//!
//! CPU time is `getrusage(RUSAGE_SELF)`: user plus system time of every
//! thread of the process, so a rank that spins (or has a helper thread spin)
//! pays for it. Placement pins a rank to one of the CPUs the process may run
//! on, by the same rule the peer programs in `benches/peers` use: the
//! (rank mod k)-th of the k allowed CPUs.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;
use nix::unistd::Pid;

fn secs(t: TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6
}

/// User plus system CPU seconds used so far by this process (all threads);
/// 0 if the kernel does not say.
pub fn cpu_secs() -> f64 {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => secs(u.user_time()) + secs(u.system_time()),
        Err(_) => 0.0,
    }
}

/// Pins the calling thread, and the threads it starts afterwards, to the
/// (rank mod k)-th of the k CPUs this process may run on. Returns the CPU.
pub fn pin(rank: usize) -> nix::Result<usize> {
    let me = Pid::from_raw(0);
    let allowed = sched_getaffinity(me)?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let Some(&cpu) = cpus.get(rank % cpus.len().max(1)) else {
        return Err(nix::Error::EINVAL);
    };
    let mut one = CpuSet::new();
    one.set(cpu)?;
    sched_setaffinity(me, &one)?;
    Ok(cpu)
}

/// Pins this process by its rank in the job (`MALT_RANK`), before it joins
/// the group so that every thread the runtime starts inherits the placement.
/// Prints why when it cannot.
pub fn pin_from_env(what: &str) {
    let rank = std::env::var("MALT_RANK")
        .ok()
        .and_then(|r| r.parse::<usize>().ok());
    match rank.map(pin) {
        Some(Ok(_)) => {}
        Some(Err(e)) => eprintln!("{what}: cannot pin this rank to a CPU: {e}"),
        None => eprintln!("{what}: --pin needs MALT_RANK (run inside a job)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_secs();
        let mut x = 0u64;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let used = cpu_secs() - before;
        assert!(used > 0.02, "50 ms of spinning counted as {used} s");
    }

    #[test]
    fn pinning_leaves_one_allowed_cpu() {
        // Runs on the test's own thread: affinity is per thread.
        let me = Pid::from_raw(0);
        let allowed = sched_getaffinity(me).expect("affinity");
        let cpu = pin(1).expect("pin");
        assert!(allowed.is_set(cpu).expect("in range"));
        let now = sched_getaffinity(me).expect("affinity");
        let set: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| now.is_set(c).unwrap_or(false))
            .collect();
        assert_eq!(set, vec![cpu]);
    }
}
