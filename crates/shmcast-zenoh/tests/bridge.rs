//! The bridge on loopback, with explicit endpoints: an exporter and an
//! importer as real processes, health carried across, hostile messages
//! skipped. On Linux and under Wine; tests/ffmpeg.rs checks ffmpeg's
//! frames across it.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::{export, free_port, import, listening_session, unique, until, until_or, Source};
use shmcast::{FrameMeta, Health, PixelFormat, Subscriber, SubscriberOptions};

const SECOND: Duration = Duration::from_secs(1);

fn open_health_reader(name: &str) -> Subscriber {
    Subscriber::open_with(name, &SubscriberOptions::new().wait(20 * SECOND)).unwrap()
}

/// Health as the importer's readers see it, with a stall limit of 5 s (so
/// `Stalled` here is what the bridge said, not a reader's own clock).
fn health(sub: &Subscriber) -> (Health, Option<String>) {
    (sub.health(5 * SECOND), sub.stall_reason())
}

#[test]
fn health_crosses_the_bridge_and_recovers() {
    let (src, dst) = (unique("health-src"), unique("health-dst"));
    let key = format!("shmcast-test/{src}");
    let port = free_port();
    let frame = vec![7u8; 64 * 48 * 3];
    let meta = FrameMeta::new(64, 48, PixelFormat::Rgb24);
    let mut source = Source::start(&src, meta, vec![frame.clone()]);
    let mut exporter = export(&src, &key, port, &["--stall-after", "1"]);
    let mut importer = import(&key, &dst, port, &["--link-timeout", "1"]);
    let mut sub = open_health_reader(&dst);
    sub.wait_newer(0, 10 * SECOND).unwrap();
    assert_eq!(health(&sub), (Health::Live, None));
    let (mut bytes, mut metadata) = (vec![0; 64 * 48 * 3], Vec::new());
    let info = sub
        .read_latest_with_metadata(&mut bytes, &mut metadata)
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.meta.width, info.meta.format),
        (64, PixelFormat::Rgb24)
    );
    assert_eq!(bytes, frame, "a frame crossed whole");
    assert_eq!(
        String::from_utf8_lossy(&metadata),
        format!("t={}", info.meta.timestamp_ns),
        "its metadata crossed with it"
    );

    // The source's publisher says why it has nothing.
    source.paused.store(true, Relaxed);
    source
        .publisher
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .report_stall("camera unplugged");
    let reason = until(5 * SECOND, "the stall reason to cross", || {
        sub.stall_reason()
            .filter(|r| r.contains("camera unplugged"))
    });
    assert!(
        matches!(sub.health(5 * SECOND), Health::Stalled { .. }),
        "{reason}"
    );
    // The next frame clears it on both sides.
    source.paused.store(false, Relaxed);
    until(5 * SECOND, "frames to clear the stall", || {
        (health(&sub) == (Health::Live, None)).then_some(())
    });

    // The source stops publishing: stalled, by the exporter's clock.
    source.stop();
    let reason = until(5 * SECOND, "a silent source to show as stalled", || {
        sub.stall_reason().filter(|r| r.contains("no frame for"))
    });
    eprintln!("stalled: {reason}");

    // The source's publisher goes away: the import is gone too.
    drop(source.publisher.lock().unwrap().take());
    until(5 * SECOND, "the import to be gone", || {
        (sub.health(5 * SECOND) == Health::Gone).then_some(())
    });
    importer.expect("closed until frames return", 5 * SECOND);

    // A new publisher of the source: the readers get frames again. On
    // Linux the name names a new channel, whose numbers start again, and
    // the readers follow it; on Windows the section lives on while the
    // exporter holds it, so the new publisher (and the importer) take it
    // over in place and numbers go on.
    let before = sub.latest_number();
    let _source = Source::start(&src, meta, vec![frame.clone()]);
    let seen = sub.wait_newer(before, 15 * SECOND).unwrap();
    if cfg!(unix) {
        assert!(seen < 10, "numbers start again with the new source: {seen}");
        assert!(sub.reopened() > 0);
    } else {
        assert!(seen > before);
    }
    assert_eq!(health(&sub), (Health::Live, None));

    // The exporter is killed: readers are told the link is down.
    exporter.kill();
    let reason = until(5 * SECOND, "a killed exporter to show as a stall", || {
        sub.stall_reason()
            .filter(|r| r.contains("nothing from the exporter"))
    });
    assert!(
        matches!(sub.health(5 * SECOND), Health::Stalled { .. }),
        "{reason}"
    );
    // ...and frames resume when it is back.
    let _exporter = export(&src, &key, port, &[]);
    let before = sub.latest_number();
    sub.wait_newer(before, 20 * SECOND).unwrap();
    until(5 * SECOND, "the stall to clear", || {
        (health(&sub) == (Health::Live, None)).then_some(())
    });
    importer.expect("heard again", SECOND);
}

/// A message as the exporter writes it (see src/wire.rs).
fn message(kind: u8, encoding: u8, number: u64, source_max: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 72];
    m[0..4].copy_from_slice(b"SHMZ");
    m[4] = 2;
    m[5] = kind;
    m[6] = encoding;
    m[8..12].copy_from_slice(&4u32.to_le_bytes());
    m[12..16].copy_from_slice(&2u32.to_le_bytes());
    m[16..20].copy_from_slice(&4u32.to_le_bytes());
    m[20..24].copy_from_slice(&PixelFormat::Gray8.code().to_le_bytes());
    m[24..32].copy_from_slice(&number.to_le_bytes());
    m[32..40].copy_from_slice(&77u64.to_le_bytes());
    m[40..48].copy_from_slice(&source_max.to_le_bytes());
    m[48..52].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

#[test]
fn hostile_messages_are_skipped_and_the_importer_goes_on() {
    use zenoh::Wait;
    let dst = unique("hostile-dst");
    let key = format!("shmcast-test/{dst}");
    let port = free_port();
    let session = listening_session(port);
    let publisher = session.declare_publisher(key.clone()).wait().unwrap();
    let mut importer = import(&key, &dst, port, &["--max-frame-len", "4096"]);
    importer.expect("importing", 10 * SECOND);
    // The importer's subscription reaches this session a moment after it
    // says so; put until the first good frame lands.
    let good = message(1, 0, 5, 8, b"abcdefgh");
    let mut attacks = vec![
        b"garbage".to_vec(),
        vec![0u8; 64],
        message(1, 0, 6, 8, b"abc"),
        message(1, 9, 6, 8, b"abcdefgh"),
        message(1, 1, 6, 8, b"not a jpeg"),
        message(1, 0, 6, 1 << 40, &[1u8; 5000]),
        message(3, 0, 6, 8, b"abcdefgh"),
        // Metadata that claims more than was sent, or than any channel takes.
        {
            let mut m = message(1, 0, 6, 8, b"abcdefgh");
            m[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
            m
        },
    ];
    // Lengths that claim more than was sent.
    let mut overrun = message(1, 0, 6, 8, b"abcdefgh");
    overrun[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
    attacks.push(overrun);
    // Numbers the channel cannot take (0, and past 2^48).
    for number in [0, (1 << 48) + 1, (1 << 56) - 1, u64::MAX] {
        attacks.push(message(1, 0, number, 8, b"abcdefgh"));
    }
    // Metadata the bytes cannot hold: 4x2 rgb24 needs 24 bytes.
    let mut short = message(1, 0, 6, 8, b"abcdefgh");
    short[20..24].copy_from_slice(&PixelFormat::Rgb24.code().to_le_bytes());
    attacks.push(short);
    // A JPEG of a few hundred bytes that says it is 8000x5000: refused
    // from its header, before anything is decoded or created.
    attacks.push(message(1, 1, 6, 8, &huge_jpeg(8000, 5000)));
    // A stalled status asking for a terabyte channel.
    attacks.push(message(2, 0, 0, 1 << 40, b""));
    let sub = until(10 * SECOND, "the first good frame", || {
        publisher.put(good.clone()).wait().unwrap();
        Subscriber::open(dst.as_str()).ok()
    });
    for attack in &attacks {
        publisher.put(attack.clone()).wait().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let next = message(1, 0, 9, 8, b"ijklmnop");
    let frame = until_or(
        10 * SECOND,
        "a good frame after the attacks",
        &mut importer,
        || {
            publisher.put(next.clone()).wait().unwrap();
            sub.read_latest_vec()
                .unwrap()
                .filter(|(info, _)| info.number == 9)
        },
    );
    assert_eq!(frame.1, b"ijklmnop");
    assert_eq!(frame.0.meta.timestamp_ns, 77);
    assert_eq!(frame.0.meta.format, PixelFormat::Gray8);
    // Said once, then summed up (each reason: src/check.rs's tests).
    importer.expect("skipping a message", SECOND);
    let summary = importer.expect("refused in the last", 12 * SECOND);
    let count: usize = summary
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(count + 1 >= attacks.len(), "{summary}");
    assert!(
        importer.child.try_wait().unwrap().is_none(),
        "the importer exited"
    );
    // The channel was never grown past the limit.
    assert!(sub.max_frame_len() <= 4096);
}

/// A small JPEG whose frame header says `w`x`h`.
fn huge_jpeg(w: u16, h: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode(&[128; 8 * 8 * 3], 8, 8, image::ExtendedColorType::Rgb8)
        .unwrap();
    // SOF0 (FF C0): length, precision, then height and width.
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

#[test]
fn a_frame_the_exporter_cannot_send_is_a_stall_with_its_reason_said_once() {
    let (src, dst) = (unique("nojpeg-src"), unique("nojpeg-dst"));
    let key = format!("shmcast-test/{src}");
    let port = free_port();
    // Raw bytes cannot be made a JPEG.
    let _source = Source::start(&src, FrameMeta::raw(), vec![vec![1; 1000]]);
    let mut exporter = export(&src, &key, port, &["--encode", "jpeg"]);
    let _importer = import(&key, &dst, port, &[]);
    let sub = open_health_reader(&dst);
    let reason = until(10 * SECOND, "the exporter's reason to cross", || {
        sub.stall_reason().filter(|r| r.contains("JPEG"))
    });
    assert!(
        matches!(sub.health(5 * SECOND), Health::Stalled { .. }),
        "{reason}"
    );
    // Said once, not once per frame (30 a second) or per spin.
    exporter.expect("cannot be sent as JPEG", SECOND);
    std::thread::sleep(SECOND);
    exporter.drain();
    let said = exporter.seen.iter().filter(|l| l.contains("JPEG")).count();
    assert_eq!(said, 1, "{:?}", exporter.seen);
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let run = |args: &[&str]| {
        let out = common::bridge().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(run(&["export", "cam", "--key", "a/*"]).contains("wildcards"));
    assert!(run(&["export", "cam", "--key", "a//b"]).contains("a//b"));
    assert!(run(&["export", "cam", "--key", "k", "--quality", "0"]).contains("quality"));
    assert!(run(&["import", "k", "cam", "--link-timeout", "0"]).contains("--link-timeout"));
    assert!(run(&["import", "k", "cam", "--mode", "999"]).contains("not an octal mode"));
    let zero = run(&["import", "k", "cam", "--max-frame-len", "0"]);
    assert!(
        zero.contains("--max-frame-len") && zero.contains("at least 1 byte"),
        "{zero}"
    );
    let unit = run(&["import", "k", "cam", "--max-frame-len", "64X"]);
    assert!(unit.contains("unknown size unit"), "{unit}");
    assert!(run(&["import", "k", "bad/name", "--connect", "tcp/127.0.0.1:1"]).contains("bad/name"));
    let missing = run(&[
        "export",
        "cam",
        "--key",
        "k",
        "--config",
        "/nonexistent.json5",
    ]);
    assert!(missing.contains("/nonexistent.json5"), "{missing}");
}
