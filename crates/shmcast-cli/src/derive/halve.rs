//! Halving: the derived shape a camera app asks for most (1920x1080 to
//! 960x540, a viewer's window) is an exact 2:1 reduction in both
//! directions, and for it a general resizer does more work than it needs.
//!
//! Bilinear convolution at 2:1 (the filter's support doubled, as
//! `fast_image_resize` and ffmpeg's swscale both do when shrinking) weighs
//! the four source pixels around each output pixel 1, 3, 3, 1 in each
//! direction. At the image's edges the taps outside it are left out and the
//! rest renormalised (3, 3, 1 over 7), as the resizer does, so both agree
//! within rounding (the resizer rounds to 8 bits between its passes, this
//! rounds once).
//!
//! The source is read a row at a time, through a ring of four rows: each
//! source row is copied out of shared memory once, into a buffer that stays
//! in the cache, instead of copying the whole 6 MB frame first and reading
//! it again. The vertical sums of a row come first (16-bit, four rows
//! added across the whole row, which the compiler vectorises), then the
//! horizontal ones, half as many rows.

/// An exact 2:1 bilinear reduction, row by row; keeps its buffers.
#[derive(Default)]
pub struct Halver {
    /// Source rows `r` live in `rows[r % 4]`.
    rows: [Vec<u8>; 4],
    /// The vertical sums of the current output row, one per source byte.
    sums: Vec<u16>,
    /// The horizontal filter at every source position (see [`across`]).
    full: Vec<u8>,
    /// The current output row.
    row: Vec<u8>,
}

/// The weights of the four taps around an output pixel.
const TAPS: [u32; 4] = [1, 3, 3, 1];

impl Halver {
    /// Halves a `w` x `h` image of `B`-byte pixels (`w` and `h` even and
    /// not 0): `fill(r, buf)` copies source row `r` (`w * B` bytes) into
    /// `buf`, each once and in order; `put(y, row)` takes output row `y`.
    pub fn halve<const B: usize, E>(
        &mut self,
        w: usize,
        h: usize,
        mut fill: impl FnMut(usize, &mut [u8]),
        mut put: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        assert!(w >= 2 && h >= 2 && w % 2 == 0 && h % 2 == 0);
        let (tw, th) = (w / 2, h / 2);
        let line = w * B;
        for r in &mut self.rows {
            r.resize(line, 0);
        }
        self.sums.resize(line, 0);
        self.row.resize(tw * B, 0);
        let mut loaded = 0;
        for y in 0..th {
            // Source rows 2y-1 ..= 2y+2, those inside the image.
            let first = (2 * y).saturating_sub(1);
            let last = (2 * y + 2).min(h - 1);
            while loaded <= last {
                fill(loaded, &mut self.rows[loaded % 4]);
                loaded += 1;
            }
            let vertical = if first + 3 == last {
                let [a, b, c, d] = [0, 1, 2, 3].map(|k| &self.rows[(first + k) % 4][..]);
                for ((((s, &a), &b), &c), &d) in self.sums.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                    *s = u16::from(a) + 3 * (u16::from(b) + u16::from(c)) + u16::from(d);
                }
                8
            } else {
                self.sums.fill(0);
                let mut weight = 0;
                for r in first..=last {
                    let k = r + 1 - 2 * y;
                    let tap = TAPS[k] as u16;
                    weight += TAPS[k];
                    for (s, &v) in self.sums.iter_mut().zip(&self.rows[r % 4]) {
                        *s += tap * u16::from(v);
                    }
                }
                weight
            };
            let (sums, full, row) = (&self.sums, &mut self.full, &mut self.row);
            if vertical == 8 {
                across::<B>(sums, full, row, 8, |a| ((a + 32) >> 6) as u8);
            } else {
                // At most 7 * 8 * 255: the sums fit 16 bits.
                let all = (vertical * 8) as u16;
                across::<B>(sums, full, row, vertical, |a| ((a + all / 2) / all) as u8);
            }
            put(y, &self.row)?;
        }
        Ok(())
    }
}

/// The horizontal pass: `row` (w/2 pixels) from `sums` (w pixels of
/// vertical sums whose weights add up to `vertical`); `scale` divides an
/// inner pixel's sum (weights adding up to `vertical * 8`), rounding.
///
/// The inner pixels are filtered at every source position first (`full`,
/// a loop over contiguous words that the compiler vectorises) and every
/// other one kept: twice the arithmetic of filtering only the kept ones,
/// but without gathering three bytes of every six, which it cannot
/// vectorise.
fn across<const B: usize>(
    sums: &[u16],
    full: &mut Vec<u8>,
    row: &mut [u8],
    vertical: u32,
    scale: impl Fn(u16) -> u8,
) {
    let tw = row.len() / B;
    let w = sums.len() / B;
    // Inner pixel x reads source pixels 2x-1 ..= 2x+2: `full[j]` is the
    // filter over the four pixels from the one of byte j.
    if tw > 2 {
        let n = sums.len();
        full.resize(n - 3 * B, 0);
        let taps = sums[..n - 3 * B]
            .iter()
            .zip(&sums[B..n - 2 * B])
            .zip(&sums[2 * B..n - B])
            .zip(&sums[3 * B..]);
        for (f, (((&a, &b), &c), &d)) in full.iter_mut().zip(taps) {
            *f = scale(a + 3 * (b + c) + d);
        }
        for (out, f) in row[B..(tw - 1) * B]
            .chunks_exact_mut(B)
            .zip(full[B..].chunks_exact(2 * B))
        {
            out.copy_from_slice(&f[..B]);
        }
    }
    // The edge pixels, with the taps inside the image renormalised.
    for x in [0, tw - 1] {
        let mut weight = 0;
        let mut acc = [0u32; B];
        for (k, tap) in TAPS.iter().enumerate() {
            let Some(p) = (2 * x + k).checked_sub(1).filter(|&p| p < w) else {
                continue;
            };
            weight += tap;
            for (a, &s) in acc.iter_mut().zip(&sums[p * B..(p + 1) * B]) {
                *a += tap * u32::from(s);
            }
        }
        let all = weight * vertical;
        for (out, a) in row[x * B..(x + 1) * B].iter_mut().zip(acc) {
            *out = ((a + all / 2) / all) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

    /// `Halver` on an image held in memory.
    fn halved<const B: usize>(src: &[u8], w: usize, h: usize) -> Vec<u8> {
        let mut out = vec![0u8; w / 2 * h / 2 * B];
        let line = w / 2 * B;
        Halver::default()
            .halve::<B, ()>(
                w,
                h,
                |r, buf| buf.copy_from_slice(&src[r * w * B..(r + 1) * w * B]),
                |y, row| {
                    out[y * line..(y + 1) * line].copy_from_slice(row);
                    Ok(())
                },
            )
            .unwrap();
        out
    }

    /// `fast_image_resize`'s bilinear convolution of the same image.
    fn resized(src: &[u8], w: usize, h: usize, pixel: PixelType, bpp: usize) -> Vec<u8> {
        let source = ImageRef::new(w as u32, h as u32, src, pixel).unwrap();
        let mut out = vec![0u8; w / 2 * h / 2 * bpp];
        let mut dst = Image::from_slice_u8(w as u32 / 2, h as u32 / 2, &mut out, pixel).unwrap();
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .use_alpha(false);
        Resizer::new().resize(&source, &mut dst, &options).unwrap();
        out
    }

    /// Bytes that vary from pixel to pixel and channel to channel, with
    /// sharp edges (the worst case for rounding differences).
    fn busy(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 7 < 3 {
                    (x >> 24) as u8
                } else {
                    (i * 37 % 251) as u8
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_resizer_within_rounding() {
        for (w, h) in [(2, 2), (4, 2), (2, 6), (6, 4), (64, 36), (130, 98)] {
            for seed in 1..4 {
                let src = busy(w * h * 3, seed);
                let ours = halved::<3>(&src, w, h);
                let theirs = resized(&src, w, h, PixelType::U8x3, 3);
                for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                    assert!(a.abs_diff(*b) <= 1, "{w}x{h} byte {i}: {a} against {b}");
                }
                let src = busy(w * h * 4, seed);
                let ours = halved::<4>(&src, w, h);
                let theirs = resized(&src, w, h, PixelType::U8x4, 4);
                for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                    assert!(
                        a.abs_diff(*b) <= 1,
                        "{w}x{h} rgba byte {i}: {a} against {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_to_its_edges() {
        let src = [200u8, 10, 99].repeat(10 * 6);
        assert_eq!(halved::<3>(&src, 10, 6), [200u8, 10, 99].repeat(5 * 3));
        assert_eq!(halved::<1>(&[255; 4], 2, 2), [255]);
    }

    #[test]
    fn every_source_row_is_read_once_in_order() {
        let mut read = Vec::new();
        Halver::default()
            .halve::<1, ()>(4, 8, |r, _| read.push(r), |_, _| Ok(()))
            .unwrap();
        assert_eq!(read, (0..8).collect::<Vec<_>>());
    }
}
