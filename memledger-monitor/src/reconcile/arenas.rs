//! The scope arenas' layer: jemalloc's own statistics for each arena that holds one scope's full
//! blocks under `Ledger<Jemalloc>` with scope arenas (`memledger::arenas`). Empty under any other
//! allocator.
//!
//! And their decay: jemalloc returns an arena's dirty pages to the kernel only as a side effect of
//! operations on that arena, so a scope arena that its threads stopped using keeps the pages of
//! its last burst for as long as the process lives. The sampler's tick advances their decay
//! ([`decay`]), so they are returned on jemalloc's own schedule (`dirty_decay_ms`, 10 s by
//! default) as an automatic arena's would be.

use super::ScopeArena;

/// jemalloc's statistics per scope arena, as of the allocator reading's epoch.
pub(super) fn read() -> Vec<ScopeArena> {
    let arenas = memledger::__private::scope_arenas();
    if arenas.is_empty() {
        return Vec::new();
    }
    imp::read(arenas)
}

/// Advances the decay of every arena, jemalloc's automatic ones included, which the scope arenas
/// and the ledger's front caches leave with little traffic of their own: the dirty pages past
/// jemalloc's decay curve go back to the kernel. One `mallctl` ("arena.<MALLCTL_ARENAS_ALL>"
/// stands for all); nothing without scope arenas.
pub(crate) fn decay() {
    if !memledger::__private::arena_indexes().is_empty() {
        imp::decay(4096);
    }
}

#[cfg(feature = "jemalloc")]
mod imp {
    use super::ScopeArena;

    pub(super) fn decay(index: u32) {
        let key = format!("arena.{index}.decay\0");
        // A failure leaves the arena as it was: there is nothing to report.
        // SAFETY:
        // - "arena.<i>.decay" takes and returns nothing: null pointers and a zero length;
        // - the key is NUL-terminated and names an arena that exists (arenas are never destroyed)
        //   or all of them.
        let _ = unsafe {
            tikv_jemalloc_sys::mallctl(
                key.as_ptr().cast(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
            )
        };
    }

    /// A `size_t` statistic of arena `index`, if it can be read.
    fn stat(index: u32, name: &str) -> Option<u64> {
        let key = format!("stats.arenas.{index}.{name}\0");
        // SAFETY:
        // - every statistic read here is a `size_t`, and the key is NUL-terminated.
        unsafe { tikv_jemalloc_ctl::raw::read::<usize>(key.as_bytes()) }
            .ok()
            .map(|v| v as u64)
    }

    /// jemalloc's page size (`arenas.page`), 4096 if it cannot be read.
    fn page_size() -> u64 {
        // SAFETY:
        // - "arenas.page" is a `size_t`.
        unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"arenas.page\0") }
            .map_or(4096, |p| p as u64)
    }

    pub(super) fn read(arenas: Vec<(String, u32)>) -> Vec<ScopeArena> {
        let page = page_size();
        arenas
            .into_iter()
            .map(|(scope, index)| {
                let small = stat(index, "small.allocated");
                let large = stat(index, "large.allocated");
                ScopeArena {
                    scope,
                    jemalloc_index: index,
                    allocated: small.zip(large).map(|(s, l)| s + l),
                    active: stat(index, "pactive").map(|p| p * page),
                    resident: stat(index, "resident"),
                    mapped: stat(index, "mapped"),
                    metadata: stat(index, "base"),
                }
            })
            .collect()
    }
}

#[cfg(not(feature = "jemalloc"))]
mod imp {
    use super::ScopeArena;

    /// Without jemalloc's interface built, the arenas decay as jemalloc schedules it.
    pub(super) fn decay(_index: u32) {}

    /// Without jemalloc's statistics built, each arena is named with no figures.
    pub(super) fn read(arenas: Vec<(String, u32)>) -> Vec<ScopeArena> {
        arenas
            .into_iter()
            .map(|(scope, index)| ScopeArena {
                scope,
                jemalloc_index: index,
                allocated: None,
                active: None,
                resident: None,
                mapped: None,
                metadata: None,
            })
            .collect()
    }
}
