//! The exactness suite over jemalloc with the trailer on every block
//! (`Ledger<TrailerOnly<Jemalloc>>`, the comparison for the default), and the ledger against
//! jemalloc's own stats. `tests/arenas.rs` runs the suite over the default, `Ledger<Jemalloc>`.

mod common;

use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::TrailerOnly<tikv_jemallocator::Jemalloc>> =
    memledger::Ledger::new(memledger::TrailerOnly(tikv_jemallocator::Jemalloc));

exactness_suite!("jemalloc");

/// The ledger books requested bytes; jemalloc's `allocated` adds size-class rounding and the
/// trailers, so at quiescence it is never below the ledger's total.
///
/// The other tests of this binary allocate and free on threads of their own meanwhile (blocks
/// freed on other threads among them), and a snapshot reads each thread's cells at a slightly
/// different moment, so one reading may catch an allocation without its free. A reading is
/// therefore taken up to 200 times, and one of them must hold: a ledger that overcounts fails
/// them all.
#[test]
fn ledger_within_jemalloc_allocated() {
    let reading = || {
        epoch::advance().unwrap();
        let allocated = stats::allocated::read().unwrap() as u64;
        (memledger::snapshot().total_live_bytes(), allocated)
    };
    let within = || {
        let mut last = (0, 0);
        for _ in 0..200 {
            last = reading();
            if last.0 <= last.1 {
                return Ok(());
            }
            std::thread::yield_now();
        }
        Err(last)
    };
    within().unwrap_or_else(|(l, a)| panic!("before: ledger {l} > jemalloc allocated {a}"));
    let data: Vec<Vec<u8>> = memledger::in_scope("jemalloc_stats", || {
        (0..2000).map(|i| vec![1u8; 64 + i]).collect()
    });
    within().unwrap_or_else(|(l, a)| panic!("after: ledger {l} > jemalloc allocated {a}"));
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
