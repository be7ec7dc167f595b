//! Model checks of the channel protocol with `loom`, on an in-process copy
//! of the shared words. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmcast --release --lib channel::loom_tests`.
//!
//! The payload of each slot is two words. The writer stores the frame
//! number into both; a reader that ever accepts a frame whose two words
//! differ, or differ from its frame number, has seen a torn frame.

use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use loom::sync::Arc;
use loom::thread;

use super::format::SlotMeta;
use super::layout::{ChannelHeader, ReaderEntry, SlotHeader};
use super::protocol::{ReadFail, Words};
use crate::sync::Ordering::{Acquire, Relaxed, SeqCst};

struct Model {
    header: ChannelHeader,
    slots: Vec<SlotHeader>,
    readers: Vec<ReaderEntry>,
    payload: Vec<[AtomicU64; 2]>,
}

fn a64() -> AtomicU64 {
    AtomicU64::new(0)
}

fn a32() -> AtomicU32 {
    AtomicU32::new(0)
}

impl Model {
    fn new(slots: usize, readers: usize) -> Arc<Model> {
        Arc::new(Model {
            header: ChannelHeader {
                slot_count: a32(),
                max_metadata_len: a32(),
                max_frame_len: a64(),
                slot_stride: a64(),
                payload_offset: a64(),
                instance: a64(),
                max_lease_ms: a64(),
                reserved1: std::array::from_fn(|_| a64()),
                writer: a64(),
                latest: a64(),
                last_publish_ns: a64(),
                dropped_frames: a64(),
                blocked_by: a64(),
                generation: a32(),
                reserved2: a32(),
                reserved3: std::array::from_fn(|_| a64()),
            },
            slots: (0..slots)
                .map(|_| SlotHeader {
                    seq: a64(),
                    number: a64(),
                    timestamp_ns: a64(),
                    len: a64(),
                    width: a32(),
                    height: a32(),
                    format: a32(),
                    stride: a32(),
                    metadata_len: a32(),
                    reserved0: a32(),
                    reserved: a64(),
                })
                .collect(),
            readers: (0..readers)
                .map(|_| ReaderEntry {
                    token: a64(),
                    lease: a64(),
                    beat_ns: a64(),
                    reserved: std::array::from_fn(|_| a64()),
                })
                .collect(),
            payload: (0..slots).map(|_| [a64(), a64()]).collect(),
        })
    }

    fn words(&self) -> Words<'_> {
        Words::new(&self.header, &self.slots, &self.readers)
    }

    /// One whole publish, the way `Publisher::publish` does it, honouring
    /// every lease.
    fn publish(&self) -> Option<u64> {
        self.publish_honouring(|_, holder| holder.is_some())
    }

    /// One whole publish with the caller's lease policy (see
    /// `Words::begin_write`): every shared word `Publisher::loan` and
    /// `Loan::commit` touch, in their order, the wakers aside (they are OS
    /// calls on the generation word, which `commit` has moved on).
    fn publish_honouring(&self, honour: impl FnMut(usize, Option<u64>) -> bool) -> Option<u64> {
        let w = self.words();
        let previous = w.latest_slot_index();
        let s = match w.begin_write(previous, honour) {
            Ok(s) => s,
            Err(_) => {
                w.note_dropped(0);
                return None;
            }
        };
        let next = w.latest_number() + 1;
        self.payload[s][0].store(next, Relaxed);
        self.payload[s][1].store(next, Relaxed);
        Some(w.commit(s, &SlotMeta::default(), 0))
    }

    /// A seqlock copy of the latest frame: (number, word 0, word 1).
    fn copy_latest(&self) -> Option<(u64, u64, u64)> {
        let mut seen = (0, 0);
        let got = self.words().read_latest(3, |s, _| {
            seen = (
                self.payload[s][0].load(Relaxed),
                self.payload[s][1].load(Relaxed),
            );
            Ok::<(), ()>(())
        });
        match got {
            Ok(Some(meta)) => Some((meta.number, seen.0, seen.1)),
            Ok(None) | Err(ReadFail::Overrun) => None,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

fn builder(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b
}

#[test]
fn a_copy_never_returns_a_torn_frame() {
    builder(3).check(|| {
        let m = Model::new(2, 1);
        m.words().start(9, 1, 0);
        let writer = {
            let m = m.clone();
            thread::spawn(move || {
                // Three frames in two slots: the third reuses slot 0.
                for _ in 0..3 {
                    m.publish().expect("no leases, so a slot is free");
                }
            })
        };
        let mut last = 0;
        for _ in 0..2 {
            if let Some((number, a, b)) = m.copy_latest() {
                assert_eq!((a, b), (number, number), "torn frame");
                assert!(number >= last, "went back from {last} to {number}");
                last = number;
            }
        }
        writer.join().unwrap();
    });
}

#[test]
fn a_leased_frame_does_not_change_under_the_reader() {
    builder(3).check(|| {
        let m = Model::new(2, 1);
        m.words().start(9, 1, 0);
        let entry = m.words().register(7, 0, |_| false).unwrap();
        m.publish().unwrap();
        let writer = {
            let m = m.clone();
            thread::spawn(move || {
                // Leases may make the writer skip frames, never wait.
                for _ in 0..2 {
                    let _ = m.publish();
                }
            })
        };
        let w = m.words();
        let leased = w.lease_latest(entry, 3);
        // Only a scribble makes a read corrupt, never a writer at work.
        assert!(!matches!(leased, Err(ReadFail::Corrupt(_))), "{leased:?}");
        if let Ok(Some((s, meta, seq))) = leased {
            let first = (m.payload[s][0].load(Relaxed), m.payload[s][1].load(Relaxed));
            thread::yield_now();
            let second = (m.payload[s][0].load(Relaxed), m.payload[s][1].load(Relaxed));
            assert_eq!(first, (meta.number, meta.number), "torn lease");
            assert_eq!(second, first, "the slot changed while leased");
            assert!(w.lease_intact(s, seq), "an honoured lease stays intact");
            w.release_lease(entry, 7);
        }
        writer.join().unwrap();
    });
}

/// Where the first writer dies.
#[derive(Clone, Copy, Debug)]
enum Death {
    AfterClaimingSlot,
    MidPayload,
    BeforeCommit,
    AfterCommit,
}

fn takeover_case(death: Death) {
    // Three threads: two preemptions keep this to seconds, not minutes.
    builder(2).check(move || {
        let m = Model::new(2, 1);
        m.words().start(9, 1, 0);
        m.publish().unwrap(); // frame 1, complete
        let dead = Arc::new(AtomicBool::new(false));
        let first = {
            let (m, dead) = (m.clone(), dead.clone());
            thread::spawn(move || {
                let w = m.words();
                let s = w.begin_write(None, |_, holder| holder.is_some()).unwrap();
                if !matches!(death, Death::AfterClaimingSlot) {
                    m.payload[s][0].store(2, Relaxed);
                    if !matches!(death, Death::MidPayload) {
                        m.payload[s][1].store(2, Relaxed);
                        if matches!(death, Death::AfterCommit) {
                            w.commit(s, &SlotMeta::default(), 0);
                        }
                    }
                }
                // The process dies here: it never runs again.
                dead.store(true, SeqCst);
            })
        };
        let second = {
            let (m, dead) = (m.clone(), dead.clone());
            thread::spawn(move || {
                while !dead.load(SeqCst) {
                    thread::yield_now();
                }
                let w = m.words();
                assert_eq!(w.claim_writer(2, |t| t == 1), Ok(Some(1)));
                w.repair(0);
                let expected = match death {
                    Death::AfterCommit => 3,
                    _ => 2,
                };
                assert_eq!(m.publish(), Some(expected), "frame numbers go on");
            })
        };
        let mut last = 0;
        for _ in 0..2 {
            if let Some((number, a, b)) = m.copy_latest() {
                assert_eq!((a, b), (number, number), "torn frame after {death:?}");
                assert!(number >= last);
                last = number;
            }
        }
        first.join().unwrap();
        second.join().unwrap();
        // The newest frame is whole and the channel points at it.
        let (number, a, b) = m.copy_latest().unwrap();
        assert_eq!((a, b), (number, number));
    });
}

#[test]
fn takeover_after_death_having_claimed_a_slot() {
    takeover_case(Death::AfterClaimingSlot);
}

#[test]
fn takeover_after_death_mid_payload() {
    takeover_case(Death::MidPayload);
}

#[test]
fn takeover_after_death_before_commit() {
    takeover_case(Death::BeforeCommit);
}

#[test]
fn takeover_after_death_after_commit() {
    takeover_case(Death::AfterCommit);
}

#[test]
fn a_revoked_lease_is_always_detected() {
    builder(3).check(|| {
        let m = Model::new(2, 1);
        m.words().start(9, 1, 0);
        let entry = m.words().register(7, 0, |_| false).unwrap();
        m.publish().unwrap();
        let writer = {
            let m = m.clone();
            thread::spawn(move || {
                // A writer that honours no lease at all (every lease timed
                // out): the reader must never keep a changed frame.
                for _ in 0..2 {
                    m.publish_honouring(|_, _| false)
                        .expect("no lease is honoured, so a slot is free");
                }
            })
        };
        let w = m.words();
        let leased = w.lease_latest(entry, 3);
        // Only a scribble makes a read corrupt, never a writer at work.
        assert!(!matches!(leased, Err(ReadFail::Corrupt(_))), "{leased:?}");
        if let Ok(Some((s, meta, seq))) = leased {
            let got = (m.payload[s][0].load(Relaxed), m.payload[s][1].load(Relaxed));
            if w.lease_intact(s, seq) {
                assert_eq!(got, (meta.number, meta.number), "kept a changed frame");
            }
            w.release_lease(entry, 7);
        }
        writer.join().unwrap();
    });
}

#[test]
fn a_live_writer_is_never_displaced() {
    loom::model(|| {
        let m = Model::new(2, 1);
        let a = {
            let m = m.clone();
            thread::spawn(move || m.words().claim_writer(1, |_| false))
        };
        let b = m.words().claim_writer(2, |_| false);
        let a = a.join().unwrap();
        // Exactly one wins; the loser is told who holds it.
        match (a, b) {
            (Ok(None), Err(1)) | (Err(2), Ok(None)) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// What a waiter does (`Waiter::wait`): reads the generation, then looks
/// for what it waits for, then sleeps while the generation is unchanged (a
/// futex wait, modelled as a yield loop; on Windows the event the writer
/// sets after moving the generation).
fn wait_for(w: &Words<'_>, done: impl Fn(&Words<'_>) -> bool) {
    let generation = w.generation().load(Acquire);
    if done(w) {
        return;
    }
    while w.generation().load(Acquire) == generation {
        thread::yield_now();
    }
}

#[test]
fn a_waiter_never_sleeps_through_a_publish() {
    builder(3).check(|| {
        let m = Model::new(2, 1);
        m.words().start(9, 1, 0);
        let writer = {
            let m = m.clone();
            thread::spawn(move || m.publish().unwrap())
        };
        let w = m.words();
        wait_for(&w, |w| w.latest_number() >= 1);
        // Woken (or never asleep): the frame that woke it is visible.
        assert_eq!(w.latest_number(), 1);
        assert_eq!(writer.join().unwrap(), 1);
    });
}

#[test]
fn a_waiter_sees_the_writer_leave() {
    builder(3).check(|| {
        let m = Model::new(2, 1);
        m.words().start(9, 1, 0);
        m.publish().unwrap();
        let writer = {
            let m = m.clone();
            thread::spawn(move || m.words().release_writer(1))
        };
        let w = m.words();
        wait_for(&w, |w| w.writer() == 0);
        assert_eq!(w.writer(), 0, "woken, but the writer still shows");
        writer.join().unwrap();
    });
}

/// The kernel's futex, as much of it as the wake word's protocol needs: a
/// wait compares the word and queues under one lock, a wake releases all
/// that are queued. A sleeper nobody wakes blocks for ever, which loom
/// reports as a deadlock.
#[derive(Default)]
struct Futex {
    wakes: loom::sync::Mutex<u64>,
    woken: loom::sync::Condvar,
}

impl Futex {
    fn wait(&self, word: &AtomicU32, expected: u32) {
        let mut wakes = self.wakes.lock().unwrap();
        if word.load(SeqCst) != expected {
            return;
        }
        let at = *wakes;
        while *wakes == at {
            wakes = self.woken.wait(wakes).unwrap();
        }
    }

    fn wake(&self) {
        *self.wakes.lock().unwrap() += 1;
        self.woken.notify_all();
    }
}

/// A publish as `Publisher::finish` makes it with Linux's wake word
/// (`os/unix.rs`, `Wakers::wake`): commit (the generation moves on), then
/// a `FUTEX_WAKE` only if the wake word says somebody may sleep.
fn publish_and_wake(m: &Model, want: &AtomicU32, futex: &Futex) {
    let moved_past = m.words().generation().load(Relaxed);
    m.publish().unwrap();
    loom::sync::atomic::fence(SeqCst);
    if crate::os::wanted(want.load(SeqCst), moved_past) {
        futex.wake();
    }
}

/// A subscriber waiting for frame `number` as `wait_newer` does with the
/// wake word (`Wakeup::wait`): read the generation, look, declare the
/// sleep (`os::declare`: raise the word, read the generation again),
/// sleep.
fn sleep_until(m: &Model, want: &AtomicU32, futex: &Futex, number: u64) {
    let w = m.words();
    loop {
        let generation = w.generation().load(Acquire);
        if w.latest_number() >= number {
            return;
        }
        if crate::os::declare(want, w.generation(), generation) {
            futex.wait(w.generation(), generation);
        }
    }
}

#[test]
fn a_declared_sleeper_is_woken_by_every_publish_it_waits_for() {
    builder(3).check(|| {
        let m = Model::new(3, 1);
        m.words().start(9, 1, 0);
        let (want, futex) = (Arc::new(a32()), Arc::new(Futex::default()));
        let writer = {
            let (m, want, futex) = (m.clone(), want.clone(), futex.clone());
            thread::spawn(move || {
                publish_and_wake(&m, &want, &futex);
                publish_and_wake(&m, &want, &futex);
            })
        };
        sleep_until(&m, &want, &futex, 2);
        assert_eq!(m.words().latest_number(), 2);
        writer.join().unwrap();
    });
}

/// Two sleepers share the one word: one waiting for frame 2 stores the
/// newer generation, one waiting for frame 1 may store the older one after
/// it (a slow sleeper), and both are woken.
#[test]
fn two_sleepers_overwriting_each_others_word_are_both_woken() {
    builder(2).check(|| {
        let m = Model::new(3, 2);
        m.words().start(9, 1, 0);
        let (want, futex) = (Arc::new(a32()), Arc::new(Futex::default()));
        let other = {
            let (m, want, futex) = (m.clone(), want.clone(), futex.clone());
            thread::spawn(move || sleep_until(&m, &want, &futex, 2))
        };
        let writer = {
            let (m, want, futex) = (m.clone(), want.clone(), futex.clone());
            thread::spawn(move || {
                publish_and_wake(&m, &want, &futex);
                publish_and_wake(&m, &want, &futex);
            })
        };
        sleep_until(&m, &want, &futex, 1);
        other.join().unwrap();
        writer.join().unwrap();
    });
}
