//! Operations from outside the process: `serve --metrics` read as
//! Prometheus reads it (and checked by its `promtool`), and `shmcast web`
//! in a real browser (headless Chromium): the published quadrants on a
//! screenshot of the page, "stalled" with its reason in the page's DOM
//! after ffmpeg is killed, previews encoded once per frame for all
//! viewers, and the token. Linux (the browser and promtool are Linux
//! programs here; the same code serves on Windows).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{shmcast, unique, Kill};

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the status and the body.
fn get(port: u16, path: &str, headers: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n").ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, all[split + 4..].to_vec()))
}

/// Waits (20 s at most) until `GET path` answers.
fn until_up(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, path, "").is_none() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One series' value in a Prometheus exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn metrics_are_prometheus_text_that_moves_with_the_frames() {
    let (live, failing) = (unique("metrics-live"), unique("metrics-failing"));
    let dir = std::env::temp_dir().join(unique("metrics"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cameras.toml");
    std::fs::write(
        &config,
        format!(
            "[[channel]]\nname = \"{live}\"\nsource = \"pattern\"\nwidth = 32\nheight = 32\nformat = \"gray8\"\nfps = 50\n\n\
             [[channel]]\nname = \"{failing}\"\ninput = \"-f lavfi -i nosuchfilter=size=8x8\"\nwidth = 8\nheight = 8\nformat = \"gray8\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _serve = Kill(
        shmcast()
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--metrics", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until_up(port, "/metrics");
    // Long enough for the failing source's first restarts (0.5 s, 1 s).
    std::thread::sleep(Duration::from_millis(2000));
    let (status, first) = get(port, "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let first = String::from_utf8(first).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = String::from_utf8(get(port, "/metrics", "").unwrap().1).unwrap();

    let series = |name: &str, channel: &str| format!("{name}{{channel=\"{channel}\"}}");
    let frames = |text: &str| value(text, &series("shmcast_frames_total", &live)).unwrap();
    assert!(
        frames(&second) >= frames(&first) + 10.0,
        "{first}\n{second}"
    );
    assert_eq!(value(&second, &series("shmcast_stalled", &live)), Some(0.0));
    assert_eq!(
        value(&second, &series("shmcast_stalled", &failing)),
        Some(1.0)
    );
    assert!(
        value(&second, &series("shmcast_source_restarts_total", &failing)) >= Some(1.0),
        "{second}"
    );
    assert_eq!(value(&second, &series("shmcast_leasers", &live)), Some(0.0));
    assert!(value(&second, &series("shmcast_frame_age_seconds", &live)) < Some(1.0));
    assert_eq!(
        value(&second, &series("shmcast_dropped_frames_total", &live)),
        Some(0.0)
    );

    // Prometheus' own check of the format.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt prometheus) is needed; scripts/test installs it");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(second.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const W: usize = 64;
const H: usize = 48;

/// Red, green / blue, white.
fn quadrants() -> Vec<u8> {
    let mut frame = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            frame.extend_from_slice(match (x < W / 2, y < H / 2) {
                (true, true) => &[255, 0, 0],
                (false, true) => &[0, 255, 0],
                (true, false) => &[0, 0, 255],
                (false, false) => &[255, 255, 255],
            });
        }
    }
    frame
}

/// `shmcast web NAMES --listen 127.0.0.1:PORT ARGS`, once it answers.
fn web(names: &[&str], args: &[&str]) -> (Kill, u16) {
    let port = free_port();
    let child = Kill(
        shmcast()
            .arg("web")
            .args(names)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until_up(port, "/api/channels");
    (child, port)
}

fn chromium(args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("chromium is needed; scripts/test installs it")
}

/// The centre of the pixels within 40 of `rgb` in an image of `bpp`
/// bytes per pixel (RGB first), and how many there are.
fn centre(pixels: &[u8], bpp: usize, width: usize, rgb: [u8; 3]) -> (usize, f64, f64) {
    let (mut n, mut sx, mut sy) = (0usize, 0f64, 0f64);
    for (i, p) in pixels.chunks(bpp).enumerate() {
        if (0..3).all(|c| (i32::from(p[c]) - i32::from(rgb[c])).abs() <= 40) {
            n += 1;
            sx += (i % width) as f64;
            sy += (i / width) as f64;
        }
    }
    (n, sx / n.max(1) as f64, sy / n.max(1) as f64)
}

#[test]
fn the_page_in_chromium_shows_the_published_quadrants() {
    let name = unique("web-quadrants");
    let mut publisher = Kill(
        shmcast()
            .args([
                "publish", &name, "--width", "64", "--height", "48", "--format", "rgb24",
            ])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = publisher.0.stdin.take().unwrap();
    stdin.write_all(&quadrants()).unwrap();
    stdin.flush().unwrap();
    let (_web, port) = web(&[&name], &[]);
    let dir = std::env::temp_dir().join(unique("web-shot"));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("page.png");
    let out = chromium(&[
        "--window-size=800,600",
        &format!("--screenshot={}", shot.display()),
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(out.status.success() && shot.exists(), "{out:?}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let bpp = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("a {other:?} screenshot"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let width = info.width as usize;
    let (nr, rx, ry) = centre(&pixels, bpp, width, [255, 0, 0]);
    let (ng, gx, gy) = centre(&pixels, bpp, width, [0, 255, 0]);
    let (nb, bx, by) = centre(&pixels, bpp, width, [0, 0, 255]);
    // Each quadrant of the 320x240 preview is 160x120 pixels.
    for (n, what) in [(nr, "red"), (ng, "green"), (nb, "blue")] {
        assert!(n > 10_000, "only {n} {what} pixels: {}", shot.display());
    }
    assert!(
        rx + 100.0 < gx && (ry - gy).abs() < 10.0,
        "red is not left of green"
    );
    assert!(
        ry + 80.0 < by && (rx - bx).abs() < 10.0,
        "blue is not below red"
    );
    drop(stdin);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn after_ffmpeg_is_killed_the_page_says_stalled_and_why() {
    // An ffmpeg that works the first time only: the camera "goes away",
    // and the next ffmpeg sends nothing.
    let dir = std::env::temp_dir().join(unique("web-stall"));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("ffmpeg");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {dir}/started ]; then exec sleep 60; fi\ntouch {dir}/started\nexec ffmpeg \"$@\"\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let name = unique("web-stall");
    let mut serve = Kill(
        shmcast()
            .args(["serve", &name, "--source", "ffmpeg"])
            .env("SHMCAST_FFMPEG", &wrapper)
            .args(["--input", "-re -f lavfi -i testsrc=size=64x48:rate=30"])
            .args([
                "--width",
                "64",
                "--height",
                "48",
                "--format",
                "rgb24",
                "--stall-after",
                "10",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let stderr = serve.0.stderr.take().unwrap();
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            l.split("ffmpeg started (pid ")
                .nth(1)
                .map(|r| r.split(')').next().unwrap().to_owned())
        });
        if let Some(pid) = found {
            break pid;
        }
        assert!(Instant::now() < deadline, "{:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_web, port) = web(&[&name], &[]);
    common::until(
        &name,
        "live",
        Duration::from_secs(20),
        Duration::from_millis(50),
        |c| c["health"] == "live",
    );
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    common::until(
        &name,
        "stalled",
        Duration::from_secs(20),
        Duration::from_millis(50),
        |c| c["health"] == "stalled",
    );
    // The DOM after the page's script has run a few rounds.
    let out = chromium(&[
        "--virtual-time-budget=3000",
        "--dump-dom",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"<dd class="health health-stalled">stalled</dd>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<dd class="reason">ffmpeg ended (signal: 9 (SIGKILL))"#),
        "{dom}"
    );
    let _ = serve.0.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

fn previews_encoded(port: u16) -> u64 {
    let (_, body) = get(port, "/api/channels", "").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["previews_encoded"].as_u64().unwrap()
}

#[test]
fn a_preview_is_encoded_once_per_frame_for_every_viewer_and_not_without_one() {
    let name = unique("web-once");
    let _serve = common::Kill(common::start_serve(
        &name,
        &[
            "--width", "64", "--height", "48", "--format", "gray8", "--fps", "5",
        ],
    ));
    let (_web, port) = web(&[&name], &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(previews_encoded(port), 0, "encoded with nobody watching");
    // Ten viewers at once, within about one frame (200 ms).
    let path = format!("/channel/{name}/frame.jpg");
    let t = Instant::now();
    let shots: Vec<_> = (0..10)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || get(port, &path, "").unwrap())
        })
        .collect();
    for s in shots {
        let (status, body) = s.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(&body[..2], &[0xff, 0xd8], "not a JPEG");
    }
    let encoded = previews_encoded(port);
    // 5 fps: within the time the ten took, at most a frame or two passed.
    let frames = (t.elapsed().as_secs_f64() * 5.0).ceil() as u64 + 1;
    assert!(
        encoded >= 1 && encoded <= frames,
        "{encoded} encodings for {frames} frames"
    );
}

#[test]
fn beyond_loopback_a_token_is_required_and_checked() {
    let out = shmcast()
        .args(["web", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token"),
        "{out:?}"
    );
    let (_web, port) = web(&[], &["--token", "s3cret-token"]);
    assert_eq!(get(port, "/", "").unwrap().0, 401);
    assert_eq!(get(port, "/?token=wrong-token!", "").unwrap().0, 401);
    assert_eq!(get(port, "/?token=s3cret-token", "").unwrap().0, 200);
    assert_eq!(
        get(
            port,
            "/api/channels",
            "Authorization: Bearer s3cret-token\r\n"
        )
        .unwrap()
        .0,
        200
    );
}
