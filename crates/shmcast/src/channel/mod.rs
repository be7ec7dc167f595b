//! Frame channels: one publisher, any number of subscribers, latest frame
//! wins, and the publisher never waits for a subscriber.
//!
//! ```
//! use shmcast::{Access, FrameMeta, PixelFormat, Publisher, Subscriber, SubscriberOptions};
//! use std::time::Duration;
//! # let name = format!("doc-channel-{}", std::process::id());
//! let meta = FrameMeta::new(4, 2, PixelFormat::Gray8);
//! let mut publisher = Publisher::create(&name, 8)?;     // frames of up to 8 bytes
//! let mut reader = Subscriber::open(&name)?;            // any process, read-only
//! let leasing = SubscriberOptions::new().access(Access::Leasing);
//! let mut leaser = Subscriber::open_with(&name, &leasing)?; // may hold frames in place
//!
//! // Copy a frame in...
//! publisher.publish(&meta, &[1, 2, 3, 4, 5, 6, 7, 8])?;
//! // ...or write it in place: a loan of the slot's own memory.
//! let mut loan = publisher.loan(8)?;
//! loan.copy_from_slice(&[9; 8]);
//! let number = loan.commit(&meta);
//!
//! // Wait for a frame newer than one we have seen, then copy it...
//! reader.wait_newer(number - 1, Duration::from_secs(1))?;
//! let (info, bytes) = reader.read_latest_vec()?.expect("a frame");
//! assert_eq!((info.number, bytes), (number, vec![9u8; 8]));
//! // ...or hold it in place while the publisher writes elsewhere.
//! let frame = leaser.lease_latest()?.expect("a frame");
//! assert_eq!((frame.info().number, &frame[..]), (number, &[9u8; 8][..]));
//! frame.release()?; // Err if the publisher had to revoke the lease
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How the protocol works, and why it is safe against concurrent writes
//! and crashes, is told in `protocol.rs`; the memory layout, and who may
//! write which part of it, in `layout.rs`.

mod format;
mod layout;
pub(crate) mod protocol;
#[cfg(not(loom))]
mod publisher;
#[cfg(not(loom))]
mod source;
#[cfg(not(loom))]
mod subscriber;

#[cfg(all(feature = "fuzzing", not(loom)))]
pub(crate) mod fuzz;
#[cfg(all(test, loom))]
mod loom_tests;

pub use format::{FrameInfo, FrameMeta, PixelFormat, UnknownFormat};
pub use layout::{MAX_SLOTS, MAX_SUBSCRIBERS, MIN_SLOTS};
#[cfg(not(loom))]
pub use publisher::{ChannelOptions, Loan, OwnedLoan, Publisher, DEFAULT_MAX_LEASE};
#[cfg(not(loom))]
pub use subscriber::{Access, DetachedLease, Health, Lease, Subscriber, SubscriberOptions, Waiter};

#[cfg(not(loom))]
use crate::{
    error::OpenError,
    header::{Kind, COMMON_LEN},
    identity::Holder,
    name::{Name, LEASES},
    segment::Segment,
};
#[cfg(not(loom))]
use layout::{ChannelHeader, Geometry, LeaseHeader, ReaderEntry, SlotHeader, SlotMeta};

/// The default number of slots.
pub const DEFAULT_SLOTS: u32 = 4;

/// A mapped channel: the segment, its validated geometry, and (for the
/// publisher and leasing subscribers) its lease table.
#[cfg(not(loom))]
pub(crate) struct Channel {
    seg: Segment,
    geometry: Geometry,
    leases: Option<Segment>,
}

#[cfg(not(loom))]
impl Channel {
    fn header_of(seg: &Segment) -> &ChannelHeader {
        // SAFETY: the channel header lies after the common header in the
        // header page, which a valid segment has mapped; it is atomics
        // only, valid for any bytes, and lives as long as the segment.
        unsafe {
            &*seg
                .header_ptr()
                .wrapping_add(COMMON_LEN)
                .cast::<ChannelHeader>()
        }
    }

    fn lease_header_of(seg: &Segment) -> &LeaseHeader {
        // SAFETY: as for `header_of`, for a lease table's header page.
        unsafe {
            &*seg
                .header_ptr()
                .wrapping_add(COMMON_LEN)
                .cast::<LeaseHeader>()
        }
    }

    /// Wraps an open channel segment, validating its geometry.
    fn new(seg: Segment) -> Result<Channel, String> {
        let geometry = Geometry::load(Channel::header_of(&seg), seg.layout().data_len)?;
        Ok(Channel {
            seg,
            geometry,
            leases: None,
        })
    }

    /// What the publisher says about its source (see `source.rs`).
    fn source_status(&self) -> &source::SourceStatus {
        // The status words lie at STATUS_OFFSET inside the header page,
        // which a valid segment has mapped (the asserts in source.rs).
        // SAFETY: in the mapping; atomics only, valid for any bytes, 8-byte
        // aligned (the page is), and live as long as the segment.
        unsafe {
            &*self
                .seg
                .header_ptr()
                .wrapping_add(source::STATUS_OFFSET)
                .cast::<source::SourceStatus>()
        }
    }

    /// The channel's instance number (see [`ChannelHeader::instance`]).
    pub(crate) fn instance(&self) -> u64 {
        Channel::header_of(&self.seg)
            .instance
            .load(crate::sync::Ordering::Relaxed)
    }

    /// Opens the lease table of channel `name` and checks that it belongs
    /// to this very channel (its instance) and has the expected size.
    fn open_leases(&self, name: &Name, writable: bool) -> Result<Segment, OpenError> {
        let leases = Segment::open(name.companion(LEASES), Some(Kind::Leases), writable)?;
        self.check_leases(&leases)?;
        Ok(leases)
    }

    fn check_leases(&self, leases: &Segment) -> Result<(), OpenError> {
        use crate::sync::Ordering::Relaxed;
        let h = Channel::lease_header_of(leases);
        let corrupt = |what: String| OpenError::Corrupt {
            name: leases.name().to_string(),
            what,
        };
        if leases.layout().data_len != layout::LEASES_DATA_LEN
            || h.entries.load(Relaxed) != MAX_SUBSCRIBERS
        {
            return Err(corrupt(format!(
                "a lease table of {} bytes and {} entries; expected {} and {MAX_SUBSCRIBERS}",
                leases.layout().data_len,
                h.entries.load(Relaxed),
                layout::LEASES_DATA_LEN
            )));
        }
        if h.instance.load(Relaxed) != self.instance() {
            return Err(corrupt(
                "the lease table belongs to an earlier channel of this name".to_owned(),
            ));
        }
        Ok(())
    }

    fn words(&self) -> protocol::Words<'_> {
        let data = self.seg.data_ptr();
        let g = &self.geometry;
        let readers: &[ReaderEntry] = match &self.leases {
            // SAFETY: a checked lease table holds exactly MAX_SUBSCRIBERS
            // entries of atomics after its (page-aligned) header page; it
            // lives as long as `self`.
            Some(leases) => unsafe {
                std::slice::from_raw_parts(
                    leases.data_ptr().cast::<ReaderEntry>(),
                    MAX_SUBSCRIBERS as usize,
                )
            },
            None => &[],
        };
        // SAFETY: `Geometry::load` checked that slot headers and payloads lie
        // inside the data; the slot headers are atomics only, 64-byte
        // aligned (the data is page-aligned), and live as long as `self`.
        unsafe {
            protocol::Words {
                header: Channel::header_of(&self.seg),
                slots: std::slice::from_raw_parts(data.cast::<SlotHeader>(), g.slots as usize),
                readers,
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
    pub publisher: Option<Holder>,
    /// Leasing subscribers registered (including dead ones not yet
    /// reclaimed); `None` when the lease table cannot be read. Read-only
    /// subscribers register nowhere and are not counted.
    pub subscribers: Option<usize>,
    /// The processes holding leases right now.
    pub lease_holders: Vec<Holder>,
    /// The newest frame's number (0: none yet).
    pub latest_frame: u64,
    /// When the publisher last published (or started), ns since the epoch.
    pub last_publish_ns: u64,
    /// Frames the publisher dropped because subscribers leased every free
    /// slot.
    pub dropped_frames: u64,
    /// A lease holder that made the publisher drop its last dropped frame.
    pub dropped_because_of: Option<Holder>,
    /// How long the publisher honours a lease while it has no free slot.
    pub max_lease: std::time::Duration,
    /// Why the publisher's source is stalled, when it says so (see
    /// [`Publisher::report_stall`]).
    pub stall_reason: Option<String>,
    /// The random number that tells this channel from earlier ones of the
    /// same name; on Windows it names the wake-up events,
    /// `NS\shmcast.NAME~wake.INSTANCE.I` (16 hex digits, I from 0 to 15).
    pub instance: u64,
}

/// Reads channel `name`'s state without subscribing (read-only opens of the
/// channel and, if this user may read it, its lease table).
///
/// # Errors
/// [`SubscriberError::Open`](crate::SubscriberError) when it cannot be
/// opened as a channel; `Corrupt` when its geometry is inconsistent.
#[cfg(not(loom))]
pub fn inspect_channel<N: crate::IntoName>(
    name: N,
) -> Result<ChannelStatus, crate::SubscriberError> {
    use crate::sync::Ordering::Relaxed;
    let name = name.into_name()?;
    let seg = Segment::open(name.clone(), Some(Kind::Channel), false)?;
    let mut channel = Channel::new(seg).map_err(|what| crate::SubscriberError::Corrupt {
        name: name.to_string(),
        what,
    })?;
    channel.leases = channel.open_leases(&name, false).ok();
    let words = channel.words();
    let h = words.header;
    let writer = h.writer.load(Relaxed);
    let blocked_by = h.blocked_by.load(Relaxed);
    Ok(ChannelStatus {
        slots: channel.geometry.slots,
        max_frame_len: channel.geometry.max_frame_len,
        publisher: (writer != 0).then(|| Holder::of_token(writer)),
        subscribers: channel.leases.as_ref().map(|_| words.subscriber_count()),
        lease_holders: words
            .lease_holders()
            .into_iter()
            .map(Holder::of_token)
            .collect(),
        latest_frame: words.latest_number(),
        last_publish_ns: h.last_publish_ns.load(Relaxed),
        dropped_frames: h.dropped_frames.load(Relaxed),
        dropped_because_of: (blocked_by != 0).then(|| Holder::of_token(blocked_by)),
        max_lease: std::time::Duration::from_millis(h.max_lease_ms.load(Relaxed)),
        stall_reason: (writer != 0)
            .then(|| channel.source_status().get())
            .flatten(),
        instance: channel.instance(),
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
