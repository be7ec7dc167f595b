//! `serve --source ffmpeg`: the camera path, with ffmpeg's lavfi test
//! source standing in for the device (the same code: ffmpeg writes raw
//! frames to a pipe that serve reads into loaned slots). Linux here; the
//! Windows service bits are tested elsewhere.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{channel, shmcast, unique};

/// `serve NAME ARGS...` with its stderr lines collected as they come.
fn serve(name: &str, args: &[&str]) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = shmcast()
        .args(["serve", name])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = common::stderr_lines(&mut child);
    (child, lines)
}

/// Polls `info` until `ok` holds for the channel (20 s at most); its
/// state then.
fn until(name: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    common::until(
        name,
        what,
        Duration::from_secs(20),
        Duration::from_millis(50),
        ok,
    )
}

const TESTSRC: &str = "-re -f lavfi -i testsrc=size=320x240:rate=60";
const GEOMETRY: [&str; 6] = ["--width", "320", "--height", "240", "--format", "rgb24"];

#[test]
fn frames_from_ffmpeg_equal_ffmpegs_own_framemd5() {
    let reference = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=60",
        ])
        .args([
            "-frames:v",
            "120",
            "-pix_fmt",
            "rgb24",
            "-f",
            "framemd5",
            "-",
        ])
        .output()
        .expect("ffmpeg is needed; scripts/test installs it");
    let reference: Vec<String> = String::from_utf8_lossy(&reference.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    let name = unique("ffmpeg-md5");
    let reader = shmcast()
        .args(["read", &name, "--count", "40", "--md5", "--timeout", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (mut server, _) = serve(
        &name,
        &[
            &["--source", "ffmpeg", "--input", TESTSRC, "--frames", "120"][..],
            &GEOMETRY,
        ]
        .concat(),
    );
    let out = reader.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(lines.lines().count(), 40, "{lines}");
    for line in lines.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let number: usize = f[0].parse().unwrap();
        assert_eq!((f[1], f[2]), ("320x240", "rgb24"));
        assert_eq!(f[3], reference[number - 1], "frame {number}");
    }
    assert!(server.wait().unwrap().success());
}

#[test]
fn a_killed_ffmpeg_stalls_the_channel_with_its_reason_then_frames_go_on() {
    let name = unique("ffmpeg-kill");
    let args = [
        &[
            "--source",
            "ffmpeg",
            "--input",
            TESTSRC,
            "--stall-after",
            "1",
        ][..],
        &GEOMETRY,
    ]
    .concat();
    let (mut server, log) = serve(&name, &args);
    let before = until(&name, "publishing", |c| {
        c["latest_frame"].as_u64() >= Some(10)
    });
    assert_eq!(before["health"], "live");
    let pid = log
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.split("ffmpeg started (pid ")
                .nth(1)
                .map(|r| r.split(')').next().unwrap().to_owned())
        })
        .expect("serve says which ffmpeg it started");
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let stalled = until(&name, "stalled", |c| c["health"] == "stalled");
    let reason = stalled["stall_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("ffmpeg ended") && reason.contains("SIGKILL"),
        "{reason}"
    );
    let stalled_at = stalled["latest_frame"].as_u64().unwrap();
    // ffmpeg is started again; frame numbers go on from where they were.
    let after = until(&name, "publishing again", |c| {
        c["health"] == "live" && c["latest_frame"].as_u64() > Some(stalled_at + 5)
    });
    assert_eq!(after["stall_reason"], serde_json::Value::Null);
    assert!(
        server.try_wait().unwrap().is_none(),
        "serve itself stays up"
    );
    // The restart is said as the recovery, with the new ffmpeg's pid.
    let log = common::until_logged(&log, "recovered: frames from ffmpeg (pid ");
    assert!(log.contains("stalled: ffmpeg ended"), "{log}");
    assert_eq!(log.matches("ffmpeg started").count(), 1, "{log}");
    assert!(log.contains("ended (signal: 9 (SIGKILL))\" once"), "{log}");
    let _ = server.kill();
}

/// `2026-12-02T19:04:05.123Z info  [cam] ...`: RFC 3339 time (UTC), level,
/// channel, message.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        r.into_iter()
            .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    b.len() > 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && &line[23..25] == "Z "
        && ["info  ", "warn  ", "error "].contains(&&line[25..31])
}

#[test]
fn a_source_that_fails_is_retried_with_its_error_as_the_reason() {
    let name = unique("ffmpeg-bad");
    let (mut server, log) = serve(
        &name,
        &[
            &[
                "--source",
                "ffmpeg",
                "--input",
                "-f lavfi -i nosuchfilter=size=8x8",
            ][..],
            &GEOMETRY,
        ]
        .concat(),
    );
    let stalled = until(&name, "stalled", |c| c["health"] == "stalled");
    let reason = stalled["stall_reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("ffmpeg ended (exit status"), "{reason}");
    assert!(
        reason.to_lowercase().contains("nosuchfilter") || reason.contains("filter"),
        "{reason}"
    );
    // Retried with a growing pause (0.5, 1, 2 s: four tries in 4 s), and the
    // service stays up; the failure is said once, and counted when serve
    // stops.
    std::thread::sleep(Duration::from_secs(4));
    assert!(server.try_wait().unwrap().is_none());
    assert!(std::process::Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(server.wait().unwrap().success());
    let log = common::until_logged(&log, "published 0 frames");
    let lines: Vec<&str> = log.lines().collect();
    let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("ffmpeg started"), 1, "{log}");
    assert_eq!(count("] stalled: "), 1, "{log}");
    // ffmpeg's own words: from its first try only, before the stall line.
    let said = |what: &str| lines.iter().rposition(|l| l.contains(what));
    assert!(
        said("] ffmpeg: ").is_some_and(|i| Some(i) < said("] stalled: ")),
        "{log}"
    );
    assert!(log.contains("again in 0.5s"), "{log}");
    let last = lines
        .iter()
        .find(|l| l.contains("stopped while stalled: "))
        .unwrap_or_else(|| panic!("no count at the end: {log}"));
    let times: u32 = last
        .rsplit(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!((3..=6).contains(&times), "{last}");
    for line in &lines {
        assert!(stamped(line), "not time, level, channel, message: {line:?}");
        assert!(!line.contains("Ctrl-C"), "{line:?}");
    }
}

#[test]
fn under_systemd_lines_carry_a_priority_and_no_time() {
    // journald's stream is a socket; serve tells it from stderr's device
    // and inode, so a file named by JOURNAL_STREAM stands in for it.
    let dir = std::env::temp_dir().join(unique("journal"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().unwrap();
    // A short serve, told that the journal's stream is that file.
    let serve = || {
        let mut command = shmcast();
        command
            .args(["serve", &unique("journal")])
            .args(["--width", "8", "--height", "8", "--frames", "3"])
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        command
    };
    let status = serve().stdout(Stdio::null()).stderr(file).status().unwrap();
    assert!(status.success());
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(log.lines().count() >= 1, "{log:?}");
    for line in log.lines() {
        assert!(line.starts_with("<6>[cli-journal-"), "{line:?}");
        assert!(!stamped(line));
    }
    // The same variable with another stream (a pipe): stamped lines.
    let out = serve().output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().all(stamped), "{log:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_without_an_input_for_ffmpeg_says_what_is_missing() {
    let out = shmcast()
        .args(["serve", &unique("no-input"), "--source", "ffmpeg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input"));
}

#[test]
fn devices_without_a_camera_says_so_and_fails() {
    let out = shmcast().arg("devices").output().unwrap();
    if out.status.success() {
        // A machine with a camera: it lists at least one device.
        assert!(!out.stdout.is_empty());
    } else {
        assert!(String::from_utf8_lossy(&out.stderr).contains("no cameras found"));
    }
}

/// A config of three channels: a pattern at 20 fps, ffmpeg at 25 fps, and
/// an ffmpeg input that cannot work.
fn three_channels(tag: &str) -> (String, [String; 3]) {
    let names = [
        unique(&format!("{tag}-a")),
        unique(&format!("{tag}-b")),
        unique(&format!("{tag}-bad")),
    ];
    let config = format!(
        r#"
[[channel]]
name = "{}"
source = "pattern"
width = 64
height = 48
format = "gray8"
fps = 20

[[channel]]
name = "{}"
input = "-re -f lavfi -i testsrc=size=64x48:rate=25"
width = 64
height = 48
format = "rgb24"

[[channel]]
name = "{}"
input = "-f lavfi -i nosuchfilter"
width = 64
height = 48
format = "rgb24"
"#,
        names[0], names[1], names[2]
    );
    let path = std::env::temp_dir().join(format!("{}.toml", names[0]));
    std::fs::write(&path, config).unwrap();
    (path.display().to_string(), names)
}

fn latest(name: &str) -> u64 {
    channel(name)
        .and_then(|c| c["latest_frame"].as_u64())
        .unwrap_or(0)
}

/// Every pattern channel of a config runs, each at its own rate (they once
/// shared the process's stdin lock, and only the first one published).
#[test]
fn eight_pattern_channels_of_one_config_each_run_at_their_rate() {
    let names: Vec<String> = (0..8).map(|i| unique(&format!("eight{i}"))).collect();
    let config: String = names
        .iter()
        .map(|n| {
            format!("[[channel]]\nname = \"{n}\"\nsource = \"pattern\"\nwidth = 64\nheight = 48\nformat = \"gray8\"\nfps = 20\n\n")
        })
        .collect();
    let path = std::env::temp_dir().join(format!("{}.toml", names[0]));
    std::fs::write(&path, config).unwrap();
    let mut service = shmcast()
        .args(["serve", "--config", &path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for n in &names {
        until(n, "publishing", |c| c["latest_frame"].as_u64() > Some(2));
    }
    let (before, t0): (Vec<u64>, _) = (names.iter().map(|n| latest(n)).collect(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<u64> = names.iter().map(|n| latest(n)).collect();
    let secs = t0.elapsed().as_secs_f64();
    service.kill().unwrap();
    let _ = service.wait();
    for n in &names {
        let _ = shmcast().args(["remove", n]).output();
    }
    let _ = std::fs::remove_file(path);
    let rates: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / secs)
        .collect();
    assert!(
        rates.iter().all(|r| (r - 20.0).abs() <= 3.0),
        "not every channel ran at 20 fps: {rates:.1?}"
    );
}

#[test]
fn a_config_serves_each_channel_at_its_rate_whatever_one_failing_source_does() {
    let (config, [a, b, bad]) = three_channels("cfg");
    let mut service = shmcast()
        .args(["serve", "--config", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until(&a, "publishing", |c| c["latest_frame"].as_u64() > Some(2));
    until(&b, "publishing", |c| c["latest_frame"].as_u64() > Some(2));
    let stalled = until(&bad, "stalled", |c| c["health"] == "stalled");
    assert!(stalled["stall_reason"]
        .as_str()
        .unwrap()
        .contains("ffmpeg ended"));
    let (a0, b0, t0) = (latest(&a), latest(&b), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (a1, b1, secs) = (latest(&a), latest(&b), t0.elapsed().as_secs_f64());
    let (rate_a, rate_b) = ((a1 - a0) as f64 / secs, (b1 - b0) as f64 / secs);
    assert!(
        (rate_a - 20.0).abs() <= 2.0,
        "the pattern ran at {rate_a:.1} fps, not 20"
    );
    assert!(
        (rate_b - 25.0).abs() <= 2.5,
        "ffmpeg ran at {rate_b:.1} fps, not 25"
    );
    assert_eq!(channel(&bad).unwrap()["health"], "stalled");

    // A second service on these names is refused while the first lives...
    let out = shmcast()
        .args(["serve", &a, "--frames", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let pid = service.id().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&pid),
        "{out:?}"
    );

    // ...and takes over after a kill -9, frame numbers going on.
    service.kill().unwrap();
    service.wait().unwrap();
    let before = latest(&a);
    let mut again = shmcast()
        .args(["serve", "--config", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until(&a, "published again", |c| {
        c["latest_frame"].as_u64() > Some(before + 3) && c["health"] == "live"
    });
    until(&b, "published again", |c| c["health"] == "live");
    again.kill().unwrap();
    let _ = again.wait();
    for name in [&a, &b, &bad] {
        let _ = shmcast().args(["remove", name]).output();
    }
    let _ = std::fs::remove_file(config);
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let Ok(which) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the unit is not checked here");
        return;
    };
    assert!(which.status.success());
    let dir = std::env::temp_dir().join(unique("unit"));
    std::fs::create_dir_all(&dir).unwrap();
    // The camera service, and the bridge's templates through an instance.
    for (file, verified) in [
        ("shmcast.service", "shmcast.service"),
        ("shmcast-export@.service", "shmcast-export@cam1.service"),
        ("shmcast-import@.service", "shmcast-import@cam1.service"),
    ] {
        let unit = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../packaging/systemd")
                .join(file),
        )
        .unwrap();
        // The bridge is another workspace's binary: any executable stands in.
        let unit = unit
            .replace(
                "/usr/local/bin/shmcast-zenoh",
                env!("CARGO_BIN_EXE_shmcast"),
            )
            .replace("/usr/local/bin/shmcast", env!("CARGO_BIN_EXE_shmcast"));
        std::fs::write(dir.join(file), unit).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.join(verified))
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{file}: {said}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn on_a_terminal_serve_keeps_a_status_line_per_channel_and_plain_logs_otherwise() {
    let name = unique("status");
    let command = format!(
        "timeout -s INT 2.5 '{}' serve {name} --width 64 --height 48 --format gray8 --fps 10",
        env!("CARGO_BIN_EXE_shmcast")
    );
    // `script` gives serve a terminal (a pty) and copies what it shows.
    let Ok(out) = std::process::Command::new("script")
        .args(["-qc", &command, "/dev/null"])
        .output()
    else {
        eprintln!("script (util-linux) is missing: not checked");
        return;
    };
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("\x1b[1F\x1b[2K"),
        "no redrawn line: {screen:?}"
    );
    assert!(
        screen.contains(&format!("{name} "))
            && screen.contains(" fps  frame ")
            && screen.contains("publishing"),
        "{screen:?}"
    );
    // Without a terminal: no escape sequences at all.
    let out = shmcast()
        .args([
            "serve",
            &unique("status-plain"),
            "--width",
            "64",
            "--height",
            "48",
            "--format",
            "gray8",
            "--frames",
            "20",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
}

#[test]
fn watch_in_tmux_shows_the_channel_at_its_rate_and_quits_on_q() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("tmux is needed for this test; scripts/test installs it");
    }
    let name = unique("watch");
    let (mut server, _) = serve(
        &name,
        &[
            "--width", "64", "--height", "48", "--format", "gray8", "--fps", "20",
        ],
    );
    until(&name, "publishing", |c| {
        c["latest_frame"].as_u64() > Some(2)
    });
    let session = unique("tmux");
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .unwrap()
    };
    let command = format!("'{}' watch {name}", env!("CARGO_BIN_EXE_shmcast"));
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "20",
        &command
    ])
    .status
    .success());
    // Over 3 s the screen settles on the publisher's rate (a loaded
    // machine may take longer to show the first rows: up to 20 s).
    std::thread::sleep(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (screen, line) = loop {
        let screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
            .into_owned();
        if let Some(line) = screen.lines().find(|l| l.starts_with(&name)) {
            let line = line.to_owned();
            break (screen, line);
        }
        assert!(Instant::now() < deadline, "no row for {name}: {screen}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let fps: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (fps - 20.0).abs() <= 2.0,
        "watch says {fps} fps, the publisher runs at 20: {screen}"
    );
    assert!(line.ends_with("live"), "{line}");
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux(&["has-session", "-t", &session]).status.success() {
        assert!(Instant::now() < deadline, "q did not quit watch");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
}
