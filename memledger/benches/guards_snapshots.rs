//! The cold-ish paths: entering and leaving scopes, and reading the books.
//!
//! - `guard/*`: one enter and the matching exit, by each way there is to enter a scope, beside a
//!   baseline that swaps a thread-local `Cell` and back (the least a guard can do).
//! - `guard/scope_handle`: entering a scope through a [`memledger::ScopeHandle`].
//! - `poll/{bare,in_scope}`: one poll of a ready future, bare and wrapped with
//!   [`memledger::ScopeExt`], which enters and leaves the scope around the poll.
//! - `snapshot/<scopes>_scopes/<threads>_threads`: one [`memledger::snapshot`] while `threads`
//!   live threads have each booked to `scopes` distinct scopes.
//!
//! The ledger is this binary's global allocator, because snapshots read its books.
//!
//! Scopes and counter slabs are never freed, so each snapshot case also reads what the cases
//! before it registered. Cases run in ascending order of scopes, then threads, so that each reads
//! about as many scopes as it names; the slabs left by an earlier case with more threads are read
//! too, but they only hold the counter pages that case touched.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

#[path = "support/mod.rs"]
mod support;
use memledger::{Ledger, ScopeExt};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Ledger<Jemalloc> = Ledger::new(Jemalloc);

/// Threads kept alive while the snapshot is measured.
const SNAPSHOT_THREADS: [usize; 3] = [1, 4, 16];
/// Distinct scopes each of those threads books to. The largest sets the number of scope names the
/// binary registers (about 1 000 of the [`memledger::MAX_SCOPES`]); the smaller cases reuse a
/// prefix of the same names.
const SNAPSHOT_SCOPES: [usize; 3] = [10, 100, 1000];

std::thread_local! {
    static BASELINE: Cell<u16> = const { Cell::new(0) };
}

fn guards(c: &mut Criterion) {
    let mut group = c.benchmark_group("guard");
    group.bench_function("baseline_tls_cell_swap", |b| {
        b.iter(|| {
            let previous = BASELINE.with(|cell| cell.replace(black_box(7)));
            black_box(previous);
            BASELINE.with(|cell| cell.set(previous));
        });
    });
    group.bench_function("scope_macro", |b| {
        b.iter(|| {
            let _g = memledger::scope!("bench_guard");
            black_box(&_g);
        });
    });
    group.bench_function("scope_macro_nested", |b| {
        b.iter(|| {
            let _outer = memledger::scope!("bench_outer");
            black_box(&_outer);
            let _inner = memledger::scope!("bench_inner");
            black_box(&_inner);
        });
    });
    group.bench_function("in_scope", |b| {
        b.iter(|| memledger::in_scope(black_box("x"), || black_box(())));
    });
    group.bench_function("enter", |b| {
        b.iter(|| {
            let _g = memledger::enter(black_box("x"));
            black_box(&_g);
        });
    });
    let handle = memledger::ScopeHandle::at("bench_handle");
    group.bench_function("scope_handle", |b| {
        b.iter(|| {
            let _g = black_box(handle).enter();
            black_box(&_g);
        });
    });
    group.finish();

    // One poll of a ready future, bare and wrapped with `in_scope`: what the wrapper adds per
    // poll.
    let mut group = c.benchmark_group("poll");
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    group.bench_function("bare", |b| {
        b.iter(|| {
            let mut fut = std::pin::pin!(std::future::ready(black_box(1u32)));
            black_box(fut.as_mut().poll(&mut cx))
        });
    });
    group.bench_function("in_scope", |b| {
        b.iter(|| {
            let fut = std::future::ready(black_box(1u32)).with_scope(handle);
            let mut fut = std::pin::pin!(fut);
            black_box(fut.as_mut().poll(&mut cx))
        });
    });
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    let max_scopes = *SNAPSHOT_SCOPES.iter().max().expect("the list is not empty");
    let names: Vec<String> = (0..max_scopes).map(|i| format!("snap/{i}")).collect();
    let mut group = c.benchmark_group("snapshot");
    for scopes in SNAPSHOT_SCOPES {
        for threads in SNAPSHOT_THREADS {
            let booked = Barrier::new(threads + 1);
            let done = Barrier::new(threads + 1);
            thread::scope(|s| {
                for _ in 0..threads {
                    let (names, booked, done) = (&names[..scopes], &booked, &done);
                    s.spawn(move || {
                        for name in names {
                            let _g = memledger::enter(name);
                            drop(black_box(Box::new(0u64)));
                        }
                        booked.wait();
                        // Alive, holding its counter slab, until the measurement is over.
                        done.wait();
                    });
                }
                booked.wait();
                let id = BenchmarkId::new(format!("{scopes}_scopes"), format!("{threads}_threads"));
                group.bench_function(id, |b| b.iter(memledger::snapshot));
                done.wait();
            });
        }
    }
    group.finish();
    let snap = memledger::snapshot();
    assert_eq!(
        snap.refused_scopes(),
        0,
        "the bench registered more scopes than the ledger has room for"
    );
}

criterion_group! {
    name = benches;
    config = support::config(30);
    targets = guards, snapshots
}
criterion_main!(benches);
