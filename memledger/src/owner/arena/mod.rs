//! Owners by address: a jemalloc arena per scope for its blocks of up to 16 KiB and for the larger
//! blocks a trailer would push into the next size class.
//!
//! The trailer of [`crate::owner::trailer`] costs no memory when the block's size class leaves 2
//! spare bytes: `size + 2` lands in the same class. It costs a whole class step when it does not
//! ("full" blocks), and Rust's doubling growth puts most buffers exactly on a class. Blocks in an
//! arena of their scope's own carry nothing; their owner is found from their address. Small
//! blocks go there whether full or not, which keeps the common path to one table lookup and a
//! per-thread stack (see `ledger.rs`).
//!
//! Here: the arena table (scope → arena → jemalloc's index), making arenas, and allocating,
//! freeing and resizing arena blocks. Beside it: `class.rs` (jemalloc's size classes, which blocks
//! go to an arena), `region.rs` (the reserved region, its chunks and the extent hooks), `thread.rs`
//! (each thread's explicit caches and front cache) and `usage.rs` (what the arenas hold, for
//! readers; it sits above the thread state and the registry, so nothing here imports it). The arena
//! path of `Ledger`, the `GlobalAlloc`, is `crate::ledger::arena_path`.
//!
//! Every function that uses a thread's caches takes them as a parameter (`Option<&ThreadArenas>`:
//! `None` for a thread without a slab); the thread's state (`crate::thread`) and the ledger pass
//! them down, and nothing here reads a thread-local.
//!
//! # Where arena memory lives
//!
//! The arenas get their memory from this module's extent hooks, which carve it out of one region of
//! address space reserved at the first arena's creation (up to [`REGION_SIZE`], `MAP_NORESERVE`:
//! only the pages jemalloc touches become resident). The region is cut into chunks of
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
//! In front of jemalloc, each thread keeps freed arena blocks of up to 16 KiB (at most
//! [`FRONT_BYTES`]) on a stack per (arena, size class), linked through the blocks themselves, for
//! the next allocation of that class in that arena ([`Front`]): the common free-then-allocate
//! cycle costs about what jemalloc's own thread cache costs.
//!
//! # Limits
//!
//! At most [`MAX_ARENAS`] arenas (the allocator's own limit may be lower) and a per-thread limit
//! of explicit caches. Past the arena limit, or if the region cannot be reserved, a scope's
//! blocks take the trailer (exact, at the trailer's memory cost). Past the cache limit, a
//! thread allocates and frees in that arena without a cache (`MALLOCX_TCACHE_NONE`: exact, no
//! memory held, slower). Neither case is ever undefined behaviour or a lost block.

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use tikv_jemalloc_sys as ffi;

/// C's `bool`, as the extent hooks take and return it.
type CBool = bool;

use crate::books::id::{ScopeId, MAX_SCOPES};

mod class;
mod region;
mod thread;
mod transfer;
pub(crate) mod usage;

pub(crate) use class::{arena_class, bin_size, is_bin, BIG};
pub(crate) use region::region_offset;
use region::{chunk_row, reserve_region, HOOKS, PENDING};
pub use region::{CHUNK_SIZE, REGION_SIZE};
use thread::{count, tcache_flag, TCACHE_LIMIT};
pub(crate) use thread::{drain_transfers, release_thread, Front, ThreadArenas, COLD_FRONT};
pub use thread::{FRONT_BYTES, TRANSFER_BYTES};

/// Whether `A` is jemalloc, over which a ledger may keep scope arenas. Folded at compile time.
#[inline(always)]
pub(crate) fn is_jemalloc<A: 'static>() -> bool {
    core::any::TypeId::of::<A>() == core::any::TypeId::of::<tikv_jemallocator::Jemalloc>()
}

/// The most arenas a ledger makes, whatever its own limit.
pub const MAX_ARENAS: usize = 254;

/// Per scope: 0 before its arena was asked for, `1 + slot` when it has one, [`NO_ARENA`] when
/// it cannot have one.
static SCOPE_ARENA: [AtomicU8; MAX_SCOPES] = [const { AtomicU8::new(0) }; MAX_SCOPES];
const NO_ARENA: u8 = u8::MAX;

/// Per slot: jemalloc's index of the arena.
static ARENA_INDEX: [AtomicU32; MAX_ARENAS] = [const { AtomicU32::new(0) }; MAX_ARENAS];
/// Per row (`1 + slot`, as chunks and front caches name an arena): the scope the arena serves.
/// 256 entries, so that a row read from a `u8` indexes it without a check.
static ROW_SCOPE: [AtomicU16; 256] = [const { AtomicU16::new(0) }; 256];
/// Arenas made so far.
static ARENAS: AtomicUsize = AtomicUsize::new(0);

/// jemalloc's arena index → `1 + slot`, for the hooks, which are told the index only. 0 for the
/// arena being made (its slot is [`PENDING`]).
static INDEX_SLOT: [AtomicU8; 4096] = [const { AtomicU8::new(0) }; 4096];

/// Live arena blocks booked by threads that have no [`ThreadArenas`].
static SHARED_LIVE: AtomicI64 = AtomicI64::new(0);

/// Explicit thread caches made so far, over all threads.
static TCACHES: AtomicUsize = AtomicUsize::new(0);

/// Set while one thread makes an arena. Another thread that wants one meanwhile does not wait:
/// its block takes the trailer and it tries again on its next arena block. (A lock would stay
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

/// Refills of a thread's counters between two looks at the clock for [`decay_idle_arenas`]: one
/// look per 1 MiB of the thread's traffic at most (a refill takes 64 KiB of it).
const REFILLS_PER_LOOK: u32 = 16;
/// jemalloc's arena index that stands for all arenas (`MALLCTL_ARENAS_ALL`).
const ALL_ARENAS: u32 = 4096;
/// The least time between two decays driven by the books, in nanoseconds.
const DECAY_INTERVAL_NS: u64 = 1_000_000_000;
/// When the books may next advance the arenas' decay (`CLOCK_MONOTONIC`, nanoseconds).
static NEXT_DECAY_NS: AtomicU64 = AtomicU64::new(0);

/// Called by the books after each refill of this thread's counters (their cold path): once a
/// second at most, over all threads, advances the decay of every arena.
///
/// jemalloc returns an arena's dirty pages to the kernel only as a side effect of operations on
/// that arena, so a scope arena that its threads stopped using would keep the pages of its last
/// burst for as long as the process lives, while the process's other threads keep allocating.
/// jemalloc's automatic arenas starve the same way once the scope arenas and the threads' front
/// caches take most of the traffic: a burst's pages freed into arena 0 would stay there. The books'
/// cold path runs on every thread that allocates, so it drives the decay of all arenas on
/// jemalloc's own schedule (`dirty_decay_ms`, 10 s by default) without a sampler. One relaxed load
/// and store of a per-thread count per refill; a clock read every [`REFILLS_PER_LOOK`] refills.
#[inline]
pub(crate) fn after_refill(arenas: &ThreadArenas) {
    // Relaxed load and store: only the holder of the table writes it.
    let refills = arenas.refills.load(Ordering::Relaxed).wrapping_add(1);
    arenas.refills.store(refills, Ordering::Relaxed);
    if refills % REFILLS_PER_LOOK == 0 && ARENAS.load(Ordering::Relaxed) != 0 {
        decay_idle_arenas();
    }
}

/// Advances the decay of every arena, automatic ones included, if a second has passed since the
/// last time; one `mallctl`, by the one thread that claims the turn.
#[cold]
#[inline(never)]
fn decay_idle_arenas() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY:
    // - `clock_gettime` writes one `timespec`, which `now` is.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return;
    }
    let now = (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64);
    let next = NEXT_DECAY_NS.load(Ordering::Relaxed);
    if now < next
        || NEXT_DECAY_NS
            .compare_exchange(
                next,
                now + DECAY_INTERVAL_NS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    drain_transfers(ARENAS.load(Ordering::Acquire).min(MAX_ARENAS) + 1);
    decay(ALL_ARENAS);
}

/// `arena.<index><suffix>`, NUL-terminated, built on the stack: nothing is allocated (these run
/// inside allocations). `suffix` is at most 24 bytes.
fn arena_ctl_name(index: u32, suffix: &[u8]) -> [u8; 48] {
    let mut name = [0u8; 48];
    let prefix = b"arena.";
    name[..prefix.len()].copy_from_slice(prefix);
    let mut len = prefix.len();
    let mut digits = [0u8; 10];
    let mut n = index;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in digits[..count].iter().rev() {
        name[len] = digit;
        len += 1;
    }
    let suffix = &suffix[..suffix.len().min(24)];
    name[len..len + suffix.len()].copy_from_slice(suffix);
    name
}

/// Sets the dirty and muzzy decay times of jemalloc's arena `index` to `ms`. A failure leaves the
/// arena with jemalloc's setting.
fn set_decay(index: u32, ms: i32) {
    for suffix in [&b".dirty_decay_ms"[..], &b".muzzy_decay_ms"[..]] {
        let name = arena_ctl_name(index, suffix);
        let mut ms = ms as isize;
        // SAFETY:
        // - "arena.<i>.dirty_decay_ms" and "arena.<i>.muzzy_decay_ms" take an `ssize_t`; `name`
        //   is NUL-terminated and names an arena just made.
        let _ = unsafe {
            ffi::mallctl(
                name.as_ptr().cast::<c_char>(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::addr_of_mut!(ms).cast::<c_void>(),
                core::mem::size_of::<isize>(),
            )
        };
    }
}

/// Advances the decay of jemalloc's arena `index` ("arena.<i>.decay"), building its name on the
/// stack: nothing is allocated.
fn decay(index: u32) {
    let name = arena_ctl_name(index, b".decay");
    // A failure leaves the arena as it was: there is nothing to report.
    // SAFETY:
    // - "arena.<i>.decay" takes and returns nothing: null pointers and a zero length;
    // - `name` is NUL-terminated (at most 6 + 10 + 24 bytes of 48 are written) and names an arena
    //   that exists (arenas are never destroyed) or all of them.
    let _ = unsafe {
        ffi::mallctl(
            name.as_ptr().cast::<c_char>(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    };
}

/// Gives every block of the transfer caches back to jemalloc, and those of the front cache of the
/// thread whose table is `own`, if any (`memledger::arenas::trim`).
pub(crate) fn trim(own: Option<&ThreadArenas>) {
    let rows = ARENAS.load(Ordering::Acquire).min(MAX_ARENAS) + 1;
    if let Some(table) = own {
        table.empty_front(rows);
    }
    drain_transfers(rows);
}

/// The scope owning the arena block at `offset` and the arena's row (`1 + slot`).
#[inline(always)]
pub(crate) fn block_owner(offset: usize) -> (ScopeId, usize) {
    let row = chunk_row(offset);
    (ROW_SCOPE[row % 256].load(Ordering::Relaxed), row)
}

/// The slot of the arena in `row` (see [`block_owner`]).
#[inline(always)]
pub(crate) fn slot_of_row(row: usize) -> usize {
    row.wrapping_sub(1) % MAX_ARENAS
}

/// The row of a scope that cannot have an arena.
pub(crate) const NO_ARENA_ROW: usize = NO_ARENA as usize;

/// The row of `scope` in a front cache: its arena entry as it is (see [`Front`]).
#[inline(always)]
pub(crate) fn row_of(scope: ScopeId) -> usize {
    usize::from(SCOPE_ARENA[usize::from(scope) % MAX_SCOPES].load(Ordering::Relaxed))
}

/// What a ledger asks of the arenas it makes.
#[derive(Clone, Copy)]
pub(crate) struct NewArena {
    /// At most this many arenas.
    pub(crate) max_arenas: usize,
    /// Each arena's `dirty_decay_ms` and `muzzy_decay_ms`, or negative for jemalloc's setting.
    pub(crate) dirty_decay_ms: i32,
}

/// The slot of `scope`'s arena, making the arena if `new.max_arenas` allows; `None` if it has none.
#[inline(always)]
pub(crate) fn arena_of(scope: ScopeId, new: NewArena) -> Option<usize> {
    match SCOPE_ARENA[usize::from(scope) % MAX_SCOPES].load(Ordering::Acquire) {
        0 => make_arena(scope, new),
        NO_ARENA => None,
        slot => Some(usize::from(slot) - 1),
    }
}

/// Makes `scope`'s arena, or marks it as having none.
#[cold]
#[inline(never)]
fn make_arena(scope: ScopeId, new: NewArena) -> Option<usize> {
    let max = new.max_arenas;
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
    // The crate's own blocks (registry, snapshots) are few and small: they keep the trailer and
    // leave the arenas to the program's scopes.
    if scope == crate::books::id::OWN_SCOPE_ID
        || scope == crate::books::id::SAMPLED_SCOPE_ID
        || slot >= max.min(MAX_ARENAS)
        || !reserve_region()
    {
        entry.store(NO_ARENA, Ordering::Release);
        return None;
    }
    PENDING.store(slot, Ordering::Relaxed);
    ROW_SCOPE[slot + 1].store(scope, Ordering::Relaxed);
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
    if new.dirty_decay_ms >= 0 {
        set_decay(index, new.dirty_decay_ms);
    }
    INDEX_SLOT[index as usize].store(slot as u8 + 1, Ordering::Release);
    ARENA_INDEX[slot].store(index, Ordering::Relaxed);
    ARENAS.store(slot + 1, Ordering::Relaxed);
    // Release: a thread that reads the slot (acquire) sees the arena's index and scope.
    entry.store(slot as u8 + 1, Ordering::Release);
    Some(slot)
}

/// Allocates `size` bytes in the arena of `slot` (a block of that arena: see [`arena_class`])
/// with `mallocx`, with the explicit cache of the thread whose caches are `arenas`; null if
/// jemalloc fails. Counts the block as a live arena block. (The front cache was tried first: see
/// [`Front::pop`].)
#[inline(always)]
pub(crate) fn allocate(
    arenas: Option<&ThreadArenas>,
    slot: usize,
    size: usize,
    zero: bool,
    max_tcaches: usize,
) -> *mut u8 {
    let flags = ffi::MALLOCX_ARENA(ARENA_INDEX[slot].load(Ordering::Relaxed) as usize)
        | tcache_flag(arenas, slot, max_tcaches, true)
        | if zero { ffi::MALLOCX_ZERO } else { 0 };
    // SAFETY:
    // - `size` is non-zero (a `GlobalAlloc` is never asked for zero bytes); the flags name an
    //   arena made with "arenas.create" and a cache made by this thread's table (or none).
    let block = unsafe { ffi::mallocx(size, flags) }.cast::<u8>();
    if !block.is_null() {
        count(arenas, 1);
    }
    block
}

/// The argument of jemalloc's `experimental.batch_alloc`: where to put the blocks, how many, of
/// what size, with which `mallocx` flags (jemalloc's `batch_alloc_packet_t`).
#[repr(C)]
struct BatchPacket {
    ptrs: *mut *mut c_void,
    num: usize,
    size: usize,
    flags: c_int,
}

/// The management information base of `experimental.batch_alloc`, looked up once: its two
/// components, and [`BATCH_READY`] once they are there ([`BATCH_NONE`] if this jemalloc lacks it).
static BATCH_MIB: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
static BATCH_STATE: AtomicU8 = AtomicU8::new(0);
const BATCH_READY: u8 = 1;
const BATCH_NONE: u8 = 2;

/// Most blocks one refill takes.
const REFILL_MAX: usize = 64;

/// Per bin, the regions of one of jemalloc's slabs of its class (`arenas.bin.<i>.nregs`), read
/// with the batch call's information base; 0 for a class jemalloc keeps in no slab.
static SLAB_REGIONS: [AtomicU16; class::ROW_BINS] = [const { AtomicU16::new(0) }; class::ROW_BINS];

/// Allocates a block of class `bin` in the arena of `slot` for a thread whose front cache's stack of
/// that arena and class is empty, and fills the stack with more of them in the same call
/// (`experimental.batch_alloc`, with the thread's explicit cache for the arena): one call into
/// jemalloc for up to a [`transfer::batch`] of blocks, where `mallocx` makes one per block. As
/// many as the front cache has room for; one `mallocx` where the batch call is missing or fails.
/// Null if jemalloc fails. Counts the block as a live arena block.
#[inline]
pub(crate) fn allocate_batch(
    table: &ThreadArenas,
    slot: usize,
    bin: usize,
    max_tcaches: usize,
) -> *mut u8 {
    let size = bin_size(bin);
    let state = BATCH_STATE.load(Ordering::Acquire);
    if state == BATCH_NONE || (state != BATCH_READY && !look_up_batch_alloc()) {
        return allocate(Some(table), slot, size, false, max_tcaches);
    }
    // Fewer than a slab's regions: a batch of a whole slab or more takes fresh slabs only, never
    // the free regions of the arena's partly used ones (jemalloc's `arena_fill_small_fresh`).
    let regions = usize::from(SLAB_REGIONS[bin % SLAB_REGIONS.len()].load(Ordering::Relaxed));
    let want = transfer::batch(size)
        .min(REFILL_MAX)
        .min(table.room_for(size) + 1)
        .min(regions.saturating_sub(1));
    if want <= 1 {
        return allocate(Some(table), slot, size, false, max_tcaches);
    }
    // Without a thread cache the batch call makes one `mallocx` per block, each taking the bin's
    // lock: one block is enough then.
    let tcache = tcache_flag(Some(table), slot, max_tcaches, true);
    if tcache == ffi::MALLOCX_TCACHE_NONE {
        return allocate(Some(table), slot, size, false, max_tcaches);
    }
    let mut ptrs = [ptr::null_mut::<c_void>(); REFILL_MAX];
    let mut packet = BatchPacket {
        ptrs: ptrs.as_mut_ptr(),
        num: want,
        size,
        flags: ffi::MALLOCX_ARENA(ARENA_INDEX[slot].load(Ordering::Relaxed) as usize) | tcache,
    };
    let mib = [
        BATCH_MIB[0].load(Ordering::Relaxed),
        BATCH_MIB[1].load(Ordering::Relaxed),
    ];
    let mut filled: usize = 0;
    let mut len = core::mem::size_of::<usize>();
    // SAFETY:
    // - the mib names "experimental.batch_alloc", which reads a `batch_alloc_packet_t` (as
    //   `BatchPacket` is laid out) and writes a `size_t`; `ptrs` has room for `want` pointers;
    //   the flags name an arena made with "arenas.create" and a cache made by this thread's table
    //   (or none).
    let failed = unsafe {
        ffi::mallctlbymib(
            mib.as_ptr(),
            mib.len(),
            ptr::addr_of_mut!(filled).cast::<c_void>(),
            &mut len,
            ptr::addr_of_mut!(packet).cast::<c_void>(),
            core::mem::size_of::<BatchPacket>(),
        )
    } != 0;
    if failed || filled == 0 {
        return allocate(Some(table), slot, size, false, max_tcaches);
    }
    let blocks = &ptrs[..filled.min(want)];
    // SAFETY:
    // - fresh blocks of class `bin` of the arena in row `slot + 1`, no longer than `want`, which
    //   the front cache has room for beside the first; the stack of that class is empty (the
    //   caller's guarantee).
    unsafe { table.install(slot + 1, bin, blocks) }
}

/// Looks up `experimental.batch_alloc`'s management information base; `false` if this jemalloc
/// does not have it (then never again).
#[cold]
#[inline(never)]
fn look_up_batch_alloc() -> bool {
    let mut mib = [0usize; 2];
    let mut len = mib.len();
    // SAFETY:
    // - the name is NUL-terminated; `mib` has room for `len` components.
    let failed = unsafe {
        ffi::mallctlnametomib(
            c"experimental.batch_alloc".as_ptr().cast::<c_char>(),
            mib.as_mut_ptr(),
            &mut len,
        )
    } != 0;
    if failed || len != 2 {
        BATCH_STATE.store(BATCH_NONE, Ordering::Relaxed);
        return false;
    }
    BATCH_MIB[0].store(mib[0], Ordering::Relaxed);
    BATCH_MIB[1].store(mib[1], Ordering::Relaxed);
    read_slab_regions();
    BATCH_STATE.store(BATCH_READY, Ordering::Release);
    true
}

/// Fills [`SLAB_REGIONS`] from `arenas.nbins` and `arenas.bin.<i>.nregs`, with no allocation (this
/// runs inside an allocation). jemalloc's bin `i` is the front cache's bin `i + 1` (both number the
/// small classes in size order from the smallest; `classes_are_jemallocs` checked the sizes).
fn read_slab_regions() {
    let mut nbins: c_uint = 0;
    let mut len = core::mem::size_of::<c_uint>();
    let mut mib = [0usize; 4];
    let mut mib_len = mib.len();
    // SAFETY:
    // - "arenas.nbins" is an `unsigned`; the names are NUL-terminated, `mib` has room for
    //   `mib_len` components.
    let failed = unsafe {
        ffi::mallctl(
            c"arenas.nbins".as_ptr().cast::<c_char>(),
            ptr::addr_of_mut!(nbins).cast::<c_void>(),
            &mut len,
            ptr::null_mut(),
            0,
        ) != 0
            || ffi::mallctlnametomib(
                c"arenas.bin.0.nregs".as_ptr().cast::<c_char>(),
                mib.as_mut_ptr(),
                &mut mib_len,
            ) != 0
    };
    if failed || mib_len != 4 {
        return;
    }
    let bins = class::BINS.min(nbins as usize + 1);
    for (bin, entry) in SLAB_REGIONS.iter().enumerate().take(bins).skip(1) {
        mib[2] = bin - 1;
        let mut regions: u32 = 0;
        let mut len = core::mem::size_of::<u32>();
        // SAFETY:
        // - "arenas.bin.<i>.nregs" is a `uint32_t`, for `i` below `arenas.nbins`.
        let failed = unsafe {
            ffi::mallctlbymib(
                mib.as_ptr(),
                mib_len,
                ptr::addr_of_mut!(regions).cast::<c_void>(),
                &mut len,
                ptr::null_mut(),
                0,
            )
        } != 0;
        if !failed {
            entry.store(regions.min(u32::from(u16::MAX)) as u16, Ordering::Relaxed);
        }
    }
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

/// Frees the arena block `ptr` of `size` bytes at `align` of the arena in `slot` with `sdallocx`,
/// with the explicit cache for it of the thread whose caches are `arenas`. (The front cache was
/// tried first: see [`Front::push`].)
///
/// # Safety
///
/// - `ptr` is a live block of that arena, allocated or last resized for `size` bytes at `align`;
/// - `arenas` are the calling thread's caches (or `None`).
#[inline(always)]
pub(crate) unsafe fn deallocate(
    arenas: Option<&ThreadArenas>,
    ptr: *mut u8,
    slot: usize,
    size: usize,
    align: usize,
) {
    count(arenas, -1);
    // A thread that frees into an arena it never allocated from makes its cache for it too (up to
    // the limit): without one, every free would take the arena's bin lock.
    let limit = TCACHE_LIMIT.load(Ordering::Relaxed);
    // Seeded bug (`.ci/mutants`): the free without the alignment flag, so that a block resized
    // below its alignment is taken for one of a smaller class.
    #[cfg(memledger_mutant = "free_without_alignment_flag")]
    let align = 1;
    let flags = tcache_flag(arenas, slot, limit, true) | align_flag(size, align);
    // SAFETY:
    // - the caller's guarantee; the flags name this thread's cache for the block's arena or none.
    unsafe { ffi::sdallocx(ptr.cast(), size, flags) }
}

/// Frees `ptr` with `sdallocx` if it is an arena block (of `size` bytes at `align`), booking
/// nothing; `false` (nothing done) for a block outside the arenas. For the cold paths that move a
/// block out of its arena.
///
/// # Safety
///
/// - `ptr` is a live block of the ledger, allocated or last resized for `size` bytes at `align`;
/// - `arenas` are the calling thread's caches (or `None`).
pub(crate) unsafe fn free_if_arena_block(
    arenas: Option<&ThreadArenas>,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> bool {
    let Some(offset) = region_offset(ptr) else {
        return false;
    };
    let (_, row) = block_owner(offset);
    // SAFETY:
    // - in the region: an arena block of the arena in `row`, by the caller's guarantee live and
    //   of `size` bytes at `align`; the caller's caches.
    unsafe { deallocate(arenas, ptr, slot_of_row(row), size, align) };
    true
}

/// Frees the arena block `ptr` of `size` bytes at `align`, of the class `class` of the arena in
/// `row`, that the front cache refused for lack of room: the cache is emptied into the explicit
/// caches ([`ThreadArenas::make_room`]) and takes the block, or, for a thread without a table,
/// the block goes to `sdallocx`.
///
/// # Safety
///
/// - `ptr` is a live block of that arena, allocated or last resized for `size` bytes at `align`,
///   in bin `class` (neither 0 nor [`BIG`]);
/// - `arenas` are the calling thread's caches (or `None`).
#[inline]
pub(crate) unsafe fn free_past_a_full_cache(
    arenas: Option<&ThreadArenas>,
    ptr: *mut u8,
    row: usize,
    size: usize,
    align: usize,
    class: usize,
) {
    if let Some(arenas) = arenas {
        // Seeded bug (`.ci/mutants`): a full front cache is never emptied.
        #[cfg(not(memledger_mutant = "full_front_cache_kept"))]
        arenas.make_room();
        // SAFETY:
        // - the caller's guarantee; the cache is the caller's own.
        if unsafe { arenas.front().push(row, class, bin_size(class), ptr) } {
            return;
        }
    }
    // SAFETY:
    // - the caller's guarantee.
    unsafe { deallocate(arenas, ptr, slot_of_row(row), size, align) }
}

/// Resizes the arena block `ptr` of the arena in `slot` to `new_size` bytes at `align`, in the
/// same arena; null on failure (the block is then untouched).
///
/// # Safety
///
/// - `ptr` is a live block of that arena; `new_size` is non-zero;
/// - `arenas` are the calling thread's caches (or `None`).
pub(crate) unsafe fn reallocate(
    arenas: Option<&ThreadArenas>,
    ptr: *mut u8,
    slot: usize,
    new_size: usize,
    align: usize,
) -> *mut u8 {
    let flags = ffi::MALLOCX_ARENA(ARENA_INDEX[slot].load(Ordering::Relaxed) as usize)
        | tcache_flag(arenas, slot, 0, false)
        | align_flag(new_size, align);
    // SAFETY:
    // - the caller's guarantee; the flags as in `allocate`.
    unsafe { ffi::rallocx(ptr.cast(), new_size, flags) }.cast::<u8>()
}
