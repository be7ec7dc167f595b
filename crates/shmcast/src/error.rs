//! Errors, one enum per operation, each variant something a caller can act
//! on. Messages say what failed, on which segment, and what to do; the OS
//! error, where there is one, is kept as the `source`.

use std::io;
use std::time::Duration;

use crate::header::Kind;
use crate::identity::ProcessId;
use crate::name::NameError;

/// Creating a segment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The name breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The requested size is zero or too large for this machine.
    #[error("cannot create segment {name}: a size of {size} bytes is not possible; ask for 1 byte to {max} bytes")]
    InvalidSize {
        /// The segment.
        name: String,
        /// The size asked for.
        size: u64,
        /// The largest size this build accepts.
        max: u64,
    },
    /// A segment (or a foreign object) already has this name.
    #[error("cannot create segment {name}: the name is taken{}", taken_hint(.owner, *.owner_alive))]
    AlreadyExists {
        /// The segment.
        name: String,
        /// The creator recorded in the existing segment, if it is one of ours.
        owner: Option<ProcessId>,
        /// Whether that creator still runs.
        owner_alive: bool,
    },
    /// The OS refused (for `Global\` names: `SeCreateGlobalPrivilege`).
    #[error("cannot create segment {name}: permission denied{hint}")]
    PermissionDenied {
        /// The segment.
        name: String,
        /// What is missing and how to get it.
        hint: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The memory could not be reserved.
    #[error(
        "cannot create segment {name}: {size} bytes could not be reserved in {place}{}; \
         free some shared memory (`shmcast clean`) or ask for less",
        available.map(|a| format!(" ({a} bytes free)")).unwrap_or_default()
    )]
    NoSpace {
        /// The segment.
        name: String,
        /// Bytes asked for, header included.
        size: u64,
        /// Where shared memory lives (`/dev/shm (tmpfs)`, `the pagefile`).
        place: String,
        /// Bytes free there, when the OS says.
        available: Option<u64>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The name is taken by a segment of another user, which this process
    /// will neither adopt nor remove.
    #[error("cannot create segment {name}: the name is taken by a segment that belongs to {owner}{}, not to this user; it is not taken over. Remove it (`shmcast remove {name}`, as its owner or an administrator) or use another name", mode.map(|m| format!(" (mode {m:04o})")).unwrap_or_default())]
    NotOurs {
        /// The segment.
        name: String,
        /// Its owner (`uid 1001`, or a SID).
        owner: String,
        /// Its permission bits (Linux).
        mode: Option<u32>,
    },
    /// The name is taken, and who owns the object cannot be read (on
    /// Windows: no READ_CONTROL on it), so it is not taken over: only an
    /// object known to be this user's is.
    #[error("cannot create segment {name}: the name is taken and its owner cannot be read ({source}); it is not taken over. Remove it as its owner or an administrator, or use another name")]
    OwnerUnknown {
        /// The segment.
        name: String,
        /// Why the owner could not be read.
        #[source]
        source: io::Error,
    },
    /// The SDDL string is not a valid security descriptor.
    #[error("cannot create segment {name}: {sddl:?} is not a valid SDDL security descriptor (try \"D:(A;;GA;;;SY)(A;;GR;;;IU)\")")]
    InvalidSecurityDescriptor {
        /// The segment.
        name: String,
        /// The string given.
        sddl: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other OS failure.
    #[error("cannot create segment {name}: {op} failed: {source}")]
    Os {
        /// The segment.
        name: String,
        /// The OS call that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn taken_hint(owner: &Option<ProcessId>, alive: bool) -> String {
    match owner {
        Some(p) if alive => format!(
            " by a segment its creator (pid {}) still holds; stop that process or use another name",
            p.pid
        ),
        Some(p) => format!(
            " by a segment whose creator (pid {}) is dead; run `shmcast clean` to remove it",
            p.pid
        ),
        None => {
            " by an object that is not a readable shmcast segment; remove it or use another name"
                .to_owned()
        }
    }
}

/// Opening a segment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No segment has this name.
    #[error("no segment named {name}: start the process that creates it first (on Windows, check Local\\ vs Global\\)")]
    NotFound {
        /// The segment.
        name: String,
    },
    /// The OS refused access.
    #[error("cannot open segment {name}: permission denied; its creator must grant access (Linux: --mode, Windows: --sddl), or open it read-only")]
    PermissionDenied {
        /// The segment.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An object with this name exists but is not a shmcast segment.
    #[error("cannot open segment {name}: it is not a shmcast segment (it starts with {found:02x?}); another program uses this name")]
    NotShmcast {
        /// The segment.
        name: String,
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// Something that is not a shared memory object has this name (a FIFO,
    /// a symbolic link, a directory): never opened, never followed.
    #[error("cannot open segment {name}: {what}; another program put it there: remove it or use another name")]
    Foreign {
        /// The segment.
        name: String,
        /// What was found.
        what: String,
    },
    /// The creator never finished creating it (it may have died doing so).
    #[error("cannot open segment {name}: it was never fully created (its creator may have died while creating it); run `shmcast clean` or create it again")]
    Uninitialized {
        /// The segment.
        name: String,
        /// The creator's token, if it stamped one (internal use).
        #[doc(hidden)]
        owner: u64,
    },
    /// A shmcast segment of another layout version.
    #[error("cannot open segment {name}: layout version {found}, but this build reads version {expected}; use matching shmcast versions on both sides")]
    Incompatible {
        /// The segment.
        name: String,
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// A segment of another kind (a channel opened as a region, say).
    #[error("cannot open segment {name} as a {expected}: it is a {found}")]
    WrongKind {
        /// The segment.
        name: String,
        /// The kind found.
        found: Kind,
        /// The kind asked for.
        expected: Kind,
    },
    /// The header contradicts itself.
    #[error(
        "cannot open segment {name}: its header is corrupt ({what}); remove it and create it again"
    )]
    Corrupt {
        /// The segment.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// The object is smaller than its header says.
    #[error("cannot open segment {name}: it is truncated ({mapped} bytes mapped, its header needs {needed}); remove it and create it again")]
    Truncated {
        /// The segment.
        name: String,
        /// Bytes the OS mapped.
        mapped: u64,
        /// Bytes the header needs.
        needed: u64,
    },
    /// Any other OS failure.
    #[error("cannot open segment {name}: {op} failed: {source}")]
    Os {
        /// The segment.
        name: String,
        /// The OS call that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Reading, writing or locking a region failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The range lies outside the region. Nothing was read or written.
    #[error("region {name}: {len} bytes at offset {offset} do not fit in its {size} bytes; nothing was written or read")]
    OutOfBounds {
        /// The region.
        name: String,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// The region's size.
        size: u64,
    },
    /// The region was opened read-only.
    #[error("region {name} is open read-only; open it read-write to write or lock it")]
    ReadOnly {
        /// The region.
        name: String,
    },
    /// The lock was not free by the deadline (or at once, for a try-lock).
    #[error("region {name}: the {wanted} lock is held by {holder}; gave up after {waited:?}")]
    Timeout {
        /// The region.
        name: String,
        /// `"read"` or `"write"`.
        wanted: &'static str,
        /// Who holds it, in words (`"pid 123 (writing)"`).
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The last writer died mid-write; the data may be partly written.
    #[error("region {name} was left half-written by a writer that died; the next completed write repairs it")]
    Torn {
        /// The region.
        name: String,
    },
}

/// Removing a segment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The name breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No segment has this name.
    #[error("no segment named {name} to remove")]
    NotFound {
        /// The segment.
        name: String,
    },
    /// The OS refused or failed.
    #[error("cannot remove segment {name}: {source}")]
    Os {
        /// The segment.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Becoming a channel's publisher failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublisherError {
    /// The name breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The slot count or frame size asked for is impossible.
    #[error("cannot create channel {name}: {what}")]
    Geometry {
        /// The channel.
        name: String,
        /// What is wrong with it.
        what: String,
    },
    /// Creating the segment failed.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Opening the existing channel (to take it over) failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Another live process publishes on this channel.
    #[error(
        "channel {name} already has a live publisher, pid {pid}; stop it first or use another name"
    )]
    WriterAlive {
        /// The channel.
        name: String,
        /// The publisher's process ID.
        pid: u32,
    },
    /// The existing channel cannot carry the frames asked for.
    #[error("channel {name} exists with {what}")]
    Incompatible {
        /// The channel.
        name: String,
        /// Its geometry, in words, and what to do.
        what: String,
    },
    /// The name kept changing under us (other processes removing and
    /// creating it at the same time).
    #[error(
        "cannot create channel {name}: other processes keep removing or replacing it; try again"
    )]
    Busy {
        /// The channel.
        name: String,
    },
    /// The OS refused a resource the channel needs (Windows: its wake
    /// events).
    #[error("cannot create channel {name}: {source}")]
    Os {
        /// The channel.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Publishing one frame failed; the channel is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The frame is larger than the channel's slots.
    #[error("channel {name}: a {len}-byte frame does not fit in its {max}-byte slots")]
    TooLarge {
        /// The channel.
        name: String,
        /// The frame's length.
        len: usize,
        /// The largest frame the channel takes.
        max: usize,
    },
    /// Subscribers lease every slot but the latest; the frame is dropped
    /// rather than waiting for them.
    #[error("channel {name}: subscribers {} hold leases on every free slot of {slots}; frame dropped (create the channel with more slots; leases older than the channel's max lease are revoked)", pids(.holders))]
    AllSlotsLeased {
        /// The channel.
        name: String,
        /// Its slot count.
        slots: u32,
        /// The PIDs of the lease holders.
        holders: Vec<u32>,
    },
    /// Another process shrank the channel's memory; frames written now go
    /// nowhere. The publisher must stop (and may create the channel anew).
    #[error("channel {name}: another process truncated its shared memory; publishing stopped (whoever may write the channel did it: check its mode or SDDL)")]
    Truncated {
        /// The channel.
        name: String,
    },
    /// Another process took this channel over (it judged this one dead).
    #[error("channel {name}: pid {pid} has taken over publishing; this publisher must stop")]
    WriterLost {
        /// The channel.
        name: String,
        /// The new publisher (0 when nobody holds the role).
        pid: u32,
    },
}

fn pids(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "(unknown pids)".to_owned();
    }
    let list: Vec<String> = pids.iter().map(|p| format!("pid {p}")).collect();
    list.join(", ")
}

/// Subscribing to a channel failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriberError {
    /// The name breaks the naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Opening the channel failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The channel's own header contradicts itself.
    #[error("cannot subscribe to channel {name}: its header is corrupt ({what})")]
    Corrupt {
        /// The channel.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// Every lease-table entry is taken by a live process.
    #[error("cannot subscribe to channel {name} for leasing: all {max} lease-table entries are taken by live processes (read-only subscribers need no entry)")]
    TableFull {
        /// The channel.
        name: String,
        /// The table's size.
        max: u32,
    },
    /// Leasing was asked for, but this user may not write the channel's
    /// lease table.
    #[error("cannot lease frames of channel {name}: its publisher did not let this user write its lease table (it must grant that: serve --lease-mode 666 on Linux, --lease-sddl on Windows); subscribe read-only instead")]
    LeasingDenied {
        /// The channel.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The channel did not appear in time.
    #[error("channel {name} did not appear within {waited:?}; is its publisher running?")]
    Timeout {
        /// The channel.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The OS would not give us a wake-up event.
    #[error("cannot subscribe to channel {name}: {source}")]
    Os {
        /// The channel.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Reading a frame failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The caller's buffer is smaller than the frame.
    #[error("channel {name}: the frame has {needed} bytes, the buffer only {got}")]
    BufferTooSmall {
        /// The channel.
        name: String,
        /// The frame's length.
        needed: usize,
        /// The buffer's length.
        got: usize,
    },
    /// A leasing subscriber was asked for a lease but opened the channel
    /// read-only, or the channel has no lease table it may write.
    #[error("channel {name}: {what}")]
    NotLeasing {
        /// The channel.
        name: String,
        /// Why.
        what: String,
    },
    /// The publisher revoked the lease while the frame was in use (it held
    /// the publisher's last free slot for longer than the channel's max
    /// lease), so what was read may be a mix of two frames: discard it.
    #[error("channel {name}: the lease on frame {number} was revoked while in use (it kept the publisher from every free slot too long); discard what was read")]
    Revoked {
        /// The channel.
        name: String,
        /// The frame that was leased.
        number: u64,
    },
    /// A detached lease of this subscriber is still held; a subscriber
    /// holds one lease at a time.
    #[error(
        "channel {name}: this subscriber already holds a lease; release it before leasing again"
    )]
    LeaseHeld {
        /// The channel.
        name: String,
    },
    /// Another process shrank the channel's memory under us.
    #[error("channel {name}: another process truncated its shared memory; reopen it")]
    Truncated {
        /// The channel.
        name: String,
    },
    /// The writer overwrote the frame faster than it could be copied.
    #[error("channel {name}: the publisher overwrote every frame before it could be copied; lease frames in place or add slots")]
    Overrun {
        /// The channel.
        name: String,
    },
    /// A slot's metadata is impossible (something scribbled on the channel).
    #[error("channel {name}: corrupt frame ({what})")]
    Corrupt {
        /// The channel.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// No frame newer than asked for arrived in time.
    #[error("channel {name}: no frame newer than {than} within {waited:?} (latest is {latest})")]
    Timeout {
        /// The channel.
        name: String,
        /// The frame number asked to exceed.
        than: u64,
        /// The newest frame number at the end.
        latest: u64,
        /// How long we waited.
        waited: Duration,
    },
}
