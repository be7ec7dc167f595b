//! Looking at and tidying up segments by name, whatever their kind:
//! [`inspect`] reads a header, [`remove`] drops a name, [`clean`] removes
//! what crashed creators left behind (Linux).

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind};
use crate::header::Kind;
use crate::identity::ProcessId;
use crate::name::{IntoName, Name};
use crate::os;
use crate::segment::{remove_if_stale, Segment, Verdict};

/// What a segment's header says, for tools like `shmcast info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: Name,
    /// What it holds.
    pub kind: Kind,
    /// Bytes of data after the header.
    pub data_len: usize,
    /// Bytes in all, header included.
    pub total_len: usize,
    /// The process that created it.
    pub creator: ProcessId,
    /// Whether that process still runs.
    pub creator_alive: bool,
    /// When it was created.
    pub created_at: SystemTime,
}

impl SegmentInfo {
    pub(crate) fn of(seg: &Segment) -> SegmentInfo {
        let l = seg.layout();
        SegmentInfo {
            name: seg.name().clone(),
            kind: l.kind,
            data_len: l.data_len,
            total_len: l.total_len,
            creator: l.creator,
            creator_alive: l.creator.is_alive(),
            created_at: UNIX_EPOCH + Duration::from_millis(l.created_unix_ms),
        }
    }
}

/// Reads the header of the segment `name`, whatever its kind.
///
/// # Errors
/// [`ErrorKind::NotFound`] when there is no such segment, or the kind
/// of what is wrong with it.
pub fn inspect<N>(name: N) -> Result<SegmentInfo, Error>
where
    N: IntoName,
{
    let seg = Segment::open(name.into_name()?, None, false)?;
    Ok(SegmentInfo::of(&seg))
}

/// Removes the name `name` (Linux), and a channel's lease table with it:
/// processes that map the segment keep their memory, new opens fail. On
/// Windows this does nothing, since a section goes with its last handle.
///
/// # Errors
/// [`ErrorKind::NotFound`] when there is no such name.
pub fn remove<N>(name: N) -> Result<(), Error>
where
    N: IntoName,
{
    let name = name.into_name()?;
    let _ = os::unlink(&name.companion(crate::name::LEASES).object_name());
    os::remove_wake(&name.object_name(), false);
    os::unlink(&name.object_name()).map_err(|source| {
        let e = match source.kind() {
            io::ErrorKind::NotFound => Error::new(
                ErrorKind::NotFound,
                format!("no segment named {name} to remove"),
            ),
            _ => Error::new(
                ErrorKind::Os,
                format!("cannot remove segment {name}: {source}"),
            ),
        };
        e.on(&name).caused_by(source)
    })
}

/// Removes the name `name`, and a channel's lease table, but only if this
/// process owns the segment (it created it, or took it over) and the name
/// still names it. For a publisher's signal handler that must let the name
/// go while the publisher itself is busy (blocked reading its source).
/// `Ok(false)`: not ours, or not there; nothing was removed. On Windows
/// there is no name to remove: the section goes with its last handle.
///
/// # Errors
/// [`ErrorKind::InvalidName`] only.
pub fn remove_owned<N>(name: N) -> Result<bool, Error>
where
    N: IntoName,
{
    let name = name.into_name()?;
    let mut removed = false;
    let object = name.object_name();
    for name in [name.companion(crate::name::LEASES), name] {
        let Ok(seg) = Segment::open(name.clone(), None, false) else {
            continue;
        };
        if seg.owned_by_me() && seg.is_still_named() && os::unlink(&name.object_name()).is_ok() {
            removed |= !name.is_companion_name();
        }
    }
    if removed {
        os::remove_wake(&object, false);
    }
    Ok(removed)
}

/// A segment found by [`list`]: its name, and what opening it said.
#[derive(Debug)]
pub struct Listed {
    /// The segment's name (with its namespace on Windows).
    pub name: Name,
    /// Its header, or why it could not be read (another user's segment
    /// this user may not open, a half-made or foreign object, ...).
    pub info: Result<SegmentInfo, Error>,
}

/// Every shmcast segment this process can see: on Linux the objects in
/// `/dev/shm`; on Windows the sections of this session's `Local\`
/// namespace and of `Global\`, read from the kernel's object directories.
/// Lease tables (`NAME~leases`) are listed as segments of their own.
///
/// # Errors
/// Only when there is nowhere to look (Linux: `/dev/shm` cannot be read).
pub fn list() -> io::Result<Vec<Listed>> {
    Ok(os::list_sections()?
        .into_iter()
        .filter_map(|(ns, object)| {
            let name = Name::from_object_name(&object)?.in_namespace(ns);
            let info = inspect(name.clone());
            Some(Listed { name, info })
        })
        .collect())
}

/// What [`clean`] did.
#[derive(Clone, Debug, Default)]
pub struct CleanReport {
    /// Segments removed: their creator is dead.
    pub removed: Vec<SegmentInfo>,
    /// Objects under our prefix removed because they never got a header and
    /// are older than a creator needs to write one.
    pub removed_unfinished: Vec<String>,
    /// Segments removed because they were truncated and their owner (the
    /// PID) is dead.
    pub removed_truncated: Vec<(String, u32)>,
    /// Objects left alone, and why (foreign, corrupt, not accessible).
    pub skipped: Vec<(String, String)>,
}

/// Removes every segment whose creator is dead (Linux). Segments with a
/// live creator are never touched. On Windows there is nothing to clean:
/// sections vanish with their last handle, and this returns an empty report.
///
/// # Errors
/// Only when the shared memory directory cannot be listed.
pub fn clean() -> io::Result<CleanReport> {
    let mut report = CleanReport::default();
    for object in os::list_objects()? {
        // A channel's wake object goes when its channel has gone (sorted
        // after it, so a dead channel removed just now counts).
        if let Some(channel) = object.strip_suffix(os::WAKE_SUFFIX) {
            os::remove_wake(channel, true);
            continue;
        }
        let Some(name) = Name::from_object_name(&object) else {
            report
                .skipped
                .push((object, "not a valid segment name".to_owned()));
            continue;
        };
        match remove_if_stale(&name) {
            Verdict::RemovedDead(seg, creator) => report.removed.push(SegmentInfo {
                creator,
                creator_alive: false,
                ..SegmentInfo::of(&seg)
            }),
            Verdict::RemovedUnfinished => report.removed_unfinished.push(name.to_string()),
            Verdict::RemovedTruncated(pid) => {
                report.removed_truncated.push((name.to_string(), pid))
            }
            Verdict::Live => {}
            Verdict::Unjudged(e) => report.skipped.push((name.to_string(), e.to_string())),
        }
    }
    Ok(report)
}
