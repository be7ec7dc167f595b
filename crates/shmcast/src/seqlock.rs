//! The one seqlock: a sequence word that lets readers who may write nothing
//! take consistent copies of words a writer changes.
//!
//! The writer makes the word odd ([`write_begin`]), changes what it guards,
//! and makes it even again ([`write_end`]). A reader loads the word
//! ([`read_begin`]), reads what it guards with loads that are defined even
//! while the writer stores (atomics, or [`crate::copy`]'s copy), and keeps
//! the result only if the word is unchanged afterwards ([`read_valid`]): then
//! no write overlapped the read. An odd word is a write under way, or, where
//! a writer can die, one that never finished; each user says what it does
//! then.
//!
//! The orderings are the standard ones (Boehm, "Can seqlocks get along with
//! programming language memory models?"): the writer's odd store is followed
//! by a release fence, so every later data store is ordered after it; its
//! even store is a release store, ordered after every data store. The
//! reader's first load is an acquire load, and an acquire fence orders its
//! data loads before the second load. `loom_tests` checks exactly this code.
//!
//! Its users: the region lock's readers without write access (`lock.rs`),
//! the channel's copying readers (`channel/protocol.rs`), the publisher's
//! source status (`channel/source.rs`) and the SIGBUS guard's table of
//! mappings (`os/unix.rs`, whose reader is a signal handler: these are
//! plain atomic operations, safe there).

use crate::sync::{fence, AtomicU64, Ordering::*};

/// Marks a write as under way; returns what to give [`write_end`].
/// A word left odd by a writer that died is moved on to the next odd value,
/// so that it changes even then.
pub(crate) fn write_begin(seq: &AtomicU64) -> u64 {
    let now = seq.load(Relaxed);
    let odd = now.wrapping_add(if is_writing(now) { 2 } else { 1 });
    seq.store(odd, Relaxed);
    fence(Release);
    odd
}

/// Marks the write begun with `begun` as complete.
pub(crate) fn write_end(seq: &AtomicU64, begun: u64) {
    seq.store(begun.wrapping_add(1), Release);
}

/// The reader's first look at the word.
pub(crate) fn read_begin(seq: &AtomicU64) -> u64 {
    seq.load(Acquire)
}

/// Whether `seq` says a write is under way (or was cut short).
pub(crate) fn is_writing(seq: u64) -> bool {
    seq & 1 == 1
}

/// The reader's second look: whether nothing was written since
/// [`read_begin`] returned `before`, so that what was read in between is
/// consistent.
pub(crate) fn read_valid(seq: &AtomicU64, before: u64) -> bool {
    fence(Acquire);
    seq.load(Relaxed) == before
}

/// Runs `read` until it ran while no write was under way, at most `tries`
/// times; `None` when every try overlapped a write.
pub(crate) fn read<T>(seq: &AtomicU64, tries: usize, mut read: impl FnMut() -> T) -> Option<T> {
    for _ in 0..tries {
        let before = read_begin(seq);
        if is_writing(before) {
            spin();
            continue;
        }
        let value = read();
        if read_valid(seq, before) {
            return Some(value);
        }
    }
    None
}

/// One pause of a retry loop: a spin hint, or a yield for loom.
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_write_makes_the_word_odd_then_even_and_always_moves_it() {
        let seq = AtomicU64::new(0);
        let begun = write_begin(&seq);
        assert!(is_writing(seq.load(Relaxed)));
        write_end(&seq, begun);
        assert_eq!(seq.load(Relaxed), 2);
        // A writer that died mid-write left it odd: the next write moves it.
        seq.store(7, Relaxed);
        let begun = write_begin(&seq);
        assert_eq!(begun, 9);
        write_end(&seq, begun);
        assert_eq!(seq.load(Relaxed), 10);
        // Scribbled to the top: wraps, never overflows.
        seq.store(u64::MAX, Relaxed);
        let begun = write_begin(&seq);
        assert!(is_writing(begun));
        write_end(&seq, begun);
        assert!(!is_writing(seq.load(Relaxed)));
    }

    #[test]
    fn a_read_overlapping_a_write_is_not_kept() {
        let seq = AtomicU64::new(0);
        assert_eq!(read(&seq, 3, || 5), Some(5));
        // Stuck odd: every try gives up.
        seq.store(3, Relaxed);
        assert_eq!(read(&seq, 3, || 5), None);
        // A write during the read: the read is thrown away.
        seq.store(4, Relaxed);
        let before = read_begin(&seq);
        write_end(&seq, write_begin(&seq));
        assert!(!read_valid(&seq, before));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A writer changes two words together under the seqlock; a reader
    /// never keeps a pair that does not match.
    #[test]
    fn a_reader_never_keeps_a_torn_pair() {
        loom::model(|| {
            let words = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)));
            let writer = {
                let w = Arc::clone(&words);
                loom::thread::spawn(move || {
                    for v in 1..=2 {
                        let begun = write_begin(&w.0);
                        w.1.store(v, Relaxed);
                        w.2.store(v, Relaxed);
                        write_end(&w.0, begun);
                    }
                })
            };
            let got = read(&words.0, 2, || {
                (words.1.load(Relaxed), words.2.load(Relaxed))
            });
            if let Some((a, b)) = got {
                assert_eq!(a, b, "a torn pair was kept");
            }
            writer.join().unwrap();
            assert_eq!(read(&words.0, 1, || words.1.load(Relaxed)), Some(2));
        });
    }
}
