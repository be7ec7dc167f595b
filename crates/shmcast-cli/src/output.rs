//! Standard output when whoever reads it may go first (`shmcast list |
//! head -1`): a closed pipe ends what a command prints, quietly, and is no
//! failure. `println!` would panic there instead (Rust ignores SIGPIPE, so
//! the write fails rather than killing the process).

use std::io::{self, StdoutLock, Write};

/// Runs `write` on the locked standard output, then flushes it. A reader
/// that has gone is `Ok`: there is nobody left to tell anything.
///
/// # Errors
/// Any other failure to write.
pub fn print(write: impl FnOnce(&mut StdoutLock<'static>) -> io::Result<()>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if reader_gone(&e) => Ok(()),
        other => other,
    }
}

/// [`print`] for a command's result: any failure but a gone reader, said
/// in one line.
pub fn printed(written: io::Result<()>) -> Result<(), String> {
    written.map_err(|e| format!("cannot write to standard output: {e}"))
}

/// Whether a write failed because nobody reads the other end: EPIPE on
/// Linux; on Windows ERROR_BROKEN_PIPE and ERROR_NO_DATA (which std calls
/// `BrokenPipe`) or ERROR_PIPE_NOT_CONNECTED (233, which std leaves
/// uncategorised, and which a program under Wine gets from `| head`).
pub fn reader_gone(e: &io::Error) -> bool {
    const ERROR_PIPE_NOT_CONNECTED: i32 = 233;
    e.kind() == io::ErrorKind::BrokenPipe
        || (cfg!(windows) && e.raw_os_error() == Some(ERROR_PIPE_NOT_CONNECTED))
}

/// A path as its user wrote it: without the `\\?\` that canonicalize
/// puts before a drive letter (`\\?\C:\ProgramData\...`).
pub fn shown(path: &std::path::Path) -> String {
    let s = path.display().to_string();
    match s.strip_prefix(r"\\?\") {
        Some(rest) if rest.as_bytes().get(1) == Some(&b':') => rest.to_owned(),
        Some(rest) if rest.starts_with(r"UNC\") => format!(r"\\{}", &rest[4..]),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_shown_as_written() {
        let shown = |s: &str| super::shown(std::path::Path::new(s));
        assert_eq!(shown(r"\\?\Z:\data\cameras.toml"), r"Z:\data\cameras.toml");
        assert_eq!(
            shown(r"\\?\UNC\server\share\c.toml"),
            r"\\server\share\c.toml"
        );
        assert_eq!(
            shown("/etc/shmcast/cameras.toml"),
            "/etc/shmcast/cameras.toml"
        );
    }
}
