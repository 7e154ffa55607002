//! Mutual authentication of the job's TCP connections (the control channel
//! and every tcp data connection), before anything else is read from them.
//!
//! The job token is a shared secret and never crosses the wire. The
//! accepting side sends a challenge (magic, version, channel, its own rank or
//! [`COORDINATOR`], and a fresh 32-byte nonce); the connecting side answers
//! with its own nonce, who it claims to be (rank, world size, epoch) and an
//! HMAC-SHA256 under the token over the challenge and its answer. The
//! accepting side checks that tag in constant time and proves in turn that
//! it knows the token with an HMAC over both messages. Nonces are fresh on
//! both sides, so a recorded exchange cannot be replayed, and neither
//! message tells a stranger anything about the token. A stranger who holds
//! the listening port first cannot pass for the coordinator or a peer: the
//! connecting side refuses to go on without the accepting side's proof.
//!
//! Before the answer is verified, a connection costs fixed buffers of a few
//! dozen bytes and one of a fixed number of handshake workers (`Gate`) for
//! at most [`DEADLINE`]; nothing is sized by the peer.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a handshake may take, on either side, however slowly the other
/// side sends.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// The target of a control-channel handshake (data handshakes name the
/// receiving rank).
pub const COORDINATOR: u32 = u32::MAX;

const MAGIC: [u8; 8] = *b"maltauth";
const VERSION: u8 = 1;
const NONCE: usize = 32;
const TAG: usize = 32;
const CHALLENGE: usize = 8 + 1 + 1 + 4 + NONCE;
const ANSWER: usize = NONCE + 12 + TAG;
const VERDICT: usize = 1 + TAG;

/// Which connection is being opened; part of what is signed, so a proof
/// for one cannot be used for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Channel {
    /// A rank's connection to the coordinator.
    Control = 1,
    /// A sender's tcp data connection to a receiver.
    Data = 2,
}

/// Who the connecting side is, as proved by its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Its rank.
    pub rank: u32,
    /// The world size it was started with.
    pub world: u32,
    /// Its epoch (data connections; 0 on the control channel).
    pub epoch: u32,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The connection failed or went quiet past [`DEADLINE`].
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The other side does not speak this protocol (another program on the
    /// port, or another version of malt).
    #[error("the other side is not a malt {0} of this version")]
    NotMalt(&'static str),
    /// The connecting side's tag was wrong: it does not know the job's
    /// secret.
    #[error("wrong proof of the job secret")]
    BadProof,
    /// The accepting side refused this side's proof.
    #[error(
        "the other side refused this process's proof of the job secret: the ranks do not \
         share one (where the ranks' hosts do not share a home directory, pass the same \
         MALT_JOB_TOKEN or MALT_SECRET_FILE to every rank)"
    )]
    Refused,
    /// The accepting side could not prove that it knows the secret.
    #[error(
        "the process listening there could not prove that it knows the job secret \
         (another job or another user holds that port)"
    )]
    Impostor,
}

type HmacSha256 = Hmac<Sha256>;

fn tag(key: &[u8], label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    use sha2::Digest;
    // The MAC key is the SHA-256 of the token, zero-padded to the block
    // size (what HMAC does with a short key), so that keying cannot fail.
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&Sha256::digest(key));
    let mut m = <HmacSha256 as hmac::digest::KeyInit>::new(&k.into());
    m.update(label);
    for p in parts {
        m.update(p);
    }
    m
}

/// HMAC-SHA256 of `msg` under `key`, in hex: the job token derived from a
/// per-user secret and a launcher's job id.
pub fn derive(key: &[u8], msg: &[u8]) -> String {
    let t = tag(key, b"malt token", &[msg]).finalize().into_bytes();
    crate::secret::hex(&t)
}

fn nonce() -> [u8; NONCE] {
    use rand::RngCore;
    let mut n = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn deadlines(conn: &TcpStream, d: Option<Duration>) -> io::Result<()> {
    conn.set_read_timeout(d)?;
    conn.set_write_timeout(d)
}

/// Fills `buf` from `conn` by `deadline` at the latest, however the peer
/// trickles its bytes (a socket timeout alone bounds each read, not the
/// whole message).
fn read_by(conn: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake timed out",
            ));
        }
        conn.set_read_timeout(Some(left))?;
        let mut r = conn;
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake timed out",
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The accepting side: challenges the peer on `conn`, checks its answer,
/// proves knowledge of `key` in turn, and returns who the peer is. `me` is
/// this side's rank, or [`COORDINATOR`]. Leaves no deadline set on `conn`.
/// On [`AuthError::BadProof`] the peer has not been answered yet: the
/// caller counts the refusal, then tells it with [`refuse`].
pub fn accept(conn: &TcpStream, key: &[u8], channel: Channel, me: u32) -> Result<Claim, AuthError> {
    let deadline = Instant::now() + DEADLINE;
    deadlines(conn, Some(DEADLINE))?;
    let mut challenge = [0u8; CHALLENGE];
    challenge[..8].copy_from_slice(&MAGIC);
    challenge[8] = VERSION;
    challenge[9] = channel as u8;
    challenge[10..14].copy_from_slice(&me.to_le_bytes());
    challenge[14..].copy_from_slice(&nonce());
    let mut w = conn;
    w.write_all(&challenge)?;
    let mut answer = [0u8; ANSWER];
    read_by(conn, &mut answer, deadline)?;
    let (signed, given) = answer.split_at(NONCE + 12);
    let ok = tag(key, b"malt client", &[&challenge, signed])
        .verify_slice(given)
        .is_ok();
    if !ok {
        return Err(AuthError::BadProof);
    }
    let mut verdict = [0u8; VERDICT];
    let proof = tag(key, b"malt server", &[&challenge, &answer]).finalize();
    verdict[1..].copy_from_slice(&proof.into_bytes());
    w.write_all(&verdict)?;
    deadlines(conn, None)?;
    let word =
        |i: usize| u32::from_le_bytes([signed[i], signed[i + 1], signed[i + 2], signed[i + 3]]);
    Ok(Claim {
        rank: word(NONCE),
        world: word(NONCE + 4),
        epoch: word(NONCE + 8),
    })
}

/// Tells a peer whose proof was wrong that it was refused, and closes.
pub fn refuse(conn: &TcpStream) {
    let mut w = conn;
    let mut verdict = [0u8; VERDICT];
    verdict[0] = 1;
    let _ = w.write_all(&verdict);
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// The connecting side: answers the challenge on `conn` as `claim`, and
/// checks that the other side is `target` (a rank, or [`COORDINATOR`]) and
/// knows `key`. Leaves no deadline set on `conn`.
pub fn connect(
    conn: &TcpStream,
    key: &[u8],
    channel: Channel,
    target: u32,
    claim: Claim,
) -> Result<(), AuthError> {
    let deadline = Instant::now() + DEADLINE;
    deadlines(conn, Some(DEADLINE))?;
    let mut challenge = [0u8; CHALLENGE];
    read_by(conn, &mut challenge, deadline)?;
    let what = match channel {
        Channel::Control => "coordinator",
        Channel::Data => "tcp data receiver",
    };
    if challenge[..8] != MAGIC
        || challenge[8] != VERSION
        || challenge[9] != channel as u8
        || challenge[10..14] != target.to_le_bytes()
    {
        return Err(AuthError::NotMalt(what));
    }
    let mut answer = [0u8; ANSWER];
    answer[..NONCE].copy_from_slice(&nonce());
    answer[NONCE..NONCE + 4].copy_from_slice(&claim.rank.to_le_bytes());
    answer[NONCE + 4..NONCE + 8].copy_from_slice(&claim.world.to_le_bytes());
    answer[NONCE + 8..NONCE + 12].copy_from_slice(&claim.epoch.to_le_bytes());
    let t = tag(key, b"malt client", &[&challenge, &answer[..NONCE + 12]]).finalize();
    answer[NONCE + 12..].copy_from_slice(&t.into_bytes());
    let mut w = conn;
    w.write_all(&answer)?;
    let mut verdict = [0u8; VERDICT];
    read_by(conn, &mut verdict, deadline)?;
    if verdict[0] != 0 {
        return Err(AuthError::Refused);
    }
    tag(key, b"malt server", &[&challenge, &answer])
        .verify_slice(&verdict[1..])
        .map_err(|_| AuthError::Impostor)?;
    deadlines(conn, None)?;
    Ok(())
}

/// Connections waiting for authentication: at most `pending` queued, served
/// by a fixed number of worker threads, each handshake bounded by
/// [`DEADLINE`]. A connection that finds the queue full is closed at once.
#[derive(Debug)]
pub(crate) struct Gate {
    tx: SyncSender<TcpStream>,
}

impl Gate {
    /// Starts `workers` threads named `name` that run `serve` on each
    /// queued connection (the handshake, then whatever an authenticated
    /// connection needs; a long-lived one must get its own thread).
    pub fn new(
        name: &str,
        workers: usize,
        pending: usize,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> io::Result<Gate> {
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(pending);
        let rx = Arc::new(Mutex::new(rx));
        let serve = Arc::new(serve);
        for _ in 0..workers {
            let (rx, serve) = (rx.clone(), serve.clone());
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match next {
                        Ok(conn) => serve(conn),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Gate { tx })
    }

    /// Queues `conn` for authentication, or closes it if the queue is full.
    pub fn offer(&self, conn: TcpStream) {
        if let Err(TrySendError::Full(c)) = self.tx.try_send(conn) {
            tracing::warn!(
                peer = ?c.peer_addr().ok(),
                "too many connections waiting for authentication; closed one"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (s, c)
    }

    const CLAIM: Claim = Claim {
        rank: 3,
        world: 4,
        epoch: 2,
    };

    fn run(
        server_key: &'static [u8],
        client_key: &'static [u8],
        target: u32,
    ) -> (Result<Claim, AuthError>, Result<(), AuthError>) {
        let (s, c) = pair();
        let server = std::thread::spawn(move || {
            let got = accept(&s, server_key, Channel::Data, 1);
            if matches!(got, Err(AuthError::BadProof)) {
                refuse(&s);
            }
            got
        });
        let client = connect(&c, client_key, Channel::Data, target, CLAIM);
        drop(c);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_same_secret_passes_both_ways_and_the_claim_arrives() {
        let (s, c) = run(b"secret", b"secret", 1);
        assert_eq!(s.unwrap(), CLAIM);
        c.unwrap();
    }

    #[test]
    fn a_wrong_secret_is_refused_and_told_so() {
        let (s, c) = run(b"secret", b"guess", 1);
        assert!(matches!(s, Err(AuthError::BadProof)), "{s:?}");
        assert!(matches!(c, Err(AuthError::Refused)), "{c:?}");
    }

    #[test]
    fn a_listener_that_does_not_know_the_secret_is_not_trusted() {
        // The stranger accepts every proof and answers with a made-up one.
        let (s, c) = pair();
        let stranger = std::thread::spawn(move || {
            let mut ch = [0u8; CHALLENGE];
            ch[..8].copy_from_slice(&MAGIC);
            ch[8] = VERSION;
            ch[9] = Channel::Data as u8;
            ch[10..14].copy_from_slice(&1u32.to_le_bytes());
            (&s).write_all(&ch).unwrap();
            let mut a = [0u8; ANSWER];
            (&s).read_exact(&mut a).unwrap();
            (&s).write_all(&[0u8; VERDICT]).unwrap();
            a
        });
        let got = connect(&c, b"secret", Channel::Data, 1, CLAIM);
        assert!(matches!(got, Err(AuthError::Impostor)), "{got:?}");
        // What the stranger saw does not contain the secret.
        let seen = stranger.join().unwrap();
        assert!(!seen.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn a_proof_for_another_receiver_or_channel_is_not_accepted() {
        let (s, c) = run(b"secret", b"secret", 2);
        // The client sees rank 1's challenge while it wants rank 2.
        assert!(matches!(c, Err(AuthError::NotMalt(_))), "{c:?}");
        assert!(s.is_err());
    }

    #[test]
    fn a_peer_that_trickles_bytes_is_dropped_at_the_deadline() {
        let (s, c) = pair();
        let trickle = std::thread::spawn(move || {
            let mut ch = [0u8; CHALLENGE];
            let _ = (&c).read_exact(&mut ch);
            // One byte at a time, each well within a per-read timeout.
            for _ in 0..ANSWER {
                if (&c).write_all(&[0u8]).is_err() {
                    return;
                }
                std::thread::sleep(DEADLINE / 4);
            }
        });
        let t = std::time::Instant::now();
        let got = accept(&s, b"secret", Channel::Control, COORDINATOR);
        assert!(matches!(got, Err(AuthError::Io(_))), "{got:?}");
        assert!(
            t.elapsed() < DEADLINE + Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        drop(s);
        trickle.join().unwrap();
    }

    #[test]
    fn a_silent_peer_is_dropped_after_the_deadline() {
        let (s, _c) = pair();
        let t = std::time::Instant::now();
        let got = accept(&s, b"secret", Channel::Control, COORDINATOR);
        assert!(matches!(got, Err(AuthError::Io(_))), "{got:?}");
        assert!(t.elapsed() < DEADLINE + Duration::from_secs(2));
    }
}
