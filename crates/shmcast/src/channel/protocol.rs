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
//! candidate odd, then checks the reader table for a lease on it. A leased
//! slot is given back (seq moves on to the next even value,
//! data untouched) and the next one tried; if every slot is leased the
//! writer gets an error at once instead of waiting. [`commit`](Words::commit)
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
//! non-zero frame number.
//!
//! # Copying (seqlock)
//! A reader that copies (small frames; `Subscriber::read_latest` copies
//! large ones under a lease) writes nothing to shared memory: it reads `seq`
//! (acquire), the metadata and payload (racy-tolerant loads), an acquire
//! fence, and `seq` again; a change means the copy overlapped a write and is
//! retried. The writer's `SeqCst` fence after marking the slot odd orders
//! that mark before every payload store.
//!
//! # Take-over and dead readers
//! The writer claims the channel by compare-and-swap of its process token
//! into `writer`; a token of a dead process may be swapped out. The new
//! writer then [`repair`](Words::repair)s: odd slots (a write cut short)
//! become empty and even, and `latest` is set from the newest complete
//! slot, so frame numbers go on where the dead writer stopped. Reader entries of dead processes are cleared by whoever finds
//! them ([`reclaim_dead_readers`](Words::reclaim_dead_readers)); the entry is
//! first swapped to a marker naming the reclaimer, so two reclaimers cannot
//! clobber a new owner and a reclaimer that dies mid-way wedges nothing.

use super::layout::{ChannelHeader, ReaderEntry, SlotHeader, SlotMeta, RECLAIMING};
use crate::sync::{fence, Ordering::*};

/// A view of one channel's shared words.
pub(crate) struct Words<'a> {
    pub header: &'a ChannelHeader,
    pub slots: &'a [SlotHeader],
    pub readers: &'a [ReaderEntry],
}

/// Every slot but the latest is leased: the writer must drop this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AllLeased;

/// Why a read did not produce a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadFail<E> {
    /// The writer kept overwriting the frame being read (or the slot kept
    /// showing no frame) for as many tries as the caller allowed.
    Overrun,
    /// `latest` names a slot that does not exist.
    Corrupt,
    /// The caller's copy refused a stable frame.
    Copy(E),
}

impl Words<'_> {
    // ---- writer ------------------------------------------------------------

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

    /// Gives up the writer role, if `me` still has it.
    pub(crate) fn release_writer(&self, me: u64) {
        let _ = self.header.writer.compare_exchange(me, 0, SeqCst, SeqCst);
    }

    /// Finishes what a dead writer left: cut-short slots become empty, and
    /// `latest` names the newest complete frame (the dead writer may have
    /// completed a slot without getting to publish it). Call right after a
    /// take-over, before writing.
    pub(crate) fn repair(&self) {
        let latest = self.header.latest.load(Acquire);
        let mut newest = latest_number(latest);
        let mut found = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let seq = slot.seq.load(Acquire);
            if seq & 1 == 1 {
                slot.number.store(0, Relaxed);
                slot.seq.store(seq + 1, Release);
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
    }

    /// Picks a slot for the next frame and marks it odd (being written).
    ///
    /// `prefer` is tried first: the slot that was latest just before the
    /// current one is the warmest in the caches and the likeliest to have
    /// been released by readers, so reusing it keeps the writer's working
    /// set to two or three slots instead of cycling through all of them.
    pub(crate) fn begin_write(&self, prefer: Option<usize>) -> Result<usize, AllLeased> {
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
            slot.seq.store(seq | 1, Relaxed);
            // Dekker with `lease_latest`; also orders the odd mark before
            // every payload store for seqlock readers.
            fence(SeqCst);
            if !self.is_leased(s) {
                // The lease releases we saw must happen before our writes.
                fence(Acquire);
                return Ok(s);
            }
            // Leased: give the slot back, whole, and try the next one.
            slot.seq.store((seq | 1) + 1, Release);
        }
        Err(AllLeased)
    }

    fn is_leased(&self, s: usize) -> bool {
        let used = (self.header.readers_hint.load(Relaxed) as usize).min(self.readers.len());
        let wanted = s as u64 + 1;
        self.readers[..used]
            .iter()
            .any(|r| r.lease.load(Relaxed) == wanted)
    }

    /// Publishes the frame written into slot `s`; returns its number.
    pub(crate) fn commit(&self, s: usize, meta: &SlotMeta) -> u64 {
        let number = latest_number(self.header.latest.load(Relaxed)) + 1;
        let slot = &self.slots[s];
        slot.store_meta(&SlotMeta { number, ..*meta });
        let seq = slot.seq.load(Relaxed);
        slot.seq.store(seq + 1, Release);
        self.header.latest.store(pack(number, s), Release);
        self.header.generation.fetch_add(1, Release);
        // Dekker with `announce_waiting`: either the waiter sees the new
        // generation, or we see its announcement (`has_waiters`).
        fence(SeqCst);
        number
    }

    /// The slot holding the newest frame, if any (writer side).
    pub(crate) fn latest_slot_index(&self) -> Option<usize> {
        latest_slot_plus_one(self.header.latest.load(Relaxed)).checked_sub(1)
    }

    /// Abandons slot `s`: no frame is published, the slot is empty.
    pub(crate) fn abort(&self, s: usize) {
        let slot = &self.slots[s];
        slot.number.store(0, Relaxed);
        let seq = slot.seq.load(Relaxed);
        slot.seq.store(seq + 1, Release);
    }

    /// Whether any subscriber is blocked waiting (call after `commit`).
    pub(crate) fn has_waiters(&self) -> bool {
        self.header.waiters.load(Relaxed) > 0
    }

    /// Reader-table indices of the subscribers blocked waiting.
    pub(crate) fn waiting_entries(&self) -> impl Iterator<Item = usize> + '_ {
        let used = (self.header.readers_hint.load(Relaxed) as usize).min(self.readers.len());
        self.readers[..used]
            .iter()
            .enumerate()
            .filter(|(_, r)| r.waiting.load(Relaxed) == 1)
            .map(|(i, _)| i)
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
        for _ in 0..tries {
            let Some((number, s)) = self.latest_slot()? else {
                return Ok(None);
            };
            let slot = &self.slots[s];
            let before = slot.seq.load(Acquire);
            let meta = slot.load_meta();
            if before & 1 == 1 || meta.number != number {
                // Overwritten since `latest` named it: look again.
                spin();
                continue;
            }
            let copied = copy(s, &meta);
            fence(Acquire);
            if slot.seq.load(Relaxed) != before {
                continue;
            }
            return match copied {
                Ok(()) => Ok(Some(meta)),
                Err(e) => Err(ReadFail::Copy(e)),
            };
        }
        Err(ReadFail::Overrun)
    }

    /// Leases the latest frame for reader entry `entry`: until
    /// [`release_lease`](Self::release_lease) the writer leaves that slot
    /// alone. Returns the slot and its (now stable) metadata.
    pub(crate) fn lease_latest(
        &self,
        entry: usize,
        tries: usize,
    ) -> Result<Option<(usize, SlotMeta)>, ReadFail<()>> {
        let me = &self.readers[entry];
        for _ in 0..tries {
            let Some((number, s)) = self.latest_slot()? else {
                return Ok(None);
            };
            let slot = &self.slots[s];
            let before = slot.seq.load(Acquire);
            if before & 1 == 0 {
                me.lease.store(s as u64 + 1, Relaxed);
                // Dekker with `begin_write`.
                fence(SeqCst);
                if slot.seq.load(Relaxed) == before {
                    let meta = slot.load_meta();
                    if meta.number == number {
                        return Ok(Some((s, meta)));
                    }
                }
                me.lease.store(0, Release);
            }
            spin();
        }
        Err(ReadFail::Overrun)
    }

    /// The newest frame's number and slot, from one load of `latest`.
    fn latest_slot<E>(&self) -> Result<Option<(u64, usize)>, ReadFail<E>> {
        let latest = self.header.latest.load(Acquire);
        match latest_slot_plus_one(latest) {
            0 => Ok(None),
            s if s <= self.slots.len() => Ok(Some((latest_number(latest), s - 1))),
            _ => Err(ReadFail::Corrupt),
        }
    }

    /// Ends entry `entry`'s lease; the writer may reuse the slot.
    pub(crate) fn release_lease(&self, entry: usize) {
        self.readers[entry].lease.store(0, Release);
    }

    /// Takes a free reader entry for `me`, clearing entries of dead
    /// processes if none is free. `None`: the table is full of live ones.
    pub(crate) fn register(&self, me: u64, is_dead: impl Fn(u64) -> bool) -> Option<usize> {
        for pass in 0..2 {
            for (i, r) in self.readers.iter().enumerate() {
                if r.token.compare_exchange(0, me, SeqCst, SeqCst).is_ok() {
                    self.header.readers_hint.fetch_max(i as u32 + 1, SeqCst);
                    return Some(i);
                }
            }
            if pass == 0 {
                self.reclaim_dead_readers(me, &is_dead);
            }
        }
        None
    }

    /// Frees entry `entry` (its lease and waiting flag included).
    pub(crate) fn unregister(&self, entry: usize) {
        let r = &self.readers[entry];
        r.lease.store(0, Release);
        r.waiting.store(0, Relaxed);
        r.token.store(0, Release);
    }

    /// Clears the entries (and leases) of dead processes; returns how many.
    ///
    /// An entry is first swapped to a marker naming the reclaimer, so two
    /// reclaimers never both clear it (a late clear could wipe a new
    /// owner's lease), and one that dies mid-reclaim leaves a marker whose
    /// owner is dead: it is reclaimed again, never wedged.
    pub(crate) fn reclaim_dead_readers(&self, me: u64, is_dead: impl Fn(u64) -> bool) -> usize {
        let mut cleared = 0;
        for r in self.readers {
            let token = r.token.load(Acquire);
            let owner = token & !RECLAIMING;
            if token == 0 || owner == me || !is_dead(owner) {
                continue;
            }
            if r.token
                .compare_exchange(token, RECLAIMING | me, SeqCst, SeqCst)
                .is_ok()
            {
                r.lease.store(0, Release);
                if r.waiting.swap(0, Relaxed) == 1 {
                    self.header.waiters.fetch_sub(1, Relaxed);
                }
                r.token.store(0, Release);
                cleared += 1;
            }
        }
        cleared
    }

    /// How many reader entries are taken.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.readers
            .iter()
            .filter(|r| r.token.load(Relaxed) != 0)
            .count()
    }

    /// Entry `entry` is about to block until a frame newer than what it saw.
    /// Re-check the frame counter after this, before sleeping.
    pub(crate) fn announce_waiting(&self, entry: usize) {
        // Count first: a crash between the two leaves an over-count (only
        // spurious wakes), never a flag without its count, which a reclaim
        // would then subtract below zero.
        self.header.waiters.fetch_add(1, Relaxed);
        self.readers[entry].waiting.store(1, Relaxed);
        // Dekker with `commit`.
        fence(SeqCst);
    }

    /// Entry `entry` stopped waiting.
    pub(crate) fn withdraw_waiting(&self, entry: usize) {
        if self.readers[entry].waiting.swap(0, Relaxed) == 1 {
            self.header.waiters.fetch_sub(1, Relaxed);
        }
    }

    /// The futex word: bumped by every publish.
    pub(crate) fn generation(&self) -> &crate::sync::AtomicU32 {
        &self.header.generation
    }
}

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

fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const ME: u64 = 5 << 32;
    const DEAD: u64 = 9 << 32;

    /// A channel's words on the heap: header, `slots` slots, 4 readers.
    fn words(slots: usize) -> (Box<ChannelHeader>, Vec<SlotHeader>, Vec<ReaderEntry>) {
        // SAFETY: all three are atomics only, for which all-zero is valid.
        unsafe {
            (
                Box::new(std::mem::zeroed()),
                (0..slots).map(|_| std::mem::zeroed()).collect(),
                (0..4).map(|_| std::mem::zeroed()).collect(),
            )
        }
    }

    #[test]
    fn a_reclaimer_that_died_mid_reclaim_does_not_wedge_the_entry() {
        let (header, slots, readers) = words(3);
        let w = Words {
            header: &header,
            slots: &slots,
            readers: &readers,
        };
        header.readers_hint.store(1, Relaxed);
        // A dead subscriber's entry, half reclaimed by a process that died.
        readers[0].token.store(RECLAIMING | DEAD, Relaxed);
        readers[0].lease.store(1, Relaxed);
        assert_eq!(w.reclaim_dead_readers(ME, |t| t == DEAD), 1);
        assert_eq!(readers[0].token.load(Relaxed), 0);
        assert_eq!(readers[0].lease.load(Relaxed), 0);
        assert_eq!(w.register(ME, |_| false), Some(0));
    }

    #[test]
    fn a_live_reclaimers_marker_is_left_alone() {
        let (header, slots, readers) = words(3);
        let w = Words {
            header: &header,
            slots: &slots,
            readers: &readers,
        };
        readers[0].token.store(RECLAIMING | ME, Relaxed);
        assert_eq!(w.reclaim_dead_readers(7 << 32, |t| t == DEAD), 0);
        assert_eq!(readers[0].token.load(Relaxed), RECLAIMING | ME);
    }

    #[test]
    fn the_writer_prefers_the_previous_slot_and_never_the_latest() {
        let (header, slots, readers) = words(4);
        let w = Words {
            header: &header,
            slots: &slots,
            readers: &readers,
        };
        let s = w.begin_write(None).unwrap();
        w.commit(s, &SlotMeta::default());
        let t = w.begin_write(Some(s)).unwrap();
        assert_ne!(t, s, "the latest slot is never rewritten");
        w.commit(t, &SlotMeta::default());
        assert_eq!(
            w.begin_write(Some(s)).unwrap(),
            s,
            "the previous slot comes first"
        );
    }
}
