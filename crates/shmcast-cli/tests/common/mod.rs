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

/// What `child` prints on its stderr (piped), line by line as it comes.
pub fn stderr_lines(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let collected = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            collected.lock().unwrap().push(line);
        }
    });
    lines
}

/// Waits (10 s at most) for a line with `what` in `log`; the whole log.
pub fn until_logged(log: &std::sync::Mutex<Vec<String>>, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = log.lock().unwrap().join("\n");
        if text.contains(what) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what:?} in: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The quadrants frame's size: 64x48 rgb24.
pub const QUADRANTS_W: usize = 64;
pub const QUADRANTS_H: usize = 48;

/// Red, green / blue, white: a frame whose every part shows where it
/// landed on a screenshot.
pub fn quadrants() -> Vec<u8> {
    let (w, h) = (QUADRANTS_W, QUADRANTS_H);
    let mut frame = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            frame.extend_from_slice(match (x < w / 2, y < h / 2) {
                (true, true) => &[255, 0, 0],
                (false, true) => &[0, 255, 0],
                (true, false) => &[0, 0, 255],
                (false, false) => &[255, 255, 255],
            });
        }
    }
    frame
}

/// `shmcast publish NAME` with one quadrants frame written; its stdin is
/// left open, so it lives on, idle, until that is dropped or it is killed.
pub fn publish_quadrants(name: &str) -> (Kill, std::process::ChildStdin) {
    use std::io::Write;
    let mut publisher = Kill(
        shmcast()
            .args([
                "publish", name, "--width", "64", "--height", "48", "--format", "rgb24",
            ])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = publisher.0.stdin.take().unwrap();
    stdin.write_all(&quadrants()).unwrap();
    stdin.flush().unwrap();
    (publisher, stdin)
}

/// `ffmpeg ARGS...`'s stdout, or a failing test with its stderr.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("ffmpeg is needed; scripts/test installs it");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port` with extra `headers` (each ending in
/// CRLF): the status and the body; `None` if nothing answers.
pub fn http_get(port: u16, path: &str, headers: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n").ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, all[split + 4..].to_vec()))
}

/// Waits (20 s at most) until `GET path` on `port` answers.
pub fn until_http(port: u16, path: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http_get(port, path, "").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
