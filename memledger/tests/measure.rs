//! `measure`: what a closure allocated, per scope and in total, against the sizes it allocated,
//! with work handed to other threads and other threads busy elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

#[test]
fn a_closure_and_its_nested_scopes() {
    let m = memledger::measure("measure_nested", || {
        let scratch = vec![0u8; 100_000];
        let kept: Vec<u32> = Vec::with_capacity(1000);
        let parsed = {
            let _g = memledger::scope!("parse");
            let tmp = vec![0u8; 50_000];
            drop(tmp);
            vec![0u8; 7]
        };
        drop(scratch);
        (kept, parsed)
    });
    let root = m.footprint.scope("measure_nested").unwrap();
    assert_eq!(root.allocated_bytes, 104_000);
    assert_eq!(root.freed_bytes, 100_000);
    assert_eq!((root.allocations, root.deallocations), (2, 1));
    assert_eq!(root.retained_bytes(), 4000);
    assert_eq!(root.peak_above_start(), 104_000);
    let parse = m.footprint.scope("measure_nested/parse").unwrap();
    assert_eq!((parse.allocated_bytes, parse.freed_bytes), (50_007, 50_000));
    assert_eq!(parse.peak_above_start(), 50_000);
    let total = m.footprint.total();
    assert_eq!(total.allocations, 4);
    assert_eq!(total.retained_bytes(), 4007);
    assert_eq!(total.peak_bytes, 154_000);
    let table = m.footprint.to_string();
    assert!(table.contains("measure_nested/parse"), "{table}");
    drop(m.value);
}

/// A second measurement of the same scope restarts its peak: the first run's larger peak does
/// not show in the second.
#[test]
fn peaks_restart_for_each_measurement() {
    let big = memledger::measure("measure_again", || drop(vec![0u8; 1 << 20]));
    assert_eq!(big.footprint.total().peak_above_start(), 1 << 20);
    let small = memledger::measure("measure_again", || drop(vec![0u8; 1000]));
    assert_eq!(small.footprint.total().peak_above_start(), 1000);
    // Live bytes carried in from before count at the start, not in the rise.
    let held = memledger::in_scope("measure_again", || vec![0u8; 5000]);
    let third = memledger::measure("measure_again", || drop(vec![0u8; 300]));
    let t = third.footprint.total();
    assert_eq!(
        (t.live_before, t.peak_bytes, t.peak_above_start()),
        (5000, 5300, 300)
    );
    drop(held);
}

/// Work handed to other threads with a handle is counted; other threads' allocations in other
/// scopes, meanwhile, are not.
#[test]
fn handed_over_work_counts_and_neighbours_do_not() {
    let stop = Arc::new(AtomicBool::new(false));
    let noise: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let _g = memledger::scope!("measure_noise");
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(vec![0u8; 4096]);
                }
            })
        })
        .collect();
    let m = memledger::measure("measure_handed", || {
        let here = memledger::ScopeHandle::current();
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    here.in_scope(|| {
                        let _g = memledger::scope!("data");
                        vec![0u8; 1000 * (t as usize + 1)]
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    stop.store(true, Ordering::Relaxed);
    noise.into_iter().for_each(|t| t.join().unwrap());
    // The workers' blocks, exactly.
    let data = m.footprint.scope("measure_handed/data").unwrap();
    assert_eq!((data.allocations, data.retained_bytes()), (4, 10_000));
    // Spawning the threads allocated in the measured scope too (their handles and names), and
    // the Vec that collects the blocks was made there.
    let total = m.footprint.total();
    assert!(total.allocations > 5, "{}", m.footprint);
    assert_eq!(m.footprint.scopes.len(), 2, "{}", m.footprint);
    // Only the measured scope and its child: the neighbours' 4 KiB blocks, allocated all along,
    // are nowhere in the footprint.
    assert!(m
        .footprint
        .scopes
        .iter()
        .all(|s| s.path.starts_with("measure_handed")));
    assert!(
        total.allocated_bytes < 10_000 + 64 * 1024,
        "{}",
        m.footprint
    );
    drop(m.value);
}

/// Exact mode reaches a thread that takes over the counters of a thread that had booked to the
/// scope and exited; a scope registered under an exact one starts exact and stays exact after a
/// measurement of its parent.
#[test]
fn exact_mode_reaches_reused_counters_and_children() {
    let path = "exact_reused";
    std::thread::spawn(move || {
        let _g = memledger::enter(path);
        drop(std::hint::black_box(vec![0u8; 10]));
    })
    .join()
    .unwrap();
    let scope = memledger::ScopeHandle::at(path);
    scope.set_exact(true);
    std::thread::spawn(move || {
        // The thread's first booking is elsewhere, so that its counters are in use before it
        // books to the exact scope.
        drop(std::hint::black_box(vec![0u8; 10]));
        let _g = memledger::enter(path);
        let blocks: Vec<Vec<u8>> = (0..40)
            .map(|_| std::hint::black_box(vec![1u8; 1000]))
            .collect();
        drop(std::hint::black_box(blocks));
    })
    .join()
    .unwrap();
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    assert_eq!(stats.peak_bytes, 40 * 1000 + 40 * 24, "{stats:?}");
    // A child registered inside a measurement of the exact scope stays exact afterwards.
    scope.in_scope(|| {
        memledger::measure("m", || memledger::in_scope("inner", || ()));
    });
    assert!(memledger::ScopeHandle::at(&format!("{path}/m")).is_exact());
    assert!(memledger::ScopeHandle::at(&format!("{path}/m/inner")).is_exact());
    // Outside an exact scope, a measurement leaves nothing exact behind.
    memledger::measure("exact_reused_plain", || memledger::in_scope("inner", || ()));
    assert!(!memledger::ScopeHandle::at("exact_reused_plain").is_exact());
    assert!(!memledger::ScopeHandle::at("exact_reused_plain/inner").is_exact());
}
