//! The cold paths that book through the calling thread's slab: a refill when a cell's budget runs
//! out (with every part's work after it), a reserved booking in a limited scope, the sampling's
//! decision, and the changes of a scope's mode that the thread's own cell must see at once.

use core::alloc::GlobalAlloc;
use core::ptr;

use crate::books::cells::{self, Op};
use crate::books::id::ScopeId;
use crate::books::shared::{self, SharedSlots};
use crate::thread::{slab, state, ThreadSlab};

/// The slab this thread books to on a cold path: the one it holds, or a new one if it has none
/// yet; `None` after it gave its slab back (or if none could be made), when it books through the
/// shared slots.
#[inline]
fn slab_for_cold<A: GlobalAlloc>(inner: &A) -> Option<&'static ThreadSlab> {
    if state::never_held() {
        return slab::acquire(inner);
    }
    state::held_slab()
}

/// Books `op` on a block of `scope` on the cold path: the cell's budget ran out (or the thread has
/// no slab yet, or the scope is strict). Exact; refills the cell, then runs each part's work.
#[cold]
#[inline(never)]
pub(crate) fn book_cold<A: GlobalAlloc>(inner: &A, scope: ScopeId, op: Op) {
    match slab_for_cold(inner) {
        Some(slab) => {
            slab.touch(usize::from(scope));
            let cell = slab.cell(usize::from(scope));
            cell.refill(SharedSlots, scope, op);
            let parts = slab.parts();
            crate::sampling::point::after_refill(&parts.sampling, cell, scope);
            // The arenas' periodic work (their decay), at most once per refill.
            crate::owner::arena::after_refill(&parts.arenas);
        }
        // Seeded bug (`.ci/mutants`): a thread without a slab (during thread-local teardown)
        // books nothing.
        #[cfg(memledger_mutant = "slabless_booking_lost")]
        None => {
            let _ = op;
        }
        #[cfg(not(memledger_mutant = "slabless_booking_lost"))]
        None => shared::slot(scope).book(op),
    }
}

/// Books `op`, whose growth of `reserved` bytes was reserved
/// ([`crate::books::shared::reserve`]), taking the scope's total to `total` at the reservation.
#[cold]
pub(crate) fn book_reserved<A: GlobalAlloc>(
    inner: &A,
    scope: ScopeId,
    op: Op,
    reserved: u64,
    total: i64,
) {
    match slab_for_cold(inner) {
        Some(slab) => {
            slab.touch(usize::from(scope));
            let cell = slab.cell(usize::from(scope));
            cell.book_reserved(SharedSlots, scope, op, reserved, total);
            crate::sampling::point::after_refill(&slab.parts().sampling, cell, scope);
        }
        None => shared::slot(scope).book_reserved(reserved, matches!(op, Op::Realloc(_)), total),
    }
}

/// Whether an allocation (or growth) of `size` bytes booked to `scope` on this thread reaches the
/// sample point of its cell: the caller then records the block as a sample. Cold path only.
///
/// Makes the thread's slab if it has none yet (`inner` allocates it), so that a thread's first
/// allocation is sampled as any other.
#[inline]
pub(crate) fn sample_due<A: GlobalAlloc>(inner: &A, scope: ScopeId, size: u64) -> bool {
    match slab_for_cold(inner) {
        Some(slab) => crate::sampling::point::due(
            &slab.parts().sampling,
            slab.cell(usize::from(scope)),
            scope,
            size,
        ),
        None => false,
    }
}

/// Takes back an allocation of `size` bytes booked on this thread's current cell with
/// [`Counter::try_grow`](crate::books::cells::Counter::try_grow) and counted, whose inner
/// allocation then failed; returns null for the caller to return.
#[cold]
#[inline(never)]
pub(crate) fn undo_alloc(size: usize) -> *mut u8 {
    state::current().0.undo_alloc(size as u64);
    ptr::null_mut()
}

/// Books a resize of a block owned by `scope` from `old` to `new` bytes.
#[inline(always)]
#[cfg_attr(
    not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")),
    allow(dead_code) // Used by the arena path only.
)]
pub(crate) fn on_realloc<A: GlobalAlloc>(inner: &A, scope: ScopeId, old: usize, new: usize) {
    // Sizes of live blocks are at most `isize::MAX`, so the difference fits an `i64`.
    let delta = (new as i64).wrapping_sub(old as i64);
    cells::book(state::cell_of(scope), Op::Realloc(delta), |op| {
        book_cold(inner, scope, op)
    });
}

/// Sets or lifts the enforced limit of `scope`. From now on its bookings go through the shared,
/// exact atomics, so that a limit check sees every other thread's bookings: at once on this thread,
/// and on each other thread from its next refill of its cell of the scope.
pub(crate) fn set_limit(scope: ScopeId, limit: Option<u64>) {
    shared::slot(scope).set_limit(limit);
    spend_own(scope);
}

/// Puts `scope` in exact mode (every booking published as it happens, so that its peak is exact)
/// or takes it out: at once on this thread, and on each other thread from its next refill of its
/// cell of the scope.
pub(crate) fn set_exact(scope: ScopeId, exact: bool) {
    shared::slot(scope).set_exact(exact);
    spend_own(scope);
}

/// Sends this thread's next operation on `scope` to the cold path, where it sees the scope's new
/// mode.
fn spend_own(scope: ScopeId) {
    if let Some(slab) = state::held_slab() {
        slab.cell(usize::from(scope)).spend();
    }
}

/// Restarts the peak of `scope` at its live bytes: this thread's pending bytes are published, then
/// the scope's shared peak drops to the published total. Exact when this thread is the only one
/// booking to the scope; otherwise within the peak's resolution per thread.
pub(crate) fn restart_peak(scope: ScopeId) {
    if let Some(slab) = state::held_slab() {
        slab.cell(usize::from(scope)).flush(SharedSlots, scope);
    }
    shared::slot(scope).restart_peak();
}
