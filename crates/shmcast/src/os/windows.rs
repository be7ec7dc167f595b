//! Windows: named, pagefile-backed file-mapping sections.
//!
//! The only file besides `unix.rs` that calls the OS. Both define the same
//! `Mapping` type and free functions; the portable code never sees a
//! platform call.
//!
//! - Sections are created with `SEC_COMMIT`, so the whole size is charged
//!   against the commit limit at creation: an exhausted pagefile is an error
//!   from `create`, never an access violation later.
//! - Lifetime: a section lives while any process holds a handle to it; there
//!   is no unlink and nothing is ever left behind by a crash.
//! - Names live in `Local\` (this logon session) or `Global\` (all sessions;
//!   creating there needs `SeCreateGlobalPrivilege`).
//! - An optional SDDL security descriptor controls who may open the section,
//!   e.g. `D:(A;;GA;;;SY)(A;;GR;;;IU)` lets a service (SYSTEM) own it and any
//!   interactive user map it read-only. A channel's subscribers write their
//!   leases and wait on the channel's events, so they need `GRGWGX`
//!   (execute maps to SYNCHRONIZE for events): `D:(A;;GA;;;SY)(A;;GRGWGX;;;IU)`.

use std::ffi::c_void;
use std::io;
use std::ptr::{self, NonNull};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, LocalFree, ERROR_ALREADY_EXISTS, ERROR_COMMITMENT_LIMIT,
    ERROR_FILE_NOT_FOUND, ERROR_INVALID_PARAMETER, FILETIME, HANDLE, INVALID_HANDLE_VALUE,
    STILL_ACTIVE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE, SEC_COMMIT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetExitCodeProcess, GetProcessTimes, OpenEventW, OpenProcess, SetEvent,
    WaitForSingleObject, EVENT_MODIFY_STATE, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::OsError;
use crate::name::Namespace;

/// A mapped view of a named section, and the handle that keeps it alive.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    handle: HANDLE,
}

// SAFETY: the view is plain memory shared with other processes and the
// handle is a process-wide kernel handle; this type only hands out raw
// pointers, whose accesses the layers above synchronise.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` gives out only the pointer and length.
unsafe impl Sync for Mapping {}

/// Creation parameters the OS layer needs.
pub(crate) struct CreateSpec<'a> {
    pub namespace: Namespace,
    /// Unix permission bits; not used on Windows (see `sddl`).
    #[allow(dead_code)]
    pub mode: u32,
    /// Security descriptor for the section, in SDDL.
    pub sddl: Option<&'a str>,
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

fn kernel_name(object: &str, namespace: Namespace) -> Vec<u16> {
    let prefix = match namespace {
        Namespace::Local => "Local",
        Namespace::Global => "Global",
    };
    wide(&format!("{prefix}\\{object}"))
}

fn last_error(op: &'static str) -> OsError {
    // SAFETY: reads this thread's last-error value; no preconditions.
    let code = unsafe { GetLastError() };
    OsError::new(op, io::Error::from_raw_os_error(code as i32))
}

/// A security descriptor parsed from SDDL, freed on drop.
struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

impl SecurityDescriptor {
    fn from_sddl(sddl: &str) -> Result<SecurityDescriptor, OsError> {
        let text = wide(sddl);
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated UTF-16 that outlives the call; `sd`
        // is a valid out-pointer; the size out-pointer may be null.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            let err = last_error("ConvertStringSecurityDescriptorToSecurityDescriptorW");
            return Err(OsError::new(
                err.op,
                io::Error::new(io::ErrorKind::InvalidInput, err.source),
            ));
        }
        Ok(SecurityDescriptor(sd))
    }

    /// Attributes that apply this descriptor; valid while `self` lives.
    fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by
        // ConvertStringSecurityDescriptorToSecurityDescriptorW, which says to
        // free it with LocalFree, and it is freed only here.
        unsafe {
            LocalFree(self.0);
        }
    }
}

impl Mapping {
    /// Creates a new committed section of `size` bytes; fails if the name
    /// exists.
    pub(crate) fn create(object: &str, size: usize, spec: &CreateSpec) -> Result<Mapping, OsError> {
        let name = kernel_name(object, spec.namespace);
        let sd = spec.sddl.map(SecurityDescriptor::from_sddl).transpose()?;
        let attributes = sd.as_ref().map(SecurityDescriptor::attributes);
        let attributes_ptr = attributes
            .as_ref()
            .map_or(ptr::null(), |a| a as *const SECURITY_ATTRIBUTES);
        let size64 = size as u64;
        // SAFETY: INVALID_HANDLE_VALUE asks for a pagefile-backed section;
        // `attributes_ptr` is null or points at attributes (and a descriptor)
        // that live until after the call; `name` is NUL-terminated.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                attributes_ptr,
                PAGE_READWRITE | SEC_COMMIT,
                (size64 >> 32) as u32,
                size64 as u32,
                name.as_ptr(),
            )
        };
        // SAFETY: no preconditions; read right after the call it reports on.
        let code = unsafe { GetLastError() };
        if handle.is_null() {
            return Err(OsError::new(
                "CreateFileMappingW",
                io::Error::from_raw_os_error(code as i32),
            ));
        }
        if code == ERROR_ALREADY_EXISTS {
            // SAFETY: `handle` is a handle we own and close once.
            unsafe { CloseHandle(handle) };
            return Err(OsError::new(
                "CreateFileMappingW",
                io::Error::from_raw_os_error(code as i32),
            ));
        }
        map(handle, FILE_MAP_READ | FILE_MAP_WRITE, size)
    }

    /// Opens an existing section; its size comes from `VirtualQuery` on the
    /// view (whole pages, which is why the header records the exact size).
    pub(crate) fn open(object: &str, ns: Namespace, writable: bool) -> Result<Mapping, OsError> {
        let name = kernel_name(object, ns);
        let access = if writable {
            FILE_MAP_READ | FILE_MAP_WRITE
        } else {
            FILE_MAP_READ
        };
        // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
        let handle = unsafe { OpenFileMappingW(access, 0, name.as_ptr()) };
        if handle.is_null() {
            return Err(last_error("OpenFileMappingW"));
        }
        map(handle, access, 0)
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sections have no name to remove: they go with their last handle.
    pub(crate) fn unlink_if_same(&self, _object: &str) {}

    /// A section's name names it for as long as it exists.
    pub(crate) fn is_named(&self, _object: &str) -> bool {
        true
    }

    /// Nothing acts on a section's name, so there is nothing to serialise.
    pub(crate) fn lock_name(&self) {}

    pub(crate) fn unlock_name(&self) {}
}

/// Maps a view of `handle` (taking ownership of the handle). `len == 0` maps
/// the whole section and asks the OS how large the view is.
fn map(handle: HANDLE, access: u32, len: usize) -> Result<Mapping, OsError> {
    // SAFETY: `handle` is a valid section handle with at least `access`
    // rights; offset 0, and `len` is the section size or 0 for all of it.
    let view = unsafe { MapViewOfFile(handle, access, 0, 0, len) };
    let Some(ptr) = NonNull::new(view.Value.cast::<u8>()) else {
        let err = last_error("MapViewOfFile");
        // SAFETY: we own `handle` and close it once, on this failure path.
        unsafe { CloseHandle(handle) };
        return Err(err);
    };
    let mut mapping = Mapping { ptr, len, handle };
    if len == 0 {
        let mut info: MEMORY_BASIC_INFORMATION =
            // SAFETY: a plain C struct of integers and pointers, for which all
            // zero bytes is a valid value.
            unsafe { std::mem::zeroed() };
        // SAFETY: `ptr` is the base of a live view; `info` is writable and of
        // the size passed.
        let got = unsafe {
            VirtualQuery(
                ptr.as_ptr() as *const c_void,
                &mut info,
                size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if got == 0 {
            return Err(last_error("VirtualQuery"));
        }
        mapping.len = info.RegionSize;
    }
    Ok(mapping)
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the view and handle were created by `map`, are owned by
        // this value alone, and are released exactly once here; no borrow of
        // the memory outlives the borrow of `self` it came from.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast::<c_void>(),
            });
            CloseHandle(self.handle);
        }
    }
}

/// Sections have no name to remove: they go with their last handle. Says
/// so, so that nobody believes a name was freed.
pub(crate) fn unlink(_object: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows removes a section with its last handle; it has no name to remove",
    ))
}

/// Windows keeps no section that no process holds, so there is never
/// anything to clean; Win32 has no call that lists sections either.
pub(crate) fn list_objects() -> io::Result<Vec<String>> {
    Ok(Vec::new())
}

/// Free space for shared memory: not a filesystem on Windows.
pub(crate) fn shm_space() -> Option<(String, u64)> {
    None
}

/// Whether an OS error means the memory could not be reserved.
pub(crate) fn is_out_of_space(err: &io::Error) -> bool {
    err.raw_os_error() == Some(ERROR_COMMITMENT_LIMIT as i32)
        || matches!(
            err.kind(),
            io::ErrorKind::OutOfMemory | io::ErrorKind::StorageFull
        )
}

/// The creation time of process `pid`: `Ok(None)` when there is no such
/// process or it has exited.
pub(crate) fn process_start_time(pid: u32) -> io::Result<Option<u64>> {
    // SAFETY: plain call; a null return is handled.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        // SAFETY: no preconditions.
        let code = unsafe { GetLastError() };
        return if code == ERROR_INVALID_PARAMETER {
            Ok(None)
        } else {
            Err(io::Error::from_raw_os_error(code as i32))
        };
    }
    let mut exit_code = 0u32;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: `handle` is a live process handle with query rights; every
    // out-pointer is a valid, writable local.
    let (got_code, timed) = unsafe {
        let got_code = GetExitCodeProcess(handle, &mut exit_code) != 0;
        let timed = GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) != 0;
        CloseHandle(handle);
        (got_code, timed)
    };
    if !got_code || !timed {
        // Cannot tell: callers treat that as alive.
        return Err(io::Error::other(
            "GetExitCodeProcess or GetProcessTimes failed",
        ));
    }
    // A process that has exited has an exit time; STILL_ACTIVE alone would
    // mistake one that exited with code 259 for a live one.
    let has_exited = exited.dwLowDateTime != 0 || exited.dwHighDateTime != 0;
    if exit_code != STILL_ACTIVE as u32 || has_exited {
        return Ok(None);
    }
    Ok(Some(
        (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime),
    ))
}

/// Sections have no age to look at; nothing is ever left unfinished.
pub(crate) fn object_age(_object: &str) -> Option<std::time::Duration> {
    None
}

/// `SYNCHRONIZE` access: enough to wait on an object.
const SYNCHRONIZE: u32 = 0x0010_0000;

fn event_name(object: &str, ns: Namespace, entry: usize) -> Vec<u16> {
    kernel_name(&format!("{object}.wake.{entry}"), ns)
}

/// A subscriber's way to sleep until the writer publishes.
///
/// `WaitOnAddress` does not cross processes, so each reader-table entry has
/// a named auto-reset event, `NAMESPACE\shmcast.NAME.wake.ENTRY`. The writer
/// creates all of them when it starts (it may create `Global\` objects,
/// desktop readers may not) and sets the events of the entries that say they
/// wait; a reader that finds none (no writer yet) creates its own.
pub(crate) struct Wakeup {
    event: HANDLE,
}

// SAFETY: an event handle is a process-wide kernel handle, usable from any
// thread.
unsafe impl Send for Wakeup {}
// SAFETY: waiting on an event from several threads at once is allowed.
unsafe impl Sync for Wakeup {}

impl Wakeup {
    pub(crate) fn new(object: &str, ns: Namespace, entry: usize) -> io::Result<Wakeup> {
        let name = event_name(object, ns, entry);
        // SAFETY: `name` is NUL-terminated UTF-16 that outlives both calls;
        // null security attributes mean the default descriptor.
        let event = unsafe {
            let opened = OpenEventW(SYNCHRONIZE, 0, name.as_ptr());
            // Only a missing event (no publisher yet) is ours to create; an
            // access-denied one must be reported, not shadowed.
            if opened.is_null() && GetLastError() == ERROR_FILE_NOT_FOUND {
                CreateEventW(ptr::null(), 0, 0, name.as_ptr())
            } else {
                opened
            }
        };
        if event.is_null() {
            return Err(last_error("CreateEventW").source);
        }
        Ok(Wakeup { event })
    }

    /// Sleeps until the writer sets this entry's event, at most `timeout`.
    /// Spurious returns are possible (a set left over from an earlier
    /// wait); callers re-check.
    pub(crate) fn wait(
        &self,
        _word: &std::sync::atomic::AtomicU32,
        _expected: u32,
        timeout: std::time::Duration,
    ) {
        let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32;
        // SAFETY: `event` is a live event handle owned by `self`.
        unsafe { WaitForSingleObject(self.event, ms) };
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        // SAFETY: the handle is owned by `self` and closed once.
        unsafe { CloseHandle(self.event) };
    }
}

/// The writer's side of [`Wakeup`]: one event handle per reader entry.
pub(crate) struct Wakers {
    object: String,
    ns: Namespace,
    events: Vec<HANDLE>,
}

// SAFETY: event handles are process-wide kernel handles.
unsafe impl Send for Wakers {}

impl Wakers {
    /// Creates (or opens) every entry's event, with `sddl` as its security
    /// descriptor so that whoever may open the channel may wait on them.
    pub(crate) fn new(object: &str, ns: Namespace, entries: usize, sddl: Option<&str>) -> Wakers {
        let sd = sddl.and_then(|s| SecurityDescriptor::from_sddl(s).ok());
        let attributes = sd.as_ref().map(SecurityDescriptor::attributes);
        let attributes_ptr = attributes
            .as_ref()
            .map_or(ptr::null(), |a| a as *const SECURITY_ATTRIBUTES);
        let events = (0..entries)
            .map(|entry| {
                let name = event_name(object, ns, entry);
                // SAFETY: `name` is NUL-terminated; `attributes_ptr` is null
                // or points at attributes that outlive the call. A null
                // result is kept and retried in `wake`.
                unsafe { CreateEventW(attributes_ptr, 0, 0, name.as_ptr()) }
            })
            .collect();
        Wakers {
            object: object.to_owned(),
            ns,
            events,
        }
    }

    /// Sets the events of `entries`.
    pub(crate) fn wake(
        &mut self,
        _word: &std::sync::atomic::AtomicU32,
        entries: impl Iterator<Item = usize>,
    ) {
        for entry in entries {
            let Some(slot) = self.events.get_mut(entry) else {
                continue;
            };
            if slot.is_null() {
                let name = event_name(&self.object, self.ns, entry);
                // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
                *slot = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr()) };
            }
            if !slot.is_null() {
                // SAFETY: a live event handle owned by `self`.
                unsafe { SetEvent(*slot) };
            }
        }
    }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        for &event in &self.events {
            if !event.is_null() {
                // SAFETY: each handle is owned by `self` and closed once.
                unsafe { CloseHandle(event) };
            }
        }
    }
}
