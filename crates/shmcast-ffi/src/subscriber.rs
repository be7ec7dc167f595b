//! Subscribing: waiting, copying and leasing frames.

use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};

use shmcast_core::{Access, DetachedLease, ErrorKind, Health, Subscriber, SubscriberOptions};

use crate::args;
use crate::errors::{guard, invalid, Failure};
use crate::shmcast_frame_info;
use crate::shmcast_status::{SHMCAST_ERROR_NOT_HELD, SHMCAST_ERROR_NO_FRAME};

/// A subscriber. Any thread may use it, and two at once in the way a GUI
/// needs: `shmcast_subscriber_wait` sleeps without holding the handle's
/// lock, so one thread can wait while another copies, leases or releases.
/// Other calls are serialised. It holds one lease at a time.
pub struct shmcast_subscriber {
    sub: Mutex<Subscriber>,
    lease: shmcast_lease,
}

/// A frame leased in place, from `shmcast_subscriber_lease_latest`. It
/// lives inside its subscriber, which holds one lease at a time: the
/// handle is valid until the subscriber is closed (which ends the lease),
/// and after `shmcast_lease_release` the next lease of that subscriber
/// comes back in the same handle, as a closed file descriptor's number
/// comes back from the next `open`. So a second release returns
/// `SHMCAST_ERROR_NOT_HELD` unless the subscriber leased again meanwhile:
/// then it ends the new lease. Any thread may use and release it, also
/// while another thread waits on the subscriber.
pub struct shmcast_lease {
    held: Mutex<Option<DetachedLease>>,
}

/// `shmcast_subscriber_open` flag: subscribe for leasing (frames in place,
/// which the publisher keeps off while they are held). Needs write access
/// to the channel's lease table; without the flag a subscriber needs read
/// access only and writes nothing to shared memory.
pub const SHMCAST_SUBSCRIBE_LEASING: u32 = 1;

/// A timeout with no limit (`UINT32_MAX`, never taken as milliseconds).
pub const SHMCAST_WAIT_FOREVER: u32 = u32::MAX;

/// What a subscriber can tell about the publisher.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmcast_health {
    /// The publisher runs and published within the stall limit.
    SHMCAST_HEALTH_LIVE = 0,
    /// The publisher runs but has published nothing for the stall limit.
    SHMCAST_HEALTH_STALLED = 1,
    /// No publisher: it stopped, or its process died.
    SHMCAST_HEALTH_GONE = 2,
    /// Another process truncated the channel's shared memory: nothing more
    /// comes through it (`shmcast_subscriber_wait` says
    /// `SHMCAST_ERROR_TRUNCATED`).
    SHMCAST_HEALTH_TRUNCATED = 3,
    /// No channel of the name (yet): only a `shmcast_reader` says this.
    SHMCAST_HEALTH_MISSING = 4,
}

impl From<Health> for shmcast_health {
    fn from(health: Health) -> shmcast_health {
        match health {
            Health::Live => shmcast_health::SHMCAST_HEALTH_LIVE,
            Health::Stalled { .. } => shmcast_health::SHMCAST_HEALTH_STALLED,
            Health::Gone => shmcast_health::SHMCAST_HEALTH_GONE,
            Health::Truncated => shmcast_health::SHMCAST_HEALTH_TRUNCATED,
            Health::Missing => shmcast_health::SHMCAST_HEALTH_MISSING,
        }
    }
}

fn lock(s: &shmcast_subscriber) -> MutexGuard<'_, Subscriber> {
    s.sub.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_lease(l: &shmcast_lease) -> MutexGuard<'_, Option<DetachedLease>> {
    l.held.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_frame(name: &str) -> Failure {
    Failure(
        SHMCAST_ERROR_NO_FRAME,
        format!("channel {name}: nothing has been published yet"),
    )
}

/// Subscribes to channel `name`, waiting up to `timeout_ms` for it to
/// appear (0: fail at once with `SHMCAST_ERROR_NOT_FOUND`).
/// `flags`: 0 (read-only) or `SHMCAST_SUBSCRIBE_LEASING`.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_open(
    name: *const c_char,
    flags: u32,
    timeout_ms: u32,
    out: *mut *mut shmcast_subscriber,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: forwarded from the caller.
        let name = unsafe { args::name(name) }?;
        let access = match flags {
            0 => Access::ReadOnly,
            SHMCAST_SUBSCRIBE_LEASING => Access::Leasing,
            _ => return Err(invalid(format!("unknown subscriber flags {flags:#x}"))),
        };
        let mut options = SubscriberOptions::new().access(access);
        if timeout_ms > 0 {
            options = options.wait(args::millis(timeout_ms));
        }
        let sub = Subscriber::open_with(name, &options)?;
        *out = Box::into_raw(Box::new(shmcast_subscriber {
            sub: Mutex::new(sub),
            lease: shmcast_lease {
                held: Mutex::new(None),
            },
        }));
        Ok(())
    })
}

/// Waits until a frame newer than `after_frame` is published, up to
/// `timeout_ms` (`SHMCAST_WAIT_FOREVER`: no limit); the newest frame's
/// number goes to `frame_number` (may be NULL), on a timeout too. Sleeps
/// in the kernel (no CPU while waiting) and without holding the handle's
/// lock. When the publisher exits and a new one creates the channel anew,
/// the subscriber follows the name and returns the new channel's first
/// frame, whatever its number (numbers start again; a lease held from the
/// old channel stays valid). `SHMCAST_ERROR_TIMEOUT` when nothing came.
///
/// # Safety
/// `subscriber` must be NULL or a live handle; `frame_number` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_wait(
    subscriber: *const shmcast_subscriber,
    after_frame: u64,
    timeout_ms: u32,
    frame_number: *mut u64,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { args::handle(subscriber, "subscriber") }?;
        let got = Subscriber::wait_newer_shared(&s.sub, after_frame, args::millis(timeout_ms));
        let newest = match &got {
            Ok(newest) => *newest,
            Err(e) => e.frame_number().unwrap_or(0),
        };
        // SAFETY: forwarded from the caller.
        if let Some(n) = unsafe { frame_number.as_mut() } {
            *n = newest;
        }
        got.map(drop).map_err(Failure::from)
    })
}

/// Copies the latest frame into `buf` (`capacity` bytes) and its metadata
/// into `info` (may be NULL): always one whole frame.
/// `SHMCAST_ERROR_NO_FRAME` before the first frame;
/// `SHMCAST_ERROR_BUFFER_TOO_SMALL` when it does not fit (`info->len`
/// then says how large it is).
///
/// # Safety
/// `subscriber` must be NULL or a live handle; `buf` NULL or `capacity`
/// writable bytes; `info` NULL or a `shmcast_frame_info` with its size set.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_read_latest(
    subscriber: *const shmcast_subscriber,
    buf: *mut u8,
    capacity: usize,
    info: *mut shmcast_frame_info,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { args::handle(subscriber, "subscriber") }?;
        // SAFETY: forwarded from the caller.
        let buf = unsafe { args::bytes_mut(buf, capacity, "buf") }?;
        // Check `info` before any copy, so a bad one costs nothing.
        // SAFETY: forwarded from the caller.
        unsafe { args::write_info(info, None) }?;
        let sub = lock(s);
        match sub.read_latest(buf) {
            // SAFETY: forwarded from the caller.
            Ok(Some(frame)) => unsafe { args::write_info(info, Some(&frame)) },
            Ok(None) => Err(no_frame(&sub.name().to_string())),
            Err(e) => {
                if let (ErrorKind::BufferTooSmall, Some(needed)) = (e.kind(), e.frame_len()) {
                    let frame = shmcast_core::FrameInfo {
                        number: 0,
                        len: needed,
                        meta: shmcast_core::FrameMeta::raw(),
                        metadata_len: 0,
                    };
                    // SAFETY: forwarded from the caller.
                    unsafe { args::write_info(info, Some(&frame)) }?;
                }
                Err(e.into())
            }
        }
    })
}

/// As `shmcast_subscriber_read_latest`, and the frame's per-frame metadata
/// into `metadata` (`metadata_capacity` bytes; the channel's largest is
/// `shmcast_subscriber_max_metadata_len`), copied with the frame under the
/// same check: `info->metadata` then points into `metadata`, and
/// `info->metadata_len` says how many bytes are the frame's.
/// `SHMCAST_ERROR_BUFFER_TOO_SMALL` when either does not fit.
///
/// # Safety
/// As `shmcast_subscriber_read_latest`; `metadata` NULL (with
/// `metadata_capacity` 0) or `metadata_capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_read_latest_with_metadata(
    subscriber: *const shmcast_subscriber,
    buf: *mut u8,
    capacity: usize,
    metadata: *mut u8,
    metadata_capacity: usize,
    info: *mut shmcast_frame_info,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { args::handle(subscriber, "subscriber") }?;
        // SAFETY: forwarded from the caller.
        let buf = unsafe { args::bytes_mut(buf, capacity, "buf") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::bytes_mut(metadata, metadata_capacity, "metadata") }?;
        // SAFETY: forwarded from the caller.
        unsafe { args::write_info(info, None) }?;
        let sub = lock(s);
        let mut got = Vec::new();
        let frame = match sub.read_latest_with_metadata(buf, &mut got) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(no_frame(&sub.name().to_string())),
            Err(e) => return Err(e.into()),
        };
        let Some(dst) = out.get_mut(..got.len()) else {
            return Err(Failure(
                crate::shmcast_status::SHMCAST_ERROR_BUFFER_TOO_SMALL,
                format!(
                    "channel {}: frame {} has {} bytes of metadata; the metadata buffer holds {}",
                    sub.name(),
                    frame.number,
                    got.len(),
                    metadata_capacity
                ),
            ));
        };
        dst.copy_from_slice(&got);
        // SAFETY: forwarded from the caller; the metadata lies in the
        // caller's own buffer.
        unsafe { args::write_info_with(info, Some(&frame), (dst.as_ptr(), dst.len())) }
    })
}

/// Leases the latest frame in place: `shmcast_lease_data` gives its bytes
/// in shared memory, which the publisher leaves alone until
/// `shmcast_lease_release` (unless the lease keeps it from every free slot
/// for longer than the channel's max lease: then it is revoked, and the
/// release says so). Needs `SHMCAST_SUBSCRIBE_LEASING`; one lease at a time
/// per subscriber (`SHMCAST_ERROR_BUSY`); `SHMCAST_ERROR_NO_FRAME` before
/// the first frame.
///
/// # Safety
/// `subscriber` must be NULL or a live handle; `lease` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_lease_latest(
    subscriber: *const shmcast_subscriber,
    lease: *mut *mut shmcast_lease,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { args::handle(subscriber, "subscriber") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(lease, "lease") }?;
        *out = std::ptr::null_mut();
        let mut sub = lock(s);
        let mut held = lock_lease(&s.lease);
        if held.is_some() {
            return Err(Failure(
                crate::shmcast_status::SHMCAST_ERROR_BUSY,
                format!(
                    "channel {}: this subscriber already holds a lease; release it first",
                    sub.name()
                ),
            ));
        }
        let name = sub.name().to_string();
        let Some(lease) = sub.lease_latest()? else {
            return Err(no_frame(&name));
        };
        *held = Some(lease.detach());
        *out = (&s.lease as *const shmcast_lease).cast_mut();
        Ok(())
    })
}

/// The leased frame: `*data` points to its `*len` bytes in shared memory
/// (read-only), `info` (may be NULL) gets its metadata. The bytes stay
/// mapped until the lease is released. `SHMCAST_ERROR_NOT_HELD` after a
/// release.
///
/// The contract of those bytes: the publisher leaves them alone while the
/// lease holds, but a lease is bounded. One that keeps the publisher from
/// every free slot for longer than the channel's max lease (a slow or
/// stopped reader) is revoked, and the publisher writes the slot while the
/// pointer is still out. So read through the pointer, then call
/// `shmcast_lease_release`, and use what was read (or computed from it)
/// only if that returns `SHMCAST_OK`: `SHMCAST_ERROR_REVOKED` means it may
/// be torn. Never hand the pointer to code that assumes the bytes cannot
/// change (in C++, a `std::span` kept past the release check).
///
/// # Safety
/// `lease` must be NULL or a lease of a live subscriber; `data` and `len`
/// NULL or writable; `info` NULL or a `shmcast_frame_info` with its size
/// set.
#[no_mangle]
pub unsafe extern "C" fn shmcast_lease_data(
    lease: *const shmcast_lease,
    data: *mut *const u8,
    len: *mut u64,
    info: *mut shmcast_frame_info,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { args::write_bytes(data, len, std::ptr::null(), 0) };
        // SAFETY: forwarded from the caller.
        let l = unsafe { args::handle(lease, "lease") }?;
        let held = lock_lease(l);
        let Some(lease) = held.as_ref() else {
            return Err(released());
        };
        let metadata = lease.metadata();
        // SAFETY: forwarded from the caller; the metadata lies in shared
        // memory while the lease is held, under the same promise as the
        // bytes.
        unsafe {
            args::write_info_with(
                info,
                Some(lease.info()),
                (metadata.as_ptr(), metadata.len()),
            )
        }?;
        // SAFETY: forwarded from the caller.
        unsafe { args::write_bytes(data, len, lease.bytes().as_ptr(), lease.bytes().len()) };
        Ok(())
    })
}

fn released() -> Failure {
    Failure(
        SHMCAST_ERROR_NOT_HELD,
        "this lease was already released".to_owned(),
    )
}

/// Ends the lease. `SHMCAST_ERROR_REVOKED` when the publisher had revoked
/// it: what was read through it may be torn and must be discarded.
/// `SHMCAST_ERROR_NOT_HELD` when it was already released. Either way the
/// lease is over.
///
/// # Safety
/// `lease` must be NULL or a lease of a live subscriber.
#[no_mangle]
pub unsafe extern "C" fn shmcast_lease_release(lease: *const shmcast_lease) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let l = unsafe { args::handle(lease, "lease") }?;
        // Ended under the handle's lock, so that a lease taken right after
        // (on another thread) never finds this one half-released.
        let mut held = lock_lease(l);
        let lease = held.take().ok_or_else(released)?;
        lease.release()?;
        Ok(())
    })
}

/// The publisher's health: `SHMCAST_HEALTH_STALLED` when it runs but has
/// published nothing for `stall_after_ms`.
///
/// # Safety
/// `subscriber` must be NULL or a live handle; `health` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_health(
    subscriber: *const shmcast_subscriber,
    stall_after_ms: u32,
    health: *mut shmcast_health,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { args::handle(subscriber, "subscriber") }?;
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(health, "health") }?;
        *out = lock(s).health(args::millis(stall_after_ms)).into();
        Ok(())
    })
}

/// The most bytes of per-frame metadata a frame carries (the metadata
/// buffer `shmcast_subscriber_read_latest_with_metadata` may need); 0 for
/// none, or NULL.
///
/// # Safety
/// `subscriber` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_max_metadata_len(
    subscriber: *const shmcast_subscriber,
) -> u64 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { subscriber.as_ref() }.map_or(0, |s| lock(s).max_metadata_len() as u64)
}

/// The largest frame the channel carries, in bytes (the buffer size
/// `shmcast_subscriber_read_latest` may need); 0 for NULL.
///
/// # Safety
/// `subscriber` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_max_frame_len(
    subscriber: *const shmcast_subscriber,
) -> u64 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { subscriber.as_ref() }.map_or(0, |s| lock(s).max_frame_len() as u64)
}

/// The newest frame's number (0: none yet, or NULL).
///
/// # Safety
/// `subscriber` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_latest_number(
    subscriber: *const shmcast_subscriber,
) -> u64 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { subscriber.as_ref() }.map_or(0, |s| lock(s).latest_number())
}

/// Closes the subscriber, ending its lease if one is held (the lease's
/// bytes are then gone). NULL is ignored.
///
/// # Safety
/// `subscriber` must be NULL or a live handle, not used again after this
/// (nor its lease), and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn shmcast_subscriber_close(subscriber: *mut shmcast_subscriber) {
    if !subscriber.is_null() {
        // SAFETY: a live handle is a box we made; the caller gives it up.
        let s = unsafe { Box::from_raw(subscriber) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // The lease first, then the subscriber that leased it.
            drop(lock_lease(&s.lease).take());
            drop(s);
        }));
    }
}
