//! Once a thread has its counters, booking allocates nothing: a churn of blocks in scopes the
//! thread has used before adds no allocation to the crate's own scope, with sampling off and at
//! the lowest sampling rate (where the sample tables, once made, take records back from the
//! blocks freed). Its own binary, so that no other test registers scopes or takes snapshots
//! meanwhile.

use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

#[test]
fn booking_allocates_nothing() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    let churn = |n: usize| {
        let mut live: Vec<*mut u8> = Vec::with_capacity(64);
        let mut state = 7u64;
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if live.len() < 64 && (live.is_empty() || state % 2 == 0) {
                // SAFETY: non-zero size.
                live.push(unsafe { alloc(layout) });
            } else {
                let ptr = live.swap_remove(state as usize % live.len());
                // SAFETY: live block with its layout.
                unsafe { dealloc(ptr, layout) };
            }
        }
        for ptr in live {
            // SAFETY: live block with its layout.
            unsafe { dealloc(ptr, layout) };
        }
    };
    for rate in [0, memledger::sampling::MIN_RATE] {
        if memledger::sampling::set_rate(rate).is_err() {
            // Built without sampling: only the rate of 0 exists.
            continue;
        }
        // Warm up: register the scope, make this thread's counters for it and, when sampling,
        // the tables' first chunks.
        memledger::in_scope("churn", || churn(10_000));
        let snapshot_cost = {
            let first = memledger::snapshot().own().allocations;
            memledger::snapshot().own().allocations - first
        };
        let before = memledger::snapshot().own().allocations;
        let samples_before = memledger::sampling::usage();
        let guard = memledger::enter("churn");
        churn(100_000);
        drop(guard);
        let snap = memledger::snapshot();
        assert_eq!(
            snap.own().allocations,
            before + snapshot_cost,
            "at rate {rate}"
        );
        let churned = snap.scope("churn").unwrap();
        assert_eq!(churned.live_bytes, 0);
        assert!(churned.allocations > 50_000);
        let usage = memledger::sampling::usage();
        assert_eq!(usage.live_samples, 0);
        assert_eq!(usage.table_bytes, samples_before.table_bytes);
        if rate != 0 {
            // About 55 000 blocks of 48 bytes (half the churn's steps allocate) at one sample per
            // KiB: about 2 600 samples were taken.
            let sampled: u64 = memledger::sampling::sites()
                .scope("churn")
                .map(|s| s.allocated.samples)
                .sum();
            assert!(sampled > 2_000, "only {sampled} samples");
        }
    }
}
