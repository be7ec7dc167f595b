//! Frame channels: one publisher, any number of subscribers, latest frame
//! wins, and the publisher never waits for a subscriber.
//!
//! ```
//! use shmcast::{FrameMeta, PixelFormat, Publisher, Subscriber};
//! use std::time::Duration;
//! # let name = format!("doc-channel-{}", std::process::id());
//! let meta = FrameMeta::new(4, 2, PixelFormat::Gray8);
//! let mut publisher = Publisher::create(&name, 8)?;     // frames of up to 8 bytes
//! let mut subscriber = Subscriber::open(&name)?;        // any process, by name
//!
//! // Copy a frame in...
//! publisher.publish(&meta, &[1, 2, 3, 4, 5, 6, 7, 8])?;
//! // ...or write it in place: a loan of the slot's own memory.
//! let mut loan = publisher.loan(8)?;
//! loan.copy_from_slice(&[9; 8]);
//! let number = loan.commit(&meta);
//!
//! // Wait for a frame newer than one we have seen, then read it in place.
//! subscriber.wait_newer(number - 1, Duration::from_secs(1))?;
//! let frame = subscriber.lease_latest()?.expect("a frame");
//! assert_eq!((frame.info().number, &frame[..]), (number, &[9u8; 8][..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How the protocol works, and why it is safe against concurrent writes
//! and crashes, is told in `protocol.rs`; the memory layout in `layout.rs`.

mod format;
mod layout;
pub(crate) mod protocol;
#[cfg(not(loom))]
mod publisher;
#[cfg(not(loom))]
mod subscriber;

#[cfg(all(test, loom))]
mod loom_tests;

pub use format::{FrameInfo, FrameMeta, PixelFormat, UnknownFormat};
pub use layout::{MAX_SLOTS, MAX_SUBSCRIBERS, MIN_SLOTS};
#[cfg(not(loom))]
pub use publisher::{ChannelOptions, Loan, Publisher};
#[cfg(not(loom))]
pub use subscriber::{Health, Lease, Subscriber};

#[cfg(not(loom))]
use crate::{header::COMMON_LEN, segment::Segment};
#[cfg(not(loom))]
use layout::{ChannelHeader, Geometry, ReaderEntry, SlotHeader, SlotMeta};

/// The default number of slots.
pub const DEFAULT_SLOTS: u32 = 4;

/// A mapped channel: the segment and its validated geometry.
#[cfg(not(loom))]
pub(crate) struct Channel {
    seg: Segment,
    geometry: Geometry,
}

#[cfg(not(loom))]
impl Channel {
    fn header_of(seg: &Segment) -> &ChannelHeader {
        // SAFETY: the channel header lies after the common header in the
        // header page, which a valid segment has mapped; it is atomics
        // only, valid for any bytes, and lives as long as the segment.
        unsafe { &*seg.header_ptr().add(COMMON_LEN).cast::<ChannelHeader>() }
    }

    /// Wraps an open channel segment, validating its geometry.
    fn new(seg: Segment) -> Result<Channel, String> {
        let geometry = Geometry::load(Channel::header_of(&seg), seg.layout().data_len)?;
        Ok(Channel { seg, geometry })
    }

    fn words(&self) -> protocol::Words<'_> {
        let data = self.seg.data_ptr();
        let g = &self.geometry;
        // SAFETY: `Geometry::load` checked that slot headers, reader table and
        // payloads lie inside the data; both arrays are atomics only, 64-byte
        // aligned (the data is page-aligned), and live as long as `self`.
        unsafe {
            protocol::Words {
                header: Channel::header_of(&self.seg),
                slots: std::slice::from_raw_parts(data.cast::<SlotHeader>(), g.slots as usize),
                readers: std::slice::from_raw_parts(
                    data.add(g.readers_offset).cast::<ReaderEntry>(),
                    g.readers as usize,
                ),
            }
        }
    }

    /// The first payload byte of slot `slot`.
    fn payload(&self, slot: usize) -> *mut u8 {
        debug_assert!(slot < self.geometry.slots as usize);
        let offset = self.geometry.payload_offset + slot * self.geometry.slot_stride;
        // SAFETY: `Geometry::load` checked payload_offset + slots * stride
        // == data_len, so every slot's payload is inside the mapping.
        unsafe { self.seg.data_ptr().add(offset) }
    }

    fn name(&self) -> String {
        self.seg.name().to_string()
    }
}

/// A channel's state, as `shmcast info` shows it.
#[cfg(not(loom))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// Slots in the ring.
    pub slots: u32,
    /// The largest frame, in bytes.
    pub max_frame_len: usize,
    /// The publisher's PID and whether it runs; `None`: no publisher.
    pub publisher: Option<crate::Holder>,
    /// Subscribers registered (including dead ones not yet reclaimed).
    pub subscribers: usize,
    /// The newest frame's number (0: none yet).
    pub latest_frame: u64,
    /// When the publisher last published (or started), ns since the epoch.
    pub last_publish_ns: u64,
}

/// Reads channel `name`'s state without subscribing (a read-only open).
///
/// # Errors
/// [`SubscriberError::Open`](crate::SubscriberError) when it cannot be
/// opened as a channel; `Corrupt` when its geometry is inconsistent.
#[cfg(not(loom))]
pub fn inspect_channel<N: crate::IntoName>(
    name: N,
) -> Result<ChannelStatus, crate::SubscriberError> {
    use crate::identity::{token_liveness, token_pid, Liveness};
    use crate::sync::Ordering::Relaxed;
    let name = name.into_name()?;
    let seg = Segment::open(name.clone(), Some(crate::Kind::Channel), false)?;
    let channel = Channel::new(seg).map_err(|what| crate::SubscriberError::Corrupt {
        name: name.to_string(),
        what,
    })?;
    let words = channel.words();
    let writer = words.header.writer.load(Relaxed);
    Ok(ChannelStatus {
        slots: channel.geometry.slots,
        max_frame_len: channel.geometry.max_frame_len,
        publisher: (writer != 0).then(|| crate::Holder {
            pid: token_pid(writer),
            alive: token_liveness(writer) == Liveness::Alive,
        }),
        subscribers: words.subscriber_count(),
        latest_frame: words.latest_number(),
        last_publish_ns: words.header.last_publish_ns.load(Relaxed),
    })
}

/// Converts stored metadata to what callers see.
#[cfg(not(loom))]
fn frame_info(meta: &SlotMeta) -> FrameInfo {
    FrameInfo {
        number: meta.number,
        len: meta.len as usize,
        meta: FrameMeta {
            width: meta.width,
            height: meta.height,
            format: PixelFormat::from_code(meta.format).unwrap_or(PixelFormat::Raw),
            stride: meta.stride,
            timestamp_ns: meta.timestamp_ns,
        },
    }
}

/// Nanoseconds since the Unix epoch.
#[cfg(not(loom))]
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
