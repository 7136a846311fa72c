//! Stands in for the arenas where they are not built (feature `arenas` off, or not 64-bit Linux):
//! no thread tables, no arena blocks, no arenas.

/// A thread's arena tables: nothing to keep.
#[derive(Default)]
pub(crate) struct ThreadArenas {
    front: Front,
}

/// A thread's front cache of arena blocks: nothing to keep.
#[derive(Default)]
pub(crate) struct Front;

/// The front cache of threads without a slab.
pub(crate) static COLD_FRONT: Front = Front;

impl ThreadArenas {
    /// Sets up a new table: nothing to do.
    pub(crate) fn init(&self) {}

    /// The front cache.
    pub(crate) fn front(&self) -> &Front {
        &self.front
    }
}

/// Drives the decay of the scope arenas from the books' cold path: there are none.
#[inline(always)]
pub(crate) fn after_refill(_arenas: &ThreadArenas) {}

/// Frees `ptr` if it is an arena block: there are none.
///
/// # Safety
///
/// - none: nothing is done.
pub(crate) unsafe fn free_if_arena_block(
    _arenas: Option<&ThreadArenas>,
    _ptr: *mut u8,
    _size: usize,
    _align: usize,
) -> bool {
    false
}

/// Gives the exiting thread's tables back: there are none.
pub(crate) fn release_thread(_arenas: &ThreadArenas) {}

/// Whether `A` is an allocator over which a ledger keeps scope arenas: none here.
#[inline(always)]
#[allow(clippy::extra_unused_type_parameters)] // The same signature as with the arenas.
pub(crate) fn is_jemalloc<A: 'static>() -> bool {
    false
}

/// What the arenas hold, for readers: nothing.
pub(crate) mod usage {
    /// How readers are handed every thread's tables (see the arenas' `usage.rs`).
    pub(crate) type EachTable<'a> = &'a mut dyn FnMut(&super::ThreadArenas);

    /// Live blocks in the arenas: none.
    pub(crate) fn live_blocks(_for_each_table: impl FnOnce(EachTable<'_>)) -> u64 {
        0
    }

    /// Bytes of freed blocks cached for the arenas: none.
    pub(crate) fn cached_bytes(_for_each_table: impl FnOnce(EachTable<'_>)) -> u64 {
        0
    }

    /// jemalloc's index of every arena made so far: none.
    pub(crate) fn indexes() -> Vec<u32> {
        Vec::new()
    }

    /// Which arena holds which scope's blocks: none are made here.
    pub(crate) struct ScopeArenaIndex {
        /// The scope's path.
        pub scope: String,
        /// jemalloc's index of the arena.
        pub jemalloc_index: u32,
    }

    /// Every arena made so far: none.
    pub(crate) fn list() -> Vec<ScopeArenaIndex> {
        Vec::new()
    }
}
