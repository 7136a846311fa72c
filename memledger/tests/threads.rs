//! 100,000 short-lived threads: the books stay exact and the ledger's own memory stays flat,
//! because a thread's counter slab is given back at thread exit and reused by the next thread.

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

const TOTAL: usize = 100_000;
const BATCH: usize = 16;

fn run_batch() {
    let handles: Vec<_> = (0..BATCH)
        .map(|i| {
            std::thread::spawn(move || {
                let _g = memledger::scope!("thread_churn");
                let v = vec![i as u8; 100 + i];
                std::hint::black_box(&v);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Holds `BATCH + 2` threads alive at once, more than the batches below ever overlap (a batch,
/// this thread and the harness's), so that the slab count reaches its high-water mark first.
fn overlap_all() {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(BATCH + 2));
    let handles: Vec<_> = (0..BATCH + 2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let v = vec![0u8; 10];
                barrier.wait();
                drop(v);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn hundred_thousand_threads_hold_bounded_memory() {
    overlap_all();
    let mut own_at_10k = None;
    for batch in 0..TOTAL / BATCH {
        run_batch();
        if (batch + 1) * BATCH == 10_000 {
            let snap = memledger::snapshot();
            own_at_10k = Some((snap.own().live_bytes, snap.thread_slabs()));
        }
    }
    let snap = memledger::snapshot();
    let churn = snap.scope("thread_churn").unwrap();
    let batches = (TOTAL / BATCH) as u64;
    let bytes_per_batch: u64 = (0..BATCH as u64).map(|i| 100 + i).sum();
    assert_eq!(churn.allocations, batches * BATCH as u64);
    assert_eq!(churn.deallocations, churn.allocations);
    assert_eq!(churn.allocated_bytes, batches * bytes_per_batch);
    assert_eq!(churn.live_bytes, 0);
    let (own_then, slabs_then) = own_at_10k.unwrap();
    // At most one slab per thread alive at once.
    assert!(
        snap.thread_slabs() <= BATCH + 4 + 2,
        "{} slabs",
        snap.thread_slabs()
    );
    assert_eq!(snap.thread_slabs(), slabs_then);
    assert_eq!(snap.own().live_bytes, own_then);
}
