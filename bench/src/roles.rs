//! The processes a case is made of (everything but iceoryx2, in `ice.rs`).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use serde_json::json;
use shmcast::{
    Access, ErrorKind, FrameMeta, PixelFormat, Publisher, Region, Subscriber, SubscriberOptions,
};

use crate::proc::{say, stop_flag, wait_go};
use crate::util::{cpu_time, fill, now_ns, stamped, touch, wall_ns, Latencies};

fn result(frames: u64, secs: f64, lat: &Latencies, extra: serde_json::Value) {
    let mut v = json!({
        "frames": frames,
        "secs": secs,
        "cpu": cpu_time().as_secs_f64(),
        "lat": lat.0,
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    say(&v.to_string());
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("role argument {i} missing or bad in {args:?}"))
}

pub fn run(role: &str, args: &[String]) {
    match role {
        "shm-writer" => shm_writer(
            &args[0],
            arg(args, 1),
            &args[2],
            arg(args, 3),
            arg(args, 4),
            args.get(5).is_some_and(|a| a == "rgb24"),
        ),
        "shm-reader" => shm_reader(&args[0], &args[1]),
        "camera-serve" => camera_serve(&args[0], &args[1], arg(args, 2)),
        "derive-serve" => derive_serve(&args[0], &args[1], arg(args, 2), &args[3]),
        "sock-writer" => sock_writer(&args[0], arg(args, 1), arg(args, 2), arg(args, 3)),
        "sock-reader" => sock_reader(&args[0], &args[1], arg(args, 2)),
        "pingpong-a" => pingpong_a(&args[0], arg(args, 1)),
        "pingpong-b" => pingpong_b(&args[0]),
        "futex-waiter" => futex_waiter(&args[0], arg(args, 1)),
        "futex-waker" => futex_waker(&args[0], arg(args, 1)),
        "shm-rtt-a" => shm_rtt_a(&args[0], arg(args, 1)),
        "shm-rtt-b" => shm_rtt_b(&args[0]),
        "instr" => crate::instr::run(args),
        other => crate::ice::run(other, args),
    }
}

// ---- shmcast -----------------------------------------------------------------

/// Publishes `size`-byte frames for `secs`: by loan (filled in place), by
/// loan with only the time stamped (`stamp`: the frames' other bytes stay
/// as they were) or by copy (filled in a private buffer, then published).
/// `gap_us` > 0 paces
/// the frames (for wake-up latency, so readers are asleep when one comes).
/// `rgb24`: the frames say they are 1920 pixels wide rgb24 images (so a
/// bridge can encode them) instead of raw bytes.
fn shm_writer(name: &str, size: usize, mode: &str, secs: f64, gap_us: u64, rgb24: bool) {
    let mut publisher = Publisher::create(name, size).expect("create channel");
    let shm = shmcast::inspect(name).map(|i| i.total_len).unwrap_or(0);
    say(&format!("ready {shm}"));
    wait_go();
    let meta = if rgb24 {
        let width = 1920;
        FrameMeta::new(
            width,
            (size / (width as usize * 3)) as u32,
            PixelFormat::Rgb24,
        )
    } else {
        FrameMeta::raw()
    };
    let mut buf = vec![0u8; size];
    let (mut frames, mut dropped) = (0u64, 0u64);
    let started = Instant::now();
    let cpu0 = cpu_time();
    while started.elapsed().as_secs_f64() < secs {
        let n = frames + 1;
        let sent = if mode == "loan" || mode == "stamp" {
            publisher.loan(size).map(|mut loan| {
                // `stamp`: only the time, so that the frames' lines stay
                // where the readers' last copies left them (the readers'
                // own cost, without the writer's).
                if mode == "stamp" {
                    crate::util::stamp(&mut loan);
                } else {
                    fill(&mut loan, n);
                }
                loan.commit(&meta);
            })
        } else {
            fill(&mut buf, n);
            publisher.publish(&meta, &buf).map(drop)
        };
        match sent {
            Ok(()) => frames += 1,
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => dropped += 1,
            Err(e) => panic!("{e}"),
        }
        if gap_us > 0 {
            std::thread::sleep(Duration::from_micros(gap_us));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let run_cpu = (cpu_time() - cpu0).as_secs_f64();
    result(
        frames,
        secs,
        &Latencies::default(),
        json!({"dropped": dropped, "shm": shm, "run_cpu": run_cpu}),
    );
}

/// Reads frames until told to stop: `lease` uses them in place, `copy`
/// copies them out. Either way it blocks in `wait_newer` between frames.
/// Both register as leasing subscribers: large copies go through a lease.
/// `copy-meta` copies too, and takes the latency from the frame's capture
/// timestamp instead of its first bytes (which a JPEG bridge does not
/// keep).
fn shm_reader(name: &str, mode: &str) {
    let options = SubscriberOptions::new()
        .access(Access::Leasing)
        .wait(Duration::from_secs(30));
    let mut sub = Subscriber::open_with(name, &options).expect("subscribe");
    let stop = stop_flag();
    say("ready");
    let mut buf = vec![0u8; sub.max_frame_len()];
    let mut lat = Latencies::default();
    let (mut frames, mut first, mut last_at) = (0u64, None, Instant::now());
    let mut last = sub.latest_number();
    while !stop.load(SeqCst) {
        let Ok(newest) = sub.wait_newer(last, Duration::from_millis(50)) else {
            continue;
        };
        last = newest;
        if mode == "lease-meta" {
            let Some(frame) = sub.lease_latest().expect("lease") else {
                continue;
            };
            lat.push(wall_ns().saturating_sub(frame.info().meta.timestamp_ns));
            frame.release().expect("release");
            frames += 1;
            first.get_or_insert_with(Instant::now);
            last_at = Instant::now();
            continue;
        }
        let sent = if mode == "lease" {
            let Some(frame) = sub.lease_latest().expect("lease") else {
                continue;
            };
            // SAFETY: the frame is read for a few microseconds and released
            // at once, far within the channel's max lease, while the
            // publisher has free slots: nothing writes it meanwhile.
            let bytes = unsafe { frame.bytes().as_slice() };
            touch(bytes);
            stamped(bytes)
        } else {
            let Some(info) = sub.read_latest(&mut buf).expect("copy") else {
                continue;
            };
            if mode == "copy-meta" {
                lat.push(wall_ns().saturating_sub(info.meta.timestamp_ns));
                frames += 1;
                first.get_or_insert_with(Instant::now);
                last_at = Instant::now();
                continue;
            }
            stamped(&buf[..info.len])
        };
        lat.push(now_ns().saturating_sub(sent));
        frames += 1;
        first.get_or_insert_with(Instant::now);
        last_at = Instant::now();
    }
    let secs = first.map_or(0.0, |f| (last_at - f).as_secs_f64());
    result(frames.saturating_sub(1), secs, &lat, json!({}));
}

/// CPU seconds (user + system) process `pid` has used, from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; after the ')' they are 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// The two derived shapes of the derive case: a viewer's and a vision
/// model's, as `shmcast derive` arguments, and the suffix of their names.
pub const DERIVED: [(&str, [&str; 6]); 2] = [
    (
        "view",
        ["--width", "960", "--height", "540", "--format", "bgra"],
    ),
    (
        "model",
        ["--width", "640", "--height", "640", "--format", "rgb24"],
    ),
];

/// A 1080p30 rgb24 source (`shmcast serve`'s pattern) and its two derived
/// shapes ([`DERIVED`]), made either once by a service (`mode` service:
/// `serve --config` with two `from` channels, `NAME-view` and
/// `NAME-model`, which the case's readers read) or by 8 readers that each
/// shape every frame for themselves (`mode` self: 4 of each shape, `derive
/// --discard`). Reports the CPU of the source, of the service (or of all 8
/// self-shapers), and of each shape's service (or of one self-shaper of
/// each shape), over the source frames of the run.
fn derive_serve(name: &str, cli: &str, secs: f64, mode: &str) {
    let spawn = |args: &[&str]| {
        std::process::Command::new(cli)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start shmcast")
    };
    let mut procs = crate::proc::Guard(vec![spawn(&[
        "serve", name, "--width", "1920", "--height", "1080", "--format", "rgb24", "--fps", "30",
    ])]);
    // The service's two derived channels are served by two `serve
    // --config` processes, one channel each, so that each shape's CPU is
    // its process's (the same work as two threads of one service).
    let mut configs = Vec::new();
    if mode == "service" {
        for (suffix, args) in DERIVED {
            let config = std::env::temp_dir().join(format!("{name}-{suffix}.toml"));
            let text = format!(
                "[[channel]]\nname = \"{name}-{suffix}\"\nfrom = \"{name}\"\nwidth = {}\nheight = {}\nformat = \"{}\"\n",
                args[1], args[3], args[5]
            );
            std::fs::write(&config, text).expect("write the derive config");
            procs.0.push(spawn(&[
                "serve",
                "--config",
                config.to_str().expect("a path"),
            ]));
            configs.push(config);
        }
    } else {
        // 4 of each shape, one after the other: pids[1] is a view, pids[2]
        // a model.
        for i in 0..8 {
            let (_, shape) = DERIVED[i % 2];
            let mut args = vec!["derive", name, "--discard"];
            args.extend(shape);
            procs.0.push(spawn(&args));
        }
    }
    let pids: Vec<u32> = procs.0.iter().map(std::process::Child::id).collect();
    let sub = Subscriber::open_wait(name, Duration::from_secs(30)).expect("the source channel");
    let deadline = Instant::now() + Duration::from_secs(30);
    let derived_up = || {
        mode != "service"
            || DERIVED.iter().all(|(suffix, _)| {
                Subscriber::open(format!("{name}-{suffix}").as_str())
                    .is_ok_and(|s| s.latest_number() > 0)
            })
    };
    while sub.latest_number() < 10 || !derived_up() {
        assert!(
            Instant::now() < deadline,
            "no derived frames from the service"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    say("ready");
    wait_go();
    let cpu = |pids: &[u32]| pids.iter().map(|&p| proc_cpu(p)).sum::<f64>();
    let (source0, shapers0, view0, model0, frames0, started) = (
        proc_cpu(pids[0]),
        cpu(&pids[1..]),
        proc_cpu(pids[1]),
        pids.get(2).map_or(0.0, |&p| proc_cpu(p)),
        sub.latest_number(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (source1, shapers1, view1, model1, frames1) = (
        proc_cpu(pids[0]),
        cpu(&pids[1..]),
        proc_cpu(pids[1]),
        pids.get(2).map_or(0.0, |&p| proc_cpu(p)),
        sub.latest_number(),
    );
    let elapsed = started.elapsed().as_secs_f64();
    drop(procs);
    for config in configs {
        let _ = std::fs::remove_file(config);
    }
    result(
        frames1.saturating_sub(frames0),
        elapsed,
        &Latencies::default(),
        json!({"serve_cpu": shapers1 - shapers0, "source_cpu": source1 - source0,
               "view_cpu": view1 - view0, "model_cpu": model1 - model0}),
    );
}

/// ffmpeg's input for the camera case, as `serve --input` takes it.
const CAMERA_INPUT: &str = "-re -f lavfi -i testsrc=size=1920x1080:rate=30";

/// The camera case's service: `CLI serve NAME --source ffmpeg` on ffmpeg's
/// 1080p30 test source, measured for `secs` once told to go: frames
/// published, and the CPU of serve and of its ffmpeg, apart.
fn camera_serve(name: &str, cli: &str, secs: f64) {
    let mut serve = crate::proc::Guard(vec![std::process::Command::new(cli)
        // --input is one argument that serve splits like a shell.
        .args(["serve", name, "--source", "ffmpeg", "--input", CAMERA_INPUT])
        .args(["--width", "1920", "--height", "1080", "--format", "rgb24"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start shmcast serve")]);
    let pid = serve.0[0].id();
    let sub = Subscriber::open_wait(name, Duration::from_secs(30)).expect("the camera channel");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sub.latest_number() < 10 {
        assert!(
            Instant::now() < deadline,
            "no frames from ffmpeg through serve"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ffmpeg: u32 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .expect("serve's ffmpeg");
    say("ready");
    wait_go();
    let (serve0, source0, frames0, started) = (
        proc_cpu(pid),
        proc_cpu(ffmpeg),
        sub.latest_number(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (serve1, source1, frames1) = (proc_cpu(pid), proc_cpu(ffmpeg), sub.latest_number());
    let elapsed = started.elapsed().as_secs_f64();
    // SIGTERM: serve stops ffmpeg and removes its channel.
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
        rustix::process::Signal::TERM,
    );
    let _ = serve.0[0].wait();
    serve.0.clear();
    result(
        frames1.saturating_sub(frames0),
        elapsed,
        &Latencies::default(),
        json!({"serve_cpu": serve1 - serve0, "source_cpu": source1 - source0}),
    );
}

/// 64-byte round trips, busy polling: A publishes a ping, waits for B's pong.
fn shm_rtt_a(name: &str, secs: f64) {
    let mut ping = Publisher::create(format!("{name}.ping"), 64).expect("ping channel");
    say("ready");
    wait_go();
    let pong =
        Subscriber::open_wait(format!("{name}.pong"), Duration::from_secs(30)).expect("pong");
    let meta = FrameMeta::raw();
    let mut msg = [0u8; 64];
    let mut lat = Latencies::default();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed().as_secs_f64() < secs {
        let t0 = now_ns();
        n = ping.publish(&meta, &msg).unwrap();
        while pong.latest_number() < n {
            std::hint::spin_loop();
        }
        lat.push(now_ns() - t0);
    }
    msg[8] = 0xFF;
    ping.publish(&meta, &msg).unwrap();
    result(n, started.elapsed().as_secs_f64(), &lat, json!({}));
}

fn shm_rtt_b(name: &str) {
    let mut pong = Publisher::create(format!("{name}.pong"), 64).expect("pong channel");
    let ping =
        Subscriber::open_wait(format!("{name}.ping"), Duration::from_secs(30)).expect("ping");
    say("ready");
    let meta = FrameMeta::raw();
    let mut msg = [0u8; 64];
    let mut seen = 0;
    loop {
        let latest = ping.latest_number();
        if latest == seen {
            std::hint::spin_loop();
            continue;
        }
        seen = latest;
        ping.read_latest(&mut msg).unwrap();
        if msg[8] == 0xFF {
            break;
        }
        pong.publish(&meta, &msg).unwrap();
    }
    result(0, 0.0, &Latencies::default(), json!({}));
}

// ---- limits ------------------------------------------------------------------

fn word<T>(region: &Region, offset: usize) -> &T {
    assert!(offset + size_of::<T>() <= region.len());
    // SAFETY: in bounds (checked), 8-aligned (the data is page-aligned and
    // offsets are multiples of 8), the region is open read-write and lives
    // as long as the reference; the words are only accessed atomically.
    unsafe { &*region.as_ptr().add(offset).cast::<T>() }
}

/// One cache line bounced between two processes: A counts round trips.
fn pingpong_a(name: &str, secs: f64) {
    let region = Region::create(name, 4096).expect("region");
    say("ready");
    wait_go();
    let x: &AtomicU32 = word(&region, 0);
    let mut lat = Latencies::default();
    let started = Instant::now();
    let mut trips = 0u64;
    let mut v = 0u32;
    while started.elapsed().as_secs_f64() < secs {
        // A batch of round trips per timing, so the clock is not what we measure.
        let t0 = now_ns();
        for _ in 0..1000 {
            v += 1;
            x.store(v, Release);
            v += 1;
            while x.load(Acquire) != v {
                std::hint::spin_loop();
            }
        }
        lat.push((now_ns() - t0) / 1000);
        trips += 1000;
    }
    x.store(u32::MAX, Release);
    result(trips, started.elapsed().as_secs_f64(), &lat, json!({}));
}

fn pingpong_b(name: &str) {
    let region = Region::open(name).expect("region");
    say("ready");
    let x: &AtomicU32 = word(&region, 0);
    loop {
        let v = x.load(Acquire);
        if v == u32::MAX {
            break;
        }
        if v % 2 == 1 {
            x.store(v + 1, Release);
        } else {
            std::hint::spin_loop();
        }
    }
    result(0, 0.0, &Latencies::default(), json!({}));
}

/// A process asleep on a shared futex; measures how long a wake takes.
fn futex_waiter(name: &str, count: u32) {
    let region = Region::create(name, 4096).expect("region");
    let gen: &AtomicU32 = word(&region, 0);
    let sent: &AtomicU64 = word(&region, 8);
    say("ready");
    let mut lat = Latencies::default();
    let started = Instant::now();
    let mut seen = 0;
    while seen < count && started.elapsed() < Duration::from_secs(60) {
        let ts = rustix::thread::futex::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let _ = rustix::thread::futex::wait(
            gen,
            rustix::thread::futex::Flags::empty(),
            seen,
            Some(&ts),
        );
        let g = gen.load(Acquire);
        if g != seen {
            lat.push(now_ns().saturating_sub(sent.load(Acquire)));
            seen = g;
        }
    }
    result(
        u64::from(seen),
        started.elapsed().as_secs_f64(),
        &lat,
        json!({}),
    );
}

fn futex_waker(name: &str, count: u32) {
    let region = Region::open(name).expect("region");
    let gen: &AtomicU32 = word(&region, 0);
    let sent: &AtomicU64 = word(&region, 8);
    say("ready");
    wait_go();
    for _ in 0..count {
        // Long enough for the waiter to be asleep again.
        std::thread::sleep(Duration::from_micros(1000));
        sent.store(now_ns(), Release);
        gen.fetch_add(1, Release);
        let _ = rustix::thread::futex::wake(gen, rustix::thread::futex::Flags::empty(), 1);
    }
    result(u64::from(count), 0.0, &Latencies::default(), json!({}));
}

// ---- sockets -----------------------------------------------------------------

enum Stream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Sends every frame to every reader over its own stream (`unix` or `tcp`).
fn sock_writer(kind: &str, size: usize, readers: usize, secs: f64) {
    let path = std::env::temp_dir().join(format!("shmcast-bench-{}.sock", std::process::id()));
    let (unix, tcp, addr) = if kind == "unix" {
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind unix socket");
        (Some(l), None, path.display().to_string())
    } else {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = l.local_addr().unwrap().to_string();
        (None, Some(l), addr)
    };
    say(&format!("ready {addr}"));
    wait_go();
    let mut streams: Vec<Stream> = (0..readers)
        .map(|_| match (&unix, &tcp) {
            (Some(l), _) => Stream::Unix(l.accept().unwrap().0),
            (_, Some(l)) => {
                let s = l.accept().unwrap().0;
                s.set_nodelay(true).unwrap();
                Stream::Tcp(s)
            }
            _ => unreachable!(),
        })
        .collect();
    let mut buf = vec![0u8; size];
    let started = Instant::now();
    let cpu0 = cpu_time();
    let mut frames = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        frames += 1;
        fill(&mut buf, frames);
        for s in &mut streams {
            s.io().write_all(&buf).expect("send frame");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    drop(streams);
    let _ = std::fs::remove_file(&path);
    let run_cpu = (cpu_time() - cpu0).as_secs_f64();
    result(
        frames,
        secs,
        &Latencies::default(),
        json!({"shm": 0, "run_cpu": run_cpu}),
    );
}

fn sock_reader(kind: &str, addr: &str, size: usize) {
    let mut stream = if kind == "unix" {
        Stream::Unix(std::os::unix::net::UnixStream::connect(addr).expect("connect"))
    } else {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        Stream::Tcp(s)
    };
    say("ready");
    let mut buf = vec![0u8; size];
    let mut lat = Latencies::default();
    let (mut frames, mut first, mut last_at) = (0u64, None, Instant::now());
    while stream.io().read_exact(&mut buf).is_ok() {
        lat.push(now_ns().saturating_sub(stamped(&buf)));
        frames += 1;
        first.get_or_insert_with(Instant::now);
        last_at = Instant::now();
    }
    let secs = first.map_or(0.0, |f| (last_at - f).as_secs_f64());
    result(frames.saturating_sub(1), secs, &lat, json!({}));
}
