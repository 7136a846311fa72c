//! Cost of one allocation and its free, for the ledger and its baselines, in one run.
//!
//! Every allocator is called directly through [`GlobalAlloc`], not installed as the global
//! allocator, so that all variants are measured by the same binary on the same machine state and
//! their figures can be compared as ratios. The binary's own global allocator is bare jemalloc,
//! so that criterion's allocations neither go through the variants nor show up in their books.
//!
//! - `pair/<variant>/<size>`: allocate `size` bytes and free them at once. jemalloc's thread
//!   cache serves the same slot every time, so this is the shortest possible path.
//! - `churn/<variant>`: a ring of 256 live blocks; each step frees the oldest block and allocates
//!   one of a pseudo-random small size (8..=512 bytes, the same sequence for every variant).
//!   Closer to a real program: several size classes in flight, blocks outliving the call.
//!
//! Each measured iteration is one free plus one allocation, so the reported time is the cost of
//! one pair.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use stats_alloc::INSTRUMENTED_SYSTEM;
use tikv_jemallocator::Jemalloc;

#[path = "support/mod.rs"]
mod support;
use support::{
    alloc_via, churn_layouts, dealloc_via, Churn, ALIGN, JEMALLOC, LEDGER_JEMALLOC, LEDGER_SYSTEM,
    SYSTEM, TAG_ONLY_JEMALLOC,
};

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// Sizes of the `pair` group: sizes that fill their jemalloc size class (16, 64, 256, 1024, 4096,
/// 65536: the trailer pushes them into the next class) and sizes that leave room for it (100 in
/// the 112 class, 1000 in the 1024 class), from tiny to one that jemalloc serves as a large
/// allocation.
const PAIR_SIZES: [usize; 8] = [16, 64, 100, 256, 1000, 1024, 4096, 65536];

/// The allocators under test, each with its name in the report and whether the measurement runs
/// inside a scope.
///
/// A macro rather than a list of trait objects: each variant is its own monomorphised code, as
/// it would be behind `#[global_allocator]`.
macro_rules! for_each_variant {
    ($bench:ident, $group:expr $(, $arg:expr)*) => {{
        $bench($group, "jemalloc", &JEMALLOC, false $(, $arg)*);
        $bench($group, "system", &SYSTEM, false $(, $arg)*);
        // `StatsAlloc::new` is only `const` with the crate's nightly feature, so its ready-made
        // static over the system allocator is the one instance there can be.
        $bench($group, "stats_alloc", &INSTRUMENTED_SYSTEM, false $(, $arg)*);
        $bench($group, "ledger_system", &LEDGER_SYSTEM, false $(, $arg)*);
        $bench($group, "tag_only_jemalloc", &TAG_ONLY_JEMALLOC, false $(, $arg)*);
        // `Ledger<TrailerOnly<Jemalloc>>`: every block with a trailer.
        $bench($group, "trailer_only", &LEDGER_JEMALLOC, false $(, $arg)*);
        $bench($group, "trailer_only_scoped", &LEDGER_JEMALLOC, true $(, $arg)*);
        // `Ledger<Jemalloc>`, the default: scope arenas where the feature is on.
        $bench($group, "default", &support::LEDGER_ARENAS, false $(, $arg)*);
        $bench($group, "default_scoped", &support::LEDGER_ARENAS, true $(, $arg)*);
    }};
}

fn bench_pair<A: GlobalAlloc + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    allocator: &'static A,
    scoped: bool,
    size: usize,
) {
    let layout = Layout::from_size_align(size, ALIGN).expect("pair sizes make valid layouts");
    group.bench_with_input(BenchmarkId::new(name, size), &layout, |b, &layout| {
        let _guard = scoped.then(|| memledger::scope!("bench"));
        b.iter(|| {
            let allocator = black_box(allocator);
            let layout = black_box(layout);
            let ptr = black_box(alloc_via(allocator, layout));
            // SAFETY:
            // - `ptr` was just allocated by `allocator` with `layout`.
            unsafe { dealloc_via(allocator, ptr, layout) };
        });
    });
}

fn bench_churn<A: GlobalAlloc + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    allocator: &'static A,
    scoped: bool,
    layouts: &[Layout],
) {
    group.bench_function(name, |b| {
        let _guard = scoped.then(|| memledger::scope!("bench"));
        let allocator = black_box(allocator);
        let mut churn = Churn::new(allocator, layouts, 0);
        b.iter(|| churn.step());
    });
}

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("pair");
    group.throughput(Throughput::Elements(1));
    for size in PAIR_SIZES {
        for_each_variant!(bench_pair, &mut group, size);
    }
    group.finish();
}

fn churn(c: &mut Criterion) {
    let layouts = churn_layouts();
    let mut group = c.benchmark_group("churn");
    group.throughput(Throughput::Elements(1));
    for_each_variant!(bench_churn, &mut group, &layouts);
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::config(30);
    targets = churn, pairs
}
criterion_main!(benches);
