//! Enforced scope limits: allocations past a scope's hard limit fail, the overshoot stays within
//! the stated bound, and the books stay exact on the enforcement path.

mod common;

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::sync::{Arc, Barrier};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// Allocates 1000-byte blocks in `path` until one is refused; returns them.
fn fill_until_refused(path: &str) -> Vec<Vec<u8>> {
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(100_000);
    let _g = memledger::enter(path);
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(1000).is_err() {
            return blocks;
        }
        blocks.push(block);
        assert!(blocks.len() < 100_000, "the limit never refused");
    }
}

#[test]
fn one_thread_stops_exactly_at_the_limit() {
    let path = "enforce_one";
    memledger::limit_scope(path, Some(100_000)).unwrap();
    let blocks = fill_until_refused(path);
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    assert_eq!(blocks.len(), 100);
    assert_eq!(stats.live_bytes, 100_000);
    assert_eq!(stats.limit_bytes, Some(100_000));
    assert_eq!(stats.refused_allocations, 1);
    assert_eq!(stats.peak_bytes, 100_000);

    // Freeing makes room again; lifting the limit removes it.
    drop(blocks);
    let again = fill_until_refused(path);
    assert_eq!(again.len(), 100);
    memledger::limit_scope(path, None).unwrap();
    let _g = memledger::enter(path);
    let more = vec![0u8; 1 << 20];
    assert_eq!(memledger::snapshot().scope(path).unwrap().limit_bytes, None);
    drop((again, more));
}

#[test]
fn many_threads_never_pass_a_limit_set_before_they_booked() {
    let path = "enforce_many";
    let limit = 1 << 20;
    memledger::limit_scope(path, Some(limit)).unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                fill_until_refused(path)
            })
        })
        .collect();
    let held: Vec<Vec<Vec<u8>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    let blocks: usize = held.iter().map(Vec::len).sum();
    assert_eq!(stats.live_bytes, blocks as u64 * 1000);
    // Every reservation is one atomic add: no overshoot at all, and at most one block short.
    assert!(stats.live_bytes <= limit, "{stats:?}");
    assert!(stats.live_bytes > limit - 1000, "{stats:?}");
    assert_eq!(stats.refused_allocations, 8);
}

#[test]
fn bytes_booked_before_the_limit_overshoot_by_at_most_the_resolution_per_thread() {
    let path = "enforce_late";
    // Four threads book 30 KiB each, below the publish threshold (32 KiB), and stay alive holding
    // them.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
    let holders: Vec<_> = (0..4)
        .map(|_| {
            let (ready_tx, go_rx) = (ready_tx.clone(), go_rx.clone());
            std::thread::spawn(move || {
                let held = memledger::in_scope(path, || vec![1u8; 30 * 1024]);
                ready_tx.send(()).unwrap();
                let _ = go_rx.lock().unwrap().recv();
                drop(held);
            })
        })
        .collect();
    for _ in 0..4 {
        ready_rx.recv().unwrap();
    }
    let limit = 300 * 1024;
    memledger::limit_scope(path, Some(limit)).unwrap();
    let blocks = fill_until_refused(path);
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    let k = 4;
    assert!(
        stats.live_bytes <= limit + k * memledger::Snapshot::PEAK_RESOLUTION_PER_THREAD,
        "{stats:?}"
    );
    // The four unpublished 30 KiB were invisible to the check: it let this thread fill the
    // whole limit on its own.
    assert!(blocks.len() as u64 * 1000 > limit - 1000);
    for _ in 0..4 {
        go_tx.send(()).unwrap();
    }
    for h in holders {
        h.join().unwrap();
    }
    drop(blocks);
    assert_eq!(memledger::snapshot().scope(path).unwrap().live_bytes, 0);
}

#[test]
fn a_refused_realloc_keeps_the_block() {
    let path = "enforce_realloc";
    memledger::limit_scope(path, Some(10_000)).unwrap();
    let layout = Layout::from_size_align(4000, 64).unwrap();
    let ptr = {
        let _g = memledger::enter(path);
        // SAFETY: a non-zero size.
        unsafe { alloc(layout) }
    };
    assert!(!ptr.is_null());
    // SAFETY: `ptr` holds 4000 bytes.
    unsafe { ptr.write_bytes(7, 4000) };
    // Growth past the limit fails, from any thread and scope, and the block is intact.
    let grown = std::thread::scope(|s| {
        let ptr = ptr as usize;
        s.spawn(move || {
            let _g = memledger::enter("enforce_realloc_elsewhere");
            // SAFETY: a live block with its layout; non-zero new size.
            unsafe { realloc(ptr as *mut u8, layout, 20_000) as usize }
        })
        .join()
        .unwrap()
    });
    assert_eq!(grown, 0);
    // SAFETY: the block is still live, 4000 bytes.
    assert!(unsafe { std::slice::from_raw_parts(ptr, 4000) }
        .iter()
        .all(|&b| b == 7));
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    assert_eq!((stats.live_bytes, stats.refused_allocations), (4000, 1));
    // Growth within the limit and shrinking work.
    // SAFETY: as above.
    let ptr = unsafe { realloc(ptr, layout, 9000) };
    assert!(!ptr.is_null());
    let layout = Layout::from_size_align(9000, 64).unwrap();
    // SAFETY: as above.
    let ptr = unsafe { realloc(ptr, layout, 100) };
    assert!(!ptr.is_null());
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    assert_eq!((stats.live_bytes, stats.reallocations), (100, 2));
    // SAFETY: a live block of 100 bytes at alignment 64.
    unsafe { dealloc(ptr, Layout::from_size_align(100, 64).unwrap()) };
    assert_eq!(memledger::snapshot().scope(path).unwrap().live_bytes, 0);
}

/// The books stay exact when every scope of the stress test books through the enforcement path.
#[test]
fn exactness_under_enforcement() {
    for scope in ["a", "b", "a/x", "a/x/y", "c"] {
        memledger::limit_scope(&format!("enforced_stress/{scope}"), Some(u64::MAX / 4)).unwrap();
    }
    common::reference_stress("enforced_stress", 8, 20_000);
}

/// An infallible allocation past the limit goes to the allocation-error handler, which aborts.
#[test]
fn infallible_allocation_past_the_limit_aborts() {
    if std::env::var_os("MEMLEDGER_ENFORCE_CHILD").is_some() {
        memledger::limit_scope("enforce_abort", Some(1 << 20)).unwrap();
        let _g = memledger::scope!("enforce_abort");
        let v = vec![0u8; 2 << 20];
        println!("not refused: {}", v.len());
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "infallible_allocation_past_the_limit_aborts",
            "--nocapture",
        ])
        .env("MEMLEDGER_ENFORCE_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the child should abort: {stderr}");
    assert!(
        stderr.contains("memory allocation of 2097152 bytes failed"),
        "{stderr}"
    );
}

/// Requests refused for size, even absurd ones, never show in the scope's total: other threads
/// keep the headroom they had, the limit holds, and the peak stays below it.
#[test]
fn refused_requests_take_no_headroom() {
    let path = "enforce_refused";
    let limit = 64 << 20;
    memledger::limit_scope(path, Some(limit)).unwrap();
    let held = memledger::in_scope(path, || vec![0u8; 1 << 20]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let greedy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _g = memledger::enter(path);
            let mut attempts = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for request in [1usize << 30, isize::MAX as usize - 64] {
                    let mut v: Vec<u8> = Vec::new();
                    assert!(v.try_reserve_exact(request).is_err());
                    attempts += 1;
                }
            }
            attempts
        })
    };
    let mut small_refused = 0;
    let mut blocks = Vec::with_capacity(200_000);
    {
        let _g = memledger::enter(path);
        for _ in 0..200_000 {
            let mut v: Vec<u8> = Vec::new();
            if v.try_reserve_exact(100).is_err() {
                small_refused += 1;
            }
            blocks.push(v);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = greedy.join().unwrap();
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    assert_eq!(
        small_refused, 0,
        "20 MB of small blocks fit in 63 MiB of headroom"
    );
    assert_eq!(stats.refused_allocations, attempts);
    assert!(attempts > 0);
    assert!(stats.live_bytes <= limit, "{stats:?}");
    assert!(stats.peak_bytes <= limit, "{stats:?}");
    drop((blocks, held));
}

/// A thread that starts after the limit is set is checked from its first booking, even when it
/// takes over the counters of a thread that had booked to the scope and exited.
#[test]
fn a_thread_that_reuses_an_exited_threads_counters_is_checked() {
    let path = "enforce_reused";
    std::thread::spawn(move || {
        let _g = memledger::enter(path);
        drop(std::hint::black_box(vec![0u8; 100]));
    })
    .join()
    .unwrap();
    memledger::limit_scope(path, Some(10_000)).unwrap();
    let blocks = std::thread::spawn(move || fill_until_refused(path).len())
        .join()
        .unwrap();
    assert_eq!(blocks, 10);
    let stats = memledger::snapshot().scope(path).unwrap().clone();
    assert_eq!((stats.live_bytes, stats.refused_allocations), (0, 1));
}
