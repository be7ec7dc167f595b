//! `serve --config` under systemd, without systemd: the notifications a
//! `Type=notify` unit gets (READY=1, WATCHDOG=1, RELOADING=1, STOPPING=1),
//! received on a socket the test binds as `NOTIFY_SOCKET`, and a reload
//! (SIGHUP) that restarts only what changed. Linux.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{channel, shmcast, unique, Kill};

/// A socket standing in for systemd's, and its path.
fn notify_socket(tag: &str) -> (UnixDatagram, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.sock", unique(tag)));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    (socket, path)
}

/// The next message within `limit`, or `None`.
fn next(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Waits for a message with `what` in it, 15 s at most; what came before.
fn until(socket: &UnixDatagram, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = next(socket, Duration::from_millis(200)) {
            let done = m.contains(what);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }
    panic!("no {what:?} from serve; got {seen:?}");
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// `serve --config FILE` with `env`, its stderr lines collected.
fn serve(
    config: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> (Kill, Arc<Mutex<Vec<String>>>) {
    let mut command = shmcast();
    command
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let lines = common::stderr_lines(&mut child);
    (Kill(child), lines)
}

fn pattern(name: &str, width: u32, fps: u32) -> String {
    format!(
        "[[channel]]\nname = \"{name}\"\nsource = \"pattern\"\nwidth = {width}\nheight = 32\nformat = \"gray8\"\nfps = {fps}\n\n"
    )
}

#[test]
fn ready_once_every_channel_is_up_then_watchdog_pings_that_stop_with_the_process() {
    let (live, failing) = (unique("notify-live"), unique("notify-failing"));
    let dir = std::env::temp_dir().join(unique("notify"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cameras.toml");
    // One channel that works, one whose camera is not there: retrying
    // counts as up.
    std::fs::write(
        &config,
        pattern(&live, 32, 30)
            + &format!(
                "[[channel]]\nname = \"{failing}\"\ninput = \"-f lavfi -i nosuchfilter=size=8x8\"\nwidth = 8\nheight = 8\nformat = \"gray8\"\n"
            ),
    )
    .unwrap();
    let (socket, path) = notify_socket("notify");
    let (mut server, _log) = serve(
        &config,
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", "400000".as_ref()),
        ],
    );
    let before = until(&socket, "READY=1");
    assert!(before.iter().all(|m| !m.contains("WATCHDOG")), "{before:?}");
    let ready = before.last().unwrap();
    assert!(ready.contains("STATUS=serving 2 channels"), "{ready}");
    assert!(
        channel(&live).is_some(),
        "READY=1 before the channel exists"
    );
    // Pings every quarter period (100 ms): about ten a second.
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_secs(1) {
        if next(&socket, Duration::from_millis(300)).is_some_and(|m| m == "WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!((4..=14).contains(&pings), "{pings} pings in 1 s");
    // Stopped, it pings no more; continued, it pings again.
    signal(&server.0, "STOP");
    while next(&socket, Duration::from_millis(100)).is_some() {}
    assert_eq!(
        next(&socket, Duration::from_millis(1500)),
        None,
        "pings while stopped"
    );
    signal(&server.0, "CONT");
    assert_eq!(
        next(&socket, Duration::from_secs(2)).as_deref(),
        Some("WATCHDOG=1")
    );
    // Stopping says so.
    signal(&server.0, "TERM");
    until(&socket, "STOPPING=1");
    assert!(server.0.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `read NAME --count N` as it goes: the frame numbers it printed.
fn reader(name: &str, count: u32) -> Child {
    shmcast()
        .args([
            "read",
            name,
            "--count",
            &count.to_string(),
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn instance(name: &str) -> String {
    channel(name)
        .map(|c| c["instance"].to_string())
        .unwrap_or_default()
}

#[test]
fn a_reload_restarts_only_what_changed_and_unchanged_readers_see_no_gap() {
    let (kept, changed, removed, added) = (
        unique("reload-kept"),
        unique("reload-changed"),
        unique("reload-removed"),
        unique("reload-added"),
    );
    let dir = std::env::temp_dir().join(unique("reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cameras.toml");
    std::fs::write(
        &config,
        pattern(&kept, 32, 20) + &pattern(&changed, 32, 20) + &pattern(&removed, 32, 20),
    )
    .unwrap();
    let (socket, path) = notify_socket("reload");
    let (mut server, log) = serve(&config, &[("NOTIFY_SOCKET", path.as_os_str())]);
    until(&socket, "READY=1");
    let (kept_instance, changed_instance) = (instance(&kept), instance(&changed));
    // A reader of the unchanged channel across the reload: 3 s of frames
    // at 20 fps.
    let reading = reader(&kept, 60);
    std::thread::sleep(Duration::from_millis(1000));

    // A config that does not parse is refused; everything goes on.
    std::fs::write(&config, "[[channel]]\nname = 12\n").unwrap();
    signal(&server.0, "HUP");
    common::until_logged(&log, "reload refused");

    assert!(
        server.0.try_wait().unwrap().is_none(),
        "a bad config stopped serve"
    );

    // One changed (its width), one removed, one added, one as it was.
    std::fs::write(
        &config,
        pattern(&kept, 32, 20) + &pattern(&changed, 48, 20) + &pattern(&added, 32, 20),
    )
    .unwrap();
    signal(&server.0, "HUP");
    let said = until(&socket, "READY=1");
    assert!(said.iter().any(|m| m.contains("RELOADING=1")), "{said:?}");
    let out = reading.wait_with_output().unwrap();
    assert!(out.status.success());
    let numbers: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 60);
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap in the unchanged channel: {numbers:?}"
    );
    assert_eq!(
        instance(&kept),
        kept_instance,
        "the unchanged channel was restarted"
    );
    let c = common::until(
        &changed,
        "restarted at 48 wide",
        Duration::from_secs(10),
        Duration::from_millis(50),
        |c| c["width"] == 48,
    );
    assert_ne!(c["instance"].to_string(), changed_instance);
    let a = common::until(
        &added,
        "added",
        Duration::from_secs(10),
        Duration::from_millis(50),
        |c| c["health"] == "live",
    );
    assert_eq!(a["width"], 32);
    assert!(
        channel(&removed).is_none(),
        "the removed channel is still there"
    );
    let logged = log.lock().unwrap().join("\n");
    assert!(
        logged.contains("reloaded: 1 unchanged, 1 changed, 1 added, 1 removed"),
        "{logged}"
    );
    signal(&server.0, "TERM");
    assert!(server.0.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&dir);
}
