//! Reaching a coordinator as a rank: one attempt (connect, then prove the
//! job token on the control channel); between attempts, while the
//! coordinator may not be listening yet, [`Backoff`] waits. Used by the
//! first join and by the rejoin after the coordinator moved
//! ([`super::failover`]).

pub(crate) use crate::backoff::Backoff;

use crate::auth;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connects to the coordinator at `addr` within `timeout` and authenticates
/// as `claim` with the job token `token`.
pub(crate) fn attempt(
    addr: &SocketAddr,
    timeout: Duration,
    token: &[u8],
    claim: auth::Claim,
) -> Result<TcpStream, auth::AuthError> {
    let s = TcpStream::connect_timeout(addr, timeout).map_err(auth::AuthError::Io)?;
    auth::connect(&s, token, auth::Channel::Control, auth::COORDINATOR, claim)?;
    Ok(s)
}
