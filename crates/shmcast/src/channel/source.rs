//! What the publisher says about its source: whether it delivers, and if
//! not, why ("ffmpeg exited: /dev/video0: No such device"), so that readers
//! of a channel whose publisher lives but sends nothing can tell a user
//! more than "stalled".
//!
//! The words live in the channel's header page at [`STATUS_OFFSET`], past
//! the channel header, in bytes that were always zero before (zero reads as
//! "delivering, nothing said"), so channels of this layout version written
//! by builds without it read the same. Only the publisher writes them, under
//! a seqlock; readers copy them, check the sequence, clamp the length, and
//! decode the text leniently: whatever a peer writes there yields at worst
//! a garbled reason, never a fault.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::*};

use crate::seqlock;

/// Where the status words start in the header page.
pub(crate) const STATUS_OFFSET: usize = 1024;
/// The longest reason kept, in bytes (longer ones are cut at a character
/// boundary).
pub(crate) const REASON_MAX: usize = 240;

#[repr(C)]
pub(crate) struct SourceStatus {
    /// Odd while the publisher rewrites the fields below.
    seq: AtomicU64,
    /// 1: the source is stalled; 0: it delivers (or nothing was said).
    stalled: AtomicU32,
    /// Bytes of `reason` in use.
    reason_len: AtomicU32,
    /// UTF-8, not terminated.
    reason: [AtomicU8; REASON_MAX],
}

const _: () = assert!(
    crate::header::COMMON_LEN + std::mem::size_of::<super::layout::ChannelHeader>()
        <= STATUS_OFFSET
);
const _: () =
    assert!(STATUS_OFFSET + std::mem::size_of::<SourceStatus>() <= crate::header::HEADER_LEN);

impl SourceStatus {
    /// Says the source is stalled for `reason` (`Some`), or delivers
    /// again (`None`). Publisher only.
    pub(crate) fn set(&self, reason: Option<&str>) {
        let text = reason.map_or("", |r| cut(r, REASON_MAX));
        let begun = seqlock::write_begin(&self.seq);
        for (cell, byte) in self.reason.iter().zip(text.bytes()) {
            cell.store(byte, Relaxed);
        }
        self.reason_len.store(text.len() as u32, Relaxed);
        self.stalled.store(u32::from(reason.is_some()), Relaxed);
        seqlock::write_end(&self.seq, begun);
    }

    /// The stated reason if the publisher says its source is stalled.
    /// `None`: delivering, nothing said, or the words kept changing (then
    /// the caller's other signs, such as the time since the last frame,
    /// decide).
    pub(crate) fn get(&self) -> Option<String> {
        let (stalled, bytes) = seqlock::read(&self.seq, 16, || {
            let stalled = self.stalled.load(Relaxed) == 1;
            let len = (self.reason_len.load(Relaxed) as usize).min(REASON_MAX);
            let bytes: Vec<u8> = self.reason[..len].iter().map(|b| b.load(Relaxed)).collect();
            (stalled, bytes)
        })?;
        stalled.then(|| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<SourceStatus> {
        // SAFETY: every field is an atomic integer, valid when zero.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn a_reason_round_trips_and_clears() {
        let s = zeroed();
        assert_eq!(s.get(), None);
        s.set(Some("ffmpeg exited with status 1"));
        assert_eq!(s.get().as_deref(), Some("ffmpeg exited with status 1"));
        s.set(None);
        assert_eq!(s.get(), None);
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let s = zeroed();
        let long = "é".repeat(200);
        s.set(Some(&long));
        let got = s.get().unwrap();
        assert!(got.len() <= REASON_MAX && long.starts_with(&got));
    }

    #[test]
    fn scribbled_words_give_at_worst_a_garbled_reason() {
        let s = zeroed();
        s.stalled.store(1, Relaxed);
        s.reason_len.store(u32::MAX, Relaxed);
        for b in &s.reason {
            b.store(0xFF, Relaxed);
        }
        let got = s.get().unwrap();
        assert!(got.chars().count() <= REASON_MAX);
        s.seq.store(7, Relaxed); // stuck odd: a writer that died mid-rewrite
        assert_eq!(s.get(), None);
    }
}
