//! `shmcast service`: the Windows service, under Wine's own service
//! manager (services.exe and sc.exe): install, start, frames flowing, stop
//! handled cleanly, the log file, uninstall; and `service run` from a
//! console, which serves in the foreground.
#![cfg(windows)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{channel, shmcast, unique};

fn sc(args: &[&str]) -> std::process::Output {
    Command::new("sc").args(args).output().expect("sc.exe")
}

/// Polls `info` until `ok` holds for the channel (30 s at most).
fn until(name: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    common::until(
        name,
        what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        ok,
    );
}

fn config(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[[channel]]\nname = \"{name}\"\nsource = \"pattern\"\nwidth = 64\nheight = 48\nformat = \"gray8\"\nfps = 20\n"),
    )
    .unwrap();
    path
}

#[test]
fn the_service_installs_starts_publishes_stops_cleanly_and_uninstalls() {
    let name = unique("svc");
    let config = config(&name);
    // A service left by an earlier failed run would be in the way.
    let _ = shmcast().args(["service", "uninstall"]).output();

    let out = shmcast()
        .args(["service", "install", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The Event Log source is registered with it.
    let source = r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\shmcast";
    let out = Command::new("reg")
        .args(["query", source])
        .output()
        .unwrap();
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("EventLogMessages.dll"),
        "{out:?}"
    );
    assert!(sc(&["start", "shmcast"]).status.success());
    until(&name, "publishing from the service", |c| {
        c["latest_frame"].as_u64() > Some(10) && c["health"] == "live"
    });

    // A parameter-change control reloads the config: a channel added, the
    // first one untouched. (`shmcast service reload` sends it, as `sc
    // control shmcast paramchange` does on Windows; Wine's sc has no
    // `control`.)
    let instance = channel(&name).unwrap()["instance"].clone();
    let added = unique("svc-added");
    let first = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, first.clone() + &first.replace(&name, &added)).unwrap();
    let out = shmcast().args(["service", "reload"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    until(&added, "added by the reload", |c| c["health"] == "live");
    assert_eq!(
        channel(&name).unwrap()["instance"],
        instance,
        "the unchanged channel restarted"
    );

    // A stop request ends it cleanly: the publisher lets go of the channel
    // (and, nobody else holding it, the section goes with its last handle).
    assert!(sc(&["stop", "shmcast"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while channel(&name).is_some_and(|c| c["health"] != "gone") {
        assert!(
            Instant::now() < deadline,
            "the stopped service still publishes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut log = config.clone().into_os_string();
    log.push(".log");
    // The channel goes before the service's last line is written: wait for
    // that line (it was read too early once, under a loaded machine).
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    while !read_log().contains("service stopped") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = read_log();
    assert!(log.contains("service started"), "{log}");
    assert!(
        log.contains("reloaded: 1 unchanged, 0 changed, 1 added, 0 removed"),
        "{log}"
    );
    // One stamped line per event, and the config's path as written.
    for line in log.lines() {
        assert!(
            line.len() > 31 && line.as_bytes()[10] == b'T' && &line[23..25] == "Z ",
            "{line:?}"
        );
    }
    assert!(!log.contains(r"\\?\"), "{log}");
    assert!(
        log.contains("asks us to stop") && log.contains("service stopped"),
        "{log}"
    );

    let out = shmcast().args(["service", "uninstall"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !sc(&["query", "shmcast"]).status.success(),
        "the service is still registered"
    );
    assert!(
        !Command::new("reg")
            .args(["query", source])
            .output()
            .unwrap()
            .status
            .success(),
        "the event source is still registered"
    );
    let _ = std::fs::remove_file(config);
}

#[test]
fn service_run_from_a_console_serves_in_the_foreground() {
    let name = unique("svc-console");
    let config = config(&name);
    let mut run = shmcast()
        .args(["service", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until(&name, "publishing", |c| {
        c["latest_frame"].as_u64() > Some(5)
    });
    run.kill().unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("serving in the foreground"));
    let _ = std::fs::remove_file(config);
}

#[test]
fn install_refuses_a_config_that_does_not_parse() {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("svc-bad")));
    std::fs::write(&path, "[[channel]]\nname = \"x\"\n").unwrap();
    let out = shmcast()
        .args(["service", "install", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing field"));
    let _ = std::fs::remove_file(path);
}

/// The DACL of the kernel object `name` (a section or an event), as SDDL.
fn dacl_of(
    name: &str,
    open: impl Fn(*const u16) -> windows_sys::Win32::Foundation::HANDLE,
) -> String {
    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
        SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::DACL_SECURITY_INFORMATION;
    let wide: Vec<u16> = name.encode_utf16().chain([0]).collect();
    let handle = open(wide.as_ptr());
    assert!(!handle.is_null(), "cannot open {name} to read its security");
    let mut sd = std::ptr::null_mut();
    // SAFETY: a live handle opened with READ_CONTROL; the out-pointers are
    // valid; the descriptor is freed below.
    let rc = unsafe {
        GetSecurityInfo(
            handle,
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    assert_eq!(rc, 0, "GetSecurityInfo on {name}");
    let mut text = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: `sd` came from GetSecurityInfo; `text` is allocated by the call.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            &mut len,
        )
    };
    assert_ne!(ok, 0);
    // SAFETY: `text` holds `len` UTF-16 units, NUL included.
    let sddl = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len as usize) });
    // SAFETY: both were allocated by the calls above; the handle is ours.
    unsafe {
        LocalFree(text.cast());
        LocalFree(sd);
        CloseHandle(handle);
    }
    sddl.trim_end_matches('\0').to_owned()
}

#[test]
fn serve_global_with_an_sddl_puts_it_on_the_section_and_the_wake_events() {
    use windows_sys::Win32::Foundation::GENERIC_READ;
    use windows_sys::Win32::System::Memory::OpenFileMappingW;
    use windows_sys::Win32::System::Threading::OpenEventW;
    const READ_CONTROL: u32 = 0x0002_0000;
    let name = unique("global");
    let sddl = "D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGX;;;IU)";
    let mut server = shmcast()
        .args([
            "serve", &name, "--global", "--sddl", sddl, "--width", "64", "--height", "48",
        ])
        .args(["--format", "gray8", "--fps", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let global = format!("Global\\{name}");
    until(&global, "publishing", |c| {
        c["latest_frame"].as_u64() > Some(2)
    });
    // A reader opens the Global\ channel read-only.
    let out = shmcast()
        .args([
            "read",
            &name,
            "--global",
            "--read-only",
            "--count",
            "2",
            "--md5",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // The descriptor reached the section and every wake-up event.
    let instance = channel(&global).unwrap()["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let section = dacl_of(&format!("Global\\shmcast.{name}"), |n| {
        // SAFETY: `n` is a NUL-terminated UTF-16 name.
        unsafe { OpenFileMappingW(READ_CONTROL | GENERIC_READ, 0, n) }
    });
    for ace in ["(A;;GA;;;SY)", "(A;;GA;;;BA)", ";;;IU)"] {
        // Windows may write generic rights back as the object's own.
        let sid = &ace[ace.len() - 4..];
        assert!(
            section.contains(ace) || section.contains(sid),
            "section: {section}"
        );
    }
    for i in [0, 15] {
        let event = dacl_of(
            &format!("Global\\shmcast.{name}~wake.{instance}.{i}"),
            |n| {
                // SAFETY: as above.
                unsafe { OpenEventW(READ_CONTROL, 0, n) }
            },
        );
        assert!(
            event.contains(";;;SY)") && event.contains(";;;BA)") && event.contains(";;;IU)"),
            "event {i}: {event}"
        );
        assert!(
            !event.contains(";;;WD)"),
            "event {i} lets everyone in: {event}"
        );
    }
    server.kill().unwrap();
    let _ = server.wait();
}
