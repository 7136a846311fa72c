//! An axum server on tokio's multi-thread runtime under the load of client threads, over
//! `Ledger<Jemalloc>`, with its scopes (`requests`, `index`): see `server_load/workload.rs`.
//!
//! `server_load_bare` runs the same workload over bare jemalloc, and `server_load_trailer` over
//! `Ledger<TrailerOnly<Jemalloc>>`. To compare them (wall time, peak RSS and RSS at the end,
//! median of `n` alternating runs of each; BENCHMARKS.md, "Memory handed over and bursts"):
//!
//! ```text
//! cargo build --release --example server_load --example server_load_bare --example server_load_trailer
//! cargo run --release --example server_load -- --compare 5
//! ```

#[global_allocator]
static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
    memledger::Ledger::new(tikv_jemallocator::Jemalloc);

#[path = "server_load/workload.rs"]
mod workload;

fn main() {
    memledger_examples::run_or_compare(
        "server_load",
        workload::run,
        &["requests", "index"],
        &["words", "postings"],
    );
}
