//! The channel's fuzz entry points (see `crate::fuzzing`): the layout's
//! geometry and the protocol's words, filled from arbitrary bytes.

use std::sync::atomic::Ordering::Relaxed;

use super::format::SlotMeta;
use super::layout::{ChannelHeader, Geometry, ReaderEntry, SlotHeader, MAX_SLOTS};
use super::protocol::Words;

/// A zeroed `T` with `bytes` copied over its start. Only for the layout's
/// structs, which are `repr(C)` atomic integers throughout.
fn filled<T>(bytes: &[u8]) -> T {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let n = bytes.len().min(std::mem::size_of::<T>());
    // SAFETY: `value` has `size_of::<T>()` writable bytes and `bytes` at
    // least `n`; the two do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.as_mut_ptr().cast::<u8>(), n) };
    // SAFETY: `T` is made of atomic integers only, for which every bit
    // pattern (zeros, or the fuzzer's bytes) is a valid value.
    unsafe { value.assume_init() }
}

/// Loads a geometry from a channel header made of `bytes`; whatever loads
/// fits `data_len`.
pub(crate) fn geometry(bytes: &[u8], data_len: usize) {
    let header: ChannelHeader = filled(bytes);
    if let Ok(g) = Geometry::load(&header, data_len) {
        assert_eq!(g.data_len, data_len);
        let slots_end = g.slot_stride.checked_mul(g.slots as usize).unwrap();
        assert!(g.payload_offset.checked_add(slots_end).unwrap() <= data_len);
        assert!(g.max_frame_len <= g.slot_stride);
    }
}

/// Reader and writer operations on words filled from `data`.
pub(crate) fn words(data: &[u8]) {
    let Some((&slots, data)) = data.split_first() else {
        return;
    };
    let slots = usize::from(slots) % MAX_SLOTS as usize + 1;
    let (header_bytes, data) = data.split_at(data.len().min(std::mem::size_of::<ChannelHeader>()));
    let header: ChannelHeader = filled(header_bytes);
    let mut rest = data;
    let mut take = |size: usize| {
        let (now, later) = rest.split_at(rest.len().min(size));
        rest = later;
        now
    };
    let slot_words: Vec<SlotHeader> = (0..slots)
        .map(|_| filled(take(std::mem::size_of::<SlotHeader>())))
        .collect();
    let readers: Vec<ReaderEntry> = (0..4)
        .map(|_| filled(take(std::mem::size_of::<ReaderEntry>())))
        .collect();
    let ops = take(usize::MAX);
    let w = Words::new(&header, &slot_words, &readers);
    const ME: u64 = 5 << 32;
    for op in ops.iter().take(64) {
        let entry = usize::from(op >> 4) % 4;
        match op & 0x0F {
            0 => w.repair(u64::from(*op)),
            1 => {
                let _ = w.read_latest(3, |s, _| {
                    assert!(s < slots);
                    Ok::<(), ()>(())
                });
            }
            2 => {
                if let Ok(Some((s, _, seq))) = w.lease_latest(entry, 3) {
                    assert!(s < slots);
                    let _ = w.lease_intact(s, seq);
                }
            }
            3 => {
                if let Ok(s) = w.begin_write(Some(entry), |s, _| {
                    assert!(s < slots);
                    false
                }) {
                    w.commit(s, &SlotMeta::default(), u64::from(*op));
                }
            }
            4 => {
                if let Ok(s) = w.begin_write(None, |_, holder| holder.is_some()) {
                    w.abort(s);
                }
            }
            5 => {
                w.reclaim_dead_readers(ME, |t| t & 1 == 1, Some(u64::from(*op) << 20));
            }
            6 => {
                if let Some(e) = w.register(ME, u64::from(*op), |t| t & 1 == 1) {
                    assert!(e < 4);
                }
            }
            7 => w.release_lease(entry, ME),
            8 => w.unregister(entry, ME),
            9 => {
                let _ = w.latest_number();
                let _ = w.latest_slot_index().map(|s| assert!(s < slots));
                let _ = w.subscriber_count();
                let _ = w.lease_holders();
            }
            10 => {
                let _ = w.claim_writer(ME, |t| t & 1 == 1);
            }
            _ => {
                // A peer scribbles between two operations.
                header
                    .latest
                    .store(u64::from(*op).wrapping_mul(0x9E37_79B9), Relaxed);
            }
        }
    }
}
