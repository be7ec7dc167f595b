//! The `shmcast` command as a person uses it from a shell: several real
//! processes on one region. Runs on Linux and, built for Windows, under Wine.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Output, Stdio};

mod common;

use common::{shmcast, unique};

fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// `shmcast hold`, running until dropped.
struct Hold {
    child: Child,
}

impl Hold {
    fn start(args: &[&str]) -> Hold {
        let mut child = shmcast()
            .arg("hold")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmcast hold");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("holding "), "hold said {line:?}");
        Hold { child }
    }
}

impl Drop for Hold {
    /// Stops it the way a user would (SIGTERM on Linux), so that it removes
    /// its segment and tests leave nothing in /dev/shm; Windows sections go
    /// with the process anyway.
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = shmcast()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmcast");
    let mut input = child.stdin.take().unwrap();
    // The command may refuse and exit before reading all of it.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Asserts a failure with one line on stderr that names `name`.
fn assert_fails_naming(out: &Output, name: &str) -> String {
    assert!(!out.status.success(), "expected failure, got {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "stderr: {err:?}");
    assert!(err.contains(name), "stderr does not name {name}: {err:?}");
    err
}

#[test]
fn hold_write_cat_round_trip_and_oversized_write_changes_nothing() {
    let name = unique("r1");
    let _hold = Hold::start(&[&name, "--size", "1048576"]);
    let data = noise(1 << 20);
    let out = run(&["write", &name], &data);
    assert!(out.status.success(), "{out:?}");
    let out = run(&["cat", &name], b"");
    assert!(out.status.success());
    assert!(out.stdout == data, "cat differs from what was written");

    let out = run(&["write", &name], &noise(2 << 20));
    let err = assert_fails_naming(&out, &name);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(
        run(&["cat", &name], b"").stdout == data,
        "the region changed"
    );

    // At an offset: fits exactly, then one byte too many.
    assert!(run(&["write", &name, "--offset", "1048570"], b"abcdef")
        .status
        .success());
    let out = run(&["write", &name, "--offset", "1048570"], b"abcdefg");
    assert_fails_naming(&out, &name);
    assert!(run(&["cat", &name], b"").stdout.ends_with(b"abcdef"));
    // An offset past the end says so (it once said "the 0 bytes that fit").
    let out = run(&["write", &name, "--offset", "18446744073709551615"], b"x");
    let err = assert_fails_naming(&out, &name);
    assert!(err.contains("is past its end"), "{err}");

    // Something else squatting a live segment's companion name is said by
    // clean (which leaves it), not passed over in silence.
    #[cfg(target_os = "linux")]
    {
        let fifo = format!("/dev/shm/shmcast.{name}~leases");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let out = run(&["clean"], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("left {name} (leases)")) && err.contains("a FIFO"),
            "{err}"
        );
        std::fs::remove_file(&fifo).unwrap();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_shm_object_is_private_by_default_and_mode_is_configurable() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("mode");
    let path = format!("/dev/shm/shmcast.{name}");
    let hold = Hold::start(&[&name, "--size", "4096"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(hold);
    let name = unique("mode");
    let path = format!("/dev/shm/shmcast.{name}");
    let _hold = Hold::start(&[&name, "--size", "4096", "--mode", "644"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn info_reports_kind_size_creator_and_lock() {
    let name = unique("info");
    let hold = Hold::start(&[&name, "--size", "4K"]);
    let out = run(&["info", &name, "--json"], b"");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let hold_pid = hold.child.id();
    for needle in [
        "\"kind\":\"region\"".to_owned(),
        "\"data_len\":4096".to_owned(),
        format!("\"pid\":{hold_pid}"),
        "\"alive\":true".to_owned(),
        "\"writer\":null".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle} not in {text}");
    }
    let out = run(&["info", &name], b"");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("kind:    region"), "{text}");
    assert!(text.contains("lock:    free"), "{text}");
}

/// `info NAME --json` once: its exit code and the health it names.
fn health(name: &str) -> (Option<i32>, String) {
    let out = run(&["info", name, "--json", "--fps-over", "0"], b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        out.status.code(),
        v["health"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn info_exits_with_the_channels_health_for_scripts() {
    let name = unique("health");
    // missing: 3
    assert_eq!(health(&name), (Some(3), "missing".to_owned()));
    // live: 0, with the frames' geometry and a measured rate
    let mut serve = common::Kill(common::start_serve(
        &name,
        &[
            "--width", "64", "--height", "48", "--format", "gray8", "--fps", "50",
        ],
    ));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = run(&["info", &name, "--json", "--fps-over", "0.5"], b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["health"], "live");
    let c = &v["channel"];
    assert_eq!(
        (c["width"].as_u64(), c["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(
        (c["stride"].as_u64(), c["format"].as_str()),
        (Some(64), Some("gray8"))
    );
    assert_eq!(c["leasers"].as_u64(), Some(0));
    let fps = c["fps"].as_f64().unwrap();
    assert!(fps > 10.0 && fps < 80.0, "{fps}");
    assert!(c["stall_reason"].is_null());
    let text = run(&["info", &name], b"");
    assert!(text.status.success());
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("64x48 gray8, stride 64, 3072 bytes"),
        "{text:?}"
    );
    let _ = serve.0.kill();
    let _ = serve.0.wait();

    // stalled: 4. A publisher that lives and publishes nothing (its stdin
    // stays open and silent).
    let stalled = unique("health-stalled");
    let mut publish = common::Kill(
        shmcast()
            .args([
                "publish", &stalled, "--width", "8", "--height", "8", "--format", "gray8",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while health(&stalled).1 != "stalled" {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            health(&stalled)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(health(&stalled), (Some(4), "stalled".to_owned()));

    // gone: 5. Its publisher killed while a reader keeps the channel (on
    // Windows a section lives as long as a handle to it).
    let mut reader = common::Kill(
        shmcast()
            .args(["read", &stalled, "--count", "1", "--timeout", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    publish.0.kill().unwrap();
    publish.0.wait().unwrap();
    assert_eq!(health(&stalled), (Some(5), "gone".to_owned()));
    let _ = reader.0.kill();
    let _ = reader.0.wait();
    let _ = run(&["remove", &stalled], b"");
}

#[test]
fn a_second_hold_fails_naming_the_owner() {
    let name = unique("twice");
    let hold = Hold::start(&[&name, "--size", "4K"]);
    let out = run(&["hold", &name, "--size", "4K"], b"");
    let err = assert_fails_naming(&out, &name);
    assert!(err.contains(&format!("pid {}", hold.child.id())), "{err}");
}

#[test]
fn every_failure_is_one_line_naming_the_segment() {
    let missing = unique("missing");
    for args in [
        vec!["cat", &missing],
        vec!["write", &missing],
        vec!["info", &missing],
        vec!["info", &missing, "--json"],
    ] {
        let err = assert_fails_naming(&run(&args, b"x"), &missing);
        assert!(err.contains("no segment named"), "{err}");
    }
    let err = assert_fails_naming(&run(&["cat", "bad/name"], b""), "bad/name");
    assert!(err.contains("A-Z a-z 0-9"), "{err}");
}

#[test]
fn a_hold_killed_hard_is_taken_over_by_the_next_hold() {
    let name = unique("takeover");
    let mut first = Hold::start(&[&name, "--size", "4K"]);
    let first_pid = first.child.id();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // On Windows the section died with the process; on Linux it is left
    // behind with a dead creator, and the next hold replaces it.
    let second = Hold::start(&[&name, "--size", "8K"]);
    let out = run(&["info", &name, "--json"], b"");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("\"pid\":{}", second.child.id())),
        "{text}"
    );
    assert!(!text.contains(&format!("\"pid\":{first_pid}")), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn clean_removes_what_a_killed_hold_left_and_nothing_else() {
    let dead = unique("dead");
    let live = unique("live");
    let mut first = Hold::start(&[&dead, "--size", "4K"]);
    let _alive = Hold::start(&[&live, "--size", "4K"]);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let out = run(&["clean"], b"");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("removed {dead} ")), "{text}");
    assert!(!text.contains(&live), "{text}");
    assert!(!std::path::Path::new(&format!("/dev/shm/shmcast.{dead}")).exists());
    assert!(run(&["info", &live], b"").status.success());
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_makes_hold_remove_its_segment() {
    let name = unique("term");
    let mut hold = Hold::start(&[&name, "--size", "4K"]);
    let path = format!("/dev/shm/shmcast.{name}");
    assert!(std::path::Path::new(&path).exists());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &hold.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(hold.child.wait().unwrap().success());
    assert!(!std::path::Path::new(&path).exists());
}

/// Ends a `hold`/`serve` child: SIGTERM and a wait on Linux (it cleans up),
/// a kill elsewhere or if it does not go.
fn stop(child: &mut std::process::Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    #[cfg(unix)]
    {
        let termed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn list_shows_regions_channels_and_lease_tables_with_their_creators() {
    let region = unique("list-region");
    let channel = unique("list-channel");
    let mut hold = shmcast()
        .args(["hold", &region, "--size", "4096"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hold.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let hold = common::Kill(hold);
    let serve = common::Kill(common::start_serve(
        &channel,
        &["--width", "8", "--height", "8", "--format", "gray8"],
    ));
    let out = shmcast().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {rows}"))
    };
    let r = find(&region);
    assert_eq!(
        (r["kind"].as_str(), r["data_len"].as_u64()),
        (Some("region"), Some(4096))
    );
    assert_eq!(r["creator"]["pid"].as_u64(), Some(u64::from(hold.0.id())));
    assert_eq!(r["creator"]["alive"], true);
    let c = find(&channel);
    assert_eq!(c["kind"], "channel");
    assert_eq!(c["creator"]["pid"].as_u64(), Some(u64::from(serve.0.id())));
    if cfg!(target_os = "linux") {
        assert_eq!(find(&format!("{channel} (leases)"))["kind"], "lease table");
    }
    let text = shmcast().arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&region) && text.contains(&channel) && text.contains("alive"),
        "{text}"
    );
}

/// Absurd numbers are refused in a short line that shows them as they
/// were written, and a rate too fast for any source is refused, not run as
/// "inf fps".
#[test]
fn absurd_rates_and_timeouts_are_refused_briefly() {
    for (args, says) in [
        (
            &["serve", "absurd", "--fps", "1e300", "--frames", "1"][..],
            "--fps 1e300 is faster than any source",
        ),
        (
            &["serve", "absurd", "--fps", "1e-300", "--frames", "1"][..],
            "--fps 1e-300 is too slow",
        ),
        (
            &["serve", "absurd", "--fps", "inf", "--frames", "1"][..],
            "--fps inf is not a frame rate",
        ),
        (
            &["read", "absurd", "--timeout", "1e300"][..],
            "1e300 is not a number of seconds",
        ),
    ] {
        let out = run(args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.len() < 200, "{args:?}: {} bytes: {err}", err.len());
    }
}

/// A directory squatting a name is called one, by every command (serve
/// and write once printed the OS error twice instead).
#[cfg(target_os = "linux")]
#[test]
fn a_directory_under_a_name_is_called_one_by_every_command() {
    let name = unique("dir");
    let path = format!("/dev/shm/shmcast.{name}");
    std::fs::create_dir(&path).unwrap();
    for args in [
        vec!["serve", &name, "--frames", "1"],
        vec!["write", &name],
        vec!["info", &name],
        vec!["cat", &name],
    ] {
        let err = assert_fails_naming(&run(&args, b"x"), &name);
        assert!(
            err.contains("a directory, not a shared memory object"),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("Is a directory").count(), 0, "{args:?}: {err}");
    }
    std::fs::remove_dir(&path).unwrap();
}

/// The web page and the metrics over HTTP, on Linux and under Wine alike
/// (tests/web.rs shows them in a browser and to promtool, on Linux).
#[test]
fn web_and_metrics_answer_over_http() {
    let name = unique("http");
    let metrics = common::free_port();
    let _serve = common::Kill(common::start_serve(
        &name,
        &[
            "--width",
            "32",
            "--height",
            "16",
            "--format",
            "gray8",
            "--fps",
            "20",
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
        ],
    ));
    common::until_http(metrics, "/metrics");
    let (status, body) = common::http_get(metrics, "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(&format!("shmcast_frames_total{{channel=\"{name}\"}} ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("shmcast_stalled{{channel=\"{name}\"}} 0")),
        "{text}"
    );

    let port = common::free_port();
    let _web = common::Kill(
        shmcast()
            .args(["web", &name, "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::until_http(port, "/api/channels");
    let (status, body) = common::http_get(port, "/api/channels", "").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["channels"][0]["name"], name.as_str());
    assert_eq!(v["channels"][0]["geometry"], "32x16 gray8");
    let (status, jpeg) = common::http_get(port, &format!("/channel/{name}/frame.jpg"), "").unwrap();
    assert!(status == 200 && jpeg.starts_with(&[0xff, 0xd8]), "{status}");
    let (status, page) = common::http_get(port, "/", "").unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains(&format!("data-name=\"{name}\"")));
    let (status, _) = common::http_get(port, "/channel/someone-else/frame.jpg", "").unwrap();
    assert_eq!(status, 404);
}
