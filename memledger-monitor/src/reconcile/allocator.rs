//! What the allocator says: jemalloc's own statistics, read through cached MIBs after one epoch
//! advance per reading.

use core::fmt;

/// jemalloc's process-wide statistics at one moment (all in bytes).
///
/// Read by [`AllocatorStats::read`]: one `epoch` advance (jemalloc refreshes its cached
/// statistics; tens of microseconds with a few arenas) and six MIB reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AllocatorStats {
    /// Bytes in blocks handed to the program, rounded up to jemalloc's size classes
    /// (`stats.allocated`).
    pub allocated: u64,
    /// Bytes in pages that hold at least one live block (`stats.active`).
    pub active: u64,
    /// Bytes of jemalloc's own metadata (`stats.metadata`).
    pub metadata: u64,
    /// Bytes in physically resident pages jemalloc maps: active pages, dirty pages not yet
    /// purged, and metadata (`stats.resident`).
    pub resident: u64,
    /// Bytes in chunks jemalloc has mapped and holds as active extents (`stats.mapped`).
    pub mapped: u64,
    /// Bytes of virtual memory jemalloc retains for reuse rather than unmapping
    /// (`stats.retained`); not resident.
    pub retained: u64,
    /// Bytes of freed blocks held in jemalloc's thread caches, automatic and explicit, which
    /// `allocated` counts (`stats.arenas.<all>.tcache_bytes`); 0 in recordings made before it
    /// was read.
    #[cfg_attr(feature = "serde", serde(default))]
    pub tcache_bytes: u64,
}

/// Why jemalloc's statistics are not in a reading.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AllocatorStatsUnavailable {
    /// The crate was built without the `jemalloc` feature.
    NotBuilt,
    /// jemalloc is linked but does not serve the global allocator (the ledger wraps another
    /// allocator, such as `std::alloc::System`).
    NotTheGlobalAllocator,
    /// jemalloc refused a statistics call.
    Failed {
        /// jemalloc's message.
        message: String,
    },
}

impl fmt::Display for AllocatorStatsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocatorStatsUnavailable::NotBuilt => {
                f.write_str("allocator layers absent: built without the `jemalloc` feature")
            }
            AllocatorStatsUnavailable::NotTheGlobalAllocator => f.write_str(
                "allocator layers absent: the global allocator is not jemalloc \
                 (wrap `memledger::Jemalloc` to get them)",
            ),
            AllocatorStatsUnavailable::Failed { message } => {
                write!(
                    f,
                    "allocator layers absent: jemalloc stats failed: {message}"
                )
            }
        }
    }
}

impl std::error::Error for AllocatorStatsUnavailable {}

impl AllocatorStats {
    /// Reads jemalloc's statistics, or says why they are not available.
    ///
    /// The first call checks, once, that jemalloc serves the global allocator: it allocates one
    /// 64 KiB block and watches jemalloc's per-thread allocation counter move.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
    /// # fn main() {
    /// let stats = memledger_monitor::AllocatorStats::read().unwrap();
    /// assert!(stats.allocated <= stats.active && stats.active <= stats.resident);
    /// # }
    /// ```
    pub fn read() -> Result<AllocatorStats, AllocatorStatsUnavailable> {
        imp::read()
    }
}

#[cfg(feature = "jemalloc")]
mod imp {
    use super::{tcache_bytes, AllocatorStats, AllocatorStatsUnavailable};
    use std::sync::OnceLock;
    use tikv_jemalloc_ctl::{epoch, epoch_mib, stats, thread};

    struct Mibs {
        epoch: epoch_mib,
        allocated: stats::allocated_mib,
        active: stats::active_mib,
        metadata: stats::metadata_mib,
        resident: stats::resident_mib,
        mapped: stats::mapped_mib,
        retained: stats::retained_mib,
    }

    fn failed(e: tikv_jemalloc_ctl::Error) -> AllocatorStatsUnavailable {
        AllocatorStatsUnavailable::Failed {
            message: e.to_string(),
        }
    }

    fn mibs() -> Result<Mibs, tikv_jemalloc_ctl::Error> {
        Ok(Mibs {
            epoch: epoch::mib()?,
            allocated: stats::allocated::mib()?,
            active: stats::active::mib()?,
            metadata: stats::metadata::mib()?,
            resident: stats::resident::mib()?,
            mapped: stats::mapped::mib()?,
            retained: stats::retained::mib()?,
        })
    }

    /// Whether a block from the global allocator moves jemalloc's counter of this thread.
    fn jemalloc_is_global() -> Result<bool, tikv_jemalloc_ctl::Error> {
        let counter = thread::allocatedp::mib()?.read()?;
        let before = counter.get();
        let block = std::hint::black_box(vec![0u8; 64 * 1024]);
        let after = counter.get();
        drop(block);
        Ok(after.wrapping_sub(before) >= 64 * 1024)
    }

    static STATE: OnceLock<Result<Mibs, AllocatorStatsUnavailable>> = OnceLock::new();

    pub(super) fn read() -> Result<AllocatorStats, AllocatorStatsUnavailable> {
        let mibs = STATE
            .get_or_init(|| {
                // Booked to the crate's own scope, like the rest of its bookkeeping.
                let _own = memledger::__private::own_scope();
                if !jemalloc_is_global().map_err(failed)? {
                    return Err(AllocatorStatsUnavailable::NotTheGlobalAllocator);
                }
                mibs().map_err(failed)
            })
            .as_ref()
            .map_err(Clone::clone)?;
        mibs.epoch.advance().map_err(failed)?;
        Ok(AllocatorStats {
            allocated: mibs.allocated.read().map_err(failed)? as u64,
            active: mibs.active.read().map_err(failed)? as u64,
            metadata: mibs.metadata.read().map_err(failed)? as u64,
            #[cfg(not(memledger_mutant = "resident_read_from_mapped"))]
            resident: mibs.resident.read().map_err(failed)? as u64,
            // Seeded bug (`.ci/mutants`): the resident layer read from jemalloc's `mapped`.
            #[cfg(memledger_mutant = "resident_read_from_mapped")]
            resident: mibs.mapped.read().map_err(failed)? as u64,
            mapped: mibs.mapped.read().map_err(failed)? as u64,
            retained: mibs.retained.read().map_err(failed)? as u64,
            tcache_bytes: tcache_bytes().map_err(failed)? as u64,
        })
    }
}

/// `stats.arenas.<all>.tcache_bytes`: bytes in every thread cache, merged over the arenas at the
/// last epoch.
#[cfg(feature = "jemalloc")]
fn tcache_bytes() -> Result<usize, tikv_jemalloc_ctl::Error> {
    // SAFETY:
    // - the statistic is a `size_t`; 4096 is jemalloc's index for all arenas merged.
    unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"stats.arenas.4096.tcache_bytes\0") }
}

#[cfg(not(feature = "jemalloc"))]
mod imp {
    use super::{AllocatorStats, AllocatorStatsUnavailable};

    pub(super) fn read() -> Result<AllocatorStats, AllocatorStatsUnavailable> {
        Err(AllocatorStatsUnavailable::NotBuilt)
    }
}
