//! The control channel: rendezvous, collective agreement and barriers over
//! TCP through rank 0. It never carries model bytes.
//!
//! Rank 0 runs a coordinator thread; every rank, rank 0 included, connects
//! to it as a client, proves that it knows the job token (see [`auth`]:
//! the token itself never crosses the wire) and receives the endpoint
//! table. Collectives are all-gathers of small strings in numbered rounds;
//! a barrier is an all-gather of nothing. The coordinator bounds every round
//! by the job timeout and names the ranks that did not arrive.

pub(crate) mod coordinator;
mod dial;
pub(crate) mod failover;
pub(crate) mod view;

use crate::auth;
pub(crate) use crate::config::Bounds;
pub use crate::control::coordinator::JobState;
use crate::control::coordinator::{Coordinator, Input, Out, Takeover};
use crate::control::dial::Backoff;
pub(crate) use crate::control::view::View;
use crate::error::{Error, Result};
use crate::fault::FaultPolicy;
use crate::transport::{Endpoint, Transport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a rank waiting for a collective's answer looks at its view.
const VIEW_SLICE: Duration = Duration::from_millis(100);
/// Longest control message accepted from an authenticated rank.
const MAX_MESSAGE: u32 = 64 << 20;
/// Threads that authenticate new control connections, and how many
/// connections may wait for one (more are closed at once).
const AUTH_WORKERS: usize = 8;
const AUTH_PENDING: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToMaster {
    Hello {
        rank: usize,
        world: usize,
        endpoint: Endpoint,
    },
    Gather {
        epoch: u32,
        round: u64,
        data: String,
        /// The call this round belongs to ("barrier", "finish", ...).
        #[serde(default)]
        op: String,
    },
    /// This rank found that the ranks made different calls (see
    /// [`Error::CallMismatch`]): the job ends with `reason` everywhere.
    Mismatch { reason: String },
    /// This rank has not heard from `peer` (heartbeat silence or a failed write).
    Suspect { peer: usize, reason: String },
    /// This rank is going down (a panic in the application).
    Failing { reason: String },
    /// This rank leaves; `clean` after its final barrier.
    Bye { clean: bool },
    /// The coordinator's host failed and this rank reached the one that
    /// takes over, from its view of `epoch`.
    Rejoin {
        rank: usize,
        world: usize,
        epoch: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FromMaster {
    Welcome {
        table: Vec<Endpoint>,
        epoch: u32,
        /// The job's random nonce (see [`JobState::nonce`]).
        nonce: u64,
    },
    Refused {
        reason: String,
    },
    Aborted {
        reason: String,
    },
    /// The job ends because the ranks made different calls.
    Mismatched {
        reason: String,
    },
    /// The other ranks stopped waiting for this one in a collective call
    /// (`reason` says which, and for how long); the job is over.
    Late {
        reason: String,
    },
    /// Round `round` of `epoch` (call `op`) has waited a while: `arrived`
    /// are in it. A rank waiting for one of them elsewhere will wait forever.
    Waiting {
        epoch: u32,
        round: u64,
        op: String,
        arrived: Vec<usize>,
    },
    Gathered {
        epoch: u32,
        round: u64,
        data: Vec<String>,
    },
    Failed {
        round: u64,
        reason: String,
        missing: Vec<usize>,
    },
    /// The group continues as `members` in `epoch`; `dead` have left.
    Regroup {
        epoch: u32,
        members: Vec<usize>,
        dead: Vec<usize>,
    },
    /// The group went on without this rank.
    Evicted {
        epoch: u32,
        reason: String,
    },
    /// Too few ranks are left.
    Quorum {
        alive: Vec<usize>,
        min: usize,
    },
}

pub(crate) fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    // Length prefix and body in one write: two small writes would meet
    // Nagle's algorithm and the peer's delayed ACK (40 ms per message).
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(io::Error::other)?;
    let len = u32::try_from(buf.len() - 4)
        .ok()
        .filter(|l| *l <= MAX_MESSAGE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "control message too large"))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    w.write_all(&buf)?;
    w.flush()
}

pub(crate) fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<T> {
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb)?;
    let len = u32::from_le_bytes(lb);
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control message of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A rank's connection to the coordinator. A reader thread receives every
/// message: answers to collectives go to the waiting caller, membership news
/// (regroup, eviction, quorum loss, abort) to the [`View`], which interrupts
/// waits everywhere.
#[derive(Debug)]
pub(crate) struct Client {
    rank: usize,
    replies: mpsc::Receiver<FromMaster>,
    /// The epoch this rank has adopted; collectives run in it.
    epoch: u32,
    round: u64,
    timeout: Duration,
    view: Arc<View>,
}

fn ctl_err(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Control { op, source }
}

impl Client {
    /// Connects (retrying until the rendezvous bound, since the coordinator
    /// may start later), says hello and waits for the endpoint table.
    /// Collectives are bounded by `bounds.timeout`.
    pub fn join(
        cfg: &crate::Config,
        endpoint: Endpoint,
        transport: Arc<dyn Transport>,
        standby: Option<TcpListener>,
    ) -> Result<(Client, Vec<Endpoint>, u64)> {
        let master = &format!("{}:{}", cfg.master_addr, cfg.master_port);
        let (token, rank, world) = (cfg.token.as_str(), cfg.rank, cfg.world);
        let bounds = cfg.bounds();
        let Bounds {
            timeout,
            rendezvous,
        } = bounds;
        let start = Instant::now();
        // The coordinator may start later, and closes connections it has
        // no room for: retry until the rendezvous bound.
        let mut backoff = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(250),
            start + rendezvous,
        );
        let claim = auth::Claim {
            rank: u32::try_from(rank).unwrap_or(u32::MAX),
            world: u32::try_from(world).unwrap_or(u32::MAX),
            epoch: 0,
        };
        let stream = loop {
            let attempt = master
                .to_socket_addrs()
                .and_then(|mut a| {
                    a.next().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
                    })
                })
                .map_err(auth::AuthError::Io)
                .and_then(|sa| dial::attempt(&sa, Duration::from_secs(2), token.as_bytes(), claim));
            match attempt {
                Ok(s) => break s,
                Err(auth::AuthError::Io(e)) => {
                    // `malt launch`, which was to run the coordinator, died
                    // (SIGKILL, say): nothing will ever listen there.
                    if cfg.external_coordinator && view::launcher_ended() {
                        return Err(Error::Control {
                            op: "join the job",
                            source: io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                "malt launch, which ran this job's coordinator, is gone",
                            ),
                        });
                    }
                    if !backoff.wait() {
                        return Err(Error::MasterUnreachable {
                            addr: master.to_string(),
                            waited: start.elapsed(),
                            source: e,
                        });
                    }
                }
                Err(e) => {
                    return Err(Error::Control {
                        op: "authenticate with the coordinator",
                        source: io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("{master}: {e}"),
                        ),
                    })
                }
            }
        };
        stream.set_nodelay(true).map_err(ctl_err("configure"))?;
        // The coordinator answers or fails the rendezvous within `timeout`;
        // the margin lets its answer, which names missing ranks, arrive first.
        stream
            .set_read_timeout(Some(rendezvous + Duration::from_secs(5)))
            .map_err(ctl_err("configure"))?;
        let mut r = BufReader::new(stream.try_clone().map_err(ctl_err("clone socket"))?);
        let mut w = stream;
        send(
            &mut w,
            &ToMaster::Hello {
                rank,
                world,
                endpoint,
            },
        )
        .map_err(ctl_err("send hello"))?;
        let (table, epoch, nonce) = match receive(&mut r, "rendezvous", rendezvous)? {
            FromMaster::Welcome {
                table,
                epoch,
                nonce,
            } => (table, epoch, nonce),
            FromMaster::Refused { reason } => return Err(Error::Refused { rank, reason }),
            FromMaster::Aborted { reason } => return Err(Error::Aborted(reason)),
            FromMaster::Mismatched { reason } => return Err(Error::CallMismatch(reason)),
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {other:?} during rendezvous"
                )))
            }
        };
        tracing::debug!(
            rank,
            master,
            epoch,
            peers = table.len(),
            "welcomed by the coordinator"
        );
        // From here on the reader thread waits for as long as the job runs;
        // collectives bound their own waits.
        w.set_read_timeout(None).map_err(ctl_err("configure"))?;
        let standby = standby.map(|listener| crate::control::failover::Standby {
            rank,
            world,
            token: token.to_string(),
            bounds,
            policy: cfg.fault_policy(),
            nonce,
            listener: Some(listener),
            addrs: table.iter().map(|e| e.standby.clone()).collect(),
            host: 0,
        });
        let view = Arc::new(View::new(
            rank,
            world,
            epoch,
            Arc::new(Mutex::new(w)),
            transport,
            standby.is_some(),
            (!cfg.external_coordinator).then_some(0),
        ));
        let (tx, replies) = mpsc::channel();
        let v = view.clone();
        std::thread::Builder::new()
            .name(format!("malt-ctl-{rank}"))
            .spawn(move || {
                // A panic here must not leave the rank's waits without
                // anyone to wake them: the channel counts as lost.
                let view = v.clone();
                let run = std::panic::AssertUnwindSafe(|| read_loop(r, v, tx, standby));
                if std::panic::catch_unwind(run).is_err() {
                    view.lost();
                }
            })
            .map_err(ctl_err("spawn control reader"))?;
        Ok((
            Client {
                rank,
                replies,
                epoch,
                round: 0,
                timeout,
                view,
            },
            table,
            nonce,
        ))
    }

    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// The epoch collectives run in.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Adopts the latest epoch: collectives restart their numbering in it.
    pub fn adopt(&mut self) -> u32 {
        let e = self.view.epoch();
        if e != self.epoch {
            self.epoch = e;
            self.round = 0;
        }
        e
    }

    /// Every member's `data`, in rank order.
    pub fn allgather(&mut self, op: &'static str, data: String) -> Result<Vec<String>> {
        self.view.check(self.epoch)?;
        self.round += 1;
        let (epoch, round) = (self.epoch, self.round);
        self.view
            .send_gather(epoch, round, op, data)
            .map_err(ctl_err(op))?;
        // The coordinator answers or fails every round within `timeout`; the
        // margin lets its answer, which names missing ranks, arrive first.
        let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // In slices: the group may also end here, without a message
            // (this rank's monitor suspects the coordinator's own host).
            match self.replies.recv_timeout(left.min(VIEW_SLICE)) {
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    self.view.check(epoch)?;
                    continue;
                }
                Ok(FromMaster::Gathered {
                    epoch: e,
                    round: r,
                    data,
                }) if e == epoch && r == round => return Ok(data),
                Ok(FromMaster::Failed {
                    round: r,
                    reason,
                    missing,
                }) if r == round => {
                    return Err(if missing.is_empty() {
                        Error::Aborted(reason)
                    } else if missing.contains(&self.rank) {
                        Error::Late(format!(
                            "{op}: the other ranks stopped waiting for this rank after {} (MALT_TIMEOUT); it arrived too late, and the job is over",
                            crate::error::Seconds(self.timeout)
                        ))
                    } else {
                        Error::Timeout {
                            op: op.to_string(),
                            waited: self.timeout,
                            missing,
                        }
                    })
                }
                // Membership news or a stale answer: still ours to wait for?
                Ok(_) => self.view.check(epoch)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        op: op.to_string(),
                        waited: self.timeout,
                        missing: Vec::new(),
                    })
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.view.check(epoch)?;
                    return Err(Error::Control {
                        op,
                        source: io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!(
                                "rank {}: the coordinator closed the control channel",
                                self.rank
                            ),
                        ),
                    });
                }
            }
        }
    }
}

fn receive(r: &mut impl Read, op: &'static str, waited: Duration) -> Result<FromMaster> {
    recv(r).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
            op: op.to_string(),
            waited,
            missing: Vec::new(),
        },
        io::ErrorKind::UnexpectedEof => Error::Control {
            op,
            source: io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the coordinator closed the control channel",
            ),
        },
        _ => Error::Control { op, source: e },
    })
}

/// The reader thread: membership news to the view, everything to the
/// caller waiting in a collective (which re-checks the view). When the
/// connection breaks while the group still runs, a rank with a standby
/// finds the next coordinator and reads from it instead.
fn read_loop(
    mut r: BufReader<TcpStream>,
    view: Arc<View>,
    tx: mpsc::Sender<FromMaster>,
    mut standby: Option<crate::control::failover::Standby>,
) {
    loop {
        match recv::<FromMaster>(&mut r) {
            Ok(m) => {
                view.apply(&m);
                if tx.send(m).is_err() {
                    return;
                }
            }
            Err(_) => {
                let next = match standby.as_mut() {
                    Some(sb) if view.may_fail_over() => sb.fail_over(&view),
                    _ => None,
                };
                let Some(s) = next else {
                    if view.orphaned() {
                        // `malt launch` died (SIGKILL, say) and nobody will
                        // end this rank: it must not live on, computing
                        // for nobody. Exit without unwinding, leaving no
                        // segment file behind: the files go first, since
                        // the log line goes to a pipe the launcher held.
                        view.remove_own();
                        tracing::error!(
                            "malt launch, which ran this job's coordinator, is gone: this rank ends"
                        );
                        std::process::exit(143);
                    }
                    view.lost();
                    return;
                };
                let host = standby.as_ref().map_or(0, |sb| sb.host);
                match s.try_clone() {
                    Ok(w) => view.reconnected(w, host),
                    Err(_) => {
                        view.lost();
                        return;
                    }
                }
                r = BufReader::new(s);
            }
        }
    }
}

pub(crate) enum Event {
    Connected(usize, TcpStream, auth::Claim),
    Message(usize, ToMaster),
    Closed(usize),
    /// A rank's process ended (see [`CoordinatorHandle::exited`]).
    Exited(usize, String),
}

/// Binds the coordinator's listener on the master address itself (a host
/// name is resolved), not on every interface; `0.0.0.0` or `::` asks for
/// every interface.
pub(crate) fn bind(addr: &str, port: u16) -> Result<TcpListener> {
    let resolved: Vec<SocketAddr> = (addr, port)
        .to_socket_addrs()
        .map_err(|source| Error::Control {
            op: "resolve the master address (MALT_MASTER_ADDR)",
            source,
        })?
        .collect();
    // A host name that resolves to loopback (Debian maps the host's own name
    // to 127.0.1.1) cannot be what ranks on other hosts reach: listen on
    // every interface rather than only there.
    let named = addr.parse::<std::net::IpAddr>().is_err() && addr != "localhost";
    if named && !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()) {
        tracing::warn!(
            addr,
            "the master address resolves to loopback only; the coordinator listens on every \
             interface (set MALT_MASTER_ADDR to the address the other ranks reach)"
        );
        return TcpListener::bind(("0.0.0.0", port)).map_err(|source| Error::Control {
            op: "listen as master (is another job using MALT_MASTER_PORT?)",
            source,
        });
    }
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{addr} resolves to nothing"),
    );
    for sa in &resolved {
        match TcpListener::bind(sa) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                last = io::Error::new(
                    e.kind(),
                    format!(
                        "{addr} resolves to {}, which is not an address of this host (the \
                         coordinator runs where MALT_MASTER_ADDR points)",
                        sa.ip()
                    ),
                );
            }
            Err(e) => {
                return Err(Error::Control {
                    op: "listen as master (is another job using MALT_MASTER_PORT?)",
                    source: e,
                })
            }
        }
    }
    Err(Error::Control {
        op: "listen as master",
        source: last,
    })
}

/// Starts the coordinator on `listener` for a job of `world` ranks. The
/// returned receiver gets a message when the coordinator has seen every rank
/// leave (or gave up), so its host can stay until the ranks have their last
/// answers; the sender feeds it news from outside the connections.
pub(crate) fn spawn_coordinator(
    listener: TcpListener,
    token: String,
    world: usize,
    bounds: Bounds,
    policy: FaultPolicy,
    state: Arc<Mutex<JobState>>,
    takeover: Option<Takeover>,
) -> Result<(SocketAddr, mpsc::Receiver<()>, mpsc::Sender<Event>)> {
    let local = listener.local_addr().map_err(ctl_err("listener address"))?;
    let (tx, rx) = mpsc::channel();
    let acc_tx = Mutex::new(tx.clone());
    let next_id = std::sync::atomic::AtomicUsize::new(0);
    let key = token.clone().into_bytes();
    let gate = auth::Gate::new(
        "malt-ctl-auth",
        AUTH_WORKERS,
        AUTH_PENDING,
        move |conn: TcpStream| {
            let peer = conn.peer_addr().ok();
            let claim = match auth::accept(&conn, &key, auth::Channel::Control, auth::COORDINATOR) {
                Ok(claim) => claim,
                Err(e) => {
                    tracing::warn!(?peer, error = %e, "refused a control connection");
                    if matches!(e, auth::AuthError::BadProof) {
                        auth::refuse(&conn);
                    }
                    return;
                }
            };
            let _ = conn.set_nodelay(true);
            let Ok(read_half) = conn.try_clone() else {
                return;
            };
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tx = acc_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if tx.send(Event::Connected(id, conn, claim)).is_err() {
                return;
            }
            // An authenticated rank: its messages are read by a thread of
            // its own for as long as it stays.
            let _ = std::thread::Builder::new()
                .name("malt-ctl-conn".into())
                .spawn(move || {
                    let mut r = BufReader::new(read_half);
                    while let Ok(m) = recv::<ToMaster>(&mut r) {
                        if tx.send(Event::Message(id, m)).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Event::Closed(id));
                });
        },
    )
    .map_err(ctl_err("spawn coordinator"))?;
    std::thread::Builder::new()
        .name("malt-ctl-accept".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                gate.offer(conn);
            }
        })
        .map_err(ctl_err("spawn coordinator"))?;
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("malt-coordinator".into())
        .spawn(move || {
            let core = match takeover {
                None => Coordinator::new(world, bounds, policy, state),
                Some(t) => Coordinator::takeover(world, bounds, policy, state, t, Instant::now()),
            };
            serve(core, rx);
            let _ = done_tx.send(());
        })
        .map_err(ctl_err("spawn coordinator"))?;
    Ok((local, done_rx, tx))
}

/// The coordinator's thread: feeds `core` what the connection threads
/// report and its deadlines, and carries out what it decides.
fn serve(mut core: Coordinator, rx: mpsc::Receiver<Event>) {
    let mut conns: BTreeMap<usize, TcpStream> = BTreeMap::new();
    loop {
        let ev = match core.deadline() {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(ev) => Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(ev) => Some(ev),
                Err(_) => return,
            },
        };
        let now = Instant::now();
        let done = match ev {
            None => {
                core.tick(now);
                false
            }
            Some(Event::Connected(id, s, claim)) => {
                conns.insert(id, s);
                core.input(Input::Connected(id, claim), now)
            }
            Some(Event::Message(id, m)) => core.input(Input::Message(id, m), now),
            Some(Event::Closed(id)) => {
                conns.remove(&id);
                core.input(Input::Closed(id), now)
            }
            Some(Event::Exited(rank, why)) => core.input(Input::Exited(rank, why), now),
        };
        for o in core.take_out() {
            match o {
                Out::Send(id, msg) => {
                    // A connection that cannot be written is dropped; its
                    // reader thread reports it closed.
                    if conns.get_mut(&id).is_some_and(|s| send(s, &*msg).is_err()) {
                        conns.remove(&id);
                    }
                }
                Out::Close(id) => {
                    if let Some(s) = conns.remove(&id) {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
            }
        }
        core.publish();
        if done {
            return;
        }
    }
}

/// A coordinator running outside the ranks (in `malt launch`), so that any
/// rank, rank 0 included, may fail without taking the control channel down.
#[derive(Debug)]
pub struct CoordinatorHandle {
    addr: SocketAddr,
    done: mpsc::Receiver<()>,
    state: Arc<Mutex<JobState>>,
    events: mpsc::Sender<Event>,
}

impl CoordinatorHandle {
    /// Listens on `addr:port` (port 0: any free port) and coordinates a job
    /// of `world` ranks presenting `token`.
    pub fn start(
        addr: &str,
        port: u16,
        token: &str,
        world: usize,
        timeout: Duration,
        policy: FaultPolicy,
    ) -> Result<CoordinatorHandle> {
        crate::config::check_world(world, "the launcher")?;
        let listener = bind(addr, port)?;
        let state = Arc::new(Mutex::new(JobState::default()));
        let bounds = Bounds {
            timeout,
            rendezvous: timeout.min(crate::config::DEFAULT_RENDEZVOUS_TIMEOUT),
        };
        let (addr, done, events) = spawn_coordinator(
            listener,
            token.to_string(),
            world,
            bounds,
            policy,
            state.clone(),
            None,
        )?;
        Ok(CoordinatorHandle {
            addr,
            done,
            state,
            events,
        })
    }

    /// Tells the coordinator that the process of `rank` ended (`how`:
    /// "killed by SIGKILL", "exited with status 1"), as its launcher saw.
    /// Unless the rank had said a clean goodbye, it has failed: the job
    /// regroups or stops at once, with `how` as the reason, even when the
    /// rank's connection lives on in a process it forked.
    pub fn exited(&self, rank: usize, how: &str) {
        let _ = self.events.send(Event::Exited(rank, how.to_string()));
    }

    /// What the coordinator has decided so far.
    pub fn state(&self) -> JobState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The port ranks connect to (`MALT_MASTER_PORT`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits up to `timeout` for every rank to have left; true if they have.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.done.recv_timeout(timeout).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Control messages come only from authenticated ranks, but a bad
        /// one must still be an error, never a panic.
        #[test]
        fn control_decoders_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            len in 0u32..400,
        ) {
            let mut framed = len.to_le_bytes().to_vec();
            framed.extend_from_slice(&body);
            let _ = recv::<ToMaster>(&mut framed.as_slice());
            let _ = recv::<FromMaster>(&mut framed.as_slice());
            let _ = recv::<ToMaster>(&mut body.as_slice());
        }

        #[test]
        fn a_length_beyond_the_limit_is_refused_before_reading(extra in 1u32..1000) {
            let framed = (MAX_MESSAGE + extra).to_le_bytes();
            let e = recv::<ToMaster>(&mut framed.as_slice()).unwrap_err();
            prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
    }
}
