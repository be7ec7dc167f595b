//! The reader: a frame loop that needs no channel to start and never gives
//! up (the library's `Reader`).

use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmcast_core::{
    Access, DetachedLease, Frame, Health, Next, Reader, ReaderOptions, SharedBytes,
};

use crate::args;
use crate::errors::{guard, invalid, Failure};
use crate::shmcast_frame_info;
use crate::shmcast_status::{SHMCAST_ERROR_NOT_HELD, SHMCAST_ERROR_TIMEOUT};
use crate::subscriber::{shmcast_health, SHMCAST_SUBSCRIBE_LEASING};

/// `shmcast_reader_open` flag: copy every frame, never lease (needs read
/// access only; writes nothing to shared memory).
pub const SHMCAST_READER_COPY: u32 = 2;

/// A reader of a channel name: frames one at a time, from before the
/// channel exists, through publisher crashes, take-overs, restarts and
/// stalls, until it is closed. One thread reads through it at a time
/// (`shmcast_reader_next` holds it while waiting); any thread may ask its
/// health meanwhile.
pub struct shmcast_reader {
    inner: Mutex<Inner>,
    /// The reader's health as of its last look, under a lock of its own
    /// (never held while waiting), so any thread may ask for it.
    health: Mutex<Health>,
}

struct Inner {
    reader: Reader,
    held: Held,
}

/// The frame `shmcast_reader_next` returned, until released.
enum Held {
    Nothing,
    Leased(DetachedLease),
    /// In the reader's own buffer, untouched until the next call.
    Copied,
}

fn lock(r: &shmcast_reader) -> MutexGuard<'_, Inner> {
    r.inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens a reader of channel `name`. The channel need not exist: until it
/// does, the health is `SHMCAST_HEALTH_MISSING`. `flags`: 0 leases frames
/// in place when the publisher lets this user lease and copies them
/// otherwise; `SHMCAST_SUBSCRIBE_LEASING` leases only;
/// `SHMCAST_READER_COPY` copies only. `stall_after_ms`: how long a running
/// publisher may publish nothing before it counts as stalled (0: 2000).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_reader_open(
    name: *const c_char,
    flags: u32,
    stall_after_ms: u32,
    out: *mut *mut shmcast_reader,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: forwarded from the caller.
        let name = unsafe { args::name(name) }?;
        let mut options = ReaderOptions::new();
        match flags {
            0 => {}
            SHMCAST_SUBSCRIBE_LEASING => options = options.access(Access::Leasing),
            SHMCAST_READER_COPY => options = options.access(Access::ReadOnly),
            _ => return Err(invalid(format!("unknown reader flags {flags:#x}"))),
        }
        if stall_after_ms > 0 {
            options = options.stall_after(args::millis(stall_after_ms));
        }
        let reader = Reader::with_options(name, options)?;
        *out = Box::into_raw(Box::new(shmcast_reader {
            inner: Mutex::new(Inner {
                reader,
                held: Held::Nothing,
            }),
            health: Mutex::new(Health::Missing),
        }));
        Ok(())
    })
}

/// The next frame newer than the last one, waiting up to `timeout_ms`
/// (`SHMCAST_WAIT_FOREVER`: no limit). `SHMCAST_OK`: `*data` points to its
/// `*len` bytes and `info` (may be NULL) gets its metadata; they stay valid
/// until `shmcast_reader_release`, the next call, or closing. A frame still
/// held is released first. `SHMCAST_ERROR_TIMEOUT`: nothing new, call
/// again (the health may have changed: `shmcast_reader_health`). Any other
/// status is this call's trouble (`shmcast_last_error_message` says what);
/// the reader goes on, and does not report the same trouble twice in a
/// row, so a loop may log it and call again.
///
/// Leased bytes are shared memory with a bounded lease (see
/// `shmcast_lease_data`): use what was read only if
/// `shmcast_reader_release` returns `SHMCAST_OK`.
///
/// # Safety
/// `reader` must be NULL or a live handle; `data` and `len` NULL or
/// writable; `info` NULL or a `shmcast_frame_info` with its size set.
#[no_mangle]
pub unsafe extern "C" fn shmcast_reader_next(
    reader: *const shmcast_reader,
    timeout_ms: u32,
    data: *mut *const u8,
    len: *mut u64,
    info: *mut shmcast_frame_info,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { args::write_bytes(data, len, std::ptr::null(), 0) };
        // SAFETY: forwarded from the caller.
        let r = unsafe { args::handle(reader, "reader") }?;
        // SAFETY: forwarded from the caller.
        unsafe { args::write_info(info, None) }?;
        let mut inner = lock(r);
        let Inner { reader, held } = &mut *inner;
        // The frame before, if the caller did not release it.
        let _ = std::mem::replace(held, Held::Nothing);
        let timeout = args::millis(timeout_ms);
        let started = Instant::now();
        let got = loop {
            let left = timeout.saturating_sub(started.elapsed());
            // Taken apart at once: a frame's parts do not borrow the reader.
            let next = match reader.next(left)? {
                Next::Frame(frame) => Some(frame_parts(frame)),
                Next::Health(_) | Next::Idle => None,
            };
            *r.health.lock().unwrap_or_else(|e| e.into_inner()) = reader.health();
            match next {
                Some(parts) => break parts,
                // A health change, or a skipped frame: wait out the rest.
                None if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(1).min(left));
                }
                None => {
                    return Err(Failure(
                        SHMCAST_ERROR_TIMEOUT,
                        format!(
                            "channel {}: no new frame within {:?}",
                            reader.name(),
                            started.elapsed()
                        ),
                    ))
                }
            }
        };
        let (frame_info, ptr, n, metadata, now_held) = got;
        *held = now_held;
        // SAFETY: forwarded from the caller; the metadata stays where it
        // is while the frame is held (in shared memory under the lease, or
        // in the reader's own buffer until its next call).
        unsafe { args::write_info_with(info, Some(&frame_info), metadata) }?;
        // SAFETY: forwarded from the caller.
        unsafe { args::write_bytes(data, len, ptr, n) };
        Ok(())
    })
}

/// Where a frame's metadata is: a pointer (never NULL) and a length.
type Place = (*const u8, usize);

/// A frame's info, where its bytes and its metadata are, and how it is
/// held past the call.
fn frame_parts(frame: Frame<'_>) -> (shmcast_core::FrameInfo, *const u8, usize, Place, Held) {
    let place = |b: SharedBytes<'_>| (b.as_ptr(), b.len());
    match frame {
        Frame::Leased(lease) => {
            let lease = lease.detach();
            let (ptr, len) = place(lease.bytes());
            let metadata = place(lease.metadata());
            (*lease.info(), ptr, len, metadata, Held::Leased(lease))
        }
        Frame::Copied(info, bytes, metadata) => (
            info,
            bytes.as_ptr(),
            bytes.len(),
            (metadata.as_ptr(), metadata.len()),
            Held::Copied,
        ),
    }
}

/// Ends the frame `shmcast_reader_next` returned. `SHMCAST_ERROR_REVOKED`:
/// the publisher revoked its lease, and what was read may be torn
/// (discard it). `SHMCAST_ERROR_NOT_HELD`: no frame is held.
///
/// # Safety
/// `reader` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_reader_release(reader: *const shmcast_reader) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let r = unsafe { args::handle(reader, "reader") }?;
        let mut inner = lock(r);
        match std::mem::replace(&mut inner.held, Held::Nothing) {
            Held::Leased(lease) => Ok(lease.release()?),
            Held::Copied => Ok(()),
            Held::Nothing => Err(Failure(
                SHMCAST_ERROR_NOT_HELD,
                "this reader holds no frame".to_owned(),
            )),
        }
    })
}

/// The channel's health as of the reader's last look (it looks while in
/// `shmcast_reader_next`); does not wait for a reading thread.
///
/// # Safety
/// `reader` must be NULL or a live handle; `health` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_reader_health(
    reader: *const shmcast_reader,
    health: *mut shmcast_health,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let r = unsafe { args::handle(reader, "reader") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(health, "health") }?;
        *out = (*r.health.lock().unwrap_or_else(|e| e.into_inner())).into();
        Ok(())
    })
}

/// Whether the reader leases frames in place (1) or copies them (0; also
/// before the channel is found, and for NULL).
///
/// # Safety
/// `reader` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_reader_leases(reader: *const shmcast_reader) -> i32 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { reader.as_ref() }.map_or(0, |r| i32::from(lock(r).reader.leases()))
}

/// Closes the reader, ending the frame it holds. NULL is ignored.
///
/// # Safety
/// `reader` must be NULL or a live handle, not used again after this, and
/// not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn shmcast_reader_close(reader: *mut shmcast_reader) {
    if !reader.is_null() {
        // SAFETY: a live handle is a box we made; the caller gives it up.
        let r = unsafe { Box::from_raw(reader) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut inner = lock(&r);
            inner.held = Held::Nothing;
            drop(inner);
            drop(r);
        }));
    }
}
