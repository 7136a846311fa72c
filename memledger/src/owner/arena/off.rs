//! Stands in for the arenas where they are not built (feature `arenas` off, or not 64-bit Linux): no
//! thread tables, no arena blocks, no arenas.

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
pub(crate) fn after_refill() {}

/// Frees `ptr` if it is an arena block: there are none.
///
/// # Safety
///
/// - none: nothing is done.
pub(crate) unsafe fn free_if_arena_block(_ptr: *mut u8, _size: usize, _align: usize) -> bool {
    false
}

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

/// Whether `A` is an allocator over which a ledger keeps scope arenas: none here.
#[inline(always)]
#[allow(clippy::extra_unused_type_parameters)] // The same signature as with the arenas.
pub(crate) fn is_jemalloc<A: 'static>() -> bool {
    false
}

/// The arena path of the ledger, never taken here ([`is_jemalloc`] is false): the trailer path.
impl<A: core::alloc::GlobalAlloc> crate::ledger::Ledger<A> {
    #[inline(always)]
    pub(crate) fn arena_alloc(&self, layout: core::alloc::Layout, zero: bool) -> *mut u8 {
        self.trailer_alloc(layout, zero)
    }

    /// # Safety
    ///
    /// - as for [`core::alloc::GlobalAlloc::dealloc`].
    #[inline(always)]
    pub(crate) unsafe fn arena_dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY:
        // - the caller's guarantee: every block is a trailer block here.
        unsafe { self.trailer_dealloc(ptr, layout) }
    }

    /// # Safety
    ///
    /// - as for [`core::alloc::GlobalAlloc::realloc`].
    #[inline(always)]
    pub(crate) unsafe fn arena_realloc(
        &self,
        ptr: *mut u8,
        layout: core::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee: every block is a trailer block here.
        unsafe { self.trailer_realloc(ptr, layout, new_size) }
    }
}
