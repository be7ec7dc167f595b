//! Operations from outside the process: `serve --metrics` read as
//! Prometheus reads it (and checked by its `promtool`), and `shmcast web`
//! in a real browser (headless Chromium): the published quadrants on a
//! screenshot of the page, "stalled" with its reason in the page's DOM
//! after ffmpeg is killed, previews encoded once per frame for all
//! viewers, and the token. Linux (the browser and promtool are Linux
//! programs here; the same code serves on Windows).
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, shmcast, unique, until_http, Kill};

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
    until_http(port, "/metrics");
    // Long enough for the failing source's first restarts (0.5 s, 1 s).
    std::thread::sleep(Duration::from_millis(2000));
    let (status, first) = http_get(port, "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let first = String::from_utf8(first).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = String::from_utf8(http_get(port, "/metrics", "").unwrap().1).unwrap();

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
    until_http(port, "/api/channels");
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
    let (_publisher, stdin) = common::publish_quadrants(&name);
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
    let lines = common::stderr_lines(&mut serve.0);
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
    let (_, body) = http_get(port, "/api/channels", "").unwrap();
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
            std::thread::spawn(move || http_get(port, &path, "").unwrap())
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
    assert_eq!(http_get(port, "/", "").unwrap().0, 401);
    assert_eq!(http_get(port, "/?token=wrong-token!", "").unwrap().0, 401);
    assert_eq!(http_get(port, "/?token=s3cret-token", "").unwrap().0, 200);
    assert_eq!(
        http_get(
            port,
            "/api/channels",
            "Authorization: Bearer s3cret-token\r\n"
        )
        .unwrap()
        .0,
        200
    );
}
