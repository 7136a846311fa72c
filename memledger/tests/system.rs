//! The exactness suite over the system allocator.

mod common;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

exactness_suite!("system");
