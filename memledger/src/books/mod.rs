//! The books: who owns how many bytes, per scope. The bottom layer: lock-free, and but for the
//! shared slots free of global state; nothing here reads a thread's state or imports a layer
//! above.
//!
//! - [`id`]: the scope id type, the size of the table, the reserved ids and the path rule (a
//!   leaf).
//! - [`cells`]: the per-thread counter cells and the per-scope shared slots (publishing, peaks,
//!   enforced limits). `loom/` compiles this file over loom's atomics.
//! - [`slab`]: a thread's table of cells with its parts of the other per-thread subsystems, and
//!   the list of every slab (also model-checked, with no parts).
//! - [`shared`]: the process-wide slots, reached by scope id, and the ledger's own blocks.
//! - [`callsite`]: the lock-free cache of one `scope!` call site (also model-checked).
//!
//! The thread-local state, the hot path's lookups and the cold paths that refill a thread's cells
//! are in [`crate::thread`], above.

pub(crate) mod callsite;
pub(crate) mod cells;
pub(crate) mod id;
pub(crate) mod shared;
pub(crate) mod slab;
