//! `shmcast-zenoh export`: a read-only subscriber of a local channel that
//! puts its newest frame on a Zenoh key, and reports the source's health
//! when there is no frame to send.
//!
//! Latest frame wins: the loop reads the newest frame only when the
//! previous one has left, so a slow link or importer skips frames here, at
//! the source, instead of queueing them. The local publisher never waits
//! for the bridge: the exporter reads by copy and holds no lease.
//!
//! Zenoh's `CongestionControl::Drop` drops a message whose fragments do
//! not all find room within 50 ms (`max_wait_before_drop_fragments`), so on
//! a link slower than about 1 Gbit/s a 6 MB frame never arrives at all
//! (eclipse-zenoh/zenoh#2258, #1835). The bridge therefore puts frames with
//! `CongestionControl::Block`: each frame goes whole or not at all, the
//! send blocks this loop (never the local publisher) while the link is
//! busy, and frames published meanwhile are skipped. The link test in
//! `tests/netns.rs` shows frames arriving whole over a slow link.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use shmcast::{Health, OpenError, ReadError, Subscriber, SubscriberError};
use zenoh::qos::{CongestionControl, Priority};
use zenoh::Wait;

use crate::wire::{Encoding, Header, State, HEADER_LEN};
use crate::BridgeError;

/// What `export` was asked to do.
pub struct Export {
    pub name: String,
    pub key: String,
    pub encoding: Encoding,
    pub quality: u8,
    /// No frame for this long (or a reason from the publisher): stalled.
    pub stall_after: Duration,
    /// A status goes out when nothing else did for this long.
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

/// Runs until `stop` is set.
pub fn run(
    session: &zenoh::Session,
    export: &Export,
    stop: &AtomicBool,
) -> Result<(), BridgeError> {
    let publisher = session
        .declare_publisher(export.key.clone())
        .congestion_control(match export.congestion {
            Congestion::Block => CongestionControl::Block,
            Congestion::Drop => CongestionControl::Drop,
        })
        .priority(Priority::DataHigh)
        .express(true)
        .wait()
        .map_err(|e| BridgeError::Zenoh(format!("declaring a publisher on {}: {e}", export.key)))?;
    let mut out = Outbox {
        publisher,
        key: &export.key,
        last_sent: None,
        last_error: None,
    };
    let mut source: Option<Subscriber> = None;
    let mut seen = 0;
    let mut said = None;
    let (mut frame, mut scratch) = (Vec::new(), Vec::new());
    while !stop.load(Relaxed) {
        let Some(sub) = source.as_mut() else {
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
                Err(SubscriberError::Open(OpenError::NotFound { .. })) => {
                    let reason = format!("no channel {} on the exporter's machine", export.name);
                    tell(&mut said, State::Gone, &reason);
                    if out.status_due(export.status_every) {
                        out.send_status(State::Gone, &reason, 0);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(BridgeError::Source(e)),
            }
            continue;
        };
        match sub.wait_newer(seen, Duration::from_millis(100)) {
            Ok(_) => match send_newest(sub, export, &mut out, &mut frame, &mut scratch) {
                Ok(Some(number)) => {
                    seen = number;
                    tell(&mut said, State::Live, "");
                }
                Ok(None) => {}
                Err(e) => eprintln!("shmcast-zenoh: channel {}: {e}", export.name),
            },
            Err(ReadError::Timeout { .. }) => {}
            Err(e) => {
                eprintln!(
                    "shmcast-zenoh: channel {}: {e}; opening it again",
                    export.name
                );
                source = None;
                continue;
            }
        }
        if out.status_due(export.status_every) {
            let (state, reason) = match sub.health(export.stall_after) {
                Health::Live => (State::Live, String::new()),
                Health::Stalled { idle } => (
                    State::Stalled,
                    sub.stall_reason()
                        .unwrap_or_else(|| format!("no frame for {:.1} s", idle.as_secs_f64())),
                ),
                Health::Gone => (
                    State::Gone,
                    format!("the publisher of {} is gone", export.name),
                ),
            };
            tell(&mut said, state, &reason);
            out.send_status(state, &reason, sub.max_frame_len());
        }
    }
    out.send_status(State::Gone, "the exporter stopped", 0);
    Ok(())
}

/// Reads the newest frame and puts it; its number, or `None` when the
/// channel has no frame.
fn send_newest(
    sub: &Subscriber,
    export: &Export,
    out: &mut Outbox,
    frame: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<Option<u64>, String> {
    let max = sub.max_frame_len();
    let (info, message) = match export.encoding {
        Encoding::Raw => {
            // Read straight into the message, after room for its header:
            // the one copy out of shared memory is the only copy here.
            let mut message = vec![0; HEADER_LEN + max];
            let Some(info) = sub
                .read_latest(&mut message[HEADER_LEN..])
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            message.truncate(HEADER_LEN + info.len);
            (info, message)
        }
        Encoding::Jpeg => {
            frame.resize(max, 0);
            let Some(info) = sub.read_latest(frame).map_err(|e| e.to_string())? else {
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
            .map_err(|e| format!("frame {}: cannot encode as JPEG: {e}", info.number))?;
            (info, message)
        }
    };
    let mut message = message;
    let payload_len = u32::try_from(message.len() - HEADER_LEN)
        .map_err(|_| format!("frame {} is larger than 4 GiB", info.number))?;
    Header::frame(export.encoding, &info, max).write(&mut message, payload_len);
    out.put(message);
    Ok(Some(info.number))
}

/// The Zenoh side of the exporter.
struct Outbox<'a> {
    publisher: zenoh::pubsub::Publisher<'a>,
    key: &'a str,
    last_sent: Option<Instant>,
    /// The last failure said, so a down session is reported once.
    last_error: Option<String>,
}

impl Outbox<'_> {
    fn status_due(&self, every: Duration) -> bool {
        self.last_sent.is_none_or(|t| t.elapsed() >= every)
    }

    fn send_status(&mut self, state: State, reason: &str, max_frame_len: usize) {
        let header = Header::status(state, reason, max_frame_len);
        let mut message = vec![0; header.len()];
        header.write(&mut message, 0);
        self.put(message);
    }

    fn put(&mut self, message: Vec<u8>) {
        self.last_sent = Some(Instant::now());
        match self.publisher.put(message).wait() {
            Ok(()) => self.last_error = None,
            Err(e) => {
                let e = e.to_string();
                if self.last_error.as_ref() != Some(&e) {
                    eprintln!("shmcast-zenoh: putting on {}: {e}", self.key);
                }
                self.last_error = Some(e);
            }
        }
    }
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
