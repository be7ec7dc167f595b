//! Named shared memory for Windows and Linux.
//!
//! One process creates a segment under a name; any number of other
//! processes open it by that name alone, at any time, and see the same
//! bytes. Everything a crashed process can leave behind (a held lock, a
//! half-written block, a segment nobody removes) is detected and recovered,
//! and every byte read from shared memory is validated before it is trusted.
//!
//! ```
//! use shmcast::{Region, CreateOptions};
//! # let name = format!("doc-lib-{}", std::process::id());
//! // The owner (a service, say):
//! let owner = Region::create_with(&name, 1 << 20, &CreateOptions::new().mode(0o644))?;
//! owner.write(0, b"config v2")?;
//!
//! // Any other process, knowing only the name:
//! let view = Region::open_read_only(&name)?;
//! let mut buf = [0u8; 9];
//! view.read(0, &mut buf)?;
//! assert_eq!(&buf, b"config v2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Platforms
//!
//! | | Linux | Windows |
//! |---|---|---|
//! | object | `/dev/shm/shmcast.NAME` (`shm_open`) | section `Local\shmcast.NAME` or `Global\…` |
//! | memory reserved at create | `fallocate` | `SEC_COMMIT` |
//! | who may open | `mode` (default 0600) | SDDL security descriptor |
//! | lifetime | until unlinked: the creator does on drop; [`clean`] after crashes | until the last handle closes |
//! | read-only open | `PROT_READ` | `FILE_MAP_READ` |
//!
//! # Modules
//! - [`name`](Name): the portable naming rule;
//! - [`Publisher`] and [`Subscriber`]: frame channels, one writer, many
//!   readers, zero-copy both ways, crash-safe;
//! - [`Region`]: a raw byte region with a crash-safe reader-writer lock;
//! - [`inspect`], [`remove`], [`clean`]: tools for any segment.
//!
//! # Layers (inside the crate)
//! Each module uses only modules below it, which `tests/layers.rs` checks:
//! `sync`, `copy` and `name` (no dependencies) → `seqlock` (the one
//! sequence word) → `os` (the only OS calls) → `identity` (process
//! tokens) → `header` →
//! `error` → `segment` (named mappings, and who owns them:
//! `Segment::create_or_adopt`) → `housekeeping` → `region` and `channel`.
//! Inside `channel`: `format` (a frame's metadata) → `layout` (where the
//! shared words lie) → `protocol` (every access to those words, which loom
//! checks) → `mapped` (a channel's segment, geometry and lease table) →
//! `publisher` and `subscriber`. A frame's way down is
//! `Publisher::loan`/`Loan::commit` → `Words::begin_write`/`commit` →
//! the OS wake-up.

#![warn(missing_docs, unsafe_op_in_unsafe_fn)]
// Every unsafe block says why it is sound, and does one unsafe thing, so
// that its SAFETY comment covers all of it.
#![warn(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

mod channel;
pub mod convert;
mod copy;
mod error;
#[cfg(all(feature = "fuzzing", not(loom)))]
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod housekeeping;
mod identity;
mod lock;
mod name;
mod os;
mod region;
mod segment;
mod seqlock;
mod sync;

#[cfg(not(loom))]
pub use channel::{
    inspect_channel, Access, ChannelOptions, ChannelStatus, Detached, DetachedLease, Frame, Health,
    HoldsSubscriber, Lease, Loan, Next, OwnedLoan, Publisher, Reader, ReaderOptions, Subscriber,
    SubscriberOptions, Waiter, DEFAULT_MAX_LEASE,
};
pub use channel::{
    FrameInfo, FrameMeta, PixelFormat, UnknownFormat, DEFAULT_SLOTS, MAX_METADATA_LEN, MAX_SLOTS,
    MAX_SUBSCRIBERS, MIN_SLOTS,
};
pub use copy::SharedBytes;
pub use error::{Error, ErrorKind, Result};
pub use header::{Kind, HEADER_LEN, LAYOUT_VERSION};
pub use housekeeping::{
    clean, inspect, list, remove, remove_owned, CleanReport, Listed, SegmentInfo,
};
pub use identity::{Holder, Liveness, ProcessId};
pub use lock::READER_SLOTS;
pub use name::{IntoName, Name, NameError, Namespace, MAX_NAME_LEN};
pub use region::{LockState, ReadGuard, Region, WriteGuard, DEFAULT_LOCK_TIMEOUT};
pub use segment::CreateOptions;

/// The OS object name behind a segment name, for tools and tests that look
/// at the OS directly: `shmcast.NAME` (on Linux, a file in `/dev/shm`).
pub fn object_name(name: &Name) -> String {
    name.object_name()
}
