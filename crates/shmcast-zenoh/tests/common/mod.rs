//! What the bridge tests share: the two commands, free ports, ffmpeg's
//! test pattern, and children that are killed when a test ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use shmcast::{FrameMeta, Publisher};

/// The `shmcast-zenoh` command.
pub fn bridge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmcast-zenoh"))
}

/// The `shmcast` command: `$SHMCAST_BIN` when set (scripts/test sets it to
/// the main workspace's build), else the one beside this crate's binary.
/// The bridge is a workspace of its own and cannot build it.
pub fn shmcast() -> Command {
    let exe = std::env::var_os("SHMCAST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_BIN_EXE_shmcast-zenoh"))
                .with_file_name(format!("shmcast{}", std::env::consts::EXE_SUFFIX))
        });
    assert!(
        exe.exists(),
        "{} is missing: build the shmcast command (cargo build -p shmcast-cli) and set SHMCAST_BIN",
        exe.display()
    );
    Command::new(exe)
}

/// A name no other test run uses.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "zt-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port free on loopback a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Zenoh session of the test's own, listening on loopback `port` (no
/// scouting), for putting what a hostile peer would.
pub fn listening_session(port: u16) -> zenoh::Session {
    use zenoh::Wait;
    let mut config = zenoh::Config::default();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    config
        .insert_json5("listen/endpoints", &format!("[\"tcp/127.0.0.1:{port}\"]"))
        .unwrap();
    zenoh::open(config).wait().unwrap()
}

/// A child process killed when dropped, whose stderr lines are collected.
pub struct Bg {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    what: String,
}

impl Bg {
    pub fn spawn(mut command: Command, what: &str) -> Bg {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Bg {
            child,
            lines,
            seen: Vec::new(),
            what: what.to_owned(),
        }
    }

    /// Waits up to `limit` for a stderr line containing `text`.
    pub fn expect(&mut self, text: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{} did not say {text:?} within {limit:?}; it said:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Collects what the child said so far into `seen`.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An exporter of `name` on `key`, listening on `port`.
pub fn export(name: &str, key: &str, port: u16, extra: &[&str]) -> Bg {
    let mut c = bridge();
    c.args(["export", name, "--key", key, "--listen"])
        .arg(format!("tcp/127.0.0.1:{port}"))
        .args(extra);
    Bg::spawn(c, "the exporter")
}

/// An importer of `key` into `name`, connecting to `port`.
pub fn import(key: &str, name: &str, port: u16, extra: &[&str]) -> Bg {
    let mut c = bridge();
    c.args(["import", key, name, "--connect"])
        .arg(format!("tcp/127.0.0.1:{port}"))
        .args(extra);
    Bg::spawn(c, "the importer")
}

/// ffmpeg's testsrc at `w`x`h` in `pix_fmt`: `count` frames, written in
/// ffmpeg's `muxer` format.
fn ffmpeg_testsrc(w: u32, h: u32, pix_fmt: &str, count: usize, muxer: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={w}x{h}:rate=30"))
        .args([
            "-frames:v",
            &count.to_string(),
            "-pix_fmt",
            pix_fmt,
            "-f",
            muxer,
            "-",
        ])
        .output()
        .expect("ffmpeg (scripts/test installs it)");
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

/// `count` frames of ffmpeg's testsrc, as ffmpeg makes them.
pub fn testsrc(w: u32, h: u32, pix_fmt: &str, count: usize) -> Vec<Vec<u8>> {
    let raw = ffmpeg_testsrc(w, h, pix_fmt, count, "rawvideo");
    raw.chunks(raw.len() / count).map(<[u8]>::to_vec).collect()
}

/// ffmpeg's framemd5 of the same frames: one MD5 per frame, in order.
pub fn framemd5(w: u32, h: u32, pix_fmt: &str, count: usize) -> Vec<String> {
    String::from_utf8(ffmpeg_testsrc(w, h, pix_fmt, count, "framemd5"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// As [`until`], and on failure shows what `child` said.
pub fn until_or<T>(
    limit: Duration,
    what: &str,
    child: &mut Bg,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= end {
            while let Ok(line) = child.lines.try_recv() {
                child.seen.push(line);
            }
            panic!(
                "{what} did not happen within {limit:?}; {} said:\n{}",
                child.what,
                child.seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A publisher in this process that publishes `frames` in turn, one every
/// 33 ms, while `run` is set and `paused` is not; frame i carries
/// timestamp 1000 + i.
pub struct Source {
    pub publisher: Arc<Mutex<Option<Publisher>>>,
    run: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Source {
    pub fn start(name: &str, meta: FrameMeta, frames: Vec<Vec<u8>>) -> Source {
        // Each frame carries "t=TIMESTAMP" as its metadata, so a reader
        // across the bridge can tell it came with its own frame.
        let options = shmcast::ChannelOptions::new(frames[0].len()).max_metadata(64);
        let publisher = Publisher::create_with(name, &options).unwrap();
        let publisher = Arc::new(Mutex::new(Some(publisher)));
        let run = Arc::new(AtomicBool::new(true));
        let paused = Arc::new(AtomicBool::new(false));
        let thread = {
            let (publisher, run, paused) = (publisher.clone(), run.clone(), paused.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while run.load(Relaxed) {
                    if let Some(p) = publisher
                        .lock()
                        .unwrap()
                        .as_mut()
                        .filter(|_| !paused.load(Relaxed))
                    {
                        let meta = FrameMeta {
                            timestamp_ns: 1000 + i as u64,
                            ..meta
                        };
                        let metadata = format!("t={}", meta.timestamp_ns);
                        p.publish_with_metadata(
                            &meta,
                            &frames[i % frames.len()],
                            metadata.as_bytes(),
                        )
                        .unwrap();
                        i += 1;
                    }
                    std::thread::sleep(Duration::from_millis(33));
                }
            })
        };
        Source {
            publisher,
            run,
            paused,
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        self.run.store(false, Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop();
    }
}
