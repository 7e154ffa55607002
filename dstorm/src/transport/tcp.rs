//! The tcp transport, for hosts without RDMA. Each rank listens for its
//! peers; a peer's writes arrive as frames on that peer's connection and a
//! receive thread applies them into the local segment, so the application
//! thread is never involved. A connection is used only once it has passed
//! the mutual authentication of [`crate::auth`], and only the first from each
//! sender. Every frame is validated (magic, version, epoch, sender, object,
//! offset and length inside the sender's own slots, checksum); an invalid
//! frame is dropped and counted.

use crate::backoff::Backoff;
use crate::config::TransportKind;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::segment::Region;
use crate::transport::{Endpoint, Links, RejectCounters, RejectCounts, Transport};
use crate::wire::{FrameHeader, FrameKind, Payload, SlotHeader, HEADER_BYTES};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Payloads up to this size are copied behind their header and sent with one
/// system call; larger ones go out as header then payload.
const COALESCE_BYTES: usize = 16 * 1024;
/// Threads that authenticate new data connections, and how many
/// connections may wait for one (more are closed at once).
const AUTH_WORKERS: usize = 4;
const AUTH_PENDING: usize = 64;

#[derive(Debug)]
struct ObjectEntry {
    region: Arc<Region>,
    layout: Layout,
}

type ObjectTable = RwLock<Vec<Option<Arc<ObjectEntry>>>>;

#[derive(Debug)]
struct Shared {
    rank: usize,
    world: usize,
    token: Vec<u8>,
    epoch: AtomicU32,
    objects: ObjectTable,
    /// Largest slot capacity of any object created so far.
    max_capacity: AtomicU64,
    rejects: RejectCounters,
    closed: AtomicBool,
    /// Senders that have an authenticated connection: a second claim is
    /// refused.
    claimed: Vec<AtomicBool>,
    /// Bytes received from each sender, counted as they arrive.
    received: Vec<AtomicU64>,
}

#[derive(Debug)]
pub(crate) struct TcpTransport {
    shared: Arc<Shared>,
    local: String,
    peers: Mutex<Vec<Option<Arc<Peer>>>>,
    /// How long connecting to the peers may take (the rendezvous bound).
    timeout: Duration,
}

#[derive(Debug)]
struct Peer {
    rank: usize,
    out: Mutex<(TcpStream, Vec<u8>)>,
    /// A second handle on the connection, to shut it down while a writer
    /// holds `out` (blocked on a peer that stopped reading).
    control: TcpStream,
}

impl TcpTransport {
    pub fn new(
        bind_ip: &str,
        rank: usize,
        world: usize,
        token: &str,
        epoch: u32,
        timeout: Duration,
    ) -> Result<TcpTransport> {
        let (listener, addr) = listen(bind_ip, "bind tcp data listener")?;
        let shared = Arc::new(Shared {
            rank,
            world,
            token: token.as_bytes().to_vec(),
            epoch: AtomicU32::new(epoch),
            objects: RwLock::new(Vec::new()),
            max_capacity: AtomicU64::new(0),
            rejects: RejectCounters::default(),
            closed: AtomicBool::new(false),
            claimed: (0..world).map(|_| AtomicBool::new(false)).collect(),
            received: (0..world).map(|_| AtomicU64::new(0)).collect(),
        });
        let s = shared.clone();
        let gate = crate::auth::Gate::new(
            &format!("malt-tcp-auth-{rank}"),
            AUTH_WORKERS,
            AUTH_PENDING,
            move |conn| admit(conn, &s),
        )
        .map_err(|source| Error::Control {
            op: "spawn tcp authentication threads",
            source,
        })?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("malt-tcp-accept-{rank}"))
            .spawn(move || accept_loop(listener, s, gate))
            .map_err(|source| Error::Control {
                op: "spawn tcp accept thread",
                source,
            })?;
        Ok(TcpTransport {
            shared,
            local: addr.to_string(),
            peers: Mutex::new(Vec::new()),
            timeout,
        })
    }
}

/// The address the data listener binds: `MALT_DATA_ADDR`, or the address of
/// the interface that routes to the master. Finding it connects a UDP
/// socket, which sends nothing; if that fails, every interface.
pub(crate) fn bind_addr(cfg: &crate::Config) -> String {
    if cfg.data_addr != crate::config::DATA_ADDR_ROUTE {
        return cfg.data_addr.clone();
    }
    let route = std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|u| {
            u.connect((cfg.master_addr.as_str(), cfg.master_port))?;
            u.local_addr()
        })
        .map(|a| a.ip());
    match route {
        // A master name that resolves to loopback says nothing about the
        // interface peers on other hosts use.
        Ok(ip) if ip.is_loopback() => {
            tracing::warn!(
                master = %cfg.master_addr,
                "the master address resolves to loopback: the tcp transport listens on every \
                 interface (set MALT_DATA_ADDR to choose one)"
            );
            "0.0.0.0".into()
        }
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        other => {
            tracing::warn!(
                master = %cfg.master_addr,
                error = ?other.err(),
                "no route to the master found: the tcp transport listens on every interface \
                 (set MALT_DATA_ADDR to choose one)"
            );
            "0.0.0.0".into()
        }
    }
}

/// A listener on `bind_ip` (any port) and the address peers reach it by:
/// for every interface (`0.0.0.0`), the address the host name resolves to.
pub(crate) fn listen(bind_ip: &str, op: &'static str) -> Result<(TcpListener, SocketAddr)> {
    let listener =
        TcpListener::bind((bind_ip, 0)).map_err(|source| Error::Control { op, source })?;
    let mut addr = listener
        .local_addr()
        .map_err(|source| Error::Control { op, source })?;
    if addr.ip().is_unspecified() {
        // Peers need a routable address; the host name resolves to one.
        if let Some(ip) = host_ip() {
            addr.set_ip(ip);
        }
    }
    Ok((listener, addr))
}

fn host_ip() -> Option<std::net::IpAddr> {
    let host = crate::env::hostname()?;
    (host.trim(), 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, gate: crate::auth::Gate) {
    for conn in listener.incoming() {
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(conn) = conn {
            gate.offer(conn);
        }
    }
}

/// Authenticates a new data connection (on a handshake worker) and, if it
/// is the first from a rank of this job, hands it to a receive thread of
/// its own.
fn admit(conn: TcpStream, shared: &Arc<Shared>) {
    use crate::auth;
    let c = &shared.rejects;
    let peer = conn.peer_addr().ok();
    let claim = match auth::accept(
        &conn,
        &shared.token,
        auth::Channel::Data,
        shared.rank as u32,
    ) {
        Ok(claim) => claim,
        Err(e) => {
            if !matches!(e, auth::AuthError::Io(_)) {
                RejectCounters::bump(&c.bad_token);
                auth::refuse(&conn);
            }
            tracing::warn!(?peer, error = %e, "refused a tcp data connection");
            return;
        }
    };
    let sender = claim.rank as usize;
    if claim.world as usize != shared.world || sender >= shared.world || sender == shared.rank {
        RejectCounters::bump(&c.bad_sender);
        tracing::warn!(
            ?peer,
            ?claim,
            "refused a tcp data connection from outside this world"
        );
        return;
    }
    if shared.claimed[sender].swap(true, Ordering::AcqRel) {
        RejectCounters::bump(&c.bad_sender);
        tracing::warn!(
            ?peer,
            sender,
            "refused a second tcp data connection for one sender"
        );
        return;
    }
    let s = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("malt-tcp-recv-{}", shared.rank))
        .spawn(move || {
            if let Err(e) = serve(conn, sender, &s) {
                tracing::debug!(error = %e, "tcp receive connection ended");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not spawn a tcp receive thread");
    }
}

/// A reader that adds the bytes it returns to a counter.
struct Counting<'a, R> {
    inner: R,
    bytes: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads and discards `n` bytes without allocating.
fn discard(r: &mut impl Read, mut n: u64) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Serves one authenticated inbound connection: frames until it closes.
fn serve(conn: TcpStream, sender: usize, shared: &Shared) -> io::Result<()> {
    let c = &shared.rejects;
    let r = BufReader::with_capacity(64 * 1024, conn.try_clone()?);
    let mut hb = [0u8; HEADER_BYTES];
    // Every read from here on counts towards the sender's progress, so that a
    // frame that takes longer than the failure timeout to arrive is not taken
    // for silence.
    let mut r = Counting {
        inner: r,
        bytes: &shared.received[sender],
    };
    loop {
        if let Err(e) = r.read_exact(&mut hb) {
            return if e.kind() == io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(e)
            };
        }
        let f = match FrameHeader::decode(&hb) {
            Ok(f) if f.kind != FrameKind::Hello => f,
            Ok(_) | Err(_) => {
                // The stream can no longer be trusted to be in step.
                RejectCounters::bump(&c.bad_header);
                let _ = conn.shutdown(Shutdown::Both);
                return Err(invalid("bad frame header; connection closed".into()));
            }
        };
        apply(&f, sender, shared, &mut r, &conn)?;
    }
}

fn apply(
    f: &FrameHeader,
    sender: usize,
    shared: &Shared,
    r: &mut impl Read,
    conn: &TcpStream,
) -> io::Result<()> {
    let c = &shared.rejects;
    let entry = {
        let objects = shared.objects.read().unwrap_or_else(|p| p.into_inner());
        objects.get(f.object as usize).cloned().flatten()
    };
    // Longest payload any frame may carry: the largest slot this rank has.
    // Beyond it the stream cannot be trusted to be in step: close it.
    let max_len = shared.max_capacity.load(Ordering::Relaxed);
    let too_long = || -> io::Result<()> {
        RejectCounters::bump(&c.bad_length);
        let _ = conn.shutdown(Shutdown::Both);
        Err(invalid(format!(
            "frame length {} exceeds every slot",
            f.len
        )))
    };
    let reject = |counter, r: &mut dyn Read| -> io::Result<()> {
        RejectCounters::bump(counter);
        if f.len > max_len {
            return too_long();
        }
        discard(&mut { r }, f.len)
    };
    if f.sender as usize != sender {
        return reject(&c.bad_sender, r);
    }
    if f.epoch != shared.epoch.load(Ordering::Relaxed) {
        return reject(&c.bad_epoch, r);
    }
    let Some(entry) = entry else {
        return reject(&c.bad_object, r);
    };
    let (region, layout) = (&entry.region, &entry.layout);
    match f.kind {
        FrameKind::Slot => {
            if f.len > max_len {
                return too_long();
            }
            if f.len > layout.capacity as u64 {
                RejectCounters::bump(&c.bad_length);
                return discard(r, f.len);
            }
            let Some(off) = usize::try_from(f.offset)
                .ok()
                .filter(|o| layout.slot_of(sender, *o).is_some())
            else {
                return reject(&c.bad_offset, r);
            };
            let h = SlotHeader {
                seq: f.seq,
                epoch: f.epoch,
                sender: f.sender,
                iteration: f.iteration,
                len: f.len,
                checksum: f.checksum,
                object: f.object,
            };
            if region.recv_slot(off, &h, r)? {
                region.ring();
            } else {
                RejectCounters::bump(&c.bad_checksum);
            }
            Ok(())
        }
        FrameKind::Word => {
            if f.offset != layout.ack_offset(sender) as u64 || f.len != 0 {
                return reject(&c.bad_offset, r);
            }
            region
                .word(f.offset as usize)
                .store(f.seq, Ordering::Release);
            region.ring();
            Ok(())
        }
        // `serve` closes the stream on these before they get here.
        FrameKind::Hello => reject(&c.bad_header, r),
    }
}

fn connect_with_retry(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut backoff = Backoff::new(
        Duration::from_millis(5),
        Duration::from_millis(200),
        Instant::now() + timeout,
    );
    loop {
        let last = match addr.to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(sa) => match TcpStream::connect_timeout(&sa, timeout) {
                    Ok(s) => return Ok(s),
                    Err(e) => e,
                },
                None => invalid(format!("{addr} resolves to nothing")),
            },
            Err(e) => e,
        };
        if !backoff.wait() {
            return Err(last);
        }
    }
}

/// Opens the data connection to `peer` at `addr` and authenticates it,
/// retrying until `timeout` while the peer is not listening yet or too busy
/// to answer.
fn open_link(
    addr: &str,
    peer: usize,
    token: &[u8],
    claim: crate::auth::Claim,
    timeout: Duration,
) -> io::Result<TcpStream> {
    use crate::auth;
    let mut backoff = Backoff::new(
        Duration::from_millis(5),
        Duration::from_millis(200),
        Instant::now() + timeout,
    );
    loop {
        let s = connect_with_retry(addr, backoff.left())?;
        let e = match auth::connect(&s, token, auth::Channel::Data, peer as u32, claim) {
            Ok(()) => return Ok(s),
            Err(auth::AuthError::Io(e)) => e,
            Err(e) => return Err(io::Error::new(io::ErrorKind::PermissionDenied, e)),
        };
        tracing::debug!(addr, error = %e, "tcp data handshake failed; trying again");
        if !backoff.wait() {
            return Err(e);
        }
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }

    fn local_endpoint(&self) -> Option<String> {
        Some(self.local.clone())
    }

    fn start(&self, table: &[Endpoint]) -> Result<()> {
        let sh = &self.shared;
        let mut peers = Vec::with_capacity(table.len());
        for ep in table {
            if ep.rank == sh.rank {
                peers.push(None);
                continue;
            }
            let addr = ep.data_addr.as_deref().ok_or_else(|| {
                Error::Protocol(format!("rank {} published no tcp address", ep.rank))
            })?;
            let peer_err = |source| Error::Peer {
                op: "tcp connect",
                peer: ep.rank,
                source,
            };
            let claim = crate::auth::Claim {
                rank: sh.rank as u32,
                world: sh.world as u32,
                epoch: sh.epoch.load(Ordering::Relaxed),
            };
            let s = open_link(addr, ep.rank, &sh.token, claim, self.timeout).map_err(peer_err)?;
            s.set_nodelay(true).map_err(peer_err)?;
            let control = s.try_clone().map_err(peer_err)?;
            peers.push(Some(Arc::new(Peer {
                rank: ep.rank,
                out: Mutex::new((s, Vec::with_capacity(HEADER_BYTES + COALESCE_BYTES))),
                control,
            })));
            tracing::debug!(peer = ep.rank, addr, "tcp data connection open");
        }
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
        Ok(())
    }

    fn create(&self, object: u32, name: &str, layout: &Layout) -> Result<Arc<Region>> {
        let region = Arc::new(Region::anon(layout.total).map_err(|source| Error::Segment {
            path: format!("tcp:{name}").into(),
            op: "allocate",
            source,
        })?);
        self.shared
            .max_capacity
            .fetch_max(layout.capacity as u64, Ordering::Relaxed);
        let mut objects = self
            .shared
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let i = object as usize;
        if objects.len() <= i {
            objects.resize_with(i + 1, || None);
        }
        objects[i] = Some(Arc::new(ObjectEntry {
            region: region.clone(),
            layout: layout.clone(),
        }));
        Ok(region)
    }

    fn connect(
        &self,
        object: u32,
        _name: &str,
        peers: &[(usize, Layout)],
    ) -> Result<Box<dyn Links>> {
        let all = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut links = vec![None; all.len()];
        for (peer, _) in peers {
            let p = all
                .get(*peer)
                .cloned()
                .flatten()
                .ok_or_else(|| Error::Protocol(format!("no tcp connection to rank {peer}")))?;
            links[*peer] = Some(p);
        }
        Ok(Box::new(TcpLinks {
            object,
            rank: self.shared.rank as u32,
            shared: self.shared.clone(),
            peers: links,
        }))
    }

    fn destroy(&self, object: u32) {
        let mut objects = self
            .shared
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = objects.get_mut(object as usize) {
            *e = None;
        }
    }

    fn rejected(&self) -> RejectCounts {
        self.shared.rejects.snapshot()
    }

    fn set_epoch(&self, epoch: u32) {
        self.shared.epoch.store(epoch, Ordering::Relaxed);
    }

    fn forget(&self, peers: &[usize]) {
        let all = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for r in peers {
            if let Some(p) = all.get(*r).and_then(Option::as_ref) {
                // Unblocks a writer stuck on a peer that stopped reading.
                let _ = p.control.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        let peers = self.peers.get_mut().unwrap_or_else(|p| p.into_inner());
        for p in peers.iter().flatten() {
            if let Ok(out) = p.out.lock() {
                let _ = out.0.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Sends one frame on a connection whose lock the caller holds. Without
/// `wait` the frame goes out only if the socket takes it at once (nobody else
/// writes while the lock is held, so only the tail of an update still
/// draining could block it): `Ok(false)`, nothing sent, otherwise.
fn send_frame(
    rank: usize,
    out: &mut (TcpStream, Vec<u8>),
    f: FrameHeader,
    payload: Payload<'_>,
    wait: bool,
) -> Result<bool> {
    let mut hb = [0u8; HEADER_BYTES];
    f.encode(&mut hb);
    let (stream, buf) = out;
    let io = |source| Error::Peer {
        op: "tcp write",
        peer: rank,
        source,
    };
    buf.clear();
    buf.extend_from_slice(&hb);
    buf.extend_from_slice(payload.head);
    if wait && payload.len() > COALESCE_BYTES {
        stream
            .write_all(buf)
            .and_then(|_| stream.write_all(payload.body))
            .map_err(io)?;
        return Ok(true);
    }
    buf.extend_from_slice(payload.body);
    if wait {
        stream.write_all(buf).map_err(io)?;
        return Ok(true);
    }
    stream.set_nonblocking(true).map_err(io)?;
    let first = stream.write(buf);
    stream.set_nonblocking(false).map_err(io)?;
    match first {
        Ok(n) if n == buf.len() => Ok(true),
        Ok(0) => Ok(false),
        // Part of the frame is in the stream: the rest must follow.
        Ok(n) => stream.write_all(&buf[n..]).map(|()| true).map_err(io),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(io(e)),
    }
}

#[derive(Debug)]
struct TcpLinks {
    object: u32,
    rank: u32,
    /// Frames carry the transport's current epoch: a rank evicted from the
    /// group keeps its old one, and its frames are dropped and counted.
    shared: Arc<Shared>,
    peers: Vec<Option<Arc<Peer>>>,
}

impl TcpLinks {
    fn peer(&self, peer: usize) -> Result<&Arc<Peer>> {
        self.peers
            .get(peer)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Protocol(format!("no tcp link to rank {peer}")))
    }

    fn send(&mut self, peer: usize, f: FrameHeader, payload: Payload<'_>) -> Result<()> {
        let p = self.peer(peer)?;
        let mut out = p.out.lock().unwrap_or_else(|e| e.into_inner());
        send_frame(p.rank, &mut out, f, payload, true).map(|_| ())
    }

    fn slot_frame(&self, offset: usize, h: &SlotHeader, payload: Payload<'_>) -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Slot,
            epoch: self.shared.epoch.load(Ordering::Relaxed),
            sender: self.rank,
            object: self.object,
            offset: offset as u64,
            len: payload.len() as u64,
            seq: h.seq,
            iteration: h.iteration,
            checksum: payload.checksum(),
        }
    }
}

impl Links for TcpLinks {
    fn write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()> {
        let f = self.slot_frame(offset, h, payload);
        self.send(peer, f, payload)
    }

    #[cfg(feature = "testing")]
    fn write_slot_torn(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()> {
        // Over tcp a write that dies half way arrives with a bad checksum.
        let mut f = self.slot_frame(offset, h, payload);
        f.checksum ^= 1;
        self.send(peer, f, payload)
    }

    fn try_write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<bool> {
        let f = self.slot_frame(offset, h, payload);
        let p = self.peer(peer)?;
        let mut out = match p.out.try_lock() {
            Ok(out) => out,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        send_frame(p.rank, &mut out, f, payload, false)
    }

    fn arrivals(&self, peer: usize) -> Option<u64> {
        self.shared
            .received
            .get(peer)
            .map(|b| b.load(Ordering::Relaxed))
    }

    fn write_word(&mut self, peer: usize, offset: usize, value: u64) -> Result<()> {
        let f = FrameHeader {
            kind: FrameKind::Word,
            epoch: self.shared.epoch.load(Ordering::Relaxed),
            sender: self.rank,
            object: self.object,
            offset: offset as u64,
            len: 0,
            seq: value,
            iteration: 0,
            checksum: 0,
        };
        self.send(peer, f, Payload::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{self, Channel, Claim};
    use crate::wire::checksum;

    const CAP: usize = 256;

    fn frame(s: &mut TcpStream, f: FrameHeader, payload: &[u8]) {
        let mut hb = [0u8; HEADER_BYTES];
        f.encode(&mut hb);
        s.write_all(&hb).unwrap();
        s.write_all(payload).unwrap();
    }

    /// Waits (bounded) for the receiver to close `s`.
    fn closed_by_receiver(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        s.read(&mut b).unwrap_or(0) == 0
    }

    fn link(addr: &str, token: &[u8], sender: u32) -> io::Result<TcpStream> {
        let s = TcpStream::connect(addr)?;
        let claim = Claim {
            rank: sender,
            world: 3,
            epoch: 1,
        };
        auth::connect(&s, token, Channel::Data, 0, claim)
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
        Ok(s)
    }

    #[test]
    fn invalid_frames_are_rejected_and_counted_and_bad_streams_closed() {
        let t = TcpTransport::new("127.0.0.1", 0, 3, "tok", 1, Duration::from_secs(10)).unwrap();
        let layout = Layout::new(CAP, 2, vec![1, 2], 3);
        let region = t.create(0, "target", &layout).unwrap();
        let addr = t.local_endpoint().unwrap();
        let slot = layout.slot_offset(0, 0) as u64;
        let payload = [3u8; 16];
        let good = FrameHeader {
            kind: FrameKind::Slot,
            epoch: 1,
            sender: 1,
            object: 0,
            offset: slot,
            len: payload.len() as u64,
            seq: 1,
            iteration: 1,
            checksum: checksum(&payload),
        };
        let mut s = link(&addr, b"tok", 1).unwrap();
        frame(
            &mut s,
            FrameHeader {
                offset: slot + 8,
                ..good
            },
            &payload,
        );
        frame(&mut s, FrameHeader { offset: 0, ..good }, &payload);
        frame(&mut s, FrameHeader { epoch: 7, ..good }, &payload);
        frame(&mut s, FrameHeader { sender: 2, ..good }, &payload);
        frame(&mut s, FrameHeader { object: 9, ..good }, &payload);
        frame(
            &mut s,
            FrameHeader {
                checksum: 1,
                ..good
            },
            &payload,
        );
        // Longer than any slot: counted, and the stream is closed.
        let long = FrameHeader {
            len: CAP as u64 + 1,
            ..good
        };
        frame(&mut s, long, &[0u8; CAP + 1]);
        // A header with a wrong magic, from the other sender: counted, and
        // the stream is closed.
        let mut u = link(&addr, b"tok", 2).unwrap();
        let mut hb = [0u8; HEADER_BYTES];
        FrameHeader { sender: 2, ..good }.encode(&mut hb);
        hb[0] ^= 0xff;
        u.write_all(&hb).unwrap();
        for c in [&mut s, &mut u] {
            assert!(closed_by_receiver(c), "receiver kept a bad stream open");
        }
        // A second connection for a sender, and a wrong token: refused.
        let again = link(&addr, b"tok", 1).map(|mut s| closed_by_receiver(&mut s));
        assert!(again.unwrap_or(true));
        assert!(link(&addr, b"not-the-token", 2).is_err());
        let r = t.rejected();
        let want = [
            ("bad_offset", r.bad_offset, 2),
            ("bad_epoch", r.bad_epoch, 1),
            ("bad_sender", r.bad_sender, 2),
            ("bad_object", r.bad_object, 1),
            ("bad_checksum", r.bad_checksum, 1),
            ("bad_length", r.bad_length, 1),
            ("bad_header", r.bad_header, 1),
            ("bad_token", r.bad_token, 1),
        ];
        for (name, got, n) in want {
            assert_eq!(got, n, "{name}: {r:?}");
        }
        // Nothing of it reached the segment.
        assert!(region.len() >= layout.total);
    }
}
