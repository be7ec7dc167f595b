//! One line per event, in the shape log collectors and people both read:
//!
//! ```text
//! 2026-12-02T19:10:00.123Z info  [cam] ffmpeg started (pid 4242)
//! ```
//!
//! the time (RFC 3339, UTC, milliseconds), the level, the channel when the
//! event is one channel's, and the message. Under systemd, whose journal
//! stamps every line itself, stderr is the stream `JOURNAL_STREAM` names:
//! there the line is `<6>[cam] ffmpeg started (pid 4242)`, the `<N>` being
//! the syslog priority journald files it under (3 error, 4 warning, 6
//! info), and no time of our own.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn ",
            Level::Info => "info ",
        }
    }

    /// The syslog priority journald reads from a `<N>` prefix.
    fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
        }
    }
}

/// How lines are written: stamped by us, or for the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Stamped,
    Journal,
}

/// The style for this process: `Journal` when stderr is the journal's
/// stream (`JOURNAL_STREAM` is `DEVICE:INODE` of that socket, and a
/// redirected stderr no longer matches it).
pub fn style() -> Style {
    static STYLE: OnceLock<Style> = OnceLock::new();
    *STYLE.get_or_init(|| {
        if stderr_is_journal() {
            Style::Journal
        } else {
            Style::Stamped
        }
    })
}

#[cfg(unix)]
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()),
        Err(_) => false,
    }
}

#[cfg(not(unix))]
fn stderr_is_journal() -> bool {
    false
}

/// One event as a line (without the newline).
pub fn line(
    style: Style,
    at: SystemTime,
    level: Level,
    channel: Option<&str>,
    message: &str,
) -> String {
    let channel = channel.map_or(String::new(), |c| format!("[{c}] "));
    match style {
        Style::Stamped => format!("{} {} {channel}{message}", rfc3339(at), level.word()),
        Style::Journal => format!("<{}>{channel}{message}", level.priority()),
    }
}

/// Logs one event now (above the status board on a terminal). `channel`
/// is the channel it is about, or `""` for the whole process.
pub fn event(level: Level, channel: impl Display, message: impl AsRef<str>) {
    let channel = channel.to_string();
    let channel = (!channel.is_empty()).then_some(channel.as_str());
    crate::status::log(line(
        style(),
        SystemTime::now(),
        level,
        channel,
        message.as_ref(),
    ));
}

/// Logs an event that an operator should see without reading the log:
/// a start or stop, a reload, a stall, a recovery, a channel's error. The
/// Windows service also reports these to the Event Log (`eventlog.rs`).
pub fn notable(level: Level, channel: impl Display, message: impl AsRef<str>) {
    let channel = channel.to_string();
    #[cfg(windows)]
    crate::eventlog::report(
        level,
        &if channel.is_empty() {
            message.as_ref().to_owned()
        } else {
            format!("[{channel}] {}", message.as_ref())
        },
    );
    event(level, channel, message);
}

pub fn info(channel: impl Display, message: impl AsRef<str>) {
    event(Level::Info, channel, message);
}

pub fn warn(channel: impl Display, message: impl AsRef<str>) {
    event(Level::Warn, channel, message);
}

pub fn error(channel: impl Display, message: impl AsRef<str>) {
    event(Level::Error, channel, message);
}

/// Where lines go instead of stderr, once [`to_file`] is called.
static FILE: Mutex<Option<Rotating>> = Mutex::new(None);

/// Sends every line from now on to `path`, rotated at `max_bytes`: the
/// full file becomes `path.1`, `path.1` becomes `path.2`, and so on up to
/// `path.KEEP`, the oldest, which goes. For a process with no console (the
/// Windows service).
#[cfg_attr(not(windows), allow(dead_code))]
pub fn to_file(path: &Path, max_bytes: u64, keep: u32) -> io::Result<()> {
    let file = Rotating::open(path, max_bytes, keep)?;
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    Ok(())
}

/// Writes `line` to the file of [`to_file`]: false if there is none.
pub fn to_sink(line: &str) -> bool {
    match FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(file) => {
            file.write_line(line);
            true
        }
        None => false,
    }
}

/// A log file that is rotated by size.
pub struct Rotating {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    len: u64,
}

impl Rotating {
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Rotating> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            file: Some(file),
            len,
        })
    }

    /// Appends `line` and a newline, rotating first if it would not fit.
    /// A line is never split; one longer than the limit gets a file of its
    /// own. Failures are dropped: a log must not stop the service.
    pub fn write_line(&mut self, line: &str) {
        let add = line.len() as u64 + 1;
        if self.len > 0 && self.len + add > self.max_bytes {
            self.rotate();
        }
        if self.file.is_none() {
            // A reopen that failed (a full disk, a locked file): try again.
            self.reopen(false);
        }
        if let Some(file) = self.file.as_mut() {
            if writeln!(file, "{line}").is_ok() {
                self.len += add;
            }
        }
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) {
        self.file = None; // closed first: Windows renames no open file
        let moved = if self.keep == 0 {
            std::fs::remove_file(&self.path).is_ok()
        } else {
            let _ = std::fs::remove_file(self.numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
            }
            std::fs::rename(&self.path, self.numbered(1)).is_ok()
        };
        // A log that could not be moved aside (someone has it open without
        // sharing delete, on Windows) is appended to, not emptied; the next
        // line tries the rotation again.
        self.reopen(moved);
    }

    fn reopen(&mut self, fresh: bool) {
        let mut options = OpenOptions::new();
        options.create(true);
        if fresh {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        self.file = options.open(&self.path).ok();
        self.len = match (&self.file, fresh) {
            (Some(_), true) => 0,
            (Some(f), false) => f.metadata().map_or(0, |m| m.len()),
            (None, _) => 0,
        };
    }
}

/// `2026-12-02T19:10:00.123Z`: UTC, so that lines from machines in
/// different time zones sort together.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The calendar date of a count of days since 1970-01-01 (proleptic
/// Gregorian): eras of 400 years, each 146097 days, counted from March
/// so that the leap day ends a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A failure that repeats (a camera that is not there, every few seconds)
/// is said once; the next different event says how often it happened.
#[derive(Default)]
pub struct Repeats {
    last: Option<String>,
    count: u64,
}

impl Repeats {
    /// A failure: `Some(line to say)` the first time, `None` while it
    /// repeats.
    pub fn failed(&mut self, what: &str) -> Option<String> {
        if self.last.as_deref() == Some(what) {
            self.count += 1;
            return None;
        }
        let before = self.summary();
        self.last = Some(what.to_owned());
        self.count = 1;
        Some(match before {
            Some(before) => format!("{what} (before it: {before})"),
            None => what.to_owned(),
        })
    }

    /// Whether a failure is repeating now.
    pub fn failing(&self) -> bool {
        self.last.is_some()
    }

    /// It works again: `Some(what failed, and how often)` if it had failed.
    pub fn recovered(&mut self) -> Option<String> {
        let summary = self.summary();
        self.last = None;
        self.count = 0;
        summary
    }

    fn summary(&self) -> Option<String> {
        let last = self.last.as_ref()?;
        Some(match self.count {
            1 => format!("\"{last}\" once"),
            n => format!("\"{last}\" {n} times"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 7)), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(at(1_796_238_245, 999)), "2026-12-02T19:04:05.999Z");
        assert_eq!(rfc3339(at(4_107_542_399, 0)), "2100-02-28T23:59:59.000Z");
        assert_eq!(rfc3339(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn a_line_has_time_level_channel_message() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_238_245);
        let cam = Some("cam");
        assert_eq!(
            line(Style::Stamped, at, Level::Warn, cam, "stalled"),
            "2026-12-02T19:04:05.000Z warn  [cam] stalled"
        );
        assert_eq!(
            line(Style::Stamped, at, Level::Info, None, "serving 2 channels"),
            "2026-12-02T19:04:05.000Z info  serving 2 channels"
        );
        assert_eq!(
            line(Style::Journal, at, Level::Error, cam, "gone"),
            "<3>[cam] gone"
        );
    }

    #[test]
    fn the_file_is_rotated_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("shmcast-log-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cameras.toml.log");
        let mut log = Rotating::open(&path, 100, 2).unwrap();
        for i in 0..12 {
            // 20 bytes with the newline: five lines to a file
            log.write_line(&format!("line {i:02} of the log."));
        }
        drop(log);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let first = |p: &Path| read(p).lines().next().unwrap().to_owned();
        assert_eq!(first(&path), "line 10 of the log.");
        assert_eq!(
            first(&dir.join("cameras.toml.log.1")),
            "line 05 of the log."
        );
        assert_eq!(read(&dir.join("cameras.toml.log.1")).len(), 100);
        assert_eq!(
            first(&dir.join("cameras.toml.log.2")),
            "line 00 of the log."
        );
        assert!(!dir.join("cameras.toml.log.3").exists(), "keeps 2");
        // Reopened, it goes on from the size it has.
        let mut log = Rotating::open(&path, 100, 2).unwrap();
        for i in 12..16 {
            log.write_line(&format!("line {i:02} of the log."));
        }
        drop(log);
        assert_eq!(first(&path), "line 15 of the log.");
        assert_eq!(
            first(&dir.join("cameras.toml.log.2")),
            "line 05 of the log."
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_repeated_failure_is_said_once_then_counted() {
        let mut r = Repeats::default();
        assert_eq!(r.failed("no camera").as_deref(), Some("no camera"));
        assert_eq!(r.failed("no camera"), None);
        assert_eq!(r.failed("no camera"), None);
        assert_eq!(
            r.failed("ffmpeg ended").as_deref(),
            Some("ffmpeg ended (before it: \"no camera\" 3 times)")
        );
        assert_eq!(r.recovered().as_deref(), Some("\"ffmpeg ended\" once"));
        assert_eq!(r.recovered(), None);
        assert!(!r.failing());
    }
}
