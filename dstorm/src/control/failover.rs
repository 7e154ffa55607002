//! Moving the coordinator when the rank that hosts it fails.
//!
//! Under srun, mpirun or torchrun the coordinator runs in rank 0's process
//! (under `malt launch` it runs in the launcher, and this module is idle).
//! In a fault-tolerant job every rank binds a standby listener at startup
//! and publishes its address in the endpoint table. When a rank's control
//! connection breaks while its group still runs, it tries the members of
//! its last view in ascending order, skipping the failed host: the first
//! one that answers is the new coordinator, and a rank whose turn comes
//! (every lower member unreachable) starts the coordinator on its own
//! standby listener. The new coordinator waits a bounded time for the
//! others, then goes on with those that came if they are a majority of the
//! last view, so a partition never makes two groups; below a majority the
//! job stops (see [`crate::control::coordinator::Coordinator::takeover`]).

use crate::auth;
use crate::control::coordinator::Takeover;
use crate::control::dial::{self, Backoff};
use crate::control::View;
use crate::control::{self, Bounds, ToMaster};
use crate::fault::FaultPolicy;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What a rank needs to find or become the next coordinator.
#[derive(Debug)]
pub(crate) struct Standby {
    pub rank: usize,
    pub world: usize,
    pub token: String,
    pub bounds: Bounds,
    pub policy: FaultPolicy,
    pub nonce: u64,
    /// This rank's standby listener, until it takes over.
    pub listener: Option<TcpListener>,
    /// Every rank's standby address, by rank.
    pub addrs: Vec<Option<String>>,
    /// The rank whose process runs the current coordinator.
    pub host: usize,
}

impl Standby {
    /// How long one candidate may take to answer (its coordinator starts
    /// only once it too has found every lower member unreachable).
    fn per_candidate(&self) -> Duration {
        self.policy.fail_timeout + Duration::from_secs(1)
    }

    /// Finds (or becomes) the new coordinator after the connection to the
    /// old one broke, and rejoins it: the new connection, or `None` when no
    /// member could be reached.
    pub fn fail_over(&mut self, view: &View) -> Option<TcpStream> {
        let old = self.host;
        let members = view.members();
        let epoch = view.epoch();
        tracing::warn!(
            host = old,
            epoch,
            "the coordinator's host is gone: looking for the next coordinator"
        );
        for &c in members.iter().filter(|m| **m != old) {
            if c == self.rank {
                if let Some(l) = self.listener.take() {
                    let t = Takeover {
                        host: old,
                        epoch,
                        members: members.clone(),
                        dead: view.dead(),
                        nonce: self.nonce,
                        window: 2 * self.per_candidate(),
                    };
                    match control::spawn_coordinator(
                        l,
                        self.token.clone(),
                        self.world,
                        self.bounds,
                        self.policy,
                        Default::default(),
                        Some(t),
                    ) {
                        Ok((_, done, _)) => view.set_hosted(done),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot take over as coordinator");
                            return None;
                        }
                    }
                }
            }
            let Some(addr) = self.addrs.get(c).cloned().flatten() else {
                continue;
            };
            match self.rejoin(&addr, epoch) {
                Ok(s) => {
                    tracing::warn!(coordinator = c, "rejoined the job at its new coordinator");
                    self.host = c;
                    return Some(s);
                }
                Err(e) => {
                    tracing::info!(candidate = c, error = %e, "not the next coordinator");
                }
            }
        }
        None
    }

    /// Connects to the standby at `addr`, authenticates and says rejoin,
    /// retrying until the candidate's bound; a refused connection (no
    /// process behind the port) gives up at once.
    fn rejoin(&self, addr: &str, epoch: u32) -> io::Result<TcpStream> {
        let sa: SocketAddr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "resolves to nothing"))?;
        let mut backoff = Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(50),
            Instant::now() + self.per_candidate(),
        );
        let claim = auth::Claim {
            rank: u32::try_from(self.rank).unwrap_or(u32::MAX),
            world: u32::try_from(self.world).unwrap_or(u32::MAX),
            epoch,
        };
        loop {
            let attempt = dial::attempt(&sa, backoff.left(), self.token.as_bytes(), claim);
            match attempt {
                Ok(mut s) => {
                    s.set_nodelay(true)?;
                    control::send(
                        &mut s,
                        &ToMaster::Rejoin {
                            rank: self.rank,
                            world: self.world,
                            epoch,
                        },
                    )?;
                    return Ok(s);
                }
                Err(auth::AuthError::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(e)
                }
                Err(auth::AuthError::Io(_)) => {
                    if !backoff.wait() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{addr}: no coordinator answered"),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        e.to_string(),
                    ))
                }
            }
        }
    }
}
