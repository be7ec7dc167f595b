//! Entry points for the coverage-guided fuzz targets in `fuzz/` (feature
//! `fuzzing`; not part of the API). Each takes arbitrary bytes, as a peer
//! with write access could leave them in shared memory, runs the code that
//! reads them, and checks what that code promises: no panic, no index out
//! of bounds, and whatever passes validation is consistent.

use crate::channel::fuzz as channel;

/// The first 8 bytes of `data` as a little-endian number (0 when short),
/// and the rest.
fn split_u64(data: &[u8]) -> (u64, &[u8]) {
    match data.split_first_chunk::<8>() {
        Some((head, rest)) => (u64::from_le_bytes(*head), rest),
        None => (0, data),
    }
}

/// A segment's common header: `data` = the size the OS reports (8 bytes),
/// then the header's bytes.
pub fn segment_header(data: &[u8]) {
    let (mapped, bytes) = split_u64(data);
    let mapped = usize::try_from(mapped).unwrap_or(usize::MAX);
    if let Ok(layout) = crate::header::validate(bytes, mapped, None) {
        assert!(layout.total_len <= mapped);
        assert_eq!(
            layout.data_len + crate::header::HEADER_LEN,
            layout.total_len
        );
    }
}

/// A channel header's geometry: `data` = the data length the segment
/// header promises (8 bytes), then the channel header's bytes.
pub fn channel_geometry(data: &[u8]) {
    let (data_len, bytes) = split_u64(data);
    let data_len = usize::try_from(data_len).unwrap_or(usize::MAX);
    channel::geometry(bytes, data_len);
}

/// The protocol words a peer can change: `data[0]` picks the slot count,
/// the next bytes fill the channel header, slots and lease entries, and
/// the rest picks the operations run on them, reader's and writer's.
pub fn protocol_words(data: &[u8]) {
    channel::words(data);
}
