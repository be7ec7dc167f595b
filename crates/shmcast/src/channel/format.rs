//! What a frame is: pixel formats and per-frame metadata.

use std::fmt;
use std::str::FromStr;

/// How a frame's bytes encode pixels. The codes are part of the shared
/// memory layout and never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// Opaque bytes, no pixel meaning.
    Raw,
    /// 8-bit R, G, B per pixel (ffmpeg `rgb24`).
    Rgb24,
    /// 8-bit B, G, R per pixel (ffmpeg `bgr24`).
    Bgr24,
    /// 8-bit R, G, B, A per pixel (ffmpeg `rgba`).
    Rgba,
    /// 8-bit luma (ffmpeg `gray`).
    Gray8,
    /// Packed 4:2:2, Y0 U Y1 V (ffmpeg `yuyv422`).
    Yuyv,
    /// 4:2:0, a Y plane then interleaved UV (ffmpeg `nv12`).
    Nv12,
    /// 4:2:0, Y, U and V planes (ffmpeg `yuv420p`).
    I420,
    /// 8-bit B, G, R, A per pixel (ffmpeg `bgra`): what Windows bitmaps
    /// (`WriteableBitmap`, `Bgra32`) hold, so it copies in unconverted.
    Bgra,
}

const ALL: [PixelFormat; 9] = [
    PixelFormat::Raw,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Rgba,
    PixelFormat::Gray8,
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::I420,
    PixelFormat::Bgra,
];

impl PixelFormat {
    /// The format's number in shared memory and in the C ABI
    /// (`shmcast_pixel_format`): raw 0, rgb24 1, bgr24 2, rgba 3, gray8 4,
    /// yuyv 5, nv12 6, i420 7, bgra 8.
    ///
    /// A reader refuses a frame whose code it does not know
    /// ([`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt), naming the code)
    /// rather than pass its bytes on as some other format: a new format
    /// needs readers of a version that knows it.
    pub fn code(self) -> u32 {
        match self {
            PixelFormat::Raw => 0,
            PixelFormat::Rgb24 => 1,
            PixelFormat::Bgr24 => 2,
            PixelFormat::Rgba => 3,
            PixelFormat::Bgra => 8,
            PixelFormat::Gray8 => 4,
            PixelFormat::Yuyv => 5,
            PixelFormat::Nv12 => 6,
            PixelFormat::I420 => 7,
        }
    }

    /// The format with number `code` (see [`code`](PixelFormat::code)).
    pub fn from_code(code: u32) -> Option<PixelFormat> {
        ALL.into_iter().find(|f| f.code() == code)
    }

    /// The name used here and by `shmcast publish --format`.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Raw => "raw",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Rgba => "rgba",
            PixelFormat::Bgra => "bgra",
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::I420 => "i420",
        }
    }

    /// ffmpeg's `-pix_fmt` name for the same layout.
    pub fn ffmpeg_name(self) -> Option<&'static str> {
        Some(match self {
            PixelFormat::Raw => return None,
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Rgba => "rgba",
            PixelFormat::Bgra => "bgra",
            PixelFormat::Gray8 => "gray",
            PixelFormat::Yuyv => "yuyv422",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::I420 => "yuv420p",
        })
    }

    /// Bytes of one tightly packed `width` x `height` frame, or `None` when
    /// the size overflows or the format needs even dimensions and gets odd
    /// ones. `Raw` has no pixel size: `None`.
    pub fn frame_len(self, width: u32, height: u32) -> Option<usize> {
        let (w, h) = (width as usize, height as usize);
        let pixels = w.checked_mul(h)?;
        match self {
            PixelFormat::Raw => None,
            PixelFormat::Gray8 => Some(pixels),
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => pixels.checked_mul(3),
            PixelFormat::Rgba | PixelFormat::Bgra => pixels.checked_mul(4),
            PixelFormat::Yuyv => (w % 2 == 0).then(|| pixels.checked_mul(2))?,
            PixelFormat::Nv12 | PixelFormat::I420 => {
                (w % 2 == 0 && h % 2 == 0).then(|| pixels.checked_mul(3).map(|n| n / 2))?
            }
        }
    }

    /// Bytes per row of the first plane, tightly packed.
    pub fn min_stride(self, width: u32) -> u32 {
        let per_pixel = match self {
            PixelFormat::Raw | PixelFormat::Gray8 | PixelFormat::Nv12 | PixelFormat::I420 => 1,
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => 3,
            PixelFormat::Rgba | PixelFormat::Bgra => 4,
            PixelFormat::Yuyv => 2,
        };
        width.saturating_mul(per_pixel)
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pixel format name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pixel format {0:?}; use one of raw, rgb24, bgr24, rgba, bgra, gray8, yuyv, nv12, i420 (or ffmpeg's names gray, yuyv422, yuv420p)")]
pub struct UnknownFormat(pub String);

impl FromStr for PixelFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<PixelFormat, UnknownFormat> {
        let lower = s.to_ascii_lowercase();
        ALL.into_iter()
            .find(|f| f.name() == lower || f.ffmpeg_name() == Some(lower.as_str()))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// What the publisher says about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Pixel layout.
    pub format: PixelFormat,
    /// Bytes per row of the first plane.
    pub stride: u32,
    /// Capture time, nanoseconds since the Unix epoch (0: use the publish
    /// time).
    pub timestamp_ns: u64,
}

impl FrameMeta {
    /// Metadata for tightly packed `width` x `height` frames in `format`,
    /// stamped at publish time.
    pub fn new(width: u32, height: u32, format: PixelFormat) -> FrameMeta {
        FrameMeta {
            width,
            height,
            format,
            stride: format.min_stride(width),
            timestamp_ns: 0,
        }
    }

    /// Metadata for opaque bytes.
    pub fn raw() -> FrameMeta {
        FrameMeta::new(0, 0, PixelFormat::Raw)
    }
}

/// A frame as a subscriber sees it: its metadata, number and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Frame number: 1 for the channel's first frame, then one more per
    /// frame, across writer take-overs.
    pub number: u64,
    /// Payload bytes.
    pub len: usize,
    /// The publisher's metadata (timestamp filled in).
    pub meta: FrameMeta,
    /// Bytes of per-frame metadata the frame carries (0 when none; see
    /// [`ChannelOptions::max_metadata`](crate::ChannelOptions::max_metadata)).
    pub metadata_len: usize,
}

/// A frame's metadata as a slot stores it: the publisher's [`FrameMeta`]
/// with the frame's number and length, the format as its code. This file
/// is the one place that converts between the two;
/// `SlotHeader::load_meta`/`store_meta` (layout.rs) move it to and from a
/// slot's words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotMeta {
    /// 0 marks a slot that holds no complete frame.
    pub number: u64,
    pub timestamp_ns: u64,
    pub len: u64,
    pub width: u32,
    pub height: u32,
    pub format: u32,
    pub stride: u32,
    pub metadata_len: u32,
}

/// Why a slot's metadata cannot describe a frame: the words were scribbled,
/// or written by a publisher of a format this reader does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadMeta {
    #[error("frame length {len} exceeds the slot size {max}")]
    TooLong { len: u64, max: usize },
    #[error("unknown pixel format code {0} (a newer publisher's? this reader does not know it)")]
    UnknownFormat(u32),
    #[error("metadata length {len} exceeds the channel's {max}")]
    MetadataTooLong { len: u32, max: usize },
}

impl SlotMeta {
    /// What the publisher stores for a frame of `len` bytes that `meta`
    /// describes, with `metadata_len` bytes of metadata: numbered `number`
    /// (0: the next one), stamped `now_ns` when `meta` carries no
    /// timestamp.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn of_frame(
        meta: &FrameMeta,
        len: usize,
        metadata_len: u32,
        number: u64,
        now_ns: u64,
    ) -> SlotMeta {
        SlotMeta {
            number,
            timestamp_ns: if meta.timestamp_ns == 0 {
                now_ns
            } else {
                meta.timestamp_ns
            },
            len: len as u64,
            width: meta.width,
            height: meta.height,
            format: meta.format.code(),
            stride: meta.stride,
            metadata_len,
        }
    }

    /// What readers see of it, once its untrusted words are checked: a
    /// length within `max_len` bytes (the slot size), metadata within
    /// `max_metadata` bytes and a known format.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn info(&self, max_len: usize, max_metadata: usize) -> Result<FrameInfo, BadMeta> {
        let len = usize::try_from(self.len)
            .ok()
            .filter(|&len| len <= max_len)
            .ok_or(BadMeta::TooLong {
                len: self.len,
                max: max_len,
            })?;
        let metadata_len = usize::try_from(self.metadata_len)
            .ok()
            .filter(|&len| len <= max_metadata)
            .ok_or(BadMeta::MetadataTooLong {
                len: self.metadata_len,
                max: max_metadata,
            })?;
        let format =
            PixelFormat::from_code(self.format).ok_or(BadMeta::UnknownFormat(self.format))?;
        Ok(FrameInfo {
            number: self.number,
            len,
            meta: FrameMeta {
                width: self.width,
                height: self.height,
                format,
                stride: self.stride,
                timestamp_ns: self.timestamp_ns,
            },
            metadata_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ffmpeg_names_parse() {
        for f in ALL {
            assert_eq!(f.name().parse::<PixelFormat>(), Ok(f));
            assert_eq!(PixelFormat::from_code(f.code()), Some(f));
            if let Some(ff) = f.ffmpeg_name() {
                assert_eq!(ff.parse::<PixelFormat>(), Ok(f));
            }
        }
        assert!("yuv444p".parse::<PixelFormat>().is_err());
        assert_eq!(PixelFormat::from_code(99), None);
    }

    #[test]
    fn frame_sizes() {
        assert_eq!(PixelFormat::Rgb24.frame_len(1920, 1080), Some(6_220_800));
        assert_eq!(PixelFormat::I420.frame_len(640, 480), Some(460_800));
        assert_eq!(PixelFormat::Nv12.frame_len(3, 2), None);
        assert_eq!(PixelFormat::Yuyv.frame_len(4, 3), Some(24));
        // 2^32 * 2^32 * 4 bytes does not fit in a 64-bit usize.
        assert_eq!(PixelFormat::Rgba.frame_len(u32::MAX, u32::MAX), None);
    }

    #[test]
    fn slot_metadata_round_trips_and_bad_words_are_named() {
        let meta = FrameMeta::new(4, 2, PixelFormat::Nv12);
        let stored = SlotMeta::of_frame(&meta, 12, 5, 7, 99);
        let info = stored.info(12, 5).unwrap();
        assert_eq!((info.number, info.len, info.meta.timestamp_ns), (7, 12, 99));
        assert_eq!(
            (info.meta.format, info.metadata_len),
            (PixelFormat::Nv12, 5)
        );
        assert_eq!(
            stored.info(11, 5),
            Err(BadMeta::TooLong { len: 12, max: 11 })
        );
        assert_eq!(
            stored.info(12, 4),
            Err(BadMeta::MetadataTooLong { len: 5, max: 4 })
        );
        let odd = SlotMeta {
            format: 99,
            ..stored
        };
        assert_eq!(odd.info(12, 5), Err(BadMeta::UnknownFormat(99)));
        assert!(odd.info(12, 5).unwrap_err().to_string().contains("99"));
    }
}
