//! The exactness suite over `Ledger<System>` at the lowest sampling rate: every block carries the
//! trailer, and a large share of them are sampled.
#![cfg(feature = "sampling")]

mod common;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

exactness_suite!("sampled_system", {
    memledger::sampling::set_rate(memledger::sampling::MIN_RATE).unwrap();
});

#[test]
fn random_programs_keep_exact_books_while_sampled() {
    memledger::sampling::set_rate(memledger::sampling::MIN_RATE).unwrap();
    for program in common::differential::programs(1_000, 0x5a3d2) {
        common::differential::run(&program);
    }
}
