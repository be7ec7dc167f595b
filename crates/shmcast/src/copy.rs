//! Copying out of memory that another process may be writing right now.
//!
//! Seqlock readers (a read-only opener of a region; a subscriber copying a
//! frame) copy bytes that a writer in another process may be overwriting at
//! the same moment, and throw the copy away when the sequence counter says
//! so. A plain `memcpy` there is a data race, which Rust's memory model
//! leaves undefined even when the result is discarded: the compiler may
//! assume the source does not change under it.
//!
//! So the copy is done with relaxed atomic loads: one `AtomicU64` load per
//! aligned word and `AtomicU8` loads for the ragged ends. A relaxed load
//! racing with a store is defined behaviour (it returns some value that was
//! written), costs the same as a plain `mov` on x86-64 and AArch64, and the
//! caller's acquire fence and sequence re-check decide whether the bytes are
//! kept. The writer side writes with ordinary stores; it runs in another
//! process, outside this process's abstract machine, which is exactly the
//! situation of memory written by a device, and this is the usual way to read
//! such memory soundly.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Copies `dst.len()` bytes from `src` with relaxed atomic loads.
///
/// # Safety
/// `src..src + dst.len()` must be mapped and readable for the whole call.
/// Concurrent writes to it are allowed (that is the point); the bytes copied
/// may then be a mix of old and new, and the caller must detect that.
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = src.align_offset(8).min(len);
    let words = (len - head) / 8;
    for (i, byte) in dst[..head].iter_mut().enumerate() {
        // SAFETY: `src + i` is inside the readable range (i < head <= len);
        // AtomicU8 has alignment 1; the caller allows racing writers.
        *byte = unsafe { AtomicU8::from_ptr(src.add(i).cast_mut()) }.load(Relaxed);
    }
    for w in 0..words {
        let offset = head + w * 8;
        // SAFETY: `src + head` is 8-aligned (align_offset), so every
        // `src + offset` is too, and offset + 8 <= len keeps it in range.
        let word =
            unsafe { AtomicU64::from_ptr(src.add(offset).cast::<u64>().cast_mut()) }.load(Relaxed);
        dst[offset..offset + 8].copy_from_slice(&word.to_ne_bytes());
    }
    let tail = head + words * 8;
    for (i, byte) in dst[tail..].iter_mut().enumerate() {
        // SAFETY: as for the head: in range, alignment 1, racing allowed.
        *byte = unsafe { AtomicU8::from_ptr(src.add(tail + i).cast_mut()) }.load(Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_alignment_exactly() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 64, 100, 291 - start] {
                let mut dst = vec![0u8; len];
                // SAFETY: start + len <= src.len(), and nothing writes `src`.
                unsafe { copy_from_shared(src.as_ptr().add(start), &mut dst) };
                assert_eq!(dst, &src[start..start + len], "start {start} len {len}");
            }
        }
    }
}
