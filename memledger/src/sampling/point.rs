//! Each thread's sample points: its part of the sampling, carried in its counter slab, and the
//! decision whether an allocation on the cold path is sampled.
//!
//! The point of each cell is folded into the cell's byte budget ([`after_refill`] caps the mark
//! at it), so the hot path pays nothing; [`due`] decides on the cold path. The composition point
//! (`crate::thread`) passes this thread's [`ThreadSampling`] to both.

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::books::cells::Counter;
use crate::books::id::{ScopeId, MAX_SCOPES, OWN_SCOPE_ID, SAMPLED_SCOPE_ID};

/// The sampling rate a program starts with: one sample per 512 KiB allocated on average, as
/// jemalloc's and tcmalloc's heap profilers.
pub const DEFAULT_RATE: u64 = 512 * 1024;
/// The smallest rate [`set_rate`](super::set_rate) takes: below it nearly every allocation would be
/// sampled, which is a tracer, not a sampler.
pub const MIN_RATE: u64 = 1024;
/// The largest rate [`set_rate`](super::set_rate) takes (1 TiB); to switch sampling off, set 0.
pub const MAX_RATE: u64 = 1 << 40;

/// The mean bytes between samples; 0 when off.
pub(super) static RATE: AtomicU64 = AtomicU64::new(if cfg!(feature = "sampling") {
    DEFAULT_RATE
} else {
    0
});
/// Bumped by every [`set_rate`](super::set_rate), so that points drawn at another rate are drawn
/// again.
pub(super) static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Salts handed to slabs, so that threads draw apart (the seed, in `seed.rs`, sets processes
/// apart).
pub(super) static SALTS: AtomicU64 = AtomicU64::new(0);

/// The mean number of bytes between samples; 0 when sampling is off.
pub fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
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
        let h = mix(super::seed::get()
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

std::thread_local! {
    /// Set while this thread records a sample, so that nothing it allocates meanwhile is sampled.
    pub(super) static RECORDING: Cell<bool> = const { Cell::new(false) };
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
