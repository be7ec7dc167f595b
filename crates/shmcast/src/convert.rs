//! Pixel conversions, for showing frames: every [`PixelFormat`] a channel
//! carries into packed 8-bit RGB (`rgb24`), as `shmcast snapshot` and
//! `view` need it and a binding can use it.
//!
//! YUV formats are read as ffmpeg writes them by default: BT.601 with
//! limited ("TV") range. Chroma is taken from the nearest sample, not
//! interpolated (ffmpeg interpolates by default; with
//! `-sws_flags neighbor+full_chroma_int+accurate_rnd` it does what this
//! does, and the two agree within one level, which the CLI's tests check). Everything about a frame's layout is
//! checked against the bytes given before any is read: a frame described
//! wrongly (or by a peer that lies) is an error, never an out-of-bounds
//! read.

use crate::channel::PixelFormat;

/// Why a frame could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Raw frames have no pixels to convert.
    #[error("a raw frame has no pixel format to convert from")]
    NoPixels,
    /// The width, height or stride do not fit the format, or the frame has
    /// no pixels (a width or height of 0).
    #[error("{width}x{height} with stride {stride} is not a valid {format} frame")]
    Geometry {
        /// The format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per row of the first plane.
        stride: u32,
    },
    /// The frame has fewer bytes than its geometry needs.
    #[error(
        "a {width}x{height} {format} frame with stride {stride} needs {needed} bytes; it has {got}"
    )]
    TooShort {
        /// The format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per row of the first plane.
        stride: u32,
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

/// How many bytes a `width` x `height` frame of `format` whose first
/// plane's rows are `stride` bytes apart (0: the format's least) needs:
/// every row of every plane within the bytes, each plane's last row
/// unpadded (for `i420` the chroma planes' rows are half the stride, for
/// `nv12` the UV plane's are as long as the Y plane's). `None` when there
/// is no such frame: raw, no pixels (a width or height of 0), a stride
/// shorter than a row, an odd size where the format halves it, or a size
/// that overflows. [`to_rgb24`] checks frames by this rule; code that
/// takes frames from elsewhere (the bridge) can refuse the same ones.
pub fn frame_len(format: PixelFormat, width: u32, height: u32, stride: u32) -> Option<usize> {
    let row = format.min_stride(width);
    let stride = if stride == 0 { row } else { stride };
    let (w, h, s, row) = (
        width as usize,
        height as usize,
        stride as usize,
        row as usize,
    );
    // A frame of no pixels has nothing to show: refused like any other
    // geometry that does not fit (`view` and `snapshot` say so and go on).
    if format == PixelFormat::Raw || w == 0 || h == 0 || s < row {
        return None;
    }
    let chroma_420 = matches!(format, PixelFormat::Nv12 | PixelFormat::I420);
    if (chroma_420 && (w % 2 != 0 || h % 2 != 0 || s % 2 != 0))
        || (format == PixelFormat::Yuyv && w % 2 != 0)
    {
        return None;
    }
    // Checked; each other product below is at most `luma` (`s >= w`).
    let luma = s.checked_mul(h)?;
    match format {
        PixelFormat::Nv12 => (s * (h / 2 - 1))
            .checked_add(w)
            .and_then(|uv| luma.checked_add(uv)),
        PixelFormat::I420 => {
            let (cs, ch) = (s / 2, h / 2);
            (cs * ch)
                .checked_add(cs * (ch - 1) + w / 2)
                .and_then(|uv| luma.checked_add(uv))
        }
        _ => (s * (h - 1)).checked_add(row),
    }
}

/// Converts one frame to packed RGB24 (`width * height * 3` bytes, rows
/// without padding), written to `out` (resized as needed). `stride` is the
/// bytes per row of the first plane (0: the format's minimum); for `i420`
/// the chroma planes' rows are half of it, for `nv12` the UV plane's rows
/// are as long as the Y plane's.
///
/// # Errors
/// [`ConvertError`] when the format is raw, the geometry does not fit the
/// format, or `src` is shorter than the geometry needs.
pub fn to_rgb24(
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
    src: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    let stride = if stride == 0 {
        format.min_stride(width)
    } else {
        stride
    };
    let bad = || ConvertError::Geometry {
        format,
        width,
        height,
        stride,
    };
    if format == PixelFormat::Raw {
        return Err(ConvertError::NoPixels);
    }
    let (w, h, s) = (width as usize, height as usize, stride as usize);
    let needed = frame_len(format, width, height, stride).ok_or_else(bad)?;
    // The Y plane of nv12/i420 (within `needed`). No overflow for any
    // format: `needed` fits in `src`, and `s * h` exceeds
    // `s * (h - 1) + row` by less than a stride.
    let luma = s * h;
    if src.len() < needed {
        return Err(ConvertError::TooShort {
            format,
            width,
            height,
            stride,
            needed,
            got: src.len(),
        });
    }
    let pixels = w
        .checked_mul(h)
        .and_then(|p| p.checked_mul(3))
        .ok_or_else(bad)?;
    out.clear();
    out.resize(pixels, 0);
    for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
        let line = &src[y * s..];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let rgb = match format {
                PixelFormat::Rgb24 => [line[3 * x], line[3 * x + 1], line[3 * x + 2]],
                PixelFormat::Bgr24 => [line[3 * x + 2], line[3 * x + 1], line[3 * x]],
                PixelFormat::Rgba => [line[4 * x], line[4 * x + 1], line[4 * x + 2]],
                PixelFormat::Bgra => [line[4 * x + 2], line[4 * x + 1], line[4 * x]],
                PixelFormat::Gray8 => [line[x]; 3],
                PixelFormat::Yuyv => {
                    let pair = &line[(x / 2) * 4..];
                    yuv(pair[(x % 2) * 2], pair[1], pair[3])
                }
                PixelFormat::Nv12 => {
                    let uv = &src[luma + (y / 2) * s + (x / 2) * 2..];
                    yuv(line[x], uv[0], uv[1])
                }
                PixelFormat::I420 => {
                    let (cs, ch) = (s / 2, h / 2);
                    let u = src[luma + (y / 2) * cs + x / 2];
                    let v = src[luma + cs * ch + (y / 2) * cs + x / 2];
                    yuv(line[x], u, v)
                }
                PixelFormat::Raw => unreachable!("refused above"),
            };
            px.copy_from_slice(&rgb);
        }
    }
    Ok(())
}

/// BT.601 limited-range YUV to RGB, in 16-bit fixed point (the
/// coefficients 1.164, 1.596, 0.392, 0.813 and 2.017, times 65536),
/// rounded.
fn yuv(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16) * 76_309;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clip = |x: i32| ((x + 32_768) >> 16).clamp(0, 255) as u8;
    [
        clip(c + 104_597 * e),
        clip(c - 25_675 * d - 53_279 * e),
        clip(c + 132_201 * d),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_gives_the_colour_it_encodes() {
        let mut out = Vec::new();
        // One 2x2 frame per format, all the same orange: RGB (255, 128, 0),
        // YUV (limited range) (146, 53, 193).
        let cases: [(PixelFormat, Vec<u8>); 5] = [
            (PixelFormat::Rgb24, [255, 128, 0].repeat(4)),
            (PixelFormat::Bgr24, [0, 128, 255].repeat(4)),
            (PixelFormat::Rgba, [255, 128, 0, 9].repeat(4)),
            (PixelFormat::Bgra, [0, 128, 255, 9].repeat(4)),
            (PixelFormat::Yuyv, [146, 53, 146, 193].repeat(2)),
        ];
        for (format, frame) in cases {
            to_rgb24(format, 2, 2, 0, &frame, &mut out).unwrap();
            for px in out.chunks(3) {
                let d = px
                    .iter()
                    .zip([255u8, 128, 0])
                    .map(|(a, b)| a.abs_diff(b))
                    .max();
                assert!(d <= Some(2), "{format}: {px:?}");
            }
        }
        let nv12 = [146, 146, 146, 146, 53, 193];
        let i420 = [146, 146, 146, 146, 53, 193];
        for (format, frame) in [(PixelFormat::Nv12, nv12), (PixelFormat::I420, i420)] {
            to_rgb24(format, 2, 2, 0, &frame, &mut out).unwrap();
            assert!(
                out.chunks(3)
                    .all(|px| px[0] > 250 && px[1].abs_diff(128) <= 2 && px[2] < 3),
                "{format}: {out:?}"
            );
        }
        to_rgb24(PixelFormat::Gray8, 2, 2, 0, &[7; 4], &mut out).unwrap();
        assert_eq!(out, [7; 12]);
    }

    #[test]
    fn strides_and_the_unpadded_last_row_are_honoured() {
        let mut out = Vec::new();
        // 1x2 rgb24 with a stride of 5: the last row is 3 bytes.
        let frame = [1, 2, 3, 0xEE, 0xEE, 4, 5, 6];
        to_rgb24(PixelFormat::Rgb24, 1, 2, 5, &frame, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn lies_about_the_geometry_are_errors_not_reads_past_the_end() {
        let mut out = Vec::new();
        let f = PixelFormat::Rgb24;
        assert!(matches!(
            to_rgb24(f, 4, 4, 0, &[0; 47], &mut out),
            Err(ConvertError::TooShort { .. })
        ));
        assert!(matches!(
            to_rgb24(f, 4, 4, 11, &[0; 99], &mut out),
            Err(ConvertError::Geometry { .. })
        ));
        assert!(to_rgb24(f, u32::MAX, u32::MAX, 0, &[0; 16], &mut out).is_err());
        assert!(to_rgb24(f, 1 << 20, 1 << 20, u32::MAX, &[0; 16], &mut out).is_err());
        assert!(to_rgb24(PixelFormat::Nv12, 3, 2, 0, &[0; 64], &mut out).is_err());
        assert!(to_rgb24(PixelFormat::Yuyv, 3, 1, 0, &[0; 64], &mut out).is_err());
        assert_eq!(
            to_rgb24(PixelFormat::Raw, 1, 1, 0, &[0; 4], &mut out),
            Err(ConvertError::NoPixels)
        );
        assert!(to_rgb24(PixelFormat::I420, 4, 4, 0, &[0; 23], &mut out).is_err());
        to_rgb24(PixelFormat::I420, 4, 4, 0, &[0; 24], &mut out).unwrap();
        // No pixels: nothing to show, said as a geometry (view and snapshot
        // report it and go on).
        for (w, h) in [(0, 4), (4, 0), (0, 0)] {
            let e = to_rgb24(f, w, h, 0, &[0; 64], &mut out).unwrap_err();
            assert!(matches!(e, ConvertError::Geometry { .. }), "{e}");
        }
    }
}
