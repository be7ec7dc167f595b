//! The Windows service's notable events in the Windows Event Log
//! (Application log, source `shmcast`): its start and stop, reloads,
//! stalls and recoveries, and channel errors. Every other line goes to the
//! log file only (`log.rs`); stalls reach here once per failure, as they
//! reach the file (a repeating failure is counted, not repeated).
//!
//! `service install` registers the source; `uninstall` removes it. Its
//! messages come from .NET Framework's `EventLogMessages.dll`, whose every
//! event id is the message "%1": the text we report is the whole
//! description, and Event Viewer shows it without a message table of ours.

use std::sync::atomic::{AtomicBool, Ordering};

use windows_sys::Win32::Foundation::ERROR_SUCCESS;
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE,
    EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteKeyW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE,
    KEY_SET_VALUE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
};

use crate::log::Level;

/// The event source, as Event Viewer shows it.
pub const SOURCE: &str = "shmcast";
const KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\shmcast";
const MESSAGES: &str = r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll";
/// The one event id used: its message is "%1".
const EVENT_ID: u32 = 1000;

static ENABLED: AtomicBool = AtomicBool::new(false);

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// Reports notable events from now on (the service does; a console run
/// does not).
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// Registers the event source (at `service install`; needs an
/// administrator, as installing does).
pub fn register() -> Result<(), String> {
    let mut key: HKEY = std::ptr::null_mut();
    let path = wide(KEY);
    // SAFETY: `path` is NUL-terminated; `key` receives an open key, closed
    // below.
    let status = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            path.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            std::ptr::null(),
            &mut key,
            std::ptr::null_mut(),
        )
    };
    if status != ERROR_SUCCESS {
        return Err(format!(
            "cannot register event source {SOURCE}: {}",
            std::io::Error::from_raw_os_error(status as i32)
        ));
    }
    let file = wide(MESSAGES);
    let types: u32 = 7; // error, warning, information
    let name = wide("EventMessageFile");
    let supported = wide("TypesSupported");
    // SAFETY: `key` is open; each value's pointer and byte length describe
    // a live buffer (the string with its NUL).
    let results = unsafe {
        [
            RegSetValueExW(
                key,
                name.as_ptr(),
                0,
                REG_EXPAND_SZ,
                file.as_ptr().cast(),
                (file.len() * 2) as u32,
            ),
            RegSetValueExW(
                key,
                supported.as_ptr(),
                0,
                REG_DWORD,
                (&types as *const u32).cast(),
                4,
            ),
        ]
    };
    // SAFETY: `key` is open and closed once.
    unsafe { RegCloseKey(key) };
    match results.iter().find(|&&r| r != ERROR_SUCCESS) {
        Some(&r) => Err(format!(
            "cannot register event source {SOURCE}: {}",
            std::io::Error::from_raw_os_error(r as i32)
        )),
        None => Ok(()),
    }
}

/// Removes the event source (at `service uninstall`); the events already
/// logged stay.
pub fn unregister() {
    let path = wide(KEY);
    // SAFETY: `path` is NUL-terminated.
    unsafe { RegDeleteKeyW(HKEY_LOCAL_MACHINE, path.as_ptr()) };
}

/// Reports `message` at `level`, if enabled. Failures are dropped: the
/// log file has the line anyway.
pub fn report(level: Level, message: &str) {
    if !ENABLED.load(Ordering::SeqCst) {
        return;
    }
    let source = wide(SOURCE);
    // SAFETY: `source` is NUL-terminated; a null server is this machine.
    let handle = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
    if handle.is_null() {
        return;
    }
    let text = wide(message);
    let strings = [text.as_ptr()];
    let kind = match level {
        Level::Error => EVENTLOG_ERROR_TYPE,
        Level::Warn => EVENTLOG_WARNING_TYPE,
        Level::Info => EVENTLOG_INFORMATION_TYPE,
    };
    // SAFETY: `handle` is an open event source; `strings` holds one
    // NUL-terminated string that outlives the call; no SID, no raw data.
    unsafe {
        ReportEventW(
            handle,
            kind,
            0,
            EVENT_ID,
            std::ptr::null_mut(),
            1,
            0,
            strings.as_ptr(),
            std::ptr::null(),
        );
        DeregisterEventSource(handle);
    }
}
