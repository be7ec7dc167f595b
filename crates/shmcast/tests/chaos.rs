//! The chaos soak: publishers killed (SIGKILL / TerminateProcess) at random
//! points under verifying readers, leasing readers killed while they hold
//! leases under a publisher that must never wait for them, and random
//! SIGSTOP/SIGCONT of both sides (Linux). Every frame a reader gets is
//! checked byte for byte against its number, and so is its per-frame
//! metadata (by copy and by lease; a frame whose metadata is another
//! frame's counts as torn).
//!
//! The counts come from the environment, so that CI runs a short version
//! of the same code and `scripts/chaos` the long one:
//! `SHMCAST_CHAOS_PUBLISHER_KILLS`, `SHMCAST_CHAOS_READER_KILLS`,
//! `SHMCAST_CHAOS_STOPS`, `SHMCAST_CHAOS_SEED`. Each test prints one
//! `chaos:` line of figures; only torn frames, frames going back, errors
//! and hangs fail it (times are printed, never asserted).

mod common;

use std::time::{Duration, Instant};

use common::{
    access_for, fill, frame_metadata, read_checked, role, say, stdin_closed_flag, unique, Proc,
};
use shmcast::{Access, ErrorKind, FrameMeta, Publisher, Subscriber, SubscriberOptions};

const FRAME_LEN: usize = 64 * 1024;

fn count(var: &str, short: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(short)
}

/// xorshift64*, seeded from `SHMCAST_CHAOS_SEED` or the clock (printed).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = count(
            "SHMCAST_CHAOS_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        ) | 1;
        eprintln!("chaos seed {seed} (SHMCAST_CHAOS_SEED={seed} repeats the choices)");
        Rng(seed)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The chaos publishers' channel: frames of FRAME_LEN bytes, each with
/// its own metadata (`frame_metadata`), which the verifying readers check
/// with its frame.
fn with_metadata() -> shmcast::ChannelOptions {
    shmcast::ChannelOptions::new(FRAME_LEN).max_metadata(common::FRAME_METADATA_MAX)
}

/// Whether `bytes` are frame `number`, whole and of full length.
fn whole(number: u64, bytes: &[u8]) -> bool {
    bytes.len() == FRAME_LEN && common::is_frame(number, bytes)
}

/// How many processes a test kills (`var`, or CI's short count) and in
/// how many of those rounds it also stops and continues one. Stops are
/// Linux's: Windows has no SIGSTOP/SIGCONT pair for a process.
fn kills_and_stops(var: &str) -> (u64, u64) {
    let kills = count(var, if cfg!(windows) { 8 } else { 40 });
    let stops = if cfg!(unix) {
        count("SHMCAST_CHAOS_STOPS", 10)
    } else {
        0
    };
    (kills, stops)
}

/// Whether round `round` of `kills` is one of the `stops` rounds, spread
/// evenly over them.
fn stops_in(round: u64, kills: u64, stops: u64) -> bool {
    round * stops / kills.max(1) != (round + 1) * stops / kills.max(1)
}

/// Stops process `pid`, lets `ms` milliseconds pass, and continues it
/// (Linux; elsewhere only the time passes).
fn pause_for(pid: u32, ms: u64) {
    stop_or_continue(pid, true);
    std::thread::sleep(Duration::from_millis(ms));
    stop_or_continue(pid, false);
}

fn stop_or_continue(pid: u32, stop: bool) {
    #[cfg(unix)]
    {
        use rustix::process::{kill_process, Pid, Signal};
        if let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = kill_process(pid, if stop { Signal::STOP } else { Signal::CONT });
        }
    }
    #[cfg(not(unix))]
    let _ = (pid, stop);
}

/// The figures a verifying reader prints: "checked N torn T back B".
fn verified(lines: &[String]) -> (u64, u64, u64) {
    let line = lines
        .iter()
        .find(|l| l.starts_with("checked"))
        .unwrap_or_else(|| panic!("a reader said no figures: {lines:?}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (f[0], f[1], f[2])
}

#[test]
fn publishers_killed_at_random_points_never_show_a_torn_frame() {
    let (kills, stops) = kills_and_stops("SHMCAST_CHAOS_PUBLISHER_KILLS");
    let mut rng = Rng::new();
    let name = unique("chaos-writers");
    let started = Instant::now();
    // Four verifying readers, every way of reading.
    let readers: Vec<Proc> = ["copy", "lease", "inplace", "lease"]
        .iter()
        .map(|mode| {
            let mut p = Proc::spawn("verify", &[&name, mode]);
            p.expect("started");
            p
        })
        .collect();
    let mut stopped = 0;
    for round in 0..kills {
        let mut writer = Proc::spawn("publish-forever", &[&name]);
        writer.expect("publishing");
        // Now and then, stop the writer or a reader for a moment first.
        if stops_in(round, kills, stops) {
            let pid = if rng.below(2) == 0 {
                writer.id()
            } else {
                readers[rng.below(4) as usize].id()
            };
            pause_for(pid, rng.below(50));
            stopped += 1;
        }
        // Kill at a random point: inside a frame, most likely.
        std::thread::sleep(Duration::from_micros(200 + rng.below(20_000)));
        writer.kill();
    }
    // A last publisher, whose frames every reader must reach.
    let mut publisher = Publisher::create_with(&name, &with_metadata()).unwrap();
    let mut buf = vec![0u8; FRAME_LEN];
    for _ in 0..20 {
        let n = publisher.last_frame_number() + 1;
        fill(n, &mut buf);
        publisher
            .publish_with_metadata(&FrameMeta::raw(), &buf, &frame_metadata(n))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut checked, mut torn, mut back) = (0, 0, 0);
    for reader in readers {
        let (lines, status) = reader.stop_by(deadline, "a verifying reader");
        assert!(status.success(), "{lines:?}");
        let (c, t, b) = verified(&lines);
        checked += c;
        torn += t;
        back += b;
    }
    eprintln!(
        "chaos: {kills} publishers killed, {stopped} processes stopped and continued, \
         {checked} frames checked by 4 readers, {torn} torn, {back} out of order, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((torn, back), (0, 0));
    assert!(checked > kills, "the readers checked only {checked} frames");
}

#[test]
fn leasing_readers_killed_holding_leases_never_block_the_publisher() {
    let (kills, stops) = kills_and_stops("SHMCAST_CHAOS_READER_KILLS");
    let mut rng = Rng::new();
    let name = unique("chaos-leases");
    let started = Instant::now();
    let mut publisher = Proc::spawn("publish-timed", &[&name]);
    publisher.expect("publishing");
    let mut alive: Vec<Proc> = Vec::new();
    let mut stopped = 0;
    for round in 0..kills {
        let mut reader = Proc::spawn("hold-leases", &[&name]);
        reader.expect("leasing");
        alive.push(reader);
        if stops_in(round, kills, stops) {
            // Stopped while it may hold a lease: the publisher revokes it
            // after max_lease rather than wait.
            let r = &alive[rng.below(alive.len() as u64) as usize];
            pause_for(r.id(), rng.below(30));
            stopped += 1;
        }
        std::thread::sleep(Duration::from_micros(500 + rng.below(10_000)));
        // Kill one of the two or three alive, holding a lease or not.
        if alive.len() >= 3 || round + 1 == kills {
            let mut victim = alive.remove(rng.below(alive.len() as u64) as usize);
            victim.kill();
        }
    }
    for mut reader in alive.drain(..) {
        reader.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (lines, status) = publisher.stop_by(deadline, "the timed publisher");
    assert!(status.success(), "{lines:?}");
    let figures = lines
        .iter()
        .find(|l| l.starts_with("published"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    eprintln!(
        "chaos: {kills} leasing readers killed, {stopped} stopped and continued; publisher: {figures}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---- the child side -------------------------------------------------------

/// Reads until stdin closes, checking every frame; prints
/// "checked N torn T back B".
fn verify(name: &str, mode: &str) -> i32 {
    let options = SubscriberOptions::new()
        .access(access_for(mode))
        .wait(Duration::from_secs(30));
    // Started before the first publisher: the open waits for it.
    say("started");
    let mut sub = Subscriber::open_with(name, &options).unwrap();
    let closed = stdin_closed_flag();
    let mut buf = vec![0u8; sub.max_frame_len()];
    let (mut last, mut checked, mut torn, mut back) = (sub.latest_number(), 0u64, 0u64, 0u64);
    while !closed.load(std::sync::atomic::Ordering::SeqCst) {
        if sub.wait_newer(last, Duration::from_millis(50)).is_err() {
            continue;
        }
        let got = match read_checked(&mut sub, mode, &mut buf, whole) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::Overrun => None,
            Err(e) => panic!("{e}"),
        };
        let Some((number, whole)) = got else { continue };
        checked += 1;
        torn += u64::from(!whole);
        back += u64::from(number <= last);
        last = number;
    }
    say(format!("checked {checked} torn {torn} back {back}"));
    0
}

/// Publishes until stdin closes, timing every frame's claim + commit;
/// prints "published N dropped D revoked R longest publish US us".
fn publish_timed(name: &str) -> i32 {
    let mut publisher = Publisher::create(name, FRAME_LEN).unwrap();
    let closed = stdin_closed_flag();
    say("publishing");
    let (mut published, mut dropped, mut longest) = (0u64, 0u64, Duration::ZERO);
    while !closed.load(std::sync::atomic::Ordering::SeqCst) {
        let number = publisher.last_frame_number() + 1;
        let began = Instant::now();
        match publisher.loan(FRAME_LEN) {
            Ok(mut loan) => {
                fill(number, &mut loan);
                loan.commit(&FrameMeta::raw());
                published += 1;
            }
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => dropped += 1,
            Err(e) => panic!("{e}"),
        }
        longest = longest.max(began.elapsed());
        std::thread::sleep(Duration::from_micros(300));
    }
    say(format!(
        "published {published} dropped {dropped} revoked {} longest publish {} us",
        publisher.revoked_leases(),
        longest.as_micros()
    ));
    0
}

/// Leases frames and holds each a little, forever (until killed).
fn hold_leases(name: &str) -> i32 {
    let options = SubscriberOptions::new()
        .access(Access::Leasing)
        .wait(Duration::from_secs(30));
    let mut sub = Subscriber::open_with(name, &options).unwrap();
    say("leasing");
    let mut last = 0;
    let mut spin = 0u64;
    loop {
        if let Ok(n) = sub.wait_newer(last, Duration::from_millis(50)) {
            last = n;
        }
        if let Ok(Some(lease)) = sub.lease_latest() {
            // Hold it across a few frames, touching it as a reader would.
            let at = spin as usize % FRAME_LEN;
            let mut byte = [0u8];
            if let Some(b) = lease.bytes().get(at..=at) {
                b.copy_to(&mut byte);
            }
            spin = spin.wrapping_add(u64::from(byte[0]));
            std::thread::sleep(Duration::from_millis(1 + spin % 4));
            let _ = lease.release();
        }
    }
}

/// Not a test: the entry point of the child processes the tests spawn.
#[test]
fn child_entry_point() {
    let Some((role, args)) = role() else {
        return;
    };
    let name = args[0].as_str();
    let code = match role.as_str() {
        "verify" => verify(name, &args[1]),
        "publish-timed" => publish_timed(name),
        "hold-leases" => hold_leases(name),
        "publish-forever" => {
            let mut publisher = Publisher::create_with(name, &with_metadata()).unwrap();
            say("publishing");
            loop {
                let number = publisher.last_frame_number() + 1;
                let mut loan = publisher.loan(FRAME_LEN).unwrap();
                // Word by word, so that a kill lands inside the payload;
                // the metadata after it, so a kill can land between them.
                fill(number, &mut loan);
                loan.set_metadata(&frame_metadata(number)).unwrap();
                loan.commit(&FrameMeta::raw());
            }
        }
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}
