//! What a foreground `serve` shows: on a terminal, one line per channel,
//! redrawn every second (fps, frame, leasing readers, dropped frames, the
//! source's state), with log lines printed above it; otherwise (a service,
//! a pipe, a file) plain log lines only.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use shmcast::Name;

use crate::watch::Last;

struct Board {
    /// The channels shown, and for each its last frame number and when.
    rows: Vec<(Name, Last)>,
    /// The lines drawn last time (to move back over them).
    drawn: usize,
    lines: Vec<String>,
}

static BOARD: OnceLock<Mutex<Board>> = OnceLock::new();
static RUNNING: AtomicBool = AtomicBool::new(false);

fn board() -> std::sync::MutexGuard<'static, Board> {
    BOARD
        .get_or_init(|| {
            Mutex::new(Board {
                rows: Vec::new(),
                drawn: 0,
                lines: Vec::new(),
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Prints a log line: above the status lines on a terminal, else as is
/// (or into the log file, see [`crate::log::to_file`]). Lines are made by
/// [`crate::log`].
pub fn log(line: impl AsRef<str>) {
    if crate::log::to_sink(line.as_ref()) {
        return;
    }
    let mut b = board();
    let mut err = std::io::stderr().lock();
    if b.drawn > 0 {
        // Back over the status lines, clear them, then the log line, then
        // the status lines again.
        let _ = write!(err, "\x1b[{}F\x1b[J", b.drawn);
        let _ = writeln!(err, "{}", line.as_ref());
        for l in &b.lines {
            let _ = writeln!(err, "{l}");
        }
    } else {
        let _ = writeln!(err, "{}", line.as_ref());
    }
    drop(err);
    b.drawn = if b.drawn > 0 { b.lines.len() } else { 0 };
}

/// Shows `names` on a status board, if stderr is a terminal.
pub fn show(names: &[Name]) {
    if !std::io::stderr().is_terminal() || RUNNING.swap(true, Ordering::SeqCst) {
        return;
    }
    board().rows = names.iter().map(|n| (n.clone(), None)).collect();
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_secs(1));
        redraw();
    });
}

fn redraw() {
    let mut b = board();
    let mut lines = Vec::new();
    for (name, last) in &mut b.rows {
        lines.push(row(name, last));
    }
    let mut err = std::io::stderr().lock();
    if b.drawn > 0 {
        let _ = write!(err, "\x1b[{}F", b.drawn);
    }
    for l in &lines {
        let _ = writeln!(err, "\x1b[2K{l}");
    }
    let _ = err.flush();
    drop(err);
    b.drawn = lines.len();
    b.lines = lines;
}

/// One channel's line: `cam1  30.0 fps  frame 1234  leasers 1  dropped 0  live`.
fn row(name: &Name, last: &mut Last) -> String {
    let (c, fps) = match crate::watch::sample(name, last) {
        Ok(sampled) => sampled,
        Err(e) => return format!("{name:<20} {}", crate::watch::unseen(&e, "not created yet")),
    };
    let state = match (&c.publisher, &c.stall_reason) {
        (None, _) => "no publisher".to_owned(),
        (Some(_), Some(reason)) => format!("stalled: {reason}"),
        (Some(_), None) if c.latest_frame == 0 => "waiting for frames".to_owned(),
        (Some(_), None) => "publishing".to_owned(),
    };
    format!(
        "{:<20} {fps:6.1} fps  frame {:<8} leasers {:<3} dropped {:<6} {state}",
        name.to_string(),
        c.latest_frame,
        c.subscribers.unwrap_or(0),
        c.dropped_frames,
    )
}
