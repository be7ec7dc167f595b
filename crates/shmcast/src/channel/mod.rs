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
//! // ...or hold it in place while the publisher writes elsewhere. The
//! // bytes are shared memory: copied safely, or borrowed as a slice
//! // under a promise (`SharedBytes::as_slice`).
//! let frame = leaser.lease_latest()?.expect("a frame");
//! assert_eq!((frame.info().number, frame.bytes().to_vec()), (number, vec![9u8; 8]));
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
// The loom models check `protocol` on `layout`'s words; everything that
// maps memory or calls the OS is left out of them, one module at a time.
#[cfg(not(loom))]
mod mapped;
#[cfg(not(loom))]
mod publisher;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod source;
#[cfg(not(loom))]
mod subscriber;

#[cfg(all(feature = "fuzzing", not(loom)))]
pub(crate) mod fuzz;
#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(not(loom))]
pub use self::{
    mapped::{inspect_channel, ChannelStatus},
    publisher::{ChannelOptions, Loan, OwnedLoan, Publisher, DEFAULT_MAX_LEASE},
    reader::{Frame, Next, Reader, ReaderOptions},
    subscriber::{
        Access, Detached, DetachedLease, Health, HoldsSubscriber, Lease, Subscriber,
        SubscriberOptions, Waiter,
    },
};
pub use format::{FrameInfo, FrameMeta, PixelFormat, UnknownFormat};
pub use layout::{DEFAULT_SLOTS, MAX_METADATA_LEN, MAX_SLOTS, MAX_SUBSCRIBERS, MIN_SLOTS};
