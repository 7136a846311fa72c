//! Stands in for the arenas where they are not built (feature `arenas` off, or not Linux): no
//! thread tables, no arena blocks, no arenas.

/// A thread's arena tables: nothing to keep.
#[derive(Default)]
pub(crate) struct ThreadArenas;

/// Drives the decay of the scope arenas from the books' cold path: there are none.
#[inline(always)]
pub(crate) fn after_refill() {}

/// Gives this thread's tables back at thread exit: there are none.
pub(crate) fn release_thread() {}

/// Live blocks in the arenas: none.
pub(crate) fn live_blocks() -> u64 {
    0
}

/// jemalloc's index of every arena made so far: none.
pub(crate) fn indexes() -> Vec<u32> {
    Vec::new()
}

/// Every arena made so far, with the scope it serves and jemalloc's index for it: none.
pub(crate) fn scope_arenas() -> Vec<(String, u32)> {
    Vec::new()
}
