//! What sampling allocation sites costs: the churn of `arena_paths` over the default ledger
//! (`Ledger<Jemalloc>` with scope arenas), in a scope, with sampling off, at the default rate
//! (one sample per 512 KiB) and at 64 KiB, side by side in one run (`sampling_churn/<rate>`).
//! The stack capture has no bench of its own: its cost shows as the difference between rates.
//!
//! For instruction counts and the tables' memory, `MEMLEDGER_SAMPLING_LOOP=<rate>:<steps>` runs
//! only a churn of that many steps at that rate (0 for off) and prints what the tables hold: run
//! it under `valgrind --tool=callgrind` at two lengths and divide the difference by the
//! difference of steps. Built without the `sampling` feature
//! (`--no-default-features --features jemalloc,arenas`) it is the ledger without sampling.

use std::hint::black_box;

use criterion::{criterion_group, Criterion};
use tikv_jemallocator::Jemalloc;

#[path = "support/mod.rs"]
mod support;
use support::{churn_layouts, Churn};

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// The rates measured: off, the default, and eight times as often.
const RATES: [(&str, u64); 3] = [("off", 0), ("512KiB", 512 * 1024), ("64KiB", 64 * 1024)];

fn set_rate(rate: u64) {
    // Without the `sampling` feature only 0 is accepted, which is what such a build measures.
    if memledger::sampling::set_rate(rate).is_err() {
        assert!(rate != 0, "a rate of 0 is always accepted");
    }
}

fn churn(c: &mut Criterion) {
    let layouts = churn_layouts();
    let mut group = c.benchmark_group("sampling_churn");
    let _guard = memledger::scope!("bench");
    for (name, rate) in RATES {
        set_rate(rate);
        let mut churn = Churn::new(&support::LEDGER_ARENAS, &layouts, 0);
        group.bench_function(name, |b| b.iter(|| churn.step()));
        drop(black_box(churn));
        eprintln!(
            "{name}: stacks walked by (the unwinder, learnt frame sizes, frame pointers) {:?}",
            memledger::sampling::usage().walks
        );
    }
    set_rate(0);
    group.finish();
}

/// The churn alone, for callgrind: `rate:steps`.
fn churn_loop(spec: &str) {
    let (rate, steps) = spec
        .split_once(':')
        .expect("MEMLEDGER_SAMPLING_LOOP=<rate>:<steps>");
    let rate: u64 = rate.parse().expect("a rate in bytes");
    let steps: usize = steps.parse().expect("a number of steps");
    set_rate(rate);
    let layouts = churn_layouts();
    let _guard = memledger::scope!("bench");
    let mut churn = Churn::new(&support::LEDGER_ARENAS, &layouts, 0);
    (0..steps).for_each(|_| churn.step());
    let usage = memledger::sampling::usage();
    drop(churn);
    eprintln!(
        "rate {rate}: {} live samples, {} stacks, {} dropped, {} table bytes; walks (unwinder, \
         learnt, frame pointers) {:?}",
        usage.live_samples, usage.stacks, usage.dropped_samples, usage.table_bytes, usage.walks
    );
}

criterion_group! {
    name = benches;
    config = support::config(30);
    targets = churn
}
fn main() {
    // The samples a run takes are the same in every run, as before processes drew their seeds
    // from the system's entropy: instruction counts of one binary stay comparable.
    memledger::sampling::set_seed(0);
    if let Ok(spec) = std::env::var("MEMLEDGER_SAMPLING_LOOP") {
        return churn_loop(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
