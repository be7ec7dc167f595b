//! JPEG for links that cannot carry raw video: the exporter converts any
//! pixel format to RGB (gray stays gray) and encodes; the importer decodes
//! straight into its loan.

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::{ColorType, ExtendedColorType, ImageDecoder};
use shmcast::{FrameInfo, PixelFormat};

/// Encodes one frame at `quality` (1-100), appending to `out`. `scratch`
/// holds the RGB conversion between calls.
pub fn encode(
    info: &FrameInfo,
    payload: &[u8],
    quality: u8,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let m = &info.meta;
    let (pixels, color) = if m.format == PixelFormat::Gray8 {
        // Rows without padding, as the encoder wants them.
        let (w, h, stride) = (m.width as usize, m.height as usize, m.stride as usize);
        let stride = stride.max(w);
        if w == 0 || h == 0 || payload.len() < stride * (h - 1) + w {
            return Err(format!(
                "gray8 frame of {w}x{h} has {} bytes",
                payload.len()
            ));
        }
        scratch.clear();
        for row in payload.chunks(stride).take(h) {
            scratch.extend_from_slice(&row[..w]);
        }
        (&scratch[..], ExtendedColorType::L8)
    } else {
        shmcast::convert::to_rgb24(m.format, m.width, m.height, m.stride, payload, scratch)
            .map_err(|e| e.to_string())?;
        (&scratch[..], ExtendedColorType::Rgb8)
    };
    if m.width > 65_535 || m.height > 65_535 {
        return Err(format!(
            "{}x{} is larger than JPEG allows (65535x65535)",
            m.width, m.height
        ));
    }
    JpegEncoder::new_with_quality(&mut *out, quality)
        .encode(pixels, m.width, m.height, color)
        .map_err(|e| e.to_string())
}

/// A JPEG's size and what it decodes to, read from its headers.
pub struct Decoded<'a> {
    decoder: JpegDecoder<std::io::Cursor<&'a [u8]>>,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub len: usize,
}

/// Reads a JPEG's headers (untrusted bytes): RGB and gray images only,
/// whole (the decoder fills a cut-off image with garbage rather than fail,
/// so a JPEG must end with its end-of-image marker).
pub fn open(jpeg: &[u8]) -> Result<Decoded<'_>, String> {
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err("a JPEG without its end (cut off?)".to_owned());
    }
    let decoder = JpegDecoder::new(std::io::Cursor::new(jpeg)).map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    let format = match decoder.color_type() {
        ColorType::Rgb8 => PixelFormat::Rgb24,
        ColorType::L8 => PixelFormat::Gray8,
        other => {
            return Err(format!(
                "a JPEG of {other:?} pixels; the exporter sends RGB or gray"
            ))
        }
    };
    let len = usize::try_from(decoder.total_bytes()).map_err(|_| "a JPEG too large to decode")?;
    Ok(Decoded {
        decoder,
        width,
        height,
        format,
        len,
    })
}

impl Decoded<'_> {
    /// Decodes into `out`, which must be [`len`](Decoded::len) bytes.
    pub fn decode_into(self, out: &mut [u8]) -> Result<(), String> {
        self.decoder.read_image(out).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmcast::FrameMeta;

    fn info(w: u32, h: u32, format: PixelFormat) -> FrameInfo {
        FrameInfo {
            number: 1,
            len: format.frame_len(w, h).unwrap(),
            meta: FrameMeta::new(w, h, format),
        }
    }

    #[test]
    fn rgb_and_gray_come_back_close_to_what_went_in() {
        for format in [PixelFormat::Rgb24, PixelFormat::Gray8, PixelFormat::Bgra] {
            let info = info(64, 32, format);
            let frame: Vec<u8> = (0..info.len).map(|i| (i / 7 % 200) as u8).collect();
            let (mut scratch, mut jpeg) = (Vec::new(), Vec::new());
            encode(&info, &frame, 95, &mut scratch, &mut jpeg).unwrap();
            let d = open(&jpeg).unwrap();
            assert_eq!((d.width, d.height), (64, 32));
            let want = if format == PixelFormat::Gray8 {
                PixelFormat::Gray8
            } else {
                PixelFormat::Rgb24
            };
            assert_eq!(d.format, want);
            let mut out = vec![0; d.len];
            d.decode_into(&mut out).unwrap();
            assert_eq!(out.len(), want.frame_len(64, 32).unwrap());
        }
    }

    #[test]
    fn garbage_and_short_frames_are_errors() {
        assert!(open(b"not a jpeg").is_err());
        assert!(open(&[0xFF, 0xD8, 0xFF]).is_err());
        // A good JPEG cut short is refused, not decoded into garbage.
        let whole = info(64, 32, PixelFormat::Rgb24);
        let (mut scratch, mut jpeg) = (Vec::new(), Vec::new());
        encode(&whole, &vec![90; whole.len], 90, &mut scratch, &mut jpeg).unwrap();
        assert!(open(&jpeg).is_ok());
        assert!(open(&jpeg[..jpeg.len() - 40]).is_err());
        let info = info(64, 32, PixelFormat::Rgb24);
        let (mut scratch, mut jpeg) = (Vec::new(), Vec::new());
        assert!(encode(&info, &[0; 10], 90, &mut scratch, &mut jpeg).is_err());
        let raw = FrameInfo {
            meta: FrameMeta::raw(),
            ..info
        };
        assert!(encode(&raw, &[0; 10], 90, &mut scratch, &mut jpeg).is_err());
    }
}
