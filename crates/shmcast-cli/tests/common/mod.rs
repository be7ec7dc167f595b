//! What the CLI tests share: the binary, unique names, checksums, and a
//! `serve` that has started.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// The `shmcast` binary under test.
pub fn shmcast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmcast"))
}

/// A segment name no other test (or test run) uses.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "cli-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The MD5 of `bytes`, in lower-case hex, as `shmcast read --md5` prints it.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `shmcast serve NAME ARGS...`, once it has said that it serves.
pub fn start_serve(name: &str, args: &[&str]) -> Child {
    let mut child = shmcast()
        .args(["serve", name])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("serving "), "serve said {line:?}");
    child
}

/// Kills its child when dropped, so a failing test leaves no process
/// behind.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Channel `name` as `shmcast info --json` shows it (no fps: that waits a
/// second); `None` when it cannot be opened.
pub fn channel(name: &str) -> Option<serde_json::Value> {
    let out = shmcast()
        .args(["info", name, "--json", "--fps-over", "0"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    // A missing channel is {"health": "missing"}, with no "channel".
    Some(v["channel"].clone()).filter(|c| !c.is_null())
}

/// Polls `info` every `every` until `ok` holds for the channel, failing
/// after `limit`; the channel's state then.
pub fn until(
    name: &str,
    what: &str,
    limit: std::time::Duration,
    every: std::time::Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(c) = channel(name).filter(|c| ok(c)) {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: never {what}: {:?}",
            channel(name)
        );
        std::thread::sleep(every);
    }
}
