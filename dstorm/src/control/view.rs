//! What a rank knows about its group: the epoch, the members, and whether
//! the group has ended for it. The control channel's reader thread keeps it
//! current; objects and collectives consult it before and while they wait,
//! so a regroup, an eviction or a quorum loss interrupts every wait at once
//! instead of at its timeout.

use crate::control::{self, FromMaster, ToMaster};
use crate::error::{Error, Result};
use crate::segment::Region;
use crate::transport::Transport;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Why the group is over for this rank.
#[derive(Debug, Clone)]
enum End {
    Evicted { epoch: u32, reason: String },
    Quorum { alive: Vec<usize>, min: usize },
    Aborted(String),
    Mismatch(String),
    Late(String),
    Lost(String),
}

/// A collective round that has waited a while, as the coordinator told.
#[derive(Debug, Clone)]
struct Stalled {
    epoch: u32,
    round: u64,
    op: String,
    arrived: Vec<usize>,
}

#[derive(Debug)]
struct State {
    members: Vec<usize>,
    dead: Vec<usize>,
    end: Option<End>,
    leaving: bool,
    stalled: Option<Stalled>,
}

/// A rank's view of its group's membership.
#[derive(Debug)]
// Its fields are what the reader thread learns and every wait consults: the
// membership behind a lock, the lock-free flags beside it for the data path,
// and the coordinator it reports to.
pub(crate) struct View {
    rank: usize,
    epoch: AtomicU32,
    /// `state.end` is set: lets the data path check without the lock.
    over: AtomicBool,
    /// `state.stalled` is set (likewise).
    stalled: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    regions: Mutex<Vec<Weak<Region>>>,
    writer: Arc<Mutex<TcpStream>>,
    transport: Arc<dyn Transport>,
    /// A lost coordinator may be replaced (see [`crate::control::failover`]): a
    /// message that cannot be sent meanwhile is not an error, since the
    /// takeover's regroup, or the end of the group, interrupts every wait.
    pub(crate) failover: bool,
    /// The coordinator this rank took over, once it has: signalled when
    /// every rank has left it.
    hosted: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// The rank whose process runs the coordinator (`None`: outside the
    /// ranks, under `malt launch`).
    host: Mutex<Option<usize>>,
    /// The epoch in which this rank first suspected the coordinator's host
    /// without anything happening since (see [`View::suspect`]).
    host_suspected: Mutex<Option<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl View {
    pub fn new(
        rank: usize,
        world: usize,
        epoch: u32,
        writer: Arc<Mutex<TcpStream>>,
        transport: Arc<dyn Transport>,
        failover: bool,
        host: Option<usize>,
    ) -> View {
        View {
            rank,
            epoch: AtomicU32::new(epoch),
            over: AtomicBool::new(false),
            state: Mutex::new(State {
                members: (0..world).collect(),
                dead: Vec::new(),
                end: None,
                leaving: false,
                stalled: None,
            }),
            stalled: AtomicBool::new(false),
            changed: Condvar::new(),
            regions: Mutex::new(Vec::new()),
            writer,
            transport,
            failover,
            hosted: Mutex::new(None),
            host: Mutex::new(host),
            host_suspected: Mutex::new(None),
        }
    }

    /// Sends from now on to the coordinator that took over, in rank
    /// `host`'s process.
    pub fn reconnected(&self, w: TcpStream, host: usize) {
        *lock(&self.writer) = w;
        *lock(&self.host) = Some(host);
        *lock(&self.host_suspected) = None;
    }

    /// This rank now hosts the coordinator, which signals `done`.
    pub fn set_hosted(&self, done: std::sync::mpsc::Receiver<()>) {
        *lock(&self.hosted) = Some(done);
    }

    /// The coordinator this rank took over, if it did.
    pub fn take_hosted(&self) -> Option<std::sync::mpsc::Receiver<()>> {
        lock(&self.hosted).take()
    }

    /// Under `malt launch` (the coordinator outside the ranks), whether the
    /// launcher is gone: this rank's parent is no longer the launcher it
    /// was started by (`MALT_LAUNCHER_PID`), while the group still ran.
    /// A dying process closes its sockets before its children get another
    /// parent, so the broken connection may come first: look for up to 2 s.
    pub fn orphaned(&self) -> bool {
        if lock(&self.host).is_some() || lock(&self.state).leaving || self.ended() {
            return false;
        }
        launcher_gone(Duration::from_secs(2))
    }

    /// Removes what this rank made that outlives the process.
    pub fn remove_own(&self) {
        self.transport.remove_own();
    }

    /// Whether the group still runs for this rank: a lost coordinator is
    /// worth replacing.
    pub fn may_fail_over(&self) -> bool {
        self.failover && !self.ended() && !lock(&self.state).leaving
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The latest epoch decided by the coordinator.
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Current members, ascending.
    pub fn members(&self) -> Vec<usize> {
        lock(&self.state).members.clone()
    }

    /// Every rank that has left the group, ascending.
    pub fn dead(&self) -> Vec<usize> {
        lock(&self.state).dead.clone()
    }

    /// `Ok` while the group is intact and still in `epoch`; otherwise the
    /// typed reason (regrouped, evicted, quorum lost, aborted).
    pub fn check(&self, epoch: u32) -> Result<()> {
        // Every write and every wait asks: answer the common case with two
        // loads, not a lock.
        if !self.over.load(Ordering::Acquire) && self.epoch() == epoch {
            return Ok(());
        }
        let st = lock(&self.state);
        if let Some(end) = &st.end {
            return Err(match end.clone() {
                End::Evicted { epoch, reason } => Error::Evicted {
                    rank: self.rank,
                    epoch,
                    reason,
                },
                End::Quorum { alive, min } => Error::Quorum { alive, min },
                End::Aborted(reason) => Error::Aborted(reason),
                End::Mismatch(reason) => Error::CallMismatch(reason),
                End::Late(reason) => Error::Late(reason),
                End::Lost(why) => Error::Control {
                    op: "membership",
                    source: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why),
                },
            });
        }
        let now = self.epoch();
        if now != epoch {
            return Err(Error::Regrouped {
                epoch: now,
                dead: st.dead.clone(),
                members: st.members.clone(),
            });
        }
        Ok(())
    }

    /// Whether the group has ended for this rank.
    pub fn ended(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// Waits (bounded) until the epoch moves past `epoch` or the group ends.
    pub fn wait_change(&self, epoch: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.state);
        loop {
            if st.end.is_some() || self.epoch() != epoch {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wakes waits parked on `region` when the membership changes.
    pub fn register(&self, region: &Arc<Region>) {
        let mut regions = lock(&self.regions);
        regions.retain(|w| w.strong_count() > 0);
        regions.push(Arc::downgrade(region));
    }

    fn send(&self, msg: &ToMaster) {
        let mut w = lock(&self.writer);
        if let Err(e) = control::send(&mut *w, msg) {
            tracing::debug!(error = %e, "control message not sent");
        }
    }

    /// Sends this rank's part of a collective round.
    pub fn send_gather(
        &self,
        epoch: u32,
        round: u64,
        op: &str,
        data: String,
    ) -> std::io::Result<()> {
        let msg = ToMaster::Gather {
            epoch,
            round,
            data,
            op: op.to_owned(),
        };
        match control::send(&mut *lock(&self.writer), &msg) {
            Err(e) if self.failover => {
                tracing::debug!(error = %e, "gather not sent: waiting for a takeover");
                Ok(())
            }
            r => r,
        }
    }

    /// Reports that this rank has not heard from `peer`. When `peer` hosts
    /// the coordinator, the coordinator may be as silent as its host, and
    /// then nobody acts on the report. In a job that may fail over, a rank
    /// that still suspects the host when the monitor reports it again (a
    /// failure timeout later) with nothing decided meanwhile drops its
    /// connection and looks for the next coordinator; the first report
    /// still goes to the coordinator, which acts on it when alive (this
    /// rank may be the one cut off). Otherwise the group ends here, naming
    /// that rank.
    pub fn suspect(&self, peer: usize, reason: String) {
        tracing::warn!(peer, %reason, "suspecting a peer");
        let host = *lock(&self.host) == Some(peer);
        if !host || self.failover {
            self.send(&ToMaster::Suspect {
                peer,
                reason: reason.clone(),
            });
        }
        if !host {
            return;
        }
        if self.failover {
            let mut first = lock(&self.host_suspected);
            if *first == Some(self.epoch()) {
                // The reader thread sees the connection end and fails over.
                tracing::warn!(peer, "the coordinator's host stays silent: failing over");
                let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
            } else {
                *first = Some(self.epoch());
            }
            return;
        }
        let mut st = lock(&self.state);
        if st.leaving {
            return;
        }
        st.end.get_or_insert(End::Aborted(format!(
            "rank {peer}, which hosts the coordinator, is suspected dead: {reason}"
        )));
        self.over.store(true, Ordering::Release);
        drop(st);
        self.wake();
    }

    /// The call `rank` waits in, when the coordinator said that a
    /// collective round has waited a while with `rank` in it.
    pub fn in_collective(&self, rank: usize) -> Option<String> {
        if !self.stalled.load(Ordering::Acquire) {
            return None;
        }
        let st = lock(&self.state);
        st.stalled
            .as_ref()
            .filter(|s| s.epoch == self.epoch() && s.arrived.contains(&rank))
            .map(|s| s.op.clone())
    }

    /// Ends the job everywhere: the ranks made different calls (`reason`
    /// names them). This rank's own waits end at once.
    pub fn report_mismatch(&self, reason: String) {
        self.send(&ToMaster::Mismatch {
            reason: reason.clone(),
        });
        let mut st = lock(&self.state);
        st.end.get_or_insert(End::Mismatch(reason));
        self.over.store(true, Ordering::Release);
        drop(st);
        self.wake();
    }

    /// Tells the coordinator this rank is going down.
    pub fn announce_failure(&self, reason: String) {
        self.send(&ToMaster::Failing { reason });
    }

    /// Says goodbye: `clean` after the final barrier.
    pub fn bye(&self, clean: bool) {
        lock(&self.state).leaving = true;
        self.send(&ToMaster::Bye { clean });
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Write);
    }

    /// Applies a message from the coordinator; called by the reader thread.
    pub fn apply(&self, msg: &FromMaster) {
        let mut st = lock(&self.state);
        match msg {
            FromMaster::Regroup {
                epoch,
                members,
                dead,
            } => {
                if *epoch <= self.epoch() || st.end.is_some() {
                    return;
                }
                tracing::warn!(epoch, ?members, ?dead, "group regrouped");
                st.members = members.clone();
                st.dead = dead.clone();
                self.transport.set_epoch(*epoch);
                self.transport.forget(dead);
                self.epoch.store(*epoch, Ordering::Release);
            }
            FromMaster::Evicted { epoch, reason } => {
                st.end.get_or_insert(End::Evicted {
                    epoch: *epoch,
                    reason: reason.clone(),
                });
            }
            FromMaster::Quorum { alive, min } => {
                st.end.get_or_insert(End::Quorum {
                    alive: alive.clone(),
                    min: *min,
                });
            }
            FromMaster::Aborted { reason } => {
                st.end.get_or_insert(End::Aborted(reason.clone()));
            }
            FromMaster::Mismatched { reason } => {
                st.end.get_or_insert(End::Mismatch(reason.clone()));
            }
            FromMaster::Late { reason } => {
                st.end.get_or_insert(End::Late(reason.clone()));
            }
            FromMaster::Waiting {
                epoch,
                round,
                op,
                arrived,
            } => {
                st.stalled = Some(Stalled {
                    epoch: *epoch,
                    round: *round,
                    op: op.clone(),
                    arrived: arrived.clone(),
                });
                self.stalled.store(true, Ordering::Release);
                drop(st);
                // Waits for a peer that is in this round look again.
                self.wake();
                return;
            }
            FromMaster::Gathered { round, .. } | FromMaster::Failed { round, .. } => {
                if st.stalled.as_ref().is_some_and(|s| s.round == *round) {
                    st.stalled = None;
                    self.stalled.store(false, Ordering::Release);
                }
                return;
            }
            _ => return,
        }
        self.over.store(st.end.is_some(), Ordering::Release);
        drop(st);
        self.wake();
    }

    /// The control connection is gone.
    pub fn lost(&self) {
        let mut st = lock(&self.state);
        if st.leaving {
            return;
        }
        st.end.get_or_insert(End::Lost(
            "the coordinator closed the control channel".into(),
        ));
        self.over.store(true, Ordering::Release);
        drop(st);
        self.wake();
    }

    fn wake(&self) {
        self.changed.notify_all();
        for r in lock(&self.regions).iter().filter_map(Weak::upgrade) {
            r.ring();
        }
    }
}

/// Whether this rank was started by `malt launch` (`MALT_LAUNCHER_PID`)
/// and its parent is no longer that launcher, looking for up to `within`
/// (a dying process closes its sockets before its children get another
/// parent).
pub(crate) fn launcher_gone(within: Duration) -> bool {
    let Some(launcher) = std::env::var("MALT_LAUNCHER_PID")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let until = Instant::now() + within;
    loop {
        if std::os::unix::process::parent_id() != launcher {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether this rank was started by `malt launch` (`MALT_LAUNCHER_PID`)
/// and that process has ended (gone, or a zombie). Unlike
/// [`launcher_gone`], this holds for ranks started through a wrapper
/// script, whose parent was never the launcher.
pub(crate) fn launcher_ended() -> bool {
    let Some(launcher) = std::env::var("MALT_LAUNCHER_PID")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    else {
        return false;
    };
    match std::fs::read_to_string(format!("/proc/{launcher}/stat")) {
        // Fields after the command name: the state first.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}
