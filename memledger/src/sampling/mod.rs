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
//! Symbols are not resolved here: [`sites`] gives return addresses, and
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

mod stack;
mod table;

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::books::cells::Counter;
use crate::books::id::{ScopeId, MAX_SCOPES, OWN_SCOPE_ID, SAMPLED_SCOPE_ID};
use crate::books::registry;

pub use crate::sampling::stack::{set_stack_walk, stack_walk, StackWalk, MAX_DEPTH};
pub use crate::sampling::table::{LIVE_LIMIT, STACK_LIMIT};

/// The sampling rate a program starts with: one sample per 512 KiB allocated on average, as
/// jemalloc's and tcmalloc's heap profilers.
pub const DEFAULT_RATE: u64 = 512 * 1024;
/// The smallest rate [`set_rate`] takes: below it nearly every allocation would be sampled, which
/// is a tracer, not a sampler.
pub const MIN_RATE: u64 = 1024;
/// The largest rate [`set_rate`] takes (1 TiB); to switch sampling off, set 0.
pub const MAX_RATE: u64 = 1 << 40;

/// The mean bytes between samples; 0 when off.
static RATE: AtomicU64 = AtomicU64::new(if cfg!(feature = "sampling") {
    DEFAULT_RATE
} else {
    0
});
/// Bumped by every [`set_rate`], so that points drawn at another rate are drawn again.
static EPOCH: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0x243f_6a88_85a3_08d3);
/// Salts handed to slabs, so that threads draw apart.
static SALTS: AtomicU64 = AtomicU64::new(0);

/// Sets the mean number of bytes between samples, for every thread, from each thread's next
/// sample on (or its next refill of a cell, at most 64 KiB later); 0 switches sampling off.
///
/// # Errors
///
/// - [`Error::SampleRate`](crate::Error::SampleRate) for a rate between 1 and [`MIN_RATE`] - 1
///   or above [`MAX_RATE`];
/// - [`Error::SamplingNotBuilt`](crate::Error::SamplingNotBuilt) for a non-zero rate when the
///   crate was built without the `sampling` feature.
pub fn set_rate(bytes: u64) -> Result<(), crate::Error> {
    if bytes != 0 && !cfg!(feature = "sampling") {
        return Err(crate::Error::SamplingNotBuilt);
    }
    if bytes != 0 && !(MIN_RATE..=MAX_RATE).contains(&bytes) {
        return Err(crate::Error::SampleRate { rate: bytes });
    }
    // Relaxed: each thread sees the new rate at its next cold path; the epoch makes it draw
    // its points again.
    RATE.store(bytes, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The mean number of bytes between samples; 0 when sampling is off.
pub fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// Sets the seed of the sample points that threads draw from now on, so that a program that
/// allocates the same way on each thread takes the same samples in every run.
pub fn set_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    SALTS.store(0, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The sample points of one thread's cells, in its counter slab: written only by the thread
/// that holds the slab.
pub(crate) struct ThreadSampling {
    /// Per scope: the position of the next sample on the cell's count of bytes in.
    points: [UnsafeCell<u64>; MAX_SCOPES],
    /// Per scope: the epoch the point was drawn in (a point of another epoch is drawn again).
    epochs: [UnsafeCell<u16>; MAX_SCOPES],
    salt: Cell<u64>,
}

// SAFETY:
// - the points, their epochs and the salt are read and written only by the thread holding the
//   slab (see `Counter`'s marks), which hands the slab on with acquire/release.
unsafe impl Sync for ThreadSampling {}

impl Default for ThreadSampling {
    fn default() -> Self {
        ThreadSampling {
            points: core::array::from_fn(|_| UnsafeCell::new(0)),
            epochs: core::array::from_fn(|_| UnsafeCell::new(0)),
            salt: Cell::new(0),
        }
    }
}

/// The epoch as a point keeps it. Epoch 0 is never current (the first is 1), so that the
/// all-zero points of a new slab are drawn before their first use.
fn current_epoch() -> u16 {
    (EPOCH.load(Ordering::Relaxed) % 0xffff + 1) as u16
}

impl ThreadSampling {
    /// The point of `scope`'s cell, whose count of bytes in is `at`: drawn again first if the
    /// last one was passed or drawn at another rate.
    fn point(&self, scope: ScopeId, at: u64, rate: u64) -> u64 {
        let i = usize::from(scope) % MAX_SCOPES;
        let epoch = current_epoch();
        // SAFETY:
        // - only the thread holding the slab calls this (see the `Sync` impl).
        unsafe {
            let point = *self.points[i].get();
            if *self.epochs[i].get() == epoch && point > at {
                return point;
            }
            let point = at.saturating_add(self.draw(scope, at, rate));
            *self.points[i].get() = point;
            *self.epochs[i].get() = epoch;
            point
        }
    }

    /// Draws the distance to the next point of `scope`'s cell, whose count of bytes in is `at`.
    fn draw(&self, scope: ScopeId, at: u64, rate: u64) -> u64 {
        let mut salt = self.salt.get();
        if salt == 0 {
            salt = SALTS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            self.salt.set(salt);
        }
        let h = mix(SEED.load(Ordering::Relaxed)
            ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(scope).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
            ^ at.wrapping_mul(0x1656_67b1_9e37_79f9));
        // Uniform in [0, 1), then the exponential's inverse.
        let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let gap = -(1.0 - u).ln() * rate as f64;
        (gap as u64).max(1)
    }
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The probability that a block that brought in `bytes` is in the sample at `rate`.
pub(crate) fn probability(bytes: u64, rate: u64) -> f64 {
    if rate == 0 {
        return 1.0;
    }
    // `1 - exp(-x)`, exact for small `x` too.
    (-(-(bytes as f64) / rate as f64).exp_m1()).clamp(f64::MIN_POSITIVE, 1.0)
}

std::thread_local! {
    /// Set while this thread records a sample, so that nothing it allocates meanwhile is sampled.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

fn sampled_scope(scope: ScopeId) -> bool {
    scope != OWN_SCOPE_ID && scope != SAMPLED_SCOPE_ID
}

/// Whether bringing `size` more bytes into `scope`'s `cell` reaches its sample point: whether the
/// point lies in `(bytes in, bytes in + size]`. Cold path only.
#[inline]
pub(crate) fn due(sampling: &ThreadSampling, cell: &Counter, scope: ScopeId, size: u64) -> bool {
    let rate = RATE.load(Ordering::Relaxed);
    if rate == 0 || !sampled_scope(scope) {
        return false;
    }
    if RECORDING.try_with(|r| r.get()).unwrap_or(true) {
        return false;
    }
    let at = cell.bytes_in();
    let point = sampling.point(scope, at, rate);
    // A point drawn just now is capped at too, so that the hot path does not pass it.
    cell.cap_in_mark(point);
    at.saturating_add(size) >= point
}

/// After a refill of `scope`'s `cell`: draws the next point if the last one was reached (or was
/// drawn at another rate), and sets the cell's mark no further than it.
#[inline]
pub(crate) fn after_refill(sampling: &ThreadSampling, cell: &Counter, scope: ScopeId) {
    let rate = RATE.load(Ordering::Relaxed);
    if rate == 0 || !sampled_scope(scope) {
        return;
    }
    cell.cap_in_mark(sampling.point(scope, cell.bytes_in(), rate));
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
pub(crate) fn owner(index: u32) -> Option<ScopeId> {
    table::owner(index)
}

/// A sampled block resized to `new_size`.
pub(crate) fn resize(index: u32, new_size: u64) {
    let rate = RATE.load(Ordering::Relaxed);
    table::resize(index, new_size, |brought_in| probability(brought_in, rate));
}

/// Estimates of bytes and blocks from samples, and the samples behind them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Estimate {
    /// Estimated bytes.
    pub bytes: u64,
    /// Estimated blocks.
    pub blocks: u64,
    /// Samples the estimates come from: the fewer, the wider their error (about
    /// `1 / sqrt(samples)` relative, for blocks of one size).
    pub samples: u64,
}

/// One allocation site of one scope: a call stack, unresolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    /// The scope the site's blocks are booked to.
    pub scope: String,
    /// Return addresses, innermost first, beginning in the allocator (the frames of
    /// `__rust_alloc` and the ledger); empty for the samples whose stack found no room.
    pub frames: Vec<usize>,
    /// The stack was cut: deeper than [`MAX_DEPTH`], or stopped at a frame whose size varies
    /// between calls (see [`StackWalk`]), or not kept at all (no frames).
    pub truncated: bool,
    /// What the site's live sampled blocks stand for.
    pub live: Estimate,
    /// What was allocated there since the program started (freed or not): a sampled resize
    /// counts as an allocation of the block's size then.
    pub allocated: Estimate,
}

/// How much the sampling holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplingUsage {
    /// The rate now, in bytes; 0 when off.
    pub rate: u64,
    /// Sampled blocks live now.
    pub live_samples: u64,
    /// Distinct (scope, stack) pairs kept.
    pub stacks: u64,
    /// Samples not kept because all [`LIVE_LIMIT`] records were taken.
    pub dropped_samples: u64,
    /// Bytes the tables hold, booked to the crate's own scope
    /// ([`OWN_SCOPE`](crate::OWN_SCOPE)).
    pub table_bytes: u64,
    /// Stacks captured by the unwinder, by frame sizes it taught, and by frame pointers (see
    /// [`StackWalk`]): the unwinder costs about a hundred times more per frame.
    pub walks: (u64, u64, u64),
}

/// Every sampled site, with what it holds now and what it allocated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sites {
    /// The sites, the largest live first.
    pub sites: Vec<Site>,
    /// The tables and the rate.
    pub usage: SamplingUsage,
}

impl Sites {
    /// The sites of the scope at `path`.
    pub fn scope<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Site> + 'a {
        let path = crate::snapshot::normalize(path);
        self.sites.iter().filter(move |s| s.scope == path)
    }
}

/// What the tables hold.
pub fn usage() -> SamplingUsage {
    let (live_samples, stacks, dropped_samples, table_bytes) = table::usage();
    SamplingUsage {
        rate: rate(),
        live_samples,
        stacks,
        dropped_samples,
        table_bytes,
        walks: stack::walks(),
    }
}

/// Every sampled site of every scope, unresolved. Its memory is booked to the crate's own scope.
/// Cold: copies the tables, never blocks the allocation path.
pub fn sites() -> Sites {
    let _own = crate::ScopeGuard::own();
    let live = table::live_records();
    let stacks = table::stacks();
    let paths: Vec<String> = registry::with_registry(|r| {
        let metas = r.scopes();
        let mut paths: Vec<String> = Vec::with_capacity(metas.len());
        for (id, meta) in metas.iter().enumerate() {
            let parent = usize::from(meta.parent);
            paths.push(if id == 0 {
                String::new()
            } else if parent == 0 {
                meta.name.to_string()
            } else {
                format!("{}/{}", paths[parent], meta.name)
            });
        }
        paths
    });
    let path = |scope: ScopeId| paths.get(usize::from(scope)).cloned().unwrap_or_default();
    let mut by_index = std::collections::HashMap::with_capacity(stacks.len());
    let mut sites: Vec<Site> = Vec::with_capacity(stacks.len() + 1);
    for s in stacks {
        by_index.insert(s.index, sites.len());
        sites.push(Site {
            scope: path(s.scope),
            frames: s.frames,
            truncated: s.truncated,
            live: Estimate::default(),
            allocated: Estimate {
                bytes: s.allocated_bytes,
                blocks: s.allocated_blocks,
                samples: s.allocated_samples,
            },
        });
    }
    let mut unknown = std::collections::HashMap::new();
    for (scope, bytes, blocks, samples) in table::unknown_sites() {
        unknown.insert(scope, sites.len());
        sites.push(Site {
            scope: path(scope),
            frames: Vec::new(),
            truncated: true,
            live: Estimate::default(),
            allocated: Estimate {
                bytes,
                blocks,
                samples,
            },
        });
    }
    let mut live_sums = vec![(0f64, 0f64, 0u64); sites.len()];
    for r in live {
        let at = match by_index.get(&r.stack) {
            Some(&at) => at,
            None => *unknown.entry(r.scope).or_insert_with(|| {
                sites.push(Site {
                    scope: path(r.scope),
                    frames: Vec::new(),
                    truncated: true,
                    ..Site::default()
                });
                live_sums.push((0.0, 0.0, 0));
                sites.len() - 1
            }),
        };
        let sum = &mut live_sums[at];
        sum.0 += r.size as f64 / r.probability;
        sum.1 += 1.0 / r.probability;
        sum.2 += 1;
    }
    for (site, (bytes, blocks, samples)) in sites.iter_mut().zip(live_sums) {
        site.live = Estimate {
            bytes: bytes.round() as u64,
            blocks: blocks.round() as u64,
            samples,
        };
    }
    sites.sort_by(|a, b| {
        b.live
            .bytes
            .cmp(&a.live.bytes)
            .then(b.allocated.bytes.cmp(&a.allocated.bytes))
    });
    Sites {
        sites,
        usage: usage(),
    }
}
