//! An end-to-end workload of real crates (serde_json, rayon, flate2) over `Ledger<Jemalloc>`,
//! with its scopes (`corpus`, `parse`, `index`, `compress`): see `end_to_end/workload.rs`.
//!
//! `end_to_end_bare` runs the same workload over bare jemalloc, and `end_to_end_trailer` over
//! `Ledger<TrailerOnly<Jemalloc>>` (every block with a trailer). To compare them (wall time and
//! peak RSS, median of `n` alternating runs of each; BENCHMARKS.md, "One default", used 7):
//!
//! ```text
//! cargo build --release --example end_to_end --example end_to_end_bare --example end_to_end_trailer
//! cargo run --release --example end_to_end -- --compare 5
//! ```

#[global_allocator]
static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
    memledger::Ledger::new(tikv_jemallocator::Jemalloc);

#[path = "end_to_end/workload.rs"]
mod workload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--compare") {
        workload::run();
        let snap = memledger::snapshot();
        for scope in ["corpus", "parse", "index", "compress"] {
            let s = snap.scope(scope).expect("the workload's scopes");
            println!(
                "{scope:<9} allocations {:>9}  peak {:>10}  live {:>10}",
                s.allocations, s.peak_bytes, s.live_bytes
            );
        }
        return;
    }
    let runs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
    memledger_examples::compare_builds("end_to_end", runs, &["compressed"]);
}
