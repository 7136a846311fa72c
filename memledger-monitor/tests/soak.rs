//! The soak test over the default `Ledger<Jemalloc>`, with its scope arenas (the body is
//! `tests/common/soak.rs`). Beyond the books, it reads the arenas' own figures from jemalloc
//! directly (`stats.arenas.<i>.*`, and `arenas.lookup` for which arena holds each live block):
//!
//! - every sampler reading: the ledger and its tags within jemalloc's `allocated`;
//! - at each round's end, with the workers alive: each soak arena holds at least its live blocks,
//!   and the bytes cached over them (front, transfer and explicit thread caches) stay within
//!   `FRONT_BYTES` per thread table, `TRANSFER_BYTES` and jemalloc's own bound per thread cache;
//!   at most 8 explicit caches per thread table (`Ledger::new`'s limit);
//! - after the workers exited (their caches given back): what the soak arenas hold beyond their
//!   live blocks is within the transfer caches' and this thread's front cache's bytes, which
//!   `arenas::trim` then gives back;
//!   every live block in a scope arena
//!   belongs to that arena's scope and is aligned to 16 at most; each soak arena's blocks and bytes
//!   equal, exactly, those of the live blocks jemalloc places in it; those blocks and the scope's
//!   blocks outside the arenas make up the books' live blocks of the scope; the reconciliation's
//!   per-scope arena figures are jemalloc's; thread tables do not grow from round to round; and
//!   no arena's resident bytes pass twice the most live bytes one scope has held at these points,
//!   plus 4 MiB;
//! - at the end, every block freed and the main thread's and the transfer caches given back: the
//!   soak arenas hold nothing.
//!
//! Ignored by default; run it with
//! `MEMLEDGER_SOAK_SECS=300 cargo test --release -p memledger-monitor --all-features --features memledger/arenas --test soak -- --ignored --nocapture`
//! (default 60 s). CI runs it for 20 s.
#![cfg(target_os = "linux")]

use std::collections::HashMap;

use memledger::arenas::{FRONT_BYTES, TRANSFER_BYTES};
use memledger_monitor::Reconciliation;

/// The exactness suite's reference ledger and random programs, shared with `memledger`'s tests.
#[path = "../../memledger/tests/common/mod.rs"]
mod common;
#[path = "common/jemalloc.rs"]
mod jemalloc;
#[path = "common/soak.rs"]
mod soak;

use soak::Held;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

/// Explicit jemalloc caches per thread table: `Ledger::new`'s limit.
const CACHES_PER_THREAD: usize = 8;

/// Whether a block of `size` bytes at `align` is allocated in a scope arena, or moved into one by
/// a resize (the rule of `memledger::arenas`, with jemalloc's `nallocx` for the size classes):
/// alignment at most 16 (8 below 16 bytes), and up to 16 KiB or filling its class (fewer than the
/// trailer's 2 spare bytes). An arena block resized to any size stays in its arena.
fn goes_to_an_arena(size: usize, align: usize) -> bool {
    let aligned = align <= 8 || (align <= 16 && size >= 16);
    aligned
        && (size <= 16 * 1024
            || jemalloc::class(size, align) - (size as u64)
                < memledger::__private::TRAILER_SIZE as u64)
}

/// Where jemalloc places the live blocks: per soak scope, the blocks in its arena (count, bytes in
/// size classes) and outside the arenas (count, and how many of those could have been in one).
#[derive(Default)]
struct Placement {
    /// Per soak scope: jemalloc's index of its arena, if it has one.
    arena: Vec<Option<u32>>,
    in_arena_blocks: Vec<u64>,
    in_arena_class_bytes: Vec<u64>,
    outside_blocks: Vec<u64>,
    outside_bytes: Vec<u64>,
    /// Blocks outside the arenas that the rule allows in one: sampled blocks take the trailer, as
    /// do blocks allocated while another thread was making their scope's arena.
    outside_eligible: u64,
}

impl Placement {
    /// Looks every live block up in jemalloc, and asserts that a block in a scope arena belongs to
    /// that arena's scope and may live there.
    fn of(scopes: &[String], live: &[Held]) -> Placement {
        let by_index: HashMap<u32, String> = memledger::arenas::list()
            .into_iter()
            .map(|a| (a.jemalloc_index, a.scope))
            .collect();
        let n = scopes.len();
        let mut p = Placement {
            arena: scopes
                .iter()
                .map(|s| by_index.iter().find(|(_, v)| *v == s).map(|(&i, _)| i))
                .collect(),
            in_arena_blocks: vec![0; n],
            in_arena_class_bytes: vec![0; n],
            outside_blocks: vec![0; n],
            outside_bytes: vec![0; n],
            outside_eligible: 0,
        };
        let automatic = jemalloc::automatic_arenas();
        for held in live {
            let (size, align) = (held.block.layout.size(), held.block.layout.align());
            let index = jemalloc::arena_of(held.block.ptr);
            match by_index.get(&index) {
                Some(owner) => {
                    assert_eq!(
                        *owner, scopes[held.scope],
                        "a block of {} lives in the arena of {owner}",
                        scopes[held.scope]
                    );
                    assert!(
                        align <= 16,
                        "a block of {size} B at {align} lives in a scope arena"
                    );
                    p.in_arena_blocks[held.scope] += 1;
                    p.in_arena_class_bytes[held.scope] += jemalloc::class(size, align);
                }
                None => {
                    assert!(
                        index < automatic,
                        "a block of {} lives in arena {index}, neither automatic nor a scope's",
                        scopes[held.scope]
                    );
                    p.outside_blocks[held.scope] += 1;
                    p.outside_bytes[held.scope] += size as u64;
                    p.outside_eligible += u64::from(goes_to_an_arena(size, align));
                }
            }
        }
        p
    }
}

#[derive(Default)]
struct ArenaChecks {
    /// The most bytes one jemalloc thread cache holds, from its settings.
    cache_bound: u64,
    /// The largest bytes cached over the soak arenas at a pause, and the bound it was held to.
    most_cached: u64,
    cached_bound: u64,
    /// Thread tables and explicit caches after the first round and at the last check.
    tables: Option<usize>,
    last_usage: memledger::arenas::ArenaUsage,
    /// At the last quiescent point: blocks and bytes in the soak arenas, blocks outside.
    in_arenas: (u64, u64),
    outside: (u64, u64),
    /// The largest of the soak arenas' resident bytes at a quiescent point, and its bound.
    most_resident: u64,
    resident_bound: u64,
    /// The most live bytes one scope held at a quiescent point (the workload's peak, as seen).
    peak_scope_bytes: u64,
    arenas_checked: usize,
}

impl soak::Checks for ArenaChecks {
    fn reading(&mut self, r: &Reconciliation) {
        soak::ledger_within_allocated(r);
    }

    fn paused(&mut self, _round: usize, scopes: &[String], live: &[Held]) {
        if self.cache_bound == 0 {
            self.cache_bound = jemalloc::thread_cache_bound();
        }
        let placement = Placement::of(scopes, live);
        jemalloc::refresh();
        let usage = memledger::arenas::usage();
        let mut cached = 0;
        for (i, arena) in placement.arena.iter().enumerate() {
            let Some(index) = *arena else { continue };
            let a = jemalloc::Arena::read(index);
            assert!(
                a.blocks >= placement.in_arena_blocks[i]
                    && a.allocated >= placement.in_arena_class_bytes[i],
                "{}: the arena holds fewer blocks than are live in it: {a:?}, {} blocks of {} B",
                scopes[i],
                placement.in_arena_blocks[i],
                placement.in_arena_class_bytes[i]
            );
            cached += a.allocated - placement.in_arena_class_bytes[i];
        }
        assert!(
            usage.thread_caches <= CACHES_PER_THREAD * usage.thread_tables,
            "{usage:?}: more than {CACHES_PER_THREAD} explicit caches per thread table"
        );
        // Freed blocks that jemalloc still counts as allocated sit in a front cache (at most
        // FRONT_BYTES per thread table), in a transfer cache (at most TRANSFER_BYTES over all) or
        // in an explicit jemalloc cache.
        let bound = (usage.thread_tables * FRONT_BYTES + TRANSFER_BYTES) as u64
            + usage.thread_caches as u64 * self.cache_bound;
        assert!(
            cached <= bound,
            "{cached} B cached over the soak arenas, above {bound} B ({usage:?})"
        );
        if cached >= self.most_cached {
            (self.most_cached, self.cached_bound) = (cached, bound);
        }
    }

    fn quiescent(&mut self, _round: usize, scopes: &[String], live: &[Held]) {
        let placement = Placement::of(scopes, live);
        // The workers exited: what jemalloc counts beyond the live blocks is in the transfer
        // caches or in this thread's front cache (the exited threads' are empty), which `trim`
        // then gives back.
        jemalloc::refresh();
        let usage = memledger::arenas::usage();
        let cached = (usage.transfer_cache_bytes + usage.front_cache_bytes) as u64;
        let mut beyond_live = 0;
        for (i, arena) in placement.arena.iter().enumerate() {
            if let Some(index) = *arena {
                beyond_live += jemalloc::Arena::read(index)
                    .allocated
                    .saturating_sub(placement.in_arena_class_bytes[i]);
            }
        }
        assert!(
            beyond_live <= cached,
            "{beyond_live} B held beyond the live blocks, more than the caches' {cached} B ({usage:?})"
        );
        memledger::arenas::trim();
        assert_eq!(memledger::arenas::usage().transfer_cache_bytes, 0);
        let snapshot = memledger::snapshot();
        let reconciliation = Reconciliation::capture().unwrap();
        jemalloc::refresh();
        let usage = memledger::arenas::usage();
        let (mut blocks, mut bytes, mut arenas) = (0, 0, 0);
        for (i, path) in scopes.iter().enumerate() {
            let books = snapshot.scope(path).expect("every soak scope has books");
            let Some(index) = placement.arena[i] else {
                assert_eq!(placement.in_arena_blocks[i], 0);
                continue;
            };
            let a = jemalloc::Arena::read(index);
            // The workers' caches went back at their exit: jemalloc's figures for the arena are
            // its live blocks, exactly.
            assert_eq!(
                (a.blocks, a.allocated),
                (
                    placement.in_arena_blocks[i],
                    placement.in_arena_class_bytes[i]
                ),
                "{path}: arena {index}'s blocks and bytes are not its live blocks'"
            );
            assert_eq!(
                books.live_blocks(),
                a.blocks + placement.outside_blocks[i],
                "{path}: the books' live blocks are not the arena's and the trailer's"
            );
            assert!(
                books.live_bytes - placement.outside_bytes[i] <= a.allocated,
                "{path}: the books' bytes in the arena exceed jemalloc's"
            );
            let seen = reconciliation
                .scope_arenas
                .iter()
                .find(|s| s.scope == *path)
                .expect("the reconciliation lists every scope arena");
            assert_eq!(
                (seen.jemalloc_index, seen.allocated),
                (index, Some(a.allocated)),
                "{path}: the reconciliation's arena figures are not jemalloc's"
            );
            // The workload's peak, as the quiescent points see it, bounds each arena's memory:
            // twice the most live bytes one scope held (room for fragmentation and for the pages
            // freed in the last 10 s, which jemalloc's decay has not returned yet), and 4 MiB for
            // the arena's metadata and partly used pages.
            self.peak_scope_bytes = self.peak_scope_bytes.max(books.live_bytes);
            let bound = 2 * self.peak_scope_bytes + 4 * 1024 * 1024;
            assert!(
                a.resident <= bound,
                "{path}: arena {index} holds {} B resident, above {bound} B",
                a.resident
            );
            if a.resident >= self.most_resident {
                (self.most_resident, self.resident_bound) = (a.resident, bound);
            }
            blocks += a.blocks;
            bytes += a.allocated;
            arenas += 1;
        }
        // Threads exited and new ones took their slabs: no more tables than the first round made.
        let first = *self.tables.get_or_insert(usage.thread_tables);
        assert!(
            usage.thread_tables <= first,
            "thread tables grew from {first} to {} ({usage:?})",
            usage.thread_tables
        );
        assert!(
            usage.thread_caches <= CACHES_PER_THREAD * usage.thread_tables,
            "{usage:?}: more than {CACHES_PER_THREAD} explicit caches per thread table"
        );
        self.last_usage = usage;
        self.in_arenas = (blocks, bytes);
        self.arenas_checked = arenas;
        self.outside = (
            placement.outside_blocks.iter().sum(),
            placement.outside_eligible,
        );
    }

    fn end(&mut self, scopes: &[String]) {
        // The main thread freed every block; its caches go back as at a thread's exit, and the
        // transfer caches' blocks with them.
        memledger::__private::release_thread_slab();
        memledger::arenas::trim();
        let by_scope: HashMap<String, u32> = memledger::arenas::list()
            .into_iter()
            .map(|a| (a.scope, a.jemalloc_index))
            .collect();
        jemalloc::refresh();
        for path in scopes {
            if let Some(&index) = by_scope.get(path) {
                let a = jemalloc::Arena::read(index);
                assert_eq!(
                    (a.blocks, a.allocated),
                    (0, 0),
                    "{path}: arena {index} holds blocks after every block was freed"
                );
            }
        }
    }

    fn summary(&self) -> String {
        let u = &self.last_usage;
        format!(
            "arenas: {} made, {} thread tables, {} explicit caches; at the pauses at most {} B \
             cached over the soak arenas (bound {} B); at the last quiescent point {} blocks \
             ({} B) in the {} soak arenas equal to jemalloc's, {} blocks outside ({} of them \
             allowed in an arena); arena resident at most {} B (bound {} B)",
            u.arenas,
            u.thread_tables,
            u.thread_caches,
            self.most_cached,
            self.cached_bound,
            self.in_arenas.0,
            self.in_arenas.1,
            self.arenas_checked,
            self.outside.0,
            self.outside.1,
            self.most_resident,
            self.resident_bound
        )
    }
}

#[test]
#[ignore = "minutes of load; CI runs it with a bound"]
fn soak() {
    soak::run(&mut ArenaChecks::default());
}
