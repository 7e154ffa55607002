//! A shared object as one rank holds it: its spec ([`spec`]), the write
//! half ([`write`]: target, send, backpressure), the read half ([`read`]:
//! polling, waiting for visibility, reading together), how both wait
//! ([`wait`]) and what they count ([`counters`]). The [`Group`] creates
//! objects; the fault monitor writes its heartbeats through one.
//!
//! [`Group`]: crate::Group

mod counters;
pub(crate) mod read;
mod spec;
#[cfg(feature = "testing")]
mod testing;
mod wait;
mod write;

pub use counters::{Counters, PeerCounters};
pub(crate) use spec::check_agreement;
pub use spec::{FlowControl, ObjectSpec};
pub(crate) use wait::Spin;

use crate::control::View;
use crate::error::Result;
use crate::layout::Layout;
use crate::segment::Region;
use crate::transport::{Links, Transport};
use std::sync::Arc;
use std::time::Duration;

/// An update returned by [`Object::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The rank that wrote it.
    pub sender: usize,
    /// Its per-queue sequence number (1, 2, ...).
    pub seq: u64,
    /// The sender's iteration when it wrote.
    pub iteration: u64,
    /// Payload length; the payload is in the first `len` bytes of the buffer.
    pub len: usize,
}

/// What names an object on the wire and in errors.
#[derive(Debug)]
pub(crate) struct Ident {
    /// The object's number in its group, in every slot header.
    pub id: u32,
    pub name: String,
    /// This rank.
    pub rank: usize,
    /// The membership epoch the object was created in.
    pub epoch: u32,
    /// Held while the object lives: its group lets the name be used again
    /// once no object holds it (only its drop matters).
    #[allow(dead_code)]
    pub held: Arc<()>,
}

/// How an object follows its group.
#[derive(Debug)]
pub(crate) struct Tracking {
    pub view: Arc<View>,
    /// Refuses use once the group has moved to another epoch (unless
    /// [`ignore_membership`](Object::ignore_membership) was called).
    pub tracks: bool,
    /// The job survives failures: a failed write waits for the regroup.
    pub tolerant: bool,
    /// The bound on a backpressured write's wait and on a regroup's.
    pub timeout: Duration,
    /// How long nothing may arrive from a peer waiting in a collective
    /// before a wait for it ends the job as a call mismatch.
    pub quiet: Duration,
    /// The peer last seen waiting in a collective while this rank waited
    /// for its update, what had arrived from it then, and since when
    /// nothing more has. Kept across waits, so that a caller waiting in
    /// short slices still finds the mismatch.
    pub stuck: Option<(usize, Option<u64>, std::time::Instant)>,
}

/// The write half's state.
#[derive(Debug)]
struct Tx {
    /// The ranks this rank writes to, ascending.
    out: Vec<usize>,
    /// For each rank we link to: the index of our queue in its segment.
    queue_at: Vec<Option<usize>>,
    /// The sequence number of the last update written to each rank.
    send_seq: Vec<u64>,
}

/// The read half's state.
#[derive(Debug)]
struct Rx {
    /// The sequence number expected next in each queue of this segment.
    next_seq: Vec<u64>,
    /// Queue, slot offset and header words of each update being read by
    /// [`Object::read_together`] (kept to avoid allocating per call).
    together: Vec<(usize, usize, [u64; 8])>,
    /// The queue [`Object::poll`] looks at first.
    cursor: usize,
}

/// The transport's side of an object: the layout of every segment, this
/// rank's own segment, and the links to the peers' segments.
#[derive(Debug)]
pub(crate) struct Wiring {
    pub layout: Layout,
    pub region: Arc<Region>,
    pub links: Box<dyn Links>,
    pub transport: Arc<dyn Transport>,
}

/// This rank's handle on a shared object: write to out-neighbours, poll
/// what in-neighbours wrote.
#[derive(Debug)]
pub struct Object {
    ident: Ident,
    track: Tracking,
    flow: FlowControl,
    /// Polling before parking: the transport's spin, stretched after
    /// short waits (see [`Spin`]).
    spin: Spin,
    tx: Tx,
    rx: Rx,
    counters: Counters,
    layout: Layout,
    region: Arc<Region>,
    links: Box<dyn Links>,
    transport: Arc<dyn Transport>,
}

impl Object {
    /// An object linked to `out` (where our queues are `queue_at`, by
    /// rank) over `wiring`, nothing written or read yet.
    pub(crate) fn new(
        ident: Ident,
        track: Tracking,
        flow: FlowControl,
        out: Vec<usize>,
        queue_at: Vec<Option<usize>>,
        spin: Spin,
        wiring: Wiring,
    ) -> Object {
        let world = queue_at.len();
        let queues = wiring.layout.senders.len();
        Object {
            ident,
            track,
            flow,
            spin,
            tx: Tx {
                out,
                queue_at,
                send_seq: vec![0; world],
            },
            rx: Rx {
                next_seq: vec![1; queues],
                together: Vec::new(),
                cursor: 0,
            },
            counters: Counters::new(world),
            layout: wiring.layout,
            region: wiring.region,
            links: wiring.links,
            transport: wiring.transport,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.ident.name
    }

    /// Largest update in bytes.
    pub fn capacity(&self) -> usize {
        self.layout.capacity
    }

    /// Ranks this rank writes to.
    pub fn out_neighbors(&self) -> &[usize] {
        &self.tx.out
    }

    /// Ranks that write to this rank.
    pub fn in_neighbors(&self) -> &[usize] {
        &self.layout.senders
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// `Ok` while the group is still in this object's epoch.
    fn check(&self) -> Result<()> {
        if self.track.tracks {
            self.track.view.check(self.ident.epoch)
        } else {
            Ok(())
        }
    }

    /// From now on this object reports what its transport sees and ignores
    /// the group's membership news (regroup, abort): for objects that live
    /// across epochs (the fault monitor's heartbeats) and transport tests.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn ignore_membership(&mut self) {
        self.track.tracks = false;
    }

    /// From now on this object reports what its transport sees and ignores
    /// the group's membership news (regroup, abort): for objects that live
    /// across epochs (the fault monitor's heartbeats).
    #[cfg(not(feature = "testing"))]
    pub(crate) fn ignore_membership(&mut self) {
        self.track.tracks = false;
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        self.transport.destroy(self.ident.id);
    }
}
