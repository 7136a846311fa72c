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
//! - There is room for [`MAX_SCOPES`] scopes (three are reserved). Past that, entering a new scope
//!   books to [`OVERFLOW_SCOPE`] and counts a refusal ([`Snapshot::refused_scopes`]): never a
//!   panic.
//!
//! # Watching it
//!
//! - [`Reconciliation::capture`] puts the ledger beside jemalloc's stats ([`AllocatorStats`]), the
//!   process's RSS ([`ProcessMemory`]) and its cgroup ([`CgroupMemory`]), and names and sizes
//!   every gap between those layers ([`GapKind`]); what nothing explains is shown as the
//!   remainder.
//! - A [`Sampler`] does that on an interval in a background thread and streams [`Event`]s: each
//!   tick's [`Sample`] (snapshot, reconciliation, growth rates, suspected leaks and a [`Status`]
//!   against a [`Budget`]), level changes, suspected leaks and failed readings. It keeps a
//!   history ([`HistoryEntry`]) with a baseline and a per-scope diff ([`SnapshotDiff`]).
//!   [`monitor`] holds one process-wide sampler.
//! - [`ScopeBudget`]s give single scopes their own levels; with the `enforce` feature,
//!   [`limit_scope`] makes allocations past a scope's hard limit fail.
//! - With the `serde` feature (on by default) every figure serializes: [`to_json`],
//!   [`from_json`].
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
//! # fn main() -> Result<(), memledger::Error> {
//! let sampler = memledger::Sampler::builder()
//!     .budget(memledger::Budget::builder().total(16 << 30).build()?)
//!     .start()?;
//! let index = memledger::in_scope("global_index", || vec![1u8; 1 << 20]);
//! let sample = sampler.sample_now();
//! let reconciliation = sample.reconciliation.as_ref().unwrap();
//! assert!(reconciliation.ledger_bytes >= 1 << 20);
//! assert!(reconciliation.allocator.is_ok()); // jemalloc serves this program
//! assert!(sample.status.is_healthy());
//! println!("{reconciliation}\n{}", sample.status);
//! # drop(index);
//! # Ok(())
//! # }
//! ```
//!
//! # Scopes that follow the work
//!
//! Guards are per thread; work that moves between threads keeps its scope with:
//!
//! - [`ScopeExt::in_scope`]: wraps a future so that every poll (and its drop) runs in the scope,
//!   on whichever thread the runtime polls it, in the style of tracing's `Instrument`.
//! - [`ScopeHandle`]: a `Copy + Send` handle to a scope that any thread, or a pool such as rayon,
//!   can enter, so that handed-over work stays booked to the component that handed it over.
//! - `tracing::ScopeLayer` (feature `tracing`): a `tracing_subscriber` layer
//!   that enters a span's scope while the span is entered, named by its `mem.scope` field or by
//!   the span's name.
//!
//! # Measuring a component
//!
//! - [`measure`] runs a closure in a scope of its own and returns its [`Footprint`]: bytes and
//!   blocks allocated and freed, the peak and what is still live, per scope and in total, counting
//!   only that work even while other threads allocate elsewhere.
//! - `criterion::Allocated` and `Peak` (feature `criterion`) are criterion
//!   measurements, so `cargo bench` reports the bytes a component allocates, or its peak, per
//!   iteration.
//!
//! # Export and the report
//!
//! - `metrics::Publisher` (feature `metrics`) publishes every tick through the
//!   `metrics` facade (per-scope bytes and counts, the reconciliation's layers, the budget level),
//!   for Prometheus or any other exporter.
//! - `Recorder` (feature `serde`) appends every tick to a JSON Lines file; `Recording` reads it
//!   back.
//! - `report::render_html` (feature `serde`) turns a recording into one self-contained HTML page
//!   of charts and tables; the `memledger-report` command (feature `report`) does it from the
//!   command line.
//!
//! # Guarantees
//!
//! The allocation path takes no lock, allocates nothing through the global allocator and never
//! panics. An ordinary allocation or free writes only counters of the calling thread; every
//! 64 KiB of net movement per thread and scope (and on every operation on a block of 64 KiB or
//! more) it also publishes to the scope's shared total with one atomic add and one `fetch_max`.
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

mod allocator_stats;
#[cfg(all(feature = "arenas", target_os = "linux"))]
mod arena_ledger;
#[cfg(all(feature = "arenas", target_os = "linux"))]
mod arenas;
mod budget;
mod callsite;
mod cells;
mod counters;
#[cfg(feature = "criterion")]
pub mod criterion;
mod error;
mod fork;
mod future;
mod growth;
mod handoff;
mod history;
#[cfg(feature = "serde")]
mod json;
mod ledger;
mod measure;
#[cfg(feature = "metrics")]
pub mod metrics;
mod primitive;
mod process;
mod reconcile;
#[cfg(feature = "serde")]
mod recording;
mod registry;
#[cfg(feature = "serde")]
pub mod report;
mod sampler;
mod scope;
mod snapshot;
mod status;
mod tag;
mod thread_exit;
#[cfg(feature = "tracing")]
pub mod tracing;

pub use crate::allocator_stats::{AllocatorStats, AllocatorStatsUnavailable};
#[cfg(all(feature = "arenas", target_os = "linux"))]
pub use crate::arena_ledger::ArenaLedger;
#[cfg(all(feature = "arenas", target_os = "linux"))]
pub use crate::arenas::ArenaUsage;
pub use crate::budget::{
    limit_scope, Budget, BudgetBuilder, BudgetError, Level, Limit, ScopeBudget,
};
pub use crate::error::Error;
pub use crate::future::{InScope, ScopeExt};
pub use crate::growth::{growth_rate, GrowthRate, LeakDetection, SuspectedLeak};
pub use crate::history::{HistoryEntry, ScopeSample};
#[cfg(feature = "serde")]
pub use crate::json::{from_json, to_json};
pub use crate::ledger::Ledger;
pub use crate::measure::{measure, Footprint, Measured, ScopeFootprint};
pub use crate::process::{physical_memory, CgroupMemory, ProcessMemory, ReadError};
pub use crate::reconcile::{
    BreakdownEntry, BreakdownKind, Gap, GapKind, Reconciliation, ScopeArena,
};
#[cfg(feature = "serde")]
pub use crate::recording::{
    Recorder, RecorderStats, Recording, RecordingError, RecordingErrorKind, RecordingHeader,
    RECORDING_VERSION,
};
pub use crate::registry::{MAX_SCOPES, OVERFLOW_SCOPE, OWN_SCOPE, UNSCOPED};
pub use crate::sampler::{
    monitor, Event, Sample, Sampler, SamplerBuilder, SamplerStats, Subscription,
};
pub use crate::scope::{current_scope, enter, in_scope, ScopeGuard, ScopeHandle};
pub use crate::snapshot::{snapshot, ScopeDiff, ScopeStats, Snapshot, SnapshotDiff, SubtreeStats};
pub use crate::status::{Measure, Reason, Recommendation, ScopeStatus, Status};

/// jemalloc, re-exported for `Ledger<memledger::Jemalloc>` (feature `jemalloc`, on by default).
#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc;

/// Support for the crate's macros. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::CallSite;

    /// Gives the calling thread's counter slab back, exactly as thread-local teardown does; the
    /// thread then books through the shared per-scope atomics. Lets tests reach that path
    /// deterministically, since the order of thread-local destructors is the platform's.
    pub fn release_thread_slab() {
        crate::counters::release_thread_slab();
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
