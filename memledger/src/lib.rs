//! A ledger of heap memory per component.
//!
//! `memledger` is a wrapper [`#[global_allocator]`](core::alloc::GlobalAlloc) that books every heap block to
//! the *scope* that allocated it. Scopes are set per thread by guards; the books say, for each
//! scope, how many bytes it holds now, its high-water mark, and how many blocks it allocated,
//! freed and resized: exactly, to the byte, whichever thread frees a block and in whatever scope.
//!
//! # Quick start
//!
//! Install the ledger over jemalloc (or `std::alloc::System`):
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
//!     memledger::Ledger::new(tikv_jemallocator::Jemalloc);
//! # fn main() {}
//! ```
//!
//! Scope the components:
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
//! # use std::collections::HashMap;
//! fn build_project_index(files: usize) -> HashMap<String, Vec<u32>> {
//!     let _g = memledger::scope!("project_indexes"); // booked to "project_indexes" until `_g` drops
//!     let mut index = HashMap::new();
//!     for file in 0..files as u32 {
//!         index.entry(format!("symbol_{}", file % 100)).or_insert_with(Vec::new).push(file);
//!     }
//!     index
//! }
//!
//! # fn main() {
//! let global = memledger::in_scope("global_index", || vec![0u64; 10_000]); // closure form
//! let project = build_project_index(1_000);
//!
//! let snap: memledger::Snapshot = memledger::snapshot();
//! let s: &memledger::ScopeStats = snap.scope("project_indexes").unwrap();
//! println!("{} live bytes, {} at peak, {} allocations, {} frees",
//!          s.live_bytes, s.peak_bytes, s.allocations, s.deallocations);
//! assert!(s.live_bytes >= 1_000 * 4);
//! assert_eq!(snap.scope("global_index").unwrap().live_bytes, 80_000);
//! println!("{snap}"); // the whole breakdown as a table
//!
//! drop(project); // frees are credited to "project_indexes", wherever they happen
//! assert_eq!(memledger::snapshot().scope("project_indexes").unwrap().live_bytes, 0);
//! # drop(global);
//! # }
//! ```
//!
//! # Scopes
//!
//! - Scopes nest: `scope!("parse")` entered inside `scope!("project_indexes")` books to
//!   `project_indexes/parse`. [`Snapshot::subtree`] sums a scope and its descendants.
//! - Outside every guard, blocks are booked to the unscoped root (path [`UNSCOPED`], `""`).
//! - A block stays booked to its owner until it is freed, on any thread, in any scope; `realloc`
//!   keeps it with its owner at the new size.
//! - The crate's own memory (its registry, per-thread counters, snapshots) is booked to
//!   [`OWN_SCOPE`], so nothing is hidden.
//! - There is room for [`MAX_SCOPES`] scopes (four are reserved). Past that, entering a new scope
//!   books to [`OVERFLOW_SCOPE`] and counts a refusal ([`Snapshot::refused_scopes`]): never a
//!   panic.
//!
//! # Beside the facade
//!
//! This crate owns the books and gives them out as [`Snapshot`]s; what reads them lives in crates
//! beside it, so that a library that only marks its components compiles nothing else:
//!
//! - `memledger-monitor`: the reconciliation against jemalloc's stats, the RSS and the cgroup,
//!   the sampler (history, growth rates and suspected leaks, budgets and their status), JSON and
//!   recordings of runs.
//! - `memledger-report`: a recording as one self-contained HTML page, and the `memledger-report`
//!   command.
//! - `memledger-metrics`, `memledger-tracing`, `memledger-criterion`: every tick through the
//!   `metrics` facade; a `tracing_subscriber` layer that enters a span's scope; criterion
//!   measurements of a routine's bytes.
//!
//! # Where in a component
//!
//! [`sampling`] samples about one block per 512 KiB allocated with its call stack, so that each
//! scope's memory is split by the code that allocated it (`memledger_monitor::profile` resolves
//! and exports it). An allocation that is not sampled costs nothing more.
//!
//! # Limits on a scope
//!
//! With the `enforce` feature, [`limit_scope`] makes allocations past a scope's hard limit fail.
//!
//! # Scopes that follow the work
//!
//! Guards are per thread; work that moves between threads keeps its scope with:
//!
//! - [`ScopeExt::in_scope`]: wraps a future so that every poll (and its drop) runs in the scope,
//!   on whichever thread the runtime polls it, in the style of tracing's `Instrument`.
//! - [`ScopeHandle`]: a `Copy + Send` handle to a scope that any thread, or a pool such as rayon,
//!   can enter, so that handed-over work stays booked to the component that handed it over.
//!
//! # Measuring a component
//!
//! [`measure`] runs a closure in a scope of its own and returns its [`Footprint`]: bytes and
//! blocks allocated and freed, the peak and what is still live, per scope and in total, counting
//! only that work even while other threads allocate elsewhere.
//!
//! # Guarantees
//!
//! The allocation path takes no lock, allocates nothing through the global allocator and never
//! panics. An ordinary allocation or free writes only a counter cell of the calling thread, with
//! one load, add, comparison and store against the cell's byte budget; once per 64 KiB of a
//! thread's traffic in a scope (and on every operation on a block of 64 KiB or more) it takes a
//! cold path that refills the budget, and that writes the scope's shared total (one atomic add)
//! only if the thread's net bytes there moved by 32 KiB or more. A steady churn writes no shared
//! cache line at all.
//! Blocks allocated and freed during and after thread-local teardown, and on threads made by C
//! code, are still booked exactly. A program that starts and ends any number of threads holds
//! counters only for the largest number alive at once.
//!
//! [`ScopeStats`] documents exactly when each figure is exact.
//!
//! # Limits
//!
//! - Guards are per thread and `!Send`: a guard held across an `.await` would book other tasks
//!   polled on that thread to its scope. Wrap the future with [`ScopeExt::in_scope`] instead.
//! - After `fork()`, the child keeps the parent's books and keeps working (the crate's locks are
//!   closed across the fork); the parent's samplers have no thread there, so start a new one.
//! - The hot path reads a `const` thread-local: targets without native thread-local storage are
//!   not supported.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod books;
mod error;
mod future;
mod ledger;
mod limit;
mod measure;
mod owner;
mod registry;
pub mod sampling;
mod scope;
mod snapshot;
mod sys;
mod thread;
mod units;

pub use crate::books::id::{MAX_SCOPES, OVERFLOW_SCOPE, OWN_SCOPE, UNSCOPED};
pub use crate::error::Error;
pub use crate::future::{InScope, ScopeExt};
pub use crate::ledger::{Ledger, TrailerOnly};
pub use crate::limit::limit_scope;
pub use crate::measure::{measure, Footprint, Measured, ScopeFootprint};
pub use crate::units::HumanBytes;

/// The scope arenas of `Ledger<Jemalloc>` (feature `arenas`, Linux): where blocks of up to 16 KiB
/// and larger blocks that fill their size class live, and what they hold.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
///
/// fn main() {
///     // A block of up to 16 KiB lives in the arena of its scope.
///     let page: Vec<u8> = memledger::in_scope("pages", || vec![0; 4096]);
///     assert_eq!(memledger::snapshot().scope("pages").unwrap().live_bytes, 4096);
///     assert!(memledger::arenas::list().iter().any(|a| a.scope == "pages"));
///     drop(page);
/// }
/// ```
///
/// # Limits
///
/// - At most `max_arenas` arenas (64 unless [`Ledger::with_arena_limits`] says otherwise, at most
///   [`MAX_ARENAS`](arenas::MAX_ARENAS)); the unscoped root usually takes the first. A scope that
///   asks after them keeps the trailer for its blocks (the trailer's memory cost, still exact). The
///   crate's own scope never has one.
/// - At most `thread_caches` explicit jemalloc caches per thread (default 8); past them a thread
///   allocates and frees in further arenas without a cache (exact, slower). Tables of caches are
///   reused by later threads, so their number is bounded by the threads alive at once.
/// - Each thread's front cache of freed arena blocks holds at most
///   [`FRONT_BYTES`](arenas::FRONT_BYTES), counted in size classes, of blocks up to 16 KiB; past
///   that, its stacks go in batches to the transfer caches of their arena and class, where the
///   threads that allocate in that arena take them (memory built on one thread and freed on
///   another thus comes back to its builder without a call into jemalloc). The transfer caches
///   hold at most [`TRANSFER_BYTES`](arenas::TRANSFER_BYTES) together, past which the blocks go to
///   jemalloc; what they hold goes back to jemalloc once a second while any thread allocates
///   ([`trim`](arenas::trim) does it at once). A front cache is emptied when its thread exits.
/// - The arenas' memory comes from one reservation of [`REGION_SIZE`](arenas::REGION_SIZE) of
///   address space (`MAP_NORESERVE`, so only used pages cost memory), or of a quarter, a
///   sixteenth... down to 4 GiB where the system refuses more. If none can be reserved (a strict
///   overcommit policy, an address-space limit), every block takes the trailer; once the
///   reservation is used up, new blocks take the trailer too.
/// - Arenas are never destroyed: an idle arena keeps its metadata and the retained address space
///   of its peak. Its dirty pages go back to the kernel on jemalloc's schedule (`dirty_decay_ms`,
///   10 s by default) even when nothing allocates from it any more: while any thread allocates,
///   the books' cold path advances the decay of every scope arena, once a second at most (a
///   sampler's tick does too). `BENCHMARKS.md` has the measured costs.
/// - A scope with an enforced limit (feature `enforce`) or in exact mode takes the trailer for
///   its new blocks, as do layouts aligned to more than 16 (or to 16 below 16 bytes).
#[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
pub mod arenas {
    pub use crate::owner::arena::usage::{ArenaUsage, ScopeArenaIndex};
    pub use crate::owner::arena::{
        CHUNK_SIZE, FRONT_BYTES, MAX_ARENAS, REGION_SIZE, TRANSFER_BYTES,
    };

    /// What the arenas hold: arenas, caches, thread tables, chunks, live blocks and the front and
    /// transfer caches' bytes.
    pub fn usage() -> ArenaUsage {
        crate::owner::arena::usage::usage(crate::thread::slab::for_each_arenas)
    }

    /// Every arena made so far, with the scope it serves and jemalloc's index for it
    /// (`stats.arenas.<i>`). `memledger_monitor::Reconciliation::scope_arenas` reads jemalloc's
    /// statistics for each: they cover the scope's arena blocks only, since its blocks with a
    /// trailer live in jemalloc's ordinary arenas.
    pub fn list() -> Vec<ScopeArenaIndex> {
        crate::owner::arena::usage::list()
    }

    /// Gives every block the transfer caches hold back to jemalloc now, rather than on the next
    /// second's tick, and every block of the calling thread's front cache (other threads' front
    /// caches are their own, emptied when they are full or exit).
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
    ///
    /// fn main() {
    ///     let text: Vec<String> = memledger::in_scope("text", || (0..1000).map(|i| i.to_string()).collect());
    ///     drop(text);
    ///     memledger::arenas::trim();
    ///     let usage = memledger::arenas::usage();
    ///     assert_eq!(usage.transfer_cache_bytes, 0);
    /// }
    /// ```
    pub fn trim() {
        crate::owner::arena::trim(crate::ledger::thread_arenas());
    }
}
pub use crate::scope::{current_scope, enter, in_scope, ScopeGuard, ScopeHandle};
pub use crate::snapshot::{snapshot, ScopeDiff, ScopeStats, Snapshot, SnapshotDiff, SubtreeStats};

/// jemalloc, re-exported for `Ledger<memledger::Jemalloc>` (feature `jemalloc`, on by default).
#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc;

/// The seam between the facade and the crates beside it (`memledger-monitor` and the
/// integrations), and support for the crate's macros. Not public API: it may change in any
/// release, and those crates pin the facade's exact version. A [`ForkGate`](__private::ForkGate)
/// must be dropped, never forgotten: its thread would stay inside the gate and forks from it would
/// go ahead unguarded.
#[doc(hidden)]
pub mod __private {
    // Support for the crate's macros.
    pub use crate::scope::CallSite;

    // Figures for people, in one form for every crate.
    pub use crate::units::{human_bytes, percent};

    // Paths and scopes, for the integrations.
    pub use crate::books::id::normalize;
    pub use crate::measure::in_subtree;

    // Control of the books, for the monitor's samplers and the criterion measurements.
    pub use crate::limit::{override_limit, release_limits};

    // The fork gate, for every crate that keeps a lock or a thread.
    pub use crate::sys::fork::{gate as fork_gate, join_unless_forked, Gate as ForkGate};

    /// Bytes a block's trailer takes.
    pub const TRAILER_SIZE: usize = crate::owner::trailer::TRAILER_SIZE;

    /// Enters the crate's own scope ([`OWN_SCOPE`](crate::OWN_SCOPE)), where the crates beside
    /// it book their bookkeeping too.
    pub fn own_scope() -> crate::ScopeGuard {
        crate::ScopeGuard::own()
    }

    /// Restarts the peak of `scope` at its live bytes (see [`measure`](crate::measure) for its
    /// exactness). Cold: never on the allocation path.
    pub fn restart_peak(scope: crate::ScopeHandle) {
        crate::thread::cold::restart_peak(scope.id());
    }

    /// Address space mapped for the threads' counter slabs (0 where they come from the inner
    /// allocator); only the pages threads wrote are resident. For the reconciliation.
    pub fn mapped_slab_bytes() -> u64 {
        crate::thread::slab::mapped_bytes()
    }

    /// Live blocks that carry no trailer (the arenas' blocks, and blocks the books could not
    /// tag). For the reconciliation.
    pub fn blocks_without_trailer() -> u64 {
        crate::books::shared::untagged_blocks()
            + crate::owner::arena::usage::live_blocks(crate::thread::slab::for_each_arenas)
    }

    /// Bytes of freed arena blocks held for reuse in the threads' front caches and the transfer
    /// caches (0 without the `arenas` feature). For the reconciliation.
    pub fn cached_arena_bytes() -> u64 {
        crate::owner::arena::usage::cached_bytes(crate::thread::slab::for_each_arenas)
    }

    /// jemalloc's index of every scope arena made so far, without their scopes' paths (which take
    /// the registry's lock). Empty without the `arenas` feature. For the reconciliation.
    pub fn arena_indexes() -> Vec<u32> {
        crate::owner::arena::usage::indexes()
    }

    /// Every scope arena made so far: the scope's path and jemalloc's index of the arena. Empty
    /// without the `arenas` feature. For the reconciliation.
    pub fn scope_arenas() -> Vec<(String, u32)> {
        crate::owner::arena::usage::list()
            .into_iter()
            .map(|arena| (arena.scope, arena.jemalloc_index))
            .collect()
    }

    /// Gives the calling thread's counter slab back, exactly as thread-local teardown does; the
    /// thread then books through the shared per-scope atomics. Lets tests reach that path
    /// deterministically, since the order of thread-local destructors is the platform's.
    pub fn release_thread_slab() {
        crate::thread::slab::release_thread_slab();
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
