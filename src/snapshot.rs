//! Reading the books: per-scope statistics at one moment.

use core::fmt;

use crate::counters::{self, PUBLISH_THRESHOLD};
#[cfg(doc)]
use crate::registry::OWN_SCOPE;
use crate::registry::{self, OVERFLOW_SCOPE, UNSCOPED};

/// What one scope holds and has done, as of a [`Snapshot`].
///
/// Every figure counts the blocks *owned* by the scope: those allocated while it was current, on
/// any thread, whoever frees or resizes them later. Bytes are the sizes the program asked for
/// (`Layout::size()`), not what the allocator rounded them up to.
///
/// # Exactness
///
/// Once the threads that booked to the scope have been joined or are idle, `live_bytes`, the
/// counts and the cumulative byte totals equal the truth exactly. While threads are running, each
/// thread's contribution is read at a slightly different moment, so a snapshot may be off by the
/// operations in flight (and `live_bytes` is clamped at zero if frees are read before the matching
/// allocations).
///
/// `peak_bytes` is exact for a scope that only one thread has ever booked to. Otherwise each
/// live thread that has booked to the scope may hold back up to 64 KiB
/// ([`Snapshot::PEAK_RESOLUTION_PER_THREAD`]) of net bytes it has not yet published (a thread
/// publishes every 64 KiB of net movement, and everything when it exits). With `k` such threads,
/// `peak_bytes` is at most `(k - 1) × 64 KiB` above and at most `k × 64 KiB` below the true
/// high-water mark, and never below `live_bytes`. Idle threads count in `k`: for instance, 50
/// parked pool threads that each freed 60 KiB of a scope's blocks without publishing can make
/// that scope's peak read up to 50 × 60 KiB high.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeStats {
    /// The scope's path: its name, after the names of the scopes it is nested in, joined by `/`
    /// (`"project_indexes/parse"`). The unscoped root is `""`.
    pub path: String,
    /// The last segment of the path.
    pub name: String,
    /// Bytes of the scope's blocks that are still allocated.
    pub live_bytes: u64,
    /// Highest `live_bytes` seen since the process started (see the type's docs for its
    /// resolution under many threads).
    pub peak_bytes: u64,
    /// Blocks allocated (`alloc` and `alloc_zeroed`).
    pub allocations: u64,
    /// Blocks freed.
    pub deallocations: u64,
    /// Blocks resized in place or moved by `realloc`; a resized block stays with its owner.
    pub reallocations: u64,
    /// Bytes ever brought into the scope: allocations plus realloc growth.
    pub allocated_bytes: u64,
    /// Bytes ever released by the scope: frees plus realloc shrinkage.
    pub freed_bytes: u64,
}

impl ScopeStats {
    /// Blocks of the scope still allocated (`allocations - deallocations`).
    pub fn live_blocks(&self) -> u64 {
        self.allocations.saturating_sub(self.deallocations)
    }
}

/// Totals of a scope and all its descendants (see [`Snapshot::subtree`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubtreeStats {
    /// Scopes in the subtree, the scope itself included.
    pub scopes: usize,
    /// Sum of `live_bytes`.
    pub live_bytes: u64,
    /// Sum of `allocations`.
    pub allocations: u64,
    /// Sum of `deallocations`.
    pub deallocations: u64,
    /// Sum of `reallocations`.
    pub reallocations: u64,
}

/// The books at one moment: one [`ScopeStats`] per registered scope.
///
/// ```
/// let data = memledger::in_scope("global_index", || vec![0u8; 4096]);
/// let snap = memledger::snapshot();
/// let stats = snap.scope("global_index").unwrap();
/// assert_eq!(stats.path, "global_index");
/// assert!(snap.total_live_bytes() >= stats.live_bytes);
/// # drop(data);
/// ```
///
/// Scopes are listed in registration order, so a parent always comes before its children. The
/// snapshot's own memory is booked to the crate's scope ([`OWN_SCOPE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    scopes: Vec<ScopeStats>,
    parents: Vec<usize>,
    refused_scopes: u64,
    threads: usize,
    thread_slabs: usize,
}

/// Reads the books of every scope.
///
/// Costs one pass over the counters of every thread slab for every registered scope (see
/// `BENCHMARKS.md`), and the registry's lock while the scope names are copied. It never blocks
/// the allocation path.
pub fn snapshot() -> Snapshot {
    registry::with_registry(|registry| {
        let metas = registry.scopes();
        let n = metas.len();
        let mut totals = vec![counters::Totals::default(); n];
        let usage = counters::read_totals(n, &mut totals);
        let mut scopes: Vec<ScopeStats> = Vec::with_capacity(n);
        let mut parents = Vec::with_capacity(n);
        for (id, (meta, total)) in metas.iter().zip(&totals).enumerate() {
            let parent = usize::from(meta.parent);
            let path = if id == 0 {
                String::new()
            } else if parent == 0 {
                meta.name.to_string()
            } else {
                format!("{}/{}", scopes[parent].path, meta.name)
            };
            let live = total.bytes_in.wrapping_sub(total.bytes_out) as i64;
            let live_bytes = live.max(0) as u64;
            let peak_bytes = (total.peak.max(0) as u64).max(live_bytes);
            scopes.push(ScopeStats {
                path,
                name: meta.name.to_string(),
                live_bytes,
                peak_bytes,
                allocations: total.allocs,
                deallocations: total.frees,
                reallocations: total.reallocs,
                allocated_bytes: total.bytes_in,
                freed_bytes: total.bytes_out,
            });
            parents.push(parent);
        }
        Snapshot {
            scopes,
            parents,
            refused_scopes: registry::refused(),
            threads: usage.in_use,
            thread_slabs: usage.total,
        }
    })
}

impl Snapshot {
    /// The scope at `path` (`""` for the unscoped root), if it has been registered.
    pub fn scope(&self, path: &str) -> Option<&ScopeStats> {
        self.index_of(path).map(|i| &self.scopes[i])
    }

    fn index_of(&self, path: &str) -> Option<usize> {
        let wanted = normalize(path);
        self.scopes.iter().position(|s| s.path == wanted)
    }

    /// Every registered scope, parents before children.
    pub fn scopes(&self) -> &[ScopeStats] {
        &self.scopes
    }

    /// The unscoped root: blocks allocated outside every guard.
    pub fn unscoped(&self) -> &ScopeStats {
        &self.scopes[0]
    }

    /// The crate's own scope: its registry, per-thread counters and snapshots.
    pub fn own(&self) -> &ScopeStats {
        // The registry registers the crate's own scope right after the root, so it is always at
        // index 1 of a snapshot.
        &self.scopes[usize::from(registry::OWN_SCOPE_ID)]
    }

    /// The parent of the scope at `path` (`None` for the root or an unknown path).
    pub fn parent(&self, path: &str) -> Option<&ScopeStats> {
        let index = self.index_of(path)?;
        (index != 0).then(|| &self.scopes[self.parents[index]])
    }

    /// The direct children of the scope at `path`.
    pub fn children<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a ScopeStats> + 'a {
        let index = self.index_of(path);
        self.scopes
            .iter()
            .enumerate()
            .skip(1)
            .filter(move |(i, _)| Some(self.parents[*i]) == index)
            .map(|(_, s)| s)
    }

    /// Totals of the scope at `path` and all its descendants; the root's subtree is everything.
    ///
    /// Peaks are not summed: the peak of a subtree is not the sum of its scopes' peaks.
    pub fn subtree(&self, path: &str) -> Option<SubtreeStats> {
        let root = self.index_of(path)?;
        // Parents come before children, so one forward pass marks the whole subtree.
        let mut inside = vec![false; self.scopes.len()];
        let mut total = SubtreeStats::default();
        for (i, stats) in self.scopes.iter().enumerate() {
            inside[i] = i == root || (i != 0 && inside[self.parents[i]]);
            if inside[i] {
                total.scopes += 1;
                total.live_bytes += stats.live_bytes;
                total.allocations += stats.allocations;
                total.deallocations += stats.deallocations;
                total.reallocations += stats.reallocations;
            }
        }
        Some(total)
    }

    /// Live bytes of every scope together: the unscoped root, the crate's own scope and the
    /// overflow scope included.
    pub fn total_live_bytes(&self) -> u64 {
        self.scopes.iter().map(|s| s.live_bytes).sum()
    }

    /// How many times a scope could not be entered because the table of scope ids was full; those
    /// allocations were booked to [`OVERFLOW_SCOPE`].
    pub fn refused_scopes(&self) -> u64 {
        self.refused_scopes
    }

    /// Threads holding a counter slab when the snapshot was taken.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Counter slabs ever made: the largest number of threads that booked at the same time.
    pub fn thread_slabs(&self) -> usize {
        self.thread_slabs
    }

    /// How far the peaks of this snapshot may be from the truth per concurrent thread, in bytes.
    pub const PEAK_RESOLUTION_PER_THREAD: u64 = PUBLISH_THRESHOLD as u64;
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Formats a byte count with a binary unit (`12.5 MiB`).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A table of every scope with activity, indented by depth, with live and peak bytes, their share
/// of the total, and the counts.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_live_bytes();
        let label = |stats: &ScopeStats| -> String {
            let depth = stats.path.matches('/').count();
            let name = if stats.path == UNSCOPED {
                "(unscoped)"
            } else {
                &stats.name
            };
            format!("{}{}", "  ".repeat(depth), name)
        };
        // A scope is shown when it or any descendant has activity, so that every row sits under
        // its real parent. Children come after parents: one backward pass marks the ancestors.
        let mut shown: Vec<bool> = self
            .scopes
            .iter()
            .map(|s| s.allocations + s.reallocations + s.deallocations > 0)
            .collect();
        for i in (1..self.scopes.len()).rev() {
            if shown[i] {
                shown[self.parents[i]] = true;
            }
        }
        let rows: Vec<&ScopeStats> = self
            .scopes
            .iter()
            .zip(&shown)
            .filter(|(_, &shown)| shown)
            .map(|(s, _)| s)
            .collect();
        let width = rows
            .iter()
            .map(|s| label(s).len())
            .max()
            .unwrap_or(0)
            .max("scope".len());
        writeln!(
            f,
            "{:<width$}  {:>11}  {:>6}  {:>11}  {:>12}  {:>12}",
            "scope", "live", "share", "peak", "allocs", "frees"
        )?;
        for stats in rows {
            let share = if total == 0 {
                0.0
            } else {
                stats.live_bytes as f64 * 100.0 / total as f64
            };
            writeln!(
                f,
                "{:<width$}  {:>11}  {:>5.1}%  {:>11}  {:>12}  {:>12}",
                label(stats),
                human_bytes(stats.live_bytes),
                share,
                human_bytes(stats.peak_bytes),
                stats.allocations,
                stats.deallocations
            )?;
        }
        write!(f, "{:<width$}  {:>11}", "total", human_bytes(total))?;
        if self.refused_scopes > 0 {
            write!(
                f,
                "\n{} scope entries refused (table full) and booked to {OVERFLOW_SCOPE}",
                self.refused_scopes
            )?;
        }
        Ok(())
    }
}
