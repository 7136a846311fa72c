//! Differential fuzzing of the ledger: the input is a program of allocations, resizes and frees
//! across scopes and threads, and the books must equal a naive reference ledger's (see
//! `memledger/tests/common/differential.rs`, which `memledger/tests/differential.rs` also runs over the kept inputs).
#![no_main]

#[path = "../../memledger/tests/common/differential.rs"]
mod differential;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

libfuzzer_sys::fuzz_target!(|program: &[u8]| differential::run(program));
