//! Checking what C hands us before it is used: pointers, lengths, names,
//! sized structs.

use std::ffi::{c_char, CStr};

use shmcast_core::{FrameInfo, FrameMeta, PixelFormat};

use crate::errors::{invalid, Failure, Result};
use crate::shmcast_status::SHMCAST_ERROR_INVALID_NAME;
use crate::{shmcast_frame_info, shmcast_frame_meta};

/// A name argument: non-NULL, NUL-terminated UTF-8. The naming rule itself
/// is the library's to check.
///
/// # Safety
/// `name`, unless NULL, must point to a NUL-terminated string.
pub(crate) unsafe fn name<'a>(name: *const c_char) -> Result<&'a str> {
    if name.is_null() {
        return Err(invalid("the name is NULL"));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| {
        Failure(
            SHMCAST_ERROR_INVALID_NAME,
            format!("the name {name:?} is not UTF-8"),
        )
    })
}

/// A handle argument.
///
/// # Safety
/// `handle`, unless NULL, must be a live handle of this type.
pub(crate) unsafe fn handle<'a, T>(handle: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller promises a live handle (a `Box` we made) or NULL.
    unsafe { handle.as_ref() }.ok_or_else(|| invalid(format!("the {what} handle is NULL")))
}

/// An out-parameter that must be given.
///
/// # Safety
/// `out`, unless NULL, must be valid for writes of a `T`.
pub(crate) unsafe fn out<'a, T>(out: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: the caller promises writable memory for a `T`, or NULL.
    unsafe { out.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

fn check_len(len: usize, what: &str) -> Result<()> {
    if len > isize::MAX as usize {
        return Err(invalid(format!(
            "{what}: a length of {len} bytes is impossible"
        )));
    }
    Ok(())
}

/// `len` bytes at `data`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data`, unless NULL, must point to `len` readable bytes that nothing
/// writes during the call.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    check_len(len, what)?;
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(invalid(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: non-NULL, `len` fits an isize, and the caller promises `len`
    // readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// `len` writable bytes at `data`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data`, unless NULL, must point to `len` writable bytes that nothing
/// else uses during the call.
pub(crate) unsafe fn bytes_mut<'a>(data: *mut u8, len: usize, what: &str) -> Result<&'a mut [u8]> {
    check_len(len, what)?;
    if len == 0 {
        return Ok(&mut []);
    }
    if data.is_null() {
        return Err(invalid(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: as for `bytes`, writable and unaliased by the caller's word.
    Ok(unsafe { std::slice::from_raw_parts_mut(data, len) })
}

/// A size-prefixed struct from the caller: its `size` says how much of it
/// the caller knows; fields past that keep their defaults (all zero), so a
/// newer library takes an older caller's struct. A `size` smaller than
/// the first version's (`min`) is refused.
///
/// # Safety
/// `ptr`, unless NULL, must point to at least `(*ptr).size` readable bytes
/// and at least a `u32`.
pub(crate) unsafe fn sized<T: Copy + Default>(ptr: *const T, min: usize, what: &str) -> Result<T> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: every sized struct starts with its `u32` size, which the
    // caller promises is readable.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    if size < min {
        return Err(invalid(format!(
            "{what}.size is {size}; set it to sizeof({what}) ({})",
            std::mem::size_of::<T>()
        )));
    }
    let mut value = T::default();
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller promises `size` readable bytes, we copy at most
    // that and at most a `T`; `T` is a plain `repr(C)` struct of integers
    // and pointers, valid for any bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), n);
    }
    Ok(value)
}

/// The first version's size of each sized struct: the least an older
/// caller passes. Fixed numbers: they must not grow with the structs.
pub(crate) const FRAME_META_V1: usize = 32;
pub(crate) const FRAME_INFO_V1: usize = 48;
const _: () = assert!(std::mem::size_of::<shmcast_frame_meta>() >= FRAME_META_V1);
const _: () = assert!(std::mem::size_of::<shmcast_frame_info>() >= FRAME_INFO_V1);

/// A frame's metadata from C; NULL means raw bytes.
///
/// # Safety
/// As for [`sized`].
pub(crate) unsafe fn frame_meta(meta: *const shmcast_frame_meta) -> Result<FrameMeta> {
    if meta.is_null() {
        return Ok(FrameMeta::raw());
    }
    // SAFETY: forwarded from the caller.
    let m = unsafe { sized(meta, FRAME_META_V1, "shmcast_frame_meta") }?;
    if m.reserved != 0 {
        return Err(invalid("shmcast_frame_meta.reserved must be 0"));
    }
    let format = PixelFormat::from_code(m.format).ok_or_else(|| {
        invalid(format!(
            "shmcast_frame_meta.format is {}, not a shmcast_pixel_format",
            m.format
        ))
    })?;
    let mut out = FrameMeta::new(m.width, m.height, format);
    if m.stride != 0 {
        out.stride = m.stride;
    }
    out.timestamp_ns = m.timestamp_ns;
    Ok(out)
}

/// Writes a frame's info to a caller's struct, if one is given, never past
/// its `size`.
///
/// # Safety
/// `out`, unless NULL, must point to at least `(*out).size` writable bytes
/// and at least a `u32`.
pub(crate) unsafe fn write_info(
    out: *mut shmcast_frame_info,
    info: Option<&FrameInfo>,
) -> Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { write_info_with(out, info, (std::ptr::null(), 0)) }
}

/// As [`write_info`], with where the frame's metadata lies: a pointer and
/// a length, never a slice (in shared memory it may change under a
/// revoked lease). It must stay there for as long as the caller is told it
/// is valid.
///
/// # Safety
/// As for [`write_info`].
pub(crate) unsafe fn write_info_with(
    out: *mut shmcast_frame_info,
    info: Option<&FrameInfo>,
    metadata: (*const u8, usize),
) -> Result<()> {
    if out.is_null() {
        return Ok(());
    }
    // SAFETY: the caller promises a readable `u32` size first.
    let size = unsafe { out.cast::<u32>().read_unaligned() } as usize;
    if size < FRAME_INFO_V1 {
        return Err(invalid(format!(
            "shmcast_frame_info.size is {size}; set it to sizeof(shmcast_frame_info) ({FRAME_INFO_V1})"
        )));
    }
    let mut value = shmcast_frame_info {
        size: size.min(u32::MAX as usize) as u32,
        ..Default::default()
    };
    if let Some(info) = info {
        value.format = info.meta.format.code();
        value.number = info.number;
        value.len = info.len as u64;
        value.width = info.meta.width;
        value.height = info.meta.height;
        value.stride = info.meta.stride;
        value.timestamp_ns = info.meta.timestamp_ns;
        if metadata.1 > 0 {
            value.metadata = metadata.0;
            value.metadata_len = metadata.1 as u64;
        }
    }
    let n = size.min(std::mem::size_of::<shmcast_frame_info>());
    // SAFETY: the caller promises `size` writable bytes; we write at most
    // that many and at most one struct.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&value as *const shmcast_frame_info).cast::<u8>(),
            out.cast::<u8>(),
            n,
        );
    }
    Ok(())
}

/// Writes a frame's place, `ptr` and `n` bytes, to the out-parameters
/// `data` and `len`, each unless NULL (`std::ptr::null()`, 0: clears them,
/// as every call does first so that a failure leaves none stale).
///
/// # Safety
/// `data` and `len` are each NULL or writable.
pub(crate) unsafe fn write_bytes(data: *mut *const u8, len: *mut u64, ptr: *const u8, n: usize) {
    // SAFETY: the caller promises NULL or writable.
    if let Some(d) = unsafe { data.as_mut() } {
        *d = ptr;
    }
    // SAFETY: the caller promises NULL or writable.
    if let Some(l) = unsafe { len.as_mut() } {
        *l = n as u64;
    }
}

/// A timeout in milliseconds; `SHMCAST_WAIT_FOREVER` (`u32::MAX`) is no
/// limit at all.
pub(crate) fn millis(ms: u32) -> std::time::Duration {
    if ms == u32::MAX {
        return std::time::Duration::MAX;
    }
    std::time::Duration::from_millis(u64::from(ms))
}
