//! The writing side of a channel.
//!
//! # Who may do what
//! The publisher creates two objects: the channel (`shmcast.NAME`), which
//! only it writes, and the lease table (`shmcast.NAME~leases`), which it
//! shares with leasing subscribers. [`ChannelOptions::create_options`]
//! decides who may read the channel (Linux mode, Windows SDDL); the lease
//! table gets the same permissions unless [`ChannelOptions::lease_options`]
//! says otherwise, so with mode 0644 everyone may subscribe read-only and
//! only the owner may lease, and with 0666 everyone may lease.
//!
//! # Take-over
//! A publisher that finds the name taken by a channel whose owner is dead
//! takes it over in place (subscribers keep reading, frame numbers go on)
//! only if the object belongs to this user and was made with the same
//! slots, frame size and mode (Windows: security descriptor); a dead
//! channel of this user with other settings is removed and created anew
//! (Linux; [`Publisher::replaced`] says so) or refused naming both
//! (Windows, where its subscribers keep it), and one of another user is
//! never touched
//! ([`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists)).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{FrameMeta, SlotMeta};
use super::layout::{
    ChannelHeader, Geometry, LeaseHeader, DEFAULT_SLOTS, LEASES_DATA_LEN, MAX_SUBSCRIBERS,
};
use super::mapped::{now_ns, Channel};
use super::protocol::Words;
use crate::error::{Error, ErrorKind};
use crate::header::{Kind, COMMON_LEN};
use crate::identity::{token_is_dead, token_pid, ProcessId};
use crate::name::{IntoName, Name, LEASES};
use crate::os::{OsError, OsErrorKind, Wakers};
use crate::segment::{invalid_sddl, AdoptError, CreateOptions, Judged, Origin, Segment};
use crate::sync::Ordering::Relaxed;

/// How often the publisher sweeps the lease table for dead and stale
/// subscribers even when it has slots to spare.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long a lease is honoured, by default, while it keeps the publisher
/// from every free slot.
pub const DEFAULT_MAX_LEASE: Duration = Duration::from_secs(1);

/// How to create a channel.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    max_frame_len: usize,
    max_metadata_len: usize,
    slots: u32,
    create: CreateOptions,
    leases: Option<CreateOptions>,
    max_lease: Duration,
}

impl ChannelOptions {
    /// Frames of up to `max_frame_len` bytes, [`DEFAULT_SLOTS`] slots.
    pub fn new(max_frame_len: usize) -> ChannelOptions {
        ChannelOptions {
            max_frame_len,
            max_metadata_len: 0,
            slots: DEFAULT_SLOTS,
            create: CreateOptions::new(),
            leases: None,
            max_lease: DEFAULT_MAX_LEASE,
        }
    }

    /// The number of slots, [`MIN_SLOTS`](super::MIN_SLOTS) to
    /// [`MAX_SLOTS`](super::MAX_SLOTS). Leasing subscribers hold one slot
    /// each at most; with `slots >= leases held at once + 2` the publisher
    /// always finds a free slot.
    pub fn slots(mut self, slots: u32) -> ChannelOptions {
        self.slots = slots;
        self
    }

    /// Lets every frame carry up to `len` bytes of metadata of the
    /// publisher's own (exposure, a trigger id, a detector's results), at
    /// most [`MAX_METADATA_LEN`](super::MAX_METADATA_LEN); default 0, none.
    /// It lies in the frame's slot after the payload and is read with the
    /// frame under the same checks: a reader never pairs one frame's
    /// metadata with another's pixels.
    pub fn max_metadata(mut self, len: usize) -> ChannelOptions {
        self.max_metadata_len = len;
        self
    }

    /// Namespace, permissions and lifetime of the channel. Subscribers need
    /// only read access (Linux mode 0644 or 0640; Windows an SDDL granting
    /// `GRGX`: read, and SYNCHRONIZE on the wake events).
    ///
    /// On Linux the channel itself never gets the group's or others' write
    /// bits (a mode of 0666 makes a channel of 0644 and a lease table of
    /// 0666): subscribers never write the channel, and a [`Loan`] lends a
    /// `&mut [u8]` on the promise that nobody but its publisher writes the
    /// slot. On Windows the SDDL is taken as given: one that grants others
    /// write access to the channel (rather than to the lease table, see
    /// [`lease_options`](ChannelOptions::lease_options)) breaks that
    /// promise.
    pub fn create_options(mut self, options: CreateOptions) -> ChannelOptions {
        self.create = options;
        self
    }

    /// Permissions of the lease table: who may write it may lease (read
    /// frames in place while the publisher keeps off their slot). Default:
    /// the channel's own options, so write access to the lease table goes
    /// with the write bits of the channel's mode (or SDDL).
    pub fn lease_options(mut self, options: CreateOptions) -> ChannelOptions {
        self.leases = Some(options);
        self
    }

    /// How long the publisher honours a lease that keeps it from its last
    /// free slot (default [`DEFAULT_MAX_LEASE`]). After that it writes over
    /// the leased slot and the lease's holder is told when it checks the
    /// lease ([`Lease::release`](crate::Lease::release)). Leases that leave
    /// the publisher a free slot are honoured for as long as they are held.
    pub fn max_lease(mut self, max_lease: Duration) -> ChannelOptions {
        self.max_lease = max_lease;
        self
    }

    fn lease_create(&self) -> CreateOptions {
        self.leases.clone().unwrap_or_else(|| self.create.clone())
    }

    /// The channel's own options: the group's and others' write bits
    /// dropped (see [`create_options`](ChannelOptions::create_options)).
    fn channel_create(&self) -> CreateOptions {
        let mode = self.create.mode_bits() & !0o022;
        self.create.clone().mode(mode)
    }
}

/// The one process that publishes frames on a channel.
///
/// Created with [`Publisher::create`]; if a channel of that name exists and
/// its publisher is dead, the new publisher takes it over (see the module
/// docs); if that publisher lives, creation fails naming its pid.
pub struct Publisher {
    channel: Channel,
    /// The channel's name for the publish path's errors, which share it
    /// instead of allocating.
    label: Arc<str>,
    /// Why there is no lease table, when there is none.
    leasing_problem: Option<String>,
    me: u64,
    wakers: Wakers,
    last_sweep: Instant,
    took_over_from: Option<u32>,
    replaced: Option<(u32, String)>,
    /// The slot that was latest before our last commit: reused first.
    previous: Option<usize>,
    max_lease: Duration,
    /// Per slot, since when we have found it leased without a break.
    leased_since: Vec<Option<Instant>>,
    dropped: u64,
    revoked: u64,
    /// Whether we said the source is stalled (cleared by the next frame).
    stalled: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.channel.name())
            .field("max_frame_len", &self.max_frame_len())
            .field("slots", &self.slots())
            .finish()
    }
}

impl Publisher {
    /// Creates (or takes over) channel `name` for frames of up to
    /// `max_frame_len` bytes, with default options.
    ///
    /// # Errors
    /// See [`Publisher::create_with`].
    pub fn create<N: IntoName>(name: N, max_frame_len: usize) -> Result<Publisher, Error> {
        Publisher::create_with(name, &ChannelOptions::new(max_frame_len))
    }

    /// Creates (or takes over) channel `name`.
    ///
    /// # Errors
    /// [`ErrorKind::WriterAlive`] when another live process publishes
    /// on it; [`ErrorKind::Incompatible`] when an existing channel
    /// that cannot be replaced (Windows: subscribers hold it open) has
    /// other settings; [`ErrorKind::InvalidArgument`] for an impossible slot
    /// count or size; create errors (among them
    /// [`ErrorKind::AlreadyExists`] for another user's channel) and open
    /// errors.
    pub fn create_with<N: IntoName>(name: N, options: &ChannelOptions) -> Result<Publisher, Error> {
        let mut name = name.into_name()?;
        // The namespace option decides every object's name: the channel's,
        // its lease table's and its wake events'.
        if let Some(ns) = options.create.namespace_override() {
            name = name.in_namespace(ns);
        }
        let geometry = Geometry::new(
            options.slots,
            options.max_frame_len,
            options.max_metadata_len,
        )
        .map_err(|what| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot create channel {name}: {what}"),
            )
            .on(&name)
        })?;
        let me = ProcessId::current().token();
        // The wake events are made first, with the channel's descriptor, so
        // theirs is the first word on it.
        let os_error = |e: OsError| match e.kind {
            OsErrorKind::BadSecurityDescriptor => {
                invalid_sddl(&name, options.create.sddl_str().unwrap_or_default(), e)
            }
            _ => Error::new(
                ErrorKind::Os,
                format!("cannot create channel {name}: {}", e.source),
            )
            .on(&name)
            .caused_by(e.source),
        };
        let (object, ns, sddl) = (
            name.object_name(),
            name.namespace(),
            options.create.sddl_str(),
        );
        // A new channel's wake events exist before its name does, so nobody
        // can learn its instance number in time to make them first.
        let instance = random_instance();
        let mode = options.create.mode_bits();
        let fresh_wakers =
            Wakers::new(&object, ns, instance, sddl, mode, true).map_err(os_error)?;
        let (mut channel, origin) = create_or_take_over(&name, options, &geometry, me, instance)?;
        let wakers = match origin {
            Origin::Adopted(_) => {
                match Wakers::new(&object, ns, channel.instance(), sddl, mode, false) {
                    Ok(wakers) => wakers,
                    Err(source) => {
                        // Leave the channel to the next publisher to try.
                        channel.words().release_writer(me);
                        channel.seg.let_go();
                        return Err(os_error(source));
                    }
                }
            }
            Origin::New | Origin::Replaced(..) => {
                let mut wakers = fresh_wakers;
                wakers.channel_is_new();
                wakers
            }
        };
        let max_lease_ms = u64::try_from(options.max_lease.as_millis()).unwrap_or(u64::MAX);
        channel.words().set_max_lease_ms(max_lease_ms);
        let leases = lease_table(&channel, &name, options);
        let leasing_problem = leases.as_ref().err().cloned();
        channel.leases = leases.ok();
        // A dead predecessor's word on its source is not ours.
        channel.source_status().set(None);
        let slots = channel.geometry.slots as usize;
        let (took_over_from, replaced) = match origin {
            Origin::New => (None, None),
            Origin::Adopted(pid) => (pid, None),
            Origin::Replaced(pid, why) => (None, Some((pid, why))),
        };
        Ok(Publisher {
            leasing_problem,
            label: name.to_string().into(),
            channel,
            me,
            wakers,
            last_sweep: Instant::now(),
            took_over_from,
            replaced,
            previous: None,
            max_lease: options.max_lease,
            leased_since: vec![None; slots],
            dropped: 0,
            revoked: 0,
            stalled: false,
        })
    }

    /// Tells subscribers that the source delivers nothing, and why (say
    /// "ffmpeg exited with status 1: /dev/video0: No such device"; at most
    /// 240 bytes are kept). They see [`Health::Stalled`](crate::Health) at
    /// once, and the reason through
    /// [`Subscriber::stall_reason`](crate::Subscriber::stall_reason) and
    /// `shmcast info`. The next published frame clears it, as does
    /// [`clear_stall`](Publisher::clear_stall).
    pub fn report_stall(&mut self, reason: &str) {
        self.channel.source_status().set(Some(reason));
        self.stalled = true;
    }

    /// Withdraws a [`report_stall`](Publisher::report_stall).
    pub fn clear_stall(&mut self) {
        if self.stalled {
            self.channel.source_status().set(None);
            self.stalled = false;
        }
    }

    /// The PID of the dead publisher this one took over from in place, if
    /// any.
    pub fn took_over_from(&self) -> Option<u32> {
        self.took_over_from
    }

    /// The PID of a dead publisher whose channel of this name was removed
    /// and created anew, and why (its settings differed from ours).
    pub fn replaced(&self) -> Option<(u32, &str)> {
        self.replaced
            .as_ref()
            .map(|(pid, why)| (*pid, why.as_str()))
    }

    /// The largest frame, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.channel.geometry.max_frame_len
    }

    /// The most bytes of metadata a frame can carry (0: none; see
    /// [`ChannelOptions::max_metadata`]).
    pub fn max_metadata_len(&self) -> usize {
        self.channel.geometry.max_metadata_len
    }

    /// The number of slots.
    pub fn slots(&self) -> u32 {
        self.channel.geometry.slots
    }

    /// The number of the last frame published (0: none yet).
    pub fn last_frame_number(&self) -> u64 {
        self.channel.words().latest_number()
    }

    /// How many leasing subscribers are registered (live or not yet
    /// reclaimed). Read-only subscribers are invisible to the publisher.
    pub fn subscriber_count(&self) -> usize {
        self.channel.words().subscriber_count()
    }

    /// Whether leasing is available: the lease table exists and is ours.
    /// Without it, subscribers can still read (copies and validated reads
    /// in place), but none can lease.
    pub fn leasing_available(&self) -> bool {
        self.channel.leases.is_some()
    }

    /// Why leasing is not available, when it is not: the lease table's
    /// name held by another user (named), or its own error.
    pub fn leasing_problem(&self) -> Option<&str> {
        self.leasing_problem.as_deref()
    }

    /// Frames dropped because subscribers leased every free slot.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Leases the publisher stopped honouring because they kept it from its
    /// last free slot for longer than `max_lease`.
    pub fn revoked_leases(&self) -> u64 {
        self.revoked
    }

    /// Whether a process truncated the lease table (it then reads as
    /// empty: leases are no longer honoured, frames go on).
    pub fn lease_table_truncated(&self) -> bool {
        self.channel
            .leases
            .as_ref()
            .is_some_and(Segment::was_truncated)
    }

    /// Publishes `payload` as the next frame; returns its number.
    ///
    /// # Errors
    /// [`ErrorKind::TooLarge`], [`ErrorKind::AllSlotsLeased`] (the
    /// frame is dropped, never waited for), [`ErrorKind::WriterLost`],
    /// [`ErrorKind::Truncated`]. None of them allocates.
    pub fn publish(&mut self, meta: &FrameMeta, payload: &[u8]) -> Result<u64, Error> {
        self.publish_with_metadata(meta, payload, &[])
    }

    /// As [`publish`](Publisher::publish), with `metadata` as the frame's
    /// metadata (see [`ChannelOptions::max_metadata`]).
    ///
    /// # Errors
    /// As [`publish`](Publisher::publish), and [`ErrorKind::TooLarge`] when
    /// `metadata` is longer than the channel allows (nothing is published).
    pub fn publish_with_metadata(
        &mut self,
        meta: &FrameMeta,
        payload: &[u8],
        metadata: &[u8],
    ) -> Result<u64, Error> {
        self.check_metadata(metadata.len())?;
        let slot = self.begin(payload.len())?;
        // SAFETY: `begin` gave us `slot`, odd and unleased (no reader uses it
        // in place; copies of it are discarded); it holds max_frame_len >=
        // payload.len() bytes in the mapping, disjoint from the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.channel.payload(slot),
                payload.len(),
            );
        }
        // SAFETY: the metadata area after the payload holds
        // max_metadata_len >= metadata.len() bytes of the same slot,
        // disjoint from the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                metadata.as_ptr(),
                self.channel.metadata(slot),
                metadata.len(),
            );
        }
        // A truncation under the copies was caught by the SIGBUS guard, and
        // the bytes went nowhere: say so now, not at the next frame.
        if let Err(e) = self.truncated() {
            self.channel.words().abort(slot);
            return Err(e);
        }
        Ok(self.finish(slot, meta, payload.len(), metadata.len(), 0))
    }

    fn check_metadata(&self, len: usize) -> Result<(), Error> {
        if len > self.max_metadata_len() {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "channel {}: {len} bytes of metadata; the channel takes at most {} (its max_metadata, set when it was made)",
                    self.label,
                    self.max_metadata_len()
                ),
            ));
        }
        Ok(())
    }

    /// Lends the caller `len` bytes of a free slot to fill in place (a
    /// capture can land straight in shared memory). [`Loan::commit`]
    /// publishes it; dropping the loan publishes nothing.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, Error> {
        let slot = self.begin(len)?;
        Ok(Loan::new(self, slot, len))
    }

    /// As [`loan`](Publisher::loan), but the loan owns the publisher (and
    /// gives it back when committed or abandoned): for language bindings,
    /// whose loan objects live between calls. On failure the publisher
    /// comes back with the error.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    #[allow(clippy::result_large_err)]
    pub fn into_loan(
        mut self: Box<Self>,
        len: usize,
    ) -> Result<OwnedLoan, (Box<Publisher>, Error)> {
        match self.begin(len) {
            Ok(slot) => Ok(Loan::new(self, slot, len)),
            Err(e) => Err((self, e)),
        }
    }

    /// The `len` bytes of slot `slot`'s payload; using them is for a loan of
    /// that slot (from `begin`), with `len <= max_frame_len`.
    fn lent(&self, slot: usize, len: usize) -> *mut [u8] {
        std::ptr::slice_from_raw_parts_mut(self.channel.payload(slot), len)
    }

    fn truncated(&self) -> Result<(), Error> {
        if self.channel.seg.was_truncated() {
            return Err(Error::publish_truncated(&self.label));
        }
        Ok(())
    }

    fn begin(&mut self, len: usize) -> Result<usize, Error> {
        if len > self.max_frame_len() {
            return Err(Error::too_large(&self.label, len, self.max_frame_len()));
        }
        self.truncated()?;
        let words = self.channel.words();
        // A forked child holds its parent's token: the writer role is the
        // parent's, and two writers would break every reader's seqlock.
        if !words.is_writer(self.me) || crate::identity::forked_from(self.me) {
            // A header cut off under us reads as zeros, no writer: that is
            // a truncation, which the read of the word has just recorded.
            self.truncated()?;
            return Err(Error::writer_lost(&self.label, token_pid(words.writer())));
        }
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = Instant::now();
            words.reclaim_dead_readers(self.me, token_is_dead, None);
        }
        let now = Instant::now();
        let (max_lease, leased_since) = (self.max_lease, &mut self.leased_since);
        // The first lease holder met (no list: this is the publish path,
        // which does not allocate).
        let mut first_holder = None;
        // First every lease is honoured, and each leased slot's time under
        // lease noted (from when we first saw it leased; a slot seen free
        // starts again).
        let mut honour_all = |s: usize, holder: Option<u64>| match holder {
            None => {
                leased_since[s] = None;
                false
            }
            Some(token) => {
                leased_since[s].get_or_insert(now);
                first_holder.get_or_insert(token);
                true
            }
        };
        let mut got = words.begin_write(self.previous, &mut honour_all);
        if got.is_err() && words.reclaim_dead_readers(self.me, token_is_dead, None) > 0 {
            got = words.begin_write(self.previous, &mut honour_all);
        }
        // Only with no free slot left, a lease held longer than `max_lease`
        // is revoked. A slot taken from a lease keeps its `leased_since`:
        // while that lease stays, the slot stays revoked (a forged or
        // stopped holder gets one `max_lease`, not one per frame).
        if got.is_err() {
            let mut revoked = false;
            got = words.begin_write(self.previous, |s, holder| {
                let young = leased_since[s].is_some_and(|t| now.duration_since(t) < max_lease);
                revoked = holder.is_some() && !young;
                holder.is_some() && young
            });
            if got.is_ok() && revoked {
                self.revoked += 1;
            }
        }
        match got {
            Ok(slot) => Ok(slot),
            Err(_) => {
                self.dropped += 1;
                words.note_dropped(first_holder.unwrap_or(0));
                Err(Error::all_slots_leased(
                    &self.label,
                    self.slots(),
                    first_holder.map(token_pid),
                ))
            }
        }
    }

    /// Publishes the frame in `slot` as number `at_least` if that is above
    /// the newest (0: the next number).
    fn finish(
        &mut self,
        slot: usize,
        meta: &FrameMeta,
        len: usize,
        metadata_len: usize,
        at_least: u64,
    ) -> u64 {
        let now = now_ns();
        // At most max_metadata_len <= MAX_METADATA_LEN: `set_metadata`.
        let stored = SlotMeta::of_frame(meta, len, metadata_len as u32, at_least, now);
        let words = self.channel.words();
        self.previous = words.latest_slot_index();
        self.wakers.before_publish(words.next_generation());
        let number = words.commit(slot, &stored, now);
        self.wakers.wake(words.generation());
        self.clear_stall();
        // A truncation during the write is reported by the next `begin`.
        number
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if crate::identity::forked_from(self.me) {
            // A forked child's copy: the channel is the parent's.
            return;
        }
        // Names first, role second, ownership last: a publisher taking over
        // now either finds no name (and creates a fresh channel) or finds
        // us still owning it; never a free role on a vanishing name.
        self.channel.seg.remove_name_now();
        if let Some(leases) = self.channel.leases.as_mut() {
            leases.remove_name_now();
        }
        let words = self.channel.words();
        // The wake word goes with the channel's name (a channel that
        // persists keeps it, for its subscribers and its next publisher).
        if !self.channel.seg.is_still_named() {
            self.wakers.remove_name();
        }
        // Wake the waiters, so that they see us gone and follow the name.
        self.wakers.before_publish(words.next_generation());
        words.release_writer(self.me);
        self.wakers.wake_all(words.generation());
        self.channel.seg.release_claim();
        if let Some(leases) = &self.channel.leases {
            leases.release_claim();
        }
    }
}

fn random_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is keyed from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ns());
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// Fills in a new channel's header: geometry, instance, and `me` as its
/// writer.
fn init_header(base: *mut u8, geometry: &Geometry, me: u64, instance: u64) {
    // SAFETY: `base` is the zeroed, writable header page of a new segment
    // that nobody else can open yet; the channel header fits in it after the
    // common header and is atomics only.
    let header = unsafe { &*base.wrapping_add(COMMON_LEN).cast::<ChannelHeader>() };
    geometry.store(header);
    Words::new(header, &[], &[]).start(instance, me, now_ns());
}

fn channel_of(seg: Segment) -> Result<Channel, Error> {
    let name = seg.name().to_string();
    Channel::new(seg).map_err(|what| corrupt(&name, what))
}

/// A channel whose geometry is impossible.
fn corrupt(name: &str, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("cannot open segment {name}: its header is corrupt ({what}); remove it and create it again"),
    )
    .on(name)
}

/// Another live process publishes on channel `name`.
fn writer_alive(name: impl std::fmt::Display, pid: u32) -> Error {
    Error::new(
        ErrorKind::WriterAlive,
        format!("channel {name} already has a live publisher, pid {pid}; stop it first or use another name"),
    )
    .on(name)
    .with_pid(pid)
}

/// Creates channel `name`, or takes it over from a dead publisher (see
/// `Segment::create_or_adopt` and, for what is taken over, [`judge`]).
fn create_or_take_over(
    name: &Name,
    options: &ChannelOptions,
    geometry: &Geometry,
    me: u64,
    instance: u64,
) -> Result<(Channel, Origin), Error> {
    let made = Segment::create_or_adopt(
        name,
        Kind::Channel,
        geometry.data_len,
        &options.channel_create(),
        |base| init_header(base, geometry, me, instance),
        |seg, owned| judge(seg, owned, options, me),
    );
    match made {
        Ok((seg, origin)) => Ok((channel_of(seg)?, origin)),
        Err(AdoptError::Failed(e)) => Err(e),
        Err(AdoptError::Held { pid }) => Err(writer_alive(name, pid)),
        Err(AdoptError::Busy) => Err(Error::new(
            ErrorKind::Busy,
            format!("cannot create channel {name}: other processes keep removing or replacing it; try again"),
        )
        .on(name)),
        Err(AdoptError::Refused(e)) => Err(e),
    }
}

/// What a publisher makes of an existing channel of its user whose owner
/// is dead (and whose owner word it won): a live writer is reported
/// first, whatever the settings; a channel with other settings is
/// replaced (Linux) or refused (Windows, where subscribers keep the
/// section alive); otherwise the writer role is taken and the slots
/// repaired, and the channel is adopted in place.
fn judge(
    seg: &Segment,
    owned: &crate::os::Ownership,
    options: &ChannelOptions,
    me: u64,
) -> Result<Judged, Error> {
    let name = || seg.name().to_string();
    let g = Geometry::load(Channel::header_of(seg), seg.layout().data_len)
        .map_err(|what| corrupt(&name(), what))?;
    // SAFETY: `g` was loaded from `seg` just above; no lease table.
    let words = unsafe { Channel::words_of(seg, &g, None) };
    let writer = words.writer();
    // Our own token: another publisher of this process has it.
    if writer != 0 && (writer == me || !token_is_dead(writer)) {
        return Err(writer_alive(name(), token_pid(writer)));
    }
    let mut differs = Vec::new();
    if g.slots != options.slots {
        differs.push(format!("{} slots, not {}", g.slots, options.slots));
    }
    if g.max_frame_len != options.max_frame_len {
        differs.push(format!(
            "frames of {} bytes, not {}",
            g.max_frame_len, options.max_frame_len
        ));
    }
    if g.max_metadata_len != options.max_metadata_len {
        differs.push(format!(
            "{} bytes of metadata per frame, not {}",
            g.max_metadata_len, options.max_metadata_len
        ));
    }
    let wanted_mode = options.channel_create().mode_bits();
    if let Some(mode) = owned.mode.filter(|&m| m != wanted_mode) {
        differs.push(format!("mode {mode:04o}, not {wanted_mode:04o}"));
    }
    // Windows: the descriptor its first creator gave it, against ours.
    let sddl = options.channel_create().sddl_str().map(str::to_owned);
    if let Some((found, wanted)) = seg.descriptor_differs(sddl.as_deref())? {
        let shown = |d: &str| match d {
            "" => "none (no DACL: everyone may open it)".to_owned(),
            d => format!("{d:?}"),
        };
        differs.push(match &sddl {
            Some(asked) if *asked != wanted => format!(
                "security descriptor {}, not {asked:?} ({})",
                shown(&found),
                shown(&wanted)
            ),
            Some(_) => format!(
                "security descriptor {}, not {}",
                shown(&found),
                shown(&wanted)
            ),
            None => format!(
                "security descriptor {}, not the default {}",
                shown(&found),
                shown(&wanted)
            ),
        });
    }
    if !differs.is_empty() {
        let why = differs.join(", ");
        if cfg!(windows) {
            // A section cannot be removed while subscribers hold it.
            return Err(Error::new(
                ErrorKind::Incompatible,
                format!("channel {} exists with {why}; subscribers still hold it open, which keeps it as it is: stop them, or publish with the same settings", name()),
            )
            .on(name()));
        }
        return Ok(Judged::Replace(why));
    }
    let took_from = words
        .claim_writer(me, token_is_dead)
        .map_err(|live| writer_alive(name(), token_pid(live)))?;
    words.repair(now_ns());
    Ok(Judged::Adopt {
        from: took_from.map(token_pid),
    })
}

/// The channel's lease table: created anew, or a dead publisher's adopted
/// when it is ours and belongs to this channel. `None` (no leasing, frames
/// flow all the same) when the name is held by something we will not use.
fn lease_table(
    channel: &Channel,
    name: &Name,
    options: &ChannelOptions,
) -> Result<Segment, String> {
    let leases_name = name.companion(LEASES);
    let instance = channel.instance();
    let create = || {
        Segment::create(
            leases_name.clone(),
            Kind::Leases,
            LEASES_DATA_LEN,
            &options.lease_create().replace_stale(false),
            |base| {
                // SAFETY: the zeroed, writable header page of a new segment
                // nobody can open yet; the lease header (atomics) fits after
                // the common header.
                let h = unsafe { &*base.wrapping_add(COMMON_LEN).cast::<LeaseHeader>() };
                h.instance.store(instance, Relaxed);
                h.entries.store(MAX_SUBSCRIBERS, Relaxed);
            },
        )
    };
    let held_by = |what: String| match crate::os::other_owner(&leases_name.object_name()) {
        Some(owner) => format!("the name {leases_name} is held by {owner} ({what})"),
        None => what,
    };
    for _ in 0..3 {
        match create() {
            Ok(seg) => return Ok(seg),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.to_string()),
        }
        let seg = match Segment::open(leases_name.clone(), Some(Kind::Leases), true) {
            Ok(seg) => seg,
            // Half made, or broken (truncated, scribbled) but our user's:
            // ours to replace, since we hold its channel. Another user's
            // object under the name is left (and leasing with it).
            Err(_)
                if crate::segment::remove_if_unfinished(&leases_name)
                    || crate::segment::remove_own_object(&leases_name) =>
            {
                continue
            }
            Err(e) => return Err(held_by(e.to_string())),
        };
        // Ours (this user's), and ours to judge: we hold its channel.
        // (Known to be: an owner that cannot be read is not ours.)
        if !matches!(seg.ownership(), Ok(o) if o.mine) {
            return Err(held_by(format!("{leases_name} is not this user's")));
        }
        let Some(claim) = seg.force_claim() else {
            return Err(format!(
                "{leases_name} is being replaced by another process"
            ));
        };
        if channel.check_leases(&seg).is_ok() {
            claim.adopt(options.create.persists());
            return Ok(seg);
        }
        // A table of an earlier channel of this name: replace it.
        claim.remove_name();
    }
    Err(format!("{leases_name} kept changing under us"))
}

/// A slot lent to the caller to fill in place. Dereferences to its `len`
/// bytes; [`commit`](Loan::commit) publishes, dropping discards.
///
/// Generic over how it holds its publisher: borrowed (`Loan<'_>`, from
/// [`Publisher::loan`]) or owned ([`OwnedLoan`], from
/// [`Publisher::into_loan`], for language bindings whose loan objects live
/// between calls; it gives the publisher back when it ends).
///
/// The slot is a `&mut [u8]` because nothing else writes it while the loan
/// lives: only processes of the channel's own user (and root) can map the
/// channel writable, which the OS enforces (on Linux the channel never has
/// group or other write bits, see [`ChannelOptions::create_options`]; on
/// Windows it is the SDDL's to say), and among them only the writer, whose
/// claim passes on only when its holder is dead; leasing readers write the
/// separate lease table. A process of the same user that ignores all of
/// that could as well write this process's own memory.
#[must_use = "a loan publishes nothing unless committed"]
pub struct Loan<'a, P: DerefMut<Target = Publisher> = &'a mut Publisher> {
    /// `None` only once committed or abandoned.
    publisher: Option<P>,
    slot: usize,
    len: usize,
    /// Bytes of metadata written into the slot (`set_metadata`).
    metadata_len: usize,
    borrow: PhantomData<&'a mut Publisher>,
}

impl Loan<'_> {
    /// Publishes the loaned slot as the next frame; returns its number.
    pub fn commit(self, meta: &FrameMeta) -> u64 {
        self.commit_numbered(meta, 0)
    }

    /// Publishes the loaned slot as frame `number` when that is above the
    /// channel's newest and at most 2^48, otherwise as the next frame
    /// (numbers never go back); returns the number used. For bridges and
    /// relays, whose readers should see the source's numbers, gaps and
    /// all, so that a frame is known by one number on both sides.
    pub fn commit_numbered(mut self, meta: &FrameMeta, number: u64) -> u64 {
        let (slot, len, metadata_len) = (self.slot, self.len, self.metadata_len);
        self.take().finish(slot, meta, len, metadata_len, number)
    }
}

/// A loan that owns its publisher (see [`Publisher::into_loan`]):
/// [`commit_returning`](Loan::commit_returning) and
/// [`abandon`](Loan::abandon) give it back. Dropping it abandons the slot
/// and drops the publisher.
pub type OwnedLoan = Loan<'static, Box<Publisher>>;

impl<P: DerefMut<Target = Publisher>> Loan<'_, P> {
    fn new(publisher: P, slot: usize, len: usize) -> Self {
        Loan {
            publisher: Some(publisher),
            slot,
            len,
            metadata_len: 0,
            borrow: PhantomData,
        }
    }

    fn publisher(&self) -> &Publisher {
        self.publisher
            .as_deref()
            .expect("a live loan has its publisher")
    }

    fn take(&mut self) -> P {
        self.publisher
            .take()
            .expect("a live loan has its publisher")
    }

    /// Publishes the loaned slot as the next frame; gives back the
    /// publisher and the frame's number.
    pub fn commit_returning(mut self, meta: &FrameMeta) -> (P, u64) {
        let (slot, len, metadata_len) = (self.slot, self.len, self.metadata_len);
        let mut publisher = self.take();
        let number = publisher.finish(slot, meta, len, metadata_len, 0);
        (publisher, number)
    }

    /// Publishes nothing; gives back the publisher.
    pub fn abandon(mut self) -> P {
        let publisher = self.take();
        publisher.channel.words().abort(self.slot);
        publisher
    }

    /// Shortens the frame to `len` bytes (no-op if not shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes `metadata` the frame's metadata (replacing any set before),
    /// published with it at commit.
    ///
    /// # Errors
    /// [`ErrorKind::TooLarge`] when it is longer than the channel allows
    /// ([`ChannelOptions::max_metadata`]); the frame's metadata is then
    /// left as it was.
    pub fn set_metadata(&mut self, metadata: &[u8]) -> Result<(), Error> {
        let publisher = self.publisher();
        publisher.check_metadata(metadata.len())?;
        let dst = publisher.channel.metadata(self.slot);
        // SAFETY: the slot is ours until commit or drop (see `deref`), and
        // its metadata area holds max_metadata_len >= metadata.len() bytes
        // inside the mapping, disjoint from the caller's slice.
        unsafe { std::ptr::copy_nonoverlapping(metadata.as_ptr(), dst, metadata.len()) };
        self.metadata_len = metadata.len();
        Ok(())
    }
}

impl<P: DerefMut<Target = Publisher>> Deref for Loan<'_, P> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // The slot is ours (odd; leases on it not honoured or absent) until
        // commit or drop, and only we write it (see the type's docs).
        // SAFETY: so nobody else writes these `len` mapped bytes meanwhile.
        unsafe { &*self.publisher().lent(self.slot, self.len) }
    }
}

impl<P: DerefMut<Target = Publisher>> DerefMut for Loan<'_, P> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes this the only borrow;
        // the mapping is writable (publishers open read-write).
        unsafe { &mut *self.publisher().lent(self.slot, self.len) }
    }
}

impl<P: DerefMut<Target = Publisher>> Drop for Loan<'_, P> {
    fn drop(&mut self) {
        if let Some(publisher) = &self.publisher {
            if !crate::identity::forked_from(publisher.me) {
                publisher.channel.words().abort(self.slot);
            }
        }
    }
}

impl<P: DerefMut<Target = Publisher>> std::fmt::Debug for Loan<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("slot", &self.slot)
            .field("len", &self.len)
            .finish()
    }
}
