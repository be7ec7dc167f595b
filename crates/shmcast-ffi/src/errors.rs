//! Status codes, the per-thread error message, and the guard every exported
//! function runs in.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use shmcast_core::{Error, ErrorKind};

/// What a function returns: `SHMCAST_OK` or what went wrong. Functions
/// return it as `int32_t`; new codes may be added, so treat any other
/// negative value as a failure too.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmcast_status {
    /// Success.
    SHMCAST_OK = 0,
    /// A NULL pointer, a zero or impossible size, unknown flags, a struct
    /// whose `size` is too small.
    SHMCAST_ERROR_INVALID_ARGUMENT = -1,
    /// The name breaks the naming rule (or is not UTF-8).
    SHMCAST_ERROR_INVALID_NAME = -2,
    /// No segment or channel has this name.
    SHMCAST_ERROR_NOT_FOUND = -3,
    /// The name is taken.
    SHMCAST_ERROR_ALREADY_EXISTS = -4,
    /// The OS refused access.
    SHMCAST_ERROR_PERMISSION_DENIED = -5,
    /// Another live process publishes on this channel.
    SHMCAST_ERROR_WRITER_ALIVE = -6,
    /// Nothing happened in time (no frame, no channel, no lock).
    SHMCAST_ERROR_TIMEOUT = -7,
    /// The caller's buffer is smaller than the frame.
    SHMCAST_ERROR_BUFFER_TOO_SMALL = -8,
    /// A region range lies outside the region.
    SHMCAST_ERROR_OUT_OF_BOUNDS = -9,
    /// Writing through a read-only handle.
    SHMCAST_ERROR_READ_ONLY = -10,
    /// Nothing has been published yet.
    SHMCAST_ERROR_NO_FRAME = -11,
    /// The publisher revoked the lease: discard what was read through it.
    SHMCAST_ERROR_REVOKED = -12,
    /// The publisher overwrote every frame before it could be copied.
    SHMCAST_ERROR_OVERRUN = -13,
    /// The frame is larger than the channel's slots.
    SHMCAST_ERROR_TOO_LARGE = -14,
    /// Subscribers lease every free slot: the frame was dropped.
    SHMCAST_ERROR_ALL_SLOTS_LEASED = -15,
    /// Leasing needs a subscriber opened with `SHMCAST_SUBSCRIBE_LEASING`
    /// and write access to the channel's lease table.
    SHMCAST_ERROR_NOT_LEASING = -16,
    /// The handle already holds what was asked for (a loan, a lease), or
    /// the channel's lease table is full of live leasing subscribers.
    SHMCAST_ERROR_BUSY = -17,
    /// Nothing to end: no loan to commit or abandon, a lease released
    /// twice.
    SHMCAST_ERROR_NOT_HELD = -18,
    /// A segment of another layout version, kind or geometry.
    SHMCAST_ERROR_INCOMPATIBLE = -19,
    /// Shared memory holds impossible values (a peer scribbled on it).
    SHMCAST_ERROR_CORRUPT = -20,
    /// Another process took over publishing on this channel.
    SHMCAST_ERROR_WRITER_LOST = -21,
    /// The memory could not be reserved.
    SHMCAST_ERROR_NO_SPACE = -22,
    /// Another process truncated the shared memory.
    SHMCAST_ERROR_TRUNCATED = -23,
    /// A region's last writer died mid-write; the data may be torn.
    SHMCAST_ERROR_TORN = -24,
    /// Any other OS failure.
    SHMCAST_ERROR_OS = -25,
    /// A bug in shmcast (a panic, caught); the message says where.
    SHMCAST_ERROR_INTERNAL = -26,
}

use shmcast_status::*;

/// A failure on its way to C: the code and the message.
pub(crate) struct Failure(pub shmcast_status, pub String);

pub(crate) type Result<T> = std::result::Result<T, Failure>;

pub(crate) fn invalid(message: impl Into<String>) -> Failure {
    Failure(SHMCAST_ERROR_INVALID_ARGUMENT, message.into())
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs an exported function's body: a failure is stored as the thread's
/// last message and returned as its code; a panic becomes
/// `SHMCAST_ERROR_INTERNAL`.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        Err(Failure(
            SHMCAST_ERROR_INTERNAL,
            format!("internal error in shmcast (please report it): {what}"),
        ))
    });
    match outcome {
        Ok(()) => SHMCAST_OK as i32,
        Err(Failure(code, message)) => {
            LAST_ERROR.with(|m| *m.borrow_mut() = message);
            code as i32
        }
    }
}

/// Copies the calling thread's last error message, NUL-terminated, into
/// `buf` (at most `capacity` bytes, cut short if needed) and returns the
/// message's full size including its NUL: when that is more than
/// `capacity`, call again with a buffer that large. `buf` may be NULL
/// (with any `capacity`) to ask for the size alone. The message is that of
/// the last call on this thread that failed; empty if none has.
///
/// # Safety
/// `buf`, unless NULL, must point to `capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmcast_last_error_message(buf: *mut c_char, capacity: usize) -> usize {
    catch_unwind(|| {
        LAST_ERROR.with(|m| {
            let message = m.borrow();
            let bytes = message.as_bytes();
            if !buf.is_null() && capacity > 0 {
                let n = bytes.len().min(capacity - 1);
                // SAFETY: the caller gives `capacity` writable bytes at
                // `buf`; `n + 1 <= capacity`, and a thread-local String
                // cannot overlap the caller's buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            bytes.len() + 1
        })
    })
    .unwrap_or(0)
}

/// What each kind of library error is to a C caller: the one place the
/// status codes come from (the C# `Status` enum mirrors these values, and
/// a test checks that it does).
pub(crate) fn status_of(kind: ErrorKind) -> shmcast_status {
    match kind {
        ErrorKind::InvalidArgument => SHMCAST_ERROR_INVALID_ARGUMENT,
        ErrorKind::InvalidName => SHMCAST_ERROR_INVALID_NAME,
        ErrorKind::NotFound => SHMCAST_ERROR_NOT_FOUND,
        ErrorKind::AlreadyExists => SHMCAST_ERROR_ALREADY_EXISTS,
        ErrorKind::PermissionDenied => SHMCAST_ERROR_PERMISSION_DENIED,
        ErrorKind::NoSpace => SHMCAST_ERROR_NO_SPACE,
        ErrorKind::Foreign | ErrorKind::Uninitialized | ErrorKind::Corrupt => SHMCAST_ERROR_CORRUPT,
        ErrorKind::Incompatible => SHMCAST_ERROR_INCOMPATIBLE,
        ErrorKind::Truncated => SHMCAST_ERROR_TRUNCATED,
        ErrorKind::WriterAlive => SHMCAST_ERROR_WRITER_ALIVE,
        ErrorKind::WriterLost => SHMCAST_ERROR_WRITER_LOST,
        ErrorKind::Busy => SHMCAST_ERROR_BUSY,
        ErrorKind::Timeout => SHMCAST_ERROR_TIMEOUT,
        ErrorKind::TooLarge => SHMCAST_ERROR_TOO_LARGE,
        ErrorKind::AllSlotsLeased => SHMCAST_ERROR_ALL_SLOTS_LEASED,
        ErrorKind::BufferTooSmall => SHMCAST_ERROR_BUFFER_TOO_SMALL,
        ErrorKind::OutOfBounds => SHMCAST_ERROR_OUT_OF_BOUNDS,
        ErrorKind::ReadOnly => SHMCAST_ERROR_READ_ONLY,
        ErrorKind::Torn => SHMCAST_ERROR_TORN,
        ErrorKind::NotLeasing => SHMCAST_ERROR_NOT_LEASING,
        ErrorKind::Revoked => SHMCAST_ERROR_REVOKED,
        ErrorKind::Overrun => SHMCAST_ERROR_OVERRUN,
        _ => SHMCAST_ERROR_OS,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let mut message = e.to_string();
        // What to do, in the C ABI's words (the library names no API).
        if e.kind() == ErrorKind::NotLeasing {
            message.push_str(" (open the subscriber with SHMCAST_SUBSCRIBE_LEASING)");
        }
        Failure(status_of(e.kind()), message)
    }
}
