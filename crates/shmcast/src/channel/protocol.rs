//! The channel protocol: one writer, many readers, latest frame wins, and
//! the writer never waits for a reader.
//!
//! This module is pure atomics over a [`Words`] view, with no OS calls and no
//! payload access of its own (payload copies are closures from the caller),
//! so that `loom` can check exactly this code (see `loom_tests.rs`).
//!
//! # Slots
//! Each slot's `seq` is even while the slot holds a complete frame (or
//! nothing), odd while the writer owns it. `latest` names the newest
//! complete frame, its number and its slot in one word; the writer never
//! picks that slot, so there is always a whole frame to read. Readers accept
//! a slot only if it still holds the frame number `latest` named: a reader
//! that saw a stale `latest` and a newer slot would otherwise be able to
//! return frame 3, then frame 2 (loom found that one).
//!
//! # Writing
//! [`begin_write`](Words::begin_write) tries the slot that was latest
//! before the current one, then the others round the ring: it marks a
//! candidate odd, then checks the lease table for a lease on it. A leased
//! slot is given back (its old `seq` restored, data untouched) and the next
//! one tried; if every slot is leased the
//! writer gets an error at once instead of waiting. The caller decides, per
//! leased slot, whether to honour the lease: the publisher stops honouring
//! a lease that has kept a slot from it for longer than the channel's
//! `max_lease` while it had no other slot, so a stopped, slow or forged
//! lease holder costs frames for a bounded time, never forever. A lease
//! that is not honoured is overwritten; its holder finds out when it
//! validates the lease (its slot's `seq` moved). [`commit`](Words::commit)
//! stores the metadata with the next frame number, makes `seq` even, then
//! points `latest` at the slot and bumps `generation` for waiters.
//! [`abort`](Words::abort) marks the slot empty (frame number 0) and even.
//!
//! # Leasing (reading in place)
//! A reader stores its lease on the latest slot, then re-reads the slot's
//! `seq`; the writer marks a slot odd, then reads the leases. Each side puts
//! a `SeqCst` fence between its store and its load (Dekker's pattern), so in
//! the single order of those fences one side comes first and the other sees
//! its store: either the writer sees the lease and leaves the slot alone, or
//! the reader sees the odd `seq` and retries. A lease is only granted on an
//! even `seq` that did not change across the lease store, on a slot with a
//! non-zero frame number. Leases live in the lease table, a segment of its
//! own that leasing subscribers may write; the slots and the frames live in
//! the channel, which only the writer may write. Because the writer may
//! revoke a lease (above), every use of a lease ends with a check that the
//! slot's `seq` is still the one the lease was granted on
//! ([`lease_intact`](Words::lease_intact)).
//!
//! # Copying (seqlock)
//! A reader that copies (small frames; `Subscriber::read_latest` copies
//! large ones under a lease) writes nothing to shared memory: it is the
//! reader side of the crate's one seqlock ([`crate::seqlock`]) on the
//! slot's `seq`, around the metadata and payload (racy-tolerant loads); a
//! change means the copy overlapped a write and is retried. The writer side
//! is the protocol's own, because it must also look for leases: its
//! `SeqCst` fence after marking the slot odd is the seqlock's release fence
//! and more, so it orders that mark before every payload store.
//!
//! # Take-over and dead readers
//! The writer claims the channel by compare-and-swap of its process token
//! into `writer`; a token of a dead process may be swapped out. The new
//! writer then [`repair`](Words::repair)s: odd slots (a write cut short)
//! become empty and even, and `latest` is set from the newest complete
//! slot, so frame numbers go on where the dead writer stopped. Entries of
//! dead subscribers are cleared by whoever finds them, and entries whose
//! `beat_ns` has not moved for [`STALE_BEAT_NS`] (a stopped subscriber, or
//! an entry forged in the name of a live process) by a subscriber that
//! finds the table full
//! ([`reclaim_dead_readers`](Words::reclaim_dead_readers)); the entry is
//! first swapped to a marker naming the reclaimer, so two reclaimers cannot
//! clobber a new owner and a reclaimer that dies mid-way wedges nothing.
//!
//! # Untrusted words
//! Every word here may have been scribbled by a peer (the lease table by
//! any leasing subscriber; the channel by nobody but its owner, but it is
//! checked all the same). Arithmetic on them wraps instead of overflowing,
//! indices are checked against the slice they index, and the worst a bad
//! value can cause is a refused read, a retry or a dropped frame.

use super::format::SlotMeta;
use super::layout::{ChannelHeader, ReaderEntry, SlotHeader, RECLAIMING};
use crate::seqlock::{self, spin};
use crate::sync::{fence, Ordering::*};

/// Entries whose `beat_ns` is older (or newer) than this are stale.
pub(crate) const STALE_BEAT_NS: u64 = 10_000_000_000;

/// A view of one channel's shared words. Every access to them goes
/// through this module's functions, so that the loom models check all of
/// it.
pub(crate) struct Words<'a> {
    header: &'a ChannelHeader,
    slots: &'a [SlotHeader],
    /// The lease table's entries; empty for a read-only subscriber.
    readers: &'a [ReaderEntry],
}

/// Every slot but the latest is leased: the writer must drop this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AllLeased;

/// Why a read did not produce a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadFail<E> {
    /// The writer kept overwriting the frame being read for as many tries
    /// as the caller allowed: `latest` moved on meanwhile.
    Overrun,
    /// The words say what the writer never leaves them saying.
    Corrupt(Impossible),
    /// The caller's copy refused a stable frame.
    Copy(E),
}

/// What a reader found that no writer following this protocol leaves in
/// shared memory, so that a peer must have written it.
///
/// The writer never touches the slot `latest` names (it writes another,
/// then moves `latest` to it), and it marks a slot odd with a release
/// store only after `latest` has left it: a reader that acquires that odd
/// mark sees the move. So when `latest` still holds the very value a read
/// began with, the slot it names must be even and hold its frame; a slot
/// that is odd, or whose stable `seq` guards another frame, was scribbled.
/// Every try of a read finding that is what tells corruption from a fast
/// writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impossible {
    /// `latest` names slot `slot` of a channel of `slots`.
    NoSuchSlot { slot: usize, slots: usize },
    /// `latest` kept naming frame `number` in `slot`, which stayed marked as
    /// being written (`seq`, odd).
    Writing { number: u64, slot: usize, seq: u64 },
    /// `latest` kept naming frame `number` in `slot`, which holds frame
    /// `found` instead.
    OtherFrame {
        number: u64,
        slot: usize,
        found: u64,
    },
}

impl std::fmt::Display for Impossible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Impossible::NoSuchSlot { slot, slots } => write!(
                f,
                "the latest-frame word names slot {slot}, but the channel has slots 0 to {}",
                slots.saturating_sub(1)
            ),
            Impossible::Writing { number, slot, seq } => write!(
                f,
                "the latest-frame word names frame {number} in slot {slot}, which stays marked as being written (sequence word {seq}), though no writer touches the latest slot"
            ),
            Impossible::OtherFrame {
                number,
                slot,
                found,
            } => write!(
                f,
                "the latest-frame word names frame {number} in slot {slot}, which holds frame {found}"
            ),
        }
    }
}

/// How the tries of one read ended, for what to say when none succeeded:
/// corrupt only if every try found the impossible.
struct Tries {
    overrun: bool,
    last: Option<Impossible>,
}

impl Tries {
    fn new() -> Tries {
        Tries {
            overrun: false,
            last: None,
        }
    }

    /// One try failed on slot `s`, whose `seq` was `seq` and which held
    /// frame `found`, after `latest` read `seen`: impossible if `latest`
    /// still reads `seen`, an overrun if it moved.
    fn failed(&mut self, words: &Words<'_>, seen: u64, s: usize, seq: u64, found: u64) {
        if words.header.latest.load(Acquire) != seen {
            self.overrun = true;
            return;
        }
        let number = latest_number(seen);
        self.last = Some(if seqlock::is_writing(seq) {
            Impossible::Writing {
                number,
                slot: s,
                seq,
            }
        } else {
            Impossible::OtherFrame {
                number,
                slot: s,
                found,
            }
        });
    }

    fn fail<E>(self) -> ReadFail<E> {
        match self.last {
            Some(what) if !self.overrun => ReadFail::Corrupt(what),
            _ => ReadFail::Overrun,
        }
    }
}

impl<'a> Words<'a> {
    pub(crate) fn new(
        header: &'a ChannelHeader,
        slots: &'a [SlotHeader],
        readers: &'a [ReaderEntry],
    ) -> Words<'a> {
        Words {
            header,
            slots,
            readers,
        }
    }
}

impl Words<'_> {
    // ---- writer ------------------------------------------------------------

    /// Fills in a new channel's header, which nobody else can see yet:
    /// its instance, `me` as its writer, and now as its last publish.
    pub(crate) fn start(&self, instance: u64, me: u64, now_ns: u64) {
        self.header.instance.store(instance, Relaxed);
        self.header.writer.store(me, Relaxed);
        self.header.last_publish_ns.store(now_ns, Relaxed);
    }

    /// Records how long the writer honours a lease that keeps it from
    /// every free slot (for `shmcast info`; the writer keeps its own copy).
    pub(crate) fn set_max_lease_ms(&self, ms: u64) {
        self.header.max_lease_ms.store(ms, Relaxed);
    }

    /// Claims the writer role for `me`. `Ok(Some(t))`: took over from the
    /// dead process with token `t`; `Err(t)`: `t` is a live writer.
    pub(crate) fn claim_writer(
        &self,
        me: u64,
        is_dead: impl Fn(u64) -> bool,
    ) -> Result<Option<u64>, u64> {
        loop {
            let current = self.header.writer.load(SeqCst);
            let (expected, outcome) = match current {
                0 => (0, None),
                t if t != me && is_dead(t) => (t, Some(t)),
                t => return Err(t),
            };
            if self
                .header
                .writer
                .compare_exchange(expected, me, SeqCst, SeqCst)
                .is_ok()
            {
                return Ok(outcome);
            }
        }
    }

    /// Whether `me` still holds the writer role.
    pub(crate) fn is_writer(&self, me: u64) -> bool {
        self.header.writer.load(Relaxed) == me
    }

    /// Gives up the writer role, if `me` still has it, and moves the
    /// generation on so that waiters look again and find no writer (call
    /// the wakers around it as around [`commit`](Words::commit)).
    pub(crate) fn release_writer(&self, me: u64) {
        let _ = self.header.writer.compare_exchange(me, 0, SeqCst, SeqCst);
        self.header.generation.fetch_add(1, Release);
    }

    /// Finishes what a dead writer left: cut-short slots become empty, and
    /// `latest` names the newest complete frame (the dead writer may have
    /// completed a slot without getting to publish it). Call right after a
    /// take-over, before writing. `now_ns` counts as the last publish, so
    /// that readers do not see the dead writer's silence as a stall.
    pub(crate) fn repair(&self, now_ns: u64) {
        let latest = self.header.latest.load(Acquire);
        let mut newest = latest_number(latest);
        let mut found = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let seq = slot.seq.load(Acquire);
            if seq & 1 == 1 {
                slot.number.store(0, Relaxed);
                slot.seq.store(seq.wrapping_add(1), Release);
            } else {
                let number = slot.number.load(Relaxed);
                if number > newest {
                    (newest, found) = (number, Some(i));
                }
            }
        }
        if let Some(i) = found {
            self.header.latest.store(pack(newest, i), Release);
        }
        self.header.last_publish_ns.store(now_ns, Relaxed);
    }

    /// Picks a slot for the next frame and marks it odd (being written).
    ///
    /// `prefer` is tried first: the slot that was latest just before the
    /// current one is the warmest in the caches and the likeliest to have
    /// been released by readers, so reusing it keeps the writer's working
    /// set to two or three slots instead of cycling through all of them.
    ///
    /// `honour(slot, holder)` is called for every candidate once its lease
    /// state is known, `holder` being the token of a subscriber that leases
    /// it (`None`: free); it returns whether to leave the slot alone. A free
    /// slot is never left alone.
    pub(crate) fn begin_write(
        &self,
        prefer: Option<usize>,
        mut honour: impl FnMut(usize, Option<u64>) -> bool,
    ) -> Result<usize, AllLeased> {
        let n = self.slots.len();
        let latest = latest_slot_plus_one(self.header.latest.load(Relaxed));
        let prefer = prefer.filter(|&p| p < n);
        let order = prefer.into_iter().chain(
            // Then round the ring from just after the latest (index + 1).
            (0..n)
                .map(|k| (latest + k) % n)
                .filter(|&s| Some(s) != prefer),
        );
        for s in order {
            if latest != 0 && s == latest - 1 {
                continue;
            }
            let slot = &self.slots[s];
            let seq = slot.seq.load(Relaxed);
            // A release store: a reader that sees the mark sees `latest`
            // gone from this slot, which is how readers tell a scribbled
            // slot from one being written (see `Impossible`).
            slot.seq.store(seq | 1, Release);
            // Dekker with `lease_latest`; also orders the odd mark before
            // every payload store for seqlock readers.
            fence(SeqCst);
            let holder = self.lease_holder(s);
            let leave_alone = honour(s, holder);
            if holder.is_none() || !leave_alone {
                // The lease releases we saw must happen before our writes.
                fence(Acquire);
                return Ok(s);
            }
            // Leased: give the slot back, whole, and try the next one. Its
            // old `seq` comes back: nothing was written, so readers that
            // saw that value before (a lease holder, a seqlock copy) may go
            // on trusting what they read, and a lease holder checking its
            // lease later is not told of a revocation that never happened.
            slot.seq.store(seq, Release);
        }
        Err(AllLeased)
    }

    /// The token of a subscriber leasing slot `s`, if any.
    fn lease_holder(&self, s: usize) -> Option<u64> {
        let wanted = s as u64 + 1;
        self.readers
            .iter()
            .find(|r| r.lease.load(Relaxed) == wanted)
            .map(|r| r.token.load(Relaxed) & !RECLAIMING)
    }

    /// Publishes the frame written into slot `s`; returns its number: the
    /// next one, or `meta.number` when that is higher (a bridge keeps its
    /// source's numbers, gaps and all) and fits the `latest` word.
    pub(crate) fn commit(&self, s: usize, meta: &SlotMeta, now_ns: u64) -> u64 {
        let next = latest_number(self.header.latest.load(Relaxed)).wrapping_add(1);
        let number = if meta.number > next && meta.number <= MAX_NUMBER {
            meta.number
        } else {
            next
        };
        let slot = &self.slots[s];
        slot.store_meta(&SlotMeta { number, ..*meta });
        let seq = slot.seq.load(Relaxed);
        slot.seq.store(seq.wrapping_add(1), Release);
        self.header.latest.store(pack(number, s), Release);
        self.header.last_publish_ns.store(now_ns, Relaxed);
        // Waiters read the generation, check `latest`, and sleep only while
        // the generation is unchanged (futex) or on the event this publish
        // sets (Windows): either way a publish after their check wakes them.
        self.header.generation.fetch_add(1, Release);
        number
    }

    /// Records a frame dropped because `holder` (a token, 0: unknown)
    /// leased every free slot.
    pub(crate) fn note_dropped(&self, holder: u64) {
        self.header.dropped_frames.fetch_add(1, Relaxed);
        self.header.blocked_by.store(holder, Relaxed);
    }

    /// The slot holding the newest frame, if any (writer side); `None` too
    /// when the word names no slot of this channel (found by fuzzing: its
    /// one caller filtered it, but an index should be one).
    pub(crate) fn latest_slot_index(&self) -> Option<usize> {
        latest_slot_plus_one(self.header.latest.load(Relaxed))
            .checked_sub(1)
            .filter(|&s| s < self.slots.len())
    }

    /// Abandons slot `s`: no frame is published, the slot is empty.
    pub(crate) fn abort(&self, s: usize) {
        let slot = &self.slots[s];
        slot.number.store(0, Relaxed);
        let seq = slot.seq.load(Relaxed);
        slot.seq.store(seq.wrapping_add(1), Release);
    }

    // ---- readers -----------------------------------------------------------

    /// The newest complete frame's number (0: none yet).
    pub(crate) fn latest_number(&self) -> u64 {
        latest_number(self.header.latest.load(Acquire))
    }

    /// Copies the latest frame with `copy(slot, meta)`, a seqlock read.
    /// `Ok(None)`: nothing published yet.
    pub(crate) fn read_latest<E>(
        &self,
        tries: usize,
        mut copy: impl FnMut(usize, &SlotMeta) -> Result<(), E>,
    ) -> Result<Option<SlotMeta>, ReadFail<E>> {
        let mut failed = Tries::new();
        for _ in 0..tries {
            let Some((seen, s)) = self.latest_slot()? else {
                return Ok(None);
            };
            let number = latest_number(seen);
            let slot = &self.slots[s];
            let before = seqlock::read_begin(&slot.seq);
            let meta = slot.load_meta();
            if seqlock::is_writing(before) || meta.number != number {
                // Overwritten since `latest` named it (or, if `latest` has
                // not moved and the metadata was stable, scribbled).
                if seqlock::is_writing(before) || seqlock::read_valid(&slot.seq, before) {
                    failed.failed(self, seen, s, before, meta.number);
                } else {
                    failed.overrun = true;
                }
                spin();
                continue;
            }
            let copied = copy(s, &meta);
            if !seqlock::read_valid(&slot.seq, before) {
                failed.overrun = true;
                continue;
            }
            return match copied {
                Ok(()) => Ok(Some(meta)),
                Err(e) => Err(ReadFail::Copy(e)),
            };
        }
        Err(failed.fail())
    }

    /// Leases the latest frame for reader entry `entry`: until
    /// [`release_lease`](Self::release_lease) the writer leaves that slot
    /// alone (unless it revokes the lease, which
    /// [`lease_intact`](Self::lease_intact) tells). Returns the slot, its
    /// (now stable) metadata and the `seq` the lease was granted on.
    pub(crate) fn lease_latest(
        &self,
        entry: usize,
        tries: usize,
    ) -> Result<Option<(usize, SlotMeta, u64)>, ReadFail<()>> {
        let me = &self.readers[entry];
        let mut failed = Tries::new();
        for _ in 0..tries {
            let Some((seen, s)) = self.latest_slot()? else {
                return Ok(None);
            };
            let number = latest_number(seen);
            let slot = &self.slots[s];
            let before = slot.seq.load(Acquire);
            if before & 1 == 0 {
                me.lease.store(s as u64 + 1, Relaxed);
                // Dekker with `begin_write`.
                fence(SeqCst);
                if slot.seq.load(Relaxed) == before {
                    let meta = slot.load_meta();
                    if meta.number == number {
                        return Ok(Some((s, meta, before)));
                    }
                    // Another frame under a `seq` that held across the
                    // read: scribbled, if `latest` has not moved either.
                    if seqlock::read_valid(&slot.seq, before) {
                        failed.failed(self, seen, s, before, meta.number);
                    } else {
                        failed.overrun = true;
                    }
                } else {
                    failed.overrun = true;
                }
                me.lease.store(0, Release);
            } else {
                failed.failed(self, seen, s, before, 0);
            }
            spin();
        }
        Err(failed.fail())
    }

    /// Whether slot `s` still holds what it held when its `seq` was `seq`:
    /// call after reading a leased (or seqlock-read) frame, before trusting
    /// what was read.
    ///
    /// The writer marks every candidate slot odd while it checks for leases
    /// and restores the old `seq` when it finds one it honours, so an odd
    /// value may be a probe that changes nothing: wait (briefly, bounded)
    /// for the slot to be even again before judging.
    pub(crate) fn lease_intact(&self, s: usize, seq: u64) -> bool {
        fence(Acquire);
        let tries = if cfg!(loom) { 8 } else { 100_000 };
        for _ in 0..tries {
            let now = self.slots[s].seq.load(Acquire);
            if now & 1 == 0 {
                return now == seq;
            }
            spin();
        }
        false
    }

    /// The `latest` word and the slot it names, from one load.
    fn latest_slot<E>(&self) -> Result<Option<(u64, usize)>, ReadFail<E>> {
        let latest = self.header.latest.load(Acquire);
        match latest_slot_plus_one(latest) {
            0 => Ok(None),
            s if s <= self.slots.len() => Ok(Some((latest, s - 1))),
            named => Err(ReadFail::Corrupt(Impossible::NoSuchSlot {
                slot: named - 1,
                slots: self.slots.len(),
            })),
        }
    }

    /// Ends entry `entry`'s lease, if the entry is still `me`'s (it may
    /// have been cleared as stale and given to another subscriber since).
    pub(crate) fn release_lease(&self, entry: usize, me: u64) {
        let r = &self.readers[entry];
        if r.token.load(Acquire) == me {
            r.lease.store(0, Release);
        }
    }

    /// Whether entry `entry` still belongs to `me`.
    pub(crate) fn owns_entry(&self, entry: usize, me: u64) -> bool {
        self.readers[entry].token.load(Acquire) == me
    }

    /// Shows that entry `entry` is in use (see [`STALE_BEAT_NS`]).
    pub(crate) fn touch(&self, entry: usize, now_ns: u64) {
        self.readers[entry].beat_ns.store(now_ns, Relaxed);
    }

    /// Takes a free entry of the lease table for `me`, clearing dead and
    /// stale entries if none is free. `None`: the table is full of live
    /// ones.
    pub(crate) fn register(
        &self,
        me: u64,
        now_ns: u64,
        is_dead: impl Fn(u64) -> bool,
    ) -> Option<usize> {
        for pass in 0..2 {
            for (i, r) in self.readers.iter().enumerate() {
                // Beat first: a reclaimer that sees our token must not find
                // the previous owner's old beat and call us stale.
                if r.token.load(Relaxed) == 0 {
                    r.beat_ns.store(now_ns, Relaxed);
                    if r.token.compare_exchange(0, me, SeqCst, SeqCst).is_ok() {
                        r.lease.store(0, Release);
                        return Some(i);
                    }
                }
            }
            if pass == 0 {
                self.reclaim_dead_readers(me, &is_dead, Some(now_ns));
            }
        }
        None
    }

    /// Frees entry `entry` (its lease included), if it is still `me`'s.
    pub(crate) fn unregister(&self, entry: usize, me: u64) {
        let r = &self.readers[entry];
        if r.token.load(Acquire) == me {
            r.lease.store(0, Release);
            let _ = r.token.compare_exchange(me, 0, SeqCst, SeqCst);
        }
    }

    /// Clears the entries (and leases) of dead processes and, given the
    /// time `stale_at_ns` (monotonic), entries that nobody has touched for
    /// [`STALE_BEAT_NS`] before it;
    /// returns how many. Stale entries are cleared only by subscribers that
    /// find the table full: a live subscriber that holds one lease for long
    /// loses nothing while there is room (the publisher bounds what a held
    /// lease costs it by revoking, not by clearing entries).
    ///
    /// An entry is first swapped to a marker naming the reclaimer, so two
    /// reclaimers never both clear it (a late clear could wipe a new
    /// owner's lease), and one that dies mid-reclaim leaves a marker whose
    /// owner is dead: it is reclaimed again, never wedged.
    pub(crate) fn reclaim_dead_readers(
        &self,
        me: u64,
        is_dead: impl Fn(u64) -> bool,
        stale_at_ns: Option<u64>,
    ) -> usize {
        let mut cleared = 0;
        for r in self.readers {
            let token = r.token.load(Acquire);
            let owner = token & !RECLAIMING;
            // Our own reclaim in progress is ours to finish; our own entries
            // are judged like anyone's (a stale one of ours is stale).
            if token == 0 || token == RECLAIMING | me {
                continue;
            }
            let beat = r.beat_ns.load(Relaxed);
            let stale = stale_at_ns.is_some_and(|now| now.abs_diff(beat) > STALE_BEAT_NS);
            if !stale && !is_dead(owner) {
                continue;
            }
            if r.token
                .compare_exchange(token, RECLAIMING | me, SeqCst, SeqCst)
                .is_ok()
            {
                r.lease.store(0, Release);
                r.token.store(0, Release);
                cleared += 1;
            }
        }
        cleared
    }

    /// How many lease-table entries are taken.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.readers
            .iter()
            .filter(|r| r.token.load(Relaxed) != 0)
            .count()
    }

    /// The tokens of the subscribers holding leases now.
    pub(crate) fn lease_holders(&self) -> Vec<u64> {
        self.readers
            .iter()
            .filter(|r| r.lease.load(Relaxed) != 0)
            .map(|r| r.token.load(Relaxed) & !RECLAIMING)
            .filter(|&t| t != 0)
            .collect()
    }

    /// The futex word: bumped by every publish.
    pub(crate) fn generation(&self) -> &crate::sync::AtomicU32 {
        &self.header.generation
    }

    /// The generation the next publish (or release) moves to.
    pub(crate) fn next_generation(&self) -> u32 {
        self.header.generation.load(Relaxed).wrapping_add(1)
    }

    // ---- anyone: what the header says --------------------------------------

    /// The writer's process token (0: no writer).
    pub(crate) fn writer(&self) -> u64 {
        self.header.writer.load(Relaxed)
    }

    /// The channel's instance (see [`ChannelHeader::instance`]).
    pub(crate) fn instance(&self) -> u64 {
        self.header.instance.load(Relaxed)
    }

    /// When the writer last published (or started), ns since the epoch.
    pub(crate) fn last_publish_ns(&self) -> u64 {
        self.header.last_publish_ns.load(Relaxed)
    }

    /// Frames dropped because subscribers leased every free slot, and the
    /// token of a lease holder behind the last one (0: none).
    pub(crate) fn dropped(&self) -> (u64, u64) {
        (
            self.header.dropped_frames.load(Relaxed),
            self.header.blocked_by.load(Relaxed),
        )
    }

    /// What the writer recorded with [`set_max_lease_ms`](Words::set_max_lease_ms).
    pub(crate) fn max_lease_ms(&self) -> u64 {
        self.header.max_lease_ms.load(Relaxed)
    }
}

/// The highest frame number a publisher may ask for
/// ([`Loan::commit_numbered`](crate::Loan::commit_numbered)): far below the
/// 2^56 the `latest` word holds, so that counting on from it never
/// overflows (at a million frames a second, 2^56 - 2^48 takes 2,000 years).
pub(crate) const MAX_NUMBER: u64 = 1 << 48;

/// The `latest` word: frame number << 8 | slot index + 1.
fn pack(number: u64, slot: usize) -> u64 {
    (number << 8) | (slot as u64 + 1)
}

fn latest_number(latest: u64) -> u64 {
    latest >> 8
}

fn latest_slot_plus_one(latest: u64) -> usize {
    (latest & 0xFF) as usize
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const ME: u64 = 5 << 32;
    const DEAD: u64 = 9 << 32;

    /// A channel's words on the heap: header, `slots` slots, 4 readers.
    struct Fixture {
        header: Box<ChannelHeader>,
        slots: Vec<SlotHeader>,
        readers: Vec<ReaderEntry>,
    }

    impl Fixture {
        fn new(slots: usize) -> Fixture {
            Fixture {
                // SAFETY: atomics only, for which all-zero is valid.
                header: Box::new(unsafe { std::mem::zeroed() }),
                // SAFETY: as for the header.
                slots: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
                // SAFETY: as for the header.
                readers: (0..4).map(|_| unsafe { std::mem::zeroed() }).collect(),
            }
        }

        fn words(&self) -> Words<'_> {
            Words {
                header: &self.header,
                slots: &self.slots,
                readers: &self.readers,
            }
        }
    }

    #[test]
    fn a_reclaimer_that_died_mid_reclaim_does_not_wedge_the_entry() {
        let f = Fixture::new(3);
        let w = f.words();
        // A dead subscriber's entry, half reclaimed by a process that died.
        f.readers[0].token.store(RECLAIMING | DEAD, Relaxed);
        f.readers[0].lease.store(1, Relaxed);
        assert_eq!(w.reclaim_dead_readers(ME, |t| t == DEAD, Some(0)), 1);
        assert_eq!(f.readers[0].token.load(Relaxed), 0);
        assert_eq!(f.readers[0].lease.load(Relaxed), 0);
        assert_eq!(w.register(ME, 0, |_| false), Some(0));
    }

    #[test]
    fn a_live_reclaimers_marker_is_left_alone() {
        let f = Fixture::new(3);
        let w = f.words();
        f.readers[0].token.store(RECLAIMING | ME, Relaxed);
        assert_eq!(w.reclaim_dead_readers(7 << 32, |t| t == DEAD, Some(0)), 0);
        assert_eq!(f.readers[0].token.load(Relaxed), RECLAIMING | ME);
    }

    #[test]
    fn the_writer_prefers_the_previous_slot_and_never_the_latest() {
        let f = Fixture::new(4);
        let w = f.words();
        let honour = |_, holder: Option<u64>| holder.is_some();
        let s = w.begin_write(None, honour).unwrap();
        w.commit(s, &SlotMeta::default(), 0);
        let t = w.begin_write(Some(s), honour).unwrap();
        assert_ne!(t, s, "the latest slot is never rewritten");
        w.commit(t, &SlotMeta::default(), 0);
        assert_eq!(
            w.begin_write(Some(s), honour).unwrap(),
            s,
            "the previous slot comes first"
        );
    }

    #[test]
    fn scribbled_words_never_panic_or_index_out_of_bounds() {
        let f = Fixture::new(3);
        let w = f.words();
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, 255, 0] {
            for slot in &f.slots {
                slot.seq.store(v, Relaxed);
                slot.number.store(v, Relaxed);
                slot.len.store(v, Relaxed);
            }
            for r in &f.readers {
                r.token.store(v, Relaxed);
                r.lease.store(v, Relaxed);
                r.beat_ns.store(v, Relaxed);
            }
            f.header.latest.store(v, Relaxed);
            f.header.generation.store(v as u32, Relaxed);
            w.repair(v);
            let _ = w.read_latest(3, |_, _| Ok::<(), ()>(()));
            let _ = w.lease_latest(0, 3);
            if let Ok(s) = w.begin_write(None, |_, _| false) {
                w.commit(s, &SlotMeta::default(), v);
            }
            let _ = w.begin_write(None, |_, h| h.is_some()).map(|s| w.abort(s));
            w.reclaim_dead_readers(ME, |_| true, Some(v));
            let _ = w.register(ME, v, |_| false);
        }
    }

    #[test]
    fn a_revoked_lease_is_seen_by_its_holder() {
        let f = Fixture::new(2);
        let w = f.words();
        let s = w.begin_write(None, |_, h| h.is_some()).unwrap();
        w.commit(s, &SlotMeta::default(), 0);
        let entry = w.register(ME, 0, |_| false).unwrap();
        let (leased, _, seq) = w.lease_latest(entry, 10).unwrap().unwrap();
        assert!(w.lease_intact(leased, seq));
        let t = w.begin_write(None, |_, h| h.is_some()).unwrap();
        w.commit(t, &SlotMeta::default(), 0);
        // Only the leased slot is free now; honoured, the frame is dropped.
        assert_eq!(w.begin_write(None, |_, h| h.is_some()), Err(AllLeased));
        assert!(w.lease_intact(leased, seq));
        // Revoked: the writer takes it, and the holder can tell.
        let mut seen = None;
        let u = w
            .begin_write(None, |slot, h| {
                seen = h.map(|t| (slot, t));
                false
            })
            .unwrap();
        assert_eq!((u, seen), (leased, Some((leased, ME))));
        assert!(!w.lease_intact(leased, seq));
    }
}
