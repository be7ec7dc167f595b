//! `shmcast`: named shared memory from a shell.
//!
//! Every failure exits non-zero with one line on stderr that names the
//! segment and says what to do.

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

mod config;
mod derive;
#[cfg(windows)]
mod eventlog;
mod ffmpeg;
mod log;
mod metadata;
mod metrics;
mod notify;
mod output;
mod serve;
#[cfg(windows)]
mod service;
mod status;
mod view;
mod watch;
mod web;

use clap::{Parser, Subcommand};
use shmcast::{
    CreateOptions, FrameMeta, Kind, Name, Namespace, PixelFormat, Region, SegmentInfo, Subscriber,
};
use shmcast_args as parse;

#[derive(Parser)]
#[command(
    name = "shmcast",
    version,
    about = "Named shared memory for Windows and Linux"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a name lives; shared by every command that takes one.
#[derive(clap::Args)]
struct Target {
    /// Segment name: 1-200 of A-Z a-z 0-9 - _ . (a `Local\` or `Global\`
    /// prefix picks the Windows namespace)
    name: String,
    /// Use the Windows Global\ namespace (shared across sessions; creating
    /// there needs SeCreateGlobalPrivilege). No effect on Linux.
    #[arg(long)]
    global: bool,
}

impl Target {
    fn name(&self) -> Result<Name, String> {
        let name = Name::new(&self.name).map_err(|e| e.to_string())?;
        Ok(if self.global {
            name.in_namespace(Namespace::Global)
        } else {
            name
        })
    }
}

/// Per-frame metadata from a side file; shared by publish and serve.
#[derive(clap::Args)]
struct MetadataArgs {
    /// Give each frame metadata read from this file (or named pipe), in
    /// step with the frames: per frame a record of its length (4 bytes,
    /// little-endian; 0 for none), then its bytes. When it ends, the
    /// remaining frames have none
    #[arg(long = "metadata", value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// The most metadata a frame may carry, in bytes (at most 65536;
    /// default 4096 with --metadata, else 0)
    #[arg(long, value_name = "BYTES")]
    max_metadata: Option<usize>,
}

impl MetadataArgs {
    fn max(&self) -> Result<usize, String> {
        let max = self
            .max_metadata
            .unwrap_or(if self.file.is_some() { 4096 } else { 0 });
        if max > shmcast::MAX_METADATA_LEN as usize {
            return Err(format!(
                "--max-metadata {max} is more than a frame can carry ({})",
                shmcast::MAX_METADATA_LEN
            ));
        }
        Ok(max)
    }
}

/// Who may read and who may lease a channel; shared by serve and publish.
#[derive(clap::Args)]
struct ChannelAccess {
    /// Permission bits of the channel's /dev/shm object, in octal (Linux):
    /// read access lets a user subscribe read-only (644: everyone)
    #[arg(long, default_value = "600", value_parser = parse::mode)]
    mode: u32,
    /// Security descriptor of the channel in SDDL (Windows); readers need
    /// GR and GX (SYNCHRONIZE, to wait): "D:(A;;GA;;;SY)(A;;GRGX;;;IU)"
    #[arg(long)]
    sddl: Option<String>,
    /// Permission bits of the lease table (Linux): write access lets a user
    /// lease frames in place (default: as --mode, so 666 lets everyone lease)
    #[arg(long, value_parser = parse::mode)]
    lease_mode: Option<u32>,
    /// Security descriptor of the lease table (Windows; default: --sddl);
    /// leasing readers need GW on it
    #[arg(long)]
    lease_sddl: Option<String>,
    /// Give the channel to this group (Linux), so that --mode's group bits
    /// (640: read) apply to its members
    #[arg(long)]
    group: Option<String>,
}

#[derive(Subcommand)]
enum ServiceAction {
    /// Register the service to start at boot, serving CONFIG
    Install {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Stop and remove the service
    Uninstall,
    /// Make the running service read its config again: only channels that
    /// were added, removed or changed restart (what `sc control shmcast
    /// paramchange` does)
    Reload,
    /// Run as the service (the service manager starts this)
    Run {
        #[arg(long)]
        config: std::path::PathBuf,
        /// The ffmpeg to run (install writes the one it found)
        #[arg(long)]
        ffmpeg: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Create a region and keep it alive until interrupted (Ctrl-C, SIGTERM),
    /// then remove it. A region left by a dead process is taken over.
    Hold {
        #[command(flatten)]
        target: Target,
        /// Size in bytes (suffixes K, M, G for KiB, MiB, GiB)
        #[arg(long, value_parser = parse::size)]
        size: usize,
        /// Permission bits of the /dev/shm object, in octal (Linux)
        #[arg(long, default_value = "600", value_parser = parse::mode)]
        mode: u32,
        /// Security descriptor in SDDL, e.g. "D:(A;;GA;;;SY)(A;;GR;;;IU)"
        /// (Windows)
        #[arg(long)]
        sddl: Option<String>,
    },
    /// Copy stdin into a region. Nothing is written if it does not fit.
    Write {
        #[command(flatten)]
        target: Target,
        /// Byte offset in the region to write at
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Write a region's bytes to stdout.
    Cat {
        #[command(flatten)]
        target: Target,
    },
    /// Show a segment's kind, size, creator and lock state, and a
    /// channel's frames and health. Exits 0 for a region or a live
    /// channel, 3 when there is no such segment, 4 when the channel is
    /// stalled (its publisher lives but publishes nothing), 5 when it is
    /// gone (its publisher died or left), 1 on any other error.
    Info {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// With --json: count a live channel's frames for this many seconds
        /// for its fps (0: no fps, no wait)
        #[arg(long, default_value_t = 1.0)]
        fps_over: f64,
    },
    /// Remove the segments whose creator is dead (Linux).
    Clean,
    /// The camera service as a Windows service: install (automatic start,
    /// as LocalSystem), uninstall, or run (what the service manager starts;
    /// from a console it serves in the foreground). Windows only.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Write a channel's latest frame as a PNG, converted from its pixel
    /// format (read-only: needs only read access).
    Snapshot {
        #[command(flatten)]
        target: Target,
        /// The PNG file to write
        file: std::path::PathBuf,
        /// Wait up to this many seconds for the channel and its first frame
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
    },
    /// List every shmcast segment on this machine (Linux: /dev/shm;
    /// Windows: this session's Local\ and Global\): kind, size, creator,
    /// whether it lives.
    List {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show a channel live in a window (any pixel format; waits for it,
    /// keeps the last frame when its publisher stops). Esc or q closes.
    View {
        #[command(flatten)]
        target: Target,
    },
    /// Watch channels live: fps, frames, dropped, leasing readers, the
    /// latest frame's age and the publisher's health, refreshed every
    /// second (q or Ctrl-C quits; without a terminal, one line per channel
    /// per second). No names: every channel there is.
    Watch {
        /// Channels to watch
        names: Vec<String>,
        /// Look in the Windows Global\ namespace. No effect on Linux.
        #[arg(long)]
        global: bool,
    },
    /// List the cameras ffmpeg can open here (DirectShow on Windows,
    /// /dev/video* with their formats on Linux), with the name to pass to
    /// `serve --camera`.
    Devices,
    /// Own a channel and fill it: the built-in moving test pattern (the
    /// default), raw frames from stdin, or a camera or any input through
    /// ffmpeg (--camera, --input); or every channel of a TOML file
    /// (--config). A second serve of a live channel fails naming its pid; a
    /// dead one's channel is taken over.
    Serve {
        /// Channel name: 1-200 of A-Z a-z 0-9 - _ . (a `Local\` or
        /// `Global\` prefix picks the Windows namespace)
        #[arg(required_unless_present = "config")]
        name: Option<String>,
        /// Use the Windows Global\ namespace (shared across sessions;
        /// creating there needs SeCreateGlobalPrivilege). No effect on Linux.
        #[arg(long)]
        global: bool,
        /// Serve every channel of this TOML file instead (one channel table
        /// per camera; see the README's "Run it as a service")
        #[arg(long, conflicts_with_all = [
            "name", "global", "source", "width", "height", "format", "fps", "frames", "slots",
            "input", "camera", "stall_after", "mode", "sddl", "lease_mode", "lease_sddl", "group",
            "file", "max_metadata",
        ])]
        config: Option<std::path::PathBuf>,
        /// Serve Prometheus metrics of the channels on http://ADDR/metrics
        /// (127.0.0.1:9464 when no ADDR is given)
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = metrics::DEFAULT_ADDR)]
        metrics: Option<String>,
        /// Where frames come from
        #[arg(long, value_enum, default_value = "pattern")]
        source: serve::Source,
        /// Frame width in pixels
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Frame height in pixels
        #[arg(long, default_value_t = 720)]
        height: u32,
        /// Pixel format: rgb24, bgr24, rgba, bgra, gray8, yuyv, nv12, i420
        #[arg(long, default_value = "rgb24")]
        format: PixelFormat,
        /// Frames per second (the pattern's pace; 0: as fast as possible,
        /// or as stdin delivers)
        #[arg(long, default_value_t = 30.0)]
        fps: f64,
        /// Stop after this many frames
        #[arg(long)]
        frames: Option<u64>,
        /// Slots in the channel's ring
        #[arg(long, default_value_t = shmcast::DEFAULT_SLOTS)]
        slots: u32,
        /// ffmpeg's input arguments, for --source ffmpeg: any input ffmpeg
        /// reads, e.g. "-f v4l2 -input_format mjpeg -video_size 1920x1080
        /// -i /dev/video0"; ffmpeg is asked for raw frames of --width,
        /// --height and --format
        #[arg(long, allow_hyphen_values = true)]
        input: Option<String>,
        /// A camera, read through ffmpeg (implies --source ffmpeg): a
        /// DirectShow name on Windows, a device such as /dev/video0 on
        /// Linux (`shmcast devices` lists them); asks it for --width x
        /// --height at --fps
        #[arg(long, conflicts_with = "input")]
        camera: Option<String>,
        /// Seconds ffmpeg may send nothing before it is stopped and started
        /// again (readers see the channel stalled meanwhile)
        #[arg(long, default_value_t = 2.0)]
        stall_after: f64,
        #[command(flatten)]
        metadata: MetadataArgs,
        #[command(flatten)]
        access: ChannelAccess,
    },
    /// Make a channel from another at another size, pixel format or rate,
    /// once for every reader that wants it: each source frame becomes at
    /// most one frame of NAME, with its number and timestamp. Follows the
    /// source through restarts; its stalls show on NAME. Stops working
    /// while nobody leases from NAME (see --always).
    Derive {
        /// The channel to read (any publisher's)
        source: String,
        /// The channel to create
        #[arg(required_unless_present = "discard")]
        name: Option<String>,
        /// Both names in the Windows Global\ namespace (no effect on Linux)
        #[arg(long)]
        global: bool,
        /// Width of NAME's frames
        #[arg(long)]
        width: u32,
        /// Height of NAME's frames
        #[arg(long)]
        height: u32,
        /// Pixel format of NAME's frames: rgb24, bgr24, rgba, bgra, gray8,
        /// yuyv, nv12, i420
        #[arg(long)]
        format: PixelFormat,
        /// At most this many frames per second (default: every source frame)
        #[arg(long)]
        fps: Option<f64>,
        /// How the source's aspect meets NAME's: stretch it, letterbox it
        /// (black bars) or crop it
        #[arg(long, value_enum, default_value = "stretch")]
        fit: derive::Fit,
        /// Work even while no reader leases from NAME (needed when its only
        /// readers are read-only ones, which nothing can see)
        #[arg(long)]
        always: bool,
        /// Stop after this many frames
        #[arg(long)]
        frames: Option<u64>,
        /// Slots in NAME's ring
        #[arg(long, default_value_t = shmcast::DEFAULT_SLOTS)]
        slots: u32,
        /// Shape every frame for nothing, publishing none (what a reader
        /// that scales for itself costs: for the benchmark)
        #[arg(long, hide = true)]
        discard: bool,
        #[command(flatten)]
        access: ChannelAccess,
    },
    /// Publish raw frames from stdin (exactly one frame's bytes each, as
    /// `ffmpeg ... -f rawvideo -pix_fmt rgb24 -` writes them) until EOF.
    Publish {
        #[command(flatten)]
        target: Target,
        /// Frame width in pixels
        #[arg(long)]
        width: u32,
        /// Frame height in pixels
        #[arg(long)]
        height: u32,
        /// Pixel format: rgb24, bgr24, rgba, bgra, gray8, yuyv, nv12, i420 (or
        /// ffmpeg's names gray, yuyv422, yuv420p)
        #[arg(long)]
        format: PixelFormat,
        /// Frames per second to pace at; without it, as fast as stdin
        /// delivers
        #[arg(long)]
        fps: Option<f64>,
        /// Slots in the channel's ring
        #[arg(long, default_value_t = shmcast::DEFAULT_SLOTS)]
        slots: u32,
        #[command(flatten)]
        metadata: MetadataArgs,
        #[command(flatten)]
        access: ChannelAccess,
    },
    /// Wait for and read new frames from a channel.
    Read {
        #[command(flatten)]
        target: Target,
        /// How many new frames to read
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Longest wait, in seconds, for the channel to appear and for each
        /// next frame
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print the MD5 of each frame's payload
        #[arg(long)]
        md5: bool,
        /// Append each frame's raw payload to this file
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Append each frame's metadata to this file (or pipe) as a record:
        /// its length (4 bytes, little-endian), then its bytes
        #[arg(long, value_name = "FILE")]
        metadata_out: Option<std::path::PathBuf>,
        /// Read without writing anything to shared memory (the default):
        /// needs only read access to the channel
        #[arg(long, conflicts_with = "lease")]
        read_only: bool,
        /// Read under a lease, in place (needs write access to the
        /// channel's lease table)
        #[arg(long)]
        lease: bool,
    },
    /// A read-only web page of every channel on this machine: live
    /// previews, fps, frame, leasers, health and stall reasons
    Web {
        /// Only these channels (default: every channel on this machine)
        names: Vec<String>,
        /// Use the Windows Global\ namespace for NAMES
        #[arg(long)]
        global: bool,
        /// Where to listen. Any address beyond loopback needs --token
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// A secret every request must carry (Authorization: Bearer TOKEN,
        /// or ?token=TOKEN in the page's address)
        #[arg(long)]
        token: Option<String>,
    },
    /// Remove a segment's name now (Linux); processes that map it keep it.
    Remove {
        #[command(flatten)]
        target: Target,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info {
            target,
            json,
            fps_over,
        } => target
            .name()
            .and_then(|name| Ok((name, seconds(fps_over)?)))
            .and_then(|(name, fps_over)| info(&name, json, fps_over)),
        command => run(command).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("shmcast: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Hold {
            target,
            size,
            mode,
            sddl,
        } => hold(&target.name()?, size, mode, sddl.as_deref()),
        Command::Write { target, offset } => write(&target.name()?, offset),
        Command::Cat { target } => cat(&target.name()?),
        Command::Info { .. } => unreachable!("main runs info for its exit code"),
        Command::Clean => clean(),
        Command::Devices => devices(),
        Command::View { target } => view::run(&target.name()?),
        Command::Watch { names, global } => {
            let names = names
                .into_iter()
                .map(|name| Target { name, global }.name())
                .collect::<Result<Vec<_>, _>>()?;
            watch::run(names)
        }
        Command::List { json } => list(json),
        Command::Snapshot { target, file, wait } => {
            snapshot(&target.name()?, &file, seconds(wait)?)
        }
        Command::Service { action } => service(action),
        Command::Publish {
            target,
            width,
            height,
            format,
            fps,
            slots,
            metadata,
            access,
        } => serve::run(
            &target.name()?,
            &serve::Job {
                meta: FrameMeta::new(width, height, format),
                fps,
                slots,
                mode: access.mode,
                sddl: access.sddl,
                lease_mode: access.lease_mode,
                lease_sddl: access.lease_sddl,
                source: serve::Source::Stdin,
                frames: None,
                input: Vec::new(),
                ffmpeg: ffmpeg_program(),
                stall_after: Duration::MAX,
                group: access.group,
                derive: None,
                max_metadata: metadata.max()?,
                metadata: metadata.file,
            },
            None,
        ),
        Command::Derive {
            source,
            name,
            global,
            width,
            height,
            format,
            fps,
            fit,
            always,
            frames,
            slots,
            discard,
            access,
        } => {
            let in_namespace = |n: String| Target { name: n, global }.name();
            let derive = derive::Derive {
                from: in_namespace(source)?,
                fit,
                idle: !always,
            };
            let meta = FrameMeta::new(width, height, format);
            let period = serve::frame_period(fps)?;
            if discard {
                let beats = notify::Beats::new();
                let stop = std::sync::atomic::AtomicBool::new(false);
                let name = Name::new("discard").map_err(|e| e.to_string())?;
                return derive::derive_loop(
                    &name,
                    &derive,
                    &meta,
                    period,
                    frames,
                    None,
                    &stop,
                    &beats.add(),
                );
            }
            let name = in_namespace(name.unwrap_or_default())?;
            derive::check(&name, &derive)?;
            serve::run(
                &name,
                &serve::Job {
                    meta,
                    fps,
                    slots,
                    mode: access.mode,
                    sddl: access.sddl,
                    lease_mode: access.lease_mode,
                    lease_sddl: access.lease_sddl,
                    source: serve::Source::Derive,
                    frames,
                    input: Vec::new(),
                    ffmpeg: String::new(),
                    stall_after: Duration::MAX,
                    group: access.group,
                    derive: Some(derive),
                    metadata: None,
                    // A derived frame carries its source frame's metadata.
                    max_metadata: shmcast::MAX_METADATA_LEN as usize,
                },
                None,
            )
        }
        Command::Serve {
            name,
            global,
            config: Some(config),
            metrics,
            ..
        } => {
            let _ = (name, global);
            let ffmpeg = ffmpeg_program();
            serve::run_config(move || config::load(&config, &ffmpeg), metrics.as_deref())
        }
        Command::Serve {
            name,
            global,
            config: None,
            metrics,
            source,
            width,
            height,
            format,
            fps,
            frames,
            slots,
            input,
            camera,
            stall_after,
            metadata,
            access,
        } => {
            if metadata.file.is_some() && source != serve::Source::Stdin {
                return Err(
                    "--metadata is for --source stdin (frames and their metadata in step)"
                        .to_owned(),
                );
            }
            let (source, input) =
                match (source, input, camera) {
                    (_, _, Some(camera)) => (
                        serve::Source::Ffmpeg,
                        shmcast_cli_camera(&camera, width, height, fps),
                    ),
                    // --input means ffmpeg, as --camera does.
                    (serve::Source::Ffmpeg | serve::Source::Pattern, Some(input), None) => (
                        serve::Source::Ffmpeg,
                        shlex::split(&input)
                            .filter(|a| !a.is_empty())
                            .ok_or_else(|| {
                                format!(
                                "--input {input:?} is not a list of arguments (check its quotes)"
                            )
                            })?,
                    ),
                    (serve::Source::Ffmpeg, None, None) => return Err(
                        "--source ffmpeg needs --input \"ffmpeg input arguments\" or --camera NAME"
                            .to_owned(),
                    ),
                    (serve::Source::Stdin, Some(_), None) => {
                        return Err("--input is for --source ffmpeg, not stdin".to_owned())
                    }
                    (source, None, None) => (source, Vec::new()),
                    (serve::Source::Derive, Some(_), None) => {
                        unreachable!("--source cannot name derive")
                    }
                };
            let target = Target {
                name: name.unwrap_or_default(),
                global,
            };
            serve::run(
                &target.name()?,
                &serve::Job {
                    meta: FrameMeta::new(width, height, format),
                    fps: Some(fps),
                    slots,
                    mode: access.mode,
                    sddl: access.sddl,
                    lease_mode: access.lease_mode,
                    lease_sddl: access.lease_sddl,
                    source,
                    frames,
                    input,
                    ffmpeg: ffmpeg_program(),
                    stall_after: positive_seconds(stall_after, "--stall-after")?,
                    group: access.group,
                    derive: None,
                    max_metadata: metadata.max()?,
                    metadata: metadata.file,
                },
                metrics.as_deref(),
            )
        }
        Command::Read {
            target,
            count,
            timeout,
            md5,
            out,
            metadata_out,
            read_only: _,
            lease,
        } => read(
            &target.name()?,
            count,
            seconds(timeout)?,
            md5,
            out.as_deref(),
            metadata_out.as_deref(),
            if lease {
                shmcast::Access::Leasing
            } else {
                shmcast::Access::ReadOnly
            },
        ),
        Command::Web {
            names,
            global,
            listen,
            token,
        } => {
            let names = names
                .into_iter()
                .map(|name| Target { name, global }.name())
                .collect::<Result<Vec<_>, _>>()?;
            web::run(&listen, token, names)
        }
        Command::Remove { target } => shmcast::remove(target.name()?).map_err(|e| e.to_string()),
    }
}

#[cfg(windows)]
fn service(action: ServiceAction) -> Result<(), String> {
    match action {
        ServiceAction::Install { config } => service::install(&config, &ffmpeg_program()),
        ServiceAction::Uninstall => service::uninstall(),
        ServiceAction::Reload => service::reload(),
        ServiceAction::Run { config, ffmpeg } => {
            service::run(&config, &ffmpeg.unwrap_or_else(ffmpeg_program))
        }
    }
}

#[cfg(not(windows))]
fn service(action: ServiceAction) -> Result<(), String> {
    let _ = action;
    Err(
        "`shmcast service` is for Windows; on Linux use the systemd unit in packaging/systemd"
            .to_owned(),
    )
}

/// `shmcast list`.
fn list(json: bool) -> Result<(), String> {
    let found = shmcast::list().map_err(|e| format!("cannot list shared memory: {e}"))?;
    if json {
        let rows: Vec<serde_json::Value> = found
            .iter()
            .map(|l| match &l.info {
                Ok(i) => serde_json::json!({
                    "name": l.name.to_string(),
                    "kind": i.kind.to_string(),
                    "data_len": i.data_len,
                    "total_len": i.total_len,
                    "creator": {"pid": i.creator.pid, "alive": i.creator_alive},
                }),
                Err(e) => serde_json::json!({"name": l.name.to_string(), "error": e.to_string()}),
            })
            .collect();
        let rows = serde_json::Value::Array(rows);
        return output::printed(output::print(|out| writeln!(out, "{rows}")));
    }
    output::printed(output::print(|out| {
        if found.is_empty() {
            return writeln!(out, "no shmcast segments");
        }
        writeln!(
            out,
            "{:<40} {:<11} {:>12}  creator",
            "name", "kind", "bytes"
        )?;
        for l in &found {
            match &l.info {
                Ok(i) => writeln!(
                    out,
                    "{:<40} {:<11} {:>12}  pid {} ({})",
                    l.name.to_string(),
                    i.kind.to_string(),
                    i.total_len,
                    i.creator.pid,
                    if i.creator_alive { "alive" } else { "dead" }
                )?,
                Err(e) => writeln!(
                    out,
                    "{:<40} ?           {:>12}  {}",
                    l.name.to_string(),
                    "",
                    one_line(e)
                )?,
            }
        }
        Ok(())
    }))
}

/// `shmcast snapshot`: the latest frame, as RGB, in a PNG.
fn snapshot(name: &Name, file: &std::path::Path, wait: Duration) -> Result<(), String> {
    let started = std::time::Instant::now();
    let sub = if wait.is_zero() {
        Subscriber::open(name)
    } else {
        Subscriber::open_wait(name, wait)
    };
    let mut sub = sub.map_err(|e| one_line(&e))?;
    if sub.latest_number() == 0 {
        if wait.is_zero() {
            return Err(format!(
                "channel {name} has no frame yet (--wait SECS waits for one)"
            ));
        }
        sub.wait_newer(0, wait.saturating_sub(started.elapsed()))
            .map_err(|e| one_line(&e))?;
    }
    let (info, bytes) = sub
        .read_latest_vec()
        .map_err(|e| one_line(&e))?
        .ok_or_else(|| format!("channel {name} has no frame yet"))?;
    let m = info.meta;
    let mut rgb = Vec::new();
    shmcast::convert::to_rgb24(m.format, m.width, m.height, m.stride, &bytes, &mut rgb)
        .map_err(|e| format!("channel {name}, frame {}: {e}", info.number))?;
    let out = std::fs::File::create(file)
        .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(out), m.width, m.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&rgb))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    output::printed(output::print(|out| {
        writeln!(
            out,
            "frame {} of {name}: {}x{} {} -> {}",
            info.number,
            m.width,
            m.height,
            m.format,
            file.display()
        )
    }))
}

/// `shmcast devices`: asks ffmpeg what it can open.
fn devices() -> Result<(), String> {
    let ffmpeg = ffmpeg_program();
    let ask = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new(&ffmpeg)
            .args(["-hide_banner"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                format!("cannot run {ffmpeg}: {e} (install ffmpeg, or set SHMCAST_FFMPEG)")
            })?;
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let found: Vec<ffmpeg::Device> = if cfg!(windows) {
        ffmpeg::parse_dshow(&ask(&[
            "-list_devices",
            "true",
            "-f",
            "dshow",
            "-i",
            "dummy",
        ])?)
    } else {
        let mut nodes: Vec<String> = std::fs::read_dir("/dev")
            .map_err(|e| format!("cannot list /dev: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path().display().to_string())
            .filter(|p| p.starts_with("/dev/video"))
            .collect();
        nodes.sort_by_key(|p| (p.len(), p.clone()));
        let mut found = Vec::new();
        for node in nodes {
            let formats = ffmpeg::parse_v4l2_formats(&ask(&[
                "-f",
                "v4l2",
                "-list_formats",
                "all",
                "-i",
                &node,
            ])?);
            // Nodes without capture formats are metadata nodes of the
            // same camera (UVC makes two per camera).
            if !formats.is_empty() {
                found.push(ffmpeg::Device {
                    name: node,
                    details: formats,
                });
            }
        }
        found
    };
    if found.is_empty() {
        return Err(if cfg!(windows) {
            "no cameras found: ffmpeg lists no DirectShow video device".to_owned()
        } else {
            "no cameras found: no /dev/video* device that ffmpeg can capture from (is the camera plugged in, and may this user open it? members of group video may)".to_owned()
        });
    }
    output::printed(output::print(|out| {
        for device in &found {
            writeln!(out, "{}", device.name)?;
            for detail in &device.details {
                writeln!(out, "    {detail}")?;
            }
        }
        writeln!(
            out,
            "\nserve one with: shmcast serve cam --camera \"{}\" --width 1920 --height 1080 --fps 30",
            found[0].name
        )
    }))
}

/// The ffmpeg to run: $SHMCAST_FFMPEG, or `ffmpeg` from the PATH.
fn ffmpeg_program() -> String {
    std::env::var("SHMCAST_FFMPEG").unwrap_or_else(|_| "ffmpeg".to_owned())
}

fn shmcast_cli_camera(camera: &str, width: u32, height: u32, fps: f64) -> Vec<String> {
    ffmpeg::camera_input(camera, width, height, fps)
}

/// The error's message, then its OS cause, on one line, and for the
/// library's errors what to do about them with this command.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !msg.contains(&said) {
            msg.push_str(&format!(" ({said})"));
        }
        source = s.source();
    }
    if let Some(hint) = e.downcast_ref::<shmcast::Error>().and_then(hint) {
        msg.push_str(&format!(" [{hint}]"));
    }
    msg
}

/// What to do about a library error with this command's flags and
/// subcommands (the library's messages name neither).
fn hint(e: &shmcast::Error) -> Option<&'static str> {
    use shmcast::ErrorKind::*;
    let message = e.to_string();
    Some(match e.kind() {
        PermissionDenied if message.contains("lease table") => {
            "the publisher grants leasing with `serve --lease-mode 666` (Linux) or `--lease-sddl` (Windows); `read` without --lease needs no more than read access"
        }
        PermissionDenied if message.contains("cannot open") => {
            "the publisher grants access with `--mode`/`--group` (Linux) or `--sddl` (Windows)"
        }
        // `clean` removes nothing on Windows, where a name goes with the
        // last process that holds it (the message says so).
        AlreadyExists | Uninitialized | NoSpace
            if !cfg!(windows)
                && (message.contains("dead")
                    || message.contains("never fully")
                    || message.contains("reserved")) =>
        {
            "`shmcast clean` removes what dead processes left"
        }
        AllSlotsLeased => "give the channel more slots with `--slots`",
        _ => return None,
    })
}

fn hold(name: &Name, size: usize, mode: u32, sddl: Option<&str>) -> Result<(), String> {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    let mut options = CreateOptions::new().mode(mode).replace_stale(true);
    if let Some(sddl) = sddl {
        options = options.sddl(sddl);
    }
    let region = Region::create_with(name, size, &options).map_err(|e| one_line(&e))?;
    // Holding is the job; a notice that nobody reads is no reason to stop.
    let _ = output::print(|out| {
        writeln!(
            out,
            "holding {name}: {size} bytes in {}; Ctrl-C removes it",
            object_place(name)
        )
    });
    let _ = stop_rx.recv();
    drop(region);
    eprintln!("removed {name}");
    Ok(())
}

fn object_place(name: &Name) -> String {
    if cfg!(windows) {
        let ns = match name.namespace() {
            Namespace::Local => "Local",
            Namespace::Global => "Global",
        };
        format!("section {ns}\\{}", shmcast::object_name(name))
    } else {
        format!("/dev/shm/{}", shmcast::object_name(name))
    }
}

fn write(name: &Name, offset: usize) -> Result<(), String> {
    let region = Region::open(name).map_err(|e| one_line(&e))?;
    if offset > region.len() {
        return Err(format!(
            "region {name}: offset {offset} is past its end (it has {} bytes); nothing was written",
            region.len()
        ));
    }
    let room = region.len() - offset;
    // Read one byte more than fits, to tell "fits exactly" from "too long"
    // without reading an endless stdin to the end.
    let mut data = Vec::new();
    io::stdin()
        .lock()
        .take(room as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading stdin for {name}: {e}"))?;
    if data.len() > room {
        return Err(format!(
            "region {name}: stdin holds more than the {room} bytes that fit at offset {offset} \
             (the region has {}); nothing was written",
            region.len()
        ));
    }
    region.write(offset, &data).map_err(|e| one_line(&e))
}

fn cat(name: &Name) -> Result<(), String> {
    let region = Region::open_read_only(name).map_err(|e| one_line(&e))?;
    let bytes = region.read_to_vec().map_err(|e| one_line(&e))?;
    // `shmcast cat r | head` is fine.
    output::print(|out| out.write_all(&bytes)).map_err(|e| format!("writing {name} to stdout: {e}"))
}

/// `info`'s exit codes, for scripts (`--help` and the README list them).
mod exit_code {
    pub const MISSING: u8 = 3;
    pub const STALLED: u8 = 4;
    pub const GONE: u8 = 5;
}

fn info(name: &Name, json: bool, fps_over: Duration) -> Result<ExitCode, String> {
    let info = match shmcast::inspect(name) {
        Ok(info) => info,
        Err(e) if e.kind() == shmcast::ErrorKind::NotFound => {
            eprintln!("shmcast: {}", one_line(&e));
            if json {
                let v = serde_json::json!({"name": name.to_string(), "health": "missing"});
                output::printed(output::print(|out| writeln!(out, "{v}")))?;
            }
            return Ok(ExitCode::from(exit_code::MISSING));
        }
        Err(e) => return Err(one_line(&e)),
    };
    let lock = match info.kind {
        Kind::Region => Some(
            Region::open_read_only(name)
                .map_err(|e| one_line(&e))?
                .lock_state(),
        ),
        _ => None,
    };
    let channel = match info.kind {
        Kind::Channel => Some(shmcast::inspect_channel(name).map_err(|e| one_line(&e))?),
        _ => None,
    };
    let health = channel.as_ref().map(health_of);
    let mut frames = None;
    if let Some(c) = &channel {
        frames = Some(Frames {
            latest: latest_frame_info(name),
            fps: match health {
                Some("live") if json && !fps_over.is_zero() => {
                    Some(fps_over_a_while(name, c, fps_over))
                }
                _ => None,
            },
        });
    }
    output::printed(output::print(|out| {
        if json {
            print_info_json(out, &info, lock.as_ref(), channel.as_ref(), frames.as_ref())
        } else {
            print_info_text(out, &info, lock.as_ref(), channel.as_ref(), frames.as_ref())
        }
    }))?;
    Ok(match health {
        Some("stalled") => ExitCode::from(exit_code::STALLED),
        Some("gone") => ExitCode::from(exit_code::GONE),
        _ => ExitCode::SUCCESS,
    })
}

/// What `info` says of a channel's frames besides its status words.
struct Frames {
    /// The latest frame's number and geometry, if one can be read.
    latest: Option<shmcast::FrameInfo>,
    /// Frames per second over `--fps-over` (live channels, `--json`).
    fps: Option<f64>,
}

/// The latest frame's metadata, read in place without a copy (read-only:
/// nothing is written to the channel); `None` if there is none or it
/// cannot be read.
fn latest_frame_info(name: &Name) -> Option<shmcast::FrameInfo> {
    let subscriber = Subscriber::open(name).ok()?;
    subscriber
        .read_in_place(|_, _| ())
        .ok()
        .flatten()
        .map(|(info, ())| info)
}

/// Frames published over `how_long` from now, per second (0 if the
/// channel was replaced meanwhile): `watch`'s rate, from two samples.
fn fps_over_a_while(name: &Name, before: &shmcast::ChannelStatus, how_long: Duration) -> f64 {
    let mut last = Some((before.latest_frame, std::time::Instant::now()));
    std::thread::sleep(how_long);
    match watch::sample(name, &mut last) {
        Ok((after, fps)) if after.instance == before.instance => fps,
        _ => 0.0,
    }
}

/// "live", "stalled" or "gone": the channel's health for scripts.
fn health_of(c: &shmcast::ChannelStatus) -> &'static str {
    match &c.publisher {
        Some(p) if p.alive && (idle_of(c) > STALL_AFTER || c.stall_reason.is_some()) => "stalled",
        Some(p) if p.alive => "live",
        _ => "gone",
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn alive(alive: bool) -> &'static str {
    if alive {
        "alive"
    } else {
        "dead"
    }
}

fn lock_words(lock: &shmcast::LockState) -> String {
    let holders = |hs: &[shmcast::Holder]| {
        hs.iter()
            .map(|h| format!("pid {} ({})", h.pid, alive(h.alive)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = match (&lock.writer, lock.readers.len()) {
        (None, 0) => "free".to_owned(),
        (Some(w), _) => format!("write-locked by {}", holders(&[*w])),
        (None, n) => format!("read-locked {n} time(s) by {}", holders(&lock.readers)),
    };
    if lock.torn {
        s.push_str("; last write was interrupted by a crash");
    }
    s
}

fn print_info_text(
    out: &mut impl Write,
    info: &SegmentInfo,
    lock: Option<&shmcast::LockState>,
    channel: Option<&shmcast::ChannelStatus>,
    frames: Option<&Frames>,
) -> io::Result<()> {
    let age = SystemTime::now()
        .duration_since(info.created_at)
        .unwrap_or(Duration::ZERO);
    writeln!(out, "name:    {}", info.name)?;
    writeln!(out, "kind:    {}", info.kind)?;
    writeln!(
        out,
        "size:    {} bytes of data, {} in all",
        info.data_len, info.total_len
    )?;
    writeln!(out, "object:  {}", object_place(&info.name))?;
    writeln!(
        out,
        "creator: pid {} ({})",
        info.creator.pid,
        alive(info.creator_alive)
    )?;
    writeln!(
        out,
        "created: {}s ago (unix ms {})",
        age.as_secs(),
        unix_ms(info.created_at)
    )?;
    if let Some(lock) = lock {
        writeln!(out, "lock:    {}", lock_words(lock))?;
    }
    if let Some(c) = channel {
        writeln!(out, "slots:   {} of {} bytes", c.slots, c.max_frame_len)?;
        if c.max_metadata_len > 0 {
            writeln!(
                out,
                "metadata: up to {} bytes per frame",
                c.max_metadata_len
            )?;
        }
        match &c.publisher {
            Some(p) => writeln!(out, "writer:  pid {} ({})", p.pid, writer_health(c, p))?,
            None => writeln!(out, "writer:  none")?,
        }
        match c.subscribers {
            Some(n) => writeln!(
                out,
                "leasers: {n} registered (read-only readers register nowhere and are not counted)"
            )?,
            None => writeln!(
                out,
                "leasers: none can lease: {}",
                c.lease_table_error
                    .as_deref()
                    .unwrap_or("the lease table cannot be read")
            )?,
        }
        if !c.lease_holders.is_empty() {
            let holders: Vec<String> = c
                .lease_holders
                .iter()
                .map(|h| format!("pid {} ({})", h.pid, alive(h.alive)))
                .collect();
            writeln!(out, "leases:  held by {}", holders.join(", "))?;
        }
        match frames.and_then(|f| f.latest.as_ref()) {
            Some(f) => writeln!(
                out,
                "latest:  frame {}: {}x{} {}, stride {}, {} bytes",
                c.latest_frame, f.meta.width, f.meta.height, f.meta.format, f.meta.stride, f.len
            )?,
            None => writeln!(out, "latest:  frame {}", c.latest_frame)?,
        }
        if c.dropped_frames > 0 {
            let by = c
                .dropped_because_of
                .map(|h| format!("; last blocked by pid {} ({})", h.pid, alive(h.alive)))
                .unwrap_or_default();
            writeln!(
                out,
                "dropped: {} frames because subscribers leased every free slot{by} (leases are revoked after {:?})",
                c.dropped_frames, c.max_lease
            )?;
        }
    }
    Ok(())
}

/// How long a live writer may publish nothing before `info` calls it
/// stalled.
const STALL_AFTER: Duration = Duration::from_secs(2);

fn idle_of(c: &shmcast::ChannelStatus) -> Duration {
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Duration::from_nanos(now_ns.saturating_sub(c.last_publish_ns))
}

/// "alive, publishing", "alive, stalled: nothing for 12.3s", or "dead".
fn writer_health(c: &shmcast::ChannelStatus, p: &shmcast::Holder) -> String {
    if !p.alive {
        return "dead".to_owned();
    }
    let idle = idle_of(c);
    if let Some(reason) = &c.stall_reason {
        format!("alive, stalled: {reason}")
    } else if idle > STALL_AFTER {
        format!(
            "alive, stalled: nothing published for {:.1}s",
            idle.as_secs_f64()
        )
    } else {
        "alive, publishing".to_owned()
    }
}

fn print_info_json(
    out: &mut impl Write,
    info: &SegmentInfo,
    lock: Option<&shmcast::LockState>,
    channel: Option<&shmcast::ChannelStatus>,
    frames: Option<&Frames>,
) -> io::Result<()> {
    let holder = |h: &shmcast::Holder| serde_json::json!({"pid": h.pid, "alive": h.alive});
    let mut v = serde_json::json!({
        "name": info.name.to_string(),
        "kind": info.kind.to_string(),
        "data_len": info.data_len,
        "total_len": info.total_len,
        "object": object_place(&info.name),
        "creator": {
            "pid": info.creator.pid,
            "start_time": info.creator.start_time,
            "alive": info.creator_alive,
        },
        "created_unix_ms": unix_ms(info.created_at),
    });
    if let Some(lock) = lock {
        v["lock"] = serde_json::json!({
            "writer": lock.writer.as_ref().map(holder),
            "readers": lock.readers.iter().map(holder).collect::<Vec<_>>(),
            "torn": lock.torn,
        });
    }
    if let Some(c) = channel {
        let health = health_of(c);
        v["health"] = health.into();
        v["channel"] = serde_json::json!({
            "slots": c.slots,
            "max_metadata_len": c.max_metadata_len,
            "max_frame_len": c.max_frame_len,
            "publisher": c.publisher.as_ref().map(holder),
            "health": health,
            "leasing_subscribers": c.subscribers,
            "lease_table_error": c.lease_table_error,
            "lease_holders": c.lease_holders.iter().map(holder).collect::<Vec<_>>(),
            "latest_frame": c.latest_frame,
            "last_publish_unix_ns": c.last_publish_ns,
            "dropped_frames": c.dropped_frames,
            "dropped_because_of": c.dropped_because_of.as_ref().map(holder),
            "max_lease_ms": c.max_lease.as_millis() as u64,
            "stall_reason": c.stall_reason,
            "instance": format!("{:016x}", c.instance),
            "leasers": c.subscribers,
            "fps": frames.and_then(|f| f.fps),
        });
        if let Some(f) = frames.and_then(|f| f.latest.as_ref()) {
            let ch = &mut v["channel"];
            ch["width"] = f.meta.width.into();
            ch["height"] = f.meta.height.into();
            ch["stride"] = f.meta.stride.into();
            ch["format"] = f.meta.format.to_string().into();
            ch["frame_len"] = f.len.into();
            ch["latest_timestamp_ns"] = f.meta.timestamp_ns.into();
        }
    }
    writeln!(out, "{v}")
}

fn clean() -> Result<(), String> {
    let report = shmcast::clean().map_err(|e| format!("cannot list shared memory: {e}"))?;
    for (name, why) in &report.skipped {
        eprintln!("left {name}: {why}");
    }
    output::printed(output::print(|out| {
        for info in &report.removed {
            writeln!(
                out,
                "removed {} ({}, {} bytes; creator pid {} is dead)",
                info.name, info.kind, info.data_len, info.creator.pid
            )?;
        }
        for name in &report.removed_unfinished {
            writeln!(out, "removed {name} (its creator died while creating it)")?;
        }
        for (name, pid) in &report.removed_truncated {
            writeln!(
                out,
                "removed {name} (truncated; its owner pid {pid} is dead)"
            )?;
        }
        if report.removed.is_empty()
            && report.removed_unfinished.is_empty()
            && report.removed_truncated.is_empty()
        {
            if cfg!(windows) {
                writeln!(
                    out,
                    "nothing to clean: Windows removes a section with its last handle"
                )?;
            } else {
                writeln!(out, "nothing to clean")?;
            }
        }
        Ok(())
    }))
}

/// A duration that must be more than zero, named in the error.
fn positive_seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "{what} {} is not a number of seconds above zero",
                parse::number(s)
            )
        })
}

fn seconds(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{} is not a number of seconds", parse::number(s)))
}

/// The latest frame into `buf`, grown when the channel was re-created
/// with larger frames since `buf` was sized (`wait_newer` follows the
/// name to the new channel). Never beyond the channel's largest frame.
fn read_growing(
    subscriber: &Subscriber,
    buf: &mut Vec<u8>,
    metadata: &mut Vec<u8>,
) -> Result<Option<shmcast::FrameInfo>, shmcast::Error> {
    loop {
        match subscriber.read_latest_with_metadata(buf, metadata) {
            Err(e) if e.kind() == shmcast::ErrorKind::BufferTooSmall => {
                let want = e
                    .frame_len()
                    .unwrap_or(usize::MAX)
                    .min(subscriber.max_frame_len());
                if want <= buf.len() {
                    return Err(e);
                }
                buf.resize(want, 0);
            }
            other => return other,
        }
    }
}

fn read(
    name: &Name,
    count: u64,
    timeout: Duration,
    md5: bool,
    out: Option<&std::path::Path>,
    metadata_out: Option<&std::path::Path>,
    access: shmcast::Access,
) -> Result<(), String> {
    if count == 0 {
        return Ok(());
    }
    let mut metadata_file = match metadata_out {
        Some(path) => Some(metadata::Writer::create(path).map_err(|e| {
            format!(
                "cannot open {} for channel {name}'s metadata: {e}",
                path.display()
            )
        })?),
        None => None,
    };
    let mut metadata = Vec::new();
    let options = shmcast::SubscriberOptions::new()
        .access(access)
        .wait(timeout);
    let mut subscriber = Subscriber::open_with(name, &options).map_err(|e| one_line(&e))?;
    let mut file = match out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open {} for channel {name}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut buf = vec![0u8; subscriber.max_frame_len()];
    let mut last = subscriber.latest_number();
    let mut stdout = io::stdout().lock();
    for read in 0..count {
        match subscriber.wait_newer(last, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == shmcast::ErrorKind::Timeout => {
                return Err(format!(
                    "channel {name}: got {read} of {count} frames; no new frame within {timeout:?}"
                ));
            }
            Err(e) => return Err(one_line(&e)),
        }
        let Some(info) =
            read_growing(&subscriber, &mut buf, &mut metadata).map_err(|e| one_line(&e))?
        else {
            continue;
        };
        last = info.number;
        let payload = &buf[..info.len];
        let m = &info.meta;
        let line = if md5 {
            use md5::Digest;
            let digest = md5::Md5::digest(payload);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{} {}x{} {} {hex}",
                info.number, m.width, m.height, m.format
            )
        } else {
            format!(
                "{} {}x{} {} {} bytes",
                info.number, m.width, m.height, m.format, info.len
            )
        };
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(());
        }
        if let Some(file) = file.as_mut() {
            file.write_all(payload).map_err(|e| {
                format!(
                    "writing channel {name} frames to {}: {e}",
                    out.unwrap().display()
                )
            })?;
        }
        if let Some(file) = metadata_file.as_mut() {
            file.write(&metadata).map_err(|e| {
                format!(
                    "writing channel {name}'s metadata to {}: {e}",
                    metadata_out.unwrap().display()
                )
            })?;
        }
    }
    Ok(())
}
