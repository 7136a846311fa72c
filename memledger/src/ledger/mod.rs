//! The wrapper allocator: `Ledger<A>`, its trailer path (here) and its arena path (`arena_path.rs`).
//!
//! The top of the allocation path: it looks the thread's cell up in the thread-local state
//! ([`crate::thread::state`]), books against it, and calls the owner mechanism and the inner
//! allocator; the cold paths ([`crate::thread::cold`]) book exactly and run each per-thread
//! part's work. Nothing below calls back up.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use crate::books::cells::{Op, Refused};
use crate::books::id::{self, ScopeId, Tag};
use crate::books::shared::{reserve, unreserve};
use crate::owner::{arena, trailer};
use crate::sampling;
use crate::thread::cold::{book_cold, book_reserved, sample_due, undo_alloc};
use crate::thread::state;

#[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
mod arena_path;
#[cfg(not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")))]
#[path = "arena_off.rs"]
mod arena_path;

/// This thread's part of the scope arenas, if it holds a slab: what the arenas' calls take.
#[inline(always)]
pub(crate) fn thread_arenas() -> Option<&'static arena::ThreadArenas> {
    state::parts().map(|parts| &parts.arenas)
}

/// A global allocator that books every block to the scope that allocated it, then forwards to
/// `A` (jemalloc, the system allocator, or any other [`GlobalAlloc`]).
///
/// ```
/// #[global_allocator]
/// static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
///
/// fn main() {
///     let names: Vec<String> = memledger::in_scope("names", || {
///         (0..100).map(|i| i.to_string()).collect()
///     });
///     let snap = memledger::snapshot();
///     assert_eq!(snap.scope("names").unwrap().live_bytes, 100 * 24 + names.iter().map(|s| s.capacity() as u64).sum::<u64>());
/// }
/// ```
///
/// # Where a block's owner is kept
///
/// - **The trailer**, over any `A`: each block carries its owner in 2 bytes past its end, so `A`
///   is asked for `size + 2` bytes at the same alignment. That costs no memory where the size
///   class has 2 spare bytes, and a whole class step where the block fills its class, as Rust's
///   doubling buffers and most small boxes do.
/// - **Scope arenas**, over jemalloc on Linux (`Ledger<Jemalloc>`, feature `arenas`, on by
///   default): blocks of up to 16 KiB, and larger blocks that fill their size class, are
///   allocated from a jemalloc arena of their scope's own and carry nothing; a free finds the
///   owner from the address. The larger blocks with 2 spare bytes in their class keep the
///   trailer there. So attribution costs no memory. Freed arena blocks of up to 16 KiB go to a
///   per-thread front cache ([`FRONT_BYTES`](crate::arenas::FRONT_BYTES) at most) for the next
///   allocation of their class in their arena, which makes a free-then-allocate cheaper than
///   jemalloc's own. The limits (arenas, caches, address space) and what happens past them are
///   in [`crate::arenas`]; past any of them blocks take the trailer, exact either way.
///   `Ledger<TrailerOnly<Jemalloc>>` ([`TrailerOnly`]) keeps the trailer for every block.
///
/// # What it costs
///
/// Each allocation, free or resize books to a counter cell of the calling thread against the
/// cell's byte budget: one load, add, comparison and store, plus a count (no lock, no atomic
/// read-modify-write, no shared cache line). When a budget runs out (once per 64 KiB of the
/// thread's traffic in a scope, and on every operation on a block of 64 KiB or more) a cold path
/// refills it, and publishes to the scope's shared total (one atomic add) if the thread's net
/// bytes there moved by 32 KiB or more. `BENCHMARKS.md` has the measured time and memory
/// overhead.
///
/// The ledger's books are process-wide: a `Ledger` used as the `#[global_allocator]` books every
/// allocation of the program. A `Ledger` can also be called directly as a [`GlobalAlloc`] (its
/// blocks are booked to the same books).
#[derive(Debug, Clone, Copy)]
pub struct Ledger<A> {
    pub(crate) inner: A,
    pub(crate) arena_limits: ArenaLimits,
}

/// The limits of a ledger's scope arenas (used only where it keeps them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArenaLimits {
    /// At most this many arenas.
    pub(crate) max_arenas: u8,
    /// At most this many explicit jemalloc caches per thread.
    pub(crate) thread_caches: u8,
    /// The `dirty_decay_ms` of each arena it makes, or -1 for jemalloc's own setting.
    pub(crate) dirty_decay_ms: i32,
}

/// What making an arena needs of the ledger's limits.
#[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
impl From<ArenaLimits> for arena::NewArena {
    fn from(limits: ArenaLimits) -> Self {
        arena::NewArena {
            max_arenas: usize::from(limits.max_arenas),
            dirty_decay_ms: limits.dirty_decay_ms,
        }
    }
}

impl<A: Default> Default for Ledger<A> {
    fn default() -> Self {
        Ledger::new(A::default())
    }
}

impl<A> Ledger<A> {
    /// Wraps `inner`. Over jemalloc on Linux (feature `arenas`) blocks live in scope arenas (see
    /// above), at most 64 of them, with at most 8 explicit jemalloc caches per thread (see
    /// [`Ledger::with_arena_limits`]); over any other allocator every block carries the trailer.
    pub const fn new(inner: A) -> Self {
        Ledger {
            inner,
            arena_limits: ArenaLimits {
                max_arenas: 64,
                thread_caches: 8,
                dirty_decay_ms: -1,
            },
        }
    }

    /// At most `max_arenas` scope arenas (capped at [`arenas::MAX_ARENAS`](crate::arenas), 254)
    /// and `thread_caches` explicit jemalloc caches per thread (capped at 255). Only a ledger over
    /// jemalloc with the `arenas` feature on Linux makes arenas; elsewhere this changes nothing.
    pub const fn with_arena_limits(mut self, max_arenas: usize, thread_caches: usize) -> Self {
        self.arena_limits.max_arenas = if max_arenas < 254 { max_arenas } else { 254 } as u8;
        self.arena_limits.thread_caches = if thread_caches < 255 {
            thread_caches
        } else {
            255
        } as u8;
        self
    }

    /// Gives each scope arena made from now on a `dirty_decay_ms` of `ms` (`arena.<i>.dirty_decay_ms`
    /// and `muzzy_decay_ms`): how long jemalloc keeps the pages an arena freed before it gives them
    /// back to the kernel. By default the arenas keep jemalloc's own setting (10 s unless
    /// `MALLOC_CONF` says otherwise). A scope arena's freed pages serve that scope only, where bare
    /// jemalloc's serve every allocation, so a short decay trades time for memory: `0` gives pages
    /// back as soon as they are free. Negative values keep jemalloc's setting. `BENCHMARKS.md`
    /// ("Memory handed between threads") has the measured trade. Only a ledger over jemalloc with
    /// the `arenas` feature on Linux makes arenas; elsewhere this changes nothing.
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: memledger::Ledger<memledger::Jemalloc> =
    ///     memledger::Ledger::new(memledger::Jemalloc).with_arena_decay(0);
    /// # fn main() {}
    /// ```
    pub const fn with_arena_decay(mut self, ms: i32) -> Self {
        self.arena_limits.dirty_decay_ms = if ms < 0 { -1 } else { ms };
        self
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: 'static> Ledger<A> {
    /// Whether this ledger keeps blocks in scope arenas: over jemalloc with the `arenas` feature
    /// on Linux. A property of the type, folded at compile time.
    #[inline(always)]
    pub fn uses_arenas(&self) -> bool {
        arena::is_jemalloc::<A>()
    }
}

/// `A` with the trailer on every block of a [`Ledger`], over jemalloc too: the ledger as it was
/// before scope arenas, kept for comparison. It costs a size-class step for blocks that fill their
/// class and a few instructions per operation more (`BENCHMARKS.md` has the figures). Forwards
/// every call to `A`.
///
/// ```
/// use memledger::{Jemalloc, Ledger, TrailerOnly};
///
/// #[global_allocator]
/// static GLOBAL: Ledger<TrailerOnly<Jemalloc>> = Ledger::new(TrailerOnly(Jemalloc));
///
/// fn main() {
///     assert!(!GLOBAL.uses_arenas());
///     let page: Vec<u8> = memledger::in_scope("pages", || vec![0; 4096]);
///     assert_eq!(memledger::snapshot().scope("pages").unwrap().live_bytes, 4096);
///     drop(page);
/// }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct TrailerOnly<A>(pub A);

// SAFETY:
// - every call goes to `A` unchanged, which upholds the contract.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrailerOnly<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee, passed on.
        unsafe { self.0.alloc(layout) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee, passed on.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - the caller's guarantee, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY:
        // - the caller's guarantee, passed on.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

impl<A: GlobalAlloc> Ledger<A> {
    /// Books an allocation of `layout` to the current scope, allocates it plus the trailer with
    /// `allocate`, and writes the trailer.
    ///
    /// The booking comes first, so that the only call that returns into this path is the inner
    /// allocation: a spent budget, a strict scope or a thread without a slab leave for
    /// [`Self::alloc_cold`], which finishes the whole operation itself.
    #[inline(always)]
    fn alloc_tagged(&self, layout: Layout, allocate: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
        let size = layout.size();
        let (cell, _) = state::current();
        if !cell.try_book(Op::Alloc(size as u64)) {
            return self.alloc_cold(layout, allocate);
        }
        // SAFETY:
        // - `try_grow` passed, so `size < GRANT` (64 KiB): `size + TRAILER_SIZE` rounded up to
        //   `layout.align()` cannot pass `isize::MAX` where `size` rounded up did not.
        let outer = unsafe { trailer::small_outer_layout(size, layout.align()) };
        let block = allocate(outer);
        // The cell (for the undo) and the tag are read again from the thread-local state rather
        // than kept across the call, which saves callee-saved registers (3.7 instructions per
        // churn step under callgrind). An inner allocator does not change the current scope; one
        // that did would only have the undo land on the current scope's cell: a miscount, never
        // an unsound access (cells are atomics, and the static cold table's marks stay zero).
        if block.is_null() {
            return undo_alloc(size);
        }
        // SAFETY:
        // - `allocate` returned a block of `outer.size() == layout.size() + TRAILER_SIZE` bytes.
        unsafe { trailer::write(block, size, state::current_tag()) };
        block
    }

    /// [`Self::alloc_tagged`] on the cold path: in a scope with an enforced limit the block is
    /// allocated only if reserving its bytes keeps the scope within its limit; otherwise the
    /// allocation is booked exactly and the thread's cell refilled. An allocation that reaches
    /// its cell's sample point is recorded and carries its record's index after the trailer.
    #[cold]
    #[inline(never)]
    fn alloc_cold(&self, layout: Layout, allocate: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
        let scope = state::current_scope();
        let size = layout.size() as u64;
        let Some(plain) = trailer::outer_layout(layout.size(), layout.align()) else {
            return ptr::null_mut();
        };
        let sampled = trailer::sampled_outer_layout(layout.size(), layout.align());
        let sample = match sampled {
            Some(_) if sample_due(&self.inner, scope, size) => {
                sampling::record(&self.inner, scope, size)
            }
            _ => None,
        };
        let outer = match (sample, sampled) {
            (Some(_), Some(sampled)) => sampled,
            _ => plain,
        };
        let forget = || {
            if let Some(index) = sample {
                sampling::forget(index);
            }
        };
        let Ok(reserved) = reserve(scope, size) else {
            forget();
            return ptr::null_mut();
        };
        let block = allocate(outer);
        if block.is_null() {
            if reserved.is_some() {
                unreserve(scope, size);
            }
            forget();
            return block;
        }
        match reserved {
            Some(total) => book_reserved(&self.inner, scope, Op::Alloc(size), size, total),
            None => book_cold(&self.inner, scope, Op::Alloc(size)),
        }
        match sample {
            Some(index) => {
                sampling::commit(index);
                // SAFETY:
                // - `allocate` returned a block of `outer.size()` bytes: the trailer and the
                //   index fit past the caller's.
                unsafe { trailer::write_sampled(block, layout.size(), index) }
            }
            // SAFETY:
            // - `allocate` returned a block of `outer.size() == layout.size() + TRAILER_SIZE`
            //   bytes.
            None => unsafe { trailer::write(block, layout.size(), trailer::tag(scope)) },
        }
        block
    }

    /// Resizes the block `ptr` of `layout`, owned by `owner`, to `new` bytes with `resize` (null
    /// on failure, the block then untouched) and books it: booked first on the hot path and taken
    /// back if the resize fails; on the cold path, where the owner has an enforced limit, the
    /// growth is reserved first and given back if the resize fails or is refused.
    #[inline(always)]
    pub(crate) fn book_resize(
        inner: &A,
        owner: ScopeId,
        ptr: *mut u8,
        layout: Layout,
        new: usize,
        resize: impl FnOnce() -> *mut u8,
    ) -> *mut u8 {
        // Sizes of live blocks are at most `isize::MAX`, so the difference fits an `i64`.
        let delta = (new as i64).wrapping_sub(layout.size() as i64);
        let cell = state::cell_of(owner);
        if !cell.try_resize(delta) {
            // SAFETY:
            // - the caller's guarantee: a live block of this ledger of `layout`.
            return unsafe { Self::resize_cold(inner, owner, ptr, layout, new, resize) };
        }
        let block = resize();
        if block.is_null() {
            cell.undo_resize(delta);
            return block;
        }
        cell.count_realloc();
        block
    }

    /// [`Self::book_resize`] on the cold path. A sampled block (its trailer holds the sampled id)
    /// is resized with its record; a growth that reaches its cell's sample point moves the block
    /// to a new sampled block.
    ///
    /// # Safety
    ///
    /// - `ptr` is a live block of this ledger of `layout`, owned by `owner` (or sampled, when
    ///   `owner` is the sampled id); `new` is valid at its alignment.
    #[cold]
    #[inline(never)]
    unsafe fn resize_cold(
        inner: &A,
        owner: ScopeId,
        ptr: *mut u8,
        layout: Layout,
        new: usize,
        resize: impl FnOnce() -> *mut u8,
    ) -> *mut u8 {
        if owner == id::SAMPLED_SCOPE_ID {
            // SAFETY:
            // - the caller's guarantee: a sampled block, which carries the trailer.
            return unsafe { Self::resize_sampled(inner, ptr, layout, new) };
        }
        let delta = (new as i64).wrapping_sub(layout.size() as i64);
        let growth = delta.max(0) as u64;
        let Ok(reserved) = Self::reserve_growth(owner, growth) else {
            return ptr::null_mut();
        };
        let block = if growth > 0 && sample_due(inner, owner, growth) {
            // SAFETY:
            // - the caller's guarantee.
            match unsafe { Self::move_to_sample(inner, owner, ptr, layout, new) } {
                Some(block) if !block.is_null() => block,
                // Not kept, or no room for the sampled block: the ordinary resize may still work.
                _ => resize(),
            }
        } else {
            resize()
        };
        if block.is_null() {
            if reserved.is_some() {
                unreserve(owner, growth);
            }
            return block;
        }
        Self::book_growth(inner, owner, delta, growth, reserved);
        block
    }

    /// Reserves `growth` bytes of `owner` if it has an enforced limit (`Ok(None)` if it has none or
    /// nothing grows); `Err` if the limit refuses them.
    fn reserve_growth(owner: ScopeId, growth: u64) -> Result<Option<i64>, Refused> {
        if growth == 0 {
            return Ok(None);
        }
        reserve(owner, growth)
    }

    /// Books a resize by `delta` of a block of `owner` on the cold path, its `growth` reserved
    /// first if `reserved` holds the scope's new total.
    fn book_growth(inner: &A, owner: ScopeId, delta: i64, growth: u64, reserved: Option<i64>) {
        match reserved {
            Some(total) => book_reserved(inner, owner, Op::Realloc(delta), growth, total),
            None => book_cold(inner, owner, Op::Realloc(delta)),
        }
    }

    /// Moves the block `ptr` of `layout` owned by `owner`, whose growth to `new` bytes reached its
    /// cell's sample point, to a new sampled block with a record. Books nothing. `None` if the
    /// sample was not kept (the caller resizes as usual); a null block if the allocation failed
    /// (the old block is then untouched).
    ///
    /// # Safety
    ///
    /// - `ptr` is a live block of this ledger of `layout` (an arena block or a trailer block) owned
    ///   by `owner`; `new` is valid at its alignment.
    unsafe fn move_to_sample(
        inner: &A,
        owner: ScopeId,
        ptr: *mut u8,
        layout: Layout,
        new: usize,
    ) -> Option<*mut u8> {
        let outer = trailer::sampled_outer_layout(new, layout.align())?;
        let index = sampling::record(inner, owner, new as u64)?;
        // SAFETY:
        // - `outer` has a non-zero size (at least the trailer's and the index's).
        let block = unsafe { inner.alloc(outer) };
        if block.is_null() {
            sampling::forget(index);
            return Some(block);
        }
        sampling::commit(index);
        // SAFETY:
        // - `block` holds `new` bytes, the trailer and the index; both blocks are live and
        //   distinct, each at least `min(old, new)` bytes long;
        // - the old block is an arena block (freed in its arena) or a trailer block, allocated
        //   by `inner` with the trailer's outer layout, valid when it was made.
        unsafe {
            ptr::copy_nonoverlapping(ptr, block, layout.size().min(new));
            trailer::write_sampled(block, new, index);
            if !arena::free_if_arena_block(thread_arenas(), ptr, layout.size(), layout.align()) {
                let old = trailer::existing_outer_layout(layout.size(), layout.align());
                inner.dealloc(trailer::whole_block(ptr), old);
            }
        }
        Some(block)
    }

    /// Resizes the sampled block `ptr` of `layout` to `new` bytes, with its record, booked to
    /// the owner the record names.
    ///
    /// # Safety
    ///
    /// - `ptr` is a live sampled block of this ledger of `layout`; `new` is valid at its
    ///   alignment.
    unsafe fn resize_sampled(inner: &A, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let Some(new_outer) = trailer::sampled_outer_layout(new, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY:
        // - the caller's guarantee: a live sampled block, whose index follows its trailer.
        let index = unsafe { trailer::read_sample_index(ptr, layout.size()) };
        let owner = sampling::owner_of(index).unwrap_or(id::ROOT_SCOPE_ID);
        let delta = (new as i64).wrapping_sub(layout.size() as i64);
        let growth = delta.max(0) as u64;
        let Ok(reserved) = Self::reserve_growth(owner, growth) else {
            return ptr::null_mut();
        };
        // SAFETY:
        // - the block was allocated by `inner` with its sampled outer layout (checked when it was
        //   made); `new_outer.size()` is non-zero and valid at this alignment.
        let block = unsafe {
            let old = trailer::existing_sampled_outer_layout(layout.size(), layout.align());
            inner.realloc(trailer::whole_block(ptr), old, new_outer.size())
        };
        if block.is_null() {
            if reserved.is_some() {
                unreserve(owner, growth);
            }
            return block;
        }
        // SAFETY:
        // - `block` holds `new` bytes, the trailer and the index.
        unsafe { trailer::write_sampled(block, new, index) };
        sampling::resize(index, new as u64);
        Self::book_growth(inner, owner, delta, growth, reserved);
        block
    }

    /// [`GlobalAlloc::dealloc`] on the cold path: books the free of the trailer block `ptr` of
    /// `layout`, whose trailer holds `tag`, exactly, then frees it.
    ///
    /// # Safety
    ///
    /// - as for [`GlobalAlloc::dealloc`] of this allocator.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_cold(&self, tag: Tag, ptr: *mut u8, layout: Layout) {
        let owner = id::scope_of(tag);
        if owner == id::SAMPLED_SCOPE_ID {
            // SAFETY:
            // - the caller's guarantee; the trailer says the block is sampled.
            return unsafe { self.dealloc_sampled(ptr, layout) };
        }
        book_cold(&self.inner, owner, Op::Dealloc(layout.size() as u64));
        // SAFETY:
        // - the caller's guarantee: a live trailer block of `layout`, whose outer layout was
        //   valid when it was made.
        unsafe {
            let outer = trailer::existing_outer_layout(layout.size(), layout.align());
            self.inner.dealloc(trailer::whole_block(ptr), outer)
        }
    }
}

impl<A: GlobalAlloc> Ledger<A> {
    /// Frees a sampled block: removes its record and books the free to the owner it names.
    ///
    /// # Safety
    ///
    /// - `ptr` is a live sampled block of this ledger of `layout`.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_sampled(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - the caller's guarantee: the index follows the trailer.
        let index = unsafe { trailer::read_sample_index(ptr, layout.size()) };
        let owner = sampling::forget(index).unwrap_or(id::ROOT_SCOPE_ID);
        book_cold(&self.inner, owner, Op::Dealloc(layout.size() as u64));
        // SAFETY:
        // - the block was allocated by `inner` with its sampled outer layout, checked then.
        unsafe {
            let outer = trailer::existing_sampled_outer_layout(layout.size(), layout.align());
            self.inner.dealloc(trailer::whole_block(ptr), outer)
        }
    }
}

// SAFETY:
// - on the trailer path, every block handed out comes from `A` for a layout of the caller's
//   alignment and at least the caller's size (`size + TRAILER_SIZE`), so it satisfies the
//   caller's layout; `dealloc` and `realloc` rebuild that same outer layout from the caller's
//   layout, as `A` requires;
// - with arenas (only when `A` is jemalloc), a block is either a trailer block as above or an
//   arena block: one of the jemalloc size class of the caller's size (checked against jemalloc's
//   own classes before the first arena is made), allocated by `mallocx` or handed out again by
//   the thread's front cache for a request of that class, at an alignment jemalloc gives every
//   block of the class (`arena::arena_class`); a resize in the arena passes the alignment flag
//   where the new size needs it. The two kinds are told apart by address, as arena blocks lie in
//   the arenas' reserved region, which jemalloc's other arenas never use (see
//   `ledger::arena_path`);
// - the booking never unwinds: the counter code contains no panicking operation and no
//   allocation through the global allocator.
// The methods are `inline(always)`: the booking is a few instructions around the inner call, and
// an out-of-line call with its prologue would cost as much again (measured with callgrind).
unsafe impl<A: GlobalAlloc + 'static> GlobalAlloc for Ledger<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.uses_arenas() {
            return self.arena_alloc(layout, false);
        }
        self.trailer_alloc(layout, false)
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.uses_arenas() {
            return self.arena_alloc(layout, true);
        }
        self.trailer_alloc(layout, true)
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.uses_arenas() {
            // SAFETY:
            // - the caller's guarantee, passed on.
            return unsafe { self.arena_dealloc(ptr, layout) };
        }
        // SAFETY:
        // - the caller's guarantee, passed on.
        unsafe { self.trailer_dealloc(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.uses_arenas() {
            // SAFETY:
            // - the caller's guarantee, passed on.
            return unsafe { self.arena_realloc(ptr, layout, new_size) };
        }
        // SAFETY:
        // - the caller's guarantee, passed on.
        unsafe { self.trailer_realloc(ptr, layout, new_size) }
    }
}

/// The trailer path, for every block of a ledger without arenas and for the blocks of a ledger
/// with arenas that do not fill their class.
impl<A: GlobalAlloc> Ledger<A> {
    /// Allocates a trailer block for `layout`, zeroed if `zero`.
    #[inline(always)]
    pub(crate) fn trailer_alloc(&self, layout: Layout, zero: bool) -> *mut u8 {
        if zero {
            // SAFETY:
            // - `outer` has a non-zero size (at least `TRAILER_SIZE`); the trailer lies past the
            //   caller's zeroed bytes.
            self.alloc_tagged(layout, |outer| unsafe { self.inner.alloc_zeroed(outer) })
        } else {
            // SAFETY:
            // - `outer` has a non-zero size (at least `TRAILER_SIZE`).
            self.alloc_tagged(layout, |outer| unsafe { self.inner.alloc(outer) })
        }
    }

    /// Frees a trailer block.
    ///
    /// # Safety
    ///
    /// - as for [`GlobalAlloc::dealloc`]: `ptr` is a live trailer block of this ledger allocated
    ///   (or last resized) for `layout`.
    #[inline(always)]
    pub(crate) unsafe fn trailer_dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - the caller guarantees `ptr` was allocated by this allocator with `layout`, so its
        //   trailer is at `ptr + layout.size()` and the outer layout was valid when it was made.
        let (tag, outer) = unsafe {
            (
                trailer::read_tag(ptr, layout.size()),
                trailer::existing_outer_layout(layout.size(), layout.align()),
            )
        };
        // Seeded bug (`.ci/mutants`): the free booked to the freeing thread's scope, not the
        // block's.
        #[cfg(memledger_mutant = "free_books_current_scope")]
        let tag = state::current_tag();
        let cell = state::cell_of_tag(tag);
        if !cell.try_book(Op::Dealloc(layout.size() as u64)) {
            // SAFETY:
            // - the caller's guarantee, passed on.
            return unsafe { self.dealloc_cold(tag, ptr, layout) };
        }
        // Booked before the block goes back, so that the inner free is the last call: a tail
        // call, with no registers to keep across it.
        // SAFETY:
        // - `ptr` was allocated by `self.inner` with `outer` (see `alloc`); `whole_block` gives
        //   it back with the provenance of all of it.
        unsafe { self.inner.dealloc(trailer::whole_block(ptr), outer) }
    }

    /// Resizes a trailer block.
    ///
    /// # Safety
    ///
    /// - as for [`GlobalAlloc::realloc`]: `ptr` is a live trailer block of this ledger allocated
    ///   (or last resized) for `layout`, and `new_size` is valid at its alignment.
    #[inline(always)]
    pub(crate) unsafe fn trailer_realloc(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        let Some(new_outer) = trailer::outer_layout(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY:
        // - as in `dealloc`: `ptr` is a live block of this allocator allocated with `layout`.
        let (scope, outer) = unsafe {
            (
                trailer::read(ptr, layout.size()),
                trailer::existing_outer_layout(layout.size(), layout.align()),
            )
        };
        Self::book_resize(&self.inner, scope, ptr, layout, new_size, || {
            // SAFETY:
            // - `ptr` was allocated by `self.inner` with `outer` (`whole_block` gives it back with
            //   the provenance of all of it);
            // - `new_outer.size()` is non-zero and valid at this alignment (checked above).
            let block = unsafe {
                self.inner
                    .realloc(trailer::whole_block(ptr), outer, new_outer.size())
            };
            if !block.is_null() {
                // SAFETY:
                // - `block` holds `new_size + TRAILER_SIZE` bytes. On failure the old block is
                //   untouched, trailer included.
                unsafe { trailer::write(block, new_size, trailer::tag(scope)) };
            }
            block
        })
    }
}
