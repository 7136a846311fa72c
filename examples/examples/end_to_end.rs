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
    memledger_examples::run_or_compare(
        "end_to_end",
        workload::run,
        &["corpus", "parse", "index", "compress"],
        &["compressed"],
    );
}
