//! The criterion measurements read exactly the bytes a routine allocated and its peak, and a real
//! criterion run with them completes.

use criterion::measurement::Measurement;
use criterion::Criterion;
use memledger::criterion::{Allocated, Peak};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

fn build(n: usize) -> Vec<Vec<u8>> {
    let _g = memledger::scope!("crit_build");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(vec![0u8; 100 + i]);
    }
    out
}

#[test]
fn allocated_counts_the_scope_and_its_children() {
    let m = Allocated::scope("crit_build");
    let start = m.start();
    let built = build(10);
    let nested = memledger::in_scope("crit_build", || {
        memledger::in_scope("child", || vec![0u8; 5])
    });
    let elsewhere = vec![0u8; 1 << 16];
    let bytes = m.end(start);
    let expected = 10 * std::mem::size_of::<Vec<u8>>() + (100..110).sum::<usize>() + 5;
    assert_eq!(bytes, expected as u64);
    assert_eq!(m.to_f64(&m.add(&bytes, &m.zero())), expected as f64);
    drop((built, nested, elsewhere));
}

#[test]
fn peak_per_iteration() {
    let peak = Peak::scope("crit_peak");
    let routine = || {
        let _g = memledger::scope!("crit_peak");
        let scratch = vec![0u8; 10_000];
        drop(scratch);
        vec![0u8; 10]
    };
    // Each iteration peaks 10 000 bytes above its start; the results live until after their
    // iteration's peak is read.
    assert_eq!(peak.iter(3, routine), 3 * 10_000);
    // As a plain measurement: one peak over the sample.
    let start = peak.start();
    let kept: Vec<_> = (0..3).map(|_| routine()).collect();
    assert_eq!(peak.end(start), 10_000 + 2 * 10);
    drop(kept);
}

#[test]
fn a_criterion_run_with_the_measurements() {
    let mut c = Criterion::default()
        .with_measurement(Allocated::scope("crit_build"))
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(10))
        .measurement_time(std::time::Duration::from_millis(50))
        .without_plots();
    c.bench_function("crit_build_allocated", |b| b.iter(|| build(4)));
    let mut c = Criterion::default()
        .with_measurement(Peak::scope("crit_build"))
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(10))
        .measurement_time(std::time::Duration::from_millis(50))
        .without_plots();
    c.bench_function("crit_build_peak", |b| {
        b.iter_custom(|iters| Peak::scope("crit_build").iter(iters, || build(4)))
    });
}
