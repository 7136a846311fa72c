//! Stands in for the ledger's arena path where the arenas are not built (feature `arenas` off, or
//! not 64-bit Linux): every block takes the trailer path.

use core::alloc::{GlobalAlloc, Layout};

use crate::ledger::Ledger;

/// The arena path of the ledger, never taken here (`arena::is_jemalloc` is false): the trailer
/// path.
impl<A: GlobalAlloc> Ledger<A> {
    #[inline(always)]
    pub(crate) fn arena_alloc(&self, layout: Layout, zero: bool) -> *mut u8 {
        self.trailer_alloc(layout, zero)
    }

    /// # Safety
    ///
    /// - as for [`core::alloc::GlobalAlloc::dealloc`].
    #[inline(always)]
    pub(crate) unsafe fn arena_dealloc(&self, ptr: *mut u8, layout: Layout) {
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
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee: every block is a trailer block here.
        unsafe { self.trailer_realloc(ptr, layout, new_size) }
    }
}
