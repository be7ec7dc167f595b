//! shmcast's benchmark: shmcast against Unix sockets, TCP loopback,
//! iceoryx2 and the memcpy limit, each writer and reader its own process,
//! in interleaved rounds. `scripts/bench` builds and runs it; `--help` says
//! what it takes. Figures are printed, never asserted.

mod bridge;
mod ice;
mod instr;
mod plot;
mod proc;
mod roles;
mod util;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use serde_json::{json, Value};

use proc::Proc;
use util::{median, quantile};

/// 1920 x 1080 rgb24.
const FRAME: usize = 6_220_800;

#[derive(Parser)]
#[command(about = "Benchmarks shmcast against sockets, iceoryx2 and memcpy")]
struct Opts {
    /// Rounds; every case runs once per round and medians are reported
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds each throughput case runs
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// One tiny round of every case (CI's smoke test): checks it all runs
    #[arg(long)]
    smoke: bool,
    /// Skip the growth curves (frame size and reader count sweeps)
    #[arg(long)]
    no_growth: bool,
    /// Write every sample and summary as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the growth curves as an SVG plot here
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run only the cases whose name contains this, or one of several
    /// separated by `|` (for profiling one case, or comparing two)
    #[arg(long)]
    only: Option<String>,
    /// Also count instructions per publish and per wait+lease+release
    /// under valgrind's callgrind, shmcast beside iceoryx2
    #[arg(long)]
    instructions: bool,
    /// Run only a case that fails on purpose mid-run (a writer and a reader
    /// started, then a panic), and check that it left no process and no
    /// shared memory behind: the clean-up's own test
    #[arg(long)]
    fail_on_purpose: bool,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(clap::Subcommand)]
enum Role {
    /// (internal) run as one process of a case
    #[command(hide = true)]
    Role { name: String, args: Vec<String> },
}

/// A case of the main table: its name and how to run it once.
type Case = (&'static str, Box<dyn Fn() -> Sample>);
/// The same for the growth sweeps, whose names are made up.
type GrowthCase = (String, Box<dyn Fn() -> Sample>);
/// Builds a reader's arguments from what the writer said when ready.
type ReaderArgs<'a> = &'a dyn Fn(&str) -> Vec<String>;

/// One run of one case.
#[derive(Clone, Debug, Default)]
struct Sample {
    writer_fps: f64,
    reader_fps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_s: f64,
    shm_bytes: f64,
    dropped: f64,
    /// The writer's CPU time over its run time: its share of one core.
    writer_core: f64,
    /// CPU of every process (writer and readers, from start to end) per
    /// frame the readers got, all readers' frames counted: what one
    /// delivered frame costs the machine.
    cpu_per_frame_ms: f64,
    /// The camera case: CPU per published frame of the service (`serve`)
    /// and of its source (ffmpeg), and of each reader (median), in ms.
    serve_ms: f64,
    source_ms: f64,
    reader_ms: f64,
    /// The derive cases: CPU per 960x540 bgra frame of its maker (the
    /// service's channel, or one self-shaping reader), in ms.
    bgra_ms: f64,
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

fn rate(v: &Value) -> f64 {
    let secs = f(v, "secs");
    if secs > 0.0 {
        f(v, "frames") / secs
    } else {
        0.0
    }
}

/// Latency quantiles (µs) over every reader's samples.
fn latencies(results: &[Value]) -> (f64, f64) {
    let mut all: Vec<f64> = results
        .iter()
        .flat_map(|r| r["lat"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_f64())
        .map(|ns| ns / 1000.0)
        .collect();
    (quantile(&mut all, 0.5), quantile(&mut all, 0.99))
}

/// A writer and `readers` readers, each a process: readers attach after the
/// writer is ready, the writer starts its clock on `go`, readers stop when
/// told after it ends.
fn pubsub(writer: (&str, Vec<String>), reader: (&str, ReaderArgs<'_>), readers: usize) -> Sample {
    let (wres, rres) = run_pubsub(writer, |info| {
        (0..readers).map(|_| (reader.0, reader.1(info))).collect()
    });
    let (p50_us, p99_us) = latencies(&rres);
    Sample {
        writer_fps: rate(&wres),
        reader_fps: median(rres.iter().map(rate).collect()),
        p50_us,
        p99_us,
        cpu_s: f(&wres, "cpu") + rres.iter().map(|r| f(r, "cpu")).sum::<f64>(),
        shm_bytes: f(&wres, "shm"),
        dropped: f(&wres, "dropped"),
        writer_core: f(&wres, "run_cpu") / f(&wres, "secs").max(1e-9),
        cpu_per_frame_ms: cpu_per_frame_ms(&wres, &rres),
        ..Sample::default()
    }
}

/// Runs a writer and the readers `readers` names (each a role and its
/// arguments, given what the writer said when ready): the writer's result
/// and the readers', in order.
fn run_pubsub<'a>(
    writer: (&str, Vec<String>),
    readers: impl FnOnce(&str) -> Vec<(&'a str, Vec<String>)>,
) -> (Value, Vec<Value>) {
    let mut w = Proc::spawn(writer.0, &writer.1);
    let info = w.ready();
    let mut rs: Vec<Proc> = readers(&info)
        .into_iter()
        .map(|(role, args)| {
            let mut r = Proc::spawn(role, &args);
            r.ready();
            r
        })
        .collect();
    w.go();
    let wres = w.result();
    for r in &mut rs {
        r.stop();
    }
    (wres, rs.into_iter().map(Proc::result).collect())
}

/// CPU of the writer and every reader per frame the readers got (all
/// readers' frames counted), in ms.
fn cpu_per_frame_ms(writer: &Value, readers: &[Value]) -> f64 {
    let cpu = f(writer, "cpu") + readers.iter().map(|r| f(r, "cpu")).sum::<f64>();
    let delivered: f64 = readers.iter().map(|r| f(r, "frames")).sum();
    if delivered > 0.0 {
        cpu * 1000.0 / delivered
    } else {
        0.0
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn shmcast_case(
    size: usize,
    writer_mode: &str,
    reader_mode: &'static str,
    readers: usize,
    secs: f64,
) -> Sample {
    shmcast_case_with("shm-reader", size, writer_mode, reader_mode, readers, secs)
}

/// As `shmcast_case`, with the reader `reader_role` (`shm-reader` in Rust,
/// `c-reader` through the C ABI).
fn shmcast_case_with(
    reader_role: &str,
    size: usize,
    writer_mode: &str,
    reader_mode: &'static str,
    readers: usize,
    secs: f64,
) -> Sample {
    let name = unique();
    let reader_args = move |_: &str| vec![name.clone(), s(reader_mode)];
    pubsub(
        (
            "shm-writer",
            vec![
                unique_for(&reader_args),
                s(size),
                s(writer_mode),
                s(secs),
                s(0),
            ],
        ),
        (reader_role, &reader_args),
        readers,
    )
}

/// The channel name a reader-args closure was built with.
fn unique_for(reader_args: ReaderArgs<'_>) -> String {
    reader_args("")[0].clone()
}

fn socket_case(kind: &'static str, size: usize, readers: usize, secs: f64) -> Sample {
    let reader_args = move |addr: &str| vec![s(kind), s(addr), s(size)];
    pubsub(
        ("sock-writer", vec![s(kind), s(size), s(readers), s(secs)]),
        ("sock-reader", &reader_args),
        readers,
    )
}

fn shmcast_wake(count: u32) -> Sample {
    let name = unique();
    let reader_args = {
        let name = name.clone();
        move |_: &str| vec![name.clone(), s("copy")]
    };
    // ~1 ms between frames: the reader is asleep in wait_newer each time.
    let secs = f64::from(count) * 0.0011;
    pubsub(
        ("shm-writer", vec![name, s(64), s("copy"), s(secs), s(1000)]),
        ("shm-reader", &reader_args),
        1,
    )
}

/// Two processes; A starts on `go`; A's result is the sample.
fn pair(a: (&str, Vec<String>), b: (&str, Vec<String>), a_first: bool) -> Sample {
    let (mut pa, mut pb);
    if a_first {
        pa = Proc::spawn(a.0, &a.1);
        pa.ready();
        pb = Proc::spawn(b.0, &b.1);
        pb.ready();
    } else {
        pb = Proc::spawn(b.0, &b.1);
        pb.ready();
        pa = Proc::spawn(a.0, &a.1);
        pa.ready();
    }
    pa.go();
    pb.go();
    let ares = pa.result();
    pb.stop();
    let bres = pb.result();
    let (p50_us, p99_us) = latencies(std::slice::from_ref(&ares));
    Sample {
        writer_fps: rate(&ares),
        reader_fps: rate(&ares),
        p50_us,
        p99_us,
        cpu_s: f(&ares, "cpu") + f(&bres, "cpu"),
        cpu_per_frame_ms: cpu_per_frame_ms(&bres, std::slice::from_ref(&ares)),
        ..Sample::default()
    }
}

fn pingpong(secs: f64) -> Sample {
    let name = unique();
    pair(
        ("pingpong-a", vec![name.clone(), s(secs)]),
        ("pingpong-b", vec![name]),
        true,
    )
}

fn futex_wake(count: u32) -> Sample {
    let name = unique();
    // The waiter measures; it is "a" here only for its result.
    let mut waiter = Proc::spawn("futex-waiter", &[name.clone(), s(count)]);
    waiter.ready();
    let mut waker = Proc::spawn("futex-waker", &[name, s(count)]);
    waker.ready();
    waker.go();
    let wres = waker.result();
    let res = waiter.result();
    let (p50_us, p99_us) = latencies(std::slice::from_ref(&res));
    Sample {
        reader_fps: rate(&res),
        p50_us,
        p99_us,
        cpu_s: f(&res, "cpu") + f(&wres, "cpu"),
        cpu_per_frame_ms: cpu_per_frame_ms(&wres, std::slice::from_ref(&res)),
        ..Sample::default()
    }
}

fn shmcast_rtt(secs: f64) -> Sample {
    let name = unique();
    pair(
        ("shm-rtt-a", vec![name.clone(), s(secs)]),
        ("shm-rtt-b", vec![name]),
        true,
    )
}

/// memcpy of one frame, single thread: from one hot buffer (in cache as far
/// as the cache holds it) or across buffers far larger than any cache.
fn memcpy_case(size: usize, in_cache: bool, secs: f64) -> Sample {
    let sources: Vec<Vec<u8>> = (0..if in_cache { 1 } else { (512 << 20) / size + 1 })
        .map(|i| vec![i as u8; size])
        .collect();
    let mut dst = vec![0u8; size];
    let started = Instant::now();
    let mut frames = 0usize;
    while started.elapsed().as_secs_f64() < secs {
        let src = &sources[frames % sources.len()];
        dst.copy_from_slice(src);
        std::hint::black_box(&mut dst);
        frames += 1;
    }
    let fps = frames as f64 / started.elapsed().as_secs_f64();
    Sample {
        writer_fps: fps,
        reader_fps: fps,
        p50_us: 1e6 / fps,
        p99_us: 1e6 / fps,
        ..Sample::default()
    }
}

/// This machine's memory bandwidth, the bound the 6.2 MB cases run into:
/// `threads` threads each copying (`copy`: read 6.2 MB, write 6.2 MB) or
/// reading (`read`: one byte of every 64-byte line, as the benchmark's
/// readers touch a frame), over `footprint` bytes in all: the channel's
/// (its 4 slots, which a large last-level cache may hold, as this
/// machine's 32 MB L3 does) or 512 MB (main memory, beyond any cache).
/// The sample's `writer_fps` is the traffic of all threads together (bytes
/// read and written per second), in GB/s.
fn bandwidth_case(kind: &'static str, threads: usize, footprint: usize, secs: f64) -> Sample {
    let frames = (footprint / FRAME / threads).max(2);
    let work = move || -> f64 {
        let mut buffers: Vec<Vec<u8>> = (0..frames).map(|i| vec![i as u8; FRAME]).collect();
        let started = Instant::now();
        let mut bytes = 0f64;
        let mut i = 0usize;
        while started.elapsed().as_secs_f64() < secs {
            let (a, b) = (i % frames, (i + 1) % frames);
            if kind == "copy" {
                let (lo, hi) = buffers.split_at_mut(a.max(b));
                let (src, dst) = if a < b {
                    (&lo[a], &mut hi[0])
                } else {
                    (&hi[0], &mut lo[b])
                };
                dst.copy_from_slice(src);
                std::hint::black_box(&mut *dst);
                bytes += 2.0 * FRAME as f64;
            } else {
                std::hint::black_box(util::touch(&buffers[a]));
                bytes += FRAME as f64;
            }
            i += 1;
        }
        bytes / started.elapsed().as_secs_f64()
    };
    let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(work)).collect();
    let gbps: f64 = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(0.0))
        .sum::<f64>()
        / 1e9;
    Sample {
        writer_fps: gbps,
        reader_fps: gbps,
        ..Sample::default()
    }
}

/// A 1080p30 camera: `shmcast serve --source ffmpeg` with ffmpeg's lavfi
/// test source at 1920x1080 rgb24, 30 fps (`-re`), and 8 readers blocked in
/// their waits (C, Python and C# where they are built, Rust for the rest), 4
/// leasing and 4 copying, each taking the publish-to-read latency from the
/// frame's timestamp (the publish time). Needs the CLI
/// (`SHMCAST_BENCH_CLI`) and ffmpeg; without them the case is skipped.
///
/// With `readers` below 8, only Rust readers: the same camera with fewer
/// processes woken per frame, to tell the transport's latency from the
/// wait for a core that 8 readers on 2 cores cost each other.
fn camera_case(cli: String, secs: f64, readers: usize) -> Sample {
    let name = unique();
    // Two of each language there is (C through the C ABI, Python through
    // the wheel, C# under mono), one leasing and one copying; Rust for the
    // rest.
    let mut roles: Vec<&str> = ["c-reader", "py-reader", "cs-reader"]
        .into_iter()
        .filter(|role| readers == 8 && proc::external(role).is_some())
        .flat_map(|role| [role, role])
        .collect();
    roles.resize(readers, "shm-reader");
    let mode = |i: usize| {
        if i.is_multiple_of(2) {
            "lease-meta"
        } else {
            "copy-meta"
        }
    };
    let (wres, rres) = run_pubsub(("camera-serve", vec![name.clone(), cli, s(secs)]), |_| {
        roles
            .iter()
            .enumerate()
            .map(|(i, role)| (*role, vec![name.clone(), s(mode(i))]))
            .collect()
    });
    let (p50_us, p99_us) = latencies(&rres);
    let frames = f(&wres, "frames").max(1.0);
    // Each reader on its own (the table keeps only the median).
    for (i, (role, r)) in roles.iter().zip(&rres).enumerate() {
        let (p50, p99) = latencies(std::slice::from_ref(r));
        println!(
            "  camera reader {i} ({role}, {}): {:.3} ms CPU per frame, p50 {p50:.0} us, p99 {p99:.0} us",
            mode(i).trim_end_matches("-meta"),
            f(r, "cpu") * 1000.0 / frames
        );
    }
    Sample {
        writer_fps: rate(&wres),
        reader_fps: median(rres.iter().map(rate).collect()),
        p50_us,
        p99_us,
        cpu_s: f(&wres, "serve_cpu") + rres.iter().map(|r| f(r, "cpu")).sum::<f64>(),
        writer_core: f(&wres, "serve_cpu") / f(&wres, "secs").max(1e-9),
        cpu_per_frame_ms: cpu_per_frame_ms(&json!({"cpu": f(&wres, "serve_cpu")}), &rres),
        serve_ms: f(&wres, "serve_cpu") * 1000.0 / frames,
        source_ms: f(&wres, "source_cpu") * 1000.0 / frames,
        reader_ms: median(rres.iter().map(|r| f(r, "cpu") * 1000.0 / frames).collect()),
        ..Sample::default()
    }
}

/// One 1080p30 rgb24 source and two derived shapes (960x540 bgra, 640x640
/// rgb24; see `roles::derive_serve`): made once by the service and read by
/// 4 leasing readers each (`service`), or made by 8 readers for themselves
/// (`self`). The readers of the service's shapes take the source-publish
/// to read latency from the derived frame's timestamp, which is its
/// source frame's.
fn derive_case(cli: String, secs: f64, mode: &'static str) -> Sample {
    let name = unique();
    let readers = |_: &str| -> Vec<(&str, Vec<String>)> {
        if mode != "service" {
            return Vec::new();
        }
        (0..8)
            .map(|i| {
                let (suffix, _) = roles::DERIVED[i % 2];
                (
                    "shm-reader",
                    vec![format!("{name}-{suffix}"), s("lease-meta")],
                )
            })
            .collect()
    };
    let (wres, rres) = run_pubsub(
        ("derive-serve", vec![name.clone(), cli, s(secs), s(mode)]),
        readers,
    );
    let (p50_us, p99_us) = latencies(&rres);
    let frames = f(&wres, "frames").max(1.0);
    {
        println!(
            "  {}: 960x540 bgra {:.2} ms, 640x640 rgb24 {:.2} ms of CPU per source frame",
            if mode == "self" {
                "one self-shaping reader"
            } else {
                "the service's channels"
            },
            f(&wres, "view_cpu") * 1000.0 / frames,
            f(&wres, "model_cpu") * 1000.0 / frames
        );
    }
    Sample {
        writer_fps: rate(&wres),
        reader_fps: median(rres.iter().map(rate).collect()),
        p50_us,
        p99_us,
        cpu_s: f(&wres, "serve_cpu") + rres.iter().map(|r| f(r, "cpu")).sum::<f64>(),
        writer_core: f(&wres, "serve_cpu") / f(&wres, "secs").max(1e-9),
        serve_ms: f(&wres, "serve_cpu") * 1000.0 / frames,
        source_ms: f(&wres, "source_cpu") * 1000.0 / frames,
        // The service's readers (and a self-shaper) are in reader_ms; the
        // 960x540 bgra shape's own CPU in source_ms's place would be
        // confusing, so it has its own field.
        reader_ms: if mode == "self" {
            0.0
        } else {
            median(rres.iter().map(|r| f(r, "cpu") * 1000.0 / frames).collect())
        },
        bgra_ms: f(&wres, "view_cpu") * 1000.0 / frames,
        ..Sample::default()
    }
}

/// The cases of the main table, in the order they run within a round.
fn cases(secs: f64, smoke: bool) -> Vec<Case> {
    let n = if smoke { 20 } else { 300 };
    let mut v: Vec<Case> = vec![
        (
            "memcpy 6.2 MB, in cache",
            Box::new(move || memcpy_case(FRAME, true, secs)),
        ),
        (
            "memcpy 6.2 MB, from memory",
            Box::new(move || memcpy_case(FRAME, false, secs)),
        ),
        (
            "GB/s copy, 1 thread, 25 MB",
            Box::new(move || bandwidth_case("copy", 1, 4 * FRAME, secs)),
        ),
        (
            "GB/s copy, 2 threads, 25 MB",
            Box::new(move || bandwidth_case("copy", 2, 4 * FRAME, secs)),
        ),
        (
            "GB/s read, 2 threads, 25 MB",
            Box::new(move || bandwidth_case("read", 2, 4 * FRAME, secs)),
        ),
        (
            "GB/s copy, 1 thread, 512 MB",
            Box::new(move || bandwidth_case("copy", 1, 512 << 20, secs)),
        ),
        (
            "GB/s copy, 2 threads, 512 MB",
            Box::new(move || bandwidth_case("copy", 2, 512 << 20, secs)),
        ),
        (
            "GB/s read, 2 threads, 512 MB",
            Box::new(move || bandwidth_case("read", 2, 512 << 20, secs)),
        ),
        ("futex wake-up, raw", Box::new(move || futex_wake(n))),
        (
            "unix socket, 1 reader",
            Box::new(move || socket_case("unix", FRAME, 1, secs)),
        ),
        (
            "unix socket, 4 readers",
            Box::new(move || socket_case("unix", FRAME, 4, secs)),
        ),
        (
            "tcp loopback, 1 reader",
            Box::new(move || socket_case("tcp", FRAME, 1, secs)),
        ),
        (
            "tcp loopback, 4 readers",
            Box::new(move || socket_case("tcp", FRAME, 4, secs)),
        ),
        (
            "shmcast writer alone",
            Box::new(move || shmcast_case(FRAME, "loan", "lease", 0, secs)),
        ),
        (
            "shmcast loan+lease, 1 reader",
            Box::new(move || shmcast_case(FRAME, "loan", "lease", 1, secs)),
        ),
        (
            "shmcast loan+lease, 4 readers",
            Box::new(move || shmcast_case(FRAME, "loan", "lease", 4, secs)),
        ),
        (
            "shmcast loan+lease, 8 readers",
            Box::new(move || shmcast_case(FRAME, "loan", "lease", 8, secs)),
        ),
        (
            "shmcast copy, 1 reader",
            Box::new(move || shmcast_case(FRAME, "copy", "copy", 1, secs)),
        ),
        (
            "shmcast copy, 4 readers",
            Box::new(move || shmcast_case(FRAME, "copy", "copy", 4, secs)),
        ),
        (
            "shmcast loan, copy out, 1 reader",
            Box::new(move || shmcast_case(FRAME, "loan", "copy", 1, secs)),
        ),
        (
            "shmcast loan, copy out, 4 readers",
            Box::new(move || shmcast_case(FRAME, "loan", "copy", 4, secs)),
        ),
        (
            "shmcast stamp only, copy out, 1 reader",
            Box::new(move || shmcast_case(FRAME, "stamp", "copy", 1, secs)),
        ),
        (
            "shmcast transport only, 64 B, 1 reader",
            Box::new(move || shmcast_case(64, "loan", "lease", 1, secs)),
        ),
        (
            "shmcast wake-up (blocked reader)",
            Box::new(move || shmcast_wake(n)),
        ),
        (
            "shmcast 64 B round trip",
            Box::new(move || shmcast_rtt(secs)),
        ),
    ];
    if proc::external("c-reader").is_some() {
        v.push((
            "C ABI loan+lease, 1 reader",
            Box::new(move || shmcast_case_with("c-reader", FRAME, "loan", "lease", 1, secs)),
        ));
        v.push((
            "C ABI loan+lease, 4 readers",
            Box::new(move || shmcast_case_with("c-reader", FRAME, "loan", "lease", 4, secs)),
        ));
    }
    if proc::external("py-reader").is_some() {
        v.push((
            "Python loan+lease, 1 reader",
            Box::new(move || shmcast_case_with("py-reader", FRAME, "loan", "lease", 1, secs)),
        ));
    }
    if let Ok(cli) = std::env::var("SHMCAST_BENCH_CLI") {
        // Long enough for a few dozen frames at 30 fps even in a smoke.
        let camera_secs = secs.max(2.0);
        for (case, readers) in [
            ("1080p30 camera, 8 readers", 8),
            ("1080p30 camera, 1 reader", 1),
        ] {
            let cli = cli.clone();
            v.push((
                case,
                Box::new(move || camera_case(cli.clone(), camera_secs, readers)),
            ));
        }
        for (case, mode) in [
            (
                "1080p30 derived x2, made by the service, 8 readers",
                "service",
            ),
            ("1080p30 derived x2, made by 8 readers themselves", "self"),
        ] {
            let cli = cli.clone();
            v.push((
                case,
                Box::new(move || derive_case(cli.clone(), camera_secs, mode)),
            ));
        }
    }
    v.extend(ice::cases(secs));
    v.extend(bridge::cases(secs));
    v
}

const SIZES: [usize; 7] = [64, 4096, 65_536, 1 << 20, FRAME, 16 << 20, 64 << 20];
const READERS: [usize; 5] = [1, 2, 4, 8, 16];

fn growth_cases(secs: f64) -> Vec<GrowthCase> {
    let mut v: Vec<GrowthCase> = Vec::new();
    for size in SIZES {
        v.push((
            format!("size {size}: shmcast"),
            Box::new(move || shmcast_case(size, "loan", "lease", 1, secs)),
        ));
        v.push((
            format!("size {size}: unix socket"),
            Box::new(move || socket_case("unix", size, 1, secs)),
        ));
    }
    for readers in READERS {
        v.push((
            format!("readers {readers}: shmcast"),
            Box::new(move || shmcast_case(FRAME, "loan", "lease", readers, secs)),
        ));
        v.push((
            format!("readers {readers}: unix socket"),
            Box::new(move || socket_case("unix", FRAME, readers, secs)),
        ));
    }
    v
}

/// Runs one case so that nothing it started outlives it, whether it
/// returns or panics: its processes are killed by their guards as it ends
/// or unwinds, anything still running under us is killed, and every
/// channel named for this run (`bench-PID-*`) is removed. `None` when the
/// case failed: it is said, counted in `failed`, and the run goes on.
fn run_case<T>(name: &str, failed: &mut Vec<String>, case: impl FnOnce() -> T) -> Option<T> {
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
    let left = clean_up();
    match got {
        Ok(value) if left.is_empty() => Some(value),
        Ok(_) => {
            failed.push(format!("{name}: left {}", left.join(", ")));
            None
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("case {name} failed: {why}");
            failed.push(format!("{name}: {why}"));
            None
        }
    }
}

/// Kills and reaps our remaining children and removes this run's shared
/// memory; says what it had to clean that a case's guards should have.
fn clean_up() -> Vec<String> {
    let mut left = Vec::new();
    for pid in proc::children() {
        left.push(format!("process {pid}"));
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
            rustix::process::Signal::KILL,
        );
        let _ = rustix::process::waitpid(
            rustix::process::Pid::from_raw(pid as i32),
            rustix::process::WaitOptions::empty(),
        );
    }
    // A killed publisher cannot remove its channel; a case's own ones are
    // expected here, so they are removed without being counted.
    let prefix = format!("shmcast.bench-{}-", std::process::id());
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    left
}

/// What `--fail-on-purpose` checks: a case that panics with a writer and a
/// reader running leaves neither, nor their channel.
fn fail_on_purpose() {
    let mut failed = Vec::new();
    let name = unique();
    let got = run_case("fail-on-purpose", &mut failed, || {
        let mut writer = Proc::spawn(
            "shm-writer",
            &[name.clone(), s(4096), s("copy"), s(60), s(1000)],
        );
        writer.ready();
        let mut reader = Proc::spawn("shm-reader", &[name.clone(), s("copy-meta")]);
        reader.ready();
        writer.go();
        panic!("failing on purpose, with a writer and a reader running");
    });
    let children = proc::children();
    let objects: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(&name))
                .collect()
        })
        .unwrap_or_default();
    assert!(got.is_none() && failed.len() == 1, "the case did not fail");
    assert!(children.is_empty(), "processes left: {children:?}");
    assert!(objects.is_empty(), "shared memory left: {objects:?}");
    println!("fail-on-purpose: the failure was reported, and no process or shared memory was left");
}

fn main() {
    let opts = Opts::parse();
    if let Some(Role::Role { name, args }) = &opts.role {
        roles::run(name, args);
        return;
    }
    if opts.fail_on_purpose {
        fail_on_purpose();
        return;
    }
    let mut failed: Vec<String> = Vec::new();
    let (rounds, secs) = if opts.smoke {
        (1, 0.05)
    } else {
        (opts.rounds.max(1), opts.seconds)
    };
    let wanted = |name: &str| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.split('|').any(|part| name.contains(part)))
    };
    let main_cases: Vec<_> = cases(secs, opts.smoke)
        .into_iter()
        .filter(|(n, _)| wanted(n))
        .collect();
    let growth: Vec<_> = if opts.no_growth {
        Vec::new()
    } else {
        growth_cases(if opts.smoke { 0.05 } else { secs / 2.0 })
    }
    .into_iter()
    .filter(|(n, _)| wanted(n))
    .collect();
    let total = rounds * (main_cases.len() + growth.len() + 2);
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed}]").unwrap(),
    );
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut placement: Vec<Placement> = Vec::new();
    let mut round_ratios: Vec<BTreeMap<&'static str, f64>> = Vec::new();
    let mut by_round: Vec<BTreeMap<String, Sample>> = Vec::new();
    for round in 0..rounds {
        bar.set_message(format!("round {}: core placement", round + 1));
        let before = pingpong(0.2).p50_us * 1000.0;
        bar.inc(1);
        let mut this_round: BTreeMap<String, Sample> = BTreeMap::new();
        for (name, case) in main_cases.iter() {
            bar.set_message(format!("round {}: {name}", round + 1));
            if let Some(sample) = run_case(name, &mut failed, case) {
                this_round.insert(s(name), sample.clone());
                samples.entry(s(name)).or_default().push(sample);
            }
            bar.inc(1);
        }
        for (name, case) in growth.iter() {
            bar.set_message(format!("round {}: {name}", round + 1));
            if let Some(sample) = run_case(name, &mut failed, case) {
                samples.entry(name.clone()).or_default().push(sample);
            }
            bar.inc(1);
        }
        let after = pingpong(0.2).p50_us * 1000.0;
        bar.inc(1);
        placement.push(Placement::of(before, after));
        round_ratios.push(ratios(&this_round));
        by_round.push(this_round);
    }
    bar.finish_and_clear();
    let summary = report(
        &samples,
        &main_cases.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        &placement,
        &round_ratios,
    );
    bridge::report(&samples);
    let by_class = class_table(&by_round, &placement);
    let relative = relative_table(&by_round);
    let instructions = opts.instructions.then(|| instr::report(opts.smoke));
    if let Some(path) = &opts.plot {
        if !growth.is_empty() {
            plot::write(path, &samples, &SIZES, &READERS).expect("write the plot");
            println!("plot: {}", path.display());
        }
    }
    if let Some(path) = &opts.json {
        let all: BTreeMap<&String, Vec<Value>> = samples
            .iter()
            .map(|(k, v)| (k, v.iter().map(sample_json).collect()))
            .collect();
        let doc = json!({"summary": summary, "relative": relative, "samples": all,
            "placement": placement.iter().map(Placement::json).collect::<Vec<_>>(),
            "by_class": by_class,
            "instructions": instructions});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("write the JSON");
        println!("json: {}", path.display());
    }
    if !failed.is_empty() {
        eprintln!("{} case(s) failed:", failed.len());
        for f in &failed {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "writer_fps": s.writer_fps, "reader_fps": s.reader_fps,
        "p50_us": s.p50_us, "p99_us": s.p99_us, "cpu_s": s.cpu_s,
        "shm_bytes": s.shm_bytes, "dropped": s.dropped, "writer_core": s.writer_core,
        "cpu_per_frame_ms": s.cpu_per_frame_ms,
        "serve_ms": s.serve_ms, "source_ms": s.source_ms, "reader_ms": s.reader_ms, "bgra_ms": s.bgra_ms,
    })
}

fn get<'a>(round: &'a BTreeMap<String, Sample>, name: &str) -> Option<&'a Sample> {
    round.get(name)
}

/// The target ratios, from one round's samples.
fn ratios(round: &BTreeMap<String, Sample>) -> BTreeMap<&'static str, f64> {
    let mut r = BTreeMap::new();
    let mut put = |key: &'static str, num: Option<f64>, den: Option<f64>| {
        if let (Some(n), Some(d)) = (num, den) {
            if d > 0.0 {
                r.insert(key, n / d);
            }
        }
    };
    let fps = |n: &str| get(round, n).map(|s| s.reader_fps);
    let cpu = |n: &str| get(round, n).map(|s| s.cpu_per_frame_ms);
    let wfps = |n: &str| get(round, n).map(|s| s.writer_fps);
    let p50 = |n: &str| get(round, n).map(|s| s.p50_us);
    put(
        "loan+lease 1r / iceoryx2 in place 1r",
        fps("shmcast loan+lease, 1 reader"),
        fps("iceoryx2 in place, 1 reader"),
    );
    put(
        "loan+lease 1r / memcpy in cache",
        fps("shmcast loan+lease, 1 reader"),
        fps("memcpy 6.2 MB, in cache"),
    );
    put(
        "loan+lease 4r / iceoryx2 in place 4r",
        fps("shmcast loan+lease, 4 readers"),
        fps("iceoryx2 in place, 4 readers"),
    );
    put(
        "CPU per frame 4r: loan+lease / iceoryx2",
        cpu("shmcast loan+lease, 4 readers"),
        cpu("iceoryx2 in place, 4 readers"),
    );
    put(
        "loan+lease 4r / unix socket 4r",
        fps("shmcast loan+lease, 4 readers"),
        fps("unix socket, 4 readers"),
    );
    put(
        "copy out 4r / iceoryx2 copy out 4r",
        fps("shmcast loan, copy out, 4 readers"),
        fps("iceoryx2 copy out, 4 readers"),
    );
    put(
        "publish by copy 4r / iceoryx2 copy out 4r",
        fps("shmcast copy, 4 readers"),
        fps("iceoryx2 copy out, 4 readers"),
    );
    put(
        "transport only 64 B 1r / iceoryx2 64 B 1r",
        fps("shmcast transport only, 64 B, 1 reader"),
        fps("iceoryx2 transport only, 64 B, 1 reader"),
    );
    put(
        "iceoryx2 64 B rtt / shmcast 64 B rtt (p50)",
        p50("iceoryx2 64 B round trip"),
        p50("shmcast 64 B round trip"),
    );
    put(
        "shmcast wake-up / raw futex wake-up (p50)",
        p50("shmcast wake-up (blocked reader)"),
        p50("futex wake-up, raw"),
    );
    put(
        "C ABI reader 1r / Rust reader 1r",
        fps("C ABI loan+lease, 1 reader"),
        fps("shmcast loan+lease, 1 reader"),
    );
    put(
        "C ABI reader 4r / Rust reader 4r",
        fps("C ABI loan+lease, 4 readers"),
        fps("shmcast loan+lease, 4 readers"),
    );
    put(
        "Python reader 1r / Rust reader 1r",
        fps("Python loan+lease, 1 reader"),
        fps("shmcast loan+lease, 1 reader"),
    );
    put(
        "writer with 8 readers / writer alone",
        wfps("shmcast loan+lease, 8 readers"),
        wfps("shmcast writer alone"),
    );
    // The large-frame cases against the machine's memory bandwidth: the
    // writer fills each 6.2 MB frame (written, and read for ownership: two
    // frames of traffic), each reader reads every line of it (one frame);
    // the bound is the traffic of two threads copying over the channel's
    // footprint (4 frames). A fraction near 1 is the machine's limit,
    // whatever iceoryx2 does.
    let bound = get(round, "GB/s copy, 2 threads, 25 MB").map(|s| s.writer_fps * 1e9);
    for (key, case, readers) in [
        (
            "traffic / memory bound: loan+lease 1r",
            "shmcast loan+lease, 1 reader",
            1.0,
        ),
        (
            "traffic / memory bound: loan+lease 4r",
            "shmcast loan+lease, 4 readers",
            4.0,
        ),
        (
            "traffic / memory bound: loan+lease 8r",
            "shmcast loan+lease, 8 readers",
            8.0,
        ),
        (
            "traffic / memory bound: iceoryx2 in place 4r",
            "iceoryx2 in place, 4 readers",
            4.0,
        ),
    ] {
        let traffic =
            get(round, case).map(|s| (2.0 * s.writer_fps + readers * s.reader_fps) * FRAME as f64);
        put(key, traffic, bound);
    }
    // Copying out: each reader also writes its copy (read + write).
    for (key, case, readers) in [
        (
            "traffic / memory bound: copy out 1r",
            "shmcast loan, copy out, 1 reader",
            1.0,
        ),
        (
            "traffic / memory bound: copy out 4r",
            "shmcast loan, copy out, 4 readers",
            4.0,
        ),
        (
            "traffic / memory bound: iceoryx2 copy out 1r",
            "iceoryx2 copy out, 1 reader",
            1.0,
        ),
    ] {
        let traffic = get(round, case)
            .map(|s| (2.0 * s.writer_fps + 2.0 * readers * s.reader_fps) * FRAME as f64);
        put(key, traffic, bound);
    }
    // A copying reader is one thread copying: its own copy (6.2 MB read,
    // 6.2 MB written per frame) against one thread's memcpy over the same
    // footprint. (Against the two-thread bound, the writer's fill, a
    // memset that runs faster than any copy, decides the fraction.)
    put(
        "copy out 1r: reader's copy / 1-thread memcpy",
        get(round, "shmcast loan, copy out, 1 reader")
            .map(|s| 2.0 * s.reader_fps * FRAME as f64 / 1e9),
        get(round, "GB/s copy, 1 thread, 25 MB").map(|s| s.writer_fps),
    );
    put(
        "iceoryx2 copy out 1r: reader's copy / 1-thread memcpy",
        get(round, "iceoryx2 copy out, 1 reader").map(|s| 2.0 * s.reader_fps * FRAME as f64 / 1e9),
        get(round, "GB/s copy, 1 thread, 25 MB").map(|s| s.writer_fps),
    );
    r
}

/// Every frame case's reader frames/s and CPU per delivered frame, median
/// over the near rounds and over the far rounds apart: what a user gets
/// in each placement the OS may choose.
fn class_table(rounds: &[BTreeMap<String, Sample>], placement: &[Placement]) -> Value {
    let Some(first) = rounds.first() else {
        return json!([]);
    };
    let in_class = |case: &str, class: Class, pick: fn(&Sample) -> f64| -> Option<f64> {
        let values: Vec<(Class, f64)> = rounds
            .iter()
            .zip(placement)
            .filter_map(|(r, p)| Some((p.class(), pick(r.get(case)?))))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        class_median(&values, Some(class))
    };
    println!();
    println!(
        "{:<36} {:>12} {:>12} {:>12} {:>12}   (medians by placement class)",
        "case", "near f/s", "far f/s", "near cpu/f", "far cpu/f"
    );
    let show =
        |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let mut rows = Vec::new();
    for case in first.keys() {
        let near_fps = in_class(case, Class::Near, |s| s.reader_fps);
        let far_fps = in_class(case, Class::Far, |s| s.reader_fps);
        let near_cpu = in_class(case, Class::Near, |s| s.cpu_per_frame_ms);
        let far_cpu = in_class(case, Class::Far, |s| s.cpu_per_frame_ms);
        if near_cpu.is_none() && far_cpu.is_none() {
            continue;
        }
        println!(
            "{:<36} {:>12} {:>12} {:>12} {:>12}",
            case,
            show(near_fps, 1),
            show(far_fps, 1),
            show(near_cpu, 3),
            show(far_cpu, 3)
        );
        rows.push(
            json!({"case": case, "near_reader_fps": near_fps, "far_reader_fps": far_fps,
            "near_cpu_per_frame_ms": near_cpu, "far_cpu_per_frame_ms": far_cpu}),
        );
    }
    json!(rows)
}

/// The case of another transport that a case is compared with, if any.
fn counterpart(case: &str, other: &str) -> Option<String> {
    let readers = case.rsplit_once(", ").map(|(_, r)| r)?;
    if !readers.ends_with("reader") && !readers.ends_with("readers") {
        return None;
    }
    match other {
        "unix socket" => Some(format!("unix socket, {readers}")),
        "iceoryx2" if case.contains("lease") => Some(format!("iceoryx2 in place, {readers}")),
        "iceoryx2" if case.starts_with("shmcast") && case.contains("copy") => {
            Some(format!("iceoryx2 copy out, {readers}"))
        }
        _ => None,
    }
}

/// Every frame case's reader frames/s against the Unix socket and (for
/// shmcast) iceoryx2 with the same number of readers, each ratio taken
/// within a round, then the median over rounds.
fn relative_table(rounds: &[BTreeMap<String, Sample>]) -> Value {
    let Some(first) = rounds.first() else {
        return json!([]);
    };
    println!();
    println!(
        "{:<36} {:>14} {:>14}   (reader frames/s, ratio within each round, median)",
        "case", "x unix socket", "x iceoryx2"
    );
    let mut rows = Vec::new();
    for case in first.keys() {
        let ratio = |other: &str| -> Option<f64> {
            let against = counterpart(case, other)?;
            let per_round: Vec<f64> = rounds
                .iter()
                .filter_map(|r| Some(r.get(case)?.reader_fps / r.get(&against)?.reader_fps))
                .filter(|v| v.is_finite())
                .collect();
            (!per_round.is_empty()).then(|| median(per_round))
        };
        let (unix, ice) = (ratio("unix socket"), ratio("iceoryx2"));
        if unix.is_none() && ice.is_none() {
            continue;
        }
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        println!("{:<36} {:>14} {:>14}", case, show(unix), show(ice));
        rows.push(json!({"case": case, "x_unix_socket": unix, "x_iceoryx2": ice}));
    }
    json!(rows)
}

/// (target key, bound, true if the ratio must be at least the bound)
///
/// The large-frame cases are held to the machine's memory bandwidth (0.9
/// of the traffic two copying threads make; a copying reader, 0.9 of one
/// thread's memcpy), not to a lead over iceoryx2: both move every byte
/// through memory, so at that limit a ratio between them measures noise
/// (the 1.2x targets of 2026-11 stayed missed for that reason). Against
/// iceoryx2 the target is parity. The transport alone (64-byte frames, so
/// that the bytes cost nothing) is where a lead shows: 1.5x.
const TARGETS: [(&str, f64, bool); 17] = [
    ("traffic / memory bound: loan+lease 1r", 0.9, true),
    ("traffic / memory bound: loan+lease 4r", 0.9, true),
    ("copy out 1r: reader's copy / 1-thread memcpy", 0.9, true),
    ("loan+lease 1r / iceoryx2 in place 1r", 1.0, true),
    ("loan+lease 1r / memcpy in cache", 0.9, true),
    ("loan+lease 4r / iceoryx2 in place 4r", 1.0, true),
    ("CPU per frame 4r: loan+lease / iceoryx2", 1.0, false),
    ("loan+lease 4r / unix socket 4r", 15.0, true),
    ("copy out 4r / iceoryx2 copy out 4r", 1.0, true),
    ("publish by copy 4r / iceoryx2 copy out 4r", 1.0, true),
    ("transport only 64 B 1r / iceoryx2 64 B 1r", 1.5, true),
    ("iceoryx2 64 B rtt / shmcast 64 B rtt (p50)", 1.0, true),
    ("shmcast wake-up / raw futex wake-up (p50)", 2.0, false),
    ("writer with 8 readers / writer alone", 0.95, true),
    ("C ABI reader 1r / Rust reader 1r", 0.9, true),
    ("C ABI reader 4r / Rust reader 4r", 0.9, true),
    ("Python reader 1r / Rust reader 1r", 0.9, true),
];

/// Where the OS put the two cores a round ran on, as the cache-line
/// transfer between them says before and after the round: near (sharing
/// a cache, tens of ns), far (across caches or sockets, hundreds of ns),
/// or mixed when the placement changed during the round.
#[derive(Clone, Copy, Debug)]
struct Placement {
    before_ns: f64,
    after_ns: f64,
}

/// A one-way cache-line transfer above this is a far placement.
const FAR_NS: f64 = 120.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Near,
    Far,
    Mixed,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Near => "near",
            Class::Far => "far",
            Class::Mixed => "mixed",
        }
    }
}

impl Placement {
    fn of(before_ns: f64, after_ns: f64) -> Placement {
        Placement {
            before_ns,
            after_ns,
        }
    }

    fn class(&self) -> Class {
        match (self.before_ns > FAR_NS, self.after_ns > FAR_NS) {
            (false, false) => Class::Near,
            (true, true) => Class::Far,
            _ => Class::Mixed,
        }
    }

    fn json(&self) -> Value {
        json!({"before_ns": self.before_ns, "after_ns": self.after_ns, "class": self.class().name()})
    }
}

/// The median of `values` over the rounds of `class` (`None`: every round),
/// if there are any.
fn class_median(values: &[(Class, f64)], class: Option<Class>) -> Option<f64> {
    let v: Vec<f64> = values
        .iter()
        .filter(|(c, _)| class.is_none_or(|want| *c == want))
        .map(|&(_, v)| v)
        .collect();
    (!v.is_empty()).then(|| median(v))
}

fn report(
    samples: &BTreeMap<String, Vec<Sample>>,
    order: &[&str],
    placement: &[Placement],
    round_ratios: &[BTreeMap<&'static str, f64>],
) -> Value {
    let med = |name: &str, pick: fn(&Sample) -> f64| -> f64 {
        median(
            samples
                .get(name)
                .map(|v| v.iter().map(pick).collect())
                .unwrap_or_default(),
        )
    };
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>7} {:>9} {:>7} {:>7} {:>9}",
        "case (medians)",
        "writer f/s",
        "reader f/s",
        "p50 us",
        "p99 us",
        "cpu s",
        "shm MB",
        "dropped",
        "w core",
        "cpu/f ms"
    );
    let mut table = Vec::new();
    for name in order.iter().map(|s| s.to_string()).chain(
        samples
            .keys()
            .filter(|k| !order.contains(&k.as_str()))
            .cloned(),
    ) {
        let row = (
            med(&name, |s| s.writer_fps),
            med(&name, |s| s.reader_fps),
            med(&name, |s| s.p50_us),
            med(&name, |s| s.p99_us),
            med(&name, |s| s.cpu_s),
            med(&name, |s| s.shm_bytes) / 1e6,
            med(&name, |s| s.dropped),
            med(&name, |s| s.writer_core),
            med(&name, |s| s.cpu_per_frame_ms),
        );
        let cpu_per_frame = if row.8 > 0.0 {
            format!("{:.3}", row.8)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<36} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>7.2} {:>9.1} {:>7.0} {:>7.2} {:>9}",
            name, row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, cpu_per_frame
        );
        table.push(json!({"case": name, "writer_fps": row.0, "reader_fps": row.1, "p50_us": row.2,
            "p99_us": row.3, "cpu_s": row.4, "shm_mb": row.5, "dropped": row.6, "writer_core": row.7,
            "cpu_per_frame_ms": row.8}));
    }
    println!();
    for (i, p) in placement.iter().enumerate() {
        println!(
            "round {}: cache-line one-way transfer {:.0} ns before, {:.0} ns after: {}",
            i + 1,
            p.before_ns,
            p.after_ns,
            p.class().name()
        );
    }
    let count = |c: Class| placement.iter().filter(|p| p.class() == c).count();
    println!(
        "placement classes (far: above {FAR_NS:.0} ns): {} near, {} far, {} mixed",
        count(Class::Near),
        count(Class::Far),
        count(Class::Mixed)
    );
    println!();
    println!(
        "{:<46} {:>6} {:>6} {:>6}  {:<8} per round (n near, f far, m mixed)",
        "target (ratio from the same round)", "all", "near", "far", ""
    );
    let mut targets = Vec::new();
    for (key, bound, at_least) in TARGETS {
        let per_round: Vec<(Class, f64)> = round_ratios
            .iter()
            .zip(placement)
            .filter_map(|(r, p)| Some((p.class(), *r.get(key)?)))
            .collect();
        let all = class_median(&per_round, None);
        let near = class_median(&per_round, Some(Class::Near));
        let far = class_median(&per_round, Some(Class::Far));
        let meets = |m: f64| (at_least && m >= bound) || (!at_least && m <= bound);
        // Met only where it holds in every placement class that ran (all
        // rounds when none was cleanly near or far).
        let judged: Vec<f64> = match (near, far) {
            (None, None) => all.into_iter().collect(),
            _ => near.into_iter().chain(far).collect(),
        };
        let met = if judged.is_empty() {
            "n/a"
        } else if judged.iter().all(|&m| meets(m)) {
            "met"
        } else {
            "MISSED"
        };
        let want = if at_least {
            format!(">= {bound}")
        } else {
            format!("<= {bound}")
        };
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        println!(
            "{:<46} {:>6} {:>6} {:>6}  {:<8} {} (want {want})",
            key,
            show(all),
            show(near),
            show(far),
            met,
            per_round
                .iter()
                .map(|(c, r)| format!("{r:.2}{}", &c.name()[..1]))
                .collect::<Vec<_>>()
                .join(" ")
        );
        targets.push(json!({"target": key, "median": all, "near": near, "far": far, "bound": bound,
            "at_least": at_least, "verdict": met,
            "per_round": per_round.iter().map(|(c, r)| json!({"class": c.name(), "ratio": r})).collect::<Vec<_>>()}));
    }
    let camera = "1080p30 camera, 8 readers";
    if samples.get(camera).is_some_and(|v| !v.is_empty()) {
        let (serve, source, reader) = (
            med(camera, |s| s.serve_ms),
            med(camera, |s| s.source_ms),
            med(camera, |s| s.reader_ms),
        );
        let fps = med(camera, |s| s.writer_fps);
        println!();
        println!(
            "1080p30 camera (ffmpeg testsrc through serve, 8 readers: 4 leasing, 4 copying), CPU per frame: \
             serve {serve:.2} ms, ffmpeg {source:.2} ms, each reader {reader:.3} ms; at {fps:.1} fps serve uses \
             {:.1}% of a core and the 8 readers {:.1}%; publish-to-read p50 {:.0} us, p99 {:.0} us",
            serve * fps / 10.0,
            8.0 * reader * fps / 10.0,
            med(camera, |s| s.p50_us),
            med(camera, |s| s.p99_us),
        );
    }
    // The latency target, with 8 readers and with one: 8 readers woken at
    // once on this machine's cores wait for each other's work, one does not.
    for case in [camera, "1080p30 camera, 1 reader"] {
        if samples.get(case).is_some_and(|v| !v.is_empty()) {
            let p99 = med(case, |s| s.p99_us);
            println!(
                "{case}: publish-to-read p50 {:.0} us, p99 {p99:.0} us (want p99 <= 1000 us: {}; {} cores here)",
                med(case, |s| s.p50_us),
                if p99 <= 1000.0 { "met" } else { "MISSED" },
                std::thread::available_parallelism().map_or(0, |n| n.get()),
            );
        }
    }
    let (service, own) = (
        "1080p30 derived x2, made by the service, 8 readers",
        "1080p30 derived x2, made by 8 readers themselves",
    );
    if samples.get(service).is_some_and(|v| !v.is_empty())
        && samples.get(own).is_some_and(|v| !v.is_empty())
    {
        let (made_once, made_8) = (med(service, |s| s.serve_ms), med(own, |s| s.serve_ms));
        let bgra = med(service, |s| s.bgra_ms);
        println!();
        println!(
            "1080p30 rgb24 derived to 960x540 bgra and 640x640 rgb24, CPU per source frame: the service \
             {made_once:.2} ms for both (its 8 readers {:.3} ms each), 8 readers shaping for themselves \
             {made_8:.2} ms ({:.1}x the service); the service's 960x540 bgra frame {bgra:.2} ms (want <= 3 ms: {}); \
             source publish to derived read p50 {:.0} us, p99 {:.0} us (want <= 33333 us: {})",
            med(service, |s| s.reader_ms),
            made_8 / made_once.max(1e-9),
            if bgra <= 3.0 { "met" } else { "MISSED" },
            med(service, |s| s.p50_us),
            med(service, |s| s.p99_us),
            if med(service, |s| s.p99_us) <= 33_333.0 { "met" } else { "MISSED" },
        );
    }
    let shm = med("shmcast loan+lease, 4 readers", |s| s.shm_bytes);
    let ice = med("iceoryx2 in place, 4 readers", |s| s.shm_bytes);
    println!();
    println!(
        "shared memory, 6.2 MB frames: shmcast {:.1} MB with 1, 4 or 8 readers (4 slots + header pages); iceoryx2 {:.1} MB with 4 subscribers",
        shm / 1e6,
        ice / 1e6
    );
    json!({"table": table, "targets": targets})
}
