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
//! # Peaks
//!
//! A per-scope high-water mark cannot be summed from per-thread cells, so each cell also keeps
//! its net bytes since it last *published* them. When that pending amount passes
//! ±[`PUBLISH_THRESHOLD`], the cell adds it to the scope's shared `published` total with one
//! atomic add and raises the scope's `peak` with `fetch_max`; a thread also publishes everything
//! when it exits. Every live thread holds back less than the threshold, so with `k` live threads
//! that have booked to a scope, `published` is within `k × PUBLISH_THRESHOLD` of the true live
//! bytes, and so is the peak (see [`crate::ScopeStats`]). A cell registers itself with the scope
//! the first time it books to it; while it is the only cell that ever did, it sees every change,
//! and its own running maximum *is* the scope's: the peak of a scope booked by one thread is exact.
//!
//! # Thread teardown
//!
//! The hot-path state ([`ThreadState`]) is a `const` thread-local without a destructor, so it
//! stays readable for the whole life of the thread, during thread-local destruction included.
//! [`crate::thread_exit`] gives the slab back when the thread exits; after that, the thread books
//! through the shared atomics of [`ScopeSlot`] instead (rare, and exact).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;

use crate::primitive::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::registry::{MAX_SCOPES, OWN_SCOPE_ID, ROOT_SCOPE_ID};
pub(crate) use crate::tag::Tag;

/// Net bytes a cell may hold back from its scope's shared total before publishing them.
///
/// Small enough that the peak of a scope is known within 64 KiB per live thread that booked to
/// it; large enough that a churn of small blocks (which oscillates around zero) never publishes,
/// and that the blocks which publish on every call (64 KiB and more) are ones where jemalloc's own
/// large-allocation path costs far more than the publish.
pub const PUBLISH_THRESHOLD: i64 = 64 * 1024;

/// Scopes per page of counters; a thread's counters for scopes `64 * i .. 64 * (i + 1)` live in
/// page `i`, created the first time the thread books to one of them.
const PAGE_SCOPES: usize = 64;
const PAGES: usize = MAX_SCOPES / PAGE_SCOPES;

/// What one thread has booked to one scope. Written only by the thread that holds the slab.
///
/// All fields are atomics so that readers may load them while the owner writes; the owner uses
/// relaxed loads and stores (plain moves on every mainstream target), never read-modify-write.
/// One cache line per cell, so a cell is found with a shift.
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Counter {
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    /// Bytes brought into the scope by this cell: allocations and realloc growth.
    bytes_in: AtomicU64,
    /// Bytes brought in minus bytes taken out (frees and realloc shrinkage) by this cell.
    net: AtomicI64,
    /// Highest `net` since the last publish.
    net_max: AtomicI64,
    /// `net` as of the last publish.
    published_net: AtomicI64,
}

/// Adds `by` to a counter that only the calling thread writes.
#[inline(always)]
fn bump_u64(cell: &AtomicU64, by: u64) {
    // Relaxed: the calling thread is the only writer (it holds the slab, handed over with
    // acquire/release), so a load and a store cannot lose an update; readers only need each value
    // to be one that was stored, and join/idle gives them the final one.
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// As [`bump_u64`], for the signed net; returns the new value.
#[inline(always)]
fn bump_net(cell: &AtomicI64, by: i64) -> i64 {
    let v = cell.load(Ordering::Relaxed).wrapping_add(by);
    // Release: `bytes_in` is stored before `net`, and readers load `net` (acquire) before
    // `bytes_in`, so `bytes_in - net` (the bytes taken out) never looks negative. A plain store
    // on x86.
    cell.store(v, Ordering::Release);
    v
}

impl Counter {
    #[inline(always)]
    fn grew(&self, scope: Tag, by: u64) {
        bump_u64(&self.bytes_in, by);
        let net = bump_net(&self.net, by as i64);
        // `net_max - published_net` never exceeds the threshold (passing it publishes, which
        // resets both), so `net` can only pass the threshold when it also passes `net_max`: a
        // churn below its high-water mark costs one comparison.
        if net > self.net_max.load(Ordering::Relaxed) {
            self.net_max.store(net, Ordering::Relaxed);
            if net.wrapping_sub(self.published_net.load(Ordering::Relaxed)) > PUBLISH_THRESHOLD {
                self.publish(scope, net);
            }
        }
    }

    #[inline(always)]
    fn shrank(&self, scope: Tag, by: u64) {
        let net = bump_net(&self.net, (by as i64).wrapping_neg());
        if self.published_net.load(Ordering::Relaxed).wrapping_sub(net) > PUBLISH_THRESHOLD {
            self.publish(scope, net);
        }
    }

    /// Counts one operation in `count`, registering this cell with the scope on its first one.
    #[inline(always)]
    fn count(&self, count: &AtomicU64, scope: Tag) {
        // Relaxed: single writer, as in `bump_u64`.
        let n = count.load(Ordering::Relaxed);
        if n == 0 {
            self.first_touch(scope);
        }
        count.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// Registers this cell as a writer of `scope` if none of its counts has started yet.
    #[cold]
    #[inline(never)]
    fn first_touch(&self, scope: Tag) {
        let untouched = [&self.allocs, &self.frees, &self.reallocs]
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0);
        if untouched {
            SLOTS[usize::from(scope) % MAX_SCOPES].register(self as *const Counter as usize);
        }
    }

    #[inline(always)]
    fn on_alloc(&self, scope: Tag, size: u64) {
        self.count(&self.allocs, scope);
        self.grew(scope, size);
    }

    #[inline(always)]
    fn on_dealloc(&self, scope: Tag, size: u64) {
        self.count(&self.frees, scope);
        self.shrank(scope, size);
    }

    #[inline(always)]
    fn on_realloc(&self, scope: Tag, delta: i64) {
        self.count(&self.reallocs, scope);
        if delta >= 0 {
            self.grew(scope, delta as u64);
        } else {
            self.shrank(scope, delta.unsigned_abs());
        }
    }

    /// Moves this cell's pending bytes into the scope's shared total and raises the peak.
    #[cold]
    #[inline(never)]
    fn publish(&self, scope: Tag, net: i64) {
        let slot = &SLOTS[usize::from(scope) % MAX_SCOPES];
        let me = self as *const Counter as usize;
        let published_net = self.published_net.load(Ordering::Relaxed);
        let net_max = self.net_max.load(Ordering::Relaxed);
        let new = slot.publish(me, net.wrapping_sub(published_net));
        // While this cell is the only one that ever booked to the scope, `published` is exactly
        // this cell's `published_net`, so this cell's running maximum is the scope's.
        let candidate = if slot.writer.load(Ordering::Acquire) == me {
            new.max(net_max)
        } else {
            new
        };
        slot.peak.fetch_max(candidate, Ordering::Relaxed);
        self.published_net.store(net, Ordering::Relaxed);
        self.net_max.store(net, Ordering::Relaxed);
    }

    /// Publishes whatever is pending; used when the slab is given back.
    fn flush(&self, scope: Tag) {
        let net = self.net.load(Ordering::Relaxed);
        if net != self.published_net.load(Ordering::Relaxed) {
            self.publish(scope, net);
        }
    }
}

/// `writer` values that are not cell addresses.
const NO_WRITER: usize = 0;
const SHARED_WRITER: usize = 1;
const MANY_WRITERS: usize = usize::MAX;

/// The shared, per-scope state: the published total and peak, and the counters of bookings made
/// without a slab (after thread-local teardown, or when a slab could not be allocated).
///
/// Updated with atomic read-modify-writes, but only on the rare paths: a publish (every
/// [`PUBLISH_THRESHOLD`] bytes of net movement per thread) or a booking without a slab.
#[repr(align(64))]
pub(crate) struct ScopeSlot {
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Sum of all published nets (and of all shared bookings).
    published: AtomicI64,
    /// Highest value of `published` seen at a publish, or of a single writer's running maximum.
    peak: AtomicI64,
    /// Who has published so far: nobody, one cell (its address), the shared path, or many.
    writer: AtomicUsize,
    /// Enforced hard limit on `published`, or [`NO_LIMIT`].
    limit: AtomicI64,
    /// Allocations and resizes refused because they would have passed `limit`.
    refused: AtomicU64,
}

/// `ScopeSlot::limit` of a scope without an enforced limit.
const NO_LIMIT: i64 = i64::MAX;

/// Set once any scope has had a limit enforced; until then the allocation path skips the check.
static ENFORCING: AtomicBool = AtomicBool::new(false);

impl ScopeSlot {
    #[allow(clippy::declare_interior_mutable_const)] // only used to build the `SLOTS` array
    const NEW: ScopeSlot = ScopeSlot {
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
        reallocs: AtomicU64::new(0),
        bytes_in: AtomicU64::new(0),
        bytes_out: AtomicU64::new(0),
        published: AtomicI64::new(0),
        peak: AtomicI64::new(0),
        writer: AtomicUsize::new(NO_WRITER),
        limit: AtomicI64::new(NO_LIMIT),
        refused: AtomicU64::new(0),
    };

    /// Records `writer` as a writer of this scope: the first becomes the single writer, any
    /// other makes it [`MANY_WRITERS`] for good.
    fn register(&self, writer: usize) {
        let current = self.writer.load(Ordering::Acquire);
        if current != writer && current != MANY_WRITERS {
            let claimed = current == NO_WRITER
                && self
                    .writer
                    .compare_exchange(NO_WRITER, writer, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !claimed {
                self.writer.store(MANY_WRITERS, Ordering::Release);
            }
        }
    }

    /// Adds `delta` to the published total on behalf of `writer`; returns the new total.
    fn publish(&self, writer: usize, delta: i64) -> i64 {
        // Register before adding: a writer that finds `writer == itself` after its own add then
        // knows that every earlier add to `published` was its own. Another writer's registration
        // is sequenced before that writer's add (AcqRel below), so it is visible to any add that
        // comes later in `published`'s modification order. Cells are registered at their first
        // booking already; this covers the shared path.
        self.register(writer);
        self.published
            .fetch_add(delta, Ordering::AcqRel)
            .wrapping_add(delta)
    }

    /// Books an operation through the shared atomics: exact, and its own publish.
    #[cold]
    fn book_shared(&self, allocs: u64, frees: u64, reallocs: u64, bytes_in: u64, bytes_out: u64) {
        // Relaxed: independent monotonic counters; readers sum them after a join or while idle.
        self.allocs.fetch_add(allocs, Ordering::Relaxed);
        self.frees.fetch_add(frees, Ordering::Relaxed);
        self.reallocs.fetch_add(reallocs, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let new = self.publish(SHARED_WRITER, bytes_in.wrapping_sub(bytes_out) as i64);
        self.peak.fetch_max(new, Ordering::Relaxed);
    }
}

/// A request [`reserve`] turned down: it would take the scope past its limit. Nothing was booked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused;

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
pub(crate) fn set_limit(scope: Tag, limit: Option<u64>) {
    let slot = &SLOTS[usize::from(scope) % MAX_SCOPES];
    let value = limit.map_or(NO_LIMIT, |l| l.min(NO_LIMIT as u64 - 1) as i64);
    slot.limit.store(value, Ordering::Release);
    if limit.is_some() {
        ENFORCING.store(true, Ordering::Release);
    }
}

/// The enforced limit of `scope`, and how many operations it refused.
pub(crate) fn limit(scope: Tag) -> (Option<u64>, u64) {
    let slot = &SLOTS[usize::from(scope) % MAX_SCOPES];
    let limit = slot.limit.load(Ordering::Acquire);
    (
        (limit != NO_LIMIT).then_some(limit as u64),
        slot.refused.load(Ordering::Relaxed),
    )
}

/// The slot of `scope` if it has an enforced limit.
#[inline]
fn limited(scope: Tag) -> Option<&'static ScopeSlot> {
    let slot = &SLOTS[usize::from(scope) % MAX_SCOPES];
    (slot.limit.load(Ordering::Acquire) != NO_LIMIT).then_some(slot)
}

/// Adds `bytes` to the shared total of `scope` if that keeps it within its enforced limit.
///
/// `Ok(None)`: the scope has no limit, book as usual. `Ok(Some(total))`: the bytes were added,
/// taking the total to `total`; book the operation with [`book_reserved`], or give the bytes back
/// with [`unreserve`].
///
/// The check and the add are one compare-and-swap on the total, so two threads cannot both pass
/// on the same headroom, and a refused request never shows in the total, even for a moment.
#[cold]
#[inline(never)]
pub(crate) fn reserve(scope: Tag, bytes: u64) -> Result<Option<i64>, Refused> {
    let Some(slot) = limited(scope) else {
        return Ok(None);
    };
    let limit = slot.limit.load(Ordering::Acquire);
    // Register first, as `ScopeSlot::publish` does, so that single-writer peaks stay sound.
    slot.register(SHARED_WRITER);
    let refused = || {
        slot.refused.fetch_add(1, Ordering::Relaxed);
        Err(Refused)
    };
    let Ok(bytes) = i64::try_from(bytes) else {
        return refused();
    };
    let mut current = slot.published.load(Ordering::Acquire);
    loop {
        let new = match current.checked_add(bytes) {
            Some(new) if new <= limit => new,
            _ => return refused(),
        };
        match slot.published.compare_exchange_weak(
            current,
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(Some(new)),
            Err(actual) => current = actual,
        }
    }
}

/// Gives back bytes reserved for an operation that the inner allocator then failed.
#[cold]
pub(crate) fn unreserve(scope: Tag, bytes: u64) {
    let slot = &SLOTS[usize::from(scope) % MAX_SCOPES];
    // `reserve` only reserves amounts that fit an `i64`.
    slot.published.fetch_sub(bytes as i64, Ordering::AcqRel);
}

/// Books an allocation (`realloc == false`) or a resize whose growth of `bytes` was reserved,
/// taking the scope's total to `total` at the reservation.
#[cold]
pub(crate) fn book_reserved(scope: Tag, bytes: u64, realloc: bool, total: i64) {
    let slot = &SLOTS[usize::from(scope) % MAX_SCOPES];
    // Relaxed: monotonic counters, as in `book_shared`; `published` already holds the bytes.
    if realloc {
        slot.reallocs.fetch_add(1, Ordering::Relaxed);
    } else {
        slot.allocs.fetch_add(1, Ordering::Relaxed);
    }
    slot.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    // Raised only once the block exists, so a reservation this thread's inner allocator failed
    // never shows in the peak. `total` may include other threads' reservations still in
    // flight: the peak of a limited scope is an upper bound by those, never above the limit.
    slot.peak.fetch_max(total, Ordering::Relaxed);
}

/// One per scope id, in static memory: no allocation, and every scope's line is its own.
static SLOTS: [ScopeSlot; MAX_SCOPES] = [ScopeSlot::NEW; MAX_SCOPES];

/// A page of counters for 64 consecutive scope ids.
#[repr(C, align(64))]
struct Page {
    cells: [Counter; PAGE_SCOPES],
}

/// A thread's counters. Never freed; reused by later threads.
#[repr(C, align(64))]
struct Slab {
    /// Next slab in the list of all slabs (set before the slab is pushed, never changed after).
    next: *const Slab,
    /// Held by a live thread.
    in_use: AtomicBool,
    /// `pages[i]` holds scopes `64 * i ..`; null until the holder first books to one of them.
    pages: [AtomicPtr<Page>; PAGES],
    /// Page 0 (the unscoped root, the crate's own scope and the first user scopes), inline so
    /// that most threads never allocate a page.
    first: Page,
}

/// Head of the list of all slabs ever made.
static SLABS: AtomicPtr<Slab> = AtomicPtr::new(ptr::null_mut());

/// The hot-path thread-local state. `const`-initialised and without a destructor, so access is a
/// plain TLS load and it stays valid during thread-local teardown.
pub(crate) struct ThreadState {
    /// Null before the first booking, [`RELEASED`] after the slab was given back.
    slab: Cell<*const Slab>,
    /// The scope new blocks are booked to.
    scope: Cell<Tag>,
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

/// Gives this thread's slab back; from now on the thread books through the shared slots.
pub(crate) fn release_thread_slab() {
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

/// The scope new blocks of this thread are booked to.
#[inline(always)]
pub(crate) fn current_scope() -> Tag {
    STATE.try_with(|s| s.scope.get()).unwrap_or(ROOT_SCOPE_ID)
}

/// Makes `scope` current on this thread; returns the previous one.
#[inline]
pub(crate) fn set_current_scope(scope: Tag) -> Tag {
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
pub(crate) fn enter_guard(scope: Tag) -> (Tag, GuardSlot) {
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
pub(crate) fn leave_guard(previous: Tag, slot: GuardSlot) {
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
    fn enter(&self, scope: Tag) -> Tag {
        self.cell
            .set(counter(self.slab.get(), scope).map_or(ptr::null(), |c| c as *const Counter));
        self.scope.replace(scope)
    }
}

/// This thread's counter for `scope` if the thread has a slab with that scope's page; `None`
/// sends the caller to [`book_slow`].
#[inline(always)]
fn counter(slab: *const Slab, scope: Tag) -> Option<&'static Counter> {
    if slab as usize <= RELEASED as usize {
        return None;
    }
    // SAFETY:
    // - `slab` is neither null nor `RELEASED`, so it is the slab this thread acquired; slabs are
    //   never freed.
    let slab = unsafe { &*slab };
    let index = usize::from(scope) % MAX_SCOPES;
    // Relaxed: this thread is the only one that stores page pointers into its slab.
    let page = slab.pages[index / PAGE_SCOPES].load(Ordering::Relaxed);
    if page.is_null() {
        return None;
    }
    // SAFETY:
    // - a non-null page pointer points to a page that is never freed.
    Some(unsafe { &(*page).cells[index % PAGE_SCOPES] })
}

/// An operation to book.
#[derive(Clone, Copy)]
enum Op {
    Alloc(u64),
    Dealloc(u64),
    /// The size change; 16 bytes in all, so the operation travels in registers.
    Realloc(i64),
}

impl Op {
    #[inline(always)]
    fn apply(self, cell: &Counter, scope: Tag) {
        match self {
            Op::Alloc(size) => cell.on_alloc(scope, size),
            Op::Dealloc(size) => cell.on_dealloc(scope, size),
            Op::Realloc(delta) => cell.on_realloc(scope, delta),
        }
    }
}

/// Books `op` when the fast path found no counter: makes the slab or page it lacks, or books
/// through the shared slot when the thread has no slab.
#[cold]
#[inline(never)]
fn book_slow<A: GlobalAlloc>(inner: &A, scope: Tag, op: Op) {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if let Some(cell) = counter(slab, scope).or_else(|| counter_slow(inner, slab, scope)) {
        let _ = STATE.try_with(|s| {
            if s.scope.get() == scope {
                s.cell.set(cell);
            }
        });
        op.apply(cell, scope);
        return;
    }
    book_op_shared(&SLOTS[usize::from(scope) % MAX_SCOPES], op);
}

/// Books `op` through a scope's shared atomics.
#[cold]
fn book_op_shared(slot: &ScopeSlot, op: Op) {
    match op {
        Op::Alloc(size) => slot.book_shared(1, 0, 0, size, 0),
        Op::Dealloc(size) => slot.book_shared(0, 1, 0, 0, size),
        Op::Realloc(delta) if delta >= 0 => slot.book_shared(0, 0, 1, delta as u64, 0),
        Op::Realloc(delta) => slot.book_shared(0, 0, 1, 0, delta.unsigned_abs()),
    }
}

#[cold]
#[inline(never)]
fn counter_slow<A: GlobalAlloc>(
    inner: &A,
    slab: *const Slab,
    scope: Tag,
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
    let pages = &slab.pages[index / PAGE_SCOPES];
    let mut page = pages.load(Ordering::Relaxed);
    if page.is_null() {
        page = alloc_zeroed_internal::<Page, A>(inner)?;
        // Release: readers that find the page (acquire) see its zeroed cells.
        pages.store(page, Ordering::Release);
    }
    // SAFETY:
    // - the page pointer is non-null and pages are never freed.
    Some(unsafe { &(*page).cells[index % PAGE_SCOPES] })
}

/// Allocates a zeroed `T` from the inner allocator for the ledger's own use, booked to the
/// crate's own scope. Such blocks are never freed, so they carry no tag.
fn alloc_zeroed_internal<T, A: GlobalAlloc>(inner: &A) -> Option<*mut T> {
    let layout = Layout::new::<T>();
    // SAFETY:
    // - `layout` has a non-zero size (`Page` and `Slab` hold counters).
    let ptr = unsafe { inner.alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return None;
    }
    SLOTS[usize::from(OWN_SCOPE_ID)].book_shared(1, 0, 0, layout.size() as u64, 0);
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
    if !crate::thread_exit::arrange_release() {
        // Also drops a counter cached by an allocation made while arranging the release.
        release_thread_slab();
        return None;
    }
    Some(slab)
}

fn take_free_slab() -> Option<&'static Slab> {
    // Acquire: pairs with the release in `new_slab`'s push, making the slab's fields visible.
    let mut cursor = SLABS.load(Ordering::Acquire);
    while !cursor.is_null() {
        // SAFETY:
        // - every pointer in the list is a slab that is never freed.
        let slab = unsafe { &*cursor };
        // Acquire: see every counter the previous holder wrote before it released the slab.
        if !slab.in_use.load(Ordering::Relaxed)
            && slab
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(slab);
        }
        cursor = slab.next.cast_mut();
    }
    None
}

fn new_slab<A: GlobalAlloc>(inner: &A) -> Option<&'static Slab> {
    let raw = alloc_zeroed_internal::<Slab, A>(inner)?;
    // SAFETY:
    // - `raw` is a fresh, zeroed, properly aligned allocation of a `Slab`; all-zero is a valid
    //   `Slab` (null pointers, false, zero counters), and nothing else can see it yet.
    let slab = unsafe { &mut *raw };
    *slab.in_use.get_mut() = true;
    let first = ptr::addr_of!(slab.first).cast_mut();
    *slab.pages[0].get_mut() = first;
    let mut head = SLABS.load(Ordering::Relaxed);
    loop {
        slab.next = head;
        // Release: a reader that loads this head sees the slab's initialised fields.
        match SLABS.compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(actual) => head = actual,
        }
    }
    // SAFETY:
    // - `raw` is now in the list and never freed; from here on it is only shared.
    Some(unsafe { &*raw })
}

/// Publishes the slab's pending bytes and marks it free.
fn release(slab: &Slab) {
    for (page_index, page) in slab.pages.iter().enumerate() {
        let page = page.load(Ordering::Relaxed);
        if page.is_null() {
            continue;
        }
        // SAFETY:
        // - non-null page pointers point to pages that are never freed.
        let page = unsafe { &*page };
        for (i, cell) in page.cells.iter().enumerate() {
            // Both bounds come from `PAGES * PAGE_SCOPES == MAX_SCOPES <= 65_536`.
            cell.flush((page_index * PAGE_SCOPES + i) as Tag);
        }
    }
    // Release: the next holder (acquire) sees every counter written so far.
    slab.in_use.store(false, Ordering::Release);
}

/// Books a new block of `size` bytes to the current scope; returns that scope.
#[inline(always)]
pub(crate) fn on_alloc<A: GlobalAlloc>(inner: &A, size: usize) -> Tag {
    let (cell, scope) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get()))
        .unwrap_or((ptr::null(), ROOT_SCOPE_ID));
    let op = Op::Alloc(size as u64);
    // SAFETY:
    // - a non-null cached cell is this thread's counter for the current scope, in a slab this
    //   thread holds; cells are never freed.
    match unsafe { cell.as_ref() } {
        Some(cell) => op.apply(cell, scope),
        None => book_slow(inner, scope, op),
    }
    scope
}

/// Books `op` on a block owned by `scope`.
#[inline(always)]
fn book<A: GlobalAlloc>(inner: &A, scope: Tag, op: Op) {
    if enforcing() {
        if let Some(slot) = limited(scope) {
            return book_op_shared(slot, op);
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
        Some(cell) => op.apply(cell, scope),
        None => book_slow(inner, scope, op),
    }
}

/// Books the free of a block of `size` bytes owned by `scope`.
#[inline(always)]
pub(crate) fn on_dealloc<A: GlobalAlloc>(inner: &A, scope: Tag, size: usize) {
    book(inner, scope, Op::Dealloc(size as u64));
}

/// Books a resize of a block owned by `scope` from `old` to `new` bytes.
#[inline(always)]
pub(crate) fn on_realloc<A: GlobalAlloc>(inner: &A, scope: Tag, old: usize, new: usize) {
    // Sizes of live blocks are at most `isize::MAX`, so the difference fits an `i64`.
    book(
        inner,
        scope,
        Op::Realloc((new as i64).wrapping_sub(old as i64)),
    );
}

/// Summed counters of one scope, as read by [`read_totals`].
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Totals {
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub peak: i64,
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
        let slot = &SLOTS[id];
        *total = Totals {
            allocs: slot.allocs.load(Ordering::Relaxed),
            frees: slot.frees.load(Ordering::Relaxed),
            reallocs: slot.reallocs.load(Ordering::Relaxed),
            bytes_in: slot.bytes_in.load(Ordering::Relaxed),
            bytes_out: slot.bytes_out.load(Ordering::Relaxed),
            peak: slot.peak.load(Ordering::Relaxed),
        };
    }
    let mut cursor = SLABS.load(Ordering::Acquire);
    while !cursor.is_null() {
        // SAFETY:
        // - every pointer in the list is a slab that is never freed.
        let slab = unsafe { &*cursor };
        usage.total += 1;
        if slab.in_use.load(Ordering::Relaxed) {
            usage.in_use += 1;
        }
        for (page_index, page) in slab.pages.iter().enumerate() {
            let first_id = page_index * PAGE_SCOPES;
            if first_id >= scopes {
                break;
            }
            // Acquire: pairs with the release that published the page.
            let page = page.load(Ordering::Acquire);
            if page.is_null() {
                continue;
            }
            // SAFETY:
            // - non-null page pointers point to pages that are never freed.
            let page = unsafe { &*page };
            for (i, cell) in page.cells.iter().enumerate().take(scopes - first_id) {
                let id = first_id + i;
                let total = &mut out[id];
                total.allocs = total
                    .allocs
                    .wrapping_add(cell.allocs.load(Ordering::Relaxed));
                total.frees = total.frees.wrapping_add(cell.frees.load(Ordering::Relaxed));
                total.reallocs = total
                    .reallocs
                    .wrapping_add(cell.reallocs.load(Ordering::Relaxed));
                // `net` first (acquire), then `bytes_in`: see `bump_net`.
                let net = cell.net.load(Ordering::Acquire) as u64;
                let bytes_in = cell.bytes_in.load(Ordering::Relaxed);
                total.bytes_in = total.bytes_in.wrapping_add(bytes_in);
                total.bytes_out = total.bytes_out.wrapping_add(bytes_in.wrapping_sub(net));
                let writer = SLOTS[id].writer.load(Ordering::Acquire);
                let me = cell as *const Counter as usize;
                if writer == me {
                    total.peak = total.peak.max(cell.net_max.load(Ordering::Relaxed));
                }
            }
        }
        cursor = slab.next.cast_mut();
    }
    usage
}
