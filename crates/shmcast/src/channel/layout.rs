//! The channel's shared memory: two segments, split by who may write them.
//!
//! ```text
//! channel  shmcast.NAME          written by the publisher alone
//!   header page   common header (64 B) | ChannelHeader (128 B)
//!   data + 0      SlotHeader x slots          (64 B each, one cache line)
//!   data + P      slot 0, slot 1, ... (each `slot_stride` bytes,
//!                 page-aligned): the payload (`max_frame_len` bytes), then
//!                 the frame's metadata (`max_metadata_len` bytes, 0 when
//!                 the channel has none)
//!
//! leases   shmcast.NAME~leases   written by the publisher and by leasing
//!                                subscribers
//!   header page   common header (64 B) | LeaseHeader
//!   data + 0      ReaderEntry x MAX_SUBSCRIBERS (64 B each)
//! ```
//!
//! A read-only subscriber maps the channel read-only and never touches the
//! lease table: it can wait, copy and read in place, and there is no byte
//! it could change. A leasing subscriber maps the channel read-only too and
//! writes only its own entry in the lease table, so the worst it can do to
//! others is to hold slots, which the publisher bounds (see `protocol.rs`).
//!
//! `P` is not a free choice: it follows from the slot count, so opening
//! recomputes the whole geometry from the slot count, the maximum frame
//! size and the maximum metadata size, and requires every stored field to
//! match. No offset read from
//! shared memory is ever used unchecked.
//!
//! Every field is an atomic, even the ones fixed at creation: the memory is
//! shared with processes we do not trust, and an atomic load of a scribbled
//! field is still defined behaviour.

use super::format::SlotMeta;
use crate::sync::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// The default number of slots.
pub const DEFAULT_SLOTS: u32 = 4;
/// The most slots a channel can have.
pub const MAX_SLOTS: u32 = 64;
/// The fewest: one being written, one holding the latest frame.
pub const MIN_SLOTS: u32 = 2;
/// The most bytes of metadata a channel's frames can carry.
pub const MAX_METADATA_LEN: u32 = 64 * 1024;
/// Leasing subscribers (of all processes) one channel can have at once.
/// Read-only subscribers are not counted: they register nowhere.
pub const MAX_SUBSCRIBERS: u32 = 64;

const PAGE: usize = 4096;
const LINE: usize = 64;

/// Channel state in the header page, after the common header. Only the
/// publisher writes it.
#[repr(C)]
pub(crate) struct ChannelHeader {
    // Geometry, fixed at creation.
    pub slot_count: AtomicU32,
    /// The most bytes of per-frame metadata a frame can carry (at most
    /// [`MAX_METADATA_LEN`]).
    pub max_metadata_len: AtomicU32,
    pub max_frame_len: AtomicU64,
    pub slot_stride: AtomicU64,
    pub payload_offset: AtomicU64,
    /// A random number drawn when the channel was created: names its wake
    /// events (Windows) and tells a lease table of this channel from one of
    /// an earlier channel of the same name.
    pub instance: AtomicU64,
    /// How long the publisher honours a lease while it has no free slot.
    pub max_lease_ms: AtomicU64,
    pub reserved1: [AtomicU64; 2],
    // Writer state: one cache line, written once per frame.
    /// Token of the publishing process, 0 = none.
    pub writer: AtomicU64,
    /// The newest complete frame: its number << 8 | its slot index + 1;
    /// 0 = none yet. One word, so a reader learns slot and number together.
    pub latest: AtomicU64,
    /// When the writer last published, ns since the Unix epoch.
    pub last_publish_ns: AtomicU64,
    /// Frames the writer dropped because every free slot was leased.
    pub dropped_frames: AtomicU64,
    /// Token of a lease holder that made the writer drop its last dropped
    /// frame (0: none), for `info`.
    pub blocked_by: AtomicU64,
    /// Bumped on every publish; the futex word waiters sleep on.
    pub generation: AtomicU32,
    pub reserved2: AtomicU32,
    pub reserved3: [AtomicU64; 2],
}

/// One slot's header. `seq` is odd while the slot is being written.
#[repr(C)]
pub(crate) struct SlotHeader {
    pub seq: AtomicU64,
    pub number: AtomicU64,
    pub timestamp_ns: AtomicU64,
    pub len: AtomicU64,
    pub width: AtomicU32,
    pub height: AtomicU32,
    pub format: AtomicU32,
    pub stride: AtomicU32,
    /// Bytes of metadata the frame carries, after its slot's payload area.
    pub metadata_len: AtomicU32,
    pub reserved0: AtomicU32,
    pub reserved: AtomicU64,
}

/// The lease table's own header, after the common header.
#[repr(C)]
pub(crate) struct LeaseHeader {
    /// The `instance` of the channel this table belongs to.
    pub instance: AtomicU64,
    /// Entries in the table: [`MAX_SUBSCRIBERS`].
    pub entries: AtomicU32,
    pub reserved: [AtomicU32; 13],
}

/// One leasing subscriber's entry in the lease table.
#[repr(C)]
pub(crate) struct ReaderEntry {
    /// Token of the subscriber's process; 0 = free; [`RECLAIMING`] | the
    /// reclaimer's token while a dead subscriber's entry is being cleared.
    pub token: AtomicU64,
    /// Slot index + 1 this subscriber leases, 0 = none.
    pub lease: AtomicU64,
    /// When the subscriber last showed it is still using the entry, in ns
    /// of the machine's monotonic clock (`os::monotonic_ns`), which no
    /// clock change moves. Entries not touched for a while are cleared,
    /// so that entries forged in the name of a live process, or left by a
    /// stopped one, free themselves.
    pub beat_ns: AtomicU64,
    pub reserved: [AtomicU64; 5],
}

/// The bit that marks an entry whose dead owner's lease is being cleared;
/// the other bits name the process clearing it. Tokens never have it set
/// (they start with a PID below 2^31).
pub(crate) const RECLAIMING: u64 = 1 << 63;

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<ChannelHeader>() == 2 * LINE);
    assert!(size_of::<SlotHeader>() == LINE);
    assert!(size_of::<LeaseHeader>() == LINE);
    assert!(size_of::<ReaderEntry>() == LINE);
};

/// Bytes of a lease table after its header page.
pub(crate) const LEASES_DATA_LEN: usize = MAX_SUBSCRIBERS as usize * LINE;

/// A slot's words to and from [`SlotMeta`] (whose meaning is format.rs's).
impl SlotHeader {
    pub(crate) fn load_meta(&self) -> SlotMeta {
        SlotMeta {
            number: self.number.load(Relaxed),
            timestamp_ns: self.timestamp_ns.load(Relaxed),
            len: self.len.load(Relaxed),
            width: self.width.load(Relaxed),
            height: self.height.load(Relaxed),
            format: self.format.load(Relaxed),
            stride: self.stride.load(Relaxed),
            metadata_len: self.metadata_len.load(Relaxed),
        }
    }

    pub(crate) fn store_meta(&self, m: &SlotMeta) {
        self.number.store(m.number, Relaxed);
        self.timestamp_ns.store(m.timestamp_ns, Relaxed);
        self.len.store(m.len, Relaxed);
        self.width.store(m.width, Relaxed);
        self.height.store(m.height, Relaxed);
        self.format.store(m.format, Relaxed);
        self.stride.store(m.stride, Relaxed);
        self.metadata_len.store(m.metadata_len, Relaxed);
    }
}

/// Where everything lies, derived from the slot count and frame size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slots: u32,
    pub max_frame_len: usize,
    /// Metadata bytes per frame, after the payload in each slot.
    pub max_metadata_len: usize,
    pub slot_stride: usize,
    pub payload_offset: usize,
    /// Bytes after the header page.
    pub data_len: usize,
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|n| n / to * to)
}

/// Why a geometry is impossible, or does not match its channel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GeometryError {
    #[error("{0} slots; a channel has {MIN_SLOTS} to {MAX_SLOTS}")]
    SlotCount(u32),
    #[error("a maximum frame size of 0 bytes")]
    EmptyFrames,
    #[error("{0} bytes of metadata per frame; at most {MAX_METADATA_LEN}")]
    Metadata(u64),
    #[error("{slots} slots of {max_frame_len} bytes do not fit in memory")]
    TooLarge { slots: u32, max_frame_len: u64 },
    #[error("channel geometry (stride, payload offset) {stored:?} should be {expected:?}")]
    Mismatch {
        stored: (u64, u64),
        expected: (u64, u64),
    },
    #[error("channel needs {needed} data bytes, the segment has {has}")]
    DataLength { needed: usize, has: usize },
}

impl Geometry {
    /// The layout for `slots` slots of `max_frame_len` bytes and
    /// `max_metadata_len` bytes of metadata, or why not.
    pub(crate) fn new(
        slots: u32,
        max_frame_len: usize,
        max_metadata_len: usize,
    ) -> Result<Geometry, GeometryError> {
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
            return Err(GeometryError::SlotCount(slots));
        }
        if max_frame_len == 0 {
            return Err(GeometryError::EmptyFrames);
        }
        let too_big = || GeometryError::TooLarge {
            slots,
            max_frame_len: max_frame_len as u64,
        };
        if max_metadata_len > MAX_METADATA_LEN as usize {
            return Err(GeometryError::Metadata(max_metadata_len as u64));
        }
        let slot_stride = max_frame_len
            .checked_add(max_metadata_len)
            .and_then(|n| round_up(n, PAGE))
            .ok_or_else(too_big)?;
        let payload_offset = round_up(slots as usize * LINE, PAGE).ok_or_else(too_big)?;
        let data_len = slot_stride
            .checked_mul(slots as usize)
            .and_then(|p| p.checked_add(payload_offset))
            .filter(|&d| d <= isize::MAX as usize - crate::header::HEADER_LEN)
            .ok_or_else(too_big)?;
        Ok(Geometry {
            slots,
            max_frame_len,
            max_metadata_len,
            slot_stride,
            payload_offset,
            data_len,
        })
    }

    /// Writes the geometry into a new channel's header.
    pub(crate) fn store(&self, h: &ChannelHeader) {
        h.slot_count.store(self.slots, Relaxed);
        h.max_frame_len.store(self.max_frame_len as u64, Relaxed);
        // At most MAX_METADATA_LEN: checked in `new`.
        h.max_metadata_len
            .store(self.max_metadata_len as u32, Relaxed);
        h.slot_stride.store(self.slot_stride as u64, Relaxed);
        h.payload_offset.store(self.payload_offset as u64, Relaxed);
    }

    /// Reads an existing channel's geometry and checks every field against
    /// the one recomputed from its slot count and frame size, and against
    /// the data length the segment header promises.
    pub(crate) fn load(h: &ChannelHeader, data_len: usize) -> Result<Geometry, GeometryError> {
        let slots = h.slot_count.load(Relaxed);
        let stored_max = h.max_frame_len.load(Relaxed);
        let max = usize::try_from(stored_max).map_err(|_| GeometryError::TooLarge {
            slots,
            max_frame_len: stored_max,
        })?;
        let metadata = h.max_metadata_len.load(Relaxed);
        let g = Geometry::new(slots, max, metadata as usize)?;
        let stored = (h.slot_stride.load(Relaxed), h.payload_offset.load(Relaxed));
        let expected = (g.slot_stride as u64, g.payload_offset as u64);
        if stored != expected {
            return Err(GeometryError::Mismatch { stored, expected });
        }
        if g.data_len != data_len {
            return Err(GeometryError::DataLength {
                needed: g.data_len,
                has: data_len,
            });
        }
        Ok(g)
    }
}

#[cfg(test)]
#[cfg(not(loom))]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_a_full_hd_channel() {
        let g = Geometry::new(4, 6_220_800, 0).unwrap();
        assert_eq!(g.slot_stride, 6_221_824); // whole pages
                                              // 1 KiB of metadata fits in the same pages.
        assert_eq!(
            Geometry::new(4, 6_220_800, 1024).unwrap().slot_stride,
            6_221_824
        );
        assert_eq!(Geometry::new(4, 4096, 1).unwrap().slot_stride, 8192);
        assert_eq!(g.payload_offset, 4096);
        assert_eq!(g.data_len, 4096 + 4 * 6_221_824);
        assert_eq!(g.payload_offset % PAGE, 0);
    }

    #[test]
    fn impossible_geometries_are_refused() {
        assert!(Geometry::new(1, 100, 0).is_err());
        assert!(Geometry::new(MAX_SLOTS + 1, 100, 0).is_err());
        assert!(Geometry::new(4, 0, 0).is_err());
        assert!(Geometry::new(64, usize::MAX / 2, 0).is_err());
        assert!(Geometry::new(4, 100, MAX_METADATA_LEN as usize + 1).is_err());
        assert!(Geometry::new(4, usize::MAX, 1).is_err());
    }

    #[test]
    fn a_tampered_geometry_is_caught() {
        // SAFETY: the header is atomics only; all-zero is a valid value.
        let h: ChannelHeader = unsafe { std::mem::zeroed() };
        let g = Geometry::new(4, 1000, 100).unwrap();
        g.store(&h);
        assert_eq!(Geometry::load(&h, g.data_len), Ok(g));
        assert!(Geometry::load(&h, g.data_len - 1).is_err());
        h.payload_offset.store(0, Relaxed);
        assert!(Geometry::load(&h, g.data_len).is_err());
        g.store(&h);
        h.slot_count.store(1000, Relaxed);
        assert!(Geometry::load(&h, g.data_len).is_err());
        g.store(&h);
        h.max_metadata_len.store(u32::MAX, Relaxed);
        assert!(Geometry::load(&h, g.data_len).is_err());
    }
}
