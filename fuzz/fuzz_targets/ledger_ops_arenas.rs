//! The differential fuzzing of `ledger_ops` over the default ledger over jemalloc, whose blocks
//! live in scope arenas with a front cache per thread (on 64-bit Linux; elsewhere the trailer):
//! the books must equal a naive reference ledger's. Starts from `ledger_ops`'s seeds, which
//! `memledger/tests/arenas.rs` also replays over this ledger.
#![no_main]

#[path = "../../memledger/tests/common/differential.rs"]
mod differential;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

libfuzzer_sys::fuzz_target!(|program: &[u8]| differential::run(program));
