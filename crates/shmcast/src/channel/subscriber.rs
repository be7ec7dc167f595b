//! The reading side of a channel.

use std::ops::Deref;
use std::time::{Duration, Instant};

use super::protocol::ReadFail;
use super::{frame_info, now_ns, Channel, FrameInfo, MAX_SUBSCRIBERS};
use crate::copy::copy_from_shared;
use crate::error::{OpenError, ReadError, SubscriberError};
use crate::header::Kind;
use crate::identity::{token_liveness, token_pid, Liveness, ProcessId};
use crate::name::IntoName;
use crate::os::Wakeup;
use crate::segment::Segment;
use crate::sync::Ordering::Relaxed;

/// How many seqlock copies are tried before falling back to copying from a
/// lease (which the publisher cannot overwrite).
const COPY_TRIES: usize = 4;
/// Frames larger than this are copied under a lease straight away: a copy
/// that long is likely to be overwritten by a busy publisher, and every
/// failed try costs a whole frame of memory traffic (the benchmark showed
/// 6 MB copies against a fast writer at a fifth of the leased rate).
const SEQLOCK_MAX: usize = 256 * 1024;
/// The same for a lease, which is cheap to retry.
const LEASE_TRIES: usize = 10_000;
/// The longest single sleep in `wait_newer`; it re-checks after each.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// What a subscriber can tell about the publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The publisher runs and published within the stall limit.
    Live,
    /// The publisher runs but has published nothing for `idle`.
    Stalled {
        /// Time since its last frame (or since it started).
        idle: Duration,
    },
    /// No publisher: it stopped, or its process died.
    Gone,
}

/// One process's view of a channel: reads the latest frame by copy or in
/// place, and waits for new ones without burning CPU.
///
/// A `Subscriber` can move between threads but not be shared by them (it is
/// `Send`, not `Sync`): its one reader-table entry holds one lease at a
/// time, and two threads leasing through it would release each other's.
/// Open one subscriber per thread.
pub struct Subscriber {
    channel: Channel,
    entry: usize,
    wakeup: Wakeup,
    not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.channel.name())
            .field("entry", &self.entry)
            .finish()
    }
}

fn is_dead(token: u64) -> bool {
    token_liveness(token) == Liveness::Dead
}

impl Subscriber {
    /// Subscribes to the existing channel `name`. Needs only the name: the
    /// geometry comes from the channel's validated header.
    ///
    /// # Errors
    /// [`SubscriberError::Open`] (no such channel, not a channel, bad
    /// header, no permission), [`SubscriberError::Corrupt`],
    /// [`SubscriberError::TableFull`].
    pub fn open<N: IntoName>(name: N) -> Result<Subscriber, SubscriberError> {
        let name = name.into_name()?;
        let seg = Segment::open(name.clone(), Some(Kind::Channel), true)?;
        let channel = Channel::new(seg).map_err(|what| SubscriberError::Corrupt {
            name: name.to_string(),
            what,
        })?;
        let entry = channel
            .words()
            .register(ProcessId::current().token(), is_dead)
            .ok_or_else(|| SubscriberError::TableFull {
                name: name.to_string(),
                max: MAX_SUBSCRIBERS,
            })?;
        match Wakeup::new(&name.object_name(), name.namespace(), entry) {
            Ok(wakeup) => Ok(Subscriber {
                channel,
                entry,
                wakeup,
                not_sync: std::marker::PhantomData,
            }),
            Err(source) => {
                channel.words().unregister(entry);
                Err(SubscriberError::Os {
                    name: name.to_string(),
                    source,
                })
            }
        }
    }

    /// Like [`Subscriber::open`], but waits up to `timeout` for the channel
    /// to appear (a subscriber may start before its publisher).
    ///
    /// # Errors
    /// [`SubscriberError::Timeout`] when it did not appear; other errors as
    /// [`Subscriber::open`], at once.
    pub fn open_wait<N: IntoName>(
        name: N,
        timeout: Duration,
    ) -> Result<Subscriber, SubscriberError> {
        let name = name.into_name()?;
        let started = Instant::now();
        loop {
            match Subscriber::open(&name) {
                Err(SubscriberError::Open(OpenError::NotFound { .. })) => {
                    if started.elapsed() >= timeout {
                        return Err(SubscriberError::Timeout {
                            name: name.to_string(),
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    /// The largest frame this channel carries, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.channel.geometry.max_frame_len
    }

    /// The newest frame's number (0: none published yet). Cheap.
    pub fn latest_number(&self) -> u64 {
        self.channel.words().latest_number()
    }

    /// Copies the latest frame into `buf`; the bytes are always one whole
    /// frame. `Ok(None)` when nothing has been published yet.
    ///
    /// For channels of small frames (up to 256 KiB) the copy is a seqlock
    /// read: it writes nothing to shared memory and is retried when it
    /// overlapped a write. A publisher fast enough to overwrite the frame
    /// during every try would starve it, so after a few tries, and at once
    /// for larger frames, the frame is leased instead, copied, and the lease
    /// released: one pass over the frame, progress guaranteed, and the
    /// publisher still never waits.
    ///
    /// # Errors
    /// [`ReadError::BufferTooSmall`], [`ReadError::Corrupt`],
    /// [`ReadError::Overrun`] (only if even leasing kept failing).
    pub fn read_latest(&self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ReadError> {
        let words = self.channel.words();
        if self.max_frame_len() <= SEQLOCK_MAX {
            let copied =
                words.read_latest(COPY_TRIES, |slot, meta| self.copy_out(slot, meta.len, buf));
            match copied {
                Err(ReadFail::Overrun) => {}
                other => {
                    return other
                        .map(|m| m.as_ref().map(frame_info))
                        .map_err(|e| self.read_fail(e))
                }
            }
        }
        // `&self` proves no `Lease` of ours is alive (it borrows `&mut
        // self`), and `Subscriber` is not `Sync`, so no other thread is in
        // here either: our reader entry's lease is free to use.
        let leased = words.lease_latest(self.entry, LEASE_TRIES);
        let (slot, meta) = match leased {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(ReadFail::Corrupt) => return Err(self.read_fail(ReadFail::Corrupt)),
            Err(_) => return Err(self.read_fail(ReadFail::Overrun)),
        };
        let copied = self.copy_out(slot, meta.len, buf);
        words.release_lease(self.entry);
        copied.map(|()| Some(frame_info(&meta)))
    }

    /// Copies `len` bytes of slot `slot`'s payload into `buf`, after
    /// checking `len` (untrusted) against the slot size and the buffer.
    fn copy_out(&self, slot: usize, len: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let max = self.max_frame_len();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(ReadError::Corrupt {
                name: self.channel.name(),
                what: format!("frame length {len} exceeds the slot size {max}"),
            });
        }
        let Some(dst) = buf.get_mut(..len) else {
            return Err(ReadError::BufferTooSmall {
                name: self.channel.name(),
                needed: len,
                got: buf.len(),
            });
        };
        // SAFETY: `slot` is valid and `len <= max`, so the source is inside the
        // slot's payload; a concurrent overwrite (seqlock path) is what the
        // racy-tolerant copy allows and the caller's seq check detects.
        unsafe { copy_from_shared(self.channel.payload(slot), dst) };
        Ok(())
    }

    /// The latest frame, copied into a new `Vec`.
    ///
    /// # Errors
    /// As [`Subscriber::read_latest`].
    pub fn read_latest_vec(&self) -> Result<Option<(FrameInfo, Vec<u8>)>, ReadError> {
        let mut buf = vec![0u8; self.max_frame_len()];
        Ok(self.read_latest(&mut buf)?.map(|info| {
            buf.truncate(info.len);
            (info, buf)
        }))
    }

    fn read_fail(&self, fail: ReadFail<ReadError>) -> ReadError {
        match fail {
            ReadFail::Copy(e) => e,
            ReadFail::Overrun => ReadError::Overrun {
                name: self.channel.name(),
            },
            ReadFail::Corrupt => ReadError::Corrupt {
                name: self.channel.name(),
                what: "the latest-frame index names no slot".to_owned(),
            },
        }
    }

    /// Leases the latest frame in place: the guard dereferences to the
    /// frame's bytes in shared memory, and until it is dropped the
    /// publisher writes to other slots. `Ok(None)` when nothing has been
    /// published yet.
    ///
    /// # Errors
    /// [`ReadError::Overrun`], [`ReadError::Corrupt`].
    pub fn lease_latest(&mut self) -> Result<Option<Lease<'_>>, ReadError> {
        let words = self.channel.words();
        let leased = words
            .lease_latest(self.entry, LEASE_TRIES)
            .map_err(|e| match e {
                ReadFail::Corrupt => ReadFail::Corrupt,
                _ => ReadFail::Overrun,
            });
        let (slot, meta) = match leased {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.read_fail(e)),
        };
        let info = frame_info(&meta);
        if info.len > self.max_frame_len() {
            words.release_lease(self.entry);
            return Err(ReadError::Corrupt {
                name: self.channel.name(),
                what: format!(
                    "frame length {} exceeds the slot size {}",
                    info.len,
                    self.max_frame_len()
                ),
            });
        }
        Ok(Some(Lease {
            subscriber: self,
            slot,
            info,
        }))
    }

    /// Waits until a frame newer than `than` is published, up to `timeout`;
    /// returns the newest frame number. Blocks in the kernel (Linux futex,
    /// Windows event): no CPU is used while waiting.
    ///
    /// # Errors
    /// [`ReadError::Timeout`].
    pub fn wait_newer(&self, than: u64, timeout: Duration) -> Result<u64, ReadError> {
        let words = self.channel.words();
        let started = Instant::now();
        loop {
            let generation = words.generation().load(crate::sync::Ordering::Acquire);
            let latest = words.latest_number();
            if latest > than {
                return Ok(latest);
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(ReadError::Timeout {
                    name: self.channel.name(),
                    than,
                    latest,
                    waited,
                });
            }
            words.announce_waiting(self.entry);
            if words.latest_number() <= than {
                let slice = (timeout - waited).min(WAIT_SLICE);
                self.wakeup.wait(words.generation(), generation, slice);
            }
            words.withdraw_waiting(self.entry);
        }
    }

    /// The publisher's health: [`Health::Stalled`] when it runs but has
    /// published nothing for `stall_after`.
    pub fn health(&self, stall_after: Duration) -> Health {
        let header = self.channel.words().header;
        let writer = header.writer.load(Relaxed);
        if writer == 0 || token_liveness(writer) == Liveness::Dead {
            return Health::Gone;
        }
        let idle =
            Duration::from_nanos(now_ns().saturating_sub(header.last_publish_ns.load(Relaxed)));
        if idle > stall_after {
            Health::Stalled { idle }
        } else {
            Health::Live
        }
    }

    /// The PID of the current publisher, if there is one.
    pub fn publisher_pid(&self) -> Option<u32> {
        let writer = self.channel.words().header.writer.load(Relaxed);
        (writer != 0).then(|| token_pid(writer))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.channel.words().withdraw_waiting(self.entry);
        self.channel.words().unregister(self.entry);
    }
}

/// A frame leased in place; dereferences to its bytes in shared memory.
/// The publisher leaves its slot alone until the lease is dropped.
pub struct Lease<'a> {
    subscriber: &'a Subscriber,
    slot: usize,
    info: FrameInfo,
}

impl Lease<'_> {
    /// The frame's number and metadata.
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }
}

impl Deref for Lease<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the lease keeps the publisher off this slot (see the
        // protocol), so its bytes do not change while the lease lives; the
        // length was checked against the slot size.
        unsafe {
            std::slice::from_raw_parts(self.subscriber.channel.payload(self.slot), self.info.len)
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.subscriber
            .channel
            .words()
            .release_lease(self.subscriber.entry);
    }
}

impl std::fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("info", &self.info).finish()
    }
}
