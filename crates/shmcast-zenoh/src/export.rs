//! `shmcast-zenoh export`: read-only subscribers of a local channel that
//! put its newest frame, and its health, on a Zenoh key.
//!
//! Two threads, two Zenoh publishers on the same key:
//! - frames: the loop reads the newest frame only when the previous one has
//!   left, so a slow link or importer skips frames here, at the source,
//!   instead of queueing them. The local publisher never waits for the
//!   bridge: the exporter reads by copy and holds no lease.
//! - status: every 0.25 s, the source's health (live, stalled and why,
//!   gone) at a higher Zenoh priority than frames, so it overtakes a large
//!   frame still crossing a slow link, and the importer can tell a busy
//!   link from a dead one.
//!
//! Congestion. Zenoh's `CongestionControl::Drop` drops a message whose
//! fragments do not all find room within 50 ms
//! (`max_wait_before_drop_fragments`), so on a link slower than about
//! 1 Gbit/s a 6 MB frame never arrives at all (eclipse-zenoh/zenoh#2258,
//! #1835; tests/netns.rs prints what it delivers). Frames therefore go with
//! `CongestionControl::Block`: each frame goes whole or not at all, and the
//! put blocks this loop (never the local publisher) while the link is
//! busy. Zenoh closes the session when a blocked put waits longer than
//! `wait_before_close` (5 s by default), which would make a frame that
//! needs more than 5 s on the link fail forever, so the exporter raises it
//! to 60 s (unless a `--config` file is given): raw frames need a link
//! that carries one frame a minute; slower links want `--encode jpeg`.
//! The exporter's TCP send buffer is kept small ([`TCP_SEND_BUFFER`]) so
//! that statuses are not stuck behind seconds of frame bytes.
//! Statuses go with `Drop`: a status that finds no room is stale anyway.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use shmcast::{ErrorKind, Health, Subscriber};
use zenoh::qos::{CongestionControl, Priority};
use zenoh::Wait;

use crate::wire::{Encoding, Header, State, HEADER_LEN};
use crate::BridgeError;

/// How long a blocked frame put may wait before Zenoh gives up on the
/// session, in µs (Zenoh's setting; see the module doc).
pub const WAIT_BEFORE_CLOSE_US: u64 = 60_000_000;

/// The exporter's TCP send buffer, in bytes (Linux doubles it). Statuses
/// overtake frames only in Zenoh's queues: once in the kernel's buffer,
/// bytes go in order, and Linux lets that buffer grow to megabytes, which
/// a slow link takes many seconds to drain. 64 KiB keeps a status behind
/// at most about a second of a 1 Mbit/s link, and still fills a LAN (it
/// limits a link to 128 KiB per round trip: 1 Gbit/s at 1 ms).
pub const TCP_SEND_BUFFER: u32 = 65_536;

/// What `export` was asked to do.
pub struct Export {
    pub name: String,
    pub key: String,
    pub encoding: Encoding,
    pub quality: u8,
    /// No frame for this long (or a reason from the publisher): stalled.
    pub stall_after: Duration,
    /// A status goes out this often.
    pub status_every: Duration,
    pub congestion: Congestion,
}

/// Zenoh's congestion control for frames: [`Congestion::Block`] always,
/// but for the test that shows why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Congestion {
    Block,
    Drop,
}

/// Runs until `stop` is set; the last status says the exporter stopped.
pub fn run(
    session: &zenoh::Session,
    export: &Export,
    stop: &AtomicBool,
) -> Result<(), BridgeError> {
    let declare = |what: &str, priority, congestion| {
        session
            .declare_publisher(export.key.clone())
            .congestion_control(congestion)
            .priority(priority)
            .express(true)
            .wait()
            .map_err(|e| {
                BridgeError::Zenoh(format!(
                    "declaring a {what} publisher on {}: {e}",
                    export.key
                ))
            })
    };
    let frames = declare(
        "frame",
        Priority::DataHigh,
        match export.congestion {
            Congestion::Block => CongestionControl::Block,
            Congestion::Drop => CongestionControl::Drop,
        },
    )?;
    let statuses = declare("status", Priority::InteractiveHigh, CongestionControl::Drop)?;
    // Why the newest frame could not be sent, for the status thread.
    let frame_error = Mutex::new(None);
    std::thread::scope(|scope| {
        scope.spawn(|| status_loop(&statuses, export, stop, &frame_error));
        frame_loop(&frames, export, stop, &frame_error);
    });
    Ok(())
}

/// Sends the newest frame whenever the last one has gone.
fn frame_loop(
    out: &zenoh::pubsub::Publisher<'_>,
    export: &Export,
    stop: &AtomicBool,
    frame_error: &Mutex<Option<String>>,
) {
    let mut source: Option<Subscriber> = None;
    let mut seen = 0;
    let mut put_error = None;
    let (mut frame, mut scratch) = (Vec::new(), Vec::new());
    while !stop.load(Relaxed) {
        let Some(sub) = source.as_mut() else {
            // The status thread says why it is missing.
            match Subscriber::open(export.name.as_str()) {
                Ok(sub) => {
                    eprintln!(
                        "shmcast-zenoh: exporting channel {} ({} bytes per frame at most) on {}",
                        export.name,
                        sub.max_frame_len(),
                        export.key
                    );
                    seen = 0;
                    source = Some(sub);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
            continue;
        };
        match sub.wait_newer(seen, Duration::from_millis(100)) {
            Ok(_) => {
                let error = match newest_message(sub, export, &mut frame, &mut scratch) {
                    Ok(Some((number, message))) => {
                        seen = number;
                        if let Err(e) = out.put(message).wait() {
                            say_once(&mut put_error, format!("putting on {}: {e}", export.key));
                        } else {
                            put_error = None;
                        }
                        None
                    }
                    Ok(None) => None,
                    Err(e) => {
                        // Not again for this frame: wait for the next one.
                        seen = sub.latest_number();
                        Some(e)
                    }
                };
                // The status thread says it (as the source's stall).
                *frame_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {}
            Err(e) => {
                eprintln!(
                    "shmcast-zenoh: channel {}: {e}; opening it again",
                    export.name
                );
                source = None;
            }
        }
    }
}

/// The newest frame as a message: its number and bytes, or `None` when
/// the channel has no frame.
fn newest_message(
    sub: &Subscriber,
    export: &Export,
    frame: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<Option<(u64, Vec<u8>)>, String> {
    let max = sub.max_frame_len();
    // The frame's metadata, read with it, goes after the payload.
    let mut metadata = Vec::new();
    let (info, mut message) = match export.encoding {
        Encoding::Raw => {
            // Read straight into the message, after room for its header:
            // the one copy out of shared memory is the only copy here.
            let mut message = vec![0; HEADER_LEN + max];
            let Some(info) = sub
                .read_latest_with_metadata(&mut message[HEADER_LEN..], &mut metadata)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            message.truncate(HEADER_LEN + info.len);
            (info, message)
        }
        Encoding::Jpeg => {
            frame.resize(max, 0);
            let Some(info) = sub
                .read_latest_with_metadata(frame, &mut metadata)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let mut message = vec![0; HEADER_LEN];
            crate::jpeg::encode(
                &info,
                &frame[..info.len],
                export.quality,
                scratch,
                &mut message,
            )
            // Without the frame's number: the same reason for every frame
            // is said once.
            .map_err(|e| format!("frames cannot be sent as JPEG: {e}"))?;
            (info, message)
        }
    };
    let payload_len = u32::try_from(message.len() - HEADER_LEN)
        .map_err(|_| format!("frame {} is larger than 4 GiB", info.number))?;
    // At most MAX_METADATA_LEN: the library checked it.
    let metadata_len = metadata.len() as u32;
    Header::frame(
        export.encoding,
        &info,
        max,
        sub.max_metadata_len(),
        sub.instance(),
    )
    .write(&mut message, payload_len, metadata_len);
    message.extend_from_slice(&metadata);
    Ok(Some((info.number, message)))
}

/// Says the source's health every `status_every`, and that the exporter
/// stopped when it does.
fn status_loop(
    out: &zenoh::pubsub::Publisher<'_>,
    export: &Export,
    stop: &AtomicBool,
    frame_error: &Mutex<Option<String>>,
) {
    let mut source: Option<Subscriber> = None;
    let (mut said, mut put_error) = (None, None);
    while !stop.load(Relaxed) {
        if source.is_none() {
            match Subscriber::open(export.name.as_str()) {
                Ok(sub) => source = Some(sub),
                Err(e) => {
                    let reason = match e.kind() {
                        ErrorKind::NotFound => {
                            format!("no channel {} on the exporter's machine", export.name)
                        }
                        _ => format!("cannot open channel {}: {e}", export.name),
                    };
                    tell(&mut said, State::Gone, &reason);
                    send(
                        out,
                        &Header::status(State::Gone, &reason, 0, 0),
                        &mut put_error,
                    );
                }
            }
        }
        if let Some(sub) = source.as_mut() {
            // A restarted source: this subscriber moves to its channel.
            let _ = sub.follow();
            let (state, reason) = match sub.health(export.stall_after) {
                Health::Live => match frame_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                {
                    None => (State::Live, String::new()),
                    Some(e) => (State::Stalled, e),
                },
                Health::Stalled { idle } => (
                    State::Stalled,
                    sub.stall_reason()
                        .unwrap_or_else(|| format!("no frame for {:.1} s", idle.as_secs_f64())),
                ),
                // (A subscriber is never missing its channel.)
                Health::Gone | Health::Missing => (
                    State::Gone,
                    format!("the publisher of {} is gone", export.name),
                ),
                Health::Truncated => (
                    State::Gone,
                    format!("channel {} was truncated by another process", export.name),
                ),
            };
            tell(&mut said, state, &reason);
            let header = Header::status(state, &reason, sub.max_frame_len(), sub.instance())
                .with_max_metadata(sub.max_metadata_len());
            send(out, &header, &mut put_error);
        }
        let next = std::time::Instant::now() + export.status_every;
        while !stop.load(Relaxed) && std::time::Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let instance = source.as_ref().map_or(0, Subscriber::instance);
    let header = Header::status(State::Gone, "the exporter stopped", 0, instance);
    send(out, &header, &mut put_error);
}

fn send(out: &zenoh::pubsub::Publisher<'_>, header: &Header, put_error: &mut Option<String>) {
    let mut message = vec![0; header.len()];
    header.write(&mut message, 0, 0);
    match out.put(message).wait() {
        Ok(()) => *put_error = None,
        Err(e) => say_once(put_error, format!("putting a status: {e}")),
    }
}

/// Prints `message` unless it was the last one printed in `last`.
fn say_once(last: &mut Option<String>, message: String) {
    if last.as_ref() != Some(&message) {
        eprintln!("shmcast-zenoh: {message}");
    }
    *last = Some(message);
}

/// Says on stderr when the source's state changes.
fn tell(said: &mut Option<(State, String)>, state: State, reason: &str) {
    // Stalled reasons that only count seconds are one state, not many.
    let key = (
        state,
        if state == State::Stalled && reason.starts_with("no frame for") {
            ""
        } else {
            reason
        },
    );
    if said.as_ref().map(|(s, r)| (*s, r.as_str())) != Some(key) {
        match state {
            State::Live => eprintln!("shmcast-zenoh: source live"),
            State::Stalled => eprintln!("shmcast-zenoh: source stalled: {reason}"),
            State::Gone => eprintln!("shmcast-zenoh: source gone: {reason}"),
        }
        *said = Some((key.0, key.1.to_owned()));
    }
}
