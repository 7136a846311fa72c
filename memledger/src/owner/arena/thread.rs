//! Each thread's tables for the arenas: its explicit caches, its count of live arena blocks and
//! its front cache of freed blocks, carried in its counter slab as its part of the arenas
//! (`crate::thread::ThreadParts`).

use core::ffi::{c_char, c_uint, c_void};
use core::ptr;
use core::sync::atomic::{
    AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use tikv_jemalloc_sys as ffi;

use super::class::{bin_size, BINS, ROW_BINS};
use super::transfer::{batch, Bound, Transfer};
use super::{slot_of_row, ARENAS, MAX_ARENAS, SHARED_LIVE, TCACHES};

/// A thread's explicit caches, one per arena, and its front cache of freed arena blocks.
///
/// Part of the thread's counter slab ([`crate::books::slab::Slab`]), so it is never freed and
/// passes to the next thread with the slab; a thread that exits flushes its caches first. All zeros
/// are an empty table whose front cache takes nothing ([`ThreadArenas::init`] gives it room).
pub(crate) struct ThreadArenas {
    /// Per slot: 0 before a cache was asked for, `1 + index` of the cache, or [`NO_TCACHE`].
    tcaches: [AtomicU16; MAX_ARENAS],
    /// Caches this table made.
    made: AtomicU8,
    /// Refills of the holder's counters, for the decay that the books drive
    /// ([`super::after_refill`]). Written by the holder only.
    pub(super) refills: AtomicU32,
    /// Freed arena blocks kept for the next allocation of their class in their arena, and the
    /// count of live arena blocks.
    pub(crate) front: Front,
}

/// Rows of a front cache: one per value of an arena entry (0 before the scope has an arena,
/// `1 + slot`, or the entry for none), so that an allocation indexes its row with the entry as it
/// is: rows 0 and 255 stay empty, and a lookup there is a miss like any other.
const ROWS: usize = 256;

/// Bytes the front cache of one thread may hold.
pub const FRONT_BYTES: usize = 128 * 1024;

/// Bytes all transfer caches may hold together (one per scope arena and size class): past it, the
/// blocks a full front cache gives up go to jemalloc.
pub const TRANSFER_BYTES: usize = 1024 * 1024;

/// The transfer caches, one per (arena row, class), in the rows and bins of the front caches.
static TRANSFER: [[Transfer; ROW_BINS]; ROWS] =
    [const { [const { Transfer::new() }; ROW_BINS] }; ROWS];

/// The bytes the transfer caches hold, within [`TRANSFER_BYTES`].
static TRANSFER_HELD: Bound = Bound::new(TRANSFER_BYTES);

/// The transfer cache of `bin` in `row`.
#[inline(always)]
fn transfer(row: usize, bin: usize) -> &'static Transfer {
    &TRANSFER[row % ROWS][bin % ROW_BINS]
}

/// Bytes the transfer caches hold.
pub(super) fn transfer_bytes() -> usize {
    TRANSFER_HELD.held()
}

/// Gives every block the transfer caches of the first `rows` rows hold back to jemalloc (no
/// thread cache). Called at most once a second, on the decay the books drive, so that a batch no
/// thread takes is held for a second or two at most; and by [`crate::arenas::trim`].
pub(crate) fn drain_transfers(rows: usize) {
    // Nothing held: no slot to look at.
    if TRANSFER_HELD.held() == 0 {
        return;
    }
    for row in 1..rows.min(ROWS) {
        for bin in 1..BINS {
            let size = bin_size(bin);
            let cache = transfer(row, bin);
            loop {
                let mut block = cache.take();
                if block.is_null() {
                    break;
                }
                TRANSFER_HELD.release(batch(size) * size);
                while !block.is_null() {
                    // SAFETY:
                    // - a taken batch is this thread's: freed arena blocks of the arena in `row`
                    //   and the class of `bin`, linked through their first 8 bytes; the class
                    //   size is a valid size for `sdallocx`, with no cache.
                    unsafe {
                        let next = block.cast::<*mut u8>().read();
                        ffi::sdallocx(block.cast(), size, ffi::MALLOCX_TCACHE_NONE);
                        block = next;
                    }
                }
            }
        }
    }
}

/// A thread's front cache: for each (arena, size class) up to 16 KiB, a stack of freed
/// blocks, linked through their first 8 bytes. A free pushes its block on the stack of its arena
/// and class and an allocation of that class in that scope's arena pops it, without a call into
/// jemalloc: a load, a test, a load of the link and two stores, as in jemalloc's own thread cache.
/// Misses go to `mallocx` and `sdallocx` with the thread's explicit cache for the arena.
///
/// Bounded by [`FRONT_BYTES`] per thread, counted in class sizes. Touched by the holder only,
/// except `live`, which readers sum.
///
/// The static [`COLD_FRONT`], used by threads without a slab, is all zeros: no room, so a free
/// never pushes there, and empty stacks, so an allocation never pops; it is never written.
pub(crate) struct Front {
    /// Bytes the cache may still take. Written by the holder only (relaxed load and store).
    room: AtomicU64,
    /// Arena blocks handed out minus arena blocks taken back by the holders of this table.
    /// Written by the holder only (relaxed load and store), summed by readers.
    live: AtomicI64,
    /// The top block of each stack, null for an empty one.
    heads: core::cell::UnsafeCell<[[*mut u8; ROW_BINS]; ROWS]>,
}

// SAFETY:
// - `heads` is read and written by the thread holding the table only (the holder of a slab, or
//   nobody for `COLD_FRONT`, whose heads are only read); the counts are atomic.
unsafe impl Sync for Front {}

/// The front cache of threads without a slab: no room and no blocks (see [`Front`]).
// SAFETY:
// - all-zero bytes are a valid `Front`: zero counts and null heads.
pub(crate) static COLD_FRONT: Front = unsafe { core::mem::zeroed() };

impl Front {
    /// Pops a block of the class `bin` (whose size is `class_size`) of the arena whose entry is
    /// `row`, counting it as handed out; null if the stack is empty.
    #[inline(always)]
    pub(crate) fn pop(&self, row: usize, bin: usize, class_size: usize) -> *mut u8 {
        let head = self.head(row, bin);
        // SAFETY:
        // - the holder's own stacks (or `COLD_FRONT`'s, which are only read).
        let block = unsafe { *head };
        if block.is_null() {
            return block;
        }
        // SAFETY:
        // - a block on a stack is a freed arena block of at least 8 bytes (every class is),
        //   aligned to 8 at least, whose first 8 bytes hold the next block; the stack is the
        //   holder's (a non-empty stack is never `COLD_FRONT`'s).
        unsafe { *head = block.cast::<*mut u8>().read() };
        bump(&self.room, class_size as u64);
        bump_signed(&self.live, 1);
        block
    }

    /// Pushes the arena block `block` of the class `bin` (whose size is `class_size`) of the
    /// arena whose entry is `row`, counting it as taken back; `false` if the cache is full (then
    /// nothing changed).
    ///
    /// # Safety
    ///
    /// - `block` is a live arena block of that arena, of a size in class `bin`, which the
    ///   caller frees: it is handed out again for a block of that class in that arena.
    #[inline(always)]
    pub(crate) unsafe fn push(
        &self,
        row: usize,
        bin: usize,
        class_size: usize,
        block: *mut u8,
    ) -> bool {
        let room = self.room.load(Ordering::Relaxed);
        if room < class_size as u64 {
            return false;
        }
        let head = self.head(row, bin);
        // SAFETY:
        // - the room was not zero, so this is a held slab's cache, not `COLD_FRONT`: the holder's
        //   own stack; `block` has at least 8 bytes, aligned to 8, no longer in the caller's use.
        unsafe {
            block.cast::<*mut u8>().write(*head);
            *head = block;
        }
        self.room.store(room - class_size as u64, Ordering::Relaxed);
        bump_signed(&self.live, -1);
        true
    }

    /// The head of the stack of `bin` in `row`.
    #[inline(always)]
    fn head(&self, row: usize, bin: usize) -> *mut *mut u8 {
        // SAFETY:
        // - both indexes are reduced into the table's bounds.
        unsafe {
            self.heads
                .get()
                .cast::<[*mut u8; ROW_BINS]>()
                .add(row % ROWS)
                .cast::<*mut u8>()
                .add(bin % ROW_BINS)
        }
    }

    /// Adds `delta` to the live arena blocks of the holder, for a block handed out or taken back
    /// past the cache.
    #[inline(always)]
    fn count(&self, delta: i64) {
        bump_signed(&self.live, delta);
    }

    /// Live arena blocks counted here (negative when this table's holders freed more blocks of
    /// other threads than they allocated).
    pub(super) fn live(&self) -> i64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Bytes the cache holds.
    pub(super) fn held_bytes(&self) -> usize {
        FRONT_BYTES.saturating_sub(self.room.load(Ordering::Relaxed) as usize)
    }

    /// Gives every cached block of the first `rows` rows up and restores the room: with `hand_over`,
    /// whole batches to the transfer caches while they take them; the rest back to jemalloc,
    /// through the cache `flags(row)` names. By the holder only.
    fn flush(&self, rows: usize, flags: impl Fn(usize) -> i32, hand_over: bool) {
        // Bytes of the stacks kept.
        let mut kept = 0u64;
        for row in 1..rows.min(ROWS) {
            let flags = flags(row);
            for bin in 1..BINS {
                let head = self.head(row, bin);
                // An empty stack is only read, so that a flush leaves the pages of heads that
                // were never written untouched.
                // SAFETY:
                // - the holder's own stack.
                let mut block = unsafe { *head };
                if block.is_null() {
                    continue;
                }
                // SAFETY:
                // - as above.
                unsafe { *head = ptr::null_mut() };
                if hand_over {
                    // SAFETY:
                    // - the stack's blocks, taken off it above: the holder's.
                    match unsafe { hand_over_batches(row, bin, block) } {
                        // Fewer than a batch left: they stay, for this thread or a later batch,
                        // up to half the room, so that a flush always frees at least half.
                        Rest::Short(rest, blocks)
                            if kept + (blocks * bin_size(bin)) as u64 <= FRONT_BYTES as u64 / 2 =>
                        {
                            // SAFETY:
                            // - the holder's own stack, emptied above; `rest` is what it held.
                            unsafe { *head = rest };
                            kept += (blocks * bin_size(bin)) as u64;
                            continue;
                        }
                        Rest::Short(rest, _) | Rest::Refused(rest) => block = rest,
                    }
                }
                while !block.is_null() {
                    // SAFETY:
                    // - a cached block is a freed arena block of the arena in `row`, whose first
                    //   8 bytes link the next; it was allocated or resized for a size of the
                    //   bin's class, so the class size is a valid size for `sdallocx`; the flags
                    //   name no cache or the holder's for that arena.
                    unsafe {
                        let next = block.cast::<*mut u8>().read();
                        ffi::sdallocx(block.cast(), bin_size(bin), flags);
                        block = next;
                    }
                }
            }
        }
        self.room
            .store(FRONT_BYTES as u64 - kept, Ordering::Relaxed);
    }
}

/// What [`hand_over_batches`] leaves of a stack.
enum Rest {
    /// Fewer blocks than a batch (the first, and how many; null and 0 for none).
    Short(*mut u8, usize),
    /// A batch or more that the transfer cache or its bound refused (the first).
    Refused(*mut u8),
}

/// Hands the stack from `block` of freed blocks of `bin` in `row` to that transfer cache in
/// batches while the cache and the bound take them; what is left of the stack, still linked.
///
/// # Safety
///
/// - `block` starts a stack of freed arena blocks of the arena in `row` and the class of `bin`,
///   linked through their first 8 bytes and ended by a null link, owned by the caller.
unsafe fn hand_over_batches(row: usize, bin: usize, mut block: *mut u8) -> Rest {
    let size = bin_size(bin);
    let n = batch(size);
    let cache = transfer(row, bin);
    loop {
        if block.is_null() {
            return Rest::Short(block, 0);
        }
        // The batch's last block: the `n`th from `block`, if the stack holds that many.
        let mut last = block;
        for blocks in 1..n {
            // SAFETY:
            // - a block of the stack, whose first 8 bytes link the next.
            let next = unsafe { last.cast::<*mut u8>().read() };
            if next.is_null() {
                return Rest::Short(block, blocks);
            }
            last = next;
        }
        // SAFETY:
        // - as above.
        let rest = unsafe { last.cast::<*mut u8>().read() };
        if !TRANSFER_HELD.claim(n * size) {
            return Rest::Refused(block);
        }
        // SAFETY:
        // - as above: the batch ends at `last`.
        unsafe { last.cast::<*mut u8>().write(ptr::null_mut()) };
        if !cache.give(block) {
            // SAFETY:
            // - refused, so still the caller's: the stack is linked again as it was.
            unsafe { last.cast::<*mut u8>().write(rest) };
            TRANSFER_HELD.release(n * size);
            return Rest::Refused(block);
        }
        block = rest;
    }
}

/// Adds `delta` to a count that only its holder writes: a relaxed load and store.
#[inline(always)]
fn bump(count: &AtomicU64, delta: u64) {
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

/// [`bump`] for a signed count.
#[inline(always)]
fn bump_signed(count: &AtomicI64, delta: i64) {
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

impl Default for ThreadArenas {
    /// An empty table, whose front cache has no room until [`ThreadArenas::init`].
    fn default() -> Self {
        // SAFETY:
        // - all-zero bytes are an empty table: atomics at zero and null heads.
        unsafe { core::mem::zeroed() }
    }
}

impl ThreadArenas {
    /// Empties the front cache into the holder's explicit caches, when a free finds it full:
    /// blocks of classes the thread no longer allocates would otherwise keep the room from the
    /// ones it does. Each cached block is flushed at most once after it was pushed, so the cost is
    /// bounded by one `sdallocx` per free, as without the cache. By the holder only.
    pub(crate) fn make_room(&self) {
        let rows = ARENAS.load(Ordering::Acquire).min(MAX_ARENAS) + 1;
        self.front.flush(
            rows,
            |row| tcache_flag(Some(self), slot_of_row(row), 0, false),
            true,
        );
    }

    /// A block of `bin` in `row` for an allocation past the front cache's hot path, counted as
    /// handed out: popped from the front cache's stack if it holds one, otherwise taken from the
    /// transfer cache with the rest of its batch, which becomes the stack (making room first if
    /// the front cache lacks it); null if both are empty. By the holder only.
    #[inline]
    pub(crate) fn take_batch(&self, row: usize, bin: usize) -> *mut u8 {
        let size = bin_size(bin);
        // The cold path of an allocation comes here without trying the stack first.
        let block = self.front.pop(row, bin, size);
        if !block.is_null() {
            return block;
        }
        let first = transfer(row, bin).take();
        if first.is_null() {
            return first;
        }
        let n = batch(size);
        TRANSFER_HELD.release(n * size);
        // At most 16 KiB (see `batch`): after `make_room`, the room is at least half the cache's.
        let kept = ((n - 1) * size) as u64;
        if self.front.room.load(Ordering::Relaxed) < kept {
            self.make_room();
        }
        let head = self.front.head(row, bin);
        // SAFETY:
        // - the taken batch is the holder's: freed blocks of this arena and class, linked through
        //   their first 8 bytes; the holder's stack of `bin` in `row` is empty (the pop above
        //   found it so, and `make_room` keeps only stacks that held blocks), so the rest of the
        //   batch becomes it.
        unsafe { *head = first.cast::<*mut u8>().read() };
        let room = self.front.room.load(Ordering::Relaxed);
        self.front
            .room
            .store(room.saturating_sub(kept), Ordering::Relaxed);
        bump_signed(&self.front.live, 1);
        first
    }

    /// Gives every block of the front cache's first `rows` rows back to its arena, past any
    /// thread cache. By the holder only.
    pub(crate) fn empty_front(&self, rows: usize) {
        self.front.flush(rows, |_| ffi::MALLOCX_TCACHE_NONE, false);
    }

    /// How many more blocks of `size` bytes the front cache has room for.
    #[inline]
    pub(crate) fn room_for(&self, size: usize) -> usize {
        self.front.room.load(Ordering::Relaxed) as usize / size
    }

    /// Hands out the first of `blocks` and puts the others on the stack of `bin` in `row`: the
    /// first counted as handed out, the others as cached. By the holder only.
    ///
    /// # Safety
    ///
    /// - `blocks` (at least one) are fresh arena blocks of the arena in `row`, of the class of
    ///   `bin`, no longer in anyone's use; the front cache has room for all but the first; the
    ///   holder's stack of `bin` in `row` is empty.
    pub(crate) unsafe fn install(&self, row: usize, bin: usize, blocks: &[*mut c_void]) -> *mut u8 {
        let head = self.front.head(row, bin);
        let mut top: *mut u8 = ptr::null_mut();
        for &block in blocks[1..].iter().rev() {
            let block = block.cast::<u8>();
            // SAFETY:
            // - a fresh block of at least 8 bytes, aligned to 8, not in use: its first 8 bytes
            //   link the next, as on any stack of the cache.
            unsafe { block.cast::<*mut u8>().write(top) };
            top = block;
        }
        // SAFETY:
        // - the holder's own stack, empty (the caller's guarantee).
        unsafe { *head = top };
        let kept = ((blocks.len() - 1) * bin_size(bin)) as u64;
        let room = self.front.room.load(Ordering::Relaxed);
        self.front
            .room
            .store(room.saturating_sub(kept), Ordering::Relaxed);
        bump_signed(&self.front.live, 1);
        blocks[0].cast::<u8>()
    }

    /// The front cache.
    pub(crate) fn front(&self) -> &Front {
        &self.front
    }

    /// Gives a new table's front cache its room. Called once, before the table's slab is used.
    pub(crate) fn init(&self) {
        self.front.room.store(FRONT_BYTES as u64, Ordering::Relaxed);
    }
}

pub(super) const NO_TCACHE: u16 = u16::MAX;

/// Gives the exiting thread's table back: its caches are flushed (their blocks go back to their
/// arenas) and kept for the next thread. By the holder only, as it gives the table up.
pub(crate) fn release_thread(table: &ThreadArenas) {
    let rows = ARENAS.load(Ordering::Acquire).min(MAX_ARENAS) + 1;
    // Seeded bug (`.ci/mutants`): an exiting thread's front cache keeps its blocks.
    #[cfg(not(memledger_mutant = "front_cache_kept_at_exit"))]
    table.front.flush(rows, |_| ffi::MALLOCX_TCACHE_NONE, false);
    #[cfg(memledger_mutant = "front_cache_kept_at_exit")]
    let _ = rows;
    for tcache in &table.tcaches {
        let value = tcache.load(Ordering::Relaxed);
        if value != 0 && value != NO_TCACHE {
            let mut index = c_uint::from(value - 1);
            // SAFETY:
            // - "tcache.flush" takes the `unsigned` index of an explicit cache; this one was made
            //   by "tcache.create" and is used by the slab's holder only.
            unsafe {
                ffi::mallctl(
                    c"tcache.flush".as_ptr().cast::<c_char>(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                    ptr::addr_of_mut!(index).cast::<c_void>(),
                    core::mem::size_of::<c_uint>(),
                )
            };
        }
    }
}

/// The `MALLOCX_TCACHE` flag this thread uses for the arena in `slot`.
#[inline(always)]
pub(super) fn tcache_flag(
    table: Option<&ThreadArenas>,
    slot: usize,
    max_per_thread: usize,
    make: bool,
) -> i32 {
    let Some(table) = table else {
        return ffi::MALLOCX_TCACHE_NONE;
    };
    match table.tcaches[slot].load(Ordering::Relaxed) {
        0 if make => make_tcache(table, slot, max_per_thread),
        0 | NO_TCACHE => ffi::MALLOCX_TCACHE_NONE,
        index => ffi::MALLOCX_TCACHE(usize::from(index) - 1),
    }
}

/// The ledger's limit of explicit caches per thread, as its allocations last passed it, for the
/// frees, which make a thread's cache for an arena it frees into but never allocated from.
pub(super) static TCACHE_LIMIT: AtomicUsize = AtomicUsize::new(0);

#[cold]
#[inline(never)]
pub(super) fn make_tcache(table: &ThreadArenas, slot: usize, max_per_thread: usize) -> i32 {
    if max_per_thread != 0 {
        TCACHE_LIMIT.store(max_per_thread, Ordering::Relaxed);
    }
    let entry = &table.tcaches[slot];
    if usize::from(table.made.load(Ordering::Relaxed)) >= max_per_thread {
        entry.store(NO_TCACHE, Ordering::Relaxed);
        return ffi::MALLOCX_TCACHE_NONE;
    }
    let mut index: c_uint = 0;
    let mut len = core::mem::size_of::<c_uint>();
    // SAFETY:
    // - "tcache.create" writes an `unsigned`; `index` and `len` are valid for it.
    let failed = unsafe {
        ffi::mallctl(
            c"tcache.create".as_ptr().cast::<c_char>(),
            ptr::addr_of_mut!(index).cast::<c_void>(),
            &mut len,
            ptr::null_mut(),
            0,
        )
    } != 0;
    if failed || index >= u32::from(NO_TCACHE - 1) {
        entry.store(NO_TCACHE, Ordering::Relaxed);
        return ffi::MALLOCX_TCACHE_NONE;
    }
    table
        .made
        .store(table.made.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    TCACHES.fetch_add(1, Ordering::Relaxed);
    entry.store(index as u16 + 1, Ordering::Relaxed);
    ffi::MALLOCX_TCACHE(index as usize)
}

/// Adds `delta` to the live arena blocks of this thread.
#[inline(always)]
pub(super) fn count(table: Option<&ThreadArenas>, delta: i64) {
    match table {
        Some(t) => t.front.count(delta),
        None => {
            SHARED_LIVE.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::arena::class::arena_class;

    /// A block of jemalloc's for the cache to hold (any arena: the tests only push, pop and
    /// flush).
    fn block(size: usize) -> *mut u8 {
        // SAFETY:
        // - a non-zero size and no flags.
        let block = unsafe { ffi::mallocx(size, 0) }.cast::<u8>();
        assert!(!block.is_null());
        block
    }

    /// [`Front::push`] of a block that the test does not touch again until it pops it.
    fn push(front: &Front, row: usize, bin: usize, size: usize, block: *mut u8) -> bool {
        // SAFETY:
        // - a live block of jemalloc's of a size in the class of `bin`, not used again by the
        //   test until popped; only this thread touches the table.
        unsafe { front.push(row, bin, size, block) }
    }

    /// A front cache flushed with hand-over gives its stacks to the transfer cache in whole
    /// batches and keeps the rest; another table takes a batch whole: its first block handed out,
    /// the others on its stack, counted in its room, and the bound given back.
    #[test]
    fn stacks_cross_to_another_table_in_whole_batches() {
        // A row no arena of this test process has (its unit tests make none).
        let row = ROWS - 2;
        let bin = arena_class(64, 8);
        let n = batch(64);
        let giver = Box::<ThreadArenas>::default();
        let taker = Box::<ThreadArenas>::default();
        giver.init();
        taker.init();
        // Two batches and three blocks more.
        let blocks: Vec<*mut u8> = (0..2 * n + 3).map(|_| block(64)).collect();
        for &b in &blocks {
            assert!(push(giver.front(), row, bin, 64, b));
        }
        assert_eq!(transfer_bytes(), 0);
        giver.front.flush(ROWS, |_| ffi::MALLOCX_TCACHE_NONE, true);
        // The two batches went over; the three left stay on the giver's stack.
        assert_eq!(transfer_bytes(), 2 * n * 64);
        assert_eq!(giver.front().held_bytes(), 3 * 64);
        let mut taken = Vec::new();
        for _ in 0..2 {
            let first = taker.take_batch(row, bin);
            assert!(!first.is_null());
            taken.push(first);
            assert_eq!(taker.front().held_bytes(), (n - 1) * 64);
            for _ in 0..n - 1 {
                let b = taker.front().pop(row, bin, 64);
                assert!(!b.is_null());
                taken.push(b);
            }
            assert!(taker.front().pop(row, bin, 64).is_null());
        }
        assert_eq!(transfer_bytes(), 0);
        // Nothing more to take: the taker's stack is empty and the transfer cache too.
        assert!(taker.take_batch(row, bin).is_null());
        assert_eq!(taker.front().live(), 2 * n as i64);
        for _ in 0..3 {
            taken.push(giver.front().pop(row, bin, 64));
        }
        // Every block came back exactly once.
        let mut all = blocks.clone();
        all.sort();
        taken.sort();
        assert_eq!(taken, all);
        for b in all {
            // SAFETY:
            // - each block came from `block` and is freed once, here.
            unsafe { ffi::sdallocx(b.cast(), 64, 0) };
        }
    }

    #[test]
    fn the_front_cache_is_a_bounded_stack_per_arena_and_class() {
        let table = Box::<ThreadArenas>::default();
        let front = table.front();
        // The bins of the classes used (a flush frees with the bin's class size).
        let (b32, b64, b80, b4k) = (
            arena_class(32, 8),
            arena_class(64, 8),
            arena_class(80, 8),
            arena_class(4096, 8),
        );
        assert_eq!(bin_size(b64), 64);
        assert_eq!(bin_size(b4k), 4096);
        let spare = block(32);
        // Before `init`, and for the cold table: no room, nothing to pop.
        assert!(!push(front, 1, b32, 32, spare));
        assert!(COLD_FRONT.pop(1, b32, 32).is_null());
        assert!(!push(&COLD_FRONT, 1, b32, 32, spare));
        // SAFETY:
        // - refused twice, so still this test's.
        unsafe { ffi::sdallocx(spare.cast(), 32, 0) };
        table.init();
        assert_eq!(front.held_bytes(), 0);
        let (a, b) = (block(64), block(64));
        assert!(push(front, 5, b64, 64, a));
        assert!(push(front, 5, b64, 64, b));
        assert_eq!(front.held_bytes(), 128);
        assert_eq!(front.live(), -2);
        // Another arena or class sees nothing; the stack pops last in, first out.
        assert!(front.pop(6, b64, 64).is_null());
        assert!(front.pop(5, b80, 80).is_null());
        assert_eq!(front.pop(5, b64, 64), b);
        assert_eq!(front.pop(5, b64, 64), a);
        assert!(front.pop(5, b64, 64).is_null());
        assert_eq!((front.held_bytes(), front.live()), (0, 0));
        // Filled to its bound, it refuses the next block and changes nothing.
        let size = 4096;
        let fill = FRONT_BYTES / size;
        for _ in 0..fill {
            assert!(push(front, 7, b4k, size, block(size)));
        }
        let extra = block(size);
        assert!(!push(front, 7, b4k, size, extra));
        assert_eq!(front.held_bytes(), FRONT_BYTES);
        assert_eq!(front.live(), -(fill as i64));
        // SAFETY:
        // - refused above, so still this test's.
        unsafe { ffi::sdallocx(extra.cast(), size, 0) };
        // The flush gives everything back and restores the room; the live count stays.
        front.flush(ROWS, |_| ffi::MALLOCX_TCACHE_NONE, false);
        assert_eq!(front.held_bytes(), 0);
        assert!(front.pop(7, b4k, size).is_null());
        assert_eq!(front.live(), -(fill as i64));
        let c = block(64);
        assert!(push(front, 5, b64, 64, c));
        front.flush(ROWS, |_| ffi::MALLOCX_TCACHE_NONE, false);
    }
}
