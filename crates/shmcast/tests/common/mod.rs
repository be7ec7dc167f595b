//! What the multi-process tests share: spawning this very test binary
//! again as a child in one role, talking to it through `@` lines on its
//! stdout, and killing it for real.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

pub const ROLE_VAR: &str = "SHMCAST_TEST_ROLE";

pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mp-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deterministic bytes for `seed`, so parent and child agree without
/// sending the data.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A child process running one role; killed when dropped, so that a failed
/// assertion never leaves a child behind.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<std::process::ChildStdout>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's message in a line of its stdout. The test harness prints
/// `test child_entry_point ... ` before it, without a line break.
pub fn message(line: &str) -> Option<&str> {
    line.split_once('@').map(|(_, m)| m.trim_end())
}

impl Proc {
    /// Starts this test binary as a child running `role` with `args`.
    pub fn spawn(role: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args([
                "child_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_VAR, format!("{role}\u{1f}{}", args.join("\u{1f}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stdin = child.stdin.take();
        Proc { child, stdin, out }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads the child's messages until one starts with `prefix`.
    pub fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "child ended before saying {prefix:?}");
            if let Some(m) = message(&line) {
                assert!(
                    m.starts_with(prefix),
                    "child said {m:?}, expected {prefix:?}"
                );
                return m.to_owned();
            }
        }
    }

    /// Kills the child for real (SIGKILL / TerminateProcess) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill child");
        self.child.wait().expect("reap child");
    }

    /// Closes the child's stdin: the signal to stop for roles that run
    /// until told.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes the child's stdin (its signal to stop) and waits for it to
    /// end, failing the test if it is still running at `deadline` (a hang).
    pub fn stop_by(
        mut self,
        deadline: std::time::Instant,
        what: &str,
    ) -> (Vec<String>, ExitStatus) {
        self.close_stdin();
        while self.child.try_wait().expect("wait child").is_none() {
            assert!(std::time::Instant::now() < deadline, "{what} hangs");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.finish()
    }

    /// Waits for the child to end; its remaining messages and exit status.
    pub fn finish(mut self) -> (Vec<String>, ExitStatus) {
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let status = self.child.wait().expect("wait child");
        let lines = rest
            .lines()
            .filter_map(message)
            .map(str::to_owned)
            .collect();
        (lines, status)
    }
}

/// Runs a role to completion.
pub fn run(role: &str, args: &[&str]) -> (Vec<String>, ExitStatus) {
    Proc::spawn(role, args).finish()
}

/// Writes a message line for the parent.
pub fn say(line: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@{}", line.as_ref());
    let _ = out.flush();
}

/// The role and arguments this process was started with, if it is a child.
pub fn role() -> Option<(String, Vec<String>)> {
    let spec = std::env::var(ROLE_VAR).ok()?;
    let mut parts = spec.split('\u{1f}').map(str::to_owned);
    let role = parts.next()?;
    Some((role, parts.filter(|a| !a.is_empty()).collect()))
}

/// Asserts that a child died writing where it may not: SIGSEGV on Linux,
/// an access violation on Windows.
#[cfg(unix)]
pub fn assert_crashed_on_access(status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(11),
        "expected SIGSEGV, got {status:?}"
    );
}

/// Asserts that a child died writing where it may not: SIGSEGV on Linux,
/// an access violation on Windows.
#[cfg(windows)]
pub fn assert_crashed_on_access(status: ExitStatus) {
    const STATUS_ACCESS_VIOLATION: u32 = 0xC000_0005;
    assert_eq!(
        status.code().map(|c| c as u32),
        Some(STATUS_ACCESS_VIOLATION),
        "expected an access violation, got {status:?}"
    );
}

/// A flag set once the parent closes our stdin (its signal to stop), for
/// child roles that run until told.
pub fn stdin_closed_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        set.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    flag
}

/// Word `i` of frame `number`: every frame's bytes follow from its number,
/// so any process can check any frame it gets, whole.
pub fn frame_word(number: u64, i: usize) -> u64 {
    number.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Fills `buf` with frame `number`'s bytes.
pub fn fill(number: u64, buf: &mut [u8]) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&frame_word(number, i).to_ne_bytes()[..chunk.len()]);
    }
}

/// Whether `bytes` are exactly (a prefix of) frame `number`.
pub fn is_frame(number: u64, bytes: &[u8]) -> bool {
    bytes
        .chunks(8)
        .enumerate()
        .all(|(i, chunk)| chunk == &frame_word(number, i).to_ne_bytes()[..chunk.len()])
}

/// The access a reader role's `mode` asks for: "lease" leases, every other
/// mode ("copy", "inplace") reads without writing anything.
pub fn access_for(mode: &str) -> shmcast::Access {
    if mode == "lease" {
        shmcast::Access::Leasing
    } else {
        shmcast::Access::ReadOnly
    }
}

/// One read of the latest frame the way `mode` says: "lease" (held, then
/// released), "inplace" (`read_in_place`), otherwise a copy into `buf`.
/// `is_whole(number, bytes)` judges the bytes; the result is the frame's
/// number and that judgement. `Ok(None)`: no frame yet, or a revoked lease
/// (what was read is known bad and not used). Errors are the caller's to
/// judge.
pub fn read_checked(
    sub: &mut shmcast::Subscriber,
    mode: &str,
    buf: &mut [u8],
    is_whole: impl Fn(u64, &[u8]) -> bool,
) -> Result<Option<(u64, bool)>, shmcast::Error> {
    // A frame's metadata, when it has any, must be its own.
    let own =
        |number: u64, metadata: &[u8]| metadata.is_empty() || metadata == frame_metadata(number);
    let mut metadata = Vec::new();
    Ok(match mode {
        "lease" => sub.lease_latest()?.and_then(|lease| {
            let number = lease.info().number;
            let whole = is_whole(number, &lease.bytes().to_vec());
            let got = (number, whole && own(number, &lease.metadata().to_vec()));
            lease.release().is_ok().then_some(got)
        }),
        "inplace" => sub
            .read_in_place(|info, bytes| is_whole(info.number, &bytes.to_vec()))?
            .map(|(info, whole)| (info.number, whole)),
        _ => sub
            .read_latest_with_metadata(buf, &mut metadata)?
            .map(|info| {
                let whole = is_whole(info.number, &buf[..info.len]);
                (info.number, whole && own(info.number, &metadata))
            }),
    })
}

/// The metadata the chaos publishers give frame `number`: its number,
/// repeated to a length that changes with it (1 to 32 copies), so that one
/// frame's metadata read with another's pixels shows.
pub fn frame_metadata(number: u64) -> Vec<u8> {
    number.to_le_bytes().repeat(1 + (number % 32) as usize)
}

/// The most metadata [`frame_metadata`] gives.
pub const FRAME_METADATA_MAX: usize = 8 * 32;
