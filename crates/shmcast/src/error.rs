//! The one error type: what went wrong ([`ErrorKind`], for code to act
//! on), on which segment or channel, a message that says what to do, and
//! the OS error (or other cause) as its source. Like `std::io::Error`.
//!
//! Messages speak of the library and the OS, never of a command's flags:
//! the `shmcast` command adds its own hints by kind, and each language
//! binding derives its codes and exceptions from the kind in one place.
//!
//! The publish path's errors (a frame too large, every slot leased, the
//! writer role lost, a truncated channel) are made without allocating:
//! their names are the publisher's shared `Arc<str>`, and their messages
//! are written only when displayed.

use std::fmt;
use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: what a caller matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An impossible size, geometry, offset or security descriptor.
    InvalidArgument,
    /// The name breaks the naming rule.
    InvalidName,
    /// No segment or channel has this name.
    NotFound,
    /// The name is taken (by a live segment, another user's, or one whose
    /// owner cannot be read).
    AlreadyExists,
    /// The OS refused access.
    PermissionDenied,
    /// The memory could not be reserved.
    NoSpace,
    /// Something that is not a shmcast segment has the name.
    Foreign,
    /// A segment whose creator never finished creating it.
    Uninitialized,
    /// A segment of another layout version, kind or geometry.
    Incompatible,
    /// Shared memory holds impossible values (a peer scribbled on it).
    Corrupt,
    /// Another process truncated the shared memory.
    Truncated,
    /// Another live process publishes on this channel.
    WriterAlive,
    /// Another process took over publishing on this channel.
    WriterLost,
    /// Busy: a lease already held, a lease table full of live
    /// subscribers, a name that others keep replacing.
    Busy,
    /// Nothing happened in time (no frame, no channel, no lock).
    Timeout,
    /// The frame is larger than the channel's slots.
    TooLarge,
    /// Subscribers lease every free slot: the frame was dropped.
    AllSlotsLeased,
    /// The caller's buffer is smaller than the frame.
    BufferTooSmall,
    /// A region range lies outside the region.
    OutOfBounds,
    /// Writing or locking through a read-only open.
    ReadOnly,
    /// A region's last writer died mid-write; the data may be torn.
    Torn,
    /// Leasing needs a leasing subscriber.
    NotLeasing,
    /// The publisher revoked a lease: what was read through it may be
    /// torn.
    Revoked,
    /// The publisher overwrote every frame before it could be copied.
    Overrun,
    /// Any other OS failure.
    Os,
}

/// A failure of a shmcast operation: its [`kind`](Error::kind), the
/// segment or channel it concerns, a message that says what to do, and
/// its cause as [`source`](std::error::Error::source).
pub struct Error {
    kind: ErrorKind,
    name: Option<Arc<str>>,
    pid: Option<u32>,
    number: Option<u64>,
    len: Option<usize>,
    what: What,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The message, written when the error is made, or (on the publish path)
/// when it is displayed.
enum What {
    Text(String),
    TooLarge { len: usize, max: usize },
    AllSlotsLeased { slots: u32 },
    WriterLost,
    Truncated,
}

impl Error {
    /// An error of `kind` with the whole message `message`.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            name: None,
            pid: None,
            number: None,
            len: None,
            what: What::Text(message.into()),
            source: None,
        }
    }

    /// The same, about segment or channel `name`.
    pub(crate) fn on(mut self, name: impl fmt::Display) -> Error {
        self.name = Some(name.to_string().into());
        self
    }

    /// The same, naming process `pid`.
    pub(crate) fn with_pid(mut self, pid: u32) -> Error {
        self.pid = Some(pid);
        self
    }

    /// The same, naming frame `number`.
    pub(crate) fn with_number(mut self, number: u64) -> Error {
        self.number = Some(number);
        self
    }

    /// The same, about a frame of `len` bytes.
    pub(crate) fn with_len(mut self, len: usize) -> Error {
        self.len = Some(len);
        self
    }

    /// The same, caused by `source`.
    pub(crate) fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }

    fn publish(kind: ErrorKind, name: &Arc<str>, what: What) -> Error {
        Error {
            kind,
            name: Some(Arc::clone(name)),
            pid: None,
            number: None,
            len: None,
            what,
            source: None,
        }
    }

    /// A frame of `len` bytes for slots of `max` (no allocation).
    pub(crate) fn too_large(name: &Arc<str>, len: usize, max: usize) -> Error {
        Error::publish(ErrorKind::TooLarge, name, What::TooLarge { len, max }).with_len(len)
    }

    /// Every free slot of `slots` leased, `pid` among the holders (no
    /// allocation).
    pub(crate) fn all_slots_leased(name: &Arc<str>, slots: u32, pid: Option<u32>) -> Error {
        let mut e = Error::publish(
            ErrorKind::AllSlotsLeased,
            name,
            What::AllSlotsLeased { slots },
        );
        e.pid = pid;
        e
    }

    /// Process `pid` took the writer role over (no allocation).
    pub(crate) fn writer_lost(name: &Arc<str>, pid: u32) -> Error {
        Error::publish(ErrorKind::WriterLost, name, What::WriterLost).with_pid(pid)
    }

    /// The channel was truncated under the publisher (no allocation).
    pub(crate) fn publish_truncated(name: &Arc<str>) -> Error {
        Error::publish(ErrorKind::Truncated, name, What::Truncated)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The segment or channel it concerns, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The process it names, if any: the live writer
    /// ([`WriterAlive`](ErrorKind::WriterAlive)), the one that took over
    /// ([`WriterLost`](ErrorKind::WriterLost)), a lease holder
    /// ([`AllSlotsLeased`](ErrorKind::AllSlotsLeased)), a segment's
    /// creator ([`AlreadyExists`](ErrorKind::AlreadyExists)), a lock
    /// holder ([`Timeout`](ErrorKind::Timeout) on a region).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The length of the frame it concerns, if any: the frame that did
    /// not fit ([`TooLarge`](ErrorKind::TooLarge),
    /// [`BufferTooSmall`](ErrorKind::BufferTooSmall)).
    pub fn frame_len(&self) -> Option<usize> {
        self.len
    }

    /// The frame it concerns, if any: the revoked frame
    /// ([`Revoked`](ErrorKind::Revoked)), or the newest frame when a wait
    /// timed out ([`Timeout`](ErrorKind::Timeout)).
    pub fn frame_number(&self) -> Option<u64> {
        self.number
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name.as_deref().unwrap_or("?");
        match &self.what {
            What::Text(text) => f.write_str(text),
            What::TooLarge { len, max } => write!(
                f,
                "channel {name}: a {len}-byte frame does not fit in its {max}-byte slots"
            ),
            What::AllSlotsLeased { slots } => {
                write!(f, "channel {name}: subscribers ")?;
                if let Some(pid) = self.pid {
                    write!(f, "(pid {pid} among them) ")?;
                }
                write!(f, "hold leases on every free slot of {slots}; frame dropped (give the channel more slots; leases held past its max lease are revoked)")
            }
            What::WriterLost => match self.pid.filter(|&p| p != 0) {
                Some(pid) => write!(
                    f,
                    "channel {name}: pid {pid} has taken over publishing; this publisher must stop"
                ),
                None => write!(
                    f,
                    "channel {name}: this publisher no longer holds the writer role (it was cleared, or this is a forked child's copy); it must stop"
                ),
            },
            What::Truncated => write!(f, "channel {name}: another process truncated its shared memory; publishing stopped (whoever may write the channel did it: check who it grants write access)"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("message", &self.to_string());
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::name::NameError> for Error {
    fn from(e: crate::name::NameError) -> Error {
        Error::new(ErrorKind::InvalidName, e.to_string()).caused_by(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_paths_errors_say_what_happened_and_to_whom() {
        let name: Arc<str> = "cam".into();
        let e = Error::all_slots_leased(&name, 4, Some(7));
        assert_eq!(
            (e.kind(), e.pid(), e.name()),
            (ErrorKind::AllSlotsLeased, Some(7), Some("cam"))
        );
        assert!(
            e.to_string()
                .contains("(pid 7 among them) hold leases on every free slot of 4"),
            "{e}"
        );
        let e = Error::too_large(&name, 10, 8);
        assert_eq!(
            e.to_string(),
            "channel cam: a 10-byte frame does not fit in its 8-byte slots"
        );
        assert!(Error::writer_lost(&name, 9)
            .to_string()
            .contains("pid 9 has taken over"));
    }

    #[test]
    fn the_cause_is_the_source() {
        use std::error::Error as _;
        let e = Error::new(ErrorKind::Os, "cannot map x").caused_by(std::io::Error::other("boom"));
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("boom"));
        assert!(format!("{e:?}").contains("Os"));
    }
}
