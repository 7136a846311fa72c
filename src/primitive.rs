//! The atomics the crate uses, imported through one place so that a model checker's types can be
//! swapped in under a `cfg` without touching the code that uses them.

pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
