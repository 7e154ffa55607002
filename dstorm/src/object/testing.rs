//! Hooks for tests that play a misbehaving peer or look at raw segment
//! words, built only with the `testing` feature.

use super::Object;
use crate::error::Result;
use std::sync::atomic::Ordering;

impl Object {
    /// Test hook: a write to `peer` that stops between payload and trailer,
    /// as a writer killed in the middle would leave it.
    #[doc(hidden)]
    pub fn write_torn(&mut self, peer: usize, payload: &[u8], iteration: u64) -> Result<()> {
        let q = self.target(peer, payload.len())?;
        let seq = self.tx.send_seq[peer] + 1;
        let off = self.layout.seq_offset(q, seq);
        let h = self.header(seq, iteration, payload.len());
        self.links.write_slot_torn(peer, off, &h, payload.into())?;
        self.tx.send_seq[peer] = seq;
        Ok(())
    }

    /// Test hook: a whole slot write into queue `queue` of `peer`'s
    /// segment (an index into its senders, which need not be this rank's
    /// queue), as a peer that disregards the layout would send it.
    #[doc(hidden)]
    pub fn write_into_queue(&mut self, peer: usize, queue: usize, payload: &[u8]) -> Result<()> {
        self.target(peer, payload.len())?;
        let h = self.header(1, 1, payload.len());
        let off = self.layout.slot_offset(queue, 0);
        self.links.write_slot(peer, off, &h, payload.into())
    }

    /// Test hook: a word written at `offset` of `peer`'s segment, anywhere.
    #[doc(hidden)]
    pub fn write_word_at(&mut self, peer: usize, offset: usize, value: u64) -> Result<()> {
        self.target(peer, 0)?;
        self.links.write_word(peer, offset, value)
    }

    /// Test hook: the word at `offset` of this rank's own segment.
    #[doc(hidden)]
    pub fn read_word_at(&self, offset: usize) -> u64 {
        self.region.word(offset).load(Ordering::SeqCst)
    }
}
