//! The reading side of a channel.
//!
//! # Access levels
//! A subscriber opens the channel read-only, always: it needs, and holds,
//! no writable handle to anything the publisher writes. What it can do
//! depends on [`Access`]:
//!
//! - [`Access::ReadOnly`] (the default): wait for frames, copy the latest
//!   one ([`read_latest`](Subscriber::read_latest), a seqlock read), read it
//!   in place and learn afterwards whether it changed meanwhile
//!   ([`read_in_place`](Subscriber::read_in_place)), and tell the
//!   publisher's health. Needs only read access to the channel.
//! - [`Access::Leasing`]: all of the above, and
//!   [`lease_latest`](Subscriber::lease_latest), which keeps the publisher
//!   off the leased slot while the frame is used in place. Needs write
//!   access to the channel's lease table (`shmcast.NAME~leases`), which the
//!   publisher grants separately; it registers in one of its
//!   [`MAX_SUBSCRIBERS`] entries.
//!
//! # Reading in place: bounded leases, so no `&[u8]`
//! A lease must not let a stopped or forged holder keep a slot from the
//! publisher forever, so the publisher revokes a lease that keeps it from
//! every free slot for longer than the channel's max lease, and writes
//! that slot. Its holder's bytes can therefore change under it: a `&[u8]`
//! over them would be a promise Rust holds the program to, and breaking it
//! is undefined behaviour even if the result is thrown away. So leased and
//! in-place frames are shown as [`SharedBytes`] (a pointer and a length):
//! copying from them is always defined, [`Lease::release`] says whether
//! what was read is whole, and a zero-copy slice is
//! [`SharedBytes::as_slice`], an `unsafe fn` whose caller promises to be
//! done within the max lease. The alternative, never writing a live
//! holder's slot, would let one stopped reader with leasing rights cost
//! every other reader its frames for as long as it stays stopped.
//!
//! # Following the name
//! When a publisher exits cleanly it removes the channel's name (Linux);
//! the next publisher of that name creates a new channel. A subscriber
//! notices in [`wait_newer`](Subscriber::wait_newer) (or when asked, with
//! [`follow`](Subscriber::follow)) and reopens the name; frame numbers then
//! start again from the new channel's. On Windows the section lives while
//! subscribers hold it, and the next publisher takes it over in place.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::format::{FrameInfo, SlotMeta};
use super::layout::MAX_SUBSCRIBERS;
use super::mapped::{corrupt_channel, now_ns, Channel};
use super::protocol::ReadFail;
use crate::copy::{copy_from_shared, SharedBytes};
use crate::error::{Error, ErrorKind};
use crate::header::Kind;
use crate::identity::{token_is_dead, token_liveness, token_pid, Liveness, ProcessId};
use crate::name::{IntoName, Name};
use crate::os::Wakeup;
use crate::segment::Segment;

/// How many seqlock copies a leasing subscriber tries before falling back
/// to copying from a lease (which the publisher leaves alone).
const COPY_TRIES: usize = 4;
/// How many seqlock copies a read-only subscriber tries before giving up
/// with `Overrun` (it has no lease to fall back on).
const READ_ONLY_TRIES: usize = 64;
/// Frames larger than this are copied under a lease straight away by a
/// leasing subscriber: a copy that long is likely to be overwritten by a
/// busy publisher, and every failed try costs a whole frame of memory
/// traffic (the benchmark showed 6 MB copies against a fast writer at a
/// fifth of the leased rate).
const SEQLOCK_MAX: usize = 256 * 1024;
/// The same for a lease, which is cheap to retry.
const LEASE_TRIES: usize = 10_000;
/// The longest single sleep in `wait_newer`; it re-checks after each.
const WAIT_SLICE: Duration = Duration::from_millis(250);
/// How often a leasing subscriber refreshes its entry's beat.
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// What a subscriber may do: read only, or also lease frames in place
/// (see [`Subscriber::lease_latest`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Access {
    /// Needs only read access to the channel; writes nothing anywhere.
    #[default]
    ReadOnly,
    /// May also lease frames in place; needs write access to the lease
    /// table.
    Leasing,
}

/// How to subscribe.
#[derive(Clone, Debug, Default)]
pub struct SubscriberOptions {
    access: Access,
    wait: Option<Duration>,
}

impl SubscriberOptions {
    /// Read-only, and fail at once if the channel does not exist.
    pub fn new() -> SubscriberOptions {
        SubscriberOptions::default()
    }

    /// The access level.
    pub fn access(mut self, access: Access) -> SubscriberOptions {
        self.access = access;
        self
    }

    /// Wait up to `timeout` for the channel to appear (a subscriber may
    /// start before its publisher).
    pub fn wait(mut self, timeout: Duration) -> SubscriberOptions {
        self.wait = Some(timeout);
        self
    }
}

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
    /// Another process truncated the channel's shared memory: nothing more
    /// comes through it. A publisher of the name replaces it (see
    /// [`Subscriber::follow`]), or the channel must be made again.
    Truncated,
    /// No channel of the name (yet). Only a [`Reader`](crate::Reader),
    /// which needs no channel to start, says this.
    Missing,
}

/// One process's view of a channel: reads the latest frame by copy or in
/// place, and waits for new ones without burning CPU.
///
/// A `Subscriber` can move between threads but not be shared by them (it is
/// `Send`, not `Sync`): a leasing one has one lease-table entry, which holds
/// one lease at a time, and two threads leasing through it would release
/// each other's. Open one subscriber per thread.
pub struct Subscriber {
    name: Name,
    /// Shared with detached leases and waiters, which keep it mapped.
    channel: Arc<Channel>,
    access: Access,
    me: u64,
    /// Our lease-table entry (leasing subscribers); it may be cleared as
    /// stale while we are stopped, and is then taken anew.
    entry: Cell<Option<usize>>,
    last_beat: Cell<Instant>,
    wakeup: Arc<Wakeup>,
    /// How many times the name was followed to a new channel.
    reopened: u64,
    /// Shared with a [`DetachedLease`] of ours, if one is out.
    detached: Arc<Mutex<EntryShare>>,
}

/// What a subscriber and its detached lease agree on about their
/// lease-table entry. The mutex orders the lease's clear before the
/// subscriber's next lease on the entry, and decides which of the two
/// frees the entry.
#[derive(Default)]
struct EntryShare {
    /// A detached lease holds the entry's one lease: the subscriber leases
    /// nothing else until it ends.
    leased: bool,
    /// The subscriber is gone (dropped, or replaced by `follow`) while the
    /// lease was out: the lease frees the entry when it ends, so that the
    /// slot stays protected until then.
    orphaned: bool,
}

fn share(m: &Mutex<EntryShare>) -> MutexGuard<'_, EntryShare> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.channel.name())
            .field("access", &self.access)
            .finish()
    }
}

impl Subscriber {
    /// Subscribes read-only to the existing channel `name`. Needs only the
    /// name and read access: the geometry comes from the channel's
    /// validated header.
    ///
    /// # Errors
    /// open errors (no such channel, not a channel, bad
    /// header, no permission), [`ErrorKind::Corrupt`].
    pub fn open<N: IntoName>(name: N) -> Result<Subscriber, Error> {
        Subscriber::open_with(name, &SubscriberOptions::new())
    }

    /// Like [`Subscriber::open`], but waits up to `timeout` for the channel
    /// to appear (a subscriber may start before its publisher).
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] when it did not appear; other errors as
    /// [`Subscriber::open`], at once.
    pub fn open_wait<N: IntoName>(name: N, timeout: Duration) -> Result<Subscriber, Error> {
        Subscriber::open_with(name, &SubscriberOptions::new().wait(timeout))
    }

    /// Subscribes with `options`: the access level, and whether to wait for
    /// the channel to appear.
    ///
    /// # Errors
    /// As [`Subscriber::open`] and [`Subscriber::open_wait`]; for leasing,
    /// also [`ErrorKind::Busy`], [`ErrorKind::PermissionDenied`]
    /// (the publisher did not grant this user write access to its lease
    /// table), and `Open` errors of the lease table.
    pub fn open_with<N: IntoName>(
        name: N,
        options: &SubscriberOptions,
    ) -> Result<Subscriber, Error> {
        let name = name.into_name()?;
        let started = Instant::now();
        loop {
            match Subscriber::open_once(&name, options.access) {
                // Not there yet, or there but still being created (a large
                // channel takes a while to reserve): both are waited out.
                Err(e)
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Uninitialized)
                        && options.wait.is_some() =>
                {
                    let timeout = options.wait.unwrap_or_default();
                    if started.elapsed() >= timeout {
                        if e.kind() == ErrorKind::Uninitialized {
                            return Err(e); // it never got finished
                        }
                        let waited = started.elapsed();
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("channel {name} did not appear within {waited:?}; is its publisher running?"),
                        )
                        .on(&name));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn open_once(name: &Name, access: Access) -> Result<Subscriber, Error> {
        let seg = Segment::open(name.clone(), Some(Kind::Channel), false)?;
        let mut channel = Channel::new(seg).map_err(|what| corrupt_channel(name, what))?;
        let me = ProcessId::current().token();
        let mut entry = None;
        if access == Access::Leasing {
            let leases = channel.open_leases(name, true).map_err(|e| match e.kind() {
                ErrorKind::PermissionDenied => Error::new(
                    ErrorKind::PermissionDenied,
                    format!("cannot lease frames of channel {name}: its publisher did not give this user write access to its lease table; subscribe read-only instead"),
                )
                .on(name)
                .caused_by(e),
                _ => e,
            })?;
            same_owner(channel.seg.ownership(), leases.ownership())
                .map_err(|what| corrupt_channel(name, what))?;
            channel.leases = Some(leases);
            entry = Some(
                channel
                    .words()
                    .register(me, crate::os::monotonic_ns(), token_is_dead)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Busy,
                            format!("cannot subscribe to channel {name} for leasing: all {MAX_SUBSCRIBERS} lease-table entries are taken by live processes (read-only subscribers need no entry)"),
                        )
                        .on(name)
                    })?,
            );
        }
        let wakeup = Wakeup::new(&name.object_name(), name.namespace(), channel.instance())
            .map_err(|source| {
                Error::new(
                    ErrorKind::Os,
                    format!("cannot subscribe to channel {name}: {source}"),
                )
                .on(name)
                .caused_by(source)
            });
        let wakeup = match wakeup {
            Ok(w) => w,
            Err(e) => {
                if let Some(entry) = entry {
                    channel.words().unregister(entry, me);
                }
                return Err(e);
            }
        };
        Ok(Subscriber {
            name: name.clone(),
            channel: Arc::new(channel),
            access,
            me,
            entry: Cell::new(entry),
            last_beat: Cell::new(Instant::now()),
            wakeup: Arc::new(wakeup),
            reopened: 0,
            detached: Arc::default(),
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The access level this subscriber was opened with.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The largest frame this channel carries, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.channel.geometry.max_frame_len
    }

    /// The most bytes of metadata the channel's frames can carry (0: none).
    pub fn max_metadata_len(&self) -> usize {
        self.channel.geometry.max_metadata_len
    }

    /// The newest frame's number (0: none published yet). Cheap.
    pub fn latest_number(&self) -> u64 {
        self.channel.words().latest_number()
    }

    /// How many times this subscriber followed its name to a new channel
    /// (see [`follow`](Subscriber::follow)).
    pub fn reopened(&self) -> u64 {
        self.reopened
    }

    fn check_truncated(&self) -> Result<(), Error> {
        if self.channel.seg.was_truncated() {
            return Err(self.fail(
                ErrorKind::Truncated,
                "another process truncated its shared memory; reopen it",
            ));
        }
        Ok(())
    }

    /// Our lease-table entry, taken anew if it was cleared (we were stopped,
    /// or idle while the table filled up), its beat refreshed when due.
    /// Checked on every call: an entry that is no longer ours is never
    /// written (its new owner's lease would be clobbered).
    fn lease_entry(&self) -> Result<usize, Error> {
        if crate::identity::forked_from(self.me) {
            // The entry is the parent's: a lease through it would be
            // released by neither process.
            return Err(self.fail(
                ErrorKind::NotLeasing,
                "this subscriber was inherited across a fork; open one in this process to lease",
            ));
        }
        let words = self.channel.words();
        let Some(entry) = self.entry.get() else {
            return Err(self.fail(
                ErrorKind::NotLeasing,
                "this subscriber is read-only; open it for leasing to lease",
            ));
        };
        let mine = words.owns_entry(entry, self.me);
        if mine && self.last_beat.get().elapsed() < BEAT_EVERY {
            return Ok(entry);
        }
        self.last_beat.set(Instant::now());
        let now = crate::os::monotonic_ns();
        if mine {
            words.touch(entry, now);
            return Ok(entry);
        }
        let entry = words
            .register(self.me, now, token_is_dead)
            .ok_or_else(|| {
                self.fail(
                    ErrorKind::NotLeasing,
                    format!("this subscriber's lease-table entry was cleared while it was idle, and all {MAX_SUBSCRIBERS} are taken now"),
                )
            })?;
        self.entry.set(Some(entry));
        Ok(entry)
    }

    /// Copies the latest frame into `buf`; the bytes are always one whole
    /// frame. `Ok(None)` when nothing has been published yet.
    ///
    /// The copy is a seqlock read: it writes nothing to shared memory and is
    /// retried when it overlapped a write. A leasing subscriber falls back,
    /// after a few tries (and at once for frames over 256 KiB), to leasing
    /// the frame, copying it and releasing the lease: one pass over the
    /// frame, progress guaranteed, and the publisher still never waits. A
    /// read-only subscriber keeps trying, then reports `Overrun` (give the
    /// channel more slots, or lease).
    ///
    /// # Errors
    /// [`ErrorKind::BufferTooSmall`], [`ErrorKind::Corrupt`],
    /// [`ErrorKind::Overrun`], [`ErrorKind::Truncated`].
    pub fn read_latest(&self, buf: &mut [u8]) -> Result<Option<FrameInfo>, Error> {
        self.read_latest_into(buf, None)
    }

    /// As [`read_latest`](Subscriber::read_latest), and the frame's
    /// metadata into `metadata` (resized to it; empty when it has none),
    /// copied with the frame under the same check: never another frame's.
    ///
    /// # Errors
    /// As [`Subscriber::read_latest`].
    pub fn read_latest_with_metadata(
        &self,
        buf: &mut [u8],
        metadata: &mut Vec<u8>,
    ) -> Result<Option<FrameInfo>, Error> {
        self.read_latest_into(buf, Some(metadata))
    }

    fn read_latest_into(
        &self,
        buf: &mut [u8],
        mut metadata: Option<&mut Vec<u8>>,
    ) -> Result<Option<FrameInfo>, Error> {
        self.check_truncated()?;
        let words = self.channel.words();
        // With our entry's one lease held by a detached lease, copying is a
        // seqlock read only, as for a read-only subscriber.
        let can_lease = self.access == Access::Leasing && !share(&self.detached).leased;
        let tries = match self.access {
            _ if !can_lease => READ_ONLY_TRIES,
            _ if self.max_frame_len() <= SEQLOCK_MAX => COPY_TRIES,
            _ => 0,
        };
        if tries > 0 {
            // The last copy is the one whose `seq` held: its info is the frame's.
            let mut info = None;
            let copied = words.read_latest(tries, |slot, meta| {
                info = Some(self.copy_out(slot, meta, buf, metadata.as_deref_mut())?);
                Ok(())
            });
            match copied {
                Err(ReadFail::Overrun) if can_lease => {}
                other => {
                    self.check_truncated()?;
                    return other.map(|m| m.and(info)).map_err(|e| self.read_fail(e));
                }
            }
        }
        // `&self` proves no `Lease` of ours is alive (it borrows `&mut
        // self`), `detached` that no detached one is, and `Subscriber` is
        // not `Sync`, so no other thread is in here either: our entry's
        // lease is free to use.
        let entry = self.lease_entry()?;
        for _ in 0..COPY_TRIES {
            let (slot, meta, seq) = match words.lease_latest(entry, LEASE_TRIES) {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(None),
                Err(ReadFail::Corrupt(what)) => return Err(self.read_fail(ReadFail::Corrupt(what))),
                Err(_) => return Err(self.read_fail(ReadFail::Overrun)),
            };
            let copied = self.copy_out(slot, &meta, buf, metadata.as_deref_mut());
            let intact = words.lease_intact(slot, seq);
            words.release_lease(entry, self.me);
            self.check_truncated()?;
            if intact {
                return copied.map(Some);
            }
            // Revoked while we copied: the copy may be torn; again.
        }
        Err(self.read_fail(ReadFail::Overrun))
    }

    /// Copies slot `slot`'s frame into `buf` (and its metadata into
    /// `metadata`), after checking its untrusted words (lengths within the
    /// slot and the buffer, a known format).
    fn copy_out(
        &self,
        slot: usize,
        meta: &SlotMeta,
        buf: &mut [u8],
        metadata: Option<&mut Vec<u8>>,
    ) -> Result<FrameInfo, Error> {
        let info = self.checked_info(meta)?;
        let Some(dst) = buf.get_mut(..info.len) else {
            return Err(self
                .fail(
                    ErrorKind::BufferTooSmall,
                    format!(
                        "the frame has {} bytes, the buffer only {}",
                        info.len,
                        buf.len()
                    ),
                )
                .with_len(info.len));
        };
        // SAFETY: `slot` is valid and `len <= max`, so the source is inside the
        // slot's payload; a concurrent overwrite (seqlock path) is what the
        // racy-tolerant copy allows and the caller's seq check detects.
        unsafe { copy_from_shared(self.channel.payload(slot), dst) };
        if let Some(metadata) = metadata {
            metadata.resize(info.metadata_len, 0);
            // SAFETY: as for the payload: `metadata_len <= max_metadata_len`,
            // inside the slot's metadata area.
            unsafe { copy_from_shared(self.channel.metadata(slot), metadata) };
        }
        Ok(info)
    }

    /// What a slot's metadata says, or `Corrupt` when it cannot be so.
    fn checked_info(&self, meta: &SlotMeta) -> Result<FrameInfo, Error> {
        meta.info(self.max_frame_len(), self.max_metadata_len())
            .map_err(|bad| self.fail(ErrorKind::Corrupt, format!("corrupt frame ({bad})")))
    }

    /// The latest frame, copied into a new `Vec`.
    ///
    /// # Errors
    /// As [`Subscriber::read_latest`].
    pub fn read_latest_vec(&self) -> Result<Option<(FrameInfo, Vec<u8>)>, Error> {
        let mut buf = vec![0u8; self.max_frame_len()];
        Ok(self.read_latest(&mut buf)?.map(|info| {
            buf.truncate(info.len);
            (info, buf)
        }))
    }

    /// Runs `f` on the latest frame where it lies in shared memory, without
    /// a copy and without writing anything, then checks that the publisher
    /// did not touch the frame meanwhile: only then is `f`'s result
    /// returned. If it did, `f` runs again on the newer frame, a few times,
    /// then `Overrun`. `Ok(None)` when nothing has been published yet.
    ///
    /// While `f` runs, the bytes it sees may be changing under it (that is
    /// what the check afterwards is for), which is why they come as
    /// [`SharedBytes`]: `f` copies what it needs (all of it, or a few rows)
    /// and computes on the copy, and only a result from bytes that stayed
    /// put is returned. For long work on a frame that must not change,
    /// lease it ([`Access::Leasing`]) or copy it.
    ///
    /// # Errors
    /// [`ErrorKind::Overrun`], [`ErrorKind::Corrupt`],
    /// [`ErrorKind::Truncated`].
    pub fn read_in_place<R>(
        &self,
        mut f: impl FnMut(&FrameInfo, SharedBytes<'_>) -> R,
    ) -> Result<Option<(FrameInfo, R)>, Error> {
        self.read_in_place_with_metadata(|info, bytes, _| f(info, bytes))
    }

    /// As [`read_in_place`](Subscriber::read_in_place), with the frame's
    /// metadata (empty when it has none) beside its bytes: `f` sees both
    /// in place, and its result is returned only when neither changed
    /// while it ran.
    ///
    /// # Errors
    /// As [`Subscriber::read_in_place`].
    pub fn read_in_place_with_metadata<R>(
        &self,
        mut f: impl FnMut(&FrameInfo, SharedBytes<'_>, SharedBytes<'_>) -> R,
    ) -> Result<Option<(FrameInfo, R)>, Error> {
        self.check_truncated()?;
        let mut result = None;
        let got = self.channel.words().read_latest(COPY_TRIES, |slot, meta| {
            let info = self.checked_info(meta)?;
            // Other processes may write these bytes while `f` reads them;
            // `SharedBytes` only copies them, and the seq check decides.
            // SAFETY: `slot` is valid, `len` within its payload, mapped while
            // `self` lives.
            let bytes = unsafe { SharedBytes::new(self.channel.payload(slot), info.len) };
            // SAFETY: as for the bytes: `metadata_len <= max_metadata_len`
            // (checked by `checked_info`), inside the slot's metadata area.
            let metadata =
                unsafe { SharedBytes::new(self.channel.metadata(slot), info.metadata_len) };
            let r = f(&info, bytes, metadata);
            result = Some((info, r));
            Ok(())
        });
        self.check_truncated()?;
        match got {
            Ok(Some(_)) => Ok(result),
            Ok(None) => Ok(None),
            Err(e) => Err(self.read_fail(e)),
        }
    }

    fn read_fail(&self, fail: ReadFail<Error>) -> Error {
        match fail {
            ReadFail::Copy(e) => e,
            ReadFail::Overrun => self.fail(
                ErrorKind::Overrun,
                "the publisher overwrote every frame before it could be copied; lease frames in place or add slots",
            ),
            ReadFail::Corrupt(what) => self.fail(
                ErrorKind::Corrupt,
                format!("corrupt frame ({what}); a process with write access to the channel wrote its shared memory"),
            ),
        }
    }

    /// An error of `kind` on this channel: "channel NAME: `what`".
    fn fail(&self, kind: ErrorKind, what: impl std::fmt::Display) -> Error {
        fail(&self.channel, kind, what)
    }

    /// Leases the latest frame in place: [`Lease::bytes`] are the frame's
    /// bytes in shared memory, and until the lease is dropped the
    /// publisher writes to other slots, unless the lease keeps it from
    /// every free slot for longer than the channel's max lease; then it is
    /// revoked, which [`Lease::release`] reports (see the module docs for
    /// why leases are bounded, and why that makes the bytes
    /// [`SharedBytes`]). `Ok(None)` when nothing has been published yet.
    /// Only for [`Access::Leasing`] subscribers.
    ///
    /// # Errors
    /// [`ErrorKind::NotLeasing`], [`ErrorKind::Busy`] (a
    /// [`DetachedLease`] of this subscriber is still held),
    /// [`ErrorKind::Overrun`], [`ErrorKind::Corrupt`],
    /// [`ErrorKind::Truncated`].
    pub fn lease_latest(&mut self) -> Result<Option<Lease<'_>>, Error> {
        self.check_truncated()?;
        let entry = self.lease_entry()?;
        if share(&self.detached).leased {
            return Err(self.fail(
                ErrorKind::Busy,
                "this subscriber already holds a lease; release it before leasing again",
            ));
        }
        let words = self.channel.words();
        let leased = words.lease_latest(entry, LEASE_TRIES).map_err(|e| match e {
            ReadFail::Corrupt(what) => ReadFail::Corrupt(what),
            _ => ReadFail::Overrun,
        });
        let (slot, meta, seq) = match leased {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.read_fail(e)),
        };
        let info = match self.checked_info(&meta) {
            Ok(info) => info,
            Err(e) => {
                words.release_lease(entry, self.me);
                return Err(e);
            }
        };
        Ok(Some(Lease {
            subscriber: self,
            entry,
            slot,
            seq,
            info,
            ended: false,
            borrow: PhantomData,
        }))
    }

    /// Waits until a frame newer than `than` is published, up to `timeout`;
    /// returns the newest frame number. Blocks in the kernel (Linux futex,
    /// Windows event): no CPU is used while waiting.
    ///
    /// When the publisher is gone and its name now names a new channel (a
    /// restarted publisher), the subscriber follows the name (see
    /// [`follow`](Subscriber::follow)) and returns as soon as the new
    /// channel has a frame, whatever its number: numbers start again with a
    /// new channel, so `seen = sub.wait_newer(seen, t)?` keeps working.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`].
    pub fn wait_newer(&mut self, than: u64, timeout: Duration) -> Result<u64, Error> {
        wait_loop(than, timeout, |look| look(self))
    }

    /// One look of [`wait_loop`]: done, or how to sleep until the next.
    fn look(&mut self, than: u64, from: &mut WaitFrom) -> Look {
        let reopened_before = *from.reopened.get_or_insert(self.reopened);
        let words = self.channel.words();
        let generation = words.generation().load(crate::sync::Ordering::Acquire);
        let latest = words.latest_number();
        if latest > than || (self.reopened != reopened_before && latest > 0) {
            return Look::Done(Ok(latest));
        }
        // Only when there is nothing to return: a frame waiting costs no
        // clock read.
        self.heartbeat();
        if self.channel.seg.was_truncated() {
            // Nothing more comes through this channel; a replacement may.
            return match self.follow() {
                Ok(true) => Look::Again,
                _ => Look::Done(Err(self.fail(
                    ErrorKind::Truncated,
                    "another process truncated its shared memory; nothing more comes through it (a publisher of the name replaces it)",
                ))),
            };
        }
        let waited = from.started.elapsed();
        if waited >= from.timeout {
            return Look::Done(Err(self
                .fail(
                    ErrorKind::Timeout,
                    format!("no frame newer than {than} within {waited:?} (latest is {latest})"),
                )
                .with_number(latest)));
        }
        if words.writer() == 0 || (from.quiet && self.publisher_gone()) {
            return match self.follow() {
                Ok(true) => Look::Again,
                _ => Look::Nap,
            };
        }
        Look::Sleep(self.waiter(), generation)
    }

    fn publisher_gone(&self) -> bool {
        let writer = self.channel.words().writer();
        writer == 0 || token_liveness(writer) == Liveness::Dead
    }

    /// If the channel's name now names another channel (its publisher
    /// exited and a new one created the name anew), reopens the name with
    /// the same access level. `Ok(true)`: this subscriber now reads the
    /// new channel (its frame numbers start again). `Ok(false)`: the name
    /// still names our channel, or names nothing yet.
    ///
    /// # Errors
    /// As [`Subscriber::open_with`], when the new channel cannot be opened.
    pub fn follow(&mut self) -> Result<bool, Error> {
        if self.channel.seg.is_still_named() {
            return Ok(false);
        }
        match Subscriber::open_once(&self.name, self.access) {
            Ok(mut fresh) => {
                fresh.reopened = self.reopened + 1;
                *self = fresh;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The publisher's health: [`Health::Stalled`] when it runs but has
    /// published nothing for `stall_after`, or says its source is stalled
    /// ([`stall_reason`](Subscriber::stall_reason)).
    pub fn health(&self, stall_after: Duration) -> Health {
        let last_publish_ns = self.channel.words().last_publish_ns();
        // Judged after reading the words: a read past a truncation is what
        // the SIGBUS guard catches and records.
        if self.channel.seg.was_truncated() {
            return Health::Truncated;
        }
        if self.publisher_gone() {
            return Health::Gone;
        }
        let idle = Duration::from_nanos(now_ns().saturating_sub(last_publish_ns));
        if idle > stall_after || self.stall_reason().is_some() {
            Health::Stalled { idle }
        } else {
            Health::Live
        }
    }

    /// Why the publisher's source delivers nothing, when the publisher
    /// says so (a camera service whose device is gone, say); `None` while
    /// it delivers, or when there is no publisher.
    pub fn stall_reason(&self) -> Option<String> {
        if self.channel.words().writer() == 0 {
            return None;
        }
        self.channel.source_status().get()
    }

    /// The channel's instance: a number drawn when the channel was
    /// created, the same across in-place take-overs, different for a
    /// channel created anew under the name. A bridge tells a restarted
    /// source (whose frame numbers start again) by it.
    pub fn instance(&self) -> u64 {
        self.channel.instance()
    }

    /// Whether the name no longer names this subscriber's channel (it was
    /// removed, and maybe made anew).
    pub(crate) fn name_moved(&self) -> bool {
        !self.channel.seg.is_still_named()
    }

    /// Whether a [`DetachedLease`] of this subscriber is still held (then
    /// [`lease_latest`](Subscriber::lease_latest) says [`ErrorKind::Busy`]).
    pub(crate) fn detached_lease_held(&self) -> bool {
        share(&self.detached).leased
    }

    /// The PID of the current publisher, if there is one.
    pub fn publisher_pid(&self) -> Option<u32> {
        let writer = self.channel.words().writer();
        (writer != 0).then(|| token_pid(writer))
    }

    /// Tells the lease table that this leasing subscriber is alive (an
    /// entry that shows no sign of life for 10 s may be given to another
    /// subscriber when the table is full). Every call that reads or waits
    /// does this on its own; call it between [`Waiter::wait`]s. Nothing for
    /// a read-only subscriber.
    pub fn heartbeat(&self) {
        if self.entry.get().is_some() {
            let _ = self.lease_entry();
        }
    }

    /// A [`Waiter`] for this subscriber's channel: sleeps until a new frame
    /// without borrowing the subscriber, so that another thread can read
    /// or lease through it meanwhile (language bindings need this; Rust
    /// code can use [`wait_newer`](Subscriber::wait_newer)).
    pub fn waiter(&self) -> Waiter {
        Waiter {
            channel: Arc::clone(&self.channel),
            wakeup: Arc::clone(&self.wakeup),
        }
    }
}

impl Subscriber {
    /// [`wait_newer`](Subscriber::wait_newer) for a subscriber that several
    /// threads share behind a mutex (language bindings: one thread waits
    /// while another reads or leases): the lock is held only for short
    /// looks, never while sleeping. Follows the name to a restarted
    /// publisher's channel as `wait_newer` does.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`], whose `latest` is the newest frame's number.
    pub fn wait_newer_shared(
        shared: &Mutex<Subscriber>,
        than: u64,
        timeout: Duration,
    ) -> Result<u64, Error> {
        wait_loop(than, timeout, |look| {
            look(&mut shared.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }
}

/// Where a wait started, and what it learnt so far.
struct WaitFrom {
    started: Instant,
    timeout: Duration,
    /// How often the subscriber had followed its name when the wait began.
    reopened: Option<u64>,
    /// Whether a wait has passed without a frame: only then is it worth
    /// asking the OS whether the publisher still lives (a /proc read), so
    /// a stream of frames costs no such call.
    quiet: bool,
}

/// What one look at the channel found.
enum Look {
    Done(Result<u64, Error>),
    /// Sleep on the channel's wake-up while its generation is this.
    Sleep(Waiter, u32),
    /// Nobody to wake us (no publisher): a short nap, then look again.
    Nap,
    /// The name was followed to a new channel: look again at once.
    Again,
}

/// The one wait loop, for a subscriber of one thread and one that threads
/// share: `with(look)` runs a look on the subscriber (under the sharers'
/// lock), and the sleep between looks holds nothing.
fn wait_loop(
    than: u64,
    timeout: Duration,
    mut with: impl FnMut(&mut dyn FnMut(&mut Subscriber) -> Look) -> Look,
) -> Result<u64, Error> {
    let mut from = WaitFrom {
        started: Instant::now(),
        timeout,
        reopened: None,
        quiet: false,
    };
    loop {
        let look = with(&mut |sub| sub.look(than, &mut from));
        // The clock is read only when there is a wait ahead.
        let left = || timeout.saturating_sub(from.started.elapsed());
        match look {
            Look::Done(result) => return result,
            Look::Again => continue,
            Look::Nap => std::thread::sleep(left().min(Duration::from_millis(50))),
            Look::Sleep(waiter, generation) => {
                let words = waiter.channel.words();
                waiter
                    .wakeup
                    .wait(words.generation(), generation, left().min(WAIT_SLICE));
            }
        }
        from.quiet = true;
    }
}

/// Sleeps until a channel's next frame, apart from its [`Subscriber`]
/// (from [`Subscriber::waiter`]). It keeps the channel it was made for
/// mapped: when the subscriber follows its name to a new channel
/// ([`Subscriber::follow`]), make a new waiter.
pub struct Waiter {
    channel: Arc<Channel>,
    wakeup: Arc<Wakeup>,
}

impl Waiter {
    /// Sleeps until a frame newer than `than` is published, the publisher
    /// lets go of the channel, or `timeout` passes, whichever is first;
    /// returns the newest frame number then (`<= than` when it timed out
    /// or woke for another reason: the caller decides what next, such as
    /// checking [`Subscriber::health`] and calling
    /// [`Subscriber::follow`]). Blocks in the kernel, as
    /// [`Subscriber::wait_newer`] does; may return early, never late by
    /// more than the OS's timer slack.
    pub fn wait(&self, than: u64, timeout: Duration) -> u64 {
        let words = self.channel.words();
        let generation = words.generation().load(crate::sync::Ordering::Acquire);
        let latest = words.latest_number();
        if latest > than || words.writer() == 0 {
            return latest;
        }
        self.wakeup.wait(words.generation(), generation, timeout);
        words.latest_number()
    }
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("channel", &self.channel.name())
            .finish()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if crate::identity::forked_from(self.me) {
            return; // a forked child's copy: the entry is the parent's
        }
        let mut share = share(&self.detached);
        if share.leased {
            // A detached lease still holds a slot through our entry: it
            // frees the entry when it ends.
            share.orphaned = true;
        } else if let Some(entry) = self.entry.get() {
            self.channel.words().unregister(entry, self.me);
        }
    }
}

/// A frame leased in place; [`bytes`](Lease::bytes) are the frame in
/// shared memory. The publisher leaves its slot alone until the lease is
/// dropped, unless it revokes the lease (see [`Subscriber::lease_latest`]):
/// call [`release`](Lease::release) to learn whether what was read is good.
///
/// Generic over how it holds its subscriber: borrowed (`Lease<'_>`, from
/// [`Subscriber::lease_latest`]) or shared ([`DetachedLease`], from
/// [`Lease::detach`], for language bindings whose lease objects outlive a
/// call; `Send` and `Sync`).
#[must_use = "a lease keeps a slot from the publisher until it is dropped"]
pub struct Lease<'a, S: HoldsSubscriber = &'a Subscriber> {
    subscriber: S,
    entry: usize,
    slot: usize,
    seq: u64,
    info: FrameInfo,
    ended: bool,
    borrow: PhantomData<&'a ()>,
}

/// A lease that does not borrow its subscriber (see [`Lease::detach`]).
pub type DetachedLease = Lease<'static, Detached>;

/// How a [`Lease`] holds on to its subscriber's channel: `&Subscriber`, or
/// [`Detached`]. Sealed: nothing outside this crate implements it.
#[allow(private_bounds)] // the crate-private supertrait is what seals it
pub trait HoldsSubscriber: Holds {}

/// What a lease needs of its subscriber (crate-private: seals
/// [`HoldsSubscriber`]).
pub(crate) trait Holds {
    /// The channel the lease is on.
    fn channel(&self) -> &Channel;
    /// The leasing process's token.
    fn me(&self) -> u64;
    /// Ends the lease in lease-table entry `entry`.
    fn end(&self, entry: usize);
}

impl Holds for &Subscriber {
    fn channel(&self) -> &Channel {
        &self.channel
    }

    fn me(&self) -> u64 {
        self.me
    }

    fn end(&self, entry: usize) {
        self.channel.words().release_lease(entry, self.me);
    }
}

impl HoldsSubscriber for &Subscriber {}

/// What a [`DetachedLease`] keeps of its subscriber: the channel, mapped,
/// and their shared view of the lease-table entry.
pub struct Detached {
    channel: Arc<Channel>,
    share: Arc<Mutex<EntryShare>>,
    me: u64,
}

impl Holds for Detached {
    fn channel(&self) -> &Channel {
        &self.channel
    }

    fn me(&self) -> u64 {
        self.me
    }

    fn end(&self, entry: usize) {
        // Under the share's lock: the subscriber's next lease on this entry
        // is ordered after our clear.
        let mut share = share(&self.share);
        let words = self.channel.words();
        words.release_lease(entry, self.me);
        share.leased = false;
        if share.orphaned {
            words.unregister(entry, self.me);
        }
    }
}

impl HoldsSubscriber for Detached {}

impl<S: HoldsSubscriber> Lease<'_, S> {
    /// The frame's number and metadata.
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }

    /// The frame's bytes where they lie in shared memory.
    pub fn bytes(&self) -> SharedBytes<'_> {
        // SAFETY: slot and length were checked against the geometry when
        // leased; the subscriber (borrowed, or its channel shared) keeps
        // the payload mapped while `self` lives.
        unsafe { SharedBytes::new(self.subscriber.channel().payload(self.slot), self.info.len) }
    }

    /// The frame's metadata where it lies in shared memory (empty when it
    /// has none): read under the same lease as [`bytes`](Lease::bytes), so
    /// [`release`](Lease::release) vouches for both.
    pub fn metadata(&self) -> SharedBytes<'_> {
        // SAFETY: `metadata_len` was checked against the channel's
        // max_metadata_len when leased; the metadata area lies in the slot,
        // mapped while `self` lives.
        unsafe {
            SharedBytes::new(
                self.subscriber.channel().metadata(self.slot),
                self.info.metadata_len,
            )
        }
    }

    /// Whether the frame is still the one leased (not revoked so far).
    pub fn is_intact(&self) -> bool {
        let channel = self.subscriber.channel();
        channel.words().lease_intact(self.slot, self.seq) && !channel.seg.was_truncated()
    }

    /// Ends the lease, saying whether the frame stayed whole all along.
    ///
    /// # Errors
    /// [`ErrorKind::Revoked`] when the publisher revoked the lease: what
    /// was read from it may be torn and must be discarded.
    pub fn release(mut self) -> Result<(), Error> {
        let intact = self.is_intact();
        self.end();
        if intact {
            Ok(())
        } else {
            let number = self.info.number;
            Err(fail(
                self.subscriber.channel(),
                ErrorKind::Revoked,
                format!("the lease on frame {number} was revoked while in use (it kept the publisher from every free slot too long); discard what was read"),
            )
            .with_number(number))
        }
    }

    fn end(&mut self) {
        if !self.ended && !crate::identity::forked_from(self.subscriber.me()) {
            self.ended = true;
            self.subscriber.end(self.entry);
        }
    }
}

impl<'a> Lease<'a> {
    /// Frees the lease from the subscriber's borrow, for language bindings
    /// whose lease objects outlive a call: the [`DetachedLease`] keeps the
    /// channel mapped and its slot protected (even if the subscriber is
    /// dropped or follows its name: the lease then frees the subscriber's
    /// lease-table entry when it ends) and can be used and released on any
    /// thread. Until it ends, the subscriber takes no other lease
    /// ([`ErrorKind::Busy`]) and copies by seqlock only.
    pub fn detach(self) -> DetachedLease {
        let this = std::mem::ManuallyDrop::new(self);
        let subscriber = this.subscriber;
        share(&subscriber.detached).leased = true;
        Lease {
            subscriber: Detached {
                channel: Arc::clone(&subscriber.channel),
                share: Arc::clone(&subscriber.detached),
                me: subscriber.me,
            },
            entry: this.entry,
            slot: this.slot,
            seq: this.seq,
            info: this.info,
            ended: false,
            borrow: PhantomData,
        }
    }
}

impl<S: HoldsSubscriber> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<S: HoldsSubscriber> std::fmt::Debug for Lease<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("info", &self.info).finish()
    }
}

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detached")
            .field("channel", &self.channel.name())
            .finish()
    }
}

/// An error of `kind` on `channel`: "channel NAME: `what`".
fn fail(channel: &Channel, kind: ErrorKind, what: impl std::fmt::Display) -> Error {
    let name = channel.name();
    Error::new(kind, format!("channel {name}: {what}")).on(name)
}

/// Whether a lease table is its channel's owner's: one planted by someone
/// else could be truncated under us at will. An owner that cannot be read
/// is not known to be the same, so it fails too (closed, never open).
fn same_owner(
    channel: std::io::Result<crate::os::Ownership>,
    leases: std::io::Result<crate::os::Ownership>,
) -> Result<(), String> {
    match (channel, leases) {
        (Ok(a), Ok(b)) if a.owner == b.owner => Ok(()),
        (Ok(_), Ok(_)) => Err("its lease table does not belong to the channel's owner".to_owned()),
        (Err(e), _) | (_, Err(e)) => Err(format!(
            "the owner of the channel or of its lease table cannot be read ({e}), so the table cannot be trusted"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::Ownership;

    fn owned(owner: &str) -> std::io::Result<Ownership> {
        Ok(Ownership {
            mine: true,
            owner: owner.to_owned(),
            mode: None,
        })
    }

    #[test]
    fn a_lease_table_is_trusted_only_when_its_owner_is_known_to_be_the_channels() {
        assert!(same_owner(owned("uid 1000"), owned("uid 1000")).is_ok());
        let planted = same_owner(owned("uid 1000"), owned("uid 1001")).unwrap_err();
        assert!(planted.contains("does not belong"), "{planted}");
        let denied = || Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        for (a, b) in [(owned("uid 1000"), denied()), (denied(), owned("uid 1000"))] {
            let unknown = same_owner(a, b).unwrap_err();
            assert!(unknown.contains("cannot be read"), "{unknown}");
        }
    }
}
