//! The workload of `server_load`, over bare jemalloc: the baseline of its comparison.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "server_load/workload.rs"]
mod workload;

fn main() {
    workload::run();
}
