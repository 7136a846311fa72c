//! The soak test of `tests/soak.rs` over `Ledger<Jemalloc>`, checking its scope arenas too: blocks
//! of up to 16 KiB and larger full ones live in per-scope arenas, with cross-thread frees, resizes
//! between the trailer and the arenas, and a sampler reading jemalloc's per-arena statistics every
//! 10 ms.
//!
//! Ignored by default; run it with
//! `MEMLEDGER_SOAK_SECS=300 cargo test --release --features arenas --test soak_arenas -- --ignored --nocapture`.
#![cfg(target_os = "linux")]

/// The exactness suite's reference ledger and random programs, shared with `memledger`'s tests.
#[path = "../../memledger/tests/common/mod.rs"]
mod common;
#[path = "common/soak.rs"]
mod soak;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

#[test]
#[ignore = "minutes of load; CI runs it with a bound"]
fn soak() {
    soak::run();
}
