//! Publishing frames.

use std::ffi::{c_char, CStr};
use std::sync::Mutex;
use std::time::Duration;

use shmcast_core::{ChannelOptions, CreateOptions, OwnedLoan, Publisher};

use crate::args;
use crate::errors::{guard, invalid, Failure, Result};
use crate::shmcast_frame_meta;
use crate::shmcast_status::{SHMCAST_ERROR_BUSY, SHMCAST_ERROR_NOT_HELD};

/// How to create a channel. Zero in any field means its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmcast_channel_config {
    /// `sizeof(shmcast_channel_config)`.
    pub size: u32,
    /// Slots, 2 to 64; 0: 4. With `slots >= leases held at once + 2` the
    /// publisher always finds a free slot.
    pub slots: u32,
    /// The largest frame in bytes (required, not 0).
    pub max_frame_len: u64,
    /// Linux permission bits of the channel; 0: 0600. Subscribers need
    /// read access only (0644, or 0640 for a group).
    pub mode: u32,
    /// Linux permission bits of the lease table, which leasing subscribers
    /// write; 0: the same as `mode`.
    pub lease_mode: u32,
    /// How long a lease that keeps the publisher from its last free slot is
    /// honoured, in milliseconds; 0: 1000.
    pub max_lease_ms: u32,
    /// Bytes of per-frame metadata each frame may carry
    /// (`shmcast_publisher_publish_with_metadata`,
    /// `shmcast_publisher_set_metadata`), at most 65536; 0: none. (This
    /// field was `reserved`, which had to be zero: zero still means none.)
    pub max_metadata_len: u32,
    /// Windows security descriptor (SDDL) of the channel; NULL: the
    /// creator's default.
    pub sddl: *const c_char,
    /// Windows security descriptor of the lease table; NULL: as `sddl`.
    pub lease_sddl: *const c_char,
}

impl Default for shmcast_channel_config {
    fn default() -> Self {
        shmcast_channel_config {
            size: 0,
            slots: 0,
            max_frame_len: 0,
            mode: 0,
            lease_mode: 0,
            max_lease_ms: 0,
            max_metadata_len: 0,
            sddl: std::ptr::null(),
            lease_sddl: std::ptr::null(),
        }
    }
}

/// The first version's size (see `args::FRAME_META_V1`).
const CONFIG_V1: usize = 48;
const _: () = assert!(std::mem::size_of::<shmcast_channel_config>() >= CONFIG_V1);

/// A channel's publisher. Any thread may use it; calls are serialised by
/// its lock, and a loan belongs to the handle, not to a thread (loan on
/// one thread, commit on another is fine).
pub struct shmcast_publisher {
    state: Mutex<State>,
    max_frame_len: u64,
    max_metadata_len: u64,
}

/// The publisher, idle or with a slot on loan (the loan owns it then).
enum State {
    Idle(Box<Publisher>),
    Loaned(OwnedLoan),
    /// Only between two states, never seen by a caller.
    Moving,
}

/// Turns a C string into an SDDL option.
///
/// # Safety
/// `s` must be NULL or a NUL-terminated string.
unsafe fn sddl(s: *const c_char, what: &str) -> Result<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, NUL-terminated by the caller's word.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str()
        .map(|s| Some(s.to_owned()))
        .map_err(|_| invalid(format!("{what} is not UTF-8")))
}

fn lock(p: &shmcast_publisher) -> std::sync::MutexGuard<'_, State> {
    p.state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Creates channel `name` and becomes its publisher. A channel of that name
/// whose publisher died is taken over; a live one is refused
/// (`SHMCAST_ERROR_WRITER_ALIVE`).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `config` NULL or a
/// `shmcast_channel_config` whose strings are NULL or NUL-terminated;
/// `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_create(
    name: *const c_char,
    config: *const shmcast_channel_config,
    out: *mut *mut shmcast_publisher,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: forwarded from the caller.
        let name = unsafe { args::name(name) }?;
        // SAFETY: forwarded from the caller.
        let c = unsafe { args::sized(config, CONFIG_V1, "shmcast_channel_config") }?;
        let max = usize::try_from(c.max_frame_len)
            .ok()
            .filter(|&m| m > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "shmcast_channel_config.max_frame_len is {}; give the largest frame in bytes",
                    c.max_frame_len
                ))
            })?;
        for (what, mode) in [("mode", c.mode), ("lease_mode", c.lease_mode)] {
            if mode > 0o777 {
                return Err(invalid(format!(
                    "shmcast_channel_config.{what} is {mode:#o}; give permission bits, 0 to 0777"
                )));
            }
        }
        let mut create = CreateOptions::new();
        if c.mode != 0 {
            create = create.mode(c.mode);
        }
        // SAFETY: forwarded from the caller.
        if let Some(s) = unsafe { sddl(c.sddl, "shmcast_channel_config.sddl") }? {
            create = create.sddl(&s);
        }
        let mut lease = create.clone();
        if c.lease_mode != 0 {
            lease = lease.mode(c.lease_mode);
        }
        // SAFETY: forwarded from the caller.
        if let Some(s) = unsafe { sddl(c.lease_sddl, "shmcast_channel_config.lease_sddl") }? {
            lease = lease.sddl(&s);
        }
        let mut options = ChannelOptions::new(max)
            .create_options(create)
            .lease_options(lease);
        if c.slots != 0 {
            options = options.slots(c.slots);
        }
        if c.max_lease_ms != 0 {
            options = options.max_lease(Duration::from_millis(u64::from(c.max_lease_ms)));
        }
        options = options.max_metadata(c.max_metadata_len as usize);
        let publisher = Publisher::create_with(name, &options)?;
        *out = Box::into_raw(Box::new(shmcast_publisher {
            max_frame_len: publisher.max_frame_len() as u64,
            max_metadata_len: publisher.max_metadata_len() as u64,
            state: Mutex::new(State::Idle(Box::new(publisher))),
        }));
        Ok(())
    })
}

fn busy() -> Failure {
    Failure(
        SHMCAST_ERROR_BUSY,
        "this publisher has a slot on loan; commit or abandon it first".to_owned(),
    )
}

/// Publishes `len` bytes from `data` as the next frame (one copy, into
/// shared memory); `meta` NULL means raw bytes. The new frame's number goes
/// to `frame_number` (may be NULL). The publisher never waits for
/// subscribers: `SHMCAST_ERROR_ALL_SLOTS_LEASED` means the frame was
/// dropped.
///
/// # Safety
/// `publisher` must be NULL or a live handle; `meta` NULL or a
/// `shmcast_frame_meta`; `data` NULL or `len` readable bytes;
/// `frame_number` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_publish(
    publisher: *const shmcast_publisher,
    meta: *const shmcast_frame_meta,
    data: *const u8,
    len: usize,
    frame_number: *mut u64,
) -> i32 {
    // SAFETY: forwarded from the caller; no metadata (NULL, 0 bytes).
    unsafe {
        shmcast_publisher_publish_with_metadata(
            publisher,
            meta,
            data,
            len,
            std::ptr::null(),
            0,
            frame_number,
        )
    }
}

/// Lends the caller `len` bytes of a free slot to fill in place (a capture
/// that writes straight into shared memory); `*ptr` points to them until
/// `shmcast_publisher_commit` or `shmcast_publisher_abandon`. One loan at a
/// time (`SHMCAST_ERROR_BUSY`).
///
/// # Safety
/// `publisher` must be NULL or a live handle; `ptr` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_loan(
    publisher: *const shmcast_publisher,
    len: usize,
    ptr: *mut *mut u8,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let p = unsafe { args::handle(publisher, "publisher") }?;
        // SAFETY: forwarded from the caller.
        let ptr = unsafe { args::out(ptr, "ptr") }?;
        *ptr = std::ptr::null_mut();
        let mut state = lock(p);
        if !matches!(*state, State::Idle(_)) {
            return Err(busy());
        }
        let State::Idle(publisher) = std::mem::replace(&mut *state, State::Moving) else {
            unreachable!("checked just above");
        };
        match publisher.into_loan(len) {
            Ok(mut loan) => {
                *ptr = loan.as_mut_ptr();
                *state = State::Loaned(loan);
                Ok(())
            }
            Err((publisher, e)) => {
                *state = State::Idle(publisher);
                Err(e.into())
            }
        }
    })
}

/// Publishes the loaned bytes as the next frame; its number goes to
/// `frame_number` (may be NULL). `SHMCAST_ERROR_NOT_HELD` without a loan.
///
/// # Safety
/// `publisher` must be NULL or a live handle; `meta` NULL or a
/// `shmcast_frame_meta`; `frame_number` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_commit(
    publisher: *const shmcast_publisher,
    meta: *const shmcast_frame_meta,
    frame_number: *mut u64,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let p = unsafe { args::handle(publisher, "publisher") }?;
        // SAFETY: forwarded from the caller.
        let meta = unsafe { args::frame_meta(meta) }?;
        let mut state = lock(p);
        let number = finish(&mut state, |loan| {
            let (publisher, number) = loan.commit_returning(&meta);
            (publisher, Some(number))
        })?;
        // SAFETY: forwarded from the caller.
        if let (Some(n), Some(number)) = (unsafe { frame_number.as_mut() }, number) {
            *n = number;
        }
        Ok(())
    })
}

/// Ends the loan without publishing. `SHMCAST_ERROR_NOT_HELD` without a
/// loan.
///
/// # Safety
/// `publisher` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_abandon(publisher: *const shmcast_publisher) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let p = unsafe { args::handle(publisher, "publisher") }?;
        let mut state = lock(p);
        finish(&mut state, |loan| (loan.abandon(), None))?;
        Ok(())
    })
}

/// As `shmcast_publisher_publish`, with `metadata_len` bytes from
/// `metadata` as the frame's per-frame metadata (up to the channel's
/// `max_metadata_len`), in one call: subscribers get it with this frame
/// (`shmcast_frame_info.metadata`). Longer than the channel allows:
/// `SHMCAST_ERROR_TOO_LARGE`, and nothing is published.
///
/// # Safety
/// As `shmcast_publisher_publish`; `metadata` NULL (with `metadata_len` 0)
/// or `metadata_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_publish_with_metadata(
    publisher: *const shmcast_publisher,
    meta: *const shmcast_frame_meta,
    data: *const u8,
    len: usize,
    metadata: *const u8,
    metadata_len: usize,
    frame_number: *mut u64,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let p = unsafe { args::handle(publisher, "publisher") }?;
        // SAFETY: forwarded from the caller.
        let meta = unsafe { args::frame_meta(meta) }?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { args::bytes(data, len, "data") }?;
        // SAFETY: forwarded from the caller.
        let metadata = unsafe { args::bytes(metadata, metadata_len, "metadata") }?;
        let mut state = lock(p);
        let State::Idle(publisher) = &mut *state else {
            return Err(busy());
        };
        let number = publisher.publish_with_metadata(&meta, data, metadata)?;
        // SAFETY: forwarded from the caller.
        if let Some(n) = unsafe { frame_number.as_mut() } {
            *n = number;
        }
        Ok(())
    })
}

/// Sets the per-frame metadata of the frame on loan (`len` bytes from
/// `metadata`, up to the channel's `max_metadata_len`; `len` 0 clears it),
/// published with it by `shmcast_publisher_commit`.
/// `SHMCAST_ERROR_NOT_HELD` without a loan; longer than the channel
/// allows: `SHMCAST_ERROR_TOO_LARGE`, and the frame's metadata stays as it
/// was.
///
/// # Safety
/// `publisher` must be NULL or a live handle; `metadata` NULL (with `len`
/// 0) or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_set_metadata(
    publisher: *const shmcast_publisher,
    metadata: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let p = unsafe { args::handle(publisher, "publisher") }?;
        // SAFETY: forwarded from the caller.
        let metadata = unsafe { args::bytes(metadata, len, "metadata") }?;
        let mut state = lock(p);
        match &mut *state {
            State::Loaned(loan) => Ok(loan.set_metadata(metadata)?),
            _ => Err(Failure(
                SHMCAST_ERROR_NOT_HELD,
                "this publisher has no slot on loan (shmcast_publisher_loan first; shmcast_publisher_publish_with_metadata publishes a copy with metadata)".to_owned(),
            )),
        }
    })
}

/// Ends the loan in `state` with `end`, which gives the publisher back.
fn finish(
    state: &mut State,
    end: impl FnOnce(OwnedLoan) -> (Box<Publisher>, Option<u64>),
) -> Result<Option<u64>> {
    if !matches!(state, State::Loaned(_)) {
        return Err(Failure(
            SHMCAST_ERROR_NOT_HELD,
            "this publisher has no slot on loan (shmcast_publisher_loan first)".to_owned(),
        ));
    }
    let State::Loaned(loan) = std::mem::replace(state, State::Moving) else {
        unreachable!("checked just above");
    };
    let (publisher, number) = end(loan);
    *state = State::Idle(publisher);
    Ok(number)
}

/// Closes the publisher (abandoning a loan): subscribers see it gone, and
/// on Linux the channel's name is removed. NULL is ignored.
///
/// # Safety
/// `publisher` must be NULL or a live handle, not used again after this.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_close(publisher: *mut shmcast_publisher) {
    if publisher.is_null() {
        return;
    }
    // SAFETY: a live handle is a box we made; the caller gives it up.
    let p = unsafe { Box::from_raw(publisher) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut state = p.state.into_inner().unwrap_or_else(|e| e.into_inner());
        let _ = finish(&mut state, |loan| (loan.abandon(), None));
        drop(state);
    }));
}

/// The most bytes of per-frame metadata a frame can carry (0: none, or
/// NULL).
///
/// # Safety
/// `publisher` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_max_metadata_len(
    publisher: *const shmcast_publisher,
) -> u64 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { publisher.as_ref() }.map_or(0, |p| p.max_metadata_len)
}

/// The largest frame the channel takes, in bytes; 0 for NULL.
///
/// # Safety
/// `publisher` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_publisher_max_frame_len(
    publisher: *const shmcast_publisher,
) -> u64 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { publisher.as_ref() }.map_or(0, |p| p.max_frame_len)
}
