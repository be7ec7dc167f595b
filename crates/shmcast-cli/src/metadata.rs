//! Per-frame metadata on the command line: `publish --metadata FILE` and
//! `serve --source stdin --metadata FILE` read it, `read --metadata-out
//! FILE` writes it, as a stream of records, one per frame, in step with
//! the frames:
//!
//! ```text
//! length   4 bytes, little-endian (0: this frame has none)
//! bytes    `length` bytes
//! ```
//!
//! A regular file or a named pipe (a producer writes each frame to stdin
//! and its metadata to the pipe). Lengths come from outside: one above the
//! channel's limit is an error that names both, never an allocation of
//! what the length says.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

/// Reads records from a file or pipe.
pub struct Records {
    input: BufReader<File>,
    max: usize,
    ended: bool,
}

impl Records {
    /// Opens `path` (a named pipe waits here for its writer) for records
    /// of at most `max` bytes.
    pub fn open(path: &Path, max: usize) -> io::Result<Records> {
        Ok(Records {
            input: BufReader::new(File::open(path)?),
            max,
            ended: false,
        })
    }

    /// The next record into `out`; `Ok(false)` once the input has ended
    /// (at a record's boundary: a record cut short is an error).
    pub fn next(&mut self, out: &mut Vec<u8>) -> Result<bool, String> {
        out.clear();
        if self.ended {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        match crate::serve::read_full(&mut self.input, &mut len) {
            Ok(0) => {
                self.ended = true;
                return Ok(false);
            }
            Ok(4) => {}
            Ok(n) => return Err(format!("a record's length is cut short ({n} of 4 bytes)")),
            Err(e) => return Err(e.to_string()),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max {
            return Err(format!(
                "a record of {len} bytes; frames carry at most {} (--max-metadata)",
                self.max
            ));
        }
        out.resize(len, 0);
        match crate::serve::read_full(&mut self.input, out) {
            Ok(n) if n == len => Ok(true),
            Ok(n) => Err(format!("a record of {len} bytes ends after {n}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Appends records to a file or pipe.
pub struct Writer {
    out: BufWriter<File>,
}

impl Writer {
    /// Opens `path` to append to (created when missing).
    pub fn create(path: &Path) -> io::Result<Writer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Writer {
            out: BufWriter::new(file),
        })
    }

    /// Writes one record and flushes it (a reader of the pipe sees each
    /// frame's as it comes).
    pub fn write(&mut self, record: &[u8]) -> io::Result<()> {
        // At most MAX_METADATA_LEN bytes: a frame's metadata.
        self.out.write_all(&(record.len() as u32).to_le_bytes())?;
        self.out.write_all(record)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_errors() {
        let dir = std::env::temp_dir().join(format!("shmcast-records-{}", std::process::id()));
        let mut w = Writer::create(&dir).unwrap();
        for r in [&b"one"[..], b"", b"three"] {
            w.write(r).unwrap();
        }
        drop(w);
        let mut r = Records::open(&dir, 5).unwrap();
        let mut got = Vec::new();
        let mut all = Vec::new();
        while r.next(&mut got).unwrap() {
            all.push(got.clone());
        }
        assert_eq!(all, [b"one".to_vec(), Vec::new(), b"three".to_vec()]);
        // Too long for the channel.
        let mut r = Records::open(&dir, 2).unwrap();
        assert!(r.next(&mut got).unwrap_err().contains("at most 2"));
        // Cut short.
        std::fs::write(&dir, [9, 0, 0, 0, 1, 2]).unwrap();
        let mut r = Records::open(&dir, 64).unwrap();
        assert!(r.next(&mut got).unwrap_err().contains("ends after 2"));
        std::fs::write(&dir, [9, 0]).unwrap();
        let mut r = Records::open(&dir, 64).unwrap();
        assert!(r.next(&mut got).unwrap_err().contains("cut short"));
        let _ = std::fs::remove_file(&dir);
    }
}
