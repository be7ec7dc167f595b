//! `shmcast._shmcast`: the Python binding (re-exported by the `shmcast`
//! package, whose `__init__.pyi` is the API's reference).
//!
//! - Frames in place: a `Lease` implements the buffer protocol over the
//!   frame in shared memory, read-only, so `np.frombuffer(lease, np.uint8)`
//!   copies nothing; views keep it alive, and `release()` while views are
//!   exported raises `BufferError`, as `mmap` does. A `Loan` is the same,
//!   writable, for a publisher.
//! - A lease is bounded: one that keeps the publisher from every free slot
//!   for longer than the channel's max lease is revoked and its slot
//!   rewritten while views of it may still exist. Python's views are raw
//!   memory (like `mmap`'s), so that is no undefined behaviour here; the
//!   contract is the library's: what was read counts only if `release()`
//!   does not raise `Revoked`.
//! - Blocking calls (`wait`, a copy into a caller's buffer, opening with a
//!   timeout) release the GIL.
//! - Every object may be used from any thread; a subscriber lets one
//!   thread wait while another reads or leases.

use std::ffi::c_int;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBufferError, PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{create_exception, ffi};

use shmcast as core;

create_exception!(
    shmcast,
    Error,
    PyException,
    "Any shmcast failure; the message says what failed, on which segment, and what to do."
);
create_exception!(
    shmcast,
    NotFound,
    Error,
    "No segment or channel has this name."
);
create_exception!(
    shmcast,
    Timeout,
    Error,
    "Nothing happened in time: no frame, no channel."
);
create_exception!(
    shmcast,
    WriterAlive,
    Error,
    "Another live process publishes on this channel."
);
create_exception!(shmcast, AlreadyExists, Error, "The name is taken.");
create_exception!(
    shmcast,
    Truncated,
    Error,
    "Another process truncated the shared memory: nothing more comes through it."
);
create_exception!(
    shmcast,
    PermissionDenied,
    Error,
    "The OS refused access; the creator must grant it."
);
create_exception!(
    shmcast,
    InvalidName,
    Error,
    "The name breaks the naming rule."
);
create_exception!(
    shmcast,
    Revoked,
    Error,
    "The publisher revoked a lease: discard what was read through it."
);
create_exception!(
    shmcast,
    AllSlotsLeased,
    Error,
    "Subscribers lease every free slot: the frame was dropped."
);
create_exception!(
    shmcast,
    TooLarge,
    Error,
    "The frame is larger than the channel's slots."
);
create_exception!(
    shmcast,
    BufferTooSmall,
    Error,
    "The buffer is smaller than the frame."
);
create_exception!(
    shmcast,
    NotLeasing,
    Error,
    "Leasing needs a subscriber opened with leasing=True."
);

/// Turns a library error into the Python exception a caller acts on: the
/// one place the exceptions come from, by the error's kind.
trait IntoPyErr {
    fn py(self) -> PyErr;
}

impl IntoPyErr for core::Error {
    fn py(self) -> PyErr {
        use core::ErrorKind as K;
        let mut m = self.to_string();
        match self.kind() {
            K::InvalidName => InvalidName::new_err(m),
            K::NotFound => NotFound::new_err(m),
            K::AlreadyExists => AlreadyExists::new_err(m),
            K::PermissionDenied => PermissionDenied::new_err(m),
            K::WriterAlive => WriterAlive::new_err(m),
            K::Timeout => Timeout::new_err(m),
            K::Revoked => Revoked::new_err(m),
            K::Truncated => Truncated::new_err(m),
            K::AllSlotsLeased => AllSlotsLeased::new_err(m),
            K::TooLarge => TooLarge::new_err(m),
            K::BufferTooSmall => BufferTooSmall::new_err(m),
            K::NotLeasing => {
                // What to do, in Python's words (the library names no API).
                m.push_str(" (open the Subscriber with leasing=True)");
                NotLeasing::new_err(m)
            }
            K::InvalidArgument | K::OutOfBounds => PyValueError::new_err(m),
            _ => Error::new_err(m),
        }
    }
}

fn closed(what: &str) -> PyErr {
    PyValueError::new_err(format!("this {what} is closed"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds (None: no limit) as a Duration.
fn seconds(timeout: Option<f64>) -> PyResult<Duration> {
    match timeout {
        None => Ok(Duration::MAX),
        Some(s) if s.is_nan() || s < 0.0 => Err(PyValueError::new_err(format!(
            "a timeout of {s} seconds is impossible; give 0 or more, or None to wait without limit"
        ))),
        Some(s) => Ok(Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)),
    }
}

/// A frame's number and metadata.
#[pyclass(module = "shmcast", frozen)]
#[derive(Clone)]
struct FrameInfo {
    /// 1 for the channel's first frame, one more per frame.
    #[pyo3(get)]
    number: u64,
    /// Payload bytes.
    #[pyo3(get)]
    len: usize,
    #[pyo3(get)]
    width: u32,
    #[pyo3(get)]
    height: u32,
    /// Bytes per row of the first plane.
    #[pyo3(get)]
    stride: u32,
    /// The pixel format's name: raw, rgb24, bgr24, rgba, bgra, gray8, yuyv, nv12, i420.
    #[pyo3(get)]
    format: String,
    /// Capture time, nanoseconds since the Unix epoch.
    #[pyo3(get)]
    timestamp_ns: u64,
    /// Bytes of per-frame metadata the frame carries.
    #[pyo3(get)]
    metadata_len: usize,
    /// The metadata itself, copied with the frame under the same check.
    metadata: Arc<[u8]>,
}

#[pymethods]
impl FrameInfo {
    /// The frame's per-frame metadata (empty when it has none), copied
    /// with the frame under the same check: never another frame's. (From a
    /// Lease, trust it only if `release()` raises nothing, as its pixels.)
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.metadata)
    }

    fn __repr__(&self) -> String {
        format!(
            "FrameInfo(number={}, len={}, width={}, height={}, stride={}, format={:?}, timestamp_ns={}, metadata_len={})",
            self.number,
            self.len,
            self.width,
            self.height,
            self.stride,
            self.format,
            self.timestamp_ns,
            self.metadata_len
        )
    }
}

impl FrameInfo {
    /// The core's frame info with the frame's metadata, as read with it.
    fn new(i: &core::FrameInfo, metadata: &[u8]) -> FrameInfo {
        FrameInfo {
            number: i.number,
            len: i.len,
            width: i.meta.width,
            height: i.meta.height,
            stride: i.meta.stride,
            format: i.meta.format.name().to_owned(),
            timestamp_ns: i.meta.timestamp_ns,
            metadata_len: i.metadata_len,
            metadata: metadata.into(),
        }
    }
}

fn frame_meta(
    width: u32,
    height: u32,
    format: &str,
    stride: u32,
    timestamp_ns: u64,
) -> PyResult<core::FrameMeta> {
    let format =
        core::PixelFormat::from_str(format).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut meta = core::FrameMeta::new(width, height, format);
    if stride != 0 {
        meta.stride = stride;
    }
    meta.timestamp_ns = timestamp_ns;
    Ok(meta)
}

/// Fills a buffer-protocol view over `len` bytes at `ptr`, owned by
/// `owner`.
///
/// # Safety
/// `view` must be the view Python passed to `__getbuffer__`; the memory
/// must stay valid while `owner` has the view exported.
unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    ptr: *mut u8,
    len: usize,
    writable: bool,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("no view to fill"));
    }
    if !writable && flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
        return Err(PyBufferError::new_err(
            "a leased frame is read-only (it is the publisher's memory)",
        ));
    }
    // SAFETY: `view` is the caller's valid Py_buffer; the fields point into
    // itself (shape, strides) or at static data (format), as the protocol
    // allows; `obj` takes a reference to `owner`, which keeps the memory.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = ptr.cast();
        (*view).len = len as isize;
        (*view).readonly = c_int::from(!writable);
        (*view).itemsize = 1;
        (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
            c"B".as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = 1;
        (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
            &mut (*view).len
        } else {
            std::ptr::null_mut()
        };
        (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
            &mut (*view).itemsize
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
    }
    Ok(())
}

/// A caller's buffer as plain bytes: bytes, bytearray, memoryview, a numpy
/// array of any dtype, anything with the buffer protocol that is
/// C-contiguous (`PyBUF_SIMPLE`: no format check, so a uint16 depth image is
/// its bytes). Released when dropped.
struct Bytes {
    view: ffi::Py_buffer,
}

impl Bytes {
    fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Bytes> {
        let flags = if writable {
            ffi::PyBUF_SIMPLE | ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        // SAFETY: an all-zero Py_buffer is what PyObject_GetBuffer fills.
        let mut view: ffi::Py_buffer = unsafe { std::mem::zeroed() };
        // SAFETY: `obj` is a live object (we hold the GIL); on success the
        // view is ours to release, which `Drop` does.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, flags) } != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Bytes { view })
    }

    fn ptr(&self) -> *mut u8 {
        self.view.buf.cast()
    }

    fn len(&self) -> usize {
        usize::try_from(self.view.len).unwrap_or(0)
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        // SAFETY: the view came from a successful PyObject_GetBuffer; the
        // GIL is held wherever a `Bytes` lives (it is never sent across a
        // `detach`: only its pointer and length are).
        unsafe { ffi::PyBuffer_Release(&mut self.view) };
    }
}

/// Set by an `atexit` hook: the interpreter is finalizing, and a thread
/// that took the GIL back now would be ended by unwinding through our
/// frames (CPython < 3.14), which aborts the process. Threads coming back
/// from a blocking call park instead; the process is about to end.
static FINALIZING: AtomicBool = AtomicBool::new(false);

#[pyfunction]
fn _at_exit() {
    FINALIZING.store(true, SeqCst);
}

/// Runs `f` without the GIL; never returns into a finalizing interpreter.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(|| {
        let out = f();
        while FINALIZING.load(SeqCst) {
            std::thread::park();
        }
        out
    })
}

/// How long one blocking step lasts before signals (Ctrl-C) are looked at.
const STEP: Duration = Duration::from_millis(100);

// ---- Subscriber ---------------------------------------------------------------

type Shared = Arc<Mutex<core::Subscriber>>;

/// A channel's subscriber. Read-only unless opened with leasing=True.
#[pyclass(module = "shmcast", frozen)]
struct Subscriber {
    inner: RwLock<Option<Shared>>,
    name: String,
    leasing: bool,
}

impl Subscriber {
    fn get(&self) -> PyResult<Shared> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.clone().ok_or_else(|| closed("subscriber"))
    }
}

#[pymethods]
impl Subscriber {
    #[new]
    #[pyo3(signature = (name, timeout = 0.0, leasing = false))]
    fn new(py: Python<'_>, name: &str, timeout: Option<f64>, leasing: bool) -> PyResult<Self> {
        let mut options = core::SubscriberOptions::new();
        if leasing {
            options = options.access(core::Access::Leasing);
        }
        let wait = seconds(timeout)?;
        let started = Instant::now();
        // Waited for in steps, so that Ctrl-C is seen between them.
        let sub = loop {
            if wait.is_zero() {
                break detached(py, || core::Subscriber::open_with(name, &options));
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Timeout::new_err(format!(
                    "channel {name} did not appear within {:?}; is its publisher running?",
                    started.elapsed()
                )));
            }
            let step = options.clone().wait(left.min(STEP));
            match detached(py, || core::Subscriber::open_with(name, &step)) {
                Err(e) if e.kind() == core::ErrorKind::Timeout => py.check_signals()?,
                other => break other,
            }
        }
        .map_err(IntoPyErr::py)?;
        Ok(Subscriber {
            name: sub.name().to_string(),
            inner: RwLock::new(Some(Arc::new(Mutex::new(sub)))),
            leasing,
        })
    }

    /// Blocks until a frame newer than `after` is published (the GIL is
    /// released meanwhile, and no CPU is used); returns its number.
    #[pyo3(signature = (after = 0, timeout = None))]
    fn wait(&self, py: Python<'_>, after: u64, timeout: Option<f64>) -> PyResult<u64> {
        let timeout = seconds(timeout)?;
        let started = Instant::now();
        // In steps: Ctrl-C and close() are seen between them.
        loop {
            let shared = self.get()?;
            let left = timeout.saturating_sub(started.elapsed());
            let got = detached(py, || {
                core::Subscriber::wait_newer_shared(&shared, after, left.min(STEP))
            });
            match got {
                Err(e) if e.kind() == core::ErrorKind::Timeout && left > STEP => {
                    py.check_signals()?
                }
                Err(e) if e.kind() == core::ErrorKind::Timeout => {
                    let latest = e.frame_number().unwrap_or(0);
                    return Err(Timeout::new_err(format!(
                        "channel {}: no frame newer than {after} within {:?} (latest is {latest})",
                        self.name,
                        started.elapsed()
                    )));
                }
                other => return other.map_err(IntoPyErr::py),
            }
        }
    }

    /// The latest frame as (FrameInfo, bytes), or None before the first
    /// one; with `out` (a writable buffer: bytearray, numpy array), copies
    /// into it and returns the FrameInfo.
    #[pyo3(signature = (out = None))]
    fn read_latest(&self, py: Python<'_>, out: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let shared = self.get()?;
        if let Some(out) = out {
            let buf = Bytes::get(out, true)?;
            let (ptr, len) = (buf.ptr() as usize, buf.len());
            let got = detached(py, || {
                // Python code may race on these bytes: the caller's
                // business, not unsoundness here.
                // SAFETY: `buf` keeps the caller's writable, contiguous
                // buffer exported (neither moved nor resized) for the call.
                let dst = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
                let mut metadata = Vec::new();
                lock(&shared)
                    .read_latest_with_metadata(dst, &mut metadata)
                    .map(|info| info.map(|info| FrameInfo::new(&info, &metadata)))
            });
            drop(buf);
            return match got.map_err(IntoPyErr::py)? {
                Some(info) => Ok(Py::new(py, info)?.into_any()),
                None => Ok(py.None()),
            };
        }
        // A buffer of the latest frame's length (not the channel's largest):
        // if a longer frame lands meanwhile, again with its length.
        let mut len = lock(&shared)
            .read_in_place(|info, _| info.len)
            .map_err(IntoPyErr::py)?
            .map_or(0, |(_, len)| len);
        for _ in 0..8 {
            let mut buf = Vec::new();
            buf.try_reserve_exact(len)
                .map_err(|_| pyo3::exceptions::PyMemoryError::new_err(format!("{len} bytes")))?;
            buf.resize(len, 0);
            let mut metadata = Vec::new();
            match lock(&shared).read_latest_with_metadata(&mut buf, &mut metadata) {
                Ok(Some(info)) => {
                    let bytes = PyBytes::new(py, &buf[..info.len]);
                    let info = Py::new(py, FrameInfo::new(&info, &metadata))?;
                    return Ok(
                        PyTuple::new(py, [info.into_any(), bytes.into_any().unbind()])?
                            .into_any()
                            .unbind(),
                    );
                }
                Ok(None) => return Ok(py.None()),
                Err(e) if e.kind() == core::ErrorKind::BufferTooSmall => {
                    len = e.frame_len().unwrap_or(len)
                }
                Err(e) => return Err(e.py()),
            }
        }
        Err(Error::new_err(format!(
            "channel {}: the frames kept growing while being copied",
            self.name
        )))
    }

    /// Leases the latest frame in place (needs leasing=True): a Lease, or
    /// None before the first frame.
    fn lease_latest(&self) -> PyResult<Option<Lease>> {
        let shared = self.get()?;
        let mut sub = lock(&shared);
        let Some(lease) = sub.lease_latest().map_err(IntoPyErr::py)? else {
            return Ok(None);
        };
        let lease = lease.detach();
        Ok(Some(Lease {
            info: FrameInfo::new(lease.info(), &lease.metadata().to_vec()),
            ptr: lease.bytes().as_ptr() as usize,
            len: lease.bytes().len(),
            held: Mutex::new(Some(Held::Leased(lease))),
            exports: AtomicUsize::new(0),
        }))
    }

    /// "live", "stalled" (no frame for `stall_after` seconds) or "gone".
    #[pyo3(signature = (stall_after = 2.0))]
    fn health(&self, stall_after: f64) -> PyResult<&'static str> {
        let stall = seconds(Some(stall_after))?;
        Ok(match lock(&*self.get()?).health(stall) {
            core::Health::Live => "live",
            core::Health::Stalled { .. } => "stalled",
            core::Health::Gone => "gone",
            core::Health::Truncated => "truncated",
            core::Health::Missing => "missing",
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn leasing(&self) -> bool {
        self.leasing
    }

    #[getter]
    fn max_frame_len(&self) -> PyResult<usize> {
        Ok(lock(&*self.get()?).max_frame_len())
    }

    #[getter]
    fn latest_number(&self) -> PyResult<u64> {
        Ok(lock(&*self.get()?).latest_number())
    }

    #[getter]
    fn publisher_pid(&self) -> PyResult<Option<u32>> {
        Ok(lock(&*self.get()?).publisher_pid())
    }

    /// Closes the subscriber (leases taken from it stay valid until
    /// released). Closing twice is allowed.
    fn close(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.take();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.read().map(|i| i.is_none()).unwrap_or(true)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Subscriber({:?}, leasing={})",
            self.name,
            if self.leasing { "True" } else { "False" }
        )
    }
}

// ---- Reader -------------------------------------------------------------------

fn health_word(health: core::Health) -> &'static str {
    match health {
        core::Health::Live => "live",
        core::Health::Stalled { .. } => "stalled",
        core::Health::Gone => "gone",
        core::Health::Truncated => "truncated",
        core::Health::Missing => "missing",
    }
}

/// Reads a channel by name for as long as it is asked to: needs no channel
/// to start, follows the publisher's crashes, take-overs and restarts.
/// `frames()` (in Python, on this class) is the loop to use.
#[pyclass(module = "shmcast", name = "_Reader", subclass, frozen)]
struct PyReader {
    inner: Mutex<core::Reader>,
    name: String,
    /// The health as of the last look, readable while another thread waits.
    health: Mutex<&'static str>,
}

#[pymethods]
impl PyReader {
    #[new]
    #[pyo3(signature = (name, access = "auto", stall_after = 2.0))]
    fn new(name: &str, access: &str, stall_after: f64) -> PyResult<Self> {
        let mut options = core::ReaderOptions::new().stall_after(seconds(Some(stall_after))?);
        options = match access {
            "auto" => options,
            "lease" => options.access(core::Access::Leasing),
            "copy" => options.access(core::Access::ReadOnly),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "access must be \"auto\", \"lease\" or \"copy\", not {access:?}"
                )))
            }
        };
        let reader = core::Reader::with_options(name, options).map_err(IntoPyErr::py)?;
        Ok(PyReader {
            name: reader.name().to_string(),
            inner: Mutex::new(reader),
            health: Mutex::new("missing"),
        })
    }

    /// The next frame newer than the last one, as a Lease (leased in place,
    /// or a private copy), waiting up to `timeout` seconds (None: no
    /// limit); None when nothing new came. The GIL is released meanwhile,
    /// and Ctrl-C is seen within a tenth of a second. Raises only this
    /// call's trouble; the reader goes on after it.
    #[pyo3(signature = (timeout = None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Lease>> {
        let timeout = seconds(timeout)?;
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let got = detached(py, || {
                let mut reader = lock(&self.inner);
                let got = match reader.next(left.min(STEP)) {
                    Ok(core::Next::Frame(frame)) => Ok(Some(lease_of(frame))),
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                };
                *lock(&self.health) = health_word(reader.health());
                got
            });
            match got.map_err(IntoPyErr::py)? {
                Some(lease) => return Ok(Some(lease)),
                None if started.elapsed() >= timeout => return Ok(None),
                None => py.check_signals()?,
            }
        }
    }

    /// "missing" (no channel yet), "live", "stalled", "gone" or
    /// "truncated", as of the reader's last look.
    #[getter]
    fn health(&self) -> &'static str {
        *lock(&self.health)
    }

    /// Why the publisher's source delivers nothing, when it says so.
    #[getter]
    fn stall_reason(&self) -> Option<String> {
        self.inner.try_lock().ok().and_then(|r| r.stall_reason())
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether frames are leased in place (False: copied, or no channel yet).
    #[getter]
    fn leases(&self) -> bool {
        self.inner.try_lock().is_ok_and(|r| r.leases())
    }

    fn __repr__(&self) -> String {
        format!("Reader({:?}, health={:?})", self.name, self.health())
    }
}

/// The frame converted to packed RGB by the library's conversion.
fn rgb_bytes<'py>(lease: &Lease, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = {
        let held = lock(&lease.held);
        match held.as_ref() {
            Some(Held::Leased(lease)) => lease.bytes().to_vec(),
            Some(Held::Copied(copy)) => copy.clone(),
            None => return Err(PyBufferError::new_err("this lease was released")),
        }
    };
    let format = core::PixelFormat::from_str(&lease.info.format)
        .map_err(|e| Error::new_err(e.to_string()))?;
    let mut rgb = Vec::new();
    core::convert::to_rgb24(
        format,
        lease.info.width,
        lease.info.height,
        lease.info.stride,
        &bytes,
        &mut rgb,
    )
    .map_err(|e| Error::new_err(format!("frame {}: {e}", lease.info.number)))?;
    Ok(PyBytes::new(py, &rgb))
}

/// How `Lease.array()` shows a frame.
enum Layout {
    View {
        shape: Vec<usize>,
        strides: Vec<usize>,
    },
    /// I420 with a stride other than its width: no single view has its
    /// planes as rows, so it is copied packed.
    PackedI420 {
        width: usize,
        height: usize,
        stride: usize,
    },
}

/// The array layout of a frame, checked against its `len` bytes: every
/// element of the view lies inside the frame, whatever the metadata says.
fn array_layout(info: &FrameInfo, len: usize) -> PyResult<Layout> {
    let (w, h) = (info.width as usize, info.height as usize);
    let bad = |why: &str| {
        Error::new_err(format!(
            "frame {}: a {}x{} {} frame with stride {} in {len} bytes: {why}",
            info.number, info.width, info.height, info.format, info.stride
        ))
    };
    let channels = match info.format.as_str() {
        "rgb24" | "bgr24" => 3,
        "rgba" | "bgra" => 4,
        "gray8" => 1,
        "yuyv" => 2,
        "nv12" | "i420" => 1,
        _ => {
            return Err(bad(
                "only pixel formats have a shape; use memoryview(lease)",
            ))
        }
    };
    if w == 0 || h == 0 {
        return Err(bad("it has no pixels"));
    }
    let planar = matches!(info.format.as_str(), "nv12" | "i420");
    if planar && (w % 2 != 0 || h % 2 != 0) || info.format == "yuyv" && w % 2 != 0 {
        return Err(bad("its width or height does not fit the format"));
    }
    let row = w.checked_mul(channels).ok_or_else(|| bad("too large"))?;
    let s = match info.stride as usize {
        0 => row,
        s => s,
    };
    if s < row {
        return Err(bad("its stride is shorter than a row"));
    }
    let rows = if planar { h / 2 * 3 } else { h };
    // The library's rule for the bytes a frame needs, as for to_rgb().
    let format = core::PixelFormat::from_str(&info.format).map_err(|e| bad(&e.to_string()))?;
    let needed = core::convert::frame_len(format, info.width, info.height, info.stride)
        .ok_or_else(|| bad("its stride does not fit the format, or it is too large"))?;
    if needed > len {
        return Err(bad(&format!("it needs {needed} bytes")));
    }
    if info.format == "i420" && s != w {
        // Y rows of `s`, then U and V rows of `s / 2`: no one view.
        return Ok(Layout::PackedI420 {
            width: w,
            height: h,
            stride: s,
        });
    }
    Ok(match channels {
        1 => Layout::View {
            shape: vec![rows, w],
            strides: vec![s, 1],
        },
        c => Layout::View {
            shape: vec![h, w, c],
            strides: vec![s, c, 1],
        },
    })
}

/// An I420 frame with padded rows, packed: Y, U, V planes without padding.
fn pack_i420(bytes: &[u8], w: usize, h: usize, s: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h * 3 / 2);
    for y in 0..h {
        out.extend_from_slice(&bytes[y * s..y * s + w]);
    }
    let (cs, cw, ch) = (s / 2, w / 2, h / 2);
    for plane in 0..2 {
        let base = s * h + plane * cs * ch;
        for y in 0..ch {
            out.extend_from_slice(&bytes[base + y * cs..base + y * cs + cw]);
        }
    }
    out
}

/// A reader's frame as a Lease the caller holds past the call.
fn lease_of(frame: core::Frame<'_>) -> Lease {
    let metadata = frame.metadata().to_vec();
    let (info, held) = match frame {
        core::Frame::Leased(lease) => {
            let lease = lease.detach();
            (FrameInfo::new(lease.info(), &metadata), Held::Leased(lease))
        }
        core::Frame::Copied(info, bytes, _) => (
            FrameInfo::new(&info, &metadata),
            Held::Copied(bytes.to_vec()),
        ),
    };
    let (ptr, len) = match &held {
        Held::Leased(lease) => (lease.bytes().as_ptr() as usize, lease.bytes().len()),
        Held::Copied(copy) => (copy.as_ptr() as usize, copy.len()),
    };
    Lease {
        info,
        ptr,
        len,
        held: Mutex::new(Some(held)),
        exports: AtomicUsize::new(0),
    }
}

// ---- Lease --------------------------------------------------------------------

/// What a `Lease` holds: a frame leased in place, or (from a `Reader`
/// that may not lease) a private copy of one.
enum Held {
    Leased(core::DetachedLease),
    /// Never resized while held, so its heap bytes stay where views see them.
    Copied(Vec<u8>),
}

/// A frame leased in place; a read-only buffer over it in shared memory.
#[pyclass(module = "shmcast", frozen)]
struct Lease {
    held: Mutex<Option<Held>>,
    info: FrameInfo,
    ptr: usize,
    len: usize,
    exports: AtomicUsize,
}

#[pymethods]
impl Lease {
    /// # Safety
    /// Called by Python with a valid view.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let held = lock(&this.held);
        if held.is_none() {
            return Err(PyBufferError::new_err("this lease was released"));
        }
        let (ptr, len) = (this.ptr as *mut u8, this.len);
        // SAFETY: the frame stays mapped and leased while the lease is held,
        // and `release` refuses while views are exported.
        unsafe { fill_view(view, flags, ptr, len, false, slf.clone().into_any()) }?;
        this.exports.fetch_add(1, SeqCst);
        Ok(())
    }

    /// # Safety
    /// Called by Python with a view this object filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, SeqCst);
    }

    /// Ends the lease. Raises BufferError while arrays or memoryviews of
    /// the frame exist, and Revoked if the publisher revoked the lease
    /// (what was read may be torn). Releasing twice is allowed.
    fn release(&self) -> PyResult<()> {
        let mut held = lock(&self.held);
        let views = self.exports.load(SeqCst);
        if views > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot release the lease on frame {}: {views} view(s) of it (numpy arrays, memoryviews) still exist; delete them, or copy what you keep",
                self.info.number
            )));
        }
        match held.take() {
            Some(Held::Leased(lease)) => lease.release().map_err(IntoPyErr::py),
            Some(Held::Copied(_)) | None => Ok(()),
        }
    }

    /// Whether the frame is still the one leased (not revoked so far).
    #[getter]
    fn intact(&self) -> bool {
        match lock(&self.held).as_ref() {
            Some(Held::Leased(lease)) => lease.is_intact(),
            Some(Held::Copied(_)) => true,
            None => false,
        }
    }

    #[getter]
    fn released(&self) -> bool {
        lock(&self.held).is_none()
    }

    #[getter]
    fn info(&self) -> FrameInfo {
        self.info.clone()
    }

    /// The frame's per-frame metadata (empty when it has none), read with
    /// the frame: like the pixels, trust it only if `release()` raises
    /// nothing.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        // Copied when the frame was taken (at most 64 KiB), in its info:
        // `release` vouches for it as for the pixels.
        PyBytes::new(py, &self.info.metadata)
    }

    /// The frame as a numpy array shaped for its format, over the frame's
    /// own bytes (no copy; the lease then cannot be released while the
    /// array lives): (h, w, 3) for rgb24/bgr24, (h, w, 4) for rgba/bgra,
    /// (h, w) for gray8, (h, w, 2) for yuyv, (h*3//2, w) for nv12/i420,
    /// rows `stride` bytes apart. An i420 frame whose stride is not its
    /// width has no such view: it comes as a packed copy. Raises Error
    /// when the frame's metadata does not fit its bytes.
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let np = py.import("numpy")?;
        match array_layout(&this.info, this.len)? {
            Layout::View { shape, strides } => {
                let flat = np.call_method1("frombuffer", (slf, "uint8"))?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("shape", shape)?;
                kwargs.set_item("strides", strides)?;
                kwargs.set_item("writeable", false)?;
                py.import("numpy.lib.stride_tricks")?
                    .getattr("as_strided")?
                    .call((flat,), Some(&kwargs))
            }
            Layout::PackedI420 {
                width,
                height,
                stride,
            } => {
                let packed = {
                    let held = lock(&this.held);
                    let bytes = match held.as_ref() {
                        Some(Held::Leased(lease)) => lease.bytes().to_vec(),
                        Some(Held::Copied(copy)) => copy.clone(),
                        None => return Err(PyBufferError::new_err("this lease was released")),
                    };
                    pack_i420(&bytes, width, height, stride)
                };
                np.call_method1("frombuffer", (PyBytes::new(py, &packed), "uint8"))?
                    .call_method1("reshape", (height * 3 / 2, width))
            }
        }
    }

    /// The frame converted to RGB by the library's conversion (BT.601
    /// limited range for the YUV formats): a new (h, w, 3) numpy array.
    /// Raises Error when the frame's metadata does not fit its bytes.
    fn to_rgb<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rgb = rgb_bytes(self, py)?;
        py.import("numpy")?
            .call_method1("frombuffer", (rgb, "uint8"))?
            .call_method1(
                "reshape",
                (self.info.height as usize, self.info.width as usize, 3usize),
            )
    }

    /// The frame's address in memory (to check that views share it).
    #[getter]
    fn address(&self) -> usize {
        self.ptr
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        // With an exception already on its way, a failure to release
        // (views still alive: the lease then ends with the last of them)
        // does not replace it.
        match self.release() {
            Err(_) if ty.is_some_and(|t| !t.is_none()) => Ok(false),
            other => other.map(|()| false),
        }
    }

    fn __repr__(&self) -> String {
        format!("Lease({})", self.info.__repr__())
    }
}

// ---- Publisher and Loan --------------------------------------------------------

enum State {
    Idle(Box<core::Publisher>),
    /// The loan owns the publisher until committed or abandoned; `views`
    /// counts the buffers exported from its `Loan` object.
    Loaned(core::OwnedLoan, Arc<AtomicUsize>),
    Closed,
    /// Only between two states.
    Moving,
}

/// A channel's publisher.
#[pyclass(module = "shmcast", frozen)]
struct Publisher {
    state: Mutex<State>,
    name: String,
    max_frame_len: usize,
    max_metadata: usize,
}

fn loan_out() -> PyErr {
    Error::new_err("this publisher has a slot on loan; commit or abandon it first")
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (name, max_frame_len, slots = 4, mode = None, lease_mode = None, sddl = None, lease_sddl = None, max_lease = None, max_metadata = 0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        max_frame_len: usize,
        slots: u32,
        mode: Option<u32>,
        lease_mode: Option<u32>,
        sddl: Option<&str>,
        lease_sddl: Option<&str>,
        max_lease: Option<f64>,
        max_metadata: usize,
    ) -> PyResult<Self> {
        let mut create = core::CreateOptions::new();
        if let Some(mode) = mode {
            create = create.mode(mode);
        }
        if let Some(sddl) = sddl {
            create = create.sddl(sddl);
        }
        let mut lease = create.clone();
        if let Some(mode) = lease_mode {
            lease = lease.mode(mode);
        }
        if let Some(sddl) = lease_sddl {
            lease = lease.sddl(sddl);
        }
        let mut options = core::ChannelOptions::new(max_frame_len)
            .slots(slots)
            .create_options(create)
            .lease_options(lease);
        if max_lease.is_some() {
            options = options.max_lease(seconds(max_lease)?);
        }
        options = options.max_metadata(max_metadata);
        let publisher = core::Publisher::create_with(name, &options).map_err(IntoPyErr::py)?;
        Ok(Publisher {
            name: name.to_owned(),
            max_frame_len: publisher.max_frame_len(),
            max_metadata: publisher.max_metadata_len(),
            state: Mutex::new(State::Idle(Box::new(publisher))),
        })
    }

    /// Publishes `data` (bytes, bytearray, a C-contiguous numpy array) as
    /// the next frame, one copy into shared memory; returns its number.
    /// `metadata` (any bytes-like, up to the channel's `max_metadata`) goes
    /// with the frame.
    #[pyo3(signature = (data, width = 0, height = 0, format = "raw", stride = 0, timestamp_ns = 0, metadata = None))]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        data: &Bound<'_, PyAny>,
        width: u32,
        height: u32,
        format: &str,
        stride: u32,
        timestamp_ns: u64,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let meta = frame_meta(width, height, format, stride, timestamp_ns)?;
        let buf = Bytes::get(data, false)?;
        let metadata = metadata.map(|m| Bytes::get(m, false)).transpose()?;
        // SAFETY: `buf` keeps the caller's contiguous buffer exported for
        // the call; we hold the GIL, so no Python code writes it meanwhile.
        let bytes = unsafe { std::slice::from_raw_parts(buf.ptr(), buf.len()) };
        let mut state = lock(&self.state);
        match &mut *state {
            State::Idle(publisher) => match &metadata {
                Some(m) => {
                    // SAFETY: as for `bytes`.
                    let m = unsafe { std::slice::from_raw_parts(m.ptr(), m.len()) };
                    publisher.publish_with_metadata(&meta, bytes, m)
                }
                None => publisher.publish(&meta, bytes),
            }
            .map_err(IntoPyErr::py),
            State::Loaned(..) => Err(loan_out()),
            _ => Err(closed("publisher")),
        }
    }

    /// Lends `n` bytes of a free slot, as a writable buffer to fill in
    /// place (numpy: `np.frombuffer(loan, np.uint8)`); then
    /// `loan.commit(...)` publishes it.
    fn loan(slf: Bound<'_, Self>, n: usize) -> PyResult<Loan> {
        let this = slf.get();
        let mut state = lock(&this.state);
        match std::mem::replace(&mut *state, State::Moving) {
            State::Idle(publisher) => match publisher.into_loan(n) {
                Ok(mut loan) => {
                    let ptr = loan.as_mut_ptr() as usize;
                    let views = Arc::new(AtomicUsize::new(0));
                    *state = State::Loaned(loan, Arc::clone(&views));
                    Ok(Loan {
                        publisher: slf.clone().unbind(),
                        ptr,
                        len: n,
                        views,
                        pid: std::process::id(),
                    })
                }
                Err((publisher, e)) => {
                    *state = State::Idle(publisher);
                    Err(e.py())
                }
            },
            other => {
                let err = if matches!(other, State::Loaned(..)) {
                    loan_out()
                } else {
                    closed("publisher")
                };
                *state = other;
                Err(err)
            }
        }
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The most bytes of per-frame metadata a frame can carry.
    #[getter]
    fn max_metadata(&self) -> usize {
        self.max_metadata
    }

    /// Stops publishing: subscribers see the publisher gone. Raises
    /// BufferError while views of a loan exist.
    fn close(&self) -> PyResult<()> {
        let mut state = lock(&self.state);
        if let State::Loaned(_, views) = &*state {
            if views.load(SeqCst) > 0 {
                return Err(PyBufferError::new_err(
                    "cannot close the publisher: views of its loaned slot still exist",
                ));
            }
        }
        *state = State::Closed;
        Ok(())
    }

    #[getter]
    fn closed(&self) -> bool {
        matches!(*lock(&self.state), State::Closed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes it. With an exception already on its way, a failure to
    /// close (views of a loan alive) does not replace it.
    fn __exit__(
        &self,
        ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match self.close() {
            Err(_) if ty.is_some_and(|t| !t.is_none()) => Ok(false),
            other => other.map(|()| false),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Publisher({:?}, max_frame_len={})",
            self.name, self.max_frame_len
        )
    }
}

/// A publisher's slot on loan: a writable buffer in shared memory.
#[pyclass(module = "shmcast", frozen)]
struct Loan {
    publisher: Py<Publisher>,
    ptr: usize,
    len: usize,
    views: Arc<AtomicUsize>,
    /// The process that took the loan (a forked child must not end it).
    pid: u32,
}

/// A loan nobody committed (dropped, or its `with` block left by an
/// exception) goes back to the publisher, which can then publish again.
impl Drop for Loan {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        let publisher = self.publisher.get();
        let mut state = lock(&publisher.state);
        if matches!(&*state, State::Loaned(_, v) if Arc::ptr_eq(v, &self.views)) {
            if let State::Loaned(loan, _) = std::mem::replace(&mut *state, State::Moving) {
                *state = State::Idle(loan.abandon());
            }
        }
    }
}

impl Loan {
    /// Ends the loan with `end` (commit or abandon), if it is still ours.
    fn end<R>(
        &self,
        py: Python<'_>,
        end: impl FnOnce(core::OwnedLoan) -> (Box<core::Publisher>, R),
    ) -> PyResult<R> {
        let views = self.views.load(SeqCst);
        if views > 0 {
            return Err(PyBufferError::new_err(format!(
                "{views} view(s) of the loaned slot (numpy arrays, memoryviews) still exist; delete them first"
            )));
        }
        let publisher = self.publisher.bind(py).get();
        let mut state = lock(&publisher.state);
        match std::mem::replace(&mut *state, State::Moving) {
            State::Loaned(loan, views) if Arc::ptr_eq(&views, &self.views) => {
                let (p, r) = end(loan);
                *state = State::Idle(p);
                Ok(r)
            }
            other => {
                *state = other;
                Err(Error::new_err(
                    "this loan was already committed or abandoned",
                ))
            }
        }
    }
}

#[pymethods]
impl Loan {
    /// # Safety
    /// Called by Python with a valid view.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let publisher = this.publisher.bind(slf.py()).get();
        let state = lock(&publisher.state);
        if !matches!(&*state, State::Loaned(_, v) if Arc::ptr_eq(v, &this.views)) {
            return Err(PyBufferError::new_err(
                "this loan was committed or abandoned",
            ));
        }
        // SAFETY: the slot stays ours while the loan is out, and commit,
        // abandon and close refuse while views are exported.
        unsafe {
            fill_view(
                view,
                flags,
                this.ptr as *mut u8,
                this.len,
                true,
                slf.clone().into_any(),
            )
        }?;
        this.views.fetch_add(1, SeqCst);
        Ok(())
    }

    /// # Safety
    /// Called by Python with a view this object filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.views.fetch_sub(1, SeqCst);
    }

    /// Publishes the loaned bytes as the next frame; returns its number.
    /// `metadata` (bytes-like, up to the channel's `max_metadata`) goes
    /// with it; too long raises and leaves the loan out.
    #[pyo3(signature = (width = 0, height = 0, format = "raw", stride = 0, timestamp_ns = 0, metadata = None))]
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        py: Python<'_>,
        width: u32,
        height: u32,
        format: &str,
        stride: u32,
        timestamp_ns: u64,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let meta = frame_meta(width, height, format, stride, timestamp_ns)?;
        let metadata = match metadata {
            Some(m) => {
                let m = Bytes::get(m, false)?;
                // SAFETY: `m` keeps the caller's buffer exported; we hold
                // the GIL while copying it.
                unsafe { std::slice::from_raw_parts(m.ptr(), m.len()) }.to_vec()
            }
            None => Vec::new(),
        };
        let max = self.publisher.bind(py).get().max_metadata;
        if metadata.len() > max {
            return Err(TooLarge::new_err(format!(
                "{} bytes of metadata; this channel takes at most {max} (Publisher(..., max_metadata=N))",
                metadata.len()
            )));
        }
        self.end(py, |mut loan| {
            // Within the channel's limit: checked above.
            let _ = loan.set_metadata(&metadata);
            loan.commit_returning(&meta)
        })
    }

    /// Gives the slot back without publishing.
    fn abandon(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, |loan| (loan.abandon(), ()))
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Leaving a `with` block abandons a loan that was not committed.
    /// Views still alive keep it until they go (then it is abandoned);
    /// that is an error only when no exception is already on its way.
    fn __exit__(
        &self,
        py: Python<'_>,
        ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let publisher = self.publisher.bind(py).get();
        let ours =
            matches!(&*lock(&publisher.state), State::Loaned(_, v) if Arc::ptr_eq(v, &self.views));
        if ours {
            match self.abandon(py) {
                Err(_) if ty.is_some_and(|t| !t.is_none()) => {}
                other => other?,
            }
        }
        Ok(false)
    }
}

// ---- Region -------------------------------------------------------------------

/// A raw named shared memory region.
#[pyclass(module = "shmcast", frozen)]
struct Region {
    inner: RwLock<Option<Arc<core::Region>>>,
    name: String,
}

impl Region {
    fn get(&self) -> PyResult<Arc<core::Region>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.clone().ok_or_else(|| closed("region"))
    }
}

#[pymethods]
impl Region {
    /// Opens region `name`, or with `size` creates it (zero-filled).
    #[new]
    #[pyo3(signature = (name, size = None, read_only = false, mode = None, persist = false))]
    fn new(
        name: &str,
        size: Option<usize>,
        read_only: bool,
        mode: Option<u32>,
        persist: bool,
    ) -> PyResult<Self> {
        let region = match size {
            Some(size) => {
                let mut options = core::CreateOptions::new().persist(persist);
                if let Some(mode) = mode {
                    options = options.mode(mode);
                }
                core::Region::create_with(name, size, &options).map_err(IntoPyErr::py)?
            }
            None if read_only => core::Region::open_read_only(name).map_err(IntoPyErr::py)?,
            None => core::Region::open(name).map_err(IntoPyErr::py)?,
        };
        Ok(Region {
            name: name.to_owned(),
            inner: RwLock::new(Some(Arc::new(region))),
        })
    }

    /// `length` bytes at `offset` (default: to the end), a consistent copy.
    #[pyo3(signature = (offset = 0, length = None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        length: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let region = self.get()?;
        let size = region.len();
        let length = length.unwrap_or_else(|| size.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(PyValueError::new_err(format!(
                "region {}: {length} bytes at offset {offset} do not fit in its {size} bytes",
                self.name
            )));
        }
        let mut buf = vec![0u8; length];
        detached(py, || region.read(offset, &mut buf)).map_err(IntoPyErr::py)?;
        Ok(PyBytes::new(py, &buf))
    }

    /// Writes `data` at `offset` under the region's write lock.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>, offset: usize) -> PyResult<()> {
        let region = self.get()?;
        let buf = Bytes::get(data, false)?;
        let (ptr, len) = (buf.ptr() as usize, buf.len());
        // Without the GIL: the write may wait for the region's lock.
        detached(py, || {
            // SAFETY: `buf` keeps the caller's bytes exported until after
            // this call, and they are only read.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
            region.write(offset, bytes)
        })
        .map_err(IntoPyErr::py)
    }

    #[getter]
    fn size(&self) -> PyResult<usize> {
        Ok(self.get()?.len())
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn close(&self) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close();
        false
    }
}

#[pymodule]
fn _shmcast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(_at_exit, m)?)?;
    py.import("atexit")?
        .call_method1("register", (m.getattr("_at_exit")?,))?;
    m.add_class::<FrameInfo>()?;
    m.add_class::<Subscriber>()?;
    m.add_class::<Lease>()?;
    m.add_class::<PyReader>()?;
    m.add_class::<Publisher>()?;
    m.add_class::<Loan>()?;
    m.add_class::<Region>()?;
    for (name, ty) in [
        ("Error", py.get_type::<Error>()),
        ("NotFound", py.get_type::<NotFound>()),
        ("Timeout", py.get_type::<Timeout>()),
        ("WriterAlive", py.get_type::<WriterAlive>()),
        ("AlreadyExists", py.get_type::<AlreadyExists>()),
        ("PermissionDenied", py.get_type::<PermissionDenied>()),
        ("InvalidName", py.get_type::<InvalidName>()),
        ("Revoked", py.get_type::<Revoked>()),
        ("AllSlotsLeased", py.get_type::<AllSlotsLeased>()),
        ("TooLarge", py.get_type::<TooLarge>()),
        ("BufferTooSmall", py.get_type::<BufferTooSmall>()),
        ("NotLeasing", py.get_type::<NotLeasing>()),
        ("Truncated", py.get_type::<Truncated>()),
    ] {
        m.add(name, ty)?;
    }
    Ok(())
}
