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

/// The most pixels a JPEG may declare per byte it has, beyond
/// [`PIXELS_FREE`]. Decoding costs time per pixel declared, not per byte
/// sent: a 632-byte JPEG that says 4000x5000 took seconds each. A baseline
/// JPEG spends at least two bits (a DC and an end-of-block code) on every
/// 8x8 block of every component, so even a flat image cannot pass 256
/// pixels per byte (gray), 85 (colour) or 170 (colour with 4:2:0 chroma);
/// a flat 1080p frame from the exporter's encoder is 36 (colour) or 84
/// (gray). Only progressive JPEGs, which skip runs of empty blocks, get
/// further, and the exporter never sends those.
const PIXELS_PER_BYTE: u64 = 1024;
/// Pixels any JPEG may declare: small images cost little to decode.
const PIXELS_FREE: u64 = 64 * 1024;

/// Reads a JPEG's headers (untrusted bytes): RGB and gray images only,
/// whole (the decoder fills a cut-off image with garbage rather than fail,
/// so a JPEG must end with its end-of-image marker), and no more pixels
/// than its size makes plausible.
pub fn open(jpeg: &[u8]) -> Result<Decoded<'_>, String> {
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err("a JPEG without its end (cut off?)".to_owned());
    }
    let decoder = JpegDecoder::new(std::io::Cursor::new(jpeg)).map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > PIXELS_PER_BYTE * jpeg.len() as u64 + PIXELS_FREE {
        return Err(format!(
            "a JPEG of {} bytes that says it is {width}x{height}: more than \
             {PIXELS_PER_BYTE} pixels per byte, which no image the exporter \
             makes has (refused undecoded)",
            jpeg.len()
        ));
    }
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
            metadata_len: 0,
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

    /// A JPEG of `w`x`h` flat pixels at quality 1: as few bytes per
    /// pixel as the exporter's encoder makes.
    fn flat(w: u32, h: u32, format: PixelFormat) -> Vec<u8> {
        let info = info(w, h, format);
        let (mut scratch, mut jpeg) = (Vec::new(), Vec::new());
        encode(&info, &vec![128; info.len], 1, &mut scratch, &mut jpeg).unwrap();
        jpeg
    }

    #[test]
    fn a_jpeg_declaring_far_more_pixels_than_its_bytes_can_hold_is_refused() {
        let mut bomb = flat(8, 8, PixelFormat::Rgb24);
        // SOF0 (FF C0): length, precision, then height and width.
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bomb[sof + 5..sof + 7].copy_from_slice(&5000u16.to_be_bytes());
        bomb[sof + 7..sof + 9].copy_from_slice(&4000u16.to_be_bytes());
        let why = open(&bomb).err().expect("refused");
        assert!(
            why.contains("4000x5000") && why.contains("pixels per byte"),
            "{why}"
        );
        // What the exporter sends for the flattest frames passes.
        for format in [PixelFormat::Rgb24, PixelFormat::Gray8] {
            let jpeg = flat(1920, 1080, format);
            let ratio = 1920 * 1080 / jpeg.len();
            assert!(ratio < 128, "{format}: {ratio} pixels per byte");
            assert!(open(&jpeg).is_ok(), "{format}");
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
