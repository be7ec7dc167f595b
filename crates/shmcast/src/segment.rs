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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::copy::copy_from_shared;
use crate::error::{CreateError, OpenError};
use crate::header::{self, CommonHeader, Kind, Layout, Problem, COMMON_LEN, HEADER_LEN};
use crate::identity::{Liveness, ProcessId};
use crate::name::{Name, Namespace};
use crate::os::{self, CreateSpec, Mapping, OsError};

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
    remove_on_drop: bool,
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
    ) -> Result<Segment, CreateError> {
        let name = match opts.namespace {
            Some(ns) => name.in_namespace(ns),
            None => name,
        };
        let max = isize::MAX as usize - HEADER_LEN;
        if data_len == 0 || data_len > max {
            return Err(CreateError::InvalidSize {
                name: name.to_string(),
                size: data_len as u64,
                max: max as u64,
            });
        }
        let total = HEADER_LEN + data_len;
        let spec = CreateSpec {
            namespace: name.namespace(),
            mode: opts.mode,
            sddl: opts.sddl.as_deref(),
        };
        let object = name.object_name();
        let map = match Mapping::create(&object, total, &spec) {
            Ok(map) => map,
            Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => {
                let replaced = opts.replace_stale
                    && matches!(
                        remove_if_stale(&name),
                        Verdict::RemovedDead(..) | Verdict::RemovedUnfinished
                    );
                if !replaced {
                    // Judged after any replacement attempt, so the error
                    // names whoever holds the name now.
                    let (owner, owner_alive) = existing_owner(&name);
                    return Err(CreateError::AlreadyExists {
                        name: name.to_string(),
                        owner,
                        owner_alive,
                    });
                }
                Mapping::create(&object, total, &spec)
                    .map_err(|e| create_error(&name, total, opts, e))?
            }
            Err(e) => return Err(create_error(&name, total, opts, e)),
        };
        let me = ProcessId::current();
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
                data_len,
                total_len: total,
                creator: me,
                created_unix_ms: now_ms,
            },
            name,
            map,
            writable: true,
            remove_on_drop: !opts.persist,
        })
    }

    /// Opens an existing segment, expecting `kind` (any kind with `None`).
    pub(crate) fn open(
        name: Name,
        expected: Option<Kind>,
        writable: bool,
    ) -> Result<Segment, OpenError> {
        let object = name.object_name();
        let started = Instant::now();
        loop {
            let map = Mapping::open(&object, name.namespace(), writable)
                .map_err(|e| open_error(&name, e))?;
            match read_layout(&map, expected) {
                Ok(layout) => {
                    return Ok(Segment {
                        name,
                        map,
                        layout,
                        writable,
                        remove_on_drop: false,
                    })
                }
                // The creator may still be writing the header: give it a
                // moment, from a fresh mapping (its size may change too).
                Err(Problem::Uninitialized) if started.elapsed() < INIT_WAIT => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(problem) => return Err(problem_error(&name, expected, problem)),
            }
        }
    }

    /// Makes this process the segment's owner: it is recorded as the
    /// creator (so `clean` leaves the segment alone while we live) and,
    /// unless `persist`, removes the name when dropped. For a publisher that
    /// takes over a channel from a dead one.
    pub(crate) fn adopt(&mut self, persist: bool) {
        let me = ProcessId::current();
        let header = self.map.as_ptr().cast::<CommonHeader>();
        // SAFETY: mapped writable (adopters open read-write), header page
        // valid; openers copy these plain integers with racy-tolerant loads,
        // so a concurrent one sees old or new values, never a fault.
        unsafe {
            std::ptr::addr_of_mut!((*header).creator_pid).write_volatile(me.pid);
            std::ptr::addr_of_mut!((*header).creator_start).write_volatile(me.start_time);
        }
        self.layout.creator = me;
        self.remove_on_drop = !persist;
    }

    /// Removes the name now rather than on drop (if this segment would have
    /// removed it at all). For owners that must let the name go before they
    /// give up ownership, so a successor cannot adopt a name about to vanish.
    pub(crate) fn remove_name_now(&mut self) {
        if self.remove_on_drop {
            self.map.unlink_if_same(&self.name.object_name());
            self.remove_on_drop = false;
        }
    }

    /// See `Mapping::lock_name`.
    pub(crate) fn lock_name(&self) {
        self.map.lock_name();
    }

    pub(crate) fn unlock_name(&self) {
        self.map.unlock_name();
    }

    /// Whether our name still names this segment.
    pub(crate) fn is_still_named(&self) -> bool {
        self.map.is_named(&self.name.object_name())
    }

    /// The creator as the header says now: a publisher that takes a channel
    /// over records itself there (see [`Segment::adopt`]).
    pub(crate) fn current_creator(&self) -> ProcessId {
        let header = self.map.as_ptr().cast::<CommonHeader>();
        // SAFETY: the header page is mapped while `self` lives; `adopt` may be
        // rewriting these integers, hence volatile loads (a mix names no live
        // process, and callers judge under the name lock anyway).
        unsafe {
            ProcessId {
                pid: std::ptr::addr_of!((*header).creator_pid).read_volatile(),
                start_time: std::ptr::addr_of!((*header).creator_start).read_volatile(),
            }
        }
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
        if self.remove_on_drop {
            self.map.unlink_if_same(&self.name.object_name());
        }
    }
}

/// Reads and validates the header of a fresh mapping.
fn read_layout(map: &Mapping, expected: Option<Kind>) -> Result<Layout, Problem> {
    let mut bytes = [0u8; COMMON_LEN];
    let n = map.len().min(COMMON_LEN);
    if n >= 8 {
        // Acquire pairs with the creator's release store of the magic: when
        // we see it, we see the header written before it.
        // SAFETY: the mapping has at least 8 bytes and is page-aligned, so
        // its first word is an aligned, readable u64.
        let magic = unsafe { std::sync::atomic::AtomicU64::from_ptr(map.as_ptr().cast::<u64>()) }
            .load(Ordering::Acquire);
        if magic == 0 {
            return Err(Problem::Uninitialized);
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
    /// Nothing that could be judged (missing, foreign, too young to call
    /// unfinished, not accessible): left alone.
    Unjudged(OpenError),
}

/// Removes `name` if what it names is stale: a segment whose creator is
/// dead, or an object whose creator died before finishing its header. The
/// judgement and the removal happen under the name lock (see
/// `Mapping::lock_name`), from the header as it is now, so of two processes
/// racing to replace the same stale segment the second finds the name taken
/// by the first's new one, and a channel adopted by a new publisher since it
/// was opened is left alone. `replace_stale` and `clean` both use it.
pub(crate) fn remove_if_stale(name: &Name) -> Verdict {
    let object = name.object_name();
    match Segment::open(name.clone(), None, false) {
        Ok(seg) => {
            seg.lock_name();
            let creator = seg.current_creator();
            let stale = !creator.is_alive() && seg.is_still_named();
            let removed = stale && os::unlink(&object).is_ok();
            seg.unlock_name();
            if removed {
                Verdict::RemovedDead(seg, creator)
            } else {
                Verdict::Live
            }
        }
        Err(OpenError::Uninitialized { .. })
            if os::object_age(&object).is_some_and(|age| age > STALE_INIT_AGE)
                && os::unlink(&object).is_ok() =>
        {
            Verdict::RemovedUnfinished
        }
        Err(e) => Verdict::Unjudged(e),
    }
}

/// Removes `name` only if it is an unfinished object (see [`Verdict`]). For
/// publishers, which take over a dead creator's channel instead of removing
/// it.
pub(crate) fn remove_if_unfinished(name: &Name) -> bool {
    let object = name.object_name();
    matches!(
        Segment::open(name.clone(), None, false),
        Err(OpenError::Uninitialized { .. })
    ) && os::object_age(&object).is_some_and(|age| age > STALE_INIT_AGE)
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
            Err(OpenError::NotFound { .. }) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break,
        }
    }
    (None, false)
}

fn create_error(name: &Name, size: usize, opts: &CreateOptions, e: OsError) -> CreateError {
    let name_s = name.to_string();
    if e.source.kind() == io::ErrorKind::AlreadyExists {
        // Someone else created it after we cleared the way.
        let (owner, owner_alive) = existing_owner(name);
        return CreateError::AlreadyExists {
            name: name_s,
            owner,
            owner_alive,
        };
    }
    if e.op.starts_with("ConvertString") {
        return CreateError::InvalidSecurityDescriptor {
            name: name_s,
            sddl: opts.sddl.clone().unwrap_or_default(),
            source: e.source,
        };
    }
    if os::is_out_of_space(&e.source) {
        let (place, available) = match os::shm_space() {
            Some((place, free)) => (place, Some(free)),
            None => ("the pagefile (commit limit)".to_owned(), None),
        };
        return CreateError::NoSpace {
            name: name_s,
            size: size as u64,
            place,
            available,
            source: e.source,
        };
    }
    if e.source.kind() == io::ErrorKind::PermissionDenied {
        let hint = match name.namespace() {
            Namespace::Global if cfg!(windows) => {
                "; creating a Global\\ name needs SeCreateGlobalPrivilege (run as a service or \
                 an administrator), or use a Local\\ name"
                    .to_owned()
            }
            _ => format!("; check access to the {} object", name.object_name()),
        };
        return CreateError::PermissionDenied {
            name: name_s,
            hint,
            source: e.source,
        };
    }
    CreateError::Os {
        name: name_s,
        op: e.op,
        source: e.source,
    }
}

fn open_error(name: &Name, e: OsError) -> OpenError {
    let name = name.to_string();
    match e.source.kind() {
        io::ErrorKind::NotFound => OpenError::NotFound { name },
        io::ErrorKind::PermissionDenied => OpenError::PermissionDenied {
            name,
            source: e.source,
        },
        _ => OpenError::Os {
            name,
            op: e.op,
            source: e.source,
        },
    }
}

fn problem_error(name: &Name, expected: Option<Kind>, problem: Problem) -> OpenError {
    let name = name.to_string();
    match problem {
        Problem::Uninitialized => OpenError::Uninitialized { name },
        Problem::Foreign { found } => OpenError::NotShmcast { name, found },
        Problem::Version { found } => OpenError::Incompatible {
            name,
            found,
            expected: header::LAYOUT_VERSION,
        },
        Problem::WrongKind { found } => OpenError::WrongKind {
            name,
            found,
            expected: expected.unwrap_or(found),
        },
        Problem::Corrupt(what) => OpenError::Corrupt { name, what },
        Problem::Truncated { mapped, needed } => OpenError::Truncated {
            name,
            mapped,
            needed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_on_a_global_name_names_the_privilege_on_windows() {
        let name = Name::new(r"Global\cam").unwrap();
        let denied = OsError::new(
            "CreateFileMappingW",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let err = create_error(&name, 4096, &CreateOptions::new(), denied);
        let msg = err.to_string();
        assert!(matches!(err, CreateError::PermissionDenied { .. }), "{msg}");
        if cfg!(windows) {
            assert!(msg.contains("SeCreateGlobalPrivilege"), "{msg}");
        }
    }

    #[test]
    fn a_full_shared_memory_filesystem_is_no_space_with_the_size() {
        let name = Name::new("big").unwrap();
        let full = OsError::new("fallocate", io::Error::from(io::ErrorKind::StorageFull));
        let err = create_error(&name, 1 << 40, &CreateOptions::new(), full);
        assert!(
            matches!(err, CreateError::NoSpace { size, .. } if size == 1 << 40),
            "{err}"
        );
        assert!(err.to_string().contains("1099511627776 bytes"), "{err}");
    }
}
