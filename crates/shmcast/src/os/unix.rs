//! Linux: POSIX shared memory objects under `/dev/shm`.
//!
//! The only file besides `windows.rs` that calls the OS. Both define the same
//! `Mapping` type and free functions; the portable code never sees a
//! platform call.
//!
//! Lifetime: a `/dev/shm` object lives until it is unlinked, whether or not
//! any process maps it. The segment layer unlinks on its creator's drop (see
//! `Segment`), and `clean` removes what crashed creators left behind.
//!
//! Untrusted names: anyone may put anything in `/dev/shm`. Opening uses
//! `O_NONBLOCK | O_NOFOLLOW` and accepts regular files only, so a FIFO or a
//! symlink planted under our prefix is reported as foreign instead of
//! hanging the opener or redirecting it.
//!
//! Truncation: a process with write access can `ftruncate` an object that
//! others map, and their next access past the new end raises SIGBUS. The
//! [`sigbus`] guard turns that into an error naming the segment.

use std::ffi::c_void;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::{self, NonNull};

use rustix::fs::{FallocateFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use super::OsError;
use crate::name::{Namespace, OBJECT_PREFIX};

/// Where POSIX shared memory lives on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// A mapped shared memory object.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    /// Our entry in the SIGBUS guard's table, if it had room.
    guard: Option<usize>,
}

// SAFETY: the mapping is plain memory shared with other processes; this type
// only hands out raw pointers, and every access through them is synchronised
// by the layers above (atomics, locks), not by thread affinity.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` gives out only the pointer and length.
unsafe impl Sync for Mapping {}

/// Creation parameters the OS layer needs.
pub(crate) struct CreateSpec<'a> {
    /// Windows namespace; Linux has only one.
    #[allow(dead_code)]
    pub namespace: Namespace,
    /// Unix permission bits of the new object.
    pub mode: u32,
    /// Windows security descriptor (SDDL); not used on Linux.
    #[allow(dead_code)]
    pub sddl: Option<&'a str>,
    /// The creator's token, stamped into the owner word (at byte
    /// `owner_offset`, which the header layer knows) before the memory is
    /// reserved, so that a creator that dies while reserving a large
    /// object is known to be dead at once.
    pub owner: u64,
    pub owner_offset: usize,
}

/// Who owns an existing object, for take-overs.
#[derive(Debug)]
pub(crate) struct Ownership {
    /// It belongs to the user we run as.
    pub mine: bool,
    /// Its owner, for messages (`uid 1001`).
    pub owner: String,
    /// Its permission bits (Linux).
    pub mode: Option<u32>,
}

fn shm_file(object: &str) -> String {
    format!("{SHM_DIR}/{object}")
}

impl Mapping {
    /// Creates a new object of `size` bytes, fails if it exists. The memory is
    /// reserved (`fallocate`) before it is mapped, so a full `/dev/shm` is an
    /// error here and never a SIGBUS later.
    pub(crate) fn create(object: &str, size: usize, spec: &CreateSpec) -> Result<Mapping, OsError> {
        let path = shm_file(object);
        let mode = Mode::from_bits_truncate(spec.mode);
        // What shm_open does, plus O_NOFOLLOW: O_EXCL never follows a link.
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::open(&path, flags, mode).map_err(|e| OsError::new("shm_open", e.into()))?;
        let built = (|| {
            // open applies the umask; set the mode the caller asked for.
            rustix::fs::fchmod(&fd, mode).map_err(|e| OsError::new("fchmod", e.into()))?;
            rustix::fs::ftruncate(&fd, size as u64)
                .map_err(|e| OsError::new("ftruncate", e.into()))?;
            let at = spec.owner_offset;
            if size >= at + 8 {
                rustix::io::pwrite(&fd, &spec.owner.to_ne_bytes(), at as u64)
                    .map_err(|e| OsError::new("pwrite", e.into()))?;
            }
            reserve(&fd, size)?;
            map(fd, size, true)
        })();
        if built.is_err() {
            let _ = rustix::fs::unlink(&path);
        }
        built
    }

    /// Opens an existing object; its size comes from `fstat`. Never blocks
    /// and never follows a link: anything but a regular file is refused with
    /// `ErrorKind::InvalidData` (kind `OsErrorKind::Foreign`).
    pub(crate) fn open(object: &str, _ns: Namespace, writable: bool) -> Result<Mapping, OsError> {
        let access = if writable {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        let flags = access | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(shm_file(object), flags, Mode::empty()).map_err(|e| match e {
            Errno::LOOP => OsError::foreign("open", "a symbolic link"),
            // A read-write open of a directory fails before fstat can say.
            Errno::ISDIR => OsError::foreign("open", "a directory"),
            e => OsError::new("shm_open", e.into()),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| OsError::new("fstat", e.into()))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            FileType::Fifo => return Err(OsError::foreign("open", "a FIFO")),
            FileType::Directory => return Err(OsError::foreign("open", "a directory")),
            FileType::Socket => return Err(OsError::foreign("open", "a socket")),
            _ => return Err(OsError::foreign("open", "a device or other special file")),
        }
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        if len == 0 {
            // mmap refuses zero lengths; an empty object is reported by the
            // caller as "not initialised", from this zero length.
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
                fd,
                guard: None,
            });
        }
        map(fd, len, writable)
    }

    /// The object's security descriptor and the one a new object created
    /// with `sddl` would get, when they differ: never on Linux, where
    /// [`Ownership::mode`] says who may open it.
    pub(crate) fn descriptor_differs(
        &self,
        _sddl: Option<&str>,
    ) -> Result<Option<(String, String)>, OsError> {
        Ok(None)
    }

    /// Who owns the object, and its mode.
    pub(crate) fn ownership(&self) -> io::Result<Ownership> {
        let stat = rustix::fs::fstat(&self.fd)?;
        Ok(Ownership {
            mine: stat.st_uid == rustix::process::geteuid().as_raw(),
            owner: format!("uid {}", stat.st_uid),
            mode: Some(stat.st_mode & 0o7777),
        })
    }

    /// Whether another process shrank the object under us and an access
    /// past its new end was caught (see [`sigbus`]); the memory there now
    /// reads as zeros and writes go nowhere.
    pub(crate) fn was_truncated(&self) -> bool {
        self.guard.is_some_and(sigbus::was_hit)
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `object` still names this very mapping's object (it may have
    /// been removed, or removed and created anew, since we opened it).
    pub(crate) fn is_named(&self, object: &str) -> bool {
        match (
            rustix::fs::fstat(&self.fd),
            rustix::fs::stat(shm_file(object)),
        ) {
            (Ok(ours), Ok(theirs)) => ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino,
            _ => false,
        }
    }

    /// Removes the name, but only if it still names this very object (the
    /// name may have been taken over since, and that segment is not ours).
    pub(crate) fn unlink_if_same(&self, object: &str) {
        if self.is_named(object) {
            let _ = rustix::fs::unlink(shm_file(object));
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(entry) = self.guard {
            sigbus::unregister(entry);
        }
        if self.len > 0 {
            // SAFETY: `ptr`/`len` are exactly what `mmap` returned and nothing
            // else unmaps them; every borrow of the memory is tied to a
            // borrow of this `Mapping`, so none outlives this call.
            unsafe {
                let _ = rustix::mm::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len);
            }
        }
    }
}

fn reserve(fd: &OwnedFd, size: usize) -> Result<(), OsError> {
    if size == 0 {
        return Ok(());
    }
    loop {
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, size as u64) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => continue,
            // Filesystems without fallocate: the pages are not reserved, but
            // creation still works; tmpfs (every /dev/shm) supports it.
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(OsError::new("fallocate", e.into())),
        }
    }
}

fn map(fd: OwnedFd, len: usize, writable: bool) -> Result<Mapping, OsError> {
    let prot = if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    };
    // SAFETY: a fresh shared mapping chosen by the kernel (null hint) of an
    // object we hold open; it aliases no Rust allocation. Accesses to the
    // memory are the business of the layers above.
    let ptr = unsafe { rustix::mm::mmap(ptr::null_mut(), len, prot, MapFlags::SHARED, &fd, 0) }
        .map_err(|e| OsError::new("mmap", e.into()))?;
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| {
        OsError::new(
            "mmap",
            io::Error::other("the kernel returned a null mapping"),
        )
    })?;
    let guard = sigbus::register(ptr.as_ptr() as usize, len);
    Ok(Mapping {
        ptr,
        len,
        fd,
        guard,
    })
}

/// Removes the object's name. Processes that have it mapped keep their
/// mapping; the memory is freed when the last one unmaps.
pub(crate) fn unlink(object: &str) -> io::Result<()> {
    rustix::fs::unlink(shm_file(object)).map_err(Into::into)
}

/// The names of every object under our prefix, for `clean` and listings.
pub(crate) fn list_objects() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(OBJECT_PREFIX) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The objects under our prefix, all in the one namespace Linux has.
pub(crate) fn list_sections() -> io::Result<Vec<(Namespace, String)>> {
    Ok(list_objects()?
        .into_iter()
        .map(|o| (Namespace::Local, o))
        .collect())
}

/// Bytes free on the filesystem that holds shared memory, for error messages.
pub(crate) fn shm_space() -> Option<(String, u64)> {
    let vfs = rustix::fs::statvfs(SHM_DIR).ok()?;
    Some((
        format!("{SHM_DIR} (tmpfs)"),
        vfs.f_bavail.saturating_mul(vfs.f_frsize),
    ))
}

/// The start time of process `pid`: `Ok(None)` when there is no such live
/// process (a zombie, killed but not yet reaped, counts as dead); `Err` when
/// it exists but cannot be inspected, which callers treat as alive.
///
/// PIDs are those of our PID namespace: processes in other containers that
/// share `/dev/shm` are not told apart from dead ones (do not share segments
/// across PID namespaces).
///
/// Allocates nothing (a stack path, a stack buffer): a publisher asks it
/// about lease holders when every slot is leased, on the publish path.
pub(crate) fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    use std::io::Write as _;
    let mut path = [0u8; 32];
    let path_len = {
        let mut rest = &mut path[..];
        write!(rest, "/proc/{pid}/stat")?;
        32 - rest.len()
    };
    // rustix turns a short path into a C string on the stack.
    let fd = match rustix::fs::open(
        &path[..path_len],
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // /proc may hide other users' processes (hidepid=2): only the
        // kernel's "no such process" from kill(pid, 0) means dead.
        Err(Errno::NOENT) => {
            let exists = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .map(rustix::process::test_kill_process);
            return match exists {
                None | Some(Err(Errno::SRCH)) => Ok(None),
                // Alive (or not ours to signal): its start time is unknown.
                Some(_) => Err(io::ErrorKind::PermissionDenied.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    // The line is a few hundred bytes; field 22 lies well inside 1 KiB
    // even after the longest command name.
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let unreadable = || io::Error::from(io::ErrorKind::InvalidData);
    // The command name (field 2) is in parentheses and may hold anything,
    // spaces and ')' included, so count fields from the last ')'.
    let stat = &buf[..len];
    let close = stat
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(unreadable)?;
    let mut fields = stat[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    // Field 3 is the state; field 22 the start time, 19 fields later.
    let state = fields.next().unwrap_or(b"");
    if state == b"Z" || state == b"X" {
        return Ok(None);
    }
    fields
        .nth(18)
        .and_then(|f| std::str::from_utf8(f).ok()?.parse().ok())
        .map(Some)
        .ok_or_else(unreadable)
}

/// Whether an OS error means the memory could not be reserved.
pub(crate) fn is_out_of_space(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::OutOfMemory
    )
}

/// This process's PID, for a memory load instead of a `getpid` system call
/// (glibc does not cache the PID): fork detection asks on every lease
/// release and every dropped loan. The cache is cleared in a forked child
/// by a `pthread_atfork` handler, so the child asks the kernel once. Until
/// the handler is registered (the first call registers it), and in a child
/// forked while another thread was registering it, every call asks the
/// kernel: nothing here can block, so a fork at any moment is safe.
pub(crate) fn current_pid() -> u32 {
    use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::*};
    static PID: AtomicU32 = AtomicU32::new(0);
    /// 0: no handler yet, 1: being registered, 2: registered.
    static HANDLER: AtomicU8 = AtomicU8::new(0);
    extern "C" fn forked_child() {
        PID.store(0, Relaxed);
    }
    let ask = || rustix::process::getpid().as_raw_nonzero().get() as u32;
    match HANDLER.load(Acquire) {
        2 => match PID.load(Relaxed) {
            0 => {
                let pid = ask();
                PID.store(pid, Relaxed);
                pid
            }
            pid => pid,
        },
        0 if HANDLER.compare_exchange(0, 1, AcqRel, Relaxed).is_ok() => {
            // SAFETY: registers a child handler that only stores to an
            // atomic (async-signal-safe); no parent or prepare handler.
            let registered = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
            if registered == 0 {
                HANDLER.store(2, Release);
            }
            ask()
        }
        _ => ask(),
    }
}

/// A clock all processes on this machine share and nobody can set back:
/// `CLOCK_MONOTONIC`, in nanoseconds. For lease-table beats.
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// What to do about a name that an unusable object keeps, when the OS has
/// its own answer: none on Linux, where the name is a file that `clean`
/// or its owner removes (the callers say so).
pub(crate) fn holder_advice(_object: &str) -> Option<String> {
    None
}

/// How long ago the object was last modified (for unfinished creations).
pub(crate) fn object_age(object: &str) -> Option<std::time::Duration> {
    let modified = std::fs::symlink_metadata(shm_file(object))
        .ok()?
        .modified()
        .ok()?;
    modified.elapsed().ok()
}

/// Who owns the object `object`, when it is another user: "uid 1001
/// (advuser)". For messages about a name that someone else holds: POSIX
/// shared memory names are first come, first served.
pub(crate) fn other_owner(object: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::symlink_metadata(shm_file(object)).ok()?.uid();
    if uid == rustix::process::geteuid().as_raw() {
        return None;
    }
    let user = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    Some(match user {
        Some(user) => format!("uid {uid} ({user})"),
        None => format!("uid {uid}"),
    })
}

#[cfg(not(loom))]
pub(crate) use wake::{Wakers, Wakeup};

fn wake_object(object: &str) -> String {
    format!("{object}{}", super::WAKE_SUFFIX)
}

/// Removes the name of channel `object`'s wake object: with the channel's
/// own (`channel_gone_only` false), or for `clean` only when the channel is
/// gone. Whose it is, the OS decides, as for the channel's name.
pub(crate) fn remove_wake(object: &str, channel_gone_only: bool) {
    if channel_gone_only && object_age(object).is_some() {
        return;
    }
    let _ = unlink(&wake_object(object));
}

/// The wake word and the futex around it. Left out of loom builds, whose
/// models check the protocol (`channel/loom_tests.rs`) and whose atomics
/// are not the ones the kernel's futex takes.
#[cfg(not(loom))]
mod wake {
    use std::io;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{wake_object, CreateSpec, Mapping, OsError};
    use crate::name::Namespace;
    use crate::os::{WakePage, WAKE_LEN};

    /// The wake word's object: `NAME~wake`, one page ([`WakePage`]). A
    /// subscriber about to sleep writes the generation it sleeps on into its
    /// wake word; the publisher makes its `FUTEX_WAKE` only when that word
    /// says somebody may sleep on the generation it just moved past (see
    /// [`Wakers::wake`]). The page also holds the channel's instance, so
    /// that a subscriber uses only the word of its own channel.
    ///
    /// The channel and its lease table stay as they were: a read-only
    /// subscriber writes nothing there. This page is what every reader may
    /// write (its mode is the channel's read bits, made read-write), and a
    /// peer that scribbles it can cost sleepers wake-ups, never frames and
    /// never a crash: every sleep is cut to [`crate::os::DECLARED_SLICE`] (250 ms),
    /// after which a sleeper declares itself again.
    struct WakeWord {
        page: WakePage,
    }

    impl WakeWord {
        /// Opens `object`'s wake object read-write; `None` when it is missing,
        /// not ours to write, of another size, or of another channel instance.
        fn open(object: &str, instance: u64) -> Option<WakeWord> {
            let map = Mapping::open(&wake_object(object), Namespace::Local, true).ok()?;
            let page = WakePage::new(map)?;
            (page.map().len() == WAKE_LEN && page.instance().load(Ordering::Relaxed) == instance)
                .then_some(WakeWord { page })
        }

        /// Creates `object`'s wake object for channel `instance`, readable and
        /// writable by whoever may read the channel (`mode`'s read bits),
        /// replacing one of this user's that is there (`replace`) or using it
        /// when it is of this very instance.
        fn create(object: &str, instance: u64, mode: u32, replace: bool) -> Option<WakeWord> {
            let name = wake_object(object);
            let rw = (mode & 0o444) | ((mode & 0o444) >> 1);
            let spec = CreateSpec {
                namespace: Namespace::Local,
                mode: rw,
                sddl: None,
                owner: 0,
                // No owner word: past the end, so nothing is written there.
                owner_offset: WAKE_LEN,
            };
            let made = || {
                let page = WakePage::new(Mapping::create(&name, WAKE_LEN, &spec).ok()?)?;
                page.instance().store(instance, Ordering::Relaxed);
                Some(WakeWord { page })
            };
            if let Some(word) = made() {
                return Some(word);
            }
            if !replace {
                if let Some(word) = WakeWord::open(object, instance) {
                    return Some(word);
                }
            }
            // There, but stale or not ours to use: replaced if it is this
            // user's (a /dev/shm of others' objects is sticky: theirs stays).
            let old = Mapping::open(&name, Namespace::Local, false).ok()?;
            if !old.ownership().is_ok_and(|o| o.mine) {
                return None;
            }
            old.unlink_if_same(&name);
            made()
        }

        fn want(&self) -> &AtomicU32 {
            self.page.want()
        }
    }

    /// A subscriber's way to sleep until the writer publishes: a futex on the
    /// channel's generation word. The mapping is `MAP_SHARED`, and the futex is
    /// not `FUTEX_PRIVATE_FLAG`, so the kernel keys it by the shared page and a
    /// wake in one process reaches sleepers in every other. `FUTEX_WAIT` only
    /// reads the word, so it works on a read-only mapping. Before it sleeps, a
    /// subscriber says so in the channel's wake word (see [`WakeWord`]), which
    /// is what lets the publisher skip the system call when nobody sleeps.
    pub(crate) struct Wakeup {
        object: String,
        instance: u64,
        /// Opened when the subscriber opens the channel, or at a later sleep
        /// (a wake object that was missing then).
        word: std::sync::OnceLock<WakeWord>,
    }

    impl Wakeup {
        pub(crate) fn new(object: &str, _ns: Namespace, instance: u64) -> io::Result<Wakeup> {
            let wakeup = Wakeup {
                object: object.to_owned(),
                instance,
                word: std::sync::OnceLock::new(),
            };
            if let Some(word) = WakeWord::open(object, instance) {
                let _ = wakeup.word.set(word);
            }
            Ok(wakeup)
        }

        /// Sleeps while `word` still holds `expected`, at most `timeout`. The
        /// kernel compares atomically with wakes, so a publish between the
        /// caller's check and this call is never missed. Spurious returns are
        /// possible; callers re-check.
        ///
        /// The sleep is declared first ([`crate::os::declare`]: the wake
        /// word is raised to the generation slept on, and the generation read
        /// again, against the publisher's move of the generation and its read
        /// of the word: one of the two sees the other). Without a wake word
        /// (none yet, or none this user may write), it sleeps in slices of
        /// [`crate::os::UNDECLARED_SLICE`], looking for the word between them.
        pub(crate) fn wait(&self, word: &AtomicU32, expected: u32, timeout: std::time::Duration) {
            let started = std::time::Instant::now();
            loop {
                let wake = match self.word.get() {
                    Some(w) => Some(w),
                    None => WakeWord::open(&self.object, self.instance)
                        .map(|w| self.word.get_or_init(|| w)),
                };
                let left = timeout.saturating_sub(started.elapsed());
                // Declared, a sleep is cut to DECLARED_SLICE (a peer may have
                // scribbled the word since); without a word or not declared
                // (a peer keeps changing it), to UNDECLARED_SLICE.
                let slice = crate::os::sleep_slice(wake.map(WakeWord::want), word, expected);
                futex_wait(word, expected, left.min(slice));
                if word.load(Ordering::Relaxed) != expected || started.elapsed() >= timeout {
                    return;
                }
            }
        }
    }

    /// `FUTEX_WAIT` on `word` while it holds `expected`, at most `timeout`.
    fn futex_wait(word: &AtomicU32, expected: u32, timeout: std::time::Duration) {
        let ts = rustix::thread::futex::Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ = rustix::thread::futex::wait(
            word,
            rustix::thread::futex::Flags::empty(),
            expected,
            Some(&ts),
        );
    }

    /// The writer's side of [`Wakeup`]: the wake word, when it could be made
    /// (without it, every publish wakes, as before there was one).
    pub(crate) struct Wakers {
        word: Option<WakeWord>,
        object: String,
        instance: u64,
        mode: u32,
        /// A new channel's wake object is made once the publisher knows the
        /// channel is its own ([`Wakers::channel_is_new`]): made earlier, it
        /// could replace the word of a channel the publisher then takes over,
        /// whose sleepers declared their sleeps there.
        pending: bool,
        /// The generation the next publish moves the word to.
        next: u32,
    }

    impl Wakers {
        /// `fresh`: a new channel, whose wake object is made anew (by
        /// [`channel_is_new`](Wakers::channel_is_new)); otherwise (a take-over) the one of this instance is used
        /// if it is there, and made if not. `mode`: the channel's permission
        /// bits (whoever may read it may write the wake word).
        pub(crate) fn new(
            object: &str,
            _ns: Namespace,
            instance: u64,
            _sddl: Option<&str>,
            mode: u32,
            fresh: bool,
        ) -> Result<Wakers, OsError> {
            Ok(Wakers {
                word: (!fresh)
                    .then(|| WakeWord::create(object, instance, mode, false))
                    .flatten(),
                object: object.to_owned(),
                instance,
                mode,
                pending: fresh,
                next: 0,
            })
        }

        /// The channel these wakers were made for (`fresh`) is the
        /// publisher's new channel: its wake object is made now, replacing any
        /// stale one of this user's. (Subscribers that opened the channel in
        /// the meantime find it at their next slice.)
        pub(crate) fn channel_is_new(&mut self) {
            if std::mem::take(&mut self.pending) {
                self.word = WakeWord::create(&self.object, self.instance, self.mode, true);
            }
        }

        /// Called before the generation word moves on to `next`.
        pub(crate) fn before_publish(&mut self, next: u32) {
            self.next = next;
        }

        /// Wakes every subscriber sleeping on `word`, which just moved on, if
        /// any may sleep: one `FUTEX_WAKE` when the wake word names the
        /// generation the word moved past or the new one
        /// ([`crate::os::wanted`]), no system call otherwise.
        pub(crate) fn wake(&mut self, word: &AtomicU32) {
            if let Some(w) = &self.word {
                if !crate::os::wanted(crate::os::asked(w.want()), self.next.wrapping_sub(1)) {
                    return;
                }
            }
            self.wake_all(word);
        }

        /// Wakes every sleeper, whatever the wake word says (the publisher
        /// leaving).
        pub(crate) fn wake_all(&mut self, word: &AtomicU32) {
            let _ = rustix::thread::futex::wake(
                word,
                rustix::thread::futex::Flags::empty(),
                i32::MAX as u32,
            );
        }

        /// Removes the wake object's name (the publisher leaving its channel).
        pub(crate) fn remove_name(&self) {
            if let Some(w) = &self.word {
                w.page.map().unlink_if_same(&wake_object(&self.object));
            }
        }
    }
}

/// Containing SIGBUS from objects that another process truncated.
///
/// Every mapping registers its address range in a fixed table of atomics.
/// A process-wide `SIGBUS` handler looks the faulting address up there; when
/// it lies in one of our mappings, the handler maps anonymous zero pages
/// over the rest of that mapping (`MAP_FIXED`), marks the entry as hit and
/// returns, so the faulting access is retried and succeeds: reads see
/// zeros, writes land in private memory. The layers above check
/// [`Mapping::was_truncated`] and report an error naming the segment, where
/// the process would otherwise have died without a word. A fault anywhere
/// else goes to the handler that was installed before ours (Rust's own
/// stack-overflow handler, or the default action, which ends the process).
///
/// The handler does only what is safe in a signal handler: atomic loads and
/// stores, and one `mmap` system call.
///
/// Left out of loom builds, which model the protocols, never map anything,
/// and whose atomics cannot live in statics.
#[cfg(not(loom))]
mod sigbus {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
    use std::sync::{Once, OnceLock};

    use crate::seqlock;

    const ENTRIES: usize = 1024;
    /// The system's page size, read when the handler is installed (the
    /// handler itself may only load it): 4 KiB on x86-64, but 16 or 64 KiB
    /// on some arm64 and ppc64 kernels, where rounding to 4 KiB would hand
    /// `mmap` an address that is not page-aligned.
    static PAGE: AtomicUsize = AtomicUsize::new(0);

    static USED: [AtomicBool; ENTRIES] = [const { AtomicBool::new(false) }; ENTRIES];
    /// Per entry, the seqlock word over START and LEN, so the handler never
    /// pairs one mapping's start with another's length.
    static GEN: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
    static START: [AtomicUsize; ENTRIES] = [const { AtomicUsize::new(0) }; ENTRIES];
    static LEN: [AtomicUsize; ENTRIES] = [const { AtomicUsize::new(0) }; ENTRIES];
    static HIT: [AtomicBool; ENTRIES] = [const { AtomicBool::new(false) }; ENTRIES];
    static INSTALL: Once = Once::new();
    /// The handler before ours; set before ours is installed.
    static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

    /// Registers `start..start + len`; `None` when the table is full (that
    /// mapping is then not guarded: a truncation kills as before).
    pub(super) fn register(start: usize, len: usize) -> Option<usize> {
        INSTALL.call_once(install);
        let entry = (0..ENTRIES).find(|&i| {
            USED[i]
                .compare_exchange(false, true, AcqRel, Relaxed)
                .is_ok()
        })?;
        let begun = seqlock::write_begin(&GEN[entry]);
        HIT[entry].store(false, Relaxed);
        START[entry].store(start, Relaxed);
        LEN[entry].store(len, Relaxed);
        seqlock::write_end(&GEN[entry], begun);
        Some(entry)
    }

    pub(super) fn unregister(entry: usize) {
        let begun = seqlock::write_begin(&GEN[entry]);
        LEN[entry].store(0, Relaxed);
        seqlock::write_end(&GEN[entry], begun);
        USED[entry].store(false, Release);
    }

    pub(super) fn was_hit(entry: usize) -> bool {
        HIT[entry].load(Acquire)
    }

    /// The range of entry `i`, read consistently; `None` while it changes
    /// or when it is free.
    fn range(i: usize) -> Option<(usize, usize)> {
        let before = seqlock::read_begin(&GEN[i]);
        let (start, len) = (START[i].load(Relaxed), LEN[i].load(Relaxed));
        let stable = !seqlock::is_writing(before) && seqlock::read_valid(&GEN[i], before);
        (stable && len != 0).then_some((start, len))
    }

    fn install() {
        PAGE.store(rustix::param::page_size(), Relaxed);
        // SAFETY: a zeroed sigaction (plain integers and pointers) is a
        // valid value to overwrite.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action makes `sigaction` only report the
        // current one, into `previous`.
        unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) };
        let _ = PREVIOUS.set(previous);
        // SAFETY: as above, a zeroed sigaction is a valid value.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = handler as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        // SAFETY: `sa_mask` is a valid sigset_t to clear.
        unsafe { libc::sigemptyset(&mut ours.sa_mask) };
        // SAFETY: `handler` has the SA_SIGINFO signature; `sigaction` reads
        // `ours` only.
        unsafe { libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) };
    }

    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let info_ref = unsafe { &*info };
        // SAFETY: for SIGBUS the kernel fills in the faulting address.
        let addr = unsafe { info_ref.si_addr() } as usize;
        for (i, hit) in HIT.iter().enumerate() {
            let Some((start, len)) = range(i) else {
                continue;
            };
            if addr < start || addr - start >= len {
                continue;
            }
            // The faulting thread is using mapping `i`, so it stays mapped
            // while we run; we change what its tail holds, not whether it
            // is mapped, and shared memory is only read racily anyway.
            let page = addr & !(PAGE.load(Relaxed).max(1) - 1);
            // SAFETY: `page..start + len` lies inside mapping `i` (above).
            let remapped = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    start + len - page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if remapped != libc::MAP_FAILED {
                hit.store(true, Release);
                return;
            }
            break;
        }
        // Not ours: hand over to whoever handled SIGBUS before us.
        match PREVIOUS.get().copied() {
            Some(prev) if prev.sa_flags & libc::SA_SIGINFO != 0 && prev.sa_sigaction > 1 => {
                // SAFETY: installed with SA_SIGINFO, so it has this signature.
                unsafe {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(prev.sa_sigaction);
                    f(sig, info, ctx);
                }
            }
            Some(prev) if prev.sa_sigaction > 1 => {
                // SAFETY: a plain handler installed without SA_SIGINFO.
                unsafe {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
                    f(sig);
                }
            }
            _ => {
                // SIG_DFL or SIG_IGN: restore the default and return; the
                // access faults again and the process ends as it would have.
                // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
                let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
                dfl.sa_sigaction = libc::SIG_DFL;
                // SAFETY: `dfl` is a valid action; sigaction only reads it.
                unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
            }
        }
    }
}

/// The guard's stand-in in loom builds (see `sigbus`): nothing registered,
/// nothing hit.
#[cfg(loom)]
mod sigbus {
    pub(super) fn register(_start: usize, _len: usize) -> Option<usize> {
        None
    }

    pub(super) fn unregister(_entry: usize) {}

    pub(super) fn was_hit(_entry: usize) -> bool {
        false
    }
}
