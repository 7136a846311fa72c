//! The layers side by side: what the ledger books, what the allocator holds, what the kernel
//! counts, and a named figure for every gap between them.

use core::fmt;
use std::time::SystemTime;

pub(crate) mod allocator;
pub(crate) mod arenas;
pub(crate) mod process;

use allocator::{AllocatorStats, AllocatorStatsUnavailable};
use memledger::__private::human_bytes;
use memledger::Snapshot;
use memledger::{OVERFLOW_SCOPE, OWN_SCOPE, UNSCOPED};
use process::{CgroupMemory, ProcessMemory, ReadError};

/// One moment's memory, layer by layer, from the bytes the program asked for to the process's
/// resident set.
///
/// The layers, each holding the one before it:
///
/// 1. the ledger: bytes of live blocks as requested (`Layout::size()`), per scope; exact;
/// 2. jemalloc `allocated`: plus the blocks' tags, freed blocks held in caches (the ledger's front
///    and transfer caches, jemalloc's thread caches), and size-class rounding;
/// 3. jemalloc `active`: plus free slots in pages that hold live blocks (fragmentation);
/// 4. jemalloc `resident`: plus jemalloc's metadata and dirty pages not yet given back;
/// 5. the process's RSS: plus file-backed pages (code, libraries, mapped files) and anonymous
///    memory outside the Rust heap (thread stacks, C `malloc`, other mappings).
///
/// [`gaps`](Reconciliation::gaps) names and sizes each step; the
/// [`remainder`](Reconciliation::remainder) is what the RSS holds beyond the ledger and the named
/// gaps, so the three add up to the RSS by construction. Every gap but the last is
/// measured; the last ([`GapKind::OutsideHeap`]) is what the RSS holds beyond everything measured
/// below it: the unexplained rest, shown rather than hidden (Firefox's *heap-unclassified*).
///
/// Layers can overlap: they are read one after another, not atomically, and jemalloc's
/// `resident` is an upper bound whose metadata need not all be resident. A step that reads
/// negative is then a zero gap, and the overlap shows as a negative
/// [`remainder`](Reconciliation::remainder), never folded into another gap. With an inner
/// allocator other than jemalloc the allocator layers are absent (not zero) and
/// [`allocator`](Reconciliation::allocator) says why.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
/// # fn main() {
/// let index = memledger::in_scope("global_index", || vec![7u8; 1 << 20]);
/// let r = memledger_monitor::Reconciliation::capture().unwrap();
/// // The books hold the index's megabyte, and the process holds at least what the books hold.
/// assert!(r.ledger_bytes >= 1 << 20);
/// assert!(r.process.rss_bytes >= r.ledger_bytes);
/// for gap in r.gaps() {
///     println!("{:?}: {} bytes", gap.kind, gap.bytes);
/// }
/// println!("unexplained: {} bytes", r.remainder());
/// println!("{r}");
/// # drop(index);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Reconciliation {
    /// When the layers were read.
    pub at: SystemTime,
    /// Live bytes booked by the ledger, all scopes together.
    pub ledger_bytes: u64,
    /// Live blocks booked by the ledger.
    pub ledger_blocks: u64,
    /// Bytes of the tags the ledger adds to its blocks (part of `allocated`).
    pub tag_bytes: u64,
    /// Bytes of freed blocks the ledger holds for reuse in its threads' front caches and its
    /// transfer caches (part of `allocated`, no scope's live bytes); 0 without scope arenas and in
    /// recordings made before it was read.
    #[cfg_attr(feature = "serde", serde(default))]
    pub cached_bytes: u64,
    /// jemalloc's statistics, or why they are absent.
    pub allocator: Result<AllocatorStats, AllocatorStatsUnavailable>,
    /// The kernel's view of the process.
    pub process: ProcessMemory,
    /// The process's cgroup, if it is in one with a memory controller.
    pub cgroup: Option<CgroupMemory>,
    /// Live bytes per scope and the rest of the RSS, largest first.
    pub breakdown: Vec<BreakdownEntry>,
    /// Per scope with an arena of its own (`Ledger<Jemalloc>`, feature `arenas`): jemalloc's own
    /// statistics for the scope's full blocks. Empty under other allocators.
    #[cfg_attr(feature = "serde", serde(default))]
    pub scope_arenas: Vec<ScopeArena>,
}

/// One scope's arena under `Ledger<Jemalloc>` and jemalloc's statistics for it: the memory of the
/// scope's arena blocks (up to 16 KiB, and larger full ones), as jemalloc sees it. `None` where a
/// statistic cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeArena {
    /// The scope's path.
    pub scope: String,
    /// jemalloc's index of the arena (`stats.arenas.<i>`).
    pub jemalloc_index: u32,
    /// Bytes in live blocks, size classes included (`small.allocated + large.allocated`);
    /// blocks cached in threads' explicit caches count as live.
    pub allocated: Option<u64>,
    /// Bytes in pages that hold live blocks (`pactive` × page size).
    pub active: Option<u64>,
    /// Bytes of the arena's memory that are resident, metadata included (`resident`).
    pub resident: Option<u64>,
    /// Bytes the arena has mapped (`mapped`).
    pub mapped: Option<u64>,
    /// The arena's own metadata (`base`).
    pub metadata: Option<u64>,
}

/// A named gap between two layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Gap {
    /// What the gap is.
    pub kind: GapKind,
    /// Its size.
    pub bytes: u64,
}

/// The gaps between layers, in layer order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GapKind {
    /// The ledger's tags on live blocks (`allocated` includes them).
    Tags,
    /// Freed blocks held for reuse: the ledger's front and transfer caches and jemalloc's thread
    /// caches (`allocated` includes them; they are no scope's live bytes).
    CachedBlocks,
    /// jemalloc `allocated` beyond the requested bytes and tags: rounding up to size classes.
    SizeClassRounding,
    /// jemalloc `active - allocated`: free slots in pages that hold live blocks.
    Fragmentation,
    /// jemalloc `metadata`: the allocator's own bookkeeping.
    AllocatorMetadata,
    /// jemalloc `resident - active - metadata`: freed pages not yet given back to the kernel.
    DirtyPages,
    /// Without jemalloc's stats: RSS beyond the ledger that is anonymous memory, the inner
    /// allocator's overhead and free lists included (a residual, not a measurement).
    AllocatorOverheadAndOutsideHeap,
    /// Resident pages backed by files or shared memory: code, libraries, mapped files.
    FileBacked,
    /// Anonymous resident memory outside jemalloc: thread stacks, C `malloc`, other mappings.
    /// Not measured directly: the RSS minus jemalloc's resident bytes and the file-backed pages.
    OutsideHeap,
}

impl GapKind {
    /// What the gap holds, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            GapKind::Tags => "ledger tags on live blocks",
            GapKind::CachedBlocks => "freed blocks cached for reuse (thread and transfer caches)",
            GapKind::SizeClassRounding => "size-class rounding",
            GapKind::Fragmentation => "fragmentation (free slots in active pages)",
            GapKind::AllocatorMetadata => "allocator metadata",
            GapKind::DirtyPages => "dirty pages not yet purged",
            GapKind::AllocatorOverheadAndOutsideHeap => {
                "unexplained: allocator overhead, stacks, C malloc"
            }
            GapKind::FileBacked => "file-backed pages (code, libraries, mapped files)",
            GapKind::OutsideHeap => "unexplained: stacks, C malloc, other mappings",
        }
    }
}

/// One line of the breakdown of the RSS by measured bytes.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BreakdownEntry {
    /// A scope path, or a name in angle brackets for the lines that are not scopes.
    pub label: String,
    /// What the line is.
    pub kind: BreakdownKind,
    /// Its bytes.
    pub bytes: u64,
    /// Its share of the RSS, in percent.
    pub percent_of_rss: f64,
}

/// What a [`BreakdownEntry`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BreakdownKind {
    /// A user scope's own live bytes (not its children's).
    Scope,
    /// Blocks allocated outside every scope.
    Unscoped,
    /// The crate's own memory.
    Own,
    /// Blocks of scopes refused for lack of room in the scope table.
    Overflow,
    /// What the RSS holds beyond the ledger: every gap above.
    Other,
}

impl Reconciliation {
    /// Reads every layer now: a snapshot of the ledger, jemalloc's statistics (one epoch advance),
    /// the process's RSS and its cgroup.
    ///
    /// Fails only when the RSS cannot be read; absent jemalloc statistics or cgroup are recorded
    /// in the result. A failing cgroup read is recorded as no cgroup.
    pub fn capture() -> Result<Reconciliation, ReadError> {
        // The reconciliation is the crate's own memory, wherever it is taken.
        let _own = memledger::__private::own_scope();
        let snapshot = memledger::snapshot();
        let allocator = AllocatorStats::read();
        let process = ProcessMemory::read()?;
        let cgroup = CgroupMemory::read().unwrap_or(None);
        Ok(Reconciliation::from_parts(
            &snapshot, allocator, process, cgroup,
        ))
    }

    /// Puts given readings side by side (for readings taken elsewhere, or replayed).
    pub fn from_parts(
        snapshot: &Snapshot,
        allocator: Result<AllocatorStats, AllocatorStatsUnavailable>,
        process: ProcessMemory,
        cgroup: Option<CgroupMemory>,
    ) -> Reconciliation {
        let ledger_bytes = snapshot.total_live_bytes();
        let ledger_blocks = snapshot
            .scopes()
            .iter()
            .fold(0u64, |total, s| total.saturating_add(s.live_blocks()));
        let tagged_blocks =
            ledger_blocks.saturating_sub(memledger::__private::blocks_without_trailer());
        let rss = process.rss_bytes;
        let percent = |bytes: u64| memledger::__private::percent(bytes, rss);
        let mut breakdown: Vec<BreakdownEntry> = snapshot
            .scopes()
            .iter()
            .filter(|s| s.live_bytes > 0)
            .map(|s| {
                let kind = match s.path.as_str() {
                    UNSCOPED => BreakdownKind::Unscoped,
                    OWN_SCOPE => BreakdownKind::Own,
                    OVERFLOW_SCOPE => BreakdownKind::Overflow,
                    _ => BreakdownKind::Scope,
                };
                let label = match kind {
                    BreakdownKind::Unscoped => "<unscoped>".to_string(),
                    _ => s.path.clone(),
                };
                BreakdownEntry {
                    label,
                    kind,
                    bytes: s.live_bytes,
                    percent_of_rss: percent(s.live_bytes),
                }
            })
            .collect();
        let other = rss.saturating_sub(ledger_bytes);
        breakdown.push(BreakdownEntry {
            label: "<other>".to_string(),
            kind: BreakdownKind::Other,
            bytes: other,
            percent_of_rss: percent(other),
        });
        breakdown.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.label.cmp(&b.label)));
        Reconciliation {
            at: SystemTime::now(),
            ledger_bytes,
            ledger_blocks,
            tag_bytes: tagged_blocks.saturating_mul(memledger::__private::TRAILER_SIZE as u64),
            cached_bytes: memledger::__private::cached_arena_bytes(),
            allocator,
            process,
            cgroup,
            breakdown,
            scope_arenas: arenas::read(),
        }
    }

    /// The layers as cumulative levels, each with the gap that leads to it.
    fn levels(&self) -> Vec<(GapKind, u64)> {
        let mut levels = Vec::with_capacity(8);
        let file = self.process.file_backed_bytes;
        match &self.allocator {
            Ok(a) => {
                let tagged = self.ledger_bytes.saturating_add(self.tag_bytes);
                levels.push((GapKind::Tags, tagged));
                let cached = tagged
                    .saturating_add(self.cached_bytes)
                    .saturating_add(a.tcache_bytes);
                levels.push((GapKind::CachedBlocks, cached));
                levels.push((GapKind::SizeClassRounding, a.allocated));
                levels.push((GapKind::Fragmentation, a.active));
                levels.push((
                    GapKind::AllocatorMetadata,
                    a.active.saturating_add(a.metadata),
                ));
                levels.push((GapKind::DirtyPages, a.resident));
                if let Some(file) = file {
                    levels.push((GapKind::FileBacked, a.resident.saturating_add(file)));
                }
                levels.push((GapKind::OutsideHeap, self.process.rss_bytes));
            }
            Err(_) => {
                let anonymous = self.process.rss_bytes.saturating_sub(file.unwrap_or(0));
                levels.push((GapKind::AllocatorOverheadAndOutsideHeap, anonymous));
                if file.is_some() {
                    levels.push((GapKind::FileBacked, self.process.rss_bytes));
                }
            }
        }
        levels
    }

    /// The named gaps from the ledger up to the RSS, in layer order.
    ///
    /// Each gap is the step from one layer to the next. A step that reads negative (layers read
    /// at slightly different moments, or counted differently by the kernel and the allocator) is
    /// zero here and counted in [`remainder`](Self::remainder).
    pub fn gaps(&self) -> Vec<Gap> {
        let mut previous = self.ledger_bytes;
        self.levels()
            .into_iter()
            .map(|(kind, level)| {
                let bytes = level.saturating_sub(previous);
                previous = level;
                Gap { kind, bytes }
            })
            .collect()
    }

    /// The RSS minus the ledger and every named gap: zero when the layers are in order, and
    /// negative by the overlap when a layer reads below the one under it (see
    /// [`gaps`](Self::gaps)). Never positive: the last gap takes whatever the RSS holds beyond
    /// the layers below it.
    pub fn remainder(&self) -> i64 {
        let explained: i128 = i128::from(self.ledger_bytes)
            + self
                .gaps()
                .iter()
                .map(|g| i128::from(g.bytes))
                .sum::<i128>();
        let remainder = i128::from(self.process.rss_bytes) - explained;
        remainder.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The gap of the given kind, if this reconciliation has it.
    pub fn gap(&self, kind: GapKind) -> Option<u64> {
        self.gaps().iter().find(|g| g.kind == kind).map(|g| g.bytes)
    }
}

/// The layers, the gaps and the breakdown as a table.
impl fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rss = self.process.rss_bytes;
        let pct = |b: u64| memledger::__private::percent(b, rss);
        writeln!(f, "{:<58}  {:>11}  {:>6}", "layer", "bytes", "of RSS")?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, bytes: u64| {
            writeln!(
                f,
                "{name:<58}  {:>11}  {:>5.1}%",
                human_bytes(bytes),
                pct(bytes)
            )
        };
        row(f, "ledger (requested bytes)", self.ledger_bytes)?;
        match &self.allocator {
            Ok(a) => {
                row(f, "jemalloc allocated", a.allocated)?;
                row(f, "jemalloc active", a.active)?;
                row(f, "jemalloc resident", a.resident)?;
                writeln!(
                    f,
                    "  (mapped {}, retained {}, metadata {})",
                    human_bytes(a.mapped),
                    human_bytes(a.retained),
                    human_bytes(a.metadata)
                )?;
            }
            Err(why) => writeln!(f, "{why}")?,
        }
        row(f, "process RSS", rss)?;
        if let Some(cgroup) = &self.cgroup {
            write!(f, "cgroup usage {}", human_bytes(cgroup.usage_bytes))?;
            match cgroup.limit_bytes {
                Some(limit) => writeln!(f, ", limit {}", human_bytes(limit))?,
                None => writeln!(f, ", no limit")?,
            }
        }
        writeln!(f, "\ngaps from the ledger to the RSS")?;
        for gap in self.gaps() {
            row(f, &format!("+ {}", gap.kind.describe()), gap.bytes)?;
        }
        let remainder = self.remainder();
        writeln!(
            f,
            "{:<58}  {:>11}  {:>5.1}%",
            "- overlap between layers",
            if remainder < 0 {
                format!("-{}", human_bytes(remainder.unsigned_abs()))
            } else {
                human_bytes(remainder as u64)
            },
            remainder as f64 * 100.0 / rss.max(1) as f64
        )?;
        if remainder < 0 {
            writeln!(
                f,
                "  (jemalloc's `resident` is an upper bound that counts pages the kernel may not\n   \
                 hold, and the layers are read one after another)"
            )?;
        }
        writeln!(f, "\nbreakdown of the RSS by measured bytes")?;
        for entry in &self.breakdown {
            writeln!(
                f,
                "{:<58}  {:>11}  {:>5.1}%",
                entry.label,
                human_bytes(entry.bytes),
                entry.percent_of_rss
            )?;
        }
        if !self.scope_arenas.is_empty() {
            writeln!(
                f,
                "\nscope arenas (blocks up to 16 KiB and full larger ones): allocated / active / resident"
            )?;
            let shown = |v: Option<u64>| v.map_or_else(|| "?".to_string(), human_bytes);
            for arena in &self.scope_arenas {
                let scope = if arena.scope.is_empty() {
                    "<unscoped>"
                } else {
                    &arena.scope
                };
                writeln!(
                    f,
                    "{scope:<40}  {:>11}  {:>11}  {:>11}",
                    shown(arena.allocated),
                    shown(arena.active),
                    shown(arena.resident)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconcile(allocator: AllocatorStats, rss: u64, file: u64) -> Reconciliation {
        let process = ProcessMemory {
            rss_bytes: rss,
            file_backed_bytes: Some(file),
            virtual_bytes: 0,
        };
        Reconciliation::from_parts(&memledger::snapshot(), Ok(allocator), process, None)
    }

    /// The gaps up to jemalloc's `allocated`: the tags, the cached blocks (the ledger's caches and
    /// jemalloc's thread caches), and the rounding of the rest up to `allocated` (the ledger is
    /// this test process's own).
    fn assert_lower_gaps(r: &Reconciliation, allocated: u64, tcache: u64) {
        assert_eq!(r.gap(GapKind::Tags), Some(r.tag_bytes));
        assert_eq!(r.gap(GapKind::CachedBlocks), Some(r.cached_bytes + tcache));
        assert_eq!(
            r.gap(GapKind::SizeClassRounding),
            Some(allocated - r.ledger_bytes - r.tag_bytes - r.cached_bytes - tcache)
        );
    }

    #[test]
    fn ordered_layers_leave_no_remainder() {
        let a = AllocatorStats {
            allocated: 50_000_000,
            active: 60_000_000,
            metadata: 5_000_000,
            resident: 70_000_000,
            mapped: 90_000_000,
            retained: 10_000_000,
            tcache_bytes: 1_000_000,
        };
        let r = reconcile(a, 100_000_000, 20_000_000);
        assert_eq!(r.remainder(), 0);
        assert_lower_gaps(&r, 50_000_000, 1_000_000);
        assert_eq!(r.gap(GapKind::Fragmentation), Some(10_000_000));
        assert_eq!(r.gap(GapKind::AllocatorMetadata), Some(5_000_000));
        assert_eq!(r.gap(GapKind::DirtyPages), Some(5_000_000));
        assert_eq!(r.gap(GapKind::FileBacked), Some(20_000_000));
        assert_eq!(r.gap(GapKind::OutsideHeap), Some(10_000_000));
    }

    #[test]
    fn overlapping_layers_show_in_the_remainder_not_in_a_later_gap() {
        // Metadata partly not resident: resident is below active + metadata.
        let a = AllocatorStats {
            allocated: 50_000_000,
            active: 60_000_000,
            metadata: 5_000_000,
            resident: 61_000_000,
            mapped: 90_000_000,
            retained: 0,
            tcache_bytes: 0,
        };
        let r = reconcile(a, 100_000_000, 20_000_000);
        assert_lower_gaps(&r, 50_000_000, 0);
        assert_eq!(r.gap(GapKind::Fragmentation), Some(10_000_000));
        assert_eq!(r.gap(GapKind::AllocatorMetadata), Some(5_000_000));
        assert_eq!(r.gap(GapKind::DirtyPages), Some(0));
        // The file-backed gap is the whole of the file-backed pages.
        assert_eq!(r.gap(GapKind::FileBacked), Some(20_000_000));
        assert_eq!(r.gap(GapKind::OutsideHeap), Some(19_000_000));
        // The 4 MB of metadata above `resident`.
        assert_eq!(r.remainder(), -4_000_000);
        // A resident set below jemalloc's resident bytes.
        let r = reconcile(a, 70_000_000, 20_000_000);
        assert_eq!(r.gap(GapKind::FileBacked), Some(20_000_000));
        assert_eq!(r.gap(GapKind::OutsideHeap), Some(0));
        // And the 11 MB by which jemalloc's resident and the file-backed pages exceed the RSS.
        assert_eq!(r.remainder(), -4_000_000 - 11_000_000);
    }
}
