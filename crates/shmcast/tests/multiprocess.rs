//! Regions shared between real processes, on Linux and (built for
//! x86_64-pc-windows-gnu) under Wine: the same file runs on both.
//!
//! Each test spawns this very test binary again as a child process running
//! one role (see `child_entry_point`), talks to it through stdout lines that
//! start with `@`, and kills it for real (SIGKILL / TerminateProcess) where
//! the test is about crashes.

mod common;

use std::time::Duration;

use common::{assert_crashed_on_access, pattern, role, run, say, unique, Proc};
use shmcast::{Error, ErrorKind, Region, HEADER_LEN};

#[test]
fn child_reads_what_the_parent_wrote_and_the_other_way_round() {
    let name = unique("rw");
    let len = 300_000;
    let region = Region::create(&name, len).unwrap();
    region.write(0, &pattern(1, len)).unwrap();
    let (lines, status) = run("read-expect", &[&name, "1"]);
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, ["same"]);

    let (lines, status) = run("write-pattern", &[&name, "2"]);
    assert!(status.success(), "{lines:?}");
    assert_eq!(region.read_to_vec().unwrap(), pattern(2, len));
}

#[test]
fn a_read_only_open_cannot_write_the_os_stops_it() {
    let name = unique("ro");
    let region = Region::create(&name, 4096).unwrap();
    region.write(0, &[0xAB; 4096]).unwrap();
    let mut child = Proc::spawn("write-through-read-only", &[&name]);
    child.expect("mapped read-only");
    let (_, status) = child.finish();
    assert!(!status.success(), "the write went through");
    assert_crashed_on_access(status);
    assert_eq!(region.read_to_vec().unwrap(), vec![0xAB; 4096]);
}

#[test]
fn a_write_lock_held_by_a_killed_process_is_recovered() {
    let name = unique("wkill");
    let _region = Region::create(&name, 4096).unwrap();
    let mut holder = Proc::spawn("hold-write-lock", &[&name]);
    holder.expect("locked");
    let holder_pid = holder.id();

    // While the holder lives, the lock is really held.
    let (lines, status) = run("take-write-lock", &[&name, "200"]);
    assert!(!status.success());
    assert!(
        lines[0].contains(&format!("pid {holder_pid} (writing)")),
        "{lines:?}"
    );

    holder.kill();
    let (lines, status) = run("take-write-lock", &[&name, "10000"]);
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, [format!("recovered from {holder_pid}, torn true")]);
    // A lock recovered and released normally leaves the region whole again.
    assert!(!Region::open(&name).unwrap().lock_state().torn);
}

#[test]
fn a_read_lock_held_by_a_killed_process_does_not_block_writers() {
    let name = unique("rkill");
    let _region = Region::create(&name, 4096).unwrap();
    let mut holder = Proc::spawn("hold-read-lock", &[&name]);
    holder.expect("locked");
    holder.kill();
    let (lines, status) = run("take-write-lock", &[&name, "10000"]);
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, ["recovered from none, torn false"]);
}

/// Writes `bytes` over the header of `region`, as a hostile or buggy
/// process could.
fn scribble_header(region: &Region, at: usize, bytes: &[u8]) {
    let header = region.as_ptr().cast_mut().wrapping_sub(HEADER_LEN);
    // SAFETY: the header page lies right before the data, inside the same
    // writable mapping, and `at + bytes.len()` stays within it. This test
    // corrupts it on purpose; other openers must cope.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), header.wrapping_add(at), bytes.len()) };
}

fn open_error_in_child(name: &str) -> String {
    let (lines, status) = run("open", &[name]);
    assert!(!status.success(), "{lines:?}");
    lines.into_iter().next().unwrap_or_default()
}

#[test]
fn each_kind_of_bad_segment_gives_its_own_error() {
    assert_eq!(open_error_in_child(&unique("missing")), "NotFound");

    let garbage = unique("garbage");
    let region = Region::create(&garbage, 4096).unwrap();
    let mut noise = pattern(3, HEADER_LEN);
    noise[0] = b'X';
    scribble_header(&region, 0, &noise);
    assert_eq!(open_error_in_child(&garbage), "NotShmcast");

    let version = unique("version");
    let region2 = Region::create(&version, 4096).unwrap();
    scribble_header(&region2, 8, &99u32.to_ne_bytes());
    assert_eq!(open_error_in_child(&version), "Incompatible 99");

    // A header that claims more memory than the object has.
    let short = unique("short");
    let region3 = Region::create(&short, 4096).unwrap();
    let claimed: u64 = 1 << 30;
    scribble_header(&region3, 24, &(HEADER_LEN as u64 + claimed).to_ne_bytes());
    scribble_header(&region3, 32, &claimed.to_ne_bytes());
    assert_eq!(open_error_in_child(&short), "Truncated");

    drop((region, region2, region3));
}

#[cfg(target_os = "linux")]
#[test]
fn a_truncated_object_is_reported_not_mapped_past_its_end() {
    let name = unique("trunc");
    let region =
        Region::create_with(&name, 1 << 20, &shmcast::CreateOptions::new().persist(true)).unwrap();
    drop(region);
    let path = format!("/dev/shm/shmcast.{name}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(open_error_in_child(&name), "Truncated");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(open_error_in_child(&name), "Uninitialized");
    std::fs::remove_file(&path).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn of_two_processes_replacing_one_stale_segment_exactly_one_wins() {
    use shmcast::CreateOptions;
    let replace = CreateOptions::new().replace_stale(true);
    for round in 0..20 {
        let name = unique(&format!("stale{round}"));
        let left = Region::create_with(&name, 4096, &CreateOptions::new().persist(true)).unwrap();
        // Its creator "died": a pid no process has.
        scribble_header(&left, 40, &0x7FFF_FFF1u32.to_ne_bytes());
        drop(left);
        let results: Vec<_> = std::thread::scope(|s| {
            let a = s.spawn(|| Region::create_with(&name, 4096, &replace));
            let b = s.spawn(|| Region::create_with(&name, 4096, &replace));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        // The loser is told the name is taken, by the winner (alive) or, if
        // it looked while the winner was still creating, by no one; never
        // by the dead creator it set out to replace.
        assert!(
            results.iter().any(|r| matches!(
                r,
                Err(e) if e.kind() == ErrorKind::AlreadyExists
                    && (e.to_string().contains("still holds") || e.pid().is_none())
            )),
            "round {round}: {results:?}"
        );
    }
}

/// Names are compared with their case, on Linux as on Windows (Microsoft
/// documents kernel object names as case-sensitive, and Wine agrees):
/// `Cam` and `cam` are two segments. Another process sees each as it is.
#[test]
fn names_that_differ_only_in_case_are_two_segments() {
    let lower = unique("case");
    let upper = lower.to_uppercase();
    let a = Region::create(&lower, 4096).unwrap();
    let b = Region::create(&upper, 4096).unwrap();
    a.write(0, &pattern(1, 4096)).unwrap();
    b.write(0, &pattern(2, 4096)).unwrap();
    for (name, seed) in [(&lower, "1"), (&upper, "2")] {
        let (lines, status) = run("read-expect", &[name, seed]);
        assert!(status.success(), "{name}: {lines:?}");
        assert_eq!(lines, ["same"], "{name}");
    }
}

#[cfg(windows)]
#[test]
fn global_names_and_security_descriptors_work_across_processes() {
    use shmcast::CreateOptions;
    let name = format!("Global\\{}", unique("global"));
    // Everyone may read and write; SYSTEM owns it.
    let options = CreateOptions::new().sddl("D:(A;;GA;;;SY)(A;;GA;;;WD)");
    let region = Region::create_with(&name, 4096, &options).unwrap();
    region.write(0, &pattern(9, 4096)).unwrap();
    let (lines, status) = run("read-expect", &[&name, "9"]);
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, ["same"]);

    let bad = CreateOptions::new().sddl("not a descriptor");
    let err = Region::create_with(unique("sddl"), 4096, &bad).unwrap_err();
    assert!(
        err.kind() == ErrorKind::InvalidArgument && err.to_string().contains("SDDL"),
        "{err}"
    );
}

// ---- the child side -------------------------------------------------------

fn error_variant(e: &Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "NotFound".into(),
        ErrorKind::Foreign => "NotShmcast".into(),
        ErrorKind::Incompatible if e.to_string().contains("layout version 99") => {
            "Incompatible 99".into()
        }
        ErrorKind::Truncated => "Truncated".into(),
        ErrorKind::Uninitialized => "Uninitialized".into(),
        ErrorKind::Corrupt => "Corrupt".into(),
        _ => format!("other: {e}"),
    }
}

/// Not a test: the entry point of the child processes the tests spawn.
/// Without the role variable it does nothing.
#[test]
fn child_entry_point() {
    let Some((role, args)) = role() else {
        return;
    };
    let code = match role.as_str() {
        "read-expect" => {
            let r = Region::open_read_only(&args[0]).unwrap();
            let seed = args[1].parse().unwrap();
            if r.read_to_vec().unwrap() == pattern(seed, r.len()) {
                say("same");
                0
            } else {
                say("different");
                3
            }
        }
        "write-pattern" => {
            let r = Region::open(&args[0]).unwrap();
            r.write(0, &pattern(args[1].parse().unwrap(), r.len()))
                .unwrap();
            0
        }
        "write-through-read-only" => {
            let r = Region::open_read_only(&args[0]).unwrap();
            say("mapped read-only");
            // SAFETY: deliberately unsound: this proves that the OS, not
            // just the API, refuses writes to a read-only open. The process
            // is expected to die on this line.
            unsafe { r.as_ptr().cast_mut().write_volatile(0) };
            say("wrote");
            0
        }
        "hold-write-lock" => {
            let r = Region::open(&args[0]).unwrap();
            let mut guard = r.write_lock(Duration::from_secs(5)).unwrap();
            guard.write(0, b"half").unwrap();
            say("locked");
            std::thread::sleep(Duration::from_secs(120));
            0
        }
        "hold-read-lock" => {
            let r = Region::open(&args[0]).unwrap();
            let _guard = r.read_lock(Duration::from_secs(5)).unwrap();
            say("locked");
            std::thread::sleep(Duration::from_secs(120));
            0
        }
        "take-write-lock" => {
            let r = Region::open(&args[0]).unwrap();
            let timeout = Duration::from_millis(args[1].parse().unwrap());
            let code = match r.write_lock(timeout) {
                Ok(g) => {
                    let from = g.recovered_from().map_or("none".into(), |p| p.to_string());
                    say(format!("recovered from {from}, torn {}", g.was_torn()));
                    0
                }
                Err(e) => {
                    say(e.to_string());
                    4
                }
            };
            code
        }
        "open" => match Region::open_read_only(&args[0]) {
            Ok(_) => {
                say("opened");
                0
            }
            Err(e) => {
                say(error_variant(&e));
                5
            }
        },
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}
