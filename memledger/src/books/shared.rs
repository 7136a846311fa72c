//! The books' process-wide state that no thread holds: one [`ScopeSlot`] per scope id (shared
//! totals, peaks, modes and enforced limits), and the blocks the ledger allocates for itself.
//!
//! Everything here is reached through a scope id alone: nothing reads a thread's state. What
//! reads or writes the calling thread's cells lives in [`crate::thread`], above.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;

use crate::books::cells::{Op, Refused, ScopeSlot, Slots};
use crate::books::id::{ScopeId, MAX_SCOPES, OWN_SCOPE_ID};
use crate::sys::atomic::{AtomicU64, Ordering};

/// An all-zero `T`.
///
/// # Safety
///
/// - all-zero bytes must be a valid `T`.
pub(crate) const unsafe fn zeroed<T>() -> T {
    // SAFETY:
    // - the caller guarantees that zeros are a valid `T`.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// One per scope id, in static memory: no allocation, and every scope's line is its own.
// SAFETY:
// - an all-zero `ScopeSlot` is an empty one without a limit (`ScopeSlot::new`): zero counters,
//   `NO_LIMIT` is zero, and not exact.
static SLOTS: [ScopeSlot; MAX_SCOPES] = unsafe { zeroed() };

/// The process-wide slots, as [`Slots`] for the cells' cold paths.
#[derive(Clone, Copy)]
pub(crate) struct SharedSlots;

impl Slots<'static> for SharedSlots {
    #[inline(always)]
    fn slot(self, scope: ScopeId) -> &'static ScopeSlot {
        slot(scope)
    }
}

/// The shared slot of `scope`.
#[inline(always)]
pub(crate) fn slot(scope: ScopeId) -> &'static ScopeSlot {
    &SLOTS[usize::from(scope) % MAX_SCOPES]
}

/// Whether `scope` is in exact mode.
pub(crate) fn exact(scope: ScopeId) -> bool {
    slot(scope).exact()
}

/// Puts a scope that no cell has booked to yet in exact mode: a new id, whose cells are all
/// still empty, so that no thread needs telling. (`crate::thread::cold::set_exact` changes the mode of
/// a scope in use.)
pub(crate) fn set_new_scope_exact(scope: ScopeId) {
    slot(scope).set_exact(true);
}

/// The enforced limit of `scope`, and how many operations it refused.
pub(crate) fn limit(scope: ScopeId) -> (Option<u64>, u64) {
    let slot = slot(scope);
    (slot.limit(), slot.refused())
}

/// The slot of `scope` if it has an enforced limit.
#[inline]
fn limited(scope: ScopeId) -> Option<&'static ScopeSlot> {
    let slot = slot(scope);
    slot.limit().is_some().then_some(slot)
}

/// Adds `bytes` to the shared total of `scope` if that keeps it within its enforced limit.
///
/// `Ok(None)`: the scope has no limit, book as usual. `Ok(Some(total))`: the bytes were added,
/// taking the total to `total`; book the operation with `crate::thread::cold::book_reserved`, or give
/// the bytes back with [`unreserve`]. See [`ScopeSlot::reserve`].
#[cold]
#[inline(never)]
pub(crate) fn reserve(scope: ScopeId, bytes: u64) -> Result<Option<i64>, Refused> {
    match limited(scope) {
        Some(slot) => slot.reserve(bytes).map(Some),
        None => Ok(None),
    }
}

/// Gives back bytes reserved for an operation that the inner allocator then failed.
#[cold]
pub(crate) fn unreserve(scope: ScopeId, bytes: u64) {
    slot(scope).unreserve(bytes);
}

/// Allocates a zeroed `T` from the inner allocator for the ledger's own use, booked to the
/// crate's own scope. Such blocks carry no tag; they are never freed, but for one that lost a race
/// to be published ([`dealloc_internal`]).
pub(crate) fn alloc_zeroed_internal<T, A: GlobalAlloc>(inner: &A) -> Option<*mut T> {
    let layout = Layout::new::<T>();
    // SAFETY:
    // - `layout` has a non-zero size (callers allocate tables of counters).
    let ptr = unsafe { inner.alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return None;
    }
    slot(OWN_SCOPE_ID).book(Op::Alloc(layout.size() as u64));
    // Relaxed: a statistic, read by reconciliations.
    UNTAGGED_BLOCKS.fetch_add(1, Ordering::Relaxed);
    Some(ptr)
}

/// Frees a block of [`alloc_zeroed_internal`] that was never used (it lost a race to be
/// published), unbooking it.
///
/// # Safety
///
/// - `ptr` came from `alloc_zeroed_internal::<T, A>(inner)` and is not used any more.
pub(crate) unsafe fn dealloc_internal<T, A: GlobalAlloc>(inner: &A, ptr: *mut T) {
    let layout = Layout::new::<T>();
    // SAFETY:
    // - the caller's guarantee: a block `inner` allocated with this layout, now unused.
    unsafe { inner.dealloc(ptr.cast(), layout) };
    slot(OWN_SCOPE_ID).book(Op::Dealloc(layout.size() as u64));
    // Relaxed: a statistic, as in `alloc_zeroed_internal`.
    UNTAGGED_BLOCKS.fetch_sub(1, Ordering::Relaxed);
}

/// Blocks the ledger allocated for itself without a tag (slabs where they are not mapped).
static UNTAGGED_BLOCKS: AtomicU64 = AtomicU64::new(0);

/// Live blocks booked to the crate's own scope that carry no tag.
pub(crate) fn untagged_blocks() -> u64 {
    UNTAGGED_BLOCKS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reservation in a limited scope's shared slot, given back, leaves its total as it was;
    /// a scope without a limit reserves nothing.
    #[test]
    fn reservations_given_back_leave_the_total() {
        // The last ids: no test of this binary registers that many scopes.
        let (limited, free) = ((MAX_SCOPES - 1) as ScopeId, (MAX_SCOPES - 2) as ScopeId);
        slot(limited).set_limit(Some(100));
        assert_eq!(limit(limited), (Some(100), 0));
        assert_eq!(reserve(limited, 60), Ok(Some(60)));
        assert_eq!(reserve(limited, 41), Err(Refused));
        unreserve(limited, 60);
        assert_eq!(slot(limited).published(), 0);
        assert_eq!(reserve(limited, 100), Ok(Some(100)));
        unreserve(limited, 100);
        assert_eq!(limit(limited), (Some(100), 1));
        slot(limited).set_limit(None);
        assert_eq!(reserve(free, 1 << 40), Ok(None));
        assert_eq!(slot(free).published(), 0);
    }

    /// The ledger's own blocks come zeroed, are booked to its own scope and counted as blocks
    /// without a tag while they live. (Other tests may make and free such blocks meanwhile, so
    /// the checks are bounds, not equalities.)
    #[test]
    fn own_blocks_are_zeroed_booked_and_counted() {
        let inner = std::alloc::System;
        let booked = slot(OWN_SCOPE_ID).totals().bytes_in;
        let blocks = [
            alloc_zeroed_internal::<[u64; 8], _>(&inner).unwrap(),
            alloc_zeroed_internal::<[u64; 8], _>(&inner).unwrap(),
        ];
        for block in blocks {
            // SAFETY:
            // - a live block of `[u64; 8]` that nothing else uses.
            assert_eq!(unsafe { *block }, [0; 8]);
        }
        assert!(untagged_blocks() >= 2);
        assert!(slot(OWN_SCOPE_ID).totals().bytes_in >= booked + 2 * 64);
        for block in blocks {
            // SAFETY:
            // - made by `alloc_zeroed_internal` above, and not used after this.
            unsafe { dealloc_internal(&inner, block) };
        }
    }
}
