//! The trust boundary, tried the way a hostile or buggy peer would: every
//! test here failed (crashed, hung or was fooled) on the layout before the
//! channel and its lease table were split. Real processes throughout; the
//! scribble and truncation attacks write through the object's file on
//! Linux (another process with write access), the read-only write runs on
//! both OSes.

mod common;

use std::time::{Duration, Instant};

use common::{assert_crashed_on_access, role, say, stdin_closed_flag, unique, Proc};
use shmcast::{
    Access, ChannelOptions, ErrorKind, FrameMeta, Publisher, Subscriber, SubscriberOptions,
};

/// Taken by the tests that run `clean` and by those that leave a channel
/// without its publisher for a while (persisted, or with a forged dead
/// owner): `clean` in one test would otherwise remove another's channel
/// between its publisher's drop and its next look (seen in CI: NotFound).
#[cfg(target_os = "linux")]
fn clean_lock() -> std::sync::MutexGuard<'static, ()> {
    static CLEAN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CLEAN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn leasing() -> SubscriberOptions {
    SubscriberOptions::new().access(Access::Leasing)
}

#[test]
fn a_read_only_subscriber_cannot_change_a_byte_of_the_channel() {
    let name = unique("rowrite");
    // On Windows, with a descriptor that grants everyone read and
    // SYNCHRONIZE only: exactly what a read-only subscriber needs.
    let create = shmcast::CreateOptions::new()
        .mode(0o644)
        .sddl("D:(A;;GA;;;OW)(A;;GRGX;;;WD)");
    let options = ChannelOptions::new(4096).create_options(create);
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    publisher.publish(&FrameMeta::raw(), &[0xAB; 4096]).unwrap();
    let mut child = Proc::spawn("write-through-read-only", &[&name]);
    child.expect("read 4096 bytes in place");
    let (_, status) = child.finish();
    assert!(!status.success(), "the write went through");
    assert_crashed_on_access(status);
    let sub = Subscriber::open(&name).unwrap();
    let (_, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!(bytes, vec![0xAB; 4096]);
}

#[test]
fn a_read_only_subscriber_waits_and_reads_without_any_write_access() {
    let name = unique("rowait");
    let mut publisher = Publisher::create(&name, 64).unwrap();
    let mut child = Proc::spawn("wait-and-copy", &[&name]);
    child.expect("waiting");
    std::thread::sleep(Duration::from_millis(100));
    publisher.publish(&FrameMeta::raw(), &[7; 64]).unwrap();
    let (lines, status) = child.finish();
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, vec!["frame 1 64 bytes of 7".to_owned()]);
}

/// The wake word (Linux): every reader may write it, to say it sleeps, so
/// a hostile one may write anything there, all the time. A sleeper then
/// may not be woken by a publish, but it looks again within its wait
/// slice: every frame still arrives, and nothing hangs or crashes.
#[cfg(unix)]
#[test]
fn a_scribbled_wake_word_costs_wake_ups_never_frames() {
    use std::os::unix::fs::FileExt;
    let name = unique("wakescribble");
    let mut publisher = Publisher::create(&name, 64).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    let word = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}~wake"))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut garbage = 0x9E37_79B9u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                garbage = garbage.rotate_left(7) ^ 0xA5A5_5A5A;
                // The instance, the wake word and words beside them.
                for at in [0u64, 8, 60, 64, 68, 4092] {
                    let _ = word.write_all_at(&garbage.to_ne_bytes(), at);
                }
            }
        })
    };
    // The sleeper waits on a thread of its own, asleep before each frame.
    // Latest wins: a frame that came while it slept on is skipped.
    let sleeper = std::thread::spawn(move || {
        let (mut seen, mut arrived) = (0, Vec::new());
        while seen < 20 {
            seen = sub.wait_newer(seen, Duration::from_secs(10)).unwrap();
            arrived.push((seen, Instant::now()));
        }
        arrived
    });
    let mut sent = Vec::new();
    for n in 1..=20u64 {
        std::thread::sleep(Duration::from_millis(30));
        sent.push(Instant::now());
        publisher
            .publish(&FrameMeta::raw(), &[n as u8; 64])
            .unwrap();
    }
    let arrived = sleeper.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    scribbler.join().unwrap();
    let worst = arrived
        .iter()
        .map(|(n, a)| a.saturating_duration_since(sent[*n as usize - 1]))
        .max()
        .unwrap();
    // A figure, not a check: bounded by the wait slice (250 ms).
    eprintln!(
        "scribbled wake word: the sleeper saw {} of 20 frames, the slowest after {worst:?}",
        arrived.len()
    );
}

/// A reader truncates the wake word's object under a running publisher and
/// a sleeper: neither dies (the SIGBUS guard), frames still arrive, and a
/// channel that persists keeps its word for the next publisher, which
/// makes it anew when it was broken.
#[cfg(unix)]
#[test]
fn a_truncated_wake_word_kills_nobody_and_the_next_publisher_mends_it() {
    let _clean = clean_lock();
    let name = unique("waketrunc");
    let options =
        ChannelOptions::new(64).create_options(shmcast::CreateOptions::new().persist(true));
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    let path = format!("/dev/shm/shmcast.{name}~wake");
    let sleeper = std::thread::spawn(move || {
        let mut seen = 0;
        while seen < 5 {
            seen = sub.wait_newer(seen, Duration::from_secs(10)).unwrap();
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(50));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    for n in 1..=5u8 {
        std::thread::sleep(Duration::from_millis(20));
        publisher.publish(&FrameMeta::raw(), &[n; 64]).unwrap();
    }
    assert_eq!(sleeper.join().unwrap(), 5);
    drop(publisher);
    assert!(
        std::path::Path::new(&path).exists(),
        "a persisting channel lost its wake word"
    );
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        4096,
        "not made anew"
    );
    publisher.publish(&FrameMeta::raw(), &[6; 64]).unwrap();
    drop(publisher);
    shmcast::remove(&name).unwrap();
    assert!(
        !std::path::Path::new(&path).exists(),
        "remove left the wake word"
    );
}

/// The lease table of channel `name` as a file, for forging entries the
/// way a leasing peer could.
#[cfg(unix)]
fn lease_table(name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}~leases"))
        .unwrap()
}

#[cfg(unix)]
fn entry_word(file: &std::fs::File, entry: u64, word: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, 4096 + entry * 64 + word * 8)
        .unwrap();
    u64::from_ne_bytes(b)
}

#[cfg(unix)]
fn set_entry(file: &std::fs::File, entry: u64, token: u64, lease: u64, beat_ns: u64) {
    use std::os::unix::fs::FileExt;
    let mut b = Vec::new();
    for w in [token, lease, beat_ns] {
        b.extend_from_slice(&w.to_ne_bytes());
    }
    file.write_all_at(&b, 4096 + entry * 64).unwrap();
}

/// The clock lease-table beats use: CLOCK_MONOTONIC.
#[cfg(unix)]
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Forged leases in the name of a live process on every slot: frames are
/// dropped for at most the channel's max lease, the drops are reported with
/// the holder's pid, and then the publisher goes on.
#[cfg(unix)]
#[test]
fn forged_leases_on_every_slot_cost_frames_for_at_most_the_max_lease() {
    let name = unique("forge");
    let options = ChannelOptions::new(64).max_lease(Duration::from_millis(300));
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    publisher.publish(&FrameMeta::raw(), &[1; 64]).unwrap();
    // A live token to forge with: our own, as a leasing subscriber writes it.
    let me = Subscriber::open_with(&name, &leasing()).unwrap();
    let table = lease_table(&name);
    let token = entry_word(&table, 0, 0);
    assert_eq!(token >> 32, u64::from(std::process::id()));
    drop(me);
    for slot in 0..4u64 {
        set_entry(&table, slot + 1, token, slot + 1, now_ns());
    }
    let started = Instant::now();
    let mut dropped = 0;
    loop {
        match publisher.publish(&FrameMeta::raw(), &[2; 64]) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => {
                assert_eq!(e.pid(), Some(std::process::id()), "{e}");
                dropped += 1;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the forged leases stopped the publisher for good"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(dropped > 0, "the forged leases were never honoured");
    assert!(publisher.revoked_leases() > 0);
    let status = shmcast::inspect_channel(&name).unwrap();
    assert_eq!(status.dropped_frames, dropped);
    assert_eq!(
        status.dropped_because_of.map(|h| h.pid),
        Some(std::process::id())
    );
    // And it keeps going while the forgery stays.
    for _ in 0..20 {
        publisher.publish(&FrameMeta::raw(), &[3; 64]).unwrap();
    }
}

/// Entries forged in the name of a live process fill the table only while
/// someone keeps them fresh; stale or impossible beats are cleared.
#[cfg(unix)]
#[test]
fn forged_entries_that_nobody_refreshes_do_not_fill_the_table() {
    let name = unique("forgefull");
    let _publisher = Publisher::create(&name, 64).unwrap();
    let probe = Subscriber::open_with(&name, &leasing()).unwrap();
    let table = lease_table(&name);
    let token = entry_word(&table, 0, 0);
    drop(probe);
    let n = u64::from(shmcast::MAX_SUBSCRIBERS);
    for entry in 0..n {
        set_entry(&table, entry, token, 0, now_ns());
    }
    let err = Subscriber::open_with(&name, &leasing()).unwrap_err();
    assert!(
        err.kind() == ErrorKind::Busy && err.to_string().contains("lease-table entries"),
        "{err}"
    );
    // Read-only subscribers never needed an entry.
    assert!(Subscriber::open(&name).is_ok());
    // Left alone for a while (here: beats 11 s old, or far in the future).
    for entry in 0..n {
        let beat = if entry % 2 == 0 {
            now_ns() - 11_000_000_000
        } else {
            u64::MAX
        };
        set_entry(&table, entry, token, 0, beat);
    }
    assert!(Subscriber::open_with(&name, &leasing()).is_ok());
}

/// A leasing subscriber stopped (SIGSTOP) while it holds three leases on a
/// four-slot channel stops frames only for the max lease.
#[cfg(unix)]
#[test]
fn a_stopped_leaser_holding_every_free_slot_cannot_stop_the_publisher() {
    let name = unique("stopped");
    let options = ChannelOptions::new(64).max_lease(Duration::from_millis(300));
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    let mut child = Proc::spawn("hold-three-leases", &[&name]);
    child.expect("subscribed");
    // Feed it three frames, one per lease.
    for held in 1..=3 {
        publisher.publish(&FrameMeta::raw(), &[held; 64]).unwrap();
        child.expect(&format!("leased {held}"));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let started = Instant::now();
    let mut dropped = 0;
    let mut published = 0;
    while started.elapsed() < Duration::from_secs(2) {
        match publisher.publish(&FrameMeta::raw(), &[9; 64]) {
            Ok(_) => published += 1,
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => {
                assert_eq!(e.pid(), Some(child.id()), "{e}");
                dropped += 1;
            }
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert!(dropped > 0, "the leases were not honoured at first");
    assert!(
        published > 50,
        "only {published} frames in 2 s after the leases timed out"
    );
    assert_eq!(
        shmcast::inspect_channel(&name).unwrap().dropped_frames,
        dropped
    );
}

/// A lease older than the max lease is revoked only when the publisher
/// has no free slot: with slots to spare it is honoured for as long as it
/// is held, even on the slot the publisher would have liked to reuse.
#[test]
fn a_long_lease_is_honoured_while_the_publisher_has_free_slots() {
    let name = unique("longlease");
    let options = ChannelOptions::new(64).max_lease(Duration::from_millis(50));
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    let mut sub = Subscriber::open_with(&name, &leasing()).unwrap();
    publisher.publish(&FrameMeta::raw(), &[1; 64]).unwrap();
    let lease = sub.lease_latest().unwrap().unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(400) {
        publisher.publish(&FrameMeta::raw(), &[2; 64]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(lease.bytes().to_vec(), [1; 64]);
    lease.release().expect("revoked although slots were free");
    assert_eq!(publisher.revoked_leases(), 0);
}

/// The lease table's own owner word is writable by every leasing
/// subscriber, so nothing may trust it: `clean` judges the table by its
/// channel, and a new publisher adopts its table whatever the word says.
#[cfg(unix)]
#[test]
fn a_scribbled_lease_table_owner_word_misleads_nobody() {
    let _clean = clean_lock();
    use std::os::unix::fs::FileExt;
    let name = unique("tableowner");
    let mut writer = Proc::spawn("publish-until-error", &[&name]);
    writer.expect("publishing");
    let mut holder = Proc::spawn("hold-three-leases", &[&name]);
    holder.expect("subscribed");
    let table = lease_table(&name);
    let holder_token = entry_word(&table, 0, 0);
    assert_eq!(holder_token >> 32, u64::from(holder.id()));
    // A dead (zero) owner: clean must leave a live channel's table alone.
    table.write_all_at(&0u64.to_ne_bytes(), 40).unwrap();
    shmcast::clean().unwrap();
    assert!(std::path::Path::new(&format!("/dev/shm/shmcast.{name}~leases")).exists());
    // A live leaser's token: a publisher that takes over still adopts it.
    writer.kill();
    table.write_all_at(&holder_token.to_ne_bytes(), 40).unwrap();
    let publisher = Publisher::create(&name, 64 * 1024).unwrap();
    assert!(publisher.took_over_from().is_some());
    assert!(
        publisher.leasing_available(),
        "a leaser kept the table from its publisher"
    );
    holder.kill();
}

/// Shrinking the channel under a publisher and a reader: both report an
/// error naming the channel, neither dies of SIGBUS.
#[cfg(unix)]
#[test]
fn truncating_a_channel_gives_errors_not_signal_deaths() {
    let name = unique("trunc");
    let mut writer = Proc::spawn("publish-until-error", &[&name]);
    writer.expect("publishing");
    let mut reader = Proc::spawn("read-until-error", &[&name]);
    reader.expect("reading");
    std::thread::sleep(Duration::from_millis(200));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap();
    file.set_len(4096).unwrap();
    let (lines, status) = writer.finish();
    assert!(status.success(), "publisher: {status:?} {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("truncated") && l.contains(&name)),
        "{lines:?}"
    );
    let (lines, status) = reader.finish();
    assert!(status.success(), "reader: {status:?} {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("truncated") && l.contains(&name)),
        "{lines:?}"
    );
}

/// Truncated to nothing while a subscriber waits: the wait ends with
/// `Truncated` (it used to sleep out its timeout), health says
/// `Truncated` (it said live), and the publisher's very next publish is
/// refused (it returned success for a frame that went nowhere).
#[cfg(target_os = "linux")]
#[test]
fn a_truncation_is_reported_by_waits_health_and_the_next_publish() {
    let name = unique("trunc-report");
    let mut publisher = Publisher::create(&name, 64 * 1024).unwrap();
    publisher.publish(&FrameMeta::raw(), &[1; 64]).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    let waiting = std::thread::spawn(move || {
        let got = sub.wait_newer(1, Duration::from_secs(20));
        (
            got.map_err(|e| e.kind()),
            sub.health(Duration::from_secs(5)),
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap();
    file.set_len(0).unwrap();
    let started = Instant::now();
    let (got, health) = waiting.join().unwrap();
    assert_eq!(got, Err(ErrorKind::Truncated));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait slept on"
    );
    assert_eq!(health, shmcast::Health::Truncated);
    let refused = publisher.publish(&FrameMeta::raw(), &[2; 64]).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Truncated, "{refused}");
}

/// A pixel-format code this library does not know, written over every
/// slot (by a scribbler, or by a newer publisher): every kind of read
/// refuses the frame as corrupt and names the code, instead of passing the
/// bytes on as some other format.
#[cfg(unix)]
#[test]
fn an_unknown_pixel_format_is_refused_not_read_as_raw() {
    use std::os::unix::fs::FileExt;
    let name = unique("fmt");
    let mut publisher = Publisher::create(&name, 64).unwrap();
    publisher
        .publish(&FrameMeta::new(8, 8, shmcast::PixelFormat::Gray8), &[7; 64])
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap();
    // Slot headers follow the header page, 64 bytes each; `format` is the
    // u32 at byte 40 of one.
    for slot in 0..shmcast::DEFAULT_SLOTS as u64 {
        let at = shmcast::HEADER_LEN as u64 + slot * 64 + 40;
        file.write_all_at(&99u32.to_le_bytes(), at).unwrap();
    }
    let copier = Subscriber::open(&name).unwrap();
    let mut leaser = Subscriber::open_with(&name, &leasing()).unwrap();
    let corrupt = |e: shmcast::Error| {
        assert!(
            e.kind() == ErrorKind::Corrupt && e.to_string().contains("format code 99"),
            "{e}"
        );
    };
    corrupt(copier.read_latest_vec().unwrap_err());
    corrupt(copier.read_in_place(|_, _| ()).unwrap_err());
    corrupt(leaser.read_latest_vec().unwrap_err());
    corrupt(leaser.lease_latest().map(|_| ()).unwrap_err());
    // The refused lease was given back at once.
    let status = shmcast::inspect_channel(&name).unwrap();
    assert!(status.lease_holders.is_empty(), "{status:?}");
    // The next publish clears it all.
    publisher
        .publish(&FrameMeta::new(8, 8, shmcast::PixelFormat::Gray8), &[8; 64])
        .unwrap();
    let lease = leaser.lease_latest().unwrap().unwrap();
    assert_eq!(lease.info().meta.format, shmcast::PixelFormat::Gray8);
}

/// A slot's metadata length scribbled past the channel's metadata area
/// (byte 48 of its header): every read says the frame is corrupt, naming
/// the length; none reads past the area.
#[cfg(unix)]
#[test]
fn a_scribbled_metadata_length_is_corrupt_and_never_read_past() {
    use std::os::unix::fs::FileExt;
    let name = unique("metalen");
    let options = ChannelOptions::new(64).max_metadata(16);
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    publisher
        .publish_with_metadata(&FrameMeta::raw(), &[7; 64], b"ok")
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap();
    let copier = Subscriber::open(&name).unwrap();
    let mut leaser = Subscriber::open_with(&name, &leasing()).unwrap();
    for len in [17u32, 4096, u32::MAX] {
        for slot in 0..shmcast::DEFAULT_SLOTS as u64 {
            let at = shmcast::HEADER_LEN as u64 + slot * 64 + 48;
            file.write_all_at(&len.to_le_bytes(), at).unwrap();
        }
        let corrupt = |e: shmcast::Error| {
            assert!(
                e.kind() == ErrorKind::Corrupt
                    && e.to_string().contains(&format!("metadata length {len}")),
                "{e}"
            );
        };
        let (mut buf, mut metadata) = (vec![0; 64], Vec::new());
        corrupt(
            copier
                .read_latest_with_metadata(&mut buf, &mut metadata)
                .unwrap_err(),
        );
        corrupt(leaser.lease_latest().map(|_| ()).unwrap_err());
    }
    publisher
        .publish_with_metadata(&FrameMeta::raw(), &[8; 64], b"mended")
        .unwrap();
    let lease = leaser.lease_latest().unwrap().unwrap();
    assert_eq!(lease.metadata().to_vec(), b"mended");
}

/// The slot the latest-frame word names, scribbled to what no writer
/// leaves there (marked as being written, or holding another frame): every
/// kind of read says the channel is corrupt and what was impossible, not
/// that a fast publisher overwrote every frame (the Wine attack's finding
/// D: `read --lease` told its user to add slots). The next publish, which
/// moves the latest-frame word, mends it.
#[cfg(unix)]
#[test]
fn a_scribbled_latest_slot_is_corrupt_not_an_overrun() {
    use std::os::unix::fs::FileExt;
    let name = unique("stuck");
    let mut publisher = Publisher::create(&name, 64).unwrap();
    let meta = FrameMeta::new(8, 8, shmcast::PixelFormat::Gray8);
    publisher.publish(&meta, &[7; 64]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap();
    let word = |at: u64| {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, at).unwrap();
        u64::from_ne_bytes(b)
    };
    // The latest-frame word (frame number << 8 | slot + 1) is the u64 at
    // byte 136 of the header page; slot headers follow that page, 64 bytes
    // each, `seq` first, then the frame number.
    let latest = word(136);
    let (number, slot) = (latest >> 8, (latest & 0xFF) - 1);
    let seq_at = shmcast::HEADER_LEN as u64 + slot * 64;
    let seq = word(seq_at);
    let copier = Subscriber::open(&name).unwrap();
    let mut leaser = Subscriber::open_with(&name, &leasing()).unwrap();
    let mut all_corrupt = |what: &str| {
        let said = |e: shmcast::Error| {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
            assert!(e.to_string().contains(what), "{e}");
            assert!(!e.to_string().contains("add slots"), "{e}");
        };
        said(copier.read_latest_vec().unwrap_err());
        said(copier.read_in_place(|_, _| ()).unwrap_err());
        said(leaser.read_latest_vec().unwrap_err());
        said(leaser.lease_latest().map(|_| ()).unwrap_err());
    };
    file.write_all_at(&(seq | 1).to_ne_bytes(), seq_at).unwrap();
    all_corrupt(&format!(
        "names frame {number} in slot {slot}, which stays marked as being written"
    ));
    file.write_all_at(&seq.to_ne_bytes(), seq_at).unwrap();
    file.write_all_at(&999u64.to_ne_bytes(), seq_at + 8)
        .unwrap();
    all_corrupt(&format!(
        "names frame {number} in slot {slot}, which holds frame 999"
    ));
    // A publish moves the latest-frame word to another slot: whole again.
    publisher.publish(&meta, &[8; 64]).unwrap();
    let (info, bytes) = copier.read_latest_vec().unwrap().unwrap();
    assert_eq!((info.number, bytes), (number + 1, vec![8; 64]));
    let lease = leaser.lease_latest().unwrap().unwrap();
    assert_eq!(lease.info().number, number + 1);
}

/// Random bytes over every shared word (the channel's header and slot
/// headers, the lease table) while a publisher and readers of every kind
/// run: errors and dropped frames, never a panic, a hang or a signal death.
/// The channel is writable only by its owner, so this is what a process of
/// the owner's user, or a leasing peer (for the lease table), could do.
#[cfg(unix)]
#[test]
fn scribbling_over_every_shared_word_crashes_and_hangs_nobody() {
    use std::os::unix::fs::FileExt;
    let name = unique("scribble");
    let mut writer = Proc::spawn("publish-until-error", &[&name]);
    writer.expect("publishing");
    let mut readers: Vec<Proc> = ["copy", "inplace", "lease"]
        .iter()
        .map(|mode| {
            let mut p = Proc::spawn("read-while-scribbled", &[&name, mode]);
            p.expect("reading");
            p
        })
        .collect();
    let channel = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmcast.{name}"))
        .unwrap();
    let leases = lease_table(&name);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        let r = next();
        // Channel header words (after the common header, which only matters
        // at open), slot headers, and the lease table's entries.
        let (file, offset) = match r % 3 {
            0 => (&channel, 64 + (next() % 128) / 8 * 8),
            1 => (&channel, 4096 + (next() % (4 * 64)) / 8 * 8),
            _ => (&leases, 4096 + (next() % 4096) / 8 * 8),
        };
        let value = match next() % 4 {
            0 => u64::MAX,
            1 => next() % 8,
            _ => next(),
        };
        let _ = file.write_all_at(&value.to_ne_bytes(), offset);
        writes += 1;
        if writes % 64 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for reader in readers.drain(..) {
        let (lines, status) = reader.stop_by(deadline, "a reader");
        assert!(status.success(), "reader died: {status:?} {lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("done")), "{lines:?}");
    }
    let (lines, status) = writer.stop_by(deadline, "the publisher");
    assert!(status.success(), "publisher died: {status:?} {lines:?}");
    eprintln!("{writes} scribbles; publisher: {lines:?}");
}

/// A creator killed while reserving a large channel has already stamped
/// its identity into the object: the next publisher need not wait.
#[cfg(unix)]
#[test]
fn a_half_made_channel_of_a_dead_creator_is_replaced_at_once() {
    let _clean = clean_lock();
    use std::os::unix::fs::FileExt;
    let name = unique("halfmade");
    let path = format!("/dev/shm/shmcast.{name}");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(1 << 20).unwrap();
    // Magic still zero; the owner word names a process that does not exist.
    let dead = (0x7FFF_FFF1u64 << 32) | 7;
    file.write_all_at(&dead.to_ne_bytes(), 40).unwrap();
    let started = Instant::now();
    let publisher = Publisher::create(&name, 64).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for a dead creator",
        started.elapsed()
    );
    // The new channel is not taken for a half-made one.
    shmcast::clean().unwrap();
    assert!(
        Subscriber::open(&name).is_ok(),
        "clean removed the new channel"
    );
    drop(publisher);
}

/// A channel truncated after its publisher died wedges nothing: `clean`
/// removes it, and the next publisher of the name replaces it (both once
/// refused it as "truncated; remove it").
#[cfg(target_os = "linux")]
#[test]
fn a_dead_publishers_truncated_channel_is_cleaned_and_replaced() {
    let _clean = clean_lock();
    use std::os::unix::fs::FileExt;
    for (round, keep) in [(0, 1000u64), (1, 4096 + 100)].into_iter() {
        let name = unique(&format!("trunc-dead{round}"));
        let path = format!("/dev/shm/shmcast.{name}");
        let options = ChannelOptions::new(64 * 1024)
            .create_options(shmcast::CreateOptions::new().persist(true));
        drop(Publisher::create_with(&name, &options).unwrap());
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Its owner is dead (a PID nobody has), and its tail is cut off.
        let dead = (0x7FFF_FFF1u64 << 32) | 7;
        file.write_all_at(&dead.to_ne_bytes(), 40).unwrap();
        file.set_len(keep).unwrap();
        let refused = Subscriber::open(&name).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Truncated, "{refused}");
        if round == 0 {
            // Another test's clean, running beside this one, may get there
            // first: either way it is gone, and no clean left it.
            let report = shmcast::clean().unwrap();
            let ours = report.removed_truncated.iter().find(|(n, _)| *n == name);
            assert!(
                ours.is_none_or(|(_, pid)| *pid == 0x7FFF_FFF1),
                "{report:?}"
            );
            assert!(!std::path::Path::new(&path).exists(), "{report:?}");
        } else {
            let publisher = Publisher::create(&name, 64).unwrap();
            assert!(Subscriber::open(&name).is_ok());
            drop(publisher);
        }
    }
}

/// A lease table a leasing reader truncated (to nothing, or into its
/// header) is replaced by the next publisher of the channel: it is the
/// publisher's own user's, and leasing works again. It used to stay broken
/// across restarts, and leasing with it, until `clean`.
#[cfg(target_os = "linux")]
#[test]
fn a_truncated_lease_table_is_replaced_by_the_next_publisher() {
    let _clean = clean_lock();
    for keep in [0u64, 100, 5000] {
        let name = unique(&format!("lease-trunc{keep}"));
        let options =
            ChannelOptions::new(64).create_options(shmcast::CreateOptions::new().persist(true));
        drop(Publisher::create_with(&name, &options).unwrap());
        let table = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/shmcast.{name}~leases"))
            .unwrap();
        table.set_len(keep).unwrap();
        let mut publisher = Publisher::create_with(&name, &options).unwrap();
        assert!(publisher.leasing_available(), "truncated to {keep}");
        publisher.publish(&FrameMeta::raw(), &[3; 64]).unwrap();
        let mut sub = Subscriber::open_with(&name, &leasing()).unwrap();
        let lease = sub.lease_latest().unwrap().unwrap();
        assert_eq!(lease.bytes().to_vec(), [3; 64]);
        lease.release().unwrap();
        drop(sub);
        drop(publisher);
        let _ = shmcast::remove(&name);
    }
}

/// A leasing reader that scribbles the lease table's own header denies
/// leasing until the publisher restarts: what it can deny is said (the
/// README), `inspect_channel` (and so `info`) says "corrupt" rather than
/// "not readable", and the next publisher makes the table anew.
#[cfg(target_os = "linux")]
#[test]
fn a_scribbled_lease_table_header_is_called_corrupt_and_a_restart_mends_it() {
    let _clean = clean_lock();
    use std::os::unix::fs::FileExt;
    let name = unique("lease-scribble");
    let options =
        ChannelOptions::new(64).create_options(shmcast::CreateOptions::new().persist(true));
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    publisher.publish(&FrameMeta::raw(), &[1; 64]).unwrap();
    // The entry count, just after the common header and the instance.
    lease_table(&name)
        .write_all_at(&u32::MAX.to_ne_bytes(), 72)
        .unwrap();
    let refused = Subscriber::open_with(&name, &leasing()).unwrap_err();
    assert!(refused.to_string().contains("corrupt"), "{refused}");
    let status = shmcast::inspect_channel(&name).unwrap();
    let said = status.lease_table_error.unwrap_or_default();
    assert!(
        said.contains("corrupt") && said.contains("restarts"),
        "{said}"
    );
    assert!(
        Subscriber::open(&name).is_ok(),
        "read-only readers are unaffected"
    );
    drop(publisher);
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    publisher.publish(&FrameMeta::raw(), &[2; 64]).unwrap();
    let mut sub = Subscriber::open_with(&name, &leasing()).unwrap();
    assert!(sub.lease_latest().unwrap().is_some());
    drop(sub);
    drop(publisher);
    let _ = shmcast::remove(&name);
}

/// Not a test: the entry point of the child processes the tests spawn.
#[test]
fn child_entry_point() {
    let Some((role, args)) = role() else {
        return;
    };
    let name = args[0].as_str();
    let code = match role.as_str() {
        "write-through-read-only" => {
            let sub = Subscriber::open(name).unwrap();
            let (info, ptr) = sub
                .read_in_place(|_, bytes| bytes.as_ptr() as usize)
                .unwrap()
                .unwrap();
            say(format!("read {} bytes in place", info.len));
            // SAFETY: deliberately writes through a read-only mapping; the
            // OS must stop it (SIGSEGV / access violation).
            unsafe { (ptr as *mut u8).write_volatile(0) };
            say("wrote");
            0
        }
        "wait-and-copy" => {
            let mut sub = Subscriber::open(name).unwrap();
            say("waiting");
            let n = sub.wait_newer(0, Duration::from_secs(10)).unwrap();
            let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
            assert_eq!(info.number, n);
            say(format!("frame {n} {} bytes of {}", bytes.len(), bytes[0]));
            0
        }
        "hold-three-leases" => {
            let mut subs: Vec<Subscriber> = (0..3)
                .map(|_| Subscriber::open_with(name, &leasing()).unwrap())
                .collect();
            say("subscribed");
            let mut leases = Vec::new();
            let mut seen = 0;
            for sub in subs.iter_mut() {
                seen = sub.wait_newer(seen, Duration::from_secs(10)).unwrap();
                let lease = sub.lease_latest().unwrap().unwrap();
                say(format!("leased {}", lease.info().number));
                leases.push(lease);
            }
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        "publish-until-error" => {
            let stop = stdin_closed_flag();
            let mut publisher = Some(Publisher::create(name, 64 * 1024).unwrap());
            say("publishing");
            let frame = vec![5u8; 64 * 1024];
            let (mut ok, mut errors, mut restarts) = (0u64, 0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Some(p) = publisher.as_mut() else { break };
                match p.publish(&FrameMeta::raw(), &frame) {
                    Ok(_) => ok += 1,
                    Err(e) if e.kind() == ErrorKind::Truncated => {
                        say(e.to_string());
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::WriterLost => {
                        // A scribbled writer word: start again, as a
                        // service would.
                        publisher = None;
                        restarts += 1;
                        match Publisher::create(name, 64 * 1024) {
                            Ok(p) => publisher = Some(p),
                            Err(e) => say(format!("cannot restart: {e}")),
                        }
                    }
                    Err(_) => errors += 1,
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            say(format!(
                "published {ok}, refused {errors}, restarted {restarts}"
            ));
            0
        }
        "read-until-error" => {
            let sub = Subscriber::open_wait(name, Duration::from_secs(10)).unwrap();
            say("reading");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                match sub.read_latest_vec() {
                    Err(e) if e.kind() == ErrorKind::Truncated => {
                        say(e.to_string());
                        break;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            0
        }
        "read-while-scribbled" => {
            let stop = stdin_closed_flag();
            let options = SubscriberOptions::new()
                .access(common::access_for(&args[1]))
                .wait(Duration::from_secs(10));
            let mut sub = Subscriber::open_with(name, &options).unwrap();
            say("reading");
            let (mut frames, mut errors) = (0u64, 0u64);
            let mut seen = 0;
            let mut buf = vec![0u8; sub.max_frame_len()];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match sub.wait_newer(seen, Duration::from_millis(100)) {
                    Ok(n) => seen = n,
                    Err(_) => {
                        // A scribbled counter may never move again.
                        seen = 0;
                        errors += 1;
                        continue;
                    }
                }
                let got = match args[1].as_str() {
                    "copy" => sub.read_latest(&mut buf).map(|f| f.is_some()),
                    "inplace" => sub
                        .read_in_place(|_, b| b.to_vec().iter().map(|&x| u64::from(x)).sum::<u64>())
                        .map(|f| f.is_some()),
                    _ => match sub.lease_latest() {
                        Ok(Some(lease)) => {
                            let _sum: u64 =
                                lease.bytes().to_vec().iter().map(|&x| u64::from(x)).sum();
                            lease.release().map(|()| true)
                        }
                        Ok(None) => Ok(false),
                        Err(e) => Err(e),
                    },
                };
                match got {
                    Ok(_) => frames += 1,
                    Err(_) => errors += 1,
                }
            }
            say(format!("done: {frames} frames, {errors} errors"));
            0
        }
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}
