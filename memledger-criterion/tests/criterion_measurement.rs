//! The criterion measurements read exactly the bytes a routine allocated and its peak, and a real
//! criterion run with them completes.

use std::sync::{Arc, Mutex};

use criterion::measurement::Measurement;
use criterion::Criterion;
use memledger_criterion::{Allocated, Peak};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

fn build(n: usize) -> Vec<Vec<u8>> {
    let _g = memledger::scope!("crit_build");
    build_plain(n)
}

/// `n` blocks of 100, 101... bytes, in the current scope.
fn build_plain(n: usize) -> Vec<Vec<u8>> {
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

/// Wraps a measurement and keeps every value criterion got from it.
struct Spy<M> {
    inner: M,
    values: Arc<Mutex<Vec<u64>>>,
}

impl<M: Measurement<Value = u64>> Measurement for Spy<M> {
    type Intermediate = M::Intermediate;
    type Value = u64;

    fn start(&self) -> M::Intermediate {
        self.inner.start()
    }

    fn end(&self, i: M::Intermediate) -> u64 {
        let value = self.inner.end(i);
        self.values.lock().unwrap().push(value);
        value
    }

    fn add(&self, v1: &u64, v2: &u64) -> u64 {
        self.inner.add(v1, v2)
    }

    fn zero(&self) -> u64 {
        self.inner.zero()
    }

    fn to_f64(&self, value: &u64) -> f64 {
        self.inner.to_f64(value)
    }

    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        self.inner.formatter()
    }
}

fn quick<M: Measurement>(m: M) -> Criterion<M> {
    Criterion::default()
        .with_measurement(m)
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(10))
        .measurement_time(std::time::Duration::from_millis(50))
        .without_plots()
}

/// A run of criterion itself: every value it takes from `Allocated` is a whole number of builds,
/// and every value `Peak::iter` hands it is one build's peak per iteration.
#[test]
fn a_criterion_run_with_the_measurements() {
    let build_in_run = || memledger::in_scope("crit_run", || build_plain(4));
    // One build: a Vec of 4 `Vec<u8>` and blocks of 100 to 103 bytes.
    let per_build = (4 * std::mem::size_of::<Vec<u8>>() + 100 + 101 + 102 + 103) as u64;

    let values = Arc::new(Mutex::new(Vec::new()));
    let spy = Spy {
        inner: Allocated::scope("crit_run"),
        values: Arc::clone(&values),
    };
    quick(spy).bench_function("crit_run_allocated", |b| b.iter(build_in_run));
    let values = values.lock().unwrap();
    assert!(values.len() >= 10, "{values:?}");
    assert!(
        values.iter().all(|v| *v > 0 && v % per_build == 0),
        "{values:?} (one build: {per_build})"
    );

    let sums = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sums);
    quick(Peak::scope("crit_run")).bench_function("crit_run_peak", |b| {
        b.iter_custom(|iters| {
            let sum = Peak::scope("crit_run").iter(iters, build_in_run);
            seen.lock().unwrap().push((iters, sum));
            sum
        })
    });
    let sums = sums.lock().unwrap();
    assert!(sums.len() >= 10);
    assert!(
        sums.iter().all(|&(iters, sum)| sum == iters * per_build),
        "{sums:?} (one build: {per_build})"
    );
}
