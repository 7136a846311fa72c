//! The lock-free parts of the books, free of any global state: the per-thread counter cells, the
//! per-scope shared slots (publishing, peaks, enforced limits) and the list of counter slabs.
//!
//! [`crate::books::per_thread`] owns the process-wide instances (the slot table, the slab list, the
//! thread-local state) and the hot path around them. Keeping this module free of globals and of
//! every other module but [`crate::sys::atomic`] (the atomics) and [`crate::books::id::MAX_SCOPES`]
//! lets the model checks in `loom/tests/models.rs` compile this very file over loom's atomics and
//! explore every interleaving of its protocols.
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

use core::ptr;

use crate::books::id::{ScopeId, MAX_SCOPES};
use crate::sys::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Where the shared slot of each scope is: the process-wide table, or a model check's own.
///
/// The hot path passes the table and the scope down, and the slot is looked up only on the rare
/// paths (a first booking, a publish), so that the common path computes no address it does not
/// use.
pub(crate) trait Slots<'s>: Copy {
    /// The slot of `scope`.
    fn slot(self, scope: ScopeId) -> &'s ScopeSlot;
}

impl<'s> Slots<'s> for &'s [ScopeSlot] {
    fn slot(self, scope: ScopeId) -> &'s ScopeSlot {
        &self[usize::from(scope) % self.len()]
    }
}

/// Net bytes a cell may hold back from its scope's shared total before publishing them.
///
/// Small enough that the peak of a scope is known within 64 KiB per live thread that booked to
/// it; large enough that a churn of small blocks (which oscillates around zero) never publishes,
/// and that the blocks which publish on every call (64 KiB and more) are ones where jemalloc's own
/// large-allocation path costs far more than the publish.
pub const PUBLISH_THRESHOLD: i64 = 64 * 1024;

/// Scopes per page of counters; a thread's counters for scopes `64 * i .. 64 * (i + 1)` live in
/// page `i`, created the first time the thread books to one of them. (Half the table in the model
/// checks, whose tables are tiny.)
pub(crate) const PAGE_SCOPES: usize = if MAX_SCOPES / 2 < 64 {
    MAX_SCOPES / 2
} else {
    64
};
pub(crate) const PAGES: usize = MAX_SCOPES / PAGE_SCOPES;

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

/// An operation to book.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Alloc(u64),
    Dealloc(u64),
    /// The size change; 16 bytes in all, so the operation travels in registers.
    Realloc(i64),
}

impl Counter {
    /// Books `op` to this cell's scope, `scope`, whose shared slot is in `slots`. Only the thread
    /// holding the cell's slab may call it.
    #[inline(always)]
    pub(crate) fn apply<'s>(&self, slots: impl Slots<'s>, scope: ScopeId, op: Op) {
        match op {
            Op::Alloc(size) => {
                self.count(&self.allocs, slots, scope);
                self.grew(slots, scope, size);
            }
            Op::Dealloc(size) => {
                self.count(&self.frees, slots, scope);
                self.shrank(slots, scope, size);
            }
            Op::Realloc(delta) => {
                self.count(&self.reallocs, slots, scope);
                if delta >= 0 {
                    self.grew(slots, scope, delta as u64);
                } else {
                    self.shrank(slots, scope, delta.unsigned_abs());
                }
            }
        }
    }

    #[inline(always)]
    fn grew<'s>(&self, slots: impl Slots<'s>, scope: ScopeId, by: u64) {
        bump_u64(&self.bytes_in, by);
        let net = bump_net(&self.net, by as i64);
        // `net_max - published_net` never exceeds the threshold (passing it publishes, which
        // resets both), so `net` can only pass the threshold when it also passes `net_max`: a
        // churn below its high-water mark costs one comparison.
        if net > self.net_max.load(Ordering::Relaxed) {
            self.net_max.store(net, Ordering::Relaxed);
            if net.wrapping_sub(self.published_net.load(Ordering::Relaxed)) > PUBLISH_THRESHOLD {
                self.publish(slots, scope, net);
            }
        }
    }

    #[inline(always)]
    fn shrank<'s>(&self, slots: impl Slots<'s>, scope: ScopeId, by: u64) {
        let net = bump_net(&self.net, (by as i64).wrapping_neg());
        if self.published_net.load(Ordering::Relaxed).wrapping_sub(net) > PUBLISH_THRESHOLD {
            self.publish(slots, scope, net);
        }
    }

    /// Counts one operation in `count`, registering this cell with the scope on its first one.
    #[inline(always)]
    fn count<'s>(&self, count: &AtomicU64, slots: impl Slots<'s>, scope: ScopeId) {
        // Relaxed: single writer, as in `bump_u64`.
        let n = count.load(Ordering::Relaxed);
        if n == 0 {
            self.first_touch(slots, scope);
        }
        count.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// Registers this cell as a writer of the scope if none of its counts has started yet.
    #[cold]
    #[inline(never)]
    fn first_touch<'s>(&self, slots: impl Slots<'s>, scope: ScopeId) {
        let untouched = [&self.allocs, &self.frees, &self.reallocs]
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0);
        if untouched {
            slots.slot(scope).register(self.id());
        }
    }

    /// This cell's writer id: its address, never one of the reserved `writer` values.
    fn id(&self) -> usize {
        self as *const Counter as usize
    }

    /// Moves this cell's pending bytes into the scope's shared total and raises the peak.
    #[cold]
    #[inline(never)]
    fn publish<'s>(&self, slots: impl Slots<'s>, scope: ScopeId, net: i64) {
        let slot = slots.slot(scope);
        let me = self.id();
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
    pub(crate) fn flush<'s>(&self, slots: impl Slots<'s>, scope: ScopeId) {
        let net = self.net.load(Ordering::Relaxed);
        if net != self.published_net.load(Ordering::Relaxed) {
            self.publish(slots, scope, net);
        }
    }

    /// Publishes whatever is pending and restarts this cell's running maximum at its current net:
    /// the owner's part of restarting its scope's peak ([`ScopeSlot::restart_peak`]). Only the
    /// owning thread may call it.
    pub(crate) fn restart_peak<'s>(&self, slots: impl Slots<'s>, scope: ScopeId) {
        self.flush(slots, scope);
        // Relaxed: single writer, as in `publish`.
        self.net_max
            .store(self.net.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Adds this cell's counts to `total`, a reader's sum for the scope of `slot`. Any thread may
    /// call it while the owner writes.
    pub(crate) fn add_to(&self, slot: &ScopeSlot, total: &mut Totals) {
        total.allocs = total
            .allocs
            .wrapping_add(self.allocs.load(Ordering::Relaxed));
        total.frees = total.frees.wrapping_add(self.frees.load(Ordering::Relaxed));
        total.reallocs = total
            .reallocs
            .wrapping_add(self.reallocs.load(Ordering::Relaxed));
        // `net` first (acquire), then `bytes_in`: see `bump_net`.
        let net = self.net.load(Ordering::Acquire) as u64;
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        total.bytes_in = total.bytes_in.wrapping_add(bytes_in);
        total.bytes_out = total.bytes_out.wrapping_add(bytes_in.wrapping_sub(net));
        // A single writer's running maximum is the scope's.
        if slot.writer.load(Ordering::Acquire) == self.id() {
            total.peak = total.peak.max(self.net_max.load(Ordering::Relaxed));
        }
    }
}

/// Summed counters of one scope, as read by [`ScopeSlot::totals`] and [`Counter::add_to`].
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Totals {
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub peak: i64,
}

/// `writer` values that are not cell addresses.
const NO_WRITER: usize = 0;
const SHARED_WRITER: usize = 1;
const MANY_WRITERS: usize = usize::MAX;

/// `ScopeSlot::limit_plus_one` of a scope without an enforced limit. Zero, so that an all-zero slot
/// is a slot without one.
const NO_LIMIT: i64 = 0;

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
    /// One more than the enforced hard limit on `published`, or [`NO_LIMIT`].
    limit_plus_one: AtomicI64,
    /// Allocations and resizes refused because they would have passed `limit`.
    refused: AtomicU64,
}

/// A request [`ScopeSlot::reserve`] turned down: it would take the scope past its limit. Nothing
/// was booked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused;

impl ScopeSlot {
    /// A slot with nothing booked and no limit. (The process-wide table is all zeros, which is
    /// the same slot.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new() -> ScopeSlot {
        ScopeSlot {
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            published: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            writer: AtomicUsize::new(NO_WRITER),
            limit_plus_one: AtomicI64::new(NO_LIMIT),
            refused: AtomicU64::new(0),
        }
    }

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

    /// Books `op` through the shared atomics: exact, and its own publish. Any thread may call it.
    #[cold]
    pub(crate) fn book(&self, op: Op) {
        let (allocs, frees, reallocs, bytes_in, bytes_out) = match op {
            Op::Alloc(size) => (1, 0, 0, size, 0),
            Op::Dealloc(size) => (0, 1, 0, 0, size),
            Op::Realloc(delta) if delta >= 0 => (0, 0, 1, delta as u64, 0),
            Op::Realloc(delta) => (0, 0, 1, 0, delta.unsigned_abs()),
        };
        // Relaxed: independent monotonic counters; readers sum them after a join or while idle.
        self.allocs.fetch_add(allocs, Ordering::Relaxed);
        self.frees.fetch_add(frees, Ordering::Relaxed);
        self.reallocs.fetch_add(reallocs, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let new = self.publish(SHARED_WRITER, bytes_in.wrapping_sub(bytes_out) as i64);
        self.peak.fetch_max(new, Ordering::Relaxed);
    }

    /// Lowers the peak to the published total, so that it tracks the high-water mark from now on.
    /// A raise by a concurrent publish may be lost; the peak is then low by at most that publish,
    /// within the resolution documented on [`crate::ScopeStats`].
    pub(crate) fn restart_peak(&self) {
        self.peak
            .store(self.published.load(Ordering::Acquire), Ordering::Relaxed);
    }

    /// The published total: every publish and shared booking so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn published(&self) -> i64 {
        self.published.load(Ordering::Acquire)
    }

    /// The shared counters and the peak, to which a reader then adds every cell's counts.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            allocs: self.allocs.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            reallocs: self.reallocs.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Sets or lifts the enforced limit. While it is set, every booking to this scope must go
    /// through [`Self::reserve`] or [`Self::book`], so that a check sees every thread's bytes.
    pub(crate) fn set_limit(&self, limit: Option<u64>) {
        // Limits past `i64::MAX - 1` bytes are that many: no address space holds more.
        let value = limit.map_or(NO_LIMIT, |l| l.min(i64::MAX as u64 - 1) as i64 + 1);
        self.limit_plus_one.store(value, Ordering::Release);
    }

    /// The enforced limit, if any.
    #[inline]
    pub(crate) fn limit(&self) -> Option<u64> {
        let stored = self.limit_plus_one.load(Ordering::Acquire);
        (stored != NO_LIMIT).then(|| stored as u64 - 1)
    }

    /// Operations refused because they would have passed the limit.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Adds `bytes` to the published total if that keeps it within the enforced limit; returns
    /// the new total. Then book the operation with [`Self::book_reserved`], or give the bytes back
    /// with [`Self::unreserve`].
    ///
    /// The check and the add are one compare-and-swap on the total, so two threads cannot both
    /// pass on the same headroom, and a refused request never shows in the total, even for a
    /// moment.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<i64, Refused> {
        // Without a limit nothing is refused (the caller only reserves on limited scopes).
        let limit = self.limit().map_or(i64::MAX, |l| l as i64);
        // Register first, as `publish` does, so that single-writer peaks stay sound.
        self.register(SHARED_WRITER);
        let refused = || {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Refused)
        };
        let Ok(bytes) = i64::try_from(bytes) else {
            return refused();
        };
        let mut current = self.published.load(Ordering::Acquire);
        loop {
            let new = match current.checked_add(bytes) {
                Some(new) if new <= limit => new,
                _ => return refused(),
            };
            match self.published.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(new),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back bytes reserved for an operation that the inner allocator then failed.
    pub(crate) fn unreserve(&self, bytes: u64) {
        // `reserve` only reserves amounts that fit an `i64`.
        self.published.fetch_sub(bytes as i64, Ordering::AcqRel);
    }

    /// Books an allocation (`realloc == false`) or a resize whose growth of `bytes` was reserved,
    /// taking the total to `total` at the reservation.
    pub(crate) fn book_reserved(&self, bytes: u64, realloc: bool, total: i64) {
        // Relaxed: monotonic counters, as in `book`; `published` already holds the bytes.
        if realloc {
            self.reallocs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.allocs.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        // Raised only once the block exists, so a reservation this thread's inner allocator failed
        // never shows in the peak. `total` may include other threads' reservations still in
        // flight: the peak of a limited scope is an upper bound by those, never above the limit.
        self.peak.fetch_max(total, Ordering::Relaxed);
    }
}

/// A page of counters for 64 consecutive scope ids.
#[repr(C, align(64))]
pub(crate) struct Page {
    pub(crate) cells: [Counter; PAGE_SCOPES],
}

/// A thread's counters. Never freed; reused by later threads.
///
/// All-zero bytes are a valid, empty slab (null pointers, `false`, zero counters), which is how
/// the allocator makes one (`alloc_zeroed`) before [`SlabList::push`] sets it up.
#[repr(C, align(64))]
pub(crate) struct Slab {
    /// Next slab in the list of all slabs (set before the slab is pushed, never changed after).
    next: *const Slab,
    /// Held by a live thread.
    in_use: AtomicBool,
    /// `pages[i]` holds scopes `64 * i ..`; null until the holder first books to one of them.
    pages: [AtomicPtr<Page>; PAGES],
    /// Page 0 (the unscoped root, the crate's own scope and the first user scopes), inline so
    /// that most threads never allocate a page.
    first: Page,
    /// What the owner strategy keeps per thread (`ArenaLedger`'s explicit caches and block
    /// cache; nothing without the arenas), handed on with the slab.
    pub(crate) owner: crate::owner::ThreadTables,
}

impl Slab {
    /// An empty slab in a box. (The allocator makes its slabs zeroed, which is the same slab.)
    #[cfg_attr(not(test), allow(dead_code))]
    // Without the arenas, the owner tables are a unit struct.
    #[allow(clippy::default_constructed_unit_structs)]
    pub(crate) fn boxed() -> Box<Slab> {
        Box::new(Slab {
            next: ptr::null(),
            in_use: AtomicBool::new(false),
            pages: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            first: Page {
                cells: core::array::from_fn(|_| Counter::default()),
            },
            owner: crate::owner::ThreadTables::default(),
        })
    }

    /// The counter for scope `index` (below [`MAX_SCOPES`]) if its page exists. Only the holder
    /// of the slab may book to it.
    #[inline(always)]
    pub(crate) fn counter(&self, index: usize) -> Option<&Counter> {
        // Relaxed: only the holder stores page pointers, and it is the caller.
        let page = self.pages[index / PAGE_SCOPES].load(Ordering::Relaxed);
        if page.is_null() {
            return None;
        }
        // SAFETY:
        // - a non-null page pointer points to a page that lives as long as the slab: the inline
        //   first page, or one the holder made with `set_page` and never frees.
        Some(unsafe { &(*page).cells[index % PAGE_SCOPES] })
    }

    /// The slot for the page of scope `index`, null until the holder sets it.
    pub(crate) fn page_slot(&self, index: usize) -> &AtomicPtr<Page> {
        &self.pages[index / PAGE_SCOPES]
    }

    /// Calls `f` with the id and counter of every scope below `scopes` whose page exists. Any
    /// thread may call it.
    pub(crate) fn for_each_counter(&self, scopes: usize, mut f: impl FnMut(usize, &Counter)) {
        for (page_index, page) in self.pages.iter().enumerate() {
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
            // - non-null page pointers point to pages that live as long as the slab.
            let page = unsafe { &*page };
            for (i, cell) in page.cells.iter().enumerate().take(scopes - first_id) {
                f(first_id + i, cell);
            }
        }
    }

    /// Whether a live thread holds the slab.
    pub(crate) fn in_use(&self) -> bool {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Publishes every pending amount to the scopes' slots in `slots` and marks the slab free.
    /// Only the holder may call it, once.
    pub(crate) fn release<'s>(&self, slots: impl Slots<'s>) {
        // Both bounds come from `MAX_SCOPES <= 65_536`.
        self.for_each_counter(MAX_SCOPES, |id, cell| cell.flush(slots, id as ScopeId));
        // Release: the next holder (acquire) sees every counter written so far.
        self.in_use.store(false, Ordering::Release);
    }
}

/// The list of every slab ever made: pushed to, never popped, walked by readers.
pub(crate) struct SlabList {
    head: AtomicPtr<Slab>,
}

impl SlabList {
    /// An empty list. (An all-zero list is the same.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new() -> SlabList {
        SlabList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Claims a slab that no live thread holds.
    pub(crate) fn take_free(&self) -> Option<&Slab> {
        // Acquire: pairs with the release in `push`, making the slab's fields visible.
        let mut cursor = self.head.load(Ordering::Acquire);
        while !cursor.is_null() {
            // SAFETY:
            // - every pointer in the list is a slab that is never freed (see `push`).
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

    /// Sets up the empty slab at `raw`, held by the caller, and adds it to the list.
    ///
    /// # Safety
    ///
    /// - `raw` points to a valid, empty [`Slab`] that nothing else can see yet, and that is
    ///   never freed or moved (and outlives every reader of the list).
    pub(crate) unsafe fn push(&self, raw: *mut Slab) -> &Slab {
        // SAFETY:
        // - the caller guarantees a valid slab that nobody else can see, so it may be mutated.
        let slab = unsafe { &mut *raw };
        // Relaxed: the release of the push below publishes both stores.
        slab.in_use.store(true, Ordering::Relaxed);
        let first = ptr::addr_of!(slab.first).cast_mut();
        slab.pages[0].store(first, Ordering::Relaxed);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            slab.next = head;
            // Release: a reader that loads this head sees the slab's initialised fields.
            match self
                .head
                .compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => head = actual,
            }
        }
        // SAFETY:
        // - `raw` is now in the list and never freed; from here on it is only shared.
        unsafe { &*raw }
    }

    /// Calls `f` with every slab in the list.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slab)) {
        let mut cursor = self.head.load(Ordering::Acquire);
        while !cursor.is_null() {
            // SAFETY:
            // - every pointer in the list is a slab that is never freed.
            let slab = unsafe { &*cursor };
            f(slab);
            cursor = slab.next.cast_mut();
        }
    }
}

// Not in the model checks, which compile this file too: loom's atomics only work inside a model.
#[cfg(all(test, not(memledger_loom)))]
mod tests {
    use super::*;

    /// The first `len` bytes of `value`.
    fn leading_bytes<T>(value: &T, len: usize) -> &[u8] {
        assert!(len <= size_of::<T>());
        // SAFETY:
        // - `len` bytes of a live value; callers only ask for bytes of fields, never padding, so
        //   every byte is initialised.
        unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), len) }
    }

    /// The process-wide tables are zeroed memory: that must be exactly what the constructors
    /// make.
    #[test]
    fn empty_values_are_all_zeros() {
        let slot = ScopeSlot::new();
        // Ten 8-byte fields; the rest of the cache line is padding.
        assert!(leading_bytes(&slot, 80).iter().all(|&b| b == 0));
        assert_eq!(slot.limit(), None);
        let list = SlabList::new();
        assert!(leading_bytes(&list, size_of::<SlabList>())
            .iter()
            .all(|&b| b == 0));
        let slab = Slab::boxed();
        assert!(!slab.in_use() && slab.next.is_null());
        let pages = &slab.pages;
        assert!(leading_bytes(pages, size_of::<[AtomicPtr<Page>; PAGES]>())
            .iter()
            .all(|&b| b == 0));
        for cell in &slab.first.cells {
            // Seven 8-byte counters; the rest of the cache line is padding.
            assert!(leading_bytes(cell, 56).iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn limits_round_trip_and_refuse_past_them() {
        let slot = ScopeSlot::new();
        slot.set_limit(Some(0));
        assert_eq!(slot.limit(), Some(0));
        assert_eq!(slot.reserve(1), Err(Refused));
        slot.set_limit(Some(u64::MAX));
        assert_eq!(slot.limit(), Some(i64::MAX as u64 - 1));
        slot.set_limit(Some(100));
        assert_eq!(slot.reserve(60), Ok(60));
        assert_eq!(slot.reserve(41), Err(Refused));
        assert_eq!(slot.reserve(u64::MAX), Err(Refused));
        slot.unreserve(60);
        assert_eq!(slot.published(), 0);
        assert_eq!(slot.refused(), 3);
        slot.set_limit(None);
        assert_eq!(slot.limit(), None);
    }
}
