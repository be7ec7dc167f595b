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
//!   interactive user map it read-only. A channel's subscribers also wait on
//!   the channel's wake events, which get the same descriptor, so grant them
//!   `GRGX` (execute maps to SYNCHRONIZE for events, the right to wait):
//!   `D:(A;;GA;;;SY)(A;;GRGX;;;IU)`. They declare their sleeps in the
//!   channel's wake word, a section made with the same descriptor plus
//!   writing wherever it grants reading (see [`Wakeup`]). Only leasing
//!   subscribers need write access to the channel's own objects, and only
//!   to the lease table (see the channel docs).

use std::ffi::c_void;
use std::io;
use std::ptr::{self, NonNull};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, LocalFree, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS,
    ERROR_COMMITMENT_LIMIT, ERROR_FILE_NOT_FOUND, ERROR_INVALID_HANDLE, ERROR_INVALID_PARAMETER,
    FILETIME, HANDLE, INVALID_HANDLE_VALUE, STILL_ACTIVE, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, TokenOwner, TokenUser, DACL_SECURITY_INFORMATION,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, TOKEN_OWNER,
    TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::READ_CONTROL;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    MEM_COMMIT, MEM_MAPPED, PAGE_READWRITE, SEC_COMMIT,
};
use windows_sys::Win32::System::ProcessStatus::K32GetMappedFileNameW;
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, GetExitCodeProcess, GetProcessTimes, OpenEventW, OpenProcess,
    OpenProcessToken, ResetEvent, SetEvent, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{OsError, OsErrorKind, WakePage, WAKE_LEN};
use crate::name::{Namespace, OBJECT_PREFIX};

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
    /// The creator's token; the segment layer writes the header right
    /// after mapping, and a section cannot outlive a creator that dies
    /// before anyone opened it, so nothing needs stamping early here.
    #[allow(dead_code)]
    pub owner: u64,
    #[allow(dead_code)]
    pub owner_offset: usize,
}

/// Who owns an existing section, for take-overs.
#[derive(Debug)]
pub(crate) struct Ownership {
    /// Its owner SID is our user's (or our token's default owner).
    pub mine: bool,
    /// Its owner SID, for messages.
    pub owner: String,
    /// Unix permission bits: none on Windows.
    pub mode: Option<u32>,
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

/// What a failed section call's error `code` means. ERROR_INVALID_HANDLE
/// from CreateFileMappingW or OpenFileMappingW says that the name belongs
/// to an object of another type (an event, a mutex...): named objects of
/// every type share one namespace.
fn section_error(op: &'static str, code: u32) -> OsError {
    if code == ERROR_INVALID_HANDLE {
        return OsError::foreign(
            op,
            "the name is held by an object of another kind (an event, a mutex, a semaphore...)",
        );
    }
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
            )
            .with_kind(OsErrorKind::BadSecurityDescriptor));
        }
        Ok(SecurityDescriptor(sd))
    }

    /// The descriptor of kernel object `handle`, with the parts `info`
    /// asks for (`OWNER_SECURITY_INFORMATION`, `DACL_SECURITY_INFORMATION`),
    /// and its owner (a pointer into it, null unless asked for).
    fn of_object(handle: HANDLE, info: u32) -> io::Result<(SecurityDescriptor, PSID)> {
        let mut owner: PSID = ptr::null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // The descriptor it allocates (which `owner` points into) is freed
        // by the returned value's Drop.
        // SAFETY: `handle` is a live handle of the caller's; the
        // out-pointers are valid locals or null.
        let code = unsafe {
            GetSecurityInfo(
                handle,
                SE_KERNEL_OBJECT,
                info,
                &mut owner,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut sd,
            )
        };
        if code != 0 {
            return Err(io::Error::from_raw_os_error(code as i32));
        }
        Ok((SecurityDescriptor(sd), owner))
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
        // ConvertStringSecurityDescriptorToSecurityDescriptorW and
        // GetSecurityInfo both say to free what they allocate with LocalFree.
        // SAFETY: the descriptor was allocated by one of them, and is
        // freed only here.
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
            let err = section_error("CreateFileMappingW", code);
            // A section of this name that refuses us is an existing one
            // (creating a new name is never refused in Local\; in Global\
            // it is, without the privilege): say which.
            if code == ERROR_ACCESS_DENIED && section_exists(&name) {
                return Err(err.with_kind(OsErrorKind::TakenAndDenied));
            }
            return Err(err);
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
        // READ_CONTROL too, so that `ownership` can read the owner SID (a
        // take-over or a leasing subscriber needs it, and refuses without
        // it); where the DACL does not grant it, the open goes on without,
        // and the owner checks fail closed.
        // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
        let mut handle = unsafe { OpenFileMappingW(access | READ_CONTROL, 0, name.as_ptr()) };
        if handle.is_null() {
            // SAFETY: as above.
            handle = unsafe { OpenFileMappingW(access, 0, name.as_ptr()) };
        }
        if handle.is_null() {
            // SAFETY: no preconditions; read right after the failed open.
            return Err(section_error("OpenFileMappingW", unsafe { GetLastError() }));
        }
        map(handle, access, 0)
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The section's DACL and the one a new section created with `sddl`
    /// (`None`: this process's default) would get, both in SDDL, when
    /// their own ACEs differ. ACEs inherited from the object directory are
    /// left out of the comparison (the nameless trial section that shows
    /// what `sddl` gives has no directory to inherit from), and with no
    /// `sddl` asked for, a section with no ACEs of its own counts as made
    /// with the default too. `None` as well when the DACL cannot be read
    /// (no READ_CONTROL: the owner check refuses such a section anyway).
    ///
    /// # Errors
    /// An `sddl` that does not parse (kind `BadSecurityDescriptor`).
    pub(crate) fn descriptor_differs(
        &self,
        sddl: Option<&str>,
    ) -> Result<Option<(String, String)>, OsError> {
        let Ok(found) = dacl_sddl(self.handle) else {
            return Ok(None);
        };
        let Some(wanted) = descriptor_for(sddl)? else {
            return Ok(None);
        };
        let (own, asked) = (explicit_aces(&found), explicit_aces(&wanted));
        let same = own == asked || (sddl.is_none() && own.is_empty());
        Ok((!same).then_some((found, wanted)))
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

    /// Sections cannot shrink: never.
    pub(crate) fn was_truncated(&self) -> bool {
        false
    }

    /// The section's owner SID, compared with our token's user and default
    /// owner (an administrator's objects are owned by the Administrators
    /// group by default).
    ///
    /// An owner that cannot be read is an error, and callers refuse to take
    /// the object over: on Windows that means no READ_CONTROL, which is no
    /// reason to think it ours. Only under Wine, which keeps no owner on
    /// sections at all (recognised by name, see [`is_wine`]), is it
    /// reported as ours: there the write access the open needed is the
    /// only check the OS offers.
    pub(crate) fn ownership(&self) -> io::Result<Ownership> {
        match self.owner_sid() {
            Err(_) if is_wine() => Ok(Ownership {
                mine: true,
                owner: "an unknown owner (Wine keeps no owner on sections)".to_owned(),
                mode: None,
            }),
            other => other,
        }
    }

    fn owner_sid(&self) -> io::Result<Ownership> {
        // `_sd` holds the descriptor `owner` points into.
        let (_sd, owner) = SecurityDescriptor::of_object(self.handle, OWNER_SECURITY_INFORMATION)?;
        if owner.is_null() {
            return Err(io::Error::other("the section has no owner"));
        }
        let token = ProcessToken::open()?;
        let user = token.info(TokenUser)?;
        let default_owner = token.info(TokenOwner)?;
        // SAFETY: the buffer was filled by GetTokenInformation for
        // TokenUser, whose struct starts with the SID pointer; the SID
        // it points to lives inside the same buffer.
        let user_sid = unsafe { (*user.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        // SAFETY: as above, for TokenOwner.
        let owner_sid = unsafe { (*default_owner.as_ptr().cast::<TOKEN_OWNER>()).Owner };
        // SAFETY: both SIDs are valid for the duration of the call.
        let is_user = unsafe { EqualSid(owner, user_sid) } != 0;
        // SAFETY: as above.
        let mine = is_user || unsafe { EqualSid(owner, owner_sid) } != 0;
        Ok(Ownership {
            mine,
            owner: sid_string(owner),
            mode: None,
        })
    }
}

/// Whether some object of the kernel name `name` (NUL-terminated) exists,
/// judged by opening it as a section for reading: refused access means it
/// exists as much as success does.
fn section_exists(name: &[u16]) -> bool {
    // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
    let handle = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, name.as_ptr()) };
    if handle.is_null() {
        // SAFETY: no preconditions; read right after the failed open.
        return unsafe { GetLastError() } == ERROR_ACCESS_DENIED;
    }
    // SAFETY: the handle we just got, closed once.
    unsafe { CloseHandle(handle) };
    true
}

/// The DACL of the kernel object `handle`, in SDDL.
fn dacl_sddl(handle: HANDLE) -> io::Result<String> {
    let (sd, _) = SecurityDescriptor::of_object(handle, DACL_SECURITY_INFORMATION)?;
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sd` is the descriptor GetSecurityInfo just returned; `text`
    // is a valid out-pointer, and what it receives is freed with LocalFree.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd.0,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        )
    } != 0;
    if ok && !text.is_null() {
        // SAFETY: a LocalAlloc'd, NUL-terminated string from the call
        // above, used no more.
        Ok(unsafe { take_local_string(text) })
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The DACL, in SDDL, that a section created now with security descriptor
/// `sddl` (`None`: this process's default) gets: the kernel's own
/// rendering of the request (generic rights mapped as for sections,
/// defaults applied), read from a nameless one-page section made for the
/// purpose. `None` when that section cannot be made or read.
///
/// # Errors
/// An `sddl` that does not parse (kind `BadSecurityDescriptor`).
fn descriptor_for(sddl: Option<&str>) -> Result<Option<String>, OsError> {
    let sd = sddl.map(SecurityDescriptor::from_sddl).transpose()?;
    let attributes = sd.as_ref().map(SecurityDescriptor::attributes);
    let attributes_ptr = attributes
        .as_ref()
        .map_or(ptr::null(), |a| a as *const SECURITY_ATTRIBUTES);
    // SAFETY: a pagefile-backed section of one page with no name;
    // `attributes_ptr` is null or points at attributes (and a descriptor)
    // that live until after the call.
    let handle = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            attributes_ptr,
            PAGE_READWRITE | SEC_COMMIT,
            0,
            4096,
            ptr::null(),
        )
    };
    if handle.is_null() {
        return Ok(None);
    }
    let dacl = dacl_sddl(handle).ok();
    // SAFETY: the handle we just made, closed once.
    unsafe { CloseHandle(handle) };
    Ok(dacl)
}

/// The ACEs of DACL `dacl` (SDDL) that are the object's own, not
/// inherited (`ID` among their flags), as written: `(A;;GA;;;WD)`.
fn explicit_aces(dacl: &str) -> Vec<&str> {
    let mut aces = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in dacl.char_indices() {
        match c {
            '(' => {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    aces.push(&dacl[start..=i]);
                }
            }
            _ => {}
        }
    }
    aces.retain(|ace| {
        let flags = ace[1..].split(';').nth(1).unwrap_or("");
        !flags.as_bytes().chunks(2).any(|flag| flag == b"ID")
    });
    aces
}

/// What to do about a name that an unusable object keeps: on Windows the
/// name lives as long as any process holds the object open, whoever made
/// it, and nothing but those processes can let it go. Windows tells an
/// ordinary process nothing of which processes hold an object (the
/// system's handle list hides object addresses from it, and Wine has
/// none), so the message says so and names the tool that can.
pub(crate) fn holder_advice(object: &str) -> Option<String> {
    Some(format!(
        "the name stays while any process holds the object open, and Windows does not tell which process does (as an administrator, Sysinternals' `handle {object}` can): end that process, or use another name"
    ))
}

/// Whether this process runs under Wine: its ntdll exports
/// `wine_get_version`, which Windows' never does.
pub(crate) fn is_wine() -> bool {
    static WINE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WINE.get_or_init(|| {
        let ntdll = wide("ntdll.dll");
        // SAFETY: a NUL-terminated wide string; ntdll is loaded in every
        // process, and its handle needs no closing.
        let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
        if module.is_null() {
            return false;
        }
        // SAFETY: a loaded module and a NUL-terminated name.
        unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }.is_some()
    })
}

/// This process's access token, closed on drop.
struct ProcessToken(HANDLE);

impl ProcessToken {
    fn open() -> io::Result<ProcessToken> {
        let mut token: HANDLE = ptr::null_mut();
        // SAFETY: no preconditions; a pseudo-handle that needs no closing.
        let me = unsafe { GetCurrentProcess() };
        // SAFETY: the pseudo-handle of the current process; `token` is a
        // valid out-pointer.
        if unsafe { OpenProcessToken(me, TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ProcessToken(token))
    }

    /// The token information of class `class`, in an 8-aligned buffer.
    fn info(&self, class: i32) -> io::Result<Vec<u64>> {
        let mut needed = 0u32;
        // SAFETY: a size query: null buffer of length 0.
        unsafe { GetTokenInformation(self.0, class, ptr::null_mut(), 0, &mut needed) };
        let mut buf = vec![0u64; (needed as usize).div_ceil(8).max(1)];
        // SAFETY: `buf` is writable for `buf.len() * 8` bytes.
        let ok = unsafe {
            GetTokenInformation(
                self.0,
                class,
                buf.as_mut_ptr().cast(),
                (buf.len() * 8) as u32,
                &mut needed,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(buf)
    }
}

impl Drop for ProcessToken {
    fn drop(&mut self) {
        // SAFETY: our token handle, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

fn sid_string(sid: PSID) -> String {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is valid; `text` receives a LocalAlloc'd string.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        return "an unknown SID".to_owned();
    }
    // SAFETY: a LocalAlloc'd, NUL-terminated string from the call above,
    // used no more.
    unsafe { take_local_string(text) }
}

/// The string at `text`, which is then freed.
///
/// # Safety
/// `text` is a NUL-terminated UTF-16 string that the system allocated with
/// LocalAlloc for the caller (as ConvertSidToStringSidW does), not used
/// again after this call.
unsafe fn take_local_string(text: *mut u16) -> String {
    // SAFETY: every unit up to the NUL is readable (the caller's promise).
    let len = (0..)
        .take_while(|&i| unsafe { *text.wrapping_add(i) } != 0)
        .count();
    // SAFETY: the `len` units before the NUL.
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: LocalAlloc'd, freed once (the caller's promise).
    unsafe { LocalFree(text.cast()) };
    s
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
        // A section made by somebody else with SEC_RESERVE has memory that
        // is not committed: any access to it would fault. Such a view is
        // refused, and the length counts only the committed pages from the
        // start (a region has one state throughout), so a partly committed
        // section is too short for what its header claims.
        if info.State != MEM_COMMIT {
            return Err(OsError::foreign(
                "MapViewOfFile",
                "a section whose memory is reserved but not committed",
            ));
        }
        // Likewise an image section (an executable mapped as such, whose
        // pages are read-only or copy-on-write whatever was asked) and a
        // view that cannot be written where writing was asked for: a write
        // there would fault.
        let writable = access & FILE_MAP_WRITE != 0;
        if info.Type != MEM_MAPPED || (writable && info.Protect != PAGE_READWRITE) {
            return Err(OsError::foreign(
                "MapViewOfFile",
                "a section that is not plain read-write memory (an image, uncached or read-only pages)",
            ));
        }
        // And a section over a file (shmcast's are all pagefile-backed):
        // its pages come from wherever the file lives, a share whose server
        // may stall or fail a page-in, which would hang or kill the reader.
        let mut path = [0u16; 8];
        // SAFETY: no preconditions; a pseudo-handle, never closed.
        let me = unsafe { GetCurrentProcess() };
        // SAFETY: `ptr` is the base of a live view of this process; `path`
        // is writable for the length passed (the name is only looked at for
        // being there, so a short buffer is enough).
        let named = unsafe {
            K32GetMappedFileNameW(
                me,
                ptr.as_ptr() as *const c_void,
                path.as_mut_ptr(),
                path.len() as u32,
            )
        };
        if named != 0 {
            return Err(OsError::foreign(
                "MapViewOfFile",
                "a section backed by a file, not by the pagefile",
            ));
        }
        mapping.len = info.RegionSize;
    }
    Ok(mapping)
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the view was created by `map`, is owned by this value
        // alone, and is released exactly once here; no borrow of the
        // memory outlives the borrow of `self` it came from.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast::<c_void>(),
            })
        };
        // SAFETY: as for the view: the section handle, closed once.
        unsafe { CloseHandle(self.handle) };
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

/// The sections under our prefix in this session's `Local\` namespace
/// (`\Sessions\N\BaseNamedObjects`) and in `Global\` (`\BaseNamedObjects`),
/// read from the kernel's object directories (`NtQueryDirectoryObject`):
/// Windows has no file system to list, and a section has no other index.
/// A directory that cannot be opened is skipped.
pub(crate) fn list_sections() -> io::Result<Vec<(Namespace, String)>> {
    use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;
    let mut session = 0u32;
    // SAFETY: plain call with a valid out-pointer.
    unsafe { ProcessIdToSessionId(std::process::id(), &mut session) };
    let mut found = Vec::new();
    for (ns, dir) in [
        (
            Namespace::Local,
            format!("\\Sessions\\{session}\\BaseNamedObjects"),
        ),
        (Namespace::Global, "\\BaseNamedObjects".to_owned()),
    ] {
        if let Ok(names) = directory_sections(&dir) {
            found.extend(
                names
                    .into_iter()
                    .filter(|n| n.starts_with(OBJECT_PREFIX))
                    .map(|n| (ns, n)),
            );
        }
    }
    found.sort_by(|a, b| (a.0 == Namespace::Global, &a.1).cmp(&(b.0 == Namespace::Global, &b.1)));
    found.dedup();
    Ok(found)
}

/// The names of the sections in object directory `path`.
fn directory_sections(path: &str) -> io::Result<Vec<String>> {
    use windows_sys::Wdk::Foundation::OBJECT_ATTRIBUTES;
    use windows_sys::Wdk::Storage::FileSystem::{NtOpenDirectoryObject, NtQueryDirectoryObject};
    use windows_sys::Win32::Foundation::UNICODE_STRING;
    /// One entry of what NtQueryDirectoryObject returns.
    #[repr(C)]
    struct Entry {
        name: UNICODE_STRING,
        type_name: UNICODE_STRING,
    }
    const DIRECTORY_QUERY: u32 = 0x0001;
    const OBJ_CASE_INSENSITIVE: u32 = 0x40;
    let mut wide: Vec<u16> = path.encode_utf16().collect();
    let bytes = (wide.len() * 2) as u16;
    let name = UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: wide.as_mut_ptr(),
    };
    let attributes = OBJECT_ATTRIBUTES {
        Length: std::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: std::ptr::null_mut(),
        ObjectName: &name,
        Attributes: OBJ_CASE_INSENSITIVE,
        SecurityDescriptor: std::ptr::null(),
        SecurityQualityOfService: std::ptr::null(),
    };
    let mut dir: HANDLE = std::ptr::null_mut();
    // SAFETY: `attributes` and the name it points to outlive the call.
    let status = unsafe { NtOpenDirectoryObject(&mut dir, DIRECTORY_QUERY, &attributes) };
    if status < 0 {
        return Err(io::Error::other(format!(
            "NtOpenDirectoryObject({path}): {status:#x}"
        )));
    }
    let mut names = Vec::new();
    // One entry per call (Wine implements only that), the context moving
    // on. u64s: the entry's pointers need 8-byte alignment.
    let mut buf = vec![0u64; 1024];
    let mut context = 0u32;
    for first in (0..).map(|i| i == 0) {
        let mut returned = 0u32;
        // SAFETY: `buf` is writable for its whole byte length; `dir` is open.
        let status = unsafe {
            NtQueryDirectoryObject(
                dir,
                buf.as_mut_ptr().cast(),
                (buf.len() * 8) as u32,
                true,
                first,
                &mut context,
                &mut returned,
            )
        };
        if status < 0 {
            break; // STATUS_NO_MORE_ENTRIES, or an error: what we have
        }
        // SAFETY: the kernel wrote one entry at the start of the buffer,
        // its strings inside the buffer.
        let entry = unsafe { &*buf.as_ptr().cast::<Entry>() };
        let text = |s: &UNICODE_STRING| {
            if s.Buffer.is_null() {
                return String::new();
            }
            // SAFETY: the kernel's string: `Length` bytes at `Buffer`.
            String::from_utf16_lossy(unsafe {
                std::slice::from_raw_parts(s.Buffer, usize::from(s.Length) / 2)
            })
        };
        if text(&entry.type_name) == "Section" {
            names.push(text(&entry.name));
        }
    }
    // SAFETY: our handle, closed once.
    unsafe { CloseHandle(dir) };
    Ok(names)
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
    // SAFETY: `handle` is a live process handle with query rights; the
    // out-pointer is a valid, writable local.
    let got_code = unsafe { GetExitCodeProcess(handle, &mut exit_code) } != 0;
    // SAFETY: as above, for the four times.
    let timed =
        unsafe { GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) } != 0;
    // SAFETY: our handle, closed once.
    unsafe { CloseHandle(handle) };
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

/// This process's PID (a read of the thread's environment block, no system
/// call; Windows has no fork, so it never changes).
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// A clock all processes on this machine share and nobody can set back:
/// milliseconds since boot, in nanoseconds. For lease-table beats.
pub(crate) fn monotonic_ns() -> u64 {
    // SAFETY: no preconditions.
    let ms = unsafe { windows_sys::Win32::System::SystemInformation::GetTickCount64() };
    ms.saturating_mul(1_000_000)
}

/// Sections have no age to look at; nothing is ever left unfinished.
pub(crate) fn object_age(_object: &str) -> Option<std::time::Duration> {
    None
}

/// Another user owning a name: sections are judged by their SDDL and
/// owner SID when opened, so there is no file to ask.
pub(crate) fn other_owner(_object: &str) -> Option<String> {
    None
}

/// `SYNCHRONIZE` access: enough to wait on an object.
const SYNCHRONIZE: u32 = 0x0010_0000;
/// `EVENT_MODIFY_STATE | SYNCHRONIZE`.
const EVENT_SET_AND_WAIT: u32 = 0x0002 | SYNCHRONIZE;
/// Manual-reset events in a channel's wake ring; a power of two, so that
/// `generation % RING` stays consistent when the generation wraps.
const RING: u32 = 16;
fn event_name(object: &str, ns: Namespace, instance: u64, i: u32) -> Vec<u16> {
    kernel_name(&format!("{object}~wake.{instance:016x}.{i}"), ns)
}

/// The wake word's section: `NS\shmcast.NAME~wake.INSTANCE` (not a
/// segment name, so listings skip it).
fn wake_section(object: &str, instance: u64) -> String {
    format!("{object}{}.{instance:016x}", super::WAKE_SUFFIX)
}

/// A new wake word's value: half the generation's range away from where a
/// new channel starts, so that it asks for no wake for 2^31 publishes.
const NOBODY: u32 = 0x8000_0000;

/// Whether a sleeper on generation `slept_on` that was lapped is woken by
/// the publish that moved the generation past `moved_past`: it declared its
/// sleep, was held up before its wait, and then waited on event
/// `slept_on % RING` while the generation went round the ring (unlike a
/// futex wait, which compares the word atomically, a wait on an event can
/// start after the generation moved on). The event of `moved_past` is that
/// sleeper's when `moved_past` is one to four rings past `slept_on`; a
/// sleeper lapped more than four times sleeps out its slice.
fn lapped(slept_on: u32, moved_past: u32) -> bool {
    let behind = moved_past.wrapping_sub(slept_on);
    behind % RING == 0 && (1..=4 * RING).contains(&behind)
}

/// A subscriber's way to sleep until the writer publishes.
///
/// `WaitOnAddress` does not cross processes. The writer therefore keeps a
/// ring of [`RING`] named manual-reset events per channel,
/// `NS\shmcast.NAME~wake.INSTANCE.I`, and the generation `g` is announced
/// by event `g % RING`: a subscriber that read generation `g` waits on it,
/// and the publish that moves the generation from `g` to `g + 1` sets it.
///
/// Setting and resetting events are system calls, so the publisher makes
/// them only for sleepers, as on Linux: a subscriber about to sleep raises
/// the wake word, in the section `NS\shmcast.NAME~wake.INSTANCE`, to the
/// generation it sleeps on ([`crate::os::declare`]); the publisher sets the
/// event only when the word asks for it ([`crate::os::wanted`]), or for a
/// sleeper it may have lapped ([`lapped`]), and resets
/// an event before the generation moves onto it only when it may have left
/// it set ([`crate::os::SetEvents`]). With nobody asleep, a publish makes
/// no system call.
///
/// The events and the section get the channel's security descriptor, the
/// section with writing added wherever reading is granted
/// ([`crate::os::readers_may_write`]): whoever may read the channel may
/// declare a sleep, and a subscriber opens the events with `SYNCHRONIZE`
/// only, so it can wait on them but never set or reset them. A peer that
/// scribbles the word can cost sleepers wake-ups, never frames: a declared
/// sleep is cut to [`crate::os::DECLARED_SLICE`] and declared again, and one that
/// could not be declared (no word, or one a peer keeps changing) to
/// [`crate::os::UNDECLARED_SLICE`]. `INSTANCE` is a random number from the channel
/// header, so nobody can make the events or the section before the channel
/// exists.
pub(crate) struct Wakeup {
    events: Vec<HANDLE>,
    section: String,
    ns: Namespace,
    /// Opened with the events, or at a later sleep.
    word: std::sync::OnceLock<WakePage>,
}

// SAFETY: event handles are process-wide kernel handles, usable from any
// thread; the mapping is only read through atomics.
unsafe impl Send for Wakeup {}
// SAFETY: waiting on an event from several threads at once is allowed, and
// the wake word is an atomic.
unsafe impl Sync for Wakeup {}

/// Opens a wake word's section read-write, if it is there, ours to write,
/// and big enough.
fn open_word(section: &str, ns: Namespace) -> Option<WakePage> {
    WakePage::new(Mapping::open(section, ns, true).ok()?)
}

impl Wakeup {
    pub(crate) fn new(object: &str, ns: Namespace, instance: u64) -> io::Result<Wakeup> {
        let section = wake_section(object, instance);
        let mut wakeup = Wakeup {
            events: Vec::new(),
            word: std::sync::OnceLock::new(),
            section,
            ns,
        };
        for i in 0..RING {
            let name = event_name(object, ns, instance, i);
            // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
            let event = unsafe { OpenEventW(SYNCHRONIZE, 0, name.as_ptr()) };
            if event.is_null() {
                // SAFETY: no preconditions; read right after the failed open.
                let code = unsafe { GetLastError() };
                // A missing event (a publisher that could not make it) means
                // polling; a refused one is the channel's descriptor lacking
                // SYNCHRONIZE for us, which the caller must hear about.
                if code != ERROR_FILE_NOT_FOUND {
                    return Err(io::Error::from_raw_os_error(code as i32));
                }
            }
            wakeup.events.push(event);
        }
        if let Some(map) = open_word(&wakeup.section, ns) {
            let _ = wakeup.word.set(map);
        }
        Ok(wakeup)
    }

    /// Sleeps until the writer publishes past `expected`, at most
    /// `timeout`. Spurious returns are possible; callers re-check.
    ///
    /// The sleep is declared first, in slices (see [`Wakeup`]); between
    /// slices the generation is looked at again.
    pub(crate) fn wait(
        &self,
        generation: &std::sync::atomic::AtomicU32,
        expected: u32,
        timeout: std::time::Duration,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let event = self.events[(expected % RING) as usize];
        if event.is_null() {
            // No event to wait on (a publisher that could not create it):
            // poll, briefly.
            std::thread::sleep(timeout.min(std::time::Duration::from_millis(2)));
            return;
        }
        let started = std::time::Instant::now();
        loop {
            let word = match self.word.get() {
                Some(w) => Some(w),
                None => open_word(&self.section, self.ns).map(|w| self.word.get_or_init(|| w)),
            };
            let slice = crate::os::sleep_slice(word.map(WakePage::want), generation, expected);
            if generation.load(Relaxed) != expected {
                return;
            }
            let left = timeout.saturating_sub(started.elapsed()).min(slice);
            let ms = left.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32;
            // SAFETY: `event` is a live event handle owned by `self`.
            let woken = unsafe { WaitForSingleObject(event, ms) };
            if generation.load(Relaxed) != expected || started.elapsed() >= timeout {
                return;
            }
            // Signalled with the generation unmoved (an event left set, a
            // generation word a writer scribbled), or a failed wait: never
            // a busy loop, at most a look a millisecond.
            if woken != WAIT_TIMEOUT {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        for &event in &self.events {
            if !event.is_null() {
                // SAFETY: each handle is owned by `self` and closed once.
                unsafe { CloseHandle(event) };
            }
        }
    }
}

/// The writer's side of [`Wakeup`]: the ring of events and the wake word.
pub(crate) struct Wakers {
    events: Vec<HANDLE>,
    /// The wake word's section; without it (it could not be made), every
    /// publish sets its event, as before there was one.
    word: Option<WakePage>,
    /// Which events this publisher may have left set.
    set: crate::os::SetEvents,
    /// Per event, the generation whose leaving set it because a sleeper
    /// asked (not a rescue): set again, for a sleeper held up before its
    /// wait, each time the ring comes round to it, four times ([`lapped`]).
    set_for_sleeper: [Option<u32>; RING as usize],
    /// The generation the next publish moves the word to.
    next: u32,
}

// SAFETY: event handles are process-wide kernel handles; the mapping is
// only read through atomics.
unsafe impl Send for Wakers {}
// SAFETY: `&Wakers` allows no operation at all.
unsafe impl Sync for Wakers {}

impl Wakers {
    /// Creates (or, on a take-over, opens) the channel's wake events and
    /// wake word, with `sddl` as their security descriptor (for the word,
    /// with writing added where reading is granted) so that whoever may
    /// open the channel may wait on them and declare a sleep. For a
    /// `fresh` channel an event that exists already was made by someone
    /// else: refused (and a wake word that exists already is not used).
    /// (`_mode` is Linux's: its wake word's permissions.)
    pub(crate) fn new(
        object: &str,
        ns: Namespace,
        instance: u64,
        sddl: Option<&str>,
        _mode: u32,
        fresh: bool,
    ) -> Result<Wakers, OsError> {
        let sd = sddl.map(SecurityDescriptor::from_sddl).transpose()?;
        let attributes = sd.as_ref().map(SecurityDescriptor::attributes);
        let attributes_ptr = attributes
            .as_ref()
            .map_or(ptr::null(), |a| a as *const SECURITY_ATTRIBUTES);
        let mut wakers = Wakers {
            events: Vec::new(),
            word: None,
            set: crate::os::SetEvents::none(),
            set_for_sleeper: [None; RING as usize],
            next: 0,
        };
        for i in 0..RING {
            let name = event_name(object, ns, instance, i);
            // SAFETY: `name` is NUL-terminated; `attributes_ptr` is null or
            // points at attributes that outlive the call. Manual reset,
            // initially clear.
            let mut event = unsafe { CreateEventW(attributes_ptr, 1, 0, name.as_ptr()) };
            // SAFETY: no preconditions; read right after the call.
            if fresh && !event.is_null() && unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
                // SAFETY: the handle we just got, closed once.
                unsafe { CloseHandle(event) };
                return Err(OsError::new(
                    "CreateEventW",
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a wake event of this new channel exists already: another process made it",
                    ),
                ));
            }
            if event.is_null() {
                // SAFETY: as above; an event a dead publisher's readers keep.
                event = unsafe { OpenEventW(EVENT_SET_AND_WAIT, 0, name.as_ptr()) };
            }
            if event.is_null() {
                return Err(OsError::new("OpenEventW", io::Error::last_os_error()));
            }
            if !fresh {
                // A predecessor may have left it set; the generation may
                // move onto it before this publisher's first publish (a
                // take-over that fails lets the channel go with a move).
                // SAFETY: the live event handle just opened.
                unsafe { ResetEvent(event) };
            }
            wakers.events.push(event);
        }
        let section = wake_section(object, instance);
        let word_sddl = sddl.map(crate::os::readers_may_write);
        let spec = CreateSpec {
            namespace: ns,
            mode: 0,
            sddl: word_sddl.as_deref(),
            owner: 0,
            owner_offset: WAKE_LEN,
        };
        wakers.word = match Mapping::create(&section, WAKE_LEN, &spec) {
            Ok(map) => WakePage::new(map).inspect(|page| {
                // Nobody asleep: a generation the channel is far from (a
                // zeroed word would look like a sleeper on generation 0).
                page.want()
                    .store(NOBODY, std::sync::atomic::Ordering::Relaxed);
            }),
            // A take-over: the predecessor's, which its sleepers use.
            Err(_) if !fresh => open_word(&section, ns),
            Err(_) => None,
        };
        Ok(wakers)
    }

    /// Called before the generation word moves on to `next`: the event
    /// that readers of `next` will wait on is reset, if it may be set.
    pub(crate) fn before_publish(&mut self, next: u32) {
        self.next = next;
        let i = next % RING;
        if self.set.take(i) {
            // SAFETY: a live event handle owned by `self`.
            unsafe { ResetEvent(self.events[i as usize]) };
        }
    }

    /// Wakes the readers that waited for the generation the word just
    /// left, if any may wait: the event is set when the wake word names
    /// that generation or the new one ([`crate::os::wanted`]), or for a
    /// sleeper lapped since ([`lapped`]: the word still naming its
    /// generation, or this event set for a sleeper one to four rings ago);
    /// no system call otherwise.
    pub(crate) fn wake(&mut self, word: &std::sync::atomic::AtomicU32) {
        if let Some(page) = &self.word {
            let asked = crate::os::asked(page.want());
            let moved_past = self.next.wrapping_sub(1);
            let i = (moved_past % RING) as usize;
            if crate::os::wanted(asked, moved_past) {
                self.set_for_sleeper[i] = Some(moved_past);
            } else if !lapped(asked, moved_past)
                && !self.set_for_sleeper[i].is_some_and(|g| lapped(g, moved_past))
            {
                return;
            }
        }
        self.wake_all(word);
    }

    /// Wakes every reader of the generation the word just left, whatever
    /// the wake word says (the publisher leaving).
    pub(crate) fn wake_all(&mut self, _word: &std::sync::atomic::AtomicU32) {
        let i = self.next.wrapping_sub(1) % RING;
        self.set.mark(i);
        // SAFETY: a live event handle owned by `self`.
        unsafe { SetEvent(self.events[i as usize]) };
    }

    /// Nothing to remove: the events and the section go with their last
    /// handle.
    pub(crate) fn remove_name(&self) {}

    /// Nothing to do: the events and the word were made by
    /// [`Wakers::new`], under the new channel's own instance.
    pub(crate) fn channel_is_new(&mut self) {}
}

impl Drop for Wakers {
    fn drop(&mut self) {
        for &event in &self.events {
            // SAFETY: each handle is owned by `self` and closed once.
            unsafe { CloseHandle(event) };
        }
    }
}

/// Nothing to remove: Windows's wake events and wake word's section go
/// with their last handle.
pub(crate) fn remove_wake(_object: &str, _channel_gone_only: bool) {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::time::Duration;

    use super::*;

    fn signalled(event: HANDLE) -> bool {
        // SAFETY: a live event handle of the caller's; a zero timeout only
        // looks.
        unsafe { WaitForSingleObject(event, 0) == 0 }
    }

    fn ring(name: &str) -> (String, u64) {
        let instance = 0x5EED_0000_0000_0000 | u64::from(std::process::id());
        (format!("shmcast.{name}{}", std::process::id()), instance)
    }

    /// One publish as the publisher makes it: reset, move, wake.
    fn publish(wakers: &mut Wakers, generation: &AtomicU32) {
        let next = generation.load(SeqCst).wrapping_add(1);
        wakers.before_publish(next);
        generation.store(next, SeqCst);
        wakers.wake(generation);
    }

    /// Waits (on another thread) until the sleeper has declared its sleep
    /// on `g`, then a little longer, so that it is most likely asleep.
    fn until_declared(wakers: &Wakers, g: u32) {
        let word = wakers.word.as_ref().expect("the wake word was made").want();
        let started = std::time::Instant::now();
        while word.load(SeqCst) != g {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never declared"
            );
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn with_nobody_asleep_no_event_is_set_and_a_sleeper_gets_its_own() {
        let (object, instance) = ring("wakering");
        let mut wakers = Wakers::new(&object, Namespace::Local, instance, None, 0, true).unwrap();
        let wakeup = Wakeup::new(&object, Namespace::Local, instance).unwrap();
        assert!(wakeup.word.get().is_some(), "the subscriber has no word");
        let generation = AtomicU32::new(u32::MAX - 40);
        for _ in 0..100 {
            publish(&mut wakers, &generation);
        }
        // No SetEvent was made: not one event is set.
        assert!(!wakers.events.iter().any(|&e| signalled(e)));
        std::thread::scope(|s| {
            let g = generation.load(SeqCst);
            let (wakeup, generation) = (&wakeup, &generation);
            let sleeper = s.spawn(move || wakeup.wait(generation, g, Duration::from_secs(30)));
            until_declared(&wakers, g);
            publish(&mut wakers, generation);
            sleeper.join().unwrap();
            // The publisher set the sleeper's event, and only that one.
            let set: Vec<u32> = (0..RING)
                .filter(|&i| signalled(wakers.events[i as usize]))
                .collect();
            assert_eq!(set, vec![g % RING]);
        });
        // Reset when the generation comes round to it again; the word the
        // sleeper left sets it again once a ring for four rings (for a
        // sleeper held up before its wait), and never after.
        for _ in 0..6 * RING {
            publish(&mut wakers, &generation);
        }
        assert!(!wakers.events.iter().any(|&e| signalled(e)));
    }

    #[test]
    fn the_word_is_made_under_each_descriptor_the_docs_show() {
        for (i, sddl) in [
            "D:(A;;GA;;;OW)(A;;GRGX;;;WD)",
            "D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGX;;;IU)",
            "D:(A;;GA;;;SY)(A;;GR;;;IU)",
            "D:(A;;GA;;;WD)",
        ]
        .into_iter()
        .enumerate()
        {
            let (object, instance) = ring(&format!("wakesd{i}-"));
            let wakers =
                Wakers::new(&object, Namespace::Local, instance, Some(sddl), 0, true).unwrap();
            assert!(wakers.word.is_some(), "no wake word under {sddl}");
        }
    }

    #[test]
    fn a_lapped_sleeper_is_woken_by_the_publish_that_comes_round_to_it() {
        // `behind`: how far the publish's generation is past the sleeper's.
        for (behind, woken) in [
            (RING, true),
            (4 * RING, true),
            (0, false),
            (1, false),
            (RING - 1, false),
            (RING + 1, false),
            (5 * RING, false),
            (NOBODY, false),
        ] {
            let slept_on = 7u32.wrapping_sub(RING);
            assert_eq!(
                lapped(slept_on, slept_on.wrapping_add(behind)),
                woken,
                "{behind}"
            );
        }
        // A sleeper declares a sleep on g and is held up before its wait
        // while the generation goes round the ring; the publish that moves
        // past g + RING sets the event it then waits on. Once with the word
        // still naming g, once with a later sleeper having raised it.
        for raised_since in [false, true] {
            let (object, instance) = ring(&format!("wakelap{raised_since}-"));
            let mut wakers =
                Wakers::new(&object, Namespace::Local, instance, None, 0, true).unwrap();
            let generation = AtomicU32::new(u32::MAX - 3);
            let g = generation.load(SeqCst);
            let sleeper = Wakeup::new(&object, Namespace::Local, instance).unwrap();
            let word = sleeper.word.get().unwrap().want();
            assert!(crate::os::declare(word, &generation, g));
            publish(&mut wakers, &generation);
            for _ in 1..RING {
                if raised_since {
                    let now = generation.load(SeqCst);
                    assert!(crate::os::declare(word, &generation, now));
                }
                publish(&mut wakers, &generation);
            }
            let event = wakers.events[(g % RING) as usize];
            assert!(!signalled(event), "reset when the generation came round");
            publish(&mut wakers, &generation);
            assert!(signalled(event), "the lapped sleeper's event was not set");
        }
    }

    #[test]
    fn a_section_of_reserved_memory_is_refused_not_read() {
        use windows_sys::Win32::System::Memory::SEC_RESERVE;
        let object = format!("shmcast.reserved{}", std::process::id());
        let name = kernel_name(&object, Namespace::Local);
        // SAFETY: a pagefile-backed section of 64 KiB, nothing committed;
        // `name` is NUL-terminated.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                ptr::null(),
                PAGE_READWRITE | SEC_RESERVE,
                0,
                65536,
                name.as_ptr(),
            )
        };
        assert!(!handle.is_null());
        let refused = Mapping::open(&object, Namespace::Local, false).err();
        // SAFETY: the handle made above, closed once.
        unsafe { CloseHandle(handle) };
        let refused = refused.expect("a view of uncommitted memory was handed out");
        assert_eq!(refused.kind, OsErrorKind::Foreign, "{refused:?}");
    }

    #[test]
    fn an_image_section_is_refused_not_written() {
        use std::os::windows::ffi::OsStrExt;
        use windows_sys::Win32::Storage::FileSystem::{
            CreateFileW, FILE_GENERIC_READ, FILE_SHARE_READ, OPEN_EXISTING,
        };
        use windows_sys::Win32::System::Memory::{PAGE_READONLY, SEC_IMAGE};
        let exe: Vec<u16> = std::env::current_exe()
            .unwrap()
            .as_os_str()
            .encode_wide()
            .chain([0])
            .collect();
        // SAFETY: `exe` is NUL-terminated; plain open for reading.
        let file = unsafe {
            CreateFileW(
                exe.as_ptr(),
                FILE_GENERIC_READ,
                FILE_SHARE_READ,
                ptr::null(),
                OPEN_EXISTING,
                0,
                ptr::null_mut(),
            )
        };
        assert_ne!(file, INVALID_HANDLE_VALUE);
        let object = format!("shmcast.image{}", std::process::id());
        let name = kernel_name(&object, Namespace::Local);
        // SAFETY: `file` is the open executable; `name` is NUL-terminated.
        let section = unsafe {
            CreateFileMappingW(
                file,
                ptr::null(),
                PAGE_READONLY | SEC_IMAGE,
                0,
                0,
                name.as_ptr(),
            )
        };
        // SAFETY: the file handle made above, closed once.
        unsafe { CloseHandle(file) };
        assert!(!section.is_null(), "{}", io::Error::last_os_error());
        let results = [
            Mapping::open(&object, Namespace::Local, false).err(),
            Mapping::open(&object, Namespace::Local, true).err(),
        ];
        // SAFETY: the section handle made above, closed once.
        unsafe { CloseHandle(section) };
        for refused in results {
            // Either the open itself fails or the view is refused: never a
            // view handed out.
            assert!(refused.is_some(), "an image section was handed out");
        }
    }

    #[test]
    fn a_section_over_a_file_is_refused_not_paged_in() {
        use std::os::windows::io::AsRawHandle;
        let path = std::env::temp_dir().join(format!("shmcast-filebacked-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(65536).unwrap();
        let object = format!("shmcast.filebacked{}", std::process::id());
        let name = kernel_name(&object, Namespace::Local);
        // SAFETY: `file` is open read-write and outlives the call; `name` is
        // NUL-terminated.
        let section = unsafe {
            CreateFileMappingW(
                file.as_raw_handle() as HANDLE,
                ptr::null(),
                PAGE_READWRITE,
                0,
                0,
                name.as_ptr(),
            )
        };
        assert!(!section.is_null(), "{}", io::Error::last_os_error());
        let results = [
            Mapping::open(&object, Namespace::Local, false).err(),
            Mapping::open(&object, Namespace::Local, true).err(),
        ];
        // SAFETY: the section handle made above, closed once.
        unsafe { CloseHandle(section) };
        drop(file);
        let _ = std::fs::remove_file(&path);
        for refused in results {
            let refused = refused.expect("a file-backed section was handed out");
            assert_eq!(refused.kind, OsErrorKind::Foreign, "{refused:?}");
        }
    }

    #[test]
    fn a_take_over_resets_whatever_its_predecessor_left_set() {
        let (object, instance) = ring("waketake");
        let generation = AtomicU32::new(7);
        let mut first = Wakers::new(&object, Namespace::Local, instance, None, 0, true).unwrap();
        // The subscriber keeps the events when the first publisher goes.
        let _wakeup = Wakeup::new(&object, Namespace::Local, instance).unwrap();
        for _ in 0..5 {
            first.before_publish(generation.load(SeqCst) + 1);
            generation.fetch_add(1, SeqCst);
            first.wake_all(&generation);
        }
        drop(first);
        assert_eq!(
            (0..RING)
                .filter(|&i| signalled(_wakeup.events[i as usize]))
                .count(),
            5
        );
        let mut second = Wakers::new(&object, Namespace::Local, instance, None, 0, false).unwrap();
        // All reset at once: even a move of the generation before the
        // first publish (a take-over that fails) finds its event clear.
        assert!(!second.events.iter().any(|&e| signalled(e)));
        for _ in 0..RING {
            publish(&mut second, &generation);
        }
        assert!(!second.events.iter().any(|&e| signalled(e)));
    }

    #[test]
    fn a_scribbled_word_costs_a_sleeper_its_wake_up_never_its_frame() {
        let (object, instance) = ring("wakescribble");
        let mut wakers = Wakers::new(&object, Namespace::Local, instance, None, 0, true).unwrap();
        let wakeup = Wakeup::new(&object, Namespace::Local, instance).unwrap();
        let scribbled = Wakeup::new(&object, Namespace::Local, instance).unwrap();
        let word = scribbled.word.get().unwrap().want();
        let generation = AtomicU32::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut garbage = 0x9E37_79B9u32;
                while !stop.load(SeqCst) {
                    garbage = garbage.rotate_left(7) ^ 0xA5A5_5A5A;
                    word.store(garbage, SeqCst);
                }
            });
            for _ in 0..5 {
                let g = generation.load(SeqCst);
                let (wakeup, generation) = (&wakeup, &generation);
                let sleeper = s.spawn(move || {
                    let started = std::time::Instant::now();
                    wakeup.wait(generation, g, Duration::from_secs(30));
                    started.elapsed()
                });
                std::thread::sleep(Duration::from_millis(30));
                publish(&mut wakers, generation);
                let took = sleeper.join().unwrap();
                // The figure is bounded by DECLARED_SLICE; the check only
                // that the frame was not missed for the whole timeout.
                eprintln!("a sleeper under a scribbled word returned after {took:?}");
                assert!(took < Duration::from_secs(30), "the frame was missed");
            }
            stop.store(true, SeqCst);
        });
    }
}
