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
//! That argument is for another process. Within one process, a
//! publisher's plain stores into a slot and a subscriber's loads of the
//! same bytes on another thread are, strictly, still a data race in Rust's
//! model (the bytes are reached only through raw pointers into an OS
//! mapping, which keeps the compiler from reasoning about them, but the
//! model does not care). Writer-side atomic copies would close it at a
//! cost on every large publish; it is a known limitation, not a promise.
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

//!
//! # Why there is no safe `&[u8]` over shared bytes
//! A `&[u8]` promises that its bytes do not change while it lives; the
//! compiler may rely on it (load once, reuse the value, assume two reads
//! agree). Bytes in a mapping that another process can write make no such
//! promise: a publisher revokes a lease held past the channel's
//! `max_lease`, a region's writer may ignore the lock, a peer may scribble.
//! So every place that shows such bytes hands out a [`SharedBytes`]: a
//! pointer and a length (like memmap2's `MmapRaw`), with safe copies that
//! tolerate racing writers and an `unsafe fn as_slice` for callers who can
//! promise more than the library can.

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// Bytes in shared memory that another process may write while this view
/// lives: a frame leased or read in place, a locked region.
///
/// It is a pointer and a length that stay valid (mapped) for `'a`. What it
/// offers safely is copying: [`copy_to`](SharedBytes::copy_to) and
/// [`to_vec`](SharedBytes::to_vec) read with loads that are defined even
/// while another process writes (see the module source), so a copy is
/// never undefined behaviour; whether it is *whole* is what the caller's
/// check says afterwards (`Lease::release`, the seqlock re-check).
///
/// For work in place without a copy, [`as_slice`](SharedBytes::as_slice)
/// is `unsafe`: the caller promises that nothing writes the bytes while
/// the slice lives, which the library cannot promise for another process
/// (see `Subscriber::lease_latest` for what keeps a publisher off a leased
/// slot, and for how long).
///
/// ```
/// # use shmcast::{FrameMeta, Publisher, Subscriber};
/// # let name = format!("doc-bytes-{}", std::process::id());
/// # let mut publisher = Publisher::create(&name, 64)?;
/// # publisher.publish(&FrameMeta::raw(), b"hello")?;
/// let sub = Subscriber::open(&name)?;
/// let (_info, copy) = sub
///     .read_in_place(|_, bytes| bytes.to_vec())?
///     .expect("a frame");
/// assert_eq!(&copy[..], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// No view of shared bytes is a slice; each of these fails to compile:
/// ```compile_fail,E0308
/// fn f<'a>(lease: &'a shmcast::Lease<'_>) -> &'a [u8] { lease }
/// ```
/// ```compile_fail,E0308
/// fn f(lease: &shmcast::DetachedLease) -> &[u8] { lease }
/// ```
/// ```compile_fail,E0308
/// fn f<'a>(guard: &'a shmcast::ReadGuard<'_>) -> &'a [u8] { guard }
/// ```
/// ```compile_fail,E0608
/// fn f(mut guard: shmcast::WriteGuard<'_>) { guard[0] = 1; }
/// ```
/// ```compile_fail,E0631
/// fn f(sub: &shmcast::Subscriber) {
///     let _ = sub.read_in_place(|_, bytes: &[u8]| bytes.len());
/// }
/// ```
#[derive(Clone, Copy)]
pub struct SharedBytes<'a> {
    ptr: *const u8,
    len: usize,
    mapped: PhantomData<&'a [u8]>,
}

// SAFETY: a SharedBytes is a pointer into a mapping that lives for 'a plus
// a length; every safe access copies with loads that tolerate concurrent
// writers from any thread or process, so sharing or sending the view
// between threads adds no race the view does not already tolerate.
unsafe impl Send for SharedBytes<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for SharedBytes<'_> {}

impl<'a> SharedBytes<'a> {
    /// # Safety
    /// `ptr..ptr + len` is mapped and readable for all of `'a`.
    pub(crate) unsafe fn new(ptr: *const u8, len: usize) -> SharedBytes<'a> {
        SharedBytes {
            ptr,
            len,
            mapped: PhantomData,
        }
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where they start, for code (a C library, a GPU upload) that reads
    /// through raw pointers and checks the frame afterwards.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The bytes in `range`, or `None` when it does not lie inside.
    pub fn get(&self, range: impl RangeBounds<usize>) -> Option<SharedBytes<'a>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        (start <= end && end <= self.len).then(|| SharedBytes {
            ptr: self.ptr.wrapping_add(start),
            len: end - start,
            mapped: PhantomData,
        })
    }

    /// Copies the first `dst.len()` bytes (all of them, if `dst` is as long
    /// or longer) into `dst`; returns how many were copied.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        // SAFETY: the first `n <= len` bytes are mapped for 'a (`new`), and
        // `copy_from_shared` tolerates writers racing the copy.
        unsafe { copy_from_shared(self.ptr, &mut dst[..n]) };
        n
    }

    /// The bytes, copied into a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.copy_to(&mut v);
        v
    }

    /// The bytes as a slice, without a copy.
    ///
    /// # Safety
    /// Nothing may write these bytes while the slice lives: no other
    /// process, and no other thread. For a leased frame that holds while
    /// the publisher honours the lease (it revokes a lease that keeps it
    /// from every free slot for longer than the channel's max lease, so
    /// keep the slice shorter than that, and a stopped process's lease can
    /// outlast it); for a locked region while every writer takes the lock.
    /// If it does not hold, the behaviour is undefined, not merely a torn
    /// frame.
    pub unsafe fn as_slice(&self) -> &'a [u8] {
        // SAFETY: mapped and readable for 'a (`new`); the caller promises
        // that nothing writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for SharedBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBytes")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

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
