//! The exactness suite over jemalloc, and the ledger against jemalloc's own stats.

mod common;

use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
    memledger::Ledger::new(tikv_jemallocator::Jemalloc);

exactness_suite!("jemalloc");

/// The ledger books requested bytes; jemalloc's `allocated` adds size-class rounding and the
/// trailers, so it can never be below the ledger's total, and grows by at least what the ledger
/// says was added.
#[test]
fn ledger_within_jemalloc_allocated() {
    let reading = || {
        epoch::advance().unwrap();
        let allocated = stats::allocated::read().unwrap() as u64;
        (memledger::snapshot().total_live_bytes(), allocated)
    };
    let (ledger_before, allocated_before) = reading();
    assert!(ledger_before <= allocated_before);
    let data: Vec<Vec<u8>> = memledger::in_scope("jemalloc_stats", || {
        (0..2000).map(|i| vec![1u8; 64 + i]).collect()
    });
    let (ledger_after, allocated_after) = reading();
    assert!(
        ledger_after <= allocated_after,
        "{ledger_after} > {allocated_after}"
    );
    let booked = memledger::snapshot()
        .scope("jemalloc_stats")
        .unwrap()
        .live_bytes;
    let expected: u64 = data.iter().map(|v| v.capacity() as u64).sum::<u64>() + 2000 * 24;
    assert_eq!(booked, expected);
    drop(data);
    assert_eq!(
        memledger::snapshot()
            .scope("jemalloc_stats")
            .unwrap()
            .live_bytes,
        0
    );
}
