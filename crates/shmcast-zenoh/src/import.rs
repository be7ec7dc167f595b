//! `shmcast-zenoh import`: a Zenoh subscriber that publishes what the
//! exporter sends into a local channel, whose readers use the ordinary API
//! and cannot tell the frames crossed a network.
//!
//! - Frames keep the source's numbers (gaps where the bridge dropped
//!   frames), metadata and capture timestamps. JPEG frames are decoded
//!   straight into the loan. A source restart (a new source instance,
//!   whose numbers start again) restarts this channel too; a frame numbered
//!   at or below the last one of the same instance (a second exporter on
//!   the key) is skipped.
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

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use shmcast::{ChannelOptions, CreateOptions, ErrorKind, FrameMeta, PixelFormat, Publisher};
use zenoh::sample::Sample;
use zenoh::Wait;

use crate::wire::{self, Encoding, Header, Kind, State};
use crate::BridgeError;

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

/// The highest frame number taken from the wire (the library's limit).
const MAX_NUMBER: u64 = 1 << 48;

/// What Zenoh's callback leaves for the loop: the newest frame and the
/// newest status not yet taken.
#[derive(Default)]
struct Inbox {
    waiting: Mutex<(Option<Sample>, Option<Sample>)>,
    arrived: Condvar,
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
            waiting.1 = Some(sample);
        } else {
            waiting.0 = Some(sample);
        }
        self.arrived.notify_one();
    }

    /// The waiting messages, status first; waits up to `timeout`.
    fn take(&self, timeout: Duration) -> Vec<Sample> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let (mut waiting, _) = self
            .arrived
            .wait_timeout_while(waiting, timeout, |w| w.0.is_none() && w.1.is_none())
            .unwrap_or_else(|p| p.into_inner());
        let (frame, status) = (waiting.0.take(), waiting.1.take());
        status.into_iter().chain(frame).collect()
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
        link_down: false,
        refused: None,
    };
    let mut last_message: Option<Instant> = None;
    while !stop.load(Relaxed) {
        for sample in inbox.take(Duration::from_millis(100)) {
            last_message = Some(Instant::now());
            channel.take(&sample.payload().to_bytes())?;
        }
        if last_message.is_some_and(|t| t.elapsed() > import.link_timeout) {
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
    /// The last frame number published (the source's).
    last_number: u64,
    /// A stall for a silent link is reported.
    link_down: bool,
    /// The last refusal said, so a stream of bad messages is said once.
    refused: Option<String>,
}

impl Channel<'_> {
    /// Handles one message. Bad messages are reported and skipped; only a
    /// channel that cannot be created at all is an error.
    fn take(&mut self, message: &[u8]) -> Result<(), BridgeError> {
        let result = match wire::decode(message) {
            Ok((header, payload)) => {
                if self.link_down {
                    eprintln!("shmcast-zenoh: the exporter is heard again");
                    self.link_down = false;
                    if let Some(p) = self.publisher.as_mut() {
                        p.clear_stall();
                    }
                }
                match header.kind {
                    Kind::Frame(encoding) => self.frame(&header, encoding, payload),
                    Kind::Status => self.status(&header),
                }
            }
            Err(e) => Err(Refused::Message(e.to_string())),
        };
        match result {
            Ok(()) => {
                self.refused = None;
                Ok(())
            }
            Err(Refused::Create(e)) => Err(BridgeError::Channel(e)),
            Err(Refused::Message(why)) => {
                if self.refused.as_ref() != Some(&why) {
                    eprintln!(
                        "shmcast-zenoh: skipping a message on {}: {why}",
                        self.import.key
                    );
                }
                self.refused = Some(why);
                Ok(())
            }
        }
    }

    fn frame(&mut self, h: &Header, encoding: Encoding, payload: &[u8]) -> Result<(), Refused> {
        let jpeg = match encoding {
            Encoding::Raw => None,
            Encoding::Jpeg => {
                let d = crate::jpeg::open(payload).map_err(Refused::Message)?;
                if (d.width, d.height) != (h.width, h.height) {
                    return Err(Refused::Message(format!(
                        "a JPEG of {}x{} for a frame of {}x{}",
                        d.width, d.height, h.width, h.height
                    )));
                }
                Some(d)
            }
        };
        let len = jpeg.as_ref().map_or(payload.len(), |d| d.len);
        let max = self.import.max_frame_len;
        if len > max {
            return Err(Refused::Message(format!(
                "frame {} has {len} bytes, above --max-frame-len {max}",
                h.number
            )));
        }
        if h.number == 0 || h.number > MAX_NUMBER {
            return Err(Refused::Message(format!(
                "frame number {} is out of range",
                h.number
            )));
        }
        if jpeg.is_none() {
            fits(h, len)?;
        }
        // The channel holds the source's largest frame when it can (so a
        // size change there needs no new channel here), and this one.
        let want = usize::try_from(h.source_max_frame_len)
            .unwrap_or(usize::MAX)
            .min(max)
            .max(len);
        let restarted = self.source_instance.is_some_and(|i| i != h.source_instance);
        if restarted && self.publisher.is_some() {
            eprintln!(
                "shmcast-zenoh: the source restarted (a new channel); so does channel {}",
                self.import.name
            );
        } else if h.number <= self.last_number && self.publisher.is_some() {
            // Published already, or older (a second exporter on the key).
            return Ok(());
        }
        if restarted
            || self
                .publisher
                .as_ref()
                .is_none_or(|p| p.max_frame_len() < len)
        {
            self.open(want)?;
        }
        self.source_instance = Some(h.source_instance);
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
        loan.commit_numbered(&meta, h.number);
        self.last_number = h.number;
        Ok(())
    }

    fn status(&mut self, h: &Header) -> Result<(), Refused> {
        match h.state {
            State::Live => {
                if let Some(p) = self.publisher.as_mut() {
                    p.clear_stall();
                }
            }
            State::Stalled => {
                if self.publisher.is_none() && h.source_max_frame_len > 0 {
                    let len = usize::try_from(h.source_max_frame_len).unwrap_or(usize::MAX);
                    self.open(len.min(self.import.max_frame_len))?;
                    self.source_instance = Some(h.source_instance);
                }
                if let Some(p) = self.publisher.as_mut() {
                    p.report_stall(&format!("source stalled: {}", h.reason));
                }
            }
            State::Gone => {
                if self.publisher.take().is_some() {
                    eprintln!(
                        "shmcast-zenoh: {}; channel {} closed until frames return",
                        h.reason, self.import.name
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

    /// (Re)creates the channel for frames of up to `max_frame_len` bytes.
    fn open(&mut self, max_frame_len: usize) -> Result<(), Refused> {
        // Our own earlier channel first, so its name is free.
        self.publisher = None;
        self.last_number = 0;
        let options = ChannelOptions::new(max_frame_len.max(1))
            .slots(self.import.slots)
            .create_options(self.import.create.clone());
        let publisher =
            Publisher::create_with(self.import.name.as_str(), &options).map_err(|e| {
                match e {
                    // Another publisher has the name: nothing to wait for.
                    e if e.kind() == ErrorKind::WriterAlive => Refused::Create(e),
                    // Out of shared memory, readers holding an old section on
                    // Windows, ...: said once, tried again with the next frame.
                    e => {
                        Refused::Message(format!("cannot create channel {}: {e}", self.import.name))
                    }
                }
            })?;
        eprintln!(
            "shmcast-zenoh: channel {} ready ({max_frame_len} bytes per frame at most)",
            self.import.name
        );
        self.publisher = Some(publisher);
        Ok(())
    }
}

/// Whether a raw frame of `len` bytes holds what its header says.
fn fits(h: &Header, len: usize) -> Result<(), Refused> {
    if h.format == PixelFormat::Raw {
        return Ok(());
    }
    let need = h.format.frame_len(h.width, h.height);
    if need.is_none_or(|n| len < n) || h.stride < h.format.min_stride(h.width) {
        return Err(Refused::Message(format!(
            "frame {}: {} bytes (stride {}) cannot hold a {}x{} {} image",
            h.number, len, h.stride, h.width, h.height, h.format
        )));
    }
    Ok(())
}

/// Why a message left no frame.
enum Refused {
    /// The message is bad or does not fit: skipped.
    Message(String),
    /// The local channel cannot be created: fatal.
    Create(shmcast::Error),
}
