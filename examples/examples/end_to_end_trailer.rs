//! The workload of `end_to_end`, over `Ledger<TrailerOnly<Jemalloc>>`: every block carries the
//! trailer, the blocks that fill their size class included (the comparison for the default).

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::TrailerOnly<memledger::Jemalloc>> =
    memledger::Ledger::new(memledger::TrailerOnly(memledger::Jemalloc));

#[path = "end_to_end/workload.rs"]
mod workload;

fn main() {
    workload::run();
}
