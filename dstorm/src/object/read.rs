//! The read half of an object: polling the queues of its in-neighbours
//! (round-robin, from one sender, or waiting), waiting for an update to
//! become visible without consuming it, and reading several updates
//! together in place, part by part.

use super::counters::Event;
use super::wait::park;
use super::{FlowControl, Object, Update};
use crate::error::{Error, Result};
use crate::segment::SlotRead;
use crate::wire::SlotHeader;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// How long a wait for a peer that waits in a collective call lets that
/// peer's data keep arriving before it concludes that nothing more will
/// come (see [`Error::CallMismatch`]), on shared memory, where a write is
/// complete when the writer returns. On tcp and verbs an update may still
/// be in flight after its writer went on (a slow link: slower than the
/// failure timeout per update), so there the quiet time is the failure
/// timeout T, after which the fault monitor too would have suspected a
/// link that carried nothing.
pub(crate) const SHM_QUIET: Duration = Duration::from_millis(100);

impl Object {
    /// Returns the oldest unread consistent update of the next sender (senders
    /// are served round-robin), copied into `out`, which must hold
    /// [`capacity`](Self::capacity) bytes. Torn slots are skipped and counted;
    /// overwritten updates are counted as lapped. Never blocks, never allocates.
    pub fn poll(&mut self, out: &mut [u8]) -> Result<Option<Update>> {
        if out.len() < self.layout.capacity {
            return Err(Error::Size {
                name: self.ident.name.clone(),
                what: "poll buffer",
                got: out.len(),
                limit: self.layout.capacity,
            });
        }
        let n = self.layout.senders.len();
        for i in 0..n {
            let q = (self.rx.cursor + i) % n;
            if let Some(u) = self.poll_queue(q, out)? {
                self.rx.cursor = (q + 1) % n;
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    /// Like [`poll`](Self::poll), restricted to updates from `sender`.
    pub fn poll_from(&mut self, sender: usize, out: &mut [u8]) -> Result<Option<Update>> {
        let q = self.sender_queue(sender)?;
        if out.len() < self.layout.capacity {
            return Err(Error::Size {
                name: self.ident.name.clone(),
                what: "poll buffer",
                got: out.len(),
                limit: self.layout.capacity,
            });
        }
        self.poll_queue(q, out)
    }

    /// Polls until an update arrives or `timeout` passes (then `Ok(None)`).
    /// Spins briefly, then parks on the segment's doorbell.
    pub fn poll_timeout(&mut self, out: &mut [u8], timeout: Duration) -> Result<Option<Update>> {
        self.poll_until(timeout, None, |o| o.poll(out))
    }

    /// Like [`poll_timeout`](Self::poll_timeout), restricted to `sender`.
    pub fn poll_from_timeout(
        &mut self,
        sender: usize,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Update>> {
        self.poll_until(timeout, Some(sender), |o| o.poll_from(sender, out))
    }

    /// Repeats `try_once` until it returns an update or `timeout` passes,
    /// parking on the doorbell in between. While waiting for `sender`
    /// alone, fails with [`Error::CallMismatch`] once that rank is known to
    /// wait in a collective call and nothing more has arrived from it for
    /// the quiet time ([`SHM_QUIET`] on shm, the failure timeout on tcp
    /// and verbs): it cannot send what this rank waits for.
    fn poll_until(
        &mut self,
        timeout: Duration,
        sender: Option<usize>,
        mut try_once: impl FnMut(&mut Self) -> Result<Option<Update>>,
    ) -> Result<Option<Update>> {
        // The clock is read only once the first look found nothing: on
        // some machines (virtual ones without a usable TSC) a read costs
        // microseconds, as much as a whole soft-RoCE write.
        let mut deadline = None;
        loop {
            let bell = self.region.doorbell();
            if let Some(u) = try_once(self)? {
                self.track.stuck = None;
                return Ok(Some(u));
            }
            self.check()?;
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + timeout);
            if now >= deadline {
                return Ok(None);
            }
            let mut until = deadline;
            let stuck = match sender {
                Some(p) if self.track.tracks => self.track.view.in_collective(p).map(|op| (p, op)),
                _ => None,
            };
            if let Some((p, op)) = stuck {
                let arrived = self.links.arrivals(p);
                match self.track.stuck {
                    Some((q, before, since)) if q == p && before == arrived => {
                        if now >= since + self.track.quiet {
                            return Err(self.call_mismatch(p, &op));
                        }
                    }
                    _ => self.track.stuck = Some((p, arrived, now)),
                }
                until = until.min(now + self.track.quiet / 4);
            } else {
                self.track.stuck = None;
            }
            park(&self.region, &*self.links, bell, until, &mut self.spin);
        }
    }

    /// Ends the job: this rank waits for an update from `peer`, which waits
    /// in the collective call `op` instead. Every rank gets the message.
    fn call_mismatch(&self, peer: usize, op: &str) -> Error {
        let me = self.ident.rank;
        let got = self.counters.peers.get(peer).map_or(0, |c| c.received);
        let sent = if self.tx.out.binary_search(&peer).is_ok() {
            format!(
                ", while rank {me} sent rank {peer} {}",
                self.tx.send_seq[peer]
            )
        } else {
            String::new()
        };
        // vol names the object of its vector NAME "vol:NAME".
        let what = match self.ident.name.strip_prefix("vol:") {
            Some(v) => format!("vector {v:?}"),
            None => format!("object {:?}", self.ident.name),
        };
        let reason = format!(
            "{what}: rank {me} waits for an update from rank {peer}, but rank {peer} is waiting in {op} after sending rank {me} {got} updates{sent}: the ranks did not make the same calls (different numbers of scatter/gather rounds, or collectives in another order)"
        );
        self.track.view.report_mismatch(reason.clone());
        Error::CallMismatch(reason)
    }

    /// Waits until an update from `sender` with an iteration of at least
    /// `min_iteration` is complete in this rank's segment, without copying or
    /// consuming it (a later [`poll`](Self::poll) still returns it).
    /// `Ok(None)` when `timeout` passes first.
    pub fn wait_visible(
        &mut self,
        sender: usize,
        min_iteration: u64,
        timeout: Duration,
    ) -> Result<Option<Update>> {
        let q = self.sender_queue(sender)?;
        let (depth, capacity, epoch) = (self.layout.depth, self.layout.capacity, self.ident.epoch);
        self.poll_until(timeout, Some(sender), |o| {
            for s in 0..depth {
                let off = o.layout.slot_offset(q, s);
                if let Some(h) = o.region.complete_header(off, capacity) {
                    if h.iteration >= min_iteration && h.epoch == epoch {
                        return Ok(Some(Update {
                            sender,
                            seq: h.seq,
                            iteration: h.iteration,
                            len: h.len as usize,
                        }));
                    }
                }
            }
            Ok(None)
        })
    }

    /// The index of `sender`'s queue, or the error that names it as no
    /// sender of this object.
    fn sender_queue(&self, sender: usize) -> Result<usize> {
        self.layout
            .queue_index(sender)
            .ok_or_else(|| Error::NotNeighbor {
                name: self.ident.name.clone(),
                rank: self.ident.rank,
                peer: sender,
                role: "sender",
            })
    }

    /// The slot offset, header words and header of the oldest unread update
    /// in queue `q` when it is complete, `sender`'s, of this object and
    /// epoch, and of iteration `iteration`.
    fn next_update(
        &self,
        q: usize,
        sender: usize,
        iteration: u64,
    ) -> Option<(usize, [u64; 8], SlotHeader)> {
        let seq = self.rx.next_seq[q];
        let off = self.layout.seq_offset(q, seq);
        let w = self.region.complete_words(off, self.layout.capacity)?;
        let h = SlotHeader::from_words(&w).ok()?;
        let ours = h.seq == seq
            && h.sender as usize == sender
            && h.object == self.ident.id
            && h.epoch == self.ident.epoch
            && h.iteration == iteration;
        ours.then_some((off, w, h))
    }

    /// What `sender`'s queue holds, for error messages: the sequence number
    /// this rank reads next, and each slot's complete update (sequence
    /// number, iteration, epoch, length) or `-` when none is complete.
    pub fn describe_queue(&self, sender: usize) -> String {
        let Some(q) = self.layout.queue_index(sender) else {
            return format!("rank {sender} is not a sender");
        };
        let slots: Vec<String> = (0..self.layout.depth)
            .map(|s| {
                let off = self.layout.slot_offset(q, s);
                match self
                    .region
                    .complete_words(off, self.layout.capacity)
                    .and_then(|w| SlotHeader::from_words(&w).ok())
                {
                    Some(h) => format!(
                        "seq {} iteration {} epoch {} len {}",
                        h.seq, h.iteration, h.epoch, h.len
                    ),
                    None => "-".into(),
                }
            })
            .collect();
        format!(
            "next seq {}, slots [{}]",
            self.rx.next_seq[q],
            slots.join("; ")
        )
    }

    /// Copies the first `out.len()` payload bytes of `sender`'s oldest
    /// unread update into `out` without consuming it, when that update is
    /// complete, of this epoch, of iteration `iteration` and at least that
    /// long, and nothing changed it while it was copied. `Ok(None)`
    /// otherwise, having changed nothing: [`poll_from`](Self::poll_from)
    /// deals with what is there.
    pub fn peek_from(
        &mut self,
        sender: usize,
        iteration: u64,
        out: &mut [u8],
    ) -> Result<Option<Update>> {
        let q = self.sender_queue(sender)?;
        let Some((off, w, h)) = self.next_update(q, sender, iteration) else {
            return Ok(None);
        };
        if out.len() > h.len as usize || !self.region.read_part(off, &w, 0, out) {
            return Ok(None);
        }
        Ok(Some(Update {
            sender,
            seq: h.seq,
            iteration,
            len: h.len as usize,
        }))
    }

    /// Reads the oldest unread update of each of `senders` together, part by
    /// part, without copying any of them whole: for each range of `part`
    /// payload bytes (the last one shorter) it copies that range of every
    /// update into `stage` (update `i` at `i * part`), checks that none
    /// changed, and calls `f(offset, len, stage)`. This is for merges that
    /// work element by element, so that an update is read once, from the
    /// segment, instead of being copied out first and read again.
    ///
    /// Reads only when every sender's oldest unread update is complete, of
    /// this epoch, of iteration `iteration`, `len` bytes long, and follows
    /// the previous one read from that queue (nothing lapped); otherwise
    /// returns `Ok(false)` having read nothing, and [`poll_from`] deals with
    /// what is there. `f` may decline at the first part (`Break`): the
    /// updates then stay unread and the result is `Ok(false)`; a `Break`
    /// at a later part ends the read early. Once `f` has accepted a part
    /// the updates count as received (as by [`poll_from`]) and the result
    /// is `Ok(true)`.
    ///
    /// The caller must know that no sender can overwrite the update while it
    /// is read (under a consistency protocol that keeps every sender fewer
    /// than the queue depth ahead); if one does, the parts already passed to
    /// `f` stay passed, the update is counted torn and skipped, and the
    /// result is [`Error::Overwritten`].
    ///
    /// [`poll_from`]: Self::poll_from
    pub fn read_together<E: From<Error>>(
        &mut self,
        senders: &[usize],
        iteration: u64,
        len: usize,
        part: usize,
        stage: &mut [u8],
        f: impl FnMut(usize, usize, &[u8]) -> std::result::Result<ControlFlow<()>, E>,
    ) -> std::result::Result<bool, E> {
        let k = senders.len();
        if part == 0 {
            return Err(Error::BadObject {
                name: self.ident.name.clone(),
                problem: "read_together with parts of 0 bytes".into(),
            }
            .into());
        }
        if stage.len() < k * part {
            return Err(Error::Size {
                name: self.ident.name.clone(),
                what: "read_together stage",
                got: stage.len(),
                limit: k * part,
            }
            .into());
        }
        // Queue, slot offset and header words per sender, in a list kept
        // from call to call so that reading allocates nothing.
        let mut heads = std::mem::take(&mut self.rx.together);
        heads.clear();
        let r = self.read_heads(senders, iteration, len, &mut heads);
        let r = match r {
            Ok(true) => self.read_parts(senders, len, part, stage, &heads, f),
            other => other.map_err(E::from),
        };
        self.rx.together = heads;
        r
    }

    /// The first half of [`read_together`](Self::read_together): finds each
    /// sender's next update and checks that it is the one asked for.
    fn read_heads(
        &self,
        senders: &[usize],
        iteration: u64,
        len: usize,
        heads: &mut Vec<(usize, usize, [u64; 8])>,
    ) -> Result<bool> {
        for &sender in senders {
            let q = self.sender_queue(sender)?;
            match self.next_update(q, sender, iteration) {
                Some((off, w, h)) if h.len as usize == len => heads.push((q, off, w)),
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The second half of [`read_together`](Self::read_together): the parts.
    fn read_parts<E: From<Error>>(
        &mut self,
        senders: &[usize],
        len: usize,
        part: usize,
        stage: &mut [u8],
        heads: &[(usize, usize, [u64; 8])],
        mut f: impl FnMut(usize, usize, &[u8]) -> std::result::Result<ControlFlow<()>, E>,
    ) -> std::result::Result<bool, E> {
        let mut from = 0;
        while from < len {
            let n = part.min(len - from);
            for (i, &(q, off, ref words)) in heads.iter().enumerate() {
                let dst = &mut stage[i * part..i * part + n];
                if !self.region.read_part(off, words, from, dst) {
                    if from == 0 {
                        // Nothing used yet: overwritten before it was read,
                        // which poll_from counts as lapped.
                        return Ok(false);
                    }
                    let (sender, seq) = (senders[i], words[1]);
                    self.rx.next_seq[q] = seq + 1;
                    self.count_torn(sender);
                    return Err(Error::Overwritten {
                        name: self.ident.name.clone(),
                        sender,
                        seq,
                    }
                    .into());
                }
            }
            match f(from, n, stage)? {
                ControlFlow::Continue(()) => from += n,
                ControlFlow::Break(()) if from == 0 => return Ok(false),
                ControlFlow::Break(()) => break,
            }
        }
        // Every update counts as read even when acknowledging one fails, so
        // that none is read twice and the other senders get their acks.
        let mut acked = Ok(());
        for (i, &(q, _, words)) in heads.iter().enumerate() {
            self.rx.next_seq[q] = words[1] + 1;
            let r = self.consumed(senders[i], words[1], len);
            acked = acked.and(r);
        }
        acked?;
        Ok(true)
    }

    /// Accounts for update `seq` of `sender` (`len` bytes) having been read,
    /// and acknowledges it under backpressure.
    fn consumed(&mut self, sender: usize, seq: u64, len: usize) -> Result<()> {
        self.counters.count(sender, Event::Received(len as u64));
        if self.flow == FlowControl::Backpressure {
            let ack = self.layout.ack_offset(self.ident.rank);
            self.links.write_word(sender, ack, seq)?;
        }
        Ok(())
    }

    /// The oldest unread consistent update in queue `q`, copied into `out`.
    fn poll_queue(&mut self, q: usize, out: &mut [u8]) -> Result<Option<Update>> {
        let sender = self.layout.senders[q];
        let depth = self.layout.depth;
        // A bounded number of attempts: a writer that laps us on every try
        // must not keep us here forever.
        for _ in 0..4 * depth + 4 {
            let next = self.rx.next_seq[q];
            let mut oldest = u64::MAX;
            let mut newest = 0;
            for s in 0..depth {
                let seq = self.region.peek_seq(self.layout.slot_offset(q, s));
                if seq >= next {
                    oldest = oldest.min(seq);
                    newest = newest.max(seq);
                }
            }
            if oldest == u64::MAX {
                return Ok(None);
            }
            let off = self.layout.seq_offset(q, oldest);
            match self.region.read_slot(off, self.layout.capacity, out) {
                SlotRead::Ok(h) if h.seq == oldest => {
                    self.skip_to(q, sender, oldest);
                    self.rx.next_seq[q] = oldest + 1;
                    if h.sender as usize != sender || h.object != self.ident.id {
                        self.count_torn(sender);
                        continue;
                    }
                    if h.epoch != self.ident.epoch {
                        self.counters.count(sender, Event::StaleEpoch);
                        continue;
                    }
                    let len = h.len as usize;
                    self.consumed(sender, oldest, len)?;
                    return Ok(Some(Update {
                        sender,
                        seq: oldest,
                        iteration: h.iteration,
                        len,
                    }));
                }
                SlotRead::Torn { seq } if seq == oldest => {
                    if newest > oldest {
                        // The writer has moved on: this slot will never
                        // complete. Skip it and count it as torn.
                        self.skip_to(q, sender, oldest);
                        self.count_torn(sender);
                        self.rx.next_seq[q] = oldest + 1;
                        continue;
                    }
                    // Still being written: nothing to return yet.
                    return Ok(None);
                }
                // The slot changed between the peek and the read: look again.
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Accounts for sequence numbers between the expected one and `seq`
    /// that were overwritten before we read them.
    fn skip_to(&mut self, q: usize, sender: usize, seq: u64) {
        let lost = seq.saturating_sub(self.rx.next_seq[q]);
        self.counters.count(sender, Event::Lapped(lost));
    }

    /// A torn slot from `sender` was skipped.
    fn count_torn(&mut self, sender: usize) {
        self.counters.count(sender, Event::Torn);
    }
}
