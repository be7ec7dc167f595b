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
