//! How busy the machine was during a run, apart from the run itself: the
//! CPU time every process spent (`/proc/stat`) minus what this process and
//! the children it waited for spent (`getrusage`), per second of the run.
//! A comparison of two runs means little when other work took a share of
//! the cores during one of them; `--compare-single` reports it.

use std::time::Instant;

/// Other processes' use, in cores, above which a run counts as disturbed.
pub const BUSY_CORES: f64 = 0.25;

/// A reading at the start of a run.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    start: Instant,
    machine: Option<f64>,
    own: f64,
}

/// What a run's wall time shared the machine with.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    /// Wall seconds of the run.
    pub seconds: f64,
    /// Cores other processes kept busy on average during the run; `None`
    /// where the machine's CPU time cannot be read (not Linux).
    pub others_cores: Option<f64>,
}

impl Load {
    /// Whether other processes used at least [`BUSY_CORES`].
    pub fn busy(&self) -> bool {
        self.others_cores.is_some_and(|c| c >= BUSY_CORES)
    }
}

impl Meter {
    /// Reads the clocks now.
    pub fn start() -> Meter {
        Meter {
            start: Instant::now(),
            machine: machine_busy_seconds(),
            own: own_cpu_seconds(),
        }
    }

    /// The load since [`start`](Self::start).
    pub fn stop(&self) -> Load {
        let seconds = self.start.elapsed().as_secs_f64();
        let others = match (self.machine, machine_busy_seconds()) {
            (Some(a), Some(b)) if seconds > 0.0 => {
                let own = own_cpu_seconds() - self.own;
                Some(((b - a - own) / seconds).max(0.0))
            }
            _ => None,
        };
        Load {
            seconds,
            others_cores: others,
        }
    }
}

/// Seconds of CPU time the whole machine has spent busy (user, nice,
/// system, irq, softirq, steal), from `/proc/stat`.
fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    busy_from_stat(&text, clock_ticks())
}

fn busy_from_stat(text: &str, ticks: f64) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| f.get(i))
        .sum::<f64>();
    (f.len() >= 8).then_some(busy / ticks)
}

fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// CPU seconds of this process and of the children it has waited for.
fn own_cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let secs = |who| {
        getrusage(who).map_or(0.0, |u| {
            let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 * 1e-6;
            t(u.user_time()) + t(u.system_time())
        })
    };
    secs(UsageWho::RUSAGE_SELF) + secs(UsageWho::RUSAGE_CHILDREN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_time_is_every_state_but_idle_and_iowait() {
        let stat = "cpu  100 20 30 1000 50 5 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(busy_from_stat(stat, 100.0), Some(1.68));
        assert_eq!(busy_from_stat("cpu0 1 2\n", 100.0), None);
        assert_eq!(busy_from_stat("cpu  1 2 x\n", 100.0), None);
    }

    #[test]
    fn a_meter_counts_this_processes_work_as_its_own() {
        let m = Meter::start();
        // Half a second of work on this thread.
        let until = Instant::now() + std::time::Duration::from_millis(500);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let l = m.stop();
        assert!(l.seconds >= 0.5);
        if let Some(c) = l.others_cores {
            // Other processes may run meanwhile, but this thread's own
            // core is never counted as theirs.
            assert!((0.0..=f64::from(u16::MAX)).contains(&c), "{c}");
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            assert!(c <= cores - 0.5, "{c} of {cores} cores counted as others'");
        }
    }
}
