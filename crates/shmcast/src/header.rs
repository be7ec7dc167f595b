//! The segment header: its layout, and the validation of untrusted bytes.
//!
//! Every segment starts with a [`HEADER_LEN`]-byte header page. Its first 64
//! bytes are the same for every kind of segment:
//!
//! | offset | field        | meaning                                          |
//! |-------:|--------------|--------------------------------------------------|
//! |      0 | `magic`      | `b"SHMCAST\0"`, written last by the creator      |
//! |      8 | `version`    | [`LAYOUT_VERSION`]                               |
//! |     12 | `kind`       | 1 = raw region, 2 = frame channel                |
//! |     16 | `header_len` | bytes before the data, [`HEADER_LEN`]            |
//! |     24 | `total_len`  | `header_len + data_len`, the exact segment size  |
//! |     32 | `data_len`   | bytes of data after the header                   |
//! |     40 | `owner`      | the owner's process token (pid << 32 \| start-time fold), atomic |
//! |     48 | owner start time | see [`ProcessId`]                            |
//! |     56 | created at   | milliseconds since the Unix epoch                |
//!
//! The rest of the page belongs to the kind (a region keeps its lock there).
//!
//! **The owner word** is how processes agree on who may act on a segment's
//! name (remove a stale one, take a dead publisher's channel over): the
//! creator writes its token there first of all (on Linux before the memory
//! is even reserved, so a creator that dies mid-way is known to be dead),
//! and whoever wants to act on the name of a segment whose owner is dead
//! must first swap its own token in by compare-and-swap. One word, written
//! only by processes that may write the segment: a reader with read access
//! alone can neither take it nor hold it against the owner (a file lock on
//! the object could be taken by any reader, and was once).
//! All fields are native-endian: a segment never leaves its machine.
//!
//! Anything can write into a mapping, or create an object under our name, so
//! opening treats these bytes as untrusted: [`validate`] checks the magic and
//! version first, then every length against the others and against the size
//! the OS reports, with checked arithmetic, before anything else is read.
//! It works on a private copy taken once, so a field cannot change between
//! its check and its use.

use std::sync::atomic::AtomicU64;

use crate::identity::ProcessId;

/// The bytes every shmcast segment starts with.
pub(crate) const MAGIC: [u8; 8] = *b"SHMCAST\0";
/// The layout version this build reads and writes. A reader of another
/// version refuses the segment with an error naming both versions
/// (`ErrorKind::Incompatible`). 2: channels with lease tables and source
/// status; 3: per-frame metadata (the channel's `max_metadata_len`, each
/// slot's `metadata_len`, the metadata after the payload in the slot).
pub const LAYOUT_VERSION: u32 = 3;
/// Bytes reserved for the header; the data starts here, page-aligned.
pub const HEADER_LEN: usize = 4096;
/// Bytes of the header common to every kind.
pub(crate) const COMMON_LEN: usize = 64;
/// Where the owner word lies (see the module docs).
pub(crate) const OWNER_OFFSET: usize = 40;

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A raw byte region with a reader-writer lock ([`crate::Region`]).
    Region,
    /// A frame channel (one publisher, many subscribers).
    Channel,
    /// A channel's lease table, the one part of a channel that leasing
    /// subscribers may write (object `shmcast.NAME~leases`).
    Leases,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Region => 1,
            Kind::Channel => 2,
            Kind::Leases => 3,
        }
    }

    fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Region),
            2 => Some(Kind::Channel),
            3 => Some(Kind::Leases),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Region => "region",
            Kind::Channel => "channel",
            Kind::Leases => "lease table",
        })
    }
}

/// The common header as it sits in shared memory.
#[repr(C)]
pub(crate) struct CommonHeader {
    pub magic: AtomicU64,
    pub version: u32,
    pub kind: u32,
    pub header_len: u64,
    pub total_len: u64,
    pub data_len: u64,
    /// Token of the process that owns the segment (see the module docs).
    pub owner: AtomicU64,
    pub owner_start: u64,
    pub created_unix_ms: u64,
}

const _: () = assert!(size_of::<CommonHeader>() == COMMON_LEN);

impl CommonHeader {
    /// The header of a new segment; its magic is zero until published.
    pub(crate) fn new(kind: Kind, data_len: usize, creator: ProcessId, now_ms: u64) -> Self {
        CommonHeader {
            magic: AtomicU64::new(0),
            version: LAYOUT_VERSION,
            kind: kind.code(),
            header_len: HEADER_LEN as u64,
            total_len: (HEADER_LEN + data_len) as u64,
            data_len: data_len as u64,
            owner: AtomicU64::new(creator.token()),
            owner_start: creator.start_time,
            created_unix_ms: now_ms,
        }
    }
}

/// The magic as the `magic` word holds it.
pub(crate) fn magic_word() -> u64 {
    u64::from_ne_bytes(MAGIC)
}

/// What a valid header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub kind: Kind,
    /// The owner word as it was at open.
    pub owner: u64,
    pub data_len: usize,
    pub total_len: usize,
    pub creator: ProcessId,
    pub created_unix_ms: u64,
}

/// Why a header is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Empty, or magic still zero: not (yet) initialised by its creator,
    /// whose token is `owner` when it got as far as stamping it (0: not yet).
    Uninitialized { owner: u64 },
    /// Not a shmcast segment: the first bytes are not the magic.
    Foreign { found: Vec<u8> },
    /// A shmcast segment of another layout version.
    Version { found: u32 },
    /// A valid segment of another kind.
    WrongKind { found: Kind },
    /// Fields that contradict each other.
    Corrupt(String),
    /// The mapping is smaller than the header says.
    Truncated { mapped: u64, needed: u64 },
}

fn field_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn field_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks a copy of a segment's first bytes (`bytes`, at most
/// [`COMMON_LEN`] of them) against `mapped`, the size the OS reports.
/// Never panics, whatever the input.
pub(crate) fn validate(
    bytes: &[u8],
    mapped: usize,
    expected: Option<Kind>,
) -> Result<Layout, Problem> {
    let available = bytes.len().min(mapped);
    if available == 0 {
        return Err(Problem::Uninitialized { owner: 0 });
    }
    let head = &bytes[..available.min(MAGIC.len())];
    if head.iter().all(|&b| b == 0) && available >= MAGIC.len() {
        let owner = if available >= OWNER_OFFSET + 8 {
            field_u64(bytes, OWNER_OFFSET)
        } else {
            0
        };
        return Err(Problem::Uninitialized { owner });
    }
    if head != &MAGIC[..head.len()] || available < MAGIC.len() {
        return Err(Problem::Foreign {
            found: head.to_vec(),
        });
    }
    if available < COMMON_LEN || mapped < HEADER_LEN {
        return Err(Problem::Truncated {
            mapped: mapped as u64,
            needed: HEADER_LEN as u64,
        });
    }
    let version = field_u32(bytes, 8);
    if version != LAYOUT_VERSION {
        return Err(Problem::Version { found: version });
    }
    let code = field_u32(bytes, 12);
    let kind = Kind::from_code(code)
        .ok_or_else(|| Problem::Corrupt(format!("unknown segment kind {code}")))?;
    if let Some(expected) = expected {
        if kind != expected {
            return Err(Problem::WrongKind { found: kind });
        }
    }
    let header_len = field_u64(bytes, 16);
    let total_len = field_u64(bytes, 24);
    let data_len = field_u64(bytes, 32);
    if header_len != HEADER_LEN as u64 {
        return Err(Problem::Corrupt(format!(
            "header length {header_len}, expected {HEADER_LEN}"
        )));
    }
    if header_len.checked_add(data_len) != Some(total_len) {
        return Err(Problem::Corrupt(format!(
            "total length {total_len} is not header {header_len} + data {data_len}"
        )));
    }
    let total = usize::try_from(total_len)
        .ok()
        .filter(|&t| t <= isize::MAX as usize)
        .ok_or_else(|| Problem::Corrupt(format!("total length {total_len} is too large")))?;
    if total > mapped {
        return Err(Problem::Truncated {
            mapped: mapped as u64,
            needed: total_len,
        });
    }
    Ok(Layout {
        kind,
        data_len: total - HEADER_LEN,
        total_len: total,
        owner: field_u64(bytes, OWNER_OFFSET),
        creator: ProcessId {
            pid: crate::identity::token_pid(field_u64(bytes, OWNER_OFFSET)),
            start_time: field_u64(bytes, 48),
        },
        created_unix_ms: field_u64(bytes, 56),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn good(data_len: usize) -> Vec<u8> {
        let h = CommonHeader::new(
            Kind::Region,
            data_len,
            ProcessId {
                pid: 42,
                start_time: 7,
            },
            1000,
        );
        h.magic
            .store(magic_word(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: CommonHeader is repr(C) plain data of exactly COMMON_LEN
        // bytes with no padding (asserted above).
        unsafe { std::slice::from_raw_parts((&h as *const CommonHeader).cast::<u8>(), COMMON_LEN) }
            .to_vec()
    }

    fn set_u64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn a_good_header_is_read_back() {
        let layout = validate(&good(100), HEADER_LEN + 100, Some(Kind::Region)).unwrap();
        assert_eq!(layout.kind, Kind::Region);
        assert_eq!(layout.data_len, 100);
        assert_eq!(layout.total_len, HEADER_LEN + 100);
        assert_eq!(layout.creator.pid, 42);
        // Windows rounds mappings up to whole pages: a larger mapping is fine.
        assert!(validate(&good(100), 2 * HEADER_LEN, None).is_ok());
    }

    #[test]
    fn each_defect_has_its_own_problem() {
        let len = HEADER_LEN + 100;
        assert_eq!(
            validate(&[], 0, None),
            Err(Problem::Uninitialized { owner: 0 })
        );
        assert_eq!(
            validate(&[0; 64], len, None),
            Err(Problem::Uninitialized { owner: 0 })
        );
        let mut stamped = [0u8; 64];
        set_u64(&mut stamped, 40, 77 << 32);
        assert_eq!(
            validate(&stamped, len, None),
            Err(Problem::Uninitialized { owner: 77 << 32 })
        );
        assert!(matches!(
            validate(b"GIF89a..", len, None),
            Err(Problem::Foreign { .. })
        ));
        assert!(matches!(
            validate(b"SHM", 3, None),
            Err(Problem::Foreign { .. })
        ));
        let mut b = good(100);
        b[8] = 9;
        assert_eq!(validate(&b, len, None), Err(Problem::Version { found: 9 }));
        assert_eq!(
            validate(&good(100), len, Some(Kind::Channel)),
            Err(Problem::WrongKind {
                found: Kind::Region
            })
        );
        let mut b = good(100);
        b[12] = 77;
        assert!(matches!(validate(&b, len, None), Err(Problem::Corrupt(_))));
        let mut b = good(100);
        set_u64(&mut b, 32, u64::MAX);
        assert!(matches!(validate(&b, len, None), Err(Problem::Corrupt(_))));
        assert_eq!(
            validate(&good(100), len - 1, None),
            Err(Problem::Truncated {
                mapped: len as u64 - 1,
                needed: len as u64
            })
        );
        assert!(matches!(
            validate(&good(100), 100, None),
            Err(Problem::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128), mapped in 0usize..1 << 40) {
            let _ = validate(&bytes, mapped, None);
        }

        #[test]
        fn arbitrary_fields_after_a_good_magic_never_panic(
            fields in proptest::collection::vec(any::<u8>(), 56),
            mapped in 0usize..1 << 40,
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(fields);
            if let Ok(layout) = validate(&bytes, mapped, None) {
                // Whatever passes is self-consistent and inside the mapping.
                prop_assert!(layout.total_len <= mapped);
                prop_assert_eq!(layout.data_len + HEADER_LEN, layout.total_len);
            }
        }
    }
}
