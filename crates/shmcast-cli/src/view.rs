//! `shmcast view NAME`: a window that shows the channel live, any pixel
//! format converted for display (`shmcast::convert`), scaled to the window
//! with its aspect kept. The title says the frame number, fps, the
//! publish-to-display latency and the publisher's health. It waits for a
//! channel that does not exist yet, keeps showing the last frame (marked
//! stalled or gone) when the publisher stops or dies, and picks up again
//! when one returns. Esc or q closes it. minifb draws it: X11 or Wayland on
//! Linux, the Win32 API on Windows.

use std::time::{Duration, Instant, SystemTime};

use minifb::{Key, ScaleMode, Window, WindowOptions};
use shmcast::{Health, Name, Subscriber};

/// How long one look for a new frame may take: the window stays responsive.
const LOOK: Duration = Duration::from_millis(20);

pub fn run(name: &Name) -> Result<(), String> {
    let options = WindowOptions {
        resize: true,
        scale_mode: ScaleMode::AspectRatioStretch,
        ..WindowOptions::default()
    };
    let mut window = Window::new(
        &format!("shmcast: {name} (waiting for it)"),
        640,
        360,
        options,
    )
    .map_err(|e| {
        format!("cannot open a window: {e} (is there a display? DISPLAY or WAYLAND_DISPLAY)")
    })?;
    let (mut width, mut height) = (640usize, 360usize);
    let mut pixels = vec![0u32; width * height];
    let mut rgb = Vec::new();
    let mut sub: Option<Subscriber> = None;
    let mut last_open = Instant::now() - Duration::from_secs(1);
    let mut seen = 0u64;
    let mut shown: Option<u64> = None;
    let (mut counted, mut since, mut fps) = (0u32, Instant::now(), 0.0);
    let mut latency_ms = 0.0;
    let mut title = String::new();
    // Why the latest frame cannot be shown (a raw channel, a bad geometry).
    let mut unshowable: Option<String> = None;
    while window.is_open() && !window.is_key_down(Key::Escape) && !window.is_key_down(Key::Q) {
        if sub.is_none() && last_open.elapsed() > Duration::from_millis(250) {
            last_open = Instant::now();
            sub = Subscriber::open(name).ok();
        }
        let mut state = "waiting for it".to_owned();
        if let Some(s) = sub.as_mut() {
            if let Ok(newest) = s.wait_newer(seen, LOOK) {
                seen = newest;
                if let Ok(Some((info, bytes))) = s.read_latest_vec() {
                    let m = info.meta;
                    let converted = shmcast::convert::to_rgb24(
                        m.format, m.width, m.height, m.stride, &bytes, &mut rgb,
                    );
                    unshowable = converted.as_ref().err().map(|e| e.to_string());
                    if converted.is_ok() {
                        (width, height) = (m.width as usize, m.height as usize);
                        pixels.clear();
                        pixels.extend(rgb.chunks_exact(3).map(|p| {
                            (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2])
                        }));
                        let now_ns = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos() as u64);
                        latency_ms = now_ns.saturating_sub(m.timestamp_ns) as f64 / 1e6;
                        shown = Some(info.number);
                        counted += 1;
                    }
                }
            }
            state = match s.health(Duration::from_secs(2)) {
                Health::Live => "live".to_owned(),
                Health::Stalled { idle } => match s.stall_reason() {
                    Some(reason) => format!("stalled: {reason}"),
                    None => format!("stalled: nothing for {:.0}s", idle.as_secs_f64()),
                },
                Health::Gone => "gone: no publisher".to_owned(),
                Health::Truncated => "truncated: another process cut its memory".to_owned(),
                Health::Missing => "missing: no channel of that name".to_owned(),
            };
        }
        if since.elapsed() >= Duration::from_secs(1) {
            fps = f64::from(counted) / since.elapsed().as_secs_f64();
            (counted, since) = (0, Instant::now());
        }
        if let Some(why) = &unshowable {
            state = format!("{state}; cannot show frame {seen}: {why}");
        }
        let new_title = match shown {
            Some(n) => {
                format!("shmcast: {name}  frame {n}  {fps:.1} fps  {latency_ms:.1} ms  {state}")
            }
            None => format!("shmcast: {name}  {state}"),
        };
        if new_title != title {
            window.set_title(&new_title);
            title = new_title;
        }
        // A frame the window library refuses is skipped and said, like one
        // that cannot be converted: the window stays for the next frame.
        if let Err(e) = window.update_with_buffer(&pixels, width.max(1), height.max(1)) {
            unshowable = Some(format!("cannot draw: {e}"));
            (width, height) = (1, 1);
            pixels.clear();
            pixels.push(0);
        }
    }
    Ok(())
}
