//! The writing side of a channel.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::layout::{ChannelHeader, Geometry, SlotMeta};
use super::{now_ns, Channel, FrameMeta, DEFAULT_SLOTS};
use crate::error::{CreateError, OpenError, PublishError, PublisherError};
use crate::header::{Kind, COMMON_LEN};
use crate::identity::{token_liveness, token_pid, Liveness, ProcessId};
use crate::name::IntoName;
use crate::os::Wakers;
use crate::segment::{CreateOptions, Segment};
use crate::sync::Ordering::Relaxed;

/// How often the publisher sweeps the reader table for dead subscribers
/// even when it has slots to spare.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How to create a channel.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    max_frame_len: usize,
    slots: u32,
    create: CreateOptions,
}

impl ChannelOptions {
    /// Frames of up to `max_frame_len` bytes, [`DEFAULT_SLOTS`] slots.
    pub fn new(max_frame_len: usize) -> ChannelOptions {
        ChannelOptions {
            max_frame_len,
            slots: DEFAULT_SLOTS,
            create: CreateOptions::new(),
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

    /// Namespace, permissions and lifetime of the segment. Subscribers write
    /// their leases into the channel, so they need read-write access (Linux
    /// mode 0660/0666, or an SDDL granting GR|GW).
    pub fn create_options(mut self, options: CreateOptions) -> ChannelOptions {
        self.create = options;
        self
    }
}

/// The one process that publishes frames on a channel.
///
/// Created with [`Publisher::create`]; if a channel of that name exists and
/// its publisher is dead, the new publisher takes it over (subscribers keep
/// reading, frame numbers go on); if that publisher lives, creation fails
/// naming its pid.
pub struct Publisher {
    channel: Channel,
    me: u64,
    wakers: Wakers,
    last_sweep: Instant,
    took_over_from: Option<u32>,
    /// The slot that was latest before our last commit: reused first.
    previous: Option<usize>,
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
    pub fn create<N: IntoName>(name: N, max_frame_len: usize) -> Result<Publisher, PublisherError> {
        Publisher::create_with(name, &ChannelOptions::new(max_frame_len))
    }

    /// Creates (or takes over) channel `name`.
    ///
    /// # Errors
    /// [`PublisherError::WriterAlive`] when another live process publishes
    /// on it; [`PublisherError::Incompatible`] when an existing channel's
    /// slots are smaller than `max_frame_len`; [`PublisherError::Geometry`]
    /// for an impossible slot count or size; create and open errors.
    pub fn create_with<N: IntoName>(
        name: N,
        options: &ChannelOptions,
    ) -> Result<Publisher, PublisherError> {
        let name = name.into_name()?;
        let geometry = Geometry::new(options.slots, options.max_frame_len).map_err(|what| {
            PublisherError::Geometry {
                name: name.to_string(),
                what,
            }
        })?;
        let me = ProcessId::current().token();
        let (channel, took_over_from) = create_or_take_over(&name, options, &geometry, me)?;
        let wakers = Wakers::new(
            &name.object_name(),
            name.namespace(),
            channel.geometry.readers as usize,
            options.create.sddl_str(),
        );
        Ok(Publisher {
            channel,
            me,
            wakers,
            last_sweep: Instant::now(),
            took_over_from,
            previous: None,
        })
    }

    /// The PID of the dead publisher this one took over from, if any.
    pub fn took_over_from(&self) -> Option<u32> {
        self.took_over_from
    }

    /// The largest frame, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.channel.geometry.max_frame_len
    }

    /// The number of slots.
    pub fn slots(&self) -> u32 {
        self.channel.geometry.slots
    }

    /// The number of the last frame published (0: none yet).
    pub fn last_frame_number(&self) -> u64 {
        self.channel.words().latest_number()
    }

    /// How many subscribers are registered (live or not yet reclaimed).
    pub fn subscriber_count(&self) -> usize {
        self.channel.words().subscriber_count()
    }

    /// Publishes `payload` as the next frame; returns its number.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`], [`PublishError::AllSlotsLeased`] (the
    /// frame is dropped, never waited for), [`PublishError::WriterLost`].
    pub fn publish(&mut self, meta: &FrameMeta, payload: &[u8]) -> Result<u64, PublishError> {
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
        Ok(self.finish(slot, meta, payload.len()))
    }

    /// Lends the caller `len` bytes of a free slot to fill in place (a
    /// capture can land straight in shared memory). [`Loan::commit`]
    /// publishes it; dropping the loan publishes nothing.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, PublishError> {
        let slot = self.begin(len)?;
        Ok(Loan {
            publisher: self,
            slot,
            len,
            committed: false,
        })
    }

    fn begin(&mut self, len: usize) -> Result<usize, PublishError> {
        let name = || self.channel.name();
        if len > self.max_frame_len() {
            return Err(PublishError::TooLarge {
                name: name(),
                len,
                max: self.max_frame_len(),
            });
        }
        let words = self.channel.words();
        if !words.is_writer(self.me) {
            return Err(PublishError::WriterLost {
                name: name(),
                pid: token_pid(words.header.writer.load(Relaxed)),
            });
        }
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = Instant::now();
            words.reclaim_dead_readers(self.me, is_dead);
        }
        words
            .begin_write(self.previous)
            .or_else(|_| {
                // Every free slot is leased: perhaps by the dead.
                if words.reclaim_dead_readers(self.me, is_dead) > 0 {
                    words.begin_write(self.previous)
                } else {
                    Err(super::protocol::AllLeased)
                }
            })
            .map_err(|_| PublishError::AllSlotsLeased {
                name: name(),
                slots: self.slots(),
            })
    }

    fn finish(&mut self, slot: usize, meta: &FrameMeta, len: usize) -> u64 {
        let now = now_ns();
        let stored = SlotMeta {
            number: 0,
            timestamp_ns: if meta.timestamp_ns == 0 {
                now
            } else {
                meta.timestamp_ns
            },
            len: len as u64,
            width: meta.width,
            height: meta.height,
            format: meta.format.code(),
            stride: meta.stride,
        };
        let words = self.channel.words();
        self.previous = words.latest_slot_index();
        let number = words.commit(slot, &stored);
        words.header.last_publish_ns.store(now, Relaxed);
        if words.has_waiters() {
            self.wakers
                .wake(words.generation(), words.waiting_entries());
        }
        number
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Under the name lock, name first, role second: a publisher taking
        // over now either finds no name (and creates a fresh channel) or
        // finds us still writing; never a free role on a vanishing name.
        self.channel.seg.lock_name();
        self.channel.seg.remove_name_now();
        self.channel.words().release_writer(self.me);
        self.channel.seg.unlock_name();
    }
}

/// Fills in a new channel's header: geometry, and `me` as its writer.
fn init_header(base: *mut u8, geometry: &Geometry, me: u64) {
    // SAFETY: `base` is the zeroed, writable header page of a new segment
    // that nobody else can open yet; the channel header fits in it after the
    // common header and is atomics only.
    let header = unsafe { &*base.add(COMMON_LEN).cast::<ChannelHeader>() };
    geometry.store(header);
    header.writer.store(me, Relaxed);
    header.last_publish_ns.store(now_ns(), Relaxed);
}

fn is_dead(token: u64) -> bool {
    token_liveness(token) == Liveness::Dead
}

fn channel_of(seg: Segment) -> Result<Channel, PublisherError> {
    let name = seg.name().to_string();
    Channel::new(seg).map_err(|what| PublisherError::Open(OpenError::Corrupt { name, what }))
}

/// Creates channel `name`, or takes it over from a dead publisher. The name
/// can change under us (a publisher exiting removes it; a creator may have
/// died before finishing its header), so this looks again a few times.
fn create_or_take_over(
    name: &crate::Name,
    options: &ChannelOptions,
    geometry: &Geometry,
    me: u64,
) -> Result<(Channel, Option<u32>), PublisherError> {
    let mut attempts = 3;
    loop {
        attempts -= 1;
        let created = Segment::create(
            name.clone(),
            Kind::Channel,
            geometry.data_len,
            &options.create.clone().replace_stale(false),
            |base| init_header(base, geometry, me),
        );
        let outcome = match created {
            Ok(seg) => return Ok((channel_of(seg)?, None)),
            Err(CreateError::AlreadyExists { .. }) => take_over(name.clone(), options, me),
            Err(e) => return Err(e.into()),
        };
        match outcome {
            // Gone between our create and our open: create it.
            Err(PublisherError::Open(OpenError::NotFound { .. })) if attempts > 0 => {}
            // Left without a header by a creator that died: clear it away.
            Err(PublisherError::Open(OpenError::Uninitialized { .. }))
                if attempts > 0 && crate::segment::remove_if_unfinished(name) => {}
            other => return other,
        }
    }
}

/// Opens the existing channel `name` and takes the writer role from a dead
/// publisher (or from none). Judging the old publisher, claiming and
/// adopting all happen under the name lock, so `clean` or an exiting
/// publisher cannot remove the name in between; a name that no longer
/// names the segment we opened is reported as `NotFound`.
fn take_over(
    name: crate::Name,
    options: &ChannelOptions,
    me: u64,
) -> Result<(Channel, Option<u32>), PublisherError> {
    let mut channel = channel_of(Segment::open(name.clone(), Some(Kind::Channel), true)?)?;
    channel.seg.lock_name();
    let claimed = claim(&mut channel, &name, options, me);
    channel.seg.unlock_name();
    claimed.map(|previous| (channel, previous))
}

fn claim(
    channel: &mut Channel,
    name: &crate::Name,
    options: &ChannelOptions,
    me: u64,
) -> Result<Option<u32>, PublisherError> {
    if !channel.seg.is_still_named() {
        return Err(PublisherError::Open(OpenError::NotFound {
            name: name.to_string(),
        }));
    }
    let g = channel.geometry;
    // A live publisher is the first thing to report, whatever the geometry.
    let current = channel.words().header.writer.load(Relaxed);
    if current != 0 && current != me && !is_dead(current) {
        return Err(PublisherError::WriterAlive {
            name: name.to_string(),
            pid: token_pid(current),
        });
    }
    if g.max_frame_len < options.max_frame_len {
        return Err(PublisherError::Incompatible {
            name: name.to_string(),
            what: format!(
                "{} slots of {} bytes, smaller than the {} bytes asked for",
                g.slots, g.max_frame_len, options.max_frame_len
            ),
        });
    }
    let words = channel.words();
    let previous = words
        .claim_writer(me, is_dead)
        .map_err(|live| PublisherError::WriterAlive {
            name: name.to_string(),
            pid: token_pid(live),
        })?;
    words.repair();
    words.reclaim_dead_readers(me, is_dead);
    words.header.last_publish_ns.store(now_ns(), Relaxed);
    // Only a successful claim makes the segment ours: until then, dropping
    // it (on any error above) leaves the live channel's name alone.
    channel.seg.adopt(options.create.persists());
    Ok(previous.map(token_pid))
}

/// A slot lent to the caller to fill in place. Dereferences to its `len`
/// bytes; [`commit`](Loan::commit) publishes, dropping discards.
pub struct Loan<'a> {
    publisher: &'a mut Publisher,
    slot: usize,
    len: usize,
    committed: bool,
}

impl Loan<'_> {
    /// Publishes the loaned slot as the next frame; returns its number.
    pub fn commit(mut self, meta: &FrameMeta) -> u64 {
        self.committed = true;
        self.publisher.finish(self.slot, meta, self.len)
    }

    /// Shortens the frame to `len` bytes (no-op if not shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is ours (odd, unleased) until commit or drop; its
        // payload has at least `len` bytes inside the mapping.
        unsafe { std::slice::from_raw_parts(self.publisher.channel.payload(self.slot), self.len) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes this the only borrow;
        // the mapping is writable (publishers open read-write).
        unsafe {
            std::slice::from_raw_parts_mut(self.publisher.channel.payload(self.slot), self.len)
        }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.publisher.channel.words().abort(self.slot);
        }
    }
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("slot", &self.slot)
            .field("len", &self.len)
            .finish()
    }
}
