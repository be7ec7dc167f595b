//! The Wine attack on the command, each finding tried as it was found: a
//! reader of stdout that goes first (`| head -1`), what `watch` says of a
//! channel it cannot look at, and, on Windows, a bad security descriptor
//! and names squatted by objects that are not shmcast's. Runs on Linux
//! and, built for Windows, under Wine.

use std::process::{ExitStatus, Stdio};

mod common;

use common::{shmcast, unique};

/// `shmcast ARGS` with its stdout a pipe that nobody reads any more (the
/// reading end is closed as soon as the process starts, long before it
/// has anything to print); its exit status and stderr.
fn with_stdout_closed(args: &[&str]) -> (ExitStatus, String) {
    let mut child = shmcast()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Finding A: `info X | head -1` and `list | head -1` panicked (exit 101,
/// "Broken pipe", or "Pipe not connected" under Wine). Every command that
/// prints now stops quietly when nobody reads it.
#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let region = unique("pipe-r");
    let _held = shmcast::Region::create(&region, 4096).unwrap();
    let channel = unique("pipe-c");
    let mut publisher = shmcast::Publisher::create(&channel, 64).unwrap();
    publisher
        .publish(
            &shmcast::FrameMeta::new(8, 8, shmcast::PixelFormat::Gray8),
            &[9; 64],
        )
        .unwrap();
    let png = std::env::temp_dir().join(format!("{channel}.png"));
    let png = png.to_str().unwrap();
    let commands: [&[&str]; 8] = [
        &["list"],
        &["list", "--json"],
        &["info", &region],
        &["info", &region, "--json"],
        &["info", &channel],
        &["info", &channel, "--json"],
        &["cat", &region],
        &["snapshot", &channel, png],
    ];
    for args in commands {
        let (status, err) = with_stdout_closed(args);
        assert!(
            status.success() && !err.contains("panicked"),
            "shmcast {args:?} with stdout closed: {status:?}: {err}"
        );
    }
    let _ = std::fs::remove_file(png);
}

#[cfg(target_os = "linux")]
/// The first row `shmcast watch NAME` prints (stdout not a terminal: one
/// line per channel per second, after a header).
fn watch_row(name: &str) -> String {
    use std::io::{BufRead, BufReader};
    let child = shmcast()
        .args(["watch", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::Kill(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(header.starts_with("channel"), "{header}");
    lines.next().unwrap().unwrap()
}

/// Finding B: `watch` said "(no such channel)" of a channel whose header
/// is corrupt (or that this user may not read: see trust.rs); it says
/// what `info` says.
#[cfg(target_os = "linux")]
#[test]
fn watch_says_why_it_cannot_show_a_channel_that_exists() {
    use std::os::unix::fs::FileExt;
    let name = unique("watch-bad");
    let _publisher = shmcast::Publisher::create(&name, 64).unwrap();
    // The slot count, the u32 right after the common header.
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap()
        .write_all_at(&u32::MAX.to_ne_bytes(), 64)
        .unwrap();
    let row = watch_row(&name);
    assert!(!row.contains("no such channel"), "{row}");
    assert!(
        row.contains("corrupt") && row.contains("4294967295 slots"),
        "{row}"
    );
    // A name that is not there is still said to be missing.
    let row = watch_row(&unique("watch-none"));
    assert!(row.contains("(no such channel)"), "{row}");
}

#[cfg(windows)]
mod windows {
    use super::*;
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Memory::{CreateFileMappingW, PAGE_READWRITE};
    use windows_sys::Win32::System::Threading::CreateEventW;

    /// A kernel object that some other program made under our name.
    struct Squatter(HANDLE);

    impl Squatter {
        fn kernel_name(name: &str) -> Vec<u16> {
            format!("Local\\shmcast.{name}")
                .encode_utf16()
                .chain(Some(0))
                .collect()
        }

        /// A zeroed section: no shmcast header.
        fn section(name: &str) -> Squatter {
            let wide = Squatter::kernel_name(name);
            // SAFETY: a pagefile-backed section; `wide` is NUL-terminated
            // and outlives the call; default security.
            let handle = unsafe {
                CreateFileMappingW(
                    INVALID_HANDLE_VALUE,
                    std::ptr::null(),
                    PAGE_READWRITE,
                    0,
                    65536,
                    wide.as_ptr(),
                )
            };
            assert!(!handle.is_null());
            Squatter(handle)
        }

        /// An event: another kind of object.
        fn event(name: &str) -> Squatter {
            let wide = Squatter::kernel_name(name);
            // SAFETY: `wide` is NUL-terminated and outlives the call.
            let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, wide.as_ptr()) };
            assert!(!handle.is_null());
            Squatter(handle)
        }
    }

    impl Drop for Squatter {
        fn drop(&mut self) {
            // SAFETY: our handle, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// `shmcast ARGS`, expected to fail: its stderr.
    fn fails(args: &[&str]) -> String {
        let out = shmcast().args(args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "shmcast {args:?} succeeded: {err}");
        assert_ne!(out.status.code(), Some(101), "panicked: {err}");
        err
    }

    fn serving(name: &str) -> [&str; 9] {
        [
            "serve", name, "--width", "8", "--height", "8", "--format", "gray8", "--frames",
        ]
    }

    /// Finding E: serve and publish said "Invalid parameter (os error 87)"
    /// or "Invalid ACL (os error 1336)" of a bad --sddl, which `hold`
    /// calls what it is.
    #[test]
    fn a_bad_sddl_is_called_one_by_serve_and_publish() {
        for sddl in ["garbage", "D:(A;;XX;;;WD)"] {
            let name = unique("badsddl");
            let mut serve = serving(&name).to_vec();
            serve.extend(["1", "--sddl", sddl]);
            let publish = [
                "publish", &name, "--width", "2", "--height", "2", "--format", "gray8", "--sddl",
                sddl,
            ];
            for args in [
                &serve[..],
                &publish[..],
                &["hold", &name, "--size", "16", "--sddl", sddl],
            ] {
                let err = fails(args);
                assert!(
                    err.contains(&format!("{sddl:?} is not a valid SDDL security descriptor")),
                    "{args:?}: {err}"
                );
            }
        }
    }

    /// Finding H: a section with no shmcast header under the name made
    /// every command advise `shmcast clean`, which cannot remove a section
    /// another process holds.
    #[test]
    fn a_headerless_section_under_the_name_is_said_to_be_held_not_cleanable() {
        let name = unique("squat-sec");
        let _squatter = Squatter::section(&name);
        let mut serve = serving(&name).to_vec();
        serve.push("1");
        for args in [
            &serve[..],
            &["info", &name],
            &["read", &name, "--timeout", "1"],
        ] {
            let err = fails(args);
            assert!(err.contains("never fully created"), "{args:?}: {err}");
            assert!(
                err.contains("stays while any process holds the object open")
                    && err.contains("Windows does not tell which process"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("clean"), "{args:?}: {err}");
        }
    }

    /// Finding I: an event (or mutex) under the name made serve fail with
    /// "CreateFileMappingW failed: Invalid handle (os error 6)".
    #[test]
    fn another_kind_of_object_under_the_name_is_called_one() {
        let name = unique("squat-ev");
        let _squatter = Squatter::event(&name);
        let mut serve = serving(&name).to_vec();
        serve.push("1");
        for args in [&serve[..], &["info", &name]] {
            let err = fails(args);
            assert!(
                err.contains("the name is held by an object of another kind (an event, a mutex"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("Invalid handle"), "{args:?}: {err}");
        }
        let out = shmcast().arg("list").output().unwrap();
        assert!(out.status.success());
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&name));
    }
}
