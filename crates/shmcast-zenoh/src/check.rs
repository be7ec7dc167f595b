//! What a frame from the wire must be before the importer creates or
//! writes anything for it.

use shmcast::PixelFormat;

use crate::jpeg;
use crate::wire::{Encoding, Header};

/// The highest frame number taken from the wire (the library's limit).
pub const MAX_NUMBER: u64 = 1 << 48;

/// What a frame must be before anything is created or written: within
/// `max` bytes, numbered in range, and with bytes that hold what its
/// header says (a JPEG's headers are read, not its pixels). Returns the
/// frame's length in the channel, and the JPEG to decode.
pub fn frame<'p>(
    h: &Header,
    encoding: Encoding,
    payload: &'p [u8],
    max: usize,
) -> Result<(usize, Option<jpeg::Decoded<'p>>), String> {
    let jpeg = match encoding {
        Encoding::Raw => None,
        Encoding::Jpeg => {
            let d = jpeg::open(payload)?;
            if (d.width, d.height) != (h.width, h.height) {
                return Err(format!(
                    "a JPEG of {}x{} for a frame of {}x{}",
                    d.width, d.height, h.width, h.height
                ));
            }
            Some(d)
        }
    };
    let len = jpeg.as_ref().map_or(payload.len(), |d| d.len);
    if len > max {
        return Err(format!(
            "frame {} has {len} bytes, above --max-frame-len {max}",
            h.number
        ));
    }
    if h.number == 0 || h.number > MAX_NUMBER {
        return Err(format!("frame number {} is out of range", h.number));
    }
    if jpeg.is_none() && h.format != PixelFormat::Raw {
        let need = frame_len(h.format, h.width, h.height, h.stride);
        if need.is_none_or(|n| len < n) {
            return Err(format!(
                "frame {}: {len} bytes (stride {}) cannot hold a {}x{} {} image",
                h.number, h.stride, h.width, h.height, h.format
            ));
        }
    }
    Ok((len, jpeg))
}

/// Bytes a frame of this geometry needs (`None`: no such frame): the
/// library's rule for frames it converts (`shmcast::convert::frame_len`),
/// and, as the conversion also refuses, no RGB image too large to hold.
fn frame_len(format: PixelFormat, width: u32, height: u32, stride: u32) -> Option<usize> {
    let needed = shmcast::convert::frame_len(format, width, height, stride)?;
    (width as usize)
        .checked_mul(height as usize)?
        .checked_mul(3)?;
    Some(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Kind, State};
    use shmcast::convert::{to_rgb24, ConvertError};

    const FORMATS: [PixelFormat; 8] = [
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Gray8,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::I420,
    ];

    #[test]
    fn frame_lengths_follow_the_rule_frames_are_converted_by() {
        let mut out = Vec::new();
        for format in FORMATS {
            for (w, h, s) in
                (0..7).flat_map(|w| (0..7).flat_map(move |h| (0..30).map(move |s| (w, h, s))))
            {
                let convert =
                    |len: usize| to_rgb24(format, w, h, s, &vec![0; len], &mut Vec::new());
                let at = format!("{w}x{h} {format} stride {s}");
                match frame_len(format, w, h, s) {
                    Some(n) => {
                        assert!(
                            to_rgb24(format, w, h, s, &vec![0; n], &mut out).is_ok(),
                            "{at}"
                        );
                        if n > 0 {
                            assert!(
                                matches!(convert(n - 1), Err(ConvertError::TooShort { .. })),
                                "{at}"
                            );
                        }
                    }
                    None => assert!(convert(4096).is_err(), "{at}"),
                }
            }
        }
    }

    fn gray(stride: u32) -> Header {
        Header {
            kind: Kind::Frame(Encoding::Raw),
            state: State::Live,
            width: 4,
            height: 2,
            stride,
            format: PixelFormat::Gray8,
            number: 5,
            timestamp_ns: 0,
            source_max_frame_len: 8,
            source_instance: 1,
            source_max_metadata: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn frames_are_refused_with_a_reason_before_anything_is_made_of_them() {
        let why = |h: &Header, payload: &[u8], max| frame(h, Encoding::Raw, payload, max).err();
        assert_eq!(why(&gray(4), &[0; 8], 8), None);
        assert_eq!(why(&gray(0), &[0; 8], 8), None, "stride 0: tightly packed");
        // Rows that end past the bytes: the last starts at byte 1000.
        let far = why(&gray(1000), &[0; 8], 4096).unwrap();
        assert!(
            far.contains("stride 1000") && far.contains("cannot hold a 4x2 gray8"),
            "{far}"
        );
        assert!(why(&gray(4), &[0; 8], 7)
            .unwrap()
            .contains("above --max-frame-len 7"));
        let rgb = Header {
            format: PixelFormat::Rgb24,
            stride: 12,
            ..gray(4)
        };
        assert!(why(&rgb, &[0; 8], 64)
            .unwrap()
            .contains("cannot hold a 4x2 rgb24 image"));
        for number in [0, MAX_NUMBER + 1, u64::MAX] {
            let h = Header { number, ..gray(4) };
            assert!(why(&h, &[0; 8], 8).unwrap().contains("out of range"));
        }
        // nv12 with a stride: the UV plane's last row must be there too.
        let nv12 = Header {
            format: PixelFormat::Nv12,
            stride: 6,
            ..gray(4)
        };
        assert!(why(&nv12, &[0; 6 * 2 + 4 - 1], 64).is_some());
        assert_eq!(why(&nv12, &[0; 6 * 2 + 4], 64), None);
        let raw = Header {
            format: PixelFormat::Raw,
            width: 0,
            height: 0,
            stride: 0,
            ..gray(4)
        };
        assert_eq!(why(&raw, &[0; 3], 8), None);
    }
}
