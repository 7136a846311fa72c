//! The wrapper allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use crate::books::id::ScopeId;
use crate::books::per_thread;
use crate::owner::trailer;

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
/// # What it costs
///
/// Each block carries its owner in a 2-byte trailer, so `A` is asked for `size + 2` bytes at the
/// same alignment. Each allocation, free or resize updates a counter cell of the calling thread
/// (no lock, no atomic read-modify-write, no shared cache line). Every 64 KiB of net movement per
/// thread and scope, and on every operation on a block of 64 KiB or more, the thread also
/// publishes to the scope's shared total (one atomic add and one `fetch_max`). `BENCHMARKS.md`
/// has the measured time and memory overhead.
///
/// The ledger's books are process-wide: a `Ledger` used as the `#[global_allocator]` books every
/// allocation of the program. A `Ledger` can also be called directly as a [`GlobalAlloc`] (its
/// blocks are booked to the same books).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ledger<A> {
    inner: A,
}

impl<A> Ledger<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Ledger { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: GlobalAlloc> Ledger<A> {
    /// Allocates `layout` plus the tag with `allocate`, then books the block to the current scope
    /// and writes its tag.
    #[inline(always)]
    fn alloc_tagged(&self, layout: Layout, allocate: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
        let Some(outer) = trailer::outer_layout(layout.size(), layout.align()) else {
            return ptr::null_mut();
        };
        if per_thread::enforcing() {
            return self.alloc_enforced(layout, outer, allocate);
        }
        let block = allocate(outer);
        if !block.is_null() {
            let scope = per_thread::on_alloc(&self.inner, layout.size());
            // SAFETY:
            // - `allocate` returned a block of `outer.size() == layout.size() + TRAILER_SIZE`
            //   bytes.
            unsafe { trailer::write(block, layout.size(), scope) };
        }
        block
    }

    /// [`Self::alloc_tagged`] once some scope has an enforced limit: a block of a limited scope is
    /// allocated only if reserving its bytes keeps the scope within its limit.
    #[cold]
    #[inline(never)]
    fn alloc_enforced(
        &self,
        layout: Layout,
        outer: Layout,
        allocate: impl FnOnce(Layout) -> *mut u8,
    ) -> *mut u8 {
        let scope = per_thread::current_scope();
        let size = layout.size() as u64;
        let Ok(reserved) = per_thread::reserve(scope, size) else {
            return ptr::null_mut();
        };
        let block = allocate(outer);
        if block.is_null() {
            if reserved.is_some() {
                per_thread::unreserve(scope, size);
            }
            return block;
        }
        let scope = match reserved {
            Some(total) => {
                per_thread::book_reserved(scope, size, false, total);
                scope
            }
            None => per_thread::on_alloc(&self.inner, layout.size()),
        };
        // SAFETY:
        // - `allocate` returned a block of `outer.size() == layout.size() + TRAILER_SIZE` bytes.
        unsafe { trailer::write(block, layout.size(), scope) };
        block
    }

    /// Resizes a block owned by `owner` from `old` to `new` bytes with `resize` (null on failure,
    /// the block then untouched) and books it: where the owner has an enforced limit, the growth
    /// is reserved first and given back if the resize fails or is refused.
    #[inline(always)]
    pub(crate) fn book_resize(
        inner: &A,
        owner: ScopeId,
        old: usize,
        new: usize,
        resize: impl FnOnce() -> *mut u8,
    ) -> *mut u8 {
        let mut reserved = None;
        if per_thread::enforcing() {
            let Ok(reservation) = Self::reserve_growth(owner, old, new) else {
                return ptr::null_mut();
            };
            reserved = reservation;
        }
        let block = resize();
        if block.is_null() {
            if let Some((bytes, _)) = reserved {
                per_thread::unreserve(owner, bytes);
            }
            return block;
        }
        match reserved {
            Some((bytes, total)) => per_thread::book_reserved(owner, bytes, true, total),
            None => per_thread::on_realloc(inner, owner, old, new),
        }
        block
    }

    /// Reserves the growth of a resize in a scope with an enforced limit: `Ok(Some((bytes,
    /// total)))` for a reservation, `Ok(None)` for a shrink or an unlimited scope.
    #[cold]
    #[inline(never)]
    fn reserve_growth(
        scope: ScopeId,
        old: usize,
        new: usize,
    ) -> Result<Option<(u64, i64)>, per_thread::Refused> {
        if new <= old {
            return Ok(None);
        }
        let growth = (new - old) as u64;
        Ok(per_thread::reserve(scope, growth)?.map(|total| (growth, total)))
    }
}

// SAFETY:
// - every block handed out comes from `A` for a layout of the caller's alignment and at least the
//   caller's size (`size + TRAILER_SIZE`), so it satisfies the caller's layout;
// - `dealloc` and `realloc` rebuild that same outer layout from the caller's layout, as `A`
//   requires;
// - the booking never unwinds: the counter code contains no panicking operation and no
//   allocation through the global allocator.
// The methods are `inline(always)`: the booking is a few instructions around the inner call, and
// an out-of-line call with its prologue would cost as much again (measured with callgrind).
unsafe impl<A: GlobalAlloc> GlobalAlloc for Ledger<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - `outer` has a non-zero size (at least `TRAILER_SIZE`).
        self.alloc_tagged(layout, |outer| unsafe { self.inner.alloc(outer) })
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - `outer` has a non-zero size (at least `TRAILER_SIZE`); the trailer lies past the
        //   caller's zeroed bytes.
        self.alloc_tagged(layout, |outer| unsafe { self.inner.alloc_zeroed(outer) })
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - the caller guarantees `ptr` was allocated by this allocator with `layout`, so its
        //   trailer is at `ptr + layout.size()` and the outer layout was valid when it was made.
        let (scope, outer) = unsafe {
            (
                trailer::read(ptr, layout.size()),
                trailer::outer_layout(layout.size(), layout.align()).unwrap_unchecked(),
            )
        };
        // Booked before the block goes back, so that the inner free is the last call: a tail
        // call, with no registers to keep across it.
        per_thread::on_dealloc(&self.inner, scope, layout.size());
        // SAFETY:
        // - `ptr` was allocated by `self.inner` with `outer` (see `alloc`); `whole_block` gives
        //   it back with the provenance of all of it.
        unsafe { self.inner.dealloc(trailer::whole_block(ptr), outer) };
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(new_outer) = trailer::outer_layout(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY:
        // - as in `dealloc`: `ptr` is a live block of this allocator allocated with `layout`.
        let (scope, outer) = unsafe {
            (
                trailer::read(ptr, layout.size()),
                trailer::outer_layout(layout.size(), layout.align()).unwrap_unchecked(),
            )
        };
        Self::book_resize(&self.inner, scope, layout.size(), new_size, || {
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
                unsafe { trailer::write(block, new_size, scope) };
            }
            block
        })
    }
}
