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
