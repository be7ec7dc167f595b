//! The only place that calls the OS. `unix.rs` and `windows.rs` each define
//! the same `Mapping` type and free functions (memmap2's pattern: one module
//! picked by path, no trait), so everything above this module is
//! platform-free.

use std::io;

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod imp;

pub(crate) use imp::*;

/// An OS call that failed, which one, and what the failure means for the
/// layers above (so that they never look at a call's name).
#[derive(Debug)]
pub(crate) struct OsError {
    pub op: &'static str,
    pub kind: OsErrorKind,
    pub source: io::Error,
}

/// What an [`OsError`] means, as far as the OS layer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OsErrorKind {
    /// Nothing more than `source` says.
    Other,
    /// No room for the object: a full `/dev/shm`, or the commit limit.
    OutOfSpace,
    /// The name is taken by something that is not a shared memory object
    /// (Linux: a FIFO, a directory...; Windows: an event, a mutex...).
    Foreign,
    /// The name is taken by a shared memory object that refuses this
    /// process the access a creator asks for (Windows: a section kept by
    /// the processes that hold it, whose security descriptor grants this
    /// user no write access).
    TakenAndDenied,
    /// The security descriptor (SDDL) could not be parsed.
    BadSecurityDescriptor,
}

impl OsError {
    pub(crate) fn new(op: &'static str, source: io::Error) -> OsError {
        let kind = if imp::is_out_of_space(&source) {
            OsErrorKind::OutOfSpace
        } else {
            OsErrorKind::Other
        };
        OsError { op, kind, source }
    }

    /// `op` found the name taken by `what` (a directory, a FIFO, an
    /// event...).
    pub(crate) fn foreign(op: &'static str, what: &str) -> OsError {
        OsError {
            op,
            kind: OsErrorKind::Foreign,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}, not a shared memory object"),
            ),
        }
    }

    #[cfg(windows)]
    pub(crate) fn with_kind(mut self, kind: OsErrorKind) -> OsError {
        self.kind = kind;
        self
    }
}

/// Whether a wake word holding `want` asks for a wake when the generation
/// moves past `moved_past` (Linux's wake word, `unix.rs`): somebody
/// declared a sleep on `moved_past`, or on the new generation after it
/// (which a sleeper on `moved_past` may have been raised to meanwhile).
/// Sleepers only ever raise the word ([`declare`]), so no other value can
/// hide a sleeper on `moved_past`; a sleeper that left, or was killed
/// asleep, costs at most one wake.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn wanted(want: u32, moved_past: u32) -> bool {
    want == moved_past || want == moved_past.wrapping_add(1)
}

/// Declares a sleep on generation `expected` of `generation` in the wake
/// word `want`; `false` when it need not sleep (the generation moved on)
/// or could not declare (a peer keeps changing the word: sleep briefly).
///
/// The word is raised to `expected`, never lowered: it is read before the
/// generation, so a value above `expected` read while the generation is
/// still `expected` cannot be a sleeper's (none can have read a later
/// generation yet) and is a peer's garbage, which is replaced. Then a
/// sequentially consistent fence and the generation read again, against
/// the publisher's move of the generation, its fence and its read of the
/// word (Dekker's pattern, with fences on both sides): either this read
/// sees the new generation, or the publisher's read sees the word at
/// `expected` or above it.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn declare(
    want: &crate::sync::AtomicU32,
    generation: &crate::sync::AtomicU32,
    expected: u32,
) -> bool {
    use crate::sync::Ordering::SeqCst;
    for _ in 0..4 {
        let current = want.load(SeqCst);
        if generation.load(SeqCst) != expected {
            return false;
        }
        if current != expected
            && want
                .compare_exchange(current, expected, SeqCst, SeqCst)
                .is_err()
        {
            continue;
        }
        crate::sync::fence(SeqCst);
        return generation.load(SeqCst) == expected;
    }
    false
}

/// The suffix of a channel's wake object (Linux: `shmcast.NAME~wake`, see
/// `unix.rs`): not a segment, so listings skip it and `clean` removes it
/// with its channel.
pub(crate) const WAKE_SUFFIX: &str = "~wake";
