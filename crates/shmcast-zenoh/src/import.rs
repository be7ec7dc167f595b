//! `shmcast-zenoh import`: a Zenoh subscriber that publishes what the
//! exporter sends into a local channel, whose readers use the ordinary API
//! and cannot tell the frames crossed a network.
//!
//! - Frames keep the source's numbers (gaps where the bridge dropped
//!   frames), metadata and capture timestamps. JPEG frames are decoded
//!   straight into the loan. A source restart (a new source instance,
//!   whose numbers start again) restarts this channel too; a frame numbered
//!   at or below the last one of the same instance (a second exporter on
//!   the key) is skipped, unless such frames keep coming: then the numbers
//!   went back (or one frame jumped far ahead) and the channel restarts
//!   with them.
//! - Latest wins: Zenoh's callback keeps one waiting frame and one waiting
//!   status (each newer one replaces the last), so a slow importer drops
//!   frames instead of queueing them, and a status never pushes out a
//!   frame.
//! - Health crosses: the exporter's "stalled" becomes a stall reported on
//!   this channel; "gone" closes this channel's publisher, so its readers
//!   see `Gone` (and follow the name when frames return); silence for
//!   `link_timeout` (a cut link, a killed exporter) is reported as a stall.
//! - Every message is checked ([`wire::decode`]) and
//!   bounded by `max_frame_len` before anything is created or written.
//! - Anyone who can put on the key is heard, so what they can make this
//!   side do is bounded: the channel is re-created at most once a second,
//!   statuses of another source than the one whose frames flow are
//!   ignored, and refusals and re-creations are said once, then summed up
//!   every 10 s ([`say`]).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use shmcast::{ChannelOptions, CreateOptions, ErrorKind, FrameMeta, Publisher};
use zenoh::sample::Sample;
use zenoh::Wait;

use crate::say::{self, Repeats};
use crate::wire::{self, Encoding, Header, Kind, State};
use crate::{check, BridgeError};

/// What `import` was asked to do.
pub struct Import {
    pub key: String,
    pub name: String,
    pub slots: u32,
    pub create: CreateOptions,
    /// Frames above this many bytes are refused (and Zenoh refuses
    /// messages much larger).
    pub max_frame_len: usize,
    /// Nothing from the exporter for this long: the link is reported down.
    pub link_timeout: Duration,
}

/// The local channel is (re)created at most once per this long: each time
/// its readers must reopen it, and anyone on the key can ask for it.
const RECREATE_EVERY: Duration = Duration::from_secs(1);
/// How often refusals and re-creations that keep coming are summed up.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Frames of the source at or below the last number, this many in a row
/// or for this long, mean its numbers went back: a second exporter's
/// frames are interleaved with newer ones, and never run this long.
const BEHIND_RUN: u32 = 30;
const BEHIND_FOR: Duration = Duration::from_secs(1);

/// What Zenoh's callback leaves for the loop: the newest frame and the
/// newest status not yet taken, and when the last message arrived.
#[derive(Default)]
struct Inbox {
    waiting: Mutex<Waiting>,
    arrived: Condvar,
}

#[derive(Default)]
struct Waiting {
    frame: Option<Sample>,
    status: Option<Sample>,
    /// Set on arrival, not when the loop gets to it: a loop busy decoding
    /// a frame must not take the exporter for silent.
    last: Option<Instant>,
}

impl Inbox {
    fn put(&self, sample: Sample) {
        // Byte 5 of a message is its kind: 2 a status, else a frame (or
        // junk, which the loop refuses). Only the first bytes are looked at.
        let mut head = [0u8; 6];
        let is_status = std::io::Read::read_exact(&mut sample.payload().reader(), &mut head)
            .is_ok_and(|()| head[5] == 2);
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if is_status {
            waiting.status = Some(sample);
        } else {
            waiting.frame = Some(sample);
        }
        waiting.last = Some(Instant::now());
        self.arrived.notify_one();
    }

    /// The waiting messages, status first; waits up to `timeout`.
    fn take(&self, timeout: Duration) -> Vec<Sample> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let (mut waiting, _) = self
            .arrived
            .wait_timeout_while(waiting, timeout, |w| {
                w.frame.is_none() && w.status.is_none()
            })
            .unwrap_or_else(|p| p.into_inner());
        let (frame, status) = (waiting.frame.take(), waiting.status.take());
        status.into_iter().chain(frame).collect()
    }

    /// When the last message arrived.
    fn last(&self) -> Option<Instant> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).last
    }
}

/// Runs until `stop` is set.
pub fn run(
    session: &zenoh::Session,
    import: &Import,
    stop: &AtomicBool,
) -> Result<(), BridgeError> {
    let inbox = Arc::new(Inbox::default());
    let _subscriber = {
        let inbox = inbox.clone();
        session
            .declare_subscriber(import.key.clone())
            .callback(move |sample| inbox.put(sample))
            .wait()
            .map_err(|e| BridgeError::Zenoh(format!("subscribing to {}: {e}", import.key)))?
    };
    eprintln!(
        "shmcast-zenoh: importing {} into channel {}",
        import.key, import.name
    );
    let mut channel = Channel {
        import,
        publisher: None,
        source_instance: None,
        last_number: 0,
        behind: None,
        opened_at: None,
        link_down: false,
        refused: Repeats::new(SUMMARY_EVERY),
        recreated: Repeats::new(SUMMARY_EVERY),
    };
    while !stop.load(Relaxed) {
        for sample in inbox.take(Duration::from_millis(100)) {
            channel.take(&sample.payload().to_bytes(), Instant::now())?;
        }
        let now = Instant::now();
        channel.summarise(now);
        if inbox
            .last()
            .is_some_and(|t| now.saturating_duration_since(t) > import.link_timeout)
        {
            channel.link_lost();
        }
    }
    Ok(())
}

/// The local side: the channel and what it last published.
struct Channel<'a> {
    import: &'a Import,
    /// `None` before the first frame, and while the source is gone.
    publisher: Option<Publisher>,
    /// The source channel the frames come from (see `Subscriber::instance`).
    source_instance: Option<u64>,
    /// The last frame number published (the source's); 0 while none has
    /// been on this channel.
    last_number: u64,
    /// Frames at or below `last_number` in a row, since when.
    behind: Option<(u32, Instant)>,
    /// When the channel was last (re)created.
    opened_at: Option<Instant>,
    /// A stall for a silent link is reported.
    link_down: bool,
    /// Messages skipped, and channels re-created.
    refused: Repeats,
    recreated: Repeats,
}

impl Channel<'_> {
    /// Handles one message, arrived at about `now`. Bad messages are
    /// reported and skipped; only a channel that cannot be created at all
    /// is an error.
    fn take(&mut self, message: &[u8], now: Instant) -> Result<(), BridgeError> {
        let result = match wire::decode(message) {
            Ok((header, (payload, metadata))) => {
                if self.link_down {
                    eprintln!("shmcast-zenoh: the exporter is heard again");
                    self.link_down = false;
                    if let Some(p) = self.publisher.as_mut() {
                        p.clear_stall();
                    }
                }
                match header.kind {
                    Kind::Frame(encoding) => self.frame(&header, encoding, payload, metadata, now),
                    Kind::Status => self.status(&header, now),
                }
            }
            Err(e) => Err(Refused::Message(e.to_string())),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Refused::Create(e)) => Err(BridgeError::Channel(e)),
            Err(Refused::Message(why)) => {
                if let Some(why) = self.refused.note(now, say::clean(&why)) {
                    eprintln!(
                        "shmcast-zenoh: skipping a message on {}: {why}",
                        self.import.key
                    );
                }
                Ok(())
            }
        }
    }

    /// Says the summaries due at `now`.
    fn summarise(&mut self, now: Instant) {
        if let Some((count, over, last)) = self.refused.summary(now) {
            eprintln!(
                "shmcast-zenoh: {count} more messages on {} refused in the last {:.0} s; last: {last}",
                self.import.key,
                over.as_secs_f64()
            );
        }
        if let Some((count, over, last)) = self.recreated.summary(now) {
            eprintln!(
                "shmcast-zenoh: channel {} re-created {count} more times in the last {:.0} s; last: {last}",
                self.import.name,
                over.as_secs_f64()
            );
        }
    }

    fn frame(
        &mut self,
        h: &Header,
        encoding: Encoding,
        payload: &[u8],
        metadata: &[u8],
        now: Instant,
    ) -> Result<(), Refused> {
        let (len, jpeg) = check::frame(h, encoding, payload, self.import.max_frame_len)
            .map_err(Refused::Message)?;
        // The channel holds the source's largest frame when it can (so a
        // size change there needs no new channel here), and this one.
        let want = usize::try_from(h.source_max_frame_len)
            .unwrap_or(usize::MAX)
            .min(self.import.max_frame_len)
            .max(len);
        let renew = match self.publisher.as_ref() {
            None => Some("frames are back".to_owned()),
            Some(_) if self.source_instance != Some(h.source_instance) => Some(format!(
                "the source restarted (instance {:x})",
                h.source_instance
            )),
            Some(_) if h.number <= self.last_number => {
                if !self.behind_long_enough(now) {
                    return Err(Refused::Message(format!(
                        "frame {} of the source is not after the last one ({}): skipped \
                         (a second exporter on the key?)",
                        h.number, self.last_number
                    )));
                }
                Some(format!(
                    "the source's frame numbers went back from {} to {}; following them",
                    self.last_number, h.number
                ))
            }
            Some(p) if p.max_frame_len() < len => Some(format!(
                "frame {} has {len} bytes, more than the channel's {}",
                h.number,
                p.max_frame_len()
            )),
            Some(p) if p.max_metadata_len() < metadata.len() => Some(format!(
                "frame {} has {} bytes of metadata, more than the channel's {}",
                h.number,
                metadata.len(),
                p.max_metadata_len()
            )),
            Some(_) => None,
        };
        // The same for metadata: the source's largest, and this frame's.
        let want_metadata = (h.source_max_metadata as usize)
            .min(wire::METADATA_MAX)
            .max(metadata.len());
        if let Some(why) = renew {
            self.open(want, want_metadata, why, now)?;
            self.source_instance = Some(h.source_instance);
        }
        let publisher = self.publisher.as_mut().expect("opened above");
        let mut loan = match publisher.loan(len) {
            Ok(loan) => loan,
            // Readers hold every other slot: this frame is dropped, as a
            // local publisher's would be.
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => return Ok(()),
            Err(e) => return Err(Refused::Message(format!("frame {}: {e}", h.number))),
        };
        let meta = match jpeg {
            None => {
                loan.copy_from_slice(payload);
                FrameMeta {
                    width: h.width,
                    height: h.height,
                    format: h.format,
                    stride: h.stride,
                    timestamp_ns: h.timestamp_ns,
                }
            }
            Some(d) => {
                let format = d.format;
                d.decode_into(&mut loan)
                    .map_err(|e| Refused::Message(format!("frame {}: {e}", h.number)))?;
                FrameMeta {
                    timestamp_ns: h.timestamp_ns,
                    ..FrameMeta::new(h.width, h.height, format)
                }
            }
        };
        // Within the channel's metadata: it was (re)created for it above.
        loan.set_metadata(metadata)
            .map_err(|e| Refused::Message(format!("frame {}: {e}", h.number)))?;
        loan.commit_numbered(&meta, h.number);
        self.last_number = h.number;
        self.behind = None;
        Ok(())
    }

    /// Counts a frame at or below the last number: whether such frames
    /// have now come long enough in a row to follow them.
    fn behind_long_enough(&mut self, now: Instant) -> bool {
        let (run, since) = self.behind.get_or_insert((0, now));
        *run += 1;
        *run >= BEHIND_RUN || now.saturating_duration_since(*since) >= BEHIND_FOR
    }

    fn status(&mut self, h: &Header, now: Instant) -> Result<(), Refused> {
        // Once a source's frames flow, only its statuses count: anyone on
        // the key could otherwise close or stall the channel at will. The
        // price: a source that restarts and stalls (or an exporter that
        // restarts and finds no source, whose "gone" names none) is not
        // reported here until frames of the new source come; readers see
        // frames stop by their own clock meanwhile.
        if self.last_number > 0 && self.source_instance != Some(h.source_instance) {
            return Err(Refused::Message(format!(
                "a status of source instance {:x} while frames come from {:x}: ignored",
                h.source_instance,
                self.source_instance.unwrap_or(0)
            )));
        }
        let reason = say::clean(&h.reason);
        match h.state {
            State::Live => {
                if let Some(p) = self.publisher.as_mut() {
                    p.clear_stall();
                }
            }
            State::Stalled => {
                if self.publisher.is_none() && h.source_max_frame_len > 0 {
                    let len = usize::try_from(h.source_max_frame_len).unwrap_or(usize::MAX);
                    let why = format!("the source stalled ({reason})");
                    let metadata = (h.source_max_metadata as usize).min(wire::METADATA_MAX);
                    self.open(len.min(self.import.max_frame_len), metadata, why, now)?;
                    self.source_instance = Some(h.source_instance);
                }
                if let Some(p) = self.publisher.as_mut() {
                    p.report_stall(&format!("source stalled: {reason}"));
                }
            }
            State::Gone => {
                if self.publisher.take().is_some() {
                    eprintln!(
                        "shmcast-zenoh: {reason}; channel {} closed until frames return",
                        self.import.name
                    );
                }
                self.last_number = 0;
                self.source_instance = None;
            }
        }
        Ok(())
    }

    /// Nothing heard for `link_timeout`.
    fn link_lost(&mut self) {
        if self.link_down {
            return;
        }
        self.link_down = true;
        let reason = format!(
            "nothing from the exporter on {} for {:.1} s: the link is down or the exporter stopped",
            self.import.key,
            self.import.link_timeout.as_secs_f64()
        );
        eprintln!("shmcast-zenoh: {reason}");
        if let Some(p) = self.publisher.as_mut() {
            p.report_stall(&reason);
        }
    }

    /// (Re)creates the channel for frames of up to `max_frame_len` bytes
    /// with up to `max_metadata` bytes of metadata, for the reason `why`,
    /// unless it was less than a second ago.
    fn open(
        &mut self,
        max_frame_len: usize,
        max_metadata: usize,
        why: String,
        now: Instant,
    ) -> Result<(), Refused> {
        let first = self.opened_at.is_none();
        if self
            .opened_at
            .is_some_and(|t| now.saturating_duration_since(t) < RECREATE_EVERY)
        {
            return Err(Refused::Message(format!(
                "{why}, but channel {} was re-created less than a second ago: dropped",
                self.import.name
            )));
        }
        // Failures count too: they are tried again at most once a second.
        self.opened_at = Some(now);
        // Our own earlier channel first, so its name is free.
        self.publisher = None;
        self.last_number = 0;
        self.behind = None;
        let options = ChannelOptions::new(max_frame_len.max(1))
            .max_metadata(max_metadata)
            .slots(self.import.slots)
            .create_options(self.import.create.clone());
        let publisher =
            Publisher::create_with(self.import.name.as_str(), &options).map_err(|e| {
                match e {
                    // Another publisher has the name: nothing to wait for.
                    e if e.kind() == ErrorKind::WriterAlive => Refused::Create(e),
                    // Out of shared memory, readers holding an old section on
                    // Windows, ...: said, tried again with a later frame.
                    e => {
                        Refused::Message(format!("cannot create channel {}: {e}", self.import.name))
                    }
                }
            })?;
        self.publisher = Some(publisher);
        let ready = format!(
            "channel {} ready ({max_frame_len} bytes per frame at most)",
            self.import.name
        );
        if first {
            eprintln!("shmcast-zenoh: {ready}");
        } else if let Some(why) = self.recreated.note(now, why) {
            eprintln!("shmcast-zenoh: {why}: {ready}");
        }
        Ok(())
    }
}

/// Why a message left no frame.
enum Refused {
    /// The message is bad or does not fit: skipped.
    Message(String),
    /// The local channel cannot be created: fatal.
    Create(shmcast::Error),
}
