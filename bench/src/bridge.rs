//! Frames across the Zenoh bridge on loopback (`shmcast-zenoh export` and
//! `import`, release builds), beside a local channel in the same round:
//! 1080p rgb24 frames at 30 frames/s, raw and JPEG, read by copy from the
//! imported channel. Latency runs from the frame's publish timestamp at the
//! source to the reader's copy on the other side; CPU counts every process
//! (source, exporter, importer, reader) per frame the reader got.
//!
//! The cases exist when `SHMCAST_BENCH_BRIDGE` names the `shmcast-zenoh`
//! binary (scripts/bench builds it).

use std::process::{Command, Stdio};

use crate::proc::Proc;
use crate::util::{cpu_time_of, median};
use crate::{f, latencies, rate, s, unique, Case, Sample, FRAME};

/// The paced source: 30 frames/s.
const GAP_US: u64 = 33_333;

pub fn cases(secs: f64) -> Vec<Case> {
    let Some(exe) = std::env::var_os("SHMCAST_BENCH_BRIDGE") else {
        return Vec::new();
    };
    // Long enough for several frames at 30/s even in a smoke run.
    let secs = secs.max(1.0);
    let raw = exe.clone();
    vec![
        (
            "local channel 1080p30, copy out",
            Box::new(move || paced(None, secs)),
        ),
        (
            "Zenoh bridge 1080p30, raw",
            Box::new(move || paced(Some((&raw, "raw")), secs)),
        ),
        (
            "Zenoh bridge 1080p30, JPEG q90",
            Box::new(move || paced(Some((&exe, "jpeg")), secs)),
        ),
    ]
}

/// A 30 frames/s 1080p source and one copying reader: of the source itself
/// (`bridge` None), or of its import through the bridge.
fn paced(bridge: Option<(&std::ffi::OsStr, &str)>, secs: f64) -> Sample {
    let src = unique();
    let mut writer = Proc::spawn(
        "shm-writer",
        &[
            src.clone(),
            s(FRAME),
            s("loan"),
            s(secs),
            s(GAP_US),
            s("rgb24"),
        ],
    );
    writer.ready();
    let (read, helpers) = match bridge {
        None => (src.clone(), Vec::new()),
        Some((exe, encoding)) => {
            let dst = unique();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let key = format!("shmcast-bench/{src}");
            let endpoint = format!("tcp/127.0.0.1:{port}");
            let spawn = |args: &[&str]| {
                Command::new(exe)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start shmcast-zenoh")
            };
            let exporter = spawn(&[
                "export", &src, "--key", &key, "--encode", encoding, "--listen", &endpoint,
            ]);
            // The importer connects once, at start, and Zenoh retries a
            // refused connection only after a second or more: on a loaded
            // machine that was longer than a smoke run's frames lasted, and
            // the import never appeared. So it starts once the exporter
            // listens.
            let exporter = crate::proc::Guard(vec![exporter]);
            listening(port);
            let mut importer = Command::new(exe)
                .args(["import", &key, &dst, "--connect", &endpoint])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start shmcast-zenoh");
            let said = said_importing(importer.stderr.take().expect("piped"));
            let mut both = exporter;
            both.0.push(importer);
            // Its session is open and subscribed: frames from now on reach it.
            said.recv_timeout(std::time::Duration::from_secs(30))
                .expect("the importer did not subscribe within 30 s");
            (dst, std::mem::take(&mut both.0))
        }
    };
    // Killed however this case ends (a panic included).
    let mut helpers = crate::proc::Guard(helpers);
    writer.go();
    // The import exists once frames flow; the reader waits for it.
    let mut reader = Proc::spawn("shm-reader", &[read, s("copy-meta")]);
    reader.ready();
    let wres = writer.result();
    reader.stop();
    let rres = reader.result();
    let helper_cpu: f64 = helpers
        .0
        .iter()
        .map(|c| cpu_time_of(c.id()).as_secs_f64())
        .sum();
    for c in &mut helpers.0 {
        let _ = c.kill();
        let _ = c.wait();
    }
    let (p50_us, p99_us) = latencies(std::slice::from_ref(&rres));
    let cpu_s = f(&wres, "cpu") + f(&rres, "cpu") + helper_cpu;
    let delivered = f(&rres, "frames").max(1.0);
    Sample {
        writer_fps: rate(&wres),
        reader_fps: rate(&rres),
        p50_us,
        p99_us,
        cpu_s,
        cpu_per_frame_ms: cpu_s * 1000.0 / delivered,
        ..Sample::default()
    }
}

/// Waits (up to 30 s) until something accepts connections on `port` of
/// loopback.
fn listening(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter did not listen on port {port} within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A channel that gets one message when the importer says it imports;
/// the rest of what it says is passed on to our stderr, so it never blocks
/// on a full pipe and its errors are seen.
fn said_importing(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<()> {
    use std::io::BufRead;
    let (tell, told) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("importing") {
                let _ = tell.send(());
            } else {
                // Its errors, should it fail to start.
                eprintln!("  importer: {line}");
            }
        }
    });
    told
}

/// The bridge's own table: per case, medians over rounds.
pub fn report(samples: &std::collections::BTreeMap<String, Vec<Sample>>) {
    let names: Vec<&str> = [
        "local channel 1080p30, copy out",
        "Zenoh bridge 1080p30, raw",
        "Zenoh bridge 1080p30, JPEG q90",
    ]
    .into_iter()
    .filter(|n| samples.contains_key(*n))
    .collect();
    if names.is_empty() {
        return;
    }
    let med =
        |name: &str, pick: fn(&Sample) -> f64| median(samples[name].iter().map(pick).collect());
    println!();
    println!("across Zenoh on loopback: 1920x1080 rgb24 (6.2 MB) published at 30 frames/s, one copying reader");
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>16}",
        "case (medians)", "reader f/s", "p50 ms", "p99 ms", "CPU ms per frame"
    );
    for name in names {
        println!(
            "{:<36} {:>10.1} {:>10.2} {:>10.2} {:>16.2}",
            name,
            med(name, |s| s.reader_fps),
            med(name, |s| s.p50_us) / 1000.0,
            med(name, |s| s.p99_us) / 1000.0,
            med(name, |s| s.cpu_per_frame_ms),
        );
    }
}
