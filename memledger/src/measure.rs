//! Measuring what a piece of work allocates: per scope and in total, exact under threads.

use core::fmt;

use crate::books::id::{normalize, ScopeId};
use crate::books::shared;
use crate::scope::ScopeHandle;
use crate::snapshot::{snapshot, ScopeStats, Snapshot};
use crate::thread::cold;
use crate::units::human_bytes;

/// What one scope did during a measurement (see [`measure`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeFootprint {
    /// The scope's path.
    pub path: String,
    /// Bytes brought in: allocations plus realloc growth.
    pub allocated_bytes: u64,
    /// Bytes released: frees plus realloc shrinkage.
    pub freed_bytes: u64,
    /// Blocks allocated.
    pub allocations: u64,
    /// Blocks freed.
    pub deallocations: u64,
    /// Blocks resized.
    pub reallocations: u64,
    /// Live bytes when the measurement started.
    pub live_before: u64,
    /// Live bytes when it ended: what the work left behind, plus `live_before`.
    pub live_after: u64,
    /// The highest live bytes during the measurement (at least `live_before` and `live_after`).
    pub peak_bytes: u64,
}

impl ScopeFootprint {
    /// Bytes the work left allocated (negative if it freed more than it kept).
    pub fn retained_bytes(&self) -> i64 {
        (self.live_after as i64).saturating_sub(self.live_before as i64)
    }

    /// How far the peak rose above the live bytes at the start.
    pub fn peak_above_start(&self) -> u64 {
        self.peak_bytes.saturating_sub(self.live_before)
    }

    fn between(path: &str, before: Option<&ScopeStats>, after: &ScopeStats) -> ScopeFootprint {
        let zero = ScopeStats {
            path: String::new(),
            name: String::new(),
            live_bytes: 0,
            peak_bytes: 0,
            allocations: 0,
            deallocations: 0,
            reallocations: 0,
            allocated_bytes: 0,
            freed_bytes: 0,
            limit_bytes: None,
            refused_allocations: 0,
        };
        let before = before.unwrap_or(&zero);
        ScopeFootprint {
            path: path.to_string(),
            allocated_bytes: after.allocated_bytes.saturating_sub(before.allocated_bytes),
            freed_bytes: after.freed_bytes.saturating_sub(before.freed_bytes),
            allocations: after.allocations.saturating_sub(before.allocations),
            deallocations: after.deallocations.saturating_sub(before.deallocations),
            reallocations: after.reallocations.saturating_sub(before.reallocations),
            live_before: before.live_bytes,
            live_after: after.live_bytes,
            peak_bytes: after
                .peak_bytes
                .max(before.live_bytes)
                .max(after.live_bytes),
        }
    }
}

/// What a measured piece of work allocated: its scope and each scope under it (see [`measure`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Footprint {
    /// The scope the work ran in, then its descendants that did anything, parents first.
    pub scopes: Vec<ScopeFootprint>,
}

impl Footprint {
    /// The footprint of the scope at `path` (absolute, as in [`ScopeStats::path`]).
    pub fn scope(&self, path: &str) -> Option<&ScopeFootprint> {
        let path = normalize(path);
        self.scopes.iter().find(|s| s.path == path)
    }

    /// The sums over every scope, under the measured scope's path.
    ///
    /// Bytes and counts are exact sums. The scopes' peaks may fall at different moments, so
    /// `peak_bytes` here is their sum: an upper bound of the work's peak, exact when a single
    /// scope held the bytes (no nested scope, or nested scopes whose peaks coincide).
    pub fn total(&self) -> ScopeFootprint {
        let mut total = ScopeFootprint {
            path: self
                .scopes
                .first()
                .map(|s| s.path.clone())
                .unwrap_or_default(),
            ..ScopeFootprint::default()
        };
        for s in &self.scopes {
            total.allocated_bytes = total.allocated_bytes.saturating_add(s.allocated_bytes);
            total.freed_bytes = total.freed_bytes.saturating_add(s.freed_bytes);
            total.allocations = total.allocations.saturating_add(s.allocations);
            total.deallocations = total.deallocations.saturating_add(s.deallocations);
            total.reallocations = total.reallocations.saturating_add(s.reallocations);
            total.live_before = total.live_before.saturating_add(s.live_before);
            total.live_after = total.live_after.saturating_add(s.live_after);
            total.peak_bytes = total.peak_bytes.saturating_add(s.peak_bytes);
        }
        total
    }

    /// The footprint of `path` and its descendants between two snapshots. Peaks are as the later
    /// snapshot read them: the high-water mark since the process started, unless restarted.
    pub fn between(before: &Snapshot, after: &Snapshot, path: &str) -> Footprint {
        let path = normalize(path);
        let scopes = after
            .scopes()
            .iter()
            .filter(|s| in_subtree(&s.path, &path))
            .map(|s| ScopeFootprint::between(&s.path, before.scope(&s.path), s))
            .filter(|f| f.path == path || f.allocations + f.reallocations + f.deallocations > 0)
            .collect();
        Footprint { scopes }
    }
}

/// Whether `path` is `root` or under it.
pub fn in_subtree(path: &str, root: &str) -> bool {
    root.is_empty()
        || path == root
        || (path.len() > root.len()
            && path.starts_with(root)
            && path.as_bytes()[root.len()] == b'/')
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "scope", "allocated", "peak", "retained", "allocs", "frees"
        )?;
        for s in &self.scopes {
            let retained = s.retained_bytes();
            writeln!(
                f,
                "{:<40} {:>10} {:>10} {:>10} {:>9} {:>9}",
                s.path,
                human_bytes(s.allocated_bytes),
                human_bytes(s.peak_above_start()),
                format!(
                    "{}{}",
                    if retained < 0 { "-" } else { "" },
                    human_bytes(retained.unsigned_abs())
                ),
                s.allocations,
                s.deallocations
            )?;
        }
        Ok(())
    }
}

/// A measured closure's result and footprint.
#[derive(Clone, Debug)]
pub struct Measured<R> {
    /// What the closure returned.
    pub value: R,
    /// What it allocated.
    pub footprint: Footprint,
}

/// Runs `f` in the scope `name` (a child of the current scope) and returns what it allocated,
/// per scope and in total: bytes and blocks allocated and freed, the peak, and what is still live
/// afterwards.
///
/// Unlike a process-wide region, the figures count only this work: allocations of other threads
/// in other scopes do not show, and work that `f` hands to other threads with a
/// [`ScopeHandle`] (or a future wrapped with [`in_scope`](crate::ScopeExt::in_scope)) does.
/// Scopes nested inside `f` are listed under `name`.
///
/// Bytes and counts are exact once the threads that did the work are joined or idle.
///
/// The peaks of the measured scopes restart when the measurement starts, at their live bytes (so
/// [`ScopeStats::peak_bytes`] reads from then on), and while `f` runs they, and the scopes
/// registered under them, are in exact mode ([`ScopeHandle::set_exact`]): every booking is
/// published as it happens, so their peaks are exact however many threads book to them. Two
/// limits remain: a thread other than the caller that booked to a measured scope before the
/// measurement holds back up to
/// [`Snapshot::PEAK_RESOLUTION_PER_THREAD`] bytes until it books to it again, and a publish by
/// another thread while the restart runs may be lost. Measurements of the same scope should not
/// overlap in time, and nothing else should book to the scope while one starts.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() {
/// let m = memledger::measure("build_index", || {
///     let scratch = vec![0u8; 1 << 20]; // freed before the end
///     let index: Vec<u64> = (0..1000).collect();
///     drop(scratch);
///     index
/// });
/// let total = m.footprint.total();
/// assert_eq!(total.retained_bytes(), 8000);
/// assert!(total.peak_above_start() >= (1 << 20) + 8000);
/// assert_eq!(total.allocations, 2);
/// println!("{}", m.footprint);
/// # }
/// ```
pub fn measure<R>(name: &str, f: impl FnOnce() -> R) -> Measured<R> {
    let handle = ScopeHandle::current().child(name);
    let path = handle.path();
    let before = snapshot();
    // Snapshots list scopes by id.
    let subtree = |snap: &Snapshot| -> Vec<ScopeId> {
        (snap.scopes().iter().enumerate())
            .filter(|(_, s)| in_subtree(&s.path, &path))
            .map(|(id, _)| id as ScopeId)
            .collect()
    };
    let measured = subtree(&before);
    let already_exact: Vec<ScopeId> = (measured.iter().copied())
        .filter(|&id| shared::exact(id))
        .collect();
    for &id in &measured {
        cold::set_exact(id, true);
        cold::restart_peak(id);
    }
    let value = handle.in_scope(f);
    let after = snapshot();
    // The measured scopes go back to what they were; those registered inside `f` inherited exact
    // mode, and keep it only if their parent is exact once restored. Ids grow with registration,
    // so a parent is restored before its children.
    for id in subtree(&after) {
        let exact = if measured.contains(&id) {
            already_exact.contains(&id)
        } else {
            let path = &after.scopes()[usize::from(id)].path;
            let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
            (after.scopes().iter().position(|s| s.path == parent))
                .is_some_and(|parent| shared::exact(parent as ScopeId))
        };
        if !exact {
            cold::set_exact(id, false);
        }
    }
    Measured {
        value,
        footprint: Footprint::between(&before, &after, &path),
    }
}
