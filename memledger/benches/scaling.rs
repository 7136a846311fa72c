//! How the small-size churn scales with threads, for the ledger and its baselines.
//!
//! Each thread runs the churn of `alloc_pairs` (a ring of 256 live blocks; each step frees the
//! oldest and allocates a pseudo-random small size) on its own ring, so the threads share nothing
//! but the allocator. `default` is `Ledger<Jemalloc>` (scope arenas where the feature is on),
//! `trailer_only` is `Ledger<TrailerOnly<Jemalloc>>`. `*_scoped` puts every thread in the same
//! scope: the case where a design that writes a shared counter per call would contend (and, by
//! default, where all threads share one scope arena); `*_many_scopes` puts each thread in a scope
//! of its own. `stats_alloc` is that design
//! (global atomics), shown for comparison.
//!
//! Reported: wall time from the release of all threads until the last one is joined, and the
//! throughput in pairs (one free and one allocation) per second over all threads together. With
//! perfect scaling the throughput grows with the thread count up to the number of cores and then
//! stays flat.
//!
//! `MEMLEDGER_BENCH_MAX_THREADS=n` drops the thread counts above `n`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use stats_alloc::INSTRUMENTED_SYSTEM;
use tikv_jemallocator::Jemalloc;

#[path = "support/mod.rs"]
mod support;
use support::{churn_layouts, Churn, JEMALLOC, LEDGER_JEMALLOC, SYSTEM, TAG_ONLY_JEMALLOC};

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// Churn steps each thread runs per measured iteration.
///
/// Large enough that spawning and joining the threads (tens of microseconds) is amortised, small
/// enough that criterion's minimum of 55 iterations per benchmark fits its measurement time even
/// with 16 threads on 2 cores (16 × 20 000 steps × ~25 ns / 2 cores ≈ 4 ms per iteration).
const STEPS: u64 = 20_000;

/// Thread counts measured, before the machine's own parallelism is added.
const THREAD_COUNTS: [usize; 5] = [1, 2, 4, 8, 16];
/// The most threads measured, whatever the machine.
const MAX_THREADS: usize = 32;

/// One thread's churn: fills a ring, waits for the start, runs `steps` steps, frees the ring.
///
/// `offset` shifts the thread's place in the size sequence, so that threads do not allocate the
/// same size class at the same moment.
fn churn_thread<A: GlobalAlloc>(
    allocator: &A,
    layouts: &[Layout],
    offset: usize,
    steps: u64,
    start: &Barrier,
) {
    let mut churn = Churn::new(allocator, layouts, offset);
    start.wait();
    for _ in 0..steps {
        churn.step();
    }
}

/// Where the churn threads book: outside any scope, all in one scope, or each in a scope of its
/// own.
#[derive(Clone, Copy)]
enum Scopes {
    None,
    One,
    Many,
}

/// Runs `threads` churn threads of `steps` steps each; returns the time from their common start
/// until all are joined.
fn run<A: GlobalAlloc + Sync>(
    allocator: &A,
    scopes: Scopes,
    layouts: &[Layout],
    threads: usize,
    steps: u64,
) -> Duration {
    let start = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    // `One`: every thread enters the same call site, so all book to the one
                    // scope. `Many`: each its own scope, registered before the start.
                    let _guard = match scopes {
                        Scopes::None => None,
                        Scopes::One => Some(memledger::scope!("bench")),
                        Scopes::Many => Some(memledger::enter(&format!("bench/thread_{t}"))),
                    };
                    churn_thread(allocator, layouts, t * 397, steps, start);
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for handle in handles {
            handle.join().expect("a churn thread panicked");
        }
        began.elapsed()
    })
}

/// The thread counts to measure: the fixed list, the machine's parallelism if larger (at most
/// [`MAX_THREADS`]), all capped by `MEMLEDGER_BENCH_MAX_THREADS`.
fn thread_counts() -> Vec<usize> {
    let mut counts = THREAD_COUNTS.to_vec();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    if cores > *counts.last().expect("the list is not empty") {
        counts.push(cores.min(MAX_THREADS));
    }
    if let Ok(cap) = std::env::var("MEMLEDGER_BENCH_MAX_THREADS") {
        let cap: usize = cap
            .trim()
            .parse()
            .expect("MEMLEDGER_BENCH_MAX_THREADS must be a whole number of threads");
        counts.retain(|&n| n <= cap.max(1));
    }
    counts
}

fn bench_variant<A: GlobalAlloc + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    allocator: &'static A,
    scopes: Scopes,
    layouts: &[Layout],
    threads: usize,
) {
    group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
        // One spawn per batch of iterations rather than per iteration: each thread runs the
        // steps of all `iters` iterations in one go, which keeps thread start-up out of the
        // figure however small an iteration is.
        b.iter_custom(|iters| run(allocator, scopes, layouts, threads, iters * STEPS));
    });
}

fn scaling(c: &mut Criterion) {
    let layouts = churn_layouts();
    let mut group = c.benchmark_group("scaling");
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(threads as u64 * STEPS));
        let g = &mut group;
        let l = &layouts[..];
        bench_variant(g, "jemalloc", &JEMALLOC, Scopes::None, l, threads);
        bench_variant(
            g,
            "tag_only_jemalloc",
            &TAG_ONLY_JEMALLOC,
            Scopes::None,
            l,
            threads,
        );
        let trailer = &LEDGER_JEMALLOC;
        bench_variant(g, "trailer_only_scoped", trailer, Scopes::One, l, threads);
        bench_variant(
            g,
            "trailer_only_many_scopes",
            trailer,
            Scopes::Many,
            l,
            threads,
        );
        let default = &support::LEDGER_ARENAS;
        bench_variant(g, "default_scoped", default, Scopes::One, l, threads);
        bench_variant(g, "default_many_scopes", default, Scopes::Many, l, threads);
        // `StatsAlloc::new` is only `const` with the crate's nightly feature, so its ready-made
        // static over the system allocator is the one instance there can be.
        bench_variant(
            g,
            "stats_alloc",
            &INSTRUMENTED_SYSTEM,
            Scopes::None,
            l,
            threads,
        );
        bench_variant(g, "system", &SYSTEM, Scopes::None, l, threads);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Ten samples of two seconds per case keep the whole run within a few minutes, 16 threads on
    // 2 cores included; each sample already averages millions of operations.
    config = support::config(10);
    targets = scaling
}
criterion_main!(benches);
