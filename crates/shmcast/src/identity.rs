//! Process identity: a PID together with the process's start time.
//!
//! A PID alone is not an identity, because the OS reuses PIDs. Every place
//! that records "who holds this" (a segment's creator, a lock holder) records
//! the start time too, and a holder counts as dead when no process with that
//! PID *and* that start time exists. That is what lets the next process take
//! over a lock or a writer slot from a crashed one without ever taking it from
//! a live one.
//!
//! Start times are OS-specific numbers, compared only for equality: on Linux
//! field 22 of `/proc/PID/stat` (clock ticks since boot), on Windows the
//! creation time from `GetProcessTimes` (100 ns units since 1601).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use crate::os;

/// A process, identified by PID and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The OS process ID.
    pub pid: u32,
    /// When the process started, in the OS's own units (see the module docs).
    pub start_time: u64,
}

/// Whether a recorded process still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// A process with this PID and start time exists.
    Alive,
    /// No such process exists: it exited, was killed, or its PID now belongs
    /// to another process.
    Dead,
}

impl ProcessId {
    /// The calling process.
    ///
    /// Cached, and the cache is keyed by the PID: a child forked after its
    /// parent asked gets its own identity (its own start time), so what it
    /// creates is judged by its own life, never by its parent's. The PID
    /// itself comes from `os::current_pid`, which a fork resets.
    pub fn current() -> ProcessId {
        // The start time is stored before the PID it belongs to, and read
        // after it: whoever sees our PID sees our start time. Two threads
        // filling the cache at once store the same values.
        static PID: AtomicU32 = AtomicU32::new(0);
        static START: AtomicU64 = AtomicU64::new(0);
        let pid = os::current_pid();
        if PID.load(Acquire) == pid {
            return ProcessId {
                pid,
                start_time: START.load(Relaxed),
            };
        }
        // Our own start time is readable but for a passing failure (out of
        // file descriptors, say): tried a few times. A value that is not
        // our real start time would make every token we write look dead
        // to others, so a failure is never cached: the next call tries
        // again, and what is cached is only ever the real value.
        for attempt in 0..3 {
            if let Ok(Some(start_time)) = os::process_start_time(pid) {
                START.store(start_time, Relaxed);
                PID.store(pid, Release);
                return ProcessId { pid, start_time };
            }
            std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
        }
        ProcessId { pid, start_time: 0 }
    }

    /// Asks the OS whether this process still runs.
    ///
    /// A process the caller may not inspect (another user's, on a locked-down
    /// system) is reported [`Liveness::Alive`]: when in doubt, nobody takes a
    /// lock away from a holder.
    pub fn liveness(&self) -> Liveness {
        match os::process_start_time(self.pid) {
            Ok(Some(start)) if start == self.start_time => Liveness::Alive,
            Ok(_) => Liveness::Dead,
            Err(_) => Liveness::Alive,
        }
    }

    /// `true` unless the process is known to be dead.
    pub fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// A non-zero 64-bit word standing for this identity in a lock word: the
    /// PID in the high half, a fold of the start time in the low half. Two
    /// processes get the same token only if they share a PID *and* their start
    /// times fold alike, which PID reuse alone cannot cause.
    pub(crate) fn token(&self) -> u64 {
        (u64::from(self.pid) << 32) | u64::from(fold(self.start_time))
    }
}

/// Whether `token` is another process's than the caller's: true in the
/// child of a `fork` that inherited a parent's object. Such a child must
/// not release or remove what the parent holds (Python forks readily).
pub(crate) fn forked_from(token: u64) -> bool {
    token_pid(token) != os::current_pid()
}

/// The PID recorded in a lock word made by [`ProcessId::token`].
pub(crate) fn token_pid(token: u64) -> u32 {
    (token >> 32) as u32
}

/// Whether the process that wrote `token` into a lock word still runs; same
/// policy as [`ProcessId::liveness`].
pub(crate) fn token_liveness(token: u64) -> Liveness {
    match os::process_start_time(token_pid(token)) {
        Ok(Some(start)) if fold(start) == token as u32 => Liveness::Alive,
        Ok(_) => Liveness::Dead,
        Err(_) => Liveness::Alive,
    }
}

/// Whether the process that wrote `token` is known to be gone (an
/// unreadable process counts as alive: see [`token_liveness`]).
pub(crate) fn token_is_dead(token: u64) -> bool {
    token_liveness(token) == Liveness::Dead
}

/// A process that holds something: a region's lock, a channel's writer
/// role, a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its PID.
    pub pid: u32,
    /// Whether it still runs (what a dead holder held is recovered by the
    /// next process that wants it).
    pub alive: bool,
}

impl Holder {
    /// The holder a token names, and whether it runs now.
    pub(crate) fn of_token(token: u64) -> Holder {
        Holder {
            pid: token_pid(token),
            alive: token_liveness(token) == Liveness::Alive,
        }
    }
}

fn fold(start_time: u64) -> u32 {
    // Mix both halves so that start times that differ only high up still
    // give different tokens.
    let mixed = start_time.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) as u32) ^ (start_time as u32)
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_alive_and_our_token_says_so() {
        let me = ProcessId::current();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.liveness(), Liveness::Alive);
        assert_eq!(token_pid(me.token()), me.pid);
        assert_eq!(token_liveness(me.token()), Liveness::Alive);
        // The cached PID (asked twice: the first call may set the cache).
        assert_eq!((os::current_pid(), os::current_pid()), (me.pid, me.pid));
        assert!(!forked_from(me.token()));
    }

    #[test]
    fn another_start_time_is_another_process() {
        let me = ProcessId::current();
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(impostor.liveness(), Liveness::Dead);
        assert_eq!(token_liveness(impostor.token()), Liveness::Dead);
    }

    #[test]
    fn a_pid_nobody_has_is_dead() {
        // Above Linux's pid_max ceiling (2^22) and aligned oddly for Windows,
        // whose PIDs are multiples of 4.
        let ghost = ProcessId {
            pid: 0x7FFF_FFF1,
            start_time: 1,
        };
        assert_eq!(ghost.liveness(), Liveness::Dead);
    }

    #[test]
    fn tokens_are_never_zero() {
        let p = ProcessId {
            pid: 1,
            start_time: 0,
        };
        assert_ne!(p.token(), 0);
    }
}
