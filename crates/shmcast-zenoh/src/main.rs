//! `shmcast-zenoh`: carries shmcast channels between machines over Zenoh.
//!
//! ```text
//! machine A (the camera):   shmcast-zenoh export cam --key factory/line1/cam --listen tcp/0.0.0.0:7447
//! machine B (the viewer):   shmcast-zenoh import factory/line1/cam cam --connect tcp/A:7447
//! ```
//!
//! Apps on machine B open channel `cam` as if the camera were local. The
//! bridge lives in its own crate so the library and the `shmcast` command
//! never depend on Zenoh's few hundred crates.

mod check;
mod export;
mod import;
mod jpeg;
mod say;
mod wire;

use shmcast_args as parse;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shmcast::CreateOptions;
use zenoh::Wait;

/// Bridge shmcast channels across machines over Zenoh.
#[derive(Parser)]
#[command(name = "shmcast-zenoh", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Put a local channel's frames on a Zenoh key.
    Export {
        /// The local channel to read (read-only: needs read access only)
        name: String,
        /// The Zenoh key to put frames on, e.g. factory/line1/cam
        #[arg(long)]
        key: String,
        /// raw: the frames as published; jpeg: compressed (imported as
        /// rgb24, or gray8 from gray8)
        #[arg(long, value_enum, default_value = "raw")]
        encode: wire::Encoding,
        /// JPEG quality, 1-100
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
        quality: u8,
        /// Seconds without a frame before the source counts as stalled
        #[arg(long, default_value_t = 2.0)]
        stall_after: f64,
        /// Zenoh congestion control for frames. Only for showing why the
        /// default is block: with drop, large frames on a slow link never
        /// arrive (see src/export.rs)
        #[arg(long, value_enum, default_value = "block", hide = true)]
        congestion: export::Congestion,
        #[command(flatten)]
        net: Net,
    },
    /// Publish the frames on a Zenoh key into a local channel.
    Import {
        /// The Zenoh key an exporter puts on
        key: String,
        /// The local channel to publish
        name: String,
        /// Slots in the local channel's ring
        #[arg(long, default_value_t = shmcast::DEFAULT_SLOTS)]
        slots: u32,
        /// Permission bits of the local channel (Linux), e.g. 0644 to let
        /// every user read it
        #[arg(long, value_parser = parse::mode)]
        mode: Option<u32>,
        /// Security descriptor of the local channel (Windows, SDDL)
        #[arg(long)]
        sddl: Option<String>,
        /// Largest frame accepted, in bytes (K, M, G for KiB, MiB, GiB):
        /// the local channel is at most SLOTS times this, and Zenoh
        /// refuses longer messages, whatever a peer sends
        #[arg(long, default_value = "64M", value_parser = parse::size)]
        max_frame_len: usize,
        /// Seconds without any message from the exporter before readers
        /// are told the link is down (the exporter sends a status every
        /// 0.25 s, ahead of frames; on a link of 1 Mbit/s or less a status
        /// can wait 1.5 s behind a frame: give such links 3 or more)
        #[arg(long, default_value_t = 2.0)]
        link_timeout: f64,
        #[command(flatten)]
        net: Net,
    },
}

/// How this process joins the Zenoh network.
#[derive(Args)]
struct Net {
    /// A Zenoh configuration file (JSON5); the options below override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// An endpoint to connect to, e.g. tcp/192.168.1.20:7447 (repeatable)
    #[arg(long)]
    connect: Vec<String>,
    /// An endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable)
    #[arg(long)]
    listen: Vec<String>,
    /// Find peers by multicast scouting (off unless a --config turns it
    /// on: factory networks rarely want it)
    #[arg(long)]
    scout: bool,
}

/// What stops the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Usage(String),
    #[error("zenoh: {0}")]
    Zenoh(String),
    #[error("{0}")]
    Source(#[source] shmcast::Error),
    #[error("{0}")]
    Channel(#[source] shmcast::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmcast-zenoh: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` on a thread of its own until it ends, or until Ctrl-C
/// (or SIGTERM) and then at most a second more: a frame put can block for
/// long on a slow link, and stopping must not wait for it.
fn run(command: Command) -> Result<(), BridgeError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = std::sync::mpsc::channel();
    {
        let stop = stop.clone();
        let done_tx = done_tx.clone();
        ctrlc::set_handler(move || {
            stop.store(true, Relaxed);
            let _ = done_tx.send(None);
        })
        .map_err(|e| BridgeError::Usage(format!("cannot handle Ctrl-C: {e}")))?;
    }
    let bridge = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let result = bridge(command, &stop);
            let _ = done_tx.send(Some(result));
        })
    };
    match done.recv() {
        Ok(Some(result)) => {
            let _ = bridge.join();
            result
        }
        // Stopped: the last status goes out within 20 ms.
        _ => match done.recv_timeout(Duration::from_secs(1)) {
            Ok(Some(result)) => result,
            _ => Ok(()),
        },
    }
}

fn bridge(command: Command, stop: &AtomicBool) -> Result<(), BridgeError> {
    match command {
        Command::Export {
            name,
            key,
            encode,
            quality,
            stall_after,
            congestion,
            net,
        } => {
            check_key(&key)?;
            let export = export::Export {
                name,
                key,
                encoding: encode,
                quality,
                stall_after: positive_seconds(stall_after, "--stall-after")?,
                status_every: Duration::from_millis(250),
                congestion,
            };
            // See export.rs: a frame put may block this long on a slow link.
            let wait = export::WAIT_BEFORE_CLOSE_US.to_string();
            let sndbuf = export::TCP_SEND_BUFFER.to_string();
            let session = open(
                &net,
                &[
                    (
                        "transport/link/tx/queue/congestion_control/block/wait_before_close",
                        wait,
                    ),
                    ("transport/link/tcp/so_sndbuf", sndbuf),
                ],
            )?;
            export::run(&session, &export, stop)
        }
        Command::Import {
            key,
            name,
            slots,
            mode,
            sddl,
            max_frame_len,
            link_timeout,
            net,
        } => {
            check_key(&key)?;
            // Checked now: the channel is created only when frames come.
            shmcast::Name::new(&name).map_err(|e| BridgeError::Usage(e.to_string()))?;
            let mut create = CreateOptions::new().replace_stale(true);
            if let Some(mode) = mode {
                create = create.mode(mode);
            }
            if let Some(sddl) = &sddl {
                create = create.sddl(sddl);
            }
            let import = import::Import {
                key,
                name,
                slots,
                create,
                max_frame_len,
                link_timeout: positive_seconds(link_timeout, "--link-timeout")?,
            };
            // Zenoh's limit on a reassembled message (1 GiB by default):
            // nothing much longer than a frame, whatever a peer sends.
            let limit = max_frame_len.saturating_add(4096).to_string();
            let session = open(&net, &[("transport/link/rx/max_message_size", limit)])?;
            import::run(&session, &import, stop)
        }
    }
}

/// Opens a Zenoh session as `net` says, with the bridge's `tuning` unless
/// a `--config` file is given (then the file says).
fn open(net: &Net, tuning: &[(&str, String)]) -> Result<zenoh::Session, BridgeError> {
    let mut config = match &net.config {
        Some(path) => zenoh::Config::from_file(path).map_err(|e| {
            BridgeError::Usage(format!("Zenoh configuration {}: {e}", path.display()))
        })?,
        None => zenoh::Config::default(),
    };
    let mut set = |key: &str, value: String| {
        config
            .insert_json5(key, &value)
            .map_err(|e| BridgeError::Usage(format!("Zenoh setting {key} = {value}: {e}")))
    };
    if net.scout || net.config.is_none() {
        set("scouting/multicast/enabled", net.scout.to_string())?;
    }
    if net.config.is_none() {
        for (key, value) in tuning {
            set(key, value.clone())?;
        }
    }
    if !net.connect.is_empty() {
        set("connect/endpoints", json_strings(&net.connect))?;
    }
    if !net.listen.is_empty() {
        set("listen/endpoints", json_strings(&net.listen))?;
    }
    zenoh::open(config)
        .wait()
        .map_err(|e| BridgeError::Zenoh(format!("opening a session: {e}")))
}

/// A JSON array of strings.
fn json_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(","))
}

/// A Zenoh key expression the bridge can put on: no wildcards.
fn check_key(key: &str) -> Result<(), BridgeError> {
    let bad = |why: &str| BridgeError::Usage(format!("key {key:?}: {why}"));
    let parsed = zenoh::key_expr::KeyExpr::try_from(key).map_err(|e| bad(&e.to_string()))?;
    if parsed.is_wild() {
        return Err(bad("wildcards (* and **) name many keys; give one"));
    }
    Ok(())
}

fn positive_seconds(s: f64, what: &str) -> Result<Duration, BridgeError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            BridgeError::Usage(format!("{what} {s} is not a number of seconds above zero"))
        })
}
