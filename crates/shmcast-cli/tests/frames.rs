//! `shmcast publish` and `shmcast read` as a user pipes them together.
//! The generated-frames test runs on Linux and under Wine; the ffmpeg one
//! needs Debian's ffmpeg (scripts/test installs it) and runs on Linux.

use std::io::Write;
use std::process::{Output, Stdio};

mod common;

use common::{md5_hex, shmcast, start_serve, unique};

/// Frame `i` of a small rgb24 test stream.
fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j * 31 + i * 7 + (j >> 8)) as u8)
        .collect()
}

/// Starts `shmcast read` (before the publisher, which it waits for).
fn start_read(name: &str, args: &[&str]) -> std::process::Child {
    shmcast()
        .args(["read", name])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn publish(name: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = shmcast()
        .args(["publish", name])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Parses `read --md5` lines: (frame number, "WxH", format, md5).
fn md5_lines(out: &[u8]) -> Vec<(usize, String, String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "{l:?}");
            (f[0].parse().unwrap(), f[1].into(), f[2].into(), f[3].into())
        })
        .collect()
}

#[test]
fn a_reader_gets_the_published_frames_exactly_in_order() {
    let name = unique("gen");
    let (w, h) = (64, 48);
    let len = w * h * 3;
    let frames: Vec<Vec<u8>> = (0..120).map(|i| frame(i, len)).collect();
    let reader = start_read(&name, &["--count", "20", "--md5", "--timeout", "30"]);
    let out = publish(
        &name,
        &[
            "--width", "64", "--height", "48", "--format", "rgb24", "--fps", "60",
        ],
        &frames.concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let read = reader.wait_with_output().unwrap();
    assert!(read.status.success(), "{read:?}");
    let lines = md5_lines(&read.stdout);
    assert_eq!(lines.len(), 20);
    let mut last = 0;
    for (number, size, format, md5) in lines {
        assert!(number > last, "frame {number} after {last}");
        last = number;
        assert_eq!((size.as_str(), format.as_str()), ("64x48", "rgb24"));
        assert_eq!(md5, md5_hex(&frames[number - 1]), "frame {number}");
    }
}

#[test]
fn read_out_appends_the_raw_payloads() {
    let name = unique("out");
    let len = 16 * 16;
    let frames: Vec<Vec<u8>> = (0..30).map(|i| frame(i, len)).collect();
    let path = std::env::temp_dir().join(format!("{name}.raw"));
    let _ = std::fs::remove_file(&path);
    let reader = start_read(&name, &["--count", "5", "--out", path.to_str().unwrap()]);
    let out = publish(
        &name,
        &[
            "--width", "16", "--height", "16", "--format", "gray", "--fps", "30",
        ],
        &frames.concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let read = reader.wait_with_output().unwrap();
    assert!(read.status.success(), "{read:?}");
    let numbers: Vec<usize> = String::from_utf8_lossy(&read.stdout)
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let written = std::fs::read(&path).unwrap();
    let expected: Vec<u8> = numbers
        .iter()
        .flat_map(|&n| frames[n - 1].clone())
        .collect();
    assert_eq!(written, expected);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_short_last_frame_is_an_error_not_a_frame() {
    let name = unique("short");
    let out = publish(
        &name,
        &["--width", "8", "--height", "8", "--format", "rgba"],
        &vec![1u8; 256 + 100],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("short") && err.contains(&name), "{err}");
}

#[test]
fn read_without_a_channel_times_out_naming_it() {
    let name = unique("absent");
    let out = start_read(&name, &["--timeout", "0.3"])
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&name), "{err}");
}

#[test]
fn bad_frame_geometry_is_refused_before_anything_is_created() {
    let out = publish(
        &unique("odd"),
        &["--width", "3", "--height", "3", "--format", "nv12"],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid nv12 frame size"));
}

#[cfg(target_os = "linux")]
#[test]
fn ffmpeg_testsrc_through_shmcast_matches_ffmpegs_own_framemd5() {
    let ffmpeg_args = [
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x480:rate=30",
        "-frames:v",
        "90",
    ];
    let reference = std::process::Command::new("ffmpeg")
        .args(ffmpeg_args)
        .args(["-pix_fmt", "rgb24", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg is needed for this test; scripts/test installs it");
    assert!(reference.status.success(), "{reference:?}");
    let reference: Vec<String> = String::from_utf8_lossy(&reference.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(reference.len(), 90);

    let name = unique("cam");
    let reader = start_read(&name, &["--count", "60", "--md5", "--timeout", "30"]);
    let producer = format!(
        "ffmpeg {} -f rawvideo -pix_fmt rgb24 - | '{}' publish {name} --width 640 --height 480 --format rgb24 --fps 30",
        ffmpeg_args.map(|a| if a.contains('=') { format!("'{a}'") } else { a.to_owned() }).join(" "),
        env!("CARGO_BIN_EXE_shmcast"),
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &producer])
        .status()
        .unwrap();
    assert!(status.success());
    let read = reader.wait_with_output().unwrap();
    assert!(read.status.success(), "{read:?}");
    let lines = md5_lines(&read.stdout);
    assert_eq!(lines.len(), 60);
    let mut last_index = None;
    for (number, size, format, md5) in lines {
        let index = reference
            .iter()
            .position(|r| *r == md5)
            .unwrap_or_else(|| panic!("frame {number}: {md5} is none of ffmpeg's checksums"));
        assert!(last_index < Some(index), "out of order at frame {number}");
        last_index = Some(index);
        assert_eq!(
            index,
            number - 1,
            "frame number {number} carries ffmpeg frame {index}"
        );
        assert_eq!((size.as_str(), format.as_str()), ("640x480", "rgb24"));
    }
}

/// `shmcast serve` on its test pattern, killed when dropped.
struct Serve(std::process::Child);

impl Serve {
    fn start(name: &str, args: &[&str]) -> Serve {
        Serve(start_serve(name, args))
    }
}

impl Drop for Serve {
    /// Stops it the way a user would (SIGTERM on Linux), so that it removes
    /// its segment and tests leave nothing in /dev/shm; Windows sections go
    /// with the process anyway.
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

#[test]
fn serve_publishes_its_test_pattern_and_a_second_serve_is_refused() {
    let name = unique("serve");
    let server = Serve::start(&name, &["--width", "64", "--height", "48", "--fps", "100"]);
    let read = start_read(&name, &["--count", "3", "--md5"])
        .wait_with_output()
        .unwrap();
    assert!(read.status.success(), "{read:?}");
    let lines = md5_lines(&read.stdout);
    assert_eq!(lines.len(), 3);
    assert!(
        lines.iter().all(|l| l.1 == "64x48" && l.2 == "rgb24"),
        "{lines:?}"
    );
    assert!(
        lines.windows(2).all(|w| w[0].3 != w[1].3),
        "the pattern does not move"
    );

    let second = shmcast().args(["serve", &name]).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("pid {}", server.0.id())), "{err}");
    assert!(err.contains(&name), "{err}");
    // The refusal did not disturb the running channel.
    let again = start_read(&name, &["--count", "2"])
        .wait_with_output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn serve_with_a_frame_count_ends_by_itself() {
    let name = unique("count");
    let out = shmcast()
        .args([
            "serve", &name, "--frames", "5", "--fps", "0", "--format", "nv12",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("published 5 frames"));
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_stops_serve_cleanly_and_removes_the_channel() {
    let name = unique("sigterm");
    let mut server = Serve::start(&name, &["--width", "32", "--height", "32"]);
    let path = format!("/dev/shm/shmcast.{name}");
    assert!(std::path::Path::new(&path).exists());
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(server.0.wait().unwrap().success());
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

/// A channel re-created with larger frames (a restarted camera at a higher
/// resolution): `read` follows it with a larger buffer. Linux only: on
/// Windows the reader's handle keeps the old section, which the new
/// publisher takes over at its old size.
#[cfg(unix)]
#[test]
fn read_follows_its_channel_re_created_with_larger_frames() {
    use shmcast::{FrameMeta, Publisher};
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let name = unique("grow");
    let mut small = Publisher::create(name.as_str(), 100).unwrap();
    let mut reader = common::Kill(start_read(&name, &["--count", "3", "--timeout", "10"]));
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = reader.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Frames until the reader has one, then the channel anew, larger.
    let end = Instant::now() + Duration::from_secs(10);
    let first = loop {
        small.publish(&FrameMeta::raw(), &[1; 100]).unwrap();
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
            break line;
        }
        assert!(Instant::now() < end, "the reader read nothing");
    };
    assert!(first.ends_with(" 100 bytes"), "{first}");
    drop(small);
    let mut large = Publisher::create(name.as_str(), 1000).unwrap();
    while reader.0.try_wait().unwrap().is_none() {
        large.publish(&FrameMeta::raw(), &[2; 1000]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(Instant::now() < end, "the reader did not end");
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(reader.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(reader.0.wait().unwrap().success(), "{stderr}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(rest.iter().all(|l| l.ends_with(" 1000 bytes")), "{rest:?}");
}
