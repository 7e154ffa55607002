//! Segments: this rank's, registered for the peers' writes, and the peers',
//! as their announcements describe them. `create` registers a new segment
//! piecewise (each peer its own words and, if it sends, its own queue) and
//! announces it to each live peer; `connect` waits for the peers'
//! announcements and builds the links that write into their segments;
//! `destroy` keeps a released segment registered (draining) until every
//! live peer has confirmed that its writes into it have landed.

use super::memory::mem_err;
use super::msg::Msg;
use super::rc::{lock, Shared};
use super::send::VerbsLinks;
use crate::error::{Error, Result};
use crate::layout::{Layout, PEER_WORDS_BYTES};
use crate::segment::Region;
use crate::transport::Links;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::AccessFlags;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

/// This rank's segment of one object, registered for remote writes: one
/// memory region per peer for its words and one per sender for its queue,
/// so that no peer can write where another one (or only this rank) may.
#[derive(Debug)]
pub(crate) struct LocalSeg {
    mrs: Vec<Arc<MemoryRegion>>,
    pub region: Arc<Region>,
}

impl Drop for LocalSeg {
    fn drop(&mut self) {
        // Deregistered before this reference to the memory goes, which may
        // be the last one.
        self.mrs.clear();
    }
}

/// A peer's segment of one object, as its announcement described it.
#[derive(Debug, Clone)]
pub(crate) struct RemoteSeg {
    pub addr: u64,
    pub len: u64,
    /// The remote key of this rank's queue in it (0: not a sender).
    pub queue_rkey: u32,
    /// The remote key of this rank's words in it.
    pub words_rkey: u32,
    /// The offset of this rank's words in it (set by `connect`).
    pub words_at: usize,
    /// Set when the peer released the segment: writes into it are dropped.
    pub gone: Arc<AtomicBool>,
}

/// A released segment kept registered until every peer confirmed that its
/// writes into it have landed.
#[derive(Debug)]
pub(crate) struct Draining {
    _seg: Arc<LocalSeg>,
    /// By rank: this peer's `GoneAck` is still due.
    pub waiting: Vec<bool>,
}

/// The segment tables of a rank.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    /// This rank's segments, by object id.
    pub local: RwLock<Vec<Option<Arc<LocalSeg>>>>,
    /// Released segments still registered, by object id.
    pub draining: Mutex<HashMap<u32, Draining>>,
    /// The peers' announced segments, by object id and rank.
    pub remote: Mutex<HashMap<(u32, usize), RemoteSeg>>,
    /// Notified when `remote` gains an entry or a peer fails.
    pub remote_cv: Condvar,
}

impl Segments {
    /// Lets go of this rank's segments, live and draining (deregistering
    /// those nothing else holds).
    pub fn clear(&mut self) {
        self.local
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.draining
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Shared {
    /// Creates this rank's segment of `object` and announces it to every
    /// live peer.
    pub fn create(&self, object: u32, name: &str, layout: &Layout) -> Result<Arc<Region>> {
        let mut region = Region::anon(layout.total).map_err(|source| Error::Segment {
            path: format!("verbs:{name}").into(),
            op: "allocate",
            source,
        })?;
        region.watch_bells(layout);
        let region = Arc::new(region);
        let (addr, len) = (region.as_mut_ptr() as u64, region.len() as u64);
        let mut seg = LocalSeg {
            mrs: Vec::new(),
            region: region.clone(),
        };
        let register = |off: usize, n: usize| {
            debug_assert!(off + n <= region.len());
            // SAFETY: `off..off + n` lies inside the region's mapping (the
            // layout's ranges are inside its total), which lives as long as
            // the `LocalSeg` that holds both the registration and a
            // reference to the region; its `Drop` deregisters first.
            unsafe {
                self.pd.reg_mr(
                    region.as_mut_ptr().add(off) as usize,
                    n,
                    AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
                )
            }
            .map_err(|e| mem_err(name, e))
        };
        // Each live peer gets its own words and, if it sends, its own queue,
        // each under a key of its own.
        let mut announce = Vec::new();
        for p in self.peers.iter().flatten() {
            if p.left.load(Ordering::Acquire) {
                continue;
            }
            let words = register(layout.ack_offset(p.rank), PEER_WORDS_BYTES)?;
            let queue = match layout.queue_index(p.rank) {
                Some(q) => {
                    let (off, n) = layout.queue_range(q);
                    Some(register(off, n)?)
                }
                None => None,
            };
            let msg = Msg::Announce {
                object,
                addr,
                len,
                rkey: queue.as_ref().map_or(0, |m| m.rkey()),
                words_rkey: words.rkey(),
            };
            announce.push((p, msg));
            seg.mrs.push(words);
            seg.mrs.extend(queue);
        }
        {
            let mut local = self.segs.local.write().unwrap_or_else(|e| e.into_inner());
            let i = object as usize;
            if local.len() <= i {
                local.resize_with(i + 1, || None);
            }
            local[i] = Some(Arc::new(seg));
        }
        // Survivors create the next epoch's objects while departed ranks'
        // connections are failing or failed: those get no announcement.
        for (p, msg) in announce {
            if let Err(e) = self.send_msg(p, msg, "announce verbs segment") {
                self.destroy(object);
                return Err(e);
            }
        }
        Ok(region)
    }

    /// Links for writing into `peers`' segments of `object`, once each has
    /// announced it (bounded by the rendezvous bound).
    pub fn connect(
        self: &Arc<Self>,
        object: u32,
        name: &str,
        peers: &[(usize, Layout)],
    ) -> Result<Box<dyn Links>> {
        let start = Instant::now();
        let deadline = start + self.setup_timeout;
        let mut remotes: Vec<Option<RemoteSeg>> = vec![None; self.world];
        let mut table = lock(&self.segs.remote);
        for (peer, layout) in peers {
            let p = self.peer(*peer)?;
            let seg = loop {
                if let Some(seg) = table.get(&(object, *peer)) {
                    break seg.clone();
                }
                if let Some(f) = p.failure() {
                    return Err(f.to_error("connect verbs segment", *peer));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout {
                        op: format!("object {name:?}: waiting for rank {peer}'s verbs segment"),
                        waited: now - start,
                        missing: vec![*peer],
                    });
                }
                // The announcement comes as a control message: have the
                // receive thread wake for it.
                self.set_parked(true);
                table = self
                    .segs
                    .remote_cv
                    .wait_timeout(table, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                self.set_parked(false);
            };
            if seg.len != layout.total as u64 {
                return Err(Error::SegmentMismatch {
                    path: format!("verbs:{name}@rank{peer}").into(),
                    problem: format!("{} bytes announced, expected {}", seg.len, layout.total),
                });
            }
            remotes[*peer] = Some(RemoteSeg {
                words_at: layout.ack_offset(self.rank),
                ..seg
            });
        }
        drop(table);
        Ok(Box::new(VerbsLinks::new(self.clone(), object, remotes)))
    }

    /// Releases this rank's segment of `object`: tells every live peer,
    /// and keeps it registered until each has answered.
    pub fn destroy(&self, object: u32) {
        let seg = {
            let mut local = self.segs.local.write().unwrap_or_else(|e| e.into_inner());
            local.get_mut(object as usize).and_then(Option::take)
        };
        lock(&self.segs.remote).retain(|(o, _), _| *o != object);
        let Some(seg) = seg else {
            return;
        };
        let waiting: Vec<bool> = self
            .peers
            .iter()
            .map(|p| p.as_ref().is_some_and(|p| !p.has_failed()))
            .collect();
        if !waiting.iter().any(|w| *w) {
            return;
        }
        lock(&self.segs.draining).insert(
            object,
            Draining {
                _seg: seg,
                waiting: waiting.clone(),
            },
        );
        for (rank, w) in waiting.iter().enumerate() {
            if !*w {
                continue;
            }
            if let Some(p) = self.peers[rank].as_ref() {
                // A failure here fails the peer, which also stops waiting for it.
                let _ = self.send_msg(p, Msg::Gone { object }, "release verbs segment");
            }
        }
    }
}
