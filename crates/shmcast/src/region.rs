//! Raw regions: one named block of bytes, shared by any number of processes,
//! with a cross-process reader-writer lock that a crash cannot wedge.
//!
//! ```
//! use shmcast::Region;
//! # let name = format!("doc-region-{}", std::process::id());
//! let region = Region::create(&name, 4096)?;          // creator, read-write
//! region.write(0, b"hello")?;                          // takes the write lock
//!
//! let reader = Region::open_read_only(&name)?;        // any other process
//! let mut buf = [0u8; 5];
//! reader.read(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `read` and `write` lock for the duration of one copy. For longer work in
//! place, [`Region::write_lock`] and [`Region::read_lock`] return guards
//! that read and write at offsets and show the bytes as [`SharedBytes`]:
//! the lock binds only processes that take it, and any process allowed to
//! write the region can write it without, so the guards hand out no `&[u8]`
//! (a slice is `SharedBytes::as_slice`, on the caller's promise). A
//! read-only open cannot take locks (it may not write the lock words, and
//! the OS enforces that), so its reads are seqlock copies: they retry while
//! a writer is active and never return a mix.
//!
//! The lock's holders are recorded by process identity; see [`crate::lock`]
//! for how a lock held by a dead process is recovered.

use std::time::{Duration, Instant};

use crate::copy::{copy_from_shared, SharedBytes};
use crate::error::{Error, ErrorKind};
use crate::header::{Kind, COMMON_LEN};
use crate::housekeeping::SegmentInfo;
use crate::identity::{Holder, ProcessId};
use crate::lock::{Blocker, LockWords, READER_SLOTS};
use crate::name::{IntoName, Name};
use crate::segment::{CreateOptions, Segment};

/// How long [`Region::read`] and [`Region::write`] wait for the lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A named shared byte region.
pub struct Region {
    seg: Segment,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name().to_string())
            .field("len", &self.len())
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

impl Region {
    /// Creates a region of `size` bytes, zero-filled, with default options.
    ///
    /// # Errors
    /// [`Error`]: the name is taken, the memory cannot be reserved,
    /// the OS refuses.
    pub fn create<N>(name: N, size: usize) -> Result<Region, Error>
    where
        N: IntoName,
    {
        Region::create_with(name, size, &CreateOptions::default())
    }

    /// Creates a region of `size` bytes with `options`.
    ///
    /// # Errors
    /// As [`Region::create`], and a bad security descriptor.
    pub fn create_with<N>(name: N, size: usize, options: &CreateOptions) -> Result<Region, Error>
    where
        N: IntoName,
    {
        // The lock words start zeroed, which is "unlocked": nothing to init.
        let seg = Segment::create(name.into_name()?, Kind::Region, size, options, |_| {})?;
        Ok(Region { seg })
    }

    /// Opens an existing region for reading and writing.
    ///
    /// # Errors
    /// [`Error`]: no such name, not a region, a header that fails
    /// validation, no permission.
    pub fn open<N>(name: N) -> Result<Region, Error>
    where
        N: IntoName,
    {
        Ok(Region {
            seg: Segment::open(name.into_name()?, Some(Kind::Region), true)?,
        })
    }

    /// Opens an existing region read-only. The memory is mapped read-only
    /// by the OS: writing through it faults.
    ///
    /// # Errors
    /// As [`Region::open`].
    pub fn open_read_only<N>(name: N) -> Result<Region, Error>
    where
        N: IntoName,
    {
        Ok(Region {
            seg: Segment::open(name.into_name()?, Some(Kind::Region), false)?,
        })
    }

    /// The region's name.
    pub fn name(&self) -> &Name {
        self.seg.name()
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.seg.layout().data_len
    }

    /// Always `false`: regions have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        !self.seg.is_writable()
    }

    /// What the header says: creator, sizes, creation time.
    pub fn info(&self) -> SegmentInfo {
        SegmentInfo::of(&self.seg)
    }

    /// The first byte of the region. Reading or writing through it bypasses
    /// the lock; writing through a read-only open faults.
    pub fn as_ptr(&self) -> *const u8 {
        self.seg.data_ptr()
    }

    fn lock_words(&self) -> &LockWords {
        // SAFETY: the lock words sit right after the common header in the
        // header page, which a valid layout guarantees is mapped; they are
        // atomics, valid for any bit pattern, and live as long as `self`.
        unsafe {
            &*self
                .seg
                .header_ptr()
                .wrapping_add(COMMON_LEN)
                .cast::<LockWords>()
        }
    }

    /// The data bytes.
    fn bytes(&self) -> SharedBytes<'_> {
        // SAFETY: the data is mapped for `len` bytes while `self` lives.
        unsafe { SharedBytes::new(self.seg.data_ptr(), self.len()) }
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`, with no lock.
    fn copy_out(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.check_range(offset, buf.len())?;
        if let Some(src) = self.bytes().get(offset..offset + buf.len()) {
            src.copy_to(buf);
        }
        Ok(())
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::OutOfBounds,
                format!(
                    "region {}: {len} bytes at offset {offset} do not fit in its {} bytes; nothing was written or read",
                    self.name(),
                    self.len()
                ),
            )
            .on(self.name())),
        }
    }

    fn check_writable(&self) -> Result<(), Error> {
        if self.is_read_only() {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "region {} is open read-only; open it read-write to write or lock it",
                    self.name()
                ),
            )
            .on(self.name()));
        }
        Ok(())
    }

    fn timeout(&self, wanted: &'static str, blocker: Blocker, waited: Duration) -> Error {
        let (holder, pid) = match blocker {
            Blocker::Writer(pid) => (format!("pid {pid} (writing)"), Some(pid)),
            Blocker::Reader(pid) => (format!("pid {pid} (reading)"), Some(pid)),
            Blocker::ReadersFull => (
                format!("{READER_SLOTS} readers (the reader table is full)"),
                None,
            ),
        };
        let e = Error::new(
            ErrorKind::Timeout,
            format!(
                "region {}: the {wanted} lock is held by {holder}; gave up after {waited:?}",
                self.name()
            ),
        )
        .on(self.name());
        match pid {
            Some(pid) => e.with_pid(pid),
            None => e,
        }
    }

    /// Copies `data` into the region at `offset`, under the write lock.
    /// When it does not fit, nothing is written.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfBounds`], [`ErrorKind::ReadOnly`], or
    /// [`ErrorKind::Timeout`] after [`DEFAULT_LOCK_TIMEOUT`].
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.check_range(offset, data.len())?;
        self.write_lock(DEFAULT_LOCK_TIMEOUT)?.write(offset, data)
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`: under the read lock
    /// on a read-write open, as a seqlock copy on a read-only one.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfBounds`]; [`ErrorKind::Timeout`] after
    /// [`DEFAULT_LOCK_TIMEOUT`]; [`ErrorKind::Torn`] when the last writer
    /// died mid-write.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.check_range(offset, buf.len())?;
        let torn = if self.is_read_only() {
            let started = Instant::now();
            let src = self.seg.data_ptr().wrapping_add(offset);
            self.lock_words()
                .read_consistent(started + DEFAULT_LOCK_TIMEOUT, || {
                    // SAFETY: the range was checked to lie inside the data,
                    // which stays mapped while `self` lives; racing writers
                    // are what `copy_from_shared` is for.
                    unsafe { copy_from_shared(src, buf) }
                })
                .map_err(|b| self.timeout("read", b, started.elapsed()))?
        } else {
            let guard = self.read_lock(DEFAULT_LOCK_TIMEOUT)?;
            guard.read(offset, buf)?;
            guard.is_torn()
        };
        if torn {
            return Err(Error::new(
                ErrorKind::Torn,
                format!("region {} was left half-written by a writer that died; the next completed write repairs it", self.name()),
            )
            .on(self.name()));
        }
        Ok(())
    }

    /// The whole region, copied into a new `Vec`.
    ///
    /// # Errors
    /// As [`Region::read`].
    pub fn read_to_vec(&self) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; self.len()];
        self.read(0, &mut v)?;
        Ok(v)
    }

    /// Takes the write lock, waiting up to `timeout`. A lock held by a dead
    /// process is taken over (see [`WriteGuard::recovered_from`]).
    ///
    /// # Errors
    /// [`ErrorKind::ReadOnly`]; [`ErrorKind::Timeout`] naming the holder.
    pub fn write_lock(&self, timeout: Duration) -> Result<WriteGuard<'_>, Error> {
        self.check_writable()?;
        let started = Instant::now();
        let held = self
            .lock_words()
            .lock_write(ProcessId::current().token(), deadline(started, timeout))
            .map_err(|b| self.timeout("write", b, started.elapsed()))?;
        Ok(WriteGuard {
            region: self,
            recovered_from: held.recovered_from,
            torn: held.torn,
        })
    }

    /// Takes the write lock if it is free now (or held by a dead process).
    ///
    /// # Errors
    /// As [`Region::write_lock`].
    pub fn try_write_lock(&self) -> Result<WriteGuard<'_>, Error> {
        self.write_lock(Duration::ZERO)
    }

    /// Takes a read lock, waiting up to `timeout`. Any number of processes
    /// (up to [`READER_SLOTS`] locks at once) may read together.
    ///
    /// # Errors
    /// [`ErrorKind::ReadOnly`] (read-only opens use [`Region::read`]);
    /// [`ErrorKind::Timeout`] naming the holder.
    pub fn read_lock(&self, timeout: Duration) -> Result<ReadGuard<'_>, Error> {
        self.check_writable()?;
        let started = Instant::now();
        let held = self
            .lock_words()
            .lock_read(ProcessId::current().token(), deadline(started, timeout))
            .map_err(|b| self.timeout("read", b, started.elapsed()))?;
        Ok(ReadGuard {
            region: self,
            slot: held.slot,
            torn: held.torn,
        })
    }

    /// Takes a read lock if one is available now.
    ///
    /// # Errors
    /// As [`Region::read_lock`].
    pub fn try_read_lock(&self) -> Result<ReadGuard<'_>, Error> {
        self.read_lock(Duration::ZERO)
    }

    /// Who holds the lock right now, and whether they still run.
    pub fn lock_state(&self) -> LockState {
        let holders = self.lock_words().holders();
        LockState {
            writer: holders.writer.map(Holder::of_token),
            readers: holders.readers.into_iter().map(Holder::of_token).collect(),
            torn: holders.torn,
        }
    }
}

/// `started + timeout`, or a day from now for timeouts too large to add.
fn deadline(started: Instant, timeout: Duration) -> Instant {
    started
        .checked_add(timeout)
        .unwrap_or_else(|| started + Duration::from_secs(86_400))
}

/// A snapshot of a region's lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// The write-lock holder.
    pub writer: Option<Holder>,
    /// The read-lock holders (one entry per lock held).
    pub readers: Vec<Holder>,
    /// The last writer died mid-write and nobody has written since.
    pub torn: bool,
}

/// The write lock: reads and writes the whole region at offsets. Released
/// on drop.
pub struct WriteGuard<'a> {
    region: &'a Region,
    recovered_from: Option<u32>,
    torn: bool,
}

impl std::fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard")
            .field("region", &self.region.name().to_string())
            .field("recovered_from", &self.recovered_from)
            .field("torn", &self.torn)
            .finish()
    }
}

impl WriteGuard<'_> {
    /// The PID of a dead process whose lock this one took over.
    pub fn recovered_from(&self) -> Option<u32> {
        self.recovered_from
    }

    /// Whether the previous writer died mid-write, so that what it was
    /// writing may be partial. Dropping this guard clears the flag.
    pub fn was_torn(&self) -> bool {
        self.torn
    }
}

impl WriteGuard<'_> {
    /// Copies `data` into the region at `offset`.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfBounds`] when it does not fit (nothing is
    /// written).
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.region.check_range(offset, data.len())?;
        // The destination is shared memory, never a Rust reference: a
        // process writing it without the lock races only tolerant copies.
        // SAFETY: in range (checked), mapped writable while the region lives.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.region.seg.data_ptr().wrapping_add(offset),
                data.len(),
            )
        };
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfBounds`].
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.region.copy_out(offset, buf)
    }

    /// The whole region where it lies in shared memory.
    pub fn bytes(&self) -> SharedBytes<'_> {
        self.region.bytes()
    }

    /// Where the region's bytes start, for writing through raw pointers.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.region.seg.data_ptr()
    }

    /// The whole region as a mutable slice, without a copy.
    ///
    /// # Safety
    /// No other process or thread may read or write the region while the
    /// slice lives except through this lock's protocol: every writer takes
    /// the write lock, and readers take read locks or seqlock copies. The
    /// lock binds only the processes that take it.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: mapped writable for `len` bytes while the region lives;
        // `&mut self` makes this the only borrow in this process, and the
        // caller promises the rest.
        unsafe { std::slice::from_raw_parts_mut(self.region.seg.data_ptr(), self.region.len()) }
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.region
            .lock_words()
            .unlock_write(ProcessId::current().token());
    }
}

/// A read lock: reads the whole region at offsets. Released on drop.
pub struct ReadGuard<'a> {
    region: &'a Region,
    slot: usize,
    torn: bool,
}

impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("region", &self.region.name().to_string())
            .field("torn", &self.torn)
            .finish()
    }
}

impl ReadGuard<'_> {
    /// Whether the last writer died mid-write, so the data may be partial.
    pub fn is_torn(&self) -> bool {
        self.torn
    }
}

impl ReadGuard<'_> {
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfBounds`].
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.region.copy_out(offset, buf)
    }

    /// The whole region where it lies in shared memory. The read lock
    /// keeps out writers that take the lock; see [`SharedBytes::as_slice`]
    /// for borrowing it without a copy.
    pub fn bytes(&self) -> SharedBytes<'_> {
        self.region.bytes()
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.region
            .lock_words()
            .unlock_read(self.slot, ProcessId::current().token());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "t-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[test]
    fn write_then_read_back_through_another_open() {
        let name = unique("rw");
        let r = Region::create(&name, 10_000).unwrap();
        assert_eq!(r.len(), 10_000);
        r.write(9_990, b"0123456789").unwrap();
        let other = Region::open(&name).unwrap();
        let mut buf = [0u8; 10];
        other.read(9_990, &mut buf).unwrap();
        assert_eq!(&buf, b"0123456789");
        let ro = Region::open_read_only(&name).unwrap();
        assert_eq!(&ro.read_to_vec().unwrap()[9_990..], b"0123456789");
        assert_eq!(ro.info().creator, ProcessId::current());
    }

    #[test]
    fn a_write_that_does_not_fit_writes_nothing() {
        let name = unique("oob");
        let r = Region::create(&name, 16).unwrap();
        r.write(0, &[7; 16]).unwrap();
        for (offset, len) in [(0, 17), (1, 16), (16, 1), (usize::MAX, 2)] {
            let err = r.write(offset, &vec![1; len]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
        }
        assert_eq!(r.read_to_vec().unwrap(), vec![7; 16]);
        r.write(16, &[]).unwrap();
    }

    #[test]
    fn read_only_open_refuses_writes_and_locks() {
        let name = unique("ro");
        let _r = Region::create(&name, 64).unwrap();
        let ro = Region::open_read_only(&name).unwrap();
        assert_eq!(ro.write(0, b"x").unwrap_err().kind(), ErrorKind::ReadOnly);
        assert_eq!(ro.try_read_lock().unwrap_err().kind(), ErrorKind::ReadOnly);
    }

    #[test]
    fn read_only_read_waits_for_the_writer() {
        let name = unique("seq");
        let r = Region::create(&name, 64).unwrap();
        let ro = Region::open_read_only(&name).unwrap();
        let guard = r.try_write_lock().unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                drop(guard);
            });
            ro.read_to_vec().unwrap();
        });
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn guards_show_in_lock_state_and_block_each_other() {
        let name = unique("state");
        let r = Region::create(&name, 64).unwrap();
        {
            let mut w = r.try_write_lock().unwrap();
            w.write(0, &[1]).unwrap();
            assert!(w.write(64, &[1]).is_err(), "past the end");
            let state = r.lock_state();
            let me = std::process::id();
            assert_eq!(
                state.writer,
                Some(Holder {
                    pid: me,
                    alive: true
                })
            );
            let err = r.try_read_lock().unwrap_err();
            assert!(
                err.to_string().contains(&format!("pid {me} (writing)")),
                "{err}"
            );
        }
        let a = r.try_read_lock().unwrap();
        let b = r.try_read_lock().unwrap();
        let (mut x, mut y) = ([0u8; 1], [0u8; 1]);
        a.read(0, &mut x).unwrap();
        b.read(0, &mut y).unwrap();
        assert_eq!(x[0] + y[0], 2);
        assert_eq!(a.bytes().to_vec()[0], 1);
        assert_eq!(r.lock_state().readers.len(), 2);
        assert!(r.try_write_lock().is_err());
        drop((a, b));
        assert!(r.try_write_lock().is_ok());
    }

    #[test]
    fn open_errors_name_the_problem() {
        let missing = unique("missing");
        assert_eq!(
            Region::open(&missing).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            Region::open("bad/name").unwrap_err().kind(),
            ErrorKind::InvalidName
        );
        let name = unique("dup");
        let _r = Region::create(&name, 8).unwrap();
        let err = Region::create(&name, 8).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        assert_eq!(err.pid(), Some(std::process::id()), "{err}");
        assert!(err.to_string().contains("still holds"), "{err}");
        assert_eq!(
            Region::create(unique("zero"), 0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn the_creator_removes_its_segment_on_drop() {
        let name = unique("drop");
        drop(Region::create(&name, 8).unwrap());
        if cfg!(unix) {
            assert_eq!(Region::open(&name).unwrap_err().kind(), ErrorKind::NotFound);
        }
        let kept = Region::create_with(&name, 8, &CreateOptions::new().persist(true)).unwrap();
        drop(kept);
        if cfg!(unix) {
            assert!(Region::open(&name).is_ok());
            crate::housekeeping::remove(&name).unwrap();
        }
    }
}
