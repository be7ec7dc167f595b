//! ffmpeg's test pattern across the bridge on loopback: raw frames with
//! ffmpeg's own MD5s, JPEG frames within 35 dB of the originals. Linux
//! only: the frames come from Debian's ffmpeg (scripts/test installs it).

#![cfg(unix)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{export, framemd5, free_port, import, shmcast, testsrc, unique, Source};
use shmcast::{FrameMeta, PixelFormat, Subscriber, SubscriberOptions};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn raw_frames_arrive_whole_with_ffmpegs_md5s_and_their_numbers() {
    let (src, dst) = (unique("raw-src"), unique("raw-dst"));
    let key = format!("shmcast-test/{src}");
    let port = free_port();
    let mut exporter = export(&src, &key, port, &[]);
    let mut importer = import(&key, &dst, port, &[]);
    importer.expect("importing", 10 * SECOND);
    let reader = shmcast()
        .args(["read", &dst, "--count", "30", "--md5", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ffmpeg = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x480:rate=30",
        ])
        .args([
            "-frames:v",
            "150",
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
            "-",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg (scripts/test installs it)");
    let publisher = shmcast()
        .args(["publish", &src, "--width", "640", "--height", "480"])
        .args(["--format", "rgb24", "--fps", "30"])
        .stdin(ffmpeg.stdout.take().unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = reader.wait_with_output().unwrap();
    let published = publisher.wait_with_output().unwrap();
    let _ = ffmpeg.wait();
    assert!(read.status.success(), "{read:?}\n{:?}", importer.seen);
    assert!(published.status.success(), "{published:?}");
    exporter.expect("source live", SECOND);

    let want = framemd5(640, 480, "rgb24", 150);
    let lines = String::from_utf8(read.stdout).unwrap();
    let mut last = 0;
    for line in lines.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let number: usize = f[0].parse().unwrap();
        assert!(number > last, "frame {number} after {last}");
        last = number;
        assert_eq!((f[1], f[2]), ("640x480", "rgb24"), "{line}");
        // The imported frame keeps the source's number, so it is known by
        // one number on both sides: frame n is ffmpeg's frame n - 1.
        assert_eq!(f[3], want[number - 1], "frame {number}");
    }
    assert_eq!(lines.lines().count(), 30);
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0 * 255.0 / mse).log10()
}

#[test]
fn jpeg_frames_arrive_within_35_db_of_the_originals_with_their_metadata() {
    let (src, dst) = (unique("jpeg-src"), unique("jpeg-dst"));
    let key = format!("shmcast-test/{src}");
    let port = free_port();
    let frames = testsrc(640, 480, "rgb24", 30);
    let mut source = Source::start(
        &src,
        FrameMeta::new(640, 480, PixelFormat::Rgb24),
        frames.clone(),
    );
    let _exporter = export(&src, &key, port, &["--encode", "jpeg", "--quality", "90"]);
    let _importer = import(&key, &dst, port, &[]);
    let mut sub =
        Subscriber::open_with(dst.as_str(), &SubscriberOptions::new().wait(20 * SECOND)).unwrap();
    let mut buf = vec![0; sub.max_frame_len()];
    let (mut seen, mut worst) = (0, f64::INFINITY);
    for _ in 0..20 {
        sub.wait_newer(seen, 10 * SECOND).unwrap();
        let info = sub.read_latest(&mut buf).unwrap().unwrap();
        seen = info.number;
        assert_eq!(
            info.meta,
            FrameMeta {
                timestamp_ns: 1000 + info.number - 1,
                ..FrameMeta::new(640, 480, PixelFormat::Rgb24)
            }
        );
        let original = &frames[(info.number as usize - 1) % frames.len()];
        let db = psnr(original, &buf[..info.len]);
        worst = worst.min(db);
        assert!(db >= 35.0, "frame {}: {db:.1} dB", info.number);
    }
    source.stop();
    eprintln!("JPEG quality 90, 640x480 testsrc: worst PSNR {worst:.1} dB over 20 frames");
}
