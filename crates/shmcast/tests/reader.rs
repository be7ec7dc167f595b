//! The Reader in one process (the chaos of real processes is
//! crates/shmcast-cli/tests/readers.rs): what it does when the channel
//! under its name changes what it allows.

use std::time::{Duration, Instant};

use shmcast::{FrameMeta, Health, Next, PixelFormat, Publisher, Reader};

fn unique(tag: &str) -> String {
    format!("reader-{tag}-{}", std::process::id())
}

/// Frames (their numbers) and health changes until `count` frames came,
/// or `limit` passed.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // its test is Linux's
fn read(
    reader: &mut Reader,
    count: usize,
    limit: Duration,
    mut publish: impl FnMut(),
) -> (Vec<u64>, Vec<Health>) {
    let (mut frames, mut health) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + limit;
    while frames.len() < count && Instant::now() < deadline {
        publish();
        match reader.next(Duration::from_millis(20)) {
            Ok(Next::Frame(frame)) => {
                frames.push(frame.info().number);
                frame.release().unwrap();
            }
            Ok(Next::Health(h)) => health.push(h),
            Ok(Next::Idle) | Err(_) => {}
        }
    }
    (frames, health)
}

/// A leasing reader whose publisher restarts without a lease table (which
/// this user then cannot lease from) goes on by copying: it once stayed
/// `Gone` for good, its subscriber unable to reopen the name for leasing.
#[cfg(target_os = "linux")]
#[test]
fn a_reader_follows_a_restart_into_a_channel_it_cannot_lease_from() {
    let name = unique("nolease");
    let meta = FrameMeta::new(4, 1, PixelFormat::Gray8);
    let mut reader = Reader::new(&name).unwrap();
    let mut first = Publisher::create(&name, 4).unwrap();
    let (frames, _) = read(&mut reader, 3, Duration::from_secs(10), || {
        first.publish(&meta, &[1; 4]).unwrap();
    });
    assert_eq!(frames.len(), 3, "no frames from the first publisher");
    assert!(reader.leases(), "the first channel lets its user lease");
    drop(first); // a clean stop: the name is removed

    let mut second = Publisher::create(&name, 4).unwrap();
    std::fs::remove_file(format!("/dev/shm/shmcast.{name}~leases")).unwrap();
    let (frames, health) = read(&mut reader, 3, Duration::from_secs(10), || {
        second.publish(&meta, &[2; 4]).unwrap();
    });
    assert_eq!(
        frames.len(),
        3,
        "the reader stopped at the restart; health went {health:?}"
    );
    assert!(
        !reader.leases(),
        "it copies from a channel without a lease table"
    );

    // A reader started now finds the channel (it once said Missing).
    let mut fresh = Reader::new(&name).unwrap();
    let (frames, health) = read(&mut fresh, 1, Duration::from_secs(10), || {
        second.publish(&meta, &[3; 4]).unwrap();
    });
    assert_eq!(frames.len(), 1, "a new reader found nothing: {health:?}");
    assert_eq!(health.first(), Some(&Health::Live));
}

/// Before a channel exists a reader says so and waits; its health comes
/// before the first frame.
#[test]
fn a_reader_started_first_says_missing_then_live_then_the_frame() {
    let name = unique("first");
    let mut reader = Reader::new(&name).unwrap();
    assert!(matches!(
        reader.next(Duration::from_millis(50)),
        Ok(Next::Idle)
    ));
    assert_eq!(reader.health(), Health::Missing);
    let mut publisher = Publisher::create(&name, 4).unwrap();
    publisher
        .publish(&FrameMeta::new(4, 1, PixelFormat::Gray8), &[7; 4])
        .unwrap();
    assert!(matches!(
        reader.next(Duration::from_secs(5)),
        Ok(Next::Health(Health::Live))
    ));
    match reader.next(Duration::from_secs(5)) {
        Ok(Next::Frame(frame)) => assert_eq!(frame.bytes().to_vec(), vec![7; 4]),
        other => panic!("expected the frame, got {other:?}"),
    };
}
