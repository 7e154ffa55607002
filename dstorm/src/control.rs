//! The control channel: rendezvous, collective agreement and barriers over
//! TCP through rank 0. It never carries model bytes.
//!
//! Rank 0 runs a coordinator thread; every rank, rank 0 included, connects
//! to it as a client, proves that it knows the job token (see [`auth`]:
//! the token itself never crosses the wire) and receives the endpoint
//! table. Collectives are all-gathers of small strings in numbered rounds;
//! a barrier is an all-gather of nothing. The coordinator bounds every round
//! by the job timeout and names the ranks that did not arrive.

use crate::auth;
use crate::error::{Error, Result};
use crate::fault::{Decider, Decision, FaultPolicy};
use crate::membership::View;
use crate::transport::{Endpoint, Transport};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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
    },
    /// This rank has not heard from `peer` (heartbeat silence or a failed write).
    Suspect { peer: usize, reason: String },
    /// This rank is going down (a panic in the application).
    Failing { reason: String },
    /// This rank leaves; `clean` after its final barrier.
    Bye { clean: bool },
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
    /// Connects (retrying until `timeout`, since the coordinator may start
    /// later), says hello and waits for the endpoint table.
    pub fn join(
        master: &str,
        token: &str,
        rank: usize,
        world: usize,
        endpoint: Endpoint,
        timeout: Duration,
        transport: Arc<dyn Transport>,
    ) -> Result<(Client, Vec<Endpoint>, u64)> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(10);
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
                .and_then(|sa| TcpStream::connect_timeout(&sa, Duration::from_secs(2)))
                .map_err(auth::AuthError::Io)
                .and_then(|s| {
                    auth::connect(
                        &s,
                        token.as_bytes(),
                        auth::Channel::Control,
                        auth::COORDINATOR,
                        claim,
                    )
                    .map(|()| s)
                });
            match attempt {
                Ok(s) => break s,
                // Not reachable yet, or busy: the coordinator may start
                // later, and closes connections it has no room for.
                Err(auth::AuthError::Io(e)) if start.elapsed() + backoff >= timeout => {
                    return Err(Error::MasterUnreachable {
                        addr: master.to_string(),
                        waited: start.elapsed(),
                        source: e,
                    })
                }
                Err(auth::AuthError::Io(_)) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(250));
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
            .set_read_timeout(Some(timeout + Duration::from_secs(5)))
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
        let (table, epoch, nonce) = match receive(&mut r, "rendezvous", timeout)? {
            FromMaster::Welcome {
                table,
                epoch,
                nonce,
            } => (table, epoch, nonce),
            FromMaster::Refused { reason } => return Err(Error::Refused { rank, reason }),
            FromMaster::Aborted { reason } => return Err(Error::Aborted(reason)),
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
        let view = Arc::new(View::new(
            rank,
            world,
            epoch,
            Arc::new(Mutex::new(w)),
            transport,
        ));
        let (tx, replies) = mpsc::channel();
        let v = view.clone();
        std::thread::Builder::new()
            .name(format!("malt-ctl-{rank}"))
            .spawn(move || read_loop(r, v, tx))
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
            .send_gather(epoch, round, data)
            .map_err(ctl_err(op))?;
        // The coordinator answers or fails every round within `timeout`; the
        // margin lets its answer, which names missing ranks, arrive first.
        let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
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
                    } else {
                        Error::Timeout {
                            op: format!("{op} ({reason})"),
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
/// caller waiting in a collective (which re-checks the view).
fn read_loop(mut r: BufReader<TcpStream>, view: Arc<View>, tx: mpsc::Sender<FromMaster>) {
    loop {
        match recv::<FromMaster>(&mut r) {
            Ok(m) => {
                view.apply(&m);
                if tx.send(m).is_err() {
                    return;
                }
            }
            Err(_) => {
                view.lost();
                return;
            }
        }
    }
}

enum Event {
    Connected(usize, TcpStream, auth::Claim),
    Message(usize, ToMaster),
    Closed(usize),
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
/// answers.
pub(crate) fn spawn_coordinator(
    listener: TcpListener,
    token: String,
    world: usize,
    timeout: Duration,
    policy: FaultPolicy,
    state: Arc<Mutex<JobState>>,
) -> Result<(SocketAddr, mpsc::Receiver<()>)> {
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
    drop(tx);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("malt-coordinator".into())
        .spawn(move || {
            Coordinator::new(world, timeout, policy, state).run(rx);
            let _ = done_tx.send(());
        })
        .map_err(ctl_err("spawn coordinator"))?;
    Ok((local, done_rx))
}

/// What the coordinator has decided so far, as the process hosting it sees
/// it (`malt launch` ends the ranks still alive once the outcome is known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobState {
    /// Ranks removed from the group (crashed, or suspected by the fault
    /// monitors), ascending. A rank evicted while stopped or hung may still
    /// be running.
    pub evicted: Vec<usize>,
    /// Ranks that said a clean goodbye, ascending.
    pub finished: Vec<usize>,
    /// Why the job was stopped, once it was: quorum lost, too many regroups,
    /// a collective that timed out, or a failure in a job that tolerates
    /// none.
    pub aborted: Option<String>,
    /// The job's random nonce, sent to every rank with the welcome: with
    /// the token it names the job's shm segment files
    /// ([`crate::shm_job`]).
    pub nonce: u64,
    /// The first rank the coordinator saw fail (left without finishing,
    /// crashed, or announced a panic): the cause, when the others then
    /// stop too.
    pub first_failed: Option<usize>,
}

/// A coordinator running outside the ranks (in `malt launch`), so that any
/// rank, rank 0 included, may fail without taking the control channel down.
#[derive(Debug)]
pub struct CoordinatorHandle {
    addr: SocketAddr,
    done: mpsc::Receiver<()>,
    state: Arc<Mutex<JobState>>,
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
        let (addr, done) = spawn_coordinator(
            listener,
            token.to_string(),
            world,
            timeout,
            policy,
            state.clone(),
        )?;
        Ok(CoordinatorHandle { addr, done, state })
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

struct Coordinator {
    world: usize,
    timeout: Duration,
    tolerant: bool,
    decider: Decider,
    conns: BTreeMap<usize, TcpStream>,
    /// connection id -> rank, for connections that said a valid hello.
    ranks: BTreeMap<usize, usize>,
    endpoints: BTreeMap<usize, Endpoint>,
    started: Option<Instant>,
    welcomed: bool,
    aborted: Option<String>,
    /// (epoch, round, started, contributions by rank)
    round: Option<(u32, u64, Instant, BTreeMap<usize, String>)>,
    done: BTreeSet<usize>,
    dead: BTreeSet<usize>,
    /// What the host process sees of `dead`, `done` and `aborted`.
    public: Arc<Mutex<JobState>>,
    /// This job's random nonce.
    nonce: u64,
    /// The first rank seen to fail.
    first_failed: Option<usize>,
    /// What each connection proved it is (rank, world) in its handshake.
    claims: BTreeMap<usize, auth::Claim>,
}

impl Coordinator {
    fn new(
        world: usize,
        timeout: Duration,
        policy: FaultPolicy,
        public: Arc<Mutex<JobState>>,
    ) -> Coordinator {
        let nonce = rand::random();
        public.lock().unwrap_or_else(|p| p.into_inner()).nonce = nonce;
        Coordinator {
            world,
            timeout,
            tolerant: policy.tolerant(world),
            decider: Decider::new(world, policy),
            conns: BTreeMap::new(),
            ranks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            started: None,
            welcomed: false,
            aborted: None,
            round: None,
            done: BTreeSet::new(),
            dead: BTreeSet::new(),
            public,
            nonce,
            first_failed: None,
            claims: BTreeMap::new(),
        }
    }

    /// Copies what changed of the verdicts to [`JobState`]; the three only
    /// grow, so comparing sizes finds every change.
    fn publish(&self) {
        let mut st = self.public.lock().unwrap_or_else(|p| p.into_inner());
        if st.evicted.len() != self.dead.len() {
            st.evicted = self.dead.iter().copied().collect();
        }
        if st.finished.len() != self.done.len() {
            st.finished = self.done.iter().copied().collect();
        }
        if st.aborted.is_none() && self.aborted.is_some() {
            st.aborted = self.aborted.clone();
        }
        if st.first_failed.is_none() {
            st.first_failed = self.first_failed;
        }
    }

    fn send_to(&mut self, conn: usize, msg: &FromMaster) {
        if let Some(s) = self.conns.get_mut(&conn) {
            if send(s, msg).is_err() {
                self.conns.remove(&conn);
            }
        }
    }

    /// Sends `msg` to every rank, rank 0 last: unless a launcher runs the
    /// coordinator (`malt launch`), rank 0's process hosts it, and a message
    /// that ends the job (an abort) makes that process exit, which would cut
    /// off the ranks not yet told.
    fn send_ranks(&mut self, msg: &FromMaster) {
        let mut ids: Vec<(usize, usize)> = self.ranks.iter().map(|(id, r)| (*r, *id)).collect();
        ids.sort_unstable_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        for (_, id) in ids {
            self.send_to(id, msg);
        }
    }

    fn conn_of(&self, rank: usize) -> Option<usize> {
        self.ranks
            .iter()
            .find(|(_, r)| **r == rank)
            .map(|(id, _)| *id)
    }

    fn abort(&mut self, reason: String) {
        tracing::error!(%reason, "aborting the job");
        self.send_ranks(&FromMaster::Aborted {
            reason: reason.clone(),
        });
        self.aborted = Some(reason);
    }

    fn refuse(&mut self, conn: usize, reason: String) {
        tracing::warn!(%reason, "refused a control connection");
        self.send_to(conn, &FromMaster::Refused { reason });
        if let Some(s) = self.conns.remove(&conn) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn missing(&self, present: impl Fn(usize) -> bool) -> Vec<usize> {
        self.decider
            .members()
            .into_iter()
            .filter(|r| !present(*r))
            .collect()
    }

    fn deadline(&self) -> Option<Instant> {
        if self.aborted.is_some() {
            return None;
        }
        let own = match (&self.round, self.started, self.welcomed) {
            (Some((_, _, t, _)), _, _) => Some(*t + self.timeout),
            (None, Some(t), false) => Some(t + self.timeout),
            _ => None,
        };
        match (own, self.decider.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Event>) {
        loop {
            let ev = match self.deadline() {
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(ev) => ev,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.expire();
                        self.publish();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(ev) => ev,
                    Err(_) => return,
                },
            };
            match ev {
                Event::Connected(id, s, claim) => {
                    self.conns.insert(id, s);
                    self.claims.insert(id, claim);
                    self.started.get_or_insert_with(Instant::now);
                    if let Some(reason) = self.aborted.clone() {
                        self.send_to(id, &FromMaster::Aborted { reason });
                    }
                }
                Event::Message(id, m) => self.message(id, m),
                Event::Closed(id) => {
                    self.conns.remove(&id);
                    self.claims.remove(&id);
                    if let Some(rank) = self.ranks.remove(&id) {
                        if !self.done.contains(&rank) {
                            self.failed(rank, "left the job without saying goodbye".into());
                        }
                    }
                    if self.welcomed && self.ranks.is_empty() {
                        self.publish();
                        return;
                    }
                }
            }
            self.publish();
        }
    }

    /// `rank` is gone: a regroup in a fault-tolerant job, the end otherwise.
    fn failed(&mut self, rank: usize, why: String) {
        if self.aborted.is_some() || self.dead.contains(&rank) {
            return;
        }
        self.first_failed.get_or_insert(rank);
        if self.tolerant && self.welcomed {
            tracing::warn!(rank, %why, "rank failed");
            self.decider.crashed(rank, Instant::now());
            self.act(Instant::now());
        } else {
            self.abort(format!("rank {rank} {why}"));
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        if self.decider.deadline().is_some_and(|d| d <= now) {
            self.act(now);
        }
        let overdue = match (&self.round, self.started, self.welcomed) {
            (Some((_, _, t, _)), _, _) => *t + self.timeout <= now,
            (None, Some(t), false) => t + self.timeout <= now,
            _ => false,
        };
        if !overdue || self.aborted.is_some() {
            return;
        }
        if let Some((_, round, _, got)) = self.round.take() {
            let missing = self.missing(|r| got.contains_key(&r));
            let reason = format!("round {round} timed out after {:?}", self.timeout);
            let ids: Vec<usize> = self.ranks.keys().copied().collect();
            for id in ids {
                self.send_to(
                    id,
                    &FromMaster::Failed {
                        round,
                        reason: reason.clone(),
                        missing: missing.clone(),
                    },
                );
            }
            self.aborted = Some(format!(
                "{reason}, waiting for ranks {}",
                crate::error::RankList(&missing)
            ));
        } else if !self.welcomed {
            let have: BTreeSet<usize> = self.ranks.values().copied().collect();
            let missing: Vec<usize> = (0..self.world).filter(|r| !have.contains(r)).collect();
            self.abort(format!(
                "rendezvous timed out after {:?} waiting for ranks {}",
                self.timeout,
                crate::error::RankList(&missing)
            ));
        }
    }

    /// Carries out the decider's verdict, if it has one now.
    fn act(&mut self, now: Instant) {
        let Some(decision) = self.decider.decide(now) else {
            return;
        };
        let (evicted, epoch) = match &decision {
            Decision::Regroup { evicted, epoch, .. } => (evicted.clone(), *epoch),
            Decision::Quorum { evicted, .. } | Decision::TooManyRegroups { evicted, .. } => {
                (evicted.clone(), self.decider.epoch() + 1)
            }
        };
        for r in &evicted {
            self.dead.insert(*r);
            if let Some(id) = self.conn_of(*r) {
                self.send_to(
                    id,
                    &FromMaster::Evicted {
                        epoch,
                        reason: "suspected dead by the fault monitor".into(),
                    },
                );
                self.ranks.remove(&id);
                if let Some(s) = self.conns.remove(&id) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
        // A round in progress belonged to the old group.
        self.round = None;
        match decision {
            Decision::Regroup { epoch, members, .. } => {
                tracing::warn!(epoch, ?members, ?evicted, "regrouping");
                let dead: Vec<usize> = self.dead.iter().copied().collect();
                self.send_ranks(&FromMaster::Regroup {
                    epoch,
                    members,
                    dead,
                });
            }
            Decision::Quorum { alive, min, .. } => {
                let reason = format!(
                    "only {} ranks {} are left, fewer than the minimum of {min}",
                    alive.len(),
                    crate::error::RankList(&alive)
                );
                tracing::error!(%reason, "stopping the job");
                self.send_ranks(&FromMaster::Quorum { alive, min });
                self.aborted = Some(reason);
            }
            Decision::TooManyRegroups { regroups, .. } => {
                self.abort(format!(
                    "ranks {evicted:?} failed after {regroups} regroups, the most allowed \
                     (MALT_MAX_REGROUPS)"
                ));
            }
        }
    }

    fn message(&mut self, id: usize, m: ToMaster) {
        match m {
            ToMaster::Hello {
                rank,
                world,
                endpoint,
            } => self.hello(id, rank, world, endpoint),
            ToMaster::Gather { epoch, round, data } => {
                let Some(&rank) = self.ranks.get(&id) else {
                    return self.refuse(id, "gather before hello".into());
                };
                if let Some(reason) = self.aborted.clone() {
                    return self.send_to(id, &FromMaster::Aborted { reason });
                }
                let current = self.decider.epoch();
                if epoch < current {
                    // Sent before this rank heard of the regroup; the
                    // regroup message tells it to start over.
                    return;
                }
                if epoch > current {
                    return self.abort(format!(
                        "rank {rank} is in epoch {epoch} while the group is in epoch {current}"
                    ));
                }
                let (e, r, _, got) = self
                    .round
                    .get_or_insert_with(|| (epoch, round, Instant::now(), BTreeMap::new()));
                if (*e, *r) != (epoch, round) {
                    let reason = format!(
                        "rank {rank} is in collective round {round} while others are in round {r}"
                    );
                    return self.abort(reason);
                }
                got.insert(rank, data);
                let members = self.decider.members();
                if members.iter().all(|m| got.contains_key(m)) {
                    if let Some((epoch, round, _, got)) = self.round.take() {
                        let data: Vec<String> = got.into_values().collect();
                        self.send_ranks(&FromMaster::Gathered { epoch, round, data });
                    }
                }
            }
            ToMaster::Suspect { peer, reason } => {
                let Some(&rank) = self.ranks.get(&id) else {
                    return;
                };
                if self.tolerant && self.welcomed {
                    tracing::warn!(rank, peer, %reason, "suspicion reported");
                    self.decider.suspect(rank, peer, Instant::now());
                    self.act(Instant::now());
                }
            }
            ToMaster::Failing { reason } => {
                if let Some(&rank) = self.ranks.get(&id) {
                    self.failed(rank, format!("failed: {reason}"));
                }
            }
            ToMaster::Bye { clean } => {
                if let Some(&rank) = self.ranks.get(&id) {
                    if clean {
                        self.done.insert(rank);
                        self.decider.finished(rank);
                    } else {
                        // Left without finishing the job: it stopped with an
                        // error (reported in its own output), or dropped its
                        // group without `finish`. The others are told now,
                        // not when their next wait times out.
                        self.failed(
                            rank,
                            "left the job without finishing it (it stopped with an error: see its \
                             output)"
                                .into(),
                        );
                        self.done.insert(rank);
                    }
                }
            }
        }
    }

    fn hello(&mut self, id: usize, rank: usize, world: usize, endpoint: Endpoint) {
        let proved = self
            .claims
            .get(&id)
            .is_some_and(|c| c.rank as usize == rank && c.world as usize == world);
        if !proved {
            return self.refuse(
                id,
                format!("hello as rank {rank} of {world} differs from what the handshake proved"),
            );
        }
        if let Some(reason) = self.aborted.clone() {
            return self.send_to(id, &FromMaster::Aborted { reason });
        }
        if world != self.world {
            self.refuse(
                id,
                format!(
                    "world size {world} disagrees with the coordinator's {}",
                    self.world
                ),
            );
            return self.abort(format!(
                "rank {rank} says the world has {world} ranks, the coordinator says {}",
                self.world
            ));
        }
        if rank >= self.world {
            self.refuse(id, format!("rank {rank} is out of range for world {world}"));
            return self.abort(format!(
                "a process claimed rank {rank} in a world of {world}"
            ));
        }
        if self.dead.contains(&rank) {
            let epoch = self.decider.epoch();
            self.send_to(
                id,
                &FromMaster::Evicted {
                    epoch,
                    reason: "the group went on without this rank".into(),
                },
            );
            return self.refuse(id, format!("rank {rank} was evicted"));
        }
        if self.ranks.values().any(|r| *r == rank) || self.welcomed {
            self.refuse(id, format!("rank {rank} is already taken"));
            return self.abort(format!("two processes claimed rank {rank}"));
        }
        self.ranks.insert(id, rank);
        self.endpoints.insert(rank, endpoint);
        tracing::debug!(
            rank,
            joined = self.ranks.len(),
            world = self.world,
            "a rank joined the rendezvous"
        );
        if self.ranks.len() == self.world {
            let table: Vec<Endpoint> = self.endpoints.values().cloned().collect();
            tracing::info!(world = self.world, "every rank joined: rendezvous complete");
            self.welcomed = true;
            let nonce = self.nonce;
            self.send_ranks(&FromMaster::Welcome {
                table,
                epoch: 1,
                nonce,
            });
        }
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
