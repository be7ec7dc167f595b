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
//!
//! [[channel]]
//! name = "cam1-view"
//! from = "cam1"               # a derived channel: cam1 resized and converted
//! width = 960
//! height = 540
//! format = "bgra"
//! fps = 15                    # optional: at most this rate (default: every frame)
//! fit = "letterbox"           # optional: stretch (default), letterbox or crop
//! idle = false                # optional: work even with no leasing reader
//! ```
//!
//! A derived channel's `from` names a channel of the file (in its
//! namespace) or any other publisher's; one derived from itself, or a
//! cycle of them, is refused.
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
    from: Option<String>,
    fit: Option<crate::derive::Fit>,
    idle: Option<bool>,
    width: u32,
    height: u32,
    format: String,
    fps: Option<f64>,
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

/// The rate of a channel that does not say (a derived one takes every
/// source frame instead).
const DEFAULT_FPS: f64 = 30.0;

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
    // The names as written, for `from` to find (with their namespace).
    let named: std::collections::HashMap<String, Name> = file
        .channel
        .iter()
        .filter_map(|c| {
            let name = Name::new(&c.name).ok()?;
            Some((
                c.name.clone(),
                if c.global {
                    name.in_namespace(Namespace::Global)
                } else {
                    name
                },
            ))
        })
        .collect();
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
        let derive = match &c.from {
            None => {
                if c.fit.is_some() || c.idle.is_some() {
                    return Err(format!("{at}: fit and idle are for a derived channel (from = ...)"));
                }
                None
            }
            Some(_) if c.source.is_some() || c.camera.is_some() || c.input.is_some() => {
                return Err(format!(
                    "{at}: a derived channel's frames come from its `from`; drop source, camera and input"
                ))
            }
            Some(from) => {
                let from = match named.get(from) {
                    Some(name) => name.clone(),
                    None => Name::new(from).map_err(|e| format!("{at}: from {from:?}: {e}"))?,
                };
                let derive = crate::derive::Derive {
                    from,
                    fit: c.fit.unwrap_or_default(),
                    idle: c.idle.unwrap_or(true),
                };
                crate::derive::check(&name, &derive).map_err(|e| format!("{at}: {e}"))?;
                Some(derive)
            }
        };
        let fps = match (&derive, c.fps) {
            (_, Some(fps)) => Some(fps),
            (Some(_), None) => None,
            (None, None) => Some(DEFAULT_FPS),
        };
        let (source, input) = match (c.source.as_deref(), c.camera, c.input) {
            _ if derive.is_some() => (Source::Derive, Vec::new()),
            (None | Some("ffmpeg"), Some(camera), None) => (
                Source::Ffmpeg,
                crate::ffmpeg::camera_input(&camera, c.width, c.height, fps.unwrap_or(DEFAULT_FPS)),
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
        frame_period(fps).map_err(|e| format!("{at}: {e}"))?;
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
            fps,
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
            // A derived frame carries its source frame's metadata.
            max_metadata: if derive.is_some() {
                shmcast::MAX_METADATA_LEN as usize
            } else {
                0
            },
            derive,
            metadata: None,
        };
        if job.meta.format.frame_len(c.width, c.height).is_none() {
            return Err(format!(
                "{at}: {}x{} is not a valid {format} frame size",
                c.width, c.height
            ));
        }
        out.push((name, job));
    }
    refuse_cycles(&out)?;
    Ok(out)
}

/// Refuses derived channels that come, through others, from themselves:
/// none of them would ever get a frame.
fn refuse_cycles(jobs: &[(Name, Job)]) -> Result<(), String> {
    let from = |name: &Name| {
        jobs.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, j)| j.derive.as_ref())
            .map(|d| d.from.clone())
    };
    for (start, _) in jobs {
        let mut path = vec![start.clone()];
        let mut at = start.clone();
        while let Some(next) = from(&at) {
            if &next == start {
                path.push(next);
                let path: Vec<String> = path.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "channels {} form a cycle: none of them would ever get a frame",
                    path.join(" <- ")
                ));
            }
            if path.contains(&next) || path.len() > jobs.len() {
                // A cycle that does not pass through `start`: found from
                // one of its own channels.
                break;
            }
            path.push(next.clone());
            at = next;
        }
    }
    Ok(())
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
    fn a_derived_channel_takes_its_source_by_the_name_in_the_file() {
        let text = format!(
            "{GOOD}\n[[channel]]\nname = \"view\"\nfrom = \"cam1\"\nwidth = 960\nheight = 540\nformat = \"bgra\"\nfit = \"letterbox\"\n\n[[channel]]\nname = \"ext\"\nfrom = \"Global\\\\other\"\nwidth = 64\nheight = 64\nformat = \"rgb24\"\nfps = 5\nidle = false\n"
        );
        let jobs = parse(&text, "ffmpeg").unwrap();
        let (name, view) = &jobs[3];
        assert_eq!(name.to_string(), "view");
        let derive = view.derive.as_ref().unwrap();
        assert_eq!(
            (derive.from.to_string().as_str(), derive.fit, derive.idle),
            ("cam1", crate::derive::Fit::Letterbox, true)
        );
        assert_eq!((view.source, view.fps), (Source::Derive, None));
        let ext = jobs[4].1.derive.as_ref().unwrap();
        assert_eq!(ext.from.namespace(), Namespace::Global);
        assert_eq!((jobs[4].1.fps, ext.idle), (Some(5.0), false));
        // A chain is fine; only a cycle is refused.
        let chain = text.replace("from = \"Global\\\\other\"", "from = \"view\"");
        assert_eq!(parse(&chain, "ffmpeg").unwrap().len(), 5);
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
        let derived = |name: &str, from: &str| {
            format!("[[channel]]\nname = \"{name}\"\nfrom = \"{from}\"\nwidth = 32\nheight = 24\nformat = \"bgra\"\n")
        };
        bad(&derived("a", "a"), "derived from itself");
        bad(
            &format!(
                "{}{}{}",
                derived("a", "b"),
                derived("b", "c"),
                derived("c", "a")
            ),
            "a <- b <- c <- a form a cycle",
        );
        bad(
            &format!("{}source = \"pattern\"", derived("a", "b")),
            "drop source",
        );
        bad(
            &format!("{base}source = \"pattern\"\nfit = \"crop\""),
            "for a derived",
        );
        bad(&format!("{}fit = \"squash\"", derived("a", "b")), "squash");
        bad("channel = []", "no [[channel]]");
    }
}
