//! What the arenas hold, for readers: their figures ([`ArenaUsage`]) and which scope each serves
//! ([`ScopeArenaIndex`]). Cold; the threads' tables are walked by a function the caller passes
//! (the composition point, `crate::thread`, keeps them).

use core::sync::atomic::Ordering;

use super::region::{reserved_bytes, CHUNKS_USED};
use super::{ThreadArenas, ARENAS, ARENA_INDEX, MAX_ARENAS, ROW_SCOPE, SHARED_LIVE, TCACHES};
use crate::books::id::ScopeId;
use crate::registry;

/// Calls the function it is given with the caches of every thread table ever made: how the
/// readers here see the tables, which the composition point (`crate::thread`) keeps.
pub(crate) type EachTable<'a> = &'a mut dyn FnMut(&ThreadArenas);

/// Live blocks in the arenas (they carry no trailer), over the tables `for_each_table` walks.
pub(crate) fn live_blocks(for_each_table: impl FnOnce(EachTable<'_>)) -> u64 {
    let mut live = SHARED_LIVE.load(Ordering::Relaxed);
    for_each_table(&mut |table| live += table.front().live());
    live.max(0) as u64
}

/// Bytes of freed blocks held in the front caches of the tables `for_each_table` walks and in the
/// transfer caches.
pub(crate) fn cached_bytes(for_each_table: impl FnOnce(EachTable<'_>)) -> u64 {
    let mut bytes = super::thread::transfer_bytes() as u64;
    for_each_table(&mut |table| bytes += table.front().held_bytes() as u64);
    bytes
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
    /// Chunks of `memledger::arenas::CHUNK_SIZE` handed to arenas (address space, not memory).
    pub chunks: usize,
    /// Live blocks held in the arenas.
    pub live_blocks: u64,
    /// Bytes of freed arena blocks held in the threads' front caches, over all threads: at most
    /// `memledger::arenas::FRONT_BYTES` per thread table.
    pub front_cache_bytes: usize,
    /// Bytes of freed arena blocks held in the transfer caches, on their way from the threads that
    /// freed them to the threads that allocate in their arena: at most
    /// `memledger::arenas::TRANSFER_BYTES` over all of them.
    pub transfer_cache_bytes: usize,
    /// Address space reserved for the arenas once the first arena is made:
    /// `memledger::arenas::REGION_SIZE`, or less where the system allows less.
    pub reserved_bytes: usize,
}

/// Counts what the arenas hold, over the tables `for_each_table` walks (it is called twice).
pub(crate) fn usage(for_each_table: impl Fn(EachTable<'_>)) -> ArenaUsage {
    let mut tables = 0;
    let mut front_cache_bytes = 0;
    for_each_table(&mut |table| {
        tables += 1;
        front_cache_bytes += table.front().held_bytes();
    });
    ArenaUsage {
        arenas: ARENAS.load(Ordering::Relaxed),
        thread_caches: TCACHES.load(Ordering::Relaxed),
        thread_tables: tables,
        chunks: CHUNKS_USED.load(Ordering::Relaxed),
        live_blocks: live_blocks(for_each_table),
        front_cache_bytes,
        transfer_cache_bytes: super::thread::transfer_bytes(),
        reserved_bytes: reserved_bytes(),
    }
}

/// The arenas made so far: slot, jemalloc's index, and the scope served.
fn arenas() -> Vec<(usize, u32, ScopeId)> {
    (0..ARENAS.load(Ordering::Acquire).min(MAX_ARENAS))
        .map(|slot| {
            (
                slot,
                ARENA_INDEX[slot].load(Ordering::Relaxed),
                ROW_SCOPE[slot + 1].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// jemalloc's index of every arena made so far, without resolving the scopes' paths.
pub(crate) fn indexes() -> Vec<u32> {
    arenas().into_iter().map(|(_, index, _)| index).collect()
}

/// Every arena made so far, with the scope it serves and jemalloc's index for it, as
/// `memledger::arenas::list` gives it.
pub(crate) fn list() -> Vec<ScopeArenaIndex> {
    let arenas = arenas();
    let paths: Vec<String> = registry::with_registry(|registry| {
        arenas
            .iter()
            .map(|&(_, _, scope)| registry.path(scope))
            .collect()
    });
    arenas
        .into_iter()
        .zip(paths)
        .map(|((_, index, _), scope)| ScopeArenaIndex {
            scope,
            jemalloc_index: index,
        })
        .collect()
}

/// Which jemalloc arena holds the arena blocks of which scope (see `memledger::arenas::list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeArenaIndex {
    /// The scope's path.
    pub scope: String,
    /// jemalloc's index of the arena (`stats.arenas.<i>`).
    pub jemalloc_index: u32,
}
