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

    /// Gives every cached block of the first `rows` rows back to jemalloc, through the cache
    /// `flags(row)` names, and restores the room. By the holder only.
    fn flush(&self, rows: usize, flags: impl Fn(usize) -> i32) {
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
        self.room.store(FRONT_BYTES as u64, Ordering::Relaxed);
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
        self.front.flush(rows, |row| {
            tcache_flag(Some(self), slot_of_row(row), 0, false)
        });
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
    table.front.flush(rows, |_| ffi::MALLOCX_TCACHE_NONE);
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
        front.flush(ROWS, |_| ffi::MALLOCX_TCACHE_NONE);
        assert_eq!(front.held_bytes(), 0);
        assert!(front.pop(7, b4k, size).is_null());
        assert_eq!(front.live(), -(fill as i64));
        let c = block(64);
        assert!(push(front, 5, b64, 64, c));
        front.flush(ROWS, |_| ffi::MALLOCX_TCACHE_NONE);
    }
}
