//! The control channel: rendezvous, collective agreement and barriers over
//! TCP through rank 0. It never carries model bytes.
//!
//! Rank 0 runs a coordinator thread; every rank, rank 0 included, connects
//! to it as a client, presents the job token and receives the endpoint
//! table. Collectives are all-gathers of small strings in numbered rounds;
//! a barrier is an all-gather of nothing. The coordinator bounds every round
//! by the job timeout and names the ranks that did not arrive.

use crate::error::{Error, Result};
use crate::transport::Endpoint;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest control message accepted (a denial-of-service bound).
const MAX_MESSAGE: u32 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToMaster {
    Hello {
        token: String,
        rank: usize,
        world: usize,
        endpoint: Endpoint,
    },
    Gather {
        round: u64,
        data: String,
    },
    Bye,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FromMaster {
    Welcome {
        table: Vec<Endpoint>,
        epoch: u32,
    },
    Refused {
        reason: String,
    },
    Aborted {
        reason: String,
    },
    Gathered {
        round: u64,
        data: Vec<String>,
    },
    Failed {
        round: u64,
        reason: String,
        missing: Vec<usize>,
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

/// A rank's connection to the coordinator.
#[derive(Debug)]
pub(crate) struct Client {
    rank: usize,
    w: TcpStream,
    r: BufReader<TcpStream>,
    round: u64,
    timeout: Duration,
}

fn ctl_err(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Control { op, source }
}

impl Client {
    /// Connects (retrying until `timeout`, since rank 0 may start later),
    /// says hello and waits for the endpoint table.
    pub fn join(
        master: &str,
        token: &str,
        rank: usize,
        world: usize,
        endpoint: Endpoint,
        timeout: Duration,
    ) -> Result<(Client, Vec<Endpoint>, u32)> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(10);
        let stream = loop {
            let attempt = master
                .to_socket_addrs()
                .and_then(|mut a| {
                    a.next().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
                    })
                })
                .and_then(|sa| TcpStream::connect_timeout(&sa, Duration::from_secs(2)));
            match attempt {
                Ok(s) => break s,
                Err(e) if start.elapsed() + backoff >= timeout => {
                    return Err(Error::MasterUnreachable {
                        addr: master.to_string(),
                        waited: start.elapsed(),
                        source: e,
                    })
                }
                Err(_) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
            }
        };
        stream.set_nodelay(true).map_err(ctl_err("configure"))?;
        // The coordinator answers or fails every request within `timeout`;
        // the margin lets its answer, which names missing ranks, arrive first.
        stream
            .set_read_timeout(Some(timeout + Duration::from_secs(5)))
            .map_err(ctl_err("configure"))?;
        let r = BufReader::new(stream.try_clone().map_err(ctl_err("clone socket"))?);
        let mut c = Client {
            rank,
            w: stream,
            r,
            round: 0,
            timeout,
        };
        send(
            &mut c.w,
            &ToMaster::Hello {
                token: token.to_string(),
                rank,
                world,
                endpoint,
            },
        )
        .map_err(ctl_err("send hello"))?;
        match c.receive("rendezvous")? {
            FromMaster::Welcome { table, epoch } => Ok((c, table, epoch)),
            FromMaster::Refused { reason } => Err(Error::Refused { rank, reason }),
            FromMaster::Aborted { reason } => Err(Error::Aborted(reason)),
            other => Err(Error::Protocol(format!(
                "unexpected {other:?} during rendezvous"
            ))),
        }
    }

    fn receive(&mut self, op: &'static str) -> Result<FromMaster> {
        recv(&mut self.r).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                op: op.to_string(),
                waited: self.timeout,
                missing: Vec::new(),
            },
            io::ErrorKind::UnexpectedEof => Error::Control {
                op,
                source: io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the coordinator (rank 0) closed the control channel",
                ),
            },
            _ => Error::Control { op, source: e },
        })
    }

    /// Every rank's `data`, in rank order.
    pub fn allgather(&mut self, op: &'static str, data: String) -> Result<Vec<String>> {
        self.round += 1;
        let round = self.round;
        send(&mut self.w, &ToMaster::Gather { round, data }).map_err(ctl_err(op))?;
        match self.receive(op)? {
            FromMaster::Gathered { round: r, data } if r == round => Ok(data),
            FromMaster::Failed {
                reason, missing, ..
            } if !missing.is_empty() => Err(Error::Timeout {
                op: format!("{op} ({reason})"),
                waited: self.timeout,
                missing,
            }),
            FromMaster::Failed { reason, .. } | FromMaster::Aborted { reason } => {
                Err(Error::Aborted(reason))
            }
            other => Err(Error::Protocol(format!(
                "rank {}: unexpected {other:?} in round {round}",
                self.rank
            ))),
        }
    }

    /// Tells the coordinator this rank is leaving cleanly.
    pub fn bye(&mut self) {
        let _ = send(&mut self.w, &ToMaster::Bye);
        let _ = self.w.shutdown(Shutdown::Write);
    }
}

enum Event {
    Connected(usize, TcpStream),
    Message(usize, ToMaster),
    Closed(usize),
}

/// Binds the coordinator's listener; returns its address.
pub(crate) fn bind(addr: &str, port: u16) -> Result<TcpListener> {
    let bind_ip = match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        // A host name: listen everywhere, the name resolves to one of ours.
        Err(_) => "0.0.0.0".to_string(),
    };
    TcpListener::bind((bind_ip.as_str(), port)).map_err(|source| Error::Control {
        op: "listen as master (is another job using MALT_MASTER_PORT?)",
        source,
    })
}

/// Starts the coordinator on `listener` for a job of `world` ranks. The
/// returned receiver gets a message when the coordinator has seen every rank
/// leave (or gave up), so rank 0 can stay until the others have their last
/// answers.
pub(crate) fn spawn_coordinator(
    listener: TcpListener,
    token: String,
    world: usize,
    timeout: Duration,
) -> Result<(SocketAddr, mpsc::Receiver<()>)> {
    let local = listener.local_addr().map_err(ctl_err("listener address"))?;
    let (tx, rx) = mpsc::channel();
    let acc_tx = tx.clone();
    std::thread::Builder::new()
        .name("malt-ctl-accept".into())
        .spawn(move || {
            for (id, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let Ok(read_half) = conn.try_clone() else {
                    continue;
                };
                if acc_tx.send(Event::Connected(id, conn)).is_err() {
                    return;
                }
                let tx = acc_tx.clone();
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
            }
        })
        .map_err(ctl_err("spawn coordinator"))?;
    drop(tx);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("malt-coordinator".into())
        .spawn(move || {
            Coordinator::new(token, world, timeout).run(rx);
            let _ = done_tx.send(());
        })
        .map_err(ctl_err("spawn coordinator"))?;
    Ok((local, done_rx))
}

struct Coordinator {
    token: String,
    world: usize,
    timeout: Duration,
    conns: BTreeMap<usize, TcpStream>,
    /// connection id -> rank, for connections that said a valid hello.
    ranks: BTreeMap<usize, usize>,
    endpoints: BTreeMap<usize, Endpoint>,
    started: Option<Instant>,
    welcomed: bool,
    aborted: Option<String>,
    round: Option<(u64, Instant, BTreeMap<usize, String>)>,
    done: BTreeSet<usize>,
}

impl Coordinator {
    fn new(token: String, world: usize, timeout: Duration) -> Coordinator {
        Coordinator {
            token,
            world,
            timeout,
            conns: BTreeMap::new(),
            ranks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            started: None,
            welcomed: false,
            aborted: None,
            round: None,
            done: BTreeSet::new(),
        }
    }

    fn send_to(&mut self, conn: usize, msg: &FromMaster) {
        if let Some(s) = self.conns.get_mut(&conn) {
            if send(s, msg).is_err() {
                self.conns.remove(&conn);
            }
        }
    }

    fn send_ranks(&mut self, msg: &FromMaster) {
        let ids: Vec<usize> = self.ranks.keys().copied().collect();
        for id in ids {
            self.send_to(id, msg);
        }
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
        (0..self.world).filter(|r| !present(*r)).collect()
    }

    fn deadline(&self) -> Option<Instant> {
        if self.aborted.is_some() {
            return None;
        }
        match (&self.round, self.started, self.welcomed) {
            (Some((_, t, _)), _, _) => Some(*t + self.timeout),
            (None, Some(t), false) => Some(t + self.timeout),
            _ => None,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Event>) {
        loop {
            let ev = match self.deadline() {
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(ev) => ev,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.expire();
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
                Event::Connected(id, s) => {
                    self.conns.insert(id, s);
                    self.started.get_or_insert_with(Instant::now);
                    if let Some(reason) = self.aborted.clone() {
                        self.send_to(id, &FromMaster::Aborted { reason });
                    }
                }
                Event::Message(id, m) => self.message(id, m),
                Event::Closed(id) => {
                    self.conns.remove(&id);
                    if let Some(rank) = self.ranks.remove(&id) {
                        if !self.done.contains(&rank) && self.aborted.is_none() {
                            self.abort(format!("rank {rank} left the job without saying goodbye"));
                        }
                    }
                    if self.welcomed && self.ranks.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    fn expire(&mut self) {
        if let Some((round, _, got)) = self.round.take() {
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
            self.aborted = Some(format!("{reason}, waiting for ranks {missing:?}"));
        } else if !self.welcomed {
            let have: BTreeSet<usize> = self.ranks.values().copied().collect();
            let missing = self.missing(|r| have.contains(&r));
            self.abort(format!(
                "rendezvous timed out after {:?} waiting for ranks {missing:?}",
                self.timeout
            ));
        }
    }

    fn message(&mut self, id: usize, m: ToMaster) {
        match m {
            ToMaster::Hello {
                token,
                rank,
                world,
                endpoint,
            } => self.hello(id, token, rank, world, endpoint),
            ToMaster::Gather { round, data } => {
                let Some(&rank) = self.ranks.get(&id) else {
                    return self.refuse(id, "gather before hello".into());
                };
                if let Some(reason) = self.aborted.clone() {
                    return self.send_to(id, &FromMaster::Aborted { reason });
                }
                let (r, _, got) = self
                    .round
                    .get_or_insert_with(|| (round, Instant::now(), BTreeMap::new()));
                if *r != round {
                    let reason = format!(
                        "rank {rank} is in collective round {round} while others are in round {r}"
                    );
                    return self.abort(reason);
                }
                got.insert(rank, data);
                if got.len() == self.world {
                    if let Some((round, _, got)) = self.round.take() {
                        let data: Vec<String> = got.into_values().collect();
                        self.send_ranks(&FromMaster::Gathered { round, data });
                    }
                }
            }
            ToMaster::Bye => {
                if let Some(&rank) = self.ranks.get(&id) {
                    self.done.insert(rank);
                }
            }
        }
    }

    fn hello(&mut self, id: usize, token: String, rank: usize, world: usize, endpoint: Endpoint) {
        if !constant_time_eq(token.as_bytes(), self.token.as_bytes()) {
            return self.refuse(id, "wrong job token".into());
        }
        if let Some(reason) = self.aborted.clone() {
            return self.send_to(id, &FromMaster::Aborted { reason });
        }
        if world != self.world {
            self.refuse(
                id,
                format!("world size {world} disagrees with rank 0's {}", self.world),
            );
            return self.abort(format!(
                "rank {rank} says the world has {world} ranks, rank 0 says {}",
                self.world
            ));
        }
        if rank >= self.world {
            self.refuse(id, format!("rank {rank} is out of range for world {world}"));
            return self.abort(format!(
                "a process claimed rank {rank} in a world of {world}"
            ));
        }
        if self.ranks.values().any(|r| *r == rank) || self.welcomed {
            self.refuse(id, format!("rank {rank} is already taken"));
            return self.abort(format!("two processes claimed rank {rank}"));
        }
        self.ranks.insert(id, rank);
        self.endpoints.insert(rank, endpoint);
        if self.ranks.len() == self.world {
            let table: Vec<Endpoint> = self.endpoints.values().cloned().collect();
            self.welcomed = true;
            self.send_ranks(&FromMaster::Welcome { table, epoch: 1 });
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
