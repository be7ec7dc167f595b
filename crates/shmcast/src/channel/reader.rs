//! A reader that never gives up: the frame loop every binding shows.
//!
//! A [`Subscriber`] is one process's view of one channel: it needs the
//! channel to exist, and a loop written on it has to decide what a
//! timeout, a gone publisher or a truncated channel mean. Loops people
//! copy get that wrong (they end at the first restart), so the
//! [`Reader`] decides it once:
//!
//! - it needs no channel to start: until the name exists its health is
//!   [`Health::Missing`], and it attaches as soon as a publisher creates
//!   it;
//! - it follows the name through a crash and take-over (numbers go on), a
//!   clean stop and a new start (a new channel: numbers start again) and
//!   a truncation replaced by a new publisher;
//! - a timeout is [`Next::Idle`], not an end, and so is a stall;
//! - health changes come as [`Next::Health`] events, in order with the
//!   frames;
//! - it leases frames in place when the publisher lets this user lease,
//!   and copies them otherwise ([`ReaderOptions::access`] decides instead);
//! - an error ([`Reader::next`]'s `Err`) is one call's: the reader stays
//!   usable, and it never reports the same trouble twice in a row, so a
//!   loop that logs errors and goes on neither spins nor floods its log.
//!
//! It ends when its owner stops calling [`Reader::next`].

use std::mem::discriminant;
use std::time::{Duration, Instant};

use super::format::FrameInfo;
use super::subscriber::{Access, Health, Lease, Subscriber, SubscriberOptions};
use crate::copy::SharedBytes;
use crate::error::{Error, ErrorKind};
use crate::name::{IntoName, Name};

/// The longest a reader sleeps before it looks at the channel's health
/// (and, unattached, for the name) again.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// How to read: which access to ask for, and when a quiet publisher counts
/// as stalled.
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    access: Option<Access>,
    stall_after: Duration,
}

impl Default for ReaderOptions {
    fn default() -> ReaderOptions {
        ReaderOptions {
            access: None,
            stall_after: Duration::from_secs(2),
        }
    }
}

impl ReaderOptions {
    /// Lease when allowed, copy otherwise; stalled after 2 s without a
    /// frame.
    pub fn new() -> ReaderOptions {
        ReaderOptions::default()
    }

    /// Only this access: [`Access::ReadOnly`] copies every frame (and
    /// writes nothing to shared memory); [`Access::Leasing`] leases, and a
    /// channel that refuses leasing is an error rather than a copy.
    pub fn access(mut self, access: Access) -> ReaderOptions {
        self.access = Some(access);
        self
    }

    /// How long a running publisher may publish nothing before its health
    /// is [`Health::Stalled`] (a publisher that says its source is stalled
    /// is so at once).
    pub fn stall_after(mut self, stall_after: Duration) -> ReaderOptions {
        self.stall_after = stall_after;
        self
    }
}

/// What [`Reader::next`] brings.
#[derive(Debug)]
pub enum Next<'a> {
    /// A frame newer than the last one returned.
    Frame(Frame<'a>),
    /// The channel's health changed (the first event of a new reader says
    /// where it starts).
    Health(Health),
    /// Nothing within the timeout: call again.
    Idle,
}

/// A frame from a [`Reader`]: leased in place, or copied into the
/// reader's own buffer. Either way it ends with [`release`](Frame::release)
/// (or when dropped), before the next call to [`Reader::next`].
#[derive(Debug)]
pub enum Frame<'a> {
    /// Leased in place: see [`Lease`] for what its bytes promise.
    Leased(Lease<'a>),
    /// Copied whole (by seqlock, so never torn) into the reader's buffer:
    /// the frame's bytes, then its metadata.
    Copied(FrameInfo, &'a [u8], &'a [u8]),
}

impl Frame<'_> {
    /// The frame's number and metadata.
    pub fn info(&self) -> &FrameInfo {
        match self {
            Frame::Leased(lease) => lease.info(),
            Frame::Copied(info, ..) => info,
        }
    }

    /// The frame's bytes (in shared memory when leased: see
    /// [`SharedBytes`]).
    pub fn bytes(&self) -> SharedBytes<'_> {
        match self {
            Frame::Leased(lease) => lease.bytes(),
            // SAFETY: a slice of our own memory, alive while `self` is.
            Frame::Copied(_, bytes, _) => unsafe { SharedBytes::new(bytes.as_ptr(), bytes.len()) },
        }
    }

    /// The frame's metadata (empty when it has none), under the same
    /// promise as [`bytes`](Frame::bytes).
    pub fn metadata(&self) -> SharedBytes<'_> {
        match self {
            Frame::Leased(lease) => lease.metadata(),
            // SAFETY: a slice of our own memory, alive while `self` is.
            Frame::Copied(_, _, metadata) => unsafe {
                SharedBytes::new(metadata.as_ptr(), metadata.len())
            },
        }
    }

    /// Ends the frame. As [`Lease::release`]: `Err` with
    /// [`ErrorKind::Revoked`] means what was read may be torn. A copy is
    /// always whole.
    ///
    /// # Errors
    /// [`ErrorKind::Revoked`].
    pub fn release(self) -> Result<(), Error> {
        match self {
            Frame::Leased(lease) => lease.release(),
            Frame::Copied(..) => Ok(()),
        }
    }
}

/// Reads the frames of a channel name for as long as it is asked to (see
/// the module docs): before the channel exists, through restarts and
/// stalls, with health changes as events.
///
/// ```no_run
/// use shmcast::{Next, Reader};
/// use std::time::Duration;
///
/// let mut reader = Reader::new("cam")?;
/// loop {
///     match reader.next(Duration::from_secs(1)) {
///         Ok(Next::Frame(frame)) => {
///             let mut pixels = vec![0; frame.bytes().len()];
///             frame.bytes().copy_to(&mut pixels);
///             if frame.release().is_ok() {
///                 // `pixels` is one whole frame
///             }
///         }
///         Ok(Next::Health(health)) => eprintln!("cam: {health:?}"),
///         Ok(Next::Idle) => {} // nothing new within a second: a stop flag could be read here
///         Err(e) => eprintln!("{e}"), // this call's trouble; the reader goes on
///     }
/// }
/// # Ok::<(), shmcast::Error>(())
/// ```
pub struct Reader {
    name: Name,
    options: ReaderOptions,
    sub: Option<Subscriber>,
    /// The attached subscriber copies (read-only), though it may lease.
    copies: bool,
    /// The newest frame number returned from the current channel.
    seen: u64,
    /// The subscriber's `reopened` when `seen` was set: a new channel
    /// starts its numbers again.
    reopened: u64,
    health: Health,
    looked: Option<Instant>,
    /// The kind and text of the last error returned, not returned again
    /// until something else happened.
    last_error: Option<(ErrorKind, String)>,
    buf: Vec<u8>,
    metadata: Vec<u8>,
}

impl Reader {
    /// A reader of `name` with the default [`ReaderOptions`]. Needs no
    /// channel of that name yet.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`].
    pub fn new<N: IntoName>(name: N) -> Result<Reader, Error> {
        Reader::with_options(name, ReaderOptions::new())
    }

    /// A reader of `name` with `options`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`].
    pub fn with_options<N: IntoName>(name: N, options: ReaderOptions) -> Result<Reader, Error> {
        let name = name
            .into_name()
            .map_err(|e| Error::new(ErrorKind::InvalidName, e.to_string()))?;
        Ok(Reader {
            name,
            options,
            sub: None,
            copies: false,
            seen: 0,
            reopened: 0,
            health: Health::Missing,
            looked: None,
            last_error: None,
            buf: Vec::new(),
            metadata: Vec::new(),
        })
    }

    /// The name read.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The health last reported by [`next`](Reader::next) (
    /// [`Health::Missing`] until the channel is found).
    pub fn health(&self) -> Health {
        self.health
    }

    /// Why the publisher's source delivers nothing, when it says so.
    pub fn stall_reason(&self) -> Option<String> {
        self.sub.as_ref().and_then(Subscriber::stall_reason)
    }

    /// The subscriber of the channel the name names now, once found.
    pub fn subscriber(&self) -> Option<&Subscriber> {
        self.sub.as_ref()
    }

    /// Whether frames are leased in place (`false`: copied).
    pub fn leases(&self) -> bool {
        self.sub.is_some() && !self.copies
    }

    /// The next event, waiting up to `timeout` for one: a frame newer than
    /// the last one returned, a change of health, or [`Next::Idle`]. The
    /// frame borrows the reader; release it (or drop it) before calling
    /// again.
    ///
    /// # Errors
    /// What went wrong in this call: a channel that cannot be opened (not
    /// [`ErrorKind::NotFound`]: that is [`Health::Missing`]), a frame that
    /// could not be taken (corrupt, or overrun by the publisher: that
    /// frame is skipped). The reader stays usable, and the same trouble
    /// is not reported again until something else happens.
    pub fn next(&mut self, timeout: Duration) -> Result<Next<'_>, Error> {
        let started = Instant::now();
        loop {
            if self.sub.is_none() {
                self.attach()?;
            }
            if let Some(sub) = &self.sub {
                if sub.reopened() != self.reopened && self.copies && self.options.access.is_none() {
                    // A new channel under the name, followed with the old
                    // one's access: it may let this user lease. Attach anew.
                    self.sub = None;
                    continue;
                }
                if sub.reopened() != self.reopened {
                    (self.reopened, self.seen) = (sub.reopened(), 0);
                }
                let latest = sub.latest_number();
                if latest < self.seen {
                    // Numbers do not go back in one channel; a peer wrote
                    // them. Start counting again rather than wait forever.
                    self.seen = 0;
                }
                let due = self.looked.is_none_or(|at| at.elapsed() >= LOOK_EVERY);
                if latest > self.seen && !due {
                    return self.take(latest);
                }
            }
            let health = self.look();
            if discriminant(&health) != discriminant(&self.health) {
                self.health = health;
                return Ok(Next::Health(health));
            }
            if health == Health::Gone && self.renamed() {
                // The name names a channel the subscriber cannot follow
                // into with its access (one that offers no leasing, say):
                // attach anew, which falls back to copying.
                self.sub = None;
                continue;
            }
            let latest = self.sub.as_ref().map_or(0, Subscriber::latest_number);
            if latest > self.seen {
                return self.take(latest);
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(Next::Idle);
            }
            let slice = left.min(LOOK_EVERY);
            match &mut self.sub {
                Some(sub) => match sub.wait_newer(self.seen, slice) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Timeout => {}
                    // Truncated with no replacement yet, say: a wait that
                    // returns at once; sleep instead of spinning.
                    Err(_) => std::thread::sleep(slice),
                },
                None => std::thread::sleep(slice),
            }
        }
    }

    /// Opens the name when it exists: leasing if allowed (or asked),
    /// read-only otherwise. Quiet while the name is missing.
    fn attach(&mut self) -> Result<(), Error> {
        let leasing = SubscriberOptions::new().access(Access::Leasing);
        let read_only = SubscriberOptions::new();
        let opened = match self.options.access {
            Some(Access::Leasing) => Subscriber::open_with(&self.name, &leasing),
            Some(Access::ReadOnly) => Subscriber::open_with(&self.name, &read_only),
            // Any refusal to lease (no lease table, a full or corrupt one,
            // no write access) leaves copying; a missing channel says so
            // from the read-only open.
            None => Subscriber::open_with(&self.name, &leasing)
                .or_else(|_| Subscriber::open_with(&self.name, &read_only)),
        };
        match opened {
            Ok(sub) => {
                self.copies = sub.access() == Access::ReadOnly;
                (self.seen, self.reopened) = (0, sub.reopened());
                self.sub = Some(sub);
                // Its health comes before its first frame.
                self.looked = None;
                self.last_error = None;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => self.report(e),
        }
    }

    /// Whether the name now names another channel that the subscriber
    /// could not follow into with its access (its own reopening failed, or
    /// took the missing lease table for a missing channel).
    fn renamed(&mut self) -> bool {
        let Some(sub) = self.sub.as_mut() else {
            return false;
        };
        match sub.follow() {
            Ok(true) => false,
            _ => sub.name_moved() && crate::housekeeping::inspect(&self.name).is_ok(),
        }
    }

    /// The channel's health now (and the time of this look).
    fn look(&mut self) -> Health {
        self.looked = Some(Instant::now());
        match &self.sub {
            Some(sub) => sub.health(self.options.stall_after),
            None => Health::Missing,
        }
    }

    /// Takes the latest frame (numbered `latest` or newer) by lease or copy.
    fn take(&mut self, latest: u64) -> Result<Next<'_>, Error> {
        let Some(sub) = self.sub.as_mut() else {
            return Ok(Next::Idle);
        };
        // A frame the caller detached and still holds (a binding's lease
        // object kept alive) keeps this subscriber from leasing: copy.
        let taken = if self.copies || sub.detached_lease_held() {
            if self.buf.len() < sub.max_frame_len() {
                self.buf.resize(sub.max_frame_len(), 0);
            }
            sub.read_latest_with_metadata(&mut self.buf, &mut self.metadata)
                .map(|got| {
                    got.map(|info| Frame::Copied(info, &self.buf[..info.len], &self.metadata))
                })
        } else {
            sub.lease_latest().map(|got| got.map(Frame::Leased))
        };
        match taken {
            Ok(Some(frame)) => {
                self.seen = frame.info().number;
                self.last_error = None;
                Ok(Next::Frame(frame))
            }
            // `latest` names a frame no slot holds (a peer wrote it):
            // skipped like a frame that cannot be taken, not retried at once.
            Ok(None) => {
                self.seen = latest;
                Ok(Next::Idle)
            }
            Err(e) => {
                if e.kind() == ErrorKind::NotLeasing {
                    // Our lease-table entry was given away (idle too long
                    // in a full table): copy from now on.
                    self.copies = true;
                }
                // That frame is skipped: the next call waits for a newer
                // one, so a peer that spoils every frame costs one try
                // per frame, not a spinning loop.
                self.seen = latest;
                Reader::report_into(&mut self.last_error, e).map(|()| Next::Idle)
            }
        }
    }

    fn report(&mut self, e: Error) -> Result<(), Error> {
        Reader::report_into(&mut self.last_error, e)
    }

    /// `Err(e)` unless `e` repeats the last error returned.
    fn report_into(last: &mut Option<(ErrorKind, String)>, e: Error) -> Result<(), Error> {
        let this = (e.kind(), e.to_string());
        if last.as_ref() == Some(&this) {
            return Ok(());
        }
        *last = Some(this);
        Err(e)
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("name", &self.name)
            .field("health", &self.health)
            .field("leases", &self.leases())
            .field("seen", &self.seen)
            .finish()
    }
}
