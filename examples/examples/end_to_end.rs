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

use std::process::Command;

/// Runs `exe` and returns its figures.
fn figures(exe: &std::path::Path) -> Vec<(String, u64)> {
    let output = Command::new(exe).output().expect("the example runs");
    assert!(output.status.success(), "{} failed", exe.display());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

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
    let me = std::env::current_exe().expect("this binary");
    let bare = me.with_file_name(format!("end_to_end_bare{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bare.exists(),
        "build it first: cargo build --release --example end_to_end_bare"
    );
    let trailer = me.with_file_name(format!(
        "end_to_end_trailer{}",
        std::env::consts::EXE_SUFFIX
    ));
    let trailer = trailer.exists().then_some(trailer);
    let (mut ledger_runs, mut bare_runs, mut trailer_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        ledger_runs.push(figures(&me));
        bare_runs.push(figures(&bare));
        if let Some(trailer) = &trailer {
            trailer_runs.push(figures(trailer));
        }
    }
    let pick = |runs: &[Vec<(String, u64)>], key: &str| -> u64 {
        median(
            runs.iter()
                .map(|r| r.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v))
                .collect(),
        )
    };
    assert_eq!(
        pick(&ledger_runs, "compressed"),
        pick(&bare_runs, "compressed"),
        "both builds must do the same work"
    );
    println!("median of {runs} alternating runs each");
    for key in ["wall_ms", "peak_rss_kib", "rss_kib"] {
        let (l, b) = (pick(&ledger_runs, key), pick(&bare_runs, key));
        print!(
            "{key:<13} bare {b:>8}  ledger {l:>8} ({:.3}x)",
            l as f64 / b as f64
        );
        if !trailer_runs.is_empty() {
            let t = pick(&trailer_runs, key);
            print!("  trailer only {t:>8} ({:.3}x)", t as f64 / b as f64);
        }
        println!();
    }
}
