//! The workload of `end_to_end`, over bare jemalloc: the baseline of its comparison.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "end_to_end/workload.rs"]
mod workload;

fn main() {
    workload::run();
}
