//! `shmcast watch [NAME...]`: channels at a glance, live. On a terminal a
//! screen that refreshes in place every second until q or Ctrl-C; without
//! one (a pipe, a log), one line per channel per second until interrupted.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use shmcast::{Kind, Name};

/// What one channel showed last time: its frame number and when.
pub type Last = Option<(u64, Instant)>;

/// Channel `name`'s state now, and its frame rate since `last` (0 the
/// first time), which it updates. Shared by `watch` and `serve`'s status
/// line.
///
/// # Errors
/// Why the channel cannot be looked at: none of the name
/// ([`NotFound`](shmcast::ErrorKind::NotFound)), or one this user may not
/// read, or a corrupt one, which [`unseen`] says as `info` would.
pub fn sample(
    name: &Name,
    last: &mut Last,
) -> Result<(shmcast::ChannelStatus, f64), shmcast::Error> {
    let c = shmcast::inspect_channel(name)?;
    let now = Instant::now();
    let fps = match *last {
        Some((frame, at)) if now > at => {
            c.latest_frame.saturating_sub(frame) as f64 / now.duration_since(at).as_secs_f64()
        }
        _ => 0.0,
    };
    *last = Some((c.latest_frame, now));
    Ok((c, fps))
}

/// What a row shows for a channel that [`sample`] could not look at:
/// `missing` when there is none of the name, otherwise why (permission
/// denied, corrupt, not a channel...), in `info`'s words.
pub fn unseen(e: &shmcast::Error, missing: &str) -> String {
    if e.kind() == shmcast::ErrorKind::NotFound {
        format!("({missing})")
    } else {
        crate::one_line(e)
    }
}

/// One channel's line.
fn row(name: &Name, last: &mut Last) -> String {
    let (c, fps) = match sample(name, last) {
        Ok(sampled) => sampled,
        Err(e) => return format!("{:<28} {}", name.to_string(), unseen(&e, "no such channel")),
    };
    let unix_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let age_ms = unix_ns.saturating_sub(c.last_publish_ns) as f64 / 1e6;
    let health = match (&c.publisher, &c.stall_reason) {
        (None, _) => "gone".to_owned(),
        (Some(p), _) if !p.alive => "gone (publisher died)".to_owned(),
        (Some(_), Some(reason)) => format!("stalled: {reason}"),
        (Some(_), None) if age_ms > 2000.0 => format!("stalled: nothing for {:.1}s", age_ms / 1e3),
        (Some(_), None) => "live".to_owned(),
    };
    format!(
        "{:<28} {fps:7.1} {:>9} {:>8} {:>7} {:>9.1}  {health}",
        name.to_string(),
        c.latest_frame,
        c.dropped_frames,
        c.subscribers.map_or("-".to_owned(), |n| n.to_string()),
        age_ms,
    )
}

const HEADER: &str =
    "channel                          fps    frame  dropped leasers  age (ms)  health";

/// The channels to show: those named, or every channel there is now.
fn channels(named: &[Name]) -> Vec<Name> {
    if !named.is_empty() {
        return named.to_vec();
    }
    shmcast::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|l| matches!(&l.info, Ok(i) if i.kind == Kind::Channel))
        .map(|l| l.name)
        .collect()
}

pub fn run(named: Vec<Name>) -> Result<(), String> {
    if std::io::stdout().is_terminal() {
        screen(&named)
    } else {
        lines(&named)
    }
}

/// One line per channel per second, until Ctrl-C.
fn lines(named: &[Name]) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    }
    let mut last: Vec<(Name, Last)> = Vec::new();
    let mut out = std::io::stdout();
    if writeln!(out, "{HEADER}").is_err() {
        return Ok(()); // nobody reads us (`| head`)
    }
    while !stop.load(Ordering::SeqCst) {
        refresh(named, &mut last);
        for (name, l) in &mut last {
            // Whoever reads us has gone (`| head`): so do we.
            if writeln!(out, "{}", row(name, l)).is_err() {
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// Keeps `last` in step with the channels to show.
fn refresh(named: &[Name], last: &mut Vec<(Name, Last)>) {
    let now = channels(named);
    last.retain(|(n, _)| now.contains(n));
    for n in now {
        if !last.iter().any(|(m, _)| *m == n) {
            last.push((n, None));
        }
    }
}

/// The live screen: redrawn every second, q or Ctrl-C quits.
fn screen(named: &[Name]) -> Result<(), String> {
    use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers};
    use crossterm::{cursor, execute, queue, terminal};
    terminal::enable_raw_mode().map_err(|e| format!("cannot use the terminal: {e}"))?;
    let mut out = std::io::stdout();
    let _ = execute!(out, terminal::EnterAlternateScreen, cursor::Hide);
    let mut last: Vec<(Name, Last)> = Vec::new();
    let result = loop {
        refresh(named, &mut last);
        // The whole screen is made first and written at once: looking at
        // the channels takes time, and a screen cleared before it would
        // show a header with no rows meanwhile (a flicker to the eye, and
        // what a capture of the pane caught in CI).
        let mut text = format!("shmcast watch: q quits\r\n\r\n{HEADER}\r\n");
        if last.is_empty() {
            text.push_str("(no channels)\r\n");
        }
        for (name, l) in &mut last {
            text.push_str(&row(name, l));
            text.push_str("\r\n");
        }
        let mut lock = out.lock();
        let _ = queue!(
            lock,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        );
        let _ = lock.write_all(text.as_bytes());
        let _ = lock.flush();
        drop(lock);
        // Wait out the second, answering keys meanwhile.
        let until = Instant::now() + Duration::from_secs(1);
        let mut quit = false;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match event::poll(left) {
                Ok(true) => {
                    if let Ok(Event::Key(KeyEvent {
                        code, modifiers, ..
                    })) = event::read()
                    {
                        quit = matches!(code, KeyCode::Char('q') | KeyCode::Esc)
                            || (code == KeyCode::Char('c')
                                && modifiers.contains(KeyModifiers::CONTROL));
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    quit = true;
                    eprintln!("{e}");
                }
            }
            if quit {
                break;
            }
        }
        if quit {
            break Ok(());
        }
    };
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
    result
}
