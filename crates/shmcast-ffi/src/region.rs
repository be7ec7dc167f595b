//! Raw byte regions.

use std::ffi::c_char;

use shmcast_core::{CreateOptions, Region};

use crate::args;
use crate::errors::{guard, invalid};

/// A raw shared memory region. Any thread may use it, several at once
/// (reads and writes take the region's own crash-safe lock).
pub struct shmcast_region {
    region: Region,
}

/// `shmcast_region_create` flag: when the name is taken by a region whose
/// creator is dead, remove it and create a new one (Linux).
pub const SHMCAST_CREATE_REPLACE_STALE: u32 = 1;
/// `shmcast_region_create` flag: keep the name after the creator closes it
/// (Linux; `shmcast remove` removes it).
pub const SHMCAST_CREATE_PERSIST: u32 = 2;
/// `shmcast_region_create` flag: let every user read it (Linux mode 0644;
/// without it 0600, the creator's user only).
pub const SHMCAST_CREATE_WORLD_READABLE: u32 = 4;
/// `shmcast_region_open` flag: open read-only (`shmcast_region_write`
/// then fails with `SHMCAST_ERROR_READ_ONLY`).
pub const SHMCAST_OPEN_READ_ONLY: u32 = 1;

const CREATE_FLAGS: u32 =
    SHMCAST_CREATE_REPLACE_STALE | SHMCAST_CREATE_PERSIST | SHMCAST_CREATE_WORLD_READABLE;

/// Creates region `name` of `size` bytes, zero-filled.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_region_create(
    name: *const c_char,
    size: u64,
    flags: u32,
    out: *mut *mut shmcast_region,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: forwarded from the caller.
        let name = unsafe { args::name(name) }?;
        if flags & !CREATE_FLAGS != 0 {
            return Err(invalid(format!("unknown region create flags {flags:#x}")));
        }
        let size = usize::try_from(size)
            .map_err(|_| invalid(format!("a region of {size} bytes is impossible here")))?;
        let mode = if flags & SHMCAST_CREATE_WORLD_READABLE != 0 {
            0o644
        } else {
            0o600
        };
        let options = CreateOptions::new()
            .mode(mode)
            .persist(flags & SHMCAST_CREATE_PERSIST != 0)
            .replace_stale(flags & SHMCAST_CREATE_REPLACE_STALE != 0);
        let region = Region::create_with(name, size, &options)?;
        *out = Box::into_raw(Box::new(shmcast_region { region }));
        Ok(())
    })
}

/// Opens the existing region `name` (`SHMCAST_OPEN_READ_ONLY`: read-only).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmcast_region_open(
    name: *const c_char,
    flags: u32,
    out: *mut *mut shmcast_region,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let out = unsafe { args::out(out, "out") }?;
        *out = std::ptr::null_mut();
        // SAFETY: forwarded from the caller.
        let name = unsafe { args::name(name) }?;
        let region = match flags {
            0 => Region::open(name)?,
            SHMCAST_OPEN_READ_ONLY => Region::open_read_only(name)?,
            _ => return Err(invalid(format!("unknown region open flags {flags:#x}"))),
        };
        *out = Box::into_raw(Box::new(shmcast_region { region }));
        Ok(())
    })
}

/// Copies `len` bytes at `offset` into `buf` (a consistent copy: never
/// half of a concurrent write). Nothing is copied when the range does not
/// fit (`SHMCAST_ERROR_OUT_OF_BOUNDS`).
///
/// # Safety
/// `region` must be NULL or a live handle; `buf` NULL or `len` writable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn shmcast_region_read(
    region: *const shmcast_region,
    offset: u64,
    buf: *mut u8,
    len: usize,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let r = unsafe { args::handle(region, "region") }?;
        // SAFETY: forwarded from the caller.
        let buf = unsafe { args::bytes_mut(buf, len, "buf") }?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        r.region.read(offset, buf)?;
        Ok(())
    })
}

/// Copies `len` bytes from `data` into the region at `offset`, under its
/// write lock. Nothing is written when the range does not fit.
///
/// # Safety
/// `region` must be NULL or a live handle; `data` NULL or `len` readable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn shmcast_region_write(
    region: *const shmcast_region,
    offset: u64,
    data: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let r = unsafe { args::handle(region, "region") }?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { args::bytes(data, len, "data") }?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        r.region.write(offset, data)?;
        Ok(())
    })
}

/// The region's size in bytes; 0 for a NULL handle.
///
/// # Safety
/// `region` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmcast_region_size(region: *const shmcast_region) -> u64 {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { region.as_ref() }.map_or(0, |r| r.region.len() as u64)
}

/// Closes the region (the creator's close removes its name, unless
/// persistent). NULL is ignored.
///
/// # Safety
/// `region` must be NULL or a live handle, not used again after this.
#[no_mangle]
pub unsafe extern "C" fn shmcast_region_close(region: *mut shmcast_region) {
    if !region.is_null() {
        // SAFETY: a live handle is a box we made; the caller gives it up.
        let region = unsafe { Box::from_raw(region) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(region)));
    }
}
