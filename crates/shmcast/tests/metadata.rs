//! Per-frame metadata: every way to write it and every way to read it,
//! the limit, a reader of the previous layout, and that a frame's metadata
//! is never paired with another frame's pixels, however fast the publisher
//! overwrites. Runs on Linux and under Wine (the scribble attacks on its
//! words are in attacks.rs).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::unique;
use shmcast::{
    Access, ChannelOptions, ErrorKind, FrameMeta, Next, Publisher, Reader, ReaderOptions,
    Subscriber, SubscriberOptions,
};

fn leasing() -> SubscriberOptions {
    SubscriberOptions::new().access(Access::Leasing)
}

#[test]
fn metadata_comes_with_its_frame_whichever_way_it_is_written_or_read() {
    let name = unique("meta");
    let options = ChannelOptions::new(64).max_metadata(1024);
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    assert_eq!(publisher.max_metadata_len(), 1024);
    let mut leaser = Subscriber::open_with(&name, &leasing()).unwrap();
    let copier = Subscriber::open(&name).unwrap();
    assert_eq!(copier.max_metadata_len(), 1024);

    // By copy.
    publisher
        .publish_with_metadata(&FrameMeta::raw(), &[1; 64], b"exposure=10ms")
        .unwrap();
    let (mut buf, mut metadata) = (vec![0; 64], Vec::new());
    let info = copier
        .read_latest_with_metadata(&mut buf, &mut metadata)
        .unwrap()
        .unwrap();
    assert_eq!((info.number, info.metadata_len), (1, 13));
    assert_eq!(metadata, b"exposure=10ms");

    // By loan, set before the pixels or after; the last set wins.
    let mut loan = publisher.loan(64).unwrap();
    loan.set_metadata(b"first").unwrap();
    loan.fill(2);
    loan.set_metadata(&[7; 1024]).unwrap();
    loan.commit(&FrameMeta::raw());
    let lease = leaser.lease_latest().unwrap().unwrap();
    assert_eq!(lease.info().metadata_len, 1024);
    assert_eq!(lease.metadata().to_vec(), vec![7; 1024]);
    assert_eq!(lease.bytes().to_vec(), vec![2; 64]);
    lease.release().unwrap();

    // In place, without a copy of the frame.
    let (info, (bytes, in_place)) = copier
        .read_in_place_with_metadata(|_, bytes, metadata| (bytes.to_vec(), metadata.to_vec()))
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.metadata_len, bytes, in_place),
        (1024, vec![2; 64], vec![7; 1024])
    );

    // A frame without metadata has none (not the slot's old bytes).
    publisher.publish(&FrameMeta::raw(), &[3; 64]).unwrap();
    copier
        .read_latest_with_metadata(&mut buf, &mut metadata)
        .unwrap();
    assert!(metadata.is_empty());
    let (_, in_place) = copier
        .read_in_place_with_metadata(|_, _, metadata| metadata.len())
        .unwrap()
        .unwrap();
    assert_eq!(in_place, 0);

    // Through a Reader, leasing and copying.
    for access in [Access::Leasing, Access::ReadOnly] {
        let mut reader = Reader::with_options(&name, ReaderOptions::new().access(access)).unwrap();
        let mut got = None;
        for n in 0..50u8 {
            publisher
                .publish_with_metadata(&FrameMeta::raw(), &[n; 64], &[n; 3])
                .unwrap();
            if let Ok(Next::Frame(frame)) = reader.next(Duration::from_millis(200)) {
                let (bytes, metadata) = (frame.bytes().to_vec(), frame.metadata().to_vec());
                frame.release().unwrap();
                got = Some((bytes, metadata));
                break;
            }
        }
        let (bytes, metadata) = got.expect("the reader saw a frame");
        assert_eq!(metadata, vec![bytes[0]; 3], "{access:?}");
    }
}

#[test]
fn metadata_longer_than_the_channel_allows_is_an_error_and_publishes_nothing() {
    let name = unique("meta-long");
    let mut publisher =
        Publisher::create_with(&name, &ChannelOptions::new(64).max_metadata(8)).unwrap();
    let e = publisher
        .publish_with_metadata(&FrameMeta::raw(), &[0; 64], &[0; 9])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(e.to_string().contains("9 bytes of metadata"), "{e}");
    assert_eq!(publisher.last_frame_number(), 0);
    let mut loan = publisher.loan(64).unwrap();
    loan.set_metadata(b"12345678").unwrap();
    assert_eq!(
        loan.set_metadata(&[0; 9]).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    loan.commit(&FrameMeta::raw());
    let sub = Subscriber::open(&name).unwrap();
    let (mut buf, mut metadata) = (vec![0; 64], Vec::new());
    sub.read_latest_with_metadata(&mut buf, &mut metadata)
        .unwrap();
    assert_eq!(metadata, b"12345678", "the refused set changed nothing");
    // A channel without metadata takes none.
    let plain = unique("meta-none");
    let mut publisher = Publisher::create(&plain, 64).unwrap();
    assert_eq!(publisher.max_metadata_len(), 0);
    assert!(publisher
        .publish_with_metadata(&FrameMeta::raw(), &[0; 64], b"x")
        .is_err());
    // Too much metadata for any channel.
    let e = Publisher::create_with(
        unique("meta-huge").as_str(),
        &ChannelOptions::new(64).max_metadata(shmcast::MAX_METADATA_LEN as usize + 1),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn a_frames_metadata_is_never_paired_with_another_frames_pixels() {
    // The publisher overwrites as fast as it can; every read, by copy and
    // by lease, must find metadata that names the frame its pixels are.
    let name = unique("meta-pairs");
    let options = ChannelOptions::new(4096).max_metadata(256).slots(2);
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    publisher
        .publish_with_metadata(&FrameMeta::raw(), &[0; 4096], &[0; 1])
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u8;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let len = 1 + usize::from(n);
                let _ =
                    publisher.publish_with_metadata(&FrameMeta::raw(), &[n; 4096], &vec![n; len]);
            }
        })
    };
    let check = |bytes: &[u8], metadata: &[u8]| {
        let n = bytes[0];
        assert!(bytes.iter().all(|&b| b == n), "torn pixels");
        assert_eq!(
            metadata.len(),
            1 + usize::from(n),
            "metadata of another frame"
        );
        assert!(
            metadata.iter().all(|&b| b == n),
            "metadata of another frame"
        );
    };
    let copier = Subscriber::open(&name).unwrap();
    let mut leaser = Subscriber::open_with(&name, &leasing()).unwrap();
    let (mut buf, mut metadata) = (vec![0; 4096], Vec::new());
    let (mut copies, mut leases) = (0, 0);
    for _ in 0..20_000 {
        if let Ok(Some(_)) = copier.read_latest_with_metadata(&mut buf, &mut metadata) {
            check(&buf, &metadata);
            copies += 1;
        }
        if let Ok(Some(lease)) = leaser.lease_latest() {
            let (bytes, metadata) = (lease.bytes().to_vec(), lease.metadata().to_vec());
            if lease.release().is_ok() {
                check(&bytes, &metadata);
                leases += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(copies > 0 && leases > 0, "{copies} copies, {leases} leases");
}

#[test]
fn a_channel_of_the_previous_layout_is_refused_naming_both_versions() {
    assert_eq!(shmcast::LAYOUT_VERSION, 3);
    // A segment whose header says layout 2 (a build before per-frame
    // metadata made it): its version field, the u32 at byte 8, set so.
    let name = unique("meta-old");
    let region = shmcast::Region::create(&name, 4096).unwrap();
    let header = region.as_ptr().cast_mut().wrapping_sub(shmcast::HEADER_LEN);
    // SAFETY: the header page lies right before the data in the same
    // writable mapping; bytes 8..12 are inside it. Corrupted on purpose.
    unsafe {
        std::ptr::copy_nonoverlapping(2u32.to_ne_bytes().as_ptr(), header.wrapping_add(8), 4)
    };
    let e = Subscriber::open(&name).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible);
    let said = e.to_string();
    assert!(
        said.contains("layout version 2") && said.contains("version 3"),
        "{said}"
    );
}
