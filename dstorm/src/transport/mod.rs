//! The transport interface (Gloo-style split): a transport creates local
//! segments that peers write into, and for each object a set of links that
//! write into the peers' segments. The layers above never name a transport.
//! Transports also own how long a waiting reader polls before it parks
//! ([`Transport::spin`], by default [`SPIN`]), and count the frames their
//! receive paths reject ([`RejectCounts`]).

pub(crate) mod shm;
pub(crate) mod tcp;
pub(crate) mod verbs;

use crate::config::TransportKind;
use crate::error::Result;
use crate::layout::Layout;
use crate::segment::Region;
use crate::wire::{Payload, SlotHeader};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a waiting reader polls its segment before it parks, on
/// transports without a setting of their own (shm, tcp; `MALT_SPIN_US`
/// overrides it there). Verbs has its own, `MALT_RDMA_SPIN_US`.
pub(crate) const SPIN: Duration = Duration::from_micros(30);

/// One rank's entry in the endpoint table of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// The rank.
    pub rank: usize,
    /// Host name it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Transport-specific address (tcp: `ip:port` of its receive listener).
    pub data_addr: Option<String>,
    /// Where this rank would run the coordinator if the rank hosting it
    /// fails (`ip:port`; fault-tolerant jobs whose coordinator runs in a
    /// rank, that is not under `malt launch`).
    #[serde(default)]
    pub standby: Option<String>,
}

/// What every transport implements.
pub(crate) trait Transport: Send + Sync + Debug {
    fn kind(&self) -> TransportKind;
    /// Address peers use to reach this rank, published at rendezvous.
    fn local_endpoint(&self) -> Option<String>;
    /// Called once the endpoint table is known.
    fn start(&self, table: &[Endpoint]) -> Result<()>;
    /// Creates this rank's segment for `object`.
    fn create(&self, object: u32, name: &str, layout: &Layout) -> Result<Arc<Region>>;
    /// Links for writing into `peers`' segments of `object` (layouts by rank).
    fn connect(&self, object: u32, name: &str, peers: &[(usize, Layout)])
        -> Result<Box<dyn Links>>;
    /// Releases this rank's segment for `object`.
    fn destroy(&self, object: u32);
    /// Counters of frames this rank's receive path rejected.
    fn rejected(&self) -> RejectCounts;
    /// How long a waiting reader polls before it parks.
    fn spin(&self) -> Duration {
        SPIN
    }
    /// The group moved to `epoch`: writes of older epochs are dropped.
    fn set_epoch(&self, _epoch: u32) {}
    /// The coordinator's welcome gave the job `nonce`, a random number that
    /// tells this job apart from any other (shm names its files with it).
    fn welcome(&self, _nonce: u64) {}
    /// These peers left the group: release what is held for them and
    /// unblock writers waiting on them.
    fn forget(&self, _peers: &[usize]) {}
    /// Removes whatever this rank made that would outlive the process (shm
    /// segment files), when it must exit without unwinding.
    fn remove_own(&self) {}
}

/// Writes into peers' segments of one object.
pub(crate) trait Links: Send + Debug {
    /// Writes a whole slot at `offset` of `peer`'s segment and rings its doorbell.
    fn write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()>;
    /// A slot write that stops before the trailer, as a writer killed in
    /// the middle would leave it: for tests of torn reads (feature
    /// `testing`).
    #[cfg(feature = "testing")]
    fn write_slot_torn(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<()>;
    /// Writes one 8-byte word at `offset` of `peer`'s segment and rings its doorbell.
    fn write_word(&mut self, peer: usize, offset: usize, value: u64) -> Result<()>;
    /// Like [`write_slot`](Self::write_slot), but returns `Ok(false)` at
    /// once, writing nothing, when the link to `peer` is busy with another
    /// write (a large update on a stream transport): for heartbeats, which
    /// must not queue behind model updates. Transports whose writes never
    /// wait for each other write as usual.
    fn try_write_slot(
        &mut self,
        peer: usize,
        offset: usize,
        h: &SlotHeader,
        payload: Payload<'_>,
    ) -> Result<bool> {
        self.write_slot(peer, offset, h, payload).map(|()| true)
    }
    /// A count that grows while data from `peer` arrives (tcp: bytes read;
    /// verbs: immediate-data writes, one per chunk of a long update); `None`
    /// where the transport sees nothing until a write is complete. The fault
    /// monitor counts progress as a sign of life while a long update holds
    /// the link.
    fn arrivals(&self, _peer: usize) -> Option<u64> {
        None
    }
    /// A reader of this object is about to park on its doorbell (`true`), or
    /// is back (`false`): for transports whose doorbell is rung by a receive
    /// thread that only needs to be woken by the adapter while somebody is
    /// parked.
    fn parking(&self, _parked: bool) {}
}

/// Frames dropped by a receiver, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RejectCounts {
    /// Connections refused for a wrong proof of the job secret.
    pub bad_token: u64,
    /// Frames with a wrong magic number, version or kind (connection closed).
    pub bad_header: u64,
    /// Frames claiming another sender than the connection's, and
    /// connections from outside the world or for a sender that already has
    /// one.
    pub bad_sender: u64,
    /// Frames from an older or newer group epoch.
    pub bad_epoch: u64,
    /// Frames for an object this rank does not have.
    pub bad_object: u64,
    /// Frames whose offset is not one of the sender's slots or ack word.
    pub bad_offset: u64,
    /// Frames whose length exceeds the slot capacity (connection closed if absurd).
    pub bad_length: u64,
    /// Slot frames whose payload checksum did not match.
    pub bad_checksum: u64,
}

impl RejectCounts {
    /// Sum over every reason.
    pub fn total(&self) -> u64 {
        self.bad_token
            + self.bad_header
            + self.bad_sender
            + self.bad_epoch
            + self.bad_object
            + self.bad_offset
            + self.bad_length
            + self.bad_checksum
    }
}

/// The atomically updated form of [`RejectCounts`], shared with receive threads.
#[derive(Debug, Default)]
pub(crate) struct RejectCounters {
    pub bad_token: AtomicU64,
    pub bad_header: AtomicU64,
    pub bad_sender: AtomicU64,
    pub bad_epoch: AtomicU64,
    pub bad_object: AtomicU64,
    pub bad_offset: AtomicU64,
    pub bad_length: AtomicU64,
    pub bad_checksum: AtomicU64,
}

impl RejectCounters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RejectCounts {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RejectCounts {
            bad_token: l(&self.bad_token),
            bad_header: l(&self.bad_header),
            bad_sender: l(&self.bad_sender),
            bad_epoch: l(&self.bad_epoch),
            bad_object: l(&self.bad_object),
            bad_offset: l(&self.bad_offset),
            bad_length: l(&self.bad_length),
            bad_checksum: l(&self.bad_checksum),
        }
    }
}
