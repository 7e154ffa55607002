//! The write half of an object: one-sided writes into the queues of its
//! out-neighbours, with backpressure where the spec asks for it, and what a
//! failed write means for the group.

use super::counters::Event;
use super::wait::park;
use super::{FlowControl, Object};
use crate::error::{Error, Result};
use crate::wire::{Payload, SlotHeader};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Object {
    /// Writes `payload` one-sided into `peer`'s queue, tagged with `iteration`.
    /// Returns once the bytes are handed to the transport (visible at the
    /// peer for shm); with backpressure, first waits (bounded) until the slot
    /// is free.
    pub fn write(&mut self, peer: usize, payload: &[u8], iteration: u64) -> Result<()> {
        self.write_parts(peer, payload.into(), iteration)
    }

    /// Like [`write`](Self::write), for an update in two parts written
    /// back to back (see [`Payload`]): a header kept apart from the data it
    /// describes is sent without first copying the two together.
    pub fn write_parts(&mut self, peer: usize, payload: Payload<'_>, iteration: u64) -> Result<()> {
        self.check()?;
        let q = self.target(peer, payload.len())?;
        let seq = self.tx.send_seq[peer] + 1;
        if self.flow == FlowControl::Backpressure && seq > self.layout.depth as u64 {
            self.wait_ack(peer, seq - self.layout.depth as u64)?;
        }
        self.send(peer, q, seq, payload, iteration, true)
            .map(|_| ())
    }

    /// Like [`write`](Self::write), but returns `Ok(false)` at once, writing
    /// nothing, when the link to `peer` is busy with another write: the
    /// fault monitor's heartbeats, which must neither wait behind a large
    /// update nor stop beating to the other peers meanwhile. Ignores
    /// backpressure (heartbeat objects have none).
    pub(crate) fn try_write(
        &mut self,
        peer: usize,
        payload: &[u8],
        iteration: u64,
    ) -> Result<bool> {
        self.check()?;
        let q = self.target(peer, payload.len())?;
        let seq = self.tx.send_seq[peer] + 1;
        self.send(peer, q, seq, payload.into(), iteration, false)
    }

    /// Writes update `seq` into queue `q` of `peer` (waiting for a busy link,
    /// or not) and counts it; `Ok(false)` when the link was busy.
    fn send(
        &mut self,
        peer: usize,
        q: usize,
        seq: u64,
        payload: Payload<'_>,
        iteration: u64,
        wait: bool,
    ) -> Result<bool> {
        let off = self.layout.seq_offset(q, seq);
        let h = self.header(seq, iteration, payload.len());
        let sent = if wait {
            self.links.write_slot(peer, off, &h, payload).map(|()| true)
        } else {
            self.links.try_write_slot(peer, off, &h, payload)
        };
        match sent {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(self.write_failed(peer, e)),
        }
        self.tx.send_seq[peer] = seq;
        self.counters
            .count(peer, Event::Written(payload.len() as u64));
        Ok(true)
    }

    /// A count that grows while data from `peer` arrives on this object's
    /// transport (all objects; see `Links::arrivals`); `None` where the
    /// transport cannot see a write in progress.
    pub(crate) fn arrivals(&self, peer: usize) -> Option<u64> {
        self.links.arrivals(peer)
    }

    /// Writes `payload` to every out-neighbour.
    pub fn write_all(&mut self, payload: &[u8], iteration: u64) -> Result<()> {
        for i in 0..self.tx.out.len() {
            self.write(self.tx.out[i], payload, iteration)?;
        }
        Ok(())
    }

    /// The index of this rank's queue in `peer`'s segment, once `peer` is
    /// an out-neighbour and `len` bytes fit.
    pub(super) fn target(&self, peer: usize, len: usize) -> Result<usize> {
        if len > self.layout.capacity {
            return Err(Error::Size {
                name: self.ident.name.clone(),
                what: "update",
                got: len,
                limit: self.layout.capacity,
            });
        }
        match self.tx.queue_at.get(peer).copied().flatten() {
            Some(q) if self.tx.out.binary_search(&peer).is_ok() => Ok(q),
            _ => Err(Error::NotNeighbor {
                name: self.ident.name.clone(),
                rank: self.ident.rank,
                peer,
                role: "receiver",
            }),
        }
    }

    /// The header of update `seq` of this rank.
    pub(super) fn header(&self, seq: u64, iteration: u64, len: usize) -> SlotHeader {
        SlotHeader {
            seq,
            epoch: self.ident.epoch,
            sender: self.ident.rank as u32,
            iteration,
            len: len as u64,
            checksum: 0,
            object: self.ident.id,
        }
    }

    /// A write to `peer` failed. In a fault-tolerant job the peer is
    /// reported and the error becomes the regroup that follows (bounded by
    /// the timeout); otherwise it is returned as is.
    fn write_failed(&self, peer: usize, e: Error) -> Error {
        if !self.track.tracks
            || !self.track.tolerant
            || !matches!(e, Error::Peer { .. })
            || self.track.view.ended()
        {
            return self.check().err().unwrap_or(e);
        }
        self.track.view.suspect(peer, format!("write failed: {e}"));
        if self
            .track
            .view
            .wait_change(self.ident.epoch, self.track.timeout)
        {
            if let Err(news) = self.track.view.check(self.ident.epoch) {
                return news;
            }
        }
        e
    }

    /// Under backpressure: waits (bounded by the timeout) until `peer` has
    /// acknowledged update `need` of this rank's queue.
    fn wait_ack(&mut self, peer: usize, need: u64) -> Result<()> {
        let word = self.region.word(self.layout.ack_offset(peer));
        if word.load(Ordering::Acquire) >= need {
            return Ok(());
        }
        self.counters.count_backpressure_wait();
        let start = Instant::now();
        let deadline = start + self.track.timeout;
        loop {
            let bell = self.region.doorbell();
            if word.load(Ordering::Acquire) >= need {
                return Ok(());
            }
            self.check()?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    op: format!(
                        "object {:?}: backpressure wait for rank {peer} to read update {need}",
                        self.ident.name
                    ),
                    waited: start.elapsed(),
                    missing: vec![peer],
                });
            }
            park(&self.region, &*self.links, bell, deadline, &mut self.spin);
        }
    }
}
