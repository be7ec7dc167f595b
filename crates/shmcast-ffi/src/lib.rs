//! The C ABI of shmcast (`include/shmcast.h`, generated from this crate by
//! cbindgen).
//!
//! Every exported function:
//! - checks its pointers and sizes before using them, and returns an
//!   `int32_t` status ([`shmcast_status`]) with a message for the calling
//!   thread ([`shmcast_last_error_message`]);
//! - runs inside `catch_unwind`: no panic crosses the boundary
//!   ([`SHMCAST_ERROR_INTERNAL`] instead).
//!
//! Handles are boxes handed to C as opaque pointers; there is no global
//! table of open objects. Each handle has a mutex, so any thread may call
//! any function on it; what that means per handle is said on its type.
//!
//! [`SHMCAST_ERROR_INTERNAL`]: shmcast_status::SHMCAST_ERROR_INTERNAL

#![allow(non_camel_case_types)]
#![warn(unsafe_op_in_unsafe_fn)]

mod args;
mod errors;
mod publisher;
mod reader;
mod region;
mod subscriber;

pub use errors::{shmcast_last_error_message, shmcast_status};
pub use publisher::*;
pub use reader::*;
pub use region::*;
pub use subscriber::*;

use std::ffi::c_char;

/// Pixel formats, as `shmcast_frame_meta.format` and
/// `shmcast_frame_info.format` carry them. The numbers never change.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmcast_pixel_format {
    /// Opaque bytes.
    SHMCAST_FORMAT_RAW = 0,
    /// 8-bit R, G, B.
    SHMCAST_FORMAT_RGB24 = 1,
    /// 8-bit B, G, R.
    SHMCAST_FORMAT_BGR24 = 2,
    /// 8-bit R, G, B, A.
    SHMCAST_FORMAT_RGBA = 3,
    /// 8-bit luma.
    SHMCAST_FORMAT_GRAY8 = 4,
    /// Packed 4:2:2, Y0 U Y1 V.
    SHMCAST_FORMAT_YUYV = 5,
    /// 4:2:0, a Y plane then interleaved UV.
    SHMCAST_FORMAT_NV12 = 6,
    /// 4:2:0, Y, U and V planes.
    SHMCAST_FORMAT_I420 = 7,
    /// 8-bit B, G, R, A (Windows bitmaps: `Bgra32`).
    SHMCAST_FORMAT_BGRA = 8,
}

/// A frame's metadata, as a publisher gives it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmcast_frame_meta {
    /// `sizeof(shmcast_frame_meta)`.
    pub size: u32,
    /// Width in pixels (0 for raw frames).
    pub width: u32,
    /// Height in pixels (0 for raw frames).
    pub height: u32,
    /// Bytes per row of the first plane; 0: the format's minimum.
    pub stride: u32,
    /// A `shmcast_pixel_format`.
    pub format: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Capture time, nanoseconds since the Unix epoch; 0: the time of
    /// publishing.
    pub timestamp_ns: u64,
}

/// A published frame's number and metadata, as a subscriber reads them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmcast_frame_info {
    /// `sizeof(shmcast_frame_info)`: set it before the call; the library
    /// writes no more than that many bytes.
    pub size: u32,
    /// A `shmcast_pixel_format`.
    pub format: u32,
    /// The frame's number: 1 for the channel's first, one more per frame.
    pub number: u64,
    /// Payload bytes.
    pub len: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of the first plane.
    pub stride: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The frame's per-frame metadata (`metadata_len` bytes; NULL when it
    /// has none, and from `shmcast_subscriber_read_latest`, which copies
    /// none: `shmcast_subscriber_read_latest_with_metadata` does). From a
    /// lease or a reader it is valid as long as the frame's bytes are and
    /// under the same promise (in shared memory when leased: only a release
    /// that returns `SHMCAST_OK` vouches for it); from
    /// `shmcast_subscriber_read_latest_with_metadata` it points into the
    /// caller's metadata buffer. Filled in when `size` covers it (a caller
    /// built against an older header gets the fields it knows).
    pub metadata: *const u8,
    /// Bytes of metadata.
    pub metadata_len: u64,
}

impl Default for shmcast_frame_info {
    fn default() -> Self {
        shmcast_frame_info {
            size: 0,
            format: 0,
            number: 0,
            len: 0,
            width: 0,
            height: 0,
            stride: 0,
            reserved: 0,
            timestamp_ns: 0,
            metadata: std::ptr::null(),
            metadata_len: 0,
        }
    }
}

/// The major version of this header; a program can check it against
/// `shmcast_version()` at run time.
pub const SHMCAST_VERSION_MAJOR: u32 = 0;
/// The minor version of this header.
pub const SHMCAST_VERSION_MINOR: u32 = 2;
/// The patch version of this header.
pub const SHMCAST_VERSION_PATCH: u32 = 0;

/// The library's version, `"MAJOR.MINOR.PATCH"`; a static string.
#[no_mangle]
pub extern "C" fn shmcast_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_headers_version_is_the_packages() {
        let v = [
            super::SHMCAST_VERSION_MAJOR,
            super::SHMCAST_VERSION_MINOR,
            super::SHMCAST_VERSION_PATCH,
        ]
        .map(|n| n.to_string())
        .join(".");
        assert_eq!(
            v,
            env!("CARGO_PKG_VERSION"),
            "bump SHMCAST_VERSION_* with the version"
        );
    }
}
