//! A thread's counter slab and the list of every slab: lock-free, free of global state, and
//! generic over what else a thread keeps per slab.
//!
//! A [`Slab`] is one thread's table of counter cells ([`Counter`], one per scope id) and the
//! thread's parts of the subsystems that keep per-thread state beside the books (`X`: the
//! composition point, `crate::thread`, names them). Slabs are never freed: a thread takes a free
//! one from the [`SlabList`] (or makes one) on its first booking and gives it back when it exits,
//! handing the next thread its cells and its parts.
//!
//! Like [`crate::books::cells`], this file imports nothing but the atomics shim
//! ([`crate::sys::atomic`]), the ids ([`crate::books::id`]) and the cells, so that
//! `loom/tests/models.rs` compiles it over loom's atomics with `X = ()`.

use core::ptr;

use crate::books::cells::{Counter, Slots};
use crate::books::id::{ScopeId, MAX_SCOPES};
use crate::sys::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Scopes per page of a slab's table: 64 cells of 64 bytes, 4 KiB. (All of the table in
/// the model checks, whose tables are tiny.)
pub(crate) const PAGE_SCOPES: usize = if MAX_SCOPES < 64 { MAX_SCOPES } else { 64 };
/// Pages of a slab's table.
pub(crate) const PAGES: usize = MAX_SCOPES / PAGE_SCOPES;

/// A thread's counters: one cell per scope id, in a flat table, so that the cell of any scope is
/// found with a shift and an add, and the thread's parts `X` of the other per-thread subsystems.
/// Never freed; reused by later threads.
///
/// Where all-zero bytes are a valid `X`, all-zero bytes are a valid, empty slab (null pointers,
/// `false`, zero counters), which is how the ledger makes one (zeroed memory) before
/// [`SlabList::push`] sets it up. The table is `MAX_SCOPES × 64` bytes of address space, but only
/// the pages of the scopes a thread books to are ever written, so only those become resident.
/// The cells come last, so that the parts and the header share the first pages.
#[repr(C, align(64))]
pub(crate) struct Slab<X> {
    /// Next slab in the list of all slabs (set before the slab is pushed, never changed after).
    next: *const Slab<X>,
    /// Held by a live thread.
    in_use: AtomicBool,
    /// Bit `i % 64` of `touched[i / 64]`: page `i` of the table has a cell that was booked to.
    /// Set on the cold path (a cell's first booking always takes it), read by walks over the
    /// table, so that they skip the pages nobody wrote.
    touched: [AtomicU64; PAGES.div_ceil(64)],
    /// The holder's parts of the other per-thread subsystems, handed on with the slab.
    parts: X,
    /// One cell per scope id.
    cells: [Counter; MAX_SCOPES],
}

impl<X: Default> Slab<X> {
    /// An empty slab in a box, for the model checks, whose tables are tiny. (The ledger makes its
    /// slabs zeroed, which is the same slab for its parts.)
    #[allow(dead_code)] // Used by the model checks only.
    pub(crate) fn boxed() -> Box<Slab<X>> {
        Box::new(Slab {
            next: ptr::null(),
            in_use: AtomicBool::new(false),
            touched: core::array::from_fn(|_| AtomicU64::new(0)),
            parts: X::default(),
            cells: core::array::from_fn(|_| Counter::default()),
        })
    }
}

impl<X> Slab<X> {
    /// The holder's parts of the other per-thread subsystems.
    #[inline(always)]
    pub(crate) fn parts(&self) -> &X {
        &self.parts
    }

    /// The table's cells: `MAX_SCOPES` of them from the returned pointer.
    #[inline(always)]
    pub(crate) fn cells(&self) -> *const Counter {
        self.cells.as_ptr()
    }

    /// The cell of scope `index` (below [`MAX_SCOPES`]). Only the holder of the slab may book to
    /// it.
    #[inline(always)]
    pub(crate) fn cell(&self, index: usize) -> &Counter {
        &self.cells[index % MAX_SCOPES]
    }

    /// Notes that the page of scope `index` has a booked cell. Only the holder may call it.
    #[inline]
    pub(crate) fn touch(&self, index: usize) {
        let page = (index % MAX_SCOPES) / PAGE_SCOPES;
        let word = &self.touched[page / 64];
        let bit = 1u64 << (page % 64);
        // Relaxed load: only the holder writes the bitmap. Release store: pairs with the walk's
        // acquire, so a walk that sees the bit sees the page's cells. A walk that misses a fresh
        // bit misses a cell whose first booking is in flight, as if it had read just before.
        let bits = word.load(Ordering::Relaxed);
        if bits & bit == 0 {
            word.store(bits | bit, Ordering::Release);
        }
    }

    /// Calls `f` with the id and counter of every scope below `scopes` whose page was touched.
    /// Any thread may call it.
    pub(crate) fn for_each_cell(&self, scopes: usize, mut f: impl FnMut(usize, &Counter)) {
        let scopes = scopes.min(MAX_SCOPES);
        for page in 0..scopes.div_ceil(PAGE_SCOPES) {
            // Acquire: pairs with the release in `touch`.
            if self.touched[page / 64].load(Ordering::Acquire) & (1 << (page % 64)) == 0 {
                continue;
            }
            let first = page * PAGE_SCOPES;
            for id in first..(first + PAGE_SCOPES).min(scopes) {
                f(id, &self.cells[id]);
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
        // Both bounds come from `MAX_SCOPES <= 65_536`. Each cell's budget is spent too, so that
        // the next holder's first operation in every scope takes the cold path and sees the
        // scope's mode as it is then (a limit or exact mode set in between).
        self.for_each_cell(MAX_SCOPES, |id, cell| {
            cell.flush(slots, id as ScopeId);
            cell.spend();
        });
        // Release: the next holder (acquire) sees every counter written so far.
        self.in_use.store(false, Ordering::Release);
    }
}

/// The list of every slab ever made: pushed to, never popped, walked by readers.
pub(crate) struct SlabList<X> {
    head: AtomicPtr<Slab<X>>,
}

impl<X> SlabList<X> {
    /// An empty list. (An all-zero list is the same.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new() -> SlabList<X> {
        SlabList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Claims a slab that no live thread holds.
    pub(crate) fn take_free(&self) -> Option<&Slab<X>> {
        // Acquire: pairs with the release in `push`, making the slab's fields visible.
        let mut cursor = self.head.load(Ordering::Acquire);
        while !cursor.is_null() {
            // SAFETY:
            // - every pointer in the list is a slab that is never freed (see `push`).
            let slab = unsafe { &*cursor };
            // Acquire: see every counter the previous holder wrote before it released the slab.
            #[cfg(not(memledger_mutant = "claim_by_store"))]
            if !slab.in_use.load(Ordering::Relaxed)
                && slab
                    .in_use
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(slab);
            }
            // Seeded bug (`.ci/mutants`): the claim as a load and a store, so two threads can
            // claim one slab.
            #[cfg(memledger_mutant = "claim_by_store")]
            if !slab.in_use.load(Ordering::Acquire) {
                slab.in_use.store(true, Ordering::Relaxed);
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
    pub(crate) unsafe fn push(&self, raw: *mut Slab<X>) -> &Slab<X> {
        // SAFETY:
        // - the caller guarantees a valid slab that nobody else can see, so it may be mutated.
        let slab = unsafe { &mut *raw };
        // Relaxed: the release of the push below publishes both stores.
        slab.in_use.store(true, Ordering::Relaxed);
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
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slab<X>)) {
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
    use crate::books::cells::{Op, ScopeSlot};

    /// The process-wide list is zeroed memory: that must be exactly what the constructor makes.
    #[test]
    fn an_empty_list_is_all_zeros() {
        let list = SlabList::<()>::new();
        // SAFETY:
        // - the bytes of a live list of one pointer, every byte initialised.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                (&list as *const SlabList<()>).cast::<u8>(),
                size_of::<SlabList<()>>(),
            )
        };
        assert!(bytes.iter().all(|&b| b == 0));
        let mut slabs = 0;
        list.for_each(|_| slabs += 1);
        assert_eq!(slabs, 0);
        assert!(list.take_free().is_none());
    }

    /// A zeroed slab, as the ledger makes them (all zeros is an empty slab); freed with
    /// [`free_slab`] once its list is no longer used.
    fn zeroed_slab() -> *mut Slab<()> {
        let layout = std::alloc::Layout::new::<Slab<()>>();
        // SAFETY:
        // - a slab's layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Slab<()>>();
        assert!(!raw.is_null());
        raw
    }

    /// Frees a slab of [`zeroed_slab`].
    ///
    /// # Safety
    ///
    /// - `slab` came from `zeroed_slab`, and no list or reference reaches it any more.
    unsafe fn free_slab(slab: *mut Slab<()>) {
        // SAFETY:
        // - the caller's guarantee: a block of this layout from `alloc_zeroed`, unused now.
        unsafe { std::alloc::dealloc(slab.cast(), std::alloc::Layout::new::<Slab<()>>()) }
    }

    /// The header of a slab without parts fits the cache line before its cells: the bitmap of
    /// touched pages has one bit per page of 64 cells.
    #[test]
    fn a_slab_is_one_line_of_header_and_its_cells() {
        assert_eq!(PAGE_SCOPES, 64);
        assert_eq!(
            size_of::<Slab<()>>(),
            64 + MAX_SCOPES * size_of::<Counter>()
        );
    }

    /// A walk visits every cell of the pages that were touched, and only those, in order, up to
    /// its bound.
    #[test]
    fn walks_visit_the_pages_that_were_touched() {
        let list = SlabList::<()>::new();
        let raw = zeroed_slab();
        // SAFETY:
        // - a valid, empty slab that nothing else sees, freed only once the list is no longer used.
        let slab = unsafe { list.push(raw) };
        let visited = |scopes| {
            let mut ids = Vec::new();
            slab.for_each_cell(scopes, |id, cell| {
                assert!(ptr::eq(cell, slab.cell(id)));
                ids.push(id);
            });
            ids
        };
        assert!(visited(MAX_SCOPES).is_empty());
        slab.touch(PAGE_SCOPES + 5);
        slab.touch(MAX_SCOPES - 1);
        slab.touch(PAGE_SCOPES + 6);
        let touched: Vec<usize> = (PAGE_SCOPES..2 * PAGE_SCOPES)
            .chain(MAX_SCOPES - PAGE_SCOPES..MAX_SCOPES)
            .collect();
        assert_eq!(visited(MAX_SCOPES), touched);
        assert_eq!(
            visited(PAGE_SCOPES + 10),
            (PAGE_SCOPES..PAGE_SCOPES + 10).collect::<Vec<_>>()
        );
        // SAFETY:
        // - from `zeroed_slab`; neither the list nor a reference to the slab is used after.
        unsafe { free_slab(raw) };
    }

    /// A slab is free for the next thread only once its holder released it, and then for one
    /// thread only. The release publishes what its cells held back and spends their grants, so
    /// that the next holder's first booking in each scope takes the cold path.
    #[test]
    fn released_slabs_are_handed_on_with_their_books_published() {
        let list = SlabList::<()>::new();
        let table: Vec<ScopeSlot> = (0..MAX_SCOPES).map(|_| ScopeSlot::new()).collect();
        let slots = &table[..];
        let raws = [zeroed_slab(), zeroed_slab()];
        // SAFETY:
        // - a valid, empty slab that nothing else sees, freed only once the list is no longer used.
        let slab = unsafe { list.push(raws[0]) };
        assert!(slab.in_use());
        assert!(list.take_free().is_none(), "a held slab is not free");
        let id = PAGE_SCOPES + 3;
        slab.touch(id);
        slab.cell(id).refill(slots, id as ScopeId, Op::Alloc(100));
        assert!(slab.cell(id).try_grow(50));
        assert_eq!(table[id].published(), 0);
        slab.release(slots);
        assert!(!slab.in_use());
        assert_eq!(table[id].published(), 150);
        let next = list.take_free().expect("a released slab is free");
        assert!(ptr::eq(next, slab) && next.in_use());
        assert!(list.take_free().is_none(), "a slab goes to one thread");
        assert!(!next.cell(id).try_grow(1), "the release spent the grant");
        // SAFETY:
        // - as above.
        let other = unsafe { list.push(raws[1]) };
        let mut all = Vec::new();
        list.for_each(|s| all.push(s as *const Slab<()>));
        assert_eq!(all, [other as *const _, slab as *const _]);
        for raw in raws {
            // SAFETY:
            // - both from `zeroed_slab`; neither the list nor a reference to them is used after.
            unsafe { free_slab(raw) };
        }
    }
}
