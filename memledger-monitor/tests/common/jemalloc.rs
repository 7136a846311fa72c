//! jemalloc's own figures, read by the soak tests directly (`mallctl`, `nallocx`), apart from the
//! monitor's reconciliation: a second source to check the books and the reconciliation against.

// Each soak binary uses part of it.
#![allow(dead_code)]

use tikv_jemalloc_sys as ffi;

/// Refreshes jemalloc's statistics (`epoch`), as every reading below needs.
pub fn refresh() {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc's epoch advances");
}

/// A `size_t` statistic or setting by name (without the NUL).
pub fn size(name: &str) -> u64 {
    let key = format!("{name}\0");
    // SAFETY:
    // - every name read here is a `size_t`, and the key is NUL-terminated.
    unsafe { tikv_jemalloc_ctl::raw::read::<usize>(key.as_bytes()) }
        .unwrap_or_else(|e| panic!("jemalloc's {name}: {e}")) as u64
}

/// A `uint64_t` statistic by name (without the NUL).
pub fn count(name: &str) -> u64 {
    let key = format!("{name}\0");
    // SAFETY:
    // - every name read here is a `uint64_t`, and the key is NUL-terminated.
    unsafe { tikv_jemalloc_ctl::raw::read::<u64>(key.as_bytes()) }
        .unwrap_or_else(|e| panic!("jemalloc's {name}: {e}"))
}

/// An `unsigned` setting by name (without the NUL).
pub fn unsigned(name: &str) -> u64 {
    let key = format!("{name}\0");
    // SAFETY:
    // - every name read here is an `unsigned`, and the key is NUL-terminated.
    u64::from(
        unsafe { tikv_jemalloc_ctl::raw::read::<u32>(key.as_bytes()) }
            .unwrap_or_else(|e| panic!("jemalloc's {name}: {e}")),
    )
}

/// The index of the arena that holds the live block `ptr` (`arenas.lookup`).
pub fn arena_of(ptr: usize) -> u32 {
    let mut index: u32 = 0;
    let mut len = core::mem::size_of::<u32>();
    let mut block = ptr as *mut core::ffi::c_void;
    // SAFETY:
    // - "arenas.lookup" takes a `void *` (the block) and writes an `unsigned`; `block`, `index`
    //   and `len` are valid for those sizes; `ptr` is a live block of jemalloc's.
    let failed = unsafe {
        ffi::mallctl(
            c"arenas.lookup".as_ptr(),
            core::ptr::addr_of_mut!(index).cast(),
            &mut len,
            core::ptr::addr_of_mut!(block).cast(),
            core::mem::size_of::<*mut core::ffi::c_void>(),
        )
    };
    assert_eq!(failed, 0, "arenas.lookup of {ptr:#x}");
    index
}

/// The size class jemalloc gives `size` bytes at `align` (`nallocx`).
pub fn class(size: usize, align: usize) -> u64 {
    // SAFETY:
    // - `nallocx` only computes; a non-zero size and a power-of-two alignment are valid.
    let class = unsafe { ffi::nallocx(size, ffi::MALLOCX_ALIGN(align)) };
    assert_ne!(class, 0, "nallocx({size}, {align})");
    class as u64
}

/// jemalloc's automatic arenas (`opt.narenas`): the indexes below it.
pub fn automatic_arenas() -> u32 {
    unsigned("opt.narenas") as u32
}

/// One arena's figures (`stats.arenas.<i>.*`, after [`refresh`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arena {
    /// Blocks out of the arena, blocks cached in thread caches included: small and large
    /// `nmalloc - ndalloc`.
    pub blocks: u64,
    /// Their bytes in size classes: `small.allocated + large.allocated`.
    pub allocated: u64,
    /// `resident`: the arena's resident pages, metadata included.
    pub resident: u64,
    /// `mapped`.
    pub mapped: u64,
}

impl Arena {
    pub fn read(index: u32) -> Arena {
        let stat = |name: &str| format!("stats.arenas.{index}.{name}");
        let blocks = count(&stat("small.nmalloc")) + count(&stat("large.nmalloc"))
            - count(&stat("small.ndalloc"))
            - count(&stat("large.ndalloc"));
        Arena {
            blocks,
            allocated: size(&stat("small.allocated")) + size(&stat("large.allocated")),
            resident: size(&stat("resident")),
            mapped: size(&stat("mapped")),
        }
    }
}

/// The most bytes one jemalloc thread cache can hold, from jemalloc's settings as its
/// `tcache_ncached_max_compute` (`src/tcache.c`) uses them: each small class holds its slab's
/// blocks (`arenas.bin.<i>.nregs`) times 2^`opt.lg_tcache_nslots_mul`, rounded up to even and
/// kept within `opt.tcache_nslots_small_min` and `_max`; each large class up to `opt.tcache_max`
/// holds `opt.tcache_nslots_large`. (A `tcache_ncached_max` in `MALLOC_CONF` would override it.)
pub fn thread_cache_bound() -> u64 {
    let (small_min, small_max) = (
        unsigned("opt.tcache_nslots_small_min"),
        unsigned("opt.tcache_nslots_small_max"),
    );
    // SAFETY:
    // - "opt.lg_tcache_nslots_mul" is a `ssize_t`.
    let mul = unsafe { tikv_jemalloc_ctl::raw::read::<isize>(b"opt.lg_tcache_nslots_mul\0") }
        .expect("jemalloc's opt.lg_tcache_nslots_mul");
    let large_slots = unsigned("opt.tcache_nslots_large");
    let tcache_max = size("opt.tcache_max");
    let small: u64 = (0..unsigned("arenas.nbins"))
        .map(|i| {
            let nregs = unsigned(&format!("arenas.bin.{i}.nregs"));
            let candidate = if mul < 0 { nregs >> -mul } else { nregs << mul };
            let slots = (candidate + candidate % 2).clamp(small_min, small_max);
            size(&format!("arenas.bin.{i}.size")) * slots
        })
        .sum();
    let large: u64 = (0..unsigned("arenas.nlextents"))
        .map(|i| size(&format!("arenas.lextent.{i}.size")))
        .take_while(|&s| s <= tcache_max)
        .map(|s| s * large_slots)
        .sum();
    small + large
}
