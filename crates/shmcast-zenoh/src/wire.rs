//! What crosses the network: one Zenoh message per frame or status, each a
//! fixed header, the status reason, the payload, then the frame's
//! per-frame metadata.
//!
//! ```text
//! offset size
//!  0      4   magic "SHMZ"
//!  4      1   version (2; 1 had no metadata and a 64-byte header)
//!  5      1   kind: 1 frame, 2 status
//!  6      1   encoding: 0 raw, 1 jpeg
//!  7      1   state of the source: 0 live, 1 stalled, 2 gone
//!  8      4   width            (frame: as published; status: 0)
//! 12      4   height
//! 16      4   stride
//! 20      4   pixel format code (shmcast's, as in shared memory)
//! 24      8   frame number at the source
//! 32      8   capture timestamp, ns since the Unix epoch
//! 40      8   the source channel's largest frame, bytes
//! 48      4   payload bytes (after the reason)
//! 52      2   reason bytes (UTF-8, at most 240)
//! 54      2   zero
//! 56      8   the source channel's instance (a restarted source has a
//!             new one, and its frame numbers start again; 0: none)
//! 64      4   metadata bytes (after the payload; at most 65536)
//! 68      4   the source channel's largest metadata, bytes
//! 72      …   reason, then payload, then metadata
//! ```
//!
//! Integers are little-endian. The importer treats every message as
//! untrusted, as it treats shared memory: [`decode`] checks every field and
//! length and answers an error, never a panic, whatever arrives.

use shmcast::PixelFormat;

/// Bytes before the reason.
pub const HEADER_LEN: usize = 72;
/// The longest reason carried.
pub const REASON_MAX: usize = 240;
const MAGIC: &[u8; 4] = b"SHMZ";
const VERSION: u8 = 2;
/// The most metadata a frame carries (the library's limit).
pub const METADATA_MAX: usize = shmcast::MAX_METADATA_LEN as usize;

/// How a frame's payload is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// The bytes as published: a faithful copy, about 1.5 Gbit/s for
    /// 1080p30 rgb24.
    Raw,
    /// A JPEG image (the importer publishes rgb24, or gray8 for gray8
    /// sources): a tenth of that or less, lossy.
    Jpeg,
}

/// What the exporter says about its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Frames flow.
    Live,
    /// The source's publisher runs but sends nothing (the reason says why
    /// when it said).
    Stalled,
    /// No publisher: the channel is gone, or never was.
    Gone,
}

/// A message's header, decoded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub state: State,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub format: PixelFormat,
    pub number: u64,
    pub timestamp_ns: u64,
    pub source_max_frame_len: u64,
    pub source_instance: u64,
    /// The source channel's largest per-frame metadata, bytes.
    pub source_max_metadata: u32,
    pub reason: String,
}

/// A frame (with its encoding) or a status report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Frame(Encoding),
    Status,
}

/// Why a message was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("not a shmcast-zenoh message (bad magic)")]
    Magic,
    #[error("message version {0}; this build speaks version {VERSION}")]
    Version(u8),
    #[error("unknown {what} {value}")]
    Unknown { what: &'static str, value: u64 },
    #[error("lengths do not add up: header says {reason} reason + {payload} payload + {metadata} metadata bytes, message has {have} after the header")]
    Length {
        reason: usize,
        payload: usize,
        metadata: usize,
        have: usize,
    },
}

impl Header {
    /// A frame's header; the payload follows the (empty) reason.
    pub fn frame(
        encoding: Encoding,
        info: &shmcast::FrameInfo,
        source_max_frame_len: usize,
        source_max_metadata: usize,
        source_instance: u64,
    ) -> Header {
        Header {
            kind: Kind::Frame(encoding),
            state: State::Live,
            width: info.meta.width,
            height: info.meta.height,
            stride: info.meta.stride,
            format: info.meta.format,
            number: info.number,
            timestamp_ns: info.meta.timestamp_ns,
            source_max_frame_len: source_max_frame_len as u64,
            source_instance,
            source_max_metadata: source_max_metadata.min(METADATA_MAX) as u32,
            reason: String::new(),
        }
    }

    /// A status report with no payload.
    pub fn status(
        state: State,
        reason: &str,
        source_max_frame_len: usize,
        source_instance: u64,
    ) -> Header {
        Header {
            kind: Kind::Status,
            state,
            width: 0,
            height: 0,
            stride: 0,
            format: PixelFormat::Raw,
            number: 0,
            timestamp_ns: 0,
            source_max_frame_len: source_max_frame_len as u64,
            source_instance,
            source_max_metadata: 0,
            reason: cut(reason, REASON_MAX).to_owned(),
        }
    }

    /// The same header, saying the source channel takes up to `max` bytes
    /// of metadata per frame (a status says it too, so that an importer
    /// that creates its channel from a status makes room for it).
    pub fn with_max_metadata(mut self, max: usize) -> Header {
        self.source_max_metadata = max.min(METADATA_MAX) as u32;
        self
    }

    /// Bytes this header and its reason take before the payload.
    pub fn len(&self) -> usize {
        HEADER_LEN + cut(&self.reason, REASON_MAX).len()
    }

    /// Writes the header and reason into `out[..self.len()]`, saying
    /// `payload_len` bytes and then `metadata_len` bytes follow.
    ///
    /// # Panics
    /// When `out` is shorter than [`len`](Header::len) (a caller's bug).
    pub fn write(&self, out: &mut [u8], payload_len: u32, metadata_len: u32) {
        let reason = cut(&self.reason, REASON_MAX).as_bytes();
        let out = &mut out[..HEADER_LEN + reason.len()];
        out.fill(0);
        out[0..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        let (kind, encoding) = match self.kind {
            Kind::Frame(Encoding::Raw) => (1, 0),
            Kind::Frame(Encoding::Jpeg) => (1, 1),
            Kind::Status => (2, 0),
        };
        out[5] = kind;
        out[6] = encoding;
        out[7] = match self.state {
            State::Live => 0,
            State::Stalled => 1,
            State::Gone => 2,
        };
        out[8..12].copy_from_slice(&self.width.to_le_bytes());
        out[12..16].copy_from_slice(&self.height.to_le_bytes());
        out[16..20].copy_from_slice(&self.stride.to_le_bytes());
        out[20..24].copy_from_slice(&self.format.code().to_le_bytes());
        out[24..32].copy_from_slice(&self.number.to_le_bytes());
        out[32..40].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        out[40..48].copy_from_slice(&self.source_max_frame_len.to_le_bytes());
        out[48..52].copy_from_slice(&payload_len.to_le_bytes());
        out[52..54].copy_from_slice(&(reason.len() as u16).to_le_bytes());
        out[56..64].copy_from_slice(&self.source_instance.to_le_bytes());
        out[64..68].copy_from_slice(&metadata_len.to_le_bytes());
        out[68..72].copy_from_slice(&self.source_max_metadata.to_le_bytes());
        out[HEADER_LEN..].copy_from_slice(reason);
    }
}

/// A message's parts after its header: the payload and the metadata.
pub type Parts<'m> = (&'m [u8], &'m [u8]);

/// Checks a whole message; returns its header, payload and metadata.
///
/// # Errors
/// [`WireError`] for anything that is not a well-formed message of this
/// version.
pub fn decode(message: &[u8]) -> Result<(Header, Parts<'_>), WireError> {
    if message.len() < HEADER_LEN {
        return Err(WireError::Short(message.len()));
    }
    let u32_at = |i: usize| u32::from_le_bytes(message[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(message[i..i + 8].try_into().unwrap());
    if &message[0..4] != MAGIC {
        return Err(WireError::Magic);
    }
    if message[4] != VERSION {
        return Err(WireError::Version(message[4]));
    }
    let unknown = |what, value: u8| WireError::Unknown {
        what,
        value: u64::from(value),
    };
    let kind = match (message[5], message[6]) {
        (1, 0) => Kind::Frame(Encoding::Raw),
        (1, 1) => Kind::Frame(Encoding::Jpeg),
        (1, e) => return Err(unknown("encoding", e)),
        (2, _) => Kind::Status,
        (k, _) => return Err(unknown("message kind", k)),
    };
    let state = match message[7] {
        0 => State::Live,
        1 => State::Stalled,
        2 => State::Gone,
        s => return Err(unknown("source state", s)),
    };
    let format = PixelFormat::from_code(u32_at(20)).ok_or(WireError::Unknown {
        what: "pixel format",
        value: u64::from(u32_at(20)),
    })?;
    let payload_len = u32_at(48) as usize;
    let reason_len = usize::from(u16::from_le_bytes([message[52], message[53]]));
    let metadata_len = u32_at(64) as usize;
    let have = message.len() - HEADER_LEN;
    if reason_len > REASON_MAX
        || metadata_len > METADATA_MAX
        || reason_len
            .checked_add(payload_len)
            .and_then(|n| n.checked_add(metadata_len))
            != Some(have)
    {
        return Err(WireError::Length {
            reason: reason_len,
            payload: payload_len,
            metadata: metadata_len,
            have,
        });
    }
    let (reason, rest) = message[HEADER_LEN..].split_at(reason_len);
    let (payload, metadata) = rest.split_at(payload_len);
    let header = Header {
        kind,
        state,
        width: u32_at(8),
        height: u32_at(12),
        stride: u32_at(16),
        format,
        number: u64_at(24),
        timestamp_ns: u64_at(32),
        source_max_frame_len: u64_at(40),
        source_instance: u64_at(56),
        source_max_metadata: u32_at(68),
        reason: String::from_utf8_lossy(reason).into_owned(),
    };
    Ok((header, (payload, metadata)))
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(header: &Header, payload: &[u8]) -> Vec<u8> {
        with_metadata(header, payload, &[])
    }

    fn with_metadata(header: &Header, payload: &[u8], metadata: &[u8]) -> Vec<u8> {
        let mut out = vec![0; header.len()];
        header.write(&mut out, payload.len() as u32, metadata.len() as u32);
        out.extend_from_slice(payload);
        out.extend_from_slice(metadata);
        out
    }

    fn sample_frame() -> Header {
        Header {
            kind: Kind::Frame(Encoding::Jpeg),
            state: State::Live,
            width: 1920,
            height: 1080,
            stride: 5760,
            format: PixelFormat::Rgb24,
            number: 1 << 40,
            timestamp_ns: 1_790_000_000_123_456_789,
            source_max_frame_len: 6_220_800,
            source_instance: 0x1234_5678_9abc_def0,
            source_max_metadata: 1024,
            reason: String::new(),
        }
    }

    #[test]
    fn frames_and_statuses_round_trip() {
        let frame = sample_frame();
        let bytes = message(&frame, b"jpeg bytes");
        assert_eq!(
            decode(&bytes),
            Ok((frame.clone(), (&b"jpeg bytes"[..], &[][..])))
        );
        let bytes = with_metadata(&frame, b"jpeg bytes", b"exposure");
        assert_eq!(
            decode(&bytes),
            Ok((frame, (&b"jpeg bytes"[..], &b"exposure"[..])))
        );

        let status = Header::status(State::Stalled, "ffmpeg exited: no such device", 99, 7);
        let bytes = message(&status, &[]);
        assert_eq!(decode(&bytes), Ok((status, (&[][..], &[][..]))));
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let status = Header::status(State::Stalled, &"é".repeat(200), 0, 0);
        assert_eq!(status.reason.len(), 240);
        let (back, _) = decode(&message(&status, &[])).unwrap();
        assert_eq!(back.reason, "é".repeat(120));
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        let good = message(&sample_frame(), b"xyz");
        assert_eq!(decode(&good[..10]), Err(WireError::Short(10)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(WireError::Magic));
        let mut bad = good.clone();
        bad[4] = 1;
        assert_eq!(decode(&bad), Err(WireError::Version(1)));
        let mut bad = good.clone();
        bad[6] = 7;
        assert!(matches!(
            decode(&bad),
            Err(WireError::Unknown {
                what: "encoding",
                ..
            })
        ));
        let mut bad = good.clone();
        bad[20] = 99;
        assert!(matches!(
            decode(&bad),
            Err(WireError::Unknown {
                what: "pixel format",
                ..
            })
        ));
        // Lengths that overrun, underrun or overflow.
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(WireError::Length { .. })
        ));
        let mut bad = good.clone();
        bad[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        bad[52..54].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(decode(&bad), Err(WireError::Length { .. })));
        // Metadata beyond the library's limit, or beyond the message.
        let mut bad = with_metadata(&sample_frame(), b"xyz", &[1; 8]);
        bad[64..68].copy_from_slice(&(METADATA_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(decode(&bad), Err(WireError::Length { .. })));
        bad[64..68].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(decode(&bad), Err(WireError::Length { .. })));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_header_after_a_valid_magic_decodes_or_fails_cleanly(
            rest in proptest::collection::vec(any::<u8>(), 68..400),
        ) {
            let mut bytes = b"SHMZ".to_vec();
            bytes.extend_from_slice(&rest);
            bytes[4] = VERSION;
            if let Ok((header, (payload, metadata))) = decode(&bytes) {
                prop_assert!(header.reason.len() <= 3 * REASON_MAX);
                prop_assert!(HEADER_LEN + payload.len() + metadata.len() <= bytes.len());
                prop_assert!(metadata.len() <= METADATA_MAX);
            }
        }
    }
}
