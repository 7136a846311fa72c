//! The cache of a `scope!` call site: the last (parent → child) it resolved, packed in one atomic
//! word so that a reader never pairs one thread's parent with another's child.
//!
//! Global-free, so that `loom/tests/models.rs` checks it over loom's atomics.

use crate::books::id::ScopeId;
use crate::sys::atomic::{AtomicU32, Ordering};

/// Set on a cached entry (an empty cache is 0).
const VALID: u32 = 1 << 31;
/// Set on a cached overflow result that was a refusal (the table was full), so that each later
/// entry through the cache is counted as one too.
const REFUSAL: u32 = 1 << 15;

/// The cached child of `parent` in `cache`, and whether it was a refusal; `None` when the cache
/// holds nothing or another parent's child. Ids are below 2^15.
#[inline]
pub(crate) fn lookup(cache: &AtomicU32, parent: ScopeId) -> Option<(ScopeId, bool)> {
    // Relaxed: the cached ids are plain values in one word; a stale or missing entry only sends
    // the caller to the registry, which it reads under its lock.
    let cached = cache.load(Ordering::Relaxed);
    if cached & VALID != 0 && (cached >> 16) & 0x7fff == u32::from(parent) {
        Some(((cached & 0x7fff) as ScopeId, cached & REFUSAL != 0))
    } else {
        None
    }
}

/// Caches `child` as the child of `parent` (both below 2^15), `refused` if it was a refusal.
pub(crate) fn store(cache: &AtomicU32, parent: ScopeId, child: ScopeId, refused: bool) {
    let mut packed = VALID | u32::from(parent & 0x7fff) << 16 | u32::from(child & 0x7fff);
    if refused {
        packed |= REFUSAL;
    }
    // Seeded bug (`.ci/mutants`): the parent and the child written in two steps, so a reader
    // between them pairs one thread's parent with another's child.
    #[cfg(memledger_mutant = "callsite_two_steps")]
    {
        cache.fetch_and(0xffff, Ordering::Relaxed);
        cache.fetch_or(packed & 0xffff_0000, Ordering::Relaxed);
        cache.fetch_and(0xffff_0000, Ordering::Relaxed);
        cache.fetch_or(packed & 0xffff, Ordering::Relaxed);
        return;
    }
    #[cfg(not(memledger_mutant = "callsite_two_steps"))]
    cache.store(packed, Ordering::Relaxed);
}
