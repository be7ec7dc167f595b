//! Linux: POSIX shared memory objects under `/dev/shm`.
//!
//! The only file besides `windows.rs` that calls the OS. Both define the same
//! `Mapping` type and free functions; the portable code never sees a
//! platform call.
//!
//! Lifetime: a `/dev/shm` object lives until it is unlinked, whether or not
//! any process maps it. The segment layer unlinks on its creator's drop (see
//! `Segment`), and `clean` removes what crashed creators left behind.

use std::ffi::c_void;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::{self, NonNull};

use rustix::fs::{FallocateFlags, Mode};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

use super::OsError;
use crate::name::{Namespace, OBJECT_PREFIX};

/// Where POSIX shared memory lives on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// A mapped shared memory object.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
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
}

fn shm_path(object: &str) -> String {
    format!("/{object}")
}

impl Mapping {
    /// Creates a new object of `size` bytes, fails if it exists. The memory is
    /// reserved (`fallocate`) before it is mapped, so a full `/dev/shm` is an
    /// error here and never a SIGBUS later.
    pub(crate) fn create(object: &str, size: usize, spec: &CreateSpec) -> Result<Mapping, OsError> {
        let path = shm_path(object);
        let mode = Mode::from_bits_truncate(spec.mode);
        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
        let fd = shm::open(&path, flags, mode).map_err(|e| OsError::new("shm_open", e.into()))?;
        let built = (|| {
            // shm_open applies the umask; set the mode the caller asked for.
            rustix::fs::fchmod(&fd, mode).map_err(|e| OsError::new("fchmod", e.into()))?;
            rustix::fs::ftruncate(&fd, size as u64)
                .map_err(|e| OsError::new("ftruncate", e.into()))?;
            reserve(&fd, size)?;
            map(fd, size, true)
        })();
        if built.is_err() {
            let _ = shm::unlink(&path);
        }
        built
    }

    /// Opens an existing object; its size comes from `fstat`.
    pub(crate) fn open(object: &str, _ns: Namespace, writable: bool) -> Result<Mapping, OsError> {
        let flags = if writable {
            shm::OFlags::RDWR
        } else {
            shm::OFlags::RDONLY
        };
        let fd = shm::open(shm_path(object), flags, Mode::empty())
            .map_err(|e| OsError::new("shm_open", e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| OsError::new("fstat", e.into()))?;
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        if len == 0 {
            // mmap refuses zero lengths; an empty object is reported by the
            // caller as "not initialised", from this zero length.
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
                fd,
            });
        }
        map(fd, len, writable)
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
            rustix::fs::stat(format!("{SHM_DIR}/{object}")),
        ) {
            (Ok(ours), Ok(theirs)) => ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino,
            _ => false,
        }
    }

    /// Removes the name, but only if it still names this very object (the
    /// name may have been taken over since, and that segment is not ours).
    pub(crate) fn unlink_if_same(&self, object: &str) {
        if self.is_named(object) {
            let _ = shm::unlink(shm_path(object));
        }
    }

    /// Takes an exclusive `flock` on the object: processes that judge a
    /// segment and then act on its name (remove a stale one, adopt a dead
    /// publisher's channel, give one up) hold it across both steps, so no
    /// one acts on a judgement another has made stale in between. Held for
    /// a few system calls at a time; the kernel drops it if the holder dies.
    pub(crate) fn lock_name(&self) {
        let _ = rustix::fs::flock(&self.fd, rustix::fs::FlockOperation::LockExclusive);
    }

    pub(crate) fn unlock_name(&self) {
        let _ = rustix::fs::flock(&self.fd, rustix::fs::FlockOperation::Unlock);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
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
    Ok(Mapping { ptr, len, fd })
}

/// Removes the object's name. Processes that have it mapped keep their
/// mapping; the memory is freed when the last one unmaps.
pub(crate) fn unlink(object: &str) -> io::Result<()> {
    shm::unlink(shm_path(object)).map_err(Into::into)
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
pub(crate) fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        // /proc may hide other users' processes (hidepid=2): only the
        // kernel's "no such process" from kill(pid, 0) means dead.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let exists = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .map(rustix::process::test_kill_process);
            return match exists {
                None | Some(Err(Errno::SRCH)) => Ok(None),
                // Alive (or not ours to signal): its start time is unknown.
                Some(_) => Err(io::Error::other("process not visible in /proc")),
            };
        }
        Err(e) => return Err(e),
    };
    // The command name (field 2) is in parentheses and may hold anything,
    // spaces and ')' included, so count fields from the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; field 22 the start time, 19 fields later.
    let state = fields.next().unwrap_or("");
    if state == "Z" || state == "X" {
        return Ok(None);
    }
    fields
        .nth(18)
        .and_then(|f| f.parse().ok())
        .map(Some)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))
}

/// Whether an OS error means the memory could not be reserved.
pub(crate) fn is_out_of_space(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::OutOfMemory
    )
}

/// How long ago the object was last modified (for unfinished creations).
pub(crate) fn object_age(object: &str) -> Option<std::time::Duration> {
    let modified = std::fs::metadata(format!("{SHM_DIR}/{object}"))
        .ok()?
        .modified()
        .ok()?;
    modified.elapsed().ok()
}

/// A subscriber's way to sleep until the writer publishes: a futex on the
/// channel's generation word. The mapping is `MAP_SHARED`, and the futex is
/// not `FUTEX_PRIVATE_FLAG`, so the kernel keys it by the shared page and a
/// wake in one process reaches sleepers in every other.
pub(crate) struct Wakeup;

impl Wakeup {
    pub(crate) fn new(_object: &str, _ns: Namespace, _entry: usize) -> io::Result<Wakeup> {
        Ok(Wakeup)
    }

    /// Sleeps while `word` still holds `expected`, at most `timeout`. The
    /// kernel compares atomically with wakes, so a publish between the
    /// caller's check and this call is never missed. Spurious returns are
    /// possible; callers re-check.
    pub(crate) fn wait(
        &self,
        word: &std::sync::atomic::AtomicU32,
        expected: u32,
        timeout: std::time::Duration,
    ) {
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
}

/// The writer's side of [`Wakeup`].
pub(crate) struct Wakers;

impl Wakers {
    pub(crate) fn new(
        _object: &str,
        _ns: Namespace,
        _entries: usize,
        _sddl: Option<&str>,
    ) -> Wakers {
        Wakers
    }

    /// Wakes every subscriber sleeping on `word`.
    pub(crate) fn wake(
        &mut self,
        word: &std::sync::atomic::AtomicU32,
        _entries: impl Iterator<Item = usize>,
    ) {
        let _ = rustix::thread::futex::wake(
            word,
            rustix::thread::futex::Flags::empty(),
            i32::MAX as u32,
        );
    }
}
