//! The atomics the channel protocol is written against: std's in normal
//! builds, loom's when model checking (`RUSTFLAGS="--cfg loom"`), so the very
//! same protocol code is what loom explores.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
