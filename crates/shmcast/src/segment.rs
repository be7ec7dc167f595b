//! Segments: named mappings with a validated header.
//!
//! A segment is what the OS layer maps plus what the [header](crate::header)
//! says about it. Regions and channels are segments of their own kind.
//!
//! **Lifetime.** On Linux a segment's name lives in `/dev/shm` until it is
//! unlinked: the creator unlinks it when dropped unless created with
//! [`CreateOptions::persist`], and processes that still map it keep their
//! memory until they unmap. A creator that crashes leaves its segment behind;
//! [`clean`] removes those. On Windows a section lives while any process
//! holds a handle and vanishes with the last one, so nothing is ever left
//! behind and `persist` has no effect.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::copy::copy_from_shared;
use crate::error::{Error, ErrorKind};
use crate::header::{self, CommonHeader, Kind, Layout, Problem, COMMON_LEN, HEADER_LEN};
use crate::identity::{token_liveness, token_pid, Liveness, ProcessId};
use crate::name::{Name, Namespace};
use crate::os::{self, CreateSpec, Mapping, OsError, OsErrorKind};

/// How long `open` waits for a segment that exists but whose creator has not
/// finished writing its header yet.
const INIT_WAIT: Duration = Duration::from_millis(500);

/// An object under our prefix older than this and still without a header is
/// taken to be left by a creator that died creating it.
const STALE_INIT_AGE: Duration = Duration::from_secs(10);

/// How to create a segment: namespace, permissions, lifetime.
///
/// ```
/// use shmcast::CreateOptions;
/// let opts = CreateOptions::new()
///     .mode(0o640) // Linux: owner read-write, group read
///     .sddl("D:(A;;GA;;;SY)(A;;GR;;;IU)") // Windows: SYSTEM all, users read
///     .replace_stale(true);
/// ```
#[derive(Clone, Debug)]
pub struct CreateOptions {
    namespace: Option<Namespace>,
    mode: u32,
    sddl: Option<String>,
    persist: bool,
    replace_stale: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            namespace: None,
            mode: 0o600,
            sddl: None,
            persist: false,
            replace_stale: false,
        }
    }
}

impl CreateOptions {
    /// The defaults: the name's own namespace, mode 0600, no security
    /// descriptor, removed when the creator drops it, no take-over.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the segment in this namespace, whatever the name says (Windows).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// Unix permission bits of the `/dev/shm` object (Linux; default 0600,
    /// exactly, whatever the umask). Ignored on Windows: see [`sddl`].
    ///
    /// [`sddl`]: CreateOptions::sddl
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o7777;
        self
    }

    /// A security descriptor for the section, in SDDL (Windows). Without
    /// one, Windows applies the creator's default DACL, which a service's
    /// desktop users cannot open. Ignored on Linux: see [`mode`].
    ///
    /// [`mode`]: CreateOptions::mode
    pub fn sddl(mut self, sddl: &str) -> Self {
        self.sddl = Some(sddl.to_owned());
        self
    }

    /// Keeps the segment's name after the creator drops it (Linux; a
    /// Windows section always goes with its last handle).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    pub(crate) fn namespace_override(&self) -> Option<Namespace> {
        self.namespace
    }

    pub(crate) fn mode_bits(&self) -> u32 {
        self.mode
    }

    pub(crate) fn sddl_str(&self) -> Option<&str> {
        self.sddl.as_deref()
    }

    pub(crate) fn persists(&self) -> bool {
        self.persist
    }

    /// When the name is taken by a segment whose creator is dead, removes it
    /// and creates a new one instead of failing (Linux; on Windows such a
    /// section exists only while someone still holds it open).
    pub fn replace_stale(mut self, replace: bool) -> Self {
        self.replace_stale = replace;
        self
    }
}

/// A mapped segment with a valid header.
pub(crate) struct Segment {
    name: Name,
    map: Mapping,
    layout: Layout,
    writable: bool,
    /// Whether dropping it removes the name (its creator's, or its
    /// adopter's, unless they asked it to persist).
    remove_on_drop: AtomicBool,
    /// The process that mapped it (a forked child inherits the mapping).
    mapped_by: u32,
}

impl Segment {
    /// Creates a segment of `kind` with `data_len` bytes after the header.
    /// `init` fills in the kind's part of the header page (the page is
    /// zeroed, and nobody can open the segment) before the magic is written.
    pub(crate) fn create(
        name: Name,
        kind: Kind,
        data_len: usize,
        opts: &CreateOptions,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment, Error> {
        let name = match opts.namespace {
            Some(ns) => name.in_namespace(ns),
            None => name,
        };
        let max = isize::MAX as usize - HEADER_LEN;
        if data_len == 0 || data_len > max {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot create segment {name}: a size of {data_len} bytes is not possible; ask for 1 byte to {max} bytes"),
            )
            .on(&name));
        }
        let total = HEADER_LEN + data_len;
        let me = ProcessId::current();
        let spec = CreateSpec {
            namespace: name.namespace(),
            mode: opts.mode,
            sddl: opts.sddl.as_deref(),
            owner: me.token(),
            owner_offset: header::OWNER_OFFSET,
        };
        let object = name.object_name();
        let map = match Mapping::create(&object, total, &spec) {
            Ok(map) => map,
            Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => {
                // Only this user's: a stale object of another user's is
                // refused, as a take-over is (root could remove it).
                let mine = opts
                    .replace_stale
                    .then(|| {
                        Mapping::open(&object, name.namespace(), false)
                            .ok()
                            .map(|map| ours(&name, map.ownership()))
                    })
                    .flatten();
                if let Some(Err(theirs)) = mine {
                    return Err(theirs);
                }
                let replaced = matches!(mine, Some(Ok(_)))
                    && matches!(
                        remove_if_stale(&name),
                        Verdict::RemovedDead(..)
                            | Verdict::RemovedUnfinished
                            | Verdict::RemovedTruncated(_)
                    );
                if !replaced {
                    // Judged after any replacement attempt, so the error
                    // names whoever holds the name now.
                    return Err(already_exists(&name));
                }
                Mapping::create(&object, total, &spec)
                    .map_err(|e| create_error(&name, total, opts, e))?
            }
            Err(e) => return Err(create_error(&name, total, opts, e)),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let base = map.as_ptr();
        // SAFETY: the mapping is at least HEADER_LEN bytes, page-aligned and
        // writable, and only we know it: the magic is still zero, so every
        // opener waits or fails until the release store below.
        unsafe {
            base.cast::<CommonHeader>()
                .write(CommonHeader::new(kind, data_len, me, now_ms))
        };
        init(base);
        // SAFETY: as above; the header was just written in place.
        let header = unsafe { &*base.cast::<CommonHeader>() };
        header.magic.store(header::magic_word(), Ordering::Release);
        Ok(Segment {
            layout: Layout {
                kind,
                owner: me.token(),
                data_len,
                total_len: total,
                creator: me,
                created_unix_ms: now_ms,
            },
            name,
            map,
            writable: true,
            remove_on_drop: AtomicBool::new(!opts.persist),
            mapped_by: os::current_pid(),
        })
    }

    /// Creates segment `name`, or takes over the one there from a dead
    /// owner: the one home of segment ownership for publishers.
    ///
    /// An existing segment is taken only if it is a regular object of this
    /// user and its owner word is won (so `clean` and other publishers
    /// cannot act on the same judgement); then `judge` decides, given the
    /// segment and who owns the OS object: adopt it in place, have it
    /// removed and created anew, or refuse (the claim is given back). The
    /// name can change under us (an owner exiting removes it, a creator
    /// may have died before writing its header), so this looks again a
    /// few times before giving up with [`AdoptError::Busy`].
    ///
    /// Calls in one process take turns: the owner word holds a process's
    /// token, so two threads of one process cannot tell each other's claim
    /// from their own, and one giving back a refused claim would clear the
    /// other's adoption.
    pub(crate) fn create_or_adopt<E>(
        name: &Name,
        kind: Kind,
        data_len: usize,
        opts: &CreateOptions,
        init: impl Fn(*mut u8),
        mut judge: impl FnMut(&Segment, &os::Ownership) -> Result<Judged, E>,
    ) -> Result<(Segment, Origin), AdoptError<E>> {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let create_opts = opts.clone().replace_stale(false);
        let mut replaced = None;
        for attempt in (0..5).rev() {
            let last = attempt == 0;
            match Segment::create(name.clone(), kind, data_len, &create_opts, &init) {
                Ok(seg) => {
                    let origin = match replaced.take() {
                        Some((pid, why)) => Origin::Replaced(pid, why),
                        None => Origin::New,
                    };
                    return Ok((seg, origin));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(AdoptError::Failed(e)),
            }
            let seg = match Segment::open(name.clone(), Some(kind), true) {
                Ok(seg) => seg,
                // Gone between our create and our open: create it.
                Err(e) if e.kind() == ErrorKind::NotFound && !last => continue,
                // Left without a header by a creator that died: clear it.
                Err(e)
                    if (e.kind() == ErrorKind::Uninitialized
                        && !last
                        && remove_if_unfinished(name))
                        || (e.kind() == ErrorKind::Truncated
                            && !last
                            && remove_if_truncated(name).is_some()) =>
                {
                    continue
                }
                Err(e) => return Err(AdoptError::Failed(held_by_other(name, e))),
            };
            let owned = ours(name, seg.ownership()).map_err(AdoptError::Failed)?;
            let claim = match seg.claim(0) {
                Claim::Won(claim) => claim,
                Claim::Held { removing: true, .. } => {
                    // Another process is removing it: give it a moment.
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Claim::Held { pid, .. } => return Err(AdoptError::Held { pid }),
                Claim::NotWritable => unreachable!("opened read-write"),
            };
            if !seg.is_still_named() {
                // Replaced under us: look again in a moment.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match judge(&seg, &owned).map_err(AdoptError::Refused)? {
                Judged::Adopt { from } => {
                    let from = from.or(claim.previous_pid());
                    claim.adopt(opts.persist);
                    return Ok((seg, Origin::Adopted(from)));
                }
                Judged::Replace(why) => {
                    let pid = claim.previous_pid().unwrap_or(0);
                    claim.remove_name();
                    replaced = Some((pid, why));
                }
            }
        }
        Err(AdoptError::Busy)
    }

    /// Opens an existing segment, expecting `kind` (any kind with `None`).
    pub(crate) fn open(
        name: Name,
        expected: Option<Kind>,
        writable: bool,
    ) -> Result<Segment, Error> {
        let object = name.object_name();
        let started = Instant::now();
        loop {
            let map = Mapping::open(&object, name.namespace(), writable)
                .map_err(|e| open_error(&name, writable, e))?;
            match read_layout(&map, expected) {
                Ok(layout) => {
                    return Ok(Segment {
                        name,
                        map,
                        layout,
                        writable,
                        remove_on_drop: AtomicBool::new(false),
                        mapped_by: os::current_pid(),
                    })
                }
                // The creator may still be writing the header: give it a
                // moment, from a fresh mapping (its size may change too).
                Err(Problem::Uninitialized { owner })
                    if started.elapsed() < INIT_WAIT
                        && (owner == 0 || token_liveness(owner) == Liveness::Alive) =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(problem) => return Err(problem_error(&name, expected, problem)),
            }
        }
    }

    /// The owner word (see the [header](crate::header) docs).
    fn owner_word(&self) -> &AtomicU64 {
        header_word(&self.map, header::OWNER_OFFSET).expect("a valid segment maps its header")
    }

    /// Makes `me` the owner of this segment if its owner is dead (or none),
    /// by compare-and-swap of `me | mark` into the owner word: of all the
    /// processes that judge the same dead owner, exactly one wins. `mark`
    /// is 0 to take the segment over, [`REMOVING`] to remove it. A won
    /// claim is an [`OwnerClaim`]: adopt the segment, remove its name, or
    /// drop the claim to give the owner word back.
    ///
    /// Needs a writable mapping: a process that may only read the segment
    /// can neither take it nor keep it from its owner.
    pub(crate) fn claim(&self, mark: u64) -> Claim<'_> {
        if !self.writable {
            return Claim::NotWritable;
        }
        let me = ProcessId::current().token();
        let word = self.owner_word();
        loop {
            let current = word.load(Ordering::SeqCst);
            let holder = current & !REMOVING;
            if holder == me {
                // Ours already: ours to keep, never ours to remove as stale.
                return if mark == 0 {
                    Claim::Won(OwnerClaim::new(self, current, false))
                } else {
                    Claim::Held {
                        pid: token_pid(me),
                        removing: false,
                    }
                };
            }
            if current != 0 && token_liveness(holder) == Liveness::Alive {
                return Claim::Held {
                    pid: token_pid(holder),
                    removing: current & REMOVING != 0,
                };
            }
            if word
                .compare_exchange(current, me | mark, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Claim::Won(OwnerClaim::new(self, current, true));
            }
        }
    }

    /// Makes this process the owner whoever the owner word names: for a
    /// publisher's own lease table, whose owner word the subscribers that
    /// may write the table could have set to anything (the table is judged
    /// by its channel, which the publisher holds). `None` when opened
    /// read-only.
    pub(crate) fn force_claim(&self) -> Option<OwnerClaim<'_>> {
        self.writable.then(|| {
            let previous = self
                .owner_word()
                .swap(ProcessId::current().token(), Ordering::SeqCst);
            OwnerClaim::new(self, previous, true)
        })
    }

    /// Whether the owner word names this process.
    pub(crate) fn owned_by_me(&self) -> bool {
        self.owner_word().load(Ordering::SeqCst) & !REMOVING == ProcessId::current().token()
    }

    /// Gives the owner word up, if we hold it: when an owner lets go.
    pub(crate) fn release_claim(&self) {
        if self.writable {
            let me = ProcessId::current().token();
            let word = self.owner_word();
            let current = word.load(Ordering::SeqCst);
            if current & !REMOVING == me {
                let _ = word.compare_exchange(current, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
    }

    /// Records this process as the owner (so `clean` leaves the segment
    /// alone while we live) and, unless `persist`, removes the name when
    /// dropped. Through [`OwnerClaim::adopt`] only.
    fn adopt(&self, persist: bool) {
        let owner_start = self.owner_start();
        // SAFETY: mapped writable (claims need it), header page valid;
        // openers copy this plain integer with racy-tolerant loads, so a
        // concurrent one sees the old or the new value, never a fault.
        unsafe { owner_start.write_volatile(ProcessId::current().start_time) };
        self.remove_on_drop.store(!persist, Ordering::Relaxed);
    }

    /// Lets the segment go after an adoption that cannot be finished: the
    /// name stays for the next owner to try, and the owner word is given
    /// back.
    pub(crate) fn let_go(&self) {
        self.remove_on_drop.store(false, Ordering::Relaxed);
        self.release_claim();
    }

    /// Removes the name now rather than on drop (if this segment would have
    /// removed it at all). For owners that must let the name go before they
    /// give up ownership, so a successor cannot adopt a name about to vanish.
    pub(crate) fn remove_name_now(&self) {
        if self.remove_on_drop.load(Ordering::Relaxed) && self.ours() {
            self.map.unlink_if_same(&self.name.object_name());
            self.remove_on_drop.store(false, Ordering::Relaxed);
        }
    }

    /// Whether this process mapped it (not a forked child's inherited copy).
    fn ours(&self) -> bool {
        self.mapped_by == os::current_pid()
    }

    /// Whether our name still names this segment.
    pub(crate) fn is_still_named(&self) -> bool {
        self.map.is_named(&self.name.object_name())
    }

    /// Whether another process shrank the object under us (Linux; the
    /// memory past its new end now reads as zeros).
    pub(crate) fn was_truncated(&self) -> bool {
        self.map.was_truncated()
    }

    /// Who owns the OS object, and its mode.
    pub(crate) fn ownership(&self) -> io::Result<os::Ownership> {
        self.map.ownership()
    }

    /// The OS object's security descriptor and the one a new object
    /// created with `sddl` would get, when they differ (Windows; never on
    /// Linux, where [`ownership`](Segment::ownership) has the mode).
    pub(crate) fn descriptor_differs(
        &self,
        sddl: Option<&str>,
    ) -> Result<Option<(String, String)>, Error> {
        self.map
            .descriptor_differs(sddl)
            .map_err(|e| invalid_sddl(&self.name, sddl.unwrap_or_default(), e))
    }

    /// Where the header keeps the owner's start time: a plain integer
    /// (the owner word is the atomic one), read and written volatile.
    fn owner_start(&self) -> *mut u64 {
        self.map
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(std::mem::offset_of!(CommonHeader, owner_start))
            .cast::<u64>()
    }

    /// The owner as the header says now: a publisher that takes a channel
    /// over records itself there (see [`Segment::claim`]).
    pub(crate) fn current_creator(&self) -> ProcessId {
        let token = self.owner_word().load(Ordering::SeqCst) & !REMOVING;
        let owner_start = self.owner_start();
        // SAFETY: the header page is mapped while `self` lives; `adopt` may
        // be rewriting the start time, hence a volatile load (a mix names no
        // live process, and judgements go by the owner word anyway).
        let start_time = unsafe { owner_start.read_volatile() };
        ProcessId {
            pid: token_pid(token),
            start_time,
        }
    }

    /// Whether the owner word names a live process.
    pub(crate) fn owner_alive(&self) -> bool {
        let token = self.owner_word().load(Ordering::SeqCst) & !REMOVING;
        token != 0 && token_liveness(token) == Liveness::Alive
    }

    pub(crate) fn name(&self) -> &Name {
        &self.name
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// The start of the header page.
    pub(crate) fn header_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// The start of the data, right after the header page.
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // SAFETY: a valid layout has total_len = HEADER_LEN + data_len <=
        // the mapping's length, so this stays inside the mapping.
        unsafe { self.map.as_ptr().add(HEADER_LEN) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // A forked child's copy is the parent's to remove, not the child's.
        if *self.remove_on_drop.get_mut() && self.ours() {
            self.map.unlink_if_same(&self.name.object_name());
            self.release_claim();
        }
    }
}

/// The bit of the owner word that marks a segment being removed; the other
/// bits name the remover. Tokens never have it set (PIDs are below 2^31).
pub(crate) const REMOVING: u64 = 1 << 63;

/// What [`Segment::claim`] found.
pub(crate) enum Claim<'a> {
    /// We own it now.
    Won(OwnerClaim<'a>),
    /// A live process owns it (or is removing it).
    Held { pid: u32, removing: bool },
    /// Opened read-only: not ours to judge.
    NotWritable,
}

/// What [`Segment::create_or_adopt`]'s judge makes of an existing
/// segment whose dead owner's claim it won.
pub(crate) enum Judged {
    /// Take it over in place; `from`: the PID of the process it was taken
    /// from, if the judge knows better than the owner word.
    Adopt { from: Option<u32> },
    /// Remove it and create it anew, for this reason.
    Replace(String),
}

/// How [`Segment::create_or_adopt`] came by its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    New,
    /// Adopted in place from a dead owner (its PID; `None`: the last one
    /// had let go cleanly).
    Adopted(Option<u32>),
    /// A dead owner's segment the judge would not adopt, removed and
    /// created anew: its PID and why.
    Replaced(u32, String),
}

/// Why [`Segment::create_or_adopt`] has no segment.
#[derive(Debug)]
pub(crate) enum AdoptError<E> {
    /// Creating or opening it failed.
    Failed(Error),
    /// A live process owns the segment.
    Held { pid: u32 },
    /// The name kept changing under us.
    Busy,
    /// The judge's refusal.
    Refused(E),
}

/// A won claim on a segment's owner word: the one process that may now
/// adopt the segment or remove its name. It ends in exactly one of those,
/// or, dropped, gives the owner word back (unless it was ours before), so
/// no early return can leave a live process's mark on a segment it let go.
#[must_use = "a claim dropped at once is given back"]
pub(crate) struct OwnerClaim<'a> {
    seg: &'a Segment,
    previous: u64,
    release_on_drop: bool,
}

impl<'a> OwnerClaim<'a> {
    fn new(seg: &'a Segment, previous: u64, release_on_drop: bool) -> OwnerClaim<'a> {
        OwnerClaim {
            seg,
            previous,
            release_on_drop,
        }
    }

    /// The PID of the owner before us, if there was one (the owner word
    /// before the claim: a dead owner's token, with [`REMOVING`] if it died
    /// removing; 0 for none; or our own).
    pub(crate) fn previous_pid(&self) -> Option<u32> {
        (self.previous != 0).then(|| token_pid(self.previous & !REMOVING))
    }

    /// Keeps the segment as ours (see [`Segment::adopt`]).
    pub(crate) fn adopt(mut self, persist: bool) {
        self.seg.adopt(persist);
        self.release_on_drop = false;
    }

    /// Removes the segment's name if it still names this segment;
    /// `false` (and the claim given back) when it does not, or cannot be
    /// removed (a Windows section goes with its last handle). The owner
    /// word keeps our mark on a removed segment: nobody may take it.
    pub(crate) fn remove_name(mut self) -> bool {
        let object = self.seg.name.object_name();
        let removed = self.seg.is_still_named() && os::unlink(&object).is_ok();
        if removed {
            self.seg.remove_on_drop.store(false, Ordering::Relaxed);
            self.release_on_drop = false;
        }
        removed
    }
}

impl Drop for OwnerClaim<'_> {
    fn drop(&mut self) {
        if self.release_on_drop {
            self.seg.release_claim();
        }
    }
}

/// The header word at byte `offset` of `map`, if the mapping reaches it.
fn header_word(map: &Mapping, offset: usize) -> Option<&AtomicU64> {
    (offset % 8 == 0 && offset + 8 <= map.len()).then(|| {
        // Other processes write this word only atomically or racily, which
        // atomic loads tolerate.
        // SAFETY: page-aligned mapping, so an 8-aligned offset is an aligned
        // word, inside it (checked) while `map` lives; any bits are valid.
        unsafe { AtomicU64::from_ptr(map.as_ptr().wrapping_add(offset).cast::<u64>()) }
    })
}

/// Reads and validates the header of a fresh mapping.
fn read_layout(map: &Mapping, expected: Option<Kind>) -> Result<Layout, Problem> {
    let mut bytes = [0u8; COMMON_LEN];
    let n = map.len().min(COMMON_LEN);
    if n >= 8 {
        // Acquire pairs with the creator's release store of the magic: when
        // we see it, we see the header written before it.
        let magic = header_word(map, 0).map_or(0, |m| m.load(Ordering::Acquire));
        if magic == 0 {
            let owner = header_word(map, header::OWNER_OFFSET);
            return Err(Problem::Uninitialized {
                owner: owner.map_or(0, |o| o.load(Ordering::Relaxed)),
            });
        }
    }
    // SAFETY: `n` bytes from the start of the mapping are mapped and
    // readable; another process may be writing them, which the racy-tolerant
    // copy allows. Validation then works on our private copy only.
    unsafe { copy_from_shared(map.as_ptr(), &mut bytes[..n]) };
    header::validate(&bytes[..n], map.len(), expected)
}

/// What [`remove_if_stale`] found under a name.
pub(crate) enum Verdict {
    /// A segment whose creator runs: left alone.
    Live,
    /// A segment whose creator (as its header says now) is dead: removed.
    RemovedDead(Segment, ProcessId),
    /// An object its creator never finished (no header, older than
    /// [`STALE_INIT_AGE`]): removed.
    RemovedUnfinished,
    /// A segment cut short by a truncation, whose owner (this PID) is
    /// dead: removed.
    RemovedTruncated(u32),
    /// Nothing that could be judged (missing, foreign, too young to call
    /// unfinished, not accessible): left alone.
    Unjudged(Error),
}

/// Removes `name` if what it names is stale: a segment whose owner is
/// dead, or an object whose creator died before finishing its header. The
/// judgement is made by claiming the owner word (see [`Segment::claim`]),
/// so of two processes racing to replace the same stale segment only one
/// removes it, and a channel taken over by a new publisher since it was
/// opened is left alone. Nothing here blocks: there is no lock to wait for,
/// and a process that can only read the segment cannot claim it.
/// `replace_stale` and `clean` both use it.
pub(crate) fn remove_if_stale(name: &Name) -> Verdict {
    if name.is_companion_name() {
        return remove_if_orphaned(name);
    }
    match Segment::open(name.clone(), None, true) {
        Ok(seg) => {
            // Read before the claim, which puts our own token in the word.
            let creator = seg.current_creator();
            let removed = match seg.claim(REMOVING) {
                Claim::Won(claim) => claim.remove_name().then_some(creator),
                Claim::Held { .. } | Claim::NotWritable => None,
            };
            match removed {
                Some(creator) => Verdict::RemovedDead(seg, creator),
                None => Verdict::Live,
            }
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            // Not ours to remove: report what it is from a read-only look.
            match Segment::open(name.clone(), None, false) {
                Ok(seg) if seg.owner_alive() => Verdict::Live,
                Ok(_) => Verdict::Unjudged(
                    Error::new(
                        ErrorKind::PermissionDenied,
                        format!("cannot remove segment {name}: its owner is dead, but only its owner's user (or an administrator) may remove it"),
                    )
                    .on(name),
                ),
                Err(e) => Verdict::Unjudged(e),
            }
        }
        Err(e) if e.kind() == ErrorKind::Uninitialized && remove_if_unfinished(name) => {
            Verdict::RemovedUnfinished
        }
        Err(e) if e.kind() == ErrorKind::Truncated => match remove_if_truncated(name) {
            Some(pid) => Verdict::RemovedTruncated(pid),
            None => Verdict::Unjudged(e),
        },
        Err(e) => Verdict::Unjudged(e),
    }
}

/// Removes the object `name` if it is a regular object of this user's,
/// whatever it holds: for a publisher replacing its own channel's broken
/// lease table (truncated or scribbled by a leasing reader), which it alone
/// may judge while it holds the channel. Another user's object, or
/// anything but a regular file, is left.
pub(crate) fn remove_own_object(name: &Name) -> bool {
    let object = name.object_name();
    let Ok(map) = Mapping::open(&object, name.namespace(), false) else {
        return false;
    };
    matches!(map.ownership(), Ok(o) if o.mine)
        && map.is_named(&object)
        && os::unlink(&object).is_ok()
}

/// Removes `name` if it is a segment that was cut short (truncated, so it
/// cannot be opened) and whose owner, still readable in what is left of
/// its header, is dead; returns that owner's PID. Judged and removed
/// through the owner word, like [`remove_if_stale`]. A truncated segment
/// of a live owner is left to it: it is told on its next access.
pub(crate) fn remove_if_truncated(name: &Name) -> Option<u32> {
    let object = name.object_name();
    let map = Mapping::open(&object, name.namespace(), true).ok()?;
    let owner = header_word(&map, header::OWNER_OFFSET)?;
    let current = owner.load(Ordering::SeqCst);
    let holder = current & !REMOVING;
    if holder == 0 || token_liveness(holder) != Liveness::Dead {
        return None;
    }
    let me = ProcessId::current().token();
    let removed = owner
        .compare_exchange(current, me | REMOVING, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
        && map.is_named(&object)
        && os::unlink(&object).is_ok();
    removed.then(|| token_pid(holder))
}

/// A companion (a channel's lease table) is judged by its channel, never by
/// its own owner word, which the subscribers who may write the table could
/// set to anything: it is stale only when its channel is gone (`clean` meets
/// a dead channel first, since its name sorts first, and removes it).
fn remove_if_orphaned(name: &Name) -> Verdict {
    match Segment::open(name.without_companion(), None, false) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        // A live channel's companion is its own, unless something else
        // squats its name (a FIFO, a foreign file): that is said.
        _ => {
            return match Segment::open(name.clone(), None, false) {
                Err(e) if e.kind() == ErrorKind::Foreign => Verdict::Unjudged(e),
                _ => Verdict::Live,
            }
        }
    }
    match Segment::open(name.clone(), None, false) {
        Ok(seg) => {
            let creator = seg.current_creator();
            if seg.is_still_named() && os::unlink(&name.object_name()).is_ok() {
                Verdict::RemovedDead(seg, creator)
            } else {
                Verdict::Live
            }
        }
        Err(e) if e.kind() == ErrorKind::Uninitialized && remove_if_unfinished(name) => {
            Verdict::RemovedUnfinished
        }
        Err(e) => Verdict::Unjudged(e),
    }
}

/// Removes `name` if it is an object whose creator died before writing its
/// header: its stamped owner is dead or (no stamp yet) it is older than
/// [`STALE_INIT_AGE`]. Judged and removed through the object's owner word,
/// like [`remove_if_stale`], so of two processes that find the same
/// half-made object only one removes it (and never the other's new one).
pub(crate) fn remove_if_unfinished(name: &Name) -> bool {
    let object = name.object_name();
    let old = || os::object_age(&object).is_some_and(|age| age > STALE_INIT_AGE);
    let Ok(map) = Mapping::open(&object, name.namespace(), true) else {
        return false;
    };
    let (Some(magic), Some(owner)) = (
        header_word(&map, 0),
        header_word(&map, header::OWNER_OFFSET),
    ) else {
        // Killed before it even had a size: by age alone.
        return map.len() == 0 && old() && os::unlink(&object).is_ok();
    };
    if magic.load(Ordering::Acquire) != 0 {
        return false;
    }
    let current = owner.load(Ordering::SeqCst);
    let holder = current & !REMOVING;
    let stale = if holder != 0 {
        token_liveness(holder) == Liveness::Dead
    } else {
        old()
    };
    let me = ProcessId::current().token();
    stale
        && owner
            .compare_exchange(current, me | REMOVING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        && map.is_named(&object)
        && os::unlink(&object).is_ok()
}

fn existing_owner(name: &Name) -> (Option<ProcessId>, bool) {
    // The name can flicker while another process replaces a stale segment
    // (removed, not yet created again): look a few times before saying
    // there is no owner.
    for _ in 0..50 {
        match Segment::open(name.clone(), None, false) {
            Ok(seg) => {
                let owner = seg.current_creator();
                return (Some(owner), owner.liveness() == Liveness::Alive);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => break,
        }
    }
    (None, false)
}

/// `e`, an open of `name` that failed, said as what it is when another
/// user holds the name: shared memory names are first come, first served,
/// and any local user can squat one (POSIX), so a creator is told whose it
/// is and what to do, instead of "permission denied".
fn held_by_other(name: &Name, e: Error) -> Error {
    let Some(owner) = os::other_owner(&name.object_name()) else {
        return e;
    };
    let what = match e.kind() {
        ErrorKind::PermissionDenied => "this user may not open it",
        ErrorKind::Foreign => "it is not a shmcast segment",
        _ => "this user cannot use it",
    };
    Error::new(
        ErrorKind::AlreadyExists,
        format!("cannot create segment {name}: the name is held by {owner} ({what}); it is not taken over. Remove it as root or as that user, or choose another name (a name prefix of the service's own avoids this)"),
    )
    .on(name)
}

/// The name is taken: by whom, and what to do.
fn already_exists(name: &Name) -> Error {
    let (owner, alive) = existing_owner(name);
    let by = match owner {
        Some(p) if alive => format!(
            " by a segment its creator (pid {}) still holds; stop that process or use another name",
            p.pid
        ),
        Some(p) => format!(
            " by a segment whose creator (pid {}) is dead; {}",
            p.pid,
            what_to_do(name, "clean it up (`clean`) or remove it")
        ),
        None => format!(
            " by an object that is not a readable shmcast segment; {}",
            what_to_do(name, "remove it or use another name")
        ),
    };
    let e = Error::new(
        ErrorKind::AlreadyExists,
        format!("cannot create segment {name}: the name is taken{by}"),
    )
    .on(name);
    match owner {
        Some(p) => e.with_pid(p.pid),
        None => e,
    }
}

fn create_error(name: &Name, size: usize, opts: &CreateOptions, e: OsError) -> Error {
    if e.source.kind() == io::ErrorKind::AlreadyExists {
        // Someone else created it after we cleared the way.
        return already_exists(name);
    }
    let (kind, message) = if e.kind == OsErrorKind::BadSecurityDescriptor {
        return invalid_sddl(name, opts.sddl.as_deref().unwrap_or_default(), e);
    } else if e.kind == OsErrorKind::Foreign {
        (
            ErrorKind::Foreign,
            format!(
                "cannot create segment {name}: {}; another program put it there: {}",
                e.source,
                what_to_do(name, "remove it or use another name")
            ),
        )
    } else if e.kind == OsErrorKind::TakenAndDenied {
        (ErrorKind::PermissionDenied, taken_and_denied(name))
    } else if e.kind == OsErrorKind::OutOfSpace {
        let (place, free) = match os::shm_space() {
            Some((place, free)) => (place, format!(" ({free} bytes free)")),
            None => ("the pagefile (commit limit)".to_owned(), String::new()),
        };
        (
            ErrorKind::NoSpace,
            format!("cannot create segment {name}: {size} bytes could not be reserved in {place}{free}; free some shared memory (clean up dead segments) or ask for less"),
        )
    } else if e.source.kind() == io::ErrorKind::PermissionDenied {
        let hint = match name.namespace() {
            Namespace::Global if cfg!(windows) => {
                "creating a Global\\ name needs SeCreateGlobalPrivilege (run as a service or \
                 an administrator), or use a Local\\ name"
                    .to_owned()
            }
            _ => format!("check access to the {} object", name.object_name()),
        };
        (
            ErrorKind::PermissionDenied,
            format!("cannot create segment {name}: permission denied; {hint}"),
        )
    } else {
        (
            ErrorKind::Os,
            format!(
                "cannot create segment {name}: {} failed: {}",
                e.op, e.source
            ),
        )
    };
    Error::new(kind, message).on(name).caused_by(e.source)
}

/// `sddl`, which a segment or channel `name` was to be created with, does
/// not parse (the OS error `e` says how).
pub(crate) fn invalid_sddl(name: &Name, sddl: &str, e: OsError) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("cannot create segment {name}: {sddl:?} is not a valid SDDL security descriptor (for example \"D:(A;;GA;;;SY)(A;;GR;;;IU)\")"),
    )
    .on(name)
    .caused_by(e.source)
}

/// A creation refused because the name is taken by an object that will not
/// let this user write it (Windows: a section that the processes holding it
/// open keep alive, with a security descriptor of its first creator's): a
/// take-over needs write access.
fn taken_and_denied(name: &Name) -> String {
    let kept_by = match Segment::open(name.clone(), None, false) {
        Ok(seg) if seg.layout().kind == Kind::Channel => {
            "the existing channel, kept alive by its subscribers,".to_owned()
        }
        Ok(seg) => format!(
            "the existing {}, kept alive by the processes that hold it open,",
            seg.layout().kind
        ),
        Err(_) => "an existing object, kept alive by the processes that hold it open,".to_owned(),
    };
    format!("cannot create segment {name}: {kept_by} grants this user no write access, which taking it over needs; stop the processes that hold it, or run as a user its security descriptor lets write")
}

/// What to do about an unusable object under `name`: on Windows, where
/// only its holders can let the name go, what `os::holder_advice` says;
/// elsewhere `otherwise`.
fn what_to_do(name: &Name, otherwise: &str) -> String {
    os::holder_advice(&name.object_name()).unwrap_or_else(|| otherwise.to_owned())
}

fn open_error(name: &Name, writable: bool, e: OsError) -> Error {
    let (kind, message) = if e.kind == OsErrorKind::Foreign {
        let by = os::other_owner(&name.object_name())
            .map(|o| format!(" (it belongs to {o})"))
            .unwrap_or_default();
        (
            ErrorKind::Foreign,
            format!(
                "cannot open segment {name}: {}{by}; another program put it there: {}",
                e.source,
                what_to_do(name, "remove it or use another name")
            ),
        )
    } else {
        match e.source.kind() {
            io::ErrorKind::NotFound => (
                ErrorKind::NotFound,
                format!("no segment named {name}: start the process that creates it first (on Windows, check Local\\ vs Global\\)"),
            ),
            io::ErrorKind::PermissionDenied => (
                ErrorKind::PermissionDenied,
                format!(
                    "cannot open segment {name}{}: permission denied; its creator must grant this user access{}",
                    if writable { " for writing" } else { " read-only" },
                    if writable { ", or open it read-only" } else { "" }
                ),
            ),
            _ => (
                ErrorKind::Os,
                format!("cannot open segment {name}: {} failed: {}", e.op, e.source),
            ),
        }
    };
    Error::new(kind, message).on(name).caused_by(e.source)
}

fn problem_error(name: &Name, expected: Option<Kind>, problem: Problem) -> Error {
    let (kind, message) = match problem {
        Problem::Uninitialized { .. } => (
            ErrorKind::Uninitialized,
            match os::holder_advice(&name.object_name()) {
                None => format!("cannot open segment {name}: it was never fully created (its creator may have died while creating it); clean it up (`clean`) or create it again"),
                Some(advice) => format!("cannot open segment {name}: it was never fully created (its creator is still creating it, or died doing so, or another program made it); {advice}"),
            },
        ),
        Problem::Foreign { found } => {
            let by = os::other_owner(&name.object_name())
                .map(|o| format!(", and belongs to {o}"))
                .unwrap_or_default();
            (
                ErrorKind::Foreign,
                format!("cannot open segment {name}: it is not a shmcast segment (it starts with {found:02x?}{by}); another program uses this name"),
            )
        }
        Problem::Version { found } => (
            ErrorKind::Incompatible,
            format!(
                "cannot open segment {name}: layout version {found}, but this build reads version {}; use matching shmcast versions on both sides",
                header::LAYOUT_VERSION
            ),
        ),
        Problem::WrongKind { found } => (
            ErrorKind::Incompatible,
            format!("cannot open segment {name} as a {}: it is a {found}", expected.unwrap_or(found)),
        ),
        Problem::Corrupt(what) => (
            ErrorKind::Corrupt,
            format!("cannot open segment {name}: its header is corrupt ({what}); remove it and create it again"),
        ),
        Problem::Truncated { mapped, needed } => (
            ErrorKind::Truncated,
            format!("cannot open segment {name}: it is truncated ({mapped} bytes mapped, its header needs {needed}); remove it and create it again"),
        ),
    };
    Error::new(kind, message).on(name)
}

/// `owned` if the object is this user's; a take-over of anything else, or
/// of an object whose owner cannot be read, is refused (fails closed: see
/// `Mapping::ownership` for the one platform that has no owners).
fn ours(name: &Name, owned: io::Result<os::Ownership>) -> Result<os::Ownership, Error> {
    match owned {
        Ok(owned) if owned.mine => Ok(owned),
        Ok(owned) => {
            let mode = owned.mode.map(|m| format!(" (mode {m:04o})")).unwrap_or_default();
            Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("cannot create segment {name}: the name is taken by a segment that belongs to {}{mode}, not to this user; it is not taken over. Remove it (as its owner or an administrator) or use another name", owned.owner),
            )
            .on(name))
        }
        Err(source) => Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("cannot create segment {name}: the name is taken and its owner cannot be read ({source}); it is not taken over. Remove it as its owner or an administrator, or use another name"),
        )
        .on(name)
        .caused_by(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_over_is_refused_unless_the_owner_is_known_to_be_us() {
        let name = Name::new("owned").unwrap();
        let owner = |mine| os::Ownership {
            mine,
            owner: "uid 1001".to_owned(),
            mode: Some(0o600),
        };
        assert!(ours(&name, Ok(owner(true))).is_ok());
        let other = ours(&name, Ok(owner(false))).unwrap_err();
        assert_eq!(other.kind(), ErrorKind::AlreadyExists, "{other}");
        assert!(
            other.to_string().contains("uid 1001 (mode 0600)"),
            "{other}"
        );
        // No READ_CONTROL on Windows, say: not known to be ours, so not ours.
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let unknown = ours(&name, Err(denied)).unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::AlreadyExists, "{unknown}");
        assert!(unknown.to_string().contains("cannot be read"), "{unknown}");
        assert!(unknown.to_string().contains("not taken over"), "{unknown}");
    }

    /// Our own new segment's owner is readable and ours; under Wine, which
    /// keeps no owners on sections, it is said to be unknown, and only there.
    #[test]
    fn our_own_segments_owner_is_us() {
        let name = Name::new(&format!("owner-{}", std::process::id())).unwrap();
        let seg = Segment::create(
            name.clone(),
            Kind::Region,
            64,
            &CreateOptions::new(),
            |_| (),
        )
        .unwrap();
        let owned = seg.ownership().unwrap();
        assert!(owned.mine, "{}", owned.owner);
        // Opened, not created: the owner is readable all the same (on
        // Windows the open asks for READ_CONTROL), read-write or read-only.
        for writable in [true, false] {
            let opened = Segment::open(name.clone(), Some(Kind::Region), writable).unwrap();
            let owned = opened.ownership().unwrap();
            assert!(owned.mine, "{}", owned.owner);
        }
        #[cfg(windows)]
        assert_eq!(
            owned.owner.contains("Wine"),
            os::is_wine(),
            "{}",
            owned.owner
        );
        #[cfg(unix)]
        assert_eq!(
            owned.owner,
            format!("uid {}", rustix::process::geteuid().as_raw())
        );
    }

    #[test]
    fn access_denied_on_a_global_name_names_the_privilege_on_windows() {
        let name = Name::new(r"Global\cam").unwrap();
        let denied = OsError::new(
            "CreateFileMappingW",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let err = create_error(&name, 4096, &CreateOptions::new(), denied);
        let msg = err.to_string();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{msg}");
        if cfg!(windows) {
            assert!(msg.contains("SeCreateGlobalPrivilege"), "{msg}");
        }
    }

    #[test]
    fn a_full_shared_memory_filesystem_is_no_space_with_the_size() {
        let name = Name::new("big").unwrap();
        let full = OsError::new("fallocate", io::Error::from(io::ErrorKind::StorageFull));
        let err = create_error(&name, 1 << 40, &CreateOptions::new(), full);
        assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
        assert!(err.to_string().contains("1099511627776 bytes"), "{err}");
    }
}
