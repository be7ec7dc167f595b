//! Derived channels (`shmcast derive`, `from` in serve's config), with
//! real processes: frames against ffmpeg's own scale and conversion of
//! the same source frame, numbering, rate, health that follows the
//! source, a source that lies, and the idle rule. The comparison with
//! ffmpeg runs on Linux (Windows code cannot start the Linux ffmpeg under
//! Wine); the rest runs on both.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

#[cfg(target_os = "linux")]
use common::ffmpeg;
use common::{shmcast, unique, until, Kill};

/// One frame of ffmpeg's testsrc2 (colour bars, gradients, text) in
/// `format`, `w` x `h`.
#[cfg(target_os = "linux")]
fn test_frame(format: &str, w: u32, h: u32) -> Vec<u8> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={w}x{h}:rate=1"),
        "-frames:v",
        "1",
        "-pix_fmt",
        format,
        "-f",
        "rawvideo",
        "-",
    ])
}

/// `shmcast publish NAME` of `w` x `h` `format` frames, its stdin open.
fn publisher(name: &str, format: &str, w: u32, h: u32) -> (Kill, std::process::ChildStdin) {
    let mut child = Kill(
        shmcast()
            .args(["publish", name, "--format", format])
            .args(["--width", &w.to_string(), "--height", &h.to_string()])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdin = child.0.stdin.take().unwrap();
    (child, stdin)
}

/// `shmcast derive ARGS...`, its stderr kept.
fn derive(args: &[&str]) -> Kill {
    Kill(
        shmcast()
            .arg("derive")
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// `count` frames of `name` by `shmcast read` (leasing, so the derived
/// channel sees a reader): their bytes, and the lines read prints.
fn read(name: &str, count: u32) -> (Vec<u8>, Vec<String>) {
    let (bytes, lines, _) = read_all(name, count);
    (bytes, lines)
}

/// As [`read`], and each frame's metadata (`read --metadata-out`).
fn read_all(name: &str, count: u32) -> (Vec<u8>, Vec<String>, Vec<Vec<u8>>) {
    let (frames, metadata) = (
        std::env::temp_dir().join(unique("derive-out")),
        std::env::temp_dir().join(unique("derive-meta-out")),
    );
    let out = shmcast()
        .args(["read", name, "--lease", "--timeout", "20", "--count"])
        .arg(count.to_string())
        .arg("--out")
        .arg(&frames)
        .arg("--metadata-out")
        .arg(&metadata)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&frames).unwrap();
    let records = parse_records(&std::fs::read(&metadata).unwrap());
    let _ = std::fs::remove_file(&frames);
    let _ = std::fs::remove_file(&metadata);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (bytes, lines, records)
}

/// The frame numbers `read` printed.
fn numbers(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn derived_frames_match_ffmpegs_scale_and_conversion_of_the_same_frame() {
    // (source format, target format, target size, fit, ffmpeg's filter,
    // the largest mean difference per byte allowed)
    // The first three are exact halvings (the halving path, row by row).
    // ffmpeg's 8-bit bilinear is a level off on average at exactly 2:1
    // (and up to 50 levels along the top edge), where its float path
    // agrees with the 1,3,3,1 filter to 0.01 levels: they are compared
    // with that.
    type Case<'a> = (&'a str, &'a str, (u32, u32), &'a str, String, f64);
    let cases: [Case; 9] = [
        (
            "rgb24",
            "bgra",
            (160, 120),
            "stretch",
            "format=gbrpf32le,scale=160:120".into(),
            0.05,
        ),
        (
            "bgra",
            "bgra",
            (160, 120),
            "crop",
            "format=gbrpf32le,scale=160:120".into(),
            0.05,
        ),
        (
            "rgb24",
            "nv12",
            (160, 120),
            "letterbox",
            "format=gbrpf32le,scale=160:120".into(),
            1.0,
        ),
        (
            "rgb24",
            "bgra",
            (176, 100),
            "stretch",
            "scale=176:100".into(),
            0.25,
        ),
        (
            "rgb24",
            "rgb24",
            (96, 96),
            "crop",
            "crop=240:240,scale=96:96".into(),
            1.0,
        ),
        (
            "rgb24",
            "nv12",
            (96, 96),
            "letterbox",
            "scale=96:72,pad=96:96:0:12:black".into(),
            1.0,
        ),
        (
            "bgra",
            "i420",
            (160, 90),
            "stretch",
            "scale=160:90".into(),
            1.0,
        ),
        (
            "nv12",
            "bgra",
            (176, 100),
            "stretch",
            "scale=176:100".into(),
            0.25,
        ),
        (
            "rgb24",
            "gray",
            (176, 100),
            "stretch",
            "scale=176:100".into(),
            0.25,
        ),
    ];
    let (w, h) = (320, 240);
    for (from, to, (tw, th), fit, filter, limit) in cases {
        let src_name = unique("derive-src");
        let name = unique("derive-dst");
        let frame = test_frame(from, w, h);
        let (_publisher, mut stdin) = publisher(&src_name, from, w, h);
        let _derive = derive(&[
            &src_name,
            &name,
            "--width",
            &tw.to_string(),
            "--height",
            &th.to_string(),
            "--format",
            to,
            "--fit",
            fit,
        ]);
        // Frames keep coming until the reader has one.
        let feeding = std::thread::spawn(move || {
            while stdin.write_all(&frame).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let (got, _) = read(&name, 1);
        // ffmpeg: the same source frame, bilinear scale in the source's
        // packed form (yuv sources as rgb24, as derive does), then the
        // conversion.
        let src_file = std::env::temp_dir().join(format!("{name}.raw"));
        std::fs::write(&src_file, test_frame(from, w, h)).unwrap();
        // A YUV source is converted as the library does: chroma from the
        // nearest sample.
        let filter = if from == "nv12" {
            format!(
                "scale={w}:{h}:flags=neighbor+full_chroma_int+accurate_rnd,format=rgb24,{filter}"
            )
        } else {
            filter
        };
        let reference = ffmpeg(&[
            "-f",
            "rawvideo",
            "-pix_fmt",
            from,
            "-s",
            &format!("{w}x{h}"),
            "-i",
            src_file.to_str().unwrap(),
            "-sws_flags",
            "bilinear+accurate_rnd+full_chroma_int",
            "-vf",
            &filter,
            "-pix_fmt",
            if to == "i420" { "yuv420p" } else { to },
            "-f",
            "rawvideo",
            "-",
        ]);
        let _ = std::fs::remove_file(&src_file);
        assert_eq!(got.len(), reference.len(), "{from} -> {to} {fit}: sizes");
        let diffs: Vec<u32> = got
            .iter()
            .zip(&reference)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .collect();
        let mean = f64::from(diffs.iter().sum::<u32>()) / diffs.len() as f64;
        let within_8 = diffs.iter().filter(|&&d| d <= 8).count() as f64 / diffs.len() as f64;
        eprintln!(
            "{from} -> {to} {tw}x{th} {fit}: mean difference {mean:.2} levels, {:.1}% within 8, largest {}",
            within_8 * 100.0,
            diffs.iter().max().unwrap()
        );
        assert!(
            mean <= limit && within_8 >= 0.97,
            "{from} -> {to} {fit}: differs from ffmpeg by {mean:.2} levels on average, {:.1}% within 8",
            within_8 * 100.0
        );
        drop(feeding);
    }
}

/// `ok` of the channel's `info --json` within 20 s.
fn until_info(
    name: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    until(
        name,
        what,
        Duration::from_secs(20),
        Duration::from_millis(50),
        ok,
    )
}

#[test]
fn each_derived_frame_is_one_source_frame_with_its_number_and_timestamp() {
    // Source frame k is 64x48 gray8 of value k (mod 256): a derived frame
    // (gray8 at the same size: a copy) shows which source frame it is.
    let src = unique("derive-num-src");
    let name = unique("derive-num");
    let (_publisher, mut stdin) = publisher(&src, "gray8", 64, 48);
    let _derive = derive(&[
        &src, &name, "--width", "64", "--height", "48", "--format", "gray8",
    ]);
    let feeding = std::thread::spawn(move || {
        for k in 1..=200u32 {
            if stdin.write_all(&[k as u8; 64 * 48]).is_err() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(stdin)
    });
    let (bytes, lines) = read(&name, 30);
    let numbers = numbers(&lines);
    assert_eq!(numbers.len(), 30, "{lines:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    for (frame, number) in bytes.chunks(64 * 48).zip(&numbers) {
        assert!(
            frame.iter().all(|&b| b == *number as u8),
            "derived frame {number} holds source frame {}",
            frame[0]
        );
    }
    // Once the source is quiet, both channels' latest frame is the same
    // one: same number, same timestamp.
    let _stdin = feeding
        .join()
        .unwrap()
        .expect("the source took every frame");
    let source = until_info(&src, "at frame 200", |c| c["latest_frame"] == 200);
    let derived = until_info(&name, "at frame 200", |c| c["latest_frame"] == 200);
    assert_eq!(
        derived["latest_timestamp_ns"], source["latest_timestamp_ns"],
        "{derived}"
    );
}

#[test]
fn a_lower_rate_takes_every_nth_source_frame_and_no_more() {
    let src = unique("derive-rate-src");
    let name = unique("derive-rate");
    let _source = Kill(common::start_serve(
        &src,
        &["--width", "64", "--height", "48", "--fps", "30"],
    ));
    let _derive = derive(&[
        &src, &name, "--width", "32", "--height", "24", "--format", "bgra", "--fps", "10",
    ]);
    let (_, lines) = read(&name, 12);
    let numbers = numbers(&lines);
    // 30 fps to 10: every third source frame, give or take the machine's
    // jitter, and never two derived frames within one source interval.
    let gaps: Vec<u64> = numbers.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| g >= 2), "{numbers:?}");
    let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
    assert!((2.5..=4.0).contains(&mean), "mean gap {mean}: {numbers:?}");
}

#[test]
fn health_follows_the_source_and_frames_come_back_with_it() {
    let src = unique("derive-health-src");
    let name = unique("derive-health");
    let args = ["--width", "64", "--height", "48", "--fps", "30"];
    let source = Kill(common::start_serve(&src, &args));
    let _derive = derive(&[
        &src, &name, "--width", "32", "--height", "24", "--format", "nv12",
    ]);
    // A leasing reader keeps it from going idle.
    let mut reader = Kill(
        shmcast()
            .args([
                "read",
                &name,
                "--lease",
                "--count",
                "100000",
                "--timeout",
                "60",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until_info(&name, "live", |c| c["health"] == "live");
    // A source killed mid-stream: gone, then stalled with its reason.
    drop(source);
    let c = until_info(&name, "stalled by its source", |c| {
        c["health"] == "stalled"
            && c["stall_reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("source {src} is")))
    });
    eprintln!("source killed: {}", c["stall_reason"]);
    let before = c["latest_frame"].as_u64().unwrap();
    let _source = Kill(common::start_serve(&src, &args));
    until_info(&name, "live again", |c| {
        c["health"] == "live" && c["latest_frame"].as_u64() > Some(before)
    });
    assert!(reader.0.try_wait().unwrap().is_none(), "the reader ended");
}

#[test]
fn a_source_that_lies_about_its_geometry_stalls_the_derived_channel_with_a_reason() {
    let src = unique("derive-liar-src");
    let name = unique("derive-liar");
    let mut publisher = shmcast::Publisher::create(src.as_str(), 4096).unwrap();
    let _derive = derive(&[
        &src, &name, "--width", "32", "--height", "24", "--format", "bgra", "--always",
    ]);
    // 1920x1080 rgb24 says 6 MB; the frame has 4 KiB.
    let lie = shmcast::FrameMeta::new(1920, 1080, shmcast::PixelFormat::Rgb24);
    let honest = shmcast::FrameMeta::new(32, 24, shmcast::PixelFormat::Rgb24);
    let c = loop {
        publisher.publish(&lie, &[7; 4096]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        if let Some(c) = common::channel(&name).filter(|c| c["health"] == "stalled") {
            break c;
        }
    };
    let reason = c["stall_reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("needs 6220800 bytes; it has 4096"),
        "{reason}"
    );
    // An unknown geometry of a raw frame, then an honest frame: live again.
    publisher
        .publish(&shmcast::FrameMeta::raw(), &[1; 16])
        .unwrap();
    loop {
        publisher.publish(&honest, &[9; 32 * 24 * 3]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        if common::channel(&name).is_some_and(|c| c["health"] == "live") {
            break;
        }
    }
}

#[test]
fn with_no_leasing_reader_it_goes_idle_and_a_reader_wakes_it() {
    let src = unique("derive-idle-src");
    let name = unique("derive-idle");
    let _source = Kill(common::start_serve(
        &src,
        &["--width", "64", "--height", "48", "--fps", "30"],
    ));
    let _derive = derive(&[
        &src, &name, "--width", "32", "--height", "24", "--format", "rgb24",
    ]);
    let c = until_info(&name, "idle", |c| {
        c["stall_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("idle"))
    });
    // Idle: it is not one of the source's readers any more, and makes
    // nothing.
    assert_eq!(common::channel(&src).unwrap()["leasers"], 0);
    let frame = c["latest_frame"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(common::channel(&name).unwrap()["latest_frame"], frame);
    // A leasing reader wakes it.
    let (_, lines) = read(&name, 3);
    assert_eq!(numbers(&lines).len(), 3, "{lines:?}");
}

#[test]
fn a_derive_of_itself_is_refused() {
    let name = unique("derive-self");
    let out = shmcast()
        .args([
            "derive", &name, &name, "--width", "8", "--height", "8", "--format", "rgb24",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be derived from itself"), "{err}");
}

#[test]
fn serve_makes_the_derived_channels_of_its_config_and_refuses_a_cycle() {
    let src = unique("derive-cfg-src");
    let (view, model) = (format!("{src}-view"), format!("{src}-model"));
    let config = std::env::temp_dir().join(format!("{src}.toml"));
    let text = format!(
        "[[channel]]\nname = \"{src}\"\nsource = \"pattern\"\nwidth = 320\nheight = 240\nformat = \"rgb24\"\nfps = 30\n\n\
         [[channel]]\nname = \"{view}\"\nfrom = \"{src}\"\nwidth = 160\nheight = 90\nformat = \"bgra\"\nfit = \"letterbox\"\n\n\
         [[channel]]\nname = \"{model}\"\nfrom = \"{view}\"\nwidth = 64\nheight = 64\nformat = \"nv12\"\nfps = 10\nfit = \"crop\"\n"
    );
    std::fs::write(&config, &text).unwrap();
    let _serve = Kill(
        shmcast()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // A chain: the model is derived from the view.
    let (bytes, lines) = read(&model, 3);
    assert_eq!(bytes.len(), 3 * 64 * 64 * 3 / 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("64x64 nv12")), "{lines:?}");
    let (bytes, _) = read(&view, 1);
    // Letterboxed 4:3 in 16:9: black bars left and right (bgra 0,0,0,255).
    assert_eq!(bytes[..4], [0, 0, 0, 255]);
    // A cycle is refused before anything runs.
    let cycle = text.replace(&format!("from = \"{src}\""), &format!("from = \"{model}\""));
    std::fs::write(&config, cycle).unwrap();
    let out = shmcast()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("form a cycle"), "{err}");
}

/// Records as `publish --metadata` reads and `read --metadata-out` writes
/// them: a 4-byte little-endian length, then the bytes.
fn records(all: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in all {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn parse_records(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    out
}

#[test]
fn metadata_from_a_side_file_reaches_readers_and_derived_channels() {
    // Source frame k (gray8 of value k) carries "k=K"; its derived frame
    // must carry the same, and a reader of either sees each frame's own.
    let src = unique("derive-meta-src");
    let name = unique("derive-meta");
    let side = std::env::temp_dir().join(format!("{src}.records"));
    let count = 150u32;
    let all: Vec<Vec<u8>> = (1..=count).map(|k| format!("k={k}").into_bytes()).collect();
    std::fs::write(&side, records(&all)).unwrap();
    let mut publisher = Kill(
        shmcast()
            .args([
                "publish", &src, "--format", "gray8", "--width", "32", "--height", "24",
            ])
            .arg("--metadata")
            .arg(&side)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = publisher.0.stdin.take().unwrap();
    let _derive = derive(&[
        &src, &name, "--width", "16", "--height", "12", "--format", "rgb24",
    ]);
    let feeding = std::thread::spawn(move || {
        for k in 1..=count {
            if stdin.write_all(&[k as u8; 32 * 24]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    for channel in [&src, &name] {
        let (_, lines, meta) = read_all(channel, 10);
        assert_eq!(meta.len(), 10, "{lines:?}");
        for (n, m) in numbers(&lines).iter().zip(&meta) {
            assert_eq!(
                String::from_utf8_lossy(m),
                format!("k={n}"),
                "frame {n} of {channel}"
            );
        }
    }
    drop(feeding);
    let _ = std::fs::remove_file(&side);
}

#[test]
fn a_metadata_record_longer_than_the_channel_allows_stops_publish_with_a_reason() {
    let src = unique("derive-meta-long");
    let side = std::env::temp_dir().join(format!("{src}.records"));
    std::fs::write(&side, records(&[vec![1; 8], vec![2; 9]])).unwrap();
    let mut publisher = shmcast()
        .args([
            "publish", &src, "--format", "gray8", "--width", "4", "--height", "2",
        ])
        .args(["--max-metadata", "8", "--metadata"])
        .arg(&side)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publisher.stdin.take().unwrap().write_all(&[0; 24]).unwrap();
    let out = publisher.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&side);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the metadata of frame 2")
            && err.contains("a record of 9 bytes; frames carry at most 8"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn metadata_can_come_through_a_named_pipe_in_step_with_the_frames() {
    let src = unique("derive-meta-fifo");
    let fifo = std::env::temp_dir().join(format!("{src}.fifo"));
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut publisher = Kill(
        shmcast()
            .args([
                "publish", &src, "--format", "gray8", "--width", "8", "--height", "8",
            ])
            .arg("--metadata")
            .arg(&fifo)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = publisher.0.stdin.take().unwrap();
    let path = fifo.clone();
    // The producer: each frame on stdin, its metadata on the pipe.
    let producer = std::thread::spawn(move || {
        let mut pipe = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for k in 1..=300u32 {
            let record = records(&[format!("trigger {k}").into_bytes()]);
            if pipe.write_all(&record).is_err() || stdin.write_all(&[k as u8; 64]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (_, lines, meta) = read_all(&src, 5);
    for (n, m) in numbers(&lines).iter().zip(&meta) {
        assert_eq!(String::from_utf8_lossy(m), format!("trigger {n}"));
    }
    assert_eq!(meta.len(), 5);
    drop(publisher);
    let _ = producer.join();
    let _ = std::fs::remove_file(&fifo);
}
