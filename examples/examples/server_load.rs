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
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--compare") {
        workload::run();
        let snap = memledger::snapshot();
        for scope in ["requests", "index"] {
            let s = snap.scope(scope).expect("the workload's scopes");
            println!(
                "{scope:<9} allocations {:>9}  peak {:>10}  live {:>10}",
                s.allocations, s.peak_bytes, s.live_bytes
            );
        }
        return;
    }
    let runs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
    memledger_examples::compare_builds("server_load", runs, &["words", "postings"]);
}
