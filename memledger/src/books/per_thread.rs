//! Per-thread counter cells: the hot path of the ledger.
//!
//! Every thread books into a [`Slab`] of its own: one [`Counter`] per scope, written by that
//! thread alone with plain (relaxed load + relaxed store) updates, and summed by readers. No
//! cache line shared between threads is written on an ordinary allocation or free.
//!
//! Slabs are never freed. A thread takes a free slab (or makes one) on its first allocation, and
//! gives it back when it exits; the next thread reuses it and keeps
//! adding to the same monotonic counters. The memory held by the ledger is therefore bounded by
//! the largest number of threads alive at once, not by the number ever started.
//!
//! The counters themselves, their publishing protocol and the slab list are in
//! [`crate::books::cells`]; this module holds the process-wide instances and the hot path that
//! finds them.
//!
//! # Thread teardown
//!
//! The hot-path state ([`ThreadState`]) is a `const` thread-local without a destructor, so it stays
//! readable for the whole life of the thread, during thread-local destruction included.
//! [`crate::sys::thread_exit`] gives the slab back when the thread exits; after that, the thread
//! books through the shared atomics of [`ScopeSlot`] instead (rare, and exact).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::mem::MaybeUninit;
use core::ptr;

use crate::books::cells::{Counter, Op, Page, ScopeSlot, Slab, SlabList, Slots};
pub(crate) use crate::books::cells::{Refused, Totals, PUBLISH_THRESHOLD};
use crate::books::id::{ScopeId, MAX_SCOPES, OWN_SCOPE_ID, ROOT_SCOPE_ID};
use crate::owner::ThreadTables;
use crate::sys::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set once any scope has had a limit enforced; until then the allocation path skips the check.
static ENFORCING: AtomicBool = AtomicBool::new(false);

/// Whether any scope has (or had) an enforced limit: one relaxed load of a flag written once.
#[inline(always)]
pub(crate) fn enforcing() -> bool {
    // Without the `enforce` feature this is `false` at compile time and every check vanishes.
    // Relaxed: a thread that misses a limit set concurrently books that one operation as if the
    // limit were set just after it.
    cfg!(feature = "enforce") && ENFORCING.load(Ordering::Relaxed)
}

/// Sets or lifts the enforced limit of `scope`. From now on its bookings go through the shared,
/// exact atomics, so that a limit check sees every other thread's bookings.
#[cfg_attr(not(feature = "enforce"), allow(dead_code))]
pub(crate) fn set_limit(scope: ScopeId, limit: Option<u64>) {
    slot(scope).set_limit(limit);
    if limit.is_some() {
        ENFORCING.store(true, Ordering::Release);
    }
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
/// taking the total to `total`; book the operation with [`book_reserved`], or give the bytes back
/// with [`unreserve`]. See [`ScopeSlot::reserve`].
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

/// Books an allocation (`realloc == false`) or a resize whose growth of `bytes` was reserved,
/// taking the scope's total to `total` at the reservation.
#[cold]
pub(crate) fn book_reserved(scope: ScopeId, bytes: u64, realloc: bool, total: i64) {
    slot(scope).book_reserved(bytes, realloc, total);
}

/// An all-zero `T`.
///
/// # Safety
///
/// - all-zero bytes must be a valid `T`.
const unsafe fn zeroed<T>() -> T {
    // SAFETY:
    // - the caller guarantees that zeros are a valid `T`.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// One per scope id, in static memory: no allocation, and every scope's line is its own.
// SAFETY:
// - an all-zero `ScopeSlot` is an empty one without a limit (`ScopeSlot::new`): zero counters,
//   no writer, and `NO_LIMIT` is zero.
static SLOTS: [ScopeSlot; MAX_SCOPES] = unsafe { zeroed() };

/// Every slab ever made.
// SAFETY:
// - an all-zero `SlabList` is an empty one: a null head.
static SLABS: SlabList = unsafe { zeroed() };

/// The process-wide slot table, as [`Slots`] for the counters.
#[derive(Clone, Copy)]
struct Table;

impl Slots<'static> for Table {
    #[inline(always)]
    fn slot(self, scope: ScopeId) -> &'static ScopeSlot {
        slot(scope)
    }
}

/// The shared slot of `scope`.
#[inline(always)]
fn slot(scope: ScopeId) -> &'static ScopeSlot {
    &SLOTS[usize::from(scope) % MAX_SCOPES]
}

/// The hot-path thread-local state. `const`-initialised and without a destructor, so access is a
/// plain TLS load and it stays valid during thread-local teardown.
pub(crate) struct ThreadState {
    /// Null before the first booking, [`RELEASED`] after the slab was given back.
    slab: Cell<*const Slab>,
    /// The scope new blocks are booked to.
    scope: Cell<ScopeId>,
    /// This thread's counter for `scope`, or null when it has none yet (no slab, no page, or the
    /// slab was given back). Saves the slab and page lookups on allocation.
    cell: Cell<*const Counter>,
    /// Number of scope guards alive on this thread.
    depth: Cell<u32>,
    /// `generations[d - 1]` counts the guards made at depth `d` (up to [`GUARD_GENERATIONS`]), so
    /// that a guard already ended by an outer one is told apart from a newer guard at its depth.
    generations: [Cell<u32>; GUARD_GENERATIONS],
}

/// Guard depths whose generations are tracked; deeper guards are checked by depth alone.
const GUARD_GENERATIONS: usize = 32;

/// Marks a thread whose slab was given back at thread-local teardown.
// A sentinel, not a dangling pointer to a `Slab`: 1, so that one comparison (`<= RELEASED`)
// tells both null and released apart from a slab.
#[allow(clippy::manual_dangling_ptr)]
const RELEASED: *const Slab = 1 as *const Slab;

std::thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            slab: Cell::new(ptr::null()),
            scope: Cell::new(ROOT_SCOPE_ID),
            cell: Cell::new(ptr::null()),
            depth: Cell::new(0),
            generations: [const { Cell::new(0) }; GUARD_GENERATIONS],
        }
    };
}

/// This thread's owner tables: those of the slab it holds, if it holds one.
#[inline(always)]
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn thread_tables() -> Option<&'static ThreadTables> {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if slab as usize <= RELEASED as usize {
        return None;
    }
    // SAFETY:
    // - neither null nor `RELEASED`: the slab this thread holds; slabs are never freed.
    Some(&unsafe { &*slab }.owner)
}

/// Calls `f` with the owner tables of every slab ever made.
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn for_each_thread_tables(mut f: impl FnMut(&ThreadTables)) {
    SLABS.for_each(|slab| f(&slab.owner));
}

/// Gives this thread's slab back; from now on the thread books through the shared slots.
pub(crate) fn release_thread_slab() {
    crate::owner::arena::release_thread();
    let _ = STATE.try_with(|state| {
        state.cell.set(ptr::null());
        let slab = state.slab.replace(RELEASED);
        if !slab.is_null() && slab != RELEASED {
            // SAFETY:
            // - slabs are never freed, and this thread holds this one (`in_use`), so the
            //   reference is valid and no other thread writes its counters.
            unsafe { release(&*slab) };
        }
    });
}

/// Restarts the peak of `scope` at its live bytes: this thread's pending bytes are published, its
/// running maximum restarts, then the scope's shared peak drops to the published total. Exact
/// when this thread is the only one booking to the scope; otherwise within the peak's resolution
/// per thread.
pub(crate) fn restart_peak(scope: ScopeId) {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if let Some(cell) = counter(slab, scope) {
        cell.restart_peak(Table, scope);
    }
    slot(scope).restart_peak();
}

/// The scope new blocks of this thread are booked to.
#[inline(always)]
pub(crate) fn current_scope() -> ScopeId {
    STATE.try_with(|s| s.scope.get()).unwrap_or(ROOT_SCOPE_ID)
}

/// Makes `scope` current on this thread; returns the previous one.
#[inline]
pub(crate) fn set_current_scope(scope: ScopeId) -> ScopeId {
    STATE.try_with(|s| s.enter(scope)).unwrap_or(ROOT_SCOPE_ID)
}

/// Where a guard sits on its thread: its depth and the generation of that depth when it was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardSlot {
    depth: u32,
    generation: u32,
}

/// Enters `scope` for a guard; returns the scope to restore and the guard's place.
#[inline]
pub(crate) fn enter_guard(scope: ScopeId) -> (ScopeId, GuardSlot) {
    STATE
        .try_with(|s| {
            let depth = s.depth.get().wrapping_add(1);
            s.depth.set(depth);
            let mut generation = 0;
            if (1..=GUARD_GENERATIONS as u32).contains(&depth) {
                let cell = &s.generations[(depth as usize - 1) % GUARD_GENERATIONS];
                generation = cell.get().wrapping_add(1);
                cell.set(generation);
            }
            (s.enter(scope), GuardSlot { depth, generation })
        })
        .unwrap_or((
            ROOT_SCOPE_ID,
            GuardSlot {
                depth: 0,
                generation: 0,
            },
        ))
}

/// Leaves the scope of the guard at `slot`, and of every guard entered after it. Does nothing if
/// an outer guard already ended it.
#[inline]
pub(crate) fn leave_guard(previous: ScopeId, slot: GuardSlot) {
    let _ = STATE.try_with(|s| {
        let depth = slot.depth;
        let same_generation = !(1..=GUARD_GENERATIONS as u32).contains(&depth)
            || s.generations[(depth as usize - 1) % GUARD_GENERATIONS].get() == slot.generation;
        if depth != 0 && depth <= s.depth.get() && same_generation {
            s.enter(previous);
            s.depth.set(depth - 1);
        }
    });
}

impl ThreadState {
    /// Makes `scope` current and caches its counter; returns the previous scope.
    #[inline]
    fn enter(&self, scope: ScopeId) -> ScopeId {
        self.cell
            .set(counter(self.slab.get(), scope).map_or(ptr::null(), |c| c as *const Counter));
        self.scope.replace(scope)
    }
}

/// This thread's counter for `scope` if the thread has a slab with that scope's page; `None`
/// sends the caller to [`book_slow`].
#[inline(always)]
fn counter(slab: *const Slab, scope: ScopeId) -> Option<&'static Counter> {
    if slab as usize <= RELEASED as usize {
        return None;
    }
    // SAFETY:
    // - `slab` is neither null nor `RELEASED`, so it is the slab this thread acquired; slabs are
    //   never freed.
    let slab: &'static Slab = unsafe { &*slab };
    slab.counter(usize::from(scope) % MAX_SCOPES)
}

/// Books `op` when the fast path found no counter: makes the slab or page it lacks, or books
/// through the shared slot when the thread has no slab.
#[cold]
#[inline(never)]
fn book_slow<A: GlobalAlloc>(inner: &A, scope: ScopeId, op: Op) {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if let Some(cell) = counter(slab, scope).or_else(|| counter_slow(inner, slab, scope)) {
        let _ = STATE.try_with(|s| {
            if s.scope.get() == scope {
                s.cell.set(cell);
            }
        });
        cell.apply(Table, scope, op);
        return;
    }
    slot(scope).book(op);
}

#[cold]
#[inline(never)]
fn counter_slow<A: GlobalAlloc>(
    inner: &A,
    slab: *const Slab,
    scope: ScopeId,
) -> Option<&'static Counter> {
    let slab = if slab.is_null() {
        acquire(inner)?
    } else if slab == RELEASED {
        return None;
    } else {
        // SAFETY:
        // - see `counter`: this thread's slab, never freed.
        unsafe { &*slab }
    };
    let index = usize::from(scope) % MAX_SCOPES;
    let pages = slab.page_slot(index);
    // Relaxed: this thread is the only one that stores page pointers into its slab.
    if pages.load(Ordering::Relaxed).is_null() {
        let page = alloc_zeroed_internal::<Page, A>(inner)?;
        // Release: readers that find the page (acquire) see its zeroed cells.
        pages.store(page, Ordering::Release);
    }
    slab.counter(index)
}

/// Allocates a zeroed `T` from the inner allocator for the ledger's own use, booked to the
/// crate's own scope. Such blocks are never freed, so they carry no tag.
pub(crate) fn alloc_zeroed_internal<T, A: GlobalAlloc>(inner: &A) -> Option<*mut T> {
    let layout = Layout::new::<T>();
    // SAFETY:
    // - `layout` has a non-zero size (`Page` and `Slab` hold counters).
    let ptr = unsafe { inner.alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return None;
    }
    slot(OWN_SCOPE_ID).book(Op::Alloc(layout.size() as u64));
    // Relaxed: a statistic, read by reconciliations.
    UNTAGGED_BLOCKS.fetch_add(1, Ordering::Relaxed);
    Some(ptr)
}

/// Blocks the ledger allocated for itself without a tag (slabs and pages).
static UNTAGGED_BLOCKS: AtomicU64 = AtomicU64::new(0);

/// Live blocks booked to the crate's own scope that carry no tag.
pub(crate) fn untagged_blocks() -> u64 {
    UNTAGGED_BLOCKS.load(Ordering::Relaxed)
}

/// Gives this thread a slab: a free one from the list, else a new one.
#[cold]
fn acquire<A: GlobalAlloc>(inner: &A) -> Option<&'static Slab> {
    let slab = take_free_slab().or_else(|| new_slab(inner))?;
    if STATE.try_with(|s| s.slab.set(slab)).is_err() {
        release(slab);
        return None;
    }
    // Arranging the release may allocate; the slab is in place, so such allocations are booked
    // through it like any other. If it cannot be arranged, give the slab back at once and book
    // through the shared slots from now on, so that no slab is lost with the thread.
    if !crate::sys::thread_exit::arrange_release() {
        // Also drops a counter cached by an allocation made while arranging the release.
        release_thread_slab();
        return None;
    }
    Some(slab)
}

fn take_free_slab() -> Option<&'static Slab> {
    SLABS.take_free()
}

fn new_slab<A: GlobalAlloc>(inner: &A) -> Option<&'static Slab> {
    let raw = alloc_zeroed_internal::<Slab, A>(inner)?;
    // SAFETY:
    // - `raw` is a fresh, zeroed, properly aligned allocation of a `Slab`: all-zero is a valid,
    //   empty `Slab`, nothing else can see it yet, and slabs are never freed.
    Some(unsafe { SLABS.push(raw) })
}

/// Publishes the slab's pending bytes and marks it free.
fn release(slab: &Slab) {
    slab.release(Table);
}

/// Books a new block of `size` bytes to the current scope; returns that scope.
#[inline(always)]
pub(crate) fn on_alloc<A: GlobalAlloc>(inner: &A, size: usize) -> ScopeId {
    let (cell, scope) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get()))
        .unwrap_or((ptr::null(), ROOT_SCOPE_ID));
    let op = Op::Alloc(size as u64);
    // SAFETY:
    // - a non-null cached cell is this thread's counter for the current scope, in a slab this
    //   thread holds; cells are never freed.
    match unsafe { cell.as_ref() } {
        Some(cell) => cell.apply(Table, scope, op),
        None => book_slow(inner, scope, op),
    }
    scope
}

/// Books `op` on a block owned by `scope`.
#[inline(always)]
fn book<A: GlobalAlloc>(inner: &A, scope: ScopeId, op: Op) {
    if enforcing() {
        if let Some(slot) = limited(scope) {
            return slot.book(op);
        }
    }
    let (cell, current, slab) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get(), s.slab.get()))
        .unwrap_or((ptr::null(), ROOT_SCOPE_ID, RELEASED));
    let cell = if scope == current && !cell.is_null() {
        // SAFETY:
        // - as in `on_alloc`: the cached, never-freed counter of this thread for `scope`.
        Some(unsafe { &*cell })
    } else {
        counter(slab, scope)
    };
    match cell {
        Some(cell) => cell.apply(Table, scope, op),
        None => book_slow(inner, scope, op),
    }
}

/// Books the free of a block of `size` bytes owned by `scope`.
#[inline(always)]
pub(crate) fn on_dealloc<A: GlobalAlloc>(inner: &A, scope: ScopeId, size: usize) {
    book(inner, scope, Op::Dealloc(size as u64));
}

/// Books a resize of a block owned by `scope` from `old` to `new` bytes.
#[inline(always)]
pub(crate) fn on_realloc<A: GlobalAlloc>(inner: &A, scope: ScopeId, old: usize, new: usize) {
    // Sizes of live blocks are at most `isize::MAX`, so the difference fits an `i64`.
    book(
        inner,
        scope,
        Op::Realloc((new as i64).wrapping_sub(old as i64)),
    );
}

/// Slab usage, for snapshots.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct SlabUsage {
    pub in_use: usize,
    pub total: usize,
}

/// Sums every thread's counters for scopes `0..scopes`.
pub(crate) fn read_totals(scopes: usize, out: &mut [Totals]) -> SlabUsage {
    let scopes = scopes.min(MAX_SCOPES).min(out.len());
    let mut usage = SlabUsage::default();
    // The shared counters (bookings made without a slab) and the published peaks first; then
    // every slab's cells, taking a cell's running maximum only when it is its scope's single
    // writer.
    for (id, total) in out.iter_mut().enumerate().take(scopes) {
        *total = SLOTS[id].totals();
    }
    SLABS.for_each(|slab| {
        usage.total += 1;
        if slab.in_use() {
            usage.in_use += 1;
        }
        slab.for_each_counter(scopes, |id, cell| cell.add_to(&SLOTS[id], &mut out[id]));
    });
    usage
}
