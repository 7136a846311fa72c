//! The ledger over jemalloc with the owners of full blocks kept by address (feature `arenas`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use tikv_jemallocator::Jemalloc;

use crate::books::id::ScopeId;
use crate::books::per_thread;
use crate::ledger::Ledger;
use crate::owner::arena::{self, ArenaUsage, ScopeArenaIndex};
use crate::owner::trailer;

/// [`Ledger<Jemalloc>`](Ledger) without the trailer's memory cost: blocks whose size class has no
/// room for the 2-byte trailer are allocated from an arena of their scope's own, and their owner
/// is found from their address.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: memledger::ArenaLedger = memledger::ArenaLedger::new();
///
/// fn main() {
///     // 4096 bytes fill their size class: the block lives in the arena of "pages".
///     let page: Vec<u8> = memledger::in_scope("pages", || vec![0; 4096]);
///     assert_eq!(memledger::snapshot().scope("pages").unwrap().live_bytes, 4096);
///     assert!(memledger::ArenaLedger::arenas().iter().any(|a| a.scope == "pages"));
///     drop(page);
/// }
/// ```
///
/// # Which block goes where
///
/// - A block whose jemalloc size class leaves at least 2 spare bytes gets the trailer, as under
///   `Ledger<Jemalloc>`: `size + 2` falls in the same class, so it costs no memory.
/// - A block that fills its class (Rust's doubling buffers, `Box<u64>`: "full") is allocated with
///   `mallocx` in its scope's arena, with the thread's explicit cache for that arena, and carries
///   nothing. A free finds it in the arenas' address region (one subtraction and comparison) and
///   its owner in the chunk table (two loads).
/// - A freed arena block of at most 4 KiB may be kept in a small per-thread cache (64 KiB at most,
///   keyed by arena and exact size) and handed to the next allocation of that size in that arena
///   on that thread, skipping `mallocx` and `sdallocx`; the cache is emptied at thread exit.
/// - Over-aligned layouts (alignment above 16 or above the size) always take the trailer.
///
/// # Limits
///
/// - At most `max_arenas` arenas (default 64, at most [`Self::MAX_ARENAS`]); a scope made after
///   them keeps the trailer for its full blocks (the old memory cost, still exact).
/// - At most `thread_caches` explicit caches per thread (default 8); past them a thread allocates
///   and frees in further arenas without a cache (exact, slower). Tables of caches are reused by
///   later threads, so their number is bounded by the threads alive at once.
/// - The arenas' memory comes from one reservation of [`Self::REGION_SIZE`] of address space
///   (`MAP_NORESERVE`, so only used pages cost memory), or of a quarter, a sixteenth... down to
///   4 GiB where the system refuses more. If none can be reserved (a strict overcommit policy, an
///   address-space limit), every block takes the trailer; once the reservation is used up, new
///   full blocks take the trailer too.
/// - Arenas are never destroyed: an idle arena keeps its metadata and the retained address space
///   of its peak. Its dirty pages go back to the kernel on jemalloc's schedule (`dirty_decay_ms`,
///   10 s by default) even when nothing allocates from it any more: while any thread allocates,
///   the books' cold path advances the decay of every scope arena, once a second at most (a
///   sampler's tick does too). `BENCHMARKS.md` has the measured costs.
/// - A scope with an enforced limit (feature `enforce`) or in exact mode takes the trailer for
///   its new blocks.
#[derive(Debug, Clone, Copy)]
pub struct ArenaLedger {
    ledger: Ledger<Jemalloc>,
    max_arenas: usize,
    thread_caches: usize,
}

impl Default for ArenaLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl ArenaLedger {
    /// The most arenas the ledger makes, whatever `with_limits` asks for.
    pub const MAX_ARENAS: usize = arena::MAX_ARENAS;
    /// Address space reserved for all arenas together (1 TiB), at the first arena's creation.
    pub const REGION_SIZE: usize = arena::REGION_SIZE;
    /// The unit of address space handed to one arena (2 MiB); each chunk serves one arena only.
    pub const CHUNK_SIZE: usize = arena::CHUNK_SIZE;

    /// At most 64 arenas and 8 explicit caches per thread.
    pub const fn new() -> Self {
        Self::with_limits(64, 8)
    }

    /// At most `max_arenas` arenas (capped at [`Self::MAX_ARENAS`]) and `thread_caches` explicit
    /// caches per thread.
    pub const fn with_limits(max_arenas: usize, thread_caches: usize) -> Self {
        ArenaLedger {
            ledger: Ledger::new(Jemalloc),
            max_arenas: if max_arenas < arena::MAX_ARENAS {
                max_arenas
            } else {
                arena::MAX_ARENAS
            },
            thread_caches: if thread_caches < 255 {
                thread_caches
            } else {
                255
            },
        }
    }

    /// What the arenas hold: arenas, caches, thread tables, chunks and live blocks.
    pub fn usage() -> ArenaUsage {
        arena::usage()
    }

    /// Every arena made so far, with the scope it serves and jemalloc's index for it
    /// (`stats.arenas.<i>`). `memledger_monitor::Reconciliation::scope_arenas` reads jemalloc's
    /// statistics for each: they cover the scope's full blocks only, since its blocks with a
    /// trailer live in jemalloc's ordinary arenas.
    pub fn arenas() -> Vec<ScopeArenaIndex> {
        arena::scope_arena_indexes()
    }

    /// A full block in `scope`'s arena; null if it has none or jemalloc failed.
    #[inline(always)]
    fn alloc_in_arena(&self, scope: ScopeId, size: usize, zero: bool) -> *mut u8 {
        match arena::arena_of(scope, self.max_arenas) {
            Some(slot) => arena::allocate(slot, size, zero, self.thread_caches),
            None => ptr::null_mut(),
        }
    }

    #[inline(always)]
    fn alloc_impl(&self, layout: Layout, zero: bool) -> *mut u8 {
        if arena::is_full(layout.size(), layout.align()) {
            let size = layout.size();
            let (cell, scope) = per_thread::current();
            if cell.try_grow(size as u64) {
                let block = self.alloc_in_arena(scope, size, zero);
                if !block.is_null() {
                    cell.count_alloc();
                    return block;
                }
                cell.undo_resize(size as i64);
            } else {
                let block = self.alloc_in_arena_cold(scope, size, zero);
                if !block.is_null() {
                    return block;
                }
            }
        }
        // SAFETY:
        // - the caller's layout, as `GlobalAlloc` requires.
        unsafe {
            if zero {
                self.ledger.alloc_zeroed(layout)
            } else {
                self.ledger.alloc(layout)
            }
        }
    }

    /// A full block in `scope`'s arena when the thread's budget for it is spent, booked on the
    /// cold path; null (nothing booked) if the scope is strict, has no arena, or jemalloc failed.
    /// A scope with an enforced limit takes the trailer path, which reserves before allocating.
    #[cold]
    #[inline(never)]
    fn alloc_in_arena_cold(&self, scope: ScopeId, size: usize, zero: bool) -> *mut u8 {
        if per_thread::strict(scope) {
            return ptr::null_mut();
        }
        let block = self.alloc_in_arena(scope, size, zero);
        if !block.is_null() {
            per_thread::book_cold(&Jemalloc, scope, per_thread::Op::Alloc(size as u64));
        }
        block
    }

    /// Resizes an arena block, in its arena; the resize is booked to its owner.
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
        let (owner, slot) = arena::owner(offset);
        Ledger::book_resize(&Jemalloc, owner, layout.size(), new_size, || {
            // SAFETY:
            // - the caller's guarantee.
            let block = unsafe { arena::reallocate(ptr, slot, new_size, layout.align()) };
            if !block.is_null() {
                return block;
            }
            // The region may be used up: the block moves out to a trailer block of its owner.
            // SAFETY:
            // - the caller's guarantee.
            unsafe { Self::move_out_of_arena(ptr, slot, owner, layout, new_size) }
        })
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
            arena::deallocate(ptr, slot, layout.size(), layout.align());
        }
        block
    }

    /// Moves a trailer block that grows or shrinks into a full size to its owner's arena; null if
    /// the owner has no arena, is strict, or jemalloc failed (the block is then untouched).
    ///
    /// # Safety
    ///
    /// - `ptr` is a live trailer block of this allocator allocated with `layout`.
    unsafe fn move_to_arena(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee: the block carries its trailer.
        let owner = unsafe { trailer::read(ptr, layout.size()) };
        // A scope with an enforced limit resizes through the trailer path, which reserves first.
        if per_thread::strict(owner) {
            return ptr::null_mut();
        }
        let block = self.alloc_in_arena(owner, new_size, false);
        if block.is_null() {
            return block;
        }
        // SAFETY:
        // - both blocks are live and distinct, each at least `min(old, new)` bytes long;
        // - `ptr` was allocated by `Jemalloc` with the trailer's outer layout, valid when made.
        unsafe {
            ptr::copy_nonoverlapping(ptr, block, layout.size().min(new_size));
            let outer = trailer::existing_outer_layout(layout.size(), layout.align());
            Jemalloc.dealloc(trailer::whole_block(ptr), outer);
        }
        per_thread::on_realloc(&Jemalloc, owner, layout.size(), new_size);
        block
    }
}

// SAFETY:
// - a block is either an arena block, allocated by `mallocx` for the caller's size at an
//   alignment jemalloc gives every block of that size (at most 16 and at most the size), or a
//   trailer block of `Ledger<Jemalloc>`, which upholds the contract itself;
// - the two are told apart by address: arena blocks lie in the arenas' reserved region, which
//   jemalloc's other arenas never use (they map their own memory);
// - the booking never unwinds and allocates nothing through the global allocator.
unsafe impl GlobalAlloc for ArenaLedger {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_impl(layout, false)
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_impl(layout, true)
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(offset) = arena::region_offset(ptr) {
            let (owner, slot) = arena::owner(offset);
            per_thread::on_dealloc(&Jemalloc, owner, layout.size());
            // SAFETY:
            // - the caller's guarantee: a live block of this allocator, which lies in the region,
            //   so an arena block of `slot` allocated or resized for `layout`.
            return unsafe { arena::deallocate(ptr, slot, layout.size(), layout.align()) };
        }
        // SAFETY:
        // - outside the region, a trailer block of `self.ledger`.
        unsafe { self.ledger.dealloc(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(offset) = arena::region_offset(ptr) {
            // SAFETY:
            // - an arena block (see `dealloc`); `new_size` is valid by the caller's guarantee.
            return unsafe { self.realloc_in_arena(ptr, offset, layout, new_size) };
        }
        if arena::is_full(new_size, layout.align()) {
            // SAFETY:
            // - outside the region, a trailer block of `self.ledger`.
            let block = unsafe { self.move_to_arena(ptr, layout, new_size) };
            if !block.is_null() {
                return block;
            }
        }
        // SAFETY:
        // - outside the region, a trailer block of `self.ledger`.
        unsafe { self.ledger.realloc(ptr, layout, new_size) }
    }
}
