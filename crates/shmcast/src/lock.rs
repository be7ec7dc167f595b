//! A reader-writer lock that lives in shared memory and survives its holders.
//!
//! The lock is three kinds of word in the segment header:
//!
//! - `writer`: the [token] of the process holding the write lock, or 0;
//! - `readers`: a fixed table of [`READER_SLOTS`] words, one per held read
//!   lock, each the token of its holder, or 0;
//! - `seq`: a sequence counter, odd while a write is under way, so that
//!   processes that cannot write to the segment at all (read-only opens)
//!   can still take consistent copies, seqlock-style.
//!
//! Because every holder is recorded by identity (PID and start time), a
//! contender that finds the lock held checks whether the holder still runs
//! and, when it does not, clears its word and goes on: a lock held by a
//! killed process is recovered by the next locker, never stuck.
//!
//! **Writer and readers exclude each other Dekker-style.** A writer first
//! claims `writer` (compare-and-swap), then waits until every reader slot is
//! empty; a reader first claims a slot, then checks `writer` and backs out if
//! it is set. Both sides use sequentially consistent operations, so in the
//! single total order of those operations at least one side sees the other.
//! Claiming `writer` first also keeps a stream of readers from starving a
//! writer.
//!
//! **Torn writes.** When a writer dies holding the lock, `seq` stays odd and
//! whatever it was writing may be half done. The next holder learns that
//! (`torn`); the flag clears when a write lock is next released normally. A
//! new writer moves an odd `seq` on by two, so it changes even then, and a
//! seqlock reader can never mistake a rewrite for a stable state.
//!
//! **Waiting** spins briefly, then yields, then sleeps in growing steps up to
//! about 2 ms, and gives up at the caller's deadline: no unbounded spinning.
//!
//! `seq` is the crate's one seqlock ([`crate::seqlock`]), and every word is
//! a [`crate::sync`] atomic, so `loom_tests` below model-checks this very
//! code: a writer and two readers, and holders that died holding it.
//!
//! [token]: crate::identity::ProcessId

use std::time::{Duration, Instant};

use crate::identity::{token_is_dead, token_pid};
use crate::seqlock;
use crate::sync::{fence, AtomicU64, Ordering::*};

/// How many read locks can be held at once, across all processes.
pub const READER_SLOTS: usize = 64;
/// The reader table's length: two in the loom models, whose cost grows
/// with every word a thread may touch.
#[cfg(not(loom))]
const SLOTS: usize = READER_SLOTS;
#[cfg(loom)]
const SLOTS: usize = 2;

/// The lock's words, `#[repr(C)]` in the segment header.
#[repr(C)]
pub(crate) struct LockWords {
    seq: AtomicU64,
    writer: AtomicU64,
    readers: [AtomicU64; SLOTS],
}

/// Who kept us from taking the lock by the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// The write lock, held by this process (PID).
    Writer(u32),
    /// A read lock, held by this process (PID).
    Reader(u32),
    /// Every reader slot is held by a live process.
    ReadersFull,
}

/// A held write lock, as the lock words see it.
#[derive(Debug)]
pub(crate) struct WriteHeld {
    /// PID of a dead process whose write lock we took over.
    pub recovered_from: Option<u32>,
    /// The previous writer died mid-write.
    pub torn: bool,
}

/// A held read lock.
#[derive(Debug)]
pub(crate) struct ReadHeld {
    pub slot: usize,
    /// The last writer died mid-write and nobody has written since.
    pub torn: bool,
}

/// A snapshot of who holds the lock, for `info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Holders {
    pub writer: Option<u64>,
    pub readers: Vec<u64>,
    pub torn: bool,
}

impl LockWords {
    /// Takes the write lock for `me` (a process token), waiting until
    /// `deadline` at the latest (`deadline <= now`: one try).
    pub(crate) fn lock_write(&self, me: u64, deadline: Instant) -> Result<WriteHeld, Blocker> {
        self.lock_write_with(me, &mut Backoff::new(deadline))
    }

    fn lock_write_with(&self, me: u64, wait: &mut Backoff) -> Result<WriteHeld, Blocker> {
        let mut recovered_from = None;
        loop {
            match self.writer.compare_exchange(0, me, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(holder) => {
                    if wait.holder_is_dead(holder) {
                        if self
                            .writer
                            .compare_exchange(holder, me, SeqCst, SeqCst)
                            .is_ok()
                        {
                            recovered_from = Some(token_pid(holder));
                            break;
                        }
                        continue;
                    }
                    if !wait.pause() {
                        return Err(Blocker::Writer(token_pid(holder)));
                    }
                }
            }
        }
        // We own `writer`, so no other process changes `seq` until we let go.
        // An odd `seq` is a write its writer never finished.
        let torn = seqlock::is_writing(self.seq.load(Relaxed));
        let begun = seqlock::write_begin(&self.seq);
        // Dekker with `lock_read`: our claim of `writer`, then a look at
        // the readers. SeqCst operations alone are enough in C++'s model,
        // but the fence makes it plain (and is what loom can check).
        fence(SeqCst);
        for slot in &self.readers {
            loop {
                let holder = slot.load(SeqCst);
                if holder == 0 {
                    break;
                }
                if wait.holder_is_dead(holder) {
                    let _ = slot.compare_exchange(holder, 0, SeqCst, SeqCst);
                    continue;
                }
                if !wait.pause() {
                    // Give up cleanly: nothing was written, so moving `seq`
                    // on to even is truthful (a torn state stays torn).
                    if !torn {
                        seqlock::write_end(&self.seq, begun);
                    }
                    self.writer.store(0, SeqCst);
                    return Err(Blocker::Reader(token_pid(holder)));
                }
            }
        }
        Ok(WriteHeld {
            recovered_from,
            torn,
        })
    }

    /// Releases a write lock taken by [`lock_write`](Self::lock_write): the
    /// write is complete, `seq` goes even.
    ///
    /// Only if `me` still holds it: a holder wrongly judged dead and taken
    /// over must not release its successor's lock (nor complete its write).
    pub(crate) fn unlock_write(&self, me: u64) {
        if self.writer.load(SeqCst) == me {
            seqlock::write_end(&self.seq, self.seq.load(Relaxed));
            let _ = self.writer.compare_exchange(me, 0, SeqCst, SeqCst);
        }
    }

    /// Takes a read lock for `me`, waiting until `deadline` at the latest.
    pub(crate) fn lock_read(&self, me: u64, deadline: Instant) -> Result<ReadHeld, Blocker> {
        self.lock_read_with(me, &mut Backoff::new(deadline))
    }

    fn lock_read_with(&self, me: u64, wait: &mut Backoff) -> Result<ReadHeld, Blocker> {
        loop {
            let writer = self.writer.load(SeqCst);
            if writer != 0 {
                if wait.holder_is_dead(writer) {
                    // The writer died holding the lock; `seq` stays odd, so
                    // everyone learns the data may be torn.
                    let _ = self.writer.compare_exchange(writer, 0, SeqCst, SeqCst);
                    continue;
                }
                if !wait.pause() {
                    return Err(Blocker::Writer(token_pid(writer)));
                }
                continue;
            }
            let Some(slot) = self.claim_slot(me, wait) else {
                if !wait.pause() {
                    return Err(Blocker::ReadersFull);
                }
                continue;
            };
            // Dekker: our slot is published; now look at `writer`.
            fence(SeqCst);
            if self.writer.load(SeqCst) != 0 {
                self.readers[slot].store(0, SeqCst);
                continue;
            }
            let torn = seqlock::is_writing(self.seq.load(SeqCst));
            return Ok(ReadHeld { slot, torn });
        }
    }

    fn claim_slot(&self, me: u64, wait: &mut Backoff) -> Option<usize> {
        for (i, slot) in self.readers.iter().enumerate() {
            if slot.compare_exchange(0, me, SeqCst, SeqCst).is_ok() {
                return Some(i);
            }
        }
        // Full: reclaim slots of dead readers, then let the caller retry.
        for slot in &self.readers {
            let holder = slot.load(SeqCst);
            if holder != 0 && wait.holder_is_dead(holder) {
                let _ = slot.compare_exchange(holder, 0, SeqCst, SeqCst);
            }
        }
        None
    }

    /// Releases the read lock in `slot`.
    pub(crate) fn unlock_read(&self, slot: usize, me: u64) {
        let _ = self.readers[slot].compare_exchange(me, 0, Release, Relaxed);
    }

    /// Seqlock read for processes that may not write the lock words: runs
    /// `copy` until it ran while no write was under way. Returns whether the
    /// data is torn (its last writer died mid-write).
    ///
    /// `copy` must read the protected memory with racy-tolerant loads (see
    /// [`crate::copy`]): it may overlap a writer, and its result is thrown
    /// away when it did.
    pub(crate) fn read_consistent(
        &self,
        deadline: Instant,
        copy: impl FnMut(),
    ) -> Result<bool, Blocker> {
        self.read_consistent_with(&mut Backoff::new(deadline), copy)
    }

    fn read_consistent_with(
        &self,
        wait: &mut Backoff,
        mut copy: impl FnMut(),
    ) -> Result<bool, Blocker> {
        loop {
            let before = seqlock::read_begin(&self.seq);
            // Odd: a write under way, or one whose writer died.
            let torn = seqlock::is_writing(before);
            if torn {
                let writer = self.writer.load(SeqCst);
                if writer != 0 && !wait.holder_is_dead(writer) {
                    if !wait.pause() {
                        return Err(Blocker::Writer(token_pid(writer)));
                    }
                    continue;
                }
            }
            copy();
            if seqlock::read_valid(&self.seq, before) {
                return Ok(torn);
            }
            if !wait.pause() {
                let writer = self.writer.load(SeqCst);
                return Err(Blocker::Writer(token_pid(writer)));
            }
        }
    }

    /// Who holds the lock right now.
    pub(crate) fn holders(&self) -> Holders {
        let writer = self.writer.load(SeqCst);
        Holders {
            writer: (writer != 0).then_some(writer),
            readers: self
                .readers
                .iter()
                .map(|r| r.load(SeqCst))
                .filter(|&r| r != 0)
                .collect(),
            torn: seqlock::is_writing(self.seq.load(SeqCst)),
        }
    }
}

/// Bounded waiting: spin, then yield, then sleep, until a deadline; and the
/// liveness checks of whoever is in the way, rationed because each one asks
/// the OS.
struct Backoff {
    limit: Limit,
    round: u32,
    known_alive: u64,
    known_dead: u64,
    is_dead: fn(u64) -> bool,
}

enum Limit {
    /// Real waiting, until this instant.
    Deadline(Instant),
    /// A model's waiting: this many pauses, each a yield (loom cannot
    /// explore a clock).
    #[cfg_attr(not(loom), allow(dead_code))]
    Rounds(u32),
}

impl Backoff {
    fn new(deadline: Instant) -> Backoff {
        Backoff {
            limit: Limit::Deadline(deadline),
            round: 0,
            known_alive: 0,
            known_dead: 0,
            is_dead: token_is_dead,
        }
    }

    /// Waits a little; `false` once the deadline has passed.
    fn pause(&mut self) -> bool {
        let deadline = match self.limit {
            Limit::Deadline(deadline) => deadline,
            Limit::Rounds(rounds) => {
                if self.round >= rounds {
                    return false;
                }
                self.round += 1;
                #[cfg(loom)]
                loom::thread::yield_now();
                return true;
            }
        };
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        match self.round {
            0..=5 => (0..1u32 << self.round).for_each(|_| std::hint::spin_loop()),
            6..=9 => std::thread::yield_now(),
            _ => {
                let step = Duration::from_micros(50 << (self.round - 10).min(5));
                std::thread::sleep(step.min(deadline - now));
            }
        }
        self.round = self.round.saturating_add(1);
        true
    }

    /// Whether `holder` is a dead process. Asks the OS the first time a
    /// holder is met, then every 16 rounds while it lives; a dead one stays
    /// dead (its identity cannot come back).
    fn holder_is_dead(&mut self, holder: u64) -> bool {
        if holder == self.known_dead {
            return true;
        }
        if holder == self.known_alive && self.round % 16 != 15 {
            return false;
        }
        let dead = (self.is_dead)(holder);
        if dead {
            self.known_dead = holder;
        } else {
            self.known_alive = holder;
        }
        dead
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::identity::ProcessId;

    fn words() -> Box<LockWords> {
        // SAFETY: LockWords is atomics only, for which all-zero is valid.
        Box::new(unsafe { std::mem::zeroed() })
    }

    fn now() -> Instant {
        Instant::now()
    }

    const DEAD: u64 = (0x7FFF_FFF1u64 << 32) | 7;

    #[test]
    fn writer_excludes_readers_and_writers() {
        let l = words();
        let me = ProcessId::current().token();
        let w = l.lock_write(me, now()).unwrap();
        assert!(w.recovered_from.is_none() && !w.torn);
        assert_eq!(
            l.lock_read(me, now()).unwrap_err(),
            Blocker::Writer(token_pid(me))
        );
        assert!(l.lock_write(me, now()).is_err());
        l.unlock_write(me);
        let r = l.lock_read(me, now()).unwrap();
        assert_eq!(
            l.lock_write(me, now()).unwrap_err(),
            Blocker::Reader(token_pid(me))
        );
        // The failed writer left things as they were.
        assert_eq!(l.holders().writer, None);
        assert!(!l.holders().torn);
        let r2 = l.lock_read(me, now()).unwrap();
        assert_ne!(r.slot, r2.slot);
        l.unlock_read(r.slot, me);
        l.unlock_read(r2.slot, me);
        assert!(l.lock_write(me, now()).is_ok());
    }

    #[test]
    fn a_holder_that_lost_its_lock_cannot_release_the_successors() {
        let l = words();
        let me = ProcessId::current().token();
        l.lock_write(me, now()).unwrap();
        // Someone judged us dead and took over.
        l.writer.store(DEAD, SeqCst);
        l.unlock_write(me);
        assert_eq!(l.holders().writer, Some(DEAD));
        l.readers[0].store(DEAD, SeqCst);
        l.unlock_read(0, me);
        assert_eq!(l.holders().readers, vec![DEAD]);
    }

    #[test]
    fn dead_writer_is_recovered_and_data_marked_torn() {
        let l = words();
        let me = ProcessId::current().token();
        l.writer.store(DEAD, SeqCst);
        l.seq.store(3, SeqCst);
        let w = l.lock_write(me, now()).unwrap();
        assert_eq!(w.recovered_from, Some(token_pid(DEAD)));
        assert!(w.torn);
        assert_eq!(
            l.seq.load(SeqCst),
            5,
            "a rewrite moves seq even when it was odd"
        );
        l.unlock_write(me);
        assert!(!l.holders().torn);
    }

    #[test]
    fn reader_recovers_dead_writer_and_sees_torn() {
        let l = words();
        l.writer.store(DEAD, SeqCst);
        l.seq.store(1, SeqCst);
        let r = l.lock_read(ProcessId::current().token(), now()).unwrap();
        assert!(r.torn);
        assert_eq!(l.holders().writer, None);
    }

    #[test]
    fn dead_readers_do_not_block_a_writer_or_fill_the_table() {
        let l = words();
        for slot in &l.readers {
            slot.store(DEAD, SeqCst);
        }
        let me = ProcessId::current().token();
        let r = l.lock_read(me, now() + Duration::from_secs(5)).unwrap();
        l.unlock_read(r.slot, me);
        assert!(l.lock_write(me, now()).is_ok());
        assert!(l.holders().readers.is_empty());
    }

    #[test]
    fn full_table_of_live_readers_times_out() {
        let l = words();
        let me = ProcessId::current().token();
        for slot in &l.readers {
            slot.store(me, SeqCst);
        }
        let started = Instant::now();
        let err = l
            .lock_read(me, now() + Duration::from_millis(30))
            .unwrap_err();
        assert_eq!(err, Blocker::ReadersFull);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn seqlock_read_waits_for_a_live_writer_and_reports_torn() {
        let l = words();
        let me = ProcessId::current().token();
        l.lock_write(me, now()).unwrap();
        assert!(l.read_consistent(now(), || {}).is_err());
        l.unlock_write(me);
        assert_eq!(l.read_consistent(now(), || {}), Ok(false));
        l.writer.store(DEAD, SeqCst);
        l.seq.fetch_add(1, SeqCst);
        assert_eq!(l.read_consistent(now(), || {}), Ok(true));
    }

    #[test]
    fn a_scribbled_sequence_word_never_overflows() {
        let l = words();
        let me = ProcessId::current().token();
        for seq in [u64::MAX, u64::MAX - 1] {
            l.seq.store(seq, SeqCst);
            l.writer.store(0, SeqCst);
            let _ = l.lock_write(me, now());
            l.unlock_write(me);
            let _ = l.read_consistent(now(), || {});
        }
    }

    #[test]
    fn seqlock_read_retries_when_a_write_overlaps() {
        let l = words();
        let me = ProcessId::current().token();
        let mut runs = 0;
        let torn = l
            .read_consistent(now() + Duration::from_secs(5), || {
                runs += 1;
                if runs == 1 {
                    // A whole write happens during the first copy.
                    l.lock_write(me, now()).unwrap();
                    l.unlock_write(me);
                }
            })
            .unwrap();
        assert!(!torn);
        assert_eq!(runs, 2);
    }
}

/// Model checks of the lock with `loom`: every interleaving of the threads
/// below (within a preemption bound), on in-process words. The data the
/// lock guards is two words that a writer changes together; a reader that
/// holds a read lock and sees them differ has seen a write it was supposed
/// to be excluded from.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const W: u64 = 1 << 32;
    const R1: u64 = 2 << 32;
    const R2: u64 = 3 << 32;
    const DEAD: u64 = 9 << 32;
    const DEAD_READER: u64 = 10 << 32;

    struct Guarded {
        lock: LockWords,
        a: AtomicU64,
        b: AtomicU64,
    }

    fn guarded(writer: u64, seq: u64, reader: u64) -> Arc<Guarded> {
        Arc::new(Guarded {
            lock: LockWords {
                seq: AtomicU64::new(seq),
                writer: AtomicU64::new(writer),
                readers: std::array::from_fn(|i| AtomicU64::new(if i == 0 { reader } else { 0 })),
            },
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
        })
    }

    fn rounds(n: u32) -> Backoff {
        Backoff {
            limit: Limit::Rounds(n),
            round: 0,
            known_alive: 0,
            known_dead: 0,
            is_dead: |t| t == DEAD || t == DEAD_READER,
        }
    }

    fn write(g: &Guarded, me: u64, v: u64) -> Option<WriteHeld> {
        let held = g.lock.lock_write_with(me, &mut rounds(2)).ok()?;
        g.a.store(v, Relaxed);
        g.b.store(v, Relaxed);
        g.lock.unlock_write(me);
        Some(held)
    }

    fn read(g: &Guarded, me: u64) -> Option<ReadHeld> {
        let held = g.lock.lock_read_with(me, &mut rounds(2)).ok()?;
        assert_eq!(
            g.a.load(Relaxed),
            g.b.load(Relaxed),
            "a reader saw a write under its read lock"
        );
        g.lock.unlock_read(held.slot, me);
        Some(held)
    }

    /// A seqlock copy of the pair (no write access) while another thread
    /// writes 1 into it: what the copy said, and what it read.
    fn copy_beside_a_writer(g: &Arc<Guarded>) -> (Result<bool, Blocker>, (u64, u64)) {
        let writer = {
            let g = Arc::clone(g);
            thread::spawn(move || {
                write(&g, W, 1);
            })
        };
        let mut pair = (0, 0);
        let copied = g.lock.read_consistent_with(&mut rounds(2), || {
            pair = (g.a.load(Relaxed), g.b.load(Relaxed));
        });
        writer.join().unwrap();
        (copied, pair)
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(f);
    }

    #[test]
    fn a_writer_and_two_readers_exclude_each_other() {
        model(|| {
            let g = guarded(0, 0, 0);
            let readers: Vec<_> = [R1, R2]
                .into_iter()
                .map(|me| {
                    let g = Arc::clone(&g);
                    thread::spawn(move || {
                        read(&g, me);
                    })
                })
                .collect();
            write(&g, W, 1);
            for r in readers {
                r.join().unwrap();
            }
            // Nothing is left held.
            let holders = g.lock.holders();
            assert_eq!((holders.writer, holders.readers.len()), (None, 0));
            assert!(!holders.torn);
        });
    }

    #[test]
    fn holders_that_died_holding_it_are_recovered_and_the_write_is_torn() {
        model(|| {
            // A writer died mid-write (seq odd), a reader died holding a
            // read lock.
            let g = guarded(DEAD, 1, DEAD_READER);
            let reader = {
                let g = Arc::clone(&g);
                thread::spawn(move || read(&g, R1).map(|h| h.torn))
            };
            let wrote = write(&g, W, 1);
            let read_torn = reader.join().unwrap();
            if let Some(held) = &wrote {
                assert!(held.torn, "the dead writer's write was not reported torn");
                // A completed write repairs it: the word is even again.
                assert!(!g.lock.holders().torn, "torn after a completed write");
            }
            // A reader that came before any new write sees the torn state.
            if wrote.is_none() {
                assert_ne!(read_torn, Some(false));
            }
            // Never wedged: the next writer gets it, dead holders or not.
            let next = g.lock.lock_write_with(R2, &mut rounds(4));
            assert!(next.is_ok(), "the lock stayed wedged: {next:?}");
        });
    }

    /// After a writer died mid-write (the word odd), a reader without write
    /// access keeps a copy only as torn (before the next write) or as a
    /// whole new write, never a mix called whole.
    #[test]
    fn a_seqlock_reader_after_a_dead_writer_says_torn_until_a_new_write() {
        model(|| {
            let g = guarded(DEAD, 1, 0);
            g.a.store(7, Relaxed); // the dead writer got this far
            match copy_beside_a_writer(&g) {
                (Ok(false), pair) => assert_eq!(pair, (1, 1), "a mixed copy called whole"),
                (Ok(true), pair) => {
                    assert_eq!(pair, (7, 0), "a torn copy that is not the dead write")
                }
                (Err(_), _) => {}
            }
        });
    }

    #[test]
    fn a_seqlock_reader_without_write_access_never_keeps_a_torn_copy() {
        model(|| {
            let g = guarded(0, 0, 0);
            if let (Ok(false), pair) = copy_beside_a_writer(&g) {
                assert_eq!(pair.0, pair.1, "a torn copy was kept");
            }
        });
    }
}
