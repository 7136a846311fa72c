//! The ledger's arena path: how `Ledger<Jemalloc>` allocates, frees and resizes when it keeps the
//! owners of its blocks by address.
//!
//! Which block goes where ([`arena_class`]):
//!
//! - A block of up to 16 KiB, and a larger one that fills its size class (so that a trailer would
//!   push it into the next class), lives in its scope's arena and carries nothing. An allocation
//!   of up to 16 KiB pops a block from the thread's front cache ([`Front`](arena::Front)) when it has one of
//!   that class and arena, and otherwise calls `mallocx` with the thread's explicit cache for the
//!   arena. A free finds the block in the arenas' address region (one subtraction and
//!   comparison) and its owner in the chunk table (two loads), then pushes it on the front cache,
//!   or calls `sdallocx` when the cache is full or the block larger.
//! - A larger block whose class leaves 2 spare bytes gets the trailer in them (no memory cost).
//! - Over-aligned layouts (alignment above 16, or 16 for fewer than 16 bytes), the blocks of
//!   scopes with an enforced limit or in exact mode, and those of scopes without an arena take the
//!   trailer.
//!
//! Every class up to 16 KiB goes to the arena, not only the full ones that a trailer would cost
//! memory: one test and no trailer on the common path costs fewer instructions per step of the
//! small-size churn than the trailer kept for the blocks that have room for it (`BENCHMARKS.md`).
//!
//! As on the trailer path, the booking comes first and every cold exit finishes the operation
//! itself.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use tikv_jemallocator::Jemalloc;

use super::thread_arenas;
use crate::books::cells::Op;
use crate::books::id::ScopeId;
use crate::books::shared;
use crate::ledger::Ledger;
use crate::owner::arena::{self, arena_class, bin_size, is_bin, BIG};
use crate::owner::trailer;
use crate::thread::cold::{book_cold, on_realloc, sample_due};
use crate::thread::state;

/// Called only where [`Ledger::uses_arenas`] holds, so `A` is `Jemalloc`: the trailer blocks that
/// these methods make or free directly use `Jemalloc`, the same allocator as `self.inner`.
impl<A: GlobalAlloc> Ledger<A> {
    /// Allocates a block for `layout`, zeroed if `zero`: in its scope's arena (from the front cache
    /// if it can) where [`arena_class`] says so, otherwise on the trailer path.
    #[inline(always)]
    pub(crate) fn arena_alloc(&self, layout: Layout, zero: bool) -> *mut u8 {
        let size = layout.size();
        let class = arena_class(size, layout.align());
        if class == 0 {
            return self.trailer_alloc(layout, zero);
        }
        let (cell, scope, front) = state::current_front();
        let row = arena::row_of(scope);
        // A scope that cannot have an arena (past the limit, the crate's own) takes the trailer
        // at once.
        if row == arena::NO_ARENA_ROW {
            return self.trailer_alloc(layout, zero);
        }
        if !cell.try_grow(size as u64) {
            return self.arena_alloc_cold(layout, zero);
        }
        if class != BIG {
            let block = front.pop(row, class, bin_size(class));
            if !block.is_null() {
                cell.count_alloc();
                if zero {
                    // SAFETY:
                    // - a block of the class of `size` holds at least `size` bytes.
                    unsafe { block.write_bytes(0, size) };
                }
                return block;
            }
        }
        self.arena_alloc_miss(layout, zero)
    }

    /// Allocates `size` bytes in the arena of `slot` with this thread's caches, within this
    /// ledger's limit of caches per thread (see [`arena::allocate`]).
    #[inline]
    fn allocate_in(&self, slot: usize, size: usize, zero: bool) -> *mut u8 {
        let thread_caches = usize::from(self.arena_limits.thread_caches);
        arena::allocate(thread_arenas(), slot, size, zero, thread_caches)
    }

    /// Allocates `size` bytes at `align` in the arena of `slot` for an allocation that missed the
    /// front cache: a batch from the arena's transfer cache for the class if it holds one (see
    /// [`arena::ThreadArenas::take_batch`]), otherwise a batch from jemalloc
    /// ([`arena::allocate_batch`]); past the classes of the front cache, or for a thread without
    /// one, [`Self::allocate_in`]. Zeroed if `zero`.
    #[inline]
    fn allocate_cached(&self, slot: usize, size: usize, align: usize, zero: bool) -> *mut u8 {
        let bin = arena_class(size, align);
        if is_bin(bin) {
            // The table's stacks only while they are this thread's front cache: an exiting thread
            // leaves its front cache (`leave_front`) before it gives its table up, and blocks put
            // on its stacks then would pass to the slab's next thread.
            if let Some(table) = thread_arenas().filter(|t| ptr::eq(t.front(), state::front())) {
                let mut block = table.take_batch(slot + 1, bin);
                if block.is_null() {
                    let thread_caches = usize::from(self.arena_limits.thread_caches);
                    block = arena::allocate_batch(table, slot, bin, thread_caches);
                }
                if !block.is_null() {
                    if zero {
                        // SAFETY:
                        // - a block of the class of `size` holds at least `size` bytes.
                        unsafe { block.write_bytes(0, size) };
                    }
                    return block;
                }
            }
        }
        self.allocate_in(slot, size, zero)
    }

    /// [`Self::arena_alloc`] past the front cache, the thread's budget already taken for the
    /// block: `mallocx` in the scope's arena, or the trailer path (with the budget given back) if
    /// the scope has no arena or jemalloc failed.
    #[cold]
    #[inline(never)]
    fn arena_alloc_miss(&self, layout: Layout, zero: bool) -> *mut u8 {
        let size = layout.size();
        let (cell, scope) = state::current();
        if let Some(slot) = arena::arena_of(scope, self.arena_limits.into()) {
            let block = self.allocate_cached(slot, size, layout.align(), zero);
            if !block.is_null() {
                cell.count_alloc();
                return block;
            }
        }
        cell.undo_resize(size as i64);
        self.trailer_alloc(layout, zero)
    }

    /// [`Self::arena_alloc`] when the thread's budget for the scope is spent: the block is
    /// allocated in the scope's arena and booked on the cold path; a strict scope (an enforced
    /// limit reserves before allocating), a scope without an arena, or a failure of jemalloc take
    /// the trailer path.
    #[cold]
    #[inline(never)]
    fn arena_alloc_cold(&self, layout: Layout, zero: bool) -> *mut u8 {
        let size = layout.size();
        let scope = state::current_scope();
        // A block to sample takes the trailer path, whose cold path records it.
        if !shared::slot(scope).strict() && !sample_due(&Jemalloc, scope, size as u64) {
            if let Some(slot) = arena::arena_of(scope, self.arena_limits.into()) {
                let block = self.allocate_cached(slot, size, layout.align(), zero);
                if !block.is_null() {
                    book_cold(&Jemalloc, scope, Op::Alloc(size as u64));
                    return block;
                }
            }
        }
        self.trailer_alloc(layout, zero)
    }

    /// Frees a block: an arena block onto the front cache (or with `sdallocx`), any other on the
    /// trailer path.
    ///
    /// # Safety
    ///
    /// - as for [`GlobalAlloc::dealloc`]: `ptr` is a live block of this ledger allocated (or last
    ///   resized) for `layout`.
    #[inline(always)]
    pub(crate) unsafe fn arena_dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(offset) = arena::region_offset(ptr) else {
            // SAFETY:
            // - outside the region, a trailer block of this ledger.
            return unsafe { self.trailer_dealloc(ptr, layout) };
        };
        let (owner, row) = arena::block_owner(offset);
        // Seeded bug (`.ci/mutants`): the free booked to the freeing thread's scope, not the
        // arena's.
        #[cfg(memledger_mutant = "arena_free_books_current_scope")]
        let owner = state::current().1;
        let size = layout.size();
        let (cell, front) = state::cell_and_front(owner);
        if !cell.try_book(Op::Dealloc(size as u64)) {
            // SAFETY:
            // - in the region: an arena block of the arena in `row`, allocated or resized for
            //   `layout`.
            return unsafe { Self::arena_dealloc_cold(ptr, layout, owner, row) };
        }
        let class = arena_class(size, layout.align());
        if is_bin(class) {
            // SAFETY:
            // - a live arena block of the arena in `row`, of a size in `class` (a bin), which the
            //   caller frees; `front` is this thread's.
            return unsafe { free_to_front(front, ptr, row, layout, class) };
        }
        // SAFETY:
        // - in the region: an arena block of the arena in `row`, allocated or resized for
        //   `layout`.
        unsafe {
            arena::deallocate(
                thread_arenas(),
                ptr,
                arena::slot_of_row(row),
                size,
                layout.align(),
            )
        }
    }

    /// [`Self::arena_dealloc`] when the thread's budget for the owner is spent: books the free on
    /// the cold path and gives the block back to jemalloc.
    ///
    /// # Safety
    ///
    /// - `ptr` is a live arena block of the arena in `row`, owned by `owner`, allocated or
    ///   resized for `layout`.
    #[cold]
    #[inline(never)]
    unsafe fn arena_dealloc_cold(ptr: *mut u8, layout: Layout, owner: ScopeId, row: usize) {
        book_cold(&Jemalloc, owner, Op::Dealloc(layout.size() as u64));
        // The block goes where the hot path sends it: one free in each refill of the thread's
        // budget sent to jemalloc instead would drain the front cache's stack by one each time.
        let class = arena_class(layout.size(), layout.align());
        if is_bin(class) {
            // SAFETY:
            // - a live arena block of the arena in `row`, of a size in `class` (a bin), which the
            //   caller frees; `state::front` is this thread's.
            return unsafe { free_to_front(state::front(), ptr, row, layout, class) };
        }
        // SAFETY:
        // - the caller's guarantee.
        unsafe {
            arena::deallocate(
                thread_arenas(),
                ptr,
                arena::slot_of_row(row),
                layout.size(),
                layout.align(),
            )
        }
    }

    /// Resizes a block: an arena block in its arena, a trailer block whose new size belongs in an
    /// arena into its owner's arena, any other on the trailer path.
    ///
    /// # Safety
    ///
    /// - as for [`GlobalAlloc::realloc`].
    #[inline(always)]
    pub(crate) unsafe fn arena_realloc(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        if let Some(offset) = arena::region_offset(ptr) {
            // SAFETY:
            // - an arena block (see `arena_dealloc`); `new_size` is valid by the caller's
            //   guarantee.
            return unsafe { self.realloc_in_arena(ptr, offset, layout, new_size) };
        }
        if arena_class(new_size, layout.align()) != 0 {
            // SAFETY:
            // - outside the region, a trailer block of this ledger.
            let block = unsafe { self.move_to_arena(ptr, layout, new_size) };
            if !block.is_null() {
                return block;
            }
        }
        // SAFETY:
        // - outside the region, a trailer block of this ledger.
        unsafe { self.trailer_realloc(ptr, layout, new_size) }
    }

    /// Resizes an arena block, in its arena; the resize is booked to its owner.
    ///
    /// Between two classes of up to 16 KiB the block moves through the thread's front cache
    /// ([`Self::move_between_bins`]), within one it stays; other resizes are jemalloc's
    /// (`rallocx`).
    ///
    /// # Safety
    ///
    /// - `ptr` is a live arena block allocated with `layout`; `new_size` is valid at its alignment.
    unsafe fn realloc_in_arena(
        &self,
        ptr: *mut u8,
        offset: usize,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        let (owner, row) = arena::block_owner(offset);
        let slot = arena::slot_of_row(row);
        Ledger::book_resize(&Jemalloc, owner, ptr, layout, new_size, || {
            let old_bin = arena_class(layout.size(), layout.align());
            let new_bin = arena_class(new_size, layout.align());
            if is_bin(old_bin) && is_bin(new_bin) {
                if old_bin == new_bin {
                    // The class holds the new size: the block stays, as in `rallocx`, and its
                    // sized free names the same class.
                    return ptr;
                }
                // SAFETY:
                // - the caller's guarantee; both bins are classes of up to 16 KiB.
                let block = unsafe {
                    self.move_between_bins(ptr, row, slot, layout, new_size, old_bin, new_bin)
                };
                if !block.is_null() {
                    return block;
                }
            }
            // SAFETY:
            // - the caller's guarantee.
            let block =
                unsafe { arena::reallocate(thread_arenas(), ptr, slot, new_size, layout.align()) };
            if !block.is_null() {
                return block;
            }
            // The region may be used up: the block moves out to a trailer block of its owner.
            // SAFETY:
            // - the caller's guarantee.
            unsafe { Self::move_out_of_arena(ptr, slot, owner, layout, new_size) }
        })
    }

    /// Moves the arena block `ptr` of the bin `old_bin` to a new block of `new_size` bytes in the
    /// bin `new_bin` of the same arena: popped from the thread's front cache, or allocated in the
    /// arena; the old block is pushed on the front cache, where the next allocation of its class
    /// takes it. A `String` or `Vec` that doubles on one thread thus feeds its own next growths,
    /// with no call into jemalloc. Null if jemalloc fails (the block is then untouched). Books
    /// nothing.
    ///
    /// # Safety
    ///
    /// - `ptr` is a live arena block of the arena in `row` (whose slot is `slot`), allocated or
    ///   last resized for `layout`, in `old_bin`; `new_size` is in `new_bin`; both bins are
    ///   neither 0 nor `BIG`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn move_between_bins(
        &self,
        ptr: *mut u8,
        row: usize,
        slot: usize,
        layout: Layout,
        new_size: usize,
        old_bin: usize,
        new_bin: usize,
    ) -> *mut u8 {
        let front = state::front();
        let mut block = front.pop(row, new_bin, bin_size(new_bin));
        if block.is_null() {
            block = self.allocate_cached(slot, new_size, layout.align(), false);
            if block.is_null() {
                return block;
            }
        }
        // SAFETY:
        // - both blocks are live and distinct, each at least `min(old, new)` bytes long;
        // - `ptr` is a live arena block of the arena in `row`, in `old_bin`, which is freed here
        //   and no longer used.
        unsafe {
            ptr::copy_nonoverlapping(ptr, block, layout.size().min(new_size));
            free_to_front(front, ptr, row, layout, old_bin);
        }
        block
    }

    /// Moves an arena block to a new trailer block of `new_size` bytes owned by `owner`, for a
    /// resize the arena could not serve; null if jemalloc fails too (the block is then untouched).
    /// Books nothing.
    ///
    /// # Safety
    ///
    /// - `ptr` is a live arena block of `slot`, allocated or last resized for `layout`;
    ///   `new_size` is valid at its alignment.
    unsafe fn move_out_of_arena(
        ptr: *mut u8,
        slot: usize,
        owner: ScopeId,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        let Some(outer) = trailer::outer_layout(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY:
        // - `outer` has a non-zero size (at least the trailer's).
        let block = unsafe { Jemalloc.alloc(outer) };
        if block.is_null() {
            return block;
        }
        // SAFETY:
        // - `block` holds `new_size + TRAILER_SIZE` bytes; both blocks are live and distinct, each
        //   at least `min(old, new)` bytes long; the caller's guarantee for `ptr`.
        unsafe {
            trailer::write(block, new_size, trailer::tag(owner));
            ptr::copy_nonoverlapping(ptr, block, layout.size().min(new_size));
            arena::deallocate(thread_arenas(), ptr, slot, layout.size(), layout.align());
        }
        block
    }

    /// Moves a trailer block whose new size belongs in an arena to its owner's arena; null if
    /// the owner has no arena, is strict, or jemalloc failed (the block is then untouched).
    ///
    /// # Safety
    ///
    /// - `ptr` is a live trailer block of this ledger allocated with `layout`.
    unsafe fn move_to_arena(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee: the block carries its trailer.
        let owner = unsafe { trailer::read(ptr, layout.size()) };
        // A scope with an enforced limit resizes through the trailer path, which reserves first;
        // a sampled block keeps its record there.
        if owner == crate::books::id::SAMPLED_SCOPE_ID || shared::slot(owner).strict() {
            return ptr::null_mut();
        }
        // A growth that reaches the owner's sample point goes the trailer path's way too, where
        // the block moves into a sample.
        let growth = new_size.saturating_sub(layout.size()) as u64;
        if growth > 0 && sample_due(&Jemalloc, owner, growth) {
            return ptr::null_mut();
        }
        let Some(slot) = arena::arena_of(owner, self.arena_limits.into()) else {
            return ptr::null_mut();
        };
        let block = self.allocate_in(slot, new_size, false);
        if block.is_null() {
            return block;
        }
        // SAFETY:
        // - both blocks are live and distinct, each at least `min(old, new)` bytes long;
        // - `ptr` was allocated by `Jemalloc` with the trailer's outer layout, valid when made.
        unsafe {
            ptr::copy_nonoverlapping(ptr, block, layout.size().min(new_size));
            let outer = trailer::existing_outer_layout(layout.size(), layout.align());
            self.inner.dealloc(trailer::whole_block(ptr), outer);
        }
        on_realloc(&Jemalloc, owner, layout.size(), new_size);
        block
    }
}

/// Frees the arena block `ptr` of `layout` onto the thread's front cache `front`, or past it when
/// it is full ([`free_past_a_full_cache`]).
///
/// # Safety
///
/// - `ptr` is a live arena block of the arena in `row`, allocated or last resized for `layout`,
///   in `class` (a bin, neither 0 nor `BIG`), which the caller frees;
/// - `front` is the calling thread's front cache (or the cold one).
#[inline(always)]
unsafe fn free_to_front(
    front: &arena::Front,
    ptr: *mut u8,
    row: usize,
    layout: Layout,
    class: usize,
) {
    // SAFETY:
    // - the caller's guarantee.
    if unsafe { front.push(row, class, bin_size(class), ptr) } {
        return;
    }
    // SAFETY:
    // - as above.
    unsafe { free_past_a_full_cache(ptr, row, layout.size(), layout.align(), class) }
}

/// [`Ledger::arena_dealloc`] when the front cache is full: the thread's caches are looked up
/// here, off the hot path, and the block goes to [`arena::free_past_a_full_cache`].
///
/// # Safety
///
/// - as for [`arena::free_past_a_full_cache`], with this thread's caches.
#[cold]
#[inline(never)]
unsafe fn free_past_a_full_cache(
    ptr: *mut u8,
    row: usize,
    size: usize,
    align: usize,
    class: usize,
) {
    // SAFETY:
    // - the caller's guarantee; `thread_arenas` gives this thread's caches.
    unsafe { arena::free_past_a_full_cache(thread_arenas(), ptr, row, size, align, class) }
}
