//! The fault monitor of a rank: a thread that writes a heartbeat into every
//! member's heartbeat segment, one-sided like any update, and reports to the
//! coordinator each member whose heartbeat has not moved for the failure
//! timeout `T` or whose segment cannot be written. The coordinator decides
//! ([`crate::fault::Decider`]); the monitor only reports.
//!
//! The heartbeat comes from this thread, not from the training loop, so a
//! long computation between two `scatter()` calls is not a failure; a
//! stopped or hung process, a dead host or a cut link is.
//!
//! On a stream transport (tcp) a heartbeat would queue behind a large
//! update on the same connection: an update that takes longer than `T` to
//! cross a slow link would look like silence. So a heartbeat to a peer whose
//! link is busy is skipped rather than queued (the monitor keeps beating to
//! everyone else), and bytes arriving from a peer count as a heartbeat from
//! it.

use crate::control::View;
use crate::error::{Error, Result};
use crate::object::Object;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Name of the object that carries heartbeats.
pub(crate) const HEARTBEAT_OBJECT: &str = "malt:heartbeat";

/// Heartbeats per failure timeout.
const BEATS_PER_TIMEOUT: u32 = 8;

/// The running monitor; stops when dropped.
#[derive(Debug)]
pub(crate) struct Monitor {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn start(beats: Object, view: Arc<View>, fail_timeout: Duration) -> Result<Monitor> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("malt-monitor".into())
            .spawn(move || run(beats, view, fail_timeout, stopped))
            .map_err(|source| Error::Control {
                op: "spawn fault monitor",
                source,
            })?;
        Ok(Monitor {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut beats: Object, view: Arc<View>, t: Duration, stopped: mpsc::Receiver<()>) {
    let interval = (t / BEATS_PER_TIMEOUT).max(Duration::from_millis(5));
    let rank = view.rank();
    let world = beats.counters().peers.len();
    let start = Instant::now();
    let mut last_seen = vec![start; world];
    // What had arrived from each peer at the last look: progress through a
    // long update counts as a heartbeat, since the peer's heartbeats wait
    // behind that update.
    let mut arrived: Vec<Option<u64>> = (0..world).map(|p| beats.arrivals(p)).collect();
    let mut reported: Vec<Option<Instant>> = vec![None; world];
    let mut buf = vec![0u8; beats.capacity()];
    let mut beat: u64 = 0;
    loop {
        match stopped.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if view.ended() {
            return;
        }
        beat += 1;
        let members = view.members();
        for &p in members.iter().filter(|p| **p != rank) {
            // A busy link carries an update to `p` right now; its bytes tell
            // `p` that this rank lives, so the beat is skipped, not queued.
            if let Err(e) = beats.try_write(p, &beat.to_le_bytes(), beat) {
                report(
                    &view,
                    &mut reported,
                    p,
                    t,
                    format!("heartbeat write failed: {e}"),
                );
            }
        }
        // Bounded: at most a few heartbeats per peer can be queued.
        for _ in 0..4 * world {
            match beats.poll(&mut buf) {
                Ok(Some(u)) => last_seen[u.sender] = Instant::now(),
                _ => break,
            }
        }
        let now = Instant::now();
        for &p in members.iter().filter(|p| **p != rank) {
            let now_arrived = beats.arrivals(p);
            if now_arrived != arrived[p] {
                arrived[p] = now_arrived;
                last_seen[p] = now;
            }
            let silent = now.saturating_duration_since(last_seen[p]);
            if silent >= t {
                report(
                    &view,
                    &mut reported,
                    p,
                    t,
                    format!("no heartbeat for {:.1} s", silent.as_secs_f64()),
                );
            }
        }
    }
}

/// Reports `peer`, at most once per failure timeout.
fn report(view: &View, reported: &mut [Option<Instant>], peer: usize, t: Duration, why: String) {
    let now = Instant::now();
    if reported[peer].is_some_and(|at| now.saturating_duration_since(at) < t) {
        return;
    }
    reported[peer] = Some(now);
    view.suspect(peer, why);
}
