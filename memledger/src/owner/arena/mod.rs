//! Owners by address: a jemalloc arena per scope for the blocks a trailer would push into the next
//! size class.
//!
//! The trailer of [`crate::owner::trailer`] costs no memory when the block's size class leaves 2 spare bytes:
//! `size + 2` lands in the same class. It costs a whole class step when it does not, and Rust's
//! doubling growth puts most buffers exactly on a class. Those blocks (here "full" blocks) are
//! allocated instead from an arena of their scope's own, carrying no trailer; their owner is found
//! from their address.
//!
//! # Where arena memory lives
//!
//! The arenas get their memory from this module's extent hooks, which carve it out of one region of
//! address space reserved at the first arena's creation (up to [`REGION_SIZE`], `MAP_NORESERVE`: only
//! the pages jemalloc touches become resident). The region is cut into chunks of
//! [`CHUNK_SIZE`], and each chunk serves one arena only; a table with one byte per chunk names the
//! arena. So a free tells an arena block from a trailer block with one subtraction and one
//! comparison, and finds its owner with two loads: no hashing, no lock.
//!
//! # Thread caches
//!
//! jemalloc's automatic thread cache hands out blocks of any arena, which would mix owners. Each
//! (thread, arena) pair therefore gets an explicit cache (`tcache.create`), used for that arena's
//! allocations and for the frees of its blocks on that thread. Each thread's table
//! ([`ThreadArenas`]) is part of its counter slab, never freed and handed to the next thread with
//! the slab; a thread that exits flushes its caches (their blocks go back to their arenas) and
//! leaves them to the next.
//!
//! In front of jemalloc, each thread keeps a few freed arena blocks (at most [`CACHE_BYTES`]),
//! keyed by arena and exact size, for the next allocation of that size in that arena.
//!
//! # Limits
//!
//! At most [`MAX_ARENAS`] arenas (the allocator's own limit may be lower) and a per-thread limit
//! of explicit caches. Past the arena limit, or if the region cannot be reserved, a scope's full
//! blocks take the trailer as before (exact, at the old memory cost). Past the cache limit, a
//! thread allocates and frees in that arena without a cache (`MALLOCX_TCACHE_NONE`: exact, no
//! memory held, slower). Neither case is ever undefined behaviour or a lost block.

use core::ffi::{c_char, c_uint, c_void};
use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Mutex;

use tikv_jemalloc_sys as ffi;

/// C's `bool`, as the extent hooks take and return it.
type CBool = bool;

use crate::books::id::{ScopeId, MAX_SCOPES};

pub(crate) mod ledger;

/// The most arenas the crate makes, whatever the allocator's own limit.
pub const MAX_ARENAS: usize = 254;

/// Address space reserved for all arenas together: 1 TiB.
pub const REGION_SIZE: usize = 1 << 40;

/// The unit in which the region is handed to arenas: 2 MiB.
pub const CHUNK_SIZE: usize = 1 << CHUNK_SHIFT;
const CHUNK_SHIFT: u32 = 21;
const CHUNKS: usize = REGION_SIZE >> CHUNK_SHIFT;

/// The region's base before it is reserved: `ptr - base` is then at least [`REGION_SIZE`] for
/// every pointer from 1 up to the top of the user address space, so no block is taken for an
/// arena block.
const NO_REGION: usize = usize::MAX - REGION_SIZE + 1;

/// The region's base address, [`NO_REGION`] until it is reserved.
static BASE: AtomicUsize = AtomicUsize::new(NO_REGION);

/// The region's length: [`REGION_SIZE`], or less where that much address space could not be
/// reserved (an address-space limit, a tool such as valgrind). Read once per free, beside `BASE`.
static LENGTH: AtomicUsize = AtomicUsize::new(0);

/// Set when the region could not be reserved: no arena is ever made.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// `1 + slot` of the arena each chunk serves; 0 for a chunk not handed out.
// SAFETY (of the all-zero initialiser): zeros are valid `AtomicU8`s.
static CHUNK_ARENA: [AtomicU8; CHUNKS] = [const { AtomicU8::new(0) }; CHUNKS];

/// Per scope: 0 before its arena was asked for, `1 + slot` when it has one, [`NO_ARENA`] when
/// it cannot have one.
static SCOPE_ARENA: [AtomicU8; MAX_SCOPES] = [const { AtomicU8::new(0) }; MAX_SCOPES];
const NO_ARENA: u8 = u8::MAX;

/// Per slot: jemalloc's index of the arena, and the scope it serves.
static ARENA_INDEX: [AtomicU32; MAX_ARENAS] = [const { AtomicU32::new(0) }; MAX_ARENAS];
static ARENA_SCOPE: [AtomicU16; MAX_ARENAS] = [const { AtomicU16::new(0) }; MAX_ARENAS];
/// Arenas made so far.
static ARENAS: AtomicUsize = AtomicUsize::new(0);

/// jemalloc's arena index → `1 + slot`, for the hooks, which are told the index only. 0 for the
/// arena being made (its slot is [`PENDING`]).
static INDEX_SLOT: [AtomicU8; 4096] = [const { AtomicU8::new(0) }; 4096];

/// Live arena blocks booked by threads that have no [`ThreadArenas`].
static SHARED_LIVE: AtomicI64 = AtomicI64::new(0);

/// Explicit thread caches made so far, over all threads.
static TCACHES: AtomicUsize = AtomicUsize::new(0);

/// The part of the region each arena is carving, and the next free chunk.
struct Carver {
    /// Next unused chunk of the region.
    next_chunk: usize,
    /// Per slot, the free range `[start, end)` of the arena's last chunks.
    free: [(usize, usize); MAX_ARENAS],
}

/// Taken only by the hooks, which jemalloc calls with its extent-growth or base lock held; those
/// locks are taken by jemalloc's own `fork` handler, so this one is never held across a `fork`.
static CARVER: Mutex<Carver> = Mutex::new(Carver {
    next_chunk: 0,
    free: [(0, 0); MAX_ARENAS],
});

/// Chunks handed out, for [`usage`] (read without the lock).
static CHUNKS_USED: AtomicUsize = AtomicUsize::new(0);

/// The slot of the arena being made, whose hooks run before its index is known.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Set while one thread makes an arena. Another thread that wants one meanwhile does not wait:
/// its block takes the trailer and it tries again on its next full block. (A lock would stay
/// held forever in the child of a `fork` made during a creation; the flag only keeps that child
/// from making more arenas.)
static CREATING: AtomicBool = AtomicBool::new(false);

/// Clears [`CREATING`] when the creation ends, whichever way.
struct Creating;

impl Drop for Creating {
    fn drop(&mut self) {
        CREATING.store(false, Ordering::Release);
    }
}

/// The largest small size class of jemalloc with 4 KiB pages.
const SMALL_MAX: usize = 14 * 1024;

/// jemalloc's page.
const PAGE: usize = 4096;

/// The jemalloc size class of a request of `size` bytes at an alignment of at most 16 and at
/// most `size` (sizes up to `isize::MAX`): small classes are 8, 16, then four per doubling with
/// steps of at least 16; a large block takes whole pages (jemalloc's default
/// `disable_large_size_classes`). A wrong answer (another page size, another configuration)
/// costs memory, never exactness: both kinds of block are booked and freed correctly.
#[inline(always)]
pub(crate) fn size_class(size: usize) -> usize {
    if size <= 16 {
        return if size <= 8 { 8 } else { 16 };
    }
    if size > SMALL_MAX {
        return (size + PAGE - 1) & !(PAGE - 1);
    }
    // `size` lies in (2^(lg - 1), 2^lg]: the classes of that group are 2^(lg - 3) apart.
    let lg = usize::BITS - (size - 1).leading_zeros();
    let step = (1usize << (lg - 3)).max(16);
    (size + step - 1) & !(step - 1)
}

/// Whether a block of `size` bytes at `align` goes to its scope's arena: its class leaves fewer
/// spare bytes than the trailer needs, and its alignment is one jemalloc gives without a flag.
#[inline(always)]
pub(crate) fn is_full(size: usize, align: usize) -> bool {
    align <= 16
        && align <= size
        && size <= isize::MAX as usize / 2
        && size_class(size) - size < crate::owner::trailer::TRAILER_SIZE
}

/// The offset of `ptr` in the region, if it lies there.
#[inline(always)]
pub(crate) fn region_offset(ptr: *const u8) -> Option<usize> {
    // Relaxed: a block in the region was handed out after the base was stored (the region is
    // reserved before any arena exists), through jemalloc's and the caller's synchronisation.
    let offset = (ptr as usize).wrapping_sub(BASE.load(Ordering::Relaxed));
    (offset < LENGTH.load(Ordering::Relaxed)).then_some(offset)
}

/// The arena slot serving the chunk at `offset`.
#[inline(always)]
fn chunk_slot(offset: usize) -> usize {
    // Relaxed: the chunk's entry was stored before jemalloc got the chunk (see `region_offset`).
    usize::from(CHUNK_ARENA[(offset >> CHUNK_SHIFT) % CHUNKS].load(Ordering::Relaxed))
        .wrapping_sub(1)
        % MAX_ARENAS
}

/// The scope owning the arena block at `offset` and the arena's slot.
#[inline(always)]
pub(crate) fn owner(offset: usize) -> (ScopeId, usize) {
    let slot = chunk_slot(offset);
    (ARENA_SCOPE[slot].load(Ordering::Relaxed), slot)
}

/// The slot of `scope`'s arena, making the arena if `max` allows; `None` if it has none.
#[inline(always)]
pub(crate) fn arena_of(scope: ScopeId, max: usize) -> Option<usize> {
    match SCOPE_ARENA[usize::from(scope) % MAX_SCOPES].load(Ordering::Acquire) {
        0 => make_arena(scope, max),
        NO_ARENA => None,
        slot => Some(usize::from(slot) - 1),
    }
}

/// Makes `scope`'s arena, or marks it as having none.
#[cold]
#[inline(never)]
fn make_arena(scope: ScopeId, max: usize) -> Option<usize> {
    let entry = &SCOPE_ARENA[usize::from(scope) % MAX_SCOPES];
    if CREATING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    let _creating = Creating;
    match entry.load(Ordering::Acquire) {
        0 => {}
        NO_ARENA => return None,
        slot => return Some(usize::from(slot) - 1),
    }
    let slot = ARENAS.load(Ordering::Relaxed);
    if slot >= max.min(MAX_ARENAS) || !reserve_region() {
        entry.store(NO_ARENA, Ordering::Release);
        return None;
    }
    PENDING.store(slot, Ordering::Relaxed);
    ARENA_SCOPE[slot].store(scope, Ordering::Relaxed);
    let mut index: c_uint = 0;
    let mut len = core::mem::size_of::<c_uint>();
    let mut hooks: *mut ffi::extent_hooks_t = ptr::addr_of!(HOOKS.0).cast_mut();
    // SAFETY:
    // - "arenas.create" reads an `unsigned` (the new index) and takes an `extent_hooks_t *`;
    //   `index`/`len` and `hooks` are valid for those sizes;
    // - `HOOKS` is a static that lives for the whole program and is never written.
    let failed = unsafe {
        ffi::mallctl(
            c"arenas.create".as_ptr().cast::<c_char>(),
            ptr::addr_of_mut!(index).cast::<c_void>(),
            &mut len,
            ptr::addr_of_mut!(hooks).cast::<c_void>(),
            core::mem::size_of::<*mut ffi::extent_hooks_t>(),
        )
    } != 0;
    if failed || index as usize >= INDEX_SLOT.len() {
        entry.store(NO_ARENA, Ordering::Release);
        return None;
    }
    INDEX_SLOT[index as usize].store(slot as u8 + 1, Ordering::Release);
    ARENA_INDEX[slot].store(index, Ordering::Relaxed);
    ARENAS.store(slot + 1, Ordering::Relaxed);
    // Release: a thread that reads the slot (acquire) sees the arena's index and scope.
    entry.store(slot as u8 + 1, Ordering::Release);
    Some(slot)
}

/// Reserves the region once; `false` if it cannot be.
fn reserve_region() -> bool {
    if BASE.load(Ordering::Relaxed) != NO_REGION {
        return true;
    }
    if UNAVAILABLE.load(Ordering::Relaxed) {
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
    LENGTH.store(length, Ordering::Relaxed);
    BASE.store(base as usize, Ordering::Release);
    true
}

/// The address space reserved for arenas, in bytes: 0 before the first arena.
fn reserved_bytes() -> usize {
    if BASE.load(Ordering::Relaxed) == NO_REGION {
        0
    } else {
        LENGTH.load(Ordering::Relaxed)
    }
}

/// Carves `size` bytes at `alignment` for the arena in `slot`.
fn carve(carver: &mut Carver, slot: usize, size: usize, alignment: usize) -> *mut c_void {
    let base = BASE.load(Ordering::Acquire);
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
    let reserved = (LENGTH.load(Ordering::Relaxed) >> CHUNK_SHIFT).min(CHUNKS);
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
struct Hooks(ffi::extent_hooks_t);

// SAFETY:
// - the table holds function pointers only and is never written after initialisation.
unsafe impl Sync for Hooks {}

static HOOKS: Hooks = Hooks(ffi::extent_hooks_t {
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
unsafe extern "C" fn hook_alloc(
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
unsafe extern "C" fn hook_dalloc(
    _hooks: *mut ffi::extent_hooks_t,
    _addr: *mut c_void,
    _size: usize,
    _committed: CBool,
    _arena_ind: c_uint,
) -> CBool {
    true
}

/// Gives the pages back to the system; the address space stays the arena's.
unsafe extern "C" fn hook_destroy(
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
unsafe extern "C" fn hook_commit(
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
unsafe extern "C" fn hook_decommit(
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
unsafe fn purge(addr: *mut c_void, offset: usize, length: usize, advice: libc::c_int) -> CBool {
    // SAFETY:
    // - the caller's guarantee: unused pages of the region's mapping.
    unsafe { libc::madvise(addr.cast::<u8>().add(offset).cast(), length, advice) != 0 }
}

/// `MADV_FREE`: the kernel may take the pages back when it needs memory.
unsafe extern "C" fn hook_purge_lazy(
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
unsafe extern "C" fn hook_purge_forced(
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
unsafe extern "C" fn hook_split(
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

unsafe extern "C" fn hook_merge(
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

/// A thread's explicit caches, one per arena, its count of live arena blocks and its block cache.
///
/// Part of the thread's counter slab ([`crate::books::cells::Slab`]), so it is never freed and passes to
/// the next thread with the slab; a thread that exits flushes its caches first. All zeros are an
/// empty table.
pub(crate) struct ThreadArenas {
    /// Per slot: 0 before a cache was asked for, `1 + index` of the cache, or [`NO_TCACHE`].
    tcaches: [AtomicU16; MAX_ARENAS],
    /// Caches this table made.
    made: AtomicU8,
    /// Arena blocks allocated minus freed by the threads that held this table. Written by the
    /// holder only (relaxed load and store), summed by readers.
    live: AtomicI64,
    /// Freed blocks kept for the next allocation of the same size in the same arena. Touched by
    /// the holder only; emptied when the table is given back.
    cache: core::cell::UnsafeCell<BlockCache>,
}

/// Bins of the block cache.
const BINS: usize = 16;
/// Blocks per bin.
const BIN_DEPTH: usize = 14;
/// Bytes the block cache of one thread may hold.
pub(crate) const CACHE_BYTES: usize = 64 * 1024;
/// Largest block size the cache keeps.
const CACHE_MAX_SIZE: usize = 4096;

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
struct Bin {
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
    fn pop(&mut self, slot: usize, size: usize) -> Option<*mut u8> {
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
    fn push(&mut self, slot: usize, size: usize, block: *mut u8) -> bool {
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
    unsafe fn cache(&self) -> &mut BlockCache {
        // SAFETY:
        // - the caller's guarantee: the holder is the only thread that touches the cache.
        unsafe { &mut *self.cache.get() }
    }
}

const NO_TCACHE: u16 = u16::MAX;

/// This thread's table, if it holds a counter slab (whose release at thread exit is arranged).
#[inline(always)]
fn table() -> Option<&'static ThreadArenas> {
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
fn tcache_flag(
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
fn make_tcache(table: &ThreadArenas, slot: usize, max_per_thread: usize) -> i32 {
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
fn count(table: Option<&ThreadArenas>, delta: i64) {
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

/// Allocates `size` bytes in the arena of `slot` (a full block: see [`is_full`]), with this
/// thread's cache for it; null if jemalloc fails. Counts the block as a live arena block.
#[inline(always)]
pub(crate) fn allocate(slot: usize, size: usize, zero: bool, max_tcaches: usize) -> *mut u8 {
    let table = table();
    if let Some(t) = table {
        // SAFETY:
        // - this thread holds the table; the borrow ends within this statement.
        if let Some(block) = unsafe { t.cache() }.pop(slot, size) {
            if zero {
                // SAFETY:
                // - a cached block holds at least `size` bytes.
                unsafe { block.write_bytes(0, size) };
            }
            count(table, 1);
            return block;
        }
    }
    let flags = ffi::MALLOCX_ARENA(ARENA_INDEX[slot].load(Ordering::Relaxed) as usize)
        | tcache_flag(table, slot, max_tcaches, true)
        | if zero { ffi::MALLOCX_ZERO } else { 0 };
    // SAFETY:
    // - `size` is non-zero (full blocks have at least their alignment's size); the flags name an
    //   arena made with "arenas.create" and a cache made by this thread's table (or none).
    let block = unsafe { ffi::mallocx(size, flags) }.cast::<u8>();
    if !block.is_null() {
        count(table, 1);
    }
    block
}

/// The alignment flag jemalloc needs for a block of `size` bytes at `align`: none where every
/// block of that size class is aligned enough, as `tikv_jemallocator` decides. A sized free must
/// pass the same flag as the allocation did, or jemalloc takes the block for one of another
/// class (a block resized below its alignment is one such case).
#[inline(always)]
fn align_flag(size: usize, align: usize) -> i32 {
    if align > 16 || align > size {
        ffi::MALLOCX_ALIGN(align)
    } else {
        0
    }
}

/// Frees the arena block `ptr` of `size` bytes at `align` of the arena in `slot`.
///
/// # Safety
///
/// - `ptr` is a live block of that arena, allocated or last resized for `size` bytes at `align`.
#[inline(always)]
pub(crate) unsafe fn deallocate(ptr: *mut u8, slot: usize, size: usize, align: usize) {
    let table = table();
    count(table, -1);
    let align = align_flag(size, align);
    if let Some(t) = table {
        // SAFETY:
        // - this thread holds the table; the borrow ends within this statement.
        if align == 0 && unsafe { t.cache() }.push(slot, size, ptr) {
            return;
        }
    }
    let flags = tcache_flag(table, slot, 0, false) | align;
    // SAFETY:
    // - the caller's guarantee; the flags name this thread's cache for the block's arena or none.
    unsafe { ffi::sdallocx(ptr.cast(), size, flags) }
}

/// Resizes the arena block `ptr` of the arena in `slot` to `new_size` bytes at `align`, in the
/// same arena; null on failure (the block is then untouched).
///
/// # Safety
///
/// - `ptr` is a live block of that arena; `new_size` is non-zero.
pub(crate) unsafe fn reallocate(
    ptr: *mut u8,
    slot: usize,
    new_size: usize,
    align: usize,
) -> *mut u8 {
    let table = table();
    let flags = ffi::MALLOCX_ARENA(ARENA_INDEX[slot].load(Ordering::Relaxed) as usize)
        | tcache_flag(table, slot, 0, false)
        | align_flag(new_size, align);
    // SAFETY:
    // - the caller's guarantee; the flags as in `allocate`.
    unsafe { ffi::rallocx(ptr.cast(), new_size, flags) }.cast::<u8>()
}

/// Live blocks in the arenas (they carry no trailer).
pub(crate) fn live_blocks() -> u64 {
    let mut live = SHARED_LIVE.load(Ordering::Relaxed);
    crate::books::per_thread::for_each_thread_tables(|table| {
        live += table.live.load(Ordering::Relaxed)
    });
    live.max(0) as u64
}

/// What the arenas hold and cost, for the reconciliation and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaUsage {
    /// Arenas made.
    pub arenas: usize,
    /// Explicit thread caches made, over all threads.
    pub thread_caches: usize,
    /// Thread tables made: one per counter slab, so at most the largest number of threads alive
    /// at once.
    pub thread_tables: usize,
    /// Chunks of `ArenaLedger::CHUNK_SIZE` handed to arenas (address space, not memory).
    pub chunks: usize,
    /// Live blocks held in the arenas.
    pub live_blocks: u64,
    /// Address space reserved for the arenas once the first arena is made: `ArenaLedger::REGION_SIZE`,
    /// or less where the system allows less.
    pub reserved_bytes: usize,
}

/// Counts what the arenas hold.
pub(crate) fn usage() -> ArenaUsage {
    let mut tables = 0;
    crate::books::per_thread::for_each_thread_tables(|_| tables += 1);
    ArenaUsage {
        arenas: ARENAS.load(Ordering::Relaxed),
        thread_caches: TCACHES.load(Ordering::Relaxed),
        thread_tables: tables,
        chunks: CHUNKS_USED.load(Ordering::Relaxed),
        live_blocks: live_blocks(),
        reserved_bytes: reserved_bytes(),
    }
}

/// The arenas made so far: slot, jemalloc's index, and the scope served.
pub(crate) fn arenas() -> Vec<(usize, u32, ScopeId)> {
    (0..ARENAS.load(Ordering::Acquire).min(MAX_ARENAS))
        .map(|slot| {
            (
                slot,
                ARENA_INDEX[slot].load(Ordering::Relaxed),
                ARENA_SCOPE[slot].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Every arena made so far: the scope it serves and jemalloc's index for it.
pub(crate) fn scope_arenas() -> Vec<(String, u32)> {
    scope_arena_indexes()
        .into_iter()
        .map(|a| (a.scope, a.jemalloc_index))
        .collect()
}

/// [`scope_arenas`], as `ArenaLedger::arenas` gives it.
pub(crate) fn scope_arena_indexes() -> Vec<ScopeArenaIndex> {
    arenas()
        .into_iter()
        .map(|(_, index, scope)| ScopeArenaIndex {
            scope: crate::scope::ScopeHandle::from_id(scope).path(),
            jemalloc_index: index,
        })
        .collect()
}

/// Which jemalloc arena holds the full blocks of which scope (see `ArenaLedger::arenas`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeArenaIndex {
    /// The scope's path.
    pub scope: String,
    /// jemalloc's index of the arena (`stats.arenas.<i>`).
    pub jemalloc_index: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// jemalloc's own size for a request, with no flags.
    fn nallocx(size: usize) -> usize {
        // SAFETY:
        // - `nallocx` only computes; a non-zero size and no flags are valid.
        unsafe { ffi::nallocx(size, 0) }
    }

    #[test]
    fn size_classes_are_jemallocs() {
        for size in 1..=(1 << 20) {
            assert_eq!(size_class(size), nallocx(size), "size {size}");
        }
        let mut size = 1usize << 20;
        while size < 1 << 36 {
            for probe in [
                size - 1,
                size,
                size + 1,
                size + size / 3,
                size + size / 2 + 7,
            ] {
                assert_eq!(size_class(probe), nallocx(probe), "size {probe}");
            }
            size <<= 1;
        }
    }

    #[test]
    fn full_means_no_room_for_the_trailer() {
        for size in 1..=70_000 {
            let full = nallocx(size + crate::owner::trailer::TRAILER_SIZE) != nallocx(size);
            assert_eq!(is_full(size, 1), full, "size {size}");
        }
        // Alignments jemalloc gives only with a flag always take the trailer.
        assert!(is_full(64, 16));
        assert!(!is_full(64, 32));
        assert!(!is_full(8, 16));
    }
}
