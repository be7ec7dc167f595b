//! ffmpeg as a frame source, which is how `serve` reads a real camera:
//! ffmpeg opens the device (dshow, v4l2, avfoundation, or anything else it
//! reads) and writes raw frames of the channel's geometry and pixel format
//! to a pipe, which `serve` reads straight into loaned slots.
//!
//! A camera gets unplugged, a driver hangs, ffmpeg dies: the channel stays,
//! marked stalled with the reason ([`shmcast::Publisher::report_stall`]),
//! and ffmpeg is started again with a growing pause, until frames flow
//! again (their numbers go on from where they stopped).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmcast::FrameMeta;

/// Input flags that cut ffmpeg's own buffering for live sources: frames
/// are handed on as they are read, not gathered first. What they cost: no
/// smoothing of an irregular source (frames come as unevenly as the device
/// sends them) and, for sources that need it, a shorter look at the stream
/// before decoding starts.
pub const LOW_LATENCY: [&str; 4] = ["-fflags", "nobuffer", "-flags", "low_delay"];

/// The first pause before ffmpeg is started again, and the longest.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// ffmpeg's input arguments for camera `camera` (a DirectShow name on
/// Windows, a device path such as /dev/video0 on Linux, an AVFoundation
/// index or name on macOS), asking for `width`x`height` at `fps` (30 when
/// 0).
pub fn camera_input(camera: &str, width: u32, height: u32, fps: f64) -> Vec<String> {
    // 0 ("as fast as the source") is no rate to ask a camera for.
    let fps = if fps > 0.0 { fps } else { 30.0 };
    let size = format!("{width}x{height}");
    let rate = format!("{fps}");
    let mut args: Vec<String> = LOW_LATENCY.iter().map(|s| s.to_string()).collect();
    let os: &[&str] = if cfg!(windows) {
        // A bigger real-time buffer: dshow drops frames when ffmpeg is a
        // moment late, and says so on every one.
        &["-f", "dshow", "-rtbufsize", "256M"]
    } else if cfg!(target_os = "macos") {
        &["-f", "avfoundation"]
    } else {
        // MJPEG: what USB cameras send at 1080p30 (raw YUYV at that size
        // does not fit USB 2.0's bandwidth).
        &["-f", "v4l2", "-input_format", "mjpeg"]
    };
    args.extend(os.iter().map(|s| s.to_string()));
    args.extend(["-video_size".into(), size, "-framerate".into(), rate]);
    let device = if cfg!(windows) {
        format!("video={camera}")
    } else {
        camera.to_owned()
    };
    args.extend(["-i".into(), device]);
    args
}

/// The whole ffmpeg command line for `input`: raw frames of `meta`'s size
/// and format on stdout, nothing else.
pub fn command_line(
    ffmpeg: &str,
    input: &[String],
    meta: &FrameMeta,
) -> Result<Vec<String>, String> {
    let pix_fmt = meta
        .format
        .ffmpeg_name()
        .ok_or_else(|| "ffmpeg cannot produce raw (formatless) frames; give --format".to_owned())?;
    let mut args = vec![
        ffmpeg.to_owned(),
        "-hide_banner".into(),
        "-nostdin".into(),
        "-loglevel".into(),
        "error".into(),
    ];
    args.extend(input.iter().cloned());
    args.extend(
        [
            "-an",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "-s",
            &format!("{}x{}", meta.width, meta.height),
            "pipe:1",
        ]
        .map(String::from),
    );
    Ok(args)
}

/// A running ffmpeg: its frames on `stdout`, its last error lines kept.
pub struct Running {
    pub child: Arc<Mutex<Child>>,
    stdout: Option<ChildStdout>,
    pub pid: u32,
    errors: Arc<Mutex<VecDeque<String>>>,
}

/// How many of ffmpeg's last stderr lines are kept for the stall reason.
const KEEP_LINES: usize = 3;

impl Running {
    /// Starts `args` (from [`command_line`]); its stderr lines are logged
    /// as `[name] ffmpeg: ...` (not while `quiet`: during a failure that
    /// repeats, whose lines were said already) and the last few kept.
    pub fn start(
        args: &[String],
        name: &str,
        quiet: &Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<Running> {
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let errors = Arc::new(Mutex::new(VecDeque::new()));
        {
            let (errors, name, quiet) = (Arc::clone(&errors), name.to_owned(), Arc::clone(quiet));
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !quiet.load(std::sync::atomic::Ordering::Relaxed) {
                        crate::log::warn(&name, format!("ffmpeg: {line}"));
                    }
                    let mut kept = errors.lock().unwrap_or_else(|e| e.into_inner());
                    if kept.len() == KEEP_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        Ok(Running {
            pid: child.id(),
            child: Arc::new(Mutex::new(child)),
            stdout: Some(stdout),
            errors,
        })
    }

    /// The last thing ffmpeg said, if anything.
    pub fn last_error(&self) -> Option<String> {
        // Its stderr thread may still be reading the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let kept = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        kept.back().cloned()
    }

    /// Its frames (once).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout.take().expect("stdout is taken once")
    }
}

/// A camera ffmpeg can open, as `shmcast devices` lists it.
#[derive(Debug, PartialEq, Eq)]
pub struct Device {
    /// What to pass to `--camera`.
    pub name: String,
    /// What else is known: formats and sizes, or another name.
    pub details: Vec<String>,
}

/// Parses `ffmpeg -hide_banner -list_devices true -f dshow -i dummy`'s
/// stderr: the video devices, with their alternative names. Handles both
/// layouts ffmpeg has used: one line per device ending in `(video)`, and
/// the older section headed "DirectShow video devices".
pub fn parse_dshow(listing: &str) -> Vec<Device> {
    let mut devices: Vec<Device> = Vec::new();
    let mut in_video_section = false;
    // Whether the last device line was a video device (its alternative
    // name follows it).
    let mut last_was_video = false;
    for line in listing.lines() {
        // Lines look like `[dshow @ 000001f0] "Name" (video)`.
        let text = line.split_once(']').map_or(line, |(_, rest)| rest).trim();
        if text.contains("DirectShow video devices") {
            in_video_section = true;
        } else if text.contains("DirectShow audio devices") {
            in_video_section = false;
        } else if let Some(alt) = text.strip_prefix("Alternative name") {
            if let (true, Some(last)) = (last_was_video, devices.last_mut()) {
                last.details
                    .push(format!("alternative name {}", alt.trim()));
            }
        } else if let Some((name, rest)) = text
            .strip_prefix('"')
            .and_then(|quoted| quoted.split_once('"'))
        {
            let rest = rest.trim();
            last_was_video = rest.contains("(video)") || (rest.is_empty() && in_video_section);
            if last_was_video {
                devices.push(Device {
                    name: name.to_owned(),
                    details: Vec::new(),
                });
            }
        }
    }
    devices
}

/// Parses `ffmpeg -hide_banner -f v4l2 -list_formats all -i /dev/videoN`'s
/// stderr: one entry per format, "mjpeg: 1920x1080 1280x720 ..." (empty
/// for a node that is not a capture device).
pub fn parse_v4l2_formats(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            // `[video4linux2,v4l2 @ 0x..] Compressed:  mjpeg :  Motion-JPEG : 1920x1080 1280x720`
            let text = line.split_once(']')?.1.trim();
            let (kind, rest) = text.split_once(':')?;
            if !matches!(kind.trim(), "Raw" | "Compressed") {
                return None;
            }
            let fields: Vec<&str> = rest.split(" : ").map(str::trim).collect();
            let (name, sizes) = (fields.first()?, fields.get(2).copied().unwrap_or(""));
            Some(format!("{name}: {sizes}").trim_end_matches(": ").to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Listings in the shapes ffmpeg prints them (the names are made up).
    const DSHOW_NEW: &str = r#"[dshow @ 000001c8b4f0e1c0] "Integrated Camera" (video)
[dshow @ 000001c8b4f0e1c0]   Alternative name "@device_pnp_\\?\usb#vid_04f2&pid_b6dd&mi_00#6&1a2b3c4d&0&0000#{65e8773d-8f56-11d0-a3b9-00a0c9223196}\global"
[dshow @ 000001c8b4f0e1c0] "USB3 Vision Cam" (video)
[dshow @ 000001c8b4f0e1c0]   Alternative name "@device_pnp_\\?\usb#vid_1234&pid_5678"
[dshow @ 000001c8b4f0e1c0] "Microphone Array (Realtek(R) Audio)" (audio)
[dshow @ 000001c8b4f0e1c0]   Alternative name "@device_cm_{33D9A762-90C8-11D0-BD43-00A0C911CE86}\wave_{ABC}"
dummy: Immediate exit requested
"#;
    const DSHOW_OLD: &str = r#"[dshow @ 0000000000429880] DirectShow video devices (some may be both video and audio devices)
[dshow @ 0000000000429880]  "HD Pro Webcam C920"
[dshow @ 0000000000429880]     Alternative name "@device_pnp_\\?\usb#vid_046d&pid_082d"
[dshow @ 0000000000429880] DirectShow audio devices
[dshow @ 0000000000429880]  "Microphone (HD Pro Webcam C920)"
[dshow @ 0000000000429880]     Alternative name "@device_cm_{33D9A762}\wave_{1}"
"#;
    const V4L2: &str = r#"[video4linux2,v4l2 @ 0x55d0c6b5c2c0] Compressed:       mjpeg :          Motion-JPEG : 1920x1080 1280x720 640x480
[video4linux2,v4l2 @ 0x55d0c6b5c2c0] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 320x240
/dev/video0: Immediate exit requested
"#;

    #[test]
    fn dshow_listings_of_both_layouts_give_the_video_devices_only() {
        let new = parse_dshow(DSHOW_NEW);
        let names: Vec<&str> = new.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["Integrated Camera", "USB3 Vision Cam"]);
        assert_eq!(new[0].details.len(), 1);
        assert!(new[1].details[0].contains("vid_1234"));
        let old = parse_dshow(DSHOW_OLD);
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].name, "HD Pro Webcam C920");
        assert_eq!(old[0].details.len(), 1);
        assert!(parse_dshow("").is_empty());
        assert!(parse_dshow("garbage\n\"unterminated").is_empty());
    }

    #[test]
    fn v4l2_format_listings_give_each_format_with_its_sizes() {
        assert_eq!(
            parse_v4l2_formats(V4L2),
            [
                "mjpeg: 1920x1080 1280x720 640x480",
                "yuyv422: 640x480 320x240"
            ]
        );
        assert!(parse_v4l2_formats("/dev/video1: Inappropriate ioctl for device").is_empty());
    }

    #[test]
    fn the_command_asks_for_the_channels_geometry_and_format_on_stdout() {
        let meta = FrameMeta::new(640, 480, shmcast::PixelFormat::Nv12);
        let input = vec!["-f".to_owned(), "lavfi".to_owned()];
        let line = command_line("ffmpeg", &input, &meta).unwrap().join(" ");
        assert!(line.starts_with("ffmpeg -hide_banner -nostdin -loglevel error -f lavfi"));
        assert!(line.ends_with("-an -f rawvideo -pix_fmt nv12 -s 640x480 pipe:1"));
        assert!(command_line("ffmpeg", &input, &FrameMeta::raw()).is_err());
        let camera = camera_input("/dev/video0", 1920, 1080, 30.0).join(" ");
        assert!(camera.contains("-video_size 1920x1080 -framerate 30"));
        assert!(camera.starts_with("-fflags nobuffer"));
    }
}
