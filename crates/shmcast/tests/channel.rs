//! Frame channels between real processes, on Linux and (built for
//! x86_64-pc-windows-gnu) under Wine: the same file runs on both.
//!
//! Every frame's bytes are derived from its frame number, so any reader can
//! check any frame it gets, whole: a torn frame (bytes of two frames) or a
//! frame whose bytes do not match its number fails the test.

mod common;

use std::time::{Duration, Instant};

use common::{
    access_for, fill, is_frame, read_checked, role, say, stdin_closed_flag, unique, Proc,
};
use shmcast::{
    Access, ChannelOptions, ErrorKind, FrameMeta, Health, PixelFormat, Publisher, Subscriber,
    SubscriberOptions,
};

fn open_leasing(name: &str) -> Result<Subscriber, shmcast::Error> {
    Subscriber::open_with(name, &SubscriberOptions::new().access(Access::Leasing))
}

const FRAME_LEN: usize = 64 * 1024;

fn meta() -> FrameMeta {
    FrameMeta::raw()
}

/// Publishes frames (at most one per `gap`) until every child has ended;
/// gives up after `limit`. Returns the children's messages.
fn publish_until_done(
    publisher: &mut Publisher,
    children: Vec<Proc>,
    gap: Duration,
    limit: Duration,
) -> Vec<Vec<String>> {
    let started = Instant::now();
    let mut children: Vec<Option<Proc>> = children.into_iter().map(Some).collect();
    let mut results = vec![Vec::new(); children.len()];
    let mut buf = vec![0u8; FRAME_LEN];
    while children.iter().any(Option::is_some) {
        assert!(
            started.elapsed() < limit,
            "children still reading after {limit:?}"
        );
        let number = publisher.last_frame_number() + 1;
        fill(number, &mut buf);
        assert_eq!(publisher.publish(&meta(), &buf).unwrap(), number);
        std::thread::sleep(gap);
        for (i, slot) in children.iter_mut().enumerate() {
            if slot
                .as_mut()
                .is_some_and(|p| p.child.try_wait().unwrap().is_some())
            {
                let (lines, status) = slot.take().unwrap().finish();
                assert!(status.success(), "child {i}: {lines:?} {status:?}");
                results[i] = lines;
            }
        }
    }
    results
}

fn assert_read_ok(lines: &[String], count: u64) {
    let ok = lines
        .iter()
        .find(|l| l.starts_with("ok"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let parts: Vec<u64> = ok
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(parts[2], count, "{ok}");
}

#[test]
fn frames_reach_readers_started_before_and_after_the_publisher_in_order_and_whole() {
    let name = unique("order");
    let mut early = Proc::spawn("subscribe", &[&name, "40", "copy"]);
    early.expect("started");
    let mut publisher = Publisher::create(&name, FRAME_LEN).unwrap();
    let mut late = Proc::spawn("subscribe", &[&name, "40", "lease"]);
    late.expect("started");
    let results = publish_until_done(
        &mut publisher,
        vec![early, late],
        Duration::from_millis(2),
        Duration::from_secs(60),
    );
    for lines in results {
        assert_read_ok(&lines, 40);
    }
}

#[test]
fn eight_reader_processes_at_once() {
    let name = unique("eight");
    let mut publisher = Publisher::create(&name, FRAME_LEN).unwrap();
    let readers: Vec<Proc> = (0..8)
        .map(|i| {
            let mode = if i % 2 == 0 { "copy" } else { "lease" };
            let mut p = Proc::spawn("subscribe", &[&name, "25", mode]);
            p.expect("started");
            p
        })
        .collect();
    let results = publish_until_done(
        &mut publisher,
        readers,
        Duration::from_millis(2),
        Duration::from_secs(90),
    );
    for lines in results {
        assert_read_ok(&lines, 25);
    }
}

#[test]
fn a_reader_killed_holding_a_lease_never_stops_the_writer_and_is_reclaimed() {
    let name = unique("lease");
    // Two slots: with one lease held, every other frame has nowhere to go.
    let mut publisher =
        Publisher::create_with(&name, &ChannelOptions::new(FRAME_LEN).slots(2)).unwrap();
    let mut buf = vec![0u8; FRAME_LEN];
    fill(1, &mut buf);
    publisher.publish(&meta(), &buf).unwrap();
    let mut leaser = Proc::spawn("hold-lease", &[&name]);
    leaser.expect("leased 1");
    assert_eq!(publisher.subscriber_count(), 1);

    // While the lease is held the writer is refused a slot at once, never
    // made to wait.
    fill(2, &mut buf);
    assert_eq!(publisher.publish(&meta(), &buf).unwrap(), 2);
    let refused = publisher.publish(&meta(), &buf).unwrap_err();
    assert!(
        refused.kind() == ErrorKind::AllSlotsLeased && refused.to_string().contains("of 2"),
        "{refused}"
    );

    leaser.kill();
    // The dead reader's lease is reclaimed by the very next publish.
    fill(3, &mut buf);
    assert_eq!(publisher.publish(&meta(), &buf).unwrap(), 3);
    assert_eq!(publisher.subscriber_count(), 0);
    for n in 4..10 {
        fill(n, &mut buf);
        assert_eq!(publisher.publish(&meta(), &buf).unwrap(), n);
    }
}

/// The lease contract (see the subscriber module's docs): a lease is
/// bounded, so a stopped holder costs the publisher frames for at most the
/// max lease; its bytes are then rewritten, which is why they come as
/// `SharedBytes` and not as a slice. The holder, continued, copies them
/// (always defined) and learns from `release` that they are not its frame.
/// On Windows the holder is not suspended, only idle: the same to the
/// publisher.
#[test]
fn a_stopped_leasers_frame_is_revoked_after_the_max_lease_and_it_is_told() {
    let name = unique("stopped");
    let options = ChannelOptions::new(FRAME_LEN)
        .slots(2)
        .max_lease(Duration::from_millis(200));
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    let mut buf = vec![0u8; FRAME_LEN];
    fill(1, &mut buf);
    publisher.publish(&meta(), &buf).unwrap();
    let mut leaser = Proc::spawn("lease-until-told", &[&name]);
    leaser.expect("leased 1");
    #[cfg(unix)]
    let pid = rustix::process::Pid::from_raw(leaser.id() as i32).unwrap();
    #[cfg(unix)]
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    // Two slots, one leased by a stopped process: frames are dropped until
    // the lease has kept the publisher out for the max lease, then the
    // publisher takes the slot back and goes on.
    let started = Instant::now();
    let mut published = 0;
    while started.elapsed() < Duration::from_secs(1) {
        fill(published + 2, &mut buf);
        match publisher.publish(&meta(), &buf) {
            Ok(_) => published += 1,
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        publisher.revoked_leases() >= 1,
        "the stopped lease was never revoked"
    );
    assert!(
        published > 100,
        "the publisher stayed blocked: {published} frames"
    );
    #[cfg(unix)]
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let (lines, status) = leaser.stop_by(Instant::now() + Duration::from_secs(10), "the leaser");
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, ["changed true", "revoked"]);
}

#[test]
fn with_default_slots_a_held_lease_costs_the_writer_nothing() {
    let name = unique("lease4");
    let mut publisher = Publisher::create(&name, FRAME_LEN).unwrap();
    let buf = vec![7u8; FRAME_LEN];
    publisher.publish(&meta(), &buf).unwrap();
    let mut leaser = Proc::spawn("hold-lease", &[&name]);
    leaser.expect("leased");
    for _ in 0..100 {
        publisher.publish(&meta(), &buf).unwrap();
    }
    leaser.kill();
}

#[test]
fn a_writer_killed_mid_publish_never_shows_a_torn_frame_and_is_taken_over() {
    let name = unique("chaos");
    let rounds = if cfg!(windows) { 6 } else { 25 };
    let mut readers: Vec<Proc> = ["copy", "lease", "inplace"]
        .iter()
        .map(|mode| {
            let mut p = Proc::spawn("subscribe-until-stdin-closes", &[&name, mode]);
            p.expect("started");
            p
        })
        .collect();
    let mut last_pid = 0;
    for round in 0..rounds {
        let mut writer = Proc::spawn("publish-forever", &[&name]);
        writer.expect("publishing");
        if round == 0 {
            // A second publisher on a live channel is refused, by name.
            match Publisher::create(&name, FRAME_LEN) {
                Err(e) if e.kind() == ErrorKind::WriterAlive => {
                    assert_eq!(e.pid(), Some(writer.id()))
                }
                other => panic!("expected WriterAlive, got {other:?}"),
            }
            // ...and the refusal left the live channel as it was.
            let mut sub =
                Subscriber::open(&name).expect("the channel survives a refused publisher");
            let seen = sub.latest_number();
            sub.wait_newer(seen, Duration::from_secs(10))
                .expect("the writer goes on");
            assert_eq!(sub.publisher_pid(), Some(writer.id()));
        }
        // Kill at a varying point: somewhere inside a frame, most likely.
        std::thread::sleep(Duration::from_micros(500 + (round as u64 * 7919) % 20_000));
        last_pid = writer.id();
        writer.kill();
    }
    let mut publisher = Publisher::create(&name, FRAME_LEN).unwrap();
    assert_eq!(publisher.took_over_from(), Some(last_pid));
    // The channel's creator is long dead, but it has a live owner again:
    // `clean` must leave it alone.
    shmcast::clean().unwrap();
    assert!(
        Subscriber::open(&name).is_ok(),
        "clean removed a live channel"
    );
    let before = publisher.last_frame_number();
    assert!(before > 0, "the killed writers published nothing");
    let mut buf = vec![0u8; FRAME_LEN];
    for i in 1..=20 {
        fill(before + i, &mut buf);
        assert_eq!(
            publisher.publish(&meta(), &buf).unwrap(),
            before + i,
            "frame numbers go on"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    for mut reader in readers.drain(..) {
        reader.close_stdin();
        let (lines, status) = reader.finish();
        assert!(status.success(), "{lines:?}");
        let ok = lines
            .iter()
            .find(|l| l.starts_with("ok"))
            .unwrap_or_else(|| panic!("{lines:?}"));
        let parts: Vec<u64> = ok
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().unwrap())
            .collect();
        // The readers subscribed before the first writer and stayed on the
        // same channel through every take-over: they saw the last one's frames.
        assert!(
            parts[1] > before && parts[1] <= before + 20,
            "{ok}, final publisher's frames {}..={}",
            before + 1,
            before + 20
        );
    }
}

#[test]
fn subscribers_follow_the_name_when_the_publisher_restarts_cleanly() {
    let name = unique("restart");
    let mut first = Publisher::create(&name, 64).unwrap();
    let mut reader = Subscriber::open(&name).unwrap();
    let mut leaser = open_leasing(&name).unwrap();
    for _ in 0..3 {
        first.publish(&meta(), &[1; 64]).unwrap();
    }
    let mut seen = reader.wait_newer(0, Duration::from_secs(5)).unwrap();
    assert_eq!(seen, 3);
    drop(first); // a clean exit: on Linux the name goes with it
    let mut second = Publisher::create(&name, 64).unwrap();
    second.publish(&meta(), &[2; 64]).unwrap();
    seen = reader
        .wait_newer(seen, Duration::from_secs(5))
        .expect("the reader follows the name to the new publisher");
    let (info, bytes) = reader.read_latest_vec().unwrap().unwrap();
    assert_eq!((info.number, bytes), (seen, vec![2; 64]));
    leaser.wait_newer(3, Duration::from_secs(5)).unwrap();
    let lease = leaser.lease_latest().unwrap().unwrap();
    assert_eq!(lease.bytes().to_vec(), [2; 64]);
    lease.release().unwrap();
    if cfg!(windows) {
        // The section lived on in the subscribers: taken over in place.
        assert_eq!(seen, 4);
    } else {
        assert_eq!((seen, reader.reopened()), (1, 1));
    }
}

#[test]
fn a_second_publisher_is_refused_and_the_channel_lives_on() {
    let name = unique("second");
    let mut first = Publisher::create(&name, 64).unwrap();
    match Publisher::create(&name, 64) {
        Err(e) if e.kind() == ErrorKind::WriterAlive => {
            assert_eq!(e.pid(), Some(std::process::id()))
        }
        other => panic!("expected WriterAlive, got {other:?}"),
    }
    let sub = Subscriber::open(&name).expect("still there");
    first.publish(&meta(), &[5; 64]).unwrap();
    let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!((info.number, bytes), (1, vec![5; 64]));
}

#[test]
fn the_subscriber_table_is_bounded_with_a_clear_error_and_frees_on_drop() {
    let name = unique("full");
    let _publisher = Publisher::create(&name, 64).unwrap();
    let subs: Vec<Subscriber> = (0..shmcast::MAX_SUBSCRIBERS)
        .map(|_| open_leasing(&name).unwrap())
        .collect();
    let err = open_leasing(&name).unwrap_err();
    assert!(
        err.kind() == ErrorKind::Busy && err.to_string().contains("all 64"),
        "{err}"
    );
    assert!(err.to_string().contains(&name), "{err}");
    // Read-only subscribers need no entry: any number of them.
    let readers: Vec<Subscriber> = (0..100).map(|_| Subscriber::open(&name).unwrap()).collect();
    drop(readers);
    drop(subs);
    assert!(open_leasing(&name).is_ok());
}

#[test]
fn a_reader_blocked_in_wait_uses_no_cpu() {
    let name = unique("cpu");
    let mut publisher = Publisher::create(&name, FRAME_LEN).unwrap();
    publisher.publish(&meta(), &[1]).unwrap();
    let (lines, status) = common::run("wait-cpu", &[&name, "2000"]);
    assert!(status.success(), "{lines:?}");
    let cpu_us: u64 = lines[0].strip_prefix("cpu ").unwrap().parse().unwrap();
    // A spinning waiter burns the whole 2 s; a blocked one, next to nothing.
    assert!(cpu_us < 200_000, "{cpu_us} us of CPU in a 2 s wait");
}

#[test]
fn a_waiting_reader_is_woken_by_a_publish() {
    let name = unique("wake");
    let mut publisher = Publisher::create(&name, FRAME_LEN).unwrap();
    let mut waiter = Proc::spawn("wait-one", &[&name, "30000"]);
    waiter.expect("waiting");
    publisher.publish(&meta(), &[9; 16]).unwrap();
    let (lines, status) = waiter.finish();
    assert!(status.success(), "{lines:?}");
    assert_eq!(lines, ["got 1"]);
}

#[test]
fn health_tells_live_stalled_and_gone_apart() {
    let name = unique("health");
    let mut writer = Proc::spawn("publish-forever", &[&name]);
    writer.expect("publishing");
    let sub = Subscriber::open(&name).unwrap();
    assert_eq!(sub.health(Duration::from_secs(5)), Health::Live);
    assert_eq!(sub.publisher_pid(), Some(writer.id()));
    writer.kill();
    assert_eq!(sub.health(Duration::from_secs(5)), Health::Gone);
    // Nobody took over the killed writer's channel: leave no name behind.
    let _ = shmcast::remove(&name);

    let in_process = unique("health2");
    let publisher = Publisher::create(&in_process, 16).unwrap();
    let sub = Subscriber::open(&in_process).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(matches!(
        sub.health(Duration::from_millis(10)),
        Health::Stalled { .. }
    ));
    drop(publisher);
    assert_eq!(sub.health(Duration::from_secs(5)), Health::Gone);
}

#[test]
fn a_stalled_source_is_reported_with_its_reason_until_the_next_frame() {
    let name = unique("stall-reason");
    let mut publisher = Publisher::create(&name, 8).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    publisher.publish(&meta(), &[1; 8]).unwrap();
    let long = Duration::from_secs(3600);
    assert_eq!(sub.health(long), Health::Live);
    assert_eq!(sub.stall_reason(), None);
    publisher.report_stall("ffmpeg exited with status 1: /dev/video0: No such device");
    assert!(matches!(sub.health(long), Health::Stalled { .. }));
    assert_eq!(
        sub.stall_reason().as_deref(),
        Some("ffmpeg exited with status 1: /dev/video0: No such device")
    );
    let status = shmcast::inspect_channel(&name).unwrap();
    assert!(status.stall_reason.unwrap().starts_with("ffmpeg exited"));
    publisher.publish(&meta(), &[2; 8]).unwrap();
    assert_eq!((sub.health(long), sub.stall_reason()), (Health::Live, None));
    publisher.report_stall("again");
    drop(publisher);
    // No publisher: gone, whatever was said.
    assert_eq!((sub.health(long), sub.stall_reason()), (Health::Gone, None));
}

#[test]
fn metadata_and_loans_round_trip() {
    let name = unique("meta");
    let mut publisher = Publisher::create(&name, 640 * 480 * 3).unwrap();
    let mut sub = open_leasing(&name).unwrap();
    assert!(sub.read_latest_vec().unwrap().is_none());
    let mut meta = FrameMeta::new(640, 480, PixelFormat::Rgb24);
    meta.timestamp_ns = 123;
    let mut loan = publisher.loan(640 * 480 * 3).unwrap();
    fill(1, &mut loan);
    assert_eq!(loan.commit(&meta), 1);
    // A dropped loan publishes nothing.
    let mut loan = publisher.loan(10).unwrap();
    loan.fill(0xEE);
    drop(loan);
    let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!((info.number, info.len, info.meta), (1, 640 * 480 * 3, meta));
    assert!(is_frame(1, &bytes));
    let lease = sub.lease_latest().unwrap().unwrap();
    assert!(is_frame(1, &lease.bytes().to_vec()));
    drop(lease);
    let mut small = [0u8; 10];
    assert!(matches!(
        sub.read_latest(&mut small),
        Err(e) if e.kind() == ErrorKind::BufferTooSmall
    ));
    assert!(matches!(
        publisher.publish(&meta, &vec![0; 640 * 480 * 3 + 1]),
        Err(e) if e.kind() == ErrorKind::TooLarge
    ));
}

#[test]
fn a_detached_lease_outlives_its_subscriber_and_holds_the_entry_alone() {
    fn send_and_sync<T: Send + Sync>(_: &T) {}
    let name = unique("detach");
    let mut publisher = Publisher::create(&name, 256).unwrap();
    let mut sub = open_leasing(&name).unwrap();
    publisher.publish(&meta(), &[7; 256]).unwrap();
    let lease = sub.lease_latest().unwrap().unwrap().detach();
    send_and_sync(&lease);
    // One lease per subscriber: a second is refused, a copy still works.
    assert!(matches!(
        sub.lease_latest(),
        Err(e) if e.kind() == ErrorKind::Busy
    ));
    publisher.publish(&meta(), &[8; 256]).unwrap();
    let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!((info.number, bytes), (2, vec![8; 256]));
    // Released on another thread; then the subscriber leases again.
    std::thread::spawn(move || {
        assert_eq!(lease.info().number, 1);
        assert!(lease.bytes().to_vec().iter().all(|&b| b == 7));
        lease.release().unwrap();
    })
    .join()
    .unwrap();
    let again = sub.lease_latest().unwrap().unwrap();
    assert_eq!(again.info().number, 2);
    let kept = again.detach();
    // The lease keeps the memory mapped, and its slot protected, after its
    // subscriber is gone: the publisher writes around it.
    drop(sub);
    for n in 3..10 {
        publisher.publish(&meta(), &[n; 256]).unwrap();
    }
    assert!(kept.bytes().to_vec().iter().all(|&b| b == 8));
    assert!(kept.is_intact());
    assert_eq!(publisher.subscriber_count(), 1);
    kept.release().unwrap();
    // Then the entry is freed.
    assert_eq!(publisher.subscriber_count(), 0);
}

#[test]
fn an_owned_loan_commits_or_abandons_and_gives_the_publisher_back() {
    let name = unique("owned-loan");
    let publisher = Box::new(Publisher::create(&name, 16).unwrap());
    let sub = Subscriber::open(&name).unwrap();
    let mut loan = publisher.into_loan(16).unwrap();
    loan.fill(5);
    let publisher = loan.abandon();
    assert!(sub.read_latest_vec().unwrap().is_none());
    let mut loan = publisher.into_loan(16).unwrap();
    loan.fill(6);
    loan.truncate(8);
    let (publisher, number) = loan.commit_returning(&meta());
    let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!((number, info.number, bytes), (1, 1, vec![6; 8]));
    let Err((publisher, e)) = publisher.into_loan(17) else {
        panic!("a loan larger than the slots");
    };
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(publisher.last_frame_number(), 1);
}

#[test]
fn a_shared_subscriber_waits_unlocked_and_follows_a_restart_past_a_held_lease() {
    use std::sync::{Arc, Mutex};
    let name = unique("shared-wait");
    let mut publisher = Publisher::create(&name, 16).unwrap();
    publisher.publish(&meta(), &[1; 16]).unwrap();
    let shared = Arc::new(Mutex::new(open_leasing(&name).unwrap()));
    let held = shared
        .lock()
        .unwrap()
        .lease_latest()
        .unwrap()
        .unwrap()
        .detach();
    let waiting = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            Subscriber::wait_newer_shared(&shared, 1, Duration::from_secs(20))
        })
    };
    // The lock is free while the other thread waits.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(shared.lock().unwrap().latest_number(), 1);
    // The publisher restarts cleanly: the waiter follows the name although
    // a lease from the old channel is held, and that lease stays whole.
    drop(publisher);
    let mut publisher = Publisher::create(&name, 16).unwrap();
    publisher.publish(&meta(), &[2; 16]).unwrap();
    let seen = waiting.join().unwrap().unwrap();
    if cfg!(windows) {
        // The section lived on in the subscriber: taken over in place.
        assert_eq!(seen, 2);
    } else {
        assert_eq!((seen, shared.lock().unwrap().reopened()), (1, 1));
    }
    assert!(held.bytes().to_vec().iter().all(|&b| b == 1));
    held.release().unwrap();
    let timed_out = Subscriber::wait_newer_shared(&shared, seen, Duration::from_millis(20));
    assert!(matches!(
        timed_out,
        Err(e) if e.kind() == ErrorKind::Timeout && e.frame_number() == Some(seen)
    ));
}

#[test]
fn a_waiter_sleeps_on_another_thread_while_the_subscriber_is_used() {
    let name = unique("waiter");
    let mut publisher = Publisher::create(&name, 16).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    let waiter = sub.waiter();
    let woken = std::thread::spawn(move || waiter.wait(0, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(100));
    assert!(sub.read_latest_vec().unwrap().is_none());
    publisher.publish(&meta(), &[1; 16]).unwrap();
    assert_eq!(woken.join().unwrap(), 1);
    // A timeout returns what is there, no newer frame.
    let waiter = sub.waiter();
    let started = Instant::now();
    assert_eq!(waiter.wait(1, Duration::from_millis(50)), 1);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn copies_always_make_progress_against_a_writer_faster_than_a_copy() {
    let name = unique("starve");
    let len = 4 << 20;
    let mut publisher = Publisher::create(&name, len).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let mut loan = publisher.loan(len).unwrap();
                fill(n, &mut loan);
                loan.commit(&meta());
            }
        });
        let mut buf = vec![0u8; len];
        for _ in 0..100 {
            let info = loop {
                if let Some(info) = sub.read_latest(&mut buf).expect("never an overrun") {
                    break info;
                }
            };
            assert!(
                is_frame(info.number, &buf[..info.len]),
                "torn frame {}",
                info.number
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn a_name_left_unfinished_by_a_dead_creator_does_not_block_a_new_publisher() {
    let name = unique("unfinished");
    let path = format!("/dev/shm/shmcast.{name}");
    // What a creator killed between shm_open and writing the header leaves.
    let file = std::fs::File::create(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    drop(file);
    let mut publisher = Publisher::create(&name, 64).expect("replaces the unfinished object");
    publisher.publish(&meta(), &[1; 8]).unwrap();
    assert_eq!(Subscriber::open(&name).unwrap().latest_number(), 1);
}

// ---- the child side -------------------------------------------------------

#[cfg(unix)]
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // utime + stime, in clock ticks of 1/100 s on Linux.
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

#[cfg(windows)]
fn cpu_time() -> Duration {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut a, mut b, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: no preconditions; a pseudo-handle that needs no closing.
    let me = unsafe { GetCurrentProcess() };
    // SAFETY: the pseudo-handle of the current process and four writable
    // FILETIMEs.
    unsafe { GetProcessTimes(me, &mut a, &mut b, &mut kernel, &mut user) };
    let t = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    Duration::from_nanos((t(kernel) + t(user)) * 100)
}

/// Reads frames until `count` new ones were checked or `stop()`; prints
/// "ok FIRST LAST COUNT" or "torn N" and returns the exit code.
fn subscribe(name: &str, mode: &str, count: u64, stop: impl Fn() -> bool) -> i32 {
    let options = SubscriberOptions::new()
        .access(access_for(mode))
        .wait(Duration::from_secs(30));
    let mut sub = Subscriber::open_with(name, &options).unwrap();
    let mut buf = vec![0u8; sub.max_frame_len()];
    let (mut first, mut last, mut seen) = (0, sub.latest_number(), 0);
    while seen < count && !stop() {
        if sub.wait_newer(last, Duration::from_millis(100)).is_err() {
            continue;
        }
        // Only an in-place read may be overrun here; any other error fails.
        let got = match read_checked(&mut sub, mode, &mut buf, is_frame) {
            Err(e) if e.kind() == ErrorKind::Overrun && mode == "inplace" => None,
            got => got.unwrap(),
        };
        let Some((number, whole)) = got else { continue };
        if !whole {
            say(format!("torn {number}"));
            return 3;
        }
        if number <= last {
            say(format!("went back from {last} to {number}"));
            return 4;
        }
        if first == 0 {
            first = number;
        }
        last = number;
        seen += 1;
    }
    say(format!("ok {first} {last} {seen}"));
    0
}

/// A forked child that drops everything it inherited (publisher,
/// subscriber, a held lease) must leave the parent's channel alone: the
/// name, the writer role and the lease stay the parent's. The fork runs in
/// a child process of its own (`fork-and-drop`), away from the test
/// harness's threads.
#[cfg(unix)]
#[test]
fn a_forked_child_dropping_what_it_inherited_leaves_the_parents_channel_alone() {
    let name = unique("fork");
    let mut child = Proc::spawn("fork-and-drop", &[&name]);
    child.expect("parent intact");
    let (_, status) = child.finish();
    assert!(status.success(), "{status:?}");
}

/// A child forked after its parent used the library is a process of its
/// own: a channel it creates is judged by its life. (The identity cache
/// once outlived the fork, so the channel below was taken over as soon as
/// the parent exited, although the child still published on it.)
#[cfg(unix)]
#[test]
fn a_channel_made_in_a_forked_child_lives_as_long_as_the_child() {
    let (first, second) = (unique("forkid-a"), unique("forkid-b"));
    let mut parent = Proc::spawn("fork-publish", &[&first, &second]);
    let said = parent.expect("child ");
    let child: i32 = said.split(' ').nth(1).unwrap().parse().unwrap();
    parent.expect("parent exits");
    let deadline = Instant::now() + Duration::from_secs(10);
    while parent.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the parent does not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = shmcast::inspect_channel(&second).unwrap();
    let refused = Publisher::create(&second, FRAME_LEN);
    let child_pid = rustix::process::Pid::from_raw(child).unwrap();
    let _ = rustix::process::kill_process(child_pid, rustix::process::Signal::KILL);
    assert_eq!(
        status.publisher.map(|h| (h.pid, h.alive)),
        Some((child as u32, true))
    );
    match refused {
        Err(e) if e.kind() == ErrorKind::WriterAlive => assert_eq!(e.pid(), Some(child as u32)),
        other => panic!("the forked child's live channel was not refused: {other:?}"),
    }
}

/// The `fork-publish` role (see the test above): use the library, fork,
/// and let the child publish on its own channel while the parent exits.
#[cfg(unix)]
fn fork_publish(first: &str, second: &str) -> i32 {
    drop(Publisher::create(first, FRAME_LEN).unwrap());
    // SAFETY: fork in a process whose only other thread is the test
    // harness's idle main thread; the child only uses the library, then
    // `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut publisher = Publisher::create(second, FRAME_LEN).unwrap();
        let mut buf = vec![0u8; FRAME_LEN];
        fill(1, &mut buf);
        publisher.publish(&meta(), &buf).unwrap();
        say(format!("child {} published", std::process::id()));
        // Killed by the test; gone on its own after a minute if not.
        std::thread::sleep(Duration::from_secs(60));
        // SAFETY: ends the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // Exit only once the child has published, so that it says so first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Subscriber::open(second).map_or(0, |s| s.latest_number()) == 0 {
        assert!(
            Instant::now() < deadline,
            "the forked child never published"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    say("parent exits");
    0
}

/// The `fork-and-drop` role (see the test above).
#[cfg(unix)]
fn fork_and_drop(name: &str) -> i32 {
    let options = ChannelOptions::new(FRAME_LEN).slots(2);
    let mut publisher = Publisher::create_with(name, &options).unwrap();
    let mut buf = vec![0u8; FRAME_LEN];
    fill(1, &mut buf);
    publisher.publish(&meta(), &buf).unwrap();
    let mut subscriber = open_leasing(name).unwrap();
    let lease = subscriber.lease_latest().unwrap().unwrap();
    // SAFETY: fork in a process whose only other thread is the test
    // harness's idle main thread; the child drops, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The child may not publish as its parent, nor lease through the
        // parent's entry: two writers would break every reader's seqlock.
        let refused = matches!(publisher.publish(&meta(), &buf),
            Err(e) if e.kind() == ErrorKind::WriterLost);
        drop(lease);
        let no_lease = matches!(subscriber.lease_latest(),
            Err(e) if e.kind() == ErrorKind::NotLeasing);
        drop(subscriber);
        drop(publisher);
        // SAFETY: ends the child at once, without running the parent's
        // exit handlers twice.
        unsafe { libc::_exit(if refused && no_lease { 0 } else { 3 }) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    // Still named, still ours to publish on, the lease still held.
    let status = shmcast::inspect_channel(name).unwrap();
    assert_eq!(status.lease_holders.len(), 1, "{status:?}");
    assert_eq!(
        status.publisher.map(|h| h.pid),
        Some(std::process::id()),
        "{status:?}"
    );
    fill(2, &mut buf);
    assert_eq!(publisher.publish(&meta(), &buf).unwrap(), 2);
    // Two slots, one leased: the next frame has nowhere to go.
    assert!(publisher.publish(&meta(), &buf).is_err());
    drop(lease);
    assert_eq!(publisher.publish(&meta(), &buf).unwrap(), 3);
    say("parent intact");
    0
}

/// Not a test: the entry point of the child processes the tests spawn.
/// Without the role variable it does nothing.
#[test]
fn child_entry_point() {
    let Some((role, args)) = role() else {
        return;
    };
    let name = args[0].as_str();
    let code = match role.as_str() {
        #[cfg(unix)]
        "fork-and-drop" => fork_and_drop(name),
        #[cfg(unix)]
        "fork-publish" => fork_publish(name, &args[1]),
        "subscribe" => {
            say("started");
            subscribe(name, &args[2], args[1].parse().unwrap(), || false)
        }
        "subscribe-until-stdin-closes" => {
            let closed = stdin_closed_flag();
            say("started");
            subscribe(name, &args[1], u64::MAX, || {
                closed.load(std::sync::atomic::Ordering::SeqCst)
            })
        }
        "hold-lease" => {
            let mut sub = open_leasing(name).unwrap();
            let lease = sub.lease_latest().unwrap().expect("a frame to lease");
            say(format!("leased {}", lease.info().number));
            std::thread::sleep(Duration::from_secs(120));
            0
        }
        "lease-until-told" => {
            let closed = stdin_closed_flag();
            let mut sub = open_leasing(name).unwrap();
            let lease = sub.lease_latest().unwrap().expect("a frame to lease");
            let number = lease.info().number;
            say(format!("leased {number}"));
            while !closed.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Copying is defined whatever the publisher did meanwhile.
            let bytes = lease.bytes().to_vec();
            say(format!("changed {}", !is_frame(number, &bytes)));
            match lease.release() {
                Ok(()) => say("intact"),
                Err(e) if e.kind() == ErrorKind::Revoked => say("revoked"),
                Err(e) => say(e.to_string()),
            }
            0
        }
        "publish-forever" => {
            let mut publisher = Publisher::create(name, FRAME_LEN).unwrap();
            say("publishing");
            loop {
                let number = publisher.last_frame_number() + 1;
                let mut loan = publisher.loan(FRAME_LEN).unwrap();
                // Word by word, so that a kill lands inside the payload.
                fill(number, &mut loan);
                loan.commit(&meta());
            }
        }
        "wait-cpu" => {
            let mut sub = Subscriber::open(name).unwrap();
            let latest = sub.latest_number();
            let before = cpu_time();
            let waited = sub.wait_newer(latest, Duration::from_millis(args[1].parse().unwrap()));
            assert!(waited.is_err(), "no frame was published, yet: {waited:?}");
            say(format!("cpu {}", (cpu_time() - before).as_micros()));
            0
        }
        "wait-one" => {
            let mut sub = Subscriber::open(name).unwrap();
            say("waiting");
            match sub.wait_newer(0, Duration::from_millis(args[1].parse().unwrap())) {
                Ok(n) => {
                    say(format!("got {n}"));
                    0
                }
                Err(e) => {
                    say(e.to_string());
                    5
                }
            }
        }
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}

#[test]
fn commit_numbered_keeps_a_sources_numbers_and_never_goes_back() {
    let name = unique("numbered");
    let mut publisher = Publisher::create(&name, 16).unwrap();
    let sub = Subscriber::open(&name).unwrap();
    let mut publish = |number: u64| {
        let mut loan = publisher.loan(8).unwrap();
        loan.copy_from_slice(&number.to_le_bytes());
        loan.commit_numbered(&meta(), number)
    };
    // Gaps are kept, as a bridge that dropped frames keeps them.
    assert_eq!(publish(5), 5);
    assert_eq!(publish(9), 9);
    let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!((info.number, bytes), (9, 9u64.to_le_bytes().to_vec()));
    // Never back, never the same: the next number instead.
    assert_eq!(publish(3), 10);
    assert_eq!(publish(10), 11);
    // Numbers above 2^48 are not taken either, so counting on never
    // overflows the channel's word.
    assert_eq!(publish(u64::MAX), 12);
    assert_eq!(publish((1 << 56) - 1), 13);
    assert_eq!(publish((1 << 48) + 1), 14);
    assert_eq!(publish(0), 15);
    assert_eq!(publish(1 << 48), 1 << 48);
    let (info, bytes) = sub.read_latest_vec().unwrap().unwrap();
    assert_eq!(
        (info.number, bytes),
        (1 << 48, (1u64 << 48).to_le_bytes().to_vec())
    );
    // Plain publishes go on from there.
    assert_eq!(publisher.publish(&meta(), &[0; 8]).unwrap(), (1 << 48) + 1);
    assert_eq!(sub.latest_number(), (1 << 48) + 1);
}
