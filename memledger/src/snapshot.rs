//! Reading the books: per-scope statistics at one moment.

use core::fmt;

use crate::books::cells::{Totals, GRANT, PEAK_RESOLUTION};
#[cfg(doc)]
use crate::books::id::OWN_SCOPE;
use crate::books::id::{self, normalize, ScopeId, OVERFLOW_SCOPE, UNSCOPED};
use crate::books::shared;
use crate::registry;
use crate::thread::slab::read_totals;
use crate::units::human_bytes;

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
/// `peak_bytes` is raised on the books' cold path, which each thread takes at most once per 64 KiB
/// of its traffic in a scope, so it has a resolution. For a scope that one thread books to, it is
/// never above the true high-water mark and at most 64 KiB
/// ([`Snapshot::PEAK_RESOLUTION_ONE_THREAD`]) below it. Otherwise each live thread that has booked
/// to the scope may hold back up to 96 KiB ([`Snapshot::PEAK_RESOLUTION_PER_THREAD`]) of net bytes
/// it has not yet published (a thread publishes when its net moved by 32 KiB at a refill, and
/// everything when it exits): with `k` such threads, `peak_bytes` is at most `(k - 1) × 96 KiB`
/// above and at most `k × 96 KiB` below the true high-water mark. It is never below `live_bytes`.
/// Idle threads count in `k`: for instance, 50 parked pool threads that each freed 60 KiB of a
/// scope's blocks without publishing can make that scope's peak read up to 50 × 60 KiB high.
///
/// A scope in exact mode ([`ScopeHandle::set_exact`](crate::ScopeHandle::set_exact), and every
/// scope [`measure`](crate::measure) measures) publishes every booking as it happens: its peak is
/// exact, whatever the number of threads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeStats {
    /// The scope's path: its name, after the names of the scopes it is nested in, joined by `/`
    /// (`"project_indexes/parse"`). The unscoped root is `""`.
    pub path: String,
    /// The last segment of the path.
    pub name: String,
    /// Bytes of the scope's blocks that are still allocated.
    pub live_bytes: u64,
    /// Highest `live_bytes` seen since the process started, or since the scope's peak was last
    /// restarted by [`crate::measure`] or a criterion `Peak` measurement (see the type's docs for
    /// its resolution under many threads).
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
    /// The scope's enforced hard limit, if one is set (see [`crate::limit_scope`]).
    pub limit_bytes: Option<u64>,
    /// Allocations and resizes refused because they would have taken the scope past its limit.
    pub refused_allocations: u64,
}

impl ScopeStats {
    /// Blocks of the scope still allocated (`allocations - deallocations`).
    pub fn live_blocks(&self) -> u64 {
        self.allocations.saturating_sub(self.deallocations)
    }
}

/// Totals of a scope and all its descendants (see [`Snapshot::subtree`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "SnapshotFields"))]
pub struct Snapshot {
    scopes: Vec<ScopeStats>,
    parents: Vec<usize>,
    refused_scopes: u64,
    threads: usize,
    thread_slabs: usize,
    /// Indexes of the scopes whose live bytes read below zero and were shown as zero.
    #[cfg_attr(feature = "serde", serde(default))]
    clamped: Vec<usize>,
}

/// A snapshot as read from outside, checked before it becomes a [`Snapshot`].
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct SnapshotFields {
    scopes: Vec<ScopeStats>,
    parents: Vec<usize>,
    refused_scopes: u64,
    threads: usize,
    thread_slabs: usize,
    #[serde(default)]
    clamped: Vec<usize>,
}

#[cfg(feature = "serde")]
impl TryFrom<SnapshotFields> for Snapshot {
    type Error = String;

    fn try_from(f: SnapshotFields) -> Result<Snapshot, String> {
        if f.scopes.is_empty() || f.scopes[0].path != UNSCOPED {
            return Err("a snapshot starts with the unscoped root (path \"\")".to_string());
        }
        if f.scopes.len() <= usize::from(id::OWN_SCOPE_ID) {
            return Err(format!(
                "a snapshot holds the crate's own scope at index {}",
                id::OWN_SCOPE_ID
            ));
        }
        if f.parents.len() != f.scopes.len() {
            return Err(format!(
                "{} scopes but {} parents: there is one parent per scope",
                f.scopes.len(),
                f.parents.len()
            ));
        }
        for (i, (&parent, scope)) in f.parents.iter().zip(&f.scopes).enumerate().skip(1) {
            if parent >= i {
                return Err(format!(
                    "scope {i} ({:?}) has parent {parent}: parents come before their children",
                    scope.path
                ));
            }
            let expected = if parent == 0 {
                scope.name.clone()
            } else {
                format!("{}/{}", f.scopes[parent].path, scope.name)
            };
            if scope.path != expected {
                return Err(format!(
                    "scope {i} has path {:?}, but its name and parent make it {expected:?}",
                    scope.path
                ));
            }
        }
        if let Some(&i) = f.clamped.iter().find(|&&i| i >= f.scopes.len()) {
            return Err(format!(
                "clamped scope {i} is not one of the {} scopes",
                f.scopes.len()
            ));
        }
        if let Some(&i) = f.clamped.iter().find(|&&i| f.scopes[i].live_bytes != 0) {
            return Err(format!(
                "scope {i} ({:?}) is listed as clamped at zero but shows {} live bytes",
                f.scopes[i].path, f.scopes[i].live_bytes
            ));
        }
        Ok(Snapshot {
            scopes: f.scopes,
            parents: f.parents,
            refused_scopes: f.refused_scopes,
            threads: f.threads,
            thread_slabs: f.thread_slabs,
            clamped: f.clamped,
        })
    }
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
        let mut totals = vec![Totals::default(); n];
        let usage = read_totals(n, &mut totals);
        let mut paths = registry.paths().into_iter();
        let mut scopes: Vec<ScopeStats> = Vec::with_capacity(n);
        let mut parents = Vec::with_capacity(n);
        let mut clamped = Vec::new();
        for (id, (meta, total)) in metas.iter().zip(&totals).enumerate() {
            let parent = usize::from(meta.parent);
            let path = paths.next().unwrap_or_default();
            let live = total.bytes_in.wrapping_sub(total.bytes_out) as i64;
            // Below zero only while threads run: a free read before the allocation it frees. At
            // quiescence it would be a booking bug, so it is counted, not only hidden.
            if live < 0 {
                clamped.push(id);
            }
            let live_bytes = live.max(0) as u64;
            let peak_bytes = (total.peak.max(0) as u64).max(live_bytes);
            // Ids below `MAX_SCOPES` fit a tag.
            let (limit_bytes, refused_allocations) = shared::limit(id as ScopeId);
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
                limit_bytes,
                refused_allocations,
            });
            parents.push(parent);
        }
        Snapshot {
            scopes,
            parents,
            refused_scopes: registry::refused(),
            threads: usage.in_use,
            thread_slabs: usage.total,
            clamped,
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
        &self.scopes[usize::from(id::OWN_SCOPE_ID)]
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
                total.live_bytes = total.live_bytes.saturating_add(stats.live_bytes);
                total.allocations = total.allocations.saturating_add(stats.allocations);
                total.deallocations = total.deallocations.saturating_add(stats.deallocations);
                total.reallocations = total.reallocations.saturating_add(stats.reallocations);
            }
        }
        Some(total)
    }

    /// Live bytes of every scope together: the unscoped root, the crate's own scope and the
    /// overflow scope included.
    pub fn total_live_bytes(&self) -> u64 {
        // Saturating: a snapshot read from JSON may hold any values.
        self.scopes
            .iter()
            .fold(0u64, |total, s| total.saturating_add(s.live_bytes))
    }

    /// How many times a scope could not be entered because the table of scope ids was full; those
    /// allocations were booked to [`OVERFLOW_SCOPE`].
    pub fn refused_scopes(&self) -> u64 {
        self.refused_scopes
    }

    /// The scopes whose live bytes read below zero and are shown as zero.
    ///
    /// While threads run, each thread's counters are read at a slightly different moment, so a
    /// free may be read before the allocation it frees and a scope's sum dip below zero for that
    /// snapshot. Once the threads that booked to a scope are joined or idle, that cannot happen:
    /// a clamped scope then means the books are wrong, and tests assert there is none.
    pub fn clamped_scopes(&self) -> impl Iterator<Item = &ScopeStats> + '_ {
        self.clamped.iter().map(|&i| &self.scopes[i])
    }

    /// Threads holding a counter slab when the snapshot was taken.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Counter slabs ever made: the largest number of threads that booked at the same time.
    pub fn thread_slabs(&self) -> usize {
        self.thread_slabs
    }

    /// How far the peaks of this snapshot may be from the truth per concurrent thread, in bytes
    /// (96 KiB; see [`ScopeStats`]).
    pub const PEAK_RESOLUTION_PER_THREAD: u64 = PEAK_RESOLUTION;

    /// How far below the true high-water mark the peak of a scope that one thread books to may
    /// read (64 KiB; never above it). Zero in exact mode.
    pub const PEAK_RESOLUTION_ONE_THREAD: u64 = GRANT;
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
        if !self.clamped.is_empty() {
            write!(
                f,
                "\n{} scopes read below zero while threads ran, shown as 0",
                self.clamped.len()
            )?;
        }
        Ok(())
    }
}

/// How the books moved between a baseline snapshot and a later one (see [`Snapshot::diff`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotDiff {
    /// Live bytes of all scopes in the baseline.
    pub total_before: u64,
    /// Live bytes of all scopes now.
    pub total_after: u64,
    /// Every scope with activity since the baseline, the largest change of live bytes first.
    pub scopes: Vec<ScopeDiff>,
}

/// One scope's movement since a baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeDiff {
    /// The scope's path.
    pub path: String,
    /// Live bytes in the baseline (zero for a scope registered since).
    pub live_before: u64,
    /// Live bytes now.
    pub live_after: u64,
    /// Blocks allocated since the baseline.
    pub allocations: u64,
    /// Blocks freed since the baseline.
    pub deallocations: u64,
    /// Bytes brought in since the baseline.
    pub allocated_bytes: u64,
    /// Bytes released since the baseline.
    pub freed_bytes: u64,
}

impl ScopeDiff {
    /// `live_after - live_before`.
    pub fn live_delta(&self) -> i64 {
        (self.live_after as i128 - self.live_before as i128) as i64
    }
}

impl SnapshotDiff {
    /// `total_after - total_before`.
    pub fn total_delta(&self) -> i64 {
        (self.total_after as i128 - self.total_before as i128) as i64
    }

    /// The movement of the scope at `path`, if it had any.
    pub fn scope(&self, path: &str) -> Option<&ScopeDiff> {
        let wanted = normalize(path);
        self.scopes.iter().find(|s| s.path == wanted)
    }
}

impl Snapshot {
    /// What changed from `baseline` (an earlier snapshot) to this one, per scope: the model is
    /// the JVM's `VM.native_memory summary.diff`.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
    /// # fn main() {
    /// let baseline = memledger::snapshot();
    /// let grown = memledger::in_scope("project_indexes", || vec![0u8; 10_000]);
    /// let diff = memledger::snapshot().diff(&baseline);
    /// let scope = diff.scope("project_indexes").unwrap();
    /// assert_eq!(scope.live_delta(), 10_000);
    /// assert_eq!(scope.allocations, 1);
    /// println!("{diff}");
    /// # drop(grown);
    /// # }
    /// ```
    pub fn diff(&self, baseline: &Snapshot) -> SnapshotDiff {
        let _own = crate::scope::ScopeGuard::own();
        let mut scopes: Vec<ScopeDiff> = self
            .scopes
            .iter()
            .map(|now| {
                let before = baseline.scope(&now.path);
                let at = |f: fn(&ScopeStats) -> u64| before.map_or(0, f);
                ScopeDiff {
                    path: now.path.clone(),
                    live_before: at(|s| s.live_bytes),
                    live_after: now.live_bytes,
                    allocations: now.allocations.saturating_sub(at(|s| s.allocations)),
                    deallocations: now.deallocations.saturating_sub(at(|s| s.deallocations)),
                    allocated_bytes: now
                        .allocated_bytes
                        .saturating_sub(at(|s| s.allocated_bytes)),
                    freed_bytes: now.freed_bytes.saturating_sub(at(|s| s.freed_bytes)),
                }
            })
            .filter(|d| d.live_before != d.live_after || d.allocations > 0 || d.deallocations > 0)
            .collect();
        scopes.sort_by(|a, b| {
            b.live_delta()
                .unsigned_abs()
                .cmp(&a.live_delta().unsigned_abs())
                .then_with(|| a.path.cmp(&b.path))
        });
        SnapshotDiff {
            total_before: baseline.total_live_bytes(),
            total_after: self.total_live_bytes(),
            scopes,
        }
    }
}

/// Each scope that moved: live bytes now and their change, like `summary.diff`.
impl fmt::Display for SnapshotDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = |delta: i64| {
            let sign = if delta < 0 { '-' } else { '+' };
            format!("{sign}{}", human_bytes(delta.unsigned_abs()))
        };
        let width = self
            .scopes
            .iter()
            .map(|s| s.path.len().max(10))
            .max()
            .unwrap_or(10);
        writeln!(
            f,
            "{:<width$}  {:>11}  {:>12}  {:>10}  {:>10}",
            "scope", "live", "change", "allocs", "frees"
        )?;
        for s in &self.scopes {
            let name = if s.path.is_empty() {
                "(unscoped)"
            } else {
                &s.path
            };
            writeln!(
                f,
                "{:<width$}  {:>11}  {:>12}  {:>10}  {:>10}",
                name,
                human_bytes(s.live_after),
                signed(s.live_delta()),
                s.allocations,
                s.deallocations
            )?;
        }
        write!(
            f,
            "{:<width$}  {:>11}  {:>12}",
            "total",
            human_bytes(self.total_after),
            signed(self.total_delta())
        )
    }
}
