//! The soak test: 16 threads churn allocations, resizes and frees across scopes and threads for a
//! bounded time while a sampler ticks every 10 ms. At the end the books equal a naive reference
//! ledger's exactly; the crate's own memory stayed flat once the sampler's history ring was full;
//! and in every reading the ledger (with its tags) was within jemalloc's `allocated`.
//!
//! Ignored by default; run it with
//! `MEMLEDGER_SOAK_SECS=300 cargo test --release --test soak -- --ignored --nocapture`
//! (default 60 s). CI runs it for 30 s.

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
