//! The workload of `end_to_end`, over `ArenaLedger`: the blocks that fill their size class live in
//! their scope's arena instead of carrying a trailer.

#[global_allocator]
static GLOBAL: memledger::ArenaLedger = memledger::ArenaLedger::new();

#[path = "end_to_end/workload.rs"]
mod workload;

fn main() {
    workload::run();
}
