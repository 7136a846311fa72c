//! The workload of `server_load`, over `Ledger<TrailerOnly<Jemalloc>>`: every block carries the
//! trailer (the comparison for the default).

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::TrailerOnly<memledger::Jemalloc>> =
    memledger::Ledger::new(memledger::TrailerOnly(memledger::Jemalloc));

#[path = "server_load/workload.rs"]
mod workload;

fn main() {
    workload::run();
}
