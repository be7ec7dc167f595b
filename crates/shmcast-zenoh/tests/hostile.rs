//! A hostile peer on the importer's key: a Zenoh session in this process
//! puts crafted messages, built with the bridge's own encoder
//! (src/wire.rs, whose own tests run here too), and the tests check what
//! the importer publishes and says.

mod common;
#[allow(dead_code)]
#[path = "../src/wire.rs"]
mod wire;

use std::time::{Duration, Instant};

use common::{free_port, import, listening_session, unique, until_or, Bg};
use shmcast::{Health, PixelFormat, Subscriber};
use wire::{Encoding, Header, Kind, State};
use zenoh::Wait;

const SECOND: Duration = Duration::from_secs(1);
/// For tests not of the link: a machine busy with the other tests must not
/// have it taken for cut (a stall, and more lines said).
const LINK_UP: &[&str] = &["--link-timeout", "60"];

/// A Zenoh session listening on loopback that puts on one key.
struct Peer {
    session: zenoh::Session,
    key: String,
    port: u16,
}

impl Peer {
    fn new(key: &str) -> Peer {
        let port = free_port();
        Peer {
            session: listening_session(port),
            key: key.to_owned(),
            port,
        }
    }

    fn put(&self, header: &Header, payload: &[u8]) {
        let mut message = vec![0; header.len() + payload.len()];
        header.write(&mut message, payload.len() as u32, 0);
        message[header.len()..].copy_from_slice(payload);
        self.session.put(&self.key, message).wait().unwrap();
    }

    /// An importer into `dst`, once a frame of `instance` has reached it
    /// (its subscription reaches this session a moment after it starts),
    /// and the number of the last frame put.
    fn importer(&self, dst: &str, instance: u64, extra: &[&str]) -> (Bg, u64) {
        let mut importer = import(&self.key, dst, self.port, extra);
        importer.expect("importing", 10 * SECOND);
        // Numbered in turn: none is refused as a repeat.
        let mut n = 0;
        until_or(10 * SECOND, "the first frame", &mut importer, || {
            n += 1;
            self.put(&gray(n, instance), b"abcdefgh");
            Subscriber::open(dst).ok()
        });
        (importer, n)
    }
}

/// A 4x2 gray8 frame's header (8 bytes of payload).
fn gray(number: u64, instance: u64) -> Header {
    Header {
        kind: Kind::Frame(Encoding::Raw),
        state: State::Live,
        width: 4,
        height: 2,
        stride: 4,
        format: PixelFormat::Gray8,
        number,
        timestamp_ns: 77,
        source_max_frame_len: 8,
        source_instance: instance,
        source_max_metadata: 0,
        reason: String::new(),
    }
}

/// The newest frame number in channel `name`, as a reader opening it now
/// sees it (it follows re-creations).
fn latest(name: &str) -> Option<u64> {
    Subscriber::open(name).ok().map(|s| s.latest_number())
}

/// What `importer` said from line `from` on.
fn said_since(importer: &mut Bg, from: usize) -> Vec<String> {
    importer.drain();
    importer.seen[from..].to_vec()
}

#[test]
fn a_huge_frame_number_does_not_freeze_the_import() {
    let dst = unique("jump-dst");
    let peer = Peer::new(&format!("shmcast-test/{dst}"));
    let (mut importer, mut n) = peer.importer(&dst, 7, LINK_UP);
    for _ in 0..4 {
        n += 1;
        peer.put(&gray(n, 7), b"abcdefgh");
        std::thread::sleep(Duration::from_millis(33));
    }
    let jumped_from = n;
    // One frame of the same source, numbered as high as the channel allows.
    peer.put(&gray(1 << 48, 7), b"zzzzzzzz");
    until_or(5 * SECOND, "the huge number to land", &mut importer, || {
        (latest(&dst) == Some(1 << 48)).then_some(())
    });
    // The real source goes on at 30 frames a second, far below it.
    until_or(
        10 * SECOND,
        "the import to follow the real numbers",
        &mut importer,
        || {
            n += 1;
            peer.put(&gray(n, 7), b"abcdefgh");
            std::thread::sleep(Duration::from_millis(33));
            latest(&dst).filter(|&l| (jumped_from + 1..1 << 48).contains(&l))
        },
    );
    importer.expect("went back", SECOND);
    importer.expect("not after the last", SECOND);
}

/// A `w`x`h` JPEG of noise (which compresses badly, so decodes slowly).
fn noise_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    jpeg
}

#[test]
fn an_importer_busy_decoding_does_not_take_the_link_for_cut() {
    use image::ImageDecoder;
    let dst = unique("busy-dst");
    let peer = Peer::new(&format!("shmcast-test/{dst}"));
    let (w, h) = (1920, 1080);
    let jpeg = noise_jpeg(w, h);
    // The link timeout well below one decode here (this build's speed).
    let started = Instant::now();
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&jpeg)).unwrap();
    let mut out = vec![0; decoder.total_bytes() as usize];
    decoder.read_image(&mut out).unwrap();
    let decode = started.elapsed();
    let timeout = (decode / 3).max(Duration::from_millis(150));
    eprintln!("a decode takes {decode:?}; link timeout {timeout:?}");
    let timeout = format!("{}", timeout.as_secs_f64());
    let (mut importer, mut n) = peer.importer(&dst, 7, &["--link-timeout", &timeout]);
    let first = importer.seen.len();
    let frame = Header {
        kind: Kind::Frame(Encoding::Jpeg),
        width: w,
        height: h,
        stride: w * 3,
        format: PixelFormat::Rgb24,
        source_max_frame_len: u64::from(w * h * 3),
        ..gray(0, 7)
    };
    let status = Header::status(State::Live, "", (w * h * 3) as usize, 7);
    // Frames as fast as the importer takes them, statuses every 20 ms.
    let end = Instant::now() + 3 * decode.max(SECOND);
    let before = n;
    while Instant::now() < end {
        n += 1;
        peer.put(
            &Header {
                number: n,
                ..frame.clone()
            },
            &jpeg,
        );
        for _ in 0..5 {
            peer.put(&status, &[]);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let decoded = latest(&dst).unwrap();
    assert!(decoded > before, "no JPEG frame was published");
    let said = said_since(&mut importer, first);
    assert!(
        !said.iter().any(|l| l.contains("nothing from the exporter")),
        "{said:#?}"
    );
}

#[test]
fn a_flood_of_bad_messages_is_summed_up_not_said_line_by_line() {
    let dst = unique("flood-dst");
    let peer = Peer::new(&format!("shmcast-test/{dst}"));
    let (mut importer, _) = peer.importer(&dst, 7, LINK_UP);
    let first = importer.seen.len();
    // Each with another reason (its length).
    for i in 0..400usize {
        peer.session
            .put(&peer.key, vec![0u8; i % 64])
            .wait()
            .unwrap();
    }
    std::thread::sleep(2 * SECOND);
    let said = said_since(&mut importer, first);
    assert!(said.len() <= 2, "{} lines: {said:#?}", said.len());
    let summary = importer.expect("refused in the last", 10 * SECOND);
    assert!(summary.contains("last: message of"), "{summary}");
}

#[test]
fn statuses_of_another_source_instance_are_ignored() {
    let dst = unique("status-dst");
    let peer = Peer::new(&format!("shmcast-test/{dst}"));
    let (mut importer, n) = peer.importer(&dst, 7, LINK_UP);
    let first = importer.seen.len();
    let sub = Subscriber::open(dst.as_str()).unwrap();
    for _ in 0..20 {
        peer.put(&Header::status(State::Gone, "gone", 0, 8), &[]);
        peer.put(&Header::status(State::Stalled, "fake", 8, 8), &[]);
        std::thread::sleep(Duration::from_millis(50));
    }
    peer.put(&gray(n + 1, 7), b"abcdefgh");
    std::thread::sleep(SECOND / 2);
    assert_eq!(sub.health(10 * SECOND), Health::Live);
    assert_eq!(sub.stall_reason(), None);
    assert_eq!(sub.latest_number(), n + 1, "the channel was re-created");
    let said = said_since(&mut importer, first);
    assert!(
        !said.iter().any(|l| l.contains("closed until")),
        "{said:#?}"
    );
}

#[test]
fn control_characters_from_the_wire_are_escaped() {
    let dst = unique("ctrl-dst");
    let peer = Peer::new(&format!("shmcast-test/{dst}"));
    let (mut importer, _) = peer.importer(&dst, 7, LINK_UP);
    let sub = Subscriber::open(dst.as_str()).unwrap();
    let reason = "\x1b[31mred\x1b[0m line1\nline2\r";
    // Again and again, as an exporter does: a frame still on its way when
    // the first arrives would clear the stall.
    let stall = until_or(5 * SECOND, "the stall", &mut importer, || {
        peer.put(&Header::status(State::Stalled, reason, 8, 7), &[]);
        sub.stall_reason()
    });
    assert!(!stall.chars().any(char::is_control), "{stall:?}");
    assert!(stall.contains("line1\\nline2"), "{stall:?}");
    peer.put(
        &Header::status(State::Gone, "x\nshmcast-zenoh: FORGED \x1b[2J", 0, 7),
        &[],
    );
    let line = importer.expect("closed until", 5 * SECOND);
    assert!(line.contains("x\\nshmcast-zenoh: FORGED"), "{line:?}");
    assert!(!line.chars().any(char::is_control), "{line:?}");
    importer.drain();
    assert!(
        !importer
            .seen
            .iter()
            .any(|l| l.starts_with("shmcast-zenoh: FORGED")),
        "{:#?}",
        importer.seen
    );
}

#[test]
fn new_source_instances_re_create_the_channel_at_most_once_a_second() {
    let dst = unique("restart-dst");
    let peer = Peer::new(&format!("shmcast-test/{dst}"));
    let (mut importer, n) = peer.importer(&dst, 7, LINK_UP);
    let first = importer.seen.len();
    let mut instances = Vec::new();
    let end = Instant::now() + 2 * SECOND;
    let mut i = 0;
    while Instant::now() < end {
        peer.put(&gray(n + 1 + i, 1000 + i), b"abcdefgh");
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(s) = Subscriber::open(dst.as_str()) {
            if instances.last() != Some(&s.instance()) {
                instances.push(s.instance());
            }
        }
    }
    // Once at once, then once a second: 3 in 2 s (4 with a late tick).
    assert!(instances.len() <= 4, "{} channels", instances.len());
    importer.expect("re-created less than a second ago", SECOND);
    let said = said_since(&mut importer, first);
    assert!(said.len() <= 4, "{} lines: {said:#?}", said.len());
}
