//! The atomics the crate uses, imported through one place so that a model checker's types can be
//! swapped in under a `cfg` without touching the code that uses them.
//!
//! The crate itself is never built with `cfg(loom)`: the model checks in `loom/` compile this file
//! (and the lock-free files that import it) into a crate of their own, where that arm is taken.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
