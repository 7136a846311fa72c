//! Per-thread counter cells: the hot path of the ledger.
//!
//! Every thread books into a [`Slab`] of its own: one [`Counter`] per scope id in a flat table,
//! written by that thread alone with plain loads and stores, and summed by readers. An ordinary
//! allocation, free or resize is booked with one load, add, comparison and store against the
//! cell's budget ([`crate::books::cells`] has the protocol); no cache line shared between threads
//! is written, and a steady churn writes none even on the cold path.
//!
//! Slabs are never freed. A thread takes a free slab (or makes one) on its first booking, and
//! gives it back when it exits; the next thread reuses it and keeps adding to the same monotonic
//! counters. The memory held by the ledger is therefore bounded by the largest number of threads
//! alive at once, not by the number ever started. On Unix a slab is a private anonymous mapping
//! of `MAX_SCOPES × 64` bytes plus its header, of which only the pages a thread writes become
//! resident: about 4 KiB for each group of 64 consecutive scope ids it books to (one or two
//! pages of the system's, as the group falls).
//!
//! Until a thread has a slab, its table is [`COLD`]: a static, all-zero table whose cells' marks
//! send every operation to the cold path, which makes the slab. So the hot path has no null check.
//!
//! # Thread teardown
//!
//! The hot-path state ([`ThreadState`]) is a `const` thread-local without a destructor, so it stays
//! readable for the whole life of the thread, during thread-local destruction included.
//! [`crate::sys::thread_exit`] gives the slab back when the thread exits; after that, the thread's
//! table is [`COLD`] again and it books through the shared atomics of [`ScopeSlot`] instead (rare,
//! and exact).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::mem::MaybeUninit;
use core::ptr;

use crate::books::cells::{Counter, ScopeSlot, Slab, SlabList, Slots};
pub(crate) use crate::books::cells::{Op, Refused, Totals, GRANT, PEAK_RESOLUTION};
use crate::books::id::{self, ScopeId, Tag, MAX_SCOPES, OWN_SCOPE_ID, ROOT_SCOPE_ID, TAG_SHIFT};
use crate::owner::{Front, ThreadTables, COLD_FRONT};
use crate::sys::atomic::{AtomicU64, Ordering};

/// Sets or lifts the enforced limit of `scope`. From now on its bookings go through the shared,
/// exact atomics, so that a limit check sees every other thread's bookings: at once on this thread,
/// and on each other thread from its next refill of its cell of the scope.
#[cfg_attr(not(feature = "enforce"), allow(dead_code))]
pub(crate) fn set_limit(scope: ScopeId, limit: Option<u64>) {
    slot(scope).set_limit(limit);
    spend_own(scope);
}

/// Puts `scope` in exact mode (every booking published as it happens, so that its peak is exact)
/// or takes it out: at once on this thread, and on each other thread from its next refill of its
/// cell of the scope.
pub(crate) fn set_exact(scope: ScopeId, exact: bool) {
    slot(scope).set_exact(exact);
    spend_own(scope);
}

/// Whether `scope` is strict: it has an enforced limit or is in exact mode.
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn strict(scope: ScopeId) -> bool {
    slot(scope).strict()
}

/// Whether `scope` is in exact mode.
pub(crate) fn exact(scope: ScopeId) -> bool {
    slot(scope).exact()
}

/// Sends this thread's next operation on `scope` to the cold path, where it sees the scope's new
/// mode.
fn spend_own(scope: ScopeId) {
    if let Some(slab) = held_slab() {
        slab.counter(usize::from(scope)).spend();
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

/// Books `op`, whose growth of `reserved` bytes was reserved, taking the scope's total to `total`
/// at the reservation.
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
            let cell = slab.counter(usize::from(scope));
            cell.book_reserved(Table, scope, op, reserved, total);
            crate::sampling::after_refill(&slab.sampling, cell, scope);
        }
        None => slot(scope).book_reserved(reserved, matches!(op, Op::Realloc(_)), total),
    }
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
//   `NO_LIMIT` is zero, and not exact.
static SLOTS: [ScopeSlot; MAX_SCOPES] = unsafe { zeroed() };

/// Every slab ever made.
// SAFETY:
// - an all-zero `SlabList` is an empty one: a null head.
static SLABS: SlabList = unsafe { zeroed() };

/// The table of a thread without a slab: all-zero cells, whose zero marks send every operation to
/// the cold path. Never written (the cold path never books to it), so it stays in the zero page:
/// 512 KiB of address space, no memory.
struct ColdTable([Counter; MAX_SCOPES]);

// SAFETY:
// - an all-zero `Counter` is an empty cell (`Counter::default`).
static COLD: ColdTable = unsafe { zeroed() };

/// The first cell of [`COLD`].
const COLD_TABLE: *const Counter = COLD.0.as_ptr();

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
    /// The first cell of this thread's table: its slab's, or [`COLD`]'s.
    table: Cell<*const Counter>,
    /// `table`'s cell for `scope`.
    cell: Cell<*const Counter>,
    /// The owner strategy's front cache in this thread's slab, or [`COLD_FRONT`].
    front: Cell<*const Front>,
    /// The scope new blocks are booked to.
    scope: Cell<ScopeId>,
    /// `scope` as a trailer holds it.
    tag: Cell<Tag>,
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
            table: Cell::new(COLD_TABLE),
            cell: Cell::new(COLD_TABLE.wrapping_add(ROOT_SCOPE_ID as usize)),
            front: Cell::new(ptr::addr_of!(COLD_FRONT)),
            scope: Cell::new(ROOT_SCOPE_ID),
            tag: Cell::new(id::tag(ROOT_SCOPE_ID)),
            depth: Cell::new(0),
            generations: [const { Cell::new(0) }; GUARD_GENERATIONS],
        }
    };
}

/// The cell of `scope` in the table starting at `table`.
#[inline(always)]
fn cell_in(table: *const Counter, scope: ScopeId) -> &'static Counter {
    // SAFETY:
    // - `table` is the first cell of a table of `MAX_SCOPES` cells ([`COLD`], or a slab's, never
    //   freed), and the index is below `MAX_SCOPES`.
    unsafe { &*table.add(usize::from(scope) % MAX_SCOPES) }
}

/// This thread's cell for its current scope, and that scope: the allocation path's lookup.
///
/// The cell is this thread's own: only its [`Counter::try_grow`] and the other hot methods may be
/// called on it, and a `false` from them sends the caller to a cold path.
#[inline(always)]
pub(crate) fn current() -> (&'static Counter, ScopeId) {
    let (cell, scope) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get()))
        .unwrap_or((COLD_TABLE, ROOT_SCOPE_ID));
    // SAFETY:
    // - `cell` is always a cell of this thread's table or of `COLD` (see `ThreadState::enter`);
    //   tables are never freed.
    (unsafe { &*cell }, scope)
}

/// [`current`], and this thread's front cache: the lookup of an allocation of an arena block.
#[inline(always)]
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn current_front() -> (&'static Counter, ScopeId, &'static Front) {
    let (cell, scope, front) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get(), s.front.get()))
        .unwrap_or((COLD_TABLE, ROOT_SCOPE_ID, ptr::addr_of!(COLD_FRONT)));
    // SAFETY:
    // - `cell` as in `current`; `front` is the front cache of this thread's slab (never freed) or
    //   the static `COLD_FRONT`.
    unsafe { (&*cell, scope, &*front) }
}

/// This thread's cell for `scope` and its front cache: the lookup of a free of an arena block.
#[inline(always)]
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn cell_and_front(scope: ScopeId) -> (&'static Counter, &'static Front) {
    let (table, front) = STATE
        .try_with(|s| (s.table.get(), s.front.get()))
        .unwrap_or((COLD_TABLE, ptr::addr_of!(COLD_FRONT)));
    // SAFETY:
    // - as in `current_front`.
    (cell_in(table, scope), unsafe { &*front })
}

/// This thread's cell for `scope`: the lookup of a free or resize of a block `scope` owns.
#[inline(always)]
pub(crate) fn cell_of(scope: ScopeId) -> &'static Counter {
    cell_in(
        STATE.try_with(|s| s.table.get()).unwrap_or(COLD_TABLE),
        scope,
    )
}

/// This thread's cell for the owner whose tag is `tag` (see [`Tag`]): the free path's lookup,
/// straight from the raw trailer.
#[inline(always)]
pub(crate) fn cell_of_tag(tag: Tag) -> &'static Counter {
    const { assert!(core::mem::size_of::<Counter>() == 64) };
    let table = STATE.try_with(|s| s.table.get()).unwrap_or(COLD_TABLE);
    // `(tag >> TAG_SHIFT) * 64`, as a mask and a shift that the address mode's scale absorbs.
    let offset = usize::from(tag & !((1 << TAG_SHIFT) - 1)) << (6 - TAG_SHIFT);
    // SAFETY:
    // - `offset` is `scope_of(tag) * 64` with `scope_of(tag) < MAX_SCOPES`, so the cell is one of
    //   the `MAX_SCOPES` cells of the table ([`COLD`], or a slab's, never freed).
    unsafe { &*table.byte_add(offset) }
}

/// This thread's owner tables: those of the slab it holds, if it holds one.
#[inline(always)]
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn thread_tables() -> Option<&'static ThreadTables> {
    held_slab().map(|slab| &slab.owner)
}

/// The slab this thread holds, if any.
#[inline(always)]
fn held_slab() -> Option<&'static Slab> {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if slab as usize <= RELEASED as usize {
        return None;
    }
    // SAFETY:
    // - neither null nor `RELEASED`: the slab this thread holds; slabs are never freed.
    Some(unsafe { &*slab })
}

/// Calls `f` with the owner tables of every slab ever made.
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn for_each_thread_tables(mut f: impl FnMut(&ThreadTables)) {
    SLABS.for_each(|slab| f(&slab.owner));
}

/// Gives this thread's slab back; from now on the thread books through the shared slots.
pub(crate) fn release_thread_slab() {
    // The front cache first, so that no free from here on pushes into the cache being flushed.
    let _ = STATE.try_with(|state| state.front.set(ptr::addr_of!(COLD_FRONT)));
    crate::owner::arena::release_thread();
    let _ = STATE.try_with(|state| {
        state.table.set(COLD_TABLE);
        state.cell.set(cell_in(COLD_TABLE, state.scope.get()));
        let slab = state.slab.replace(RELEASED);
        if !slab.is_null() && slab != RELEASED {
            // SAFETY:
            // - slabs are never freed, and this thread holds this one (`in_use`), so the
            //   reference is valid and no other thread writes its counters.
            unsafe { release(&*slab) };
        }
    });
}

/// Restarts the peak of `scope` at its live bytes: this thread's pending bytes are published, then
/// the scope's shared peak drops to the published total. Exact when this thread is the only one
/// booking to the scope; otherwise within the peak's resolution per thread.
pub(crate) fn restart_peak(scope: ScopeId) {
    if let Some(slab) = held_slab() {
        slab.counter(usize::from(scope)).flush(Table, scope);
    }
    slot(scope).restart_peak();
}

/// The scope new blocks of this thread are booked to.
#[inline(always)]
pub(crate) fn current_scope() -> ScopeId {
    STATE.try_with(|s| s.scope.get()).unwrap_or(ROOT_SCOPE_ID)
}

/// The current scope as a trailer holds it.
#[inline(always)]
pub(crate) fn current_tag() -> Tag {
    STATE
        .try_with(|s| s.tag.get())
        .unwrap_or(id::tag(ROOT_SCOPE_ID))
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
    /// Makes `scope` current and points `cell` at its cell; returns the previous scope.
    #[inline]
    fn enter(&self, scope: ScopeId) -> ScopeId {
        self.cell.set(cell_in(self.table.get(), scope));
        self.tag.set(id::tag(scope));
        self.scope.replace(scope)
    }
}

/// The slab this thread books to on a cold path: the one it holds, or a new one if it has none
/// yet; `None` after it gave its slab back (or if none could be made), when it books through the
/// shared slots.
#[inline]
fn slab_for_cold<A: GlobalAlloc>(inner: &A) -> Option<&'static Slab> {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if slab.is_null() {
        return acquire(inner);
    }
    held_slab()
}

/// Books `op` on a block of `scope` on the cold path: the cell's budget ran out (or the thread has
/// no slab yet, or the scope is strict). Exact; refills the cell.
#[cold]
#[inline(never)]
pub(crate) fn book_cold<A: GlobalAlloc>(inner: &A, scope: ScopeId, op: Op) {
    match slab_for_cold(inner) {
        Some(slab) => {
            slab.touch(usize::from(scope));
            let cell = slab.counter(usize::from(scope));
            cell.refill(Table, scope, op);
            crate::sampling::after_refill(&slab.sampling, cell, scope);
            // The owner strategy's periodic work (the arenas' decay), at most once per refill.
            crate::owner::arena::after_refill();
        }
        None => slot(scope).book(op),
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
        Some(slab) => crate::sampling::due(
            &slab.sampling,
            slab.counter(usize::from(scope)),
            scope,
            size,
        ),
        None => false,
    }
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

/// Gives this thread a slab: a free one from the list, else a new one.
#[cold]
fn acquire<A: GlobalAlloc>(inner: &A) -> Option<&'static Slab> {
    let slab = take_free_slab().or_else(|| new_slab(inner))?;
    let held = STATE.try_with(|s| {
        s.slab.set(slab);
        s.table.set(slab.cells());
        s.front.set(slab.owner.front());
        s.enter(s.scope.get());
    });
    if held.is_err() {
        release(slab);
        return None;
    }
    // Arranging the release may allocate; the slab is in place, so such allocations are booked
    // through it like any other. If it cannot be arranged, give the slab back at once and book
    // through the shared slots from now on, so that no slab is lost with the thread.
    if !crate::sys::thread_exit::arrange_release() {
        release_thread_slab();
        return None;
    }
    Some(slab)
}

fn take_free_slab() -> Option<&'static Slab> {
    SLABS.take_free()
}

fn new_slab<A: GlobalAlloc>(inner: &A) -> Option<&'static Slab> {
    let raw = map_zeroed_slab().or_else(|| alloc_zeroed_internal::<Slab, A>(inner))?;
    // SAFETY:
    // - `raw` is a fresh, zeroed, properly aligned allocation of a `Slab`: all-zero is a valid,
    //   empty `Slab`, nothing else can see it yet, and slabs are never freed.
    let slab = unsafe { &*raw };
    slab.owner.init();
    // SAFETY:
    // - as above; the owner tables' initialisation went through their atomics.
    Some(unsafe { SLABS.push(raw) })
}

/// Bytes of address space mapped for slabs (none where they come from the inner allocator).
static MAPPED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Address space mapped for the slabs of all threads; only the pages threads wrote are resident.
pub(crate) fn mapped_bytes() -> u64 {
    MAPPED_BYTES.load(Ordering::Relaxed)
}

/// A zeroed slab in a private anonymous mapping of its own, so that the pages of the table a
/// thread never books to cost no memory; `None` where mappings are not used (then the slab comes
/// from the inner allocator).
#[cfg(all(unix, not(miri)))]
fn map_zeroed_slab() -> Option<*mut Slab> {
    let length = core::mem::size_of::<Slab>();
    // SAFETY:
    // - an anonymous private mapping at an address of the kernel's choosing touches no existing
    //   memory; its pages read as zeros and are page-aligned (more than a `Slab` needs).
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            length,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    MAPPED_BYTES.fetch_add(length as u64, Ordering::Relaxed);
    Some(base.cast::<Slab>())
}

#[cfg(not(all(unix, not(miri))))]
fn map_zeroed_slab() -> Option<*mut Slab> {
    None
}

/// Publishes the slab's pending bytes and marks it free.
fn release(slab: &Slab) {
    slab.release(Table);
}

/// Takes back an allocation of `size` bytes booked on this thread's current cell with
/// [`Counter::try_grow`] and counted, whose inner allocation then failed; returns null for the
/// caller to return.
#[cold]
#[inline(never)]
pub(crate) fn undo_alloc(size: usize) -> *mut u8 {
    current().0.undo_alloc(size as u64);
    ptr::null_mut()
}

/// Books the free of a block of `size` bytes owned by `scope`.
#[inline(always)]
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn on_dealloc<A: GlobalAlloc>(inner: &A, scope: ScopeId, size: usize) {
    let cell = cell_of(scope);
    if cell.try_shrink(size as u64) {
        cell.count_free();
    } else {
        book_cold(inner, scope, Op::Dealloc(size as u64));
    }
}

/// Books a resize of a block owned by `scope` from `old` to `new` bytes.
#[inline(always)]
#[allow(dead_code)] // Used by the arenas only.
pub(crate) fn on_realloc<A: GlobalAlloc>(inner: &A, scope: ScopeId, old: usize, new: usize) {
    // Sizes of live blocks are at most `isize::MAX`, so the difference fits an `i64`.
    let delta = (new as i64).wrapping_sub(old as i64);
    let cell = cell_of(scope);
    if cell.try_resize(delta) {
        cell.count_realloc();
    } else {
        book_cold(inner, scope, Op::Realloc(delta));
    }
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
    // The shared counters (bookings made without a slab) and the peaks first; then every slab's
    // cells.
    for (id, total) in out.iter_mut().enumerate().take(scopes) {
        *total = SLOTS[id].totals();
    }
    SLABS.for_each(|slab| {
        usage.total += 1;
        if slab.in_use() {
            usage.in_use += 1;
        }
        slab.for_each_counter(scopes, |id, cell| cell.add_to(&mut out[id]));
    });
    usage
}
