//! The arenas' address space: one region reserved once, handed to arenas in chunks by jemalloc's
//! extent hooks, and the table that names the arena of every chunk.

use core::ffi::{c_uint, c_void};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use tikv_jemalloc_sys as ffi;

use super::{CBool, INDEX_SLOT, MAX_ARENAS};

/// Address space reserved for all arenas together: 1 TiB.
pub const REGION_SIZE: usize = 1 << 40;

/// The unit in which the region is handed to arenas: 2 MiB.
pub const CHUNK_SIZE: usize = 1 << CHUNK_SHIFT;
pub(super) const CHUNK_SHIFT: u32 = 21;
pub(super) const CHUNKS: usize = REGION_SIZE >> CHUNK_SHIFT;

/// The region's base before it is reserved: `ptr - base` is then at least [`REGION_SIZE`] for
/// every pointer from 1 up to the top of the user address space, so no block is taken for an
/// arena block.
pub(super) const NO_REGION: usize = usize::MAX - REGION_SIZE + 1;

/// Where the region lies: both words are read on every free, so they share a line (and one
/// address computation).
pub(super) struct Region {
    /// The region's base address, [`NO_REGION`] until it is reserved.
    pub(super) base: AtomicUsize,
    /// The region's length: [`REGION_SIZE`], or less where that much address space could not be
    /// reserved (an address-space limit, a tool such as valgrind).
    pub(super) length: AtomicUsize,
}

pub(super) static REGION: Region = Region {
    base: AtomicUsize::new(NO_REGION),
    length: AtomicUsize::new(0),
};

/// Set when the region could not be reserved: no arena is ever made.
pub(super) static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// `1 + slot` of the arena each chunk serves; 0 for a chunk not handed out.
// SAFETY (of the all-zero initialiser): zeros are valid `AtomicU8`s.
pub(super) static CHUNK_ARENA: [AtomicU8; CHUNKS] = [const { AtomicU8::new(0) }; CHUNKS];

/// The part of the region each arena is carving, and the next free chunk.
pub(super) struct Carver {
    /// Next unused chunk of the region.
    next_chunk: usize,
    /// Per slot, the free range `[start, end)` of the arena's last chunks.
    free: [(usize, usize); MAX_ARENAS],
}

/// Taken only by the hooks, which jemalloc calls with its extent-growth or base lock held; those
/// locks are taken by jemalloc's own `fork` handler, so this one is never held across a `fork`.
pub(super) static CARVER: Mutex<Carver> = Mutex::new(Carver {
    next_chunk: 0,
    free: [(0, 0); MAX_ARENAS],
});

/// Chunks handed out, for [`usage`](super::usage) (read without the lock).
pub(super) static CHUNKS_USED: AtomicUsize = AtomicUsize::new(0);

/// The slot of the arena being made, whose hooks run before its index is known.
pub(super) static PENDING: AtomicUsize = AtomicUsize::new(0);

/// The offset of `ptr` in the region, if it lies there.
#[inline(always)]
pub(crate) fn region_offset(ptr: *const u8) -> Option<usize> {
    // Relaxed: a block in the region was handed out after the base was stored (the region is
    // reserved before any arena exists), through jemalloc's and the caller's synchronisation.
    let offset = (ptr as usize).wrapping_sub(REGION.base.load(Ordering::Relaxed));
    (offset < REGION.length.load(Ordering::Relaxed)).then_some(offset)
}

/// The row (`1 + slot`) of the arena serving the chunk at `offset`.
#[inline(always)]
pub(super) fn chunk_row(offset: usize) -> usize {
    // Relaxed: the chunk's entry was stored before jemalloc got the chunk (see `region_offset`).
    usize::from(CHUNK_ARENA[(offset >> CHUNK_SHIFT) % CHUNKS].load(Ordering::Relaxed))
}

/// Reserves the region once; `false` if it cannot be.
pub(super) fn reserve_region() -> bool {
    if REGION.base.load(Ordering::Relaxed) != NO_REGION {
        return true;
    }
    if UNAVAILABLE.load(Ordering::Relaxed) {
        return false;
    }
    // The front caches hand blocks out by size class: a jemalloc with other classes gets no
    // arenas (see `class::size_class`).
    if !super::class::classes_are_jemallocs() {
        UNAVAILABLE.store(true, Ordering::Relaxed);
        return false;
    }
    // The largest reservation the system allows, from 1 TiB down to 4 GiB.
    let mut length = REGION_SIZE;
    let base = loop {
        // SAFETY:
        // - an anonymous private mapping at an address of the kernel's choosing touches no
        //   existing memory; `MAP_NORESERVE` commits no memory until pages are touched.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base != libc::MAP_FAILED {
            break base;
        }
        length /= 4;
        if length < 1 << 32 {
            UNAVAILABLE.store(true, Ordering::Relaxed);
            return false;
        }
    };
    // The length first: a pointer is taken for an arena block only once the base is set too.
    REGION.length.store(length, Ordering::Relaxed);
    REGION.base.store(base as usize, Ordering::Release);
    true
}

/// The address space reserved for arenas, in bytes: 0 before the first arena.
pub(super) fn reserved_bytes() -> usize {
    if REGION.base.load(Ordering::Relaxed) == NO_REGION {
        0
    } else {
        REGION.length.load(Ordering::Relaxed)
    }
}

/// Carves `size` bytes at `alignment` for the arena in `slot`.
pub(super) fn carve(
    carver: &mut Carver,
    slot: usize,
    size: usize,
    alignment: usize,
) -> *mut c_void {
    let base = REGION.base.load(Ordering::Acquire);
    if base == NO_REGION || alignment == 0 || !alignment.is_power_of_two() {
        return ptr::null_mut();
    }
    // Offsets in the region; the region itself is page-aligned, so alignments are taken on the
    // absolute address.
    let align_up = |offset: usize| ((base + offset + alignment - 1) & !(alignment - 1)) - base;
    let (start, end) = carver.free[slot];
    if start != end {
        let aligned = align_up(start);
        if aligned.checked_add(size).is_some_and(|e| e <= end) {
            carver.free[slot] = (aligned + size, end);
            return (base + aligned) as *mut c_void;
        }
    }
    // New chunks, continuing the arena's free range when they follow it. Alignments up to a page
    // hold at any chunk start; larger ones may need slack.
    let first = carver.next_chunk;
    let start = if end == first << CHUNK_SHIFT && start != end {
        start
    } else {
        first << CHUNK_SHIFT
    };
    let slack = if alignment <= 4096 { 0 } else { alignment - 1 };
    let Some(needed) = size.checked_add(slack).and_then(|n| n.checked_add(start)) else {
        return ptr::null_mut();
    };
    let chunks = needed
        .saturating_sub(first << CHUNK_SHIFT)
        .div_ceil(CHUNK_SIZE);
    let reserved = (REGION.length.load(Ordering::Relaxed) >> CHUNK_SHIFT).min(CHUNKS);
    if chunks == 0 || first > reserved || chunks > reserved - first {
        return ptr::null_mut();
    }
    for chunk in &CHUNK_ARENA[first..first + chunks] {
        chunk.store(slot as u8 + 1, Ordering::Release);
    }
    carver.next_chunk = first + chunks;
    CHUNKS_USED.store(first + chunks, Ordering::Relaxed);
    let end = (first + chunks) << CHUNK_SHIFT;
    let aligned = align_up(start);
    if aligned + size > end {
        return ptr::null_mut();
    }
    carver.free[slot] = (aligned + size, end);
    (base + aligned) as *mut c_void
}

/// The hooks' table. jemalloc keeps the pointer and never writes through it.
pub(super) struct Hooks(pub(super) ffi::extent_hooks_t);

// SAFETY:
// - the table holds function pointers only and is never written after initialisation.
unsafe impl Sync for Hooks {}

pub(super) static HOOKS: Hooks = Hooks(ffi::extent_hooks_t {
    alloc: Some(hook_alloc),
    dalloc: Some(hook_dalloc),
    destroy: Some(hook_destroy),
    commit: Some(hook_commit),
    decommit: Some(hook_decommit),
    purge_lazy: Some(hook_purge_lazy),
    purge_forced: Some(hook_purge_forced),
    split: Some(hook_split),
    merge: Some(hook_merge),
});

/// Gives jemalloc fresh (zeroed, committed) memory of the arena's own chunks.
pub(super) unsafe extern "C" fn hook_alloc(
    _hooks: *mut ffi::extent_hooks_t,
    new_addr: *mut c_void,
    size: usize,
    alignment: usize,
    zero: *mut CBool,
    commit: *mut CBool,
    arena_ind: c_uint,
) -> *mut c_void {
    // Memory at a given address (an in-place growth) is never offered: jemalloc then moves.
    if !new_addr.is_null() {
        return ptr::null_mut();
    }
    let Ok(mut carver) = CARVER.lock() else {
        return ptr::null_mut();
    };
    let slot = match INDEX_SLOT
        .get(arena_ind as usize)
        .map_or(0, |s| s.load(Ordering::Acquire))
    {
        0 => PENDING.load(Ordering::Relaxed) % MAX_ARENAS,
        slot => usize::from(slot) - 1,
    };
    let block = carve(&mut carver, slot, size, alignment);
    if !block.is_null() {
        // SAFETY:
        // - jemalloc passes valid pointers to its flags. The memory was never handed out before
        //   (chunks are carved once), so it is still the mapping's zero pages, and it is
        //   mapped read-write: committed.
        unsafe {
            *zero = true;
            *commit = true;
        }
    }
    block
}

/// Opts out: jemalloc keeps the extent (retained) and reuses it for the same arena.
pub(super) unsafe extern "C" fn hook_dalloc(
    _hooks: *mut ffi::extent_hooks_t,
    _addr: *mut c_void,
    _size: usize,
    _committed: CBool,
    _arena_ind: c_uint,
) -> CBool {
    true
}

/// Gives the pages back to the system; the address space stays the arena's.
pub(super) unsafe extern "C" fn hook_destroy(
    _hooks: *mut ffi::extent_hooks_t,
    addr: *mut c_void,
    size: usize,
    _committed: CBool,
    _arena_ind: c_uint,
) {
    // SAFETY:
    // - jemalloc destroys only extents our `hook_alloc` gave it, in the region's mapping.
    unsafe { libc::madvise(addr, size, libc::MADV_DONTNEED) };
}

/// Memory in the region is always committed (mapped read-write).
pub(super) unsafe extern "C" fn hook_commit(
    _hooks: *mut ffi::extent_hooks_t,
    _addr: *mut c_void,
    _size: usize,
    _offset: usize,
    _length: usize,
    _arena_ind: c_uint,
) -> CBool {
    false
}

/// Opts out: pages stay committed, and jemalloc purges them instead.
pub(super) unsafe extern "C" fn hook_decommit(
    _hooks: *mut ffi::extent_hooks_t,
    _addr: *mut c_void,
    _size: usize,
    _offset: usize,
    _length: usize,
    _arena_ind: c_uint,
) -> CBool {
    true
}

/// Gives `[addr + offset, addr + offset + length)` back to the kernel with `advice`; `true` on
/// failure, as jemalloc's hooks report it.
///
/// # Safety
///
/// - the range lies in an extent `hook_alloc` gave out, and jemalloc no longer uses its pages.
pub(super) unsafe fn purge(
    addr: *mut c_void,
    offset: usize,
    length: usize,
    advice: libc::c_int,
) -> CBool {
    // SAFETY:
    // - the caller's guarantee: unused pages of the region's mapping.
    unsafe { libc::madvise(addr.cast::<u8>().add(offset).cast(), length, advice) != 0 }
}

/// `MADV_FREE`: the kernel may take the pages back when it needs memory.
pub(super) unsafe extern "C" fn hook_purge_lazy(
    _hooks: *mut ffi::extent_hooks_t,
    addr: *mut c_void,
    _size: usize,
    offset: usize,
    length: usize,
    _arena_ind: c_uint,
) -> CBool {
    // SAFETY:
    // - jemalloc purges only unused pages of extents our `hook_alloc` gave out.
    unsafe { purge(addr, offset, length, libc::MADV_FREE) }
}

/// `MADV_DONTNEED`: the pages go back now and read as zeros after.
pub(super) unsafe extern "C" fn hook_purge_forced(
    _hooks: *mut ffi::extent_hooks_t,
    addr: *mut c_void,
    _size: usize,
    offset: usize,
    length: usize,
    _arena_ind: c_uint,
) -> CBool {
    // SAFETY:
    // - as in `hook_purge_lazy`.
    unsafe { purge(addr, offset, length, libc::MADV_DONTNEED) }
}

/// Extents of one mapping split and merge freely; jemalloc merges only extents of one arena.
pub(super) unsafe extern "C" fn hook_split(
    _hooks: *mut ffi::extent_hooks_t,
    _addr: *mut c_void,
    _size: usize,
    _size_a: usize,
    _size_b: usize,
    _committed: CBool,
    _arena_ind: c_uint,
) -> CBool {
    false
}

pub(super) unsafe extern "C" fn hook_merge(
    _hooks: *mut ffi::extent_hooks_t,
    _addr_a: *mut c_void,
    _size_a: usize,
    _addr_b: *mut c_void,
    _size_b: usize,
    _committed: CBool,
    _arena_ind: c_uint,
) -> CBool {
    false
}
