//! The books: who owns how many bytes, per scope, written by the allocation path.
//!
//! - [`id`]: the scope id type, the size of the table and the reserved ids (a leaf).
//! - [`cells`]: the lock-free parts, free of global state: per-thread counter cells, per-scope
//!   shared slots (publishing, peaks, enforced limits) and the slab list. `loom/` compiles this
//!   file over loom's atomics.
//! - [`per_thread`]: the process-wide instances of those cells, each thread's state, and the hot
//!   path that books an allocation, free or resize.
//! - [`registry`]: names and parents of scope ids (the cold path, behind a mutex).
//! - [`callsite`]: the lock-free cache of one `scope!` call site (also model-checked).

pub(crate) mod callsite;
pub(crate) mod cells;
pub(crate) mod id;
pub(crate) mod per_thread;
pub(crate) mod registry;
