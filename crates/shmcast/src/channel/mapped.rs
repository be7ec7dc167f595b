//! A mapped channel: its segment, validated geometry and lease table, and
//! what `shmcast info` reads from them. The endpoints (publisher.rs,
//! subscriber.rs) build on this; the loom models leave all of it out.

use super::layout::{
    self, ChannelHeader, Geometry, GeometryError, LeaseHeader, ReaderEntry, SlotHeader,
    MAX_SUBSCRIBERS,
};
use super::{protocol, source};
use crate::{
    error::{Error, ErrorKind},
    header::{Kind, COMMON_LEN},
    identity::Holder,
    name::{IntoName, Name, LEASES},
    segment::Segment,
};

/// A mapped channel: the segment, its validated geometry, and (for the
/// publisher and leasing subscribers) its lease table.
pub(crate) struct Channel {
    pub(super) seg: Segment,
    pub(super) geometry: Geometry,
    pub(super) leases: Option<Segment>,
}

impl Channel {
    pub(super) fn header_of(seg: &Segment) -> &ChannelHeader {
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
    pub(super) fn new(seg: Segment) -> Result<Channel, GeometryError> {
        let geometry = Geometry::load(Channel::header_of(&seg), seg.layout().data_len)?;
        Ok(Channel {
            seg,
            geometry,
            leases: None,
        })
    }

    /// What the publisher says about its source (see `source.rs`).
    pub(super) fn source_status(&self) -> &source::SourceStatus {
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
        self.words().instance()
    }

    /// Opens the lease table of channel `name` and checks that it belongs
    /// to this very channel (its instance) and has the expected size.
    pub(super) fn open_leases(&self, name: &Name, writable: bool) -> Result<Segment, Error> {
        let leases = Segment::open(name.companion(LEASES), Some(Kind::Leases), writable)?;
        self.check_leases(&leases)?;
        Ok(leases)
    }

    pub(super) fn check_leases(&self, leases: &Segment) -> Result<(), Error> {
        use crate::sync::Ordering::Relaxed;
        let h = Channel::lease_header_of(leases);
        let corrupt = |what: String| {
            let name = leases.name();
            Error::new(
                ErrorKind::Corrupt,
                format!("cannot open segment {name}: its header is corrupt ({what}); nobody can lease until the channel's publisher restarts, which makes the table anew"),
            )
            .on(name)
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

    pub(super) fn words(&self) -> protocol::Words<'_> {
        // SAFETY: `new` loaded `geometry` from this very segment, and
        // `leases` is only set to a table `check_leases` accepted.
        unsafe { Channel::words_of(&self.seg, &self.geometry, self.leases.as_ref()) }
    }

    /// The protocol's view of channel segment `seg` and of its lease
    /// table.
    ///
    /// # Safety
    /// `g` must be what `Geometry::load` returned for this very `seg`, and
    /// `leases`, if any, a table that `check_leases` accepted: the slices
    /// made here are as long as they say.
    pub(super) unsafe fn words_of<'a>(
        seg: &'a Segment,
        g: &Geometry,
        leases: Option<&'a Segment>,
    ) -> protocol::Words<'a> {
        let readers: &[ReaderEntry] = match leases {
            // SAFETY: a checked lease table holds exactly MAX_SUBSCRIBERS
            // entries of atomics after its (page-aligned) header page; it
            // lives as long as `leases`.
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
        // aligned (the data is page-aligned), and live as long as `seg`.
        let slots = unsafe {
            std::slice::from_raw_parts(seg.data_ptr().cast::<SlotHeader>(), g.slots as usize)
        };
        protocol::Words::new(Channel::header_of(seg), slots, readers)
    }

    /// The first payload byte of slot `slot`.
    pub(super) fn payload(&self, slot: usize) -> *mut u8 {
        debug_assert!(slot < self.geometry.slots as usize);
        let offset = self.geometry.payload_offset + slot * self.geometry.slot_stride;
        // SAFETY: `Geometry::load` checked payload_offset + slots * stride
        // == data_len, so every slot's payload is inside the mapping.
        unsafe { self.seg.data_ptr().add(offset) }
    }

    /// The first metadata byte of slot `slot`: right after its payload
    /// area.
    pub(super) fn metadata(&self, slot: usize) -> *mut u8 {
        // `Geometry::new` made each slot's stride at least max_frame_len +
        // max_metadata_len, so the metadata area is inside the slot.
        self.payload(slot).wrapping_add(self.geometry.max_frame_len)
    }

    pub(super) fn name(&self) -> String {
        self.seg.name().to_string()
    }
}

/// A channel's state, as `shmcast info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// Slots in the ring.
    pub slots: u32,
    /// The largest frame, in bytes.
    pub max_frame_len: usize,
    /// The most bytes of per-frame metadata a frame can carry.
    pub max_metadata_len: usize,
    /// The publisher's PID and whether it runs; `None`: no publisher.
    pub publisher: Option<Holder>,
    /// Leasing subscribers registered (including dead ones not yet
    /// reclaimed); `None` when the lease table cannot be read. Read-only
    /// subscribers register nowhere and are not counted.
    pub subscribers: Option<usize>,
    /// Why the lease table cannot be read, when it cannot: not this
    /// user's to read, missing, or corrupt (a leasing subscriber scribbled
    /// its header: then nobody can lease until the publisher restarts).
    pub lease_table_error: Option<String>,
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
    /// [`Publisher::report_stall`](crate::Publisher::report_stall)).
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
/// As opening a channel to subscribe ([`crate::Subscriber::open`]);
/// [`ErrorKind::Corrupt`] when its geometry is inconsistent.
pub fn inspect_channel<N: IntoName>(name: N) -> Result<ChannelStatus, Error> {
    let name = name.into_name()?;
    let seg = Segment::open(name.clone(), Some(Kind::Channel), false)?;
    let mut channel = Channel::new(seg).map_err(|what| corrupt_channel(&name, what))?;
    let leases = channel.open_leases(&name, false);
    let lease_table_error = leases.as_ref().err().map(ToString::to_string);
    channel.leases = leases.ok();
    let words = channel.words();
    let writer = words.writer();
    let (dropped_frames, blocked_by) = words.dropped();
    Ok(ChannelStatus {
        slots: channel.geometry.slots,
        max_frame_len: channel.geometry.max_frame_len,
        max_metadata_len: channel.geometry.max_metadata_len,
        publisher: (writer != 0).then(|| Holder::of_token(writer)),
        subscribers: channel.leases.as_ref().map(|_| words.subscriber_count()),
        lease_table_error,
        lease_holders: words
            .lease_holders()
            .into_iter()
            .map(Holder::of_token)
            .collect(),
        latest_frame: words.latest_number(),
        last_publish_ns: words.last_publish_ns(),
        dropped_frames,
        dropped_because_of: (blocked_by != 0).then(|| Holder::of_token(blocked_by)),
        max_lease: std::time::Duration::from_millis(words.max_lease_ms()),
        stall_reason: (writer != 0)
            .then(|| channel.source_status().get())
            .flatten(),
        instance: channel.instance(),
    })
}

/// Nanoseconds since the Unix epoch.
pub(super) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A channel whose geometry does not hold together.
pub(super) fn corrupt_channel(name: &Name, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("cannot subscribe to channel {name}: its header is corrupt ({what})"),
    )
    .on(name)
}
