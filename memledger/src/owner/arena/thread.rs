//! Each thread's tables for the arenas: its explicit caches, its count of live arena blocks and
//! its block cache, carried in its counter slab.

use super::*;

/// A thread's explicit caches, one per arena, its count of live arena blocks and its block cache.
///
/// Part of the thread's counter slab ([`crate::books::cells::Slab`]), so it is never freed and
/// passes to the next thread with the slab; a thread that exits flushes its caches first. All zeros
/// are an empty table.
pub(crate) struct ThreadArenas {
    /// Per slot: 0 before a cache was asked for, `1 + index` of the cache, or [`NO_TCACHE`].
    tcaches: [AtomicU16; MAX_ARENAS],
    /// Caches this table made.
    made: AtomicU8,
    /// Refills of the holder's counters, for the decay that the books drive
    /// ([`super::after_refill`]). Written by the holder only.
    pub(super) refills: AtomicU32,
    /// Arena blocks allocated minus freed by the threads that held this table. Written by the
    /// holder only (relaxed load and store), summed by readers.
    pub(super) live: AtomicI64,
    /// Freed blocks kept for the next allocation of the same size in the same arena. Touched by
    /// the holder only; emptied when the table is given back.
    cache: core::cell::UnsafeCell<BlockCache>,
}

/// Bins of the block cache.
pub(super) const BINS: usize = 16;
/// Blocks per bin.
pub(super) const BIN_DEPTH: usize = 14;
/// Bytes the block cache of one thread may hold.
pub(crate) const CACHE_BYTES: usize = 64 * 1024;
/// Largest block size the cache keeps.
pub(super) const CACHE_MAX_SIZE: usize = 4096;

/// A small cache of freed arena blocks in front of jemalloc, keyed by (arena, exact size): a block
/// freed with size `s` is handed out again only for a request of exactly `s` bytes in the same
/// arena, so it always fits without knowing jemalloc's size classes. It saves `mallocx` and
/// `sdallocx` with flags, which leave jemalloc's fast path, on the common alloc-free-alloc cycle.
/// Bounded by [`CACHE_BYTES`] per thread.
#[derive(Clone, Copy)]
pub(crate) struct BlockCache {
    /// Bytes held.
    bytes: usize,
    bins: [Bin; BINS],
}

/// One bin: a key (`slot << 48 | size`, 0 for none) and a stack of blocks.
#[derive(Clone, Copy)]
pub(super) struct Bin {
    key: u64,
    len: usize,
    blocks: [*mut u8; BIN_DEPTH],
}

impl BlockCache {
    #[inline(always)]
    fn key(slot: usize, size: usize) -> (u64, usize) {
        let key = (slot as u64) << 48 | size as u64;
        let index = ((size as u32).wrapping_mul(0x9E37_79B1) ^ slot as u32) >> 28;
        (key, index as usize % BINS)
    }

    /// A cached block of exactly `size` bytes from the arena in `slot`.
    #[inline(always)]
    pub(super) fn pop(&mut self, slot: usize, size: usize) -> Option<*mut u8> {
        let (key, index) = Self::key(slot, size);
        let bin = &mut self.bins[index];
        if bin.key != key || bin.len == 0 {
            return None;
        }
        bin.len -= 1;
        self.bytes -= size;
        Some(bin.blocks[bin.len % BIN_DEPTH])
    }

    /// Keeps `block` if there is room; `false` sends it back to jemalloc.
    #[inline(always)]
    pub(super) fn push(&mut self, slot: usize, size: usize, block: *mut u8) -> bool {
        if size > CACHE_MAX_SIZE || self.bytes + size > CACHE_BYTES {
            return false;
        }
        let (key, index) = Self::key(slot, size);
        let bin = &mut self.bins[index];
        if bin.key != key {
            if bin.len != 0 {
                return false;
            }
            bin.key = key;
        }
        if bin.len >= BIN_DEPTH {
            return false;
        }
        bin.blocks[bin.len] = block;
        bin.len += 1;
        self.bytes += size;
        true
    }

    /// Gives every cached block back to jemalloc.
    fn flush(&mut self) {
        for bin in &mut self.bins {
            let size = (bin.key & ((1 << 48) - 1)) as usize;
            for &block in &bin.blocks[..bin.len.min(BIN_DEPTH)] {
                // SAFETY:
                // - a cached block is a live arena block freed for `size` bytes with no alignment
                //   flag (only such blocks are cached); no cache, so it goes straight back.
                unsafe { ffi::sdallocx(block.cast(), size, ffi::MALLOCX_TCACHE_NONE) };
            }
            bin.len = 0;
            bin.key = 0;
        }
        self.bytes = 0;
    }
}

impl Default for ThreadArenas {
    fn default() -> Self {
        ThreadArenas {
            tcaches: core::array::from_fn(|_| AtomicU16::new(0)),
            made: AtomicU8::new(0),
            refills: AtomicU32::new(0),
            live: AtomicI64::new(0),
            cache: core::cell::UnsafeCell::new(BlockCache {
                bytes: 0,
                bins: [Bin {
                    key: 0,
                    len: 0,
                    blocks: [ptr::null_mut(); BIN_DEPTH],
                }; BINS],
            }),
        }
    }
}

impl ThreadArenas {
    /// The block cache.
    ///
    /// # Safety
    ///
    /// - only the thread holding this table calls it, and never while another borrow of the
    ///   cache is alive.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn cache(&self) -> &mut BlockCache {
        // SAFETY:
        // - the caller's guarantee: the holder is the only thread that touches the cache.
        unsafe { &mut *self.cache.get() }
    }
}

pub(super) const NO_TCACHE: u16 = u16::MAX;

/// This thread's table, if it holds a counter slab (whose release at thread exit is arranged).
#[inline(always)]
pub(super) fn table() -> Option<&'static ThreadArenas> {
    crate::books::per_thread::thread_tables()
}

/// Gives this thread's table back at thread exit: its caches are flushed (their blocks go back to
/// their arenas) and kept for the next thread.
pub(crate) fn release_thread() {
    let Some(table) = table() else {
        return;
    };
    // SAFETY:
    // - this thread still holds the table (its slab).
    unsafe { table.cache() }.flush();
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

#[cold]
#[inline(never)]
pub(super) fn make_tcache(table: &ThreadArenas, slot: usize, max_per_thread: usize) -> i32 {
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
        // Relaxed load and store: only the holder writes; readers sum.
        Some(t) => t
            .live
            .store(t.live.load(Ordering::Relaxed) + delta, Ordering::Relaxed),
        None => {
            SHARED_LIVE.fetch_add(delta, Ordering::Relaxed);
        }
    }
}
