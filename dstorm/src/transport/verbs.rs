//! The RDMA verbs transport (cargo feature `verbs`), on `sideway`
//! (libibverbs is loaded at run time, so a binary built with the feature
//! still starts on machines without rdma-core and reports `Unsupported`).
//!
//! # Connections
//! One reliable-connection (RC) queue pair per peer, created with the
//! transport and shared by every object. A rank publishes at rendezvous its
//! GID, LID, MTU, first packet sequence number and the number of the queue
//! pair it made for each peer ([`Transport::local_endpoint`]); `start`
//! connects each queue pair to the one its peer made for it.
//!
//! # Segments
//! Each object's segment is anonymous memory. It is registered with remote
//! write access piecewise, one memory region per peer for that peer's 16
//! bytes of peer words (its ack word and its doorbell word) and one per
//! sender for its queue; the control block and everything else stay
//! local. A peer thus holds keys to its own words and queue only: a write
//! anywhere else, by mistake or by a misbehaving peer, fails at this
//! rank's adapter with a remote access error (and breaks only that peer's
//! connection). The segment's address and length, and the receiving peer's
//! two keys, reach it in-band: `create` sends each peer its own `Announce`
//! control message (a two-sided SEND) over the already connected queue
//! pair, and `connect` waits (bounded by the job timeout) until each peer it
//! links to has announced.
//! Object creation calls `create`, a barrier, then `connect`, so the
//! announcements are on their way before anyone waits for them, and the
//! rendezvous only carries per-rank data.
//!
//! # Writes
//! A slot write copies header, payload and trailer into a registered
//! per-peer staging ring and posts one RDMA WRITE of the whole slot (split
//! into at most quarter-ring pieces for very large updates, posted in order
//! on the same queue pair), followed, in the same post, by a 4-byte RDMA
//! WRITE WITH IMMEDIATE into the writer's own doorbell word in the
//! receiver's segment; the immediate value is the object id.
//! Acknowledgement words go the same way. Work requests are signalled
//! selectively (see `ring`), and the completion of a signalled request
//! releases its staging bytes and those of every older request. A writer that finds the ring or the send queue full sleeps on
//! the peer's send completion channel, at most the job timeout.
//!
//! # Completion and wake-up at the receiver
//! - A slot is complete when its trailer matches its header (the
//!   header-trailer-header read of `segment`). One RDMA WRITE places its
//!   bytes in order on rxe and on common adapters; writes on one queue pair
//!   are executed in order, so the trailer, the last bytes of the slot's
//!   last write, lands after the rest. The reader's checks reject anything
//!   else as torn.
//! - The 4-byte write changes the writer's doorbell word in the receiver's
//!   segment, and a reader spinning on the segment's doorbell also watches
//!   the sum of those words, so it sees new data at once (as with shm).
//! - The immediate data consumes a posted receive; the receive thread, which
//!   sleeps on the receive completion channel, rings the object's doorbell
//!   (increment and futex wake), which wakes parked readers. Parking uses
//!   only the doorbell, which nothing but increments ever changes: the
//!   writers' doorbell words may come back to an earlier sum, and a reader
//!   parked on such a word could sleep through new data.
//!
//! # Releasing a segment
//! `destroy` deregisters nothing at once: it sends `Gone` to every peer,
//! which stops writing into that segment (later writes into it are dropped,
//! like frames for a missing object over tcp) and answers `GoneAck` on the
//! same queue pair, after all its earlier writes. When every live peer has
//! answered, the region is deregistered and its memory released. A peer
//! that drops an object while another still writes into it thus never
//! causes a remote access error that would break the shared queue pair.
//!
//! # Failures
//! A failed completion (retry counter exceeded when the peer died or is
//! unreachable, remote access error, ...) fails the peer's connection: that
//! write or the next one returns [`Error::Peer`] naming the peer and the
//! completion status, and so does every later write to it. A dead peer is
//! detected after about
//! `4.096 µs × 2^MALT_RDMA_TIMEOUT × (MALT_RDMA_RETRY + 1)` of
//! unacknowledged traffic. In a fault-tolerant job the group's regroup
//! usually comes first: a rank it declares dead is forgotten at once (its
//! connection counts as failed, writers waiting on it return, and the next
//! epoch's segments are not announced to it).
//!
//! # Modules
//! Split along the seams of Gloo's ibverbs transport:
//! - setup and the device: `rc` (the transport, what its parts share and
//!   the order they are torn down in), `device`, `settings`, `endpoint`;
//! - one peer's connection: `pair` (queue pair, send side, staging);
//! - the send path: `send` (reserve, post, reap, the links' writes), `ring`;
//! - the receive thread: `recv`, and `msg` for its control messages;
//! - segments: `segments` (create, connect, destroy, draining);
//! - failure: `failure`;
//! - beneath them: `ffi` (raw data-path calls) and `memory` (memory handed
//!   to the device, registered or not).
//!
//! # Environment
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `MALT_RDMA_DEVICE` | first device with an active port | device name, e.g. `rxe0`, `mlx5_0` |
//! | `MALT_RDMA_PORT` | first active port | port number |
//! | `MALT_RDMA_GID_INDEX` | RoCEv2 IPv4-mapped GID (Ethernet), 0 (InfiniBand) | source GID index |
//! | `MALT_RDMA_TIMEOUT` | 16 (268 ms) | local ACK timeout exponent, 1..=31: 4.096 µs × 2^value |
//! | `MALT_RDMA_RETRY` | 7 | transport retries, 0..=7 |
//! | `MALT_RDMA_STAGING` | 4m | registered staging memory per peer (64k..1g, suffixes k/m/g) |
//!
//! [`Transport::local_endpoint`]: crate::transport::Transport::local_endpoint
//! [`Error::Peer`]: crate::Error::Peer

use crate::config::Config;
use crate::error::Result;
use crate::transport::Transport;
use std::sync::Arc;

// Setup and the device.
#[cfg(feature = "verbs")]
mod device;
#[cfg(feature = "verbs")]
mod endpoint;
#[cfg(feature = "verbs")]
mod rc;
#[cfg(feature = "verbs")]
mod settings;
// One peer's connection.
#[cfg(feature = "verbs")]
mod pair;
// The send path.
#[cfg(feature = "verbs")]
mod ring;
#[cfg(feature = "verbs")]
mod send;
// The receive thread and its control messages.
#[cfg(feature = "verbs")]
mod msg;
#[cfg(feature = "verbs")]
mod recv;
// Segments.
#[cfg(feature = "verbs")]
mod segments;
// Failure.
#[cfg(feature = "verbs")]
mod failure;
// Raw verbs calls and the memory handed to the device.
#[cfg(feature = "verbs")]
mod ffi;
#[cfg(feature = "verbs")]
mod memory;

/// Builds the verbs transport, or explains why it is not available.
#[cfg(feature = "verbs")]
pub(crate) fn transport(cfg: &Config) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(rc::VerbsTransport::new(cfg)?))
}

/// Builds the verbs transport, or explains why it is not available.
#[cfg(not(feature = "verbs"))]
pub(crate) fn transport(_cfg: &Config) -> Result<Arc<dyn Transport>> {
    Err(crate::error::Error::Unsupported {
        transport: "verbs",
        why: "this build has no RDMA support: rebuild with the `verbs` feature \
              (cargo build --release -p malt --features verbs), then run on an RDMA \
              device; for soft-RoCE use `sudo rxe-setup/rxe-up.sh` on a Linux host \
              whose kernel has rdma_rxe, or `rxe-setup/in-guest.sh COMMAND...` on any \
              other Linux host (see rxe-setup/README.md)"
            .into(),
    })
}
