//! Derived channels: one channel made from another, at another size, pixel
//! format or rate, once for every app that wants that shape (`shmcast
//! derive SRC NAME`, or `from = "SRC"` in serve's config).
//!
//! # How a frame is made
//! The source is read with a [`Reader`] (leased when the source lets this
//! user lease, copied otherwise), so anything that publishes a channel can
//! be a source, and a source's restarts, stalls and take-overs are followed
//! as any reader follows them. A leased frame is copied out of shared
//! memory before it is shaped (its publisher may take it back meanwhile,
//! and the resizer wants a `&[u8]`, which bytes that can change must never
//! be); the lease's release then says whether the copy is whole. Each
//! source frame becomes at most one derived frame.
//!
//! A target of exactly half the source's width and height (1920x1080 to
//! 960x540), from a packed source in its own format or from rgb24 to any,
//! is made by [`halve`]: the same bilinear filter, a source row at a time
//! through a ring of four rows copied out of shared memory, so the frame
//! is never copied whole, and at about 0.6 of the general path's CPU. The
//! lease is then held while the frame is shaped (about 2 ms for 1080p),
//! not only while it is copied (0.5 ms): a publisher short of free slots
//! may take it back, and the frame is dropped, a little more often.
//! Every other shape goes the general way:
//!
//! 1. packed formats (rgb24, bgr24, rgba, bgra, gray8) are resized as they
//!    are; YUV sources (yuyv, nv12, i420) are first converted to rgb24 by
//!    the library's conversion, at the source's size;
//! 2. the resize is `fast_image_resize`'s bilinear convolution (SIMD,
//!    the filter's support grows with the downscale, so no aliasing): the
//!    whole frame to the target size (`stretch`), the largest centred part
//!    of the source with the target's aspect (`crop`), or the whole frame
//!    at its own aspect, centred on black (`letterbox`);
//! 3. the result is converted to the target format
//!    ([`shmcast::convert::from_rgb24`]; when the source's packed format is
//!    already the target's, the resize writes straight into the channel).
//!
//! The derived frame carries its source frame's number (while that is
//! above the channel's newest: after the source starts again from 1, the
//! derived numbers go on from their own), its timestamp and its per-frame
//! metadata.
//!
//! # Health follows the source
//! A source that is stalled, gone or missing makes the derived channel
//! stalled, its reason naming the source's; a source frame that cannot be
//! converted (its geometry does not fit its bytes or its format) stalls it
//! with that reason until a good frame comes.
//!
//! # Nobody reading, no work
//! While leasing is available on the derived channel (its lease table is
//! ours), readers that lease register in it, as every [`Reader`] does by
//! default. When none has been registered for [`IDLE_AFTER`], the derived
//! channel stops reading its source (and stops being one of the source's
//! readers) and says it is idle as its stall reason, until one registers.
//! A read-only subscriber writes nothing anywhere, so it cannot be seen: a
//! derived channel that only read-only readers use must say `idle = false`
//! (`--always`). Without a lease table (another user holds its name), the
//! channel always works.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod halve;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use shmcast::convert::{from_rgb24, to_rgb24};
use shmcast::{
    ErrorKind, Frame, FrameMeta, Health, Name, Next, PixelFormat, Publisher, Reader, SharedBytes,
};

use crate::notify::Beat;

/// How long a derived channel goes on working after its last registered
/// reader left.
pub const IDLE_AFTER: Duration = Duration::from_secs(5);

/// The longest the loop waits for a source frame before it looks at its
/// own readers and its stop flag again.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// How the source's aspect ratio meets the target's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// The whole source to the whole target: shapes change when the
    /// aspects differ.
    #[default]
    Stretch,
    /// The whole source at its own aspect, centred, with black bars.
    Letterbox,
    /// The largest centred part of the source that has the target's
    /// aspect, to the whole target.
    Crop,
}

/// Where a derived channel's frames come from, and how they are shaped
/// (the target's size and format are the job's `meta`, its highest rate
/// the job's `fps`).
#[derive(Clone, Debug, PartialEq)]
pub struct Derive {
    pub from: Name,
    pub fit: Fit,
    /// Whether to stop working while no reader is registered (see the
    /// module docs).
    pub idle: bool,
}

/// Makes derived frames; keeps its buffers from frame to frame.
#[derive(Default)]
pub struct Shaper {
    resizer: Resizer,
    halver: halve::Halver,
    /// The source frame, copied out of shared memory (`shape_shared`, on
    /// the general path).
    source: Vec<u8>,
    packed: Vec<u8>,
    small: Vec<u8>,
    rgb: Vec<u8>,
    canvas: Vec<u8>,
}

/// The pixel type `fast_image_resize` resizes a packed format as, and its
/// bytes per pixel.
fn pixel_type(format: PixelFormat) -> Option<(PixelType, usize)> {
    match format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => Some((PixelType::U8x3, 3)),
        PixelFormat::Rgba | PixelFormat::Bgra => Some((PixelType::U8x4, 4)),
        PixelFormat::Gray8 => Some((PixelType::U8, 1)),
        _ => None,
    }
}

impl Shaper {
    pub fn new() -> Shaper {
        Shaper::default()
    }

    /// Shapes the source frame `src` (described by `from`, whose words came
    /// from shared memory and are checked here) into `out`, a frame of
    /// `to` (tightly packed; `out` at least its length).
    pub fn shape(
        &mut self,
        from: &FrameMeta,
        src: &[u8],
        to: &FrameMeta,
        fit: Fit,
        out: &mut [u8],
    ) -> Result<(), String> {
        let (w, h) = (from.width, from.height);
        fits(from, src.len())?;
        // The source as one packed image of a format `fast_image_resize`
        // takes (rows unpadded): as it is, its rows repacked, or as rgb24.
        let (packed_format, (pixel, bpp)) = match pixel_type(from.format) {
            Some(p) => (from.format, p),
            None => (PixelFormat::Rgb24, (PixelType::U8x3, 3)),
        };
        let row = w as usize * bpp;
        let stride = if from.stride == 0 {
            row
        } else {
            from.stride as usize
        };
        let packed: &[u8] = if packed_format != from.format {
            to_rgb24(from.format, w, h, from.stride, src, &mut self.packed)
                .map_err(|e| e.to_string())?;
            &self.packed
        } else if stride == row {
            &src[..row * h as usize]
        } else {
            self.packed.clear();
            for r in src.chunks(stride).take(h as usize) {
                self.packed.extend_from_slice(&r[..row]);
            }
            &self.packed
        };
        let source = ImageRef::new(w, h, packed, pixel).map_err(|e| e.to_string())?;
        let (tw, th) = (to.width, to.height);
        let (dw, dh) = match fit {
            Fit::Letterbox => letterboxed(w, h, tw, th),
            Fit::Stretch | Fit::Crop => (tw, th),
        };
        let mut options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .use_alpha(false);
        if fit == Fit::Crop {
            options = options.fit_into_destination(None);
        }
        // Straight into the channel when nothing is left to do after.
        if packed_format == to.format && fit != Fit::Letterbox {
            let len = tw as usize * th as usize * bpp;
            let mut dst =
                Image::from_slice_u8(tw, th, &mut out[..len], pixel).map_err(|e| e.to_string())?;
            return self
                .resizer
                .resize(&source, &mut dst, &options)
                .map_err(|e| e.to_string());
        }
        self.small.resize(dw as usize * dh as usize * bpp, 0);
        let mut small =
            Image::from_slice_u8(dw, dh, &mut self.small, pixel).map_err(|e| e.to_string())?;
        self.resizer
            .resize(&source, &mut small, &options)
            .map_err(|e| e.to_string())?;
        let rgb: &[u8] = if packed_format == PixelFormat::Rgb24 {
            &self.small
        } else {
            to_rgb24(packed_format, dw, dh, 0, &self.small, &mut self.rgb)
                .map_err(|e| e.to_string())?;
            &self.rgb
        };
        let rgb = if fit == Fit::Letterbox {
            let (x0, y0) = (((tw - dw) / 2) as usize, ((th - dh) / 2) as usize);
            let line = tw as usize * 3;
            self.canvas.clear();
            self.canvas.resize(line * th as usize, 0);
            for (y, r) in rgb.chunks_exact(dw as usize * 3).enumerate() {
                let at = (y0 + y) * line + x0 * 3;
                self.canvas[at..at + r.len()].copy_from_slice(r);
            }
            &self.canvas
        } else {
            rgb
        };
        from_rgb24(to.format, tw, th, rgb, out).map_err(|e| e.to_string())
    }
}

/// Checks a source frame's words, which came from shared memory, against
/// its length in bytes.
fn fits(from: &FrameMeta, len: usize) -> Result<(), String> {
    let (w, h) = (from.width, from.height);
    let needed = shmcast::convert::frame_len(from.format, w, h, from.stride).ok_or_else(|| {
        format!(
            "a {}x{} {} frame with stride {} cannot be",
            w, h, from.format, from.stride
        )
    })?;
    if len < needed {
        return Err(format!(
            "a {}x{} {} frame with stride {} needs {needed} bytes; it has {len}",
            w, h, from.format, from.stride
        ));
    }
    Ok(())
}

/// Whether `to` is `from` halved in both directions, from a packed format
/// that the halving reads (the same format, or any from rgb24). The fit
/// does not matter: the aspect is the same.
fn halves(from: &FrameMeta, to: &FrameMeta) -> bool {
    let packed = pixel_type(from.format).is_some();
    packed
        && (to.format == from.format || from.format == PixelFormat::Rgb24)
        && from.width >= 2
        && from.height >= 2
        && from.width % 2 == 0
        && from.height % 2 == 0
        && to.width == from.width / 2
        && to.height == from.height / 2
}

impl Shaper {
    /// Shapes the source frame in shared memory `src` into `out` (see
    /// [`Shaper::shape`]): halved a row at a time where that applies,
    /// otherwise copied out first and shaped whole.
    pub fn shape_shared(
        &mut self,
        from: &FrameMeta,
        src: SharedBytes<'_>,
        to: &FrameMeta,
        fit: Fit,
        out: &mut [u8],
    ) -> Result<(), String> {
        if !halves(from, to) {
            self.source.resize(src.len(), 0);
            src.copy_to(&mut self.source);
            let copy = std::mem::take(&mut self.source);
            let shaped = self.shape(from, &copy, to, fit, out);
            self.source = copy;
            return shaped;
        }
        fits(from, src.len())?;
        let (w, h) = (from.width as usize, from.height as usize);
        let bpp = pixel_type(from.format).map_or(3, |(_, b)| b);
        let row = w * bpp;
        let stride = if from.stride == 0 {
            row
        } else {
            from.stride as usize
        };
        // Checked by `fits`: every row lies inside `src` (were one not to,
        // its ring slot would keep an older row: a wrong frame, never an
        // access outside the frame).
        let fill = |r: usize, buf: &mut [u8]| {
            let bytes = src.get(r * stride..r * stride + row);
            debug_assert!(bytes.is_some(), "row {r} outside a frame `fits` accepted");
            if let Some(bytes) = bytes {
                bytes.copy_to(buf);
            }
        };
        let (tw, th) = (to.width, to.height);
        // Rows go straight into `out` where the target format converts row
        // by row; into `small`, converted whole at the end, otherwise.
        let by_rows = to.format == from.format
            || matches!(
                to.format,
                PixelFormat::Rgb24
                    | PixelFormat::Bgr24
                    | PixelFormat::Rgba
                    | PixelFormat::Bgra
                    | PixelFormat::Gray8
            );
        let line = to.format.min_stride(tw) as usize;
        if by_rows && out.len() < line * th as usize {
            return Err(format!(
                "{} bytes do not hold a {tw}x{th} {} frame",
                out.len(),
                to.format
            ));
        }
        let small_line = tw as usize * bpp;
        if !by_rows {
            self.small.resize(small_line * th as usize, 0);
        }
        let small = &mut self.small;
        let same = to.format == from.format;
        let put = |y: usize, halved: &[u8]| -> Result<(), String> {
            if !by_rows {
                small[y * small_line..(y + 1) * small_line].copy_from_slice(halved);
                Ok(())
            } else if same {
                out[y * line..(y + 1) * line].copy_from_slice(halved);
                Ok(())
            } else {
                from_rgb24(to.format, tw, 1, halved, &mut out[y * line..(y + 1) * line])
                    .map_err(|e| e.to_string())
            }
        };
        match bpp {
            4 => self.halver.halve::<4, _>(w, h, fill, put)?,
            1 => self.halver.halve::<1, _>(w, h, fill, put)?,
            _ => self.halver.halve::<3, _>(w, h, fill, put)?,
        }
        if by_rows {
            Ok(())
        } else {
            from_rgb24(to.format, tw, th, &self.small, out).map_err(|e| e.to_string())
        }
    }
}

/// The size a `w` x `h` frame takes inside `tw` x `th` at its own aspect
/// (at least 1x1).
fn letterboxed(w: u32, h: u32, tw: u32, th: u32) -> (u32, u32) {
    let (w, h, tw64, th64) = (u64::from(w), u64::from(h), u64::from(tw), u64::from(th));
    let (dw, dh) = if w * th64 >= tw64 * h {
        (tw64, (tw64 * h + w / 2) / w)
    } else {
        ((th64 * w + h / 2) / h, th64)
    };
    (dw.clamp(1, tw64) as u32, dh.clamp(1, th64) as u32)
}

/// Checks a derive before it runs: not of itself.
pub fn check(name: &Name, derive: &Derive) -> Result<(), String> {
    if derive.from.to_string() == name.to_string() {
        return Err(format!(
            "channel {name} cannot be derived from itself (from = {:?})",
            derive.from.to_string()
        ));
    }
    Ok(())
}

/// What became of one source frame.
enum Made {
    /// A derived frame (published, or shaped for nothing).
    Frame,
    /// Nothing: the source frame was torn while being shaped (its lease
    /// revoked), or every slot of the derived channel is leased.
    Nothing,
}

/// Why a frame was not made.
enum Failed {
    /// The source frame cannot be shaped (said as the channel's stall).
    Source(String),
    /// The derived channel failed: the loop ends.
    Channel(String),
}

/// Shapes `frame` into the next frame of `publisher` (or into `own` when
/// there is none), numbered and stamped as its source frame.
fn make_one(
    shaper: &mut Shaper,
    publisher: Option<&mut Publisher>,
    frame: Frame<'_>,
    to: &FrameMeta,
    frame_len: usize,
    fit: Fit,
    own: &mut Vec<u8>,
) -> Result<Made, Failed> {
    let info = *frame.info();
    let mut target = *to;
    target.timestamp_ns = info.meta.timestamp_ns;
    // Copied out of shared memory before it is shaped (whole, or a row at a
    // time): the source's publisher may take a leased frame back (after
    // its max lease, which it chooses) while it is being shaped, and a
    // `&[u8]` over bytes that change is not to be had. `release` below says
    // whether the copy is whole; if not, what was made is thrown away.
    let Some(publisher) = publisher else {
        own.resize(frame_len, 0);
        let shaped = shaper.shape_shared(&info.meta, frame.bytes(), to, fit, own);
        let whole = frame.release().is_ok();
        return match shaped {
            Ok(()) if whole => Ok(Made::Frame),
            Ok(()) => Ok(Made::Nothing),
            Err(e) => Err(Failed::Source(e)),
        };
    };
    let mut loan = match publisher.loan(frame_len) {
        Ok(loan) => loan,
        Err(e) if e.kind() == ErrorKind::AllSlotsLeased => {
            let _ = frame.release();
            return Ok(Made::Nothing);
        }
        Err(e) => return Err(Failed::Channel(crate::one_line(&e))),
    };
    let shaped = shaper.shape_shared(&info.meta, frame.bytes(), to, fit, &mut loan);
    // The source frame's metadata goes with it (the derived channel takes
    // as much as any channel can carry).
    own.resize(info.metadata_len, 0);
    frame.metadata().copy_to(own);
    let shaped = shaped.and_then(|()| loan.set_metadata(own).map_err(|e| crate::one_line(&e)));
    // Dropping the loan abandons it: a torn or unshapeable source frame is
    // never published.
    match (shaped, frame.release().is_ok()) {
        (Ok(()), true) => {
            loan.commit_numbered(&target, info.number);
            Ok(Made::Frame)
        }
        (Ok(()), false) => Ok(Made::Nothing),
        (Err(e), _) => Err(Failed::Source(format!("frame {}: {e}", info.number))),
    }
}

/// Fills channel `name` from its source until `stop` (or `frames` derived
/// frames); see the module docs. Without a publisher, shapes every frame
/// for nothing.
#[allow(clippy::too_many_arguments)]
pub fn derive_loop(
    name: &Name,
    derive: &Derive,
    meta: &FrameMeta,
    period: Option<Duration>,
    frames: Option<u64>,
    mut publisher: Option<&mut Publisher>,
    stop: &AtomicBool,
    beat: &Beat,
) -> Result<(), String> {
    let from = &derive.from;
    let frame_len = crate::serve::frame_len(name, meta)?;
    let mut shaper = Shaper::new();
    let mut own = Vec::new();
    let mut reader: Option<Reader> = None;
    let mut last_seen = Instant::now();
    let mut idle = false;
    let mut stalled: Option<String> = None;
    let mut next_due: Option<Instant> = None;
    let (mut made, mut skipped) = (0u64, 0u64);
    // Says a stall once (log and channel), until it changes or ends.
    let mut stall = |publisher: &mut Option<&mut Publisher>, why: Option<String>| {
        if stalled == why {
            return;
        }
        match (&why, publisher.as_deref_mut()) {
            (Some(why), p) => {
                crate::log::warn(name, format!("stalled: {why}"));
                if let Some(p) = p {
                    p.report_stall(why);
                }
            }
            (None, p) => {
                crate::log::info(name, format!("deriving from {from} again"));
                if let Some(p) = p {
                    p.clear_stall();
                }
            }
        }
        stalled = why;
    };
    while !stop.load(Ordering::SeqCst) && frames.is_none_or(|n| made < n) {
        beat.beat();
        // Idle only when it publishes, may, and can see nobody leasing
        // (`--discard` shapes for itself: never idle).
        match publisher.as_deref() {
            Some(p) if derive.idle && p.leasing_available() && p.subscriber_count() == 0 => {}
            _ => last_seen = Instant::now(),
        }
        if last_seen.elapsed() >= IDLE_AFTER {
            if !idle {
                idle = true;
                // No longer one of the source's readers.
                reader = None;
                stall(
                    &mut publisher,
                    Some(format!(
                        "idle: nobody has leased from it for {} s (a leasing reader starts it)",
                        IDLE_AFTER.as_secs()
                    )),
                );
            }
            crate::serve::pause(stop, LOOK_EVERY, beat);
            continue;
        }
        idle = false;
        let reader = match &mut reader {
            Some(reader) => reader,
            None => reader.insert(Reader::new(from.clone()).map_err(|e| crate::one_line(&e))?),
        };
        beat.waiting(true);
        // Matched as a temporary, so that its borrow of the reader ends
        // with this statement.
        let health = match reader.next(LOOK_EVERY) {
            Ok(Next::Frame(frame)) => {
                beat.waiting(false);
                // At most the job's rate: a frame earlier than due is
                // skipped (a quarter period early still counts, so 30 fps
                // to 15 takes every second frame despite jitter).
                let now = Instant::now();
                if let (Some(period), Some(due)) = (period, next_due) {
                    if now + period / 4 < due {
                        skipped += 1;
                        let _ = frame.release();
                        continue;
                    }
                }
                match make_one(
                    &mut shaper,
                    publisher.as_deref_mut(),
                    frame,
                    meta,
                    frame_len,
                    derive.fit,
                    &mut own,
                ) {
                    Ok(Made::Frame) => {
                        made += 1;
                        stall(&mut publisher, None);
                        if let Some(period) = period {
                            next_due = Some(match next_due {
                                Some(due) if due + period > now => due + period,
                                _ => now + period,
                            });
                        }
                    }
                    Ok(Made::Nothing) => {}
                    Err(Failed::Source(why)) => {
                        stall(&mut publisher, Some(format!("source {from} {why}")))
                    }
                    Err(Failed::Channel(why)) => return Err(why),
                }
                continue;
            }
            Ok(Next::Health(health)) => health,
            // A new reader starts out missing and says nothing until that
            // changes: a source that is not there yet is said here.
            Ok(Next::Idle) => Health::Missing,
            Err(e) => {
                beat.waiting(false);
                crate::log::warn(name, format!("source {from}: {}", crate::one_line(&e)));
                continue;
            }
        };
        beat.waiting(false);
        if health == Health::Missing && reader.health() != Health::Missing {
            continue;
        }
        match health {
            Health::Live => stall(&mut publisher, None),
            other => {
                let word = match other {
                    Health::Stalled { .. } => "stalled",
                    Health::Gone => "gone",
                    Health::Truncated => "truncated",
                    _ => "missing",
                };
                let why = match reader.stall_reason() {
                    Some(r) => format!("source {from} is {word}: {r}"),
                    None => format!("source {from} is {word}"),
                };
                stall(&mut publisher, Some(why));
            }
        }
    }
    let skipped = if skipped > 0 {
        format!(" ({skipped} skipped for the rate)")
    } else {
        String::new()
    };
    crate::log::info(name, format!("derived {made} frames from {from}{skipped}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU per 1080p rgb24 frame made into 960x540 bgra, read from a real
    /// channel, halved row by row and by the general path (a figure, not a
    /// check: `cargo test --release -p shmcast-cli --bin shmcast
    /// derive::tests::time_ -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn time_one_1080p_frame_to_960x540_bgra() {
        let name = format!("derive-time-{}", std::process::id());
        let from = FrameMeta::new(1920, 1080, PixelFormat::Rgb24);
        let src: Vec<u8> = (0..1920 * 1080 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut publisher =
            Publisher::create_with(name.as_str(), &shmcast::ChannelOptions::new(src.len()))
                .unwrap();
        publisher.publish(&from, &src).unwrap();
        let leasing = shmcast::SubscriberOptions::new().access(shmcast::Access::Leasing);
        let mut sub = shmcast::Subscriber::open_with(name.as_str(), &leasing).unwrap();
        let lease = sub.lease_latest().unwrap().unwrap();
        let to = FrameMeta::new(960, 540, PixelFormat::Bgra);
        let mut out = vec![0; 961 * 540 * 4];
        let mut shaper = Shaper::new();
        for (how, halving) in [("halved by rows", true), ("general path", false)] {
            // The general path: a target one pixel wider is no halving.
            let from = if halving {
                from
            } else {
                FrameMeta {
                    stride: 1920 * 3,
                    ..from
                }
            };
            let to = if halving {
                to
            } else {
                FrameMeta { width: 961, ..to }
            };
            let n = 100;
            let started = std::time::Instant::now();
            for _ in 0..n {
                shaper
                    .shape_shared(&from, lease.bytes(), &to, Fit::Stretch, &mut out)
                    .unwrap();
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
            eprintln!("{how}: {ms:.2} ms per frame");
        }
    }

    /// What a lying source says about its frame, through the halving path
    /// (every `to` here is half its `from`): an error, never a panic or a
    /// read outside the frame.
    #[test]
    fn halving_checks_the_source_too() {
        let name = format!("derive-lies-{}", std::process::id());
        let mut publisher =
            Publisher::create_with(name.as_str(), &shmcast::ChannelOptions::new(64)).unwrap();
        let red = [255u8, 0, 0].repeat(16);
        publisher
            .publish(&FrameMeta::new(4, 4, PixelFormat::Rgb24), &red)
            .unwrap();
        let leasing = shmcast::SubscriberOptions::new().access(shmcast::Access::Leasing);
        let mut sub = shmcast::Subscriber::open_with(name.as_str(), &leasing).unwrap();
        let lease = sub.lease_latest().unwrap().unwrap();
        let mut shaper = Shaper::new();
        let mut shape = |w: u32, h: u32, stride: u32| {
            let from = FrameMeta {
                stride,
                ..FrameMeta::new(w, h, PixelFormat::Rgb24)
            };
            let to = FrameMeta::new(w / 2, h / 2, PixelFormat::Bgra);
            let mut out = vec![0u8; 1 << 12];
            shaper
                .shape_shared(&from, lease.bytes(), &to, Fit::Stretch, &mut out)
                .map(|()| out)
        };
        assert_eq!(shape(4, 4, 0).unwrap()[..16], [0, 0, 255, 255].repeat(4));
        assert_eq!(shape(2, 2, 0).unwrap()[..4], [0, 0, 255, 255]);
        // Last row past the end, a stride shorter than a row, a stride or
        // a width past any frame: refused, with the sizes.
        let e = shape(4, 6, 0).unwrap_err();
        assert!(e.contains("needs 72 bytes; it has 48"), "{e}");
        assert!(shape(4, 4, 11).is_err());
        assert!(shape(4, 2, 40).is_err());
        assert!(shape(4, 2, u32::MAX).is_err());
        assert!(shape(1 << 31, 2, 0).is_err());
        // The target's buffer too short for a whole frame.
        let from = FrameMeta::new(4, 4, PixelFormat::Rgb24);
        let to = FrameMeta::new(2, 2, PixelFormat::Bgra);
        let e = shaper
            .shape_shared(&from, lease.bytes(), &to, Fit::Stretch, &mut [0; 15])
            .unwrap_err();
        assert!(e.contains("do not hold"), "{e}");
    }

    #[test]
    fn letterbox_keeps_the_aspect_inside_the_target() {
        assert_eq!(letterboxed(1920, 1080, 640, 640), (640, 360));
        assert_eq!(letterboxed(1080, 1920, 640, 640), (360, 640));
        assert_eq!(letterboxed(100, 100, 30, 20), (20, 20));
        assert_eq!(letterboxed(u32::MAX, 1, 7, 7), (7, 1));
    }

    #[test]
    fn shaping_checks_the_source_and_fills_the_target() {
        let mut shaper = Shaper::new();
        let from = FrameMeta::new(4, 4, PixelFormat::Rgb24);
        let to = FrameMeta::new(2, 2, PixelFormat::Bgra);
        let mut out = vec![0; 16];
        let red = [255u8, 0, 0].repeat(16);
        shaper
            .shape(&from, &red, &to, Fit::Stretch, &mut out)
            .unwrap();
        assert_eq!(out, [0, 0, 255, 255].repeat(4));
        // The source's words lie: more pixels than bytes.
        let e = shaper
            .shape(&from, &red[..40], &to, Fit::Stretch, &mut out)
            .unwrap_err();
        assert!(e.contains("needs 48 bytes"), "{e}");
        let odd = FrameMeta::new(3, 3, PixelFormat::Nv12);
        assert!(shaper
            .shape(&odd, &red, &to, Fit::Stretch, &mut out)
            .is_err());
        let huge = FrameMeta {
            width: u32::MAX,
            ..from
        };
        assert!(shaper.shape(&huge, &red, &to, Fit::Crop, &mut out).is_err());
        // Letterbox: a wide source in a square target has black bars.
        let wide = FrameMeta::new(8, 2, PixelFormat::Rgb24);
        let to = FrameMeta::new(4, 4, PixelFormat::Rgb24);
        let mut out = vec![9; 48];
        shaper
            .shape(&wide, &red, &to, Fit::Letterbox, &mut out)
            .unwrap();
        assert_eq!(out[..12], [0; 12]);
        assert_eq!(out[12..24], red[..12]);
    }
}
