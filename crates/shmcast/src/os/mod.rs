//! The only place that calls the OS. `unix.rs` and `windows.rs` each define
//! the same `Mapping` type and free functions (memmap2's pattern: one module
//! picked by path, no trait), so everything above this module is
//! platform-free.

use std::io;

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod imp;

pub(crate) use imp::*;

/// An OS call that failed, which one, and what the failure means for the
/// layers above (so that they never look at a call's name).
#[derive(Debug)]
pub(crate) struct OsError {
    pub op: &'static str,
    pub kind: OsErrorKind,
    pub source: io::Error,
}

/// What an [`OsError`] means, as far as the OS layer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OsErrorKind {
    /// Nothing more than `source` says.
    Other,
    /// No room for the object: a full `/dev/shm`, or the commit limit.
    OutOfSpace,
    /// The name is taken by something that is not a shared memory object
    /// (Linux: a FIFO, a directory...; Windows: an event, a mutex...).
    Foreign,
    /// The name is taken by a shared memory object that refuses this
    /// process the access a creator asks for (Windows: a section kept by
    /// the processes that hold it, whose security descriptor grants this
    /// user no write access).
    TakenAndDenied,
    /// The security descriptor (SDDL) could not be parsed.
    BadSecurityDescriptor,
}

impl OsError {
    pub(crate) fn new(op: &'static str, source: io::Error) -> OsError {
        let kind = if imp::is_out_of_space(&source) {
            OsErrorKind::OutOfSpace
        } else {
            OsErrorKind::Other
        };
        OsError { op, kind, source }
    }

    /// `op` found the name taken by `what` (a directory, a FIFO, an
    /// event...).
    pub(crate) fn foreign(op: &'static str, what: &str) -> OsError {
        OsError {
            op,
            kind: OsErrorKind::Foreign,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}, not a shared memory object"),
            ),
        }
    }

    #[cfg(windows)]
    pub(crate) fn with_kind(mut self, kind: OsErrorKind) -> OsError {
        self.kind = kind;
        self
    }
}

/// Whether a wake word holding `want` asks for a wake when the generation
/// moves past `moved_past` (Linux's wake word, `unix.rs`): somebody
/// declared a sleep on `moved_past`, or on the new generation after it
/// (which a sleeper on `moved_past` may have been raised to meanwhile).
/// Sleepers only ever raise the word ([`declare`]), so no other value can
/// hide a sleeper on `moved_past`; a sleeper that left, or was killed
/// asleep, costs at most one wake.
pub(crate) fn wanted(want: u32, moved_past: u32) -> bool {
    want == moved_past || want == moved_past.wrapping_add(1)
}

/// Declares a sleep on generation `expected` of `generation` in the wake
/// word `want`; `false` when it need not sleep (the generation moved on)
/// or could not declare (a peer keeps changing the word: sleep briefly).
///
/// The word is raised to `expected`, never lowered: it is read before the
/// generation, so a value above `expected` read while the generation is
/// still `expected` cannot be a sleeper's (none can have read a later
/// generation yet) and is a peer's garbage, which is replaced. Then a
/// sequentially consistent fence and the generation read again, against
/// the publisher's move of the generation, its fence and its read of the
/// word (Dekker's pattern, with fences on both sides): either this read
/// sees the new generation, or the publisher's read sees the word at
/// `expected` or above it.
pub(crate) fn declare(
    want: &crate::sync::AtomicU32,
    generation: &crate::sync::AtomicU32,
    expected: u32,
) -> bool {
    use crate::sync::Ordering::SeqCst;
    for _ in 0..4 {
        let current = want.load(SeqCst);
        if generation.load(SeqCst) != expected {
            return false;
        }
        if current != expected
            && want
                .compare_exchange(current, expected, SeqCst, SeqCst)
                .is_err()
        {
            continue;
        }
        crate::sync::fence(SeqCst);
        return generation.load(SeqCst) == expected;
    }
    false
}

/// A wake object's size: one page.
#[cfg(not(loom))]
pub(crate) const WAKE_LEN: usize = 4096;
/// Where in it the wake word is; Linux keeps the channel's instance at 0.
#[cfg(not(loom))]
const WANT_OFFSET: usize = 64;
#[cfg(not(loom))]
const INSTANCE_OFFSET: usize = 0;
/// The longest a declared sleep lasts before it is declared again: the
/// bound on what a scribbled wake word can cost a sleeper.
#[cfg(not(loom))]
pub(crate) const DECLARED_SLICE: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a sleep lasts at most when it could not be declared (no wake
/// word, or one a peer keeps changing): the publisher may not know of it,
/// so the sleeper looks again this often.
#[cfg(not(loom))]
pub(crate) const UNDECLARED_SLICE: std::time::Duration = std::time::Duration::from_millis(10);

/// A mapped wake object (Linux `shmcast.NAME~wake`, Windows
/// `shmcast.NAME~wake.INSTANCE`), checked when made to hold its words.
#[cfg(not(loom))]
pub(crate) struct WakePage(imp::Mapping);

#[cfg(not(loom))]
impl WakePage {
    /// `map` as a wake page; `None` when it is too short to be one.
    pub(crate) fn new(map: imp::Mapping) -> Option<WakePage> {
        (map.len() >= WAKE_LEN).then_some(WakePage(map))
    }

    /// The mapping (Linux's, to check its size and remove its name).
    #[cfg_attr(windows, allow(dead_code))]
    pub(crate) fn map(&self) -> &imp::Mapping {
        &self.0
    }

    /// The wake word: the generation somebody sleeps on.
    pub(crate) fn want(&self) -> &crate::sync::AtomicU32 {
        // SAFETY: the mapping is at least WAKE_LEN bytes (`new`),
        // page-aligned, and lives as long as `self`; the offset is inside it
        // and 4-byte aligned; an atomic is valid for any bytes a peer writes.
        unsafe {
            &*self
                .0
                .as_ptr()
                .wrapping_add(WANT_OFFSET)
                .cast::<crate::sync::AtomicU32>()
        }
    }

    /// The channel instance the page belongs to (Linux's; Windows names the
    /// instance in the section's name).
    #[cfg_attr(windows, allow(dead_code))]
    pub(crate) fn instance(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: as for `want`: inside the page, 8-byte aligned.
        unsafe {
            &*self
                .0
                .as_ptr()
                .wrapping_add(INSTANCE_OFFSET)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }
}

/// How long a sleeper on generation `expected` of `generation` may sleep
/// before it looks again: [`DECLARED_SLICE`] when it declared its sleep in
/// the wake word `want` ([`declare`]), [`UNDECLARED_SLICE`] when it has no
/// word or could not declare. Either way it declares again after the slice,
/// until the generation moves or its time is up.
#[cfg(not(loom))]
pub(crate) fn sleep_slice(
    want: Option<&crate::sync::AtomicU32>,
    generation: &crate::sync::AtomicU32,
    expected: u32,
) -> std::time::Duration {
    if want.is_some_and(|want| declare(want, generation, expected)) {
        DECLARED_SLICE
    } else {
        UNDECLARED_SLICE
    }
}

/// What the wake word `want` asks, read by the publisher right after it
/// moved the generation: a sequentially consistent fence first, against
/// the sleepers' raise of the word and their read of the generation
/// ([`declare`]).
#[cfg(not(loom))]
pub(crate) fn asked(want: &crate::sync::AtomicU32) -> u32 {
    use crate::sync::Ordering::SeqCst;
    crate::sync::fence(SeqCst);
    want.load(SeqCst)
}

/// The suffix of a channel's wake object (Linux: `shmcast.NAME~wake`, see
/// `unix.rs`): not a segment, so listings skip it and `clean` removes it
/// with its channel.
pub(crate) const WAKE_SUFFIX: &str = "~wake";

/// The security descriptor of a channel's wake word on Windows (see
/// `windows.rs`, `Wakers`): the channel's own, `sddl`, with writing added
/// to every access-allowed ACE of its DACL that grants reading, so that
/// whoever may read the channel may declare a sleep, as Linux's wake word
/// is made from the channel's read bits, and to every access-denied ACE
/// that denies reading, so that nobody kept from reading the channel may
/// write the word. Rights given as letters get `GW` where `GR` or `LC` (a
/// section's map-read right) is among them (`FR`, a file's generic read,
/// does not include map-read); rights given as a number get
/// `GENERIC_WRITE` and the section's map-write right where they have
/// `GENERIC_ALL`, `GENERIC_READ` or map-read. Everything else (the owner,
/// the SACL and its integrity label, object ACEs) is kept as it is. The
/// result is only ever handed to Windows, which refuses it if the input
/// was not valid SDDL.
#[cfg_attr(not(any(windows, test)), allow(dead_code))]
pub(crate) fn readers_may_write(sddl: &str) -> String {
    let mut out = String::with_capacity(sddl.len() + 16);
    let mut in_dacl = false;
    let mut rest = sddl;
    while let Some(c) = rest.chars().next() {
        // A component's letter (`O:`, `G:`, `D:`, `S:`) is outside any ACE.
        if rest.len() >= 2 && rest.as_bytes()[1] == b':' && c.is_ascii_uppercase() {
            in_dacl = c == 'D';
            out.push_str(&rest[..2]);
            rest = &rest[2..];
            continue;
        }
        if c != '(' {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        // One ACE, to its matching parenthesis (resource attribute ACEs
        // nest them).
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, b) in rest.bytes().enumerate() {
            match b {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let ace = &rest[..end];
        if in_dacl && end >= 2 && ace.ends_with(')') {
            out.push('(');
            out.push_str(&writable_ace(&ace[1..end - 1]));
            out.push(')');
        } else {
            out.push_str(ace);
        }
        rest = &rest[end..];
    }
    out
}

/// One ACE's fields (without parentheses), with writing added to the
/// reading it allows or denies: see [`readers_may_write`].
fn writable_ace(ace: &str) -> String {
    const GENERIC_ALL: u32 = 0x1000_0000;
    const GENERIC_READ: u32 = 0x8000_0000;
    const GENERIC_WRITE: u32 = 0x4000_0000;
    const SECTION_MAP_READ: u32 = 0x4;
    const SECTION_MAP_WRITE: u32 = 0x2;
    let mut fields: Vec<String> = ace.split(';').map(str::to_owned).collect();
    // Allowed to read: allowed to write the word. Denied reading: denied
    // writing it too, or an allow ACE after it would let in the very
    // principal the channel keeps out.
    if fields.len() < 6 || !matches!(fields[0].trim(), "A" | "D") {
        return ace.to_owned();
    }
    let rights = &fields[2];
    let hex = rights
        .strip_prefix("0x")
        .or_else(|| rights.strip_prefix("0X"));
    if let Some(hex) = hex {
        if let Ok(mask) = u32::from_str_radix(hex, 16) {
            if mask & (GENERIC_ALL | GENERIC_READ | SECTION_MAP_READ) != 0 {
                fields[2] = format!("0x{:x}", mask | GENERIC_WRITE | SECTION_MAP_WRITE);
            }
        }
    } else {
        let tokens: Vec<&str> = (0..rights.len() / 2)
            .filter_map(|i| rights.get(2 * i..2 * i + 2))
            .collect();
        let reads = tokens.iter().any(|t| matches!(*t, "GR" | "GA" | "LC"));
        let writes = tokens.iter().any(|t| matches!(*t, "GA" | "GW"));
        if reads && !writes {
            fields[2].push_str("GW");
        }
    }
    fields.join(";")
}

/// Which events of a ring of (at most 32) manual-reset events a publisher
/// may have left set (Windows, `windows.rs`, `Wakers`). The publisher sets
/// an event only when a sleeper declared it waits, so it must not reset
/// every event it moves onto either (a system call each): it resets the
/// ones this says may be set. (A publisher taking over resets all of its
/// predecessor's at once, and starts from none.)
#[cfg_attr(not(any(windows, test)), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SetEvents(u32);

#[cfg_attr(not(any(windows, test)), allow(dead_code))]
impl SetEvents {
    /// All clear.
    pub(crate) fn none() -> SetEvents {
        SetEvents(0)
    }

    /// Whether event `i` must be reset before the generation moves onto
    /// it; counted clear from now on.
    pub(crate) fn take(&mut self, i: u32) -> bool {
        let bit = 1u32 << (i % 32);
        let was = self.0 & bit != 0;
        self.0 &= !bit;
        was
    }

    /// Event `i` was just set.
    pub(crate) fn mark(&mut self, i: u32) {
        self.0 |= 1u32 << (i % 32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_given_writing_and_nothing_else_changes() {
        let cases = [
            ("D:(A;;GA;;;SY)(A;;GR;;;IU)", "D:(A;;GA;;;SY)(A;;GRGW;;;IU)"),
            (
                "D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGX;;;IU)",
                "D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGXGW;;;IU)",
            ),
            ("D:(A;;GA;;;WD)", "D:(A;;GA;;;WD)"),
            // Execute only (waiting on events) is not reading: kept.
            ("D:(A;;GX;;;WD)", "D:(A;;GX;;;WD)"),
            // Flags, the owner and the SACL are kept; FR is no map-read.
            (
                "O:SYD:P(D;;GA;;;AN)(A;OICI;GR;;;WD)(A;;FR;;;BU)S:(ML;;NW;;;LW)",
                "O:SYD:P(D;;GA;;;AN)(A;OICI;GRGW;;;WD)(A;;FR;;;BU)S:(ML;;NW;;;LW)",
            ),
            // Whoever is denied reading is denied writing the word too.
            (
                "D:(D;;GR;;;BG)(A;;GR;;;WD)",
                "D:(D;;GRGW;;;BG)(A;;GRGW;;;WD)",
            ),
            (
                "D:(D;;0x4;;;BG)(A;;GA;;;WD)",
                "D:(D;;0x40000006;;;BG)(A;;GA;;;WD)",
            ),
            (
                "D:(A;;0x80000000;;;WD)(A;;0x4;;;IU)(A;;0x20000;;;BU)",
                "D:(A;;0xc0000002;;;WD)(A;;0x40000006;;;IU)(A;;0x20000;;;BU)",
            ),
            // Not SDDL Windows would take: handed on as it was, for
            // Windows to refuse.
            ("D:(A;;GR", "D:(A;;GR"),
            ("", ""),
            ("D:((((", "D:(((("),
        ];
        for (channel, wake) in cases {
            assert_eq!(readers_may_write(channel), wake, "{channel}");
        }
    }

    #[test]
    fn a_generation_never_moves_onto_an_event_left_set() {
        // A publisher's ring of 16 events, run through random publishes
        // and sleepers, with the events modelled: every event the
        // generation moves onto is clear, and a sleeper's event is set by
        // the publish after the one it slept on.
        const RING: u32 = 16;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        {
            let mut events = [false; RING as usize];
            let mut known = SetEvents::none();
            let mut generation = random() as u32;
            for _ in 0..100_000 {
                let sleeper = random() % 4 == 0;
                let next = generation.wrapping_add(1);
                if known.take(next % RING) {
                    events[(next % RING) as usize] = false;
                }
                assert!(!events[(next % RING) as usize], "moved onto a set event");
                generation = next;
                if sleeper {
                    let left = generation.wrapping_sub(1) % RING;
                    events[left as usize] = true;
                    known.mark(left);
                }
            }
        }
    }
}
