//! The sampled sites as a program reads them: [`sites`] copies the tables into [`Sites`], with
//! each scope's path, and [`usage`] says what the tables hold.

use crate::books::id::{normalize, ScopeId};
use crate::registry;
use crate::sampling::point::rate;
use crate::sampling::{stack, table};
use crate::scope::ScopeGuard;

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
    /// The stack was cut: deeper than [`MAX_DEPTH`](super::MAX_DEPTH), or stopped at a frame whose size varies
    /// between calls (see [`StackWalk`](super::StackWalk)), or not kept at all (no frames).
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
    /// Samples not kept because all [`LIVE_LIMIT`](super::LIVE_LIMIT) records were taken.
    pub dropped_samples: u64,
    /// Bytes the tables hold, booked to the crate's own scope
    /// ([`OWN_SCOPE`](crate::OWN_SCOPE)).
    pub table_bytes: u64,
    /// Stacks captured by the unwinder, by frame sizes it taught, and by frame pointers (see
    /// [`StackWalk`](super::StackWalk)): the unwinder costs about a hundred times more per frame.
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
        let path = normalize(path);
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
    let _own = ScopeGuard::own();
    let live = table::live_records();
    let stacks = table::stacks();
    let paths = registry::with_registry(|registry| registry.paths());
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
