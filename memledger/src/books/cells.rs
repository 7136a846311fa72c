//! The lock-free parts of the books, free of any global state: the per-thread counter cells and
//! the per-scope shared slots (publishing, peaks, enforced limits).
//!
//! [`crate::books::shared`] holds the process-wide slots, [`crate::books::slab`] a thread's table
//! of cells, and [`crate::thread`] the thread-local state and the hot path around them. Keeping
//! this module free of globals and of every other module but [`crate::sys::atomic`] (the atomics)
//! and [`crate::books::id`] lets the model checks in `loom/tests/models.rs` compile this very file
//! over loom's atomics and explore every interleaving of its protocols.
//!
//! # Budgets
//!
//! A cell counts the bytes its thread brought into its scope (`bytes_in`) and took out of it
//! (`bytes_out`), and holds two marks: an operation whose new count stays below its mark is booked
//! with one load, one add, one comparison and one store, and touches nothing else. When a count
//! would reach its mark, the operation takes the cold path, [`Counter::refill`]: it books the
//! operation, *publishes* the cell's net bytes to the scope's shared total if they moved by at
//! least [`PUBLISH_THRESHOLD`] since the last publish, raises the scope's peak if the total the
//! cell now sees is higher, and sets both marks [`GRANT`] bytes ahead. So a cell takes the cold
//! path at most once per 64 KiB of traffic in either direction, and it writes the scope's shared
//! line only when its net moved by 32 KiB or more: a steady churn writes no shared line at all.
//!
//! A cell of a *strict* scope (one with an enforced limit, or in exact mode) gets no grant: its
//! marks equal its counts, so every operation takes the cold path, which publishes it at once. The
//! marks are the owner's alone (plain memory, so that the hot path compares against memory in one
//! instruction), so a scope that becomes strict reaches each thread at that thread's next refill
//! of its cell: the thread that makes it strict spends its own budget at once
//! ([`Counter::spend`]), and every other thread books at most the rest of its grant (under 64 KiB)
//! before it sees the change.
//!
//! # Peaks
//!
//! A per-scope high-water mark cannot be summed from per-thread cells. The scope's shared `peak`
//! is raised on the cold path to the published total plus the refilling cell's own unpublished
//! net. Between two refills a cell's net moves by less than [`GRANT`] either way, and right after
//! one its unpublished net is below [`PUBLISH_THRESHOLD`], so each live thread holds back less
//! than [`PEAK_RESOLUTION`] (96 KiB) of its scope's bytes. With `k` threads that booked to a scope:
//!
//! - its `published` total is within `k × 96 KiB` of the true live bytes;
//! - the peak is at most `(k - 1) × 96 KiB` above the true high-water mark (a refill counts the
//!   other cells' unpublished bytes as they were published), and at most `k × 96 KiB` below it;
//!   with one thread, at most 64 KiB below it and never above;
//! - in a strict scope, every operation is published as it happens, so once the cells that
//!   booked to it before it became strict have booked again (or exited), its total and its peak
//!   are exact.

use core::cell::UnsafeCell;

use crate::books::id::ScopeId;
use crate::sys::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Where the shared slot of each scope is: the process-wide table, or a model check's own.
///
/// The hot path never looks a slot up; the cold path passes the table and the scope down.
pub(crate) trait Slots<'s>: Copy {
    /// The slot of `scope`.
    fn slot(self, scope: ScopeId) -> &'s ScopeSlot;
}

impl<'s> Slots<'s> for &'s [ScopeSlot] {
    fn slot(self, scope: ScopeId) -> &'s ScopeSlot {
        &self[usize::from(scope) % self.len()]
    }
}

/// Bytes a refill lets a cell bring in, and take out, before its next refill.
///
/// Large enough that a churn of small blocks refills rarely (and the blocks that refill on every
/// call, 64 KiB and more, are ones where the inner allocator's own large-allocation path costs far
/// more than a refill); small enough that a scope's peak is known within 96 KiB per thread.
pub const GRANT: u64 = 64 * 1024;

/// Net bytes by which a cell's books must have moved since its last publish for a refill to
/// publish them: half the grant, so that a churn around a steady level never publishes.
pub const PUBLISH_THRESHOLD: i64 = GRANT as i64 / 2;

/// What one live thread may hold back from its scope's shared total: the publish threshold plus
/// one grant.
pub const PEAK_RESOLUTION: u64 = PUBLISH_THRESHOLD as u64 + GRANT;

/// What one thread has booked to one scope. Written only by the thread that holds the slab.
///
/// The counts are atomics so that readers may load them while the owner writes; the owner uses
/// loads and stores (plain moves on every mainstream target), never read-modify-write. The marks
/// are plain memory that only the owner touches. One cache line per cell, so a cell is found with
/// a shift. All zeros is an empty cell whose marks send its first operation to the cold path.
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Counter {
    /// Bytes brought into the scope by this cell: allocations and realloc growth.
    bytes_in: AtomicU64,
    /// `bytes_in` may grow up to (not including) this on the hot path.
    in_mark: Mark,
    allocs: AtomicU64,
    /// Bytes taken out of the scope by this cell: frees and realloc shrinkage.
    bytes_out: AtomicU64,
    /// `bytes_out` may grow up to (not including) this on the hot path.
    out_mark: Mark,
    frees: AtomicU64,
    reallocs: AtomicU64,
    /// `bytes_in - bytes_out` as of the last publish.
    published_net: AtomicI64,
}

/// A mark of a [`Counter`]: plain memory that only the thread holding the cell's slab reads or
/// writes (and, for the cells of a table that no thread holds, that nobody writes), so that the
/// hot path compares against it without an atomic access.
#[derive(Default)]
struct Mark(UnsafeCell<u64>);

impl Mark {
    /// The mark. Only the thread holding the cell's slab may call it (or any thread, on a cell
    /// that is never written).
    #[inline(always)]
    fn get(&self) -> u64 {
        // SAFETY:
        // - the marks of a cell are written only by the thread holding its slab (`set`), which is
        //   the caller; the slab changes hands with acquire/release, so the read sees the last
        //   write. The cells of the static cold table are never written.
        unsafe { *self.0.get() }
    }

    /// Sets the mark. Only the thread holding the cell's slab may call it.
    #[inline(always)]
    fn set(&self, value: u64) {
        // SAFETY:
        // - the caller holds the slab, and no other thread reads or writes the marks of its
        //   cells (see `get`).
        unsafe { *self.0.get() = value }
    }
}

// SAFETY:
// - every field but the marks is an atomic; the marks are accessed only by the thread holding the
//   cell's slab (see `Mark`), which hands the slab on with acquire/release, so sharing a cell
//   between threads races on nothing.
unsafe impl Sync for Counter {}

/// An operation to book.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Alloc(u64),
    Dealloc(u64),
    /// The size change; 16 bytes in all, so the operation travels in registers.
    Realloc(i64),
}

impl Op {
    /// (bytes in, bytes out) of the operation.
    #[inline(always)]
    fn bytes(self) -> (u64, u64) {
        match self {
            Op::Alloc(size) => (size, 0),
            Op::Dealloc(size) => (0, size),
            Op::Realloc(delta) if delta >= 0 => (delta as u64, 0),
            Op::Realloc(delta) => (0, delta.unsigned_abs()),
        }
    }
}

/// Adds `by` to a counter that only the calling thread writes.
#[inline(always)]
fn bump(cell: &AtomicU64, by: u64) {
    // Relaxed: the calling thread is the only writer (it holds the slab, handed over with
    // acquire/release), so a load and a store cannot lose an update; readers only need each value
    // to be one that was stored, and join/idle gives them the final one.
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Counter {
    /// Books `by` more bytes in if that stays below the mark; `false` (nothing booked) sends the
    /// caller to the cold path. Only the thread holding the cell's slab may call it.
    ///
    /// `true` only for `by < GRANT`: a mark is never more than [`GRANT`] above its count, so the
    /// allocation path relies on it to skip the overflow check of a larger layout.
    #[inline(always)]
    #[must_use]
    pub(crate) fn try_grow(&self, by: u64) -> bool {
        // Relaxed: single writer, as in `bump`. Counts stay far below `u64::MAX` (`by` is a
        // block size, at most `isize::MAX`), so the add does not wrap.
        let v = self.bytes_in.load(Ordering::Relaxed).wrapping_add(by);
        if v >= self.in_mark.get() {
            return false;
        }
        self.bytes_in.store(v, Ordering::Relaxed);
        true
    }

    /// As [`Self::try_grow`], for bytes taken out.
    #[inline(always)]
    #[must_use]
    pub(crate) fn try_shrink(&self, by: u64) -> bool {
        let v = self.bytes_out.load(Ordering::Relaxed).wrapping_add(by);
        if v >= self.out_mark.get() {
            return false;
        }
        // Release: readers load `bytes_out` (acquire) before `bytes_in`, so a cell that frees
        // only its own blocks never reads as having taken out more than it brought in. A plain
        // store on x86.
        #[cfg(not(memledger_mutant = "shrink_relaxed"))]
        self.bytes_out.store(v, Ordering::Release);
        // Seeded bug (`.ci/mutants`): the store relaxed, so a reader may see the bytes out
        // without the bytes in they follow.
        #[cfg(memledger_mutant = "shrink_relaxed")]
        self.bytes_out.store(v, Ordering::Relaxed);
        true
    }

    /// Books the size change of a resize if it stays below its mark (see [`Self::try_grow`]).
    #[inline(always)]
    #[must_use]
    pub(crate) fn try_resize(&self, delta: i64) -> bool {
        if delta >= 0 {
            self.try_grow(delta as u64)
        } else {
            self.try_shrink(delta.unsigned_abs())
        }
    }

    /// Books `op` on the hot path and counts it, if it stays below its mark: the ledger's
    /// dispatch for a booking whose count need not wait for the inner allocator. `false` (nothing
    /// booked) sends the caller to the cold path, which books it with [`Self::refill`].
    #[inline(always)]
    #[must_use]
    pub(crate) fn try_book(&self, op: Op) -> bool {
        let hot = match op {
            Op::Alloc(size) => self.try_grow(size),
            Op::Dealloc(size) => self.try_shrink(size),
            Op::Realloc(delta) => self.try_resize(delta),
        };
        // Seeded bug (`.ci/mutants`): the operation counted before its budget is checked, so one
        // that then takes the cold path is counted twice.
        #[cfg(memledger_mutant = "count_before_budget")]
        let hot = {
            self.count(op);
            hot
        };
        #[cfg(not(memledger_mutant = "count_before_budget"))]
        if hot {
            self.count(op);
        }
        hot
    }

    /// Counts `op`, booked on the hot path.
    #[inline(always)]
    fn count(&self, op: Op) {
        match op {
            Op::Alloc(_) => self.count_alloc(),
            Op::Dealloc(_) => self.count_free(),
            Op::Realloc(_) => self.count_realloc(),
        }
    }

    /// Counts an allocation booked with [`Self::try_grow`].
    #[inline(always)]
    pub(crate) fn count_alloc(&self) {
        bump(&self.allocs, 1);
    }

    /// Counts a free booked with [`Self::try_shrink`].
    #[inline(always)]
    pub(crate) fn count_free(&self) {
        bump(&self.frees, 1);
    }

    /// Counts a resize booked with [`Self::try_resize`].
    #[inline(always)]
    pub(crate) fn count_realloc(&self) {
        bump(&self.reallocs, 1);
    }

    /// Takes back the bytes of a [`Self::try_resize`] whose resize then failed.
    #[cold]
    pub(crate) fn undo_resize(&self, delta: i64) {
        if delta >= 0 {
            bump(&self.bytes_in, (delta as u64).wrapping_neg());
        } else {
            bump(&self.bytes_out, delta.unsigned_abs().wrapping_neg());
        }
    }

    /// Takes back an allocation booked and counted on the hot path whose block the inner
    /// allocator then failed to provide.
    #[cold]
    pub(crate) fn undo_alloc(&self, size: u64) {
        bump(&self.bytes_in, size.wrapping_neg());
        bump(&self.allocs, 1u64.wrapping_neg());
    }

    /// Bytes this cell brought in. Only the thread holding the cell's slab may call it.
    #[inline]
    pub(crate) fn bytes_in(&self) -> u64 {
        // Relaxed: the owner's own value.
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Lowers the mark of bytes in to `at` if it is higher, so that the operation that brings
    /// the count to `at` takes the cold path (a sample point). Only the owning thread may call it.
    #[inline]
    pub(crate) fn cap_in_mark(&self, at: u64) {
        if at < self.in_mark.get() {
            self.in_mark.set(at);
        }
    }

    /// This cell's net bytes: in minus out.
    #[inline]
    fn net(&self) -> i64 {
        // Relaxed: the owner's own values.
        self.bytes_in
            .load(Ordering::Relaxed)
            .wrapping_sub(self.bytes_out.load(Ordering::Relaxed)) as i64
    }

    /// Books `op` exactly on the cold path, to this cell's scope, `scope`, whose shared slot is in
    /// `slots`: publishes if the net moved by [`PUBLISH_THRESHOLD`] (always, in a strict scope),
    /// raises the peak, and sets the marks for the next operations. Only the thread holding the
    /// cell's slab may call it.
    #[cold]
    #[inline(never)]
    pub(crate) fn refill<'s>(&self, slots: impl Slots<'s>, scope: ScopeId, op: Op) {
        self.book(op);
        let slot = slots.slot(scope);
        let strict = slot.strict();
        let net = self.net();
        let pending = net.wrapping_sub(self.published_net.load(Ordering::Relaxed));
        // Seeded bug (`.ci/mutants`): a strict scope's refill publishes only past the threshold.
        #[cfg(memledger_mutant = "strict_waits_for_threshold")]
        let strict = false;
        let total = if strict || pending.unsigned_abs() >= PUBLISH_THRESHOLD as u64 {
            self.published_net.store(net, Ordering::Relaxed);
            slot.publish(pending)
        } else {
            slot.published().wrapping_add(pending)
        };
        slot.raise_peak(total);
        self.set_marks(strict);
    }

    /// Books `op`, whose growth (if any) [`ScopeSlot::reserve`] already added to the shared total,
    /// taking it to `total`: everything this cell held back is published with it, and the cell
    /// gets no grant while the scope is strict.
    #[cold]
    pub(crate) fn book_reserved<'s>(
        &self,
        slots: impl Slots<'s>,
        scope: ScopeId,
        op: Op,
        reserved: u64,
        total: i64,
    ) {
        self.book(op);
        let slot = slots.slot(scope);
        let net = self.net();
        let pending = net
            .wrapping_sub(self.published_net.load(Ordering::Relaxed))
            .wrapping_sub(reserved as i64);
        // Seeded bug (`.ci/mutants`): what the cell held back is left unpublished.
        #[cfg(memledger_mutant = "reserved_keeps_held_back")]
        let pending = 0;
        self.published_net.store(net, Ordering::Relaxed);
        let total = if pending == 0 {
            total
        } else {
            slot.publish(pending)
        };
        // Raised only once the block exists, so a reservation the inner allocator then failed
        // never shows in the peak. `total` may include other threads' reservations still in
        // flight: the peak of a limited scope is an upper bound by those, never above the limit.
        slot.raise_peak(total);
        self.set_marks(slot.strict());
    }

    /// Applies `op` to the counts and bytes (cold path: no mark is checked).
    #[inline]
    fn book(&self, op: Op) {
        let (bytes_in, bytes_out) = op.bytes();
        let count = match op {
            Op::Alloc(_) => &self.allocs,
            Op::Dealloc(_) => &self.frees,
            Op::Realloc(_) => &self.reallocs,
        };
        bump(count, 1);
        bump(&self.bytes_in, bytes_in);
        let out = self
            .bytes_out
            .load(Ordering::Relaxed)
            .wrapping_add(bytes_out);
        // Release: as in `try_shrink`.
        self.bytes_out.store(out, Ordering::Release);
    }

    /// Sets the marks [`GRANT`] bytes ahead of the counts, or at them in a strict scope.
    #[inline]
    fn set_marks(&self, strict: bool) {
        let grant = if strict { 0 } else { GRANT };
        self.in_mark
            .set(self.bytes_in.load(Ordering::Relaxed).wrapping_add(grant));
        self.out_mark
            .set(self.bytes_out.load(Ordering::Relaxed).wrapping_add(grant));
    }

    /// Spends what is left of the cell's grant, so that its next operation takes the cold path
    /// (where it sees a scope that just became strict). Only the owning thread may call it.
    pub(crate) fn spend(&self) {
        self.set_marks(true);
    }

    /// Publishes whatever is pending; used when the slab is given back, and before a peak
    /// restarts. Only the owning thread may call it.
    pub(crate) fn flush<'s>(&self, slots: impl Slots<'s>, scope: ScopeId) {
        let net = self.net();
        let pending = net.wrapping_sub(self.published_net.load(Ordering::Relaxed));
        if pending != 0 {
            self.published_net.store(net, Ordering::Relaxed);
            let slot = slots.slot(scope);
            slot.raise_peak(slot.publish(pending));
        }
    }

    /// Adds this cell's counts to `total`, a reader's sum for its scope. Any thread may call it
    /// while the owner writes.
    pub(crate) fn add_to(&self, total: &mut Totals) {
        total.allocs = total
            .allocs
            .wrapping_add(self.allocs.load(Ordering::Relaxed));
        total.frees = total.frees.wrapping_add(self.frees.load(Ordering::Relaxed));
        total.reallocs = total
            .reallocs
            .wrapping_add(self.reallocs.load(Ordering::Relaxed));
        // `bytes_out` first (acquire), then `bytes_in`: see `try_shrink`.
        let bytes_out = self.bytes_out.load(Ordering::Acquire);
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        total.bytes_in = total.bytes_in.wrapping_add(bytes_in);
        total.bytes_out = total.bytes_out.wrapping_add(bytes_out);
    }
}

/// Books `op` on `cell`: on the hot path if its budget allows ([`Counter::try_book`]), else
/// through `cold`, which books it exactly (with [`Counter::refill`], then whatever else its cold
/// path does). The ledger's dispatch of a resize booked apart from its block, and the model
/// checks' dispatch of every booking.
#[inline(always)]
pub(crate) fn book(cell: &Counter, op: Op, cold: impl FnOnce(Op)) {
    if !cell.try_book(op) {
        cold(op);
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

/// `ScopeSlot::limit_plus_one` of a scope without an enforced limit. Zero, so that an all-zero slot
/// is a slot without one.
const NO_LIMIT: i64 = 0;

/// The shared, per-scope state: the published total and peak, the scope's mode, and the counters
/// of bookings made without a slab (after thread-local teardown, or when a slab could not be
/// made).
///
/// Updated with atomic read-modify-writes, but only on the cold path: a publish (at most once per
/// 32 KiB of net movement per thread), a peak that rises, or a booking without a slab.
#[repr(align(64))]
pub(crate) struct ScopeSlot {
    allocs: AtomicU64,
    frees: AtomicU64,
    reallocs: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Sum of all published nets (and of all shared bookings).
    published: AtomicI64,
    /// Highest total seen on a cold path (see the module docs).
    peak: AtomicI64,
    /// One more than the enforced hard limit on `published`, or [`NO_LIMIT`].
    limit_plus_one: AtomicI64,
    /// Allocations and resizes refused because they would have passed `limit`.
    refused: AtomicU64,
    /// Exact mode: every booking is published as it happens.
    exact: AtomicBool,
}

/// A request [`ScopeSlot::reserve`] turned down: it would take the scope past its limit. Nothing
/// was booked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused;

impl ScopeSlot {
    /// A slot with nothing booked, no limit and not exact. (The process-wide table is all zeros,
    /// which is the same slot.)
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
            limit_plus_one: AtomicI64::new(NO_LIMIT),
            refused: AtomicU64::new(0),
            exact: AtomicBool::new(false),
        }
    }

    /// Whether cells of this scope get no grant: it has an enforced limit or is in exact mode.
    #[inline]
    pub(crate) fn strict(&self) -> bool {
        // Relaxed: a thread that misses a change sees it at its next refill.
        self.exact.load(Ordering::Relaxed)
            || self.limit_plus_one.load(Ordering::Relaxed) != NO_LIMIT
    }

    /// Puts the scope in exact mode, or takes it out. Each thread sees it at its next refill of
    /// its cell of the scope (see [`Counter::spend`]).
    pub(crate) fn set_exact(&self, exact: bool) {
        self.exact.store(exact, Ordering::Relaxed);
    }

    /// Whether the scope is in exact mode.
    pub(crate) fn exact(&self) -> bool {
        self.exact.load(Ordering::Relaxed)
    }

    /// Adds `delta` to the published total; returns the new total.
    fn publish(&self, delta: i64) -> i64 {
        // Seeded bug (`.ci/mutants`): the add as a load and a store, which loses a racing publish.
        #[cfg(memledger_mutant = "publish_load_store")]
        {
            let new = self.published.load(Ordering::Acquire).wrapping_add(delta);
            self.published.store(new, Ordering::Release);
            return new;
        }
        #[cfg(not(memledger_mutant = "publish_load_store"))]
        self.published
            .fetch_add(delta, Ordering::AcqRel)
            .wrapping_add(delta)
    }

    /// Raises the peak to `total` if it is higher, writing the line only then.
    #[inline]
    fn raise_peak(&self, total: i64) {
        if total > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(total, Ordering::Relaxed);
        }
    }

    /// Books `op` through the shared atomics: exact, and its own publish. Any thread may call it.
    #[cold]
    pub(crate) fn book(&self, op: Op) {
        let (bytes_in, bytes_out) = op.bytes();
        let (allocs, frees, reallocs) = match op {
            Op::Alloc(_) => (1, 0, 0),
            Op::Dealloc(_) => (0, 1, 0),
            Op::Realloc(_) => (0, 0, 1),
        };
        // Relaxed: independent monotonic counters; readers sum them after a join or while idle.
        self.allocs.fetch_add(allocs, Ordering::Relaxed);
        self.frees.fetch_add(frees, Ordering::Relaxed);
        self.reallocs.fetch_add(reallocs, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let new = self.publish(bytes_in.wrapping_sub(bytes_out) as i64);
        self.raise_peak(new);
    }

    /// Lowers the peak to the published total, so that it tracks the high-water mark from now on.
    /// A raise by a concurrent publish may be lost; the peak is then low by at most that publish,
    /// within the resolution documented on [`crate::ScopeStats`].
    pub(crate) fn restart_peak(&self) {
        self.peak
            .store(self.published.load(Ordering::Acquire), Ordering::Relaxed);
    }

    /// The published total: every publish and shared booking so far.
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

    /// Sets or lifts the enforced limit. While it is set, the scope is strict: every growth is
    /// reserved with [`Self::reserve`] first, so that a check sees every thread's bytes.
    /// Each thread sees it at its next refill of its cell of the scope (see [`Counter::spend`]).
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
            // Seeded bug (`.ci/mutants`): the compare-and-swap as a load and a store, so two
            // threads can pass on the same headroom.
            #[cfg(memledger_mutant = "reserve_load_store")]
            {
                self.published.store(new, Ordering::Release);
                return Ok(new);
            }
            #[cfg(not(memledger_mutant = "reserve_load_store"))]
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
        // Nine 8-byte fields and a flag; the rest of the cache line is padding.
        assert!(leading_bytes(&slot, 73).iter().all(|&b| b == 0));
        assert_eq!(slot.limit(), None);
        assert!(!slot.strict());
        let cell = Counter::default();
        assert_eq!(size_of::<Counter>(), 64);
        assert!(leading_bytes(&cell, 64).iter().all(|&b| b == 0));
        // A zeroed cell sends every operation to the cold path, a zero-byte one included.
        assert!(!cell.try_grow(0) && !cell.try_shrink(0) && !cell.try_resize(0));
    }

    /// A refill grants 64 KiB each way, publishes only past the threshold, and a strict scope
    /// gets no grant; a spent cell goes cold at once.
    #[test]
    fn refills_grant_publish_and_spend() {
        let slot = ScopeSlot::new();
        let slots = core::slice::from_ref(&slot);
        let cell = Counter::default();
        cell.refill(slots, 0, Op::Alloc(100));
        assert_eq!(slot.published(), 0);
        assert_eq!(slot.totals().peak, 100);
        assert!(cell.try_grow(GRANT - 1));
        assert!(!cell.try_grow(1));
        assert!(cell.try_shrink(GRANT - 1));
        cell.refill(slots, 0, Op::Alloc(PUBLISH_THRESHOLD as u64));
        assert_eq!(slot.published(), 100 + PUBLISH_THRESHOLD);
        slot.set_exact(true);
        cell.spend();
        assert!(!cell.try_grow(1) && !cell.try_shrink(1));
        cell.refill(slots, 0, Op::Dealloc(100));
        assert_eq!(slot.published(), PUBLISH_THRESHOLD);
        assert!(!cell.try_grow(1), "strict scopes get no grant");
        slot.set_exact(false);
        cell.refill(slots, 0, Op::Realloc(-8));
        assert!(cell.try_grow(GRANT - 1));
        let mut total = Totals::default();
        cell.add_to(&mut total);
        assert_eq!((total.allocs, total.frees, total.reallocs), (2, 1, 1));
        assert_eq!(
            total.bytes_in,
            100 + PUBLISH_THRESHOLD as u64 + 2 * GRANT - 2
        );
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

    /// A cell's counts as a reader sums them.
    fn counts(cell: &Counter) -> Totals {
        let mut total = Totals::default();
        cell.add_to(&mut total);
        total
    }

    /// A table of slots is indexed by the scope id, wrapped to its length.
    #[test]
    fn a_table_of_slots_is_indexed_by_scope() {
        let table = [ScopeSlot::new(), ScopeSlot::new(), ScopeSlot::new()];
        let slots = &table[..];
        assert!(core::ptr::eq(slots.slot(1), &table[1]));
        assert!(core::ptr::eq(slots.slot(5), &table[2]));
    }

    /// What the hot path booked for a block that the inner allocator then failed to give is taken
    /// back to the byte and the count, for an allocation and for a resize either way.
    #[test]
    fn undos_take_back_the_hot_paths_bookings() {
        let slot = ScopeSlot::new();
        let cell = Counter::default();
        cell.refill(core::slice::from_ref(&slot), 0, Op::Alloc(1000));
        let before = counts(&cell);
        assert!(cell.try_grow(100));
        cell.count_alloc();
        assert_eq!(counts(&cell).bytes_in, before.bytes_in + 100);
        assert_eq!(counts(&cell).allocs, before.allocs + 1);
        cell.undo_alloc(100);
        assert_eq!(counts(&cell), before);
        assert!(cell.try_resize(50));
        assert_eq!(counts(&cell).bytes_in, before.bytes_in + 50);
        cell.undo_resize(50);
        assert_eq!(counts(&cell), before);
        assert!(cell.try_resize(-30));
        assert_eq!(counts(&cell).bytes_out, before.bytes_out + 30);
        cell.undo_resize(-30);
        assert_eq!(counts(&cell), before);
    }

    /// A sample point lowers the mark of bytes in, so that the operation that reaches it takes
    /// the cold path; a point past the mark leaves the mark where it is.
    #[test]
    fn sample_points_cap_the_mark_of_bytes_in() {
        let slot = ScopeSlot::new();
        let cell = Counter::default();
        cell.refill(core::slice::from_ref(&slot), 0, Op::Alloc(10));
        cell.cap_in_mark(cell.bytes_in() + 100);
        cell.cap_in_mark(cell.bytes_in() + 2 * GRANT);
        assert!(cell.try_grow(99));
        assert!(!cell.try_grow(1));
    }

    /// One cell can hold back all but 2 bytes of `PEAK_RESOLUTION` from its scope's total: a
    /// refill just under the publish threshold publishes nothing, and a grant's worth less one
    /// byte more is booked on the hot path. So the bound the snapshot documents is tight.
    #[test]
    fn a_cell_holds_back_up_to_the_peak_resolution() {
        let slot = ScopeSlot::new();
        let cell = Counter::default();
        let slots = core::slice::from_ref(&slot);
        cell.refill(slots, 0, Op::Alloc(PUBLISH_THRESHOLD as u64 - 1));
        assert_eq!(slot.published(), 0);
        assert!(cell.try_grow(GRANT - 1));
        assert_eq!(cell.net() - slot.published(), PEAK_RESOLUTION as i64 - 2);
        // One byte more crosses the threshold on the cold path, which publishes it all.
        cell.refill(slots, 0, Op::Alloc(1));
        assert_eq!(slot.published(), cell.net());
    }

    /// A booking reserved in a scope that became limited publishes what its cell held back from
    /// before the limit, with the peak at the new total; the cell gets no grant after it.
    #[test]
    fn reserved_bookings_publish_what_the_cell_held_back() {
        let slot = ScopeSlot::new();
        let slots = core::slice::from_ref(&slot);
        let cell = Counter::default();
        cell.refill(slots, 0, Op::Alloc(100));
        assert_eq!(slot.published(), 0);
        slot.set_limit(Some(1000));
        let total = slot.reserve(50).unwrap();
        assert_eq!(total, 50);
        cell.book_reserved(slots, 0, Op::Alloc(50), 50, total);
        assert_eq!((slot.published(), slot.totals().peak), (150, 150));
        assert!(!cell.try_grow(1), "a limited scope gets no grant");
        // Nothing held back now: the reservation is the whole booking.
        let total = slot.reserve(20).unwrap();
        cell.book_reserved(slots, 0, Op::Realloc(20), 20, total);
        assert_eq!((slot.published(), slot.totals().peak), (170, 170));
        let mut counts = Totals::default();
        cell.add_to(&mut counts);
        assert_eq!(
            (counts.allocs, counts.reallocs, counts.bytes_in),
            (2, 1, 170)
        );
    }

    /// A reserved booking without a slab (after its thread's teardown) counts the operation and
    /// its bytes in the slot, and raises the peak to the total at the reservation.
    #[test]
    fn reserved_bookings_without_a_cell_count_in_the_slot() {
        let slot = ScopeSlot::new();
        slot.set_limit(Some(1000));
        let total = slot.reserve(64).unwrap();
        slot.book_reserved(64, false, total);
        let total = slot.reserve(36).unwrap();
        slot.book_reserved(36, true, total);
        let totals = slot.totals();
        assert_eq!((totals.allocs, totals.reallocs, totals.frees), (1, 1, 0));
        assert_eq!(
            (totals.bytes_in, totals.bytes_out, totals.peak),
            (100, 0, 100)
        );
        assert_eq!(slot.published(), 100);
    }

    /// The sizes the docs give (the crate's and `Snapshot`'s): a 64 KiB grant, a 32 KiB publish
    /// threshold, and 96 KiB held back per thread at most.
    #[test]
    fn budgets_are_the_documented_sizes() {
        assert_eq!(GRANT, 64 * 1024);
        assert_eq!(PUBLISH_THRESHOLD, 32 * 1024);
        assert_eq!(PEAK_RESOLUTION, 96 * 1024);
    }
}
