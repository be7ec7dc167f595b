//! Child processes: every writer and reader is this binary again, started
//! as `shmcast-bench role NAME ARGS...`. A child prints `ready ...` when set
//! up, waits for a line on stdin before a writer starts its clock, and prints
//! one JSON line with its results at the end. Closing a reader's stdin tells
//! it to finish.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Proc {
    /// Starts `role`: this binary again, or a reader in another language
    /// (see [`external`]).
    pub fn spawn(role: &str, args: &[String]) -> Proc {
        let mut command = match external(role) {
            Some(program) => {
                let mut command = Command::new(&program[0]);
                command.args(&program[1..]);
                command
            }
            None => {
                let mut own = Command::new(std::env::current_exe().expect("own path"));
                own.arg("role").arg(role);
                own
            }
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a benchmark process");
        let out = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        Proc { child, stdin, out }
    }

    /// The next line the child prints (without the newline).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .expect("read a child's stdout");
        assert!(!line.is_empty(), "a benchmark process ended early");
        line.trim_end().to_owned()
    }

    /// Waits for `ready`; returns what follows it.
    pub fn ready(&mut self) -> String {
        let line = self.line();
        line.strip_prefix("ready")
            .unwrap_or_else(|| panic!("expected ready, got {line:?}"))
            .trim()
            .to_owned()
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        let _ = writeln!(stdin, "go");
        let _ = stdin.flush();
    }

    pub fn stop(&mut self) {
        self.stdin = None;
    }

    /// The child's closing JSON line.
    pub fn result(mut self) -> serde_json::Value {
        let line = self.line();
        let _ = self.child.wait();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad result {line:?}: {e}"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The readers in other languages that `scripts/bench` prepares, and the
/// command line that starts each: `c-reader` (the C ABI, `bench/c_reader.c`,
/// from `SHMCAST_BENCH_C_READER`), `py-reader` (the Python wheel,
/// `bench/py_reader.py` run by `SHMCAST_BENCH_PYTHON`) and `cs-reader` (the
/// C# binding, `bench/cs_reader.cs` compiled by mcs, run by mono, from
/// `SHMCAST_BENCH_CS_READER`). `None` when not prepared.
pub fn external(role: &str) -> Option<Vec<std::ffi::OsString>> {
    let var = |name: &str| std::env::var_os(name).filter(|p| std::path::Path::new(p).exists());
    match role {
        "c-reader" => Some(vec![var("SHMCAST_BENCH_C_READER")?]),
        "py-reader" => Some(vec![
            var("SHMCAST_BENCH_PYTHON")?,
            var("SHMCAST_BENCH_PY_READER")?,
        ]),
        "cs-reader" => Some(vec!["mono".into(), var("SHMCAST_BENCH_CS_READER")?]),
        _ => None,
    }
}

/// For children: wait for the parent's `go`.
pub fn wait_go() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// For children: a flag set when the parent closes our stdin.
pub fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        set.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    flag
}

pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Child processes started with `Command` (the bridge's exporter and
/// importer), killed and reaped when dropped: on a case's normal end and
/// while a failing case unwinds.
pub struct Guard(pub Vec<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The processes whose parent is this one (Linux: from /proc).
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command's closing parenthesis: state, then ppid.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(me)
        })
        .collect()
}
