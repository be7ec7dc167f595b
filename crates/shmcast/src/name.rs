//! Portable segment names.
//!
//! One rule on every OS, so that a name that works on Linux works on Windows
//! and the other way round:
//!
//! - 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `-`, `_` and `.`;
//! - the first character is a letter or a digit.
//!
//! On Windows a name may carry a namespace prefix, `Local\` (the default: the
//! caller's logon session) or `Global\` (every session; creating there needs
//! `SeCreateGlobalPrivilege`, which services have). On Linux there is one
//! namespace, `/dev/shm`, and the prefix is accepted and ignored, so the same
//! configuration string works on both.
//!
//! Names are compared with their case, on both: `cam` and `Cam` are two
//! segments (Linux file names are case-sensitive, and so are Windows kernel
//! object names, as Microsoft documents for sections and events and Wine
//! does too). Only the namespace prefix may be written in any case.
//!
//! The OS object behind a name is `shmcast.NAME`: `/dev/shm/shmcast.NAME` on
//! Linux, `Local\shmcast.NAME` or `Global\shmcast.NAME` on Windows. The prefix
//! keeps our objects apart from everyone else's and lets [`clean`] find them.
//!
//! [`clean`]: crate::clean

use std::fmt;

/// The longest name accepted, in bytes (without a namespace prefix).
pub const MAX_NAME_LEN: usize = 200;

/// The prefix of every OS object this crate creates.
pub(crate) const OBJECT_PREFIX: &str = "shmcast.";
/// Between a segment's object name and a companion's suffix.
pub(crate) const COMPANION_SEPARATOR: char = '~';
/// The companion that holds a channel's lease table.
pub(crate) const LEASES: &str = "leases";

/// Where on Windows a segment's name lives. Linux has one namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// The creator's logon session (`Local\`), the Windows default.
    #[default]
    Local,
    /// All sessions (`Global\`): a service and desktop apps can share it.
    Global,
}

/// A validated segment name, with its namespace.
///
/// The rule, the same on every OS: 1 to [`MAX_NAME_LEN`] bytes of ASCII
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit,
/// optionally after a `Local\` or `Global\` prefix (the Windows namespace;
/// accepted and ignored on Linux). Names are case-sensitive on every OS:
/// `cam` and `Cam` are two segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name {
    namespace: Namespace,
    base: String,
    /// A companion object of the segment `base` (a channel's lease table):
    /// its OS object is `shmcast.BASE~COMPANION`. `~` is outside the naming
    /// rule, so no user's name can collide with a companion.
    companion: Option<&'static str>,
}

/// Why a string is not a valid segment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("a segment name cannot be empty; use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 - _ .")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("segment name {name:?} is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// The name as given (cut to a readable length).
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside the portable set.
    #[error(
        "segment name {name:?} has {ch:?} at byte {position}; \
         use only A-Z a-z 0-9 - _ . and start with a letter or digit"
    )]
    BadCharacter {
        /// The name as given.
        name: String,
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        position: usize,
    },
}

impl Name {
    /// Parses and validates a name, with an optional `Local\` or `Global\`
    /// prefix (in any case; the name after it keeps its case).
    ///
    /// # Errors
    /// [`NameError`] when the name breaks the rule (see [`Name`]).
    ///
    /// # Example
    /// ```
    /// use shmcast::{Name, Namespace};
    /// let n = Name::new(r"Global\camera-0").unwrap();
    /// assert_eq!(n.namespace(), Namespace::Global);
    /// assert_eq!(n.base(), "camera-0");
    /// assert!(Name::new("no/slashes").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Name, NameError> {
        let (namespace, base) = split_namespace(name);
        validate_base(base)?;
        Ok(Name {
            namespace,
            base: base.to_owned(),
            companion: None,
        })
    }

    /// The companion object `what` of this name (see the `companion` field).
    pub(crate) fn companion(&self, what: &'static str) -> Name {
        Name {
            companion: Some(what),
            ..self.clone()
        }
    }

    /// The segment this companion belongs to (itself if it is none).
    pub(crate) fn without_companion(&self) -> Name {
        Name {
            companion: None,
            ..self.clone()
        }
    }

    /// Whether this names a companion object (a lease table).
    pub(crate) fn is_companion_name(&self) -> bool {
        self.companion.is_some()
    }

    /// Parses an OS object name (without namespace) back into a name, for
    /// listings: `shmcast.NAME` or `shmcast.NAME~leases`.
    pub(crate) fn from_object_name(object: &str) -> Option<Name> {
        let rest = object.strip_prefix(OBJECT_PREFIX)?;
        let (base, companion) = match rest.split_once(COMPANION_SEPARATOR) {
            Some((base, LEASES)) => (base, Some(LEASES)),
            Some(_) => return None,
            None => (rest, None),
        };
        let mut name = Name::new(base).ok()?;
        name.companion = companion;
        Some(name)
    }

    /// The same name in another namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: Namespace) -> Name {
        self.namespace = namespace;
        self
    }

    /// The name without its namespace.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The namespace (meaningful on Windows only).
    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// The name of the OS object, without any namespace: `shmcast.NAME`.
    pub(crate) fn object_name(&self) -> String {
        match self.companion {
            None => format!("{OBJECT_PREFIX}{}", self.base),
            Some(c) => format!("{OBJECT_PREFIX}{}{COMPANION_SEPARATOR}{c}", self.base),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace {
            Namespace::Local => f.write_str(&self.base)?,
            Namespace::Global => write!(f, "Global\\{}", self.base)?,
        }
        match self.companion {
            Some(c) => write!(f, " ({c})"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::new(s)
    }
}

/// Anything that names a segment: `&str`, `String`, or a [`Name`].
///
/// Strings are validated by [`Name::new`] when the call is made.
pub trait IntoName {
    /// The validated name.
    ///
    /// # Errors
    /// [`NameError`] when a string breaks the naming rule.
    fn into_name(self) -> Result<Name, NameError>;
}

impl IntoName for &str {
    fn into_name(self) -> Result<Name, NameError> {
        Name::new(self)
    }
}

impl IntoName for &String {
    fn into_name(self) -> Result<Name, NameError> {
        Name::new(self)
    }
}

impl IntoName for String {
    fn into_name(self) -> Result<Name, NameError> {
        Name::new(&self)
    }
}

impl IntoName for Name {
    fn into_name(self) -> Result<Name, NameError> {
        Ok(self)
    }
}

impl IntoName for &Name {
    fn into_name(self) -> Result<Name, NameError> {
        Ok(self.clone())
    }
}

fn split_namespace(name: &str) -> (Namespace, &str) {
    for (prefix, namespace) in [
        ("global\\", Namespace::Global),
        ("local\\", Namespace::Local),
    ] {
        if let Some(head) = name.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) {
                return (namespace, &name[prefix.len()..]);
            }
        }
    }
    (Namespace::Local, name)
}

fn validate_base(base: &str) -> Result<(), NameError> {
    if base.is_empty() {
        return Err(NameError::Empty);
    }
    if base.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: base.chars().take(40).chain("…".chars()).collect(),
            len: base.len(),
        });
    }
    for (position, ch) in base.char_indices() {
        let ok = ch.is_ascii_alphanumeric() || (position > 0 && matches!(ch, '-' | '_' | '.'));
        if !ok {
            return Err(NameError::BadCharacter {
                name: base.to_owned(),
                ch,
                position,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_portable_names() {
        for ok in ["a", "cam0", "Camera-1.rgb_24", &"x".repeat(MAX_NAME_LEN)] {
            let n = Name::new(ok).unwrap();
            assert_eq!(n.base(), ok);
            assert_eq!(n.namespace(), Namespace::Local);
        }
    }

    #[test]
    fn namespace_prefix_is_split_off() {
        let n = Name::new(r"GLOBAL\cam").unwrap();
        assert_eq!((n.namespace(), n.base()), (Namespace::Global, "cam"));
        assert_eq!(n.to_string(), r"Global\cam");
        let n = Name::new(r"Local\cam").unwrap();
        assert_eq!((n.namespace(), n.base()), (Namespace::Local, "cam"));
        assert_eq!(n.object_name(), "shmcast.cam");
    }

    #[test]
    fn rejects_what_one_os_would_refuse() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new(r"Global\"), Err(NameError::Empty));
        assert!(matches!(
            Name::new(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { len: 201, .. })
        ));
        for bad in ["a/b", r"a\b", ".hidden", "-x", "sp ace", "é", "a:b", "a\0"] {
            let err = Name::new(bad).unwrap_err();
            assert!(
                matches!(err, NameError::BadCharacter { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn error_message_says_what_to_use() {
        let msg = Name::new("a/b").unwrap_err().to_string();
        assert!(msg.contains("'/'") && msg.contains("A-Z a-z 0-9"), "{msg}");
    }
}
