//! Pixel conversions: every [`PixelFormat`] a channel carries into packed
//! 8-bit RGB (`rgb24`), as `shmcast snapshot` and `view` need it and a
//! binding can use it ([`to_rgb24`]), and packed RGB into every format
//! ([`from_rgb24`]), as a derived channel (`shmcast derive`) needs it.
//!
//! YUV formats are read and written as ffmpeg does by default: BT.601 with
//! limited ("TV") range; gray is full range (`gray = 0.299 R + 0.587 G +
//! 0.114 B`, as ffmpeg's `gray`). Written 4:2:x chroma is the mean of the
//! pixels it covers. Chroma is taken from the nearest sample, not
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
    // `min_stride` saturates: a row that does not fit in a u32 is no frame
    // (taken for one, the rows after it would be read past its bytes).
    if row == u32::MAX {
        return None;
    }
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

/// Converts packed RGB24 (`width * height * 3` bytes, rows without
/// padding) into one tightly packed frame of `format` (rows
/// [`PixelFormat::min_stride`] apart; [`frame_len`] with stride 0 bytes),
/// written to the start of `out`.
///
/// # Errors
/// [`ConvertError`] when the format is raw, the size does not fit the
/// format (an odd width for `yuyv`, odd sizes for `nv12` and `i420`), or
/// `rgb` or `out` is shorter than the frame needs (`TooShort` names the
/// shorter one's format: `rgb24` for the input).
pub fn from_rgb24(
    format: PixelFormat,
    width: u32,
    height: u32,
    rgb: &[u8],
    out: &mut [u8],
) -> Result<(), ConvertError> {
    if format == PixelFormat::Raw {
        return Err(ConvertError::NoPixels);
    }
    let stride = format.min_stride(width);
    let needed = frame_len(format, width, height, 0).ok_or(ConvertError::Geometry {
        format,
        width,
        height,
        stride,
    })?;
    let (w, h) = (width as usize, height as usize);
    // At most `needed` for every format but gray8 and the 4:2:0 ones,
    // whose output is smaller than their input: checked, then.
    let pixels = w.checked_mul(h).and_then(|p| p.checked_mul(3));
    let short = |format, stride, needed, got| ConvertError::TooShort {
        format,
        width,
        height,
        stride,
        needed,
        got,
    };
    match pixels {
        Some(p) if rgb.len() >= p => {}
        _ => {
            let p = pixels.unwrap_or(usize::MAX);
            return Err(short(
                PixelFormat::Rgb24,
                width.saturating_mul(3),
                p,
                rgb.len(),
            ));
        }
    }
    if out.len() < needed {
        return Err(short(format, stride, needed, out.len()));
    }
    let rows = rgb.chunks_exact(w * 3).take(h);
    match format {
        PixelFormat::Rgb24 => out[..w * h * 3].copy_from_slice(&rgb[..w * h * 3]),
        // Plain indexed stores over exact chunks: what the compiler turns
        // into vector shuffles (an array copied per pixel was 3x slower).
        PixelFormat::Bgr24 => {
            for (o, i) in out[..w * h * 3]
                .chunks_exact_mut(3)
                .zip(rgb.chunks_exact(3))
            {
                o[0] = i[2];
                o[1] = i[1];
                o[2] = i[0];
            }
        }
        PixelFormat::Rgba => add_alpha::<0, 2>(&rgb[..w * h * 3], &mut out[..w * h * 4]),
        PixelFormat::Bgra => add_alpha::<2, 0>(&rgb[..w * h * 3], &mut out[..w * h * 4]),
        PixelFormat::Gray8 => {
            for (o, i) in out.iter_mut().zip(rgb.chunks_exact(3)).take(w * h) {
                *o = gray([i[0], i[1], i[2]]);
            }
        }
        PixelFormat::Yuyv => {
            for (o, row) in out.chunks_exact_mut(w * 2).zip(rows) {
                for (o, pair) in o.chunks_exact_mut(4).zip(row.chunks_exact(6)) {
                    let (a, b) = ([pair[0], pair[1], pair[2]], [pair[3], pair[4], pair[5]]);
                    let (u, v) = chroma(&[a, b]);
                    o.copy_from_slice(&[luma(a), u, luma(b), v]);
                }
            }
        }
        PixelFormat::Nv12 | PixelFormat::I420 => {
            let (luma_plane, chroma_planes) = out[..needed].split_at_mut(w * h);
            for (o, row) in luma_plane.chunks_exact_mut(w).zip(rows) {
                for (o, px) in o.iter_mut().zip(row.chunks_exact(3)) {
                    *o = luma([px[0], px[1], px[2]]);
                }
            }
            let (cw, ch) = (w / 2, h / 2);
            for cy in 0..ch {
                let (top, bottom) = (&rgb[2 * cy * w * 3..], &rgb[(2 * cy + 1) * w * 3..]);
                for cx in 0..cw {
                    let at = |row: &[u8], x: usize| [row[3 * x], row[3 * x + 1], row[3 * x + 2]];
                    let block = [
                        at(top, 2 * cx),
                        at(top, 2 * cx + 1),
                        at(bottom, 2 * cx),
                        at(bottom, 2 * cx + 1),
                    ];
                    let (u, v) = chroma(&block);
                    if format == PixelFormat::Nv12 {
                        chroma_planes[cy * w + 2 * cx] = u;
                        chroma_planes[cy * w + 2 * cx + 1] = v;
                    } else {
                        chroma_planes[cy * cw + cx] = u;
                        chroma_planes[cw * ch + cy * cw + cx] = v;
                    }
                }
            }
        }
        PixelFormat::Raw => unreachable!("refused above"),
    }
    Ok(())
}

/// RGB pixels to 4-byte pixels of R (from byte `R` of each), G, B (from
/// byte `B`) and an opaque alpha. Four pixels at a time, so that the
/// compiler makes it one shuffle per four (a pixel at a time it did not).
fn add_alpha<const R: usize, const B: usize>(rgb: &[u8], out: &mut [u8]) {
    let mut outs = out.chunks_exact_mut(16);
    let mut ins = rgb.chunks_exact(12);
    for (o, i) in (&mut outs).zip(&mut ins) {
        for p in 0..4 {
            o[4 * p] = i[3 * p + R];
            o[4 * p + 1] = i[3 * p + 1];
            o[4 * p + 2] = i[3 * p + B];
            o[4 * p + 3] = 255;
        }
    }
    let rest = outs.into_remainder().chunks_exact_mut(4);
    for (o, i) in rest.zip(ins.remainder().chunks_exact(3)) {
        o.copy_from_slice(&[i[R], i[1], i[B], 255]);
    }
}

/// Full-range luma of an RGB pixel, as ffmpeg's `gray` (16-bit fixed
/// point: 0.299, 0.587, 0.114 times 65536), rounded.
fn gray([r, g, b]: [u8; 3]) -> u8 {
    ((19_595 * u32::from(r) + 38_470 * u32::from(g) + 7_471 * u32::from(b) + 32_768) >> 16) as u8
}

/// BT.601 limited-range luma of an RGB pixel (0.257, 0.504, 0.098 times
/// 65536, plus 16), rounded.
fn luma([r, g, b]: [u8; 3]) -> u8 {
    let y = 16_829 * i32::from(r) + 33_039 * i32::from(g) + 6_416 * i32::from(b);
    (((y + 32_768) >> 16) + 16).clamp(0, 255) as u8
}

/// BT.601 limited-range chroma of the mean of `pixels` (2 or 4 of them:
/// -0.148, -0.291, 0.439 and 0.439, -0.368, -0.071 times 65536, plus
/// 128), rounded.
fn chroma(pixels: &[[u8; 3]]) -> (u8, u8) {
    let n = pixels.len() as i32;
    let sum = |c: usize| pixels.iter().map(|p| i32::from(p[c])).sum::<i32>();
    let (r, g, b) = (sum(0), sum(1), sum(2));
    let u = -9_714 * r - 19_071 * g + 28_784 * b;
    let v = 28_784 * r - 24_103 * g - 4_681 * b;
    let round = |x: i32| {
        let scale = 65_536 * n;
        ((x + scale / 2).div_euclid(scale) + 128).clamp(0, 255) as u8
    };
    (round(u), round(v))
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
    fn every_format_written_from_rgb_reads_back_as_that_rgb() {
        // A 4x2 frame of 2x2 blocks of one colour each (so 4:2:0 chroma
        // loses nothing), through every format and back.
        let colours = [[255u8, 128, 0], [12, 200, 90]];
        let rgb: Vec<u8> = (0..8).flat_map(|i| colours[(i % 4) / 2]).collect();
        let mut back = Vec::new();
        for format in [
            PixelFormat::Rgb24,
            PixelFormat::Bgr24,
            PixelFormat::Rgba,
            PixelFormat::Bgra,
            PixelFormat::Yuyv,
            PixelFormat::Nv12,
            PixelFormat::I420,
        ] {
            let mut frame = vec![0; frame_len(format, 4, 2, 0).unwrap()];
            from_rgb24(format, 4, 2, &rgb, &mut frame).unwrap();
            to_rgb24(format, 4, 2, 0, &frame, &mut back).unwrap();
            let worst = back.iter().zip(&rgb).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(worst <= Some(2), "{format}: {back:?}");
        }
        let mut orange = [0u8; 6];
        from_rgb24(
            PixelFormat::Yuyv,
            2,
            1,
            &[255, 128, 0].repeat(2),
            &mut orange[..4],
        )
        .unwrap();
        assert_eq!(orange[..4], [146, 53, 146, 193]);
        from_rgb24(
            PixelFormat::Gray8,
            2,
            1,
            &[255, 255, 255, 0, 0, 0],
            &mut orange,
        )
        .unwrap();
        assert_eq!(orange[..2], [255, 0]);
    }

    #[test]
    fn writing_a_frame_checks_both_buffers_and_the_size() {
        let f = PixelFormat::Nv12;
        let mut out = [0u8; 6];
        assert!(matches!(
            from_rgb24(f, 2, 2, &[0; 11], &mut out),
            Err(ConvertError::TooShort {
                format: PixelFormat::Rgb24,
                ..
            })
        ));
        assert!(matches!(
            from_rgb24(f, 2, 2, &[0; 12], &mut out[..5]),
            Err(ConvertError::TooShort {
                format: PixelFormat::Nv12,
                ..
            })
        ));
        assert!(matches!(
            from_rgb24(f, 3, 2, &[0; 18], &mut out),
            Err(ConvertError::Geometry { .. })
        ));
        assert!(from_rgb24(PixelFormat::Rgb24, u32::MAX, u32::MAX, &[0; 3], &mut out).is_err());
        assert_eq!(
            from_rgb24(PixelFormat::Raw, 1, 1, &[0; 3], &mut out),
            Err(ConvertError::NoPixels)
        );
        from_rgb24(f, 2, 2, &[0; 12], &mut out).unwrap();
        assert_eq!(out, [16, 16, 16, 16, 128, 128]);
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
        // A row wider than a u32 can say (3 x 0x5555_5556 bytes): no frame,
        // not a short one.
        assert_eq!(frame_len(f, 0x5555_5556, 1, 0), None);
        assert_eq!(frame_len(PixelFormat::Bgra, 1 << 30, 1, 0), None);
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
