//! Sampled allocation sites: where each scope's memory was allocated.
//!
//! # How blocks are sampled
//!
//! Each thread's counter cell of each scope has a *sample point*: a position on the cell's count
//! of bytes brought in, drawn ahead of it from an exponential distribution with mean [`rate`].
//! The point is folded into the cell's byte budget (the budget's mark is set no further than the
//! point), so the hot path pays nothing for it: the allocation that reaches the point is already
//! on the cold path, where it is sampled and the next point drawn. An allocation of `size` bytes
//! is thus sampled with probability `p = 1 - exp(-size / rate)`, independently of every other
//! (the exponential has no memory), and each sample stands for `1 / p` blocks and `size / p`
//! bytes: unbiased estimates of a site's bytes and blocks. A resize that grows a block brings its
//! new bytes past the same point, so a `Vec` that doubles is sampled as often as one allocated at
//! its final size.
//!
//! The points are drawn from a seed that each process draws from the system's entropy
//! (`getrandom` on Linux, `getentropy` on Apple's systems, mixed with the time, the process id
//! and a stack address) when its first point is drawn, so that processes sample independently:
//! the profiles of a fleet of identical processes add up to an estimate whose error shrinks as
//! one over the square root of their number, instead of every process sampling the same
//! allocations. [`set_seed`] fixes the seed, for tests that want the same samples in every run.
//! A child made by `fork()` keeps its parent's seed and points.
//!
//! A sampled block is allocated with the trailer (never in a scope arena), and its trailer holds a
//! reserved id instead of its owner's, so its free and its resizes take the cold path without a
//! test on the hot one, find its record from the index kept after the trailer, and remove or
//! update it exactly, whichever thread frees it.
//!
//! Nothing here allocates through the global allocator or takes a lock: the stack is captured by
//! the unwinder into a fixed buffer ([`MAX_DEPTH`] frames), and the records live in lock-free
//! tables allocated in chunks from the inner allocator, booked to the crate's own scope. No
//! sample is taken in the crate's own scope, while a sample is being recorded, or once a thread
//! has given its counters back at exit.
//!
//! Symbols are not resolved here: [`sites()`] gives return addresses, and
//! `memledger_monitor::profile` resolves them (with a cache), exports pprof and folded stacks,
//! and compares profiles.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
//!
//! fn main() {
//!     memledger::sampling::set_rate(64 * 1024).unwrap();
//!     let kept: Vec<Vec<u8>> = memledger::in_scope("cache", || {
//!         (0..256).map(|_| std::hint::black_box(vec![1u8; 16 * 1024])).collect()
//!     });
//!     let sites = memledger::sampling::sites();
//!     let cache: u64 = sites.scope("cache").map(|s| s.live.bytes).sum();
//!     // 4 MiB live, sampled at 64 KiB: about 64 samples, so the estimate is within a few
//!     // tenths of the truth.
//!     assert!(cache > 2 << 20 && cache < 8 << 20, "{cache}");
//!     assert!(memledger::sampling::set_rate(10).is_err());
//!     drop(kept);
//! }
//! ```

pub(crate) mod point;
mod seed;
mod sites;
mod stack;
mod table;

use core::sync::atomic::Ordering;

use crate::books::id::ScopeId;
use crate::error::Error;
use crate::sampling::point::{EPOCH, RATE, RECORDING, SALTS};

pub use crate::sampling::point::{rate, DEFAULT_RATE, MAX_RATE, MIN_RATE};
pub use crate::sampling::sites::{sites, usage, Estimate, SamplingUsage, Site, Sites};
pub use crate::sampling::stack::{set_stack_walk, stack_walk, StackWalk, MAX_DEPTH};
pub use crate::sampling::table::{LIVE_LIMIT, STACK_LIMIT};

/// Sets the mean number of bytes between samples, for every thread, from each thread's next
/// sample on (or its next refill of a cell, at most 64 KiB later); 0 switches sampling off.
///
/// # Errors
///
/// - [`Error::SampleRate`] for a rate between 1 and [`MIN_RATE`] - 1
///   or above [`MAX_RATE`];
/// - [`Error::SamplingNotBuilt`] for a non-zero rate when the
///   crate was built without the `sampling` feature.
pub fn set_rate(bytes: u64) -> Result<(), Error> {
    if bytes != 0 && !cfg!(feature = "sampling") {
        return Err(Error::SamplingNotBuilt);
    }
    if bytes != 0 && !(MIN_RATE..=MAX_RATE).contains(&bytes) {
        return Err(Error::SampleRate { rate: bytes });
    }
    // Relaxed: each thread sees the new rate at its next cold path; the epoch makes it draw
    // its points again.
    RATE.store(bytes, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Sets the seed of the sample points that threads draw from now on, so that a program that
/// allocates the same way on each thread takes the same samples in every run (tests and
/// benchmarks that want repeatable samples call it first).
///
/// Without it, each process draws its seed from the system's entropy when the first point is
/// drawn (see [How blocks are sampled](self#how-blocks-are-sampled)), so that the profiles of
/// many processes sample independently and add up. The seed 0 takes the same samples as
/// `0x243f_6a88_85a3_08d3` (0 is kept to mean "not drawn yet").
pub fn set_seed(seed: u64) {
    seed::set(seed);
    SALTS.store(0, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The probability that a block that brought in `bytes` is in the sample at `rate`.
pub(crate) fn probability(bytes: u64, rate: u64) -> f64 {
    if rate == 0 {
        return 1.0;
    }
    // `1 - exp(-x)`, exact for small `x` too.
    (-(-(bytes as f64) / rate as f64).exp_m1()).clamp(f64::MIN_POSITIVE, 1.0)
}

/// Records a sampled block of `scope` that brought in `size` bytes: takes a record and captures
/// the stack; the record's index, or `None` if the sample was not kept (no record free, or the
/// thread is already recording). What the block stands for counts in its site's allocations
/// only once the block exists ([`commit`]).
pub(crate) fn record<A: core::alloc::GlobalAlloc>(
    inner: &A,
    scope: ScopeId,
    size: u64,
) -> Option<u32> {
    let rate = RATE.load(Ordering::Relaxed);
    if rate == 0 || RECORDING.try_with(|r| r.replace(true)).unwrap_or(true) {
        return None;
    }
    let index = table::record(inner, scope, size, probability(size, rate), stack::capture);
    let _ = RECORDING.try_with(|r| r.set(false));
    index
}

/// The sampled block of the record at `index` exists: it counts in its site's allocations.
pub(crate) fn commit(index: u32) {
    table::commit(index)
}

/// Removes the record of a sampled block being freed; its owner.
pub(crate) fn forget(index: u32) -> Option<ScopeId> {
    table::forget(index)
}

/// The owner of a sampled block.
pub(crate) fn owner_of(index: u32) -> Option<ScopeId> {
    table::owner(index)
}

/// A sampled block resized to `new_size`.
pub(crate) fn resize(index: u32, new_size: u64) {
    let rate = RATE.load(Ordering::Relaxed);
    table::resize(index, new_size, |brought_in| probability(brought_in, rate));
}
