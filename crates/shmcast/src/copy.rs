//! Copying out of memory that another process may be writing right now.
//!
//! Seqlock readers (a read-only opener of a region; a subscriber copying a
//! frame) copy bytes that a writer in another process may be overwriting at
//! the same moment, and throw the copy away when the sequence counter says
//! so. A plain `memcpy` there is a data race, which Rust's memory model
//! leaves undefined even when the result is discarded: the compiler may
//! assume the source does not change under it.
//!
//! Everywhere, the copy can be done with relaxed atomic loads: one `AtomicU64`
//! load per aligned word and `AtomicU8` loads for the ragged ends. A relaxed
//! load racing with a store is defined behaviour (it returns some value that
//! was written), costs the same as a plain `mov`, and the caller's acquire
//! fence and sequence re-check decide whether the bytes are kept. The writer
//! side writes with ordinary stores; it runs in another process, outside
//! this process's abstract machine, which is exactly the situation of memory
//! written by a device.
//!
//! On x86-64 the aligned middle is read instead with volatile 64-byte loads
//! (four SSE2 registers). Word-sized atomics cannot be vectorised, and on a
//! 6 MB frame that costs about a quarter of the copy rate in cache (46 vs
//! 56-62 GB/s measured here). A volatile load is never elided, merged or
//! invented, and x86-64 has no load that faults or misbehaves on memory
//! being written concurrently: the worst it returns is a mix of old and new
//! bytes, which the seqlock re-check throws away. This is the accepted way
//! to read memory that something outside the program writes (the same
//! argument as for device memory); the atomic path stays the reference
//! everywhere else.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Copies `dst.len()` bytes from `src`, tolerating concurrent writers.
///
/// # Safety
/// `src..src + dst.len()` must be mapped and readable for the whole call.
/// Concurrent writes to it are allowed (that is the point); the bytes copied
/// may then be a mix of old and new, and the caller must detect that.
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        let len = dst.len();
        let head = src.align_offset(64).min(len);
        let blocks = (len - head) / 64;
        let tail = head + blocks * 64;
        // The three ranges [0, head), [head, tail), [tail, len) partition
        // the caller's readable range.
        // SAFETY: [0, head) of the caller's range, copied to as many bytes.
        unsafe { copy_atomic(src, &mut dst[..head]) };
        // SAFETY: [head, tail): `src + head` is 64-aligned and `blocks`
        // whole blocks end at `tail`; `dst` has tail - head bytes there.
        unsafe {
            copy_blocks_volatile(src.wrapping_add(head), dst[head..tail].as_mut_ptr(), blocks)
        };
        // SAFETY: [tail, len) of the caller's range.
        unsafe { copy_atomic(src.wrapping_add(tail), &mut dst[tail..]) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller's contract is `copy_atomic`'s.
    unsafe {
        copy_atomic(src, dst)
    }
}

/// Whole 64-byte blocks with volatile vector loads (x86-64 only).
///
/// # Safety
/// `src` is 64-aligned; `blocks * 64` bytes from `src` are readable and
/// from `dst` writable; the ranges do not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_blocks_volatile(src: *const u8, dst: *mut u8, blocks: usize) {
    use std::arch::x86_64::__m128i;
    let src = src.cast::<[__m128i; 4]>();
    let dst = dst.cast::<[__m128i; 4]>();
    for i in 0..blocks {
        // SAFETY: block `i` is inside the source range (caller), and `src`
        // is 64-aligned, so the load is aligned.
        let block = unsafe { src.wrapping_add(i).read_volatile() };
        // SAFETY: block `i` is inside the destination range (caller); `dst`
        // may not be aligned, hence write_unaligned.
        unsafe { dst.wrapping_add(i).write_unaligned(block) };
    }
}

/// Relaxed atomic loads: a word at a time, single bytes at the ends.
///
/// # Safety
/// As [`copy_from_shared`].
unsafe fn copy_atomic(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = src.align_offset(8).min(len);
    let words = (len - head) / 8;
    for (i, byte) in dst[..head].iter_mut().enumerate() {
        // SAFETY: `src + i` is inside the readable range (i < head <= len);
        // AtomicU8 has alignment 1; the caller allows racing writers.
        *byte = unsafe { AtomicU8::from_ptr(src.wrapping_add(i).cast_mut()) }.load(Relaxed);
    }
    for w in 0..words {
        let offset = head + w * 8;
        // SAFETY: `src + head` is 8-aligned (align_offset), so every
        // `src + offset` is too, and offset + 8 <= len keeps it in range.
        let word =
            unsafe { AtomicU64::from_ptr(src.wrapping_add(offset).cast::<u64>().cast_mut()) }
                .load(Relaxed);
        dst[offset..offset + 8].copy_from_slice(&word.to_ne_bytes());
    }
    let tail = head + words * 8;
    for (i, byte) in dst[tail..].iter_mut().enumerate() {
        // SAFETY: as for the head: in range, alignment 1, racing allowed.
        *byte = unsafe { AtomicU8::from_ptr(src.wrapping_add(tail + i).cast_mut()) }.load(Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_alignment_exactly() {
        let src: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3 + i / 256) as u8).collect();
        for start in 0..70 {
            for len in [
                0,
                1,
                7,
                8,
                9,
                15,
                16,
                17,
                63,
                64,
                65,
                100,
                128,
                200,
                629 - start,
            ] {
                let mut dst = vec![0u8; len];
                // SAFETY: start + len <= src.len(), and nothing writes `src`.
                unsafe { copy_from_shared(src.as_ptr().wrapping_add(start), &mut dst) };
                assert_eq!(dst, &src[start..start + len], "start {start} len {len}");
                let mut dst = vec![0u8; len];
                // SAFETY: as above.
                unsafe { copy_atomic(src.as_ptr().wrapping_add(start), &mut dst) };
                assert_eq!(
                    dst,
                    &src[start..start + len],
                    "atomic: start {start} len {len}"
                );
            }
        }
    }
}
