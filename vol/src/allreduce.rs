//! The allreduce schedule: exact averaging (and sums, maxima, minima) of a
//! dense vector at the bandwidth bound, built from one-sided writes.
//!
//! # When it runs
//!
//! A dense vector created with graph [`Graph::All`], consistency
//! [`Consistency::Bsp`] and the dense representation merges, at every
//! gather, the current update of every rank: the result is the same
//! reduction on every rank. The *direct* schedule gets there by having
//! every rank write its whole vector to every other rank, `(N-1)·V` bytes
//! per rank per round, and merge `N-1` whole updates. The *allreduce*
//! schedule moves `2(N-1)/N·V`:
//!
//! 1. **Reduce-scatter** (`scatter()`). The vector is cut into `N` shares,
//!    share `m` owned by the `m`-th member; share `m` has elements
//!    `[m·len/N, (m+1)·len/N)` (integer division, so sizes differ by at
//!    most one). Each rank writes share `m` of its values into the queue
//!    of share `m`'s owner, starting with the next rank up, so that the
//!    ranks do not all write to the same owner at once.
//! 2. **Merge** (`gather()`). Each owner merges its share of every rank's
//!    update, range by range (as the direct schedule's in-place merge does),
//!    straight from its receive queues; its own share enters as it was
//!    scattered.
//! 3. **All-gather** (`gather()`). Each owner writes its merged share, behind
//!    an 8-byte tag naming the merge, to every other rank, and copies every
//!    owner's merged share into its values once all of them have arrived and
//!    carry its own merge's tag.
//!
//! [`VectorOptions::schedule`](crate::VectorOptions::schedule) chooses:
//! [`Schedule::Auto`] (the default) takes the allreduce schedule when it
//! applies, with at least [`AUTO_MIN_RANKS`] members and at least
//! [`AUTO_MIN_BYTES`] bytes of values; [`Schedule::Direct`] and
//! [`Schedule::Allreduce`] force one. Every rank computes the same choice
//! from the agreed options, the length and the number of members, and
//! [`GatherInfo::schedule`] says which one ran.
//!
//! # What a gather leaves in the values
//!
//! The reduction of every rank's values *as scattered*. Changes a rank
//! makes to its values between `scatter()` and `gather()` are overwritten
//! (under the direct schedule they would enter the merge as the local
//! values); make them after the gather, or before the scatter.
//!
//! # Summation order: the same bits on every rank
//!
//! Each share is merged on its owner alone, and every other rank receives
//! the owner's bits, so every rank ends with the same values. The owner
//! merges in member order: it starts from the first member's share and
//! folds in the others', ascending, with the merge's kernel; for
//! [`Udf::Avg`] that is `((x0 + x1) + … + x(N-1)) / N` element by element,
//! exactly what the direct schedule computes on the first member (whose own
//! values come first there) when no values change between scatter and
//! gather. The allreduce result is then bit-identical to the direct
//! schedule's result on the lowest-ranked member.
//!
//! # What a gather may merge with
//!
//! The owner merges for everybody, so the merge must not depend on which
//! rank's values are "local": gather takes the built-in [`Udf`]s (`avg`,
//! `sum`, `max`, `min`, through [`Merge::reduction`]) and runs that
//! reduction's own kernel. Any other merge function is refused with
//! [`VolError::InvalidVector`]; create the vector with
//! [`Schedule::Direct`] to merge with one. Every rank must pass the same
//! reduction: the tags tell, and a rank that refused, or merged with
//! another reduction, makes every rank's gather fail with
//! [`VolError::Mismatch`] (or `InvalidVector` on the rank that refused)
//! as soon as the tags arrive, before any value changes. The vector cannot
//! be used after that.
//!
//! # Memory, failures and retries
//!
//! A rank receives one share from each other rank in each phase: two
//! objects whose queues hold `depth` shares of `⌈len/N⌉` elements per
//! sender, about `2·depth·V` bytes in all instead of the direct schedule's
//! `depth·(N-1)·V`. A gather changes the local values only once every
//! merged share has arrived and its tag is checked, all at once: a gather
//! that fails (a timeout, a lost rank) leaves the values as they were,
//! never a mix of old and new shares. After a timeout the gather can be
//! made again: it goes on waiting where it stopped (the merge and the
//! all-gather writes are not made twice). After a regroup,
//! [`DenseVector::rejoin`](crate::DenseVector::rejoin) lays the shares out
//! again over the survivors (and chooses the schedule again for their
//! number). A gather's waits share one bound, the vector's wait timeout.
//!
//! # Why depth 2 suffices
//!
//! Rank A writes an update of iteration `t + 2` to rank B (a share in the
//! reduce-scatter, a merged share in the all-gather) only once it has
//! something of B's of iteration `t + 1`: its scatter of `t + 2` follows
//! its gather of `t + 1`, which needed B's merged share of `t + 1`; its
//! merged share of `t + 2` follows B's share of `t + 2`. B sent either only
//! after its own gather of `t` had read everything of iteration `t` out of
//! its queues. So the slot an update of `t + 2` takes, that of `t`, has
//! been read, and two slots per sender suffice under BSP.
//! `Stats::updates_sent` counts writes (two phases: `2(N-1)` per round).
//!
//! [`Graph::All`]: crate::Graph::All
//! [`Consistency::Bsp`]: crate::Consistency::Bsp
//! [`GatherInfo::schedule`]: crate::GatherInfo::schedule

use std::fmt;
use std::ops::{ControlFlow, Range};
use std::str::FromStr;
use std::time::{Duration, Instant};

use dstorm::{Group, Object, ObjectSpec};
use serde::Serialize;

use crate::consistency::Consistency;
// Bytes of each sender's share merged at once: the direct schedule's parts.
use crate::dense::in_place_part as part;
use crate::element::Element;
use crate::error::{ParseError, VolError};
use crate::exchange::{Core, GatherInfo, VectorOptions};
use crate::graph::Graph;
use crate::representation::Representation;
use crate::udf::{Merge, Udf};

/// [`Schedule::Auto`] takes the allreduce schedule from this many members
/// up. With two, both schedules write `V` bytes per rank per round, and
/// the direct one needs one phase instead of two.
pub const AUTO_MIN_RANKS: usize = 3;

/// [`Schedule::Auto`] takes the allreduce schedule for vectors of at least
/// this many bytes of values. Below it, the second phase's latency costs
/// more than the bytes saved (see the README's measurements).
pub const AUTO_MIN_BYTES: usize = 16 << 10;

/// How a dense vector's gather reaches every rank's update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The allreduce schedule where it applies and pays (see the [module
    /// documentation](self)); otherwise the direct one.
    #[default]
    Auto,
    /// Every rank writes its update to each out-neighbour.
    Direct,
    /// Reduce-scatter then all-gather. Needs graph `all`, `bsp` and the
    /// dense representation.
    Allreduce,
}

impl Schedule {
    /// The name used in options, statistics and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Auto => "auto",
            Schedule::Direct => "direct",
            Schedule::Allreduce => "allreduce",
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Schedule {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Schedule::Auto),
            "direct" => Ok(Schedule::Direct),
            "allreduce" => Ok(Schedule::Allreduce),
            _ => Err(ParseError::new(
                "schedule",
                s,
                "expected auto, direct or allreduce",
            )),
        }
    }
}

/// The schedule a dense vector of `len` elements of `width` bytes runs
/// among `members` ranks with options `opts`: `Direct` or `Allreduce`,
/// never `Auto`. The same on every rank. `Err` names why a forced
/// allreduce cannot run.
pub fn choose(
    opts: &VectorOptions,
    members: usize,
    len: usize,
    width: usize,
) -> Result<Schedule, String> {
    let why_not = if opts.graph != Graph::All {
        Some(format!("graph {} (it needs graph all)", opts.graph))
    } else if opts.consistency != Consistency::Bsp {
        Some(format!("consistency {} (it needs bsp)", opts.consistency))
    } else if opts.representation != Representation::Dense {
        Some(format!(
            "representation {} (it needs dense)",
            opts.representation
        ))
    } else if !cfg!(target_endian = "little") {
        Some("a big-endian machine".to_string())
    } else if len < members {
        Some(format!(
            "{len} elements among {members} ranks (it needs one per rank)"
        ))
    } else {
        None
    };
    match (opts.schedule, why_not) {
        (Schedule::Direct, _) => Ok(Schedule::Direct),
        (Schedule::Allreduce, Some(why)) => {
            Err(format!("the allreduce schedule cannot run with {why}"))
        }
        (Schedule::Allreduce, None) => Ok(Schedule::Allreduce),
        (Schedule::Auto, Some(_)) => Ok(Schedule::Direct),
        (Schedule::Auto, None) => Ok(
            if members >= AUTO_MIN_RANKS && len.saturating_mul(width) >= AUTO_MIN_BYTES {
                Schedule::Allreduce
            } else {
                Schedule::Direct
            },
        ),
    }
}

/// The element range of share `m` of `len` elements cut into `n` shares.
pub fn share(len: usize, n: usize, m: usize) -> Range<usize> {
    let at = |m: usize| ((len as u128 * m as u128) / n.max(1) as u128) as usize;
    at(m)..at(m + 1)
}

/// The bytes of an update slot of the allreduce schedule: the largest share.
pub(crate) fn share_capacity(len: usize, members: usize, width: usize) -> usize {
    len.div_ceil(members.max(1))
        .saturating_mul(width)
        .max(width)
}

/// The reductions a merged share's tag names: tag `i + 1` is `TAGGED[i]`.
const TAGGED: [Udf; 4] = [Udf::Avg, Udf::Sum, Udf::Max, Udf::Min];

/// The tag of a share refused by its owner (its merge is no reduction).
const REFUSED: u64 = 0xff;

/// The tag in front of a merged share: the reduction that made it, or
/// [`REFUSED`].
fn tag(udf: Option<Udf>) -> u64 {
    udf.and_then(|u| TAGGED.iter().position(|&x| x == u))
        .map_or(REFUSED, |i| i as u64 + 1)
}

fn tag_name(tag: u64) -> String {
    match usize::try_from(tag)
        .ok()
        .and_then(|t| TAGGED.get(t.checked_sub(1)?))
    {
        Some(u) => u.name().into(),
        None if tag == REFUSED => "a function other than avg, sum, max or min".into(),
        None => format!("unknown merge tag {tag}"),
    }
}

/// Bytes per update slot of a dense vector of `len` elements of `width`
/// bytes among `members` ranks under `schedule`: one share for the
/// allreduce schedule, a vol header and the whole vector otherwise.
pub(crate) fn slot_capacity(schedule: Schedule, len: usize, members: usize, width: usize) -> usize {
    match schedule {
        Schedule::Allreduce => share_capacity(len, members, width),
        _ => crate::wire::HEADER_LEN.saturating_add(len.saturating_mul(width)),
    }
}

/// Bytes of the tag in front of each merged share (the all-gather's
/// payload is the tag, then the share).
pub const TAG: usize = 8;

/// The state of the allreduce schedule of one dense vector: the
/// all-gather object (the reduce-scatter uses the core's own object, whose
/// slots hold one share) and the buffers its gather reuses.
#[derive(Debug)]
// The all-gather object, the membership the shares are laid out over and
// the buffers and progress of the gather in hand: its fields serve one
// gather together.
pub(crate) struct Allreduce<T: 'static> {
    /// The all-gather object: graph all, slots of a tag and one share.
    ag: Object,
    /// The group's members, ascending; share `m` belongs to `members[m]`.
    members: Vec<usize>,
    /// This rank's index in `members`.
    me: usize,
    len: usize,
    /// This rank's share as it scattered it.
    sent: Vec<T>,
    /// This rank's merged share.
    acc: Vec<T>,
    /// Parts of every sender's share, merged range by range.
    stage: Vec<T>,
    refs: Vec<&'static [T]>,
    /// The iteration whose merge and all-gather writes are done while its
    /// gather has not finished (a gather that failed waiting is made again
    /// from there).
    reduced: Option<u64>,
    /// Why the vector cannot go on: the ranks disagreed on the merge.
    broken: Option<Broken>,
}

/// How the ranks disagreed on a gather's merge.
#[derive(Debug, Clone)]
enum Broken {
    /// This rank's merge is not one the schedule can run.
    Refused,
    /// Rank `rank` merged with `theirs`, this rank with `ours` (tags).
    Differs { rank: usize, ours: u64, theirs: u64 },
}

impl Broken {
    fn error(&self, vector: &str) -> VolError {
        match *self {
            Broken::Refused => refused(vector),
            Broken::Differs { rank, ours, theirs } => VolError::Mismatch {
                vector: vector.to_owned(),
                rank,
                what: "merge function (the allreduce schedule needs the same one on every rank)",
                ours: tag_name(ours),
                theirs: tag_name(theirs),
            },
        }
    }
}

impl<T: Element> Allreduce<T> {
    /// Creates the all-gather object, collectively (after the core).
    pub fn create(
        group: &Group,
        name: &str,
        len: usize,
        opts: &VectorOptions,
    ) -> Result<Self, VolError> {
        let members = group.members();
        let n = members.len();
        let me = members
            .iter()
            .position(|&r| r == group.rank())
            .ok_or_else(|| VolError::Protocol("this rank is not a member of its group".into()))?;
        let all = Graph::All.adjacency_among(group.world(), &members)?;
        let spec = ObjectSpec::new(
            format!("vol-allgather:{name}"),
            TAG + share_capacity(len, n, T::WIDTH),
        )
        .depth(opts.depth)
        .flow(opts.flow)
        .graph(all);
        let ag = group.create_object(&spec)?;
        let k = n - 1;
        let mine = share(len, n, me).len();
        Ok(Allreduce {
            ag,
            me,
            len,
            sent: vec![T::zero(); mine],
            acc: vec![T::zero(); mine],
            stage: vec![T::zero(); k * part(k) / T::WIDTH],
            refs: Vec::with_capacity(n),
            members,
            reduced: None,
            broken: None,
        })
    }

    fn range(&self, m: usize) -> Range<usize> {
        share(self.len, self.members.len(), m)
    }

    /// The reduce-scatter: share `m` of `values` to its owner, for every
    /// other member, starting with the next one up; this rank's own share is
    /// kept as sent, for its merge.
    pub fn scatter(&mut self, core: &mut Core, values: &[T]) -> Result<(), VolError> {
        if let Some(b) = &self.broken {
            return Err(b.error(&core.name));
        }
        let n = self.members.len();
        let (len, members) = (self.len, &self.members);
        let first = core
            .obj
            .out_neighbors()
            .partition_point(|&p| p < members[self.me]);
        core.send_with(
            first,
            |peer| {
                let m = members.binary_search(&peer).unwrap_or(0);
                crate::dense::as_bytes(&values[share(len, n, m)]).into()
            },
            false,
        )?;
        let mine = self.range(self.me);
        self.sent.copy_from_slice(&values[mine]);
        Ok(())
    }

    /// The merge and all-gather of iteration `core.iteration`, after the
    /// consistency wait (every sender's share of this iteration is visible),
    /// bounded by `deadline`. `values` changes only at the end, all at once.
    pub fn gather<M: Merge<T> + ?Sized>(
        &mut self,
        core: &mut Core,
        values: &mut [T],
        udf: &mut M,
        deadline: Instant,
        info: &mut GatherInfo,
    ) -> Result<(), VolError> {
        if let Some(b) = &self.broken {
            return Err(b.error(&core.name));
        }
        let t = core.iteration;
        let reduction = udf.reduction();
        if self.reduced != Some(t) {
            match reduction {
                Some(u) => self.reduce(core, u, t)?,
                None => {
                    // Every other rank learns it from the tag, at once.
                    self.write_all(core, REFUSED, t, false)?;
                    self.broken = Some(Broken::Refused);
                    return Err(refused(&core.name));
                }
            }
            self.write_all(core, tag(reduction), t, true)?;
            self.reduced = Some(t);
        }
        self.wait_shares(core, t, deadline, info)?;
        self.check_tags(core, t, tag(reduction))?;
        // Every owner's merged share is complete and of this iteration, and
        // under BSP none can change before this rank scatters again: copied
        // through a small buffer (the shares differ in length, and a slot
        // holds the largest).
        for m in 0..self.members.len() {
            if m == self.me {
                continue;
            }
            let (owner, range) = (self.members[m], self.range(m));
            let dst = &mut values[range.clone()];
            let width = T::WIDTH;
            let p = part(1);
            let got = self.ag.read_together(
                &[owner],
                t,
                TAG + range.len() * width,
                p,
                crate::dense::as_bytes_mut(&mut self.stage[..p / width]),
                |from, bytes, stage| -> Result<ControlFlow<()>, VolError> {
                    // Skip the tag: bytes [TAG, ..) are the share.
                    let lo = from.max(TAG);
                    let hi = from + bytes;
                    if lo < hi {
                        let src: &[T] = bytemuck::cast_slice(&stage[lo - from..hi - from]);
                        dst[(lo - TAG) / width..(hi - TAG) / width].copy_from_slice(src);
                    }
                    Ok(ControlFlow::Continue(()))
                },
            )?;
            if !got {
                return Err(core.bad_update(
                    owner,
                    format!("its merged share {m} of iteration {t} could not be read"),
                ));
            }
        }
        let mine = self.range(self.me);
        values[mine].copy_from_slice(&self.acc);
        self.reduced = None;
        info.merged = self.members.len() - 1;
        Ok(())
    }

    /// Writes this rank's merged share (or only the tag, when `with_share`
    /// is false) to every other member, starting with the next one up.
    fn write_all(
        &mut self,
        core: &mut Core,
        tag: u64,
        t: u64,
        with_share: bool,
    ) -> Result<(), VolError> {
        let head = tag.to_le_bytes();
        let body: &[u8] = if with_share {
            crate::dense::as_bytes(&self.acc)
        } else {
            &[]
        };
        let payload = dstorm::wire::Payload::new(&head, body);
        let out = self.ag.out_neighbors().len();
        let first = self
            .ag
            .out_neighbors()
            .partition_point(|&p| p < self.members[self.me]);
        for j in 0..out {
            let peer = self.ag.out_neighbors()[(first + j) % out];
            self.ag.write_parts(peer, payload, t)?;
            core.stats.record_send(peer, payload.len() as u64);
        }
        Ok(())
    }

    /// Waits until every other owner's merged share of iteration `t` is
    /// complete here.
    fn wait_shares(
        &mut self,
        core: &mut Core,
        t: u64,
        deadline: Instant,
        info: &mut GatherInfo,
    ) -> Result<(), VolError> {
        let start = Instant::now();
        let mut waited = false;
        for m in 0..self.members.len() {
            if m == self.me {
                continue;
            }
            let owner = self.members[m];
            if self.ag.wait_visible(owner, t, Duration::ZERO)?.is_none() {
                waited = true;
                let left = Core::left(deadline);
                if self.ag.wait_visible(owner, t, left)?.is_none() {
                    core.stats.record_timed_out_wait(start.elapsed());
                    return Err(VolError::Timeout {
                        vector: core.name.clone(),
                        op: "allreduce wait for a merged share",
                        iteration: t,
                        waited: start.elapsed(),
                        missing: vec![owner],
                    });
                }
            }
        }
        if waited {
            let w = start.elapsed();
            core.stats.record_wait(w);
            info.wait_ns = info
                .wait_ns
                .saturating_add(u64::try_from(w.as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(())
    }

    /// Before anything is copied: every owner's next update is its merged
    /// share of iteration `t`, made with the merge this rank used (`mine`).
    fn check_tags(&mut self, core: &Core, t: u64, mine: u64) -> Result<(), VolError> {
        let mut head = [0u8; TAG];
        for m in 0..self.members.len() {
            if m == self.me {
                continue;
            }
            let (owner, bytes) = (self.members[m], self.range(m).len() * T::WIDTH);
            let Some(u) = self.ag.peek_from(owner, t, &mut head)? else {
                return Err(core.bad_update(
                    owner,
                    format!("its next merged share is not the one of iteration {t}"),
                ));
            };
            let theirs = u64::from_le_bytes(head);
            if theirs != mine {
                let b = Broken::Differs {
                    rank: owner,
                    ours: mine,
                    theirs,
                };
                let e = b.error(&core.name);
                self.broken = Some(b);
                return Err(e);
            }
            if u.len != TAG + bytes {
                return Err(core.bad_update(
                    owner,
                    format!(
                        "a merged share of {} bytes; expected {}",
                        u.len,
                        TAG + bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Merges this rank's share of every member's update of iteration `t`
    /// into `acc`, in member order, with the kernel of `udf`.
    fn reduce(&mut self, core: &mut Core, mut udf: Udf, t: u64) -> Result<(), VolError> {
        let k = self.members.len() - 1;
        let width = T::WIDTH;
        let part = part(k);
        let mine = self.range(self.me);
        let (me, acc, own) = (self.me, &mut self.acc, &self.sent);
        let mut store: Vec<&'static [T]> = std::mem::take(&mut self.refs);
        let read = core.obj.read_together(
            &core.senders,
            t,
            mine.len() * width,
            part,
            crate::dense::as_bytes_mut(&mut self.stage),
            |from, bytes, stage| -> Result<ControlFlow<()>, VolError> {
                let (lo, hi) = (from / width, (from + bytes) / width);
                let mut refs: Vec<&[T]> = crate::dense::recycle(std::mem::take(&mut store));
                for m in 0..=k {
                    if m == me {
                        refs.push(&own[lo..hi]);
                    } else {
                        let i = if m < me { m } else { m - 1 };
                        let values: &[T] = bytemuck::cast_slice(&stage[i * part..i * part + bytes]);
                        refs.push(values);
                    }
                }
                acc[lo..hi].copy_from_slice(refs[0]);
                let r = Merge::<T>::merge_dense(&mut udf, &mut acc[lo..hi], &refs[1..]);
                store = crate::dense::recycle(refs);
                r?;
                Ok(ControlFlow::Continue(()))
            },
        );
        self.refs = store;
        if !read? {
            for &p in &core.senders {
                if let Some(u) = core.obj.wait_visible(p, t, Duration::ZERO)? {
                    if u.len != mine.len() * width || u.iteration != t {
                        return Err(core.bad_update(
                            p,
                            format!(
                                "a share of {} bytes at iteration {}; expected {} bytes at iteration {t}",
                                u.len,
                                u.iteration,
                                mine.len() * width
                            ),
                        ));
                    }
                }
            }
            let queues: Vec<String> = core
                .senders
                .iter()
                .map(|&p| format!("rank {p}: {}", core.obj.describe_queue(p)))
                .collect();
            return Err(VolError::Protocol(format!(
                "vector {:?}: the shares of iteration {t} could not be read together ({})",
                core.name,
                queues.join(", ")
            )));
        }
        for i in 0..k {
            core.note_read(i, t);
            core.mirror_iter[i] = t;
            core.stats.record_merged(0);
        }
        Ok(())
    }

    /// Folds the all-gather object's losses into `core`'s statistics (after
    /// [`Core::finish_gather`], which counts the core's own object's).
    pub fn add_losses(&self, core: &mut Core) {
        let c = self.ag.counters();
        core.stats.torn += c.torn;
        core.stats.lapped += c.lapped;
        core.stats.stale_epoch += c.stale_epoch;
    }
}

/// The error of a gather whose merge the allreduce schedule cannot run.
fn refused(name: &str) -> VolError {
    VolError::InvalidVector {
        vector: name.to_owned(),
        problem: "under the allreduce schedule a gather merges with avg, sum, max or min; create the vector with schedule direct to merge with another function".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_vector_and_differ_by_at_most_one() {
        for len in [3usize, 7, 10, 1000, 1001, 1 << 20] {
            for n in 1..=9usize.min(len) {
                let sizes: Vec<usize> = (0..n).map(|m| share(len, n, m).len()).collect();
                assert_eq!(share(len, n, 0).start, 0);
                assert_eq!(share(len, n, n - 1).end, len);
                for m in 1..n {
                    assert_eq!(share(len, n, m - 1).end, share(len, n, m).start);
                }
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{len} / {n}: {sizes:?}");
                assert!(share_capacity(len, n, 4) >= hi * 4);
            }
        }
    }

    #[test]
    fn auto_takes_allreduce_only_where_it_applies_and_pays() {
        let o = VectorOptions::new();
        let big = AUTO_MIN_BYTES / 4;
        assert_eq!(choose(&o, 4, big, 4), Ok(Schedule::Allreduce));
        assert_eq!(choose(&o, 2, big, 4), Ok(Schedule::Direct));
        assert_eq!(choose(&o, 4, big - 1, 4), Ok(Schedule::Direct));
        let ring = o.clone().graph(Graph::Ring);
        assert_eq!(choose(&ring, 4, big, 4), Ok(Schedule::Direct));
        let forced = ring.schedule(Schedule::Allreduce);
        let e = choose(&forced, 4, big, 4).unwrap_err();
        assert!(e.contains("graph ring"), "{e}");
        let ssp = o.clone().consistency(Consistency::Ssp { s: 1 });
        assert_eq!(choose(&ssp, 4, big, 4), Ok(Schedule::Direct));
        let small = o.clone().schedule(Schedule::Allreduce);
        assert_eq!(choose(&small, 2, 2, 4), Ok(Schedule::Allreduce));
        assert!(choose(&small, 3, 2, 4)
            .unwrap_err()
            .contains("2 elements among 3"));
        assert_eq!(
            choose(&o.schedule(Schedule::Direct), 8, big, 4),
            Ok(Schedule::Direct)
        );
    }

    #[test]
    fn tags_name_the_reduction_they_carry() {
        for u in TAGGED {
            assert_eq!(tag_name(tag(Some(u))), u.name());
        }
        assert_eq!(tag(None), REFUSED);
        assert!(tag_name(REFUSED).contains("other than"));
        assert!(tag_name(7).contains("unknown"));
    }

    #[test]
    fn schedules_parse_and_print() {
        for s in [Schedule::Auto, Schedule::Direct, Schedule::Allreduce] {
            assert_eq!(s.to_string().parse::<Schedule>().unwrap(), s);
        }
        assert!("ring".parse::<Schedule>().is_err());
    }
}
