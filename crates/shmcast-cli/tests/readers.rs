//! Readers that never give up, in every language: one harness, any reader.
//!
//! A reader program (the Rust example `reader` by default; the C, C# and
//! Python stages of scripts/test pass theirs in `SHMCAST_READER`, a
//! command line split at spaces, to which the channel name and `--md5` are
//! added) is started before any publisher, and then lives through:
//! 1. the first publisher starting;
//! 2. a kill of the publisher (SIGKILL; TerminateProcess under Wine) and
//!    a take-over by the next one;
//! 3. a clean stop (end of input) and a new start;
//! 4. a 3 s stall of the source.
//!
//! Each phase must bring the reader at least 10 frames, every frame's MD5
//! must be one of ffmpeg's own framemd5 of the frames published, and the
//! reader must report going gone, stalled and live again. It ends only
//! when told (its input closes) and then says `done`.
//!
//! The reader speaks lines: `frame NUMBER MD5`, `health WORD`,
//! `error MESSAGE`, `done`. The frames are ffmpeg's testsrc, made by
//! scripts/chaos-frames (`testsrc.rgb` and `testsrc.framemd5`); under Wine,
//! where the test cannot start it, scripts/test runs it first and names
//! the directory in `SHMCAST_CHAOS_FRAMES`.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{shmcast, unique, Kill};

/// The geometry scripts/chaos-frames makes its frames in.
const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const FRAMES: usize = 30;
const PHASE_FRAMES: usize = 10;
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// ffmpeg's testsrc frames and their framemd5 checksums.
fn testsrc() -> (Vec<Vec<u8>>, HashSet<String>) {
    let dir = match std::env::var_os("SHMCAST_CHAOS_FRAMES") {
        Some(dir) => PathBuf::from(dir),
        None => make_testsrc(),
    };
    let raw = std::fs::read(dir.join("testsrc.rgb")).expect("testsrc.rgb");
    let frame_len = WIDTH * HEIGHT * 3;
    assert_eq!(
        raw.len(),
        frame_len * FRAMES,
        "testsrc.rgb has the wrong size"
    );
    let sums: HashSet<String> = std::fs::read_to_string(dir.join("testsrc.framemd5"))
        .expect("testsrc.framemd5")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(sums.len(), FRAMES, "ffmpeg's testsrc frames differ");
    (raw.chunks(frame_len).map(<[u8]>::to_vec).collect(), sums)
}

#[cfg(windows)]
fn make_testsrc() -> PathBuf {
    panic!("under Wine, SHMCAST_CHAOS_FRAMES must name a directory of ffmpeg's frames (scripts/test makes it)")
}

/// scripts/chaos-frames makes them (once, into target/chaos), for this
/// test and for the Wine stage alike.
#[cfg(not(windows))]
fn make_testsrc() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/chaos-frames");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/chaos-frames failed (ffmpeg is needed; scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The reader under test, as a command.
fn reader_command(name: &str) -> Command {
    let line = std::env::var("SHMCAST_READER").unwrap_or_default();
    let mut words = line.split_whitespace();
    let mut command = match words.next() {
        Some(program) => Command::new(program),
        None => Command::new(rust_example()),
    };
    command.args(words).args([name, "--md5"]);
    command
}

/// The Rust example `reader`, built beside this test (`--all-targets`).
fn rust_example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let dir = deps.parent().unwrap().parent().unwrap().join("examples");
    dir.join(format!("reader{}", std::env::consts::EXE_SUFFIX))
}

/// Writes testsrc to whichever publisher runs, at 30 fps, unless paused.
struct Feeder {
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Feeder {
    fn start(frames: Vec<Vec<u8>>) -> Feeder {
        let feeder = Feeder {
            stdin: Arc::new(Mutex::new(None)),
            paused: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (stdin, paused, stop) = (
            Arc::clone(&feeder.stdin),
            Arc::clone(&feeder.paused),
            Arc::clone(&feeder.stop),
        );
        std::thread::spawn(move || {
            for frame in frames.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(33));
                if paused.load(Ordering::Relaxed) {
                    continue;
                }
                let mut pipe = stdin.lock().unwrap();
                if let Some(p) = pipe.as_mut() {
                    if p.write_all(frame).is_err() {
                        *pipe = None; // that publisher is gone
                    }
                }
            }
        });
        feeder
    }

    /// A new publisher of `name`, fed from now on.
    fn publisher(&self, name: &str) -> Kill {
        let mut child = shmcast()
            .args(["publish", name, "--format", "rgb24"])
            .args([
                "--width",
                &WIDTH.to_string(),
                "--height",
                &HEIGHT.to_string(),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        *self.stdin.lock().unwrap() = child.stdin.take();
        Kill(child)
    }

    /// Ends the current publisher's input: a clean stop.
    fn close(&self) {
        self.stdin.lock().unwrap().take();
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the reader said, line by line, as it says it.
struct Said {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Said {
    fn listen(child: &mut Child) -> Said {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Said { lines }
    }

    fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn frames(&self) -> usize {
        self.all()
            .iter()
            .filter(|l| l.starts_with("frame "))
            .count()
    }

    /// Waits until `ok` holds for what was said, failing after `limit`.
    fn until(&self, what: &str, limit: Duration, ok: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + limit;
        while !ok(&self.all()) {
            assert!(
                Instant::now() < deadline,
                "the reader never {what}; it said:\n{}",
                tail(&self.all())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn frames_after(&self, phase: &str, from: usize) {
        self.until(
            &format!("got {PHASE_FRAMES} frames after {phase}"),
            PHASE_LIMIT,
            |l| l.iter().filter(|l| l.starts_with("frame ")).count() >= from + PHASE_FRAMES,
        );
    }

    fn health_after(&self, health: &str, from: usize) {
        let line = format!("health {health}");
        self.until(&format!("said {line}"), PHASE_LIMIT, |l| {
            l[from.min(l.len())..].contains(&line)
        });
    }
}

fn tail(lines: &[String]) -> String {
    let from = lines.len().saturating_sub(40);
    lines[from..].join("\n")
}

fn kill_hard(publisher: Kill) {
    drop(publisher); // kill() is SIGKILL on Linux, TerminateProcess on Windows
}

#[test]
fn a_reader_started_first_reads_through_kill_take_over_restart_and_stall() {
    let (frames, sums) = testsrc();
    let name = unique("chaos");
    let mut reader = reader_command(&name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the reader {:?}: {e}", reader_command(&name)));
    let stdin = reader.stdin.take();
    let said = Said::listen(&mut reader);
    let mut reader = Kill(reader);
    std::thread::sleep(Duration::from_secs(1)); // the reader starts first
    let feeder = Feeder::start(frames);

    // 1. The first publisher.
    let publisher = feeder.publisher(&name);
    said.frames_after("the first start", 0);

    // 2. Killed, then taken over.
    let (at, lines) = (said.frames(), said.all().len());
    kill_hard(publisher);
    said.health_after("gone", lines);
    let publisher = feeder.publisher(&name);
    said.frames_after("a kill and take-over", at);

    // 3. A clean stop and a new start.
    let (at, lines) = (said.frames(), said.all().len());
    feeder.close();
    let mut stopped = publisher;
    let status = stopped.0.wait().unwrap();
    assert!(status.success(), "publish ended with {status}");
    said.health_after("gone", lines);
    let _publisher = feeder.publisher(&name);
    said.frames_after("a clean restart", at);

    // 4. A stall of 3 s.
    let lines = said.all().len();
    feeder.paused.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    feeder.paused.store(false, Ordering::Relaxed);
    said.health_after("stalled", lines);
    let at = said.frames();
    said.health_after("live", lines);
    said.frames_after("a stall", at);

    // It is still reading; it ends when told, and only then.
    assert!(
        reader.0.try_wait().unwrap().is_none(),
        "the reader ended by itself"
    );
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the reader did not end when told"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    said.until("said done", Duration::from_secs(5), |l| {
        l.last().is_some_and(|l| l == "done")
    });

    for line in said.all() {
        if let Some(rest) = line.strip_prefix("frame ") {
            let md5 = rest.split_whitespace().nth(1).unwrap_or("");
            assert!(
                sums.contains(md5),
                "{line}: none of ffmpeg's framemd5 checksums"
            );
        }
    }
}
