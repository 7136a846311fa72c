//! Enforced scope limits: [`limit_scope`], and the limits samplers' enforced budgets lay over a
//! scope's own while they run.

use std::sync::{Mutex, MutexGuard};

use crate::books::id::ScopeId;
use crate::books::shared;
use crate::error::Error;
use crate::registry;
use crate::thread::cold;

/// Enforces a hard limit on the live bytes of the scope at `path` (registering it if needed), or
/// lifts it with `None`. Needs the `enforce` feature (otherwise an
/// [`Error::EnforcementNotBuilt`]).
///
/// From then on an allocation or a growing `realloc` booked to that scope fails (returns null)
/// when it would take the scope past `limit`: `Vec::try_reserve` and friends return an error, and
/// an infallible allocation goes to the standard allocation-error handler (which aborts). Only
/// that scope is limited, not its children. Allocations that fail are counted in
/// [`ScopeStats::refused_allocations`](crate::ScopeStats::refused_allocations).
///
/// # Exactness and cost
///
/// A scope with a limit gets no byte budget on any thread: its bookings go through shared atomics,
/// where one compare-and-swap checks and reserves each allocation, so no two threads pass on the
/// same headroom. The thread that sets the limit switches at once; every other thread switches at
/// its next refill of its budget for the scope, so it may still book up to 64 KiB there unchecked,
/// and it may hold up to 96 KiB of net bytes it had not yet published
/// ([`Snapshot::PEAK_RESOLUTION_PER_THREAD`](crate::Snapshot::PEAK_RESOLUTION_PER_THREAD)): with
/// `k` threads that had booked to the scope before the limit was set, live bytes stay below
/// `limit + k × 96 KiB`. The scope's peak may count reservations other threads have in flight
/// (never above the limit). Every other scope keeps its budgets, and the allocation path has no
/// check of its own for limits: building with the `enforce` feature costs nothing until a limit is
/// set, and then only the limited scope's operations take the cold path.
///
/// ```no_run
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() {
/// memledger::limit_scope("project_indexes", Some(64 << 20)).unwrap();
/// let _g = memledger::scope!("project_indexes");
/// let mut v: Vec<u8> = Vec::new();
/// assert!(v.try_reserve_exact(100 << 20).is_err());
/// # }
/// ```
pub fn limit_scope(path: &str, limit: Option<u64>) -> Result<(), Error> {
    let id = resolve_for_limit(path)?;
    let (_gate, mut overrides) = lock_overrides();
    cold::set_limit(id, limit);
    // While samplers hold the scope, this is also the limit it returns to when they stop.
    if let Some(base) = overrides.bases.iter_mut().find(|(scope, _)| *scope == id) {
        base.1 = limit;
    }
    Ok(())
}

/// The scope id of `path` for a limit, registering it if needed.
fn resolve_for_limit(path: &str) -> Result<ScopeId, Error> {
    if !cfg!(feature = "enforce") {
        return Err(Error::EnforcementNotBuilt);
    }
    registry::with_registry(|r| r.resolve_path(path)).ok_or_else(|| Error::ScopeTableFull {
        path: path.to_string(),
    })
}

/// Limits set by samplers' enforced scope budgets, over the limits the scopes had before.
///
/// The newest sampler's limit applies; when it stops, the next newest one's; when the last one
/// stops, the scope's own limit (as it was before them, or as [`limit_scope`] set it meanwhile).
/// Samplers may stop in any order.
struct Overrides {
    /// (scope, sampler, limit), oldest first.
    entries: Vec<(ScopeId, u64, u64)>,
    /// (scope, its own limit) for every scope with entries.
    bases: Vec<(ScopeId, Option<u64>)>,
}

static OVERRIDES: Mutex<Overrides> = Mutex::new(Overrides {
    entries: Vec::new(),
    bases: Vec::new(),
});

/// The overrides, locked, behind the fork gate (see `crate::sys::fork`).
fn lock_overrides() -> (crate::sys::fork::Gate, MutexGuard<'static, Overrides>) {
    let gate = crate::sys::fork::gate();
    // Every update leaves the lists consistent.
    (gate, OVERRIDES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Applies `limit` to the scope at `path` on behalf of `sampler`, until [`release_limits`].
pub fn override_limit(sampler: u64, path: &str, limit: u64) -> Result<(), Error> {
    let id = resolve_for_limit(path)?;
    let (_gate, mut overrides) = lock_overrides();
    if !overrides.bases.iter().any(|(scope, _)| *scope == id) {
        let (own, _) = shared::limit(id);
        overrides.bases.push((id, own));
    }
    overrides.entries.push((id, sampler, limit));
    cold::set_limit(id, Some(limit));
    Ok(())
}

/// Takes back every limit `sampler` applied; each scope gets the limit now on top.
pub fn release_limits(sampler: u64) {
    let (_gate, mut overrides) = lock_overrides();
    let mut touched: Vec<ScopeId> = Vec::new();
    overrides.entries.retain(|&(scope, owner, _)| {
        if owner == sampler {
            touched.push(scope);
        }
        owner != sampler
    });
    for scope in touched {
        let top = overrides
            .entries
            .iter()
            .rev()
            .find(|(s, _, _)| *s == scope)
            .map(|&(_, _, limit)| Some(limit));
        let limit = match top {
            Some(limit) => limit,
            None => {
                let at = overrides.bases.iter().position(|(s, _)| *s == scope);
                at.and_then(|at| overrides.bases.swap_remove(at).1)
            }
        };
        cold::set_limit(scope, limit);
    }
}
