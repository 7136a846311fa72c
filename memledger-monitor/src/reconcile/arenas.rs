//! The scope arenas' layer: jemalloc's own statistics for each arena that holds one scope's full
//! blocks under `memledger::ArenaLedger`. Empty under any other allocator.

use super::ScopeArena;

/// jemalloc's statistics per scope arena, as of the allocator reading's epoch.
pub(super) fn read() -> Vec<ScopeArena> {
    let arenas = memledger::__private::scope_arenas();
    if arenas.is_empty() {
        return Vec::new();
    }
    imp::read(arenas)
}

#[cfg(feature = "jemalloc")]
mod imp {
    use super::ScopeArena;

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
