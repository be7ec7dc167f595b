//! Who may do what, from a shell: the findings of the trust-boundary
//! review, each tried as it was found (another user via `su`, a FIFO under
//! our prefix, a blocked source and SIGTERM) and now harmless. The tests
//! that need a second user look for `shmcast-test` (scripts/test creates
//! it when run as root) and say so when it is missing.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{shmcast, unique};

/// Waits for `child` at most `limit`; kills it and fails if it is still
/// running then (a hang).
fn wait_or_fail(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a shmcast command to completion within `limit`; its output.
fn run_within(args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = shmcast()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_or_fail(&mut child, limit, &format!("shmcast {args:?}"));
    let mut out = String::new();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_ne!(status.code(), Some(101), "panicked: {err}");
    (status.success(), out, err)
}

#[test]
fn bad_frame_rates_are_errors_for_serve_and_publish_alike() {
    for fps in ["1e-300", "-5", "NaN", "inf"] {
        let name = unique("fps");
        let fps = format!("--fps={fps}");
        let (ok, _, err) = run_within(
            &["serve", &name, &fps, "--frames", "1"],
            Duration::from_secs(20),
        );
        assert!(!ok && err.contains("--fps"), "serve --fps {fps}: {err}");
        let (ok, _, err) = run_within(
            &[
                "publish", &name, "--width", "2", "--height", "2", "--format", "gray8", &fps,
            ],
            Duration::from_secs(20),
        );
        assert!(!ok && err.contains("--fps"), "publish --fps {fps}: {err}");
    }
}

#[test]
fn read_count_zero_returns_at_once() {
    let (ok, out, err) = run_within(
        &["read", &unique("none"), "--count", "0", "--timeout", "30"],
        Duration::from_secs(5),
    );
    assert!(ok && out.is_empty(), "{err}");
}

#[test]
fn a_huge_size_is_called_too_large() {
    let (ok, _, err) = run_within(
        &["hold", &unique("huge"), "--size", "99999999999G"],
        Duration::from_secs(5),
    );
    assert!(!ok && err.contains("too large"), "{err}");
}

#[cfg(unix)]
mod linux {
    use super::*;
    use common::{md5_hex, start_serve as serve};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    const OTHER: &str = "shmcast-test";

    fn other_user_exists() -> bool {
        let exists = Command::new("id")
            .arg(OTHER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            eprintln!("skipped: no user {OTHER} (scripts/test creates it when run as root)");
        }
        exists
    }

    /// A copy of the shmcast binary that the other user may run (the
    /// build tree may sit under a directory they cannot enter).
    fn shared_binary() -> String {
        let dir = std::env::temp_dir().join(format!("shmcast-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("shmcast");
        if !path.exists() {
            std::fs::copy(env!("CARGO_BIN_EXE_shmcast"), &path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path.display().to_string()
    }

    /// `script` run by /bin/sh as the other user.
    fn as_other(script: &str) -> Command {
        let mut c = Command::new("su");
        c.args([OTHER, "-s", "/bin/sh", "-c", script]);
        c
    }

    /// `shmcast remove NAME`, as a user cleans up: the channel and its
    /// lease table go.
    fn remove_all(name: &str) {
        let (ok, _, err) = run_within(&["remove", name], Duration::from_secs(5));
        assert!(ok, "{err}");
        for object in [
            format!("shmcast.{name}"),
            format!("shmcast.{name}~leases"),
            format!("shmcast.{name}~wake"),
        ] {
            assert!(!std::path::Path::new(&format!("/dev/shm/{object}")).exists());
        }
    }

    fn sigterm(child: &Child) {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Finding 1: a user with read access alone held an flock on the object
    /// and froze serve (deaf to SIGTERM), a restarted serve, and clean.
    #[test]
    fn an_flock_by_another_user_freezes_nothing() {
        if !other_user_exists() {
            return;
        }
        let name = unique("flock");
        let mut first = serve(&name, &["--mode", "644", "--width", "64", "--height", "48"]);
        let mut locker = as_other(&format!("exec flock -s /dev/shm/shmcast.{name} sleep 30"))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (ok, _, err) = run_within(&["clean"], Duration::from_secs(10));
        assert!(ok, "{err}");
        sigterm(&first);
        let status = wait_or_fail(&mut first, Duration::from_secs(5), "serve after SIGTERM");
        assert!(status.success(), "{status:?}");
        assert!(!std::path::Path::new(&format!("/dev/shm/shmcast.{name}")).exists());
        let mut second = serve(&name, &["--mode", "644", "--width", "64", "--height", "48"]);
        sigterm(&second);
        wait_or_fail(&mut second, Duration::from_secs(5), "second serve");
        let _ = locker.kill();
        let _ = locker.wait();
    }

    /// Any local user can squat a name (POSIX shared memory names are first
    /// come, first served): the service says whose it is and what to do,
    /// instead of "permission denied"; a squatted lease-table name is named
    /// too, and `info` says whose the squatting object is.
    #[test]
    fn a_name_squatted_by_another_user_is_said_to_be_theirs() {
        if !other_user_exists() {
            return;
        }
        let name = unique("squat");
        let object = format!("/dev/shm/shmcast.{name}");
        assert!(as_other(&format!("echo junk > {object}"))
            .status()
            .unwrap()
            .success());
        let (ok, _, err) = run_within(&["serve", &name, "--frames", "1"], Duration::from_secs(10));
        assert!(!ok, "served on a squatted name");
        assert!(
            err.contains("is held by uid")
                && err.contains("shmcast-test")
                && err.contains("Remove it as root"),
            "{err}"
        );
        let (_, _, err) = run_within(&["info", &name], Duration::from_secs(10));
        assert!(
            err.contains("belongs to uid") && err.contains("shmcast-test"),
            "{err}"
        );
        let _ = std::fs::remove_file(&object);

        let leases = format!("/dev/shm/shmcast.{name}~leases");
        assert!(as_other(&format!("echo junk > {leases}"))
            .status()
            .unwrap()
            .success());
        let (ok, out, err) =
            run_within(&["serve", &name, "--frames", "1"], Duration::from_secs(10));
        assert!(ok, "{out}{err}");
        assert!(
            err.contains("no lease table")
                && err.contains("is held by uid")
                && err.contains("shmcast-test"),
            "{err}"
        );
        let _ = std::fs::remove_file(&leases);
    }

    /// Finding 2: root's serve "took over" a dead channel another user had
    /// made with mode 666, and published into memory that user controls.
    #[test]
    fn a_dead_channel_of_another_user_is_never_taken_over() {
        if !other_user_exists() {
            return;
        }
        let name = unique("theirs");
        let bin = shared_binary();
        let status = as_other(&format!(
            "{bin} serve {name} --mode 666 --width 64 --height 48 >/dev/null & pid=$!; \
             sleep 1; kill -9 $pid"
        ))
        .status()
        .unwrap();
        assert!(status.success());
        let object = format!("/dev/shm/shmcast.{name}");
        assert!(
            std::path::Path::new(&object).exists(),
            "their channel is left behind"
        );
        let (ok, _, err) = run_within(
            &[
                "serve", &name, "--width", "64", "--height", "48", "--frames", "3",
            ],
            Duration::from_secs(10),
        );
        assert!(!ok, "serve took another user's channel over");
        assert!(
            err.contains("belongs to uid") && err.contains("not taken over"),
            "{err}"
        );
        // Nor replaced by a region: hold and serve agree (root's hold once
        // removed it and made a region of its own under the name).
        let (ok, _, err) = run_within(&["hold", &name, "--size", "64"], Duration::from_secs(10));
        assert!(!ok, "hold replaced another user's channel");
        assert!(err.contains("belongs to uid"), "{err}");
        // Left as it was (--mode 666 made a 0644 channel: a channel never
        // gets others' write bits; its lease table has them).
        let meta = std::fs::metadata(&object).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644, "left as it was");
        remove_all(&name);
    }

    /// A reader of another user with read permission only (mode 644) gets
    /// every frame, exact; leasing needs write access it does not have.
    #[test]
    fn a_read_only_reader_of_another_user_gets_exact_frames() {
        if !other_user_exists() {
            return;
        }
        let name = unique("ro");
        let bin = shared_binary();
        let (w, h) = (32usize, 24usize);
        let frames: Vec<Vec<u8>> = (0..8u8)
            .map(|n| {
                (0..w * h * 3)
                    .map(|i| (i as u8).wrapping_mul(n + 1))
                    .collect()
            })
            .collect();
        let mut reader = as_other(&format!(
            "exec {bin} read {name} --read-only --count 4 --md5 --timeout 20"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut publisher = shmcast()
            .args([
                "publish", &name, "--width", "32", "--height", "24", "--format", "rgb24",
            ])
            .args(["--mode", "644", "--fps", "5"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut stdin = publisher.stdin.take().unwrap();
            for f in &frames {
                if stdin.write_all(f).is_err() {
                    break;
                }
            }
        }
        let status = wait_or_fail(
            &mut reader,
            Duration::from_secs(30),
            "the other user's read",
        );
        let mut out = String::new();
        let mut err = String::new();
        std::io::Read::read_to_string(reader.stdout.as_mut().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(reader.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let n: usize = parts[0].parse().unwrap();
            assert_eq!(parts[3], md5_hex(&frames[n - 1]), "frame {n}");
        }
        // Leasing needs write access to the lease table: with mode 644 the
        // other user has none, and is told what the publisher must grant.
        let leased = unique("ro-lease");
        let mut server = serve(&leased, &["--mode", "644", "--width", "8", "--height", "8"]);
        let out = as_other(&format!(
            "exec {bin} read {leased} --lease --count 1 --timeout 5"
        ))
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "leased without write access");
        assert!(err.contains("--lease-mode"), "{err}");
        // The one object a read-only reader writes: the wake word, where it
        // says that it sleeps (read bits made read-write: 644 gives 666).
        let wake = format!("/dev/shm/shmcast.{leased}~wake");
        let mode = std::fs::metadata(&wake).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666, "{wake}");
        let writable = as_other(&format!("test -w {wake}")).status().unwrap();
        assert!(writable.success(), "the other user cannot write {wake}");
        sigterm(&server);
        wait_or_fail(&mut server, Duration::from_secs(5), "serve");
        wait_or_fail(&mut publisher, Duration::from_secs(30), "publish");
        // At EOF the publisher removed all of its objects.
        for object in ["", "~leases", "~wake"] {
            let path = format!("/dev/shm/shmcast.{name}{object}");
            assert!(!std::path::Path::new(&path).exists(), "{path}");
        }
        assert!(!std::path::Path::new(&wake).exists(), "{wake}");
    }

    /// `serve --mode 640 --group G`: the group's members read, nobody else
    /// (the service's way to name the desktop users who may watch).
    #[test]
    fn a_channel_given_to_a_group_is_readable_by_its_members_and_nobody_else() {
        const GROUP: &str = "shmcast-readers";
        let in_group = Command::new("id")
            .args(["-nG", OTHER])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|g| g == GROUP)
            });
        if !other_user_exists() || !in_group {
            eprintln!(
                "skipped: {OTHER} is not in group {GROUP} (scripts/test sets that up as root)"
            );
            return;
        }
        let name = unique("group");
        let bin = shared_binary();
        let mut server = serve(
            &name,
            &[
                "--mode", "640", "--group", GROUP, "--width", "8", "--height", "8",
            ],
        );
        let meta = std::fs::metadata(format!("/dev/shm/shmcast.{name}")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o777, 0o640);
        let gid = Command::new("getent")
            .args(["group", GROUP])
            .output()
            .unwrap();
        let gid: u32 = String::from_utf8_lossy(&gid.stdout)
            .split(':')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(meta.gid(), gid);
        let member = as_other(&format!("exec {bin} read {name} --count 1 --timeout 5"))
            .output()
            .unwrap();
        assert!(member.status.success(), "{member:?}");
        let mut outsider = Command::new("su");
        outsider.args([
            "nobody",
            "-s",
            "/bin/sh",
            "-c",
            &format!("exec {bin} read {name} --count 1 --timeout 5"),
        ]);
        let outsider = outsider.output().unwrap();
        assert!(!outsider.status.success());
        assert!(
            String::from_utf8_lossy(&outsider.stderr).contains("permission denied"),
            "{outsider:?}"
        );
        sigterm(&server);
        wait_or_fail(&mut server, Duration::from_secs(5), "serve");
    }

    /// The Wine attack's findings B and C, on Linux: a channel this user may
    /// not read was "(no such channel)" to `watch`, and `info`, which opens
    /// read-only, advised opening it read-only. Both now say permission
    /// denied, and nothing of a read-only open.
    #[test]
    fn a_channel_another_user_may_not_read_is_said_to_be_denied() {
        if !other_user_exists() {
            return;
        }
        let name = unique("denied");
        let bin = shared_binary();
        let mut server = serve(&name, &["--width", "8", "--height", "8"]);
        let info = as_other(&format!("exec {bin} info {name}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&info.stderr);
        assert!(!info.status.success(), "{info:?}");
        assert!(err.contains("permission denied"), "{err}");
        assert!(!err.contains("open it read-only"), "{err}");
        // The header and one row, then `head` goes (which `watch` takes
        // quietly: nobody reads it any more).
        let watch = as_other(&format!("{bin} watch {name} | head -n 2"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&watch.stdout);
        let row = out.lines().nth(1).unwrap_or_default();
        assert!(row.contains("permission denied"), "{watch:?}");
        assert!(!row.contains("no such channel"), "{row}");
        sigterm(&server);
        wait_or_fail(&mut server, Duration::from_secs(5), "serve");
    }

    /// Finding 3: a FIFO planted under our prefix hung clean, info, serve
    /// and hold forever.
    #[test]
    fn a_fifo_under_our_prefix_hangs_nothing() {
        let name = unique("fifo");
        let path = format!("/dev/shm/shmcast.{name}");
        let made = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        let limit = Duration::from_secs(10);
        let (ok, _, err) = run_within(&["info", &name], limit);
        assert!(!ok && err.contains("FIFO"), "{err}");
        let (ok, _, err) = run_within(&["serve", &name, "--frames", "1"], limit);
        assert!(!ok && err.contains("FIFO"), "{err}");
        let (ok, _, err) = run_within(&["hold", &name, "--size", "4096"], limit);
        assert!(!ok, "{err}");
        let (ok, _, err) = run_within(&["clean"], limit);
        assert!(ok, "{err}");
        let (ok, _, _) = run_within(&["read", &name, "--timeout", "1"], limit);
        assert!(!ok);
        std::fs::remove_file(&path).unwrap();
    }

    /// SIGTERM to a publisher blocked reading its source (no frames on
    /// stdin) stops it and removes the channel, as the README says.
    #[test]
    fn sigterm_to_a_publisher_blocked_on_stdin_removes_the_channel() {
        for command in ["publish", "serve"] {
            let name = unique("term");
            let mut args = vec![command, &name, "--width", "4", "--height", "4"];
            if command == "serve" {
                args.extend(["--source", "stdin"]);
            } else {
                args.extend(["--format", "gray8"]);
            }
            let mut child = shmcast()
                .args(&args)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let object = format!("/dev/shm/shmcast.{name}");
            let started = Instant::now();
            while !std::path::Path::new(&object).exists() {
                assert!(started.elapsed() < Duration::from_secs(10), "never created");
                std::thread::sleep(Duration::from_millis(10));
            }
            // `info` calls a writer that publishes nothing stalled (and
            // exits 4, which run_within counts as not ok).
            std::thread::sleep(Duration::from_millis(2500));
            let (ok, out, err) = run_within(&["info", &name], Duration::from_secs(5));
            assert!(!ok && out.contains("stalled"), "{out}{err}");
            sigterm(&child);
            let status = wait_or_fail(&mut child, Duration::from_secs(5), command);
            assert!(status.success(), "{command}: {status:?}");
            assert!(
                !std::path::Path::new(&object).exists(),
                "{command} left its channel behind"
            );
            assert!(!std::path::Path::new(&format!("{object}~leases")).exists());
        }
    }

    /// A dead publisher's channel with other settings is replaced, and
    /// says so, instead of silently keeping the old slots and mode.
    #[test]
    fn a_take_over_with_other_settings_replaces_the_channel_and_says_so() {
        let name = unique("settings");
        let mut first = serve(&name, &["--width", "8", "--height", "8", "--slots", "4"]);
        first.kill().unwrap();
        first.wait().unwrap();
        let (ok, _, err) = run_within(
            &[
                "serve", &name, "--width", "8", "--height", "8", "--slots", "6", "--mode", "640",
                "--frames", "2",
            ],
            Duration::from_secs(10),
        );
        assert!(ok, "{err}");
        assert!(
            err.contains("replaced the channel") && err.contains("4 slots, not 6"),
            "{err}"
        );
        assert!(err.contains("mode 0600, not 0640"), "{err}");
    }
}
