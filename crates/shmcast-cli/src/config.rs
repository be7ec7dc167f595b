//! `serve --config FILE`: several channels in one service, from TOML.
//!
//! ```toml
//! [[channel]]
//! name = "cam1"
//! camera = "/dev/video0"      # or: input = "ffmpeg input arguments", or: source = "pattern"
//! width = 1920
//! height = 1080
//! format = "bgr24"
//! fps = 30
//! slots = 4                   # optional, default 4
//! mode = "640"                # Linux: who may read (default 600)
//! group = "video"             # Linux: the group whose members may read
//! lease_mode = "660"          # Linux: who may lease (default: as mode)
//! lease_sddl = "D:..."        # Windows: who may lease (default: as sddl)
//! sddl = "D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGX;;;IU)"   # Windows
//! global = true               # Windows: the Global\ namespace
//! stall_after = 2.0           # seconds without a frame before ffmpeg is restarted
//! ```
//!
//! Every mistake is reported with the channel it is in; unknown keys are
//! errors (a typo must not pass silently as a default).

use std::time::Duration;

use serde::Deserialize;
use shmcast::{FrameMeta, Name, Namespace, PixelFormat};

use crate::serve::{frame_period, Job, Source};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    channel: Vec<Channel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Channel {
    name: String,
    source: Option<String>,
    camera: Option<String>,
    input: Option<String>,
    width: u32,
    height: u32,
    format: String,
    #[serde(default = "default_fps")]
    fps: f64,
    #[serde(default = "default_slots")]
    slots: u32,
    mode: Option<String>,
    lease_mode: Option<String>,
    group: Option<String>,
    sddl: Option<String>,
    lease_sddl: Option<String>,
    #[serde(default)]
    global: bool,
    #[serde(default = "default_stall_after")]
    stall_after: f64,
}

fn default_fps() -> f64 {
    30.0
}

fn default_slots() -> u32 {
    shmcast::DEFAULT_SLOTS
}

fn default_stall_after() -> f64 {
    2.0
}

/// Reads `path` into the channels to serve.
pub fn load(path: &std::path::Path, ffmpeg: &str) -> Result<Vec<(Name, Job)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", crate::output::shown(path)))?;
    parse(&text, ffmpeg).map_err(|e| format!("{}: {e}", crate::output::shown(path)))
}

/// The channels of a config text.
pub fn parse(text: &str, ffmpeg: &str) -> Result<Vec<(Name, Job)>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.channel.is_empty() {
        return Err("no [[channel]] in it".to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in file.channel {
        let at = format!("channel {:?}", c.name);
        let mut name = Name::new(&c.name).map_err(|e| format!("{at}: {e}"))?;
        if c.global {
            name = name.in_namespace(Namespace::Global);
        }
        if !seen.insert(name.to_string()) {
            return Err(format!("{at} is listed twice"));
        }
        let format: PixelFormat = c.format.parse().map_err(|e| format!("{at}: {e}"))?;
        let (source, input) = match (c.source.as_deref(), c.camera, c.input) {
            (None | Some("ffmpeg"), Some(camera), None) => (
                Source::Ffmpeg,
                crate::ffmpeg::camera_input(&camera, c.width, c.height, c.fps),
            ),
            (None | Some("ffmpeg"), None, Some(input)) => (
                Source::Ffmpeg,
                shlex::split(&input)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("{at}: input {input:?} is not a list of arguments"))?,
            ),
            (Some("pattern"), None, None) => (Source::Pattern, Vec::new()),
            (_, Some(_), Some(_)) => return Err(format!("{at}: give camera or input, not both")),
            (Some(other), _, _) if other != "ffmpeg" && other != "pattern" => {
                return Err(format!(
                    "{at}: source {other:?}; use \"ffmpeg\" (with camera or input) or \"pattern\""
                ))
            }
            _ => {
                return Err(format!(
                    "{at}: say where frames come from: camera, input, or source = \"pattern\""
                ))
            }
        };
        let mode = |m: &Option<String>, what: &str| -> Result<Option<u32>, String> {
            m.as_deref()
                .map(|m| {
                    u32::from_str_radix(m.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| {
                            format!(
                                "{at}: {what} {m:?} is not octal permission bits such as \"640\""
                            )
                        })
                })
                .transpose()
        };
        frame_period(Some(c.fps)).map_err(|e| format!("{at}: {e}"))?;
        let stall_after = Duration::try_from_secs_f64(c.stall_after)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "{at}: stall_after {} is not a number of seconds above zero",
                    c.stall_after
                )
            })?;
        let job = Job {
            meta: FrameMeta::new(c.width, c.height, format),
            fps: Some(c.fps),
            slots: c.slots,
            mode: mode(&c.mode, "mode")?.unwrap_or(0o600),
            sddl: c.sddl,
            lease_mode: mode(&c.lease_mode, "lease_mode")?,
            lease_sddl: c.lease_sddl,
            source,
            frames: None,
            input,
            ffmpeg: ffmpeg.to_owned(),
            stall_after,
            group: c.group,
        };
        if job.meta.format.frame_len(c.width, c.height).is_none() {
            return Err(format!(
                "{at}: {}x{} is not a valid {format} frame size",
                c.width, c.height
            ));
        }
        out.push((name, job));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[channel]]
name = "cam1"
camera = "/dev/video0"
width = 1920
height = 1080
format = "bgr24"
mode = "640"
group = "video"

[[channel]]
name = "test"
source = "pattern"
width = 64
height = 48
format = "gray8"
fps = 10

[[channel]]
name = "file"
input = "-re -f lavfi -i 'testsrc=size=64x48:rate=5'"
width = 64
height = 48
format = "rgb24"
"#;

    #[test]
    fn a_config_gives_one_job_per_channel() {
        let jobs = parse(GOOD, "ffmpeg").unwrap();
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].1.source, Source::Ffmpeg);
        assert!(jobs[0].1.input.join(" ").contains("/dev/video0"));
        assert_eq!(
            (jobs[0].1.mode, jobs[0].1.group.as_deref()),
            (0o640, Some("video"))
        );
        assert_eq!(jobs[1].1.source, Source::Pattern);
        assert_eq!(jobs[2].1.input.last().unwrap(), "testsrc=size=64x48:rate=5");
    }

    #[test]
    fn the_example_config_of_the_systemd_package_parses() {
        let example = include_str!("../../../packaging/systemd/cameras.toml");
        let jobs = parse(example, "ffmpeg").unwrap();
        assert_eq!(jobs.len(), 2);
        assert!(jobs
            .iter()
            .all(|(_, j)| j.group.as_deref() == Some("shmcast-readers")));
    }

    #[test]
    fn every_mistake_names_its_channel() {
        let bad = |text: &str, says: &str| {
            let e = parse(text, "ffmpeg").unwrap_err();
            assert!(e.contains(says), "{e}");
        };
        let base = "[[channel]]\nname = \"c\"\nwidth = 64\nheight = 48\nformat = \"rgb24\"\n";
        bad(base, "say where frames come from");
        bad(&format!("{base}source = \"webcam\""), "source \"webcam\"");
        bad(
            &format!("{base}source = \"pattern\"\nmode = \"999\""),
            "not octal",
        );
        bad(
            &format!("{base}source = \"pattern\"\nfps = -1"),
            "not a frame rate",
        );
        bad(
            &format!("{base}source = \"pattern\"\ncolour = 1"),
            "unknown field",
        );
        bad(
            &format!("{base}source = \"pattern\"\n{base}source = \"pattern\""),
            "twice",
        );
        bad(
            "[[channel]]\nname = \"a/b\"\nwidth = 1\nheight = 1\nformat = \"rgb24\"",
            "a/b",
        );
        bad("", "missing field");
        bad("channel = []", "no [[channel]]");
    }
}
