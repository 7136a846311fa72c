//! The atomics the crate uses, imported through one place so that a model checker's types can be
//! swapped in under a `cfg` without touching the code that uses them.
//!
//! The crate itself never takes the loom arm: the model checks in `loom/` compile this file (and
//! the lock-free files that import it) into a crate of their own, whose build script sets
//! `cfg(memledger_loom)`. A flag of the crate's own, not `cfg(loom)`: a program that builds
//! everything with `--cfg loom` for its own model checks must still get std's atomics here.

// Not every target uses every one of them (Windows's thread exit needs no `AtomicUsize`).
#[cfg(not(memledger_loom))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(memledger_loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
