//! Watches [`memledger`]'s books: what they say beside what lies underneath, over time, against a
//! budget.
//!
//! `memledger` (the facade) books every heap block to the scope that allocated it; this crate reads
//! those books and sets them beside jemalloc, the kernel and the cgroup:
//!
//! - [`Reconciliation::capture`] puts the ledger beside jemalloc's stats ([`AllocatorStats`]), the
//!   process's RSS ([`ProcessMemory`]) and its cgroup ([`CgroupMemory`]), and names and sizes
//!   every gap between those layers ([`GapKind`]); what nothing explains is shown as the
//!   remainder. Under `Ledger<Jemalloc>` with scope arenas (the default on Linux) it also lists
//!   jemalloc's figures for each scope's arena ([`ScopeArena`]).
//! - A [`Sampler`] does that on an interval in a background thread and streams [`Event`]s: each
//!   tick's [`Sample`] (snapshot, reconciliation, growth rates, suspected leaks and a [`Status`]
//!   against a [`Budget`]), level changes, suspected leaks and failed readings. It keeps a
//!   history ([`HistoryEntry`]) with a baseline and a per-scope diff
//!   ([`SnapshotDiff`](memledger::SnapshotDiff)). [`monitor`] holds one process-wide sampler.
//! - [`ScopeBudget`]s give single scopes their own levels; an enforced one (with `memledger`'s
//!   `enforce` feature) makes allocations past the scope's hard limit fail while the sampler runs.
//! - With the `serde` feature (on by default) every figure serializes ([`to_json`],
//!   [`from_json`]), and a [`RecordingWriter`] appends every tick to a JSON Lines file that
//!   [`Recording`] reads back (and `memledger-report` turns into a page).
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
//! # fn main() -> Result<(), memledger_monitor::Error> {
//! let sampler = memledger_monitor::Sampler::builder()
//!     .budget(memledger_monitor::Budget::builder().total(16 << 30).build()?)
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
//! The crate's own memory (its threads, history and readings) is booked to
//! [`memledger::OWN_SCOPE`], like the facade's.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod budget;
mod error;
mod growth;
mod history;
#[cfg(feature = "serde")]
mod json;
#[cfg(feature = "profile")]
mod profile;
mod reconcile;
#[cfg(feature = "serde")]
mod recording;
mod sampler;
mod status;

pub use crate::budget::{Budget, BudgetBuilder, BudgetError, Level, Limit, ScopeBudget};
pub use crate::error::Error;
pub use crate::growth::{growth_rate, GrowthRate, LeakDetection, LeakSite, SuspectedLeak};
pub use crate::history::{HistoryEntry, ScopeSample};
#[cfg(feature = "serde")]
pub use crate::json::{from_json, to_json};
#[cfg(feature = "profile")]
pub use crate::profile::{
    profile, Estimate, Frame, Profile, ProfileUsage, ProfileValue, ScopeProfile, Site,
    LINE_TABLES_NOTE, NO_PROGRAM_FRAME,
};
pub use crate::reconcile::allocator::{AllocatorStats, AllocatorStatsUnavailable};
pub use crate::reconcile::process::{physical_memory, CgroupMemory, ProcessMemory, ReadError};
pub use crate::reconcile::{
    BreakdownEntry, BreakdownKind, Gap, GapKind, Reconciliation, ScopeArena,
};
#[cfg(feature = "serde")]
pub use crate::recording::{
    Recording, RecordingError, RecordingErrorKind, RecordingHeader, RecordingWriter,
    RecordingWriterStats, RECORDING_VERSION,
};
pub use crate::sampler::{
    monitor, Event, Sample, Sampler, SamplerBuilder, SamplerStats, Subscription,
};
pub use crate::status::{BudgetBasis, Reason, Recommendation, ScopeStatus, Status};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
