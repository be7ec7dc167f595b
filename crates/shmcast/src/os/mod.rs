//! The only place that calls the OS. `unix.rs` and `windows.rs` each define
//! the same `Mapping` type and free functions (memmap2's pattern: one module
//! picked by path, no trait), so everything above this module is
//! platform-free.

use std::io;

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod imp;

pub(crate) use imp::*;

/// An OS call that failed, and which one.
#[derive(Debug)]
pub(crate) struct OsError {
    pub op: &'static str,
    pub source: io::Error,
}

impl OsError {
    pub(crate) fn new(op: &'static str, source: io::Error) -> OsError {
        OsError { op, source }
    }
}
