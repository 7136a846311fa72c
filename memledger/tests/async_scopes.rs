//! Scopes that follow the work: futures polled on a multi-thread runtime, and handles entered by
//! other threads and by a rayon pool. Each test checks the ledger against the sizes it allocated.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use memledger::{ScopeExt, ScopeHandle};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

fn stats(path: &str) -> memledger::ScopeStats {
    memledger::snapshot()
        .scope(path)
        .unwrap_or_else(|| panic!("no scope {path}"))
        .clone()
}

/// Sixteen tasks on four worker threads, each wrapped in its scope, sleep between allocations so
/// that the runtime moves them between threads. The blocks each task makes between two awaits
/// are booked to `<task scope>/data`, which exists only if the wrapper entered the task's scope on
/// whichever thread polled it; half the blocks are freed on the test's thread.
#[test]
fn futures_keep_their_scope_across_threads() {
    const TASKS: usize = 16;
    const STEPS: usize = 40;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<HashSet<ThreadId>>>> =
        Arc::new(Mutex::new(vec![HashSet::new(); TASKS]));
    let _outer = memledger::scope!("async_tasks");
    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let seen = Arc::clone(&seen);
            let fut = async move {
                let mut kept = Vec::new();
                for step in 0..STEPS {
                    seen.lock().unwrap()[task].insert(std::thread::current().id());
                    let block = {
                        let _data = memledger::scope!("data");
                        let mut block = Vec::with_capacity(STEPS);
                        block.push(vec![task as u8; 100 + task * 10 + step]);
                        block
                    };
                    kept.push(block);
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                kept
            };
            rt.spawn(fut.in_scope(&format!("task{}", task % 4)))
        })
        .collect();
    let results: Vec<_> = rt.block_on(async {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    drop(rt);

    let hopped = seen.lock().unwrap().iter().filter(|s| s.len() > 1).count();
    assert!(hopped > 0, "no task ran on more than one thread");

    // Per task scope: each step made an outer Vec (capacity STEPS of Vec<u8>) and an inner block.
    let outer = (STEPS * std::mem::size_of::<Vec<u8>>()) as u64;
    let mut expected = [(0u64, 0u64); 4];
    for task in 0..TASKS {
        for step in 0..STEPS {
            let e = &mut expected[task % 4];
            e.0 += outer + (100 + task * 10 + step) as u64;
            e.1 += 2;
        }
    }
    for (k, (bytes, blocks)) in expected.iter().enumerate() {
        let s = stats(&format!("async_tasks/task{k}/data"));
        assert_eq!((s.live_bytes, s.allocations), (*bytes, *blocks), "task{k}");
    }
    // Free every other task's blocks here, outside every scope: credited back to the owners.
    for (task, kept) in results.into_iter().enumerate() {
        if task % 2 == 0 {
            drop(kept);
        } else {
            std::mem::forget(kept);
        }
    }
    for (k, (bytes, _)) in expected.iter().enumerate() {
        let s = stats(&format!("async_tasks/task{k}/data"));
        if k % 2 == 0 {
            assert_eq!(s.live_bytes, 0, "task{k}");
            assert_eq!(s.deallocations, s.allocations, "task{k}");
        } else {
            assert_eq!(s.live_bytes, *bytes, "task{k}");
        }
    }
}

/// A future's drop runs in its scope too: a cancelled task's clean-up is booked there.
#[test]
fn a_dropped_future_drops_in_its_scope() {
    struct AllocOnDrop;
    impl Drop for AllocOnDrop {
        fn drop(&mut self) {
            std::mem::forget(vec![0u8; 777]);
        }
    }
    let fut = async {
        let _d = AllocOnDrop;
        std::future::pending::<()>().await;
    };
    let wrapped = fut.in_scope("async_drop");
    assert_eq!(wrapped.scope().path(), "async_drop");
    // Polled once, so that `_d` lives in the future's state, then dropped unfinished.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut wrapped = std::pin::pin!(wrapped);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(wrapped.as_mut().poll(&mut cx).is_pending());
    });
    assert_eq!(stats("async_drop").live_bytes, 777);
}

use std::future::Future;

/// A handle taken in one scope, entered by plain threads and by a rayon pool: every block lands in
/// the handed-over scope, exactly.
#[test]
fn handles_carry_a_scope_to_other_threads() {
    use rayon::prelude::*;

    let handle = memledger::in_scope("handoff", ScopeHandle::current);
    assert_eq!(handle.path(), "handoff");
    assert_eq!(ScopeHandle::at("handoff"), handle);
    assert_eq!(ScopeHandle::at("/handoff/"), handle);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let blocks: Vec<Vec<u8>> = pool.install(|| {
        (0..1000usize)
            .into_par_iter()
            .map(|i| {
                handle.in_scope(|| {
                    let _data = memledger::scope!("data");
                    vec![1u8; i]
                })
            })
            .collect()
    });
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let _g = handle.enter();
                assert_eq!(memledger::current_scope(), "handoff");
                let _data = memledger::scope!("data");
                vec![2u8; 10_000 + t]
            })
        })
        .collect();
    let more: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    // `vec![x; 0]` allocates nothing.
    let expected_bytes: u64 = (1..1000u64).sum::<u64>() + (0..4).map(|t| 10_000 + t).sum::<u64>();
    let s = stats("handoff/data");
    assert_eq!((s.live_bytes, s.allocations), (expected_bytes, 999 + 4));

    // Freed on another thread, in another scope.
    std::thread::spawn(move || {
        let _elsewhere = memledger::scope!("elsewhere");
        drop(blocks);
        drop(more);
    })
    .join()
    .unwrap();
    let s = stats("handoff/data");
    assert_eq!((s.live_bytes, s.deallocations), (0, 999 + 4));
}
